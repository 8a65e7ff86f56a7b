/* stage3.c — ZeRO stage 3: parameters live only as this rank's slices. zero_gather(module)
 * all-gathers the module's chunk into a pooled buffer, zero_release gives it back. The order of
 * gathers is recorded on the first micro-step; later micro-steps follow it and prefetch the
 * next chunks with non-blocking all-gathers (bounded by ZERO_PREFETCH_MB and ZERO_MAX_LIVE_MB).
 * While the order is being recorded the ranks exchange which module they are about to gather
 * before every all-gather (check_order); once they follow it, no exchange: a rank that leaves the
 * order meets the others in a different collective, and the sequence hash of the next boundary
 * (coll.c, step.c) catches what completes anyway, so ranks that gather in different orders fail
 * together, never deadlock, and never update with wrong gradients. */
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"
#include "util/log.h"

/* Stage 3's own state: parameters exist only as shards (z->st.params); a chunk is gathered into a
 * pooled buffer while any of its modules is in use (or prefetched), then given back. */
typedef struct zr_s3 {
    void **chunk_buf;              /* [num_chunks] (chunk padded) working, or NULL */
    int *chunk_users;              /* [num_chunks] zero_gather minus zero_release */
    unsigned char *chunk_flight;   /* [num_chunks] 1: its all-gather is still in flight */
    unsigned char *chunk_persist;  /* [num_chunks] 1: below ZERO_PERSIST_KB, always resident */
    unsigned char *chunk_prefetched; /* [num_chunks] 1: gathered ahead, not yet asked for */
    zr_creq *gather_req;           /* [num_chunks] */
    void **pool;                   /* free gather buffers */
    size_t *pool_elems;            /* [pool_cap] elements of each free buffer: a buffer is
                                      made for one chunk size and reused by chunks of that size,
                                      so one large module does not size every buffer */
    int pool_len, pool_cap;
    int pool_total;                /* gather buffers allocated and not freed */
    size_t live_bytes;             /* bytes of chunks gathered or in flight */
    int *trace;                    /* modules in the order zero_gather asked for them */
    int trace_len, trace_cap, trace_pos;
    int trace_valid;               /* 1: recorded on an earlier micro-step, being followed */
    int trace_recording;           /* 1: this micro-step records */
    uint64_t order_hash;           /* hash of this micro-step's gathers so far (cross-rank check) */
    int64_t gathers, prefetches, prefetch_hits;
    int eval;                      /* inside an evaluation pass (zero_eval_begin) */
    uint64_t eval_saved_hash;      /* order_hash when the pass began */
} zr_s3;

static size_t chunk_bytes(const zero_ctx *z, int c) { return z->layout.chunks[c].padded * z->wsz; }
static size_t ch_elems(const zero_ctx *z, int c) { return z->layout.chunks[c].padded; }

/* Device bytes a gathered chunk holds: a buffer of exactly its size. */
static size_t held_bytes(const zero_ctx *z, int c) { return chunk_bytes(z, c); }

static void pool_put(zero_ctx *z, void *buf, size_t elems)
{
    /* pool_cap >= pool_total >= pool_len + 1 here: room was made when buf was allocated */
    z->s3->pool[z->s3->pool_len] = buf;
    z->s3->pool_elems[z->s3->pool_len++] = elems;
}

/* Frees the free buffers that are not of `elems` elements (to make room for one that is). */
static size_t pool_trim(zero_ctx *z, size_t elems)
{
    size_t freed = 0;
    int k = 0;
    for (int i = 0; i < z->s3->pool_len; i++) {
        if (z->s3->pool_elems[i] == elems) {
            z->s3->pool[k] = z->s3->pool[i];
            z->s3->pool_elems[k++] = z->s3->pool_elems[i];
            continue;
        }
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, z->s3->pool[i], z->s3->pool_elems[i] * z->wsz);
        freed += z->s3->pool_elems[i] * z->wsz;
        z->s3->pool_total--;
    }
    z->s3->pool_len = k;
    return freed;
}

/* A free buffer for chunk c: one of its size, else a new one (when the device is full, after
 * giving back the free buffers of other sizes). */
static zero_status pool_get(zero_ctx *z, int c, void **buf)
{
    const size_t elems = z->layout.chunks[c].padded;
    for (int i = z->s3->pool_len - 1; i >= 0; i--)
        if (z->s3->pool_elems[i] == elems) {
            *buf = z->s3->pool[i];
            z->s3->pool[i] = z->s3->pool[z->s3->pool_len - 1];
            z->s3->pool_elems[i] = z->s3->pool_elems[z->s3->pool_len - 1];
            z->s3->pool_len--;
            return ZERO_OK;
        }
    if (z->s3->pool_total + 1 > z->s3->pool_cap) {
        int cap = z->s3->pool_cap ? 2 * z->s3->pool_cap : 8;
        void **np = realloc(z->s3->pool, (size_t)cap * sizeof *np);
        if (np)
            z->s3->pool = np;
        size_t *ne = np ? realloc(z->s3->pool_elems, (size_t)cap * sizeof *ne) : NULL;
        if (!ne)
            return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
        z->s3->pool_elems = ne;
        z->s3->pool_cap = cap;
    }
    if (z->s3->pool_len > 0 && !zr_device_fits(&z->dev, elems * z->wsz))
        pool_trim(z, elems);
    zero_status s =
        zr_dev_alloc(z, ZERO_MEM_BUFFERS, elems * z->wsz, "stage-3 gathered parameters", buf);
    if (s == ZERO_ERR_OOM && pool_trim(z, elems) > 0) { /* a device without a known capacity */
        s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, elems * z->wsz, "stage-3 gathered parameters", buf);
        if (!s)
            zr_error_clear(&z->err);
    }
    if (s)
        return s;
    z->s3->pool_total++;
    ZR_TRACE(ZR_SUB_ALLOC, "stage 3: %d gather buffers (new one of %zu elements)",
             z->s3->pool_total, elems);
    return ZERO_OK;
}

/* Gives a pooled chunk's buffer back (resident chunks keep their own). */
static void drop_chunk(zero_ctx *z, int c)
{
    zr_views_chunk_changed(z, c, 1);
    z->s3->chunk_prefetched[c] = 0;
    pool_put(z, z->s3->chunk_buf[c], z->layout.chunks[c].padded);
    z->s3->chunk_buf[c] = NULL;
    z->s3->live_bytes -= held_bytes(z, c);
}

/* The slow path, while the order is being recorded (the first micro-step, or again after a rank
 * left it) or when this rank could not prepare a gather: every rank says which chunk it asks for,
 * the hash of its requests so far this micro-step (the modules asked for by zero_gather, so that
 * with one chunk for the whole model an extra gather of another module still differs) and
 * whether it could prepare for it (`local`: e.g. a gather buffer it failed to allocate); a
 * difference or any failure is an error on every rank. Run for every zero_gather, resident
 * chunks included, and for every gather libzero starts itself (prefetch, refresh: module -1, the
 * chunk is hashed). */
static zero_status check_order(zero_ctx *z, int c, int module, zero_status local)
{
    z->s3->order_hash = zr_mix64(z->s3->order_hash, module >= 0 ? (uint64_t)module + 1
                                                                : ((uint64_t)1 << 40) + (uint64_t)c);
    /* The fast path: while this rank follows the order recorded on the first micro-step (as
     * every rank does when they agree), no exchange. The gathers' signatures go into the
     * sequence hash (coll.c) that the next optimizer boundary compares before any update; a
     * rank that leaves the order comes back to this exchange while the others do not, and the
     * ranks meet in different collectives: ZERO_ERR_COMM on every rank, at once or within
     * ZERO_TIMEOUT_S. */
    if (z->s3->trace_valid && local == ZERO_OK && !z->s3->eval) /* eval gathers: no trace */
        return ZERO_OK;
    int64_t *all = malloc((size_t)z->world * 3 * sizeof *all);
    if (!all)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    all[3 * z->rank] = c;
    all[3 * z->rank + 1] = (int64_t)z->s3->order_hash;
    all[3 * z->rank + 2] = local;
    zr_coll_tag(&z->hcoll, "stage-3 order check of chunk", c);
    zero_status s = zr_coll_all_gather(&z->hcoll, all, 3, ZR_ELEM_I64, ZR_TRAFFIC_OTHER, NULL);
    if (s) {
        zr_comm_release(&z->comm, all);
        return zr_fail(&z->err, s, "stage 3 order check: %s", z->comm.err.msg);
    }
    for (int r = 0; r < z->world && !s; r++) {
        int oc = (int)all[3 * r];
        if (all[3 * r + 2] != ZERO_OK) {
            s = local ? local
                      : zr_fail(&z->err, (zero_status)all[3 * r + 2],
                                "stage 3: rank %d could not gather chunk %d (%s)", r, oc,
                                zero_status_string((zero_status)all[3 * r + 2]));
        } else if (oc != c || all[3 * r + 1] != (int64_t)z->s3->order_hash) {
            const zp_chunk *a = &z->layout.chunks[c];
            s = zr_fail(&z->err, ZERO_ERR_COMM,
                        "stage 3: ranks gather modules in different orders: rank %d gathers "
                        "modules %d..%d (chunk %d) where rank %d gathers chunk %d%s; every rank "
                        "must call zero_gather for the same modules in the same order",
                        z->rank, a->first_module, a->last_module, c, r, oc,
                        oc == c ? " after a different sequence" : "");
        }
    }
    zr_comm_release(&z->comm, all);
    return s;
}

/* Starts (or, blocking, completes) the all-gather of chunk c into its buffer: a pooled one, or
 * the chunk's own exact-size buffer when it is resident. */
static zero_status issue_gather(zero_ctx *z, int c, int module, int blocking)
{
    void *buf = z->s3->chunk_buf[c];
    zero_status local = ZERO_OK;
    if (!buf) {
        if (z->s3->chunk_persist[c])
            local = zr_dev_alloc(z, ZERO_MEM_BUFFERS, chunk_bytes(z, c),
                                 "stage-3 resident parameters", &buf);
        else
            local = pool_get(z, c, &buf);
    }
    zero_status s = check_order(z, c, module, local);
    if (s) {
        if (!local && buf && !z->s3->chunk_buf[c]) {
            if (z->s3->chunk_persist[c])
                zr_device_free(&z->dev, ZERO_MEM_BUFFERS, buf, chunk_bytes(z, c));
            else
                pool_put(z, buf, ch_elems(z, c));
        }
        return s;
    }
    const zp_chunk *ch = &z->layout.chunks[c];
    zr_views_chunk_changed(z, c, 0); /* its fp32 view, if any, is converted again when asked */
    zr_dev_copy(&z->dev, (char *)buf + (size_t)z->rank * ch->slice * z->wsz,
                (char *)z->st.params + ch->shard_offset * z->wsz, ch->slice * z->wsz);
    zr_coll_tag(&z->dcoll, "gather of chunk", c); /* prefetched or not: the same on every rank */
    s = zr_coll_all_gather(&z->dcoll, buf, ch->slice, zr_elem_of(z->dtype), ZR_TRAFFIC_TRAIN,
                           blocking ? NULL : &z->s3->gather_req[c]);
    if (s) {
        if (!z->s3->chunk_buf[c] && !z->s3->chunk_persist[c])
            pool_put(z, buf, ch_elems(z, c));
        else if (!z->s3->chunk_buf[c])
            zr_device_free(&z->dev, ZERO_MEM_BUFFERS, buf, chunk_bytes(z, c));
        return zr_fail(&z->err, s, "stage 3 all-gather of chunk %d: %s", c, z->comm.err.msg);
    }
    if (!z->s3->chunk_buf[c] && !z->s3->chunk_persist[c])
        z->s3->live_bytes += held_bytes(z, c);
    z->s3->chunk_buf[c] = buf;
    z->s3->chunk_flight[c] = !blocking;
    z->s3->gathers++;
    return ZERO_OK;
}

static zero_status wait_chunk(zero_ctx *z, int c)
{
    if (!z->s3->chunk_flight[c])
        return ZERO_OK;
    zero_status s = zr_coll_wait(&z->dcoll, &z->s3->gather_req[c]);
    z->s3->chunk_flight[c] = 0;
    return s ? zr_fail(&z->err, s, "stage 3 all-gather of chunk %d: %s", c, z->comm.err.msg)
             : ZERO_OK;
}

zero_status zr_s3_progress(zero_ctx *z)
{
    for (int c = 0; c < z->layout.num_chunks; c++) {
        if (!z->s3->chunk_flight[c])
            continue;
        int done = 0;
        zero_status s = zr_coll_test(&z->dcoll, &z->s3->gather_req[c], &done);
        if (s)
            return zr_fail(&z->err, s, "stage 3 all-gather of chunk %d: %s", c, z->comm.err.msg);
        if (done)
            z->s3->chunk_flight[c] = 0;
    }
    return ZERO_OK;
}

zero_status zr_s3_setup(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    size_t n = (size_t)L->num_chunks;
    if (!(z->s3 = calloc(1, sizeof *z->s3)))
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    z->s3->chunk_buf = calloc(n, sizeof *z->s3->chunk_buf);
    z->s3->chunk_users = calloc(n, sizeof *z->s3->chunk_users);
    z->s3->chunk_flight = calloc(n, 1);
    z->s3->chunk_persist = calloc(n, 1);
    z->s3->chunk_prefetched = calloc(n, 1);
    z->s3->gather_req = calloc(n, sizeof *z->s3->gather_req);
    if (!z->s3->chunk_buf || !z->s3->chunk_users || !z->s3->chunk_flight || !z->s3->chunk_persist ||
        !z->s3->chunk_prefetched || !z->s3->gather_req)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    z->s3->trace_recording = 1;
    /* Chunks below ZERO_PERSIST_KB are gathered once and stay resident. */
    int persistent = 0;
    size_t pbytes = 0;
    for (int c = 0; c < L->num_chunks; c++) {
        if (chunk_bytes(z, c) >= z->set.cfg.persist_bytes)
            continue;
        z->s3->chunk_persist[c] = 1;
        zero_status s = issue_gather(z, c, -1, 1);
        if (s)
            return s;
        persistent++;
        pbytes += chunk_bytes(z, c);
    }
    z->s3->order_hash = 0;
    ZR_INFO(ZR_SUB_PART, "stage 3: %d of %d chunks resident (%zu bytes, ZERO_PERSIST_KB)",
            persistent, L->num_chunks, pbytes);
    return ZERO_OK;
}

void zr_s3_free(zero_ctx *z)
{
    zr_s3 *s3 = z->s3;
    if (!s3)
        return;
    for (int c = 0; s3->chunk_buf && s3->chunk_flight && s3->chunk_persist && s3->gather_req &&
                    c < z->layout.num_chunks;
         c++) {
        if (s3->chunk_flight[c])
            zr_coll_wait(&z->dcoll, &s3->gather_req[c]);
        zr_coll_request_free(&z->dcoll, &s3->gather_req[c]);
        if (s3->chunk_buf[c] && s3->chunk_persist[c]) {
            zr_device_free(&z->dev, ZERO_MEM_BUFFERS, s3->chunk_buf[c], chunk_bytes(z, c));
            s3->chunk_buf[c] = NULL;
        } else if (s3->chunk_buf[c]) {
            drop_chunk(z, c);
        }
    }
    for (int i = 0; i < s3->pool_len; i++)
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, s3->pool[i], s3->pool_elems[i] * z->wsz);
    free(s3->pool);
    free(s3->pool_elems);
    free(s3->chunk_buf);
    free(s3->chunk_users);
    free(s3->chunk_flight);
    free(s3->chunk_persist);
    free(s3->chunk_prefetched);
    free(s3->gather_req);
    free(s3->trace);
    free(s3);
    z->s3 = NULL;
}

void zr_s3_counters(const zero_ctx *z, int64_t *gathers, int64_t *prefetches, int64_t *hits,
                    int *buffers, int *trace_len)
{
    const zr_s3 *s3 = z->s3;
    *gathers = s3 ? s3->gathers : 0;
    *prefetches = s3 ? s3->prefetches : 0;
    *hits = s3 ? s3->prefetch_hits : 0;
    *buffers = s3 ? s3->pool_total : 0;
    *trace_len = s3 ? s3->trace_len : 0;
}

/* The trace holds module ids, one per zero_gather call of the recording micro-step. */
static zero_status trace_append(zero_ctx *z, int module)
{
    if (z->s3->trace_len == z->s3->trace_cap) {
        int cap = z->s3->trace_cap ? 2 * z->s3->trace_cap : 64;
        int *nt = realloc(z->s3->trace, (size_t)cap * sizeof *nt);
        if (!nt)
            return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
        z->s3->trace = nt;
        z->s3->trace_cap = cap;
    }
    z->s3->trace[z->s3->trace_len++] = module;
    return ZERO_OK;
}

/* Follows the recorded order: trace[trace_pos] is the module asked for next. */
static void trace_follow(zero_ctx *z, int module)
{
    if (!z->s3->trace_valid)
        return;
    if (z->s3->trace_pos < z->s3->trace_len && z->s3->trace[z->s3->trace_pos] == module) {
        z->s3->trace_pos++;
        return;
    }
    ZR_WARN(ZR_SUB_PART,
            "stage 3: module %d gathered out of the recorded order (position %d expects module "
            "%d); prefetch is off until the order is recorded again",
            module, z->s3->trace_pos,
            z->s3->trace_pos < z->s3->trace_len ? z->s3->trace[z->s3->trace_pos] : -1);
    z->s3->trace_valid = 0;
}

/* Prefetches the chunks the trace asks for next, up to ZERO_PREFETCH_MB ahead and while the
 * gathered total stays under ZERO_MAX_LIVE_MB. */
static zero_status prefetch(zero_ctx *z)
{
    if (!z->s3->trace_valid || z->set.cfg.prefetch_bytes == 0)
        return ZERO_OK;
    size_t ahead = 0;
    size_t cap = z->set.cfg.max_live_bytes ? z->set.cfg.max_live_bytes : (size_t)-1;
    int last = -1;
    for (int j = z->s3->trace_pos; j < z->s3->trace_len; j++) {
        int c = z->layout.module_chunk[z->s3->trace[j]];
        if (c < 0 || c == last)
            continue;
        last = c;
        size_t b = chunk_bytes(z, c);
        if (ahead + b > z->set.cfg.prefetch_bytes)
            break;
        ahead += b;
        if (z->s3->chunk_buf[c])
            continue;
        if (z->s3->live_bytes + held_bytes(z, c) > cap)
            break;
        zero_status s = issue_gather(z, c, z->s3->trace[j], 0);
        if (s)
            return s;
        z->s3->chunk_prefetched[c] = 1;
        z->s3->prefetches++;
    }
    return ZERO_OK;
}

/* An evaluation pass's gather: every one checked across ranks, nothing recorded or followed; a
 * chunk training prefetched is used as it is and stays prefetched for training. */
static zero_status eval_gather(zero_ctx *z, int module, int c)
{
    zero_status s;
    if (z->s3->chunk_buf[c]) {
        if ((s = check_order(z, c, module, ZERO_OK)) || (s = wait_chunk(z, c)))
            return s;
    } else if ((s = issue_gather(z, c, module, 1))) {
        return s;
    }
    z->s3->chunk_users[c]++;
    return zr_s3_progress(z);
}

void zr_s3_eval(zero_ctx *z, int on)
{
    if (on)
        z->s3->eval_saved_hash = z->s3->order_hash;
    else
        z->s3->order_hash = z->s3->eval_saved_hash; /* training's order check goes on as before */
    z->s3->eval = on;
}

int zr_s3_held(const zero_ctx *z)
{
    int n = 0;
    for (int c = 0; z->s3 && c < z->layout.num_chunks; c++)
        n += z->s3->chunk_users[c] > 0;
    return n;
}

zero_status zr_s3_gather(zero_ctx *z, int module)
{
    int c = z->layout.module_chunk[module];
    if (c < 0)
        return ZERO_OK;
    zero_status s;
    if (z->s3->eval)
        return eval_gather(z, module, c);
    if (z->s3->trace_recording && (s = trace_append(z, module)))
        return s;
    trace_follow(z, module);
    if (z->s3->chunk_buf[c]) { /* resident, prefetched or kept: still every rank checks in */
        if ((s = check_order(z, c, module, ZERO_OK)))
            return s;
        if (z->s3->chunk_prefetched[c]) {
            z->s3->prefetch_hits++;
            z->s3->chunk_prefetched[c] = 0;
        }
        if ((s = wait_chunk(z, c)))
            return s;
    } else if ((s = issue_gather(z, c, module, 1))) {
        return s;
    }
    z->s3->chunk_users[c]++; /* gathered: a failed prefetch below leaves it held, as it is */
    s = prefetch(z);
    return s ? s : zr_s3_progress(z);
}

zero_status zr_s3_release(zero_ctx *z, int module)
{
    int c = z->layout.module_chunk[module];
    if (c < 0)
        return ZERO_OK;
    if (z->s3->chunk_users[c] <= 0)
        return zr_fail(&z->err, ZERO_ERR_STATE,
                       "zero_release: module %d was not gathered (call zero_gather first)",
                       module);
    if (--z->s3->chunk_users[c] > 0 || z->s3->chunk_persist[c])
        return ZERO_OK;
    if (z->s3->eval && z->s3->chunk_prefetched[c])
        return ZERO_OK; /* training asked for it ahead: it stays */
    /* Keep it when the recorded order asks for the same chunk next (not for an eval gather:
     * training then finds the chunks as it would have without the pass). */
    if (!z->s3->eval && z->s3->trace_valid && z->s3->trace_pos < z->s3->trace_len &&
        z->layout.module_chunk[z->s3->trace[z->s3->trace_pos]] == c)
        return ZERO_OK;
    drop_chunk(z, c);
    return zr_s3_progress(z);
}

void *zr_s3_param_ptr(zero_ctx *z, int i)
{
    const zp_place *p = &z->layout.place[i];
    int c = p->chunk;
    if (!z->s3->chunk_buf[c] || (z->s3->chunk_users[c] <= 0 && !z->s3->chunk_persist[c])) {
        zr_fail(&z->err, ZERO_ERR_STATE,
                "zero_param_ptr: tensor %d (%s) is not gathered; at ZERO_STAGE=3 call "
                "zero_gather(module %d) first",
                i, z->meta[i].name,
                z->layout.place[i].chunk >= 0 ? z->layout.chunks[c].first_module : -1);
        return NULL;
    }
    if (wait_chunk(z, c))
        return NULL;
    return (char *)z->s3->chunk_buf[c] + p->offset * z->wsz;
}

void zr_s3_micro_step_done(zero_ctx *z)
{
    if (z->s3->trace_recording) {
        z->s3->trace_recording = 0;
        z->s3->trace_valid = z->s3->trace_len > 0;
        ZR_INFO(ZR_SUB_PART, "stage 3: recorded an order of %d module gathers", z->s3->trace_len);
    } else if (!z->s3->trace_valid) { /* invalidated: record again on the next micro-step */
        z->s3->trace_len = 0;
        z->s3->trace_recording = 1;
    }
    z->s3->trace_pos = 0;
    z->s3->order_hash = 0;
}

/* After an optimizer step the gathered copies are stale: resident (and still held) chunks are
 * gathered again, the rest given back. */
zero_status zr_s3_after_step(zero_ctx *z)
{
    for (int c = 0; c < z->layout.num_chunks; c++) {
        zero_status s = wait_chunk(z, c);
        if (s)
            return s;
        if (!z->s3->chunk_buf[c])
            continue;
        if (z->s3->chunk_persist[c]) { /* refreshed in its own buffer */
            if ((s = issue_gather(z, c, -1, 1)))
                return s;
            continue;
        }
        int keep = z->s3->chunk_users[c] > 0;
        drop_chunk(z, c);
        if (keep && (s = issue_gather(z, c, -1, 1)))
            return s;
    }
    z->s3->order_hash = 0;
    return ZERO_OK;
}
