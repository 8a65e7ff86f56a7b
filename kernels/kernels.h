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

/* Hyper-parameters of one AdamW update (PyTorch's AdamW):
 *   g  = grad * grad_scale          (grad_scale folds unscale, averaging and clipping)
 *   p  = p * (1 - lr * weight_decay)
 *   m  = beta1 * m + (1 - beta1) * g
 *   v  = beta2 * v + (1 - beta2) * g * g
 *   p  = p - (lr / bias_corr1) * m / (sqrt(v) / bias_corr2_sqrt + eps)
 * with bias_corr1 = 1 - beta1^t, bias_corr2_sqrt = sqrt(1 - beta2^t). */
typedef struct zk_adamw_params {
    float lr, beta1, beta2, eps, weight_decay;
    float bias_corr1;      /* 1 - beta1^t */
    float bias_corr2_sqrt; /* sqrt(1 - beta2^t) */
    float grad_scale;
} zk_adamw_params;

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

#ifdef __cplusplus
}
#endif
#endif
