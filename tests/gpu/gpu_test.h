/* gpu_test.h — what the GPU tests add to tests/common/check.h (CHECK with failure counting,
 * REPORT_LINE summaries, the seeded random source, all included from here): the skip convention
 * (exit 77, CTest SKIP_RETURN_CODE), aborting on a failed CUDA call of the test's own set-up, and
 * dtype names. */
#ifndef ZERO_GPU_TEST_H
#define ZERO_GPU_TEST_H

#include <stdint.h>
#include <stdio.h>

#include "tests/common/check.h"

#define GT_SKIP 77 /* exit status CTest reports as "skipped" (tests/gpu/gpu.cmake) */

/* Aborts the test (exit 1) when a CUDA runtime call of the test's own set-up fails. */
#define GT_CUDA(call) gt_cuda_ok((int)(call), #call, __FILE__, __LINE__)
void gt_cuda_ok(int err, const char *call, const char *file, int line);

const char *gt_dtype_name(int dtype);

#endif
