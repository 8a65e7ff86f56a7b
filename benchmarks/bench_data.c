/* bench_data.c — zero-bench-data: the token loader (zero_data_*) against a plain read of the same
 * files, and how much of an artificial loader delay a GPT-2 step hides with prefetch.
 *   zero-bench-data [--mb N] [--files K] [--batch B] [--seq T] [--dir D] [--keep]
 *                   [--delay-ms D] [--repeat R] [--skip-gpt2]
 *   (a world of one without mpirun, or mpirun -np N zero-bench-data ...)
 *
 * Part 1, read_ratio. Rank 0 writes K llm.c token files (256 little-endian int32 header: magic
 * 20240520, version 1, token count; then uint16 tokens, uniform in [0, 50257)), --mb MiB in all,
 * into --dir, fsynced so that no writeback runs during the timings. Every rank then reads every
 * file once (warm-up; mincore() says how much of them is resident). Then 3 rounds of, in this
 * order:
 *   plain   every rank read()s its slice of every file (rank r: bytes [S r / N, S (r+1) / N) of a
 *           file of S bytes; the whole files in a world of one) in 1 MiB calls into one buffer
 *           (which stays in the L2 cache: this is the kernel's copy out of the page cache);
 *   loader  for ZERO_DATA_IO = mmap, then pread (a context of its own each: the variable is read
 *           at zero_init), with prefetch 2, 8 and 0, each with the int32 output (inputs and
 *           targets) and the window output (uint16 rows of T + 1): zero_data_open (not timed;
 *           shuffle on, verify off, vocab 50257, delay 0; a fresh mapping, so the epoch pays
 *           its page faults), then one epoch of zero_data_next calls: E = W / (B N) batches per
 *           rank, W the loader's windows per epoch (sum over the files of (tokens - 1) / T), N
 *           ranks. The caller does nothing with a batch but look at one token, so it is always
 *           waiting for the loader: with prefetch the loader's thread and the caller (which
 *           prepares the batches the thread has not claimed) both read;
 *   in order  mmap, prefetch 0, shuffle off: printed, not counted, to tell the cost of reading
 *           the windows in a random order from the cost of the loader's own work.
 * Each is timed from an MPI_Barrier to an MPI_Allreduce MAX of the ranks' seconds; each config's
 * best (shortest) round counts. Bytes per second:
 *   plain   the files' bytes (headers included) / s;
 *   loader  E B N (T + 1) 2 / s: the token bytes the loader takes out of the files. A window is
 *           T + 1 tokens (inputs 0..T-1, targets 1..T), so an epoch delivers (T + 1) / T times
 *           the files' token bytes; tokens/s is printed as E B N T / s (the tokens a model
 *           trains on).
 * read_ratio = the best loader config's bytes/s / the plain read's bytes/s (the config is named;
 * the last line also gives the best int32-output config's ratio, read_ratio_int32).
 * Both sides read from the page cache: this measures what the loader adds to a copy, not a disk.
 * Per batch the table also gives rank 0's seconds in the loader's preparation (busy: the window
 * lookups, reads and int32 conversion) and inside zero_data_next (wait), from zero_data_get_info.
 *
 * Part 2, hidden_ratio (rank 0 only; the other ranks wait without spinning). zero-gpt2 from this
 * executable's directory runs as a child process, a world of one, on its bundled corpus, with
 * GPT2_ARGS below and --data-delay-ms D; ZERO_DATA_PREFETCH=2 (on) or 0 (off) in its environment,
 * which is otherwise this process's less the MPI launcher's variables (and, with more than one
 * rank, less OMP_NUM_THREADS and OPENBLAS_NUM_THREADS, split for the ranks); it may use every
 * core this process may (a launcher's binding is lifted for it). Its last line "step time:
 * median X ms, mean Y ms over N steps | data: waited W s, ..." (the steps after the first two)
 * gives the step time and the seconds its zero_data_next waited. Two first runs with D = 0 and
 * prefetch on calibrate: D = half the smaller median (rounded to a ms) unless --delay-ms.
 * Then --repeat rounds of (0, on), (D, on), (0, off), (D, off), the order reversed in every other
 * round; each config's minimum of its medians counts.
 *   hidden_ratio = step(D, on) / step(0, on)       (1 = the delay is hidden entirely)
 *   growth_off   = step(D, off) - step(0, off)     (without prefetch the step should grow by D)
 *
 * Last line: "read_ratio=R hidden_ratio=H" and then the numbers behind them (hidden_ratio=nan
 * with --skip-gpt2). Exit 0 when everything was measured, 1 when a call or a child failed, 2 on
 * bad flags. The directory (default: a new zero-bench-data.XXXXXX under $TMPDIR or /tmp) is
 * removed with the files unless --keep; an existing --dir keeps everything but the files. */
#define _GNU_SOURCE /* mkdtemp, mincore */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/tokfile.h"
#include "util/clock.h"
#include "zero.h"

extern char **environ;

#define ROUNDS 3                   /* of part 1; the best counts */
#define IO_BYTES ((size_t)1 << 20) /* the plain read's call size, and the writer's */
#define VOCAB 50257                /* GPT-2's: the files' tokens are below it */
#define MAX_FILES 1024
#define CHILD_TIMEOUT_S 600

/* The GPT-2 of part 2: 65-70 ms a step on the development machine (2 cores, both OpenMP threads
 * of the one rank), so half a step is a delay of tens of ms, well above timer and scheduler
 * noise, and the nine runs take about half a minute. The bundled corpus is bytes (vocabulary
 * 256): part 1's files are not for it. */
static const char *const GPT2_ARGS[] = {"--layers", "3",     "--dim",   "128", "--heads",
                                        "4",        "--seq", "128",     "--batch", "16",
                                        "--steps",  "40",    "--quiet"};
#define GPT2_NARGS ((int)(sizeof GPT2_ARGS / sizeof GPT2_ARGS[0]))

typedef struct options {
    int mb, files, batch, seq, repeat, keep, skip_gpt2;
    double delay_ms; /* < 0: half the faster calibration run's step */
    const char *dir;
} options;

static int g_rank, g_world;
static char g_dir[PATH_MAX];
static int g_made_dir; /* g_dir was created here: removed at the end unless --keep */
static char **g_paths; /* [files] */
static int g_nfiles;
static uint64_t *g_sizes; /* bytes of each file */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: zero-bench-data [options]   (or mpirun -np N zero-bench-data [options])\n"
            "Part 1: zero_data_next over one epoch against read() of the same token files from\n"
            "the page cache (read_ratio). Part 2: zero-gpt2's step time with an artificial loader\n"
            "delay, prefetch on and off (hidden_ratio).\n"
            "  --mb N        MiB of token files in all (default 256)\n"
            "  --files K     number of token files (default 4)\n"
            "  --batch B     loader sequences per rank per batch (default 32)\n"
            "  --seq T       loader tokens per sequence; a window reads T + 1 (default 1024)\n"
            "  --dir D       where the files go (default: a new zero-bench-data.XXXXXX under\n"
            "                $TMPDIR or /tmp); created if missing\n"
            "  --keep        leave the files (and a directory made here)\n"
            "  --delay-ms D  part 2's loader delay per batch (default: half the step time of the\n"
            "                faster of two calibration runs without delay)\n"
            "  --repeat R    rounds of part 2's four runs; the minimum counts (default 2)\n"
            "  --skip-gpt2   only part 1 (the last line then says hidden_ratio=nan)\n"
            "  --help        this text\n"
            "Last line: read_ratio=R hidden_ratio=H and the numbers behind them.\n"
            "Exit status: 0 measured, 1 a failure, 2 bad options.\n");
}

static int parse_int(const char *flag, const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "zero-bench-data: %s %s: expected an integer from %ld to %ld\n", flag, v,
                lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* 0, 1 for --help, -1 for a bad command line (message printed). */
static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help"))
            return 1;
        if (!strcmp(a, "--keep")) {
            o->keep = 1;
            continue;
        }
        if (!strcmp(a, "--skip-gpt2")) {
            o->skip_gpt2 = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int known = !strcmp(a, "--mb") || !strcmp(a, "--files") || !strcmp(a, "--batch") ||
                    !strcmp(a, "--seq") || !strcmp(a, "--dir") || !strcmp(a, "--delay-ms") ||
                    !strcmp(a, "--repeat");
        if (!known) {
            fprintf(stderr, "zero-bench-data: unknown option %s\n", a);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "zero-bench-data: %s needs a value\n", a);
            return -1;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--mb"))
            bad = parse_int(a, v, 1, 1 << 20, &o->mb);
        else if (!strcmp(a, "--files"))
            bad = parse_int(a, v, 1, MAX_FILES, &o->files);
        else if (!strcmp(a, "--batch"))
            bad = parse_int(a, v, 1, 1 << 16, &o->batch);
        else if (!strcmp(a, "--seq"))
            bad = parse_int(a, v, 1, 1 << 24, &o->seq);
        else if (!strcmp(a, "--repeat"))
            bad = parse_int(a, v, 1, 100, &o->repeat);
        else if (!strcmp(a, "--dir")) {
            o->dir = v;
            /* the loader gets the files as a ',' list of literal paths (zt_expand's rules) */
            if (!*v || strpbrk(v, ",*?[")) {
                fprintf(stderr, "zero-bench-data: --dir '%s': must be a path without ',', '*', "
                                "'?' or '['\n", v);
                bad = -1;
            }
        } else {
            char *end;
            errno = 0;
            o->delay_ms = strtod(v, &end);
            if (!*v || *end || errno || !(o->delay_ms >= 0.0 && o->delay_ms <= 60000.0)) {
                fprintf(stderr, "zero-bench-data: --delay-ms %s: expected a number of ms from 0 "
                                "to 60000\n", v);
                bad = -1;
            }
        }
        if (bad)
            return -1;
    }
    if ((int64_t)o->batch * o->seq > ((int64_t)1 << 30)) {
        fprintf(stderr, "zero-bench-data: --batch %d x --seq %d is more than 2^30 tokens a batch\n",
                o->batch, o->seq);
        return -1;
    }
    return 0;
}

/* ---- exits ----------------------------------------------------------------------------------- */

/* The files (and the directory made here) go, unless --keep. Rank 0. */
static void remove_files(int keep)
{
    if (g_rank != 0 || keep || !g_dir[0])
        return;
    for (int i = 0; i < g_nfiles; i++)
        if (g_paths[i] && unlink(g_paths[i]) != 0 && errno != ENOENT)
            fprintf(stderr, "zero-bench-data: cannot remove %s: %s\n", g_paths[i],
                    strerror(errno));
    if (g_made_dir && rmdir(g_dir) != 0)
        fprintf(stderr, "zero-bench-data: cannot remove %s: %s\n", g_dir, strerror(errno));
    g_dir[0] = '\0';
}

/* A failure on one rank that the others may not share: in a world of more than one the job is
 * aborted (the others may wait in a collective), alone MPI is finalized. */
static _Noreturn void die(int keep)
{
    remove_files(keep);
    fflush(stdout);
    if (g_world > 1)
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    exit(1);
}

/* ---- the files ------------------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
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

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One token file of ntok random tokens in [0, VOCAB), written in IO_BYTES calls and fsynced (so
 * its writeback is not running while the reads are timed). */
static int write_token_file(const char *path, int64_t ntok, uint64_t seed, unsigned char *buf)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    unsigned char hdr[ZT_HEADER_BYTES];
    int ok = zt_header_write(hdr, 2, ntok) == 0 && write_all(fd, hdr, sizeof hdr) == 0;
    uint64_t s = seed;
    for (int64_t at = 0; ok && at < ntok;) {
        int64_t k = ntok - at < (int64_t)(IO_BYTES / 2) ? ntok - at : (int64_t)(IO_BYTES / 2);
        for (int64_t i = 0; i < k; i += 4) {
            uint64_t x = rng_next(&s);
            for (int j = 0; j < 4 && i + j < k; j++) {
                /* 16 random bits scaled into [0, VOCAB), written little-endian */
                uint32_t t = (uint32_t)(((x >> (16 * j)) & 0xffffu) * VOCAB >> 16);
                buf[2 * (i + j)] = (unsigned char)t;
                buf[2 * (i + j) + 1] = (unsigned char)(t >> 8);
            }
        }
        ok = write_all(fd, buf, (size_t)k * 2) == 0;
        at += k;
    }
    ok = ok && fsync(fd) == 0;
    if (close(fd) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* Bytes [lo, hi) of a file in read() calls of at most IO_BYTES into buf. Returns the bytes read,
 * or -1 (errno) on an error or a short file. */
static int64_t read_range(const char *path, uint64_t lo, uint64_t hi, unsigned char *buf)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (lo && lseek(fd, (off_t)lo, SEEK_SET) < 0) {
        close(fd);
        return -1;
    }
    uint64_t at = lo;
    while (at < hi) {
        size_t n = hi - at < IO_BYTES ? (size_t)(hi - at) : IO_BYTES;
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            close(fd);
            return -1;
        }
        at += (uint64_t)r;
    }
    close(fd);
    return (int64_t)(hi - lo);
}

/* This rank's plain pass: its slice of every file (every file whole in a world of one). */
static int64_t plain_pass(unsigned char *buf)
{
    int64_t total = 0;
    for (int i = 0; i < g_nfiles; i++) {
        uint64_t lo = g_sizes[i] * (uint64_t)g_rank / (uint64_t)g_world;
        uint64_t hi = g_sizes[i] * (uint64_t)(g_rank + 1) / (uint64_t)g_world;
        int64_t r = read_range(g_paths[i], lo, hi, buf);
        if (r < 0) {
            fprintf(stderr, "zero-bench-data: rank %d: reading %s: %s\n", g_rank, g_paths[i],
                    strerror(errno));
            return -1;
        }
        total += r;
    }
    return total;
}

/* The fraction of the files' pages in the page cache (mincore on a mapping of each). */
static double resident_fraction(void)
{
    uint64_t res = 0, all = 0;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < g_nfiles; i++) {
        int fd = open(g_paths[i], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        size_t len = (size_t)g_sizes[i], np = (len + page - 1) / page;
        void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (map == MAP_FAILED)
            continue;
        unsigned char *vec = malloc(np);
        if (vec && mincore(map, len, vec) == 0)
            for (size_t p = 0; p < np; p++)
                res += vec[p] & 1;
        all += np;
        free(vec);
        munmap(map, len);
    }
    return all ? (double)res / (double)all : 0.0;
}

/* ---- timing across ranks --------------------------------------------------------------------- */

static double max_over_ranks(double x)
{
    double m = x;
    MPI_Allreduce(&x, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

static int64_t sum_over_ranks(int64_t x)
{
    int64_t s = x;
    MPI_Allreduce(&x, &s, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    return s;
}

/* 1 when any rank says 1 (a local failure every rank must learn of). */
static int any_rank(int bad)
{
    int a = bad;
    MPI_Allreduce(&bad, &a, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return a;
}

/* ---- part 1: the loader ---------------------------------------------------------------------- */

enum { IO_MMAP, IO_PREAD, NIO };
enum { NPF = 3 };
static const char *const io_names[NIO] = {"mmap", "pread"};
static const int pf_values[NPF] = {2, 8, 0};
enum { NOUT = 2 };
static const char *const out_names[NOUT] = {"int32", "windows"};
static const zero_data_output out_values[NOUT] = {ZERO_DATA_OUT_INT32, ZERO_DATA_OUT_WINDOWS};

typedef struct loader_best {
    double s;          /* the best round's seconds (max over ranks) */
    int64_t bytes;     /* token bytes delivered, all ranks */
    int64_t tokens;    /* E B N T */
    int64_t batches;   /* per rank */
    double busy_s;     /* rank 0's loader busy seconds in the best round */
    double wait_s;     /* rank 0's seconds in zero_data_next waiting */
} loader_best;

/* A context on one tiny tensor: a loader needs one. ZERO_DATA_IO is read here. */
static zero_ctx *make_ctx(void)
{
    static float w[4] = {1, 2, 3, 4};
    zero_tensor t = {.name = "w", .numel = 4, .module = 0, .init = w};
    zero_config cfg = ZERO_CONFIG_INIT;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, &t, 1);
    if (s) {
        fprintf(stderr, "zero-bench-data: zero_init: %s: %s\n", zero_status_string(s),
                zero_init_error());
        return NULL;
    }
    return z;
}

/* One epoch of zero_data_next with this prefetch and shuffle, timed; open and close are not. The
 * best round so far is kept in *best. Collective; -1 on a failure (every rank returns it). */
static int loader_round(zero_ctx *z, const char *files, const options *o, int prefetch,
                        int shuffle, zero_data_output output, loader_best *best)
{
    zero_data_config dc = ZERO_DATA_CONFIG_INIT;
    dc.files = files;
    dc.batch = o->batch;
    dc.seq = o->seq;
    dc.seed = 1234;
    dc.shuffle = shuffle;
    dc.vocab = VOCAB; /* as a GPT-2 run sets it: every token checked as it is read */
    dc.format = ZERO_DATA_TOKENS;
    dc.prefetch = prefetch;
    dc.verify = 0;     /* a verify scan at open is a pass over the files of its own */
    dc.delay_ms = 0.0; /* none, whatever ZERO_DATA_DELAY_MS says */
    dc.name = "bench";
    dc.output = output;
    zero_data *d = NULL;
    zero_status s = zero_data_open(z, &dc, &d);
    if (s) {
        if (g_rank == 0)
            fprintf(stderr, "zero-bench-data: zero_data_open: %s: %s\n", zero_status_string(s),
                    zero_last_error(z));
        return -1;
    }
    zero_data_info in;
    zero_data_get_info(d, &in);
    const int64_t per = (int64_t)o->batch * g_world;
    const int64_t nb = in.windows / per; /* every rank the same number of calls */
    int bad = 0;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = zr_now();
    for (int64_t i = 0; i < nb; i++) {
        zero_batch b;
        s = zero_data_next(d, &b);
        if (s) {
            if (g_rank == 0)
                fprintf(stderr, "zero-bench-data: zero_data_next: %s: %s\n",
                        zero_status_string(s), zero_last_error(z));
            bad = 1;
            break;
        }
        /* a look at one token: targets are inputs shifted by one (and the batch is touched); a
         * window's second token is below the vocabulary */
        if (output == ZERO_DATA_OUT_WINDOWS) {
            if (!b.tokens || b.inputs || b.token_bytes != 2 ||
                ((const uint16_t *)b.tokens)[1] >= VOCAB)
                bad = 1;
        } else if (o->seq > 1 && b.targets[0] != b.inputs[1]) {
            bad = 1;
        }
    }
    double t = max_over_ranks(zr_now() - t0);
    zero_data_get_info(d, &in);
    zero_data_close(d);
    if (any_rank(bad)) {
        if (g_rank == 0)
            fprintf(stderr, "zero-bench-data: the loader failed or delivered a wrong batch\n");
        return -1;
    }
    if (best->s == 0.0 || t < best->s) {
        best->s = t;
        best->batches = nb;
        best->bytes = nb * per * (int64_t)(o->seq + 1) * in.token_bytes;
        best->tokens = nb * per * (int64_t)o->seq;
        best->busy_s = in.busy_s;
        best->wait_s = in.wait_s;
    }
    return 0;
}

/* ---- part 2: zero-gpt2 as a child ------------------------------------------------------------ */

typedef struct gpt2_run {
    double median_ms, mean_ms, waited_s;
    int steps;
} gpt2_run;

/* Variables of an MPI launcher: a child that saw them would try to join this job instead of
 * running as a world of one. */
static int launcher_var(const char *e)
{
    static const char *const pre[] = {"OMPI_", "PMIX_", "PMI_", "OPAL_", "PRTE_", "HYDRA_",
                                      "MPIR_", "ORTE_"};
    for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
        if (!strncmp(e, pre[i], strlen(pre[i])))
            return 1;
    return 0;
}

/* OpenMP and BLAS thread counts a launcher such as scripts/zero-mpirun split between the ranks:
 * with more than one rank they are not meant for the child, a world of one. */
static int split_thread_var(const char *e)
{
    return g_world > 1 &&
           (!strncmp(e, "OMP_NUM_THREADS=", 16) || !strncmp(e, "OPENBLAS_NUM_THREADS=", 21));
}

/* Runs zero-gpt2 with delay (ms) and ZERO_DATA_PREFETCH=prefetch; its step time into *r.
 * -1 when it fails or prints no step time (its output's end is shown). */
static int run_gpt2(const char *exe, double delay, int prefetch, gpt2_run *r)
{
    char dbuf[32], pbuf[32];
    snprintf(dbuf, sizeof dbuf, "%g", delay);
    snprintf(pbuf, sizeof pbuf, "ZERO_DATA_PREFETCH=%d", prefetch);
    char *argv[GPT2_NARGS + 4];
    int na = 0;
    argv[na++] = (char *)exe;
    for (int i = 0; i < GPT2_NARGS; i++)
        argv[na++] = (char *)GPT2_ARGS[i];
    argv[na++] = "--data-delay-ms";
    argv[na++] = dbuf;
    argv[na] = NULL;

    /* the environment, less the launcher's variables and the loader knobs set here */
    size_t ne = 0;
    while (environ[ne])
        ne++;
    char **envp = calloc(ne + 2, sizeof *envp);
    if (!envp)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++)
        if (!launcher_var(environ[i]) && !split_thread_var(environ[i]) &&
            strncmp(environ[i], "ZERO_DATA_PREFETCH=", 19) &&
            strncmp(environ[i], "ZERO_DATA_DELAY_MS=", 19))
            envp[k++] = environ[i];
    envp[k++] = pbuf;
    envp[k] = NULL;

    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        free(envp);
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    pid_t pid;
    int rc = posix_spawn(&pid, exe, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    close(pfd[1]);
    if (rc) {
        fprintf(stderr, "zero-bench-data: cannot run %s: %s\n", exe, strerror(rc));
        close(pfd[0]);
        return -1;
    }
    /* its whole output (it is short with --quiet), with a deadline so a hung child ends */
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    double deadline = zr_now() + CHILD_TIMEOUT_S;
    int timed_out = 0;
    for (;;) {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        int left = (int)((deadline - zr_now()) * 1000.0);
        if (left <= 0 || poll(&p, 1, left) == 0) {
            timed_out = 1;
            kill(pid, SIGKILL);
            break;
        }
        if (out && len + 4096 > cap) {
            char *n = realloc(out, cap * 2);
            if (n) {
                out = n;
                cap *= 2;
            } else {
                len = 0; /* keep reading into the start: the pipe must be drained */
            }
        }
        char sink[4096];
        ssize_t got = out ? read(pfd[0], out + len, 4095) : read(pfd[0], sink, sizeof sink);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        if (out)
            len += (size_t)got;
    }
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!out)
        return -1;
    out[len] = '\0';
    const char *line = NULL;
    for (const char *p = strstr(out, "step time:"); p; p = strstr(p + 1, "step time:"))
        line = p;
    int ok = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && line &&
             sscanf(line, "step time: median %lf ms, mean %lf ms over %d steps", &r->median_ms,
                    &r->mean_ms, &r->steps) == 3;
    if (ok) {
        const char *w = strstr(line, "waited ");
        r->waited_s = w ? strtod(w + 7, NULL) : NAN;
    } else {
        const char *tail = len > 2000 ? out + len - 2000 : out;
        char why[96];
        if (timed_out)
            snprintf(why, sizeof why, "ran past %d s and was killed", CHILD_TIMEOUT_S);
        else if (!WIFEXITED(status))
            snprintf(why, sizeof why, "was killed by signal %d", WTERMSIG(status));
        else if (WEXITSTATUS(status))
            snprintf(why, sizeof why, "exited with status %d", WEXITSTATUS(status));
        else
            snprintf(why, sizeof why, "printed no 'step time: median X ms, mean Y ms' line");
        fprintf(stderr,
                "zero-bench-data: %s --data-delay-ms %s with ZERO_DATA_PREFETCH=%d %s; its output "
                "ends:\n%s\n",
                exe, dbuf, prefetch, why, tail);
    }
    free(out);
    return ok ? 0 : -1;
}

static int gpt2_runs(const char *exe, const options *o, int ncpu, double *hidden_ratio,
                     double *growth_off, double *delay_out, double *step0_out);

/* Part 2 on rank 0: fills the step times, returns 0 or -1. */
static int part2(const options *o, double *hidden_ratio, double *growth_off, double *delay_out,
                 double *step0_out)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 16);
    if (n <= 0) {
        fprintf(stderr, "zero-bench-data: cannot find its own executable\n");
        return -1;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    snprintf(slash ? slash + 1 : exe, 16, "zero-gpt2");
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "zero-bench-data: %s: %s (part 2 needs zero-gpt2 beside this program; "
                        "--skip-gpt2 runs part 1 only)\n", exe, strerror(errno));
        return -1;
    }
    /* a launcher may have bound this rank to one core; the child, inheriting the mask, gets
     * every core this process may use (the mask is given back at the end) */
    cpu_set_t saved, all;
    int have_saved = sched_getaffinity(0, sizeof saved, &saved) == 0;
    CPU_ZERO(&all);
    for (int c = 0; c < CPU_SETSIZE; c++)
        CPU_SET(c, &all);
    sched_setaffinity(0, sizeof all, &all); /* the kernel keeps the cores that exist */
    cpu_set_t now;
    int ncpu = sched_getaffinity(0, sizeof now, &now) == 0 ? CPU_COUNT(&now) : -1;
    int rc = gpt2_runs(exe, o, ncpu, hidden_ratio, growth_off, delay_out, step0_out);
    if (have_saved)
        sched_setaffinity(0, sizeof saved, &saved);
    return rc;
}

static int gpt2_runs(const char *exe, const options *o, int ncpu, double *hidden_ratio,
                     double *growth_off, double *delay_out, double *step0_out)
{
    printf("\nPart 2 (%d cores): %s", ncpu, exe);
    for (int i = 0; i < GPT2_NARGS; i++)
        printf(" %s", GPT2_ARGS[i]);
    printf(" --data-delay-ms D, a world of one, ZERO_DATA_PREFETCH=2 (on) or 0 (off)\n");
    fflush(stdout);

    /* two calibration runs, the faster counts: one disturbed run would make D most of a step */
    gpt2_run cal[2];
    if (run_gpt2(exe, 0.0, 2, &cal[0]) || run_gpt2(exe, 0.0, 2, &cal[1]))
        return -1;
    double cal_ms = fmin(cal[0].median_ms, cal[1].median_ms);
    double D = o->delay_ms >= 0.0 ? o->delay_ms : fmax(1.0, round(cal_ms / 2.0));
    printf("calibration (D = 0, prefetch on, 2 runs): median %.2f / %.2f ms a step -> D = %g "
           "ms%s\n",
           cal[0].median_ms, cal[1].median_ms, D,
           o->delay_ms >= 0.0 ? " (--delay-ms)" : " (half the faster)");

    enum { C0ON, CDON, C0OFF, CDOFF, NC };
    static const char *const cname[NC] = {"D=0, prefetch on", "D, prefetch on",
                                          "D=0, prefetch off", "D, prefetch off"};
    double best[NC], waited[NC];
    for (int c = 0; c < NC; c++)
        best[c] = INFINITY, waited[c] = NAN;
    printf("%-6s %-18s %10s %10s %12s\n", "round", "run", "median ms", "mean ms", "waited s");
    for (int rd = 0; rd < o->repeat; rd++)
        for (int j = 0; j < NC; j++) {
            /* every other round backwards, so a drift of the machine hits all four alike */
            int c = rd % 2 ? NC - 1 - j : j;
            double delay = c == CDON || c == CDOFF ? D : 0.0;
            int pf = c == C0ON || c == CDON ? 2 : 0;
            gpt2_run r;
            if (run_gpt2(exe, delay, pf, &r))
                return -1;
            printf("%-6d %-18s %10.2f %10.2f %12.3f\n", rd + 1, cname[c], r.median_ms, r.mean_ms,
                   r.waited_s);
            fflush(stdout);
            if (r.median_ms < best[c]) {
                best[c] = r.median_ms;
                waited[c] = r.waited_s;
            }
        }
    printf("\nmedian step time, minimum over %d round%s (D = %g ms):\n", o->repeat,
           o->repeat == 1 ? "" : "s", D);
    printf("  %-12s %12s %12s %12s\n", "prefetch", "D = 0 ms", "D ms", "growth ms");
    printf("  %-12s %12.2f %12.2f %12.2f\n", "on (2)", best[C0ON], best[CDON],
           best[CDON] - best[C0ON]);
    printf("  %-12s %12.2f %12.2f %12.2f   (expect about D = %g)\n", "off (0)", best[C0OFF],
           best[CDOFF], best[CDOFF] - best[C0OFF], D);
    printf("  seconds zero_data_next waited in those runs: on %.3f / %.3f, off %.3f / %.3f\n",
           waited[C0ON], waited[CDON], waited[C0OFF], waited[CDOFF]);
    *hidden_ratio = best[CDON] / best[C0ON];
    *growth_off = best[CDOFF] - best[C0OFF];
    *delay_out = D;
    *step0_out = best[C0ON];
    printf("hidden_ratio = %.3f (target <= 1.05), growth_off = %.2f ms against D = %g ms\n",
           *hidden_ratio, *growth_off, D);
    return 0;
}

/* ---- main ------------------------------------------------------------------------------------ */

/* Rank 0 makes the directory and writes the files; every rank gets the paths. */
static int make_files(const options *o)
{
    int bad = 0;
    if (g_rank == 0) {
        if (o->dir) {
            snprintf(g_dir, sizeof g_dir, "%s", o->dir);
            if (mkdir(g_dir, 0777) == 0)
                g_made_dir = 1;
            else if (errno != EEXIST) {
                fprintf(stderr, "zero-bench-data: cannot create %s: %s\n", g_dir, strerror(errno));
                bad = 1;
            }
        } else {
            const char *tmp = getenv("TMPDIR");
            snprintf(g_dir, sizeof g_dir, "%s/zero-bench-data.XXXXXX", tmp && *tmp ? tmp : "/tmp");
            if (mkdtemp(g_dir))
                g_made_dir = 1;
            else {
                fprintf(stderr, "zero-bench-data: mkdtemp %s: %s\n", g_dir, strerror(errno));
                bad = 1;
            }
        }
    }
    if (any_rank(bad))
        return -1;
    MPI_Bcast(g_dir, (int)sizeof g_dir, MPI_CHAR, 0, MPI_COMM_WORLD);

    g_nfiles = o->files;
    g_paths = calloc((size_t)g_nfiles, sizeof *g_paths);
    g_sizes = calloc((size_t)g_nfiles, sizeof *g_sizes);
    if (!g_paths || !g_sizes)
        return -1;
    /* --mb MiB in all, headers included, split evenly */
    const int64_t total = (int64_t)o->mb << 20;
    const int64_t ntok = (total / o->files - ZT_HEADER_BYTES) / 2;
    for (int i = 0; i < g_nfiles; i++) {
        g_paths[i] = malloc(strlen(g_dir) + 40);
        if (!g_paths[i])
            return -1;
        sprintf(g_paths[i], "%s/zero-bench-data-%04d.bin", g_dir, i);
        g_sizes[i] = ZT_HEADER_BYTES + (uint64_t)ntok * 2;
    }
    if (g_rank == 0) {
        unsigned char *buf = malloc(IO_BYTES);
        for (int i = 0; i < g_nfiles && !bad; i++)
            if (!buf || write_token_file(g_paths[i], ntok, 0x5eed0000u + (uint64_t)i, buf)) {
                fprintf(stderr, "zero-bench-data: writing %s: %s\n", g_paths[i], strerror(errno));
                bad = 1;
            }
        free(buf);
    }
    return any_rank(bad) ? -1 : 0;
}

int main(int argc, char **argv)
{
    options o = {.mb = 256, .files = 4, .batch = 32, .seq = 1024, .repeat = 2,
                 .delay_ms = -1.0};
    int pa = parse_args(argc, argv, &o);
    if (pa > 0) {
        usage(stdout);
        return 0;
    }
    if (pa < 0) {
        fprintf(stderr, "zero-bench-data: --help lists the options\n");
        return 2;
    }
    /* every file needs one window, every rank at least one batch: checked before any MPI */
    const int64_t per_file_tok = (((int64_t)o.mb << 20) / o.files - ZT_HEADER_BYTES) / 2;
    if (per_file_tok < (int64_t)o.seq + 1) {
        fprintf(stderr, "zero-bench-data: --mb %d over %d files is %" PRId64 " tokens a file, "
                        "fewer than one window of --seq + 1 = %d\n",
                o.mb, o.files, per_file_tok > 0 ? per_file_tok : 0, o.seq + 1);
        return 2;
    }

    /* MPI is started here, not by zero_init: the contexts of part 1 come and go */
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    const int64_t windows = (per_file_tok - 1) / o.seq * o.files;
    if (windows < (int64_t)o.batch * g_world) {
        if (g_rank == 0)
            fprintf(stderr, "zero-bench-data: %" PRId64 " windows of --seq %d: fewer than one "
                            "batch of %d x %d ranks; raise --mb\n",
                    windows, o.seq, o.batch, g_world);
        MPI_Finalize();
        return 2;
    }
    /* ZERO_DATA_IO is set for each context of part 1 and given back for part 2's children */
    const char *io_env = getenv("ZERO_DATA_IO");
    char *io_saved = io_env ? strdup(io_env) : NULL;

    if (make_files(&o))
        die(o.keep);
    size_t list_len = 1;
    for (int i = 0; i < g_nfiles; i++)
        list_len += strlen(g_paths[i]) + 1;
    char *list = calloc(list_len, 1);
    unsigned char *buf = malloc(IO_BYTES);
    if (!list || !buf)
        die(o.keep);
    for (int i = 0; i < g_nfiles; i++) {
        if (i)
            strcat(list, ",");
        strcat(list, g_paths[i]);
    }
    memset(buf, 0, IO_BYTES); /* its pages resident before the first timed read */
    int64_t file_bytes = 0;
    for (int i = 0; i < g_nfiles; i++)
        file_bytes += (int64_t)g_sizes[i];

    /* warm-up: every rank reads every file once (on one node: the same page cache) */
    int bad = 0;
    for (int i = 0; i < g_nfiles && !bad; i++)
        if (read_range(g_paths[i], 0, g_sizes[i], buf) < 0) {
            fprintf(stderr, "zero-bench-data: reading %s: %s\n", g_paths[i], strerror(errno));
            bad = 1;
        }
    if (any_rank(bad))
        die(o.keep);
    double resident = resident_fraction();
    if (g_rank == 0) {
        printf("zero-bench-data: %d rank%s, %d token files of %" PRId64 " tokens (%.1f MiB in "
               "all) in %s\n",
               g_world, g_world == 1 ? "" : "s", g_nfiles, (int64_t)(g_sizes[0] - 1024) / 2,
               (double)file_bytes / 1048576.0, g_dir);
        printf("Part 1: batch %d x seq %d (windows of %d tokens), %" PRId64 " windows an epoch, "
               "shuffle on, verify off; page cache holds %.1f%% of the files after the warm-up\n",
               o.batch, o.seq, o.seq + 1, windows, 100.0 * resident);
        fflush(stdout);
    }

    double plain_s = 0.0;
    loader_best best[NIO][NPF][NOUT], in_order;
    memset(best, 0, sizeof best);
    memset(&in_order, 0, sizeof in_order);
    for (int rd = 0; rd < ROUNDS; rd++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = zr_now();
        int64_t got = plain_pass(buf);
        double t = max_over_ranks(zr_now() - t0);
        if (any_rank(got < 0) || sum_over_ranks(got) != file_bytes) {
            if (g_rank == 0)
                fprintf(stderr, "zero-bench-data: the plain read failed or came short\n");
            die(o.keep);
        }
        if (plain_s == 0.0 || t < plain_s)
            plain_s = t;
        for (int io = 0; io < NIO; io++) {
            setenv("ZERO_DATA_IO", io_names[io], 1);
            zero_ctx *z = make_ctx();
            if (any_rank(!z))
                die(o.keep);
            int bad_round = 0;
            for (int p = 0; p < NPF && !bad_round; p++)
                for (int u = 0; u < NOUT && !bad_round; u++)
                    bad_round = loader_round(z, list, &o, pf_values[p], 1, out_values[u],
                                             &best[io][p][u]);
            /* not counted: the same without shuffle, to tell the cost of reading windows in a
             * random order (a cache and TLB miss each) from the cost of the loader's work */
            if (!bad_round && io == IO_MMAP)
                bad_round = loader_round(z, list, &o, 0, 0, ZERO_DATA_OUT_INT32, &in_order);
            if (bad_round) {
                zero_finalize(z);
                die(o.keep);
            }
            zero_finalize(z);
        }
    }
    if (io_saved)
        setenv("ZERO_DATA_IO", io_saved, 1);
    else
        unsetenv("ZERO_DATA_IO");
    free(io_saved);
    free(list);
    free(buf);
    /* part 2 needs no files: they go now and give their page cache back */
    MPI_Barrier(MPI_COMM_WORLD);
    remove_files(o.keep);
    if (o.keep && g_rank == 0)
        printf("the files stay in %s (--keep)\n", g_dir);

    const double plain_bps = (double)file_bytes / plain_s;
    double read_ratio = 0.0, ratio_int32 = 0.0;
    int bio = 0, bpf = 0, bout = 0;
    for (int io = 0; io < NIO; io++)
        for (int p = 0; p < NPF; p++)
            for (int u = 0; u < NOUT; u++) {
                double r = (double)best[io][p][u].bytes / best[io][p][u].s / plain_bps;
                if (r > read_ratio) {
                    read_ratio = r;
                    bio = io;
                    bpf = p;
                    bout = u;
                }
                if (out_values[u] == ZERO_DATA_OUT_INT32 && r > ratio_int32)
                    ratio_int32 = r;
            }
    const loader_best *top = &best[bio][bpf][bout];
    if (g_rank == 0) {
        printf("\nbest of %d rounds; GB/s = 1e9 bytes/s: plain = file bytes, loader = E B N (T+1) "
               "2 token bytes delivered; Mtok/s = E B N T tokens / 1e6 / s\n", ROUNDS);
        printf("%-8s %-9s %-8s %9s %9s %9s %10s %9s %12s %12s\n", "read", "prefetch", "output",
               "batches", "s", "GB/s", "Mtok/s", "vs plain", "busy us/bat", "wait us/bat");
        printf("%-8s %-9s %-8s %9s %9.4f %9.3f %10s %9s %12s %12s\n", "plain", "-", "-", "-",
               plain_s, plain_bps / 1e9, "-", "1.000", "-", "-");
        for (int io = 0; io < NIO; io++)
            for (int p = 0; p < NPF; p++)
                for (int u = 0; u < NOUT; u++) {
                    const loader_best *b = &best[io][p][u];
                    printf("%-8s %-9d %-8s %9" PRId64 " %9.4f %9.3f %10.2f %9.3f %12.2f %12.2f\n",
                           io_names[io], pf_values[p], out_names[u], b->batches, b->s,
                           (double)b->bytes / b->s / 1e9, (double)b->tokens / b->s / 1e6,
                           (double)b->bytes / b->s / plain_bps,
                           1e6 * b->busy_s / (double)b->batches,
                           1e6 * b->wait_s / (double)b->batches);
                }
        const loader_best *b = &in_order;
        printf("%-8s %-9d %-8s %9" PRId64 " %9.4f %9.3f %10.2f %9.3f %12.2f %12.2f   shuffle off, "
               "not counted\n",
               "mmap", 0, "int32", b->batches, b->s, (double)b->bytes / b->s / 1e9,
               (double)b->tokens / b->s / 1e6, (double)b->bytes / b->s / plain_bps,
               1e6 * b->busy_s / (double)b->batches, 1e6 * b->wait_s / (double)b->batches);
        printf("read_ratio = %.3f (loader %s, prefetch %d, output %s: %.3f GB/s, %.2f Mtok/s; "
               "plain read %.3f GB/s); with the int32 output at best %.3f\n",
               read_ratio, io_names[bio], pf_values[bpf], out_names[bout],
               (double)top->bytes / top->s / 1e9, (double)top->tokens / top->s / 1e6,
               plain_bps / 1e9, ratio_int32);
        fflush(stdout);
    }

    double hidden = NAN, growth = NAN, delay = NAN, step0 = NAN;
    int rc = 0;
    if (!o.skip_gpt2) {
        if (g_rank == 0)
            rc = part2(&o, &hidden, &growth, &delay, &step0) ? 1 : 0;
        /* the others wait in a barrier they test every 10 ms: spinning in MPI_Barrier would
         * take a core from the child being timed */
        MPI_Request req;
        MPI_Ibarrier(MPI_COMM_WORLD, &req);
        for (int done = 0; !done;) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (!done) {
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
    }
    if (g_rank == 0) {
        printf("read_ratio=%.3f hidden_ratio=%.3f read_best=%s/prefetch%d/%s loader_GBps=%.3f "
               "plain_GBps=%.3f loader_Mtokps=%.2f read_ratio_int32=%.3f step_ms=%.2f "
               "delay_ms=%g growth_off_ms=%.2f\n",
               read_ratio, hidden, io_names[bio], pf_values[bpf], out_names[bout],
               (double)top->bytes / top->s / 1e9, plain_bps / 1e9,
               (double)top->tokens / top->s / 1e6, ratio_int32, step0, delay, growth);
        fflush(stdout);
    }
    for (int i = 0; i < g_nfiles; i++)
        free(g_paths[i]);
    free(g_paths);
    free(g_sizes);
    MPI_Finalize();
    return rc;
}
