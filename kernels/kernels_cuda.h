/* kernels_cuda.h — C launchers of the CUDA kernels, the device twins of kernels.h. Each launcher
 * enqueues its kernels on `stream` (asynchronous; pointers are device pointers) and returns 0 or
 * the cudaError_t value of the failure (cudaErrorInvalidValue for a bad dtype). Results are
 * bitwise equal to the host twins for the same inputs (zero_math.h). Includable from C. */
#ifndef ZERO_KERNELS_CUDA_H
#define ZERO_KERNELS_CUDA_H

#include <stddef.h>

#include "kernels.h"

#ifdef __CUDACC__
#include <cuda_runtime_api.h>
#else
/* The runtime's own definition, repeated so C callers need no CUDA include path (C11 allows
 * the identical typedef again if cuda_runtime_api.h is included as well). */
typedef struct CUstream_st *cudaStream_t;
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* zk_adamw on the device: master, m, v (fp32, n each) updated in place from grad (n of
 * grad_type); work (n of work_type) receives the updated master when not NULL. */
int zk_cuda_adamw(float *master, float *m, float *v, const void *grad, zero_dtype grad_type,
                  void *work, zero_dtype work_type, size_t n, const zk_adamw_params *p,
                  cudaStream_t stream);

/* zk_cast on the device (same type: a device-to-device copy on the stream). */
int zk_cuda_cast(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type, size_t n,
                 cudaStream_t stream);

/* zk_add / zk_add_f32 on the device. */
int zk_cuda_add(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type, size_t n,
                cudaStream_t stream);
int zk_cuda_add_f32(void *dst, zero_dtype dst_type, const float *src, size_t n,
                    cudaStream_t stream);

/* Doubles of device scratch zk_cuda_sq_norm needs for n elements (one per 4096-element block). */
size_t zk_cuda_sq_norm_scratch(size_t n);

/* zk_sq_norm on the device, same summation order and result. scratch: zk_cuda_sq_norm_scratch(n)
 * doubles. out (one device double): receives the sum, or, when accumulate is non-zero,
 * out = out + sum (so per-chunk norms add up in call order, as a host loop would). nonfinite
 * (one device int): set to 1 when an element is inf or nan, untouched otherwise. The block sums
 * are added by a single thread in block order (the price of a thread-count-free result: about
 * one dependent double add per 4096 elements). */
int zk_cuda_sq_norm(const void *x, zero_dtype type, size_t n, double *scratch, double *out,
                    int accumulate, int *nonfinite, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
