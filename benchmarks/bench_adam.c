/* bench_adam.c — zero-bench-adam: CPU Adam (zk_adamw_cpu) against the memory bandwidth it is
 * bound by. At 1..T OpenMP threads, four passes over arrays far larger than the caches:
 *   triad    STREAM triad a = b + s*c on doubles (24 bytes per element, as STREAM counts);
 *   memonly  exactly Adam's traffic and nothing else: read p, g, m, v, write p, m, v and a bf16
 *            working copy, with no arithmetic (30 bytes per element) — the physical limit of the
 *            update on this machine;
 *   adam     zk_adamw_cpu with a bf16 working copy, as in mixed precision (30 bytes per element);
 *   scalar   the plain loop a first implementation would write (zm_adamw per element, OpenMP
 *            over the same threads), compiled with the default math flags: errno handling keeps
 *            sqrtf from becoming a vector instruction, so the loop stays scalar.
 * Bytes are those the program asks for; the write-allocate reads of write-only arrays (triad's a,
 * the working copy) are not counted, as in STREAM. Each round runs the four passes in turn, after
 * one warm-up round; a pass's time is its best (minimum) over the rounds. adam and scalar results
 * are checked bitwise against zm_adamw on a sample of elements (#wrong); any wrong result makes
 * the exit status 1. Every array starts --align BYTES past a page boundary (default 0: page
 * aligned, as pinned host buffers are; 64: one cache line past; 68: 17 fp32 elements past, so no
 * vector is line-aligned until the kernel peels). The line before the last reads ratio1=R: adam
 * GB/s over memonly GB/s at 1 thread; the last line reads ratio=R: the same at the most threads. */
#include <errno.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/zero_math.h"

#define BENCH_BLOCK 4096      /* elements per OpenMP work item, as in zk_adamw_cpu */
#define BENCH_SAMPLE 4096     /* elements checked per pass and thread count */
#define BENCH_BYTES_TRIAD 24  /* 3 doubles */
#define BENCH_BYTES_ADAM 30   /* read p g m v (16), write p m v (12) and bf16 work (2) */

typedef struct bench_opts {
    size_t n;        /* elements per array */
    int iters;       /* timed rounds */
    int threads_max; /* thread counts 1..threads_max */
    const char *isa; /* NULL: zk_adamw_cpu's own choice */
    size_t align;    /* bytes past a page boundary at which every array starts */
} bench_opts;

/* The arrays, allocated once and first touched by the threads that use them. */
typedef struct bench_data {
    size_t n;
    void *base[8];        /* what to free: the allocations the arrays below start in */
    float *p, *g, *m, *v; /* (n,) fp32: master, gradient, Adam moments */
    uint16_t *work;       /* (n,) bf16 working copy */
    double *a, *b, *c;    /* (n,) triad arrays */
} bench_data;

/* Best time in seconds of each pass at one thread count. */
typedef struct bench_row {
    int threads;
    double triad, memonly, adam, scalar;
    size_t wrong_adam, wrong_scalar;
} bench_row;

static const zk_adamw_params g_hp = {.lr = 1e-3f,
                                     .beta1 = 0.9f,
                                     .beta2 = 0.999f,
                                     .eps = 1e-8f,
                                     .weight_decay = 0.01f,
                                     .bias_corr1 = 0.65132156f,      /* 1 - 0.9^10 */
                                     .bias_corr2_sqrt = 0.09955119f, /* sqrt(1 - 0.999^10) */
                                     .grad_scale = 1.0f};

/* ---- passes ------------------------------------------------------------------------------- */

static void pass_triad(const bench_data *d, double s)
{
    double *restrict a = d->a;
    const double *restrict b = d->b, *restrict c = d->c;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < d->n; i++)
        a[i] = b[i] + s * c[i];
}

/* Adam's loads and stores with the arithmetic taken out, on elements [lo, hi). key is 0 at run
 * time, which the compiler cannot know, so every element is loaded and stored (values unchanged,
 * so the Adam state stays valid for the other passes), and g is really read. Cloned for the
 * vector widths zk_adamw_cpu chooses between, so the ceiling is not held back by narrow loads. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
memonly_block(uint32_t *restrict p, uint32_t *restrict m, uint32_t *restrict v,
              const uint32_t *restrict g, uint16_t *restrict w, size_t lo, size_t hi,
              uint32_t key)
{
    for (size_t i = lo; i < hi; i++) {
        const uint32_t x = p[i] ^ (g[i] & key);
        p[i] = x;
        m[i] ^= key;
        v[i] ^= key;
        w[i] = (uint16_t)(x >> 16);
    }
}

static void pass_memonly(const bench_data *d, uint32_t key)
{
    const size_t n = d->n, nblocks = (n + BENCH_BLOCK - 1) / BENCH_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nblocks; b++) {
        const size_t hi = n - b * BENCH_BLOCK < BENCH_BLOCK ? n : (b + 1) * BENCH_BLOCK;
        memonly_block((uint32_t *)d->p, (uint32_t *)d->m, (uint32_t *)d->v,
                      (const uint32_t *)d->g, d->work, b * BENCH_BLOCK, hi, key);
    }
}

static void pass_adam(const bench_data *d)
{
    zk_adamw_cpu(d->p, d->m, d->v, d->g, d->work, ZERO_DTYPE_BF16, d->n, &g_hp);
}

/* The straightforward loop. This file is built without -fno-math-errno, on purpose. */
static void pass_scalar(const bench_data *d)
{
    const zm_adamw_coef c =
        zm_adamw_coefs(g_hp.lr, g_hp.beta1, g_hp.beta2, g_hp.eps, g_hp.weight_decay,
                       g_hp.bias_corr1, g_hp.bias_corr2_sqrt, g_hp.grad_scale, g_hp.l2);
    float *p = d->p, *m = d->m, *v = d->v;
    const float *g = d->g;
    uint16_t *w = d->work;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < d->n; i++) {
        zm_adamw(&p[i], &m[i], &v[i], g[i], &c);
        w[i] = zm_f32_to_bf16(p[i]);
    }
}

/* ---- correctness on a sample -------------------------------------------------------------- */

typedef struct bench_sample {
    size_t idx[BENCH_SAMPLE];
    float p[BENCH_SAMPLE], m[BENCH_SAMPLE], v[BENCH_SAMPLE], g[BENCH_SAMPLE];
} bench_sample;

/* Spread over the whole array, off the block and vector boundaries, plus the last elements. */
static void sample_take(bench_sample *s, const bench_data *d)
{
    const size_t n = d->n, stride = n / BENCH_SAMPLE ? n / BENCH_SAMPLE : 1;
    for (size_t k = 0; k < BENCH_SAMPLE; k++) {
        size_t i = k < 32 ? n - 1 - (k % n) : (k * stride + k % 13) % n;
        s->idx[k] = i;
        s->p[k] = d->p[i], s->m[k] = d->m[i], s->v[k] = d->v[i], s->g[k] = d->g[i];
    }
}

/* Elements whose p, m, v or working copy differ in any bit from zm_adamw applied to the
 * sample taken before the pass. */
static size_t sample_check(const bench_sample *s, const bench_data *d)
{
    const zm_adamw_coef c =
        zm_adamw_coefs(g_hp.lr, g_hp.beta1, g_hp.beta2, g_hp.eps, g_hp.weight_decay,
                       g_hp.bias_corr1, g_hp.bias_corr2_sqrt, g_hp.grad_scale, g_hp.l2);
    size_t wrong = 0;
    for (size_t k = 0; k < BENCH_SAMPLE; k++) {
        const size_t i = s->idx[k]; /* a repeated index is checked against the same values */
        float p = s->p[k], m = s->m[k], v = s->v[k];
        zm_adamw(&p, &m, &v, s->g[k], &c);
        wrong += zm_f32_bits(p) != zm_f32_bits(d->p[i]) ||
                 zm_f32_bits(m) != zm_f32_bits(d->m[i]) ||
                 zm_f32_bits(v) != zm_f32_bits(d->v[i]) || zm_f32_to_bf16(p) != d->work[i];
    }
    return wrong;
}

/* ---- setup -------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1) from element index and stream number. */
static float hash_sym(size_t i, uint64_t stream)
{
    return (float)((double)(mix64(i * 4 + stream + 0x9e3779b97f4a7c15ull) >> 40) * 0x1p-23 - 1.0);
}

/* align bytes past a page boundary (page-aligned for 0, as the offload buffers are: pinned host
 * memory comes in whole pages). The allocation is kept in *base for free(). */
static void *alloc_or_die(size_t bytes, size_t align, void **base)
{
    const size_t page = 4096;
    char *ptr = aligned_alloc(page, (bytes + align + page - 1) / page * page);
    if (!ptr) {
        fprintf(stderr, "zero-bench-adam: cannot allocate %zu bytes\n", bytes + align);
        exit(2);
    }
    *base = ptr;
    return ptr + align;
}

/* Values of a model in training; first touched with the schedule the passes use. */
static void data_init(bench_data *d, size_t n, size_t align)
{
    d->n = n;
    d->p = alloc_or_die(n * 4, align, &d->base[0]), d->g = alloc_or_die(n * 4, align, &d->base[1]);
    d->m = alloc_or_die(n * 4, align, &d->base[2]), d->v = alloc_or_die(n * 4, align, &d->base[3]);
    d->work = alloc_or_die(n * 2, align, &d->base[4]);
    d->a = alloc_or_die(n * 8, align, &d->base[5]), d->b = alloc_or_die(n * 8, align, &d->base[6]);
    d->c = alloc_or_die(n * 8, align, &d->base[7]);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        d->p[i] = 0.05f * hash_sym(i, 0);
        d->g[i] = 1e-3f * hash_sym(i, 1);
        d->m[i] = 1e-4f * hash_sym(i, 2);
        float r = hash_sym(i, 3);
        d->v[i] = 1e-7f * r * r;
        d->work[i] = 0;
        d->a[i] = 0.0, d->b[i] = 1.0, d->c[i] = 2.0;
    }
}

static void data_free(bench_data *d)
{
    for (int k = 0; k < 8; k++)
        free(d->base[k]);
}

/* ---- command line ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: zero-bench-adam [--n ELEMENTS[K|M|G]] [--iters K] [--threads-max T]"
               " [--isa avx512|avx2|scalar] [--align BYTES]\n"
               "  --n            elements per array (default 32M: 128 MiB per fp32 array,\n"
               "                 about 1.3 GiB in all)\n"
               "  --iters        timed rounds after one warm-up round (default 20)\n"
               "  --threads-max  thread counts 1..T (default: omp_get_max_threads())\n"
               "  --isa          force a CPU Adam path (default: the best this CPU has)\n"
               "  --align        start every array BYTES past a page boundary (a multiple of 4\n"
               "                 below 4096; default 0: page-aligned; e.g. 64, or 68 for an odd\n"
               "                 fp32 element offset)\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    int shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end || x == 0)
        return -1;
    *out = (size_t)x << shift;
    return 0;
}

/* A byte offset into a page that keeps fp32 elements whole: a multiple of 4 below 4096. */
static int parse_align(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(s, &end, 10);
    if (errno || end == s || *end || x >= 4096 || x % 4)
        return -1;
    *out = x;
    return 0;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!val) {
            fprintf(stderr, "zero-bench-adam: %s needs a value\n", a);
            return -1;
        }
        i++;
        size_t x;
        if (strcmp(a, "--n") == 0 && parse_size(val, &x) == 0)
            o->n = x;
        else if (strcmp(a, "--iters") == 0 && parse_size(val, &x) == 0 && x <= 100000)
            o->iters = (int)x;
        else if (strcmp(a, "--threads-max") == 0 && parse_size(val, &x) == 0 && x <= 4096)
            o->threads_max = (int)x;
        else if (strcmp(a, "--isa") == 0)
            o->isa = val;
        else if (strcmp(a, "--align") == 0 && parse_align(val, &o->align) == 0)
            ;
        else {
            fprintf(stderr, "zero-bench-adam: bad option %s %s\n", a, val);
            return -1;
        }
    }
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

static double gbps(double bytes_per_elem, size_t n, double s)
{
    return bytes_per_elem * (double)n / s * 1e-9;
}

static void min_time(double *best, double t)
{
    if (t < *best)
        *best = t;
}

static bench_row run_threads(bench_data *d, int threads, int iters, uint32_t key)
{
    static bench_sample sample;
    bench_row r = {threads, 1e30, 1e30, 1e30, 1e30, 0, 0};
    omp_set_num_threads(threads);
    for (int it = -1; it < iters; it++) {
        const int warm = it < 0; /* the warm-up round: untimed, and where results are checked */
        double t0 = omp_get_wtime();
        pass_triad(d, 3.0);
        double t1 = omp_get_wtime();
        pass_memonly(d, key);
        double t2 = omp_get_wtime();
        if (warm)
            sample_take(&sample, d);
        double t3 = omp_get_wtime();
        pass_adam(d);
        double t4 = omp_get_wtime();
        if (warm) {
            r.wrong_adam = sample_check(&sample, d);
            sample_take(&sample, d);
        }
        double t5 = omp_get_wtime();
        pass_scalar(d);
        double t6 = omp_get_wtime();
        if (warm) {
            r.wrong_scalar = sample_check(&sample, d);
            continue;
        }
        min_time(&r.triad, t1 - t0);
        min_time(&r.memonly, t2 - t1);
        min_time(&r.adam, t4 - t3);
        min_time(&r.scalar, t6 - t5);
    }
    return r;
}

int main(int argc, char **argv)
{
    bench_opts o = {.n = (size_t)32 << 20, .iters = 20, .threads_max = omp_get_max_threads()};
    if (parse_opts(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.isa && zk_adamw_cpu_force(o.isa) != 0) {
        fprintf(stderr, "zero-bench-adam: path %s is unknown or not supported by this CPU\n",
                o.isa);
        return 2;
    }
    if (o.threads_max < 1 || o.iters < 1) {
        usage(stderr);
        return 2;
    }
    /* 0 at run time, unknown at compile time (see pass_memonly). */
    const uint32_t key = (uint32_t)(argc > 1000);

    bench_data d;
    omp_set_num_threads(o.threads_max);
    data_init(&d, o.n, o.align);

    printf("# zero-bench-adam: CPU Adam path %s, %zu elements per array (%.0f MiB fp32), bf16 "
           "working copy; arrays start %zu bytes past a page\n",
           zk_adamw_cpu_isa(), o.n, (double)o.n * 4 / (1 << 20), o.align);
    printf("# bytes/element: triad %d (doubles, a = b + s*c), memonly/adam/scalar %d (read p g m "
           "v, write p m v + bf16 work); write-allocate not counted\n",
           BENCH_BYTES_TRIAD, BENCH_BYTES_ADAM);
    printf("# 1 warm-up + %d timed rounds (triad, memonly, adam, scalar in turn); time = best "
           "(minimum) of the rounds; #wrong: of %d sampled elements vs zm_adamw, bitwise\n#\n",
           o.iters, BENCH_SAMPLE);
    printf("# %7s %10s  %9s %7s  %9s %7s  %9s %8s %7s %6s  %9s %8s %7s %6s  %7s %7s\n", "", "",
           "triad", "", "memonly", "", "adam", "", "", "", "scalar", "", "", "", "adam/",
           "adam/");
    printf("# %7s %10s  %9s %7s  %9s %7s  %9s %8s %7s %6s  %9s %8s %7s %6s  %7s %7s\n",
           "threads", "elements", "time(ms)", "GB/s", "time(ms)", "GB/s", "time(ms)", "Gpar/s",
           "GB/s", "#wrong", "time(ms)", "Gpar/s", "GB/s", "#wrong", "memonly", "scalar");

    size_t wrong = 0;
    double worst_vs_memonly = 1e30;
    bench_row first = {0}, last = {0};
    for (int t = 1; t <= o.threads_max; t++) {
        bench_row r = run_threads(&d, t, o.iters, key);
        const double n = (double)o.n;
        const double vs_mem = r.memonly / r.adam, vs_scalar = r.scalar / r.adam;
        printf("  %7d %10zu  %9.3f %7.2f  %9.3f %7.2f  %9.3f %8.3f %7.2f %6zu  %9.3f %8.3f %7.2f "
               "%6zu  %7.3f %7.2f\n",
               t, o.n, r.triad * 1e3, gbps(BENCH_BYTES_TRIAD, o.n, r.triad), r.memonly * 1e3,
               gbps(BENCH_BYTES_ADAM, o.n, r.memonly), r.adam * 1e3, n / r.adam * 1e-9,
               gbps(BENCH_BYTES_ADAM, o.n, r.adam), r.wrong_adam, r.scalar * 1e3,
               n / r.scalar * 1e-9, gbps(BENCH_BYTES_ADAM, o.n, r.scalar), r.wrong_scalar,
               vs_mem, vs_scalar);
        fflush(stdout);
        wrong += r.wrong_adam + r.wrong_scalar;
        if (vs_mem < worst_vs_memonly)
            worst_vs_memonly = vs_mem;
        if (t == 1)
            first = r;
        last = r;
    }
    data_free(&d);

    const double ratio = last.memonly / last.adam, speedup = last.scalar / last.adam;
    const double ratio1 = first.memonly / first.adam;
    printf("# targets: adam >= 0.95 x memonly at every thread count: %s (lowest %.3f); "
           "adam >= 3x scalar at %d threads: %s (%.2fx)\n",
           worst_vs_memonly >= 0.95 ? "met" : "NOT met", worst_vs_memonly, last.threads,
           speedup >= 3.0 ? "met" : "NOT met", speedup);
    if (wrong)
        fprintf(stderr, "zero-bench-adam: %zu wrong results\n", wrong);
    printf("ratio1=%.3f threads=1 adam_GBps=%.2f memonly_GBps=%.2f isa=%s align=%zu\n", ratio1,
           gbps(BENCH_BYTES_ADAM, o.n, first.adam), gbps(BENCH_BYTES_ADAM, o.n, first.memonly),
           zk_adamw_cpu_isa(), o.align);
    printf("ratio=%.3f threads=%d adam_GBps=%.2f memonly_GBps=%.2f speedup_vs_scalar=%.2f "
           "isa=%s wrong=%zu align=%zu\n",
           ratio, last.threads, gbps(BENCH_BYTES_ADAM, o.n, last.adam),
           gbps(BENCH_BYTES_ADAM, o.n, last.memonly), speedup, zk_adamw_cpu_isa(), wrong,
           o.align);
    return wrong ? 1 : 0;
}
