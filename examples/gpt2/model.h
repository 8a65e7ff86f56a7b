/* model.h — a GPT-2 style byte-level language model written the way standalone C models are
 * (llm.c style): parameters are tensor pointers into one flat fp32 array, activations live in
 * the model's own buffers, forward and backward are plain C with OpenMP, matrix products go
 * through cblas_sgemm. Nothing here knows about libzero; gpt2.c wraps it.
 *
 * Architecture (pre-LayerNorm transformer, as GPT-2):
 *   x = wte[token] + wpe[position]
 *   L times:  x = x + proj(attention(LN1(x)));  x = x + fcproj(gelu(fc(LN2(x))))
 *   logits = LNf(x) wte^T   (the language-model head is tied to the token embedding)
 *   loss = mean cross-entropy of the next byte
 *
 * Notation: V vocabulary (256 bytes), C channels (--dim), NH heads, hs = C / NH head size,
 * T sequence length (also the number of learned positions), L blocks, B sequences per batch,
 * N = B * T tokens per batch. Every shape below is in elements, row-major. */
#ifndef ZERO_EXAMPLE_GPT2_MODEL_H
#define ZERO_EXAMPLE_GPT2_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* model_cuda.cu (C++) calls gpt2_acts_buffers */
#endif

#define GPT2_VOCAB 256 /* byte-level tokens */

typedef struct gpt2_config {
    int layers; /* L, >= 1 */
    int heads;  /* NH, divides dim */
    int dim;    /* C, channels of the residual stream */
    int seq;    /* T, tokens per sequence = learned positions */
} gpt2_config;

/* ---- parameters ----------------------------------------------------------------------------
 * The flat array is laid out in MODULE order, which is the order libzero registers them in and
 * gathers them by: the embeddings, then block 0, ..., block L-1, then the final LayerNorm. (llm.c
 * groups each kind across layers instead, e.g. all L ln1 weights together; grouping by block
 * keeps every module one contiguous run.) Each module is a union: named fields to read the
 * model by, and an array t[] to walk its tensors in layout order. */

#define GPT2_EMBED_TENSORS 2
typedef union gpt2_embed {
    struct {
        float *wte; /* (V, C) token embedding; also the weight of the tied lm head */
        float *wpe; /* (T, C) position embedding */
    };
    float *t[GPT2_EMBED_TENSORS];
} gpt2_embed;

#define GPT2_BLOCK_TENSORS 12
typedef union gpt2_block {
    struct {
        float *ln1w;     /* (C) */
        float *ln1b;     /* (C) */
        float *qkvw;     /* (3C, C) rows: the C query, then C key, then C value outputs */
        float *qkvb;     /* (3C) */
        float *attprojw; /* (C, C) */
        float *attprojb; /* (C) */
        float *ln2w;     /* (C) */
        float *ln2b;     /* (C) */
        float *fcw;      /* (4C, C) */
        float *fcb;      /* (4C) */
        float *fcprojw;  /* (C, 4C) */
        float *fcprojb;  /* (C) */
    };
    float *t[GPT2_BLOCK_TENSORS];
} gpt2_block;

#define GPT2_LNF_TENSORS 2
typedef union gpt2_lnf {
    struct {
        float *lnfw; /* (C) */
        float *lnfb; /* (C) */
    };
    float *t[GPT2_LNF_TENSORS];
} gpt2_lnf;

typedef struct gpt2_params {
    gpt2_embed emb;  /* module 0 */
    gpt2_block *h;   /* (L) block l is module l + 1 */
    gpt2_lnf lnf;    /* module L + 1 */
    float *memory;   /* (numel) the flat array every tensor points into */
    size_t numel;    /* total parameters, elements */
    int layers;      /* L */
} gpt2_params;

/* Description of tensor i in layout (= registration) order; i in [0, gpt2_num_tensors). */
typedef struct gpt2_tensor_desc {
    char name[48];    /* "wte", "h.3.attn.qkv.weight", "lnf.bias", ... */
    int module;       /* 0 embeddings, 1..L blocks, L + 1 final LayerNorm */
    int slot;         /* index of the tensor inside its module's t[] */
    size_t offset;    /* elements from the start of the flat array */
    size_t numel;     /* elements */
    int ndim;         /* 1 or 2 */
    int64_t shape[2]; /* (rows, cols) or (numel) */
    int no_decay;     /* 1 for biases and LayerNorm parameters */
} gpt2_tensor_desc;

int gpt2_num_tensors(const gpt2_config *cfg);
int gpt2_num_modules(const gpt2_config *cfg); /* L + 2 */
void gpt2_tensor_info(const gpt2_config *cfg, int i, gpt2_tensor_desc *d);
size_t gpt2_num_params(const gpt2_config *cfg);
/* Largest module, elements (sizes fp32 scratch that holds one module's parameters). */
size_t gpt2_max_module_numel(const gpt2_config *cfg);

/* Allocates the flat array (zeros) and points every tensor into it. 0, or -1 out of memory. */
int gpt2_params_alloc(gpt2_params *p, const gpt2_config *cfg);
/* GPT-2's initialisation: weights ~ N(0, 0.02), the two projections that write into the residual
 * stream ~ N(0, 0.02 / sqrt(2L)), biases 0, LayerNorm weights 1; keyed by (seed, flat index). */
void gpt2_params_init(gpt2_params *p, const gpt2_config *cfg, uint64_t seed);
void gpt2_params_free(gpt2_params *p);

/* ---- activations ---------------------------------------------------------------------------
 * Everything forward keeps for backward, for B sequences of T tokens, plus backward scratch. */
typedef struct gpt2_acts {
    int B, T, C, NH, L;
    int *tokens;      /* (B, T) input bytes */
    int *targets;     /* (B, T) next bytes */
    float *encoded;   /* (B, T, C) wte[token] + wpe[t]: the residual stream entering block 0 */
    float *ln1;       /* (L, B, T, C) LN1 output */
    float *ln1_mean;  /* (L, B, T) */
    float *ln1_rstd;  /* (L, B, T) 1 / standard deviation */
    float *qkv;       /* (L, B, T, 3C) */
    float *att;       /* (L, B, NH, T, T) causal softmax probabilities (zeros above the diagonal) */
    float *atty;      /* (L, B, T, C) attention output, heads side by side, before attproj */
    float *res2;      /* (L, B, T, C) residual stream after the attention half */
    float *ln2;       /* (L, B, T, C) */
    float *ln2_mean;  /* (L, B, T) */
    float *ln2_rstd;  /* (L, B, T) */
    float *fch;       /* (L, B, T, 4C) fc output before GELU */
    float *fch_gelu;  /* (L, B, T, 4C) */
    float *res3;      /* (L, B, T, C) residual stream after the block: its output */
    float *lnf;       /* (B, T, C) final LayerNorm output */
    float *lnf_mean;  /* (B, T) */
    float *lnf_rstd;  /* (B, T) */
    float *logits;    /* (B, T, V) logits; after gpt2_head_forward, d loss / d logits */
    float *losses;    /* (B, T) per-token cross-entropy */
    /* backward */
    float *dres;      /* (B, T, C) d loss / d residual stream, flowing down through the blocks */
    float *dc;        /* (B, T, C) scratch: d LN outputs, d atty */
    float *d3c;       /* (B, T, 3C) d qkv */
    float *d4c;       /* (B, T, 4C) d fch_gelu, then d fch */
    float *datt;      /* (B, NH, T, T) d attention scores of one layer (backward scratch) */
    void *gpu;        /* model_cuda.cu's state when the buffers are GPU memory; NULL on the CPU */
} gpt2_acts;

int gpt2_acts_alloc(gpt2_acts *a, const gpt2_config *cfg, int B); /* 0, or -1 out of memory */
void gpt2_acts_free(gpt2_acts *a);

/* The one list of gpt2_acts's float buffers, for the CPU allocator above and the GPU one
 * (model_cuda.cu): sets a's dimensions from cfg and B when cfg is not NULL (else uses them as
 * they are), then fills ptrs[k] (the address of the k-th buffer field) and counts[k] (its
 * elements) for k < GPT2_ACTS_BUFFERS. Returns GPT2_ACTS_BUFFERS. */
#define GPT2_ACTS_BUFFERS 24
int gpt2_acts_buffers(gpt2_acts *a, const gpt2_config *cfg, int B,
                      float **ptrs[GPT2_ACTS_BUFFERS], size_t counts[GPT2_ACTS_BUFFERS]);

/* ---- data ------------------------------------------------------------------------------------
 * Counter-based RNG: every value is a pure function of its key, so each rank can draw exactly
 * the rows it owns and every world size sees the same global batches. */
uint64_t gpt2_rng_key(uint64_t key, uint64_t counter); /* extends a key by one counter */
float gpt2_rng_uniform(uint64_t key);                  /* [-1, 1) */

/* Reads a whole file as bytes. Returns the buffer (caller frees) and its length in *len, or NULL
 * with errno set. */
unsigned char *gpt2_read_file(const char *path, size_t *len);
/* Rows [row0, row0 + rows) of the global batch of (step, micro): row r is the T + 1 bytes of the
 * text starting at an offset drawn from (seed, step, micro, global row r); tokens get the first T
 * bytes, targets the last T. Needs len > T. */
void gpt2_batch(const unsigned char *text, size_t len, int T, uint64_t seed, int64_t step,
                int micro, int64_t row0, int rows, int *tokens, int *targets);

/* ---- forward / backward, one module at a time --------------------------------------------
 * These take a module's parameter view, so a wrapper can hand in whatever memory holds the
 * module right now. Backward ADDS into the parameter gradients (d*), as a gradient buffer that
 * several contributions share (the tied wte) needs; activation gradients live in `a`. */

/* encoded = wte[tokens] + wpe[t] */
void gpt2_embed_forward(gpt2_acts *a, const gpt2_embed *e);
/* block l: reads its input from encoded (l = 0) or res3[l - 1], writes res3[l] */
void gpt2_block_forward(gpt2_acts *a, int l, const gpt2_block *p);
/* lnf = LNf(res3[L - 1]) */
void gpt2_lnf_forward(gpt2_acts *a, const gpt2_lnf *p);
/* logits = lnf wte^T, softmax cross-entropy against targets. Returns the mean loss over the
 * B * T tokens and replaces logits by d (scale * loss) / d logits. */
float gpt2_head_forward(gpt2_acts *a, const float *wte, float scale);

/* dwte += dlogits^T lnf; dc = d loss / d lnf */
void gpt2_head_backward(gpt2_acts *a, const float *wte, float *dwte);
/* from dc (d lnf): dres = d loss / d res3[L - 1]; dlnfw, dlnfb += */
void gpt2_lnf_backward(gpt2_acts *a, const gpt2_lnf *p, const gpt2_lnf *d);
/* from dres = d loss / d (block output): dres becomes d loss / d (block input); d->* += */
void gpt2_block_backward(gpt2_acts *a, int l, const gpt2_block *p, const gpt2_block *d);
/* from dres = d loss / d encoded: dwte[tokens] +=, dwpe[t] += (reads no parameter) */
void gpt2_embed_backward(gpt2_acts *a, const gpt2_embed *d);

/* ---- the whole model in one call (what a standalone trainer runs; --gradcheck uses it) */
/* a->tokens and a->targets filled by the caller. Returns the mean loss. */
float gpt2_forward(const gpt2_params *p, gpt2_acts *a, float scale);
/* After gpt2_forward: ADDS the gradient into g (same config and layout as p; zero it first). */
void gpt2_backward(const gpt2_params *p, gpt2_params *g, gpt2_acts *a);

#ifdef __cplusplus
}
#endif
#endif /* ZERO_EXAMPLE_GPT2_MODEL_H */
