/* model.h — a small tanh MLP regressor written the way standalone C models are (llm.c style):
 * parameters in one flat fp32 array, its own forward and backward over plain float arrays, and
 * synthetic data from a fixed random "teacher" network. Nothing here knows about libzero;
 * mlp.c wraps it. */
#ifndef ZERO_EXAMPLE_MLP_MODEL_H
#define ZERO_EXAMPLE_MLP_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* Architecture: input dim = width W; `layers` hidden layers Linear(W, W) + tanh; then the head
 * Linear(W, 1). Layer l in [0, layers] is one module for libzero; layer `layers` is the head. */
typedef struct mlp_config {
    int layers; /* L: number of hidden layers, >= 1 */
    int width;  /* W: input and hidden width, >= 1 */
} mlp_config;

/* One Linear layer: y = x w^T + b. */
typedef struct mlp_linear {
    float *w; /* (out, in), row-major, PyTorch's nn.Linear layout */
    float *b; /* (out) */
    int in;   /* W */
    int out;  /* W for a hidden layer, 1 for the head */
} mlp_linear;

/* The parameters: pointers into ONE flat array, laid out layer by layer as w0 b0 w1 b1 ... */
typedef struct mlp_params {
    int num_layers;     /* L + 1 (hidden layers plus the head) */
    mlp_linear *layer;  /* (L + 1) */
    float *memory;      /* (numel) the flat array every w/b points into */
    size_t numel;       /* total parameter count, elements */
} mlp_params;

/* Activations of one (micro-)batch of B rows, kept for backward. */
typedef struct mlp_acts {
    int rows;   /* B: rows per batch */
    int width;  /* W */
    int layers; /* L */
    float *h;   /* (L + 1, B, W): h[0] = input, h[l + 1] = tanh output of hidden layer l */
    float *y;   /* (B) prediction of the head */
    float *dy;  /* (B) d loss / d y, already multiplied by the loss scale */
    float *dh;  /* (2, B, W) ping-pong buffers for d loss / d h during backward */
} mlp_acts;

/* The teacher that defines the regression target: t = v . tanh(A x + c) + d. */
typedef struct mlp_teacher {
    int width;  /* W: input width */
    int hidden; /* H */
    float *a;   /* (H, W) */
    float *c;   /* (H) */
    float *v;   /* (H) */
    float d;    /* scalar output bias */
} mlp_teacher;

/* ---- counter-based RNG: every value is a pure function of its key, so each rank can generate
 * exactly the rows it owns and every world size sees the same global data. */
uint64_t mlp_rng_key(uint64_t key, uint64_t counter);     /* extends a key by one counter */
float mlp_rng_uniform(uint64_t key);                      /* [-1, 1) */

/* ---- parameters ---- */
size_t mlp_layer_weight_numel(const mlp_config *cfg, int l); /* out * in of layer l */
size_t mlp_layer_bias_numel(const mlp_config *cfg, int l);   /* out of layer l */
/* Allocates the flat array and points every layer into it. Returns 0, or -1 when out of memory. */
int mlp_params_alloc(mlp_params *p, const mlp_config *cfg);
/* PyTorch nn.Linear's default: w, b ~ U(-1/sqrt(in), 1/sqrt(in)), keyed by (seed, flat index). */
void mlp_params_init(mlp_params *p, uint64_t seed);
void mlp_params_free(mlp_params *p);

/* ---- activations ---- */
int mlp_acts_alloc(mlp_acts *a, const mlp_config *cfg, int rows); /* 0, or -1 out of memory */
void mlp_acts_free(mlp_acts *a);
/* h[l] (B, W): the input of layer l (h[0] is the batch input). */
static inline float *mlp_acts_h(const mlp_acts *a, int l) {
    return a->h + (size_t)l * (size_t)a->rows * (size_t)a->width;
}
/* dh[k] (B, W), k = 0 or 1. */
static inline float *mlp_acts_dh(const mlp_acts *a, int k) {
    return a->dh + (size_t)k * (size_t)a->rows * (size_t)a->width;
}

/* The buffers layer l reads and writes inside the activations, forward and backward. */
typedef struct mlp_layer_io {
    float *x;  /* (B, in)  input: h[l] */
    float *y;  /* (B, out) output: h[l + 1], or a->y for the head */
    float *dy; /* (B, out) d loss / d output: a dh buffer, or a->dy for the head */
    float *dx; /* (B, in)  d loss / d input: the other dh buffer; NULL for layer 0 */
} mlp_layer_io;
mlp_layer_io mlp_acts_layer(const mlp_acts *a, int l);

/* ---- data ---- */
int mlp_teacher_init(mlp_teacher *t, int width, uint64_t seed);
void mlp_teacher_free(mlp_teacher *t);
/* Rows [row0, row0 + rows) of the global batch of (step, micro): x (rows, W) and the teacher's
 * target (rows). */
void mlp_data(const mlp_teacher *t, uint64_t seed, int64_t step, int micro, int64_t row0, int rows,
              float *x, float *target);

/* ---- forward / backward of one layer, over plain float arrays ---- */
/* y (B, out) = x (B, in) w^T + b, then tanh in place when act_tanh. */
void mlp_linear_forward(float *y, const float *x, const float *w, const float *b, int rows, int in,
                        int out, int act_tanh);
/* Backward of one layer. dy (B, out) is d loss / d (layer output); when act_tanh, y (B, out) is the
 * tanh output and dy is overwritten with d loss / d (pre-activation). dw (out, in) and db (out)
 * are OVERWRITTEN with this batch's gradient; dx (B, in) too, unless dx is NULL (first layer). */
void mlp_linear_backward(float *dx, float *dw, float *db, float *dy, const float *y, const float *x,
                         const float *w, int rows, int in, int out, int act_tanh);

/* Mean squared error over `rows` rows: returns mean((y - t)^2) and writes
 * dy = scale * 2 (y - t) / rows. */
float mlp_mse_loss(float *dy, const float *y, const float *target, int rows, float scale);

/* ---- the whole model in one call (what a standalone trainer would run; --gradcheck uses it) */
/* Forward of a->rows rows from h[0] (the caller writes the input there); returns the mean loss
 * and leaves d loss / d y (times scale) in a->dy. */
float mlp_forward(const mlp_params *p, mlp_acts *a, const float *target, float scale);
/* Backward after mlp_forward: OVERWRITES grads (same config and layout as p) with the gradient. */
void mlp_backward(const mlp_params *p, mlp_params *grads, mlp_acts *a);

#endif /* ZERO_EXAMPLE_MLP_MODEL_H */
