/* adam_ctypes.c — libzero_adam_bench.so: a benchmark-only entry point into the CPU AdamW kernel
 * (kernels/adam_cpu.c, zk_adamw_cpu) for benchmarks/adam_side_by_side.py, which calls it through
 * ctypes on arrays it shares with PyTorch and DeepSpeed. Not part of the library's API: libzero
 * exports only the training API (include/zero.h), and this module is built from the internal
 * static library for the benchmark alone. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

#define ZB_EXPORT __attribute__((visibility("default")))

/* One AdamW (l2 = 0) or Adam-L2 (l2 = 1) step t (1-based) on n fp32 elements, as zk_adamw_cpu
 * with the bias corrections of zk_adamw_bias (torch's). work: NULL, or n elements of work_type
 * (0 fp32, 1 bf16, 2 fp16: zero_dtype) receiving the updated parameters. threads > 0 sets the
 * OpenMP thread count first. Returns 0, or -1 for a bad argument. */
ZB_EXPORT int zb_adamw_step(float *master, float *m, float *v, const float *grad, void *work,
                            int work_type, size_t n, double lr, double beta1, double beta2,
                            double eps, double weight_decay, int64_t t, int l2, int threads)
{
    if (!master || !m || !v || !grad || t < 1 || work_type < 0 || work_type > 2)
        return -1;
    if (threads > 0)
        omp_set_num_threads(threads);
    zk_adamw_params p = {.lr = lr,
                         .beta1 = beta1,
                         .beta2 = beta2,
                         .eps = eps,
                         .weight_decay = weight_decay,
                         .grad_scale = 1.0f,
                         .l2 = l2 != 0};
    zk_adamw_bias(&p, t);
    zk_adamw_cpu(master, m, v, grad, work, (zero_dtype)work_type, n, &p);
    return 0;
}

/* The path zk_adamw_cpu takes ("avx512", "avx2", "scalar"). */
ZB_EXPORT const char *zb_adamw_isa(void)
{
    return zk_adamw_cpu_isa();
}

/* Forces a path ("avx512", "avx2", "scalar", or "auto"): zk_adamw_cpu_force. */
ZB_EXPORT int zb_adamw_force(const char *isa)
{
    return zk_adamw_cpu_force(isa);
}
