/* bench_coll.c — zero-bench-coll: bus bandwidth of libzero's device-buffer collectives against
 * message size, to find where it stops growing (a reduce bucket larger than that buys nothing).
 *   zero-mpirun -np N zero-bench-coll [--min SIZE] [--max SIZE] [--dtype fp32|bf16|both]
 *                                     [--iters K] [--reps R] [--seconds T] [--inflight W]
 *
 * It measures what the engine gets, not raw MPI or NCCL: a context from zero_init (one small
 * tensor; every ZERO_* variable applies, ZERO_DEVICE included), buffers from its device allocator
 * and collectives through its own door (z->dcoll: mpi on the host backend, nccl on the cuda
 * backend), issued with a request and waited for through zr_coll_wait, as grad.c does with a
 * bucket:
 *   reduce-scatter  out of place, the full buffer into a slice of 1/N (the bucket path);
 *   all-gather      in place, this rank's block already where it belongs.
 * By default each call is waited for before the next (--inflight 1): the time includes the
 * backend's wait (MPI progress and yielding on the host; on cuda an event polled with backoff,
 * which adds tens of microseconds). --inflight W keeps up to W in flight, each on its own
 * buffers, as the engine does with several buckets; on cuda they queue on the comm stream, so a
 * large W gives the stream's throughput, what nccl-tests reports.
 * SIZE (a number of bytes, or with K, M, G for KiB, MiB, GiB) is the full buffer per rank, as in
 * nccl-tests: count = SIZE / (element size x N) elements per rank (rounded down, so at N = 3 a
 * few bytes less than SIZE move; the bandwidths use the bytes that moved). Sizes double from
 * --min (4K) to --max (256M).
 *
 * Timing, per size and collective: max(2, W) untimed calls (first touch of MPI's or NCCL's
 * buffers), then three timed runs of as many, whose fastest sizes a batch of K calls so that R
 * batches (--reps, 5) take about T seconds (--seconds, 0.2; --iters K fixes K). Each batch
 * starts after a small all-reduce on the host collectives (all ranks in step) and its time is
 * the slowest rank's; a batch gives the mean time of one collective. The table shows the median
 * batch and, for the bus bandwidth, the best one too: the machine may be shared, and the median
 * is what a training step would see. algbw = bytes / time, busbw = algbw x (N-1)/N (nccl-tests).
 * "flt" is the minor page faults per call (the most on any rank): on the host backend a
 * collective that maps a fresh temporary buffer each time pays for it there.
 * After each table, one line per collective: the largest median busbw and the smallest sizes
 * reaching 90% and 95% of it (the knee).
 *
 * Before the timing, every dtype is checked at the largest size: rank r fills its buffer with
 * 1 + r % 8, the reduce-scatter must give the sum of those everywhere and the all-gather rank
 * q's value in block q. The values stay small integers afterwards (exact in bf16), so no timed
 * sum meets inf or NaN.
 * Output on rank 0. Exit 0, 1 when a call or the check fails, 2 on bad flags. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "runtime/engine.h"
#include "util/clock.h"
#include "zero.h"

#define MAX_SIZES 48
#define MAX_REPS 64
#define MAX_INFLIGHT 16
#define HOST_CHUNK ((size_t)1 << 20) /* fill and check through a host buffer of this many bytes */

typedef struct options {
    size_t min, max;
    int iters;      /* per batch; 0 = sized from --seconds */
    int inflight;   /* collectives in flight at once, each on its own buffers */
    int reps;       /* batches */
    double seconds; /* per size and collective, all batches together */
    int fp32, bf16;
} options;

/* One collective at one size: the median and best of its batches (mean seconds per call). */
typedef struct result {
    double med_s, best_s;
    double faults; /* minor page faults per call in the timed batches, the most on any rank */
    int iters;
} result;

typedef struct row {
    size_t size;  /* nominal SIZE */
    size_t count; /* elements per rank */
    size_t bytes; /* moved: count x N x element size */
    result rs, ag;
} row;

static int g_rank;

/* msg: why, from the context (z->err or z->comm.err) or zero_init_error. */
static void die(const char *what, zero_status s, const char *msg)
{
    fprintf(stderr, "zero-bench-coll: rank %d: %s: %s: %s\n", g_rank, what,
            zero_status_string(s), msg);
    exit(1); /* mpirun then ends the other ranks, which would wait in the next collective */
}

static void usage(FILE *f)
{
    fprintf(f, "usage: zero-mpirun -np N zero-bench-coll [--min SIZE] [--max SIZE] "
               "[--dtype fp32|bf16|both]\n"
               "                                      [--iters K] [--reps R] [--seconds T] "
               "[--inflight W]\n"
               "  --min, --max  full buffer per rank, doubling from min to max (default 4K, "
               "256M;\n"
               "                a number of bytes, or with K, M, G for KiB, MiB, GiB)\n"
               "  --dtype       element type (default both)\n"
               "  --iters K     calls per timed batch (default: sized so R batches take T s)\n"
               "  --reps R      timed batches per size and collective; the median is shown "
               "(default 5)\n"
               "  --seconds T   time per size and collective when K is sized (default 0.2)\n"
               "  --inflight W  up to W collectives in flight, each on its own buffers; call i\n"
               "                waits for call i-W (default 1: each waited for at once; at most "
               "16)\n");
}

static int parse_size(const char *v, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift)
        end++;
    if (*v == 0 || *v == '-' || *end || errno || x == 0 || x > (SIZE_MAX >> shift))
        return -1;
    *out = (size_t)x << shift;
    return 0;
}

static int parse_opts(int argc, char **argv, options *o)
{
    *o = (options){.min = 4 << 10, .max = 256 << 20, .reps = 5, .seconds = 0.2, .inflight = 1,
                   .fp32 = 1, .bf16 = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        int bad = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!v) {
            bad = 1;
        } else if (!strcmp(a, "--min")) {
            bad = parse_size(v, &o->min) != 0;
        } else if (!strcmp(a, "--max")) {
            bad = parse_size(v, &o->max) != 0;
        } else if (!strcmp(a, "--iters")) {
            long x = strtol(v, &end, 10);
            bad = !*v || *end || x < 1 || x > 10000000;
            o->iters = (int)x;
        } else if (!strcmp(a, "--reps")) {
            long x = strtol(v, &end, 10);
            bad = !*v || *end || x < 1 || x > MAX_REPS;
            o->reps = (int)x;
        } else if (!strcmp(a, "--inflight")) {
            long x = strtol(v, &end, 10);
            bad = !*v || *end || x < 1 || x > MAX_INFLIGHT;
            o->inflight = (int)x;
        } else if (!strcmp(a, "--seconds")) {
            o->seconds = strtod(v, &end);
            bad = *end || !(o->seconds > 0.0 && o->seconds < 3600.0);
        } else if (!strcmp(a, "--dtype")) {
            o->fp32 = !strcmp(v, "fp32") || !strcmp(v, "both");
            o->bf16 = !strcmp(v, "bf16") || !strcmp(v, "both");
            bad = !o->fp32 && !o->bf16;
        } else {
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "zero-bench-coll: bad option %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage(stderr);
            return -1;
        }
        i++;
    }
    if (o->min > o->max) {
        fprintf(stderr, "zero-bench-coll: --min is larger than --max\n");
        return -1;
    }
    return 0;
}

static const char *fmt_size(size_t b, char *buf, size_t len)
{
    if (b >= ((size_t)1 << 30) && b % ((size_t)1 << 30) == 0)
        snprintf(buf, len, "%zu GiB", b >> 30);
    else if (b >= ((size_t)1 << 20) && b % ((size_t)1 << 20) == 0)
        snprintf(buf, len, "%zu MiB", b >> 20);
    else if (b >= ((size_t)1 << 10) && b % ((size_t)1 << 10) == 0)
        snprintf(buf, len, "%zu KiB", b >> 10);
    else
        snprintf(buf, len, "%zu B", b);
    return buf;
}

/* ---- values ---------------------------------------------------------------------------------
 * Small integers, written and read in the element type's bits: bf16 keeps the upper half of the
 * fp32 pattern, exact for integers below 256. */

static void put_value(void *dst, zr_elem e, size_t i, float v)
{
    if (e == ZR_ELEM_F32) {
        ((float *)dst)[i] = v;
    } else {
        uint32_t bits;
        memcpy(&bits, &v, sizeof bits);
        ((uint16_t *)dst)[i] = (uint16_t)(bits >> 16);
    }
}

static float get_value(const void *src, zr_elem e, size_t i)
{
    if (e == ZR_ELEM_F32)
        return ((const float *)src)[i];
    uint32_t bits = (uint32_t)((const uint16_t *)src)[i] << 16;
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* n elements of device memory at dst set to v, through the host buffer. */
static void fill(zero_ctx *z, void *dst, zr_elem e, size_t n, float v, void *host)
{
    const size_t esz = zr_elem_size(e), per = HOST_CHUNK / esz;
    for (size_t i = 0; i < per && i < n; i++)
        put_value(host, e, i, v);
    for (size_t at = 0; at < n; at += per) {
        size_t k = n - at < per ? n - at : per;
        zr_dev_copy(&z->dev, (char *)dst + at * esz, host, k * esz);
    }
}

/* Number of the n elements of device memory at src that are not v (read through the host). A
 * bf16 sum of more than 256 is no longer exact, and where it rounds depends on the backend's
 * order of additions: there 1% is allowed. */
static size_t count_wrong(zero_ctx *z, const void *src, zr_elem e, size_t n, float v, void *host)
{
    const float tol = e == ZR_ELEM_BF16 && v > 256.0f ? 0.01f * v : 0.0f;
    const size_t esz = zr_elem_size(e), per = HOST_CHUNK / esz;
    size_t wrong = 0;
    for (size_t at = 0; at < n; at += per) {
        size_t k = n - at < per ? n - at : per;
        zr_dev_copy(&z->dev, host, (const char *)src + at * esz, k * esz);
        for (size_t i = 0; i < k; i++)
            wrong += fabsf(get_value(host, e, i) - v) > tol;
    }
    return wrong;
}

/* ---- collectives ---------------------------------------------------------------------------- */

enum { KIND_RS = 0, KIND_AG = 1 };

/* One set of buffers per collective that may be in flight (--inflight), as the engine keeps a
 * bucket per reduce-scatter in flight: collectives in flight together never share memory. */
typedef struct bufs {
    int n;
    void *full[MAX_INFLIGHT];  /* the full buffer: reduce-scatter's input, all-gather's output */
    void *slice[MAX_INFLIGHT]; /* reduce-scatter's output */
    zr_creq req[MAX_INFLIGHT];
} bufs;

static void issue(zero_ctx *z, bufs *b, int i, int kind, zr_elem e, size_t count)
{
    zero_status s;
    if (kind == KIND_RS)
        s = zr_coll_reduce_scatter(&z->dcoll, b->full[i], b->slice[i], count, e,
                                   ZR_TRAFFIC_TRAIN, &b->req[i]);
    else
        s = zr_coll_all_gather(&z->dcoll, b->full[i], count, e, ZR_TRAFFIC_TRAIN, &b->req[i]);
    if (s)
        die(kind == KIND_RS ? "reduce-scatter" : "all-gather", s, z->comm.err.msg);
}

static void wait_for(zero_ctx *z, bufs *b, int i)
{
    zero_status s = zr_coll_wait(&z->dcoll, &b->req[i]);
    if (s)
        die("waiting for a collective", s, z->comm.err.msg);
}

static void one_call(zero_ctx *z, bufs *b, int kind, zr_elem e, size_t count)
{
    issue(z, b, 0, kind, e, count);
    wait_for(z, b, 0);
}

/* The slowest rank's value of x (every rank gets the same). */
static double max_over_ranks(zero_ctx *z, double x)
{
    zero_status s = zr_coll_all_reduce(&z->hcoll, &x, 1, ZR_ELEM_F64, ZR_OP_MAX,
                                       ZR_TRAFFIC_OTHER, NULL);
    if (s)
        die("all-reduce of the times", s, z->comm.err.msg);
    return x;
}

/* Mean seconds per call over `iters` calls, the slowest rank's. With b->n sets, call i waits
 * for call i - n before it is issued: at most n in flight (1: each waited for at once). */
static double batch(zero_ctx *z, bufs *b, int kind, zr_elem e, size_t count, int iters)
{
    max_over_ranks(z, 0.0); /* every rank starts the batch together */
    const double t0 = zr_now();
    for (int i = 0; i < iters; i++) {
        if (i >= b->n)
            wait_for(z, b, i % b->n);
        issue(z, b, i % b->n, kind, e, count);
    }
    for (int i = iters > b->n ? iters - b->n : 0; i < iters; i++)
        wait_for(z, b, i % b->n);
    return max_over_ranks(z, zr_now() - t0) / iters;
}

static long minor_faults(void)
{
    struct rusage u;
    return getrusage(RUSAGE_SELF, &u) == 0 ? u.ru_minflt : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static result measure(zero_ctx *z, bufs *b, int kind, zr_elem e, size_t count, const options *o)
{
    result r = {0};
    const int few = b->n > 2 ? b->n : 2; /* every set once */
    batch(z, b, kind, e, count, few);    /* warm-up */
    r.iters = o->iters;
    if (!r.iters) {
        /* The same estimate on every rank (batch gives the slowest rank's), so the same count
         * of calls. The best of three: one preempted estimate would make the batches far too
         * short for their timing to mean anything. */
        double est = 1e30;
        for (int i = 0; i < 3; i++) {
            double x = batch(z, b, kind, e, count, few);
            est = x < est ? x : est;
        }
        double k = o->seconds / o->reps / (est > 1e-9 ? est : 1e-9);
        r.iters = k < 1.0 ? 1 : k > 1e6 ? 1000000 : (int)k;
    }
    double t[MAX_REPS];
    const int n = o->reps;
    const long f0 = minor_faults();
    for (int i = 0; i < n; i++)
        t[i] = batch(z, b, kind, e, count, r.iters);
    r.faults = max_over_ranks(z, (double)(minor_faults() - f0) / ((double)n * r.iters));
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    r.best_s = t[0];
    r.med_s = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    return r;
}

/* What rank r puts in its buffer for the check: different on neighbouring ranks, so a block
 * gathered into the wrong place shows, and at most 8, so that sums stay exact in bf16 (below
 * 256) up to 32 ranks. */
static float rank_value(int r) { return (float)(1 + r % 8); }

/* The check at `count` elements per rank (see the top); returns wrong elements on this rank. */
static size_t check(zero_ctx *z, bufs *b, zr_elem e, size_t count, void *host)
{
    const int N = z->world;
    float sum = 0.0f;
    for (int q = 0; q < N; q++)
        sum += rank_value(q);
    /* every set written before the timing, so no timed call first-touches a page of them */
    for (int i = 0; i < b->n; i++) {
        fill(z, b->full[i], e, count * (size_t)N, rank_value(z->rank), host);
        fill(z, b->slice[i], e, count, 0.0f, host);
    }
    one_call(z, b, KIND_RS, e, count);
    size_t wrong = count_wrong(z, b->slice[0], e, count, sum, host);
    one_call(z, b, KIND_AG, e, count);
    for (int q = 0; q < N; q++)
        wrong += count_wrong(z, (char *)b->full[0] + (size_t)q * count * zr_elem_size(e), e,
                             count, rank_value(q), host);
    return wrong;
}

/* ---- output --------------------------------------------------------------------------------- */

static double busbw(const row *r, const result *x, int N)
{
    return x->med_s > 0.0 ? (double)r->bytes / x->med_s / 1e9 * (N - 1) / N : 0.0;
}

/* The largest median busbw of one collective over the rows, and the smallest sizes reaching 90%
 * and 95% of it. */
static void knee(const row *rows, int n, int kind, int N, char *out, size_t len)
{
    double top = 0.0;
    size_t at = 0, k90 = 0, k95 = 0;
    for (int i = 0; i < n; i++) {
        double bw = busbw(&rows[i], kind == KIND_RS ? &rows[i].rs : &rows[i].ag, N);
        if (bw > top) {
            top = bw;
            at = rows[i].size;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        double bw = busbw(&rows[i], kind == KIND_RS ? &rows[i].rs : &rows[i].ag, N);
        if (bw >= 0.90 * top)
            k90 = rows[i].size;
        if (bw >= 0.95 * top)
            k95 = rows[i].size;
    }
    char a[32], b90[32], b95[32];
    if (top <= 0.0)
        snprintf(out, len, "no bus traffic (one rank)");
    else
        snprintf(out, len, "max %.2f GB/s at %s, 90%% from %s, 95%% from %s", top,
                 fmt_size(at, a, sizeof a), fmt_size(k90, b90, sizeof b90),
                 fmt_size(k95, b95, sizeof b95));
}

static void print_table(const zero_ctx *z, const row *rows, int n, const char *dt,
                        const options *o)
{
    const int N = z->world;
    printf("\n# %s, np %d: median of %d batches (best busbw beside it); GB/s = 1e9 B/s; flt: "
           "minor page faults per call (the most on a rank)\n",
           dt, N, o->reps);
    printf("# %9s %10s | %7s %9s %8s %8s %8s %6s | %7s %9s %8s %8s %8s %6s\n", "size",
           "elems/rank", "RS it", "RS us", "algbw", "busbw", "best", "flt", "AG it", "AG us",
           "algbw", "busbw", "best", "flt");
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        char sz[32];
        double rs_alg = (double)r->bytes / r->rs.med_s / 1e9;
        double ag_alg = (double)r->bytes / r->ag.med_s / 1e9;
        double f = (double)(N - 1) / N;
        printf("  %9s %10zu | %7d %9.1f %8.3f %8.3f %8.3f %6.0f | %7d %9.1f %8.3f %8.3f %8.3f "
               "%6.0f\n",
               fmt_size(r->size, sz, sizeof sz), r->count, r->rs.iters, r->rs.med_s * 1e6,
               rs_alg, rs_alg * f, (double)r->bytes / r->rs.best_s / 1e9 * f, r->rs.faults,
               r->ag.iters, r->ag.med_s * 1e6, ag_alg, ag_alg * f,
               (double)r->bytes / r->ag.best_s / 1e9 * f, r->ag.faults);
    }
    char rs[160], ag[160];
    knee(rows, n, KIND_RS, N, rs, sizeof rs);
    knee(rows, n, KIND_AG, N, ag, sizeof ag);
    printf("summary np=%d %s reduce_scatter: %s\n", N, dt, rs);
    printf("summary np=%d %s all_gather:     %s\n", N, dt, ag);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    options o;
    if (parse_opts(argc, argv, &o))
        return 2;
    zero_tensor t = {.name = "bench.unused", .numel = 1024, .module = 0};
    zero_config cfg = ZERO_CONFIG_INIT; /* ZERO_DEVICE picks the backend, as for any program */
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, &t, 1);
    if (s)
        die("zero_init", s, zero_init_error());
    g_rank = z->rank;
    const int N = z->world;

    /* one full buffer of --max and one slice, reused by every size and dtype */
    const size_t full_bytes = o.max, slice_bytes = o.max / (size_t)N + 64;
    bufs b = {.n = o.inflight};
    for (int i = 0; i < b.n; i++)
        if ((s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, full_bytes, "benchmark full buffer",
                              &b.full[i])) ||
            (s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, slice_bytes, "benchmark slice", &b.slice[i])))
            die("allocating the buffers", s, z->err.msg);
    void *host = malloc(HOST_CHUNK);
    if (!host)
        die("host buffer", ZERO_ERR_SYSTEM, "out of host memory");

    if (g_rank == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        printf("# zero-bench-coll: np %d (%d on this node, %ld cores here%s), device %s, "
               "collectives %s\n",
               N, z->comm.local_size, cores,
               cores > 0 && z->comm.local_size > cores ? ": oversubscribed" : "",
               z->dev.ops->name, z->dcoll.ops->name);
        printf("# reduce-scatter out of place, all-gather in place, issued with a request; up "
               "to %d in flight; %s per size and collective\n",
               o.inflight, o.iters ? "fixed batches" : "batches sized to the time asked");
    }

    int failed = 0;
    for (int d = 0; d < 2; d++) {
        if (!(d == 0 ? o.fp32 : o.bf16))
            continue;
        const zr_elem e = d == 0 ? ZR_ELEM_F32 : ZR_ELEM_BF16;
        const char *dt = d == 0 ? "fp32" : "bf16";
        const size_t esz = zr_elem_size(e);
        size_t wrong = check(z, &b, e, o.max / (esz * (size_t)N), host);
        double bad = max_over_ranks(z, (double)wrong);
        if (bad > 0.0) {
            if (g_rank == 0)
                printf("# %s: CHECK FAILED: %.0f wrong elements on some rank\n", dt, bad);
            failed = 1;
            continue;
        }
        row rows[MAX_SIZES];
        int n = 0;
        for (size_t size = o.min; n < MAX_SIZES; size *= 2) {
            size_t count = size / (esz * (size_t)N);
            if (count) {
                row *r = &rows[n++];
                *r = (row){.size = size, .count = count, .bytes = count * esz * (size_t)N};
                r->rs = measure(z, &b, KIND_RS, e, count, &o);
                r->ag = measure(z, &b, KIND_AG, e, count, &o);
            }
            if (size > o.max / 2) /* also keeps size * 2 from overflowing */
                break;
        }
        if (g_rank == 0)
            print_table(z, rows, n, dt, &o);
    }

    for (int i = 0; i < b.n; i++) {
        zr_coll_request_free(&z->dcoll, &b.req[i]);
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, b.slice[i], slice_bytes);
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, b.full[i], full_bytes);
    }
    free(host);
    /* the context and its message are gone once zero_finalize returns */
    if ((s = zero_finalize(z)))
        die("zero_finalize", s, "see the log above");
    return failed;
}
