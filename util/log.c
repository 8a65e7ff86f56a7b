/* log.c — NCCL-style log lines "host:pid:rank zero LEVEL [SUBSYS] message" to stderr or a file.
 * Each line goes out in one fwrite, so lines from concurrent threads do not interleave. */
#define _POSIX_C_SOURCE 200809L

#include "util/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int zr_log_level_now = ZR_LOG_WARN;
unsigned zr_log_mask_now = ZR_SUB_ALL;

/* Changed only by zr_log_setup / zr_log_close, which must not race with zr_log_write. */
static FILE *zr_log_out;          /* NULL = stderr */
static char zr_log_path[1024];    /* expanded path of zr_log_out */
static int zr_log_rank = -1;      /* -1 = not known yet */
static int zr_log_users;          /* zr_log_open minus zr_log_release */

static pthread_once_t zr_log_host_once = PTHREAD_ONCE_INIT;
static char zr_log_host[64];

static void zr_log_init_host(void) {
    if (gethostname(zr_log_host, sizeof zr_log_host) != 0) {
        snprintf(zr_log_host, sizeof zr_log_host, "unknown");
        return;
    }
    zr_log_host[sizeof zr_log_host - 1] = '\0';
    /* The short name, as NCCL prints it. */
    char *dot = strchr(zr_log_host, '.');
    if (dot) *dot = '\0';
}

static const char *zr_log_host_name(void) {
    pthread_once(&zr_log_host_once, zr_log_init_host);
    return zr_log_host;
}

static const char *zr_log_level_name(int level) {
    switch (level) {
    case ZR_LOG_WARN: return "WARN";
    case ZR_LOG_INFO: return "INFO";
    case ZR_LOG_TRACE: return "TRACE";
    default: return "?";
    }
}

/* Name of a single subsystem bit; NULL for a mask of several (then no tag is printed). */
static const char *zr_log_subsys_name(unsigned subsys) {
    switch (subsys) {
    case ZR_SUB_INIT: return "INIT";
    case ZR_SUB_PART: return "PART";
    case ZR_SUB_COMM: return "COMM";
    case ZR_SUB_OFFLOAD: return "OFFLOAD";
    case ZR_SUB_ALLOC: return "ALLOC";
    case ZR_SUB_ENV: return "ENV";
    default: return NULL;
    }
}

/* Expands %h (host) and %p (pid) and %% in a file pattern; other characters are copied.
 * Returns 0, or -1 when the result does not fit. */
static int zr_log_expand(const char *pattern, char *out, size_t cap) {
    size_t n = 0;
    for (const char *c = pattern; *c; c++) {
        char piece[80];
        const char *add = piece;
        if (c[0] == '%' && c[1] == 'h') {
            add = zr_log_host_name();
            c++;
        } else if (c[0] == '%' && c[1] == 'p') {
            snprintf(piece, sizeof piece, "%ld", (long)getpid());
            c++;
        } else if (c[0] == '%' && c[1] == '%') {
            piece[0] = '%';
            piece[1] = '\0';
            c++;
        } else {
            piece[0] = *c;
            piece[1] = '\0';
        }
        size_t len = strlen(add);
        if (n + len + 1 > cap) return -1;
        memcpy(out + n, add, len);
        n += len;
    }
    out[n] = '\0';
    return 0;
}

int zr_log_setup(int level, unsigned mask, const char *file_pattern, int rank) {
    zr_log_level_now = level;
    zr_log_mask_now = mask;
    zr_log_rank = rank;
    if (!file_pattern || !file_pattern[0]) {
        zr_log_close();
        return 0;
    }
    char path[sizeof zr_log_path];
    if (zr_log_expand(file_pattern, path, sizeof path) != 0) {
        zr_log_close();
        ZR_WARN(ZR_SUB_INIT, "ZERO_DEBUG_FILE=%.64s...: path too long; logging to stderr",
                file_pattern);
        return -1;
    }
    /* A second context in the same process keeps appending to the file it already has. */
    if (zr_log_out && strcmp(path, zr_log_path) == 0) return 0;
    zr_log_close();
    FILE *f = fopen(path, "w");
    if (!f) {
        int e = errno;
        ZR_WARN(ZR_SUB_INIT, "cannot open ZERO_DEBUG_FILE %s: %s; logging to stderr", path,
                strerror(e));
        return -1;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    zr_log_out = f;
    memcpy(zr_log_path, path, strlen(path) + 1);
    return 0;
}

void zr_log_set_rank(int rank) { zr_log_rank = rank; }

int zr_log_open(int level, unsigned mask, const char *file_pattern, int rank) {
    zr_log_users++;
    return zr_log_setup(level, mask, file_pattern, rank);
}

void zr_log_release(void) {
    if (zr_log_users > 0 && --zr_log_users == 0) zr_log_close();
}

void zr_log_close(void) {
    if (zr_log_out) fclose(zr_log_out);
    zr_log_out = NULL;
    zr_log_path[0] = '\0';
}

void zr_log_write(int level, unsigned subsys, const char *fmt, ...) {
    /* Direct callers get the same filter as the macros. */
    if (level <= ZR_LOG_NONE || level > zr_log_level_now || !(zr_log_mask_now & subsys)) return;

    char rank[16];
    if (zr_log_rank >= 0)
        snprintf(rank, sizeof rank, "%d", zr_log_rank);
    else
        snprintf(rank, sizeof rank, "-");
    const char *sub = level >= ZR_LOG_INFO ? zr_log_subsys_name(subsys) : NULL;

    char stack[1024];
    char *line = stack;
    size_t cap = sizeof stack;
    int head = snprintf(line, cap, "%s:%ld:%s zero %s %s%s", zr_log_host_name(), (long)getpid(),
                        rank, zr_log_level_name(level), sub ? sub : "", sub ? " " : "");
    if (head < 0) return;

    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int body = vsnprintf(line + head, cap - (size_t)head, fmt, ap);
    va_end(ap);
    if (body < 0) {
        va_end(again);
        return;
    }
    /* Room for the newline too; long messages get a heap buffer rather than a cut. */
    if ((size_t)head + (size_t)body + 2 > cap) {
        cap = (size_t)head + (size_t)body + 2;
        char *big = malloc(cap);
        if (big) {
            memcpy(big, stack, (size_t)head);
            vsnprintf(big + head, cap - (size_t)head, fmt, again);
            line = big;
        }
    }
    va_end(again);

    size_t len = (size_t)head + (size_t)body;
    if (line == stack && len > sizeof stack - 2) len = sizeof stack - 2; /* malloc failed: cut */
    while (len > (size_t)head && line[len - 1] == '\n') len--; /* one line, one newline */
    line[len++] = '\n';
    FILE *out = zr_log_out ? zr_log_out : stderr;
    /* A file that cannot take the line (a full disk, a lost mount) does not swallow it: the line
     * and every later one go to stderr, saying so once. */
    if ((fwrite(line, 1, len, out) != len || fflush(out) != 0) && out != stderr) {
        int e = errno;
        fprintf(stderr, "%.*s zero WARN cannot write the log file %s (%s): logging to stderr "
                "from here on\n", head > 0 ? (int)strcspn(line, " ") : 0, line, zr_log_path,
                strerror(e));
        fwrite(line, 1, len, stderr);
        fclose(zr_log_out);
        zr_log_out = NULL;
        zr_log_path[0] = '\0';
    }
    if (line != stack) free(line);
}
