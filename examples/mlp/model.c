/* model.c — the standalone MLP: parameter layout and init, synthetic teacher data, forward and
 * backward in plain C with OpenMP. Independent of libzero (see mlp.c for the wrapping). */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Below this many multiply-adds a layer runs on one thread: forking a team costs more than the
 * work, and ranks started by mpirun often share cores. */
#define MLP_OMP_MIN_WORK ((size_t)1 << 15)

/* Key domains, so parameters, teacher and data never draw from the same stream. */
enum { MLP_RNG_INIT = 1, MLP_RNG_TEACHER = 2, MLP_RNG_DATA = 3 };

/* Width of the teacher's hidden layer: small, so the student (wider, deeper) can fit it. */
#define MLP_TEACHER_HIDDEN 32
/* Gain of the teacher's first layer: pre-activations have standard deviation ~ this, enough to
 * bend tanh without saturating it. */
#define MLP_TEACHER_GAIN 1.5f

/* ---- counter-based RNG ------------------------------------------------------------------- */

/* splitmix64's finaliser: a bijection of 64-bit words with good avalanche. */
static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t mlp_rng_key(uint64_t key, uint64_t counter) { return mix64(key ^ mix64(counter)); }

float mlp_rng_uniform(uint64_t key) {
    /* top 24 bits -> [0, 1) exactly representable in fp32, then [-1, 1) */
    float u = (float)(key >> 40) * (1.0f / 16777216.0f);
    return 2.0f * u - 1.0f;
}

/* ---- parameters --------------------------------------------------------------------------- */

static int layer_out(const mlp_config *cfg, int l) { return l < cfg->layers ? cfg->width : 1; }

size_t mlp_layer_weight_numel(const mlp_config *cfg, int l) {
    return (size_t)layer_out(cfg, l) * (size_t)cfg->width;
}

size_t mlp_layer_bias_numel(const mlp_config *cfg, int l) { return (size_t)layer_out(cfg, l); }

int mlp_params_alloc(mlp_params *p, const mlp_config *cfg) {
    memset(p, 0, sizeof(*p));
    if (cfg->layers < 0 || cfg->width < 1) return -1;
    p->num_layers = cfg->layers + 1;
    for (int l = 0; l < p->num_layers; l++)
        p->numel += mlp_layer_weight_numel(cfg, l) + mlp_layer_bias_numel(cfg, l);
    p->layer = calloc((size_t)p->num_layers, sizeof(*p->layer));
    p->memory = calloc(p->numel, sizeof(float));
    if (!p->layer || !p->memory) {
        mlp_params_free(p);
        return -1;
    }
    /* carve the flat array: w0 (W, W) b0 (W) ... w{L-1} (W, W) b{L-1} (W) wL (1, W) bL (1) */
    float *cursor = p->memory;
    for (int l = 0; l < p->num_layers; l++) {
        mlp_linear *ly = &p->layer[l];
        ly->in = cfg->width;
        ly->out = layer_out(cfg, l);
        ly->w = cursor;
        cursor += mlp_layer_weight_numel(cfg, l);
        ly->b = cursor;
        cursor += mlp_layer_bias_numel(cfg, l);
    }
    return 0;
}

void mlp_params_init(mlp_params *p, uint64_t seed) {
    uint64_t key = mlp_rng_key(seed, MLP_RNG_INIT);
    for (int l = 0; l < p->num_layers; l++) {
        mlp_linear *ly = &p->layer[l];
        float bound = 1.0f / sqrtf((float)ly->in);
        size_t nw = (size_t)ly->out * (size_t)ly->in;
        /* keyed by the flat index, so the values do not depend on how the loop is split */
        for (size_t i = 0; i < nw; i++)
            ly->w[i] = bound * mlp_rng_uniform(mlp_rng_key(key, (uint64_t)(ly->w - p->memory) + i));
        for (int o = 0; o < ly->out; o++)
            ly->b[o] = bound * mlp_rng_uniform(mlp_rng_key(key, (uint64_t)(ly->b - p->memory) + o));
    }
}

void mlp_params_free(mlp_params *p) {
    free(p->layer);
    free(p->memory);
    memset(p, 0, sizeof(*p));
}

/* ---- activations -------------------------------------------------------------------------- */

int mlp_acts_alloc(mlp_acts *a, const mlp_config *cfg, int rows) {
    memset(a, 0, sizeof(*a));
    size_t bw = (size_t)rows * (size_t)cfg->width;
    a->rows = rows;
    a->width = cfg->width;
    a->layers = cfg->layers;
    a->h = malloc((size_t)(cfg->layers + 1) * bw * sizeof(float));
    a->y = malloc((size_t)rows * sizeof(float));
    a->dy = malloc((size_t)rows * sizeof(float));
    a->dh = malloc(2 * bw * sizeof(float));
    if (!a->h || !a->y || !a->dy || !a->dh) {
        mlp_acts_free(a);
        return -1;
    }
    return 0;
}

void mlp_acts_free(mlp_acts *a) {
    free(a->h);
    free(a->y);
    free(a->dy);
    free(a->dh);
    memset(a, 0, sizeof(*a));
}

/* ---- data --------------------------------------------------------------------------------- */

int mlp_teacher_init(mlp_teacher *t, int width, uint64_t seed) {
    memset(t, 0, sizeof(*t));
    t->width = width;
    t->hidden = MLP_TEACHER_HIDDEN;
    t->a = malloc((size_t)t->hidden * (size_t)width * sizeof(float));
    t->c = malloc((size_t)t->hidden * sizeof(float));
    t->v = malloc((size_t)t->hidden * sizeof(float));
    if (!t->a || !t->c || !t->v) {
        mlp_teacher_free(t);
        return -1;
    }
    /* x has unit variance per feature, so A ~ U * gain * sqrt(3 / W) gives A x a std of ~gain;
     * v ~ U * sqrt(3 / H) keeps the target's std below 1. */
    uint64_t key = mlp_rng_key(seed, MLP_RNG_TEACHER);
    float sa = MLP_TEACHER_GAIN * sqrtf(3.0f / (float)width);
    float sv = sqrtf(3.0f / (float)t->hidden);
    size_t n = 0;
    for (size_t i = 0; i < (size_t)t->hidden * (size_t)width; i++)
        t->a[i] = sa * mlp_rng_uniform(mlp_rng_key(key, n++));
    for (int k = 0; k < t->hidden; k++) t->c[k] = 0.5f * mlp_rng_uniform(mlp_rng_key(key, n++));
    for (int k = 0; k < t->hidden; k++) t->v[k] = sv * mlp_rng_uniform(mlp_rng_key(key, n++));
    t->d = 0.5f * mlp_rng_uniform(mlp_rng_key(key, n++));
    return 0;
}

void mlp_teacher_free(mlp_teacher *t) {
    free(t->a);
    free(t->c);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

void mlp_data(const mlp_teacher *t, uint64_t seed, int64_t step, int micro, int64_t row0, int rows,
              float *x, float *target) {
    const int W = t->width;
    uint64_t key = mlp_rng_key(mlp_rng_key(mlp_rng_key(seed, MLP_RNG_DATA), (uint64_t)step),
                               (uint64_t)micro);
#pragma omp parallel for if ((size_t)rows * (size_t)W * (size_t)t->hidden > MLP_OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        /* the row's key uses its GLOBAL index: the same row whichever rank generates it */
        uint64_t rkey = mlp_rng_key(key, (uint64_t)(row0 + r));
        float *xr = x + (size_t)r * (size_t)W;
        for (int j = 0; j < W; j++) xr[j] = 1.7320508f * mlp_rng_uniform(mlp_rng_key(rkey, (uint64_t)j));
        float out = t->d;
        for (int k = 0; k < t->hidden; k++) {
            const float *ak = t->a + (size_t)k * (size_t)W;
            float s = t->c[k];
            for (int j = 0; j < W; j++) s += ak[j] * xr[j];
            out += t->v[k] * tanhf(s);
        }
        target[r] = out;
    }
}

/* ---- one layer ---------------------------------------------------------------------------- */

void mlp_linear_forward(float *y, const float *x, const float *w, const float *b, int rows, int in,
                        int out, int act_tanh) {
#pragma omp parallel for collapse(2) if ((size_t)rows * (size_t)in * (size_t)out > MLP_OMP_MIN_WORK)
    for (int r = 0; r < rows; r++) {
        for (int o = 0; o < out; o++) {
            const float *xr = x + (size_t)r * (size_t)in;
            const float *wo = w + (size_t)o * (size_t)in;
            float s = b[o];
            for (int i = 0; i < in; i++) s += xr[i] * wo[i];
            y[(size_t)r * (size_t)out + o] = act_tanh ? tanhf(s) : s;
        }
    }
}

void mlp_linear_backward(float *dx, float *dw, float *db, float *dy, const float *y, const float *x,
                         const float *w, int rows, int in, int out, int act_tanh) {
    const int par = (size_t)rows * (size_t)in * (size_t)out > MLP_OMP_MIN_WORK;
    if (act_tanh) {
        /* through tanh: d pre = d y * (1 - y^2) */
        for (size_t k = 0; k < (size_t)rows * (size_t)out; k++) dy[k] *= 1.0f - y[k] * y[k];
    }
    /* dw (out, in) = dy^T x, db (out) = column sums of dy: each thread owns output features */
#pragma omp parallel for if (par)
    for (int o = 0; o < out; o++) {
        float *dwo = dw + (size_t)o * (size_t)in;
        float dbo = 0.0f;
        for (int i = 0; i < in; i++) dwo[i] = 0.0f;
        for (int r = 0; r < rows; r++) {
            float d = dy[(size_t)r * (size_t)out + o];
            const float *xr = x + (size_t)r * (size_t)in;
            for (int i = 0; i < in; i++) dwo[i] += d * xr[i];
            dbo += d;
        }
        db[o] = dbo;
    }
    if (!dx) return;
    /* dx (B, in) = dy w: each thread owns batch rows */
#pragma omp parallel for if (par)
    for (int r = 0; r < rows; r++) {
        float *dxr = dx + (size_t)r * (size_t)in;
        for (int i = 0; i < in; i++) dxr[i] = 0.0f;
        for (int o = 0; o < out; o++) {
            float d = dy[(size_t)r * (size_t)out + o];
            const float *wo = w + (size_t)o * (size_t)in;
            for (int i = 0; i < in; i++) dxr[i] += d * wo[i];
        }
    }
}

float mlp_mse_loss(float *dy, const float *y, const float *target, int rows, float scale) {
    double sum = 0.0;
    float g = 2.0f * scale / (float)rows;
    for (int r = 0; r < rows; r++) {
        float e = y[r] - target[r];
        sum += (double)e * (double)e;
        dy[r] = g * e;
    }
    return (float)(sum / rows);
}

/* ---- the whole model ---------------------------------------------------------------------- */

mlp_layer_io mlp_acts_layer(const mlp_acts *a, int l) {
    /* d h[l] lives in dh[l % 2]: layer l reads dh[(l + 1) % 2] and writes dh[l % 2] */
    mlp_layer_io io;
    io.x = mlp_acts_h(a, l);
    io.y = l < a->layers ? mlp_acts_h(a, l + 1) : a->y;
    io.dy = l < a->layers ? mlp_acts_dh(a, (l + 1) % 2) : a->dy;
    io.dx = l > 0 ? mlp_acts_dh(a, l % 2) : NULL;
    return io;
}

float mlp_forward(const mlp_params *p, mlp_acts *a, const float *target, float scale) {
    for (int l = 0; l < p->num_layers; l++) {
        const mlp_linear *ly = &p->layer[l];
        mlp_layer_io io = mlp_acts_layer(a, l);
        mlp_linear_forward(io.y, io.x, ly->w, ly->b, a->rows, ly->in, ly->out, l < a->layers);
    }
    return mlp_mse_loss(a->dy, a->y, target, a->rows, scale);
}

void mlp_backward(const mlp_params *p, mlp_params *grads, mlp_acts *a) {
    for (int l = p->num_layers - 1; l >= 0; l--) {
        const mlp_linear *ly = &p->layer[l];
        mlp_layer_io io = mlp_acts_layer(a, l);
        mlp_linear_backward(io.dx, grads->layer[l].w, grads->layer[l].b, io.dy, io.y, io.x, ly->w,
                            a->rows, ly->in, ly->out, l < a->layers);
    }
}
