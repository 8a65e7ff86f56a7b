/* state.c — this rank's partitioned model state: one placement table says which buffers a
 * configuration needs (stage, dtype, optimizer and parameter offload), where each lives (device
 * or host), under which label and how large; zr_state_alloc allocates them in table order and
 * records each, zr_state_free walks the record back. Also the OOM advisor (the message of
 * ZERO_ERR_OOM: every placement of the state and which would fit), the initial values broadcast
 * from rank 0, and the device's deferred errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/engine.h"
#include "util/log.h"

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* ---- the OOM advisor ------------------------------------------------------------------------- */

/* Buffers (outside model state) a stage needs, in chunks of the largest size: stage 3 two
 * gathered chunks and two reduce buckets with their output slices, stage 2 the two buckets,
 * stages 0-1 one slice (the reduce-scatter output). */
static double buffer_chunks(int stage, int world)
{
    if (stage == 3)
        return 4.0 + 2.0 / world;
    if (stage == 2)
        return 2.0 + 2.0 / world;
    return 1.0 / world;
}

/* Device bytes of buffers a stage needs with the layout's largest chunk. */
static double buffer_bytes(const zero_ctx *z, int stage)
{
    return buffer_chunks(stage, z->world) * (double)z->layout.max_padded * (double)z->wsz;
}

void zr_formula_bytes(const zero_ctx *z, uint64_t *device, uint64_t *host)
{
    *device = *host = 0;
    zp_state_bytes(z->set.cfg.stage, z->wsz, z->layout.num_params, z->world, z->offload_opt,
                   z->offload_param, device, host);
}

static zero_status oom(zero_ctx *z, const char *detail)
{
    const zp_layout *L = &z->layout;
    /* What the placements are measured against: the cap, or else (cuda) what libzero could get
     * of the GPU now, its free memory plus what libzero holds; 0 = unknown (nothing compared). */
    size_t cap = z->dev.capacity;
    if (!cap) {
        size_t free_b = zr_dev_free_memory(&z->dev);
        cap = free_b ? free_b + z->dev.current_total : 0;
    }
    double need_now = 0.0; /* the failed placement's estimate: only smaller ones can help */
    {
        uint64_t dev = 0, host = 0;
        if (!zp_state_bytes(z->set.cfg.stage, z->wsz, L->num_params, z->world, z->offload_opt,
                            z->offload_param, &dev, &host))
            need_now = (double)dev + buffer_bytes(z, z->set.cfg.stage);
    }
    /* every placement of the state: stages 0–3, then the offload settings */
    static const int ways[][3] = {{0, 0, 0}, {1, 0, 0}, {2, 0, 0}, {3, 0, 0},
                                  {1, 1, 0}, {2, 1, 0}, {3, 1, 0}, {3, 1, 1}};
    char fits[512] = "", table[512] = "";
    size_t flen = 0, tlen = 0;
    for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
        uint64_t dev = 0, host = 0;
        if (zp_state_bytes(ways[w][0], z->wsz, L->num_params, z->world, ways[w][1], ways[w][2],
                           &dev, &host))
            continue;
        double need = (double)dev + buffer_bytes(z, ways[w][0]);
        const char *off = ways[w][2] ? " offload optimizer+params"
                          : ways[w][1] ? " offload optimizer" : "";
        if (tlen < sizeof table)
            tlen += (size_t)snprintf(table + tlen, sizeof table - tlen, "%sstage %d%s %.2f MiB",
                                     tlen ? ", " : "", ways[w][0], off, mib((double)dev));
        int same = ways[w][0] == z->set.cfg.stage && ways[w][1] == z->offload_opt &&
                   ways[w][2] == z->offload_param;
        if (!same && cap && need <= (double)cap && (need_now == 0.0 || need < need_now) &&
            flen < sizeof fits)
            flen += (size_t)snprintf(fits + flen, sizeof fits - flen, "%sZERO_STAGE=%d%s%s",
                                     flen ? " or " : "", ways[w][0],
                                     ways[w][1] ? " ZERO_OFFLOAD_OPTIMIZER=cpu" : "",
                                     ways[w][2] ? " ZERO_OFFLOAD_PARAM=cpu" : "");
    }
    /* the buffers are what does not fit: the state does, the state and buffers do not. The
     * largest bucket at which they would (chunks cannot be smaller than the largest module) */
    char bufs[320] = "";
    {
        uint64_t dev = 0, host = 0;
        const int st = z->set.cfg.stage;
        if (cap && !zp_state_bytes(st, z->wsz, L->num_params, z->world, z->offload_opt,
                                   z->offload_param, &dev, &host)) {
            double chunk_fit = ((double)cap - (double)dev) / buffer_chunks(st, z->world);
            double floor_b = (double)z->max_module_elems * (double)z->wsz;
            double bucket = 4096.0;
            while (bucket * 2.0 <= chunk_fit)
                bucket *= 2.0;
            if ((double)dev < (double)cap && need_now > (double)cap && chunk_fit >= floor_b &&
                bucket < (double)z->set.cfg.bucket_bytes)
                snprintf(bufs, sizeof bufs,
                         " The model state fits; the buffers (about %.2f MiB with chunks of up "
                         "to %.2f MiB) do not: ZERO_BUCKET_MB=%.0fK%s would fit.",
                         mib(buffer_bytes(z, st)), mib((double)L->max_padded * (double)z->wsz),
                         bucket / 1024.0, st == 3 ? " ZERO_PREFETCH_MB=0" : "");
            else if ((double)dev < (double)cap && need_now > (double)cap && chunk_fit < floor_b)
                snprintf(bufs, sizeof bufs,
                         " The model state fits; the buffers (about %.2f MiB: the largest module "
                         "alone is a %.2f MiB chunk) do not, at any bucket size.",
                         mib(buffer_bytes(z, st)), mib(floor_b));
        }
    }
    return zr_fail(&z->err, ZERO_ERR_OOM,
                   "out of device memory on rank %d at ZERO_STAGE=%d%s: %s. Device model state "
                   "per rank for %zu parameters (%s) on %d ranks: %s (plus buffers).%s %s%s",
                   z->rank, z->set.cfg.stage,
                   z->offload_param ? " with optimizer and parameter offload"
                   : z->offload_opt ? " with optimizer offload"
                                    : "",
                   detail, L->num_params, zr_dtype_name(z->dtype), z->world, table, bufs,
                   flen   ? "Would fit: "
                   : !cap ? "No device capacity is known to measure the other placements against"
                   : z->dev.capacity
                       ? "Nothing fits this capacity on this many ranks; add ranks or "
                         "raise ZERO_DEVICE_MEMORY"
                       : "Nothing smaller fits the GPU's free memory on this many "
                         "ranks; add ranks",
                   fits);
}

zero_status zr_dev_alloc(zero_ctx *z, zero_mem_label label, size_t bytes, const char *what,
                         void *out)
{
    zr_error detail;
    zr_error_clear(&detail);
    zero_status s = zr_device_alloc(&z->dev, label, bytes, what, (void **)out, &detail);
    return s == ZERO_ERR_OOM ? oom(z, detail.msg) : s;
}

/* ---- the placement table --------------------------------------------------------------------- */

typedef struct plan_entry {
    void **slot;
    int on_host;          /* the host device (offloaded state) rather than the device */
    zero_mem_label label;
    size_t bytes;
    char what[64];        /* names the buffer in messages */
    int pin;              /* page-lock for asynchronous copies, where the device can */
} plan_entry;

static int add(plan_entry *e, int n, void *slot, int on_host, zero_mem_label label, size_t bytes,
               const char *what, int pin)
{
    e[n] = (plan_entry){(void **)slot, on_host, label, bytes, "", pin};
    snprintf(e[n].what, sizeof e[n].what, "%s%s", what, on_host ? " (host)" : "");
    return n + 1;
}

/* The buffers of this configuration, in allocation order; returns how many. Parameters: a full
 * replica at stages 0-2, the shard at 3 (on the host with parameter offload). Gradients: full at
 * stages 0-1, the shard at 2-3. Master and optimizer states: full at stage 0, else the shard, on
 * the host with optimizer offload; no separate master when the fp32 working parameters are it. */
static int state_plan(zero_ctx *z, plan_entry *e)
{
    const zp_layout *L = &z->layout;
    zr_state *st = &z->st;
    const int stage = z->set.cfg.stage, oo = z->offload_opt;
    const size_t full = L->total_padded, shard = L->shard_numel, w = z->wsz;
    int n = 0;
    st->opt_numel = stage == 0 ? full : shard;
    n = add(e, n, &st->params, z->offload_param, ZERO_MEM_PARAMS, (stage == 3 ? shard : full) * w,
            stage == 3 ? "working parameter shard" : "working parameters (full replica)",
            z->offload_param);
    n = add(e, n, &st->grads, 0, ZERO_MEM_GRADS, (stage < 2 ? full : shard) * w,
            stage < 2 ? "working gradients (full)" : "gradient shard", 0);
    /* fp32 parameter offload: the host shard is the master itself */
    st->master_owned = oo ? !(z->offload_param && z->dtype == ZERO_DTYPE_FP32)
                          : z->dtype != ZERO_DTYPE_FP32;
    if (st->master_owned)
        n = add(e, n, &st->master, oo, ZERO_MEM_OPTIMIZER, st->opt_numel * 4,
                "fp32 master weights", 0);
    for (int k = 0; k < z->optim->num_states; k++)
        n = add(e, n, &st->ostate[k], oo, ZERO_MEM_OPTIMIZER, st->opt_numel * 4,
                z->optim->state_names[k], 0);
    if (oo) {
        n = add(e, n, &st->host_grad, 1, ZERO_MEM_GRADS, shard * 4, "fp32 gradient shard", 0);
        /* two halves: gradients on their way in, updated parameters on their way out */
        size_t block = z->set.cfg.offload_block_bytes / w;
        st->staging_elems = shard < block ? (shard ? shard : 1) : block;
        n = add(e, n, &st->staging, 1, ZERO_MEM_BUFFERS, 2 * st->staging_elems * w,
                "offload staging", 1);
    }
    if (stage < 2 && !zr_coll_has(&z->dcoll, ZR_COLL_CAP_RS_IN_PLACE))
        n = add(e, n, &st->rs_out, 0, ZERO_MEM_BUFFERS, L->max_slice * w, "reduce-scatter output",
                0);
    return n;
}

/* Page-locks a host buffer where the device can (the offload's copies then run asynchronously);
 * a refusal (e.g. a locked-memory limit) leaves it pageable: correct, slower, said once. */
static void pin(zero_ctx *z, zr_alloc_rec *r, const char *what)
{
    if (!zr_dev_has(&z->dev, ZR_DEV_CAP_PINNING))
        return;
    char err[256] = "";
    if (zr_dev_host_register(&z->dev, *r->slot, r->bytes, err, sizeof err) == ZERO_OK)
        r->pinned = 1;
    else
        ZR_WARN(ZR_SUB_OFFLOAD, "%s is not pinned (%s): copies to and from it are slower", what,
                err);
}

zero_status zr_state_alloc(zero_ctx *z)
{
    plan_entry e[ZR_STATE_MAX];
    zr_state *st = &z->st;
    int n = state_plan(z, e);
    for (int i = 0; i < n; i++) {
        zr_device *dev = e[i].on_host ? &z->host : &z->dev;
        zero_status s;
        if (e[i].on_host) {
            zr_error detail;
            zr_error_clear(&detail);
            s = zr_device_alloc(dev, e[i].label, e[i].bytes, e[i].what, e[i].slot, &detail);
            if (s)
                return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory: %s", detail.msg);
        } else if ((s = zr_dev_alloc(z, e[i].label, e[i].bytes, e[i].what, e[i].slot))) {
            return s;
        }
        st->rec[st->nrec++] = (zr_alloc_rec){e[i].slot, dev, e[i].label, e[i].bytes, 0};
    }
    if (!st->master_owned && z->offload_param)
        st->master = (float *)st->params;
    for (int i = 0; i < n; i++)
        if (e[i].pin && e[i].bytes)
            pin(z, &st->rec[i], e[i].what);
    return ZERO_OK;
}

void zr_state_free(zero_ctx *z)
{
    zr_state *st = &z->st;
    for (int i = st->nrec - 1; i >= 0; i--) { /* every copy has completed */
        zr_alloc_rec *r = &st->rec[i];
        if (r->pinned)
            zr_dev_host_unregister(&z->dev, *r->slot);
        zr_device_free(r->dev, r->label, *r->slot, r->bytes);
        *r->slot = NULL;
    }
    st->nrec = 0;
    st->master = NULL;
}

/* ---- initial values -------------------------------------------------------------------------- */

/* An element of the chunk's initial values (buf, fp32) that is inf or nan, or (work, the same
 * converted to the working precision) that becomes inf there: ZERO_ERR_INVALID naming the tensor
 * and the element. Every rank checks the broadcast values, so every rank gives the same verdict
 * without a further exchange. */
static zero_status check_initial_values(zero_ctx *z, int c, const float *buf, const void *work)
{
    const zp_layout *L = &z->layout;
    const zp_chunk *ch = &L->chunks[c];
    const uint16_t *h = z->dtype == ZERO_DTYPE_FP32 ? NULL : work;
    const uint16_t inf = z->dtype == ZERO_DTYPE_FP16 ? 0x7c00u : 0x7f80u; /* exponent all ones */
    /* a pass without branches first (padding is zeros): almost always the whole check */
    int bad = 0;
    for (size_t k = 0; k < ch->padded; k++) {
        uint32_t u;
        memcpy(&u, &buf[k], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    for (size_t k = 0; h && k < ch->padded; k++)
        bad |= (h[k] & inf) == inf;
    for (int i = ch->first_tensor; bad && i < ch->first_tensor + ch->num_tensors; i++) {
        const size_t off = L->place[i].offset, n = L->place[i].numel;
        for (size_t k = 0; k < n; k++) {
            uint32_t u;
            memcpy(&u, &buf[off + k], sizeof u);
            int finite = (u & 0x7f800000u) != 0x7f800000u;
            if (finite && !(h && (h[off + k] & inf) == inf))
                continue;
            if (!finite)
                return zr_fail(&z->err, ZERO_ERR_INVALID,
                               "zero_init: tensor %d (%s): initial value %zu is %s; initial "
                               "values must be finite",
                               i, z->meta[i].name, k,
                               (u & 0x7fffffu) ? "nan" : (u >> 31) ? "-inf" : "inf");
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "zero_init: tensor %d (%s): initial value %zu is %g, which is "
                           "%sinf in %s, the working precision (ZERO_DTYPE; largest finite "
                           "value %g)",
                           i, z->meta[i].name, k, (double)buf[off + k], (u >> 31) ? "-" : "",
                           zr_dtype_name(z->dtype),
                           z->dtype == ZERO_DTYPE_FP16 ? 65504.0 : 3.3895313892515355e38);
        }
    }
    return ZERO_OK;
}

/* Checks n values of one tensor piece (fp32 `x`, working `w`) as check_initial_values does. */
static zero_status check_piece(zero_ctx *z, int i, size_t first, const float *x, const void *w,
                               size_t n)
{
    const uint16_t *h = z->dtype == ZERO_DTYPE_FP32 ? NULL : w;
    const uint16_t inf = z->dtype == ZERO_DTYPE_FP16 ? 0x7c00u : 0x7f80u;
    for (size_t k = 0; k < n; k++) {
        uint32_t u;
        memcpy(&u, &x[k], sizeof u);
        int finite = (u & 0x7f800000u) != 0x7f800000u;
        if (finite && !(h && (h[k] & inf) == inf))
            continue;
        if (!finite)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "zero_init: tensor %d (%s): initial value %zu (from its init_fn) is %s; "
                           "initial values must be finite",
                           i, z->meta[i].name, first + k,
                           (u & 0x7fffffu) ? "nan" : (u >> 31) ? "-inf" : "inf");
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_init: tensor %d (%s): initial value %zu (from its init_fn) is %g, "
                       "which is inf in %s, the working precision (ZERO_DTYPE)",
                       i, z->meta[i].name, first + k, (double)x[k], zr_dtype_name(z->dtype));
    }
    return ZERO_OK;
}

/* Whether every tensor of chunk c has an init_fn: then each rank fills only its own slice. */
static int chunk_sharded(const zero_ctx *z, const zero_tensor *t, int c)
{
    const zp_chunk *ch = &z->layout.chunks[c];
    for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++)
        if (!t[i].init_fn)
            return 0;
    return 1;
}

/* A chunk whose tensors all have an init_fn: this rank calls them for the pieces of its own slice
 * only (no rank ever holds more than one slice of values at once), writes its slice of the master
 * and the working copy, and stages 0-2 all-gather the working chunk (stage 0 the master too).
 * A bad value is remembered in *bad; the collectives run anyway, so the ranks stay in step. */
static zero_status shard_chunk(zero_ctx *z, const zero_tensor *t, int c, float *buf, void *work,
                               zero_status *bad)
{
    const zp_layout *L = &z->layout;
    const zp_chunk *ch = &L->chunks[c];
    const int stage = z->set.cfg.stage;
    size_t lo, hi;
    zp_slice_range(L, c, z->rank, &lo, &hi);
    memset(buf, 0, (hi - lo) * sizeof *buf);
    int k = zr_segments(z, c, lo, hi);
    for (int j = 0; j < k; j++) {
        const zp_segment *sg = &z->seg[j];
        t[sg->tensor].init_fn(t[sg->tensor].init_user, sg->tensor, sg->tensor_offset, sg->numel,
                              buf + (sg->chunk_offset - lo));
    }
    zk_cast(work, z->dtype, buf, ZERO_DTYPE_FP32, hi - lo);
    for (int j = 0; j < k && !*bad; j++) {
        const zp_segment *sg = &z->seg[j];
        size_t at = sg->chunk_offset - lo;
        *bad = check_piece(z, sg->tensor, sg->tensor_offset, buf + at,
                           (char *)work + at * z->wsz, sg->numel);
    }
    size_t widx = stage == 3 ? ch->shard_offset : ch->offset + lo;
    zr_dev_copy(&z->dev, (char *)z->st.params + widx * z->wsz, work, (hi - lo) * z->wsz);
    if (z->st.master && z->st.master_owned)
        zr_dev_copy(&z->dev, stage > 0 ? z->st.master + ch->shard_offset : z->st.master + ch->offset + lo,
                    buf, (hi - lo) * sizeof *buf);
    zero_status s = ZERO_OK;
    if (stage < 3)
        s = zr_coll_all_gather(&z->dcoll, (char *)z->st.params + ch->offset * z->wsz, ch->slice,
                               zr_elem_of(z->dtype), ZR_TRAFFIC_OTHER, NULL);
    if (!s && stage == 0 && z->st.master && z->st.master_owned)
        s = zr_coll_all_gather(&z->dcoll, z->st.master + ch->offset, ch->slice, ZR_ELEM_F32,
                               ZR_TRAFFIC_OTHER, NULL);
    return s ? zr_fail(&z->err, s, "initial values of chunk %d: %s", c, z->comm.err.msg)
             : ZERO_OK;
}

/* Rank 0's initial values, broadcast chunk by chunk: every rank starts from the same numbers,
 * and refuses the same inf or nan among them (check_initial_values). The working copy is
 * converted on the host and copied to the device; the fp32 master slice is copied as is (to the
 * device, or to the host when the optimizer is offloaded). Chunks whose tensors all have an
 * init_fn are filled slice by slice on every rank instead (shard_chunk); a tensor with an init_fn
 * in a chunk that also holds rank-0 values is filled by rank 0's init_fn, then broadcast.
 * z->init_transient_peak: the host bytes held here at once. */
zero_status zr_load_initial_values(zero_ctx *z, const zero_tensor *t)
{
    const zp_layout *L = &z->layout;
    int all_sharded = 1;
    for (int c = 0; c < L->num_chunks; c++)
        all_sharded &= chunk_sharded(z, t, c);
    /* one chunk of fp32 values and its working copy; a slice of each when every chunk is sharded */
    size_t maxp = all_sharded ? L->max_slice : L->max_padded;
    float *buf = malloc((maxp ? maxp : 1) * sizeof *buf); /* fp32, host */
    void *work = malloc((maxp ? maxp : 1) * z->wsz);      /* working, host */
    if (!buf || !work) {
        free(buf);
        free(work);
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory for the initial values");
    }
    z->init_transient_peak = maxp * (sizeof *buf + z->wsz);
    zero_status s = ZERO_OK, bad = ZERO_OK;
    for (int c = 0; c < L->num_chunks && !s; c++) {
        const zp_chunk *ch = &L->chunks[c];
        if (chunk_sharded(z, t, c)) {
            s = shard_chunk(z, t, c, buf, work, &bad);
            continue;
        }
        memset(buf, 0, ch->padded * sizeof *buf);
        if (z->rank == 0)
            for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
                if (t[i].init)
                    memcpy(buf + L->place[i].offset, t[i].init, t[i].numel * sizeof *buf);
                else if (t[i].init_fn)
                    t[i].init_fn(t[i].init_user, i, 0, t[i].numel, buf + L->place[i].offset);
            }
        /* in pieces: a chunk holding one huge tensor may exceed MPI's int count */
        for (size_t at = 0; at < ch->padded && !s; at += (size_t)1 << 30) {
            size_t n = ch->padded - at < (size_t)1 << 30 ? ch->padded - at : (size_t)1 << 30;
            if ((s = zr_coll_broadcast(&z->hcoll, buf + at, n, ZR_ELEM_F32, 0, ZR_TRAFFIC_OTHER,
                                       NULL)))
                s = zr_fail(&z->err, s, "broadcast of initial values: %s", z->comm.err.msg);
        }
        if (s)
            break;
        size_t lo = 0, hi = ch->padded;
        if (z->set.cfg.stage > 0)
            zp_slice_range(L, c, z->rank, &lo, &hi);
        zk_cast(work, z->dtype, buf, ZERO_DTYPE_FP32, ch->padded);
        if (!bad)
            bad = check_initial_values(z, c, buf, work);
        if (z->set.cfg.stage == 3) /* parameters exist only as this rank's slices */
            zr_dev_copy(&z->dev, (char *)z->st.params + ch->shard_offset * z->wsz,
                        (char *)work + lo * z->wsz, (hi - lo) * z->wsz);
        else
            zr_dev_copy(&z->dev, (char *)z->st.params + ch->offset * z->wsz, work,
                        ch->padded * z->wsz);
        if (z->st.master && z->st.master_owned) {
            float *dst =
                z->set.cfg.stage > 0 ? z->st.master + ch->shard_offset : z->st.master + ch->offset;
            zr_dev_copy(&z->dev, dst, buf + lo, (hi - lo) * sizeof *buf);
        }
    }
    free(buf);
    free(work);
    if (s)
        return s;
    /* a bad value found by one rank's init_fn is every rank's failure */
    return zr_agree(z, bad, NULL, NULL, 0);
}

/* ---- deferred device errors ----------------------------------------------------------------- */

zero_status zr_device_error(zero_ctx *z, const char *during)
{
    char msg[256];
    zero_status s = zr_dev_take_error(&z->dev, msg, sizeof msg);
    return s ? zr_fail(&z->err, s, "%s on rank %d: device error: %s", during, z->rank, msg)
             : ZERO_OK;
}
