/* model_cuda.cu — GPT-2's module functions on a GPU (model_cuda.h). The arithmetic is rows.h's,
 * the code model.c runs on the CPU; the loops around it differ, and so does the order of some
 * sums, so CPU and GPU agree within rounding, not bitwise (nvcc also contracts multiply-adds
 * into FMAs):
 *   - one thread per element, row or column calling rows.h, the same operations in the same
 *     order: GELU and its gradient, the causal softmax rows and their backward, cross-entropy
 *     rows, the embedding-gradient columns;
 *   - a warp per row with warp-shuffle sums (k_layernorm, k_layernorm_dx): gpt2_ln_row's and
 *     gpt2_ln_dx_row's expressions per element, but each row sum is taken as 32 strided partial
 *     sums combined by a butterfly, not left to right;
 *   - a 32 x 32 thread block per 32 columns (k_layernorm_dwb, k_bias_grad): gpt2_ln_dwb_col's and
 *     gpt2_bias_grad_col's terms, each column summed as 32 strided partial sums added in a fixed
 *     order.
 * Every kernel is deterministic (no atomics), so repeated runs give the same bits.
 * The matrix products are cuBLAS's: the linear layers in exact fp32 (SGEMM), TF32 or bf16 tensor
 * cores by GPT2_GEMM_*, the attention (rows.h: S = scale Q K^T, out = P V and their backward) in
 * strided batched SGEMMs over the heads of one sequence, in the handle's math mode: exact fp32,
 * or TF32 in GPT2_GEMM_TF32; in GPT2_GEMM_BF16 attention stays exact fp32 (its operands are
 * activations and probabilities, with no bf16 weights to keep exact; the cost is small at these
 * sequence lengths). Row-major arrays as in model.c; cuBLAS is column-major, so a row-major
 * (m, n) matrix is handed over as the column-major (n, m) matrix it is in memory.
 *
 * GPT2_GEMM_BF16: every operand is rounded to bf16 once per use, not once per product:
 *   - the activations a linear layer reads (ln1, atty, ln2, fch_gelu, lnf) get a bf16 twin when
 *     they are produced (the LayerNorm and GELU kernels write both; atty is converted after the
 *     attention GEMMs), kept per layer in gpu_state, and both the forward product and the
 *     weight-gradient product of backward read the twin;
 *   - a weight is converted once per linear_forward and once per linear_backward (into w_bf):
 *     backward re-gathers the module, and the fp32 view gpt2.c hands in is one scratch buffer
 *     (pbuf) refilled for every module, so neither a weight's pointer nor its size identifies its
 *     contents and nothing is cached across calls;
 *   - the output gradient of linear_backward is converted once (into d_bf) and read by both
 *     products (dinp = dout w and dw += dout^T inp).
 * The rounded values are those a conversion at every product would give (the fp32 buffers do not
 * change between production and use); only memory traffic and launches are saved. */
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
    /* GPT2_GEMM_BF16 only (else NULL): bf16 twins of the linear layers' input activations,
     * written when the fp32 activation is */
    __nv_bfloat16 *ln1_bf;  /* (L, B, T, C) */
    __nv_bfloat16 *atty_bf; /* (L, B, T, C) */
    __nv_bfloat16 *ln2_bf;  /* (L, B, T, C) */
    __nv_bfloat16 *fchg_bf; /* (L, B, T, 4C) */
    __nv_bfloat16 *lnf_bf;  /* (B, T, C) */
    __nv_bfloat16 *w_bf;    /* (w_len) the weight of the current linear call */
    __nv_bfloat16 *d_bf;    /* (d_len) the output gradient of the current linear_backward */
    size_t w_len, d_len;
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

/* Blocks for n threads (or n rows at `per` rows a block): kernels return past n, so no cap below
 * the x dimension's 2^31 - 1. */
static unsigned grid(size_t n, unsigned per)
{
    size_t b = (n + per - 1) / per;
    return (unsigned)(b > 0x7fffffff ? 0x7fffffff : (b ? b : 1));
}

#define FOR_EACH(i, n)                                                                        \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                   \
         i += (size_t)gridDim.x * blockDim.x)

#define WARP 32
#define ROW_THREADS 256                 /* warp-per-row kernels: 8 rows a block */
#define ROWS_PER_BLOCK (ROW_THREADS / WARP)
#define COL_TILE 32                     /* column kernels: 32 columns a block, ... */
#define COL_LANES 32                    /* ... each summed by 32 threads over strided rows */

/* Sum over the 32 lanes of a warp, every lane gets the same bits (each butterfly step adds the
 * same two values on both lanes, and addition commutes exactly). */
__device__ static inline float warp_sum(float v)
{
    for (int o = WARP / 2; o > 0; o /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ---- conversions ----------------------------------------------------------------------------- */

__global__ static void k_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n)
{
    FOR_EACH(i, n) dst[i] = __float2bfloat16_rn(src[i]);
}

/* dst (cap elements) <- src (n) rounded to bf16. 0, or -1 (error kept) when it does not fit. */
static int to_bf16(gpt2_acts *a, __nv_bfloat16 *dst, size_t cap, const float *src, size_t n)
{
    if (!dst || n > cap) {
        note(a, "bf16 conversion", "operand larger than its bf16 buffer", __LINE__);
        return -1;
    }
    k_to_bf16<<<grid(n, 256), 256, 0, st(a)->stream>>>(dst, src, n);
    LAUNCHED(a);
    return 0;
}

/* ---- element-wise kernels ---------------------------------------------------------------------- */

__global__ static void k_add(float *out, const float *x, size_t n) { FOR_EACH(i, n) out[i] += x[i]; }

/* out (N, OC) rows = b, or 0 */
__global__ static void k_bias_rows(float *out, const float *b, int N, int OC)
{
    FOR_EACH(i, (size_t)N * OC) out[i] = b ? b[i % (size_t)OC] : 0.0f;
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

/* out = gelu(x); out_bf (if not NULL) = the same values rounded to bf16 */
__global__ static void k_gelu(float *out, __nv_bfloat16 *out_bf, const float *x, size_t n)
{
    FOR_EACH(i, n)
    {
        const float y = gpt2_gelu(x[i]);
        out[i] = y;
        if (out_bf)
            out_bf[i] = __float2bfloat16_rn(y);
    }
}

__global__ static void k_gelu_back(float *d, const float *x, size_t n)
{
    FOR_EACH(i, n) d[i] *= gpt2_gelu_grad(x[i]);
}

/* ---- column sums: 32 columns a block, 32 threads a column --------------------------------------
 * Thread (x, y) sums rows y, y + 32, ... of column blockIdx.x * 32 + x (a warp reads 32
 * consecutive floats of a row); thread y = 0 then adds the 32 partial sums in order. */

/* gpt2_bias_grad_col's sum: db[o] += column o of dout (N, OC) */
__global__ static void k_bias_grad(float *db, const float *dout, int N, int OC)
{
    __shared__ float part[COL_LANES][COL_TILE];
    const int o = blockIdx.x * COL_TILE + threadIdx.x;
    float s = 0.0f;
    if (o < OC)
        for (int r = threadIdx.y; r < N; r += COL_LANES)
            s += dout[(size_t)r * OC + o];
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        for (int y = 1; y < COL_LANES; y++)
            s += part[y][threadIdx.x];
        db[o] += s;
    }
}

/* gpt2_ln_dwb_col's sums: dw[c] +=, db[c] += over the N rows */
__global__ static void k_layernorm_dwb(float *dw, float *db, const float *dout, const float *x,
                                       const float *mean, const float *rstd, int N, int C)
{
    __shared__ float pw[COL_LANES][COL_TILE], pb[COL_LANES][COL_TILE];
    const int c = blockIdx.x * COL_TILE + threadIdx.x;
    float sw = 0.0f, sb = 0.0f;
    if (c < C)
        for (int r = threadIdx.y; r < N; r += COL_LANES) {
            const float d = dout[(size_t)r * C + c];
            sw += d * (x[(size_t)r * C + c] - mean[r]) * rstd[r];
            sb += d;
        }
    pw[threadIdx.y][threadIdx.x] = sw;
    pb[threadIdx.y][threadIdx.x] = sb;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int y = 1; y < COL_LANES; y++) {
            sw += pw[y][threadIdx.x];
            sb += pb[y][threadIdx.x];
        }
        dw[c] += sw;
        db[c] += sb;
    }
}

/* gpt2_encode_back_col: one thread per channel, tokens in order (rows repeat tokens, so rows
 * would collide; channels do not) */
__global__ static void k_encode_back(float *dwte, float *dwpe, const float *dres,
                                     const int *tokens, int N, int T, int C)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < C)
        gpt2_encode_back_col(dwte, dwpe, dres, tokens, N, T, C, c);
}

/* ---- LayerNorm: a warp per row ----------------------------------------------------------------
 * gpt2_ln_row / gpt2_ln_dx_row with each row sum split over the lanes (lane l takes channels
 * l, l + 32, ...) and combined by warp_sum; a warp's rows are whole, so the warp returns
 * together and the shuffles see all 32 lanes. */

/* out (N, C), mean, rstd (N); out_bf (if not NULL) = out rounded to bf16 */
__global__ static void k_layernorm(float *out, __nv_bfloat16 *out_bf, float *mean, float *rstd,
                                   const float *x, const float *w, const float *b, int N, int C)
{
    const int lane = threadIdx.x % WARP;
    const size_t r = (size_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
    if (r >= (size_t)N)
        return;
    const float *xr = x + r * C;
    float m = 0.0f;
    for (int c = lane; c < C; c += WARP)
        m += xr[c];
    m = warp_sum(m) / (float)C;
    float v = 0.0f;
    for (int c = lane; c < C; c += WARP)
        v += (xr[c] - m) * (xr[c] - m);
    v = warp_sum(v) / (float)C;
    const float s = 1.0f / sqrtf(v + GPT2_LN_EPS);
    for (int c = lane; c < C; c += WARP) {
        const float o = (xr[c] - m) * s * w[c] + b[c];
        out[r * C + c] = o;
        if (out_bf)
            out_bf[r * C + c] = __float2bfloat16_rn(o);
    }
    if (lane == 0) {
        mean[r] = m;
        rstd[r] = s;
    }
}

/* dx (N, C) += the LayerNorm input gradient of dout */
__global__ static void k_layernorm_dx(float *dx, const float *dout, const float *x, const float *w,
                                      const float *mean, const float *rstd, int N, int C)
{
    const int lane = threadIdx.x % WARP;
    const size_t r = (size_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / WARP;
    if (r >= (size_t)N)
        return;
    const float *xr = x + r * C, *dr = dout + r * C;
    const float m = mean[r], s = rstd[r];
    float gmean = 0.0f, gxmean = 0.0f;
    for (int c = lane; c < C; c += WARP) {
        const float g = dr[c] * w[c];
        gmean += g;
        gxmean += g * (xr[c] - m) * s;
    }
    gmean = warp_sum(gmean) / (float)C;
    gxmean = warp_sum(gxmean) / (float)C;
    for (int c = lane; c < C; c += WARP)
        dx[r * C + c] += s * (dr[c] * w[c] - gmean - (xr[c] - m) * s * gxmean);
}

/* ---- row kernels: one thread per row, rows.h as it is -------------------------------------------- */

/* att (B, NH, T, T): row i (t = i % T) of S becomes row i of P */
__global__ static void k_softmax_causal(float *att, size_t rows, int T)
{
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < rows)
        gpt2_softmax_causal_row(att + i * T, (int)(i % T), T);
}

/* datt (B, NH, T, T): row i of dP becomes row i of dS, given row i of P in att */
__global__ static void k_softmax_back(float *datt, const float *att, size_t rows, int T,
                                      float scale)
{
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < rows)
        gpt2_softmax_back_row(datt + i * T, att + i * T, (int)(i % T), T, scale);
}

__global__ static void k_xent(float *logits, float *losses, const int *targets, int N, int V,
                              float dscale)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n < N)
        losses[n] = gpt2_xent_row(logits + (size_t)n * V, targets[n], V, dscale);
}

/* ---- matrix products (model.c's linear_forward / linear_backward) ---------------------------- */

/* C (m x n, column-major, fp32, leading dimension ldc) = op(A) op(B) + beta C, fp32 operands:
 * SGEMM in the handle's math mode (exact fp32, or TF32 in GPT2_GEMM_TF32). */
static void gemm_f32(gpt2_acts *a, cublasOperation_t opA, cublasOperation_t opB, int m, int n,
                     int k, const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc)
{
    const float one = 1.0f;
    BL(a, cublasSgemm(st(a)->blas, opA, opB, m, n, k, &one, A, lda, B, ldb, &beta, C, ldc));
}

/* The same with bf16 operands: tensor cores, fp32 accumulation, fp32 C (GPT2_GEMM_BF16). */
static void gemm_bf16(gpt2_acts *a, cublasOperation_t opA, cublasOperation_t opB, int m, int n,
                      int k, const __nv_bfloat16 *A, int lda, const __nv_bfloat16 *B, int ldb,
                      float beta, float *C, int ldc)
{
    const float one = 1.0f;
    BL(a, cublasGemmEx(st(a)->blas, opA, opB, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF,
                       ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* out (N, OC) = inp (N, IC) w^T + b. inp_bf: inp's bf16 twin (GPT2_GEMM_BF16; else unused). */
static void linear_forward(gpt2_acts *a, float *out, const float *inp,
                           const __nv_bfloat16 *inp_bf, const float *w, const float *b, int N,
                           int IC, int OC)
{
    gpu_state *g = st(a);
    k_bias_rows<<<grid((size_t)N * OC, 256), 256, 0, g->stream>>>(out, b, N, OC);
    LAUNCHED(a);
    /* out^T (OC, N) += w (OC, IC) inp^T (IC, N); w in memory is w^T (IC, OC) column-major */
    if (g->gemm != GPT2_GEMM_BF16) {
        gemm_f32(a, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, w, IC, inp, IC, 1.0f, out, OC);
        return;
    }
    if (!inp_bf) {
        note(a, "bf16 GEMM", "no bf16 copy of the layer input", __LINE__);
        return;
    }
    if (to_bf16(a, g->w_bf, g->w_len, w, (size_t)OC * IC))
        return;
    gemm_bf16(a, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, IC, g->w_bf, IC, inp_bf, IC, 1.0f, out, OC);
}

/* dinp (N, IC) = dout w (if dinp); dw (OC, IC) += dout^T inp; db += column sums (if db).
 * GPT2_GEMM_BF16: dout is rounded once (d_bf) for both products, w once (w_bf), inp is the twin
 * inp_bf made in forward. */
static void linear_backward(gpt2_acts *a, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const __nv_bfloat16 *inp_bf, const float *w, int N,
                            int IC, int OC)
{
    gpu_state *g = st(a);
    if (g->gemm != GPT2_GEMM_BF16) {
        if (dinp) /* dinp^T (IC, N) = w^T (IC, OC) dout^T (OC, N) */
            gemm_f32(a, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, w, IC, dout, OC, 0.0f, dinp, IC);
        /* dw^T (IC, OC) += inp^T (IC, N) dout (N, OC) */
        gemm_f32(a, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, inp, IC, dout, OC, 1.0f, dw, IC);
    } else if (!inp_bf) {
        note(a, "bf16 GEMM", "no bf16 copy of the layer input", __LINE__);
    } else if (!to_bf16(a, g->d_bf, g->d_len, dout, (size_t)N * OC)) {
        if (dinp && !to_bf16(a, g->w_bf, g->w_len, w, (size_t)OC * IC))
            gemm_bf16(a, CUBLAS_OP_N, CUBLAS_OP_N, IC, N, OC, g->w_bf, IC, g->d_bf, OC, 0.0f,
                      dinp, IC);
        gemm_bf16(a, CUBLAS_OP_N, CUBLAS_OP_T, IC, OC, N, inp_bf, IC, g->d_bf, OC, 1.0f, dw, IC);
    }
    if (db) {
        k_bias_grad<<<grid((size_t)OC, COL_TILE), dim3(COL_TILE, COL_LANES), 0, g->stream>>>(
            db, dout, N, OC);
        LAUNCHED(a);
    }
}

/* ---- causal self-attention (rows.h): GEMMs over the heads of one sequence --------------------
 * For sequence b, head h: Q, K, V are (T, hs) row-major at qkv + b T 3C + h hs (+ C, + 2C),
 * leading dimension 3C; out / dout (T, hs) at + b T C + h hs, leading dimension C; the (T, T)
 * matrices at att / datt + (b NH + h) T T. Consecutive heads of one sequence are a constant
 * stride apart (hs in qkv and out, T T in att), so each product is one strided batched SGEMM of
 * NH matrices per sequence. In column-major terms a row-major X (r, c) is X^T (c, r):
 *   S^T  = K Q^T      (op T, op N; m = n = T, k = hs; alpha = scale)
 *   out^T = V^T P^T   (op N, op N; m = hs, n = k = T)
 *   dP^T = V dout^T   (op T, op N; m = n = T, k = hs)
 *   dQ^T = K^T dS^T   (op N, op N; m = hs, n = k = T)
 *   dK^T = Q^T dS     (op N, op T; m = hs, n = k = T)
 *   dV^T = dout^T P   (op N, op T; m = hs, n = k = T)
 * All with beta 0 (the outputs are overwritten; cuBLAS does not read C then). Math mode: the
 * handle's (exact fp32, or TF32 in GPT2_GEMM_TF32; exact fp32 in GPT2_GEMM_BF16). */

static void sgemm_heads(gpt2_acts *a, cublasOperation_t opA, cublasOperation_t opB, int m, int n,
                        int k, float alpha, const float *A, int lda, long long sA, const float *B,
                        int ldb, long long sB, float *C, int ldc, long long sC)
{
    const float zero = 0.0f;
    BL(a, cublasSgemmStridedBatched(st(a)->blas, opA, opB, m, n, k, &alpha, A, lda, sA, B, ldb,
                                    sB, &zero, C, ldc, sC, a->NH));
}

/* qkv (B, T, 3C) -> out (B, T, C); att (B, NH, T, T) = the softmax probabilities */
static void attention_forward(gpt2_acts *a, float *out, float *att, const float *qkv)
{
    const int T = a->T, C = a->C, hs = C / a->NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    for (int b = 0; b < a->B; b++) {
        const float *q = qkv + (size_t)b * T * 3 * C, *k = q + C;
        sgemm_heads(a, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, scale, k, 3 * C, hs, q, 3 * C, hs,
                    att + (size_t)b * a->NH * TT, T, TT);
    }
    const size_t rows = (size_t)a->B * a->NH * T;
    k_softmax_causal<<<grid(rows, 128), 128, 0, st(a)->stream>>>(att, rows, T);
    LAUNCHED(a);
    for (int b = 0; b < a->B; b++) {
        const float *v = qkv + (size_t)b * T * 3 * C + 2 * C;
        sgemm_heads(a, CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, v, 3 * C, hs,
                    att + (size_t)b * a->NH * TT, T, TT, out + (size_t)b * T * C, C, hs);
    }
}

/* dout (B, T, C) -> dqkv (B, T, 3C), overwritten; datt (B, NH, T, T) scratch (dP, then dS) */
static void attention_backward(gpt2_acts *a, float *dqkv, float *datt, const float *dout,
                               const float *qkv, const float *att)
{
    const int T = a->T, C = a->C, hs = C / a->NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const long long TT = (long long)T * T;
    for (int b = 0; b < a->B; b++) {
        const float *v = qkv + (size_t)b * T * 3 * C + 2 * C;
        sgemm_heads(a, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hs, 1.0f, v, 3 * C, hs,
                    dout + (size_t)b * T * C, C, hs, datt + (size_t)b * a->NH * TT, T, TT);
    }
    const size_t rows = (size_t)a->B * a->NH * T;
    k_softmax_back<<<grid(rows, 128), 128, 0, st(a)->stream>>>(datt, att, rows, T, scale);
    LAUNCHED(a);
    for (int b = 0; b < a->B; b++) {
        const float *q = qkv + (size_t)b * T * 3 * C, *k = q + C;
        const float *p = att + (size_t)b * a->NH * TT, *ds = datt + (size_t)b * a->NH * TT;
        const float *db = dout + (size_t)b * T * C;
        float *dq = dqkv + (size_t)b * T * 3 * C, *dk = dq + C, *dv = dq + 2 * C;
        sgemm_heads(a, CUBLAS_OP_N, CUBLAS_OP_N, hs, T, T, 1.0f, k, 3 * C, hs, ds, T, TT, dq,
                    3 * C, hs);
        sgemm_heads(a, CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, q, 3 * C, hs, ds, T, TT, dk,
                    3 * C, hs);
        sgemm_heads(a, CUBLAS_OP_N, CUBLAS_OP_T, hs, T, T, 1.0f, db, C, hs, p, T, TT, dv, 3 * C,
                    hs);
    }
}

/* ---- layers ------------------------------------------------------------------------------------ */

static void layernorm_forward(gpt2_acts *a, float *out, __nv_bfloat16 *out_bf, float *mean,
                              float *rstd, const float *x, const float *w, const float *b, int N,
                              int C)
{
    k_layernorm<<<grid((size_t)N, ROWS_PER_BLOCK), ROW_THREADS, 0, st(a)->stream>>>(
        out, out_bf, mean, rstd, x, w, b, N, C);
    LAUNCHED(a);
}

static void layernorm_backward(gpt2_acts *a, float *dx, float *dw, float *db, const float *dout,
                               const float *x, const float *w, const float *mean,
                               const float *rstd, int N, int C)
{
    cudaStream_t s = st(a)->stream;
    k_layernorm_dx<<<grid((size_t)N, ROWS_PER_BLOCK), ROW_THREADS, 0, s>>>(dx, dout, x, w, mean,
                                                                           rstd, N, C);
    LAUNCHED(a);
    k_layernorm_dwb<<<grid((size_t)C, COL_TILE), dim3(COL_TILE, COL_LANES), 0, s>>>(
        dw, db, dout, x, mean, rstd, N, C);
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

/* the layer-l slice of a bf16 twin; NULL outside GPT2_GEMM_BF16 */
static __nv_bfloat16 *bf_slice(__nv_bfloat16 *base, const gpt2_acts *a, int l, int width)
{
    return base ? base + (size_t)l * (size_t)a->B * (size_t)a->T * (size_t)width : NULL;
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
    const size_t N = (size_t)B * a->T, C = (size_t)a->C, L = (size_t)a->L;
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
        /* the widest weight is fc / fcproj (4C x C) or wte (V x C); the widest output gradient
         * d4c (N, 4C) or the logits' (N, V) */
        const size_t wide = 4 * C > (size_t)GPT2_VOCAB ? 4 * C : (size_t)GPT2_VOCAB;
        g->w_len = wide * C;
        g->d_len = N * wide;
        struct { __nv_bfloat16 **p; size_t n; } bf[] = {
            {&g->ln1_bf, L * N * C}, {&g->atty_bf, L * N * C}, {&g->ln2_bf, L * N * C},
            {&g->fchg_bf, L * N * 4 * C}, {&g->lnf_bf, N * C}, {&g->w_bf, g->w_len},
            {&g->d_bf, g->d_len},
        };
        for (size_t k = 0; k < sizeof bf / sizeof bf[0] && e == cudaSuccess; k++)
            e = cudaMalloc((void **)bf[k].p, bf[k].n * sizeof(__nv_bfloat16));
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
    __nv_bfloat16 *bf[] = {g->ln1_bf, g->atty_bf, g->ln2_bf, g->fchg_bf,
                           g->lnf_bf, g->w_bf,    g->d_bf};
    for (size_t k = 0; k < sizeof bf / sizeof bf[0]; k++)
        if (bf[k])
            cudaFree(bf[k]);
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

void gpt2_cuda_load_device(gpt2_acts *a, const int *tokens, const int *targets)
{
    /* on the compute stream, which libzero's loader ordered after its host-to-device copy of
     * the batch: no host wait */
    gpu_state *g = st(a);
    size_t n = (size_t)a->B * a->T * sizeof(int);
    CU(a, cudaMemcpyAsync(g->tokens_dev, tokens, n, cudaMemcpyDeviceToDevice, g->stream));
    CU(a, cudaMemcpyAsync(g->targets_dev, targets, n, cudaMemcpyDeviceToDevice, g->stream));
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
    gpu_state *g = st(a);
    const int N = a->B * a->T, C = a->C;
    const float *x = block_input(a, l);
    float *ln1 = layer_slice(a->ln1, a, l, C), *ln1m = layer_slice(a->ln1_mean, a, l, 1);
    float *ln1s = layer_slice(a->ln1_rstd, a, l, 1), *qkv = layer_slice(a->qkv, a, l, 3 * C);
    float *att = a->att + (size_t)l * head_rows(a) * a->T;
    float *atty = layer_slice(a->atty, a, l, C), *res2 = layer_slice(a->res2, a, l, C);
    float *ln2 = layer_slice(a->ln2, a, l, C), *ln2m = layer_slice(a->ln2_mean, a, l, 1);
    float *ln2s = layer_slice(a->ln2_rstd, a, l, 1), *fch = layer_slice(a->fch, a, l, 4 * C);
    float *fchg = layer_slice(a->fch_gelu, a, l, 4 * C), *res3 = layer_slice(a->res3, a, l, C);
    __nv_bfloat16 *ln1_bf = bf_slice(g->ln1_bf, a, l, C), *atty_bf = bf_slice(g->atty_bf, a, l, C);
    __nv_bfloat16 *ln2_bf = bf_slice(g->ln2_bf, a, l, C);
    __nv_bfloat16 *fchg_bf = bf_slice(g->fchg_bf, a, l, 4 * C);
    const size_t NC = (size_t)N * C;

    layernorm_forward(a, ln1, ln1_bf, ln1m, ln1s, x, p->ln1w, p->ln1b, N, C);
    linear_forward(a, qkv, ln1, ln1_bf, p->qkvw, p->qkvb, N, C, 3 * C);
    attention_forward(a, atty, att, qkv);
    if (atty_bf)
        to_bf16(a, atty_bf, NC, atty, NC);
    linear_forward(a, res2, atty, atty_bf, p->attprojw, p->attprojb, N, C, C);
    add(a, res2, x, NC);
    layernorm_forward(a, ln2, ln2_bf, ln2m, ln2s, res2, p->ln2w, p->ln2b, N, C);
    linear_forward(a, fch, ln2, ln2_bf, p->fcw, p->fcb, N, C, 4 * C);
    k_gelu<<<grid(4 * NC, 256), 256, 0, g->stream>>>(fchg, fchg_bf, fch, 4 * NC);
    LAUNCHED(a);
    linear_forward(a, res3, fchg, fchg_bf, p->fcprojw, p->fcprojb, N, 4 * C, C);
    add(a, res3, res2, NC);
}

void gpt2_cuda_lnf_forward(gpt2_acts *a, const gpt2_lnf *p)
{
    layernorm_forward(a, a->lnf, st(a)->lnf_bf, a->lnf_mean, a->lnf_rstd,
                      layer_slice(a->res3, a, a->L - 1, a->C), p->lnfw, p->lnfb, a->B * a->T,
                      a->C);
}

float gpt2_cuda_head_forward(gpt2_acts *a, const float *wte, float scale)
{
    gpu_state *g = st(a);
    const int N = a->B * a->T, V = GPT2_VOCAB;
    linear_forward(a, a->logits, a->lnf, g->lnf_bf, wte, NULL, N, a->C, V);
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
    linear_backward(a, a->dc, dwte, NULL, a->logits, a->lnf, st(a)->lnf_bf, wte, a->B * a->T,
                    a->C, GPT2_VOCAB);
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
    gpu_state *g = st(a);
    const int N = a->B * a->T, C = a->C;
    const float *x = block_input(a, l);
    float *ln1 = layer_slice(a->ln1, a, l, C), *ln1m = layer_slice(a->ln1_mean, a, l, 1);
    float *ln1s = layer_slice(a->ln1_rstd, a, l, 1), *qkv = layer_slice(a->qkv, a, l, 3 * C);
    float *att = a->att + (size_t)l * head_rows(a) * a->T;
    float *atty = layer_slice(a->atty, a, l, C), *res2 = layer_slice(a->res2, a, l, C);
    float *ln2 = layer_slice(a->ln2, a, l, C), *ln2m = layer_slice(a->ln2_mean, a, l, 1);
    float *ln2s = layer_slice(a->ln2_rstd, a, l, 1), *fch = layer_slice(a->fch, a, l, 4 * C);
    float *fchg = layer_slice(a->fch_gelu, a, l, 4 * C);
    const __nv_bfloat16 *ln1_bf = bf_slice(g->ln1_bf, a, l, C);
    const __nv_bfloat16 *atty_bf = bf_slice(g->atty_bf, a, l, C);
    const __nv_bfloat16 *ln2_bf = bf_slice(g->ln2_bf, a, l, C);
    const __nv_bfloat16 *fchg_bf = bf_slice(g->fchg_bf, a, l, 4 * C);

    /* MLP half; dres = d res3 is also d res2's residual share, so LN2's dx adds into it */
    linear_backward(a, a->d4c, d->fcprojw, d->fcprojb, a->dres, fchg, fchg_bf, p->fcprojw, N,
                    4 * C, C);
    k_gelu_back<<<grid((size_t)N * 4 * C, 256), 256, 0, g->stream>>>(a->d4c, fch,
                                                                     (size_t)N * 4 * C);
    LAUNCHED(a);
    linear_backward(a, a->dc, d->fcw, d->fcb, a->d4c, ln2, ln2_bf, p->fcw, N, C, 4 * C);
    layernorm_backward(a, a->dres, d->ln2w, d->ln2b, a->dc, res2, p->ln2w, ln2m, ln2s, N, C);
    /* attention half; dres = d res2, and becomes d x the same way */
    linear_backward(a, a->dc, d->attprojw, d->attprojb, a->dres, atty, atty_bf, p->attprojw, N,
                    C, C);
    attention_backward(a, a->d3c, a->datt, a->dc, qkv, att);
    linear_backward(a, a->dc, d->qkvw, d->qkvb, a->d3c, ln1, ln1_bf, p->qkvw, N, C, 3 * C);
    layernorm_backward(a, a->dres, d->ln1w, d->ln1b, a->dc, x, p->ln1w, ln1m, ln1s, N, C);
}

void gpt2_cuda_embed_backward(gpt2_acts *a, const gpt2_embed *d)
{
    k_encode_back<<<grid((size_t)a->C, 128), 128, 0, st(a)->stream>>>(
        d->wte, d->wpe, a->dres, st(a)->tokens_dev, a->B * a->T, a->T, a->C);
    LAUNCHED(a);
}
