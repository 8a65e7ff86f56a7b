/* bench_gpu_offload.c — zero-bench-gpu-offload: the optimizer-offload copies of the engine
 * (ZeRO-Offload: gradient blocks device -> host, updated parameters host -> device) against
 * pinned cudaMemcpy of the same block size, measured in the same run on the same GPU.
 *
 *   1. pinned bandwidth: cudaMemcpyAsync of one engine block (ZERO_OFFLOAD_BLOCK_MB, default
 *      8 MiB) between cudaMallocHost memory and the device, each direction, best of --reps;
 *   2. the engine: a context on the cuda backend, ZERO_STAGE=2, ZERO_OFFLOAD_OPTIMIZER=cpu, the
 *      working dtype of --dtype, --modules modules of --module-mib MiB of parameters each; a
 *      warm-up step, then --steps steps whose backward writes zero gradients on libzero's
 *      compute stream (the copies and the CPU AdamW do the same work for any values). The
 *      engine's own counters (offload bytes and seconds, zr_phase_times) give its copy rates.
 * Output: one line per measurement, then ratio=R: the smaller of (engine d2h / pinned d2h) and
 * (engine h2d / pinned h2d). Target (issue 5): R >= 0.80. Exits 77 without a usable GPU.
 *
 *   zero-bench-gpu-offload [--dtype bf16|fp32] [--modules N] [--module-mib M] [--steps S]
 *                          [--reps R] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "runtime/engine.h"
#include "zero.h"

#define CK(call)                                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            fprintf(stderr, "zero-bench-gpu-offload: %s failed: %s (%s:%d)\n", #call,          \
                    cudaGetErrorString(e_), __FILE__, __LINE__);                               \
            exit(2);                                                                           \
        }                                                                                      \
    } while (0)

#define ZK(call)                                                                               \
    do {                                                                                       \
        zero_status s_ = (call);                                                               \
        if (s_ != ZERO_OK) {                                                                   \
            fprintf(stderr, "zero-bench-gpu-offload: %s failed: %s: %s\n", #call,              \
                    zero_status_string(s_), z ? zero_last_error(z) : zero_init_error());       \
            exit(2);                                                                           \
        }                                                                                      \
    } while (0)

/* Best seconds of `reps` pinned copies of `bytes` in one direction. */
static double pinned_copy(void *dst, const void *src, size_t bytes, int reps)
{
    cudaStream_t s;
    cudaEvent_t a, b;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    double best = 1e30;
    for (int r = 0; r < reps + 2; r++) { /* two warm-ups */
        CK(cudaEventRecord(a, s));
        CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s));
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms = 0.0f;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (r >= 2 && ms * 1e-3 < best)
            best = ms * 1e-3;
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    CK(cudaStreamDestroy(s));
    return best;
}

int main(int argc, char **argv)
{
    zero_dtype dtype = ZERO_DTYPE_BF16;
    int modules = 16, module_mib = 64, steps = 3, reps = 20;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--dtype") && v) {
            dtype = !strcmp(v, "fp32") ? ZERO_DTYPE_FP32 : ZERO_DTYPE_BF16;
            i++;
        } else if (!strcmp(argv[i], "--modules") && v) {
            modules = atoi(v), i++;
        } else if (!strcmp(argv[i], "--module-mib") && v) {
            module_mib = atoi(v), i++;
        } else if (!strcmp(argv[i], "--steps") && v) {
            steps = atoi(v), i++;
        } else if (!strcmp(argv[i], "--reps") && v) {
            reps = atoi(v), i++;
        } else {
            fprintf(stderr, "usage: zero-bench-gpu-offload [--dtype bf16|fp32] [--modules N] "
                            "[--module-mib M] [--steps S] [--reps R]\n");
            return 2;
        }
    }
    if (modules < 1 || module_mib < 1 || steps < 1 || reps < 1) {
        fprintf(stderr, "zero-bench-gpu-offload: every count must be >= 1\n");
        return 2;
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("zero-bench-gpu-offload: no usable GPU: skipped\n");
        return 77;
    }
    const size_t wsz = zero_dtype_size(dtype);
    const size_t per_module = (size_t)module_mib * ((size_t)1 << 20) / 4; /* fp32 elements */
    zero_tensor *t = calloc((size_t)modules, sizeof *t);
    char (*names)[32] = calloc((size_t)modules, sizeof *names);
    if (!t || !names)
        return 2;
    for (int m = 0; m < modules; m++) {
        snprintf(names[m], sizeof names[m], "layer%d.weight", m);
        t[m] = (zero_tensor){.name = names[m], .numel = per_module, .module = m};
    }
    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.device = ZERO_DEVICE_CUDA;
    cfg.stage = 2;
    cfg.dtype = dtype;
    cfg.offload_optimizer = ZERO_OFFLOAD_CPU;
    cfg.bucket_bytes = per_module * wsz; /* a chunk per module (at --dtype; ZERO_* may differ) */
    zero_ctx *z = NULL;
    ZK(zero_init(&z, &cfg, t, modules));
    dtype = zero_get_config(z)->dtype; /* as resolved (ZERO_DTYPE may override --dtype) */
    const size_t gsz = zero_dtype_size(dtype);
    /* 1. pinned cudaMemcpy of one engine block (ZERO_OFFLOAD_BLOCK_MB as resolved) */
    const size_t block = zero_get_config(z)->offload_block_bytes;
    void *host = NULL, *dev = NULL;
    CK(cudaMallocHost(&host, block));
    CK(cudaMalloc(&dev, block));
    memset(host, 1, block);
    double pin_h2d = (double)block / pinned_copy(dev, host, block, reps);
    double pin_d2h = (double)block / pinned_copy(host, dev, block, reps);
    CK(cudaFree(dev));
    CK(cudaFreeHost(host));

    /* 2. the engine */
    cudaStream_t stream = (cudaStream_t)zero_compute_stream(z);
    for (int step = 0; step < steps + 1; step++) {
        if (step == 1) { /* the first step warms up pages and pools: not counted */
            z->times.d2h_bytes = z->times.d2h_s = z->times.h2d_bytes = z->times.h2d_s = 0.0;
            z->times.cpu_adam_s = 0.0;
        }
        for (int m = modules - 1; m >= 0; m--) {
            void *g = zero_grad_ptr(z, m);
            if (!g) {
                fprintf(stderr, "zero-bench-gpu-offload: zero_grad_ptr: %s\n", zero_last_error(z));
                return 2;
            }
            CK(cudaMemsetAsync(g, 0, per_module * gsz, stream));
            ZK(zero_grad_ready(z, m));
        }
        ZK(zero_step(z));
    }
    const zr_phase_times pt = z->times;
    ZK(zero_finalize(z));
    free(t);
    free(names);

    double eng_d2h = pt.d2h_bytes / pt.d2h_s, eng_h2d = pt.h2d_bytes / pt.h2d_s;
    double r_d2h = eng_d2h / pin_d2h, r_h2d = eng_h2d / pin_h2d;
    printf("block %zu bytes (%s), %d modules x %d MiB fp32, %d timed steps\n", block,
           dtype == ZERO_DTYPE_FP32 ? "fp32" : "bf16", modules, module_mib, steps);
    printf("pinned cudaMemcpy  d2h %.2f GB/s  h2d %.2f GB/s\n", pin_d2h * 1e-9, pin_h2d * 1e-9);
    printf("engine offload     d2h %.2f GB/s  h2d %.2f GB/s  (%.0f + %.0f bytes in %.4f + %.4f s)\n",
           eng_d2h * 1e-9, eng_h2d * 1e-9, pt.d2h_bytes, pt.h2d_bytes, pt.d2h_s, pt.h2d_s);
    printf("cpu adam           %.4f s for %.0f elements (%.2f G elements/s)\n", pt.cpu_adam_s,
           pt.d2h_bytes / (double)gsz, pt.d2h_bytes / (double)gsz / pt.cpu_adam_s * 1e-9);
    printf("ratio=%.3f (d2h %.3f, h2d %.3f; target >= 0.80)\n", r_d2h < r_h2d ? r_d2h : r_h2d,
           r_d2h, r_h2d);
    return 0;
}
