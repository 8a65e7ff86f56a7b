/* sq_norm.cu — squared L2 norm with inf/nan detection on the GPU, in the summation order
 * zero_math.h defines (so it equals the host twin bit for bit): one warp per 4096-element block,
 * lane l summing elements l, l + 32, ..., a shuffle-down tree, then the block sums added in
 * block order by one thread. */
#include <cuda_runtime.h>

#include "kernels_cuda.h"
#include "zero_math.h"

#define ZK_THREADS 256 /* a multiple of the warp size: every warp is whole */
#define ZK_MAX_BLOCKS 4096

static_assert(ZM_NORM_LANES == 32, "the tree below is a warp shuffle");

template <int T>
static __global__ void sq_norm_blocks_kernel(const void *__restrict__ x, size_t n,
                                             double *__restrict__ block_sums)
{
    const unsigned lane = threadIdx.x % ZM_NORM_LANES;
    const size_t warp = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / ZM_NORM_LANES;
    const size_t nwarps = (size_t)gridDim.x * blockDim.x / ZM_NORM_LANES;
    const size_t nblocks = (n + ZM_NORM_BLOCK - 1) / ZM_NORM_BLOCK;
    /* b depends only on the warp, so whole warps take the same trips (the shuffles need it). */
    for (size_t b = warp; b < nblocks; b += nwarps) {
        const size_t lo = b * ZM_NORM_BLOCK;
        const size_t len = n - lo < ZM_NORM_BLOCK ? n - lo : ZM_NORM_BLOCK;
        double s = 0.0;
        for (size_t i = lane; i < len; i += ZM_NORM_LANES)
            s = ZM_DADD(s, zm_sq(zm_load(x, T, lo + i)));
        for (int off = ZM_NORM_LANES / 2; off > 0; off /= 2)
            s = ZM_DADD(s, __shfl_down_sync(0xffffffffu, s, off));
        if (lane == 0)
            block_sums[b] = s;
    }
}

/* Sequential on purpose: the order of the additions is the order of the blocks. */
static __global__ void sq_norm_finish_kernel(const double *__restrict__ block_sums,
                                             size_t nblocks, double *out, int accumulate,
                                             int *nonfinite)
{
    double total = 0.0;
    for (size_t b = 0; b < nblocks; b++)
        total = ZM_DADD(total, block_sums[b]);
    /* Finite squares summed in double cannot overflow: non-finite means an inf/nan element or
     * one whose square is inf in fp32 (zm_sq). */
    if (!zm_isfinite_d(total))
        *nonfinite = 1;
    *out = accumulate ? ZM_DADD(*out, total) : total;
}

extern "C" size_t zk_cuda_sq_norm_scratch(size_t n)
{
    return (n + ZM_NORM_BLOCK - 1) / ZM_NORM_BLOCK;
}

extern "C" int zk_cuda_sq_norm(const void *x, zero_dtype type, size_t n, double *scratch,
                               double *out, int accumulate, int *nonfinite, cudaStream_t stream)
{
    const size_t nblocks = zk_cuda_sq_norm_scratch(n);
    if (nblocks > 0) {
        const size_t threads = nblocks * ZM_NORM_LANES;
        size_t grid = (threads + ZK_THREADS - 1) / ZK_THREADS;
        if (grid > ZK_MAX_BLOCKS)
            grid = ZK_MAX_BLOCKS;
        switch (type) {
        case ZERO_DTYPE_FP32:
            sq_norm_blocks_kernel<ZERO_DTYPE_FP32>
                <<<(unsigned)grid, ZK_THREADS, 0, stream>>>(x, n, scratch);
            break;
        case ZERO_DTYPE_BF16:
            sq_norm_blocks_kernel<ZERO_DTYPE_BF16>
                <<<(unsigned)grid, ZK_THREADS, 0, stream>>>(x, n, scratch);
            break;
        case ZERO_DTYPE_FP16:
            sq_norm_blocks_kernel<ZERO_DTYPE_FP16>
                <<<(unsigned)grid, ZK_THREADS, 0, stream>>>(x, n, scratch);
            break;
        default:
            return (int)cudaErrorInvalidValue;
        }
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess)
            return (int)e;
    }
    sq_norm_finish_kernel<<<1, 1, 0, stream>>>(scratch, nblocks, out, accumulate, nonfinite);
    return (int)cudaGetLastError();
}
