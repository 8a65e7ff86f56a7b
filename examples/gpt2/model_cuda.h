/* model_cuda.h — the GPT-2 of model.h on a GPU: the same module functions with the same
 * arguments and layouts, computing in fp32 with cuBLAS GEMMs and small kernels, on one stream
 * (libzero's compute stream on the cuda backend, zero_compute_stream). The activations struct
 * is model.h's gpt2_acts, its buffers GPU memory; a->gpu holds the stream, the cuBLAS handle
 * and the first error. Built only in CUDA builds (GPT2_HAVE_CUDA).
 *
 * Errors: the module functions cannot return one; the first CUDA or cuBLAS failure is kept and
 * gpt2_cuda_error returns it (NULL while all is well). Check it once per micro-step. */
#ifndef ZERO_EXAMPLE_GPT2_MODEL_CUDA_H
#define ZERO_EXAMPLE_GPT2_MODEL_CUDA_H

#include "model.h"
#include "zero.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the linear layers' GEMMs compute: exact fp32 (SGEMM), TF32 tensor cores (inputs rounded
 * to 10-bit mantissas), or bf16 tensor cores (operands rounded to bf16: activations once when
 * produced, weights once per layer call; meant for bf16 weights, which stay exact); fp32
 * accumulation and fp32 results in every mode. Attention's GEMMs run in the handle's fp32/TF32
 * math mode. */
enum { GPT2_GEMM_FP32 = 0, GPT2_GEMM_TF32 = 1, GPT2_GEMM_BF16 = 2 };

/* Activations of model.h in GPU memory for B sequences, plus backward scratch, on `stream` (a
 * cudaStream_t of the current device); gemm: GPT2_GEMM_*. 0, or -1 with a message in err. */
int gpt2_cuda_acts_alloc(gpt2_acts *a, const gpt2_config *cfg, int B, void *stream, int gemm,
                         char *err, size_t errlen);
void gpt2_cuda_acts_free(gpt2_acts *a);
const char *gpt2_cuda_error(const gpt2_acts *a);

/* Copies a batch in: tokens and targets (B, T), host memory. */
void gpt2_cuda_load(gpt2_acts *a, const int *tokens, const int *targets);
/* The same from device memory (zero_batch's dev_inputs / dev_targets), queued on the compute
 * stream without waiting. */
void gpt2_cuda_load_device(gpt2_acts *a, const int *tokens, const int *targets);

/* GPU memory helpers on the model's stream, for the views of libzero's parameters and
 * gradients: fp32 <- working dtype; zero fill; working dtype += fp32 (rounded once). */
void *gpt2_cuda_malloc(gpt2_acts *a, size_t bytes); /* NULL on failure (error kept) */
void gpt2_cuda_free(void *p);
void gpt2_cuda_to_f32(gpt2_acts *a, float *dst, const void *src, zero_dtype dtype, size_t n);
void gpt2_cuda_zero(gpt2_acts *a, float *dst, size_t n);
void gpt2_cuda_accumulate(gpt2_acts *a, void *dst, zero_dtype dtype, const float *src, size_t n);

/* model.h's module functions, on the GPU. */
void gpt2_cuda_embed_forward(gpt2_acts *a, const gpt2_embed *e);
void gpt2_cuda_block_forward(gpt2_acts *a, int l, const gpt2_block *p);
void gpt2_cuda_lnf_forward(gpt2_acts *a, const gpt2_lnf *p);
float gpt2_cuda_head_forward(gpt2_acts *a, const float *wte, float scale); /* waits */
void gpt2_cuda_head_backward(gpt2_acts *a, const float *wte, float *dwte);
void gpt2_cuda_lnf_backward(gpt2_acts *a, const gpt2_lnf *p, const gpt2_lnf *d);
void gpt2_cuda_block_backward(gpt2_acts *a, int l, const gpt2_block *p, const gpt2_block *d);
void gpt2_cuda_embed_backward(gpt2_acts *a, const gpt2_embed *d);

#ifdef __cplusplus
}
#endif
#endif
