/* adamw.cu — fused AdamW on the GPU: reads the fp32 master, m, v and a gradient of any dtype,
 * writes master, m, v and the working copy in one pass. Math from zero_math.h (zm_adamw): torch's
 * AdamW (or Adam-L2) order, with its fmas as __fmaf_rn. */
#include <cuda_runtime.h>

#include "kernels_cuda.h"
#include "zero_math.h"

#define ZK_THREADS 256
#define ZK_MAX_BLOCKS 4096 /* grid-stride beyond this: enough blocks to fill any current GPU */
#define ZK_NONE 3          /* no work copy */

static unsigned adamw_grid(size_t n)
{
    size_t b = (n + ZK_THREADS - 1) / ZK_THREADS;
    return (unsigned)(b < ZK_MAX_BLOCKS ? b : ZK_MAX_BLOCKS);
}

template <int GT, int WT>
static __global__ void adamw_kernel(float *__restrict__ master, float *__restrict__ m,
                                    float *__restrict__ v, const void *__restrict__ grad,
                                    void *__restrict__ work, size_t n, zk_adamw_params p)
{
    /* Every thread derives the constants with the same rounded operations as the host twin
     * (double arithmetic through the explicitly rounded intrinsics of zero_math.h). */
    const zm_adamw_coef c =
        zm_adamw_coefs(p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.bias_corr1,
                       p.bias_corr2_sqrt, p.grad_scale, p.l2);
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float pi = master[i], mi = m[i], vi = v[i];
        zm_adamw(&pi, &mi, &vi, zm_load(grad, GT, i), &c);
        master[i] = pi;
        m[i] = mi;
        v[i] = vi;
        if (WT != ZK_NONE)
            zm_store(work, WT, i, pi);
    }
}

#define ZK_ADAMW_CASE(G, W)                                                                    \
    case (G) * 4 + (W):                                                                        \
        adamw_kernel<(G), (W)><<<grid, ZK_THREADS, 0, stream>>>(master, m, v, grad, work, n,    \
                                                                 *p);                          \
        break

extern "C" int zk_cuda_adamw(float *master, float *m, float *v, const void *grad,
                             zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                             const zk_adamw_params *p, cudaStream_t stream)
{
    if (n == 0)
        return 0;
    const int gt = (int)grad_type;
    const int wt = work ? (int)work_type : ZK_NONE;
    const unsigned grid = adamw_grid(n);
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
        return (int)cudaErrorInvalidValue;
    }
    return (int)cudaGetLastError();
}
