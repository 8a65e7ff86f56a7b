/* test_adam_cpu.c — CPU Adam (zk_adamw_cpu) against zk_adamw, bit for bit: every SIMD path the
 * CPU has, forced in turn (a path the CPU lacks is reported as skipped), every working type, odd
 * lengths, unaligned and mutually misaligned arrays, several thread counts, inf/nan gradients, and
 * the working-copy conversions on every class of fp32 value. Exit status 1 on any failure. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/zero_math.h"
#include "tests/common/check.h"

#define ZK_NO_WORK (-1) /* work type index meaning "work = NULL" */

static const char *work_name(int wt)
{
    return wt == ZK_NO_WORK         ? "none"
           : wt == ZERO_DTYPE_FP32 ? "fp32"
           : wt == ZERO_DTYPE_BF16 ? "bf16"
                                   : "fp16";
}

/* ---- the SIMD paths ----------------------------------------------------------------------- */

static const char *const g_isas[] = {"scalar", "avx2", "avx512"};
#define N_ISAS 3

/* Paths this CPU runs (forcing them succeeds); the others are printed as skipped once. */
static int g_isa_ok[N_ISAS];

static void probe_isas(void)
{
    printf("     default path on this CPU: %s\n", zk_adamw_cpu_isa());
    for (int k = 0; k < N_ISAS; k++) {
        g_isa_ok[k] = zk_adamw_cpu_force(g_isas[k]) == 0;
        if (g_isa_ok[k])
            CHECK(strcmp(zk_adamw_cpu_isa(), g_isas[k]) == 0, "forced %s, running %s",
                  g_isas[k], zk_adamw_cpu_isa());
        else
            printf("skip %s: this CPU lacks the instructions; path not tested here\n",
                   g_isas[k]);
    }
    CHECK(g_isa_ok[0], "the scalar path must always be available");
    CHECK(zk_adamw_cpu_force("sse9") == -1, "an unknown path name was accepted");
    CHECK(zk_adamw_cpu_force("auto") == 0, "auto refused");
    REPORT("path selection and forcing\n");
}

/* ---- one configuration: zk_adamw_cpu vs zk_adamw over several steps ------------------------ */

/* A buffer of n elements of size es starting `off` elements past a 64-byte boundary. */
typedef struct buf {
    void *base;
    void *p;
} buf;

static buf buf_make(size_t n, size_t es, size_t off)
{
    buf b;
    b.base = aligned_alloc(64, ((n + off) * es + 64 + 63) / 64 * 64);
    b.p = (char *)b.base + off * es;
    return b;
}

typedef struct adam_case {
    size_t n;
    size_t off[5]; /* master, m, v, grad, work: element offsets from 64-byte alignment */
    int wt;        /* work dtype or ZK_NO_WORK */
    int steps;
    float lr, wd, gscale;
    int specials; /* put inf/nan/huge values into the gradients (and so into m, v, master) */
    int l2;       /* Adam-L2 instead of AdamW */
} adam_case;

static size_t g_configs, g_elements_compared;

/* Count elements whose bits differ. nan_bits_differ counts nans that are nan in both but with
 * different bits (reported separately: see test_specials). */
static size_t diff_f32(const float *a, const float *b, size_t n, size_t *nan_bits_differ)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t x = zm_f32_bits(a[i]), y = zm_f32_bits(b[i]);
        if (x == y)
            continue;
        if (nan_bits_differ && isnan(a[i]) && isnan(b[i]))
            (*nan_bits_differ)++;
        else
            bad++;
    }
    return bad;
}

static void fill_special_grads(float *g, size_t n)
{
    static const float sp[] = {INFINITY, -INFINITY, NAN, -NAN, 3e38f, -3e38f, 1e20f, FLT_MIN,
                               FLT_TRUE_MIN, 0.0f, -0.0f};
    for (size_t i = 0; i < n; i++)
        if (rnd_u32() % 8 == 0)
            g[i] = sp[rnd_u32() % (sizeof sp / sizeof sp[0])];
}

/* Runs one case on path `isa` with `threads` OpenMP threads. Returns the number of nans that
 * differed only in their bits (payload or sign). */
static size_t run_case(const adam_case *tc, int isa, int threads)
{
    const size_t n = tc->n;
    const size_t wes = tc->wt == ZERO_DTYPE_FP32 ? 4 : 2;
    buf bp = buf_make(n, 4, tc->off[0]), bm = buf_make(n, 4, tc->off[1]);
    buf bv = buf_make(n, 4, tc->off[2]), bg = buf_make(n, 4, tc->off[3]);
    buf bw = buf_make(n, wes, tc->off[4]);
    float *p = bp.p, *m = bm.p, *v = bv.p, *g = bg.p;
    void *w = tc->wt == ZK_NO_WORK ? NULL : bw.p;
    float *rp = malloc(n * 4), *rm = malloc(n * 4), *rv = malloc(n * 4);
    void *rw = malloc(n * 4 + 4);
    size_t nan_bits = 0;

    for (size_t i = 0; i < n; i++) {
        rp[i] = p[i] = (float)rnd_sym();
        rm[i] = m[i] = (float)(0.01 * rnd_sym());
        rv[i] = v[i] = (float)(1e-4 * fabs(rnd_sym()));
    }
    if (w) {
        memset(w, 0xa5, n * wes); /* stale contents must be overwritten everywhere */
        memset(rw, 0x5a, n * wes);
    }
    const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    const zero_dtype wtype = tc->wt == ZK_NO_WORK ? ZERO_DTYPE_FP32 : (zero_dtype)tc->wt;
    for (int t = 1; t <= tc->steps; t++) {
        /* Gradients over 16 binades, some subnormal after scaling. */
        for (size_t i = 0; i < n; i++)
            g[i] = (float)(rnd_sym() * ldexp(1.0, -(int)(rnd_u32() % 16)));
        if (tc->specials)
            fill_special_grads(g, n);
        const zk_adamw_params hp = {.lr = tc->lr,
                                    .beta1 = beta1,
                                    .beta2 = beta2,
                                    .eps = eps,
                                    .weight_decay = tc->wd,
                                    .bias_corr1 = 1.0f - powf(beta1, (float)t),
                                    .bias_corr2_sqrt = sqrtf(1.0f - powf(beta2, (float)t)),
                                    .grad_scale = tc->gscale,
                                    .l2 = tc->l2};
        omp_set_num_threads(threads);
        CHECK(zk_adamw_cpu_force(g_isas[isa]) == 0, "cannot force %s", g_isas[isa]);
        zk_adamw_cpu(p, m, v, g, w, wtype, n, &hp);
        zk_adamw_cpu_force("auto");
        omp_set_num_threads(2);
        zk_adamw(rp, rm, rv, g, ZERO_DTYPE_FP32, w ? rw : NULL, wtype, n, &hp);

        size_t *nb = tc->specials ? &nan_bits : NULL;
        size_t bad_p = diff_f32(p, rp, n, nb), bad_m = diff_f32(m, rm, n, nb);
        size_t bad_v = diff_f32(v, rv, n, nb);
        size_t bad_w = w ? (size_t)(memcmp(w, rw, n * wes) != 0) : 0;
        if (w && bad_w && tc->specials) {
            /* Tell nan-only differences apart (they follow from master's nan bits). */
            bad_w = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t a = wes == 4 ? ((uint32_t *)w)[i] : ((uint16_t *)w)[i];
                uint32_t b = wes == 4 ? ((uint32_t *)rw)[i] : ((uint16_t *)rw)[i];
                if (a != b)
                    bad_w += !isnan(rp[i]);
            }
        }
        CHECK(bad_p + bad_m + bad_v + bad_w == 0,
              "%s n=%zu work=%s off=%zu,%zu,%zu,%zu,%zu threads=%d step %d: elements differing "
              "from zk_adamw: master %zu, m %zu, v %zu, work %s",
              g_isas[isa], n, work_name(tc->wt), tc->off[0], tc->off[1], tc->off[2], tc->off[3],
              tc->off[4], threads, t, bad_p, bad_m, bad_v, bad_w ? "differs" : "equal");
        g_elements_compared += n;
    }
    g_configs++;
    free(bp.base), free(bm.base), free(bv.base), free(bg.base), free(bw.base);
    free(rp), free(rm), free(rv), free(rw);
    return nan_bits;
}

/* ---- the sweeps --------------------------------------------------------------------------- */

static const size_t g_sizes[] = {1, 7, 15, 16, 17, 33, 1000, 4097, 100003};
#define N_SIZES (sizeof g_sizes / sizeof g_sizes[0])

static void test_bitwise(void)
{
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (!g_isa_ok[isa]) {
            printf("skip %s: bitwise sweep\n", g_isas[isa]);
            continue;
        }
        size_t configs0 = g_configs;
        int k = 0;
        for (size_t s = 0; s < N_SIZES; s++)
            for (int wt = ZK_NO_WORK; wt <= ZERO_DTYPE_FP16; wt++, k++) {
                adam_case tc = {.n = g_sizes[s],
                                .wt = wt,
                                .steps = 3,
                                .lr = (k % 2) ? 1e-3f : 3e-2f,
                                .wd = (k % 3) ? 0.1f : 0.0f,
                                .gscale = (k % 5) ? 0.37f : 1.0f,
                                .l2 = k % 4 == 1};
                /* Starts 1..3 elements past alignment, different for each array. */
                for (int a = 0; a < 5; a++)
                    tc.off[a] = (size_t)(1 + (k + a) % 3);
                run_case(&tc, isa, 1 + k % 3);
            }
        REPORT("%s: %zu configurations (lengths 1..100003 x work none/fp32/bf16/fp16, starts "
               "offset 1..3 floats, 1-3 threads, AdamW and Adam-L2) x 3 steps bitwise equal to "
               "zk_adamw\n",
               g_isas[isa], g_configs - configs0);
    }
}

/* The same large update at 1, 2, 3 and 4 threads on each path (blocks are fixed, so the thread
 * count must not matter; run_case compares each against zk_adamw at 2 threads). */
static void test_threads(void)
{
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (!g_isa_ok[isa])
            continue;
        for (int th = 1; th <= 4; th++) {
            adam_case tc = {.n = 300007, .off = {0, 1, 2, 3, 1}, .wt = ZERO_DTYPE_BF16,
                            .steps = 2, .lr = 1e-3f, .wd = 0.1f, .gscale = 1.0f};
            run_case(&tc, isa, th);
        }
        REPORT("%s: n=300007 with 1, 2, 3, 4 threads bitwise equal to zk_adamw\n", g_isas[isa]);
    }
}

/* Updates large enough for the working copy's streaming stores (ZK_STREAM_MIN in adam_cpu.c,
 * 2 Mi elements), with every array at the same offset in a cache line: 0 (aligned: the stores
 * stream from the first element), 8 floats (the first 8 elements are done apart; then the fp32
 * and 16-bit copies are aligned for them too) and 17 floats (odd: the first 15 apart, and the
 * 16-bit copies stay unaligned, so plain stores). Each with every working type, 1 and 2 threads. */
static void test_aligned_large(void)
{
    static const size_t offs[] = {0, 8, 17};
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (!g_isa_ok[isa])
            continue;
        int k = 0;
        for (size_t o = 0; o < sizeof offs / sizeof offs[0]; o++)
            for (int wt = ZERO_DTYPE_FP32; wt <= ZERO_DTYPE_FP16; wt++, k++) {
                adam_case tc = {.n = ((size_t)1 << 21) + 45, .wt = wt, .steps = 1,
                                .lr = 1e-3f, .wd = 0.1f, .gscale = 1.0f};
                for (int a = 0; a < 5; a++)
                    tc.off[a] = offs[o];
                run_case(&tc, isa, 1 + k % 2);
            }
        REPORT("%s: n=2Mi+45, all arrays 0, 8 or 17 floats past a cache line, working copy "
               "fp32/bf16/fp16, 1-2 threads: bitwise equal to zk_adamw\n",
               g_isas[isa]);
    }
}

/* inf, nan and huge gradients (v overflows to inf, inf/inf gives nan, nan spreads into m, v and
 * master over the steps). Compared bitwise. The one freedom the hardware has is which nan an
 * operation returns when both inputs are nans (x86 returns the first operand, and the compiler
 * may swap the operands of + and *); such nans would be counted and reported apart, and the
 * test requires them to be nans in both. */
static void test_specials(void)
{
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (!g_isa_ok[isa])
            continue;
        size_t nan_bits = 0;
        for (int wt = ZK_NO_WORK; wt <= ZERO_DTYPE_FP16; wt++) {
            adam_case tc = {.n = 20011, .off = {3, 2, 1, 0, 3}, .wt = wt, .steps = 3,
                            .lr = 1e-3f, .wd = 0.1f, .gscale = 0.5f, .specials = 1};
            nan_bits += run_case(&tc, isa, 2);
        }
        REPORT("%s: inf/nan/huge gradients over 3 steps, all work types: bitwise equal to "
               "zk_adamw (%zu nans equal as nans but not in bits)\n",
               g_isas[isa], nan_bits);
    }
}

/* With lr = 0 the master comes back unchanged (p * 1 - 0 / denom; nan only made quiet), so the
 * working copy is the conversion of whatever bits the master holds. Random fp32 bit patterns (all
 * exponents, subnormals, infs, nans with payloads) plus rounding edges, converted by every path
 * and compared with zero_math.h's conversions of the same master bits. */
static void test_conversions(void)
{
    static const float edges[] = {
        0.0f, -0.0f, 1.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, FLT_MIN,
        FLT_TRUE_MIN, -FLT_TRUE_MIN, 65504.0f, 65505.0f, 65519.0f, 65519.99609375f, 65520.0f,
        -65520.0f, 65536.0f, 0x1p-14f, 0x1p-15f, 0x1p-24f, 0x1p-25f, 0x1.000002p-25f, 0x1.8p-24f,
        0x1.4p-24f, 0x1.fffffep-15f, 0x1.ffcp-15f, 0x1.ffep-15f, 0x1p-26f, 0x1.01p0f, 0x1.018p0f,
        0x1.008p0f, 0x1.00800001p0f, 0x1.fffffep127f, 0x1.ff8p127f, 0x1.ff7ffep127f};
    const size_t n_edges = sizeof edges / sizeof edges[0];
    const size_t n_rand = 1u << 20;
    const size_t n_sweep = (size_t)(0x100000000ull / 4093) + 1;
    const size_t n = n_edges + n_rand + n_sweep;
    float *src = malloc(n * 4), *p = malloc(n * 4), *m = calloc(n, 4), *v = calloc(n, 4);
    float *g = calloc(n, 4);
    uint16_t *w = malloc(n * 2);
    uint32_t *w32 = malloc(n * 4);
    size_t k = 0;
    for (size_t i = 0; i < n_edges; i++)
        src[k++] = edges[i];
    for (size_t i = 0; i < n_rand; i++)
        src[k++] = bits_to_float(rnd_u32());
    for (uint64_t u = 0; k < n; u += 4093)
        src[k++] = bits_to_float((uint32_t)u);
    const zk_adamw_params hp = {0.0, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.0316227766, 1.0f, 0};
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (!g_isa_ok[isa])
            continue;
        zk_adamw_cpu_force(g_isas[isa]);
        for (int wt = ZERO_DTYPE_FP32; wt <= ZERO_DTYPE_FP16; wt++) {
            memcpy(p, src, n * 4);
            memset(m, 0, n * 4), memset(v, 0, n * 4);
            void *out = wt == ZERO_DTYPE_FP32 ? (void *)w32 : (void *)w;
            zk_adamw_cpu(p, m, v, g, out, (zero_dtype)wt, n, &hp);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) {
                /* The master after the update: the input, nans quieted. */
                const uint32_t sb = zm_f32_bits(src[i]);
                const float want_p = isnan(src[i]) ? bits_to_float(sb | 0x00400000u) : src[i];
                bad += zm_f32_bits(p[i]) != zm_f32_bits(want_p);
                if (wt == ZERO_DTYPE_FP32)
                    bad += w32[i] != zm_f32_bits(want_p);
                else if (wt == ZERO_DTYPE_BF16)
                    bad += w[i] != zm_f32_to_bf16(want_p);
                else
                    bad += w[i] != zm_f32_to_f16(want_p);
            }
            CHECK(bad == 0, "%s work=%s: %zu of %zu conversions differ from zero_math.h",
                  g_isas[isa], work_name(wt), bad, n);
        }
        zk_adamw_cpu_force("auto");
        REPORT("%s: working copy fp32/bf16/fp16 of %zu fp32 values of every class (edges, "
               "random bits, an even sweep) bitwise equal to zero_math.h\n",
               g_isas[isa], n);
    }
    free(src), free(p), free(m), free(v), free(g), free(w), free(w32);
}

int main(void)
{
    probe_isas();
    test_bitwise();
    test_threads();
    test_aligned_large();
    test_specials();
    test_conversions();
    if (check_failures) {
        fprintf(stderr, "test_adam_cpu: %d check(s) FAILED\n", check_failures);
        return 1;
    }
    printf("test_adam_cpu: all checks passed (%zu configurations, %zu element updates compared "
           "bitwise)\n",
           g_configs, g_elements_compared);
    return 0;
}
