/* test_kernels.c — the host kernels (kernels.h) against references written independently of
 * zero_math.h: conversions against value tables built with ldexp and a nearest-neighbour search,
 * AdamW against double precision, the squared norm against a long-double sum and against a
 * literal transcription of its documented summation order. Exit status 1 on any failure. */
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

static const char *dtype_name(int t)
{
    return t == ZERO_DTYPE_FP32 ? "fp32" : t == ZERO_DTYPE_BF16 ? "bf16" : "fp16";
}

/* ---- reference formats: value tables and nearest-even search ------------------------------ */

/* A 16-bit format with `mbits` mantissa bits and exponent bias `bias`: value of a positive
 * finite pattern, by the textbook formula. */
static double ref_value(unsigned h, int mbits, int bias)
{
    unsigned e = h >> mbits, mant = h & ((1u << mbits) - 1u);
    if (e == 0)
        return ldexp((double)mant, 1 - bias - mbits);
    return ldexp((double)((1u << mbits) + mant), (int)e - bias - mbits);
}

typedef struct ref_format {
    const char *name;
    int mbits, bias;
    unsigned inf;             /* pattern of +inf; also the count of positive finite patterns */
    double value[0x7f81];     /* value[h] for 0 <= h < inf; value[inf] = the next power step */
} ref_format;

static ref_format g_f16 = {"fp16", 10, 15, 0x7c00u, {0}};
static ref_format g_bf16 = {"bf16", 7, 127, 0x7f80u, {0}};

static void ref_format_init(ref_format *f)
{
    for (unsigned h = 0; h < f->inf; h++)
        f->value[h] = ref_value(h, f->mbits, f->bias);
    /* One step past the largest finite value: the boundary used to decide overflow. */
    f->value[f->inf] = ldexp(1.0, (int)(f->inf >> f->mbits) - f->bias);
}

static int ref_is_nan16(uint16_t h, const ref_format *f)
{
    return (h & 0x7fffu) > f->inf;
}

/* Round x to the format: nearest of the two neighbouring values, ties to the even pattern;
 * anything at or past the midpoint of the largest finite value and value[inf] is inf.
 * nan inputs return 0xffff (callers check nan separately). */
static uint16_t ref_encode(float x, const ref_format *f)
{
    if (isnan(x))
        return 0xffffu;
    unsigned sign = signbit(x) ? 0x8000u : 0u;
    double a = fabs((double)x);
    if (a >= f->value[f->inf])
        return (uint16_t)(sign | f->inf);
    /* Largest k with value[k] <= a (value[0] = 0 <= a). */
    unsigned lo = 0, hi = f->inf; /* value[lo] <= a < value[hi] */
    while (hi - lo > 1) {
        unsigned mid = (lo + hi) / 2;
        if (f->value[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    double dlo = a - f->value[lo], dhi = f->value[hi] - a; /* both exact */
    unsigned k = dlo < dhi ? lo : dhi < dlo ? hi : ((lo & 1u) ? hi : lo);
    return (uint16_t)(sign | k);
}

/* Value of any non-nan pattern, signed. */
static double ref_decode(uint16_t h, const ref_format *f)
{
    unsigned mag = h & 0x7fffu;
    double v = mag == f->inf ? INFINITY : f->value[mag];
    return (h & 0x8000u) ? -v : v;
}

/* ---- conversions -------------------------------------------------------------------------- */

static void test_roundtrip(const ref_format *f, float (*to_f32)(uint16_t),
                           uint16_t (*from_f32)(float))
{
    int nans = 0;
    for (uint32_t h = 0; h < 0x10000u; h++) {
        float x = to_f32((uint16_t)h);
        uint16_t back = from_f32(x);
        if (ref_is_nan16((uint16_t)h, f)) {
            nans++;
            CHECK(isnan(x) && (signbit(x) != 0) == ((h & 0x8000u) != 0),
                  "%s 0x%04x -> f32 should be nan with the same sign", f->name, h);
            CHECK(ref_is_nan16(back, f) && (back & 0x8000u) == (h & 0x8000u),
                  "%s nan 0x%04x -> f32 -> 0x%04x is not a nan of the same sign", f->name, h,
                  back);
            continue;
        }
        double want = ref_decode((uint16_t)h, f);
        CHECK((double)x == want && (signbit(x) != 0) == ((h & 0x8000u) != 0),
              "%s 0x%04x -> f32 %.9g, want %.9g", f->name, h, (double)x, want);
        CHECK(back == h, "%s 0x%04x -> f32 %.9g -> 0x%04x (not the identity)", f->name, h,
              (double)x, back);
    }
    REPORT("%s -> f32 -> %s for all 65536 patterns (%d nans checked as nans)\n", f->name,
           f->name, nans);
}

static long g_round_checked;

static void check_round_one(float x, const ref_format *f, uint16_t (*from_f32)(float))
{
    uint16_t got = from_f32(x);
    g_round_checked++;
    if (isnan(x)) {
        CHECK(ref_is_nan16(got, f) && ((got & 0x8000u) != 0) == (signbit(x) != 0),
              "f32 nan 0x%08x -> %s 0x%04x, want a nan of the same sign", float_to_bits(x),
              f->name, got);
        return;
    }
    uint16_t want = ref_encode(x, f);
    CHECK(got == want, "f32 %.9g (0x%08x) -> %s 0x%04x, want 0x%04x", (double)x,
          float_to_bits(x), f->name, got, want);
}

/* The float exactly halfway between patterns h and h + 1 and its two float neighbours: where
 * round-to-nearest-even is decided. */
static void check_round_midpoints(const ref_format *f, uint16_t (*from_f32)(float))
{
    for (unsigned h = 0; h < f->inf; h++) {
        double mid = 0.5 * (f->value[h] + f->value[h + 1]); /* exact: one more bit */
        float m = (float)mid;
        if ((double)m != mid)
            continue; /* bf16 midpoints in the fp32 subnormal range are not all floats */
        float around[3] = {nextafterf(m, 0.0f), m, nextafterf(m, INFINITY)};
        for (int k = 0; k < 3; k++) {
            check_round_one(around[k], f, from_f32);
            check_round_one(-around[k], f, from_f32);
        }
    }
}

static void test_round_from_f32(void)
{
    static const float edges[] = {
        0.0f, -0.0f, 1.0f, -1.0f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, FLT_MIN,
        FLT_TRUE_MIN, -FLT_TRUE_MIN, 65504.0f, 65505.0f, 65519.0f, 65519.99609375f, 65520.0f,
        -65520.0f, 65536.0f, 1e9f, 0x1p-14f, 0x1p-15f, 0x1p-24f, 0x1p-25f, 0x1.000002p-25f,
        0x1.8p-24f, 0x1.4p-24f, 0x1.fffffep-15f, 0x1.ffcp-15f, 0x1.ffep-15f, 0x1p-26f,
        0x1p-126f, 0x1.fffffep-127f, 0x1.01p0f, 0x1.018p0f, 0x1.008p0f, 0x1.00800001p0f,
        0x1.fffffep127f, 0x1.ff8p127f, 0x1.ff7ffep127f, 3.14159265f, 1.0f / 3.0f};
    const ref_format *fmts[2] = {&g_bf16, &g_f16};
    uint16_t (*conv[2])(float) = {zk_f32_to_bf16, zk_f32_to_f16};
    g_round_checked = 0;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
            check_round_one(edges[i], fmts[k], conv[k]);
        /* Random bit patterns reach every exponent, subnormals, infs and nans. */
        for (int i = 0; i < 200000; i++)
            check_round_one(bits_to_float(rnd_u32()), fmts[k], conv[k]);
        /* An even sweep of the whole fp32 pattern space. */
        for (uint64_t u = 0; u < 0x100000000ull; u += 4093)
            check_round_one(bits_to_float((uint32_t)u), fmts[k], conv[k]);
        check_round_midpoints(fmts[k], conv[k]);
    }
    REPORT("f32 -> bf16 and f32 -> fp16 rounding: %ld floats vs nearest-even reference\n",
           g_round_checked);
}

/* ---- typed buffers ------------------------------------------------------------------------ */

static size_t dtype_size(int t)
{
    return t == ZERO_DTYPE_FP32 ? 4 : 2;
}

static const ref_format *fmt_of(int t)
{
    return t == ZERO_DTYPE_BF16 ? &g_bf16 : &g_f16;
}

/* Element i of a typed buffer as a float, decoded by the reference. */
static float ref_get(const void *p, int t, size_t i)
{
    if (t == ZERO_DTYPE_FP32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    if (ref_is_nan16(h, fmt_of(t)))
        return NAN;
    return (float)ref_decode(h, fmt_of(t));
}

/* Store x rounded by the reference encoder. */
static void ref_put(void *p, int t, size_t i, float x)
{
    if (t == ZERO_DTYPE_FP32)
        ((float *)p)[i] = x;
    else
        ((uint16_t *)p)[i] = isnan(x) ? (uint16_t)(fmt_of(t)->inf | (fmt_of(t)->inf >> 1))
                                      : ref_encode(x, fmt_of(t));
}

/* Raw bits of element i (for bitwise comparisons). */
static uint32_t raw_get(const void *p, int t, size_t i)
{
    return t == ZERO_DTYPE_FP32 ? ((const uint32_t *)p)[i] : ((const uint16_t *)p)[i];
}

static int is_nan_elem(const void *p, int t, size_t i)
{
    return t == ZERO_DTYPE_FP32 ? isnan(((const float *)p)[i])
                                : ref_is_nan16(((const uint16_t *)p)[i], fmt_of(t));
}

/* ---- AdamW -------------------------------------------------------------------------------- */

/* Tolerances against the double-precision reference after up to ADAMW_STEPS steps. fp32 carries
 * about 2^-24 relative error per rounding and an update takes ~10 roundings, so per step:
 *   v: all terms positive, no cancellation -> relative 1e-6 (≈ 16 ulps) covers steps * ~6 ulps.
 *   m: beta1*m and (1-beta1)*g may cancel, so the bound is relative to the terms' size:
 *      1e-6 * max over the steps so far of (|m| + |g|).
 *   p: p*(1-lr*wd) rounds relative to |p| (1e-6 over the steps); the update term is at most
 *      about lr/bc1 * |m|/sqrt(v) in size and is computed with ~8 roundings, but when m cancels
 *      its relative error follows m's, so it gets an absolute allowance of lr * 1e-4 per check
 *      (the update's own magnitude is O(lr); 1e-4 of it is still far below bf16 resolution).
 * Measured maxima are printed next to the limits. */
#define ADAMW_STEPS 4
#define ADAMW_RTOL 1e-6
#define ADAMW_P_ATOL_LR 1e-4

typedef struct adamw_case {
    size_t n, off; /* elements; start offset in elements from an aligned allocation */
    int gt, wt;    /* grad dtype; work dtype or -1 for none */
    float lr, wd, gscale;
    int l2; /* Adam-L2 instead of AdamW */
} adamw_case;

typedef struct adamw_err {
    double p, m, v; /* worst error / allowed error seen (<= 1 passes) */
} adamw_err;

static void run_adamw_case(const adamw_case *tc, adamw_err *worst)
{
    const size_t n = tc->n, off = tc->off;
    float *P = malloc((n + off) * 4), *M = malloc((n + off) * 4), *V = malloc((n + off) * 4);
    float *P2 = malloc(n * 4), *M2 = malloc(n * 4), *V2 = malloc(n * 4);
    void *G = malloc((n + off) * 4), *W = malloc((n + off) * 4 + 4);
    double *rp = malloc(n * 8), *rm = malloc(n * 8), *rv = malloc(n * 8);
    double *mscale = calloc(n, 8); /* running max of |m| + |g|: the size of m's terms */
    double *gmag = calloc(n, 8);   /* this step's |g| (+ |wd p| for Adam-L2): g's terms' size */
    float *master = P + off, *m = M + off, *v = V + off;
    void *grad = (char *)G + off * dtype_size(tc->gt);
    void *work = tc->wt < 0 ? NULL : (char *)W + off * dtype_size(tc->wt);
    for (size_t i = 0; i < n; i++) {
        master[i] = (float)rnd_sym();
        m[i] = (float)(0.01 * rnd_sym());
        v[i] = (float)(1e-4 * fabs(rnd_sym()));
        rp[i] = master[i];
        rm[i] = m[i];
        rv[i] = v[i];
        P2[i] = master[i];
        M2[i] = m[i];
        V2[i] = v[i];
    }
    const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    for (int t = 1; t <= ADAMW_STEPS; t++) {
        /* Gradients over several binades, some tiny, stored in the gradient dtype. */
        for (size_t i = 0; i < n; i++)
            ref_put(grad, tc->gt, i, (float)(rnd_sym() * ldexp(1.0, -(int)(rnd_u32() % 12))));
        zk_adamw_params hp = {.lr = tc->lr,
                              .beta1 = beta1,
                              .beta2 = beta2,
                              .eps = eps,
                              .weight_decay = tc->wd,
                              .bias_corr1 = 1.0f - powf(beta1, (float)t),
                              .bias_corr2_sqrt = sqrtf(1.0f - powf(beta2, (float)t)),
                              .grad_scale = tc->gscale,
                              .l2 = tc->l2};
        zk_adamw(master, m, v, grad, (zero_dtype)tc->gt, work,
                 (zero_dtype)(tc->wt < 0 ? 0 : tc->wt), n, &hp);

        /* Bitwise: the same per-element function in a plain scalar loop. */
        zm_adamw_coef c = zm_adamw_coefs(hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay,
                                         hp.bias_corr1, hp.bias_corr2_sqrt, hp.grad_scale,
                                         hp.l2);
        for (size_t i = 0; i < n; i++)
            zm_adamw(&P2[i], &M2[i], &V2[i], zm_load(grad, tc->gt, i), &c);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += float_to_bits(P2[i]) != float_to_bits(master[i]) ||
                   float_to_bits(M2[i]) != float_to_bits(m[i]) ||
                   float_to_bits(V2[i]) != float_to_bits(v[i]);
        CHECK(bad == 0, "adamw n=%zu grad=%s step %d: %zu elements differ from the scalar loop",
              n, dtype_name(tc->gt), t, bad);

        /* The working copy is the rounding of the updated master. */
        if (work) {
            size_t wbad = 0;
            for (size_t i = 0; i < n; i++) {
                uint32_t want = tc->wt == ZERO_DTYPE_FP32 ? float_to_bits(master[i])
                                                          : ref_encode(master[i], fmt_of(tc->wt));
                wbad += raw_get(work, tc->wt, i) != want;
            }
            CHECK(wbad == 0, "adamw n=%zu work=%s step %d: %zu working values are not the "
                             "rounded master", n, dtype_name(tc->wt), t, wbad);
        }

        /* Double-precision reference with the same float hyper-parameters. */
        const double lr = hp.lr, b1 = beta1, b2 = beta2, bc1 = hp.bias_corr1,
                     bc2 = hp.bias_corr2_sqrt, wd = hp.weight_decay;
        for (size_t i = 0; i < n; i++) {
            double g = (double)ref_get(grad, tc->gt, i) * (double)hp.grad_scale;
            gmag[i] = fabs(g);
            if (tc->l2) { /* the sum may cancel: its error is relative to its terms */
                gmag[i] += fabs(wd * rp[i]);
                g += wd * rp[i];
            }
            mscale[i] = fmax(mscale[i], fabs(rm[i]) + gmag[i]);
            if (!tc->l2)
                rp[i] *= 1.0 - lr * wd;
            rm[i] = b1 * rm[i] + (1.0 - b1) * g;
            rv[i] = b2 * rv[i] + (1.0 - b2) * g * g;
            rp[i] -= lr / bc1 * rm[i] / (sqrt(rv[i]) / bc2 + (double)eps);
        }
        for (size_t i = 0; i < n; i++) {
            double ep = fabs(master[i] - rp[i]) /
                        (ADAMW_RTOL * fabs(rp[i]) + ADAMW_P_ATOL_LR * lr);
            double em = fabs(m[i] - rm[i]) / (ADAMW_RTOL * fmax(mscale[i], fabs(rm[i])));
            double ev = fabs(v[i] - rv[i]) /
                        (ADAMW_RTOL * (rv[i] + (1.0 - b2) * gmag[i] * gmag[i]) + 1e-30);
            worst->p = fmax(worst->p, ep);
            worst->m = fmax(worst->m, em);
            worst->v = fmax(worst->v, ev);
            CHECK(ep <= 1.0 && em <= 1.0 && ev <= 1.0,
                  "adamw n=%zu grad=%s step %d i=%zu: p %.9g ref %.9g, m %.9g ref %.9g, "
                  "v %.9g ref %.9g",
                  n, dtype_name(tc->gt), t, i, (double)master[i], rp[i], (double)m[i], rm[i],
                  (double)v[i], rv[i]);
        }
    }
    free(P), free(M), free(V), free(P2), free(M2), free(V2), free(G), free(W);
    free(rp), free(rm), free(rv), free(mscale), free(gmag);
}

static void test_adamw(void)
{
    static const size_t sizes[] = {1, 7, 33, 4097, 100003};
    adamw_err worst = {0, 0, 0};
    int cases = 0;
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int gt = 0; gt < 3; gt++)
            for (int wt = -1; wt < 3; wt++) {
                adamw_case tc = {.n = sizes[s],
                                 .off = (size_t)(cases % 4),
                                 .gt = gt,
                                 .wt = wt,
                                 .lr = (cases % 2) ? 1e-3f : 3e-2f,
                                 .wd = (cases % 3) ? 0.1f : 0.0f,
                                 .gscale = (cases % 5) ? 0.37f : 1.0f,
                                 .l2 = cases % 7 == 3};
                run_adamw_case(&tc, &worst);
                cases++;
            }
    REPORT("adamw: %d cases x %d steps vs double reference; worst error / tolerance: "
           "p %.3f, m %.3f, v %.3f\n",
           cases, ADAMW_STEPS, worst.p, worst.m, worst.v);

    /* Element-wise, so the thread count cannot matter; check it anyway. */
    const size_t n = 100003;
    float *p[2], *m[2], *v[2];
    uint16_t *w[2];
    uint16_t *g = malloc(n * 2);
    for (size_t i = 0; i < n; i++)
        g[i] = zk_f32_to_bf16((float)rnd_sym());
    for (int k = 0; k < 2; k++) {
        p[k] = malloc(n * 4), m[k] = calloc(n, 4), v[k] = calloc(n, 4), w[k] = malloc(n * 2);
        for (size_t i = 0; i < n; i++)
            p[k][i] = (float)i * 1e-5f;
        omp_set_num_threads(k == 0 ? 1 : 3);
        zk_adamw_params hp = {1e-3, 0.9, 0.999, 1e-8, 0.1, 0.1, 0.0316227766, 1.0f, 0};
        zk_adamw(p[k], m[k], v[k], g, ZERO_DTYPE_BF16, w[k], ZERO_DTYPE_BF16, n, &hp);
    }
    CHECK(memcmp(p[0], p[1], n * 4) == 0 && memcmp(m[0], m[1], n * 4) == 0 &&
              memcmp(v[0], v[1], n * 4) == 0 && memcmp(w[0], w[1], n * 2) == 0,
          "adamw differs between 1 and 3 threads");
    REPORT("adamw identical with 1 and 3 threads\n");
    for (int k = 0; k < 2; k++)
        free(p[k]), free(m[k]), free(v[k]), free(w[k]);
    free(g);
    omp_set_num_threads(2);
}

/* ---- cast and add ------------------------------------------------------------------------- */

/* Random raw bit patterns of type t: every class of value, nans included. */
static void fill_raw(void *p, int t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t == ZERO_DTYPE_FP32)
            ((uint32_t *)p)[i] = rnd_u32();
        else
            ((uint16_t *)p)[i] = (uint16_t)rnd_u32();
    }
}

static void test_cast(void)
{
    const size_t n = 70001;
    void *src = malloc(n * 4), *dst = malloc(n * 4);
    for (int dt = 0; dt < 3; dt++)
        for (int st = 0; st < 3; st++) {
            fill_raw(src, st, n);
            memset(dst, 0xa5, n * 4);
            zk_cast(dst, (zero_dtype)dt, src, (zero_dtype)st, n);
            size_t bad = 0;
            for (size_t i = 0; i < n; i++) {
                if (is_nan_elem(src, st, i))
                    bad += !is_nan_elem(dst, dt, i);
                else if (dt == st)
                    bad += raw_get(dst, dt, i) != raw_get(src, st, i);
                else if (dt == ZERO_DTYPE_FP32)
                    bad += (double)((float *)dst)[i] != (double)ref_get(src, st, i) ||
                           signbit(((float *)dst)[i]) != signbit(ref_get(src, st, i));
                else
                    bad += raw_get(dst, dt, i) != ref_encode(ref_get(src, st, i), fmt_of(dt));
            }
            CHECK(bad == 0, "cast %s -> %s: %zu of %zu elements wrong", dtype_name(st),
                  dtype_name(dt), bad, n);
        }
    REPORT("cast: all 9 dtype pairs on %zu random bit patterns\n", n);
    free(src), free(dst);
}

static void test_add(void)
{
    static const size_t sizes[] = {37, 100003};
    for (size_t s = 0; s < 2; s++) {
        const size_t n = sizes[s];
        void *src = malloc(n * 4), *dst = malloc(n * 4), *ref = malloc(n * 4);
        for (int dt = 0; dt < 3; dt++)
            for (int st = 0; st < 3; st++) {
                for (size_t i = 0; i < n; i++) {
                    double scale = ldexp(1.0, (int)(rnd_u32() % 20) - 10);
                    ref_put(dst, dt, i, (float)(rnd_sym() * scale));
                    ref_put(src, st, i, (float)(rnd_sym() * scale));
                }
                /* A few specials: overflow to inf, inf - inf = nan. */
                ref_put(dst, dt, 0, 60000.0f), ref_put(src, st, 0, 60000.0f);
                ref_put(dst, dt, n - 1, INFINITY), ref_put(src, st, n - 1, -INFINITY);
                for (size_t i = 0; i < n; i++)
                    ref_put(ref, dt, i, ref_get(dst, dt, i) + ref_get(src, st, i));
                if (st == ZERO_DTYPE_FP32)
                    zk_add_f32(dst, (zero_dtype)dt, (const float *)src, n);
                else
                    zk_add(dst, (zero_dtype)dt, src, (zero_dtype)st, n);
                size_t bad = 0;
                for (size_t i = 0; i < n; i++)
                    bad += is_nan_elem(ref, dt, i) ? !is_nan_elem(dst, dt, i)
                                                   : raw_get(dst, dt, i) != raw_get(ref, dt, i);
                CHECK(bad == 0, "add %s += %s n=%zu: %zu elements wrong", dtype_name(dt),
                      dtype_name(st), n, bad);
            }
        free(src), free(dst), free(ref);
    }
    REPORT("add / add_f32: all 9 dtype pairs, n = 37 and 100003\n");
}

/* ---- squared norm ------------------------------------------------------------------------- */

/* The summation order documented in zero_math.h, transcribed literally (no vectorisation, no
 * threads): what the CUDA twin must also produce. */
static double norm_in_documented_order(const void *x, int t, size_t n)
{
    double total = 0.0;
    for (size_t lo = 0; lo < n; lo += 4096) {
        size_t len = n - lo < 4096 ? n - lo : 4096;
        double lane[32];
        for (int l = 0; l < 32; l++) {
            lane[l] = 0.0;
            for (size_t i = (size_t)l; i < len; i += 32) {
                double e = ref_get(x, t, lo + i);
                lane[l] += e * e;
            }
        }
        for (int s = 16; s > 0; s /= 2)
            for (int l = 0; l < s; l++)
                lane[l] += lane[l + s];
        total += lane[0];
    }
    return total;
}

static void test_sq_norm(void)
{
    static const size_t sizes[] = {0, 1, 31, 33, 4095, 4097, 100003, 3 * 256 * 4096 + 77};
    const size_t nmax = sizes[sizeof sizes / sizeof sizes[0] - 1];
    void *x = malloc(nmax * 4);
    double worst = 0.0;
    for (int t = 0; t < 3; t++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const size_t n = sizes[s];
            for (size_t i = 0; i < n; i++)
                ref_put(x, t, i, (float)(rnd_sym() * ldexp(1.0, (int)(rnd_u32() % 16) - 8)));
            long double ref = 0.0L;
            for (size_t i = 0; i < n; i++)
                ref += (long double)ref_get(x, t, i) * ref_get(x, t, i);
            double results[3];
            for (int th = 1; th <= 3; th++) {
                omp_set_num_threads(th);
                int flag = 0;
                results[th - 1] = zk_sq_norm(x, (zero_dtype)t, n, &flag);
                CHECK(flag == 0, "sq_norm %s n=%zu: finite data flagged nonfinite",
                      dtype_name(t), n);
            }
            CHECK(memcmp(&results[0], &results[1], 8) == 0 &&
                      memcmp(&results[0], &results[2], 8) == 0,
                  "sq_norm %s n=%zu: 1/2/3 threads give %.17g %.17g %.17g", dtype_name(t), n,
                  results[0], results[1], results[2]);
            double ordered = norm_in_documented_order(x, t, n);
            CHECK(memcmp(&results[0], &ordered, 8) == 0,
                  "sq_norm %s n=%zu: %.17g, documented order gives %.17g", dtype_name(t), n,
                  results[0], ordered);
            /* All terms are non-negative, so the relative error is at most (additions in the
             * longest chain: 128 + 5 + n/4096) * 2^-53 < 1e-13 here; 1e-12 leaves margin. */
            double rel = n ? fabs(results[0] - (double)ref) / (double)ref : fabs(results[0]);
            worst = fmax(worst, rel);
            CHECK(rel <= 1e-12, "sq_norm %s n=%zu: %.17g vs reference %.17Lg (rel %.3g)",
                  dtype_name(t), n, results[0], ref, rel);
        }
    REPORT("sq_norm: %zu sizes x 3 dtypes, bitwise equal over 1/2/3 threads and to the "
           "documented order; worst relative error %.3g (limit 1e-12)\n",
           sizeof sizes / sizeof sizes[0], worst);

    /* The largest values whose square is finite in fp32 are not overflow, however many: the
     * largest float below 2^64 (fp32), the largest bf16 below it, fp16's largest value. */
    const float big[3] = {0x1.fffffep63f, 0x1.fep63f, 65504.0f};
    for (int t = 0; t < 3; t++) {
        const size_t n = 100003;
        for (size_t i = 0; i < n; i++)
            ref_put(x, t, i, i % 2 ? big[t] : -big[t]);
        int flag = 0;
        double r = zk_sq_norm(x, (zero_dtype)t, n, &flag);
        CHECK(flag == 0 && isfinite(r), "sq_norm %s of %g (square finite in fp32) flagged (%g)",
              dtype_name(t), (double)big[t], r);
        CHECK(big[t] * big[t] < INFINITY, "%g squared is finite in fp32", (double)big[t]);
    }

    /* A finite element whose square is inf in fp32 (|x| >= 2^64: Adam's v would become inf) is
     * overflow, as inf is: FLT_MAX, 2^64 itself, bf16's largest value; either sign; among
     * ordinary values, at the first, middle and last element. fp16 cannot hold one. */
    const float huge[2][3] = {{FLT_MAX, 0x1p64f, 3.0e19f}, {0x1.fep127f, 0x1p64f, 0x1.02p64f}};
    int hchecks = 0;
    for (int t = 0; t < 2; t++)
        for (int h = 0; h < 3; h++) {
            const size_t n = 100003;
            const size_t where[3] = {0, n / 2, n - 1};
            CHECK(huge[t][h] * huge[t][h] == INFINITY, "%g squared overflows fp32",
                  (double)huge[t][h]);
            for (size_t i = 0; i < n; i++)
                ref_put(x, t, i, (float)rnd_sym());
            for (int w = 0; w < 3; w++) {
                ref_put(x, t, where[w], w == 1 ? -huge[t][h] : huge[t][h]);
                CHECK(ref_get(x, t, where[w]) == (w == 1 ? -huge[t][h] : huge[t][h]),
                      "%g is exact in %s", (double)huge[t][h], dtype_name(t));
                for (int th = 1; th <= 3; th += 2) {
                    omp_set_num_threads(th);
                    int flag = 0;
                    double r = zk_sq_norm(x, (zero_dtype)t, n, &flag);
                    CHECK(flag == 1 && r == INFINITY,
                          "sq_norm %s n=%zu, %d threads: %g at %zu (square inf in fp32) not "
                          "flagged: flag %d, sum %g",
                          dtype_name(t), n, th, (double)huge[t][h], where[w], flag, r);
                    hchecks++;
                }
                ref_put(x, t, where[w], 0.5f);
            }
        }
    REPORT("sq_norm: squares that overflow fp32 (|x| >= 2^64) flagged as overflow, squares "
           "just below not (%d cases)\n",
           hchecks);

    /* inf and nan anywhere set the flag; a set flag is never cleared. */
    const float bad[3] = {INFINITY, -INFINITY, NAN};
    int checks = 0;
    for (int t = 0; t < 3; t++)
        for (int sz = 0; sz < 2; sz++) {
            const size_t n = sz ? 100003 : 33;
            const size_t where[3] = {0, n / 2, n - 1};
            for (size_t i = 0; i < n; i++)
                ref_put(x, t, i, (float)rnd_sym());
            for (int w = 0; w < 3; w++)
                for (int b = 0; b < 3; b++) {
                    ref_put(x, t, where[w], bad[b]);
                    int flag = 0;
                    double r = zk_sq_norm(x, (zero_dtype)t, n, &flag);
                    CHECK(flag == 1 && !isfinite(r),
                          "sq_norm %s n=%zu: %g at %zu not detected", dtype_name(t), n,
                          (double)bad[b], where[w]);
                    ref_put(x, t, where[w], 0.5f);
                    flag = 1;
                    zk_sq_norm(x, (zero_dtype)t, n, &flag);
                    CHECK(flag == 1, "sq_norm %s: a set flag was cleared", dtype_name(t));
                    checks++;
                }
        }
    REPORT("sq_norm: inf/-inf/nan at first, middle, last element detected (%d cases)\n",
           checks);
    free(x);
    omp_set_num_threads(2);
}

int main(void)
{
    rnd_seed(0x2545f4914f6cdd1dull);
    ref_format_init(&g_f16);
    ref_format_init(&g_bf16);
    test_roundtrip(&g_bf16, zk_bf16_to_f32, zk_f32_to_bf16);
    test_roundtrip(&g_f16, zk_f16_to_f32, zk_f32_to_f16);
    test_round_from_f32();
    test_cast();
    test_add();
    test_adamw();
    test_sq_norm();
    if (check_failures) {
        fprintf(stderr, "test_kernels: %d check(s) FAILED\n", check_failures);
        return 1;
    }
    printf("test_kernels: all checks passed\n");
    return 0;
}
