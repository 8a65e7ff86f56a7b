/* dtype_cuda.cuh — the working-precision conversions both examples' GPU paths need, as
 * zero_convert and zero_accumulate do them on the host (round to nearest even): widen a bf16 /
 * fp16 / fp32 element to fp32, store fp32 back, and the two grid-stride kernels built on them.
 * Included by examples/mlp/model_cuda.cu and examples/gpt2/model_cuda.cu. */
#ifndef ZERO_EXAMPLES_DTYPE_CUDA_CUH
#define ZERO_EXAMPLES_DTYPE_CUDA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stddef.h>

#include "zero.h"

__device__ static inline float ex_load(const void *p, size_t i, int dtype)
{
    if (dtype == ZERO_DTYPE_BF16)
        return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    if (dtype == ZERO_DTYPE_FP16)
        return __half2float(((const __half *)p)[i]);
    return ((const float *)p)[i];
}

__device__ static inline void ex_store(void *p, size_t i, int dtype, float x)
{
    if (dtype == ZERO_DTYPE_BF16)
        ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(x);
    else if (dtype == ZERO_DTYPE_FP16)
        ((__half *)p)[i] = __float2half_rn(x);
    else
        ((float *)p)[i] = x;
}

/* dst (fp32) <- src (dtype), n elements */
__global__ static void ex_to_f32(float *dst, const void *src, int dtype, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dst[i] = ex_load(src, i, dtype);
}

/* dst += src in dst's dtype: fp32 sum of the widened value, rounded once (zero_accumulate) */
__global__ static void ex_accumulate(void *dst, int dtype, const float *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        ex_store(dst, i, dtype, ex_load(dst, i, dtype) + src[i]);
}

#endif
