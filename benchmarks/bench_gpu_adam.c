/* bench_gpu_adam.c — zero-bench-gpu-adam: the fused AdamW kernel (zk_cuda_adamw) against the
 * memory bandwidth it is bound by, and the host<->device bandwidth the offload path is bound by.
 * Passes, each timed with CUDA events on one stream, 2 warm-up + K timed repetitions, best
 * (minimum) time reported:
 *   d2d        cudaMemcpyAsync device to device of a 16n-byte buffer; bytes = read + written
 *              (32n), the measure comparable with a kernel's traffic;
 *   adam-f32g  zk_cuda_adamw, fp32 gradient, bf16 working copy: read p g m v, write p m v + bf16
 *              work = 30 bytes per element (as zero-bench-adam counts);
 *   adam-bf16g the same with a bf16 gradient (28 bytes per element), the mixed-precision case;
 *   h2d, d2h   cudaMemcpyAsync between pinned host memory (cudaMallocHost) and the device, bytes
 *              transferred (each byte once);
 *   h2d-page   the same from ordinary (pageable) host memory, for contrast.
 * The adam results are checked bitwise against zm_adamw on a sample of elements (#wrong, exit 1
 * on any). The last line reads ratio=R: adam-f32g GB/s over d2d GB/s. Exits 77 without a GPU. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "kernels/zero_math.h"
#include "runtime/device_cuda.h"

#define BENCH_SAMPLE 4096
#define BENCH_BYTES_ADAM_F32G 30 /* read p g(fp32) m v, write p m v, bf16 work */
#define BENCH_BYTES_ADAM_BF16G 28

#define CK(call)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "zero-bench-gpu-adam: %s failed: %s (%s:%d)\n", #call,             \
                    cudaGetErrorString(e_), __FILE__, __LINE__);                               \
            exit(2);                                                                           \
        }                                                                                      \
    } while (0)

static const zk_adamw_params g_hp = {.lr = 1e-3f,
                                     .beta1 = 0.9f,
                                     .beta2 = 0.999f,
                                     .eps = 1e-8f,
                                     .weight_decay = 0.01f,
                                     .bias_corr1 = 0.65132156f,      /* 1 - 0.9^10 */
                                     .bias_corr2_sqrt = 0.09955119f, /* sqrt(1 - 0.999^10) */
                                     .grad_scale = 1.0f};

typedef struct bench_opts {
    size_t n;        /* elements per fp32 array */
    int iters;       /* timed repetitions */
    size_t xfer;     /* bytes of the host<->device transfers */
} bench_opts;

typedef struct gpu_data {
    size_t n;
    float *p, *m, *v, *g;  /* (n,) fp32 device: master, Adam moments, fp32 gradient */
    uint16_t *g16, *work;  /* (n,) bf16 device: gradient, working copy */
    void *copy_a, *copy_b; /* (16n bytes) device: the d2d pair */
} gpu_data;

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

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        fprintf(stderr, "zero-bench-gpu-adam: cannot allocate %zu bytes on the GPU: %s (try a "
                        "smaller --n)\n",
                bytes, cudaGetErrorString(e));
        exit(2);
    }
    return p;
}

/* Values of a model in training, made on the host in slabs and copied over. */
static void data_init(gpu_data *d, size_t n)
{
    d->n = n;
    d->p = dev_alloc(n * 4), d->m = dev_alloc(n * 4), d->v = dev_alloc(n * 4);
    d->g = dev_alloc(n * 4), d->g16 = dev_alloc(n * 2), d->work = dev_alloc(n * 2);
    d->copy_a = dev_alloc(n * 16), d->copy_b = dev_alloc(n * 16);
    const size_t slab = (size_t)1 << 22;
    float *h = malloc(slab * 4 * 4);
    uint16_t *h16 = malloc(slab * 2);
    if (!h || !h16) {
        fprintf(stderr, "zero-bench-gpu-adam: out of host memory\n");
        exit(2);
    }
    for (size_t lo = 0; lo < n; lo += slab) {
        const size_t len = n - lo < slab ? n - lo : slab;
        for (size_t k = 0; k < len; k++) {
            const size_t i = lo + k;
            float r = hash_sym(i, 3);
            h[k] = 0.05f * hash_sym(i, 0);
            h[slab + k] = 1e-4f * hash_sym(i, 2);
            h[2 * slab + k] = 1e-7f * r * r;
            h[3 * slab + k] = 1e-3f * hash_sym(i, 1);
            h16[k] = zm_f32_to_bf16(h[3 * slab + k]);
        }
        CK(cudaMemcpy(d->p + lo, h, len * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d->m + lo, h + slab, len * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d->v + lo, h + 2 * slab, len * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d->g + lo, h + 3 * slab, len * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(d->g16 + lo, h16, len * 2, cudaMemcpyHostToDevice));
    }
    CK(cudaMemset(d->work, 0, n * 2));
    CK(cudaMemset(d->copy_a, 1, n * 16));
    free(h), free(h16);
}

static void data_free(gpu_data *d)
{
    cudaFree(d->p), cudaFree(d->m), cudaFree(d->v), cudaFree(d->g);
    cudaFree(d->g16), cudaFree(d->work), cudaFree(d->copy_a), cudaFree(d->copy_b);
}

/* ---- correctness on a sample -------------------------------------------------------------- */

typedef struct sample {
    size_t idx[BENCH_SAMPLE];
    float p[BENCH_SAMPLE], m[BENCH_SAMPLE], v[BENCH_SAMPLE], g[BENCH_SAMPLE];
} sample;

static void fetch(float *dst, const float *dev, size_t i)
{
    CK(cudaMemcpy(dst, dev + i, 4, cudaMemcpyDeviceToHost));
}

/* Spread over the array, off block boundaries, plus the last elements; the gradient as the pass
 * will read it (fp32, or bf16 widened). */
static void sample_take(sample *s, const gpu_data *d, int bf16_grad)
{
    const size_t n = d->n, stride = n / BENCH_SAMPLE ? n / BENCH_SAMPLE : 1;
    for (size_t k = 0; k < BENCH_SAMPLE; k++) {
        const size_t i = k < 32 ? n - 1 - (k % n) : (k * stride + k % 13) % n;
        s->idx[k] = i;
        fetch(&s->p[k], d->p, i), fetch(&s->m[k], d->m, i), fetch(&s->v[k], d->v, i);
        if (bf16_grad) {
            uint16_t h;
            CK(cudaMemcpy(&h, d->g16 + i, 2, cudaMemcpyDeviceToHost));
            s->g[k] = zm_bf16_to_f32(h);
        } else {
            fetch(&s->g[k], d->g, i);
        }
    }
}

static size_t sample_check(const sample *s, const gpu_data *d)
{
    const zm_adamw_coef c =
        zm_adamw_coefs(g_hp.lr, g_hp.beta1, g_hp.beta2, g_hp.eps, g_hp.weight_decay,
                       g_hp.bias_corr1, g_hp.bias_corr2_sqrt, g_hp.grad_scale, g_hp.l2);
    size_t wrong = 0;
    for (size_t k = 0; k < BENCH_SAMPLE; k++) {
        const size_t i = s->idx[k];
        float p = s->p[k], m = s->m[k], v = s->v[k], gp, gm, gv;
        uint16_t gw;
        zm_adamw(&p, &m, &v, s->g[k], &c);
        fetch(&gp, d->p, i), fetch(&gm, d->m, i), fetch(&gv, d->v, i);
        CK(cudaMemcpy(&gw, d->work + i, 2, cudaMemcpyDeviceToHost));
        wrong += zm_f32_bits(p) != zm_f32_bits(gp) || zm_f32_bits(m) != zm_f32_bits(gm) ||
                 zm_f32_bits(v) != zm_f32_bits(gv) || zm_f32_to_bf16(p) != gw;
    }
    return wrong;
}

/* ---- timing ------------------------------------------------------------------------------- */

typedef enum pass_kind { PASS_D2D, PASS_ADAM_F32G, PASS_ADAM_BF16G, PASS_COPY } pass_kind;

typedef struct pass {
    pass_kind kind;
    void *dst;
    const void *src;
    size_t bytes; /* PASS_COPY: bytes transferred */
} pass;

static void run_pass(const pass *ps, gpu_data *d, cudaStream_t s)
{
    int rc = 0;
    switch (ps->kind) {
    case PASS_D2D:
        CK(cudaMemcpyAsync(d->copy_b, d->copy_a, d->n * 16, cudaMemcpyDeviceToDevice, s));
        break;
    case PASS_ADAM_F32G:
        rc = zk_cuda_adamw(d->p, d->m, d->v, d->g, ZERO_DTYPE_FP32, d->work, ZERO_DTYPE_BF16, d->n,
                           &g_hp, s);
        break;
    case PASS_ADAM_BF16G:
        rc = zk_cuda_adamw(d->p, d->m, d->v, d->g16, ZERO_DTYPE_BF16, d->work, ZERO_DTYPE_BF16,
                           d->n, &g_hp, s);
        break;
    case PASS_COPY:
        CK(cudaMemcpyAsync(ps->dst, ps->src, ps->bytes, cudaMemcpyDefault, s));
        break;
    }
    CK((cudaError_t)rc);
}

/* Best time in seconds over iters repetitions, after 2 warm-ups. */
static double time_pass(const pass *ps, gpu_data *d, cudaStream_t s, int iters)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    double best = 1e30;
    for (int it = -2; it < iters; it++) {
        CK(cudaEventRecord(a, s));
        run_pass(ps, d, s);
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (it >= 0 && ms * 1e-3 < best)
            best = ms * 1e-3;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return best;
}

/* ---- command line ------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: zero-bench-gpu-adam [--n ELEMENTS[K|M|G]] [--iters K] [--xfer BYTES[K|M|G]]\n"
               "  --n      elements per fp32 array (default 64M: 256 MiB per array; 20n bytes for\n"
               "           Adam's arrays plus 32n for the d2d pair, about 3.3 GiB in all)\n"
               "  --iters  timed repetitions after 2 warm-ups (default 20)\n"
               "  --xfer   bytes of each host<->device transfer (default 256M)\n");
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

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!val) {
            fprintf(stderr, "zero-bench-gpu-adam: %s needs a value\n", a);
            return -1;
        }
        i++;
        size_t x;
        if (strcmp(a, "--n") == 0 && parse_size(val, &x) == 0)
            o->n = x;
        else if (strcmp(a, "--iters") == 0 && parse_size(val, &x) == 0 && x <= 100000)
            o->iters = (int)x;
        else if (strcmp(a, "--xfer") == 0 && parse_size(val, &x) == 0)
            o->xfer = x;
        else {
            fprintf(stderr, "zero-bench-gpu-adam: bad option %s %s\n", a, val);
            return -1;
        }
    }
    return 0;
}

/* ---- main --------------------------------------------------------------------------------- */

static void row(const char *name, double bytes, double t, size_t n, const char *wrong)
{
    printf("  %-11s %14.0f %10.3f %9.1f %9.3f %7s\n", name, bytes, t * 1e3, bytes / t * 1e-9,
           n ? (double)n / t * 1e-9 : 0.0, wrong);
}

int main(int argc, char **argv)
{
    bench_opts o = {.n = (size_t)64 << 20, .iters = 20, .xfer = (size_t)256 << 20};
    if (parse_opts(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    char why[256];
    if (!zr_cuda_usable(why, sizeof why)) {
        printf("zero-bench-gpu-adam: SKIP: no usable GPU: %s\n", why);
        return 77;
    }
    CK(cudaSetDevice(0));
    struct cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

    gpu_data d;
    data_init(&d, o.n);
    void *pinned = NULL, *pageable = malloc(o.xfer), *dxfer = dev_alloc(o.xfer);
    CK(cudaMallocHost(&pinned, o.xfer));
    if (!pageable) {
        fprintf(stderr, "zero-bench-gpu-adam: out of host memory\n");
        return 2;
    }
    memset(pinned, 3, o.xfer);
    memset(pageable, 3, o.xfer);

    printf("# zero-bench-gpu-adam: %s (compute capability %d.%d, %.1f GiB), %zu elements per "
           "array (%.0f MiB fp32)\n",
           prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / (1 << 30), o.n,
           (double)o.n * 4 / (1 << 20));
    printf("# bytes: d2d read + written (2 x %zu); adam-f32g %d/element (read p g m v, write p m v "
           "+ bf16 work), adam-bf16g %d/element; h2d/d2h bytes transferred\n",
           o.n * 16, BENCH_BYTES_ADAM_F32G, BENCH_BYTES_ADAM_BF16G);
    printf("# 2 warm-up + %d timed repetitions, CUDA events on one stream; time = best; #wrong: of "
           "%d sampled elements vs zm_adamw, bitwise\n#\n",
           o.iters, BENCH_SAMPLE);
    printf("# %-11s %14s %10s %9s %9s %7s\n", "pass", "bytes", "time(ms)", "GB/s", "Gelem/s",
           "#wrong");

    static sample smp;
    size_t wrong = 0;
    char wrong_f32[16], wrong_bf16[16];

    const pass d2d = {PASS_D2D, NULL, NULL, 0};
    const double t_d2d = time_pass(&d2d, &d, s, o.iters);
    row("d2d", 32.0 * (double)o.n, t_d2d, 0, "-");

    /* Check one launch on its own, then time. */
    const pass f32g = {PASS_ADAM_F32G, NULL, NULL, 0}, bf16g = {PASS_ADAM_BF16G, NULL, NULL, 0};
    sample_take(&smp, &d, 0);
    run_pass(&f32g, &d, s);
    CK(cudaStreamSynchronize(s));
    size_t w = sample_check(&smp, &d);
    wrong += w;
    snprintf(wrong_f32, sizeof wrong_f32, "%zu", w);
    const double t_f32g = time_pass(&f32g, &d, s, o.iters);
    row("adam-f32g", (double)BENCH_BYTES_ADAM_F32G * (double)o.n, t_f32g, o.n, wrong_f32);

    sample_take(&smp, &d, 1);
    run_pass(&bf16g, &d, s);
    CK(cudaStreamSynchronize(s));
    w = sample_check(&smp, &d);
    wrong += w;
    snprintf(wrong_bf16, sizeof wrong_bf16, "%zu", w);
    const double t_bf16g = time_pass(&bf16g, &d, s, o.iters);
    row("adam-bf16g", (double)BENCH_BYTES_ADAM_BF16G * (double)o.n, t_bf16g, o.n, wrong_bf16);

    const pass h2d = {PASS_COPY, dxfer, pinned, o.xfer}, d2h = {PASS_COPY, pinned, dxfer, o.xfer};
    const pass h2d_page = {PASS_COPY, dxfer, pageable, o.xfer};
    const double t_h2d = time_pass(&h2d, &d, s, o.iters);
    row("h2d", (double)o.xfer, t_h2d, 0, "-");
    const double t_d2h = time_pass(&d2h, &d, s, o.iters);
    row("d2h", (double)o.xfer, t_d2h, 0, "-");
    const double t_page = time_pass(&h2d_page, &d, s, o.iters);
    row("h2d-page", (double)o.xfer, t_page, 0, "-");

    const double d2d_gbps = 32.0 * (double)o.n / t_d2d * 1e-9;
    const double adam_gbps = (double)BENCH_BYTES_ADAM_F32G * (double)o.n / t_f32g * 1e-9;
    const double adam16_gbps = (double)BENCH_BYTES_ADAM_BF16G * (double)o.n / t_bf16g * 1e-9;
    if (wrong)
        fprintf(stderr, "zero-bench-gpu-adam: %zu wrong results\n", wrong);
    printf("ratio=%.3f adam_GBps=%.1f adam_bf16g_GBps=%.1f d2d_GBps=%.1f h2d_GBps=%.2f "
           "d2h_GBps=%.2f h2d_pageable_GBps=%.2f gpu=\"%s\" wrong=%zu\n",
           adam_gbps / d2d_gbps, adam_gbps, adam16_gbps, d2d_gbps, (double)o.xfer / t_h2d * 1e-9,
           (double)o.xfer / t_d2h * 1e-9, (double)o.xfer / t_page * 1e-9, prop.name, wrong);

    cudaFreeHost(pinned);
    free(pageable);
    cudaFree(dxfer);
    data_free(&d);
    cudaStreamDestroy(s);
    return wrong ? 1 : 0;
}
