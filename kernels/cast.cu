/* cast.cu — dtype conversion and accumulation on the GPU (device twins of zk_cast, zk_add).
 * Conversions from zero_math.h: round to nearest even, nan stays nan. */
#include <cuda_runtime.h>

#include "kernels_cuda.h"
#include "zero_math.h"

#define ZK_THREADS 256
#define ZK_MAX_BLOCKS 4096

static unsigned cast_grid(size_t n)
{
    size_t b = (n + ZK_THREADS - 1) / ZK_THREADS;
    return (unsigned)(b < ZK_MAX_BLOCKS ? b : ZK_MAX_BLOCKS);
}

static bool valid_dtype(zero_dtype t)
{
    return t == ZERO_DTYPE_FP32 || t == ZERO_DTYPE_BF16 || t == ZERO_DTYPE_FP16;
}

template <int DT, int ST>
static __global__ void cast_kernel(void *__restrict__ dst, const void *__restrict__ src, size_t n)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        zm_store(dst, DT, i, zm_load(src, ST, i));
}

/* The sum is formed in fp32 and rounded once to dst's type. */
template <int DT, int ST>
static __global__ void add_kernel(void *__restrict__ dst, const void *__restrict__ src, size_t n)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        zm_store(dst, DT, i, ZM_ADD(zm_load(dst, DT, i), zm_load(src, ST, i)));
}

#define ZK_PAIR_CASE(kernel, D, S)                                                             \
    case (D) * 4 + (S):                                                                        \
        kernel<(D), (S)><<<grid, ZK_THREADS, 0, stream>>>(dst, src, n);                        \
        break

#define ZK_PAIR_SWITCH(kernel, dt, st)                                                         \
    switch ((int)(dt) * 4 + (int)(st)) {                                                       \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_FP32, ZERO_DTYPE_FP32);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_FP32, ZERO_DTYPE_BF16);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_FP32, ZERO_DTYPE_FP16);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_BF16, ZERO_DTYPE_FP32);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_BF16, ZERO_DTYPE_BF16);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_BF16, ZERO_DTYPE_FP16);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_FP16, ZERO_DTYPE_FP32);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_FP16, ZERO_DTYPE_BF16);                                \
        ZK_PAIR_CASE(kernel, ZERO_DTYPE_FP16, ZERO_DTYPE_FP16);                                \
    default:                                                                                   \
        return (int)cudaErrorInvalidValue;                                                     \
    }

extern "C" int zk_cuda_cast(void *dst, zero_dtype dst_type, const void *src,
                            zero_dtype src_type, size_t n, cudaStream_t stream)
{
    if (!valid_dtype(dst_type) || !valid_dtype(src_type))
        return (int)cudaErrorInvalidValue;
    if (n == 0 || (dst == src && dst_type == src_type))
        return 0;
    if (dst_type == src_type)
        return (int)cudaMemcpyAsync(dst, src, n * (dst_type == ZERO_DTYPE_FP32 ? 4 : 2),
                                    cudaMemcpyDeviceToDevice, stream);
    const unsigned grid = cast_grid(n);
    ZK_PAIR_SWITCH(cast_kernel, dst_type, src_type)
    return (int)cudaGetLastError();
}

extern "C" int zk_cuda_add(void *dst, zero_dtype dst_type, const void *src, zero_dtype src_type,
                           size_t n, cudaStream_t stream)
{
    if (!valid_dtype(dst_type) || !valid_dtype(src_type))
        return (int)cudaErrorInvalidValue;
    if (n == 0)
        return 0;
    const unsigned grid = cast_grid(n);
    ZK_PAIR_SWITCH(add_kernel, dst_type, src_type)
    return (int)cudaGetLastError();
}

extern "C" int zk_cuda_add_f32(void *dst, zero_dtype dst_type, const float *src, size_t n,
                               cudaStream_t stream)
{
    return zk_cuda_add(dst, dst_type, src, ZERO_DTYPE_FP32, n, stream);
}
