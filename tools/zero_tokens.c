/* zero-tokens — writes text as token files for zero_data (one token per byte) and prints what a
 * token file holds (--info), through runtime/tokfile.h only: no MPI, no device.
 * Usage: zero-tokens [options] TEXT OUT.bin, or zero-tokens --info FILE; see --help. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/tokfile.h"

/* Exit statuses. */
enum { EXIT_OK = 0, EXIT_BAD = 1, EXIT_USAGE = 2 };

/* Input bytes read at a time (each one token): the memory held does not grow with the input. */
enum { CHUNK_BYTES = 1 << 20 };
/* Tokens read at a time by --info (1 MiB of uint32 tokens). */
enum { INFO_CHUNK = 1 << 18 };
/* Shard names carry six digits. */
enum { MAX_SHARDS = 999999 };
/* --info counts tokens below this in an array (every GPT-2 and Llama 3 token), others in a hash
 * table of at most HASH_MAX distinct tokens (48 MiB, 72 while it last grows), so a file of random
 * uint32 words cannot exhaust memory: beyond it the frequencies are not reported. */
enum { DENSE_TOKENS = 1 << 18, HASH_MAX = 1 << 21 };

static const char *const usage_text =
    "usage: zero-tokens [--width 16|32] [--shards N] [--val F --val-out VAL.bin] TEXT OUT.bin\n"
    "       zero-tokens --info FILE\n"
    "\n"
    "Writes TEXT as a token file for zero_data (docs/DATA.md), one token per byte (0..255):\n"
    "llm.c's header (256 little-endian int32: magic 20240520, version, token count), then the\n"
    "tokens. TEXT is read 1 MiB at a time; each output is written to a temporary file beside it,\n"
    "synced, and renamed into place once every output is complete, so a failed run leaves no\n"
    "partial file.\n"
    "\n"
    "  --width 16|32      token width: 16 (default) writes version 1 (uint16 tokens, at most\n"
    "                     2147483647 per file), 32 writes version 2 (uint32 tokens)\n"
    "  --shards N         split the (training) tokens into N files of nearly equal size, N from 1\n"
    "                     to 999999, named OUT without .bin followed by _000000.bin,\n"
    "                     _000001.bin, ...; default 1: OUT itself\n"
    "  --val F --val-out VAL.bin\n"
    "                     the last fraction F of the tokens (0 < F < 1, rounded to a whole\n"
    "                     token) goes to VAL.bin instead of the training file(s)\n"
    "  --info FILE        FILE as zero_data reads it: kind, header, size, smallest and largest\n"
    "                     token, distinct tokens and the 10 most frequent (as characters where\n"
    "                     every token is a byte); a file named *.bin must be a token file\n"
    "  -h, --help         this text\n"
    "\n"
    "Options come before TEXT and OUT ('--' ends them); --name=value also works.\n"
    "Exit status: 0 success; 1 an input or output problem (TEXT unreadable or empty, a file that\n"
    "cannot be written, a bad token file for --info); 2 a bad option or argument.\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "zero-tokens: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(zero-tokens --help for the usage)\n");
    return EXIT_USAGE;
}

typedef struct opts {
    int width;          /* bytes per token written: 2 or 4 */
    long shards;        /* training files */
    double val;         /* fraction for val_out; 0 without one */
    const char *val_arg, *val_out, *info, *text, *out;
} opts;

/* ---- command line ------------------------------------------------------------------------ */

static int parse_width(const char *v, int *width)
{
    if (!strcmp(v, "16"))
        *width = 2;
    else if (!strcmp(v, "32"))
        *width = 4;
    else
        return usage_error("--width: '%s' is not a token width: 16 (uint16 tokens, version 1) or "
                           "32 (uint32 tokens, version 2)", v);
    return 0;
}

static int parse_shards(const char *v, long *shards)
{
    /* digits only: strtol would also take a sign, spaces and "0x" */
    size_t n = strlen(v);
    int ok = n > 0 && n <= 6 && strspn(v, "0123456789") == n;
    long s = ok ? strtol(v, NULL, 10) : 0;
    if (!ok || s < 1 || s > MAX_SHARDS)
        return usage_error("--shards: '%s' is not a shard count: a whole number from 1 to %d", v,
                           MAX_SHARDS);
    *shards = s;
    return 0;
}

static int parse_val(const char *v, double *val)
{
    char *end = NULL;
    errno = 0;
    double f = *v ? strtod(v, &end) : 0;
    if (!*v || *end || errno || !isfinite(f) || !(f > 0 && f < 1))
        return usage_error("--val: '%s' is not a fraction: a number between 0 and 1, both "
                           "excluded (0.1 sends the last 10%% of the tokens to --val-out)", v);
    *val = f;
    return 0;
}

/* Fills o from argv; 0, EXIT_USAGE, or -1 after --help (printed). */
static int parse_args(int argc, char **argv, opts *o)
{
    memset(o, 0, sizeof *o);
    o->width = 2;
    o->shards = 1;
    const char *first_opt = NULL; /* for the message when --info meets another option */
    int i = 1, ended = 0;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            ended = 1;
            break;
        }
        if (a[0] != '-' || !a[1])
            break;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage_text, stdout);
            return -1;
        }
        static const char *const names[] = {"--width", "--shards", "--val", "--val-out", "--info"};
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        int which = -1;
        for (int k = 0; k < 5; k++)
            if (strlen(names[k]) == len && !strncmp(a, names[k], len))
                which = k;
        if (which < 0)
            return usage_error("unknown option %.*s (the options: --width 16|32, --shards N, "
                               "--val F, --val-out VAL.bin, --info FILE, --help)", (int)len, a);
        const char *v = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
        if (!v)
            return usage_error("%s needs a value (%s)", names[which],
                               which == 0   ? "16 or 32"
                               : which == 1 ? "a number of files from 1 to 999999"
                               : which == 2 ? "a fraction between 0 and 1"
                               : which == 3 ? "the validation file to write"
                                            : "the file to describe");
        if (which != 4 && !first_opt)
            first_opt = names[which];
        int rc = 0;
        if (which == 0)
            rc = parse_width(v, &o->width);
        else if (which == 1)
            rc = parse_shards(v, &o->shards);
        else if (which == 2)
            rc = parse_val((o->val_arg = v), &o->val);
        else if (which == 3)
            o->val_out = v;
        else
            o->info = v;
        if (rc)
            return rc;
        if ((which == 3 || which == 4) && !*v)
            return usage_error("%s: the file name is empty", names[which]);
    }
    int npos = argc - i;
    for (int k = i; k < argc && !ended; k++)
        if (argv[k][0] == '-' && argv[k][1])
            return usage_error("%s after the arguments: options come before TEXT and OUT (or "
                               "'--' before a file name that starts with '-')", argv[k]);
    if (o->info) {
        if (first_opt)
            return usage_error("--info takes no other option (%s)", first_opt);
        if (npos)
            return usage_error("--info takes one file: %s is one too many", argv[i]);
        return 0;
    }
    if (npos != 2)
        return usage_error("two arguments wanted, TEXT and OUT.bin; %d given", npos);
    o->text = argv[i];
    o->out = argv[i + 1];
    if (!*o->text || !*o->out)
        return usage_error("%s is empty", !*o->text ? "TEXT" : "OUT");
    if (!o->val_arg != !o->val_out)
        return usage_error(o->val_arg ? "--val %s needs --val-out VAL.bin: the file for the "
                                        "validation tokens"
                                      : "--val-out %s needs --val F: the fraction of the tokens "
                                        "it gets (0 < F < 1)",
                           o->val_arg ? o->val_arg : o->val_out);
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct output {
    char *path;    /* the final name */
    char *tmp;     /* the temporary name beside it */
    int64_t ntok;  /* tokens planned (-1: whatever the input holds, known at its end) */
    int64_t done;  /* tokens written */
    int fd;        /* -1 when not open */
} output;

/* The temporary files created so far (outputs [0, g_created)), for the signal handler: an
 * interrupted run removes them, as a failed one does. */
static output *g_outs;
static volatile sig_atomic_t g_created;

static void on_signal(int sig)
{
    for (int i = 0; i < g_created; i++)
        unlink(g_outs[i].tmp); /* async-signal-safe, as are signal and raise */
    signal(sig, SIG_DFL);
    raise(sig);
}

static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *str_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, fmt);
        vsnprintf(s, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    return s;
}

/* ".NAME.zero-tokens.PID.tmp" in PATH's directory: the rename stays within one file system, and a
 * loader's pattern like data_*.bin does not match it. */
static char *tmp_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    return str_printf("%.*s.%s.zero-tokens.%ld.tmp", dirlen, path, path + dirlen, (long)getpid());
}

static int write_full(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int open_output(output *w, int width)
{
    unsigned char hdr[ZT_HEADER_BYTES];
    /* an unknown count is written at the end (finish_output); the plan was checked, so the
     * header can hold it */
    zt_header_write(hdr, width, w->ntok < 0 ? 0 : w->ntok);
    if ((w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "zero-tokens: cannot create %s: %s\n", w->tmp, strerror(errno));
        return -1;
    }
    g_created++;
    if (write_full(w->fd, hdr, sizeof hdr) != 0) {
        fprintf(stderr, "zero-tokens: writing %s: %s\n", w->tmp, strerror(errno));
        return -1;
    }
    return 0;
}

/* The final header (when the count was not known at the start), fsync and close. */
static int finish_output(output *w, int width, int64_t planned)
{
    int ok = 1;
    if (planned < 0) {
        unsigned char hdr[ZT_HEADER_BYTES];
        zt_header_write(hdr, width, w->done);
        ssize_t r;
        do
            r = pwrite(w->fd, hdr, sizeof hdr, 0);
        while (r < 0 && errno == EINTR);
        if (r != (ssize_t)sizeof hdr) {
            fprintf(stderr, "zero-tokens: writing the header of %s: %s\n", w->tmp,
                    r < 0 ? strerror(errno) : "short write");
            ok = 0;
        }
    }
    /* some file systems cannot sync: their data is as durable as they make it */
    if (ok && fsync(w->fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        fprintf(stderr, "zero-tokens: syncing %s: %s\n", w->tmp, strerror(errno));
        ok = 0;
    }
    if (close(w->fd) != 0 && ok) {
        fprintf(stderr, "zero-tokens: writing %s: %s\n", w->tmp, strerror(errno));
        ok = 0;
    }
    w->fd = -1;
    return ok ? 0 : -1;
}

/* Makes the renames durable: fsync of the directory holding path. */
static void sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? str_printf("%.*s", slash == path ? 1 : (int)(slash - path), path)
                      : str_printf(".");
    int dfd = dir ? open(dir, O_RDONLY | O_CLOEXEC) : -1;
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}

/* One byte per token, little-endian, in width bytes. */
static void widen_bytes(unsigned char *dst, const unsigned char *src, size_t n, int width)
{
    if (width == 2) {
        for (size_t i = 0; i < n; i++) {
            dst[2 * i] = src[i];
            dst[2 * i + 1] = 0;
        }
    } else {
        memset(dst, 0, n * 4);
        for (size_t i = 0; i < n; i++)
            dst[4 * i] = src[i];
    }
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Plans the outputs (names, token counts) for an input of total tokens (-1: unknown); 0, or an
 * exit status after a message. */
static int plan(const opts *o, int64_t total, output *outs, int nout)
{
    const int W = o->width;
    int64_t nval = 0;
    if (o->val_out) {
        /* total is known here: --val needs a regular file */
        nval = (int64_t)(o->val * (double)total + 0.5); /* the nearest whole token */
        if (nval < 1 || nval > total - 1) {
            fprintf(stderr,
                    "zero-tokens: --val %s of %s's %lld tokens is %lld tokens: that leaves %s "
                    "empty\n",
                    o->val_arg, o->text, (long long)total, (long long)nval,
                    nval < 1 ? o->val_out : "the training file");
            return EXIT_BAD;
        }
    }
    int64_t ntrain = total < 0 ? -1 : total - nval;
    if (ntrain >= 0 && ntrain < o->shards) {
        fprintf(stderr,
                "zero-tokens: --shards %ld: %s has %lld training tokens, fewer than the shards "
                "(a shard would be empty)\n",
                o->shards, o->text, (long long)ntrain);
        return EXIT_BAD;
    }
    /* names: OUT itself, or OUT without .bin and a six-digit index */
    size_t olen = strlen(o->out);
    int stem = olen > 4 && !strcmp(o->out + olen - 4, ".bin") ? (int)(olen - 4) : (int)olen;
    for (long s = 0; s < o->shards; s++) {
        output *w = &outs[s];
        w->path = o->shards == 1 ? str_printf("%s", o->out)
                                 : str_printf("%.*s_%06ld.bin", stem, o->out, s);
        w->ntok = ntrain < 0 ? -1 : ntrain / o->shards + (s < ntrain % o->shards);
    }
    if (o->val_out) {
        outs[nout - 1].path = str_printf("%s", o->val_out);
        outs[nout - 1].ntok = nval;
    }
    for (int k = 0; k < nout; k++) {
        output *w = &outs[k];
        if (!w->path || !(w->tmp = tmp_name(w->path))) {
            fprintf(stderr, "zero-tokens: out of host memory\n");
            return EXIT_BAD;
        }
        if (W == 2 && w->ntok > INT32_MAX) {
            fprintf(stderr,
                    "zero-tokens: %s would hold %lld tokens: a version-1 file (--width 16) holds "
                    "at most %d; use --width 32%s\n",
                    w->path, (long long)w->ntok, INT32_MAX,
                    k < o->shards ? ", or more --shards" : "");
            return EXIT_BAD;
        }
        if (is_dir(w->path)) {
            fprintf(stderr, "zero-tokens: %s is a directory: cannot write the token file there\n",
                    w->path);
            return EXIT_BAD;
        }
        if (o->val_out && k < nout - 1 && !strcmp(w->path, o->val_out)) {
            fprintf(stderr, "zero-tokens: --val-out %s is also a training file\n", o->val_out);
            return EXIT_USAGE;
        }
    }
    if (o->shards > 1) {
        /* a shard left by an earlier run with more shards would join this output in a pattern
         * like NAME_*.bin: say so */
        char *next = str_printf("%.*s_%06ld.bin", stem, o->out, o->shards);
        if (next && access(next, F_OK) == 0)
            fprintf(stderr,
                    "zero-tokens: note: %s exists (an earlier run?) and is not part of this "
                    "output; a pattern like %.*s_*.bin would still read it\n",
                    next, stem, o->out);
        free(next);
    }
    return 0;
}

static int tokenize(const opts *o)
{
    int in = open(o->text, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "zero-tokens: cannot open %s: %s\n", o->text, strerror(errno));
        return EXIT_BAD;
    }
    struct stat sb;
    if (fstat(in, &sb) != 0) {
        fprintf(stderr, "zero-tokens: %s: %s\n", o->text, strerror(errno));
        close(in);
        return EXIT_BAD;
    }
    if (S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "zero-tokens: %s is a directory, not a text file\n", o->text);
        close(in);
        return EXIT_BAD;
    }
    /* a pipe or device is read to its end; its size is known only then */
    const int known = S_ISREG(sb.st_mode);
    const int64_t total = known ? (int64_t)sb.st_size : -1;
    if (total == 0) {
        fprintf(stderr, "zero-tokens: %s is empty: no tokens to write\n", o->text);
        close(in);
        return EXIT_BAD;
    }
    if (!known && (o->shards > 1 || o->val_out)) {
        fprintf(stderr,
                "zero-tokens: %s is not a regular file: --shards and --val need its size before "
                "reading it\n",
                o->text);
        close(in);
        return EXIT_BAD;
    }
    const int W = o->width, nout = (int)o->shards + (o->val_out ? 1 : 0);
    output *outs = calloc((size_t)nout, sizeof *outs);
    unsigned char *inbuf = malloc(CHUNK_BYTES), *outbuf = malloc((size_t)CHUNK_BYTES * W);
    int rc = EXIT_BAD;
    if (!outs || !inbuf || !outbuf) {
        fprintf(stderr, "zero-tokens: out of host memory\n");
        goto done;
    }
    for (int k = 0; k < nout; k++)
        outs[k].fd = -1; /* before any exit: the cleanup closes what is open */
    if ((rc = plan(o, total, outs, nout)) != 0)
        goto done;
    rc = EXIT_BAD;
    g_outs = outs;
    g_created = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    /* the input in chunks, each chunk's tokens to the output(s) its range falls in */
    int cur = 0;
    int64_t pos = 0;
    for (;;) {
        ssize_t r = read(in, inbuf, CHUNK_BYTES);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "zero-tokens: reading %s: %s\n", o->text, strerror(errno));
            goto done;
        }
        if (r == 0)
            break;
        if (known && pos + r > total) {
            fprintf(stderr,
                    "zero-tokens: %s grew while it was read (%lld bytes when opened): nothing "
                    "written\n",
                    o->text, (long long)total);
            goto done;
        }
        widen_bytes(outbuf, inbuf, (size_t)r, W);
        for (int64_t off = 0; off < r;) {
            output *w = &outs[cur];
            if (w->fd < 0 && open_output(w, W) != 0)
                goto done;
            int64_t k = r - off;
            if (w->ntok >= 0 && w->ntok - w->done < k)
                k = w->ntok - w->done;
            if (W == 2 && w->done + k > INT32_MAX) { /* an input of unknown size */
                fprintf(stderr,
                        "zero-tokens: %s holds more than %d tokens, the most a version-1 file "
                        "(--width 16) holds: use --width 32\n",
                        o->text, INT32_MAX);
                goto done;
            }
            if (write_full(w->fd, outbuf + off * W, (size_t)k * W) != 0) {
                fprintf(stderr, "zero-tokens: writing %s: %s\n", w->tmp, strerror(errno));
                goto done;
            }
            w->done += k;
            off += k;
            if (w->done == w->ntok) {
                if (finish_output(w, W, w->ntok) != 0)
                    goto done;
                cur++;
            }
        }
        pos += r;
    }
    if (!known) {
        if (pos == 0) {
            fprintf(stderr, "zero-tokens: %s is empty: no tokens to write\n", o->text);
            goto done;
        }
        if (finish_output(&outs[0], W, -1) != 0)
            goto done;
        outs[0].ntok = pos;
    } else if (pos != total) {
        fprintf(stderr,
                "zero-tokens: %s shrank while it was read (%lld of the %lld bytes it had when "
                "opened): nothing written\n",
                o->text, (long long)pos, (long long)total);
        goto done;
    }
    /* every output is complete and synced: into place */
    for (int k = 0; k < nout; k++) {
        if (rename(outs[k].tmp, outs[k].path) != 0) {
            fprintf(stderr, "zero-tokens: renaming %s to %s: %s (%d of the %d files were "
                            "already in place)\n",
                    outs[k].tmp, outs[k].path, strerror(errno), k, nout);
            goto done;
        }
        if (k == 0 || k == nout - 1)
            sync_dir_of(outs[k].path); /* the shards share OUT's directory; VAL may not */
    }
    rc = EXIT_OK;
    for (int k = 0; k < nout; k++)
        printf("zero-tokens: %lld tokens (%s) from %s to %s, %lld bytes\n",
               (long long)outs[k].ntok, W == 2 ? "uint16, version 1" : "uint32, version 2",
               o->text, outs[k].path, (long long)(ZT_HEADER_BYTES + outs[k].ntok * W));
    if (nout > 1)
        printf("zero-tokens: %lld tokens from %s: %lld in %ld training file%s, %lld in %s\n",
               (long long)pos, o->text, (long long)(pos - (o->val_out ? outs[nout - 1].ntok : 0)),
               o->shards, o->shards > 1 ? "s" : "",
               (long long)(o->val_out ? outs[nout - 1].ntok : 0),
               o->val_out ? o->val_out : "no validation file");
done:
    if (outs) {
        for (int k = 0; k < nout; k++) {
            if (outs[k].fd >= 0)
                close(outs[k].fd);
            if (rc != EXIT_OK && k < g_created)
                unlink(outs[k].tmp); /* renamed ones are gone from this name already */
        }
        g_created = 0;
        for (int k = 0; k < nout; k++) {
            free(outs[k].path);
            free(outs[k].tmp);
        }
    }
    free(outs);
    free(inbuf);
    free(outbuf);
    close(in);
    return rc;
}

/* ---- --info ------------------------------------------------------------------------------ */

/* Token counts: an array for tokens below DENSE_TOKENS, an open-addressing hash table for the
 * rest (keys with a count of 0 are free slots). */
typedef struct counter {
    uint64_t *dense;
    uint32_t *keys;
    uint64_t *counts;
    int bits;          /* the table has 1 << bits slots; 0: no table yet */
    int64_t used;      /* distinct tokens in the table */
    int overflow;      /* more than HASH_MAX distinct large tokens (or no memory): not counted */
} counter;

static uint64_t slot_of(uint32_t t, int bits)
{
    return (uint64_t)t * 0x9E3779B97F4A7C15ull >> (64 - bits);
}

static int counter_grow(counter *c)
{
    int bits = c->bits ? c->bits + 1 : 12;
    uint64_t n = (uint64_t)1 << bits;
    uint32_t *keys = malloc(n * sizeof *keys);
    uint64_t *counts = calloc(n, sizeof *counts);
    if (!keys || !counts) {
        free(keys);
        free(counts);
        return -1;
    }
    for (uint64_t i = 0; c->bits && i < (uint64_t)1 << c->bits; i++) {
        if (!c->counts[i])
            continue;
        uint64_t s = slot_of(c->keys[i], bits);
        while (counts[s])
            s = (s + 1) & (n - 1);
        keys[s] = c->keys[i];
        counts[s] = c->counts[i];
    }
    free(c->keys);
    free(c->counts);
    c->keys = keys;
    c->counts = counts;
    c->bits = bits;
    return 0;
}

static void counter_add(counter *c, uint32_t t)
{
    if (t < DENSE_TOKENS) {
        c->dense[t]++;
        return;
    }
    if (c->overflow)
        return;
    /* at most half full, so probes stay short */
    if ((c->used + 1) * 2 > (c->bits ? (int64_t)1 << c->bits : 0)) {
        if (c->used >= HASH_MAX || counter_grow(c) != 0) {
            c->overflow = 1;
            return;
        }
    }
    uint64_t mask = ((uint64_t)1 << c->bits) - 1, s = slot_of(t, c->bits);
    while (c->counts[s] && c->keys[s] != t)
        s = (s + 1) & mask;
    if (!c->counts[s]) {
        c->keys[s] = t;
        c->used++;
    }
    c->counts[s]++;
}

typedef struct top_entry {
    uint32_t tok;
    uint64_t count;
} top_entry;

/* Keeps top[0..*n) (at most 10) sorted by count, larger first, then by token. */
static void top_offer(top_entry *top, int *n, uint32_t tok, uint64_t count)
{
    int at = *n;
    while (at > 0 && (top[at - 1].count < count ||
                      (top[at - 1].count == count && top[at - 1].tok > tok)))
        at--;
    if (at >= 10)
        return;
    int last = *n < 10 ? *n : 9;
    memmove(top + at + 1, top + at, (size_t)(last - at) * sizeof *top);
    top[at] = (top_entry){tok, count};
    if (*n < 10)
        (*n)++;
}

/* A byte token as a quoted character when it prints ("" otherwise). */
static void show_char(char *buf, size_t len, uint32_t t)
{
    static const char esc[] = {'\n', 'n', '\t', 't', '\r', 'r', '\'', '\'', '\\', '\\'};
    for (size_t i = 0; i < sizeof esc; i += 2)
        if (t == (unsigned char)esc[i]) {
            snprintf(buf, len, "'\\%c'", esc[i + 1]);
            return;
        }
    if (t >= 0x20 && t < 0x7f)
        snprintf(buf, len, "'%c'", (char)t);
    else
        buf[0] = 0;
}

static int info(const char *path)
{
    zt_file f;
    char err[1024];
    if (zt_open(&f, path, ZERO_DATA_AUTO, 0, err, sizeof err) != ZERO_OK) {
        fprintf(stderr, "zero-tokens: %s\n", err);
        return EXIT_BAD;
    }
    const char *kind;
    char bytes_kind[128];
    if (!f.has_header) {
        snprintf(bytes_kind, sizeof bytes_kind,
                 "not a token file: read as bytes by zero_data (%lld tokens)", (long long)f.ntok);
        kind = bytes_kind;
    } else if (f.magic == ZT_MAGIC_LLAMA) {
        kind = "llm.c llama token file, uint32 tokens";
    } else {
        kind = f.width == 2 ? "token file, uint16 tokens" : "token file, uint32 tokens";
    }
    printf("file:             %s\n", path);
    printf("kind:             %s\n", kind);
    if (f.has_header) {
        printf("magic:            %d\n", f.magic);
        printf("version:          %d\n", f.version);
    } else {
        printf("magic:            none\n");
        printf("version:          none\n");
    }
    printf("tokens:           %lld\n", (long long)f.ntok);
    if (f.has_header)
        printf("file size:        %llu bytes (a %d-byte header and %lld tokens of %d bytes)\n",
               (unsigned long long)f.size, ZT_HEADER_BYTES, (long long)f.ntok, f.width);
    else
        printf("file size:        %llu bytes\n", (unsigned long long)f.size);
    printf("bytes per token:  %d\n", f.width);

    /* the tokens, a chunk at a time */
    int rc = EXIT_BAD;
    counter c;
    memset(&c, 0, sizeof c);
    void *raw = malloc((size_t)INFO_CHUNK * 4);
    int32_t *tok = malloc((size_t)INFO_CHUNK * sizeof *tok);
    c.dense = calloc(DENSE_TOKENS, sizeof *c.dense);
    if (!raw || !tok || !c.dense) {
        fprintf(stderr, "zero-tokens: out of host memory\n");
        goto done;
    }
    uint32_t mn = UINT32_MAX, mx = 0;
    int64_t bad_at = -1;
    uint32_t bad_tok = 0;
    for (int64_t at = 0; at < f.ntok;) {
        int64_t k = f.ntok - at < INFO_CHUNK ? f.ntok - at : INFO_CHUNK;
        const unsigned char *src = zt_source(&f, at, k, raw, err, sizeof err);
        if (!src) {
            fprintf(stderr, "zero-tokens: %s\n", err);
            goto done;
        }
        /* vocab 0: the first token zero_data cannot hold (beyond int32) */
        int64_t bad = zt_widen(tok, src, k, f.width, 0);
        if (bad >= 0 && bad_at < 0) {
            bad_at = at + bad;
            bad_tok = (uint32_t)tok[bad];
        }
        for (int64_t i = 0; i < k; i++) {
            uint32_t t = (uint32_t)tok[i];
            mn = t < mn ? t : mn;
            mx = t > mx ? t : mx;
            counter_add(&c, t);
        }
        at += k;
    }
    if (f.ntok > 0) {
        printf("min token:        %u\n", mn);
        printf("max token:        %u\n", mx);
    } else {
        printf("min token:        none\n");
        printf("max token:        none\n");
    }
    int64_t distinct = c.used;
    top_entry top[10];
    int ntop = 0;
    for (uint32_t t = 0; t < DENSE_TOKENS; t++)
        if (c.dense[t]) {
            distinct++;
            top_offer(top, &ntop, t, c.dense[t]);
        }
    for (uint64_t s = 0; c.bits && !c.overflow && s < (uint64_t)1 << c.bits; s++)
        if (c.counts[s])
            top_offer(top, &ntop, c.keys[s], c.counts[s]);
    if (c.overflow) {
        printf("distinct tokens:  more than %d (too many to count)\n", HASH_MAX);
    } else {
        const int bytes = f.ntok > 0 && mx < 256; /* byte-level tokens: show them as text */
        printf("distinct tokens:  %lld\n", (long long)distinct);
        if (ntop < 10 && ntop)
            printf("most frequent:    all %d (count, token%s)\n", ntop, bytes ? ", character" : "");
        else if (ntop)
            printf("most frequent:    10 of %lld (count, token%s)\n", (long long)distinct,
                   bytes ? ", character" : "");
        for (int i = 0; i < ntop; i++) {
            char ch[16] = "";
            if (bytes)
                show_char(ch, sizeof ch, top[i].tok);
            printf("  %14llu  %10u%s%s\n", (unsigned long long)top[i].count, top[i].tok,
                   *ch ? "  " : "", ch);
        }
    }
    if (bad_at >= 0) {
        zt_bad_token(&f, bad_at, bad_tok, 0, err, sizeof err);
        fprintf(stderr, "zero-tokens: %s: zero_data cannot read this file\n", err);
        goto done;
    }
    rc = EXIT_OK;
done:
    free(raw);
    free(tok);
    free(c.dense);
    free(c.keys);
    free(c.counts);
    zt_close(&f);
    return rc;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0)
        return EXIT_OK;
    if (rc)
        return rc;
    return o.info ? info(o.info) : tokenize(&o);
}
