/* hash_path.h — one instruction set's XXH3-64 (kernels/hash.h): included by hash.c (baseline),
 * hash_avx2.c and hash_avx512.c, each compiled with its own -m flags, after defining
 * ZK_HASH_PATH as the suffix of the functions it defines (zk_hash_<suffix>, ...). xxHash's
 * header in its inline mode picks its vector code from the flags of the file that includes it
 * (__AVX512F__, __AVX2__, else SSE2 or NEON) and makes every function static, so the three
 * copies do not clash. */
#ifndef ZK_HASH_PATH
#error "define ZK_HASH_PATH before including hash_path.h"
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "kernels/hash.h"

_Static_assert(sizeof(XXH3_state_t) <= sizeof(zk_hash_state), "zk_hash_state is too small");
_Static_assert(_Alignof(XXH3_state_t) <= _Alignof(zk_hash_state), "zk_hash_state's alignment");

#define ZK_HASH_CAT2(a, b) a##_##b
#define ZK_HASH_CAT(a, b) ZK_HASH_CAT2(a, b)
#define ZK_HASH_FN(name) ZK_HASH_CAT(name, ZK_HASH_PATH)

/* The four functions of path sfx: declared by every file that includes this one, so hash.c's
 * table and each path's definitions are checked against the same prototypes. */
#define ZK_HASH_DECLARE(sfx)                                                                     \
    uint64_t zk_hash_##sfx(const void *p, size_t n);                                             \
    void zk_hash_reset_##sfx(zk_hash_state *s);                                                  \
    void zk_hash_update_##sfx(zk_hash_state *s, const void *p, size_t n);                        \
    uint64_t zk_hash_digest_##sfx(const zk_hash_state *s);
ZK_HASH_DECLARE(baseline)
ZK_HASH_DECLARE(avx2)
ZK_HASH_DECLARE(avx512)

uint64_t ZK_HASH_FN(zk_hash)(const void *p, size_t n)
{
    return (uint64_t)XXH3_64bits(p, n);
}

void ZK_HASH_FN(zk_hash_reset)(zk_hash_state *s)
{
    (void)XXH3_64bits_reset((XXH3_state_t *)(void *)s->opaque);
}

void ZK_HASH_FN(zk_hash_update)(zk_hash_state *s, const void *p, size_t n)
{
    (void)XXH3_64bits_update((XXH3_state_t *)(void *)s->opaque, p, n);
}

uint64_t ZK_HASH_FN(zk_hash_digest)(const zk_hash_state *s)
{
    return (uint64_t)XXH3_64bits_digest((const XXH3_state_t *)(const void *)s->opaque);
}
