/* crash_shim.c — LD_PRELOAD library for the checkpoint crash test (ckpt.sh crash): counts the
 * file-system operations a process makes under one directory and kills the process with SIGKILL
 * at a chosen one, so a test can stop zero_save at any point of its work: after a file, between
 * two fsyncs, before or after a rename, or in the middle of a write (half of the write's bytes
 * are written first).
 *
 *   CRASH_SHIM_DIR   the directory (absolute path) whose operations count
 *   CRASH_SHIM_RANK  the MPI rank (OMPI_COMM_WORLD_RANK) that dies; others only count
 *   CRASH_SHIM_AT    the 1-based operation at which it dies; 0 = never (count only)
 *   CRASH_SHIM_COUNT a file the process appends "<rank> <count>\n" to at exit (for planning)
 *
 * Counted: write, pwrite, fsync, fdatasync on a file descriptor whose path is under the
 * directory (a directory's own descriptor included), and mkdir, rename, renameat2, unlink, rmdir
 * of such paths. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long g_count;
static long g_at = -1; /* -1: not configured yet */
static int g_mine;
static char g_dir[PATH_MAX];
static size_t g_dir_len;

static void setup(void)
{
    if (g_at >= 0)
        return;
    const char *d = getenv("CRASH_SHIM_DIR"), *at = getenv("CRASH_SHIM_AT");
    const char *r = getenv("CRASH_SHIM_RANK"), *me = getenv("OMPI_COMM_WORLD_RANK");
    g_at = at ? atol(at) : 0;
    g_mine = me != NULL && (!r || atoi(r) == atoi(me));
    if (d && realpath(d, g_dir))
        g_dir_len = strlen(g_dir);
    else if (d) {
        snprintf(g_dir, sizeof g_dir, "%s", d);
        g_dir_len = strlen(g_dir);
    }
}

static int under(const char *path)
{
    if (!g_dir_len || !path)
        return 0;
    char abs[PATH_MAX];
    if (path[0] != '/') {
        if (!getcwd(abs, sizeof abs))
            return 0;
        size_t n = strlen(abs);
        snprintf(abs + n, sizeof abs - n, "/%s", path);
        path = abs;
    }
    return strncmp(path, g_dir, g_dir_len) == 0 && (path[g_dir_len] == '/' || !path[g_dir_len]);
}

static int fd_under(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return 0;
    path[n] = 0;
    return under(path);
}

/* 1 when this operation is the one to die at. */
static int hit(void)
{
    if (!g_mine)
        return 0;
    g_count++;
    return g_at > 0 && g_count == g_at;
}

static void die(void)
{
    kill(getpid(), SIGKILL);
    for (;;)
        pause();
}

__attribute__((destructor)) static void report(void)
{
    const char *f = getenv("CRASH_SHIM_COUNT"), *me = getenv("OMPI_COMM_WORLD_RANK");
    if (!f || !me)
        return;
    FILE *o = fopen(f, "a");
    if (o) {
        fprintf(o, "%s %ld\n", me, g_count);
        fclose(o);
    }
}

/* The library builds with hidden visibility by default: the interposers must be exported. */
#define SHIM __attribute__((visibility("default")))

typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef int (*fd_fn)(int);
typedef int (*mkdir_fn)(const char *, mode_t);
typedef int (*rename_fn)(const char *, const char *);
typedef int (*renameat2_fn)(int, const char *, int, const char *, unsigned);
typedef int (*path_fn)(const char *);

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name, type)                                                                          \
    static type real_##name;                                                                      \
    if (!real_##name)                                                                             \
    real_##name = (type)dlsym(RTLD_NEXT, #name)

SHIM ssize_t write(int fd, const void *buf, size_t n)
{
    REAL(write, write_fn);
    setup();
    if (g_dir_len && fd > 2 && fd_under(fd) && hit()) {
        if (n > 1)
            real_write(fd, buf, n / 2); /* in the middle of the write */
        die();
    }
    return real_write(fd, buf, n);
}

SHIM ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    REAL(pwrite, pwrite_fn);
    setup();
    if (g_dir_len && fd_under(fd) && hit()) {
        if (n > 1)
            real_pwrite(fd, buf, n / 2, off);
        die();
    }
    return real_pwrite(fd, buf, n, off);
}

SHIM int fsync(int fd)
{
    REAL(fsync, fd_fn);
    setup();
    if (g_dir_len && fd_under(fd) && hit())
        die();
    return real_fsync(fd);
}

SHIM int fdatasync(int fd)
{
    REAL(fdatasync, fd_fn);
    setup();
    if (g_dir_len && fd_under(fd) && hit())
        die();
    return real_fdatasync(fd);
}

SHIM int mkdir(const char *p, mode_t m)
{
    REAL(mkdir, mkdir_fn);
    setup();
    if (under(p) && hit())
        die();
    return real_mkdir(p, m);
}

SHIM int rename(const char *a, const char *b)
{
    REAL(rename, rename_fn);
    setup();
    if ((under(a) || under(b)) && hit())
        die();
    return real_rename(a, b);
}

SHIM int renameat2(int da, const char *a, int db, const char *b, unsigned flags)
{
    REAL(renameat2, renameat2_fn);
    setup();
    if ((under(a) || under(b)) && hit())
        die();
    return real_renameat2(da, a, db, b, flags);
}

SHIM int unlink(const char *p)
{
    REAL(unlink, path_fn);
    setup();
    if (under(p) && hit())
        die();
    return real_unlink(p);
}

SHIM int rmdir(const char *p)
{
    REAL(rmdir, path_fn);
    setup();
    if (under(p) && hit())
        die();
    return real_rmdir(p);
}
