/* train_zero.c — stacked-zero: train_plain.c ported to libzero with as few changes as it takes,
 * each marked "libzero: [...]" with its kind (docs/PORTING.md counts them by kind). libzero holds
 * the parameters, gradients and AdamW state, sharded over the ranks (ZERO_STAGE 0-3 from the
 * environment); the model keeps its own forward and backward, run on the pointers libzero hands
 * out, one layer at a time, and each rank trains on its share of the rows of every batch.
 *
 * The model, on rows of D input features, K classes:
 *   x_0     = win inp + bin                                           (B, C)
 *   x_{l+1} = x_l + w2[l] gelu(w1[l] ln(x_l; ln_w[l], ln_b[l]) + b1[l]) + b2[l]    l < L
 *   logits  = wout ln(x_L; lnf_w, lnf_b) + bout                        (B, K)
 *   loss    = mean over the rows of the cross-entropy of softmax(logits)
 *
 *   stacked-zero [--layers L] [--width C] [--hidden H] [--batch B] [--steps N] ...   (--help)
 *   scripts/zero-mpirun -np 2 stacked-zero ...;  ZERO_STAGE=3 ZERO_DTYPE=bf16 stacked-zero ...
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zero.h" /* libzero: [setup] */

#define PI_F 3.14159265358979f

// ----------------------------------------------------------------------------
// counter-based RNG: every value is a pure function of its key, so the model's init and the
// data do not depend on the order in which they are generated

static uint64_t mix64(uint64_t z) { // splitmix64's finaliser
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rng_key(uint64_t key, uint64_t counter) { return mix64(key ^ mix64(counter)); }
static float rng_uniform(uint64_t key) { // [-1, 1): top 24 bits, exact in fp32
    return 2.0f * ((float)(key >> 40) * (1.0f / 16777216.0f)) - 1.0f;
}
// key domains: parameters, the teacher that labels the data, training rows, validation rows
enum { RNG_INIT = 1, RNG_TEACHER = 2, RNG_TRAIN = 3, RNG_VAL = 4 };

// ----------------------------------------------------------------------------
// the model's parameters

typedef struct {
    int D; // input features
    int C; // channels of the residual stream
    int H; // hidden width of each layer's MLP
    int K; // classes
    int L; // layers
} Config;

enum { WIN, BIN, LN_W, LN_B, W1, B1, W2, B2, LNF_W, LNF_B, WOUT, BOUT, NUM_PARAMETER_TENSORS };
typedef struct {
    float *win;   // (C, D)
    float *bin;   // (C)
    float *ln_w;  // (L, C)
    float *ln_b;  // (L, C)
    float *w1;    // (L, H, C)
    float *b1;    // (L, H)
    float *w2;    // (L, C, H)
    float *b2;    // (L, C)
    float *lnf_w; // (C)
    float *lnf_b; // (C)
    float *wout;  // (K, C)
    float *bout;  // (K)
} ParameterTensors;

// AdamW's weight decay applies to the matrices only; layernorm weights and biases have none
static const int param_decay[NUM_PARAMETER_TENSORS] = {1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0};

static void fill_in_parameter_sizes(size_t *param_sizes, const Config *c) {
    size_t D = c->D, C = c->C, H = c->H, K = c->K, L = c->L;
    param_sizes[WIN] = C * D;
    param_sizes[BIN] = C;
    param_sizes[LN_W] = L * C;
    param_sizes[LN_B] = L * C;
    param_sizes[W1] = L * H * C;
    param_sizes[B1] = L * H;
    param_sizes[W2] = L * C * H;
    param_sizes[B2] = L * C;
    param_sizes[LNF_W] = C;
    param_sizes[LNF_B] = C;
    param_sizes[WOUT] = K * C;
    param_sizes[BOUT] = K;
}

/* libzero: [registration] no flat array: libzero holds the parameters (model_register) */

// The initial value of element i of tensor t (i counts over the whole stacked tensor), keyed by
// (seed, t, i): matrices U(-1, 1) / sqrt(fan in) (w2 also / sqrt(L), so the residual stream
// grows slowly with depth), layernorm weights 1, biases 0.
static float init_value(const Config *c, uint64_t seed, int t, size_t i) {
    float bound;
    switch (t) {
    case WIN: bound = 1.0f / sqrtf((float)c->D); break;
    case W1: bound = 1.0f / sqrtf((float)c->C); break;
    case W2: bound = 1.0f / sqrtf((float)c->H * (float)c->L); break;
    case WOUT: bound = 1.0f / sqrtf((float)c->C); break;
    case LN_W: case LNF_W: return 1.0f;
    default: return 0.0f;
    }
    uint64_t key = rng_key(rng_key(seed, RNG_INIT), (uint64_t)t);
    return bound * rng_uniform(rng_key(key, (uint64_t)i));
}

// ----------------------------------------------------------------------------
// activations of one batch of B rows, kept for backward

#define NUM_ACTIVATION_TENSORS 12
typedef struct {
    float *x;        // (L + 1, B, C) residual stream: x[0] = win inp + bin, x[l + 1] after layer l
    float *ln;       // (L, B, C) layernorm out
    float *ln_mean;  // (L, B)
    float *ln_rstd;  // (L, B)
    float *h;        // (L, B, H) w1 ln + b1
    float *g;        // (L, B, H) gelu(h)
    float *y;        // (L, B, C) w2 g + b2, added to the residual stream
    float *lnf;      // (B, C) final layernorm out
    float *lnf_mean; // (B)
    float *lnf_rstd; // (B)
    float *logits;   // (B, K)
    float *probs;    // (B, K)
} ActivationTensors;

// gradients of the activations, reused by every layer during backward
typedef struct {
    float *dres;    // (B, C) d loss / d x_l, the residual stream
    float *dln;     // (B, C)
    float *dh;      // (B, H)
    float *dg;      // (B, H)
    float *dlnf;    // (B, C)
    float *dlogits; // (B, K)
} GradActivations;

static float *malloc_and_point(float ***ptrs, const size_t *sizes, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += sizes[i];
    float *memory = calloc(total, sizeof(float));
    if (memory == NULL) return NULL;
    float *it = memory;
    for (int i = 0; i < n; i++) {
        *(ptrs[i]) = it;
        it += sizes[i];
    }
    return memory;
}

// ----------------------------------------------------------------------------
// the layers, forward and backward (llm.c's CPU kernels with B * T rows written as N)

// out (N, OC) = inp (N, IC) weight^T + bias; weight (OC, IC), bias (OC)
static void matmul_forward(float *out, const float *inp, const float *weight, const float *bias,
                           int N, int IC, int OC) {
    for (int n = 0; n < N; n++) {
        const float *inp_n = inp + (size_t)n * IC;
        float *out_n = out + (size_t)n * OC;
        for (int o = 0; o < OC; o++) {
            const float *wrow = weight + (size_t)o * IC;
            float val = bias[o];
            for (int i = 0; i < IC; i++) val += inp_n[i] * wrow[i];
            out_n[o] = val;
        }
    }
}

// dinp (N, IC) += dout weight (skipped when dinp is NULL); dweight (OC, IC) += dout^T inp;
// dbias (OC) += the column sums of dout (N, OC)
static void matmul_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int N, int IC, int OC) {
    if (dinp != NULL) {
        for (int n = 0; n < N; n++) {
            const float *dout_n = dout + (size_t)n * OC;
            float *dinp_n = dinp + (size_t)n * IC;
            for (int o = 0; o < OC; o++) {
                const float *wrow = weight + (size_t)o * IC;
                float d = dout_n[o];
                for (int i = 0; i < IC; i++) dinp_n[i] += wrow[i] * d;
            }
        }
    }
    for (int o = 0; o < OC; o++) {
        float *dwrow = dweight + (size_t)o * IC;
        for (int n = 0; n < N; n++) {
            const float *inp_n = inp + (size_t)n * IC;
            float d = dout[(size_t)n * OC + o];
            dbias[o] += d;
            for (int i = 0; i < IC; i++) dwrow[i] += inp_n[i] * d;
        }
    }
}

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int N, int C) {
    const float eps = 1e-5f;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) m += x[i];
        m = m / C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) {
            float xshift = x[i] - m;
            v += xshift * xshift;
        }
        v = v / C;
        float s = 1.0f / sqrtf(v + eps);
        float *out_n = out + (size_t)n * C;
        for (int i = 0; i < C; i++) out_n[i] = (s * (x[i] - m)) * weight[i] + bias[i];
        mean[n] = m;
        rstd[n] = s;
    }
}

// dinp (N, C), dweight (C), dbias (C) are ADDED to
static void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *dout_n = dout + (size_t)n * C;
        const float *inp_n = inp + (size_t)n * C;
        float *dinp_n = dinp + (size_t)n * C;
        float mean_n = mean[n], rstd_n = rstd[n];
        // two reduce operations
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float norm_ni = (inp_n[i] - mean_n) * rstd_n;
            float dnorm_i = weight[i] * dout_n[i];
            dnorm_mean += dnorm_i;
            dnorm_norm_mean += dnorm_i * norm_ni;
        }
        dnorm_mean = dnorm_mean / C;
        dnorm_norm_mean = dnorm_norm_mean / C;
        // accumulate into the gradients
        for (int i = 0; i < C; i++) {
            float norm_ni = (inp_n[i] - mean_n) * rstd_n;
            float dnorm_i = weight[i] * dout_n[i];
            dbias[i] += dout_n[i];
            dweight[i] += norm_ni * dout_n[i];
            float dval = 0.0f;
            dval += dnorm_i;
            dval -= dnorm_mean;
            dval -= norm_ni * dnorm_norm_mean;
            dval *= rstd_n;
            dinp_n[i] += dval;
        }
    }
}

#define GELU_SCALING_FACTOR sqrtf(2.0f / PI_F)
static void gelu_forward(float *out, const float *inp, int N) {
    for (int i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + cube)));
    }
}

// dinp (N) += gelu'(inp) dout
static void gelu_backward(float *dinp, const float *inp, const float *dout, int N) {
    for (int i = 0; i < N; i++) {
        float x = inp[i];
        float cube = 0.044715f * x * x * x;
        float tanh_arg = GELU_SCALING_FACTOR * (x + cube);
        float tanh_out = tanhf(tanh_arg);
        float coshf_out = coshf(tanh_arg);
        float sech_out = 1.0f / (coshf_out * coshf_out);
        float local_grad = 0.5f * (1.0f + tanh_out) + x * 0.5f * sech_out * GELU_SCALING_FACTOR *
                                                          (1.0f + 3.0f * 0.044715f * x * x);
        dinp[i] += local_grad * dout[i];
    }
}

static void residual_forward(float *out, const float *inp1, const float *inp2, int N) {
    for (int i = 0; i < N; i++) out[i] = inp1[i] + inp2[i];
}

static void softmax_forward(float *probs, const float *logits, int N, int K) {
    for (int n = 0; n < N; n++) {
        const float *logits_n = logits + (size_t)n * K;
        float *probs_n = probs + (size_t)n * K;
        float maxval = -INFINITY;
        for (int k = 0; k < K; k++) maxval = logits_n[k] > maxval ? logits_n[k] : maxval;
        float sum = 0.0f;
        for (int k = 0; k < K; k++) {
            probs_n[k] = expf(logits_n[k] - maxval);
            sum += probs_n[k];
        }
        for (int k = 0; k < K; k++) probs_n[k] /= sum;
    }
}

// the mean over the N rows of -log probs[target]
static float crossentropy_forward(const float *probs, const int *targets, int N, int K) {
    float sum = 0.0f;
    for (int n = 0; n < N; n++) sum += -logf(probs[(size_t)n * K + targets[n]]);
    return sum / N;
}

// dlogits (N, K) = (probs - onehot(target)) * dloss
static void crossentropy_softmax_backward(float *dlogits, const float *probs, const int *targets,
                                          float dloss, int N, int K) {
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) {
            float indicator = k == targets[n] ? 1.0f : 0.0f;
            dlogits[(size_t)n * K + k] = (probs[(size_t)n * K + k] - indicator) * dloss;
        }
    }
}

// ----------------------------------------------------------------------------
// the model

typedef struct {
    Config config;
    size_t param_sizes[NUM_PARAMETER_TENSORS]; // elements of each (stacked) tensor
    size_t num_parameters;
    /* libzero: [registration] libzero holds parameters, gradients and AdamW's moments, each
     * stacked tensor as L zero tensors (its layers' slices): ztensor maps (tensor, layer) to the
     * zero tensor, zslice the other way */
    zero_ctx *z;
    int *ztensor;                              // (NUM_PARAMETER_TENSORS, L), layer 0 if not stacked
    int (*zslice)[2];                          // (zero tensors, 2): {tensor, layer}
    size_t slice_sizes[NUM_PARAMETER_TENSORS]; // elements of one layer's slice
    uint64_t seed;                             /* libzero: [init] for init_slice */
    /* libzero: [precision] at bf16/fp16, fp32 copies of one slice of each tensor */
    zero_dtype dtype;                          // the working precision
    float *view_memory;
    float *pview[NUM_PARAMETER_TENSORS];       // parameters, converted after the gather
    float *gview[NUM_PARAMETER_TENSORS];       // gradients, added into libzero's by grads_ready
    void *gwork[NUM_PARAMETER_TENSORS];        // libzero's gradient buffer gview[t] goes to
    zero_status view_status;                   /* libzero: [gather] a failed view, see param_view */
    ActivationTensors acts;
    float *acts_memory;
    GradActivations grads_acts;
    float *grads_acts_memory;
    int batch_size;  // B: rows the activations hold
    float mean_loss; // of the last forward
} Model;

static void model_free(Model *model) {
    free(model->ztensor); /* libzero: [registration] */
    free(model->zslice);
    free(model->view_memory); /* libzero: [precision] */
    free(model->acts_memory);
    free(model->grads_acts_memory);
    memset(model, 0, sizeof(*model));
}

/* libzero: [registration] the sizes only: model_register gives the tensors to libzero */
static int model_build(Model *model, const Config *config) {
    memset(model, 0, sizeof(*model));
    model->config = *config;
    fill_in_parameter_sizes(model->param_sizes, config);
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) model->num_parameters += model->param_sizes[t];
    /* libzero: [registration] no arrays for parameters, gradients and moments: libzero's */
    return 0;
}

// the activations of B rows and their gradients; 0, or -1 when out of memory
static int model_alloc_acts(Model *model, int B) {
    const Config *config = &model->config;
    model->batch_size = B;
    size_t C = config->C, H = config->H, K = config->K, L = config->L, Bs = (size_t)B;
    ActivationTensors *a = &model->acts;
    size_t act_sizes[NUM_ACTIVATION_TENSORS] = {(L + 1) * Bs * C, L * Bs * C, L * Bs, L * Bs,
                                                L * Bs * H, L * Bs * H, L * Bs * C, Bs * C, Bs,
                                                Bs, Bs * K, Bs * K};
    float **act_ptrs[NUM_ACTIVATION_TENSORS] = {&a->x, &a->ln, &a->ln_mean, &a->ln_rstd, &a->h,
                                                &a->g, &a->y, &a->lnf, &a->lnf_mean,
                                                &a->lnf_rstd, &a->logits, &a->probs};
    model->acts_memory = malloc_and_point(act_ptrs, act_sizes, NUM_ACTIVATION_TENSORS);
    GradActivations *ga = &model->grads_acts;
    size_t grad_act_sizes[6] = {Bs * C, Bs * C, Bs * H, Bs * H, Bs * C, Bs * K};
    float **grad_act_ptrs[6] = {&ga->dres, &ga->dln, &ga->dh, &ga->dg, &ga->dlnf, &ga->dlogits};
    model->grads_acts_memory = malloc_and_point(grad_act_ptrs, grad_act_sizes, 6);

    if (!model->acts_memory || !model->grads_acts_memory) return -1;
    return 0;
}

/* libzero: [init] zero_init's init_fn: elements [first, first + count) of zero tensor i, the slice
 * of layer l of tensor t, are elements l * slice + first ... of the stacked tensor, and init_value
 * keys each by that index alone. Each rank is asked for its own shard only, and every world size
 * gets the plain trainer's model. */
static void init_slice(void *user, int i, size_t first, size_t count, float *dst) {
    const Model *model = user;
    int t = model->zslice[i][0], l = model->zslice[i][1];
    size_t base = (size_t)l * model->slice_sizes[t] + first;
    for (size_t j = 0; j < count; j++)
        dst[j] = init_value(&model->config, model->seed, t, base + j);
}

/* libzero: [setup] a failed zero_* call in the model: its message, and the status up to main */
#define ZTRY(call)                                                                                \
    do {                                                                                          \
        zero_status s_ = (call);                                                                  \
        if (s_ != ZERO_OK) {                                                                      \
            fprintf(stderr, "stacked: rank %d: %s: %s: %s\n", zero_rank(model->z), #call,       \
                    zero_status_string(s_), zero_last_error(model->z));                           \
            return s_;                                                                            \
        }                                                                                         \
    } while (0)

/* libzero: [gather] the fp32 parameters of layer l's slice of tensor t (l = 0 if not stacked):
 * libzero's own buffer at fp32, valid until the module's zero_release (stage 3; stages 0-2: for
 * good). NULL, and model->view_status set, on failure: checked once per module. */
static float *param_view(Model *model, int t, int l) {
    void *p = zero_param_ptr(model->z, model->ztensor[t * model->config.L + l]);
    if (p == NULL) model->view_status = ZERO_ERR_INVALID;
    if (p == NULL || model->dtype == ZERO_DTYPE_FP32) return p;
    /* libzero: [precision] bf16/fp16: an fp32 copy for the plain fp32 kernels */
    zero_convert(model->pview[t], ZERO_DTYPE_FP32, p, model->dtype, model->slice_sizes[t]);
    return model->pview[t];
}

/* libzero: [grads] the fp32 gradient of that slice, to ADD into: asked every micro-step (at stages
 * 2-3 it is a reduce bucket, valid until the module's zero_grad_ready). */
static float *grad_view(Model *model, int t, int l) {
    void *g = zero_grad_ptr(model->z, model->ztensor[t * model->config.L + l]);
    if (g == NULL) model->view_status = ZERO_ERR_INVALID;
    if (g == NULL || model->dtype == ZERO_DTYPE_FP32) return g;
    /* libzero: [precision] bf16/fp16: a zeroed fp32 buffer, added into g by grads_ready */
    model->gwork[t] = g;
    memset(model->gview[t], 0, model->slice_sizes[t] * sizeof(float));
    return model->gview[t];
}

/* libzero: [grads] the module's gradients are complete for this micro-step */
static zero_status grads_ready(Model *model, int module) {
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) { /* libzero: [precision] */
        if (model->gwork[t] == NULL) continue;
        zero_accumulate(model->gwork[t], model->dtype, model->gview[t], model->slice_sizes[t]);
        model->gwork[t] = NULL;
    }
    return zero_grad_ready(model->z, module); /* libzero: [grads] */
}

// forward of B rows inp (B, D) with labels targets (B); sets model->mean_loss
/* libzero: [setup] returns the first failed zero_* call's status */
static zero_status model_forward(Model *model, const float *inp, const int *targets, int B) {
    const int D = model->config.D, C = model->config.C, H = model->config.H;
    const int K = model->config.K, L = model->config.L;
    ParameterTensors params = {0}; /* libzero: [gather] filled module by module with views */
    ActivationTensors acts = model->acts;

    ZTRY(zero_gather(model->z, 0)); /* libzero: [gather] module 0, the input projection */
    params.win = param_view(model, WIN, 0);
    params.bin = param_view(model, BIN, 0);
    ZTRY(model->view_status);
    matmul_forward(acts.x, inp, params.win, params.bin, B, D, C);
    ZTRY(zero_release(model->z, 0)); /* libzero: [gather] */
    for (int l = 0; l < L; l++) {
        ZTRY(zero_gather(model->z, 1 + l)); /* libzero: [gather] layer l is module l + 1 */
        float *residual = acts.x + (size_t)l * B * C;
        /* libzero: [gather] this layer's slices: a zero tensor each (ztensor) */
        float *l_ln_w = param_view(model, LN_W, l);
        float *l_ln_b = param_view(model, LN_B, l);
        float *l_w1 = param_view(model, W1, l);
        float *l_b1 = param_view(model, B1, l);
        float *l_w2 = param_view(model, W2, l);
        float *l_b2 = param_view(model, B2, l);
        ZTRY(model->view_status);
        // and of the activations
        float *l_ln = acts.ln + (size_t)l * B * C;
        float *l_ln_mean = acts.ln_mean + (size_t)l * B;
        float *l_ln_rstd = acts.ln_rstd + (size_t)l * B;
        float *l_h = acts.h + (size_t)l * B * H;
        float *l_g = acts.g + (size_t)l * B * H;
        float *l_y = acts.y + (size_t)l * B * C;
        layernorm_forward(l_ln, l_ln_mean, l_ln_rstd, residual, l_ln_w, l_ln_b, B, C);
        matmul_forward(l_h, l_ln, l_w1, l_b1, B, C, H);
        gelu_forward(l_g, l_h, B * H);
        matmul_forward(l_y, l_g, l_w2, l_b2, B, H, C);
        residual_forward(residual + (size_t)B * C, residual, l_y, B * C);
        ZTRY(zero_release(model->z, 1 + l)); /* libzero: [gather] */
    }
    ZTRY(zero_gather(model->z, L + 1)); /* libzero: [gather] module L + 1, the head */
    params.lnf_w = param_view(model, LNF_W, 0);
    params.lnf_b = param_view(model, LNF_B, 0);
    params.wout = param_view(model, WOUT, 0);
    params.bout = param_view(model, BOUT, 0);
    ZTRY(model->view_status);
    float *x_L = acts.x + (size_t)L * B * C;
    layernorm_forward(acts.lnf, acts.lnf_mean, acts.lnf_rstd, x_L, params.lnf_w, params.lnf_b, B,
                      C);
    matmul_forward(acts.logits, acts.lnf, params.wout, params.bout, B, C, K);
    ZTRY(zero_release(model->z, L + 1)); /* libzero: [gather] */
    softmax_forward(acts.probs, acts.logits, B, K);
    model->mean_loss = crossentropy_forward(acts.probs, targets, B, K);
    return ZERO_OK; /* libzero: [setup] */
}

/* libzero: [grads] no model_zero_grad: libzero zeroes the gradients after each optimizer step */

// backward after model_forward of the same rows: ADDS d (dloss * the sum of the rows' losses) /
// d params into the gradients
/* libzero: [setup] returns the first failed zero_* call's status */
static zero_status model_backward(Model *model, const float *inp, const int *targets, int B,
                                  float dloss) {
    const int D = model->config.D, C = model->config.C, H = model->config.H;
    const int K = model->config.K, L = model->config.L;
    ParameterTensors params = {0}, grads = {0}; /* libzero: [gather] views, module by module */
    ActivationTensors acts = model->acts;
    GradActivations ga = model->grads_acts;

    crossentropy_softmax_backward(ga.dlogits, acts.probs, targets, dloss, B, K);
    ZTRY(zero_gather(model->z, L + 1)); /* libzero: [gather] stage 3 gathers again for backward */
    params.lnf_w = param_view(model, LNF_W, 0);
    params.wout = param_view(model, WOUT, 0);
    grads.lnf_w = grad_view(model, LNF_W, 0); /* libzero: [grads] asked this micro-step */
    grads.lnf_b = grad_view(model, LNF_B, 0);
    grads.wout = grad_view(model, WOUT, 0);
    grads.bout = grad_view(model, BOUT, 0);
    ZTRY(model->view_status);
    memset(ga.dlnf, 0, (size_t)B * C * sizeof(float));
    matmul_backward(ga.dlnf, grads.wout, grads.bout, ga.dlogits, acts.lnf, params.wout, B, C, K);
    memset(ga.dres, 0, (size_t)B * C * sizeof(float));
    float *x_L = acts.x + (size_t)L * B * C;
    layernorm_backward(ga.dres, grads.lnf_w, grads.lnf_b, ga.dlnf, x_L, params.lnf_w,
                       acts.lnf_mean, acts.lnf_rstd, B, C);
    ZTRY(zero_release(model->z, L + 1)); /* libzero: [gather] */
    ZTRY(grads_ready(model, L + 1));     /* libzero: [grads] the head's gradients are complete */
    for (int l = L - 1; l >= 0; l--) {
        // ga.dres holds d loss / d x_{l+1}: the gradient of the MLP branch's output too
        ZTRY(zero_gather(model->z, 1 + l)); /* libzero: [gather] */
        float *residual = acts.x + (size_t)l * B * C;
        float *l_ln_w = param_view(model, LN_W, l); /* libzero: [gather] */
        float *l_w1 = param_view(model, W1, l);
        float *l_w2 = param_view(model, W2, l);
        // and of their gradients, which backward adds into
        float *dl_ln_w = grad_view(model, LN_W, l); /* libzero: [grads] asked every micro-step */
        float *dl_ln_b = grad_view(model, LN_B, l);
        float *dl_w1 = grad_view(model, W1, l);
        float *dl_b1 = grad_view(model, B1, l);
        float *dl_w2 = grad_view(model, W2, l);
        float *dl_b2 = grad_view(model, B2, l);
        ZTRY(model->view_status);
        float *l_ln = acts.ln + (size_t)l * B * C;
        float *l_ln_mean = acts.ln_mean + (size_t)l * B;
        float *l_ln_rstd = acts.ln_rstd + (size_t)l * B;
        float *l_h = acts.h + (size_t)l * B * H;
        float *l_g = acts.g + (size_t)l * B * H;
        memset(ga.dg, 0, (size_t)B * H * sizeof(float));
        memset(ga.dh, 0, (size_t)B * H * sizeof(float));
        memset(ga.dln, 0, (size_t)B * C * sizeof(float));
        matmul_backward(ga.dg, dl_w2, dl_b2, ga.dres, l_g, l_w2, B, H, C);
        gelu_backward(ga.dh, l_h, ga.dg, B * H);
        matmul_backward(ga.dln, dl_w1, dl_b1, ga.dh, l_ln, l_w1, B, C, H);
        // the residual connection passes ga.dres through; the branch adds its part: d x_l
        layernorm_backward(ga.dres, dl_ln_w, dl_ln_b, ga.dln, residual, l_ln_w, l_ln_mean,
                           l_ln_rstd, B, C);
        ZTRY(zero_release(model->z, 1 + l)); /* libzero: [gather] */
        ZTRY(grads_ready(model, 1 + l));     /* libzero: [grads] */
    }
    ZTRY(zero_gather(model->z, 0)); /* libzero: [gather] */
    params.win = param_view(model, WIN, 0);
    grads.win = grad_view(model, WIN, 0); /* libzero: [grads] */
    grads.bin = grad_view(model, BIN, 0);
    ZTRY(model->view_status);
    matmul_backward(NULL, grads.win, grads.bin, ga.dres, inp, params.win, B, D, C);
    ZTRY(zero_release(model->z, 0)); /* libzero: [gather] */
    ZTRY(grads_ready(model, 0));     /* libzero: [grads] */
    return ZERO_OK;                  /* libzero: [setup] */
}

/* libzero: [step] no model_update: zero_step runs AdamW (the same formula) on each rank's shard */

// ----------------------------------------------------------------------------
// data: rows of D features ~ U(-sqrt 3, sqrt 3), labelled by a fixed random teacher network,
// argmax_k sum_m V[k][m] tanh(A[m] . x); every row a pure function of (seed, split, batch, row)

#define TEACHER_HIDDEN 16

// rows [row0, row0 + rows) of batch `batch` of the split (RNG_TRAIN or RNG_VAL)
static void get_batch(uint64_t seed, int split, int64_t batch, int64_t row0, int rows,
                      const Config *c, float *inp, int *targets) {
    const int D = c->D, K = c->K;
    uint64_t teacher = rng_key(seed, RNG_TEACHER);
    uint64_t key = rng_key(rng_key(seed, (uint64_t)split), (uint64_t)batch);
    for (int r = 0; r < rows; r++) {
        uint64_t rkey = rng_key(key, (uint64_t)(row0 + r)); // the row's global index
        float *x = inp + (size_t)r * D;
        for (int j = 0; j < D; j++) x[j] = 1.7320508f * rng_uniform(rng_key(rkey, (uint64_t)j));
        float hidden[TEACHER_HIDDEN];
        for (int m = 0; m < TEACHER_HIDDEN; m++) {
            float s = 0.0f;
            for (int j = 0; j < D; j++)
                s += rng_uniform(rng_key(teacher, (uint64_t)m * D + j)) * x[j];
            hidden[m] = tanhf(1.5f * s / sqrtf((float)D));
        }
        int best = 0;
        float best_score = -INFINITY;
        for (int k = 0; k < K; k++) {
            float s = 0.0f;
            uint64_t v0 = (uint64_t)TEACHER_HIDDEN * D + (uint64_t)k * TEACHER_HIDDEN; // V after A
            for (int m = 0; m < TEACHER_HIDDEN; m++)
                s += rng_uniform(rng_key(teacher, v0 + (uint64_t)m)) * hidden[m];
            if (s > best_score) {
                best_score = s;
                best = k;
            }
        }
        targets[r] = best;
    }
}

// ----------------------------------------------------------------------------
// the learning rate: linear warmup over `warmup` steps, then a cosine from lr down to lr_min

static float get_lr(int step, int num_steps, int warmup, float lr, float lr_min) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    float decay_ratio = (float)(step - warmup) / (float)(num_steps - warmup);
    float coeff = 0.5f * (1.0f + cosf(PI_F * decay_ratio));
    return lr_min + coeff * (lr - lr_min);
}

// ----------------------------------------------------------------------------
// the command line

typedef struct {
    Config config;
    int batch;       // rows per micro-step
    int accum;       // micro-steps per optimizer step
    int steps;       // optimizer steps
    int warmup;      // steps of linear warmup
    int val_every;   // a validation forward every N steps (and after the last)
    float lr, lr_min, beta1, beta2, eps, weight_decay;
    uint64_t seed;
    const char *export_path; /* libzero: [output] --export: the trained weights (safetensors) */
} Options;

static void usage(FILE *f) {
    /* libzero: [output] its name, and --export */
    fprintf(f, "usage: stacked-zero [--layers L] [--width C] [--hidden H] [--inputs D] "
               "[--classes K]\n"
               "         [--batch B] [--accum A] [--steps N] [--warmup W] [--lr X] [--lr-min X]\n"
               "         [--wd X] [--eps X] [--val-every N] [--seed S]\n"
               "defaults: L 4, C 32, H 64, D 16, K 8, B 16, A 1, N 30, W 5, lr 3e-3, lr-min "
               "3e-4, wd 0.1,\n"
               "          eps 1e-8, val-every 10, seed 1337\n");
    fprintf(f, "  --export PATH: write the trained weights (safetensors)\n"); /* libzero: [output] */
}

// 0 to go on, 1 after --help, 2 on a bad command line
static int parse_args(int argc, char **argv, Options *o) {
    *o = (Options){.config = {.D = 16, .C = 32, .H = 64, .K = 8, .L = 4}, .batch = 16,
                   .accum = 1, .steps = 30, .warmup = 5, .val_every = 10, .lr = 3e-3f,
                   .lr_min = 3e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                   .weight_decay = 0.1f, .seed = 1337};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return 1;
        if (i + 1 >= argc) return 2;
        const char *v = argv[++i];
        char *end;
        long n = strtol(v, &end, 10);
        int is_int = *end == '\0' && n >= 1 && n <= (1 << 20);
        float x = strtof(v, &end);
        int is_float = *end == '\0' && isfinite(x) && x >= 0.0f;
        if (!strcmp(a, "--layers") && is_int) o->config.L = (int)n;
        else if (!strcmp(a, "--width") && is_int) o->config.C = (int)n;
        else if (!strcmp(a, "--hidden") && is_int) o->config.H = (int)n;
        else if (!strcmp(a, "--inputs") && is_int) o->config.D = (int)n;
        else if (!strcmp(a, "--classes") && is_int) o->config.K = (int)n;
        else if (!strcmp(a, "--batch") && is_int) o->batch = (int)n;
        else if (!strcmp(a, "--accum") && is_int) o->accum = (int)n;
        else if (!strcmp(a, "--steps") && (is_int || !strcmp(v, "0"))) o->steps = (int)n;
        else if (!strcmp(a, "--warmup") && is_int) o->warmup = (int)n;
        else if (!strcmp(a, "--val-every") && is_int) o->val_every = (int)n;
        else if (!strcmp(a, "--seed") && is_int) o->seed = (uint64_t)n;
        else if (!strcmp(a, "--lr") && is_float && x > 0.0f) o->lr = x;
        else if (!strcmp(a, "--lr-min") && is_float) o->lr_min = x;
        else if (!strcmp(a, "--wd") && is_float) o->weight_decay = x;
        else if (!strcmp(a, "--eps") && is_float && x > 0.0f) o->eps = x;
        else if (!strcmp(a, "--export")) o->export_path = v; /* libzero: [output] */
        else {
            fprintf(stderr, "stacked: bad option or value: %s %s\n", a, v);
            return 2;
        }
    }
    if (o->steps > 0 && o->warmup >= o->steps) o->warmup = o->steps - 1; // the cosine needs one
    return 0;
}

/* libzero: [registration] the zero tensors, in module order (the enum's order): module 0 the input
 * projection, module l + 1 the slices of layer l of the stacked tensors, module L + 1 the final
 * layernorm and the head. A stacked (L, ...) tensor is registered as L tensors because libzero
 * gathers, reduces and releases whole modules and a tensor cannot span modules yet; one module
 * per layer is what lets stage 3 hold one layer at a time. Parameter groups: 0 with weight decay,
 * 1 (layernorm weights, biases) without. zero_init then fills each rank's shard: [init]. */
static const char *const param_names[NUM_PARAMETER_TENSORS] = {
    "win", "bin", "ln_w", "ln_b", "w1", "b1", "w2", "b2", "lnf_w", "lnf_b", "wout", "bout"};
static const int param_stacked[NUM_PARAMETER_TENSORS] = {0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0};
enum { GROUP_DECAY, GROUP_NO_DECAY, NUM_GROUPS };

// the shape of one slice of tensor t: (rows, cols) or (rows); returns the number of dimensions
static int slice_shape(const Config *c, int t, int64_t *shape) {
    const int64_t rows[NUM_PARAMETER_TENSORS] = {c->C, c->C, c->C, c->C, c->H, c->H,
                                                 c->C, c->C, c->C, c->C, c->K, c->K};
    const int64_t cols[NUM_PARAMETER_TENSORS] = {c->D, 0, 0, 0, c->C, 0, c->H, 0, 0, 0, c->C, 0};
    shape[0] = rows[t];
    shape[1] = cols[t];
    return cols[t] ? 2 : 1;
}

// 0, or -1 with a message (zero_init failed, or out of memory)
static int model_register(Model *model, const Options *opt) {
    const int L = model->config.L, num = 6 + 6 * L; // 6 tensors not stacked, 6 stacked
    zero_tensor *tensors = calloc((size_t)num, sizeof(*tensors));
    char(*names)[32] = calloc((size_t)num, sizeof(*names));
    model->ztensor = malloc((size_t)NUM_PARAMETER_TENSORS * L * sizeof(int));
    model->zslice = malloc((size_t)num * sizeof(*model->zslice));
    model->seed = opt->seed;
    if (!tensors || !names || !model->ztensor || !model->zslice) {
        fprintf(stderr, "stacked: out of memory\n");
        free(names);
        free(tensors);
        return -1;
    }
    int n = 0;
    for (int m = 0; m < L + 2; m++) {
        int first = m == 0 ? WIN : m <= L ? LN_W : LNF_W, last = m == 0 ? BIN : m <= L ? B2 : BOUT;
        int l = m >= 1 && m <= L ? m - 1 : 0; // the layer of the slices
        for (int t = first; t <= last; t++, n++) {
            model->slice_sizes[t] = model->param_sizes[t] / (size_t)(param_stacked[t] ? L : 1);
            model->ztensor[t * L + l] = n;
            model->zslice[n][0] = t;
            model->zslice[n][1] = l;
            if (param_stacked[t])
                snprintf(names[n], sizeof(names[n]), "layers.%d.%s", l, param_names[t]);
            else
                snprintf(names[n], sizeof(names[n]), "%s", param_names[t]);
            zero_tensor *zt = &tensors[n];
            zt->name = names[n];
            zt->numel = model->slice_sizes[t];
            zt->module = m;
            zt->ndim = slice_shape(&model->config, t, zt->shape);
            zt->group = param_decay[t] ? GROUP_DECAY : GROUP_NO_DECAY;
            zt->init_fn = init_slice; /* libzero: [init] no init array: each rank fills its shard */
            zt->init_user = model;
        }
    }
    /* libzero: [step] AdamW's hyperparameters, per group (lr: the schedule sets it every step) */
    zero_group groups[NUM_GROUPS] = {ZERO_GROUP_INIT, ZERO_GROUP_INIT};
    for (int g = 0; g < NUM_GROUPS; g++) {
        groups[g].lr = opt->lr;
        groups[g].beta1 = opt->beta1;
        groups[g].beta2 = opt->beta2;
        groups[g].eps = opt->eps;
    }
    groups[GROUP_DECAY].name = "decay";
    groups[GROUP_DECAY].weight_decay = opt->weight_decay;
    groups[GROUP_NO_DECAY].name = "no_decay";
    groups[GROUP_NO_DECAY].weight_decay = 0.0;
    zero_config cfg; /* libzero: [setup] stage, dtype, buffers: defaults, then ZERO_* variables */
    zero_config_init(&cfg);
    cfg.device = ZERO_DEVICE_HOST; // the model's kernels are CPU code
    cfg.grad_accum = opt->accum;   /* libzero: [step] micro-steps per zero_step update */
    cfg.groups = groups;           /* libzero: [step] */
    cfg.num_groups = NUM_GROUPS;
    zero_status st = zero_init(&model->z, &cfg, tensors, n); /* libzero: [registration] */
    free(names);
    free(tensors);
    if (st != ZERO_OK) {
        fprintf(stderr, "stacked: zero_init failed: %s: %s\n", zero_status_string(st),
                zero_init_error());
        return -1;
    }
    if (zero_get_config(model->z)->device != ZERO_DEVICE_HOST) { /* libzero: [setup] */
        fprintf(stderr, "stacked: the model computes on the CPU: ZERO_DEVICE must be host\n");
        return -1;
    }
    /* libzero: [precision] bf16/fp16: the fp32 views of one slice per tensor */
    model->dtype = zero_get_config(model->z)->dtype;
    if (model->dtype != ZERO_DTYPE_FP32) {
        size_t total = 0;
        for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) total += model->slice_sizes[t];
        float *it = model->view_memory = malloc(2 * total * sizeof(float));
        if (it == NULL) {
            fprintf(stderr, "stacked: out of memory\n");
            return -1;
        }
        for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
            model->pview[t] = it;
            model->gview[t] = it + model->slice_sizes[t];
            it += 2 * model->slice_sizes[t];
        }
    }
    return 0;
}

/* libzero: [setup] a failed zero_* call in main: its message, then out */
#define ZCHECK(call)                                                                              \
    do {                                                                                          \
        zero_status s_ = (call);                                                                  \
        if (s_ != ZERO_OK) {                                                                      \
            fprintf(stderr, "stacked: rank %d: %s: %s: %s\n", zero_rank(model.z), #call,        \
                    zero_status_string(s_), zero_last_error(model.z));                            \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

// ----------------------------------------------------------------------------

int main(int argc, char **argv) {
    Options opt;
    int pa = parse_args(argc, argv, &opt);
    if (pa) {
        usage(pa == 1 ? stdout : stderr);
        return pa == 1 ? 0 : 2;
    }
    const Config config = opt.config;
    int exit_code = 1;
    float *inp = NULL; // (B, D) a batch's input rows
    int *targets = NULL; // (B) their labels

    Model model;
    if (model_build(&model, &config)) {
        fprintf(stderr, "stacked: out of memory\n");
        goto fail;
    }
    /* libzero: [init] no model_init_params: zero_init fills each rank's shard with init_slice */
    if (model_register(&model, &opt)) goto fail; /* libzero: [registration] */
    zero_ctx *z = model.z;                        /* libzero: [setup] */

    /* libzero: [data] each rank takes B = batch / world rows of every batch, from row0 */
    const int rank = zero_rank(z), world = zero_world_size(z);
    if (opt.batch % world != 0) {
        fprintf(stderr, "stacked: --batch %d is not a multiple of %d ranks\n", opt.batch, world);
        goto fail;
    }
    const int B = opt.batch / world, accum = zero_get_config(z)->grad_accum; // (ZERO_GRAD_ACCUM)
    const int64_t row0 = (int64_t)rank * B;
    inp = malloc((size_t)B * config.D * sizeof(float));
    targets = malloc((size_t)B * sizeof(int));
    if (model_alloc_acts(&model, B) || !inp || !targets) {
        fprintf(stderr, "stacked: out of memory\n");
        goto fail;
    }
    if (rank == 0) { /* libzero: [output] rank 0 prints */
        printf("stacked: L %d, C %d, H %d, D %d, K %d: %zu parameters | batch %d, accum %d, "
               "%d steps\n", config.L, config.C, config.H, config.D, config.K, model.num_parameters,
               opt.batch, accum, opt.steps);
        printf("libzero: %d rank(s), stage %d, %d zero tensors in %d modules\n", world,
               zero_get_config(z)->stage, zero_num_tensors(z), zero_num_modules(z));
    }

    for (int step = 0; step <= opt.steps; step++) {
        int last_step = step == opt.steps;

        // once in a while, the loss on the validation batch (always the same rows)
        if (step % opt.val_every == 0 || last_step) {
            ZCHECK(zero_eval_begin(z)); /* libzero: [eval] a forward only; not in stage 3's order */
            get_batch(opt.seed, RNG_VAL, 0, row0, B, &config, inp, targets);
            ZCHECK(model_forward(&model, inp, targets, B)); /* libzero: [setup] */
            ZCHECK(zero_eval_end(z));                       /* libzero: [eval] */
            double val_loss = model.mean_loss;
            ZCHECK(zero_allreduce_sum(z, &val_loss, 1)); /* libzero: [output] the ranks' mean */
            val_loss /= world;
            if (rank == 0) printf("val loss %.9g\n", val_loss);
        }
        if (last_step) break;

        // a training step: accum micro-batches of B rows, their gradients summed, then AdamW
        float lr = get_lr(step, opt.steps, opt.warmup, opt.lr, opt.lr_min);
        for (int g = 0; g < NUM_GROUPS; g++) /* libzero: [schedule] every group's lr */
            ZCHECK(zero_set_lr(z, g, lr));
        double step_loss = 0.0;
        /* libzero: [grads] no model_zero_grad (libzero zeroes them) */
        for (int micro = 0; micro < accum; micro++) {
            get_batch(opt.seed, RNG_TRAIN, (int64_t)step * accum + micro, row0, B, &config, inp,
                      targets);
            ZCHECK(model_forward(&model, inp, targets, B)); /* libzero: [setup] */
            // the loss of the step is the mean over all the rows of its micro-batches
            /* libzero: [grads] libzero averages the gradients over ranks and micro-steps: the loss
             * is the mean over this rank's B rows (times the fp16 loss scale) */
            ZCHECK(model_backward(&model, inp, targets, B, zero_loss_scale(z) / (float)B));
            step_loss += model.mean_loss;
            ZCHECK(zero_step(z)); /* libzero: [step] every micro-step; AdamW after the last */
        }
        step_loss /= accum;
        /* libzero: [step] no model_update: AdamW ran in the last zero_step */

        ZCHECK(zero_allreduce_sum(z, &step_loss, 1)); /* libzero: [output] the ranks' mean */
        step_loss /= world;
        if (rank == 0)
            printf("step %3d/%d | loss %.9g | lr %.4e\n", step + 1, opt.steps, step_loss, lr);
    }
    if (opt.export_path) ZCHECK(zero_export(z, opt.export_path)); /* libzero: [output] */
    exit_code = 0;

fail:
    if (model.z && zero_finalize(model.z) != ZERO_OK) { /* libzero: [setup] */
        fprintf(stderr, "stacked: zero_finalize: %s\n", zero_init_error());
        exit_code = 1;
    }
    model_free(&model);
    free(targets);
    free(inp);
    return exit_code;
}
