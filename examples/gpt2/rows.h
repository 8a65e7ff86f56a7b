/* rows.h — GPT-2's per-row and per-column math, shared by the CPU model (model.c, one row per
 * loop iteration) and the GPU model (model_cuda.cu, one row per thread): LayerNorm forward and
 * backward, GELU, causal attention forward and its two-pass backward, softmax cross-entropy,
 * bias and embedding gradients. The same operations in the same order on both, so the CPU tests
 * (gradcheck, training against the stages) check the code the GPU runs; only the loops around
 * these differ. Results agree within rounding, not bitwise: nvcc contracts multiply-adds into
 * FMAs, the GPU kernels may split a row's sums over a warp, and the GEMMs differ. Row-major
 * layouts of model.h. */
#ifndef ZERO_EXAMPLE_GPT2_ROWS_H
#define ZERO_EXAMPLE_GPT2_ROWS_H

#include <math.h>
#include <stddef.h>

#ifdef __CUDACC__
#define GPT2_HD __host__ __device__ static inline
#else
#define GPT2_HD static inline
#endif

#define GPT2_LN_EPS 1e-5f
#define GPT2_GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GPT2_GELU_A 0.044715f

/* out (C) = (x - mean) * rstd * w + b; mean and rstd kept for backward. */
GPT2_HD void gpt2_ln_row(float *out, float *mean, float *rstd, const float *x, const float *w,
                         const float *b, int C)
{
    float m = 0.0f;
    for (int c = 0; c < C; c++)
        m += x[c];
    m /= (float)C;
    float v = 0.0f;
    for (int c = 0; c < C; c++)
        v += (x[c] - m) * (x[c] - m);
    v /= (float)C;
    float s = 1.0f / sqrtf(v + GPT2_LN_EPS);
    for (int c = 0; c < C; c++)
        out[c] = (x[c] - m) * s * w[c] + b[c];
    *mean = m;
    *rstd = s;
}

/* dx (C) += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w. */
GPT2_HD void gpt2_ln_dx_row(float *dx, const float *dout, const float *x, const float *w, float m,
                            float s, int C)
{
    float gmean = 0.0f, gxmean = 0.0f;
    for (int c = 0; c < C; c++) {
        float g = dout[c] * w[c];
        gmean += g;
        gxmean += g * (x[c] - m) * s;
    }
    gmean /= (float)C;
    gxmean /= (float)C;
    for (int c = 0; c < C; c++)
        dx[c] += s * (dout[c] * w[c] - gmean - (x[c] - m) * s * gxmean);
}

/* Channel c of the LayerNorm parameter gradients over N rows: dw[c] +=, db[c] += . */
GPT2_HD void gpt2_ln_dwb_col(float *dw, float *db, const float *dout, const float *x,
                             const float *mean, const float *rstd, int N, int C, int c)
{
    float sw = 0.0f, sb = 0.0f;
    for (int r = 0; r < N; r++) {
        float d = dout[(size_t)r * C + c];
        sw += d * (x[(size_t)r * C + c] - mean[r]) * rstd[r];
        sb += d;
    }
    dw[c] += sw;
    db[c] += sb;
}

/* Column o of a bias gradient over N rows of dout (N, OC): db[o] += . */
GPT2_HD void gpt2_bias_grad_col(float *db, const float *dout, int N, int OC, int o)
{
    float s = 0.0f;
    for (int r = 0; r < N; r++)
        s += dout[(size_t)r * OC + o];
    db[o] += s;
}

/* ---- exp and GELU in plain float arithmetic ------------------------------------------------
 * No libm call, so the compiler vectorises the loops that use them on the CPU (libm's expf and
 * tanhf are scalar calls and were a third of a step), and the GPU runs the same operations. */

/* 2^n for an integer n in [-126, 127], built from its exponent bits. */
GPT2_HD float gpt2_pow2i(int n)
{
#ifdef __CUDA_ARCH__
    return __int_as_float((n + 127) << 23);
#else
    union { int i; float f; } u;
    u.i = (n + 127) << 23;
    return u.f;
#endif
}

/* e^x, within 2 ulp of the correctly rounded value for x in [-87, 87]; x is clamped to that
 * range first (so e^x stays a normal number, and e^-huge is 1.6e-38 rather than 0). NaN stays
 * NaN. x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, so n ln2 is exact), e^r by its
 * Taylor series to degree 7 (truncation below 5e-9), then scaled by 2^n. */
GPT2_HD float gpt2_exp(float x)
{
    x = x > 87.0f ? 87.0f : x;
    x = x < -87.0f ? -87.0f : x;
    const float shift = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float t = x * 1.44269504088896341f + shift;
    const float n = t - shift;
    const float r = (x - n * 0.693145751953125f) - n * 1.42860676533018705e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p * gpt2_pow2i((int)n);
}

/* GELU, tanh approximation: 0.5 v (1 + tanh(u)), u = k (v + a v^3); written with
 * 1 + tanh(u) = 2 / (1 + e^(-2u)) as v / (1 + e^(-2u)). */
GPT2_HD float gpt2_gelu(float v)
{
    const float u = GPT2_GELU_K * (v + GPT2_GELU_A * v * v * v);
    return v / (1.0f + gpt2_exp(-2.0f * u));
}

/* d gelu(v) / d v = s + 2 v s (1 - s) du/dv, s = 1 / (1 + e^(-2u)) (= (1 + tanh u) / 2). */
GPT2_HD float gpt2_gelu_grad(float v)
{
    const float u = GPT2_GELU_K * (v + GPT2_GELU_A * v * v * v);
    const float s = 1.0f / (1.0f + gpt2_exp(-2.0f * u));
    const float du = GPT2_GELU_K * (1.0f + 3.0f * GPT2_GELU_A * v * v);
    return s + 2.0f * v * s * (1.0f - s) * du;
}

/* ---- causal self-attention ------------------------------------------------------------------
 * Per (sequence b, head h): Q, K, V are (T, hs) views of qkv (B, T, 3C) (per token the C
 * queries, C keys, C values, heads side by side, hs = C / NH; leading dimension 3C).
 * att (B, NH, T, T) keeps the softmax probabilities, zeros above the diagonal.
 *   forward:  S = scale Q K^T (a GEMM), P = causal softmax of each row of S (below),
 *             out = P V (a GEMM; out is (T, hs) of (B, T, C), heads side by side)
 *   backward: dP = dout V^T (GEMM); dS = scale P (dP - rowsum(P dP)) per row (below);
 *             dQ = dS K, dK = dS^T Q, dV = P^T dout (GEMMs)
 * scale = 1 / sqrt(hs). The GEMMs run over the full T x T square: above the diagonal P and dS
 * are zero, so those terms add nothing. */

/* Row t of S (T values; those past t are ignored) becomes row t of P, zeros past t. */
GPT2_HD void gpt2_softmax_causal_row(float *row, int t, int T)
{
    float mx = row[0];
    for (int t2 = 1; t2 <= t; t2++)
        mx = row[t2] > mx ? row[t2] : mx;
    for (int t2 = 0; t2 <= t; t2++) /* apart from the sum, so the CPU vectorises it */
        row[t2] = gpt2_exp(row[t2] - mx);
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++)
        sum += row[t2];
    const float inv = 1.0f / sum;
    for (int t2 = 0; t2 <= t; t2++)
        row[t2] *= inv;
    for (int t2 = t + 1; t2 < T; t2++)
        row[t2] = 0.0f; /* masked: the future */
}

/* Row t: dp (T values, row t of dP) becomes row t of dS = scale p (dp - sum p dp), zeros past t;
 * p is row t of P. */
GPT2_HD void gpt2_softmax_back_row(float *dp, const float *p, int t, int T, float scale)
{
    float pdp = 0.0f;
    for (int t2 = 0; t2 <= t; t2++)
        pdp += p[t2] * dp[t2];
    for (int t2 = 0; t2 <= t; t2++)
        dp[t2] = p[t2] * (dp[t2] - pdp) * scale;
    for (int t2 = t + 1; t2 < T; t2++)
        dp[t2] = 0.0f;
}

/* Softmax cross-entropy of one token's logits (V) against target y: returns the loss and
 * replaces the logits by d (dscale * loss) / d logits. */
GPT2_HD float gpt2_xent_row(float *lg, int y, int V, float dscale)
{
    float mx = lg[0];
    for (int v = 1; v < V; v++)
        mx = lg[v] > mx ? lg[v] : mx;
    for (int v = 0; v < V; v++)
        lg[v] = gpt2_exp(lg[v] - mx);
    float sum = 0.0f;
    for (int v = 0; v < V; v++)
        sum += lg[v];
    const float inv = 1.0f / sum;
    const float loss = -logf(lg[y] * inv);
    for (int v = 0; v < V; v++)
        lg[v] = lg[v] * inv * dscale;
    lg[y] -= dscale;
    return loss;
}

/* Channel c of the embedding gradients, tokens in order: dwte[token] +=, dwpe[position] += . */
GPT2_HD void gpt2_encode_back_col(float *dwte, float *dwpe, const float *dres, const int *tokens,
                                  int N, int T, int C, int c)
{
    for (int n = 0; n < N; n++) {
        const float g = dres[(size_t)n * C + c];
        dwte[(size_t)tokens[n] * C + c] += g;
        dwpe[(size_t)(n % T) * C + c] += g;
    }
}

#endif
