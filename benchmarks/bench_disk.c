/* bench_disk.c — zero-bench-disk: how fast a file's first read from disk is, by the way it was
 * written. No libzero, no MPI: the file-system facts the checkpoint benchmark (zero-bench-ckpt)
 * runs into, measured on their own.
 *   zero-bench-disk [--mb N] [--dir D] [--rounds R]
 *
 * Each round writes two files of N MiB (default 1024) in 8 MiB calls, each then fsynced:
 * buffered.bin by plain write() calls, direct.bin through O_DIRECT (as zero_save writes its
 * shard). Then, each time after fsync + POSIX_FADV_DONTNEED on the file (mincore() on a mapping
 * prints how much of it stayed resident), it reads them in 3 MiB pread() calls (as zero_load and
 * zero-bench-ckpt's plain read do), in this order:
 *   buffered.bin; direct.bin; direct.bin again;
 *   direct.bin rewritten, then read with POSIX_FADV_WILLNEED over the whole file first;
 *   buffered.bin again.
 * A line per write and read: MB/s (1e6 bytes per second). On a machine whose disk is a file on a
 * host that caches what its guest writes buffered (a virtual machine), the first read of a file
 * written through O_DIRECT can be several times slower than that of a file written buffered, and
 * a second read of it fast: that is the host's cache, which no call in the guest drops. Exit 0,
 * 1 on an I/O error, 2 on bad flags. The files are removed at the end. */
#define _GNU_SOURCE /* O_DIRECT, syncfs */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { WRITE_CALL = 8 << 20, READ_CALL = 3 << 20 };

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static size_t g_bytes;

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "zero-bench-disk: %s %s: %s\n", what, path, strerror(errno));
    return -1;
}

static int write_file(const char *path, int direct, const char *buf)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0), 0644);
    if (fd < 0)
        return fail(direct ? "cannot open with O_DIRECT" : "cannot create", path);
    double t0 = now_s();
    for (size_t at = 0; at < g_bytes; at += WRITE_CALL) {
        size_t n = g_bytes - at < WRITE_CALL ? g_bytes - at : WRITE_CALL;
        if (pwrite(fd, buf, n, (off_t)at) != (ssize_t)n) {
            close(fd);
            return fail("writing", path);
        }
    }
    if (fsync(fd) != 0) {
        close(fd);
        return fail("fsync of", path);
    }
    close(fd);
    printf("write %-12s %-9s %8.0f MB/s\n", strrchr(path, '/') + 1,
           direct ? "O_DIRECT" : "buffered", (double)g_bytes / (now_s() - t0) / 1e6);
    return 0;
}

/* fsync + POSIX_FADV_DONTNEED; the fraction of the file's pages still resident after it. */
static double drop(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1.0;
    fsync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    double frac = -1.0;
    void *m = mmap(NULL, g_bytes, PROT_READ, MAP_SHARED, fd, 0);
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (g_bytes + (size_t)page - 1) / (size_t)page;
    unsigned char *v = malloc(pages);
    if (m != MAP_FAILED && v && mincore(m, g_bytes, v) == 0) {
        size_t in = 0;
        for (size_t i = 0; i < pages; i++)
            in += v[i] & 1;
        frac = (double)in / (double)pages;
    }
    free(v);
    if (m != MAP_FAILED)
        munmap(m, g_bytes);
    close(fd);
    return frac;
}

static int read_file(const char *path, int willneed, char *buf, const char *note)
{
    double resident = drop(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("cannot open", path);
    double t0 = now_s();
    if (willneed)
        posix_fadvise(fd, 0, (off_t)g_bytes, POSIX_FADV_WILLNEED);
    for (size_t at = 0; at < g_bytes;) {
        ssize_t r = pread(fd, buf, READ_CALL, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return fail("reading", path);
        }
        at += (size_t)r;
    }
    double t = now_s() - t0;
    close(fd);
    printf("read  %-12s %-9s %8.0f MB/s   (%s; %.1f%% resident before)\n",
           strrchr(path, '/') + 1, willneed ? "WILLNEED" : "", (double)g_bytes / t / 1e6, note,
           100.0 * resident);
    return 0;
}

int main(int argc, char **argv)
{
    long mb = 1024, rounds = 2;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help")) {
            printf("usage: zero-bench-disk [--mb N] [--dir D] [--rounds R]\n");
            return 0;
        }
        if (!v || (strcmp(a, "--mb") && strcmp(a, "--dir") && strcmp(a, "--rounds"))) {
            fprintf(stderr, "zero-bench-disk: %s: expected --mb N, --dir D or --rounds R\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--dir")) {
            dir = v;
            continue;
        }
        long x = strtol(v, &end, 10);
        if (!*v || *end || x < 1 || x > (1L << 20)) {
            fprintf(stderr, "zero-bench-disk: %s %s: expected an integer from 1 to 1048576\n", a,
                    v);
            return 2;
        }
        *(!strcmp(a, "--mb") ? &mb : &rounds) = x;
    }
    g_bytes = (size_t)mb << 20;
    char made[4096], b[4200], d[4200];
    if (!dir) {
        const char *t = getenv("TMPDIR");
        snprintf(made, sizeof made, "%s/zero-bench-disk.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(made)) {
            fail("cannot create", made);
            return 1;
        }
        dir = made;
    }
    snprintf(b, sizeof b, "%s/buffered.bin", dir);
    snprintf(d, sizeof d, "%s/direct.bin", dir);
    char *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, WRITE_CALL) != 0)
        return 1;
    for (size_t i = 0; i < WRITE_CALL; i++) /* not a pattern a disk could compress */
        buf[i] = (char)((i * 2654435761u) >> 13);
    printf("zero-bench-disk: %ld MiB files in %s, %ld round%s\n", mb, dir, rounds,
           rounds == 1 ? "" : "s");
    int rc = 0;
    for (long r = 0; r < rounds && !rc; r++) {
        printf("round %ld\n", r + 1);
        rc = write_file(b, 0, buf) || write_file(d, 1, buf) ||
             read_file(b, 0, buf, "first read") || read_file(d, 0, buf, "first read") ||
             read_file(d, 0, buf, "second read") || write_file(d, 1, buf) ||
             read_file(d, 1, buf, "first read") || read_file(b, 0, buf, "second read");
    }
    unlink(b);
    unlink(d);
    if (dir == made)
        rmdir(made);
    free(buf);
    return rc ? 1 : 0;
}
