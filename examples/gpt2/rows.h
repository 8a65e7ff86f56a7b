/* rows.h — GPT-2's per-row and per-column math, shared by the CPU model (model.c, one row per
 * loop iteration) and the GPU model (model_cuda.cu, one row per thread): LayerNorm forward and
 * backward, GELU, causal attention forward and its two-pass backward, softmax cross-entropy,
 * bias and embedding gradients. The same operations in the same order on both, so the CPU tests
 * (gradcheck, training against the stages) check the code the GPU runs; only the loops around
 * these differ. Results agree within rounding, not bitwise: nvcc contracts multiply-adds into
 * FMAs and the device expf/tanhf round differently. Row-major layouts of model.h. */
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

/* GELU, tanh approximation: 0.5 x (1 + tanh(k (x + a x^3))). */
GPT2_HD float gpt2_gelu(float v)
{
    return 0.5f * v * (1.0f + tanhf(GPT2_GELU_K * (v + GPT2_GELU_A * v * v * v)));
}

/* d gelu(v) / d v */
GPT2_HD float gpt2_gelu_grad(float v)
{
    float th = tanhf(GPT2_GELU_K * (v + GPT2_GELU_A * v * v * v));
    float dth = (1.0f - th * th) * GPT2_GELU_K * (1.0f + 3.0f * GPT2_GELU_A * v * v);
    return 0.5f * (1.0f + th) + 0.5f * v * dth;
}

/* ---- causal self-attention, one (sequence b, head h, query t) row ----------------------------
 * qkv (B, T, 3C): per token the C queries, C keys, C values, heads side by side (hs = C / NH).
 * att (B, NH, T, T): softmax probabilities, zeros above the diagonal. */

/* out row (hs values of head h at token t, in (B, T, C)) and att row. */
GPT2_HD void gpt2_attn_row(float *out, float *att, const float *qkv, int b, int h, int t, int T,
                           int C, int NH)
{
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t C3 = 3 * (size_t)C;
    const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
    float *row = att + (((size_t)b * NH + h) * T + t) * T;
    float mx = -INFINITY;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
        float s = 0.0f;
        for (int i = 0; i < hs; i++)
            s += q[i] * k[i];
        s *= scale;
        row[t2] = s;
        if (s > mx)
            mx = s;
    }
    float sum = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        row[t2] = expf(row[t2] - mx);
        sum += row[t2];
    }
    const float inv = 1.0f / sum;
    for (int t2 = 0; t2 <= t; t2++)
        row[t2] *= inv;
    for (int t2 = t + 1; t2 < T; t2++)
        row[t2] = 0.0f; /* masked: the future */
    float *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
    for (int i = 0; i < hs; i++)
        o[i] = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
        for (int i = 0; i < hs; i++)
            o[i] += row[t2] * v[i];
    }
}

/* Backward, pass 1, query row t: dp[t2] = d[t] . v[t2]; through the softmax
 * ds[t2] = p[t2] (dp[t2] - sum p dp) * scale, kept in datt (B, NH, T, T) for pass 2 (only
 * t2 <= t is written); dq[t] = sum over t2 of ds[t2] k[t2] (overwritten). */
GPT2_HD void gpt2_attn_back_q_row(float *dqkv, float *datt, const float *dout, const float *qkv,
                                  const float *att, int b, int h, int t, int T, int C, int NH)
{
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    const size_t C3 = 3 * (size_t)C;
    const float *row = att + (((size_t)b * NH + h) * T + t) * T;
    float *ds = datt + (((size_t)b * NH + h) * T + t) * T;
    const float *d = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
    float pdp = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * (size_t)C + (size_t)h * hs;
        float s = 0.0f;
        for (int i = 0; i < hs; i++)
            s += d[i] * v[i];
        ds[t2] = s; /* dp, for now */
        pdp += row[t2] * s;
    }
    for (int t2 = 0; t2 <= t; t2++)
        ds[t2] = row[t2] * (ds[t2] - pdp) * scale;
    float *dq = dqkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
    for (int i = 0; i < hs; i++)
        dq[i] = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) {
        const float *k = qkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
        for (int i = 0; i < hs; i++)
            dq[i] += ds[t2] * k[i];
    }
}

/* Backward, pass 2, key row t2 (after pass 1 for every query of the head):
 * dk[t2] = sum over t >= t2 of ds[t][t2] q[t], dv[t2] = sum over t >= t2 of p[t][t2] d[t]
 * (overwritten). */
GPT2_HD void gpt2_attn_back_kv_row(float *dqkv, const float *datt, const float *dout,
                                   const float *qkv, const float *att, int b, int h, int t2,
                                   int T, int C, int NH)
{
    const int hs = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const size_t head = ((size_t)b * NH + h) * T;
    float *dk = dqkv + ((size_t)b * T + t2) * C3 + C + (size_t)h * hs;
    float *dv = dk + C;
    for (int i = 0; i < hs; i++) {
        dk[i] = 0.0f;
        dv[i] = 0.0f;
    }
    for (int t = t2; t < T; t++) {
        const float ds = datt[(head + t) * T + t2], p = att[(head + t) * T + t2];
        const float *q = qkv + ((size_t)b * T + t) * C3 + (size_t)h * hs;
        const float *d = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
        for (int i = 0; i < hs; i++) {
            dk[i] += ds * q[i];
            dv[i] += p * d[i];
        }
    }
}

/* Softmax cross-entropy of one token's logits (V) against target y: returns the loss and
 * replaces the logits by d (dscale * loss) / d logits. */
GPT2_HD float gpt2_xent_row(float *lg, int y, int V, float dscale)
{
    float mx = lg[0];
    for (int v = 1; v < V; v++)
        if (lg[v] > mx)
            mx = lg[v];
    float sum = 0.0f;
    for (int v = 0; v < V; v++) {
        lg[v] = expf(lg[v] - mx);
        sum += lg[v];
    }
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
