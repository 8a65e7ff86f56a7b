/* model.c — the standalone GPT-2 style model: parameter layout and init, byte data, and forward
 * and backward in plain C (OpenMP for the element-wise and attention loops, cblas_sgemm for the
 * matrix products). Independent of libzero (see gpt2.c for the wrapping). */
#include "model.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "rows.h"

/* Below this many multiply-adds (or element operations) a loop runs on one thread: forking a
 * team costs more than the work, and ranks started by mpirun often share cores. */
#define GPT2_OMP_MIN_WORK ((size_t)1 << 15)

/* The element-wise spans below are compiled for AVX-512, AVX2+FMA and baseline x86-64 and the
 * best one the CPU has is picked at load time, so one binary vectorises rows.h's math (gpt2_exp
 * is plain arithmetic for this reason) on whichever machine it runs. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define GPT2_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define GPT2_SIMD_CLONES
#endif

/* Iterations [lo, hi) of part `part` out of `parts` over n. */
static size_t part_lo(size_t n, int part, int parts) { return n * (size_t)part / (size_t)parts; }

/* Threads for n element operations: one below GPT2_OMP_MIN_WORK. */
static int elem_threads(size_t n) {
    if (n <= GPT2_OMP_MIN_WORK) return 1;
    int nt = omp_get_max_threads();
    return nt < 1 ? 1 : nt;
}

/* Key domains, so initialisation and data never draw from the same stream. */
enum { GPT2_RNG_INIT = 11, GPT2_RNG_DATA = 12 };

/* ---- counter-based RNG ------------------------------------------------------------------- */

/* A 64-bit finaliser (xor-shift / odd-multiply rounds): a bijection whose output bits each
 * depend on every input bit, so consecutive counters give unrelated words. */
static uint64_t scramble64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    x *= 0xC4CEB9FE1A85EC53ull;
    x ^= x >> 33;
    return x;
}

uint64_t gpt2_rng_key(uint64_t key, uint64_t counter) {
    return scramble64(key + 0x9E3779B97F4A7C15ull * (counter + 1) + scramble64(counter ^ key));
}

float gpt2_rng_uniform(uint64_t key) {
    /* the top 24 bits give a value in [0, 1) that fp32 holds exactly; then [-1, 1) */
    float u = (float)(key >> 40) * (1.0f / 16777216.0f);
    return 2.0f * u - 1.0f;
}

/* Standard normal from one key, by Box-Muller on two derived uniforms in (0, 1]. */
static float rng_normal(uint64_t key) {
    double u1 = ((double)(gpt2_rng_key(key, 0) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
    double u2 = (double)(gpt2_rng_key(key, 1) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ---- parameter layout --------------------------------------------------------------------- */

enum { INIT_WEIGHT, INIT_RESIDUAL_WEIGHT, INIT_ZERO, INIT_ONE };

/* The tensors of one block, in layout order. A matrix is (rows * C, cols * C); a vector has
 * rows * C elements (cols = 0). */
static const struct block_slot {
    const char *name;
    int rows, cols;
    int init;
} block_slots[GPT2_BLOCK_TENSORS] = {
    {"ln1.weight", 1, 0, INIT_ONE},
    {"ln1.bias", 1, 0, INIT_ZERO},
    {"attn.qkv.weight", 3, 1, INIT_WEIGHT},
    {"attn.qkv.bias", 3, 0, INIT_ZERO},
    {"attn.proj.weight", 1, 1, INIT_RESIDUAL_WEIGHT},
    {"attn.proj.bias", 1, 0, INIT_ZERO},
    {"ln2.weight", 1, 0, INIT_ONE},
    {"ln2.bias", 1, 0, INIT_ZERO},
    {"mlp.fc.weight", 4, 1, INIT_WEIGHT},
    {"mlp.fc.bias", 4, 0, INIT_ZERO},
    {"mlp.proj.weight", 1, 4, INIT_RESIDUAL_WEIGHT},
    {"mlp.proj.bias", 1, 0, INIT_ZERO},
};

/* Elements of block tensor s at C channels. */
static size_t slot_numel(int s, size_t C) {
    const struct block_slot *bs = &block_slots[s];
    return (size_t)bs->rows * C * (bs->cols ? (size_t)bs->cols * C : 1);
}

static size_t block_numel(const gpt2_config *cfg) {
    size_t n = 0;
    for (int s = 0; s < GPT2_BLOCK_TENSORS; s++) n += slot_numel(s, (size_t)cfg->dim);
    return n;
}

static size_t embed_numel(const gpt2_config *cfg) {
    return ((size_t)GPT2_VOCAB + (size_t)cfg->seq) * (size_t)cfg->dim;
}

int gpt2_num_tensors(const gpt2_config *cfg) {
    return GPT2_EMBED_TENSORS + cfg->layers * GPT2_BLOCK_TENSORS + GPT2_LNF_TENSORS;
}

int gpt2_num_modules(const gpt2_config *cfg) { return cfg->layers + 2; }

size_t gpt2_num_params(const gpt2_config *cfg) {
    return embed_numel(cfg) + (size_t)cfg->layers * block_numel(cfg) + 2 * (size_t)cfg->dim;
}

size_t gpt2_max_module_numel(const gpt2_config *cfg) {
    size_t e = embed_numel(cfg), b = block_numel(cfg);
    return e > b ? e : b; /* the final LayerNorm (2C) is smaller than either */
}

/* Init kind of tensor i (layout order). */
static int tensor_init_kind(const gpt2_config *cfg, int i) {
    if (i < GPT2_EMBED_TENSORS) return INIT_WEIGHT;
    i -= GPT2_EMBED_TENSORS;
    if (i < cfg->layers * GPT2_BLOCK_TENSORS) return block_slots[i % GPT2_BLOCK_TENSORS].init;
    return i - cfg->layers * GPT2_BLOCK_TENSORS == 0 ? INIT_ONE : INIT_ZERO;
}

void gpt2_tensor_info(const gpt2_config *cfg, int i, gpt2_tensor_desc *d) {
    const size_t C = (size_t)cfg->dim;
    memset(d, 0, sizeof(*d));
    if (i < GPT2_EMBED_TENSORS) { /* module 0: wte (V, C), wpe (T, C) */
        d->module = 0;
        d->slot = i;
        d->ndim = 2;
        d->shape[0] = i == 0 ? GPT2_VOCAB : cfg->seq;
        d->shape[1] = (int64_t)C;
        d->numel = (size_t)d->shape[0] * C;
        d->offset = i == 0 ? 0 : (size_t)GPT2_VOCAB * C;
        snprintf(d->name, sizeof(d->name), "%s", i == 0 ? "wte" : "wpe");
        return;
    }
    int j = i - GPT2_EMBED_TENSORS;
    if (j < cfg->layers * GPT2_BLOCK_TENSORS) { /* module l + 1: block l */
        int l = j / GPT2_BLOCK_TENSORS, s = j % GPT2_BLOCK_TENSORS;
        const struct block_slot *bs = &block_slots[s];
        d->module = l + 1;
        d->slot = s;
        d->offset = embed_numel(cfg) + (size_t)l * block_numel(cfg);
        for (int k = 0; k < s; k++) d->offset += slot_numel(k, C);
        d->numel = slot_numel(s, C);
        d->ndim = bs->cols ? 2 : 1;
        d->shape[0] = (int64_t)(bs->rows * C);
        d->shape[1] = (int64_t)(bs->cols * C); /* 0 for a vector, and unused */
        d->no_decay = !bs->cols; /* biases and LayerNorm parameters */
        snprintf(d->name, sizeof(d->name), "h.%d.%s", l, bs->name);
        return;
    }
    int s = j - cfg->layers * GPT2_BLOCK_TENSORS; /* module L + 1: final LayerNorm */
    d->module = cfg->layers + 1;
    d->slot = s;
    d->offset = embed_numel(cfg) + (size_t)cfg->layers * block_numel(cfg) + (size_t)s * C;
    d->ndim = 1;
    d->shape[0] = (int64_t)C;
    d->numel = C;
    d->no_decay = 1;
    snprintf(d->name, sizeof(d->name), "%s", s == 0 ? "lnf.weight" : "lnf.bias");
}

int gpt2_params_alloc(gpt2_params *p, const gpt2_config *cfg) {
    memset(p, 0, sizeof(*p));
    if (cfg->layers < 1 || cfg->dim < 1 || cfg->seq < 1 || cfg->heads < 1) return -1;
    p->layers = cfg->layers;
    p->numel = gpt2_num_params(cfg);
    p->h = calloc((size_t)cfg->layers, sizeof(*p->h));
    p->memory = calloc(p->numel, sizeof(float));
    if (!p->h || !p->memory) {
        gpt2_params_free(p);
        return -1;
    }
    /* point every tensor at its place in the flat array (the offsets of gpt2_tensor_info) */
    for (int i = 0; i < gpt2_num_tensors(cfg); i++) {
        gpt2_tensor_desc d;
        gpt2_tensor_info(cfg, i, &d);
        float *at = p->memory + d.offset;
        if (d.module == 0) p->emb.t[d.slot] = at;
        else if (d.module <= cfg->layers) p->h[d.module - 1].t[d.slot] = at;
        else p->lnf.t[d.slot] = at;
    }
    return 0;
}

void gpt2_params_init(gpt2_params *p, const gpt2_config *cfg, uint64_t seed) {
    const uint64_t key = gpt2_rng_key(seed, GPT2_RNG_INIT);
    const float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)cfg->layers);
    for (int i = 0; i < gpt2_num_tensors(cfg); i++) {
        gpt2_tensor_desc d;
        gpt2_tensor_info(cfg, i, &d);
        float *w = p->memory + d.offset;
        int kind = tensor_init_kind(cfg, i);
        for (size_t k = 0; k < d.numel; k++) {
            /* keyed by the flat index, so the values do not depend on the loop split */
            uint64_t ek = gpt2_rng_key(key, (uint64_t)(d.offset + k));
            switch (kind) {
            case INIT_WEIGHT: w[k] = std * rng_normal(ek); break;
            case INIT_RESIDUAL_WEIGHT: w[k] = std_res * rng_normal(ek); break;
            case INIT_ONE: w[k] = 1.0f; break;
            default: w[k] = 0.0f; break;
            }
        }
    }
}

void gpt2_params_free(gpt2_params *p) {
    free(p->h);
    free(p->memory);
    memset(p, 0, sizeof(*p));
}

/* ---- activations -------------------------------------------------------------------------- */

int gpt2_acts_buffers(gpt2_acts *a, const gpt2_config *cfg, int B,
                      float **ptrs[GPT2_ACTS_BUFFERS], size_t counts[GPT2_ACTS_BUFFERS]) {
    if (cfg) {
        a->B = B;
        a->T = cfg->seq;
        a->C = cfg->dim;
        a->NH = cfg->heads;
        a->L = cfg->layers;
    }
    const size_t N = (size_t)a->B * (size_t)a->T, C = (size_t)a->C, L = (size_t)a->L;
    const size_t att = (size_t)a->B * (size_t)a->NH * (size_t)a->T * (size_t)a->T;
    struct { float **p; size_t n; } bufs[GPT2_ACTS_BUFFERS] = {
        {&a->encoded, N * C},       {&a->ln1, L * N * C},       {&a->ln1_mean, L * N},
        {&a->ln1_rstd, L * N},      {&a->qkv, L * N * 3 * C},   {&a->att, L * att},
        {&a->atty, L * N * C},      {&a->res2, L * N * C},      {&a->ln2, L * N * C},
        {&a->ln2_mean, L * N},      {&a->ln2_rstd, L * N},      {&a->fch, L * N * 4 * C},
        {&a->fch_gelu, L * N * 4 * C}, {&a->res3, L * N * C},   {&a->lnf, N * C},
        {&a->lnf_mean, N},          {&a->lnf_rstd, N},          {&a->logits, N * GPT2_VOCAB},
        {&a->losses, N},            {&a->dres, N * C},          {&a->dc, N * C},
        {&a->d3c, N * 3 * C},       {&a->d4c, N * 4 * C},       {&a->datt, att},
    };
    for (int k = 0; k < GPT2_ACTS_BUFFERS; k++) {
        ptrs[k] = bufs[k].p;
        counts[k] = bufs[k].n;
    }
    return GPT2_ACTS_BUFFERS;
}

int gpt2_acts_alloc(gpt2_acts *a, const gpt2_config *cfg, int B) {
    memset(a, 0, sizeof(*a));
    float **ptrs[GPT2_ACTS_BUFFERS];
    size_t counts[GPT2_ACTS_BUFFERS];
    gpt2_acts_buffers(a, cfg, B, ptrs, counts);
    const size_t N = (size_t)B * (size_t)a->T;
    a->tokens = malloc(N * sizeof(int));
    a->targets = malloc(N * sizeof(int));
    int ok = a->tokens && a->targets;
    for (int k = 0; k < GPT2_ACTS_BUFFERS; k++)
        ok &= (*ptrs[k] = malloc(counts[k] * sizeof(float))) != NULL;
    if (!ok) {
        gpt2_acts_free(a);
        return -1;
    }
    return 0;
}

void gpt2_acts_free(gpt2_acts *a) {
    float **ptrs[GPT2_ACTS_BUFFERS];
    size_t counts[GPT2_ACTS_BUFFERS];
    gpt2_acts_buffers(a, NULL, 0, ptrs, counts);
    for (int k = 0; k < GPT2_ACTS_BUFFERS; k++) free(*ptrs[k]);
    free(a->tokens);
    free(a->targets);
    memset(a, 0, sizeof(*a));
}

/* ---- data --------------------------------------------------------------------------------- */

unsigned char *gpt2_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : (size_t)1 << 16;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    *len = n;
    return buf;
}

void gpt2_batch(const unsigned char *text, size_t len, int T, uint64_t seed, int64_t step,
                int micro, int64_t row0, int rows, int *tokens, int *targets) {
    const uint64_t key = gpt2_rng_key(
        gpt2_rng_key(gpt2_rng_key(seed, GPT2_RNG_DATA), (uint64_t)step), (uint64_t)micro);
    const uint64_t starts = (uint64_t)(len - (size_t)T); /* windows of T + 1 bytes */
    for (int r = 0; r < rows; r++) {
        /* keyed by the GLOBAL row: the same window whichever rank draws it */
        size_t start = (size_t)(gpt2_rng_key(key, (uint64_t)(row0 + r)) % starts);
        for (int t = 0; t < T; t++) {
            tokens[(size_t)r * T + t] = text[start + (size_t)t];
            targets[(size_t)r * T + t] = text[start + (size_t)t + 1];
        }
    }
}

/* ---- matrix products ---------------------------------------------------------------------- */

/* Threads for a product of m * n * k multiply-adds split along m. */
static int split_threads(size_t m, size_t n, size_t k) {
    if (m * n * k <= GPT2_OMP_MIN_WORK) return 1;
    int nt = omp_get_max_threads();
    return (size_t)nt > m ? (int)m : nt;
}

/* out (N, OC) = inp (N, IC) w^T + b (b may be NULL). Rows of out are split over threads, each
 * a single-threaded sgemm. */
static void linear_forward(float *out, const float *inp, const float *w, const float *b, int N,
                           int IC, int OC) {
    const int nt = split_threads((size_t)N, (size_t)IC, (size_t)OC);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++) {
        int r0 = (int)((int64_t)N * part / nt), r1 = (int)((int64_t)N * (part + 1) / nt);
        if (r1 <= r0) continue;
        float *o = out + (size_t)r0 * OC;
        for (int r = 0; r < r1 - r0; r++)
            for (int c = 0; c < OC; c++) o[(size_t)r * OC + c] = b ? b[c] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, OC, IC, 1.0f,
                    inp + (size_t)r0 * IC, IC, w, IC, 1.0f, o, OC);
    }
}

/* Columns [o0, o1) of a bias gradient over N rows of dout (N, OC): db[o] += the column sum, the
 * same sums in the same order as rows.h's gpt2_bias_grad_col (row 0 first), walked row by row
 * so the reads are contiguous and the adds vectorise; at most GPT2_COLS columns at a time. */
#define GPT2_COLS 256
GPT2_SIMD_CLONES static void bias_grad_cols(float *db, const float *dout, int N, int OC, int o0,
                                            int o1) {
    float acc[GPT2_COLS];
    for (int c0 = o0; c0 < o1; c0 += GPT2_COLS) {
        const int w = o1 - c0 < GPT2_COLS ? o1 - c0 : GPT2_COLS;
        for (int j = 0; j < w; j++) acc[j] = 0.0f;
        for (int r = 0; r < N; r++) {
            const float *d = dout + (size_t)r * OC + c0;
            for (int j = 0; j < w; j++) acc[j] += d[j];
        }
        for (int j = 0; j < w; j++) db[c0 + j] += acc[j];
    }
}

/* Backward of linear_forward, given dout (N, OC):
 *   dinp (N, IC)  = dout w        (overwritten; skipped when dinp is NULL)
 *   dw  (OC, IC) += dout^T inp
 *   db  (OC)     += column sums of dout (skipped when db is NULL) */
static void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                            const float *w, int N, int IC, int OC) {
    if (dinp) {
        const int nt = split_threads((size_t)N, (size_t)IC, (size_t)OC);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int part = 0; part < nt; part++) {
            int r0 = (int)((int64_t)N * part / nt), r1 = (int)((int64_t)N * (part + 1) / nt);
            if (r1 > r0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, IC, OC, 1.0f,
                            dout + (size_t)r0 * OC, OC, w, IC, 0.0f, dinp + (size_t)r0 * IC, IC);
        }
    }
    /* dw: rows (output features) split over threads; dout^T's rows are dout's columns */
    const int nt = split_threads((size_t)OC, (size_t)IC, (size_t)N);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++) {
        int o0 = (int)((int64_t)OC * part / nt), o1 = (int)((int64_t)OC * (part + 1) / nt);
        if (o1 <= o0) continue;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, IC, N, 1.0f, dout + o0, OC,
                    inp, IC, 1.0f, dw + (size_t)o0 * IC, IC);
        if (db) bias_grad_cols(db, dout, N, OC, o0, o1);
    }
}

/* ---- element-wise layers ------------------------------------------------------------------ */

GPT2_SIMD_CLONES static void layernorm_rows(float *out, float *mean, float *rstd, const float *x,
                                            const float *w, const float *b, int r0, int r1,
                                            int C) {
    for (int r = r0; r < r1; r++)
        gpt2_ln_row(out + (size_t)r * C, &mean[r], &rstd[r], x + (size_t)r * C, w, b, C);
}

/* out (N, C) = (x - mean) * rstd * w + b per row; mean and rstd (N) kept for backward. */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int N, int C) {
    const int nt = elem_threads((size_t)N * (size_t)C);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++)
        layernorm_rows(out, mean, rstd, x, w, b, (int)part_lo((size_t)N, part, nt),
                       (int)part_lo((size_t)N, part + 1, nt), C);
}

GPT2_SIMD_CLONES static void layernorm_dx_rows(float *dx, const float *dout, const float *x,
                                               const float *w, const float *mean,
                                               const float *rstd, int r0, int r1, int C) {
    for (int r = r0; r < r1; r++)
        gpt2_ln_dx_row(dx + (size_t)r * C, dout + (size_t)r * C, x + (size_t)r * C, w, mean[r],
                       rstd[r], C);
}

/* Channels [c0, c1) of the LayerNorm parameter gradients: the sums of rows.h's gpt2_ln_dwb_col,
 * in its order (row 0 first), walked row by row like bias_grad_cols. */
GPT2_SIMD_CLONES static void layernorm_dwb_cols(float *dw, float *db, const float *dout,
                                                const float *x, const float *mean,
                                                const float *rstd, int N, int C, int c0, int c1) {
    float sw[GPT2_COLS], sb[GPT2_COLS];
    for (int k0 = c0; k0 < c1; k0 += GPT2_COLS) {
        const int w = c1 - k0 < GPT2_COLS ? c1 - k0 : GPT2_COLS;
        for (int j = 0; j < w; j++) sw[j] = sb[j] = 0.0f;
        for (int r = 0; r < N; r++) {
            const float *d = dout + (size_t)r * C + k0, *xr = x + (size_t)r * C + k0;
            const float m = mean[r], rs = rstd[r];
            for (int j = 0; j < w; j++) {
                sw[j] += d[j] * (xr[j] - m) * rs;
                sb[j] += d[j];
            }
        }
        for (int j = 0; j < w; j++) {
            dw[k0 + j] += sw[j];
            db[k0 + j] += sb[j];
        }
    }
}

/* Backward of layernorm_forward given dout (N, C): dx += (so a residual gradient can flow
 * through), dw += and db += . */
static void layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C) {
    const int nt = elem_threads((size_t)N * (size_t)C);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++) {
        layernorm_dx_rows(dx, dout, x, w, mean, rstd, (int)part_lo((size_t)N, part, nt),
                          (int)part_lo((size_t)N, part + 1, nt), C);
        /* dw, db: sums over rows, split by channel (no shared writes) */
        layernorm_dwb_cols(dw, db, dout, x, mean, rstd, N, C, (int)part_lo((size_t)C, part, nt),
                           (int)part_lo((size_t)C, part + 1, nt));
    }
}

GPT2_SIMD_CLONES static void gelu_span(float *out, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = gpt2_gelu(x[i]);
}

static void gelu_forward(float *out, const float *x, size_t n) {
    const int nt = elem_threads(n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++) {
        size_t lo = part_lo(n, part, nt);
        gelu_span(out + lo, x + lo, part_lo(n, part + 1, nt) - lo);
    }
}

GPT2_SIMD_CLONES static void gelu_back_span(float *d, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] *= gpt2_gelu_grad(x[i]);
}

/* d (in place): d loss / d gelu output -> d loss / d gelu input, at inputs x. */
static void gelu_backward(float *d, const float *x, size_t n) {
    const int nt = elem_threads(n);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++) {
        size_t lo = part_lo(n, part, nt);
        gelu_back_span(d + lo, x + lo, part_lo(n, part + 1, nt) - lo);
    }
}

/* ---- causal self-attention (rows.h: GEMMs around two row functions) ------------------------ */

GPT2_SIMD_CLONES static void softmax_causal_rows(float *p, int T) {
    for (int t = 0; t < T; t++) gpt2_softmax_causal_row(p + (size_t)t * T, t, T);
}

GPT2_SIMD_CLONES static void softmax_back_rows(float *ds, const float *p, int T, float scale) {
    for (int t = 0; t < T; t++)
        gpt2_softmax_back_row(ds + (size_t)t * T, p + (size_t)t * T, t, T, scale);
}

/* qkv (B, T, 3C) -> out (B, T, C); att (B, NH, T, T) keeps the softmax probabilities. Each
 * (sequence, head) pair is independent: one per iteration, single-threaded GEMMs inside. */
static void attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                              int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) if ((size_t)B * T * T * C > GPT2_OMP_MIN_WORK)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs, *k = q + C, *v = q + 2 * C;
            float *p = att + ((size_t)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3,
                        0.0f, p, T);
            softmax_causal_rows(p, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v, C3,
                        0.0f, out + (size_t)b * T * C + (size_t)h * hs, C);
        }
}

/* Backward of attention_forward: dout (B, T, C) -> dqkv (B, T, 3C), overwritten; datt
 * (B, NH, T, T) holds dP, then dS. */
static void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) if ((size_t)B * T * T * C > GPT2_OMP_MIN_WORK)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t at = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + at, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + at, *dk = dq + C, *dv = dq + 2 * C;
            const float *d = dout + (size_t)b * T * C + (size_t)h * hs;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            float *ds = datt + ((size_t)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, d, C, v, C3,
                        0.0f, ds, T);
            softmax_back_rows(ds, p, T, scale);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, k, C3,
                        0.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, T, q, C3,
                        0.0f, dk, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, d, C,
                        0.0f, dv, C3);
        }
}

/* ---- modules ------------------------------------------------------------------------------ */

void gpt2_embed_forward(gpt2_acts *a, const gpt2_embed *e) {
    const int N = a->B * a->T, C = a->C, T = a->T;
#pragma omp parallel for if ((size_t)N * (size_t)C > GPT2_OMP_MIN_WORK)
    for (int n = 0; n < N; n++) {
        const float *te = e->wte + (size_t)a->tokens[n] * C, *pe = e->wpe + (size_t)(n % T) * C;
        float *o = a->encoded + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}

/* The layer-l slice of an (L, B, T, width) activation. */
static float *layer_slice(float *base, const gpt2_acts *a, int l, int width) {
    return base + (size_t)l * (size_t)a->B * (size_t)a->T * (size_t)width;
}

static const float *block_input(const gpt2_acts *a, int l) {
    return l == 0 ? a->encoded : layer_slice(a->res3, a, l - 1, a->C);
}

void gpt2_block_forward(gpt2_acts *a, int l, const gpt2_block *p) {
    const int N = a->B * a->T, C = a->C;
    const float *x = block_input(a, l);
    float *ln1 = layer_slice(a->ln1, a, l, C), *ln1m = layer_slice(a->ln1_mean, a, l, 1);
    float *ln1s = layer_slice(a->ln1_rstd, a, l, 1), *qkv = layer_slice(a->qkv, a, l, 3 * C);
    float *att = a->att + (size_t)l * (size_t)a->B * a->NH * a->T * a->T;
    float *atty = layer_slice(a->atty, a, l, C), *res2 = layer_slice(a->res2, a, l, C);
    float *ln2 = layer_slice(a->ln2, a, l, C), *ln2m = layer_slice(a->ln2_mean, a, l, 1);
    float *ln2s = layer_slice(a->ln2_rstd, a, l, 1), *fch = layer_slice(a->fch, a, l, 4 * C);
    float *fchg = layer_slice(a->fch_gelu, a, l, 4 * C), *res3 = layer_slice(a->res3, a, l, C);
    const size_t NC = (size_t)N * C;

    /* attention half: res2 = x + attproj(attention(qkv(LN1(x)))) */
    layernorm_forward(ln1, ln1m, ln1s, x, p->ln1w, p->ln1b, N, C);
    linear_forward(qkv, ln1, p->qkvw, p->qkvb, N, C, 3 * C);
    attention_forward(atty, att, qkv, a->B, a->T, C, a->NH);
    linear_forward(res2, atty, p->attprojw, p->attprojb, N, C, C);
    for (size_t i = 0; i < NC; i++) res2[i] += x[i];
    /* MLP half: res3 = res2 + fcproj(gelu(fc(LN2(res2)))) */
    layernorm_forward(ln2, ln2m, ln2s, res2, p->ln2w, p->ln2b, N, C);
    linear_forward(fch, ln2, p->fcw, p->fcb, N, C, 4 * C);
    gelu_forward(fchg, fch, 4 * NC);
    linear_forward(res3, fchg, p->fcprojw, p->fcprojb, N, 4 * C, C);
    for (size_t i = 0; i < NC; i++) res3[i] += res2[i];
}

void gpt2_lnf_forward(gpt2_acts *a, const gpt2_lnf *p) {
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, layer_slice(a->res3, a, a->L - 1, a->C),
                      p->lnfw, p->lnfb, a->B * a->T, a->C);
}

GPT2_SIMD_CLONES static void xent_rows(gpt2_acts *a, float dscale, int n0, int n1) {
    for (int n = n0; n < n1; n++)
        a->losses[n] = gpt2_xent_row(a->logits + (size_t)n * GPT2_VOCAB, a->targets[n], GPT2_VOCAB,
                                     dscale);
}

float gpt2_head_forward(gpt2_acts *a, const float *wte, float scale) {
    const int N = a->B * a->T, V = GPT2_VOCAB;
    linear_forward(a->logits, a->lnf, wte, NULL, N, a->C, V);
    /* softmax cross-entropy per token; the mean over N tokens, so d/d logit carries 1 / N */
    const float dscale = scale / (float)N;
    const int nt = elem_threads((size_t)N * (size_t)V);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int part = 0; part < nt; part++)
        xent_rows(a, dscale, (int)part_lo((size_t)N, part, nt), (int)part_lo((size_t)N, part + 1, nt));
    double total = 0.0;
    for (int n = 0; n < N; n++) total += a->losses[n];
    return (float)(total / N);
}

void gpt2_head_backward(gpt2_acts *a, const float *wte, float *dwte) {
    linear_backward(a->dc, dwte, NULL, a->logits, a->lnf, wte, a->B * a->T, a->C, GPT2_VOCAB);
}

void gpt2_lnf_backward(gpt2_acts *a, const gpt2_lnf *p, const gpt2_lnf *d) {
    const int N = a->B * a->T, C = a->C;
    memset(a->dres, 0, (size_t)N * C * sizeof(float));
    layernorm_backward(a->dres, d->lnfw, d->lnfb, a->dc, layer_slice(a->res3, a, a->L - 1, C),
                       p->lnfw, a->lnf_mean, a->lnf_rstd, N, C);
}

void gpt2_block_backward(gpt2_acts *a, int l, const gpt2_block *p, const gpt2_block *d) {
    const int N = a->B * a->T, C = a->C;
    const float *x = block_input(a, l);
    float *ln1 = layer_slice(a->ln1, a, l, C), *ln1m = layer_slice(a->ln1_mean, a, l, 1);
    float *ln1s = layer_slice(a->ln1_rstd, a, l, 1), *qkv = layer_slice(a->qkv, a, l, 3 * C);
    float *att = a->att + (size_t)l * (size_t)a->B * a->NH * a->T * a->T;
    float *atty = layer_slice(a->atty, a, l, C), *res2 = layer_slice(a->res2, a, l, C);
    float *ln2 = layer_slice(a->ln2, a, l, C), *ln2m = layer_slice(a->ln2_mean, a, l, 1);
    float *ln2s = layer_slice(a->ln2_rstd, a, l, 1), *fch = layer_slice(a->fch, a, l, 4 * C);
    float *fchg = layer_slice(a->fch_gelu, a, l, 4 * C);

    /* MLP half; dres = d res3 is also d res2's residual share, so LN2's dx adds into it */
    linear_backward(a->d4c, d->fcprojw, d->fcprojb, a->dres, fchg, p->fcprojw, N, 4 * C, C);
    gelu_backward(a->d4c, fch, (size_t)N * 4 * C);
    linear_backward(a->dc, d->fcw, d->fcb, a->d4c, ln2, p->fcw, N, C, 4 * C);
    layernorm_backward(a->dres, d->ln2w, d->ln2b, a->dc, res2, p->ln2w, ln2m, ln2s, N, C);
    /* attention half; dres = d res2, and becomes d x the same way */
    linear_backward(a->dc, d->attprojw, d->attprojb, a->dres, atty, p->attprojw, N, C, C);
    attention_backward(a->d3c, a->datt, a->dc, qkv, att, a->B, a->T, C, a->NH);
    linear_backward(a->dc, d->qkvw, d->qkvb, a->d3c, ln1, p->qkvw, N, C, 3 * C);
    layernorm_backward(a->dres, d->ln1w, d->ln1b, a->dc, x, p->ln1w, ln1m, ln1s, N, C);
}

void gpt2_embed_backward(gpt2_acts *a, const gpt2_embed *d) {
    const int N = a->B * a->T, C = a->C, T = a->T;
    /* one channel per iteration: tokens repeat, so rows would collide, channels do not */
#pragma omp parallel for if ((size_t)N * (size_t)C > GPT2_OMP_MIN_WORK)
    for (int c = 0; c < C; c++) gpt2_encode_back_col(d->wte, d->wpe, a->dres, a->tokens, N, T, C, c);
}

/* ---- whole model -------------------------------------------------------------------------- */

float gpt2_forward(const gpt2_params *p, gpt2_acts *a, float scale) {
    gpt2_embed_forward(a, &p->emb);
    for (int l = 0; l < p->layers; l++) gpt2_block_forward(a, l, &p->h[l]);
    gpt2_lnf_forward(a, &p->lnf);
    return gpt2_head_forward(a, p->emb.wte, scale);
}

void gpt2_backward(const gpt2_params *p, gpt2_params *g, gpt2_acts *a) {
    gpt2_head_backward(a, p->emb.wte, g->emb.wte);
    gpt2_lnf_backward(a, &p->lnf, &g->lnf);
    for (int l = p->layers - 1; l >= 0; l--) gpt2_block_backward(a, l, &p->h[l], &g->h[l]);
    gpt2_embed_backward(a, &g->emb);
}
