/* blas_info.h — which BLAS a program's matrix products run on, and how many threads it uses.
 * Shared by zero-gpt2 (its first line) and zero-info (its BLAS line). With OpenBLAS
 * (ZERO_BLAS_OPENBLAS, set by cmake/ZeroBLAS.cmake) it reads OpenBLAS's own description; with any
 * other CBLAS it names the shared library that provides cblas_sgemm. */
#ifndef ZERO_EXAMPLES_BLAS_INFO_H
#define ZERO_EXAMPLES_BLAS_INFO_H

#include <stddef.h>

/* Writes one line (no newline) into buf (size bytes), e.g. "OpenBLAS 0.3.21, OpenMP build, core
 * Cooperlake, 2 threads (libopenblas.so.0)". Returns buf. */
char *blas_info_describe(char *buf, size_t size);

/* Makes BLAS calls single-threaded where the caller splits the work over its own OpenMP threads
 * (zero-gpt2's model does): OpenBLAS's pthreads build gets openblas_set_num_threads(1). Its
 * OpenMP build needs nothing (a call inside an OpenMP parallel region runs on the calling thread,
 * one outside it uses OMP_NUM_THREADS threads), and is left alone on purpose: its
 * openblas_set_num_threads also sets OpenMP's thread count for the whole process. */
void blas_info_single_threaded_calls(void);

#endif
