/* model_cuda.cu — GPT-2's module functions on a GPU (model_cuda.h). Every row and column of math
 * is rows.h's, the code model.c runs on the CPU (one row per thread here, so the same order of
 * operations: LayerNorm rows and channels, GELU, attention rows and its two passes back,
 * cross-entropy rows, bias and embedding columns; equal within rounding: FMA contraction and the
 * device's expf/tanhf); the GEMMs are cuBLAS's (exact fp32 by default, TF32 or bf16 tensor cores
 * by GPT2_GEMM_*). Row-major arrays as in model.c; cuBLAS is column-major, so a
 * row-major (m, n) matrix is handed over as the column-major (n, m) matrix it is in memory. */
#include "model_cuda.h"

#include "dtype_cuda.cuh"
#include "rows.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gpu_state {
    cudaStream_t stream;
    cublasHandle_t blas;
    float *loss_host; /* (B * T) pinned: per-token losses read back */
    int *tokens_dev, *targets_dev;
    int gemm;         /* GPT2_GEMM_* */
    __nv_bfloat16 *bf_a, *bf_b; /* GPT2_GEMM_BF16: operands rounded to bf16, bf_len each */
    size_t bf_len;
    char err[256];    /* first failure; "" = none */
} gpu_state;

static gpu_state *st(const gpt2_acts *a) { return (gpu_state *)a->gpu; }

static void note(gpt2_acts *a, const char *what, const char *why, int line)
{
    gpu_state *g = st(a);
    if (g && !g->err[0])
        snprintf(g->err, sizeof g->err, "%s: %s (model_cuda.cu:%d)", what, why, line);
}

#define CU(a, call)                                                                           \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            note(a, #call, cudaGetErrorString(e_), __LINE__);                                 \
    } while (0)
#define LAUNCHED(a) CU(a, cudaGetLastError())
#define BL(a, call)                                                                           \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                      \
            note(a, #call, cublasGetStatusString(s_), __LINE__);                              \
    } while (0)

/* Blocks for n threads: one per element or row (kernels that return past n), so no cap below
 * the x dimension's 2^31 - 1. */
static unsigned grid(size_t n, unsigned threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 0x7fffffff ? 0x7fffffff : (b ? b : 1));
}

#define FOR_EACH(i, n)                                                                        \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                   \
         i += (size_t)gridDim.x * blockDim.x)

/* ---- conversions ----------------------------------------------------------------------------- */

__global__ static void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n)
{
    FOR_EACH(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}


/* ---- element-wise and row kernels -------------------------------------------------------------- */

__global__ static void k_add(float *out, const float *x, size_t n) { FOR_EACH(i, n) out[i] += x[i]; }

/* out (N, OC) rows = b, or 0 */
__global__ static void k_bias_rows(float *out, const float *b, int N, int OC)
{
    FOR_EACH(i, (size_t)N * OC) out[i] = b ? b[i % (size_t)OC] : 0.0f;
}

__global__ static void k_bias_grad(float *db, const float *dout, int N, int OC)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o < OC)
        gpt2_bias_grad_col(db, dout, N, OC, o);
}

__global__ static void k_encode(float *out, const int *tokens, const float *wte, const float *wpe,
                                int N, int T, int C)
{
    FOR_EACH(i, (size_t)N * C)
    {
        size_t n = i / C, c = i % C;
        out[i] = wte[(size_t)tokens[n] * C + c] + wpe[(n % T) * C + c];
    }
}

__global__ static void k_encode_back(float *dwte, float *dwpe, const float *dres,
                                     const int *tokens, int N, int T, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C)
        gpt2_encode_back_col(dwte, dwpe, dres, tokens, N, T, C, c);
}

__global__ static void k_layernorm(float *out, float *mean, float *rstd, const float *x,
                                   const float *w, const float *b, int N, int C)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < N)
        gpt2_ln_row(out + (size_t)r * C, &mean[r], &rstd[r], x + (size_t)r * C, w, b, C);
}

__global__ static void k_layernorm_dx(float *dx, const float *dout, const float *x, const float *w,
                                      const float *mean, const float *rstd, int N, int C)
{
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < N)
        gpt2_ln_dx_row(dx + (size_t)r * C, dout + (size_t)r * C, x + (size_t)r * C, w, mean[r],
                       rstd[r], C);
}

__global__ static void k_layernorm_dwb(float *dw, float *db, const float *dout, const float *x,
                                       const float *mean, const float *rstd, int N, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C)
        gpt2_ln_dwb_col(dw, db, dout, x, mean, rstd, N, C, c);
}

__global__ static void k_gelu(float *out, const float *x, size_t n)
{
    FOR_EACH(i, n) out[i] = gpt2_gelu(x[i]);
}

__global__ static void k_gelu_back(float *d, const float *x, size_t n)
{
    FOR_EACH(i, n) d[i] *= gpt2_gelu_grad(x[i]);
}

/* ---- causal self-attention: one thread per (sequence, head, row) ----------------------------- */

__device__ static void split_row(size_t idx, int T, int NH, int *b, int *h, int *t)
{
    *t = (int)(idx % T);
    *h = (int)(idx / T % NH);
    *b = (int)(idx / ((size_t)T * NH));
}

__global__ static void k_attention(float *out, float *att, const float *qkv, int B, int T, int C,
                                   int NH)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    int b, h, t;
    if (idx >= (size_t)B * NH * T)
        return;
    split_row(idx, T, NH, &b, &h, &t);
    gpt2_attn_row(out, att, qkv, b, h, t, T, C, NH);
}

__global__ static void k_attention_back_q(float *dqkv, float *datt, const float *dout,
                                          const float *qkv, const float *att, int B, int T,
                                          int C, int NH)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    int b, h, t;
    if (idx >= (size_t)B * NH * T)
        return;
    split_row(idx, T, NH, &b, &h, &t);
    gpt2_attn_back_q_row(dqkv, datt, dout, qkv, att, b, h, t, T, C, NH);
}

__global__ static void k_attention_back_kv(float *dqkv, const float *datt, const float *dout,
                                           const float *qkv, const float *att, int B, int T,
                                           int C, int NH)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    int b, h, t2;
    if (idx >= (size_t)B * NH * T)
        return;
    split_row(idx, T, NH, &b, &h, &t2);
    gpt2_attn_back_kv_row(dqkv, datt, dout, qkv, att, b, h, t2, T, C, NH);
}

__global__ static void k_xent(float *logits, float *losses, const int *targets, int N, int V,
                              float dscale)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N)
        losses[n] = gpt2_xent_row(logits + (size_t)n * V, targets[n], V, dscale);
}

/* ---- matrix products (model.c's linear_forward / linear_backward) ---------------------------- */

/* C (m x n, column-major, fp32, leading dimension ldc) = op(A) op(B) + beta C, with A and B fp32
 * in memory: SGEMM (in the handle's fp32 or TF32 math mode), or, in GPT2_GEMM_BF16, both rounded
 * to bf16 into the scratch buffers first and multiplied on tensor cores with fp32 accumulation.
 * A spans lda x (opA == N ? k : m) elements, B ldb x (opB == N ? n : k). */
static void gemm(gpt2_acts *a, cublasOperation_t opA, cublasOperation_t opB, int m, int n, int k,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    gpu_state *g = st(a);
    const float one = 1.0f;
    if (g->gemm != GPT2_GEMM_BF16) {
        BL(a, cublasSgemm(g->blas, opA, opB, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
        return;
    }
    const size_t na = (size_t)lda * (opA == CUBLAS_OP_N ? k : m);
    const size_t nb = (size_t)ldb * (opB == CUBLAS_OP_N ? n : k);
    if (na > g->bf_len || nb > g->bf_len) {
        note(a, "bf16 GEMM", "operand larger than the scratch buffers", __LINE__);
        return;
    }
    k_to_bf16<<<grid(na, 256), 256, 0, g->stream>>>(g->bf_a, A, na);
    LAUNCHED(a);
    k_to_bf16<<<grid(nb, 256), 256, 0, g->stream>>>(g->bf_b, B, nb);
    LAUNCHED(a);
    BL(a, cublasGemmEx(g->blas, opA, opB, m, n, k, &one, g->bf_a, CUDA_R_16BF, lda, g->bf_b,
                       CUDA_R_16BF, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT));
}

/* out (N, OC) = inp (N, IC) w^T + b */
static void linear_forward(gpt2_acts *a, float *out, const float *inp, const float *w,
                           const float *b, int N, int IC, int OC)
{
    gpu_state *g = st(a);
    k_bias_rows<<<grid((size_t)N * OC, 256), 256, 0, g->stream>>>(out, b, N, OC);
    LAUNCHED(a);
    /* out^T (OC, N) += w (OC, IC) inp^T (IC, N); w in memory is w^T (IC, OC) column-major */
    gemm(a, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, w, IC, inp, IC, 1.0f, out, OC);
}

/* dinp (N, IC) = dout w (if dinp); dw (OC, IC) += dout^T inp; db += column sums (if db) */
static void linear_backward(gpt2_acts *a, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int IC, int OC)
{
    gpu_state *g = st(a);
    if (dinp) /* dinp^T (IC, N) = w^T (IC, OC) dout^T (OC, N) */
        gemm(a, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, w, IC, dout, OC, 0.0f, dinp, IC);
    /* dw^T (IC, OC) += inp^T (IC, N) dout (N, OC) */
    gemm(a, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, inp, IC, dout, OC, 1.0f, dw, IC);
    if (db) {
        k_bias_grad<<<grid((size_t)OC, 128), 128, 0, g->stream>>>(db, dout, N, OC);
        LAUNCHED(a);
    }
}

static void layernorm_forward(gpt2_acts *a, float *out, float *mean, float *rstd, const float *x,
                              const float *w, const float *b, int N, int C)
{
    k_layernorm<<<grid((size_t)N, 128), 128, 0, st(a)->stream>>>(out, mean, rstd, x, w, b, N, C);
    LAUNCHED(a);
}

static void layernorm_backward(gpt2_acts *a, float *dx, float *dw, float *db, const float *dout,
                               const float *x, const float *w, const float *mean,
                               const float *rstd, int N, int C)
{
    cudaStream_t s = st(a)->stream;
    k_layernorm_dx<<<grid((size_t)N, 128), 128, 0, s>>>(dx, dout, x, w, mean, rstd, N, C);
    LAUNCHED(a);
    k_layernorm_dwb<<<grid((size_t)C, 128), 128, 0, s>>>(dw, db, dout, x, mean, rstd, N, C);
    LAUNCHED(a);
}

static void add(gpt2_acts *a, float *out, const float *x, size_t n)
{
    k_add<<<grid(n, 256), 256, 0, st(a)->stream>>>(out, x, n);
    LAUNCHED(a);
}

/* ---- set-up ------------------------------------------------------------------------------------ */

static float *layer_slice(float *base, const gpt2_acts *a, int l, int width)
{
    return base + (size_t)l * (size_t)a->B * (size_t)a->T * (size_t)width;
}

static const float *block_input(const gpt2_acts *a, int l)
{
    return l == 0 ? a->encoded : layer_slice(a->res3, a, l - 1, a->C);
}

static size_t head_rows(const gpt2_acts *a) { return (size_t)a->B * a->NH * a->T; }

int gpt2_cuda_acts_alloc(gpt2_acts *a, const gpt2_config *cfg, int B, void *stream, int gemm,
                         char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    gpu_state *g = (gpu_state *)calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of host memory");
        return -1;
    }
    a->gpu = g;
    g->stream = (cudaStream_t)stream;
    g->gemm = gemm;
    float **ptrs[GPT2_ACTS_BUFFERS];
    size_t counts[GPT2_ACTS_BUFFERS];
    gpt2_acts_buffers(a, cfg, B, ptrs, counts); /* model.c's list of buffers */
    const size_t N = (size_t)B * a->T, C = (size_t)a->C;
    cudaError_t e = cudaSuccess;
    for (int k = 0; k < GPT2_ACTS_BUFFERS && e == cudaSuccess; k++)
        e = cudaMalloc((void **)ptrs[k], counts[k] * sizeof(float));
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&g->tokens_dev, N * sizeof(int));
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&g->targets_dev, N * sizeof(int));
    if (e == cudaSuccess)
        e = cudaMallocHost((void **)&g->loss_host, N * sizeof(float));
    if (e == cudaSuccess && gemm == GPT2_GEMM_BF16) {
        /* the largest GEMM operand: an activation (N, 4C or V) or a weight (4C or V, C) */
        size_t wide = 4 * C > (size_t)GPT2_VOCAB ? 4 * C : (size_t)GPT2_VOCAB;
        g->bf_len = (N > C ? N : C) * wide;
        e = cudaMalloc((void **)&g->bf_a, g->bf_len * sizeof(__nv_bfloat16));
        if (e == cudaSuccess)
            e = cudaMalloc((void **)&g->bf_b, g->bf_len * sizeof(__nv_bfloat16));
    }
    if (e != cudaSuccess) {
        snprintf(err, errlen, "GPU memory for the activations (%zu tokens): %s", N,
                 cudaGetErrorString(e));
        gpt2_cuda_acts_free(a);
        return -1;
    }
    /* host copies of the batch, where gpt2_batch writes; sent over by gpt2_cuda_load */
    a->tokens = (int *)malloc(N * sizeof(int));
    a->targets = (int *)malloc(N * sizeof(int));
    if (!a->tokens || !a->targets || cublasCreate(&g->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(g->blas, g->stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(g->blas, gemm == GPT2_GEMM_TF32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                          : CUBLAS_DEFAULT_MATH) !=
            CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuBLAS could not start on this GPU (or out of host memory)");
        gpt2_cuda_acts_free(a);
        return -1;
    }
    return 0;
}

void gpt2_cuda_acts_free(gpt2_acts *a)
{
    gpu_state *g = st(a);
    if (!g)
        return;
    if (g->stream)
        cudaStreamSynchronize(g->stream);
    if (g->blas)
        cublasDestroy(g->blas);
    float **ptrs[GPT2_ACTS_BUFFERS];
    size_t counts[GPT2_ACTS_BUFFERS];
    gpt2_acts_buffers(a, NULL, 0, ptrs, counts);
    for (int k = 0; k < GPT2_ACTS_BUFFERS; k++)
        if (*ptrs[k])
            cudaFree(*ptrs[k]);
    if (g->tokens_dev)
        cudaFree(g->tokens_dev);
    if (g->targets_dev)
        cudaFree(g->targets_dev);
    if (g->loss_host)
        cudaFreeHost(g->loss_host);
    if (g->bf_a)
        cudaFree(g->bf_a);
    if (g->bf_b)
        cudaFree(g->bf_b);
    free(a->tokens);
    free(a->targets);
    free(g);
    memset(a, 0, sizeof *a);
}

const char *gpt2_cuda_error(const gpt2_acts *a)
{
    const gpu_state *g = st(a);
    if (!g)
        return "no GPU state";
    if (!g->err[0]) { /* a kernel that failed while running shows at the next check */
        cudaError_t e = cudaPeekAtLastError();
        if (e != cudaSuccess)
            note((gpt2_acts *)a, "CUDA", cudaGetErrorString(e), __LINE__);
    }
    return g->err[0] ? g->err : NULL;
}

void gpt2_cuda_load(gpt2_acts *a, const int *tokens, const int *targets)
{
    gpu_state *g = st(a);
    size_t n = (size_t)a->B * a->T * sizeof(int);
    CU(a, cudaMemcpyAsync(g->tokens_dev, tokens, n, cudaMemcpyHostToDevice, g->stream));
    CU(a, cudaMemcpyAsync(g->targets_dev, targets, n, cudaMemcpyHostToDevice, g->stream));
    CU(a, cudaStreamSynchronize(g->stream)); /* the host arrays are rewritten next micro-step */
}

void *gpt2_cuda_malloc(gpt2_acts *a, size_t bytes)
{
    void *p = NULL;
    CU(a, cudaMalloc(&p, bytes));
    return p;
}

void gpt2_cuda_free(void *p)
{
    if (p)
        cudaFree(p);
}

void gpt2_cuda_to_f32(gpt2_acts *a, float *dst, const void *src, zero_dtype dtype, size_t n)
{
    ex_to_f32<<<grid(n, 256), 256, 0, st(a)->stream>>>(dst, src, (int)dtype, n);
    LAUNCHED(a);
}

void gpt2_cuda_zero(gpt2_acts *a, float *dst, size_t n)
{
    CU(a, cudaMemsetAsync(dst, 0, n * sizeof(float), st(a)->stream));
}

void gpt2_cuda_accumulate(gpt2_acts *a, void *dst, zero_dtype dtype, const float *src, size_t n)
{
    ex_accumulate<<<grid(n, 256), 256, 0, st(a)->stream>>>(dst, (int)dtype, src, n);
    LAUNCHED(a);
}

/* ---- modules ----------------------------------------------------------------------------------- */

void gpt2_cuda_embed_forward(gpt2_acts *a, const gpt2_embed *e)
{
    const int N = a->B * a->T;
    k_encode<<<grid((size_t)N * a->C, 256), 256, 0, st(a)->stream>>>(
        a->encoded, st(a)->tokens_dev, e->wte, e->wpe, N, a->T, a->C);
    LAUNCHED(a);
}

void gpt2_cuda_block_forward(gpt2_acts *a, int l, const gpt2_block *p)
{
    const int N = a->B * a->T, C = a->C;
    const float *x = block_input(a, l);
    float *ln1 = layer_slice(a->ln1, a, l, C), *ln1m = layer_slice(a->ln1_mean, a, l, 1);
    float *ln1s = layer_slice(a->ln1_rstd, a, l, 1), *qkv = layer_slice(a->qkv, a, l, 3 * C);
    float *att = a->att + (size_t)l * head_rows(a) * a->T;
    float *atty = layer_slice(a->atty, a, l, C), *res2 = layer_slice(a->res2, a, l, C);
    float *ln2 = layer_slice(a->ln2, a, l, C), *ln2m = layer_slice(a->ln2_mean, a, l, 1);
    float *ln2s = layer_slice(a->ln2_rstd, a, l, 1), *fch = layer_slice(a->fch, a, l, 4 * C);
    float *fchg = layer_slice(a->fch_gelu, a, l, 4 * C), *res3 = layer_slice(a->res3, a, l, C);
    const size_t NC = (size_t)N * C;
    cudaStream_t s = st(a)->stream;

    layernorm_forward(a, ln1, ln1m, ln1s, x, p->ln1w, p->ln1b, N, C);
    linear_forward(a, qkv, ln1, p->qkvw, p->qkvb, N, C, 3 * C);
    k_attention<<<grid(head_rows(a), 64), 64, 0, s>>>(atty, att, qkv, a->B, a->T, C, a->NH);
    LAUNCHED(a);
    linear_forward(a, res2, atty, p->attprojw, p->attprojb, N, C, C);
    add(a, res2, x, NC);
    layernorm_forward(a, ln2, ln2m, ln2s, res2, p->ln2w, p->ln2b, N, C);
    linear_forward(a, fch, ln2, p->fcw, p->fcb, N, C, 4 * C);
    k_gelu<<<grid(4 * NC, 256), 256, 0, s>>>(fchg, fch, 4 * NC);
    LAUNCHED(a);
    linear_forward(a, res3, fchg, p->fcprojw, p->fcprojb, N, 4 * C, C);
    add(a, res3, res2, NC);
}

void gpt2_cuda_lnf_forward(gpt2_acts *a, const gpt2_lnf *p)
{
    layernorm_forward(a, a->lnf, a->lnf_mean, a->lnf_rstd, layer_slice(a->res3, a, a->L - 1, a->C),
                      p->lnfw, p->lnfb, a->B * a->T, a->C);
}

float gpt2_cuda_head_forward(gpt2_acts *a, const float *wte, float scale)
{
    gpu_state *g = st(a);
    const int N = a->B * a->T, V = GPT2_VOCAB;
    linear_forward(a, a->logits, a->lnf, wte, NULL, N, a->C, V);
    k_xent<<<grid((size_t)N, 128), 128, 0, g->stream>>>(a->logits, a->losses, g->targets_dev, N,
                                                         V, scale / (float)N);
    LAUNCHED(a);
    CU(a, cudaMemcpyAsync(g->loss_host, a->losses, (size_t)N * sizeof(float),
                          cudaMemcpyDeviceToHost, g->stream));
    CU(a, cudaStreamSynchronize(g->stream));
    double total = 0.0;
    for (int n = 0; n < N; n++)
        total += g->loss_host[n];
    return (float)(total / N);
}

void gpt2_cuda_head_backward(gpt2_acts *a, const float *wte, float *dwte)
{
    linear_backward(a, a->dc, dwte, NULL, a->logits, a->lnf, wte, a->B * a->T, a->C, GPT2_VOCAB);
}

void gpt2_cuda_lnf_backward(gpt2_acts *a, const gpt2_lnf *p, const gpt2_lnf *d)
{
    const int N = a->B * a->T, C = a->C;
    CU(a, cudaMemsetAsync(a->dres, 0, (size_t)N * C * sizeof(float), st(a)->stream));
    layernorm_backward(a, a->dres, d->lnfw, d->lnfb, a->dc, layer_slice(a->res3, a, a->L - 1, C),
                       p->lnfw, a->lnf_mean, a->lnf_rstd, N, C);
}

void gpt2_cuda_block_backward(gpt2_acts *a, int l, const gpt2_block *p, const gpt2_block *d)
{
    const int N = a->B * a->T, C = a->C;
    const float *x = block_input(a, l);
    float *ln1 = layer_slice(a->ln1, a, l, C), *ln1m = layer_slice(a->ln1_mean, a, l, 1);
    float *ln1s = layer_slice(a->ln1_rstd, a, l, 1), *qkv = layer_slice(a->qkv, a, l, 3 * C);
    float *att = a->att + (size_t)l * head_rows(a) * a->T;
    float *atty = layer_slice(a->atty, a, l, C), *res2 = layer_slice(a->res2, a, l, C);
    float *ln2 = layer_slice(a->ln2, a, l, C), *ln2m = layer_slice(a->ln2_mean, a, l, 1);
    float *ln2s = layer_slice(a->ln2_rstd, a, l, 1), *fch = layer_slice(a->fch, a, l, 4 * C);
    float *fchg = layer_slice(a->fch_gelu, a, l, 4 * C);
    cudaStream_t s = st(a)->stream;

    linear_backward(a, a->d4c, d->fcprojw, d->fcprojb, a->dres, fchg, p->fcprojw, N, 4 * C, C);
    k_gelu_back<<<grid((size_t)N * 4 * C, 256), 256, 0, s>>>(a->d4c, fch, (size_t)N * 4 * C);
    LAUNCHED(a);
    linear_backward(a, a->dc, d->fcw, d->fcb, a->d4c, ln2, p->fcw, N, C, 4 * C);
    layernorm_backward(a, a->dres, d->ln2w, d->ln2b, a->dc, res2, p->ln2w, ln2m, ln2s, N, C);
    linear_backward(a, a->dc, d->attprojw, d->attprojb, a->dres, atty, p->attprojw, N, C, C);
    k_attention_back_q<<<grid(head_rows(a), 64), 64, 0, s>>>(a->d3c, a->datt, a->dc, qkv,
                                                             att, a->B, a->T, C, a->NH);
    LAUNCHED(a);
    k_attention_back_kv<<<grid(head_rows(a), 64), 64, 0, s>>>(a->d3c, a->datt, a->dc, qkv,
                                                              att, a->B, a->T, C, a->NH);
    LAUNCHED(a);
    linear_backward(a, a->dc, d->qkvw, d->qkvb, a->d3c, ln1, p->qkvw, N, C, 3 * C);
    layernorm_backward(a, a->dres, d->ln1w, d->ln1b, a->dc, x, p->ln1w, ln1m, ln1s, N, C);
}

void gpt2_cuda_embed_backward(gpt2_acts *a, const gpt2_embed *d)
{
    k_encode_back<<<grid((size_t)a->C, 128), 128, 0, st(a)->stream>>>(
        d->wte, d->wpe, a->dres, st(a)->tokens_dev, a->B * a->T, a->T, a->C);
    LAUNCHED(a);
}
