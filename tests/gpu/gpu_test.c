/* gpu_test.c — helpers of the GPU tests (gpu_test.h). */
#include "gpu_test.h"

#include <stdarg.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "zero.h"

int gt_failures;
static int reported; /* gt_failures at the last report */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

void gt_cuda_ok(int err, const char *call, const char *file, int line)
{
    if (err == (int)cudaSuccess)
        return;
    fprintf(stderr, "FAIL %s:%d: %s: %s (%s)\n", file, line, call,
            cudaGetErrorString((cudaError_t)err), cudaGetErrorName((cudaError_t)err));
    exit(1);
}

void gt_report(const char *fmt, ...)
{
    printf("%s ", gt_failures == reported ? "ok  " : "FAIL");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    reported = gt_failures;
}

void gt_seed(uint64_t seed) { rng = seed; }

uint64_t gt_u64(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double gt_sym(void) { return (double)(gt_u64() >> 11) * 0x1p-52 - 1.0; }

const char *gt_dtype_name(int dtype)
{
    return dtype == ZERO_DTYPE_FP32 ? "fp32" : dtype == ZERO_DTYPE_BF16 ? "bf16" : "fp16";
}
