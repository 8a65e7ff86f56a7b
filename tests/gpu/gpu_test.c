/* gpu_test.c — helpers of the GPU tests (gpu_test.h). */
#include "gpu_test.h"

#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "zero.h"

void gt_cuda_ok(int err, const char *call, const char *file, int line)
{
    if (err == (int)cudaSuccess)
        return;
    fprintf(stderr, "FAIL %s:%d: %s: %s (%s)\n", file, line, call,
            cudaGetErrorString((cudaError_t)err), cudaGetErrorName((cudaError_t)err));
    exit(1);
}

const char *gt_dtype_name(int dtype)
{
    return dtype == ZERO_DTYPE_FP32 ? "fp32" : dtype == ZERO_DTYPE_BF16 ? "bf16" : "fp16";
}
