/* hash_avx512.c — XXH3-64 on AVX-512F (kernels/hash.h); built with -mavx512f on x86-64 only,
 * called only when the CPU has AVX-512F. */
#define ZK_HASH_PATH avx512
#include "kernels/hash_path.h"

#if XXH_VECTOR != XXH_AVX512 /* the -mavx512f of kernels/sources.cmake did not reach this file */
#error "hash_avx512.c must be compiled with -mavx512f"
#endif
