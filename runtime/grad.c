/* grad.c — the gradient path, one strategy per stage (zr_grad_ops):
 *  - full buffer (stages 0-1): the model adds into a full working-precision gradient buffer; at the
 *    accumulation boundary it is reduce-scattered chunk by chunk (descending, as backward would),
 *    each rank's reduced slice put back at its place; stage 0 then all-gathers it, which with the
 *    reduce-scatter is an all-reduce with the same additions as stages 1-3.
 *  - buckets (stages 2-3): a chunk's gradient is written into a pooled bucket when the model first
 *    asks for one of its tensors; when every module of the chunk is reported ready the bucket is
 *    reduce-scattered (non-blocking) and its slice added into the gradient shard. Two buckets let
 *    one fill while the other reduces; more are added only if the model holds gradients of more
 *    chunks at once. A bucket is a chunk's for one micro-step only, so a model that keeps its
 *    pointers across micro-steps is refused at zero_grad_ready (check_stale).
 * Either way a rank's reduced gradient ends up where zr_grad_ops.at finds it. */
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"
#include "util/log.h"

/* ---- full buffer (stages 0-1) ---------------------------------------------------------------- */

static void *full_ptr(zero_ctx *z, int i)
{
    const zp_place *p = &z->layout.place[i];
    return (char *)z->st.grads + (z->layout.chunks[p->chunk].offset + p->offset) * z->wsz;
}

static zero_status full_ready(zero_ctx *z, int module, int chunk)
{
    z->g.module_ready[module] = 1;
    return ZERO_OK;
}

static zero_status full_micro_end(zero_ctx *z) { return ZERO_OK; }

/* NCCL-style: every chunk reduce-scattered in place (this rank's reduced slice lands at its own
 * place), descending, all in flight, then waited for; stage 0 then all-gathers in place the same
 * way. */
static zero_status reduce_in_place(zero_ctx *z, char *base, int all_gather)
{
    const zp_layout *L = &z->layout;
    const zr_elem e = zr_elem_of(z->dtype);
    zero_status s = ZERO_OK;
    for (int pass = 0; pass < (all_gather ? 2 : 1) && !s; pass++) {
        int issued = 0;
        for (int c = L->num_chunks - 1; c >= 0 && !s; c--, issued++) {
            char *g = base + L->chunks[c].offset * z->wsz;
            size_t n = L->chunks[c].slice;
            zr_creq *req = &z->g.chunk_req[c];
            zr_coll_tag(&z->dcoll, pass == 0 ? "reduce-scatter of chunk" : "all-gather of chunk",
                        c);
            s = pass == 0 ? zr_coll_reduce_scatter(&z->dcoll, g, g + (size_t)z->rank * n * z->wsz,
                                                   n, e, ZR_TRAFFIC_TRAIN, req)
                          : zr_coll_all_gather(&z->dcoll, g, n, e, ZR_TRAFFIC_TRAIN, req);
        }
        for (int c = L->num_chunks - 1; issued > 0; c--, issued--) {
            zero_status w = zr_coll_wait(&z->dcoll, &z->g.chunk_req[c]);
            if (!s)
                s = w;
        }
    }
    return s ? zr_fail(&z->err, s, "gradient reduction: %s", z->comm.err.msg) : ZERO_OK;
}

/* One chunk at a time through rs_out (a reduce-scatter whose output may not alias its input). */
static zero_status reduce_through_rs_out(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    zr_elem e = zr_elem_of(z->dtype);
    zero_status s;
    for (int c = L->num_chunks - 1; c >= 0; c--) {
        const zp_chunk *ch = &L->chunks[c];
        char *g = (char *)z->st.grads + ch->offset * z->wsz;
        zr_creq *req = &z->g.chunk_req[c];
        zr_coll_tag(&z->dcoll, "reduce-scatter of chunk", c);
        if ((s = zr_coll_reduce_scatter(&z->dcoll, g, z->st.rs_out, ch->slice, e,
                                        ZR_TRAFFIC_TRAIN, req)) ||
            (s = zr_coll_wait(&z->dcoll, req)))
            return zr_fail(&z->err, s, "gradient reduce-scatter of chunk %d: %s", c,
                           z->comm.err.msg);
        zr_dev_copy(&z->dev, g + (size_t)z->rank * ch->slice * z->wsz, z->st.rs_out,
                    ch->slice * z->wsz);
        if (z->set.cfg.stage == 0 &&
            ((s = zr_coll_all_gather(&z->dcoll, g, ch->slice, e, ZR_TRAFFIC_TRAIN, req)) ||
             (s = zr_coll_wait(&z->dcoll, req))))
            return zr_fail(&z->err, s, "gradient all-gather of chunk %d: %s", c, z->comm.err.msg);
    }
    return ZERO_OK;
}

static zero_status full_boundary(zero_ctx *z)
{
    if (zr_coll_has(&z->dcoll, ZR_COLL_CAP_RS_IN_PLACE))
        return reduce_in_place(z, (char *)z->st.grads, z->set.cfg.stage == 0);
    return reduce_through_rs_out(z);
}

/* Element `off` of chunk c, anywhere at stage 0, inside the rank's slice at stage 1. */
static void *full_at(const zero_ctx *z, int c, size_t off)
{
    return (char *)z->st.grads + (z->layout.chunks[c].offset + off) * z->wsz;
}

static void full_after_step(zero_ctx *z)
{
    zr_dev_zero(&z->dev, z->st.grads, z->layout.total_padded * z->wsz);
}

static const zr_grad_ops full_ops = {"full buffer", full_ptr,  full_ready,     full_micro_end,
                                     full_boundary, full_at,   full_after_step};

/* ---- buckets (stages 2-3) -------------------------------------------------------------------- */

/* A bucket is made for one chunk size (grad: the chunk padded, slice: its slice) and serves the
 * chunks of that size, so a model with one large module (an embedding) and many small ones pays
 * the large size once, not for every bucket. A slot whose buffers were given back has grad NULL. */
static void bucket_release(zero_ctx *z, zr_bucket *b)
{
    zr_device_free(&z->dev, ZERO_MEM_BUFFERS, b->grad, b->grad_bytes);
    zr_device_free(&z->dev, ZERO_MEM_BUFFERS, b->slice, b->slice_bytes);
    b->grad = b->slice = NULL;
    b->grad_bytes = b->slice_bytes = 0;
}

/* A new bucket sized for chunk c, in an empty slot or a new one; its index in *out. */
static zero_status new_bucket(zero_ctx *z, int c, int *out)
{
    int i = 0;
    while (i < z->g.num_buckets && z->g.buckets[i].grad)
        i++;
    if (i == z->g.num_buckets) {
        zr_bucket *nb = realloc(z->g.buckets, (size_t)(z->g.num_buckets + 1) * sizeof *nb);
        if (!nb)
            return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
        z->g.buckets = nb;
        memset(&nb[i], 0, sizeof nb[i]);
        nb[i].chunk = -1;
        z->g.num_buckets++;
    }
    zr_bucket *b = &z->g.buckets[i];
    const zp_chunk *ch = &z->layout.chunks[c];
    b->grad_bytes = ch->padded * z->wsz;
    /* without accumulation the reduce-scatter writes straight into the gradient shard
     * (issue_reduce): no output slice */
    b->slice_bytes = z->set.cfg.grad_accum > 1 ? ch->slice * z->wsz : 0;
    zero_status s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, b->grad_bytes, "gradient reduce bucket",
                                 &b->grad);
    if (!s && b->slice_bytes)
        s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, b->slice_bytes, "reduce-scatter output", &b->slice);
    if (s) {
        bucket_release(z, b);
        return s;
    }
    *out = i;
    return ZERO_OK;
}

static zero_status complete_bucket(zero_ctx *z, int b)
{
    zr_bucket *bk = &z->g.buckets[b];
    int c = bk->chunk;
    const zp_chunk *ch = &z->layout.chunks[c];
    void *dst = (char *)z->st.grads + ch->shard_offset * z->wsz;
    if (!bk->slice_bytes)
        ; /* reduced into the shard itself */
    else if (z->prog.micro == 0)
        zr_dev_copy(&z->dev, dst, bk->slice, ch->slice * z->wsz);
    else
        zr_dev_add(&z->dev, dst, z->dtype, bk->slice, z->dtype, ch->slice);
    z->g.chunk_state[c] = ZR_CHUNK_DONE;
    z->g.chunk_bucket[c] = -1;
    bk->chunk = -1;
    return ZERO_OK;
}

/* Completes every finished reduction without blocking; drives MPI progress. */
static zero_status progress(zero_ctx *z)
{
    for (int b = 0; b < z->g.num_buckets; b++) {
        zr_bucket *bk = &z->g.buckets[b];
        if (!bk->grad || bk->chunk < 0 || z->g.chunk_state[bk->chunk] != ZR_CHUNK_REDUCING)
            continue;
        int done = 0;
        zero_status s = zr_coll_test(&z->dcoll, &bk->req, &done);
        if (s)
            return zr_fail(&z->err, s, "gradient reduce-scatter: %s", z->comm.err.msg);
        if (done)
            complete_bucket(z, b);
    }
    return ZERO_OK;
}

static zero_status wait_bucket(zero_ctx *z, int b)
{
    zero_status s = zr_coll_wait(&z->dcoll, &z->g.buckets[b].req);
    if (s)
        return zr_fail(&z->err, s, "gradient reduce-scatter: %s", z->comm.err.msg);
    return complete_bucket(z, b);
}

/* Gives back the idle buckets not of `bytes` (to make room for one that is); how many bytes. */
static size_t release_other_sizes(zero_ctx *z, size_t bytes)
{
    size_t freed = 0;
    for (int i = 0; i < z->g.num_buckets; i++) {
        zr_bucket *b = &z->g.buckets[i];
        if (b->grad && b->chunk < 0 && b->grad_bytes != bytes) {
            freed += b->grad_bytes + b->slice_bytes;
            bucket_release(z, b);
        }
    }
    return freed;
}

/* A bucket for chunk c, among those of a compatible size (its own up to twice it): an idle one
 * (the smallest); else a new one of its size while there are fewer than two compatible ones
 * (one filling while the other reduces) and the device has room; else, waiting, a reducing one;
 * else a new one after giving back idle buckets of other sizes. */
static zero_status acquire_bucket(zero_ctx *z, int c)
{
    zero_status s = progress(z);
    if (s)
        return s;
    const size_t need = z->layout.chunks[c].padded * z->wsz;
    const size_t need_all = need + z->layout.chunks[c].slice * z->wsz;
    int b = -1, same = 0, reducing = -1, oomed = 0;
    for (int i = 0; i < z->g.num_buckets; i++) {
        const zr_bucket *bk = &z->g.buckets[i];
        if (!bk->grad || bk->grad_bytes < need || bk->grad_bytes / 2 > need ||
            (bk->slice_bytes && bk->slice_bytes < z->layout.chunks[c].slice * z->wsz))
            continue;
        same++;
        if (bk->chunk < 0 && (b < 0 || bk->grad_bytes < z->g.buckets[b].grad_bytes))
            b = i;
        else if (bk->chunk >= 0 && z->g.chunk_state[bk->chunk] == ZR_CHUNK_REDUCING &&
                 reducing < 0)
            reducing = i;
    }
    if (b < 0 && (same < 2 || reducing < 0) && zr_device_fits(&z->dev, need_all)) {
        s = new_bucket(z, c, &b);
        if (s && s != ZERO_ERR_OOM)
            return s;
        if (s) {
            b = -1; /* a device without a known capacity said no: wait or make room below */
            oomed = 1;
        } else if (z->g.num_buckets > 2) {
            ZR_INFO(ZR_SUB_ALLOC, "gradient buckets: %d (the model holds gradients of that many "
                    "chunks at once, or chunks of several sizes)", z->g.num_buckets);
        }
    }
    if (b < 0 && reducing >= 0) {
        if ((s = wait_bucket(z, reducing)))
            return s;
        b = reducing;
    }
    if (b < 0) {
        release_other_sizes(z, need);
        if ((s = new_bucket(z, c, &b)))
            return s;
    }
    if (oomed)
        zr_error_clear(&z->err); /* an OOM on the way that a wait or a release made good */
    zr_dev_zero(&z->dev, z->g.buckets[b].grad, need);
    z->g.buckets[b].chunk = c;
    z->g.chunk_bucket[c] = b;
    z->g.chunk_state[c] = ZR_CHUNK_FILLING;
    return ZERO_OK;
}

static zero_status issue_reduce(zero_ctx *z, int c)
{
    zr_bucket *bk = &z->g.buckets[z->g.chunk_bucket[c]];
    void *out = bk->slice_bytes ? bk->slice
                                : (char *)z->st.grads + z->layout.chunks[c].shard_offset * z->wsz;
    zr_coll_tag(&z->dcoll, "reduce-scatter of chunk", c);
    zero_status s = zr_coll_reduce_scatter(&z->dcoll, bk->grad, out,
                                           z->layout.chunks[c].slice, zr_elem_of(z->dtype),
                                           ZR_TRAFFIC_TRAIN, &bk->req);
    if (s)
        return zr_fail(&z->err, s, "gradient reduce-scatter of chunk %d: %s", c, z->comm.err.msg);
    z->g.chunk_state[c] = ZR_CHUNK_REDUCING;
    ZR_TRACE(ZR_SUB_COMM, "reduce-scatter chunk %d issued (%zu elements per rank)", c,
             z->layout.chunks[c].slice);
    return ZERO_OK;
}

/* Reduces every chunk not yet reduced in this micro-step (descending order, as
 * backward would) and waits for all reductions. */
static zero_status bucket_micro_end(zero_ctx *z)
{
    zero_status s;
    for (int c = z->layout.num_chunks - 1; c >= 0; c--) {
        if (z->g.chunk_state[c] >= ZR_CHUNK_REDUCING)
            continue;
        if (z->g.chunk_state[c] == ZR_CHUNK_IDLE && (s = acquire_bucket(z, c)))
            return s;
        if ((s = issue_reduce(z, c)))
            return s;
    }
    for (int b = 0; b < z->g.num_buckets; b++)
        if (z->g.buckets[b].chunk >= 0 && (s = wait_bucket(z, b)))
            return s;
    return ZERO_OK;
}

static void *bucket_ptr(zero_ctx *z, int i)
{
    const zp_place *p = &z->layout.place[i];
    int c = p->chunk;
    if (z->g.chunk_state[c] >= ZR_CHUNK_REDUCING) {
        zr_fail(&z->err, ZERO_ERR_STATE,
                "zero_grad_ptr: tensor %d (%s): its bucket was already reduced in this "
                "micro-step (all its modules were reported ready)",
                i, z->meta[i].name);
        return NULL;
    }
    if (z->g.chunk_state[c] == ZR_CHUNK_IDLE && acquire_bucket(z, c))
        return NULL;
    if (z->g.module_asked)
        z->g.module_asked[z->tensor_module[i]] = ZR_ASKED_NOW;
    return (char *)z->g.buckets[z->g.chunk_bucket[c]].grad + p->offset * z->wsz;
}

/* A model that keeps its gradient pointers across micro-steps (as llm.c keeps its tensor
 * pointers) writes this micro-step's gradient into last micro-step's bucket, which by now is
 * free (zeroed when taken again) or holds another chunk, possibly while it is being reduced:
 * the gradient is lost or corrupts another, silently. A module whose pointers were asked for in
 * an earlier micro-step but not in this one is that case (or a module without a gradient this
 * time; asking for its pointers and adding nothing is the way to say so). Per module, not per
 * chunk: with one chunk for a small model (the default bucket) a chunk rule would miss every
 * kept pointer. A module never asked for at all is not refused: its gradient is zeros. */
static zero_status check_stale(zero_ctx *z, int module, int c)
{
    if (!z->g.module_asked || z->g.module_asked[module] != ZR_ASKED_BEFORE)
        return ZERO_OK;
    int first = 0;
    while (first < z->num_tensors && z->tensor_module[first] != module)
        first++;
    return zr_fail(&z->err, ZERO_ERR_STATE,
                   "zero_grad_ready: module %d (first tensor %d, %s): no zero_grad_ptr of its "
                   "tensors in this micro-step, but in an earlier one. At "
                   "ZERO_STAGE=%d the gradient lives in a reduce bucket taken anew every "
                   "micro-step: a pointer kept from an earlier micro-step points into a bucket "
                   "that has been zeroed or given to another chunk since, so what was written "
                   "through it is lost or lands in another chunk's gradient. Ask for "
                   "zero_grad_ptr again every micro-step, before writing the gradient (also when "
                   "the module adds nothing this time)",
                   module, first, first < z->num_tensors ? z->meta[first].name : "?",
                   z->set.cfg.stage);
}

static zero_status bucket_ready(zero_ctx *z, int module, int c)
{
    zero_status s;
    if ((s = check_stale(z, module, c)))
        return s;
    if (z->g.chunk_state[c] == ZR_CHUNK_IDLE && (s = acquire_bucket(z, c)))
        return s;
    z->g.module_ready[module] = 1;
    if (++z->g.chunk_ready[c] == z->g.chunk_modules[c] && (s = issue_reduce(z, c)))
        return s;
    s = progress(z);
    if (!s && z->set.cfg.stage == 3)
        s = zr_s3_progress(z);
    return s;
}

static zero_status bucket_boundary(zero_ctx *z) { return ZERO_OK; }

/* Element `off` of chunk c, inside this rank's slice: in the gradient shard. */
static void *bucket_at(const zero_ctx *z, int c, size_t off)
{
    const zp_chunk *ch = &z->layout.chunks[c];
    return (char *)z->st.grads + (ch->shard_offset + off - (size_t)z->rank * ch->slice) * z->wsz;
}

static void bucket_after_step(zero_ctx *z) {}

static const zr_grad_ops bucket_ops = {"buckets",        bucket_ptr,      bucket_ready,
                                       bucket_micro_end, bucket_boundary, bucket_at,
                                       bucket_after_step};

/* ---- set-up ---------------------------------------------------------------------------------- */

zero_status zr_grads_init(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    zr_grads *g = &z->g;
    size_t nc = (size_t)L->num_chunks;
    g->module_ready = calloc((size_t)L->num_modules, 1);
    g->chunk_modules = calloc(nc, sizeof(int));
    g->chunk_req = calloc(nc, sizeof *g->chunk_req);
    g->chunk_bucket = malloc(nc * sizeof(int));
    g->chunk_state = calloc(nc, sizeof(int));
    g->chunk_ready = calloc(nc, sizeof(int));
    const int track = z->tensor_module && z->set.cfg.stage >= 2; /* stale pointers */
    if (track) {
        g->module_asked = calloc((size_t)L->num_modules, 1);
    }
    if (!g->module_ready || !g->chunk_modules || !g->chunk_req || !g->chunk_bucket ||
        !g->chunk_state || !g->chunk_ready || (track && !g->module_asked))
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    for (int c = 0; c < L->num_chunks; c++)
        g->chunk_bucket[c] = -1;
    for (int m = 0; m < L->num_modules; m++)
        if (L->module_chunk[m] >= 0)
            g->chunk_modules[L->module_chunk[m]]++;
    g->ops = z->set.cfg.stage < 2 ? &full_ops : &bucket_ops;
    if (z->set.cfg.stage < 2)
        return ZERO_OK;
    /* one bucket for the largest chunk now, so a device that cannot hold even that fails at
     * zero_init; the others are made on first need, each for the size that needs it */
    int big = 0, b;
    for (int c = 1; c < L->num_chunks; c++)
        if (L->chunks[c].padded > L->chunks[big].padded)
            big = c;
    return L->num_chunks ? new_bucket(z, big, &b) : ZERO_OK;
}

void zr_grads_free(zero_ctx *z)
{
    zr_grads *g = &z->g;
    for (int i = 0; i < g->num_buckets; i++) {
        zr_bucket *b = &g->buckets[i];
        if (z->dcoll.ops) {
            zr_coll_wait(&z->dcoll, &b->req); /* finalize in the middle of a micro-step */
            zr_coll_request_free(&z->dcoll, &b->req);
        }
        bucket_release(z, b);
    }
    for (int c = 0; g->chunk_req && c < z->layout.num_chunks; c++)
        zr_coll_request_free(&z->dcoll, &g->chunk_req[c]);
    free(g->buckets);
    free(g->module_ready);
    free(g->chunk_modules);
    free(g->chunk_req);
    free(g->chunk_bucket);
    free(g->chunk_state);
    free(g->chunk_ready);
    free(g->module_asked);
    memset(g, 0, sizeof *g);
}

void zr_grads_reset_micro(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    memset(z->g.chunk_state, 0, (size_t)L->num_chunks * sizeof *z->g.chunk_state);
    memset(z->g.chunk_ready, 0, (size_t)L->num_chunks * sizeof *z->g.chunk_ready);
    memset(z->g.module_ready, 0, (size_t)L->num_modules);
    if (z->g.module_asked) { /* asked now -> asked before; before stays */
        for (int m = 0; m < L->num_modules; m++)
            if (z->g.module_asked[m])
                z->g.module_asked[m] = ZR_ASKED_BEFORE;
    }
}
