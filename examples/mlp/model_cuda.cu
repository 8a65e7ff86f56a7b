/* model_cuda.cu — the MLP's forward and backward on a GPU (model_cuda.h). Row-major arrays as
 * in model.c; cuBLAS is column-major, so a row-major (m, n) matrix is passed as the
 * column-major (n, m) matrix it is in memory, and every product below is written for those
 * transposed views. */
#include "model_cuda.h"

#include "dtype_cuda.cuh"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mlp_gpu {
    int layers, width, rows;
    cudaStream_t stream;
    cublasHandle_t blas;
    float *h;      /* (L + 1, B, W) layer inputs; h[0] is the batch */
    float *y;      /* (B) head output */
    float *dy;     /* (B) d loss / d y, times the loss scale */
    float *dh;     /* (2, B, W) ping-pong d loss / d h */
    float *target; /* (B) */
    float *pw;     /* (W, W) fp32 copy of a bf16/fp16 weight */
    float *pb;     /* (W) */
    float *dw;     /* (W, W) a layer's weight gradient */
    float *db;     /* (W) */
    float *loss;   /* (1) device sum of squared errors */
    float *loss_host; /* pinned */
    char err[256];
};

static int fail(mlp_gpu *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(mlp_gpu *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
    return -1;
}

#define CU(g, call)                                                                           \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            return fail(g, "%s: %s (%s:%d)", #call, cudaGetErrorString(e_), __FILE__,         \
                        __LINE__);                                                            \
    } while (0)
#define BL(g, call)                                                                           \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                      \
            return fail(g, "%s: cuBLAS status %d (%s:%d)", #call, (int)s_, __FILE__,          \
                        __LINE__);                                                            \
    } while (0)
/* A kernel launch: the launch error now, an execution error at the next synchronisation. */
#define LAUNCHED(g) CU(g, cudaGetLastError())

static unsigned blocks(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535 ? 65535 : (b ? b : 1));
}

/* ---- layer pieces -------------------------------------------------------------------------- */

/* y (rows, out) = act(y + b): the GEMM left x w^T in y. */
__global__ static void bias_act(float *y, const float *b, int rows, int out, int act_tanh)
{
    size_t n = (size_t)rows * (size_t)out;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float s = y[i] + b[i % (size_t)out];
        y[i] = act_tanh ? tanhf(s) : s;
    }
}

/* Through tanh: d pre = d y * (1 - y^2), in place. */
__global__ static void tanh_back(float *dy, const float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        dy[i] *= 1.0f - y[i] * y[i];
}

/* db[o] = sum over rows of dy[r, o], rows in order (model.c's order). */
__global__ static void bias_grad(float *db, const float *dy, int rows, int out)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out)
        return;
    float s = 0.0f;
    for (int r = 0; r < rows; r++)
        s += dy[(size_t)r * (size_t)out + o];
    db[o] = s;
}

/* One block: dy = g (y - t) and the sum of squared errors into *loss. */
__global__ static void mse(float *dy, float *loss, const float *y, const float *t, int rows,
                           float g)
{
    __shared__ float part[256];
    float s = 0.0f;
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        float e = y[r] - t[r];
        dy[r] = g * e;
        s += e * e;
    }
    part[threadIdx.x] = s;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if ((int)threadIdx.x < k)
            part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        *loss = part[0];
}

/* ---- the model ------------------------------------------------------------------------------ */

static int out_of(const mlp_gpu *g, int l) { return l < g->layers ? g->width : 1; }
static float *h_at(const mlp_gpu *g, int l) { return g->h + (size_t)l * g->rows * g->width; }
static float *dh_at(const mlp_gpu *g, int k) { return g->dh + (size_t)k * g->rows * g->width; }

/* fp32 views of a layer's parameters: as they are, or converted into the scratch. */
static int as_f32(mlp_gpu *g, const void *p, zero_dtype dtype, size_t n, float *scratch,
                  const float **out)
{
    if (dtype == ZERO_DTYPE_FP32) {
        *out = (const float *)p;
        return 0;
    }
    ex_to_f32<<<blocks(n, 256), 256, 0, g->stream>>>(scratch, p, (int)dtype, n);
    LAUNCHED(g);
    *out = scratch;
    return 0;
}

int mlp_gpu_create(mlp_gpu **out, int layers, int width, int rows, void *stream, char *err,
                   size_t errlen)
{
    *out = NULL;
    mlp_gpu *g = (mlp_gpu *)calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of host memory");
        return -1;
    }
    g->layers = layers;
    g->width = width;
    g->rows = rows;
    g->stream = (cudaStream_t)stream;
    size_t bw = (size_t)rows * (size_t)width, ww = (size_t)width * (size_t)width;
    int rc = 0;
    cudaError_t e = cudaSuccess;
    void **bufs[] = {(void **)&g->h, (void **)&g->y, (void **)&g->dy, (void **)&g->dh,
                     (void **)&g->target, (void **)&g->pw, (void **)&g->pb, (void **)&g->dw,
                     (void **)&g->db, (void **)&g->loss};
    size_t sizes[] = {(size_t)(layers + 1) * bw, (size_t)rows, (size_t)rows, 2 * bw,
                      (size_t)rows, ww, (size_t)width, ww, (size_t)width, 1};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && e == cudaSuccess; i++)
        e = cudaMalloc(bufs[i], sizes[i] * sizeof(float));
    if (e == cudaSuccess)
        e = cudaMallocHost((void **)&g->loss_host, sizeof(float));
    if (e != cudaSuccess) {
        snprintf(err, errlen, "GPU memory for the MLP's activations: %s", cudaGetErrorString(e));
        rc = -1;
    } else if (cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS ||
               cublasSetStream(g->blas, g->stream) != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuBLAS could not start on this GPU");
        rc = -1;
    } else {
        /* fp32 products in fp32 (no TF32): the host backend's numbers, within rounding */
        cublasSetMathMode(g->blas, CUBLAS_DEFAULT_MATH);
    }
    if (rc) {
        mlp_gpu_destroy(g);
        return -1;
    }
    *out = g;
    return 0;
}

void mlp_gpu_destroy(mlp_gpu *g)
{
    if (!g)
        return;
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    if (g->blas)
        cublasDestroy(g->blas);
    float *bufs[] = {g->h, g->y, g->dy, g->dh, g->target, g->pw, g->pb, g->dw, g->db, g->loss};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i])
            cudaFree(bufs[i]);
    if (g->loss_host)
        cudaFreeHost(g->loss_host);
    free(g);
}

const char *mlp_gpu_error(const mlp_gpu *g) { return g ? g->err : "no GPU context"; }

int mlp_gpu_load(mlp_gpu *g, const float *x, const float *target)
{
    size_t bw = (size_t)g->rows * (size_t)g->width;
    CU(g, cudaMemcpyAsync(h_at(g, 0), x, bw * sizeof(float), cudaMemcpyHostToDevice, g->stream));
    CU(g, cudaMemcpyAsync(g->target, target, (size_t)g->rows * sizeof(float),
                          cudaMemcpyHostToDevice, g->stream));
    return 0;
}

int mlp_gpu_forward(mlp_gpu *g, int l, const void *w, const void *b, zero_dtype dtype)
{
    const int in = g->width, out = out_of(g, l), rows = g->rows;
    const float *wf, *bf;
    if (as_f32(g, w, dtype, (size_t)out * in, g->pw, &wf) ||
        as_f32(g, b, dtype, (size_t)out, g->pb, &bf))
        return -1;
    float *x = h_at(g, l), *y = l < g->layers ? h_at(g, l + 1) : g->y;
    const float one = 1.0f, zero = 0.0f;
    /* y^T (out, rows) = w (out, in) x^T (in, rows); w in memory is w^T (in, out) col-major */
    BL(g, cublasSgemm(g->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, rows, in, &one, wf, in, x, in,
                      &zero, y, out));
    bias_act<<<blocks((size_t)rows * out, 256), 256, 0, g->stream>>>(y, bf, rows, out,
                                                                     l < g->layers);
    LAUNCHED(g);
    return 0;
}

int mlp_gpu_loss(mlp_gpu *g, float scale, float *loss)
{
    mse<<<1, 256, 0, g->stream>>>(g->dy, g->loss, g->y, g->target, g->rows,
                                  2.0f * scale / (float)g->rows);
    LAUNCHED(g);
    CU(g, cudaMemcpyAsync(g->loss_host, g->loss, sizeof(float), cudaMemcpyDeviceToHost,
                          g->stream));
    CU(g, cudaStreamSynchronize(g->stream));
    *loss = *g->loss_host / (float)g->rows;
    return 0;
}

int mlp_gpu_backward(mlp_gpu *g, int l, const void *w, void *gw, void *gb, zero_dtype dtype)
{
    const int in = g->width, out = out_of(g, l), rows = g->rows;
    const size_t nw = (size_t)out * in;
    float *x = h_at(g, l);
    float *y = l < g->layers ? h_at(g, l + 1) : g->y;
    float *dy = l < g->layers ? dh_at(g, (l + 1) % 2) : g->dy;
    float *dx = l > 0 ? dh_at(g, l % 2) : NULL;
    const float one = 1.0f, zero = 0.0f;
    if (l < g->layers) {
        tanh_back<<<blocks((size_t)rows * out, 256), 256, 0, g->stream>>>(dy, y,
                                                                          (size_t)rows * out);
        LAUNCHED(g);
    }
    /* dw (out, in) = dy^T x: dw^T (in, out) = x^T (in, rows) dy (rows, out) */
    BL(g, cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, rows, &one, x, in, dy, out,
                      &zero, g->dw, in));
    bias_grad<<<blocks((size_t)out, 128), 128, 0, g->stream>>>(g->db, dy, rows, out);
    LAUNCHED(g);
    if (dx) {
        const float *wf;
        if (as_f32(g, w, dtype, nw, g->pw, &wf))
            return -1;
        /* dx (rows, in) = dy w: dx^T (in, rows) = w^T (in, out) dy^T (out, rows) */
        BL(g, cublasSgemm(g->blas, CUBLAS_OP_N, CUBLAS_OP_N, in, rows, out, &one, wf, in, dy,
                          out, &zero, dx, in));
    }
    ex_accumulate<<<blocks(nw, 256), 256, 0, g->stream>>>(gw, (int)dtype, g->dw, nw);
    LAUNCHED(g);
    ex_accumulate<<<blocks((size_t)out, 256), 256, 0, g->stream>>>(gb, (int)dtype, g->db,
                                                                (size_t)out);
    LAUNCHED(g);
    return 0;
}
