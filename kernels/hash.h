/* hash.h — XXH3-64, the block checksum of checkpoints (docs/CHECKPOINT.md), on the widest
 * vector unit the CPU has.
 *
 * The hash is xxHash's XXH3_64bits (seed 0): the header of Debian's libxxhash-dev compiled in
 * its inline mode (XXH_INLINE_ALL) once per instruction set — hash.c for the baseline (SSE2 on
 * x86-64, NEON on arm64), hash_avx2.c with -mavx2, hash_avx512.c with -mavx512f — and the path
 * picked at run time, so the binary stays portable. The shared library Debian builds is the
 * baseline path only (19.5 GB/s on the development machine's Zen 4 against 56 GB/s for AVX2 and
 * for AVX-512, one core, data in cache), and a checkpoint's save and load hash every byte once
 * or twice.
 * Every path gives the same 64-bit values as XXH3_64bits of libxxhash (test_hash). */
#ifndef ZERO_KERNELS_HASH_H
#define ZERO_KERNELS_HASH_H

#include <stddef.h>
#include <stdint.h>

/* XXH3_64bits(p, n): the whole buffer at once. */
uint64_t zk_hash(const void *p, size_t n);

/* A streaming digest: reset, update over the pieces in order, digest. Equal to zk_hash of the
 * pieces laid end to end. The state is xxHash's XXH3_state_t (576 bytes on 64-bit targets, 64-byte
 * aligned), kept opaque here. */
enum { ZK_HASH_STATE_BYTES = 640 };
typedef struct zk_hash_state {
    _Alignas(64) unsigned char opaque[ZK_HASH_STATE_BYTES];
} zk_hash_state;
void zk_hash_reset(zk_hash_state *s);
void zk_hash_update(zk_hash_state *s, const void *p, size_t n);
uint64_t zk_hash_digest(const zk_hash_state *s);

/* The path in use: "avx512", "avx2" or "baseline". */
const char *zk_hash_isa(void);
/* Forces a path by that name ("auto": the widest the CPU has again); 0, or -1 when the name is
 * unknown or the CPU lacks the path (nothing changes then). For tests and benchmarks; not to be
 * called while another thread hashes. */
int zk_hash_force(const char *isa);

#endif
