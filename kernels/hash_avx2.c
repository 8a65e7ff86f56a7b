/* hash_avx2.c — XXH3-64 on AVX2 (kernels/hash.h); built with -mavx2 on x86-64 only, called
 * only when the CPU has AVX2. */
#define ZK_HASH_PATH avx2
#include "kernels/hash_path.h"

#if XXH_VECTOR != XXH_AVX2 /* the -mavx2 of kernels/sources.cmake did not reach this file */
#error "hash_avx2.c must be compiled with -mavx2"
#endif
