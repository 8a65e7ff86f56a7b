/* hash_avx2.c — XXH3-64 on AVX2 (kernels/hash.h); built with -mavx2 on x86-64 only, called
 * only when the CPU has AVX2. */
#define ZK_HASH_PATH avx2
#include "kernels/hash_path.h"
