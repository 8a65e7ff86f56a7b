/* hash.h — a 64-bit running hash for fingerprints that ranks compare (tensor registration,
 * stage-3 gather order). Not cryptographic; equal inputs give equal hashes on every rank. */
#ifndef ZERO_UTIL_HASH_H
#define ZERO_UTIL_HASH_H

#include <stdint.h>

/* Folds x into the running hash h. */
static inline uint64_t zr_mix64(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

#endif
