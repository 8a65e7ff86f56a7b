/* bench_ckpt.c — zero-bench-ckpt: zero_save and zero_load against the plain file I/O they are
 * bound by, in the same run, directory and block size.
 *   mpirun -np N zero-bench-ckpt [--mb N] [--dir D] [--rounds R] [--keep]
 *                                [--sysdrop | --no-sysdrop] [--plain-write direct|buffered]
 *                                [--order alternate|fixed]
 *
 * The model: 8 fp32 vectors of Ψ/8 parameters, Ψ = --mb MiB / 12 (a checkpoint holds 12 bytes per
 * parameter: the fp32 master and AdamW's two moments), nonzero init values, one optimizer step on
 * nonzero gradients so the moments are nonzero. Host backend; stage 1 unless ZERO_STAGE says
 * otherwise (every ZERO_* variable applies).
 *
 * A warm-up zero_save (untimed) gives each rank's shard file size and checks the round trip: one
 * more step changes the parameters, zero_load brings back the saved digest, step and user blob.
 * Then each round, in this order (with --order alternate, the default, rounds 2, 4, ... swap
 * each pair: save before write, load before read, so that whatever a disk does to the second of
 * two like operations hits both sides alike; --order fixed keeps this order in every round):
 *   write  every rank write()s the bytes of its shard file (a copy read after the warm-up save)
 *          into a new file in the same directory, in calls of one checkpoint block (3 MiB:
 *          1 Mi elements x 3 arrays x 4 B), then fsync, close (--plain-write direct: whole 4 KiB
 *          multiples through an O_DIRECT descriptor, as zero_save writes, the tail buffered);
 *   save   zero_save into DIR/ckpt (the previous one removed first, outside the timing);
 *   read   every rank preads its plain file in 3 MiB calls;
 *   load   zero_load of DIR/ckpt into the same context.
 * Each is timed between an MPI_Barrier and an MPI_Allreduce MAX of the ranks' elapsed times (so
 * zero_save and zero_load include their collectives and commit). GB/s = bytes / 1e9 / seconds,
 * bytes = the sum of the shard files (rank-*.bin, header included; manifest and user.bin not
 * counted) for all four. Before each read and each load the page cache of every file involved is
 * dropped: fsync + posix_fadvise(POSIX_FADV_DONTNEED) on each file the read involves; mincore()
 * on a mapping of each file then says how much of it is still resident (the "cached" columns);
 * when pages stayed resident (or always with --sysdrop) rank 0 writes 1 to
 * /proc/sys/vm/drop_caches, where it may (see drop_cache). Deleted files are followed by
 * syncfs before the next timed write, so freeing (and discarding) their blocks is not timed.
 * Both timed writes replace a file that is in the page cache (the plain file just read, the
 * checkpoint just loaded; the warm-up writes and reads the plain file once for round 1): on a
 * VM that hands freed guest memory back to the host, writing into pages freed a moment ago is
 * several times faster than into pages freed seconds ago, and an asymmetry there (measured: 0.2
 * against 1-2 s for 1 GiB of write()) would swamp what is compared. Reads have the same
 * asymmetry, the other way round: the plain read's drop frees its own file's pages just before
 * it reads into the page cache again, while the checkpoint, written through O_DIRECT, has none
 * to free. So right before each timed read and load every rank syncs the file system, reads a
 * scratch file (its shard's size and 64 MiB more) and drops it again (recycle): both start with
 * as much page-cache memory just freed as they can use.
 *
 * Then the asynchronous save: 4 optimizer steps without a save, then twice (the first
 * allocates its snapshot buffer, the second reuses it): zero_save_async, 4 steps while the files
 * are written, zero_save_wait; the line before the last gives each call's time (max over
 * ranks), the median steps with and without a save being written, and the time to the commit.
 *
 * Last line: medians and save_ratio (median save GB/s / median write GB/s) and load_ratio (median
 * load / median read). Exit 0 on success, 1 when a call fails or the round trip is wrong, 2 on bad
 * flags. The directory (default: $TMPDIR or /tmp, zero-bench-ckpt.XXXXXX) is created when missing
 * and what the benchmark wrote is removed at the end unless --keep. */
#define _GNU_SOURCE /* syncfs, mincore, nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/ckpt_format.h"
#include "util/clock.h"
#include "zero.h"

#define BENCH_TENSORS 8
#define BENCH_MAX_ROUNDS 100
/* One checkpoint block: ZC_BLOCK_ELEMS elements of each of AdamW's 3 arrays (master, m, v). */
#define BENCH_IO_BYTES ((size_t)ZC_BLOCK_ELEMS * 3 * sizeof(float))

typedef struct options {
    int mb, rounds, keep, sysdrop;
    int plain_direct; /* the plain write goes through O_DIRECT, as zero_save's does */
    int alternate;    /* rounds 2, 4, ...: zero_save before the write, zero_load before the read */
    const char *dir;
} options;

typedef struct round_times {
    double write, save, read, load; /* seconds, max over ranks */
    double read_cached, load_cached; /* fraction of the files' pages resident before the read */
} round_times;

static int g_rank, g_world;
static char g_dir[PATH_MAX];     /* the benchmark's directory */
static char g_ckpt[PATH_MAX + 8]; /* g_dir/ckpt: zero_save's root */
static char g_plain[PATH_MAX + 32]; /* this rank's plain file */
static char g_scratch[PATH_MAX + 32]; /* this rank's scratch file (recycle) */
static int g_made_dir;           /* g_dir was created here: removed at the end */

static void usage(FILE *f)
{
    fprintf(f, "usage: mpirun -np N zero-bench-ckpt [--mb N] [--dir D] [--rounds R] [--keep] "
               "[--sysdrop | --no-sysdrop] [--plain-write direct|buffered]\n"
               "       [--order alternate|fixed]\n"
               "  --mb N        checkpoint payload in MiB over all ranks (default 1024)\n"
               "  --dir D       directory for the checkpoint and the plain files (default: a new\n"
               "                one under $TMPDIR or /tmp); created if missing\n"
               "  --rounds R    rounds of write, save, read, load (default 4)\n"
               "  --order O     alternate (default): rounds 2, 4, ... save before the write and\n"
               "                load before the read; fixed: always write, save, read, load\n"
               "  --keep        leave the files of the last round\n"
               "  --sysdrop     also write 1 to /proc/sys/vm/drop_caches before every read\n"
               "                (default: only when POSIX_FADV_DONTNEED left pages resident)\n"
               "  --no-sysdrop  never write /proc/sys/vm/drop_caches\n"
               "  --plain-write buffered (default): the plain file is written by write() calls;\n"
               "                direct: as zero_save writes its shard, through O_DIRECT where\n"
               "                the file system takes it (a disk whose host caches buffered\n"
               "                writes reads the two kinds of file at different speeds)\n");
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "zero-bench-ckpt: %s %s: expected an integer in [%d, %d]\n", flag, v, lo,
                hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* ---- files ---------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT)
        fprintf(stderr, "zero-bench-ckpt: cannot remove %s: %s\n", path, strerror(errno));
    return 0;
}

static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Touches and frees `bytes` of anonymous memory (outside the timing), before each timed write
 * (what the writes were measured with since 36d471c; it does nothing for a read into the page
 * cache, see recycle). */
static void prefault(size_t bytes)
{
    if (!bytes)
        return;
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                   -1, 0);
    if (p != MAP_FAILED)
        munmap(p, bytes);
}

/* Commits the file system of the benchmark's directory (deletions included). */
static void sync_dir(void)
{
    int fd = open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        syncfs(fd);
        close(fd);
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The bytes the plain write writes: a copy of this rank's shard file from the warm-up save, so
 * the plain file holds exactly the checkpoint's bytes (its first read from this guest's disk
 * depends on the content: a file of one 3 MiB pattern repeated read back 2-3x faster than the
 * shard). NULL: the 3 MiB pattern, repeated. */
static const char *g_content;

/* A new file of `bytes` bytes in write() calls of at most blk bytes, fsynced, closed. direct:
 * the way zero_save writes its shard, whole 4 KiB multiples through an O_DIRECT descriptor (from
 * `aligned`, a 4 KiB-aligned buffer of blk bytes the data is copied into) and the tail through
 * the buffered one; where the file system refuses O_DIRECT, all of it buffered. */
static int plain_write(const char *path, uint64_t bytes, const char *buf, size_t blk, int direct,
                       char *aligned)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int dfd = direct ? open(path, O_WRONLY | O_DIRECT | O_CLOEXEC) : -1;
    int ok = 1;
    for (uint64_t at = 0; ok && at < bytes; at += blk) {
        size_t n = bytes - at < blk ? (size_t)(bytes - at) : blk;
        const char *from = g_content ? g_content + at : buf;
        size_t whole = dfd >= 0 ? n / 4096 * 4096 : 0;
        if (whole) {
            memcpy(aligned, from, whole);
            ssize_t w = pwrite(dfd, aligned, whole, (off_t)at);
            if (w < 0 && errno == EINVAL) { /* refused after all: buffered from here */
                close(dfd);
                dfd = -1;
                whole = 0;
            } else if (w != (ssize_t)whole) {
                ok = 0;
                break;
            }
        }
        if (n > whole) {
            ok = lseek(fd, (off_t)(at + whole), SEEK_SET) >= 0 &&
                 write_all(fd, from + whole, n - whole) == 0;
        }
    }
    if (dfd >= 0)
        close(dfd);
    ok = ok && fsync(fd) == 0;
    int err = errno;
    if (close(fd) != 0)
        ok = 0;
    else
        errno = err;
    return ok ? 0 : -1;
}

/* The whole file in pread() calls of at most blk bytes; -1 on an error or a short file. */
static int plain_read(const char *path, uint64_t bytes, char *buf, size_t blk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint64_t at = 0;
    while (at < bytes) {
        size_t n = bytes - at < blk ? (size_t)(bytes - at) : blk;
        ssize_t r = pread(fd, buf, n, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        at += (uint64_t)r;
    }
    close(fd);
    return at == bytes ? 0 : -1;
}

/* fsync + POSIX_FADV_DONTNEED on one file; 0 or -1. */
static int drop_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int ok = fsync(fd) == 0 && posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
    close(fd);
    return ok ? 0 : -1;
}

/* Reads this rank's scratch file (g_scratch, its shard's size and 64 MiB more) into the page
 * cache and drops it again (outside the timing, before each timed read and load), so the read
 * that follows finds that much page-cache memory freed a moment ago. On a guest whose free
 * memory goes back to its host within seconds (free page reporting: the development machine),
 * a read into the page cache runs 3-4x slower when the memory it takes has gone back (measured:
 * 1 GiB read in 1.5-1.8 s against 0.40-0.48 s right after another file's 1 GiB was dropped;
 * touching and freeing anonymous memory does not do it), and which side of the comparison found
 * memory just freed (its own file dropped before its read) decided the ratio. With this before
 * both reads, both start from the same state. The file system is synced first (syncfs): a load
 * right after the plain write, without it, took 0.73-1.2 s for a first read that took
 * 0.35-0.52 s right after the plain read. bytes: the scratch file's size. 0 or -1. */
static int recycle(char *buf, size_t blk, uint64_t bytes)
{
    sync_dir(); /* what the last timed operation left (metadata, freed blocks) committed first */
    return plain_read(g_scratch, bytes, buf, blk) == 0 && drop_file(g_scratch) == 0 ? 0 : -1;
}

/* Pages of the file resident in the page cache (mincore on a mapping), added to *res and *all. */
static int resident_pages(const char *path, uint64_t *res, uint64_t *all)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    size_t len = (size_t)st.st_size, page = (size_t)sysconf(_SC_PAGESIZE);
    size_t np = (len + page - 1) / page;
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -1;
    unsigned char *vec = malloc(np);
    int rc = -1;
    if (vec && mincore(map, len, vec) == 0) {
        for (size_t i = 0; i < np; i++)
            *res += vec[i] & 1;
        *all += np;
        rc = 0;
    }
    free(vec);
    munmap(map, len);
    return rc;
}

/* rank-RRRRR.bin of this rank in the step directory sd, into buf. */
static const char *shard_path_of(const char *sd, char *buf, size_t n)
{
    snprintf(buf, n, "%s/rank-%05d.bin", sd, g_rank);
    return buf;
}

/* The checkpoint directory zero_save made (the step-* directory in g_ckpt); 0 or -1. */
static int step_dir(char *out, size_t cap)
{
    DIR *d = opendir(g_ckpt);
    if (!d)
        return -1;
    struct dirent *de;
    int found = 0;
    while (!found && (de = readdir(d)) != NULL)
        if (!strncmp(de->d_name, "step-", 5)) {
            snprintf(out, cap, "%s/%s", g_ckpt, de->d_name);
            found = 1;
        }
    closedir(d);
    return found ? 0 : -1;
}

enum { FILES_CKPT = 1, FILES_PLAIN = 2 };

/* Runs fn on every regular file of the checkpoint (FILES_CKPT) and on this rank's plain file
 * (FILES_PLAIN). */
static int for_files(int which, int (*fn)(const char *, void *), void *arg)
{
    char sd[PATH_MAX + 300], p[PATH_MAX + 600];
    int bad = 0;
    if ((which & FILES_CKPT) && step_dir(sd, sizeof sd) == 0) {
        DIR *d = opendir(sd);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL) {
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", sd, de->d_name);
            if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
                bad |= fn(p, arg) != 0;
        }
        if (d)
            closedir(d);
    }
    if ((which & FILES_PLAIN) && access(g_plain, F_OK) == 0)
        bad |= fn(g_plain, arg) != 0;
    return bad ? -1 : 0;
}

static int drop_fn(const char *path, void *arg)
{
    (void)arg;
    return drop_file(path);
}

static int resident_fn(const char *path, void *arg)
{
    uint64_t *c = arg;
    return resident_pages(path, &c[0], &c[1]);
}

static double resident_fraction(int which)
{
    uint64_t c[2] = {0, 0};
    double frac =
        for_files(which, resident_fn, c) != 0 ? -1.0 : c[1] ? (double)c[0] / (double)c[1] : 0.0;
    double worst = 0.0, lowest = 0.0;
    MPI_Allreduce(&frac, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(&frac, &lowest, 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    return lowest < 0 ? -1.0 : worst;
}

/* Drops the page cache of the files `which` (those the next read involves): fsync +
 * POSIX_FADV_DONTNEED on each, then, when mincore still finds pages resident (or cannot tell), or
 * always with --sysdrop, rank 0 writes 1 to /proc/sys/vm/drop_caches (counted in *sys_drops).
 * Not written by default otherwise: it empties the whole machine's page cache, including the
 * plain file the read just cached, so the next round's plain write (which replaces it) would
 * not find the freed pages that zero_save finds when it replaces the loaded checkpoint.
 * Returns the largest fraction of the files' pages still resident on any rank (negative:
 * mincore failed somewhere); *fadvise_ok is cleared when fsync or fadvise failed on a file. */
static double drop_cache(const options *o, int which, int *fadvise_ok, int *sys_drops)
{
    int bad = for_files(which, drop_fn, NULL) != 0, any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_bad)
        *fadvise_ok = 0;
    double frac = resident_fraction(which);
    if (o->sysdrop == 2 || (o->sysdrop == 1 && (frac < 0 || frac > 0.005))) {
        int wrote = 0;
        if (g_rank == 0) {
            sync();
            int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
            if (fd >= 0) {
                wrote = write(fd, "1", 1) == 1;
                close(fd);
            }
        }
        MPI_Bcast(&wrote, 1, MPI_INT, 0, MPI_COMM_WORLD);
        *sys_drops += wrote;
        frac = resident_fraction(which);
    }
    return frac;
}

/* Removes what the benchmark wrote (not with --keep). Every rank calls it; collective: a barrier
 * first, so that rank 0 removes the directory after every plain file is gone. */
static void cleanup(const options *o, int collective)
{
    unlink(g_scratch); /* not one of the files --keep keeps */
    if (o->keep)
        return;
    unlink(g_plain);
    if (collective)
        MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        rm_tree(g_ckpt);
        if (g_made_dir)
            rmdir(g_dir);
    }
}

/* ---- the model ------------------------------------------------------------------------------ */

/* Deterministic nonzero values in about [-scale, scale]. */
static void fill(float *x, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        float u = (float)(s >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
        float v = (2.0f * u - 1.0f) * scale;
        x[i] = v >= 0 ? v + 1e-3f * scale : v - 1e-3f * scale;
    }
}

/* One optimizer step on nonzero gradients, written module by module in backward order. */
static zero_status train_step(zero_ctx *z, size_t per, float *src, uint64_t seed)
{
    zero_dtype dt = zero_get_config(z)->dtype;
    for (int i = BENCH_TENSORS - 1; i >= 0; i--) {
        void *g = zero_grad_ptr(z, i);
        if (!g)
            return ZERO_ERR_INTERNAL;
        fill(src, per, seed * 1000 + (uint64_t)i, 0.01f);
        zero_accumulate(g, dt, src, per);
        zero_status s = zero_grad_ready(z, i);
        if (s)
            return s;
    }
    return zero_step(z);
}

static void die(zero_ctx *z, const options *o, const char *what, zero_status s)
{
    fprintf(stderr, "zero-bench-ckpt: rank %d: %s: %s%s%s\n", g_rank, what,
            s ? zero_status_string(s) : strerror(errno), z && s ? ": " : "",
            z && s ? zero_last_error(z) : "");
    cleanup(o, 0);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static double max_time(double t)
{
    double m = 0;
    MPI_Allreduce(&t, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    options o = {.mb = 1024, .rounds = 4, .keep = 0, .sysdrop = 1, .plain_direct = 0,
                 .alternate = 1, .dir = NULL};
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            if (g_rank == 0)
                usage(stdout);
            MPI_Finalize();
            return 0;
        } else if (!strcmp(a, "--keep"))
            o.keep = 1;
        else if (!strcmp(a, "--no-sysdrop"))
            o.sysdrop = 0;
        else if (!strcmp(a, "--sysdrop"))
            o.sysdrop = 2;
        else if (strcmp(a, "--mb") && strcmp(a, "--rounds") && strcmp(a, "--dir") &&
                 strcmp(a, "--plain-write") && strcmp(a, "--order")) {
            bad = 1;
            if (g_rank == 0)
                fprintf(stderr, "zero-bench-ckpt: unknown option %s\n", a);
        } else if (!v) {
            bad = 1;
            if (g_rank == 0)
                fprintf(stderr, "zero-bench-ckpt: %s needs a value\n", a);
        } else if (!strcmp(a, "--mb"))
            bad = parse_int(a, argv[++i], 1, 1 << 20, &o.mb) != 0;
        else if (!strcmp(a, "--rounds"))
            bad = parse_int(a, argv[++i], 1, BENCH_MAX_ROUNDS, &o.rounds) != 0;
        else if (!strcmp(a, "--plain-write")) {
            const char *m = argv[++i];
            if (!strcmp(m, "direct") || !strcmp(m, "buffered")) {
                o.plain_direct = !strcmp(m, "direct");
            } else {
                bad = 1;
                if (g_rank == 0)
                    fprintf(stderr, "zero-bench-ckpt: --plain-write %s: expected direct or "
                                    "buffered\n", m);
            }
        } else if (!strcmp(a, "--order")) {
            const char *m = argv[++i];
            if (!strcmp(m, "alternate") || !strcmp(m, "fixed")) {
                o.alternate = !strcmp(m, "alternate");
            } else {
                bad = 1;
                if (g_rank == 0)
                    fprintf(stderr, "zero-bench-ckpt: --order %s: expected alternate or fixed\n",
                            m);
            }
        } else
            o.dir = argv[++i];
    }
    if (bad) {
        if (g_rank == 0)
            usage(stderr);
        MPI_Finalize();
        return 2;
    }

    /* the directory: rank 0 makes it, every rank learns its path */
    int ok = 1;
    if (g_rank == 0) {
        if (o.dir) {
            snprintf(g_dir, sizeof g_dir, "%s", o.dir);
            if (mkdir(g_dir, 0755) == 0)
                g_made_dir = 1;
            else if (errno != EEXIST)
                ok = 0;
        } else {
            const char *t = getenv("TMPDIR");
            snprintf(g_dir, sizeof g_dir, "%s/zero-bench-ckpt.XXXXXX", t && *t ? t : "/tmp");
            ok = mkdtemp(g_dir) != NULL;
            g_made_dir = ok;
        }
        if (!ok)
            fprintf(stderr, "zero-bench-ckpt: cannot create %s: %s\n", g_dir, strerror(errno));
    }
    MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Bcast(g_dir, sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (!ok) {
        MPI_Finalize();
        return 1;
    }
    snprintf(g_ckpt, sizeof g_ckpt, "%s/ckpt", g_dir);
    snprintf(g_plain, sizeof g_plain, "%s/plain-%05d.bin", g_dir, g_rank);
    snprintf(g_scratch, sizeof g_scratch, "%s/scratch-%05d.bin", g_dir, g_rank);

    /* the model: 8 vectors, 12 bytes of checkpoint per parameter */
    const uint64_t psi_want = ((uint64_t)o.mb << 20) / 12;
    const size_t per = (size_t)((psi_want + BENCH_TENSORS - 1) / BENCH_TENSORS);
    float *init = malloc(per * sizeof *init), *src = malloc(per * sizeof *src);
    char *iobuf = malloc(BENCH_IO_BYTES), *dbuf = NULL;
    if (posix_memalign((void **)&dbuf, 4096, BENCH_IO_BYTES) != 0)
        dbuf = NULL;
    if (!init || !src || !iobuf || !dbuf)
        die(NULL, &o, "out of host memory", ZERO_OK);
    zero_tensor t[BENCH_TENSORS];
    char names[BENCH_TENSORS][32];
    for (int i = 0; i < BENCH_TENSORS; i++) {
        snprintf(names[i], sizeof names[i], "layer%d.weight", i);
        t[i] = (zero_tensor){.name = names[i], .numel = per, .module = i, .init = init};
    }
    fill(init, per, 7, 0.05f); /* rank 0's are used; the same everywhere anyway */
    for (size_t i = 0; i < BENCH_IO_BYTES; i++)
        iobuf[i] = (char)(i * 2654435761u >> 13);

    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.stage = 1;
    cfg.device = ZERO_DEVICE_HOST;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, t, BENCH_TENSORS);
    if (s) {
        fprintf(stderr, "zero-bench-ckpt: zero_init: %s: %s\n", zero_status_string(s),
                zero_init_error());
        cleanup(&o, 1);
        MPI_Finalize();
        return 1;
    }
    free(init);
    const zero_config *rc = zero_get_config(z);
    if ((s = train_step(z, per, src, 1)))
        die(z, &o, "the first step", s);

    /* warm-up save: the shard sizes, and the round trip checked */
    unsigned char user[64], back[64];
    for (int i = 0; i < 64; i++)
        user[i] = (unsigned char)(i * 37 + 11);
    uint64_t digest_saved = 0, digest_moved = 0, digest_loaded = 0;
    if ((s = zero_param_digest(z, &digest_saved)))
        die(z, &o, "zero_param_digest", s);
    if ((s = zero_save(z, g_ckpt, user, sizeof user)))
        die(z, &o, "warm-up zero_save", s);
    char sd[PATH_MAX + 300], shard[PATH_MAX + 600];
    struct stat st;
    if (step_dir(sd, sizeof sd) != 0)
        die(z, &o, "no step-* directory after zero_save", ZERO_OK);
    snprintf(shard, sizeof shard, "%s/rank-%05d.bin", sd, g_rank);
    if (stat(shard, &st) != 0)
        die(z, &o, shard, ZERO_OK);
    const uint64_t my_bytes = (uint64_t)st.st_size;
    uint64_t total_bytes = 0, meta_bytes = 0;
    MPI_Allreduce(&my_bytes, &total_bytes, 1, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD);
    if (g_rank == 0) {
        const char *other[2] = {ZC_MANIFEST, ZC_USER_FILE};
        for (int k = 0; k < 2; k++) {
            snprintf(shard, sizeof shard, "%s/%s", sd, other[k]);
            if (stat(shard, &st) == 0)
                meta_bytes += (uint64_t)st.st_size;
        }
    }
    /* the scratch file recycle() reads and drops: the shard's size and 64 MiB more, from iobuf
     * (written before g_content is set: plain_write takes its bytes from g_content when set,
     * which holds only my_bytes) */
    const uint64_t scratch_bytes = my_bytes + ((uint64_t)64 << 20);
    unlink(g_scratch);
    if (plain_write(g_scratch, scratch_bytes, iobuf, BENCH_IO_BYTES, 0, dbuf) != 0 ||
        drop_file(g_scratch) != 0)
        die(z, &o, g_scratch, ZERO_OK);
    /* the plain file's content: this rank's shard, read once */
    char *content = malloc((size_t)my_bytes);
    {
        int cfd = open(shard_path_of(sd, shard, sizeof shard), O_RDONLY | O_CLOEXEC);
        if (!content || cfd < 0 || pread(cfd, content, (size_t)my_bytes, 0) != (ssize_t)my_bytes)
            die(z, &o, "reading the warm-up shard for the plain file's content", ZERO_OK);
        close(cfd);
        g_content = content;
    }
    /* the plain file once, untimed: both sides start each round from the same page-cache state
     * (the file a timed write replaces was just read or written, so it is cached) */
    unlink(g_plain);
    if (plain_write(g_plain, my_bytes, iobuf, BENCH_IO_BYTES, o.plain_direct, dbuf) != 0 ||
        plain_read(g_plain, my_bytes, iobuf, BENCH_IO_BYTES) != 0)
        die(z, &o, g_plain, ZERO_OK);
    if ((s = train_step(z, per, src, 2)) || (s = zero_param_digest(z, &digest_moved)))
        die(z, &o, "the second step", s);
    size_t back_len = 0;
    if ((s = zero_load(z, g_ckpt, back, sizeof back, &back_len)))
        die(z, &o, "warm-up zero_load", s);
    zero_step_info info;
    if ((s = zero_param_digest(z, &digest_loaded)) || (s = zero_last_step(z, &info)))
        die(z, &o, "after zero_load", s);
    int roundtrip = digest_loaded == digest_saved && digest_moved != digest_saved &&
                    info.step == 1 && back_len == sizeof user && !memcmp(back, user, sizeof user);

    if (g_rank == 0) {
        printf("zero-bench-ckpt: np %d, %d MiB payload: %zu parameters in %d tensors of %zu, "
               "stage %d, %s, host backend\n",
               g_world, o.mb, per * BENCH_TENSORS, BENCH_TENSORS, per, rc->stage,
               rc->dtype == ZERO_DTYPE_FP32   ? "fp32"
               : rc->dtype == ZERO_DTYPE_BF16 ? "bf16"
                                              : "fp16");
        printf("dir %s; shard files %" PRIu64 " bytes in %d (+ manifest and user.bin %" PRIu64
               " bytes, not counted); plain I/O in calls of %zu bytes, the plain write %s\n",
               g_dir, total_bytes, g_world, meta_bytes, BENCH_IO_BYTES,
               o.plain_direct ? "through O_DIRECT as zero_save's (--plain-write direct)"
                              : "buffered (--plain-write buffered)");
        printf("round trip (save, step, load): %s (digest %016" PRIx64 ", step %lld)\n",
               roundtrip ? "ok" : "WRONG", digest_loaded, (long long)info.step);
        printf("\n| round | first | write s | write GB/s | save s | save GB/s | read s | "
               "read GB/s | cached | load s | load GB/s | cached |\n"
               "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        fflush(stdout);
    }

    const size_t warm = (size_t)scratch_bytes; /* each side's need, and some */
    round_times rt[BENCH_MAX_ROUNDS];
    int fadvise_ok = 1, sys_drops = 0;
    double cached_worst = 0.0;
    const double gb = (double)total_bytes / 1e9;
    for (int r = 0; r < o.rounds; r++) {
        round_times *x = &rt[r];
        /* rounds 1, 3, ...: the plain side first; rounds 2, 4, ...: zero's side first (--order
         * alternate, the default): whatever the disk or the host does to the second of two
         * like operations hits both sides alike */
        const int zero_first = o.alternate && r % 2 == 1;
        for (int k = 0; k < 4; k++) {
            const int write_phase = k < 2, plain = (k % 2 == 0) != zero_first;
            double t0;
            if (write_phase && plain) { /* plain write into a new file */
                unlink(g_plain);
                sync_dir();
                prefault(warm);
                MPI_Barrier(MPI_COMM_WORLD);
                t0 = zr_now();
                if (plain_write(g_plain, my_bytes, iobuf, BENCH_IO_BYTES, o.plain_direct,
                                dbuf) != 0)
                    die(z, &o, g_plain, ZERO_OK);
                x->write = max_time(zr_now() - t0);
            } else if (write_phase) { /* zero_save into an empty root */
                if (g_rank == 0)
                    rm_tree(g_ckpt);
                sync_dir();
                prefault(warm);
                MPI_Barrier(MPI_COMM_WORLD);
                t0 = zr_now();
                s = zero_save(z, g_ckpt, user, sizeof user);
                x->save = max_time(zr_now() - t0);
                if (s)
                    die(z, &o, "zero_save", s);
            } else if (plain) { /* plain read from disk */
                x->read_cached = drop_cache(&o, FILES_PLAIN, &fadvise_ok, &sys_drops);
                if (recycle(iobuf, BENCH_IO_BYTES, scratch_bytes) != 0)
                    die(z, &o, "recycle (reading the scratch file)", ZERO_OK);
                MPI_Barrier(MPI_COMM_WORLD);
                t0 = zr_now();
                if (plain_read(g_plain, my_bytes, iobuf, BENCH_IO_BYTES) != 0)
                    die(z, &o, g_plain, ZERO_OK);
                x->read = max_time(zr_now() - t0);
            } else { /* zero_load from disk */
                x->load_cached = drop_cache(&o, FILES_CKPT, &fadvise_ok, &sys_drops);
                if (recycle(iobuf, BENCH_IO_BYTES, scratch_bytes) != 0)
                    die(z, &o, "recycle (reading the scratch file)", ZERO_OK);
                MPI_Barrier(MPI_COMM_WORLD);
                t0 = zr_now();
                s = zero_load(z, g_ckpt, back, sizeof back, &back_len);
                x->load = max_time(zr_now() - t0);
                if (s)
                    die(z, &o, "zero_load", s);
            }
        }
        for (int k = 0; k < 2; k++) {
            double c = k ? x->load_cached : x->read_cached;
            cached_worst = c < 0 || cached_worst < 0 ? -1.0 : c > cached_worst ? c : cached_worst;
        }
        if (g_rank == 0) {
            char c1[16], c2[16];
            snprintf(c1, sizeof c1, x->read_cached < 0 ? "?" : "%.1f%%", 100 * x->read_cached);
            snprintf(c2, sizeof c2, x->load_cached < 0 ? "?" : "%.1f%%", 100 * x->load_cached);
            printf("| %d | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %.3f | %.3f | "
                   "%s |\n",
                   r + 1, zero_first ? "zero" : "plain", x->write, gb / x->write, x->save,
                   gb / x->save, x->read, gb / x->read, c1, x->load, gb / x->load, c2);
            fflush(stdout);
        }
    }

    /* the asynchronous save, twice (the first allocates its snapshot buffer, the second reuses
     * it): what training waits for (zero_save_async), the steps taken while the files are
     * written against steps without, what zero_save_wait waits */
    enum { ASYNC_STEPS = 4, ASYNC_SAVES = 2 };
    double base_step[ASYNC_STEPS], busy_step[ASYNC_SAVES][ASYNC_STEPS];
    double t_async[ASYNC_SAVES], t_wait[ASYNC_SAVES], t_total[ASYNC_SAVES];
    for (int k = 0; k < ASYNC_STEPS; k++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = zr_now();
        if ((s = train_step(z, per, src, 10 + (uint64_t)k)))
            die(z, &o, "a step before the asynchronous save", s);
        base_step[k] = max_time(zr_now() - t0);
    }
    for (int n = 0; n < ASYNC_SAVES; n++) {
        if (g_rank == 0)
            rm_tree(g_ckpt);
        sync_dir();
        prefault(warm);
        MPI_Barrier(MPI_COMM_WORLD);
        double ta = zr_now();
        if ((s = zero_save_async(z, g_ckpt, user, sizeof user)))
            die(z, &o, "zero_save_async", s);
        t_async[n] = max_time(zr_now() - ta);
        for (int k = 0; k < ASYNC_STEPS; k++) {
            double t0 = zr_now();
            if ((s = train_step(z, per, src, 20 + (uint64_t)k)))
                die(z, &o, "a step during the asynchronous save", s);
            busy_step[n][k] = max_time(zr_now() - t0);
        }
        double tw = zr_now();
        if ((s = zero_save_wait(z)))
            die(z, &o, "zero_save_wait", s);
        t_wait[n] = max_time(zr_now() - tw);
        t_total[n] = max_time(zr_now() - ta);
    }

    double w[BENCH_MAX_ROUNDS], sv[BENCH_MAX_ROUNDS], rd[BENCH_MAX_ROUNDS], ld[BENCH_MAX_ROUNDS];
    for (int r = 0; r < o.rounds; r++) {
        w[r] = gb / rt[r].write;
        sv[r] = gb / rt[r].save;
        rd[r] = gb / rt[r].read;
        ld[r] = gb / rt[r].load;
    }
    double mw = median(w, o.rounds), ms = median(sv, o.rounds), mr = median(rd, o.rounds),
           ml = median(ld, o.rounds);
    if (g_rank == 0) {
        printf("| median | | | %.3f | | %.3f | | %.3f | | | %.3f | |\n\n", mw, ms, mr, ml);
        int writable = access("/proc/sys/vm/drop_caches", W_OK) == 0;
        printf("page cache before each read and load: fsync + POSIX_FADV_DONTNEED on each file it "
               "reads%s; /proc/sys/vm/drop_caches %s, written %d times (%s); ",
               fadvise_ok ? "" : " (FAILED on some file)", writable ? "writable" : "not writable",
               sys_drops,
               o.sysdrop == 2 ? "--sysdrop: before every read"
               : o.sysdrop ? "only when pages stayed resident"
                           : "--no-sysdrop");
        if (cached_worst < 0)
            printf("residency not verified (mincore failed)\n");
        else
            printf("mincore after the drop: at most %.1f%% of the files' pages resident, so the "
                   "reads are %s\n",
                   100 * cached_worst, cached_worst <= 0.005 ? "from disk" : "PARTLY FROM CACHE");
        double save_s[BENCH_MAX_ROUNDS];
        for (int r = 0; r < o.rounds; r++)
            save_s[r] = rt[r].save;
        printf("asynchronous save (zero_save took %.3f s; a step %.3f s without a save):",
               median(save_s, o.rounds), median(base_step, ASYNC_STEPS));
        for (int n = 0; n < ASYNC_SAVES; n++)
            printf("%s zero_save_async %.3f s (%s), %d steps during the write %.3f s each "
                   "(median), zero_save_wait waited %.3f s, %.3f s to the commit",
                   n ? ";" : "", t_async[n], n ? "its buffer reused" : "its buffer new",
                   ASYNC_STEPS, median(busy_step[n], ASYNC_STEPS), t_wait[n], t_total[n]);
        printf("\n");
        printf("zero-bench-ckpt: np %d, %d MiB, save %.3f GB/s write %.3f GB/s read %.3f GB/s "
               "load %.3f GB/s save_ratio=%.2f load_ratio=%.2f\n",
               g_world, o.mb, ms, mw, mr, ml, ms / mw, ml / mr);
        fflush(stdout);
    }
    free(src);
    free(iobuf);
    free(dbuf);
    g_content = NULL;
    free(content);
    s = zero_finalize(z);
    cleanup(&o, 1);
    MPI_Finalize();
    return roundtrip && !s ? 0 : 1;
}
