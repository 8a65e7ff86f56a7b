/* hash.c — XXH3-64 on the widest vector unit the CPU has (kernels/hash.h): the baseline path
 * (this file's flags), and the choice among it, hash_avx2.c and hash_avx512.c at run time. */
#define ZK_HASH_PATH baseline
#include "kernels/hash_path.h"

#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__) && defined(ZERO_HASH_X86_PATHS)
#define ZK_HASH_X86 1 /* hash_avx2.c and hash_avx512.c are built (kernels/sources.cmake) */
#else
#define ZK_HASH_X86 0
#endif

typedef struct hash_path {
    const char *name;
    uint64_t (*hash)(const void *, size_t);
    void (*reset)(zk_hash_state *);
    void (*update)(zk_hash_state *, const void *, size_t);
    uint64_t (*digest)(const zk_hash_state *);
} hash_path;

enum { ZK_HASH_BASELINE = 0, ZK_HASH_AVX2 = 1, ZK_HASH_AVX512 = 2, ZK_HASH_AUTO = -1 };

static const hash_path g_paths[] = {
    {"baseline", zk_hash_baseline, zk_hash_reset_baseline, zk_hash_update_baseline,
     zk_hash_digest_baseline},
#if ZK_HASH_X86
    {"avx2", zk_hash_avx2, zk_hash_reset_avx2, zk_hash_update_avx2, zk_hash_digest_avx2},
    {"avx512", zk_hash_avx512, zk_hash_reset_avx512, zk_hash_update_avx512,
     zk_hash_digest_avx512},
#endif
};
enum { ZK_HASH_PATHS = (int)(sizeof g_paths / sizeof g_paths[0]) };

static atomic_int g_forced = ZK_HASH_AUTO;

/* __builtin_cpu_supports also checks that the OS saves the ymm/zmm state. */
static int supported(int k)
{
    switch (k) {
    case ZK_HASH_BASELINE:
        return 1;
#if ZK_HASH_X86
    case ZK_HASH_AVX2:
        return __builtin_cpu_supports("avx2");
    case ZK_HASH_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

static const hash_path *current(void)
{
    const int forced = atomic_load_explicit(&g_forced, memory_order_relaxed);
    if (forced != ZK_HASH_AUTO)
        return &g_paths[forced];
    for (int k = ZK_HASH_PATHS - 1; k > 0; k--)
        if (supported(k))
            return &g_paths[k];
    return &g_paths[ZK_HASH_BASELINE];
}

uint64_t zk_hash(const void *p, size_t n)
{
    return current()->hash(p, n);
}

/* The state records nothing of the path that filled it: xxHash's state layout is the same on
 * every path, and each path computes the same values. */
void zk_hash_reset(zk_hash_state *s)
{
    current()->reset(s);
}

void zk_hash_update(zk_hash_state *s, const void *p, size_t n)
{
    current()->update(s, p, n);
}

uint64_t zk_hash_digest(const zk_hash_state *s)
{
    return current()->digest(s);
}

const char *zk_hash_isa(void)
{
    return current()->name;
}

int zk_hash_force(const char *isa)
{
    if (!isa || strcmp(isa, "auto") == 0) {
        atomic_store(&g_forced, ZK_HASH_AUTO);
        return 0;
    }
    for (int k = 0; k < ZK_HASH_PATHS; k++)
        if (strcmp(isa, g_paths[k].name) == 0) {
            if (!supported(k))
                return -1;
            atomic_store(&g_forced, k);
            return 0;
        }
    return -1;
}
