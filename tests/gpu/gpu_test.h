/* gpu_test.h — what the GPU tests share: failure counting with one summary line per group of
 * checks, a seeded random source, and the skip convention (exit 77, CTest SKIP_RETURN_CODE). */
#ifndef ZERO_GPU_TEST_H
#define ZERO_GPU_TEST_H

#include <stdint.h>
#include <stdio.h>

#define GT_SKIP 77 /* exit status CTest reports as "skipped" (tests/gpu/gpu.cmake) */

extern int gt_failures; /* checks failed so far */

/* Records a failure; shows the first few of each call site so a broken kernel does not flood
 * the log. */
#define GT_CHECK(cond, ...)                                                                    \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            static int shown_;                                                                 \
            gt_failures++;                                                                     \
            if (shown_++ < 5) {                                                                \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                           \
                fprintf(stderr, __VA_ARGS__);                                                  \
                fputc('\n', stderr);                                                           \
            }                                                                                  \
        }                                                                                      \
    } while (0)

/* Aborts the test (exit 1) when a CUDA runtime call of the test's own set-up fails. */
#define GT_CUDA(call) gt_cuda_ok((int)(call), #call, __FILE__, __LINE__)
void gt_cuda_ok(int err, const char *call, const char *file, int line);

/* Prints "ok   <what>" or "FAIL <what>" for the checks since the previous report. */
void gt_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* splitmix64 from a fixed seed: the same data on every run. */
void gt_seed(uint64_t seed);
uint64_t gt_u64(void);
double gt_sym(void); /* uniform in [-1, 1) */

const char *gt_dtype_name(int dtype);

#endif
