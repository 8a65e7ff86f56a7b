/* kernels.c — host twins of the element-wise kernels (kernels.h): OpenMP over fixed blocks of
 * elements, inner loops the compiler vectorises, per-element math from zero_math.h. Compiled with
 * -ffp-contract=off -fno-math-errno (kernels/sources.cmake) so results match the CUDA kernels. */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "zero_math.h"

#define ZK_BLOCK 4096     /* elements per OpenMP work item */
#define ZK_OMP_MIN 32768  /* below this many elements the calling thread does all the work */
#define ZK_NORM_GROUP 256 /* norm blocks computed in parallel before their sequential sum */
#define ZK_NONE 3         /* "no work copy" in the AdamW dispatch (after the three dtypes) */

#define ZK_INLINE static inline __attribute__((always_inline))

/* Every dispatch below calls a ZK_INLINE range function with literal dtypes, so each case is
 * compiled into its own loop with the conversions folded in and vectorised. */

static size_t zk_min(size_t a, size_t b)
{
    return a < b ? a : b;
}

/* ---- AdamW -------------------------------------------------------------------------------- */

ZK_INLINE void adamw_range(float *restrict master, float *restrict m, float *restrict v,
                           const void *restrict grad, int gt, void *restrict work, int wt,
                           size_t lo, size_t hi, const zm_adamw_coef *c)
{
    const zm_adamw_coef k = *c;
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float p = master[i], mi = m[i], vi = v[i];
        zm_adamw(&p, &mi, &vi, zm_load(grad, gt, i), &k);
        master[i] = p;
        m[i] = mi;
        v[i] = vi;
        if (wt != ZK_NONE)
            zm_store(work, wt, i, p);
    }
}

#define ZK_ADAMW_CASE(G, W)                                                                    \
    case (G) * 4 + (W):                                                                        \
        adamw_range(master, m, v, grad, (G), work, (W), lo, hi, c);                            \
        break

ZK_INLINE void adamw_cases(float *master, float *m, float *v, const void *grad, int gt,
                           void *work, int wt, size_t lo, size_t hi, const zm_adamw_coef *c)
{
    switch (gt * 4 + wt) {
        ZK_ADAMW_CASE(ZERO_DTYPE_FP32, ZERO_DTYPE_FP32);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP32, ZERO_DTYPE_BF16);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP32, ZERO_DTYPE_FP16);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP32, ZK_NONE);
        ZK_ADAMW_CASE(ZERO_DTYPE_BF16, ZERO_DTYPE_FP32);
        ZK_ADAMW_CASE(ZERO_DTYPE_BF16, ZERO_DTYPE_BF16);
        ZK_ADAMW_CASE(ZERO_DTYPE_BF16, ZERO_DTYPE_FP16);
        ZK_ADAMW_CASE(ZERO_DTYPE_BF16, ZK_NONE);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP16, ZERO_DTYPE_FP32);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP16, ZERO_DTYPE_BF16);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP16, ZERO_DTYPE_FP16);
        ZK_ADAMW_CASE(ZERO_DTYPE_FP16, ZK_NONE);
    default:
        break;
    }
}

/* zm_adamw's fmas are single instructions only where the target has FMA, which baseline x86-64
 * lacks: there fmaf is a libm call per element and the loop stays scalar. So on x86 the loops are
 * compiled twice, and the AVX2+FMA copy runs where the CPU has both (the same bits: every
 * operation is IEEE-rounded either way, and -ffp-contract=off fuses nothing else). */
#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2,fma"))) static void adamw_block_fma(float *master, float *m, float *v,
                                                                const void *grad, int gt,
                                                                void *work, int wt, size_t lo,
                                                                size_t hi, const zm_adamw_coef *c)
{
    adamw_cases(master, m, v, grad, gt, work, wt, lo, hi, c);
}

static int have_fma(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

static void adamw_block(float *master, float *m, float *v, const void *grad, int gt, void *work,
                        int wt, size_t lo, size_t hi, const zm_adamw_coef *c, int fma)
{
#if defined(__x86_64__) || defined(__i386__)
    if (fma) {
        adamw_block_fma(master, m, v, grad, gt, work, wt, lo, hi, c);
        return;
    }
#endif
    (void)fma;
    adamw_cases(master, m, v, grad, gt, work, wt, lo, hi, c);
}

void zk_adamw_bias(zk_adamw_params *p, int64_t t)
{
    p->bias_corr1 = 1.0 - pow(p->beta1, (double)t);
    p->bias_corr2_sqrt = pow(1.0 - pow(p->beta2, (double)t), 0.5);
}

void zk_adamw(float *master, float *m, float *v, const void *grad, zero_dtype grad_type,
              void *work, zero_dtype work_type, size_t n, const zk_adamw_params *p)
{
    if (n == 0)
        return;
    const zm_adamw_coef c =
        zm_adamw_coefs(p->lr, p->beta1, p->beta2, p->eps, p->weight_decay, p->bias_corr1,
                       p->bias_corr2_sqrt, p->grad_scale, p->l2);
#if defined(__x86_64__) || defined(__i386__)
    const int fma = have_fma();
#else
    const int fma = 0;
#endif
    const int gt = (int)grad_type;
    const int wt = work ? (int)work_type : ZK_NONE;
    const size_t nblocks = (n + ZK_BLOCK - 1) / ZK_BLOCK;
#pragma omp parallel for schedule(static) if (n >= ZK_OMP_MIN)
    for (size_t b = 0; b < nblocks; b++) {
        size_t lo = b * ZK_BLOCK;
        adamw_block(master, m, v, grad, gt, work, wt, lo, zk_min(lo + ZK_BLOCK, n), &c, fma);
    }
}

/* ---- cast and add ------------------------------------------------------------------------- */

ZK_INLINE void cast_range(void *restrict dst, int dt, const void *restrict src, int st,
                          size_t lo, size_t hi)
{
#pragma omp simd
    for (size_t i = lo; i < hi; i++)
        zm_store(dst, dt, i, zm_load(src, st, i));
}

ZK_INLINE void add_range(void *restrict dst, int dt, const void *restrict src, int st, size_t lo,
                         size_t hi)
{
#pragma omp simd
    for (size_t i = lo; i < hi; i++)
        zm_store(dst, dt, i, ZM_ADD(zm_load(dst, dt, i), zm_load(src, st, i)));
}

#define ZK_PAIR_CASE(fn, D, S)                                                                 \
    case (D) * 4 + (S):                                                                        \
        fn(dst, (D), src, (S), lo, hi);                                                        \
        break

#define ZK_PAIR_SWITCH(fn, dt, st)                                                             \
    switch ((dt) * 4 + (st)) {                                                                 \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_FP32, ZERO_DTYPE_FP32);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_FP32, ZERO_DTYPE_BF16);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_FP32, ZERO_DTYPE_FP16);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_BF16, ZERO_DTYPE_FP32);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_BF16, ZERO_DTYPE_BF16);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_BF16, ZERO_DTYPE_FP16);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_FP16, ZERO_DTYPE_FP32);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_FP16, ZERO_DTYPE_BF16);                                    \
        ZK_PAIR_CASE(fn, ZERO_DTYPE_FP16, ZERO_DTYPE_FP16);                                    \
    default:                                                                                   \
        break;                                                                                 \
    }

static size_t dtype_size(zero_dtype t)
{
    return t == ZERO_DTYPE_FP32 ? 4 : 2;
}

static void cast_block(void *dst, int dt, const void *src, int st, size_t lo, size_t hi)
{
    if (dt == st) {
        size_t es = dtype_size((zero_dtype)dt);
        memcpy((char *)dst + lo * es, (const char *)src + lo * es, (hi - lo) * es);
        return;
    }
    ZK_PAIR_SWITCH(cast_range, dt, st)
}

void zk_cast(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type, size_t n)
{
    if (n == 0 || (dst == src && dst_type == src_type))
        return;
    const size_t nblocks = (n + ZK_BLOCK - 1) / ZK_BLOCK;
#pragma omp parallel for schedule(static) if (n >= ZK_OMP_MIN)
    for (size_t b = 0; b < nblocks; b++) {
        size_t lo = b * ZK_BLOCK;
        cast_block(dst, (int)dst_type, src, (int)src_type, lo, zk_min(lo + ZK_BLOCK, n));
    }
}

static void add_block(void *dst, int dt, const void *src, int st, size_t lo, size_t hi)
{
    ZK_PAIR_SWITCH(add_range, dt, st)
}

void zk_add(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type, size_t n)
{
    if (n == 0)
        return;
    const size_t nblocks = (n + ZK_BLOCK - 1) / ZK_BLOCK;
#pragma omp parallel for schedule(static) if (n >= ZK_OMP_MIN)
    for (size_t b = 0; b < nblocks; b++) {
        size_t lo = b * ZK_BLOCK;
        add_block(dst, (int)dst_type, src, (int)src_type, lo, zk_min(lo + ZK_BLOCK, n));
    }
}

void zk_add_f32(void *dst, zero_dtype dst_type, const float *src, size_t n)
{
    zk_add(dst, dst_type, src, ZERO_DTYPE_FP32, n);
}

/* ---- squared norm (order defined in zero_math.h) ------------------------------------------ */

ZK_INLINE double norm_block_typed(const void *restrict x, int t, size_t lo, size_t len)
{
    double lane[ZM_NORM_LANES] = {0};
    const size_t full = len / ZM_NORM_LANES * ZM_NORM_LANES;
    for (size_t k = 0; k < full; k += ZM_NORM_LANES) {
#pragma omp simd
        for (size_t l = 0; l < ZM_NORM_LANES; l++)
            lane[l] = ZM_DADD(lane[l], zm_sq(zm_load(x, t, lo + k + l)));
    }
    for (size_t l = 0; l < len - full; l++)
        lane[l] = ZM_DADD(lane[l], zm_sq(zm_load(x, t, lo + full + l)));
    for (size_t s = ZM_NORM_LANES / 2; s > 0; s /= 2)
        for (size_t l = 0; l < s; l++)
            lane[l] = ZM_DADD(lane[l], lane[l + s]);
    return lane[0];
}

static double norm_block(const void *x, int t, size_t lo, size_t len)
{
    switch (t) {
    case ZERO_DTYPE_FP32:
        return norm_block_typed(x, ZERO_DTYPE_FP32, lo, len);
    case ZERO_DTYPE_BF16:
        return norm_block_typed(x, ZERO_DTYPE_BF16, lo, len);
    default:
        return norm_block_typed(x, ZERO_DTYPE_FP16, lo, len);
    }
}

/* Finite fp32 squares summed in double cannot overflow (FLT_MAX^2 * 2^64 < DBL_MAX), so the sum
 * is non-finite exactly when some element is inf or nan or its square is inf in fp32 (zm_sq): the
 * flag is read off the result. */
double zk_sq_norm(const void *x, zero_dtype type, size_t n, int *nonfinite)
{
    const size_t nblocks = (n + ZM_NORM_BLOCK - 1) / ZM_NORM_BLOCK;
    double sums[ZK_NORM_GROUP]; /* block sums of the current group, added in block order */
    double total = 0.0;
#pragma omp parallel if (n >= ZK_OMP_MIN)
    for (size_t g0 = 0; g0 < nblocks; g0 += ZK_NORM_GROUP) {
        const size_t gn = zk_min(ZK_NORM_GROUP, nblocks - g0);
#pragma omp for schedule(static)
        for (size_t j = 0; j < gn; j++) {
            size_t lo = (g0 + j) * ZM_NORM_BLOCK;
            sums[j] = norm_block(x, (int)type, lo, zk_min(ZM_NORM_BLOCK, n - lo));
        }
#pragma omp single
        for (size_t j = 0; j < gn; j++)
            total = ZM_DADD(total, sums[j]);
    }
    if (!zm_isfinite_d(total) && nonfinite)
        *nonfinite = 1;
    return total;
}

/* ---- scalar conversions ------------------------------------------------------------------- */

uint16_t zk_f32_to_bf16(float f)
{
    return zm_f32_to_bf16(f);
}

float zk_bf16_to_f32(uint16_t h)
{
    return zm_bf16_to_f32(h);
}

uint16_t zk_f32_to_f16(float f)
{
    return zm_f32_to_f16(f);
}

float zk_f16_to_f32(uint16_t h)
{
    return zm_f16_to_f32(h);
}
