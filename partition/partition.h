/* partition.h — pure arithmetic of the ZeRO layout: how registered tensors are laid, in module
 * order, into chunks (runs of whole consecutive modules up to the bucket size), how each chunk
 * is padded so it splits into `world` equal contiguous slices, and which tensor pieces a slice
 * holds. Knows nothing of devices, MPI or I/O; every function is deterministic. */
#ifndef ZERO_PARTITION_H
#define ZERO_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "zero.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct zp_tensor {
    size_t numel; /* elements, > 0 */
    int module;   /* non-decreasing along the array, first is 0, no gaps required */
} zp_tensor;

/* Where one tensor lives. */
typedef struct zp_place {
    int chunk;       /* chunk index */
    size_t offset;   /* elements from the start of the chunk; a multiple of align */
    size_t numel;    /* elements */
} zp_place;

typedef struct zp_chunk {
    size_t offset;       /* elements from the start of the full flat buffer (sum of earlier padded) */
    size_t used;         /* elements up to the end of its last tensor (data + inner alignment gaps) */
    size_t padded;       /* used rounded up to a multiple of world * align (>= world * align) */
    size_t slice;        /* padded / world: each rank's share, a multiple of align */
    size_t shard_offset; /* elements from the start of a rank's shard: sum of earlier slices */
    int first_tensor;    /* tensors [first_tensor, first_tensor + num_tensors) */
    int num_tensors;
    int first_module;    /* modules [first_module, last_module] */
    int last_module;
} zp_chunk;

typedef struct zp_layout {
    int world;            /* ranks the chunks are split across */
    size_t align;         /* elements; tensor offsets and slices are multiples of it */
    size_t chunk_elems;   /* target chunk size in elements (bucket size) */
    int num_tensors;
    int num_chunks;
    int num_modules;      /* last module id + 1 */
    zp_place *place;      /* [num_tensors] */
    zp_chunk *chunks;     /* [num_chunks] */
    int *module_chunk;    /* [num_modules]: chunk holding the module; -1 for an id with no tensors */
    size_t num_params;    /* Ψ: sum of numel, no padding */
    size_t total_padded;  /* sum of chunks[].padded: elements of a full flat buffer */
    size_t shard_numel;   /* sum of chunks[].slice: elements of one rank's shard */
    size_t max_padded;    /* largest chunks[].padded: a full-chunk buffer (bucket, gather) */
    size_t max_slice;     /* largest chunks[].slice: a one-slice buffer */
} zp_layout;

/* One piece of a tensor that falls inside an element range of a chunk. */
typedef struct zp_segment {
    int tensor;           /* tensor index */
    size_t tensor_offset; /* first element of the piece within the tensor */
    size_t chunk_offset;  /* first element of the piece within the chunk */
    size_t numel;         /* elements in the piece, > 0 */
} zp_segment;

/* Lays out n tensors. A chunk takes whole consecutive modules while its size (with alignment)
 * stays <= chunk_elems; a module larger than chunk_elems gets a chunk of its own. align must be
 * a power of two >= 1, world >= 1, chunk_elems >= 1.
 * Returns ZERO_OK, or ZERO_ERR_INVALID (bad argument: which tensor, which value) /
 * ZERO_ERR_SYSTEM (no host memory) with the message in e (may be NULL; not logged). */
zero_status zp_layout_build(zp_layout *layout, const zp_tensor *tensors, int n, int world,
                            size_t chunk_elems, size_t align, zr_error *e);
void zp_layout_free(zp_layout *layout);

/* Range [*lo, *hi) in elements within chunk c of rank r's slice. */
void zp_slice_range(const zp_layout *layout, int c, int rank, size_t *lo, size_t *hi);

/* The pieces of tensors inside [lo, hi) of chunk c, in tensor order, padding excluded.
 * Writes at most max segments to out (out may be NULL to count) and returns how many there are. */
int zp_segments(const zp_layout *layout, int c, size_t lo, size_t hi, zp_segment *out, int max);

/* The docs/DESIGN.md / ZeRO-paper formula: device bytes of model state per rank (parameters,
 * gradients, fp32 master + Adam m and v) for `psi` parameters at `stage` (0..3) with
 * working elements of `work_bytes` (4 = fp32: the working copy is the master; 2 = bf16/fp16:
 * a separate fp32 master), across `world` ranks. Terms divided by world are rounded up. */
uint64_t zp_model_state_bytes(int stage, size_t work_bytes, uint64_t psi, int world);

/* Bus bytes per rank per optimizer step, nccl-tests convention: stages 0–2 move
 * 2Ψ(N−1)/N elements, stage 3 3Ψ(N−1)/N; times work_bytes. */
double zp_bus_bytes_per_step(int stage, size_t work_bytes, uint64_t psi, int world);

/* Model-state estimates with offload (partition/estimate.c). */

/* Largest Ψ the estimates accept: 2^58 parameters, so that no byte count overflows uint64. */
#define ZP_PSI_MAX (UINT64_MAX >> 6)

/* Per-rank bytes of model state (working parameters and gradients, fp32 master, Adam m and v)
 * on the device and on the host, for `psi` parameters at `stage` (0..3), working elements of
 * `work_bytes` (4 = fp32, 2 = bf16/fp16), `world` ranks, and offload flags:
 *   offload_optimizer (stages 1–3, ZeRO-Offload): master, m, v and an fp32 gradient shard on
 *       the host; 16Ψ/N host bytes.
 *   offload_param (stage 3 with offload_optimizer, ZeRO-Infinity): the working parameter shard
 *       on the host too.
 * Without offload, *device = zp_model_state_bytes(...) and *host = 0. The per-case formulas and
 * their reasoning are in estimate.c. Buffers and activations are not included.
 * Writes the non-NULL outputs and returns 0; returns -1 for a bad stage, world (< 1),
 * work_bytes (not 2 or 4), psi (> ZP_PSI_MAX), or offload combination (optimizer offload at
 * stage 0, parameter offload below stage 3 or without optimizer offload). */
int zp_state_bytes(int stage, size_t work_bytes, uint64_t psi, int world, int offload_optimizer,
                   int offload_param, uint64_t *device, uint64_t *host);

/* The largest Ψ whose device bytes (zp_state_bytes, same arguments) are <= `capacity` bytes
 * per rank, ignoring buffers and activations: Ψ fits and Ψ + 1 does not, except that the result
 * saturates at ZP_PSI_MAX. Writes *psi (when non-NULL) and returns 0, or -1 for an invalid
 * configuration as zp_state_bytes. */
int zp_max_psi(int stage, size_t work_bytes, int world, int offload_optimizer, int offload_param,
               uint64_t capacity, uint64_t *psi);

/* ---- automatic buffer sizes (ZERO_SIZE_AUTO; docs/DESIGN.md §7) -------------------------------
 * Pure functions of what every rank agrees on, so every rank chooses the same sizes.
 *
 * The bucket (and so the chunk layout) depends only on the device capacity and the backend, not
 * on the stage or offload: stages 0-3 keep one layout and give the same bits.
 *   bucket = knee                     the message size from which the backend's reduce-scatter
 *                                     and all-gather run at full bandwidth (ZP_KNEE_*)
 *            min capacity / 64        buffers stay a small part of what sharding saves
 *            max 64 KiB               below it every collective is latency
 *   rounded down to a power of two.  capacity 0 (unknown, no cap): the knee alone. */
#define ZP_AUTO_BUCKET_MIN ((uint64_t)64 << 10)
#define ZP_AUTO_CAPACITY_SHARE 64
size_t zp_auto_bucket(uint64_t capacity, uint64_t knee, char *why, size_t len);

/* Stage 3's prefetch window and its cap on live gathered bytes, from what the device has left:
 * left = capacity - state (model state and resident chunks, bytes per rank) - reserve (the
 * reduce buckets and output slices the step needs at once). max_live = left / 2 (at most 1 GiB;
 * 1 GiB when the capacity is unknown); prefetch = 2 x the largest chunk (`chunk` bytes), at most
 * max_live, and 0 when not even one chunk fits in max_live (then nothing is gathered ahead: the
 * buffers the model asks for still are). max_live is never 0 (0 means "no cap"). */
void zp_auto_stage3(uint64_t capacity, uint64_t state, uint64_t reserve, uint64_t chunk,
                    size_t *prefetch, size_t *max_live, char *why, size_t len);

/* Collective bandwidth knees (bytes of the whole buffer): MPI over shared memory on the host
 * backend, measured by zero-bench-coll (docs/BENCHMARKS.md: reduce-scatter and all-gather reach
 * 90% of their peak by 256 KiB - 2 MiB at np 2-4 and fall beyond it; 1 MiB keeps >= 76% of every
 * curve's peak); NCCL on a GPU not yet measured here (32 MiB, the former fixed default, until
 * zero-bench-coll runs on GPUs). */
#define ZP_KNEE_MPI ((uint64_t)1 << 20)
#define ZP_KNEE_NCCL ((uint64_t)32 << 20)

/* Parameters of a GPT-2 model with `layers` blocks of width `dim`, vocabulary `vocab` and
 * context `seq`; the LM head is tied to the token embedding: V·D + T·D + L·(12D² + 13D) + 2D.
 * Returns 0 for layers < 0, dim, vocab or seq < 1, or a count that overflows uint64. */
uint64_t zp_gpt2_params(int layers, int dim, int vocab, int seq);

#ifdef __cplusplus
}
#endif
#endif
