/* pipeline.h — the schedule of the optimizer offload (ZeRO-Offload): this rank's shard goes
 * through two staging halves in blocks, so block k's CPU work overlaps block k+1's copy-in
 * (device to host) and block k-1's copy-out (host to device). The pipeline knows only the
 * order; the caller supplies the blocks, the copies (asynchronous where its device can, through
 * the device interface) and the CPU work as callbacks, so this layer needs nothing above it.
 * A half is never overwritten before its previous copy-out has completed: copy-outs are waited
 * for before the half is reused, and copies run in issue order. */
#ifndef ZERO_OFFLOAD_PIPELINE_H
#define ZERO_OFFLOAD_PIPELINE_H

#include <stddef.h>

/* Copy slots: ZO_SLOT_IN + half for copy-ins, ZO_SLOT_OUT + half for copy-outs. */
enum { ZO_SLOT_IN = 0, ZO_SLOT_OUT = 2, ZO_SLOTS = 4 };

typedef struct zo_block {
    size_t idx;       /* first element in the shard */
    size_t n;         /* elements */
    const void *in;   /* where the block's input comes from (the device gradient) */
    void *out;        /* where its result goes (device parameters); NULL: no copy-out */
    int no_decay;     /* for the CPU work: the tensor is exempt from weight decay */
    int group;        /* for the CPU work: the tensor's parameter group */
} zo_block;

typedef struct zo_pipe {
    void *ctx;
    /* the next block of the shard, in order; 0 when there is none */
    int (*next)(void *ctx, zo_block *b);
    /* starts a copy in a slot (the copy may complete at once) */
    void (*copy)(void *ctx, int slot, void *dst, const void *src, size_t bytes);
    /* returns when the slot's copy (if any) has completed */
    void (*wait)(void *ctx, int slot);
    /* the CPU work on block b, whose input is in `half` (and whose result, if copied out, must
     * be left there) */
    void (*compute)(void *ctx, const zo_block *b, void *half);
    char *staging;     /* two halves of half_bytes */
    size_t half_bytes;
    size_t elem_bytes; /* bytes of one element in the halves */
} zo_pipe;

/* Runs every block through the pipeline. Returns when every copy has completed. */
void zo_pipe_run(const zo_pipe *p);

#endif
