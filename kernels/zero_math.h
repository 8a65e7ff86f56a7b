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
 * - The fused multiply-adds that the formulas do have are written out (ZM_FMA: fmaf on the host,
 *   __fmaf_rn on the device, one rounding on both) where PyTorch's CPU kernels fuse them (AdamW).
 * - Double arithmetic (the AdamW constants) goes through ZM_D* too, so nvcc cannot fuse it.
 * - Denormals must not be flushed: do not build the .cu files with -ftz=true (or
 *   --use_fast_math) nor the host with -ffast-math; the fp16 conversions rely on subnormals.
 * - Evaluation is exactly as written with the ZM_* macros, operation by operation; the formulas
 *   in the comments (kernels.h, zm_adamw) name the same operations in the same order.
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
#define ZM_FMA(a, b, c) __fmaf_rn((a), (b), (c))
#define ZM_DADD(a, b) __dadd_rn((a), (b))
#define ZM_DSUB(a, b) __dsub_rn((a), (b))
#define ZM_DMUL(a, b) __dmul_rn((a), (b))
#define ZM_DDIV(a, b) __ddiv_rn((a), (b))
#define ZM_D2F(a) __double2float_rn(a)
#else
#define ZM_ADD(a, b) ((a) + (b))
#define ZM_SUB(a, b) ((a) - (b))
#define ZM_MUL(a, b) ((a) * (b))
#define ZM_DIV(a, b) ((a) / (b))
#define ZM_SQRT(a) sqrtf(a)
#define ZM_FMA(a, b, c) fmaf((a), (b), (c))
#define ZM_DADD(a, b) ((a) + (b))
#define ZM_DSUB(a, b) ((a) - (b))
#define ZM_DMUL(a, b) ((a) * (b))
#define ZM_DDIV(a, b) ((a) / (b))
#define ZM_D2F(a) ((float)(a))
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

/* Per-call constants of the update, as torch.optim.Adam/AdamW rounds them for an fp32 parameter:
 * each is formed in double from the group's double hyperparameters (Python floats in torch) and
 * rounded to float once, where torch hands the Python float to an fp32 tensor op. The same
 * operations on host and device (ZM_D* and ZM_D2F). */
typedef struct zm_adamw_coef {
    float grad_scale;
    float decay;           /* AdamW: (float)(1 - lr * weight_decay); 1 for Adam-L2 */
    float l2;              /* Adam-L2: (float)weight_decay (g = fma(p, l2, g)); unused otherwise */
    float lerp_coef;       /* w = (float)(1 - beta1): w when |w| < 0.5, else w - 1 (exact) */
    float beta2;           /* (float)beta2 */
    float one_minus_beta2; /* (float)(1 - beta2) */
    float bias_corr2_sqrt; /* (float)((1 - beta2^t) ** 0.5) */
    float eps;             /* (float)eps */
    float step;            /* (float)(lr / (1 - beta1^t)) */
    int lerp_from_m;       /* 1: m = fma(w, g - m, m) (|w| < 0.5); 0: m = fma(w - 1, g - m, g) */
    int use_l2;            /* the Adam-L2 term is added (Adam-L2 with weight_decay != 0) */
} zm_adamw_coef;

/* lr, beta1, beta2, eps, weight_decay: the group's values. bias_corr1 = 1 - beta1^t and
 * bias_corr2_sqrt = (1 - beta2^t) ** 0.5, computed by the caller in double (zk_adamw_bias: pow
 * is the host's libm, as Python's float ** is). l2: 0 for AdamW (decoupled decay,
 * torch.optim.AdamW), 1 for Adam with the L2 term added to the gradient (torch.optim.Adam's
 * weight_decay). As in torch, weight_decay 0 skips the decay or the L2 term. */
static inline ZERO_HD zm_adamw_coef zm_adamw_coefs(double lr, double beta1, double beta2,
                                                   double eps, double weight_decay,
                                                   double bias_corr1, double bias_corr2_sqrt,
                                                   float grad_scale, int l2)
{
    zm_adamw_coef c;
    const int decays = weight_decay != 0.0;
    c.grad_scale = grad_scale;
    c.use_l2 = l2 && decays;
    c.l2 = c.use_l2 ? ZM_D2F(weight_decay) : 0.0f;
    c.decay = !l2 && decays ? ZM_D2F(ZM_DSUB(1.0, ZM_DMUL(lr, weight_decay))) : 1.0f;
    const float w = ZM_D2F(ZM_DSUB(1.0, beta1));
    c.lerp_from_m = w > -0.5f && w < 0.5f;
    c.lerp_coef = c.lerp_from_m ? w : ZM_SUB(w, 1.0f);
    c.beta2 = ZM_D2F(beta2);
    c.one_minus_beta2 = ZM_D2F(ZM_DSUB(1.0, beta2));
    c.bias_corr2_sqrt = ZM_D2F(bias_corr2_sqrt);
    c.eps = ZM_D2F(eps);
    c.step = ZM_D2F(ZM_DDIV(lr, bias_corr1));
    return c;
}

/* One element of torch's Adam/AdamW step for an fp32 parameter on the CPU (torch/optim/adam.py,
 * _single_tensor_adam; the ATen CPU kernels of its AVX2/AVX-512 builds, which fuse the
 * multiply-adds of lerp, addcmul and add(alpha) into fmas), p/m/v updated in place; torch's
 * call after each line:
 *   g = grad * grad_scale
 *   Adam-L2:  g = fma(p, wd, g)                          grad.add(param, alpha=wd)
 *   AdamW:    p' = p * decay                             param.mul_(1 - lr*wd)
 *   m = fma(w, g - m, m)  or  fma(w - 1, g - m, g)     exp_avg.lerp_(grad, 1 - beta1)
 *   v = fma((1 - beta2) * g, g, v * beta2)              exp_avg_sq.mul_(beta2)
 *                                                        .addcmul_(grad, grad, 1 - beta2)
 *   d = sqrt(v) / bc2_sqrt + eps                        (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
 *   p = p' - (step * m) / d                             param.addcdiv_(exp_avg, d, -step)
 * sqrt is the correctly rounded one (torch's own CPU sqrt is MKL's on x86 builds: docs/DESIGN.md
 * section 9). */
static inline ZERO_HD void zm_adamw(float *p, float *m, float *v, float grad,
                                    const zm_adamw_coef *c)
{
    float g = ZM_MUL(grad, c->grad_scale);
    if (c->use_l2)
        g = ZM_FMA(*p, c->l2, g);
    const float pd = ZM_MUL(*p, c->decay);
    const float mn = ZM_FMA(c->lerp_coef, ZM_SUB(g, *m), c->lerp_from_m ? *m : g);
    const float vn = ZM_FMA(ZM_MUL(c->one_minus_beta2, g), g, ZM_MUL(*v, c->beta2));
    const float den = ZM_ADD(ZM_DIV(ZM_SQRT(vn), c->bias_corr2_sqrt), c->eps);
    *p = ZM_SUB(pd, ZM_DIV(ZM_MUL(c->step, mn), den));
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
