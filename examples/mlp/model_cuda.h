/* model_cuda.h — the MLP of model.h on a GPU: the same layers, loss and layouts, with cuBLAS
 * GEMMs (fp32 arithmetic) and small kernels for bias, tanh, the loss and the working-precision
 * conversions. Used by mlp.c when libzero runs on the cuda backend: parameters and gradients
 * are then GPU memory (zero_param_ptr / zero_grad_ptr), read and written here on libzero's
 * compute stream (zero_compute_stream), so no further synchronisation is needed.
 * Built only in CUDA builds (MLP_HAVE_CUDA). Every function returns 0, or -1 with a message in
 * the context's error text (mlp_gpu_error). */
#ifndef ZERO_EXAMPLE_MLP_MODEL_CUDA_H
#define ZERO_EXAMPLE_MLP_MODEL_CUDA_H

#include <stddef.h>

#include "zero.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mlp_gpu mlp_gpu;

/* Activations for `rows` rows of width W and L hidden layers (model.h's mlp_acts layout), fp32
 * scratch for one layer's parameters and gradients, and a cuBLAS handle on `stream` (a
 * cudaStream_t) of the current device. */
int mlp_gpu_create(mlp_gpu **out, int layers, int width, int rows, void *stream, char *err,
                   size_t errlen);
void mlp_gpu_destroy(mlp_gpu *g);
const char *mlp_gpu_error(const mlp_gpu *g);

/* Copies one micro-batch in: x (rows, W) and target (rows), host memory. */
int mlp_gpu_load(mlp_gpu *g, const float *x, const float *target);

/* Layer l forward with its parameters in GPU memory in `dtype`: w (out, W), b (out); y = x w^T
 * + b, tanh for hidden layers (l < L). */
int mlp_gpu_forward(mlp_gpu *g, int l, const void *w, const void *b, zero_dtype dtype);

/* Mean squared error of the head's output against the target; d loss / d y (times `scale`)
 * is left for backward. Waits for the stream (the loss goes to the host). */
int mlp_gpu_loss(mlp_gpu *g, float scale, float *loss);

/* Layer l backward: reads its parameters w (dtype) and ADDS d loss / d w and d loss / d b into
 * gw and gb (dtype, rounded to nearest even), as model.c's mlp_linear_backward computes them. */
int mlp_gpu_backward(mlp_gpu *g, int l, const void *w, void *gw, void *gb, zero_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
