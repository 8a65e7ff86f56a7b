/* zero_math.h — the scalar math of every element-wise kernel, shared by the host twins
 * (kernels/kernels.c) and the CUDA kernels (the .cu files beside it), so both compute the same
 * formula in the same order and give bitwise-equal results. Header-only static inline functions;
 * no state.
 *
 * Floating-point contract (why host and device agree bit for bit):
 * - Every float/double operation goes through the ZM_* macros below. On the device they are the
 *   explicitly rounded intrinsics (__fmul_rn, __fadd_rn, __fdiv_rn, __fsqrt_rn, ...), which nvcc
 *   never fuses into an fma and which stay IEEE-exact even under --use_fast_math's -prec-div /
 *   -prec-sqrt. On the host they are the plain operators, and kernels.c (and anything else that
 *   must match, e.g. the unit test) is compiled with -ffp-contract=off so GCC does not fuse them
 *   either (kernels/sources.cmake). -fno-math-errno and -fno-trapping-math change no result; they
 *   only let sqrtf become an instruction and the conversions' selects vectorise.
 * - Denormals must not be flushed: do not build the .cu files with -ftz=true (or
 *   --use_fast_math) nor the host with -ffast-math; the fp16 conversions rely on subnormals.
 * - Evaluation is left to right exactly as written in the formulas of kernels.h, C precedence:
 *   (1 - beta2) * g * g is ((1 - beta2) * g) * g, and (lr / bc1) * m / d is ((lr / bc1) * m) / d.
 */
#ifndef ZERO_MATH_H
#define ZERO_MATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#ifndef __CUDACC__
#include <math.h>
#endif

#include "zero.h"

#ifdef __CUDACC__
#define ZERO_HD __host__ __device__
#else
#define ZERO_HD
#endif

#if defined(__CUDA_ARCH__)
#define ZM_ADD(a, b) __fadd_rn((a), (b))
#define ZM_SUB(a, b) __fsub_rn((a), (b))
#define ZM_MUL(a, b) __fmul_rn((a), (b))
#define ZM_DIV(a, b) __fdiv_rn((a), (b))
#define ZM_SQRT(a) __fsqrt_rn(a)
#define ZM_DADD(a, b) __dadd_rn((a), (b))
#define ZM_DMUL(a, b) __dmul_rn((a), (b))
#else
#define ZM_ADD(a, b) ((a) + (b))
#define ZM_SUB(a, b) ((a) - (b))
#define ZM_MUL(a, b) ((a) * (b))
#define ZM_DIV(a, b) ((a) / (b))
#define ZM_SQRT(a) sqrtf(a)
#define ZM_DADD(a, b) ((a) + (b))
#define ZM_DMUL(a, b) ((a) * (b))
#endif

/* ---- bit casts ---------------------------------------------------------------------------- */

static inline ZERO_HD uint32_t zm_f32_bits(float f)
{
#if defined(__CUDA_ARCH__)
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

static inline ZERO_HD float zm_bits_f32(uint32_t u)
{
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

static inline ZERO_HD uint64_t zm_f64_bits(double d)
{
#if defined(__CUDA_ARCH__)
    return (uint64_t)__double_as_longlong(d);
#else
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
#endif
}

/* Not inf and not nan (bit test: unaffected by -ffinite-math-only). */
static inline ZERO_HD int zm_isfinite(float f)
{
    return (zm_f32_bits(f) & 0x7f800000u) != 0x7f800000u;
}

static inline ZERO_HD double zm_bits_f64(uint64_t u)
{
#if defined(__CUDA_ARCH__)
    return __longlong_as_double((long long)u);
#else
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
#endif
}

static inline ZERO_HD int zm_isfinite_d(double d)
{
    return (zm_f64_bits(d) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

/* ---- bf16 <-> fp32 ------------------------------------------------------------------------ */

/* Exact: bf16 is the top half of an fp32. */
static inline ZERO_HD float zm_bf16_to_f32(uint16_t h)
{
    return zm_bits_f32((uint32_t)h << 16);
}

/* Round to nearest even on the 16 dropped bits; the carry walks into the exponent, so values
 * at or past the last midpoint become inf. nan keeps sign and top payload and is made quiet. */
static inline ZERO_HD uint16_t zm_f32_to_bf16(float f)
{
    uint32_t u = zm_f32_bits(f);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x0040u;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* ---- fp16 <-> fp32 ------------------------------------------------------------------------ */

/* 2^-24, the fp16 subnormal step. */
#define ZM_F16_SUBNORMAL_STEP 5.9604644775390625e-8f

/* Exact. Subnormals are mantissa * 2^-24 (one exact multiply: mantissa < 2^10 and the product is
 * an fp32 normal); nan is made quiet and keeps its payload. */
static inline ZERO_HD float zm_f16_to_f32(uint16_t h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t em = (uint32_t)h & 0x7fffu; /* exponent and mantissa */
    uint32_t normal = (em << 13) + 0x38000000u; /* exponent bias 15 -> 127 */
    uint32_t infnan = (em << 13) | 0x7f800000u | ((em & 0x3ffu) != 0u ? 0x00400000u : 0u);
    uint32_t sub = zm_f32_bits(ZM_MUL((float)em, ZM_F16_SUBNORMAL_STEP));
    uint32_t bits = em >= 0x7c00u ? infnan : (em >= 0x0400u ? normal : sub);
    return zm_bits_f32(bits | sign);
}

/* Round to nearest even.
 * - |f| >= 65520 (the midpoint between 65504, the largest fp16, and 2^16): inf.
 * - [2^-14, 65520): rebias the exponent and round away the 13 low mantissa bits.
 * - below 2^-14 (fp16 subnormals and zero): |f| + 0.5 has an ulp of exactly 2^-24, so the
 *   (round-to-nearest-even) addition does the rounding, and the low bits of the sum are the
 *   subnormal mantissa; 1024 (a carry to 2^-14) encodes the smallest normal, as it should.
 * - nan: quiet, sign and top payload kept. */
static inline ZERO_HD uint16_t zm_f32_to_f16(float f)
{
    uint32_t u = zm_f32_bits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t r = a - 0x38000000u; /* wraps when a is small; only used when it is not */
    uint32_t normal = (r + 0x0fffu + ((r >> 13) & 1u)) >> 13;
    uint32_t sub = zm_f32_bits(ZM_ADD(zm_bits_f32(a), 0.5f)) - 0x3f000000u;
    uint32_t nan = 0x7e00u | ((a >> 13) & 0x3ffu);
    uint32_t h = a > 0x7f800000u ? nan
               : a >= 0x477ff000u ? 0x7c00u
               : a >= 0x38800000u ? normal
                                  : sub;
    return (uint16_t)(h | sign);
}

/* ---- typed element access (type is a compile-time constant after inlining) ---------------- */

static inline ZERO_HD float zm_load(const void *p, int type, size_t i)
{
    if (type == ZERO_DTYPE_FP32)
        return ((const float *)p)[i];
    if (type == ZERO_DTYPE_BF16)
        return zm_bf16_to_f32(((const uint16_t *)p)[i]);
    return zm_f16_to_f32(((const uint16_t *)p)[i]);
}

static inline ZERO_HD void zm_store(void *p, int type, size_t i, float x)
{
    if (type == ZERO_DTYPE_FP32)
        ((float *)p)[i] = x;
    else if (type == ZERO_DTYPE_BF16)
        ((uint16_t *)p)[i] = zm_f32_to_bf16(x);
    else
        ((uint16_t *)p)[i] = zm_f32_to_f16(x);
}

/* ---- AdamW -------------------------------------------------------------------------------- */

/* Per-call constants of the update, derived once (the same operations on host and device). */
typedef struct zm_adamw_coef {
    float decay;           /* 1 - lr * weight_decay */
    float beta1, one_minus_beta1;
    float beta2, one_minus_beta2;
    float step;            /* lr / bias_corr1 */
    float bias_corr2_sqrt; /* sqrt(1 - beta2^t) */
    float eps;
    float grad_scale;
} zm_adamw_coef;

static inline ZERO_HD zm_adamw_coef zm_adamw_coefs(float lr, float beta1, float beta2, float eps,
                                                   float weight_decay, float bias_corr1,
                                                   float bias_corr2_sqrt, float grad_scale)
{
    zm_adamw_coef c;
    c.decay = ZM_SUB(1.0f, ZM_MUL(lr, weight_decay));
    c.beta1 = beta1;
    c.one_minus_beta1 = ZM_SUB(1.0f, beta1);
    c.beta2 = beta2;
    c.one_minus_beta2 = ZM_SUB(1.0f, beta2);
    c.step = ZM_DIV(lr, bias_corr1);
    c.bias_corr2_sqrt = bias_corr2_sqrt;
    c.eps = eps;
    c.grad_scale = grad_scale;
    return c;
}

/* One element of PyTorch's AdamW (kernels.h), p/m/v updated in place:
 *   g = grad * grad_scale
 *   p = p * (1 - lr * wd)
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + ((1 - beta2) * g) * g
 *   p = p - ((lr / bc1) * m) / (sqrt(v) / bc2_sqrt + eps) */
static inline ZERO_HD void zm_adamw(float *p, float *m, float *v, float grad,
                                    const zm_adamw_coef *c)
{
    float g = ZM_MUL(grad, c->grad_scale);
    float pn = ZM_MUL(*p, c->decay);
    float mn = ZM_ADD(ZM_MUL(c->beta1, *m), ZM_MUL(c->one_minus_beta1, g));
    float vn = ZM_ADD(ZM_MUL(c->beta2, *v), ZM_MUL(ZM_MUL(c->one_minus_beta2, g), g));
    float denom = ZM_ADD(ZM_DIV(ZM_SQRT(vn), c->bias_corr2_sqrt), c->eps);
    pn = ZM_SUB(pn, ZM_DIV(ZM_MUL(c->step, mn), denom));
    *p = pn;
    *m = mn;
    *v = vn;
}

/* ---- squared norm: the one summation order both twins follow ------------------------------ */

/* x is cut into blocks of ZM_NORM_BLOCK elements (the last may be short). In a block of len
 * elements, lane l (0 <= l < ZM_NORM_LANES) sums, in double and starting from 0.0, the squares
 * of elements l, l + 32, l + 64, ... < len in that order; the 32 lane sums are then combined by
 * the fixed tree  for s = 16, 8, 4, 2, 1: lane[l] = lane[l] + lane[l + s] (l < s)  — a warp
 * shuffle-down reduction on the GPU, a short loop on the host. The block sums are added in block
 * order, sequentially, starting from 0.0. Squares of fp32 values are exact in double, so the
 * only roundings are those additions, and the result depends on nothing but the input.
 *
 * Overflow: a square that is inf in fp32 (|x| >= 2^64, about 1.8e19) counts as +inf, as an inf
 * or nan element does, so the sum is non-finite exactly when the gradient holds such an element.
 * Adam's second moment takes g * g in fp32: such a gradient would make v inf and freeze the
 * element for good (PyTorch would compute that inf v), so the step is skipped instead. */
#define ZM_NORM_BLOCK 4096
#define ZM_NORM_LANES 32

/* 2^128: the smallest square of a float that is inf in fp32 (the largest float below 2^64
 * squares to 2^128 (1 - 2^-23) + ..., which rounds to FLT_MAX; 2^64 squares to 2^128 exactly). */
#define ZM_SQ_OVERFLOW 340282366920938463463374607431768211456.0

static inline ZERO_HD double zm_sq(float x)
{
    double d = (double)x;
    double s = ZM_DMUL(d, d);
    return s >= ZM_SQ_OVERFLOW ? zm_bits_f64(0x7ff0000000000000ull) : s;
}

#endif
