/* test_gpu_kernels.c — every CUDA kernel of kernels/kernels_cuda.h against its host twin in
 * kernels/kernels.h on the same random inputs, at odd sizes and every dtype combination. The
 * promise is bitwise equality (zero_math.h: same operations in the same order), so the checks
 * compare bits, with one stated exception: where the inputs hold nan (only the squared norm is
 * fed any), the GPU returns its canonical nan and the host propagates the input's payload, so
 * there "both nan" is the check. Exit 0 on success, 1 on a mismatch, 77 without a usable GPU. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "gpu_test.h"
#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "kernels/zero_math.h"
#include "runtime/device_cuda.h"

static const zero_dtype all_types[3] = {ZERO_DTYPE_FP32, ZERO_DTYPE_BF16, ZERO_DTYPE_FP16};
/* Odd sizes around the kernels' boundaries: one element, a partial warp, one past a 4096-element
 * norm block, past one 256-thread block grid row, and past the 4096-block grid cap (grid-stride
 * loop: 4096 blocks x 256 threads = 1048576 elements). */
static const size_t sizes[] = {1, 31, 4097, 65539, 1048576 + 4099};
#define NUM_SIZES (sizeof sizes / sizeof sizes[0])

static cudaStream_t g_stream;

static size_t esize(zero_dtype t) { return t == ZERO_DTYPE_FP32 ? 4 : 2; }

static void *dev_alloc(size_t bytes)
{
    void *p = NULL;
    GT_CUDA(cudaMalloc(&p, bytes ? bytes : 1));
    return p;
}

static void *host_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static void to_dev(void *d, const void *h, size_t bytes)
{
    GT_CUDA(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
}

static void to_host(void *h, const void *d, size_t bytes)
{
    GT_CUDA(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}

/* A launcher's return value; a missing kernel image gets a message that names the cause. */
static int launched(int rc, const char *what)
{
    if (rc == (int)cudaErrorNoKernelImageForDevice) {
        fprintf(stderr,
                "FAIL: %s: this build has no kernel image for this GPU; rebuild with its "
                "architecture in CMAKE_CUDA_ARCHITECTURES\n",
                what);
        exit(1);
    }
    CHECK(rc == 0, "%s: launch failed: %s", what, cudaGetErrorString((cudaError_t)rc));
    GT_CUDA(cudaStreamSynchronize(g_stream));
    return rc == 0;
}

/* ---- inputs ------------------------------------------------------------------------------- */

/* fp32 values that exercise the conversions: any bit pattern (inf, nan with payloads, fp32
 * subnormals), exact ties of the bf16 and fp16 roundings, values across the fp16 range and its
 * subnormals and overflow edge, and ordinary magnitudes. */
static float special_f32(void)
{
    const uint32_t r = (uint32_t)rnd_u64(), sign = r & 0x80000000u;
    switch (rnd_u64() % 7) {
    case 0: return zm_bits_f32(r); /* anything */
    case 1: return zm_bits_f32((r & 0xffff0000u) | 0x8000u); /* a bf16 tie */
    case 2: { /* an fp16 tie among the normals: exponent 2^-14 .. 2^15, 13 dropped bits = half */
        uint32_t e = 113u + (uint32_t)(rnd_u64() % 30u);
        return zm_bits_f32(sign | (e << 23) | (r & 0x007fe000u) | 0x00001000u);
    }
    case 3: /* an fp16 tie among the subnormals: (k + 1/2) * 2^-24 */
        return (float)ldexp((double)(rnd_u64() % 1024u) + 0.5, -24) * (sign ? -1.0f : 1.0f);
    case 4: return (float)ldexp(rnd_sym(), (int)(rnd_u64() % 44) - 28); /* across fp16's span */
    case 5: return (float)(65504.0 + rnd_sym() * 64.0);                 /* fp16's overflow edge */
    default: return (float)(rnd_sym() * 8.0);
    }
}

/* Finite values of a dtype over a wide but safe range (no overflow when added or squared). */
static float finite_f32(int spread)
{
    return (float)ldexp(rnd_sym(), (int)(rnd_u64() % (unsigned)(2 * spread + 1)) - spread);
}

/* n elements of type t: from special_f32 (with_specials) or finite_f32, in that type; bf16 and
 * fp16 inputs with specials are arbitrary 16-bit patterns half of the time. */
static void fill(void *x, zero_dtype t, size_t n, int with_specials, int spread)
{
    for (size_t i = 0; i < n; i++) {
        if (with_specials && t != ZERO_DTYPE_FP32 && rnd_u64() % 2) {
            ((uint16_t *)x)[i] = (uint16_t)rnd_u64();
            continue;
        }
        float f = with_specials ? special_f32() : finite_f32(spread);
        zm_store(x, t, i, f);
    }
}

/* ---- cast --------------------------------------------------------------------------------- */

static void test_cast(void)
{
    for (int di = 0; di < 3; di++)
        for (int si = 0; si < 3; si++)
            for (size_t k = 0; k < NUM_SIZES; k++) {
                const zero_dtype dt = all_types[di], st = all_types[si];
                const size_t n = sizes[k];
                void *src = host_alloc(n * esize(st)), *want = host_alloc(n * esize(dt));
                void *got = host_alloc(n * esize(dt));
                fill(src, st, n, 1, 0);
                zk_cast(want, dt, src, st, n);
                void *dsrc = dev_alloc(n * esize(st)), *ddst = dev_alloc(n * esize(dt));
                to_dev(dsrc, src, n * esize(st));
                GT_CUDA(cudaMemset(ddst, 0xa5, n * esize(dt)));
                if (launched(zk_cuda_cast(ddst, dt, dsrc, st, n, g_stream), "zk_cuda_cast")) {
                    to_host(got, ddst, n * esize(dt));
                    size_t bad = 0, first = n;
                    for (size_t i = 0; i < n; i++)
                        if (memcmp((char *)got + i * esize(dt), (char *)want + i * esize(dt),
                                   esize(dt)) != 0 && bad++ == 0)
                            first = i;
                    CHECK(bad == 0, "cast %s<-%s n=%zu: %zu elements differ, first at %zu",
                          gt_dtype_name(dt), gt_dtype_name(st), n, bad, first);
                }
                cudaFree(dsrc);
                cudaFree(ddst);
                free(src), free(want), free(got);
            }
    REPORT_LINE("zk_cuda_cast: 9 dtype pairs x %zu sizes, bitwise (nan, inf, subnormals, ties)",
                NUM_SIZES);
}

/* ---- add ---------------------------------------------------------------------------------- */

static void test_add(void)
{
    for (int di = 0; di < 3; di++)
        for (int si = 0; si < 3; si++)
            for (size_t k = 0; k < NUM_SIZES; k++) {
                const zero_dtype dt = all_types[di], st = all_types[si];
                const size_t n = sizes[k];
                const int f32_entry = st == ZERO_DTYPE_FP32 && (k % 2);
                void *src = host_alloc(n * esize(st)), *dst = host_alloc(n * esize(dt));
                void *got = host_alloc(n * esize(dt));
                /* fp16 holds up to 65504: a spread of 14 binades keeps most sums finite, and a
                 * sum that overflows rounds to the same inf on both sides. */
                fill(src, st, n, 0, 14);
                fill(dst, dt, n, 0, 14);
                void *dsrc = dev_alloc(n * esize(st)), *ddst = dev_alloc(n * esize(dt));
                to_dev(dsrc, src, n * esize(st));
                to_dev(ddst, dst, n * esize(dt));
                int rc = f32_entry ? zk_cuda_add_f32(ddst, dt, dsrc, n, g_stream)
                                   : zk_cuda_add(ddst, dt, dsrc, st, n, g_stream);
                if (f32_entry)
                    zk_add_f32(dst, dt, src, n);
                else
                    zk_add(dst, dt, src, st, n);
                if (launched(rc, f32_entry ? "zk_cuda_add_f32" : "zk_cuda_add")) {
                    to_host(got, ddst, n * esize(dt));
                    CHECK(memcmp(got, dst, n * esize(dt)) == 0, "add %s+=%s n=%zu differs",
                          gt_dtype_name(dt), gt_dtype_name(st), n);
                }
                cudaFree(dsrc);
                cudaFree(ddst);
                free(src), free(dst), free(got);
            }
    REPORT_LINE("zk_cuda_add / zk_cuda_add_f32: 9 dtype pairs x %zu sizes, bitwise", NUM_SIZES);
}

/* ---- AdamW -------------------------------------------------------------------------------- */

/* Step t's constants; odd steps run Adam-L2, even ones AdamW. */
static zk_adamw_params adam_params(int t)
{
    zk_adamw_params p;
    memset(&p, 0, sizeof p);
    p.lr = 3e-4;
    p.beta1 = 0.9;
    p.beta2 = 0.95;
    p.eps = 1e-8;
    p.weight_decay = 0.1;
    p.grad_scale = 0.5f;
    p.l2 = t & 1;
    zk_adamw_bias(&p, t);
    return p;
}

static void test_adamw(void)
{
    const int work_kinds = 4; /* fp32, bf16, fp16, none */
    for (int gi = 0; gi < 3; gi++)
        for (int wi = 0; wi < work_kinds; wi++)
            for (size_t k = 0; k < NUM_SIZES; k++) {
                const zero_dtype gt = all_types[gi];
                const int has_work = wi < 3;
                const zero_dtype wt = has_work ? all_types[wi] : ZERO_DTYPE_FP32;
                const size_t n = sizes[k];
                float *p = host_alloc(n * 4), *m = host_alloc(n * 4), *v = host_alloc(n * 4);
                void *g = host_alloc(n * esize(gt)), *w = host_alloc(n * esize(wt));
                float *gp = host_alloc(n * 4), *gm = host_alloc(n * 4), *gv = host_alloc(n * 4);
                void *gw = host_alloc(n * esize(wt));
                for (size_t i = 0; i < n; i++) {
                    p[i] = (float)rnd_sym();
                    m[i] = finite_f32(10) * 1e-2f;
                    float r = finite_f32(10);
                    v[i] = r * r * 1e-4f;
                }
                fill(g, gt, n, 0, 8);
                memset(w, 0, n * esize(wt));
                float *dp = dev_alloc(n * 4), *dm = dev_alloc(n * 4), *dv = dev_alloc(n * 4);
                void *dg = dev_alloc(n * esize(gt)), *dw = dev_alloc(n * esize(wt));
                to_dev(dp, p, n * 4), to_dev(dm, m, n * 4), to_dev(dv, v, n * 4);
                to_dev(dg, g, n * esize(gt));
                to_dev(dw, w, n * esize(wt));
                /* Two steps, so the second starts from state the first produced on each side. */
                int ok = 1;
                for (int t = 1; t <= 2 && ok; t++) {
                    const zk_adamw_params hp = adam_params(t + 6);
                    zk_adamw(p, m, v, g, gt, has_work ? w : NULL, wt, n, &hp);
                    ok = launched(zk_cuda_adamw(dp, dm, dv, dg, gt, has_work ? dw : NULL, wt, n,
                                                &hp, g_stream),
                                  "zk_cuda_adamw");
                }
                if (ok) {
                    to_host(gp, dp, n * 4), to_host(gm, dm, n * 4), to_host(gv, dv, n * 4);
                    to_host(gw, dw, n * esize(wt));
                    CHECK(memcmp(gp, p, n * 4) == 0 && memcmp(gm, m, n * 4) == 0 &&
                              memcmp(gv, v, n * 4) == 0,
                          "adamw grad %s work %s n=%zu: master/m/v differ", gt_dtype_name(gt),
                          has_work ? gt_dtype_name(wt) : "none", n);
                    CHECK(memcmp(gw, w, n * esize(wt)) == 0,
                          "adamw grad %s work %s n=%zu: working copy differs",
                          gt_dtype_name(gt), has_work ? gt_dtype_name(wt) : "none", n);
                }
                cudaFree(dp), cudaFree(dm), cudaFree(dv), cudaFree(dg), cudaFree(dw);
                free(p), free(m), free(v), free(g), free(w);
                free(gp), free(gm), free(gv), free(gw);
            }
    REPORT_LINE("zk_cuda_adamw: 3 grad dtypes x 4 working copies (none included) x %zu sizes, "
                "two steps, bitwise",
                NUM_SIZES);
}

/* ---- squared norm ------------------------------------------------------------------------- */

/* Device sum of squares of x (host data, copied over); flag preset to `flag_in`. */
static double dev_sq_norm(const void *x, zero_dtype t, size_t n, double *out_dev, int accumulate,
                          int flag_in, int *flag_out)
{
    void *dx = dev_alloc(n * esize(t));
    double *scratch = dev_alloc(zk_cuda_sq_norm_scratch(n) * sizeof(double));
    int *dflag = dev_alloc(sizeof(int));
    to_dev(dx, x, n * esize(t));
    to_dev(dflag, &flag_in, sizeof flag_in);
    double out = NAN;
    if (launched(zk_cuda_sq_norm(dx, t, n, scratch, out_dev, accumulate, dflag, g_stream),
                 "zk_cuda_sq_norm")) {
        to_host(&out, out_dev, sizeof out);
        to_host(flag_out, dflag, sizeof *flag_out);
    }
    cudaFree(dx), cudaFree(scratch), cudaFree(dflag);
    return out;
}

static int same_double(double a, double b)
{
    return zm_f64_bits(a) == zm_f64_bits(b) || (isnan(a) && isnan(b));
}

static void test_sq_norm(void)
{
    /* Beyond the sizes above: 0 elements, exactly one block, and more block sums than the host
     * twin computes in one parallel group (256 blocks), so its group-wise order is covered. */
    static const size_t norm_sizes[] = {0, 1, 31, 4096, 4097, 65539, 256 * 4096 * 3 + 17};
    const size_t num = sizeof norm_sizes / sizeof norm_sizes[0];
    double *out_dev = dev_alloc(sizeof(double));
    for (int ti = 0; ti < 3; ti++)
        for (size_t k = 0; k < num; k++) {
            const zero_dtype t = all_types[ti];
            const size_t n = norm_sizes[k];
            void *x = host_alloc(n * esize(t));
            fill(x, t, n, 0, 12);
            int hflag = 0, dflag = -1;
            double want = zk_sq_norm(x, t, n, &hflag);
            double got = dev_sq_norm(x, t, n, out_dev, 0, 0, &dflag);
            CHECK(zm_f64_bits(got) == zm_f64_bits(want),
                  "sq_norm %s n=%zu: device %.17g host %.17g", gt_dtype_name(t), n, got, want);
            CHECK(dflag == 0 && hflag == 0, "sq_norm %s n=%zu: nonfinite flag set (%d, %d)",
                  gt_dtype_name(t), n, dflag, hflag);

            /* accumulate: out = out + sum, so chunk norms add up in call order. */
            if (n > 0) {
                const size_t half = n / 2;
                int f1 = 0, f2 = 0;
                double h1 = zk_sq_norm(x, t, half, &f1);
                double h2 = zk_sq_norm((char *)x + half * esize(t), t, n - half, &f2);
                double acc_want = h1 + h2;
                dev_sq_norm(x, t, half, out_dev, 0, 0, &dflag);
                double acc = dev_sq_norm((char *)x + half * esize(t), t, n - half, out_dev, 1, 0,
                                         &dflag);
                CHECK(zm_f64_bits(acc) == zm_f64_bits(acc_want),
                      "sq_norm %s n=%zu accumulate: device %.17g host %.17g",
                      gt_dtype_name(t), n, acc, acc_want);

                /* inf, then nan, at a random place: flag set on both sides, result non-finite. */
                for (int kind = 0; kind < 2; kind++) {
                    const size_t at = (size_t)(rnd_u64() % n);
                    char saved[4];
                    memcpy(saved, (char *)x + at * esize(t), esize(t));
                    zm_store(x, t, at, kind == 0 ? INFINITY : NAN);
                    hflag = 0;
                    want = zk_sq_norm(x, t, n, &hflag);
                    got = dev_sq_norm(x, t, n, out_dev, 0, 0, &dflag);
                    CHECK(dflag == 1 && hflag == 1 && same_double(got, want),
                          "sq_norm %s n=%zu with %s at %zu: device %g flag %d, host %g "
                          "flag %d",
                          gt_dtype_name(t), n, kind ? "nan" : "inf", at, got, dflag, want,
                          hflag);
                    memcpy((char *)x + at * esize(t), saved, esize(t));
                }
                /* Finite input leaves a set flag alone ("untouched otherwise"). */
                dev_sq_norm(x, t, n, out_dev, 0, 1, &dflag);
                CHECK(dflag == 1, "sq_norm %s n=%zu cleared a flag it should leave alone",
                      gt_dtype_name(t), n);
            }
            free(x);
        }
    cudaFree(out_dev);
    REPORT_LINE("zk_cuda_sq_norm: 3 dtypes x %zu sizes, bitwise, accumulate, inf/nan flag", num);
}

int main(void)
{
    char why[256];
    if (!zr_cuda_usable(why, sizeof why)) {
        printf("SKIP: no usable GPU: %s\n", why);
        return GT_SKIP;
    }
    GT_CUDA(cudaSetDevice(0));
    GT_CUDA(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    rnd_seed(20241125);
    test_cast();
    test_add();
    test_adamw();
    test_sq_norm();
    cudaStreamDestroy(g_stream);
    printf("%s: %d failed checks\n", check_failures ? "FAILED" : "passed", check_failures);
    return check_failures ? 1 : 0;
}
