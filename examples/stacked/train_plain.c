/* train_plain.c — stacked-plain: a small residual-MLP classifier trained in plain C, written the
 * way llm.c's train_gpt2.c is: the parameters live in ONE flat fp32 array, the per-layer tensors
 * are STACKED as (L, ...) with pointers into it, and the program has its own forward, backward,
 * AdamW, warmup + cosine learning rate and synthetic data (a pure function of seed, step and row).
 * No MPI, no libzero: train_zero.c is this file ported to libzero, docs/PORTING.md walks the diff.
 *
 * The model, on rows of D input features, K classes:
 *   x_0     = win inp + bin                                           (B, C)
 *   x_{l+1} = x_l + w2[l] gelu(w1[l] ln(x_l; ln_w[l], ln_b[l]) + b1[l]) + b2[l]    l < L
 *   logits  = wout ln(x_L; lnf_w, lnf_b) + bout                        (B, K)
 *   loss    = mean over the rows of the cross-entropy of softmax(logits)
 *
 *   stacked-plain [--layers L] [--width C] [--hidden H] [--batch B] [--steps N] ...   (--help)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

// allocates one flat array for all the tensors and points the struct's members into it
static float *malloc_and_point_parameters(ParameterTensors *params, const size_t *param_sizes) {
    size_t num_parameters = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) num_parameters += param_sizes[t];
    float *params_memory = calloc(num_parameters, sizeof(float));
    if (params_memory == NULL) return NULL;
    float **ptrs[NUM_PARAMETER_TENSORS] = {
        &params->win, &params->bin, &params->ln_w, &params->ln_b, &params->w1,    &params->b1,
        &params->w2,  &params->b2,  &params->lnf_w, &params->lnf_b, &params->wout, &params->bout};
    float *it = params_memory;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        *(ptrs[t]) = it;
        it += param_sizes[t];
    }
    return params_memory;
}

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
    ParameterTensors params;                   // pointers into params_memory
    float *params_memory;                      // (num_parameters)
    ParameterTensors grads;                    // pointers into grads_memory
    float *grads_memory;                       // (num_parameters)
    float *m_memory;                           // (num_parameters) AdamW first moment
    float *v_memory;                           // (num_parameters) AdamW second moment
    ActivationTensors acts;
    float *acts_memory;
    GradActivations grads_acts;
    float *grads_acts_memory;
    int batch_size;  // B: rows the activations hold
    float mean_loss; // of the last forward
} Model;

static void model_free(Model *model) {
    free(model->params_memory);
    free(model->grads_memory);
    free(model->m_memory);
    free(model->v_memory);
    free(model->acts_memory);
    free(model->grads_acts_memory);
    memset(model, 0, sizeof(*model));
}

// the parameters, their gradients and AdamW's moments; 0, or -1 when out of memory
static int model_build(Model *model, const Config *config) {
    memset(model, 0, sizeof(*model));
    model->config = *config;
    fill_in_parameter_sizes(model->param_sizes, config);
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) model->num_parameters += model->param_sizes[t];
    model->params_memory = malloc_and_point_parameters(&model->params, model->param_sizes);
    model->grads_memory = malloc_and_point_parameters(&model->grads, model->param_sizes);
    model->m_memory = calloc(model->num_parameters, sizeof(float));
    model->v_memory = calloc(model->num_parameters, sizeof(float));
    if (!model->params_memory || !model->grads_memory || !model->m_memory || !model->v_memory)
        return -1;
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

// every element of every tensor from init_value (the same model whatever the layout)
static void model_init_params(Model *model, uint64_t seed) {
    size_t offset = 0;
    for (int t = 0; t < NUM_PARAMETER_TENSORS; t++) {
        for (size_t i = 0; i < model->param_sizes[t]; i++)
            model->params_memory[offset + i] = init_value(&model->config, seed, t, i);
        offset += model->param_sizes[t];
    }
}

// forward of B rows inp (B, D) with labels targets (B); sets model->mean_loss
static void model_forward(Model *model, const float *inp, const int *targets, int B) {
    const int D = model->config.D, C = model->config.C, H = model->config.H;
    const int K = model->config.K, L = model->config.L;
    ParameterTensors params = model->params;
    ActivationTensors acts = model->acts;

    matmul_forward(acts.x, inp, params.win, params.bin, B, D, C);
    for (int l = 0; l < L; l++) {
        float *residual = acts.x + (size_t)l * B * C;
        // this layer's slices of the stacked weights
        float *l_ln_w = params.ln_w + (size_t)l * C;
        float *l_ln_b = params.ln_b + (size_t)l * C;
        float *l_w1 = params.w1 + (size_t)l * H * C;
        float *l_b1 = params.b1 + (size_t)l * H;
        float *l_w2 = params.w2 + (size_t)l * C * H;
        float *l_b2 = params.b2 + (size_t)l * C;
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
    }
    float *x_L = acts.x + (size_t)L * B * C;
    layernorm_forward(acts.lnf, acts.lnf_mean, acts.lnf_rstd, x_L, params.lnf_w, params.lnf_b, B,
                      C);
    matmul_forward(acts.logits, acts.lnf, params.wout, params.bout, B, C, K);
    softmax_forward(acts.probs, acts.logits, B, K);
    model->mean_loss = crossentropy_forward(acts.probs, targets, B, K);
}

static void model_zero_grad(Model *model) {
    memset(model->grads_memory, 0, model->num_parameters * sizeof(float));
}

// backward after model_forward of the same rows: ADDS d (dloss * the sum of the rows' losses) /
// d params into the gradients
static void model_backward(Model *model, const float *inp, const int *targets, int B, float dloss) {
    const int D = model->config.D, C = model->config.C, H = model->config.H;
    const int K = model->config.K, L = model->config.L;
    ParameterTensors params = model->params, grads = model->grads;
    ActivationTensors acts = model->acts;
    GradActivations ga = model->grads_acts;

    crossentropy_softmax_backward(ga.dlogits, acts.probs, targets, dloss, B, K);
    memset(ga.dlnf, 0, (size_t)B * C * sizeof(float));
    matmul_backward(ga.dlnf, grads.wout, grads.bout, ga.dlogits, acts.lnf, params.wout, B, C, K);
    memset(ga.dres, 0, (size_t)B * C * sizeof(float));
    float *x_L = acts.x + (size_t)L * B * C;
    layernorm_backward(ga.dres, grads.lnf_w, grads.lnf_b, ga.dlnf, x_L, params.lnf_w,
                       acts.lnf_mean, acts.lnf_rstd, B, C);
    for (int l = L - 1; l >= 0; l--) {
        // ga.dres holds d loss / d x_{l+1}: the gradient of the MLP branch's output too
        float *residual = acts.x + (size_t)l * B * C;
        float *l_ln_w = params.ln_w + (size_t)l * C;
        float *l_w1 = params.w1 + (size_t)l * H * C;
        float *l_w2 = params.w2 + (size_t)l * C * H;
        // and of their gradients, which backward adds into
        float *dl_ln_w = grads.ln_w + (size_t)l * C;
        float *dl_ln_b = grads.ln_b + (size_t)l * C;
        float *dl_w1 = grads.w1 + (size_t)l * H * C;
        float *dl_b1 = grads.b1 + (size_t)l * H;
        float *dl_w2 = grads.w2 + (size_t)l * C * H;
        float *dl_b2 = grads.b2 + (size_t)l * C;
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
    }
    matmul_backward(NULL, grads.win, grads.bin, ga.dres, inp, params.win, B, D, C);
}

// AdamW, PyTorch's formula (decoupled weight decay, bias correction) over the flat array, tensor
// by tensor (no decay where param_decay says so). t is the 1-based step. It computes what
// torch.optim.AdamW computes for fp32 (and libzero, kernels/zero_math.h), so the two trainers
// agree to the bit: the scalars in double from the hyperparameters (Python floats in torch), each
// rounded to float once; then per element torch's operations in its order, with the fmas of its
// CPU kernels (lerp for m, mul then addcmul for v).
static void model_update(Model *model, float learning_rate, float beta1, float beta2, float eps,
                         float weight_decay, int t) {
    double bias_corr1 = 1.0 - pow((double)beta1, (double)t);
    float bias_corr2_sqrt = (float)pow(1.0 - pow((double)beta2, (double)t), 0.5);
    float step_size = (float)((double)learning_rate / bias_corr1);
    float w = (float)(1.0 - (double)beta1);        // the lerp weight
    float one_minus_beta2 = (float)(1.0 - (double)beta2);
    size_t offset = 0;
    for (int k = 0; k < NUM_PARAMETER_TENSORS; k++) {
        double wd = param_decay[k] ? (double)weight_decay : 0.0;
        float decay = (float)(1.0 - (double)learning_rate * wd);
        for (size_t i = offset; i < offset + model->param_sizes[k]; i++) {
            float grad = model->grads_memory[i];
            float param = model->params_memory[i] * decay;
            float m0 = model->m_memory[i];
            float m = w < 0.5f ? fmaf(w, grad - m0, m0) : fmaf(w - 1.0f, grad - m0, grad);
            float v = fmaf(one_minus_beta2 * grad, grad, model->v_memory[i] * beta2);
            model->m_memory[i] = m;
            model->v_memory[i] = v;
            model->params_memory[i] = param - (step_size * m) / (sqrtf(v) / bias_corr2_sqrt + eps);
        }
        offset += model->param_sizes[k];
    }
}

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
} Options;

static void usage(FILE *f) {
    fprintf(f, "usage: stacked-plain [--layers L] [--width C] [--hidden H] [--inputs D] "
               "[--classes K]\n"
               "         [--batch B] [--accum A] [--steps N] [--warmup W] [--lr X] [--lr-min X]\n"
               "         [--wd X] [--eps X] [--val-every N] [--seed S]\n"
               "defaults: L 4, C 32, H 64, D 16, K 8, B 16, A 1, N 30, W 5, lr 3e-3, lr-min "
               "3e-4, wd 0.1,\n"
               "          eps 1e-8, val-every 10, seed 1337\n");
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
        else {
            fprintf(stderr, "stacked: bad option or value: %s %s\n", a, v);
            return 2;
        }
    }
    if (o->steps > 0 && o->warmup >= o->steps) o->warmup = o->steps - 1; // the cosine needs one
    return 0;
}

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
    model_init_params(&model, opt.seed);

    const int B = opt.batch, accum = opt.accum; // rows and micro-steps of an optimizer step
    const int64_t row0 = 0; // this process trains on rows [row0, row0 + B) of every batch: all
    inp = malloc((size_t)B * config.D * sizeof(float));
    targets = malloc((size_t)B * sizeof(int));
    if (model_alloc_acts(&model, B) || !inp || !targets) {
        fprintf(stderr, "stacked: out of memory\n");
        goto fail;
    }
    printf("stacked: L %d, C %d, H %d, D %d, K %d: %zu parameters | batch %d, accum %d, "
           "%d steps\n", config.L, config.C, config.H, config.D, config.K, model.num_parameters,
           opt.batch, accum, opt.steps);

    for (int step = 0; step <= opt.steps; step++) {
        int last_step = step == opt.steps;

        // once in a while, the loss on the validation batch (always the same rows)
        if (step % opt.val_every == 0 || last_step) {
            get_batch(opt.seed, RNG_VAL, 0, row0, B, &config, inp, targets);
            model_forward(&model, inp, targets, B);
            double val_loss = model.mean_loss;
            printf("val loss %.9g\n", val_loss);
        }
        if (last_step) break;

        // a training step: accum micro-batches of B rows, their gradients summed, then AdamW
        float lr = get_lr(step, opt.steps, opt.warmup, opt.lr, opt.lr_min);
        double step_loss = 0.0;
        model_zero_grad(&model);
        for (int micro = 0; micro < accum; micro++) {
            get_batch(opt.seed, RNG_TRAIN, (int64_t)step * accum + micro, row0, B, &config, inp,
                      targets);
            model_forward(&model, inp, targets, B);
            // the loss of the step is the mean over all the rows of its micro-batches
            model_backward(&model, inp, targets, B, 1.0f / (float)(B * accum));
            step_loss += model.mean_loss;
        }
        step_loss /= accum;
        model_update(&model, lr, opt.beta1, opt.beta2, opt.eps, opt.weight_decay, step + 1);

        printf("step %3d/%d | loss %.9g | lr %.4e\n", step + 1, opt.steps, step_loss, lr);
    }
    exit_code = 0;

fail:
    model_free(&model);
    free(targets);
    free(inp);
    return exit_code;
}
