/* kernels.h — host twins of the element-wise kernels (AdamW, casts, accumulate, squared norm
 * with inf/nan detection). OpenMP across threads, loops the compiler vectorises. The per-element
 * math comes from zero_math.h. Results are independent of the number of threads. */
#ifndef ZERO_KERNELS_H
#define ZERO_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "zero.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hyper-parameters of one Adam/AdamW update, in double as the program gives them (Python floats
 * in PyTorch); the kernels round them to float where torch.optim.AdamW / torch.optim.Adam do
 * (zero_math.h: zm_adamw_coefs), so an fp32 parameter gets torch's bits (docs/DESIGN.md §9):
 *   g  = grad * grad_scale          (grad_scale folds unscale, averaging and clipping)
 *   g  = g + weight_decay * p       (l2 = 1: Adam's L2 term; one fma)
 *   p  = p * (1 - lr * weight_decay) (l2 = 0: AdamW's decoupled decay)
 *   m  = lerp(m, g, 1 - beta1)      (one fma)
 *   v  = beta2 * v + (1 - beta2) * g * g  (v * beta2 rounded, then one fma)
 *   p  = p - (lr / bias_corr1) * m / (sqrt(v) / bias_corr2_sqrt + eps)
 * with bias_corr1 = 1 - beta1^t, bias_corr2_sqrt = (1 - beta2^t) ** 0.5: zk_adamw_bias. */
typedef struct zk_adamw_params {
    double lr, beta1, beta2, eps, weight_decay;
    double bias_corr1;      /* 1 - beta1^t */
    double bias_corr2_sqrt; /* (1 - beta2^t) ** 0.5 */
    float grad_scale;
    int l2; /* 0: AdamW (decoupled weight decay); 1: Adam with weight decay as an L2 term */
} zk_adamw_params;

/* Sets p->bias_corr1 and p->bias_corr2_sqrt for optimizer step t (1-based) from p->beta1 and
 * p->beta2, as torch does in Python floats: 1 - beta1 ** t and (1 - beta2 ** t) ** 0.5, both
 * with libm's pow (Python's float ** calls it; ** 0.5 is pow, not sqrt). */
void zk_adamw_bias(zk_adamw_params *p, int64_t t);

/* One AdamW update of n elements. master, m, v: fp32 state (updated in place). grad: n elements
 * of grad_type. work: if not NULL, receives the updated master in work_type (rounded to nearest
 * even), in the same pass. */
void zk_adamw(float *master, float *m, float *v, const void *grad, zero_dtype grad_type,
              void *work, zero_dtype work_type, size_t n, const zk_adamw_params *p);

/* dst = convert(src), n elements; dst and src may be the same type (copy). */
void zk_cast(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type, size_t n);

/* dst[i] = round(dst[i] + src[i]) in dst's type; the sum is formed in fp32. */
void zk_add(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type, size_t n);

/* dst[i] = round(dst[i] + src[i]) for fp32 src. */
void zk_add_f32(void *dst, zero_dtype dst_type, const float *src, size_t n);

/* Sum of squares of n elements (converted to fp32, squared, accumulated in double) in a fixed
 * order independent of the thread count; *nonfinite set to 1 if any element is inf or nan
 * (left untouched otherwise). */
double zk_sq_norm(const void *x, zero_dtype type, size_t n, int *nonfinite);

/* Scalar conversions (round to nearest even; nan stays nan). */
uint16_t zk_f32_to_bf16(float f);
float zk_bf16_to_f32(uint16_t h);
uint16_t zk_f32_to_f16(float f);
float zk_f16_to_f32(uint16_t h);

/* ---- CPU Adam of ZeRO-Offload (adam_cpu.c) ------------------------------------------------ */

/* zk_adamw for an fp32 gradient shard in host memory, on the widest SIMD path this CPU has
 * (AVX-512F+FMA, else AVX2+F16C+FMA, else scalar; chosen at run time, see zk_adamw_cpu_isa),
 * with OpenMP threads over fixed blocks (the caller sets the count: omp_set_num_threads /
 * OMP_NUM_THREADS). master, m, v: n fp32 elements, updated in place. grad: n fp32 elements.
 * work: if not NULL, n elements of work_type (fp32, bf16 or fp16) receiving the updated master
 * rounded to nearest even, in the same pass. No alignment is required. Every path, at every thread count, gives
 * results bitwise equal to zk_adamw with grad_type fp32 (same operations in the same order). The
 * one exception is which nan results where two nans meet (e.g. a nan v plus a nan gradient of the
 * other sign): a nan either way, with the sign or payload the compiler's operand order picks. */
void zk_adamw_cpu(float *master, float *m, float *v, const float *grad, void *work,
                  zero_dtype work_type, size_t n, const zk_adamw_params *p);

/* The path zk_adamw_cpu takes: "avx512", "avx2" or "scalar". */
const char *zk_adamw_cpu_isa(void);

/* Force a path ("avx512", "avx2", "scalar"), or "auto"/NULL for the best one again. Returns 0, or
 * -1 (path unchanged) when the name is unknown or the CPU lacks the instructions. For tests and
 * benchmarks; not to be called while zk_adamw_cpu runs on another thread. */
int zk_adamw_cpu_force(const char *isa);

#ifdef __cplusplus
}
#endif
#endif
