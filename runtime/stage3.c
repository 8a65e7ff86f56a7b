/* stage3.c — ZeRO stage 3: parameters live only as this rank's slices. zero_gather(module)
 * all-gathers the module's chunk into a pooled buffer, zero_release gives it back. The order of
 * gathers is recorded on the first micro-step; later micro-steps follow it and prefetch the
 * next chunks with non-blocking all-gathers (bounded by ZERO_PREFETCH_MB and ZERO_MAX_LIVE_MB).
 * Before every all-gather the ranks exchange which chunk they are about to gather, so ranks
 * that gather in different orders fail together instead of deadlocking. */
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"
#include "runtime/log.h"

static size_t chunk_bytes(const zero_ctx *z, int c) { return z->layout.chunks[c].padded * z->wsz; }

/* Device bytes a gathered chunk holds: a whole pool buffer (sized for the largest chunk). */
static size_t held_bytes(const zero_ctx *z) { return z->pool_elems * z->wsz; }

static zero_status pool_get(zero_ctx *z, void **buf)
{
    if (z->pool_len > 0) {
        *buf = z->pool[--z->pool_len];
        return ZERO_OK;
    }
    void **np = realloc(z->pool, (size_t)(z->pool_total + 1) * sizeof *np);
    if (!np)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
    z->pool = np;
    zero_status s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, z->pool_elems * z->wsz,
                                 "stage-3 gathered parameters", buf);
    if (s)
        return s;
    z->pool_total++;
    ZR_TRACE(ZR_SUB_ALLOC, "stage 3: %d gather buffers", z->pool_total);
    return ZERO_OK;
}

/* Gives a pooled chunk's buffer back (resident chunks keep their own). */
static void drop_chunk(zero_ctx *z, int c)
{
    z->chunk_prefetched[c] = 0;
    z->pool[z->pool_len++] = z->chunk_buf[c];
    z->chunk_buf[c] = NULL;
    z->live_bytes -= held_bytes(z);
}

/* Every rank says which chunk it asks for (and the hash of its requests so far this micro-step)
 * and whether it could prepare for it (`local`: e.g. a gather buffer it failed to allocate); a
 * difference or any failure is an error on every rank. Run for every zero_gather, resident
 * chunks included, and for every gather libzero starts itself (prefetch, refresh), so ranks
 * never wait in different collectives. */
static zero_status check_order(zero_ctx *z, int c, zero_status local)
{
    z->order_hash = zr_mix64(z->order_hash, (uint64_t)c + 1);
    int64_t *all = malloc((size_t)z->world * 3 * sizeof *all);
    if (!all)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
    all[3 * z->rank] = c;
    all[3 * z->rank + 1] = (int64_t)z->order_hash;
    all[3 * z->rank + 2] = local;
    int save = z->comm.counting;
    z->comm.counting = 0;
    zero_status s = zr_all_gather(&z->comm, all, 3, ZR_ELEM_I64, NULL);
    z->comm.counting = save;
    if (s) {
        free(all);
        return zr_fail(z, s, "stage 3 order check: %s", z->comm.err);
    }
    for (int r = 0; r < z->world && !s; r++) {
        int oc = (int)all[3 * r];
        if (all[3 * r + 2] != ZERO_OK) {
            s = local ? local
                      : zr_fail(z, (zero_status)all[3 * r + 2],
                                "stage 3: rank %d could not gather chunk %d (%s)", r, oc,
                                zero_status_string((zero_status)all[3 * r + 2]));
        } else if (oc != c || all[3 * r + 1] != (int64_t)z->order_hash) {
            const zp_chunk *a = &z->layout.chunks[c];
            s = zr_fail(z, ZERO_ERR_COMM,
                        "stage 3: ranks gather modules in different orders: rank %d gathers "
                        "modules %d..%d (chunk %d) where rank %d gathers chunk %d%s; every rank "
                        "must call zero_gather for the same modules in the same order",
                        z->rank, a->first_module, a->last_module, c, r, oc,
                        oc == c ? " after a different sequence" : "");
        }
    }
    free(all);
    return s;
}

/* Starts (or, blocking, completes) the all-gather of chunk c into its buffer: a pooled one, or
 * the chunk's own exact-size buffer when it is resident. */
static zero_status issue_gather(zero_ctx *z, int c, int blocking)
{
    void *buf = z->chunk_buf[c];
    zero_status local = ZERO_OK;
    if (!buf) {
        if (z->chunk_persist[c])
            local = zr_dev_alloc(z, ZERO_MEM_BUFFERS, chunk_bytes(z, c),
                                 "stage-3 resident parameters", &buf);
        else
            local = pool_get(z, &buf);
    }
    zero_status s = check_order(z, c, local);
    if (s) {
        if (!local && buf && !z->chunk_buf[c]) {
            if (z->chunk_persist[c])
                zr_device_free(&z->dev, ZERO_MEM_BUFFERS, buf, chunk_bytes(z, c));
            else
                z->pool[z->pool_len++] = buf;
        }
        return s;
    }
    const zp_chunk *ch = &z->layout.chunks[c];
    zr_dev_copy(&z->dev, (char *)buf + (size_t)z->rank * ch->slice * z->wsz,
                (char *)z->params + ch->shard_offset * z->wsz, ch->slice * z->wsz);
    s = zr_dc_all_gather(z, buf, ch->slice, zr_elem_of(z->dtype),
                         blocking ? NULL : &z->gather_req[c]);
    if (s) {
        if (!z->chunk_buf[c] && !z->chunk_persist[c])
            z->pool[z->pool_len++] = buf;
        else if (!z->chunk_buf[c])
            zr_device_free(&z->dev, ZERO_MEM_BUFFERS, buf, chunk_bytes(z, c));
        return zr_fail(z, s, "stage 3 all-gather of chunk %d: %s", c, z->comm.err);
    }
    if (!z->chunk_buf[c] && !z->chunk_persist[c])
        z->live_bytes += held_bytes(z);
    z->chunk_buf[c] = buf;
    z->chunk_flight[c] = !blocking;
    z->gathers++;
    return ZERO_OK;
}

static zero_status wait_chunk(zero_ctx *z, int c)
{
    if (!z->chunk_flight[c])
        return ZERO_OK;
    zero_status s = zr_dc_wait(z, &z->gather_req[c]);
    z->chunk_flight[c] = 0;
    return s ? zr_fail(z, s, "stage 3 all-gather of chunk %d: %s", c, z->comm.err) : ZERO_OK;
}

zero_status zr_s3_progress(zero_ctx *z)
{
    for (int c = 0; c < z->layout.num_chunks; c++) {
        if (!z->chunk_flight[c])
            continue;
        int done = 0;
        zero_status s = zr_dc_test(z, &z->gather_req[c], &done);
        if (s)
            return zr_fail(z, s, "stage 3 all-gather of chunk %d: %s", c, z->comm.err);
        if (done)
            z->chunk_flight[c] = 0;
    }
    return ZERO_OK;
}

zero_status zr_s3_setup(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    size_t n = (size_t)L->num_chunks;
    z->chunk_buf = calloc(n, sizeof *z->chunk_buf);
    z->chunk_users = calloc(n, sizeof *z->chunk_users);
    z->chunk_flight = calloc(n, 1);
    z->chunk_persist = calloc(n, 1);
    z->chunk_prefetched = calloc(n, 1);
    if (!z->chunk_buf || !z->chunk_users || !z->chunk_flight || !z->chunk_persist ||
        !z->chunk_prefetched)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
    z->pool_elems = L->max_padded;
    z->trace_recording = 1;
    /* Chunks below ZERO_PERSIST_KB are gathered once and stay resident. */
    int persistent = 0;
    size_t pbytes = 0;
    for (int c = 0; c < L->num_chunks; c++) {
        if (chunk_bytes(z, c) >= z->set.cfg.persist_bytes)
            continue;
        z->chunk_persist[c] = 1;
        zero_status s = issue_gather(z, c, 1);
        if (s)
            return s;
        persistent++;
        pbytes += chunk_bytes(z, c);
    }
    z->order_hash = 0;
    ZR_INFO(ZR_SUB_PART, "stage 3: %d of %d chunks resident (%zu bytes, ZERO_PERSIST_KB), "
            "prefetch %zu bytes, live cap %zu bytes",
            persistent, L->num_chunks, pbytes, z->set.cfg.prefetch_bytes,
            z->set.cfg.max_live_bytes);
    return ZERO_OK;
}

void zr_s3_free(zero_ctx *z)
{
    for (int c = 0; z->chunk_buf && z->chunk_flight && z->chunk_persist &&
                    c < z->layout.num_chunks;
         c++) {
        if (z->chunk_flight[c])
            zr_dc_wait(z, &z->gather_req[c]);
        if (z->chunk_buf[c] && z->chunk_persist[c]) {
            zr_device_free(&z->dev, ZERO_MEM_BUFFERS, z->chunk_buf[c], chunk_bytes(z, c));
            z->chunk_buf[c] = NULL;
        } else if (z->chunk_buf[c]) {
            drop_chunk(z, c);
        }
    }
    for (int i = 0; i < z->pool_len; i++)
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, z->pool[i], z->pool_elems * z->wsz);
    free(z->pool);
    free(z->chunk_buf);
    free(z->chunk_users);
    free(z->chunk_flight);
    free(z->chunk_persist);
    free(z->chunk_prefetched);
    free(z->trace);
    z->pool = NULL;
    z->chunk_buf = NULL;
    z->trace = NULL;
    z->pool_len = z->pool_total = 0;
}

/* The trace holds module ids, one per zero_gather call of the recording micro-step. */
static zero_status trace_append(zero_ctx *z, int module)
{
    if (z->trace_len == z->trace_cap) {
        int cap = z->trace_cap ? 2 * z->trace_cap : 64;
        int *nt = realloc(z->trace, (size_t)cap * sizeof *nt);
        if (!nt)
            return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
        z->trace = nt;
        z->trace_cap = cap;
    }
    z->trace[z->trace_len++] = module;
    return ZERO_OK;
}

/* Follows the recorded order: trace[trace_pos] is the module asked for next. */
static void trace_follow(zero_ctx *z, int module)
{
    if (!z->trace_valid)
        return;
    if (z->trace_pos < z->trace_len && z->trace[z->trace_pos] == module) {
        z->trace_pos++;
        return;
    }
    ZR_WARN(ZR_SUB_PART,
            "stage 3: module %d gathered out of the recorded order (position %d expects module "
            "%d); prefetch is off until the order is recorded again",
            module, z->trace_pos, z->trace_pos < z->trace_len ? z->trace[z->trace_pos] : -1);
    z->trace_valid = 0;
}

/* Prefetches the chunks the trace asks for next, up to ZERO_PREFETCH_MB ahead and while the
 * gathered total stays under ZERO_MAX_LIVE_MB. */
static zero_status prefetch(zero_ctx *z)
{
    if (!z->trace_valid || z->set.cfg.prefetch_bytes == 0)
        return ZERO_OK;
    size_t ahead = 0;
    size_t cap = z->set.cfg.max_live_bytes ? z->set.cfg.max_live_bytes : (size_t)-1;
    int last = -1;
    for (int j = z->trace_pos; j < z->trace_len; j++) {
        int c = z->layout.module_chunk[z->trace[j]];
        if (c < 0 || c == last)
            continue;
        last = c;
        size_t b = chunk_bytes(z, c);
        if (ahead + b > z->set.cfg.prefetch_bytes)
            break;
        ahead += b;
        if (z->chunk_buf[c])
            continue;
        if (z->live_bytes + held_bytes(z) > cap)
            break;
        zero_status s = issue_gather(z, c, 0);
        if (s)
            return s;
        z->chunk_prefetched[c] = 1;
        z->prefetches++;
    }
    return ZERO_OK;
}

zero_status zr_s3_gather(zero_ctx *z, int module)
{
    int c = z->layout.module_chunk[module];
    if (c < 0)
        return ZERO_OK;
    zero_status s;
    if (z->trace_recording && (s = trace_append(z, module)))
        return s;
    trace_follow(z, module);
    if (z->chunk_buf[c]) { /* resident, prefetched or kept: still every rank checks in */
        if ((s = check_order(z, c, ZERO_OK)))
            return s;
        if (z->chunk_prefetched[c]) {
            z->prefetch_hits++;
            z->chunk_prefetched[c] = 0;
        }
        if ((s = wait_chunk(z, c)))
            return s;
    } else if ((s = issue_gather(z, c, 1))) {
        return s;
    }
    z->chunk_users[c]++; /* gathered: a failed prefetch below leaves it held, as it is */
    s = prefetch(z);
    return s ? s : zr_s3_progress(z);
}

zero_status zr_s3_release(zero_ctx *z, int module)
{
    int c = z->layout.module_chunk[module];
    if (c < 0)
        return ZERO_OK;
    if (z->chunk_users[c] <= 0)
        return zr_fail(z, ZERO_ERR_STATE,
                       "zero_release: module %d was not gathered (call zero_gather first)",
                       module);
    if (--z->chunk_users[c] > 0 || z->chunk_persist[c])
        return ZERO_OK;
    /* Keep it when the recorded order asks for the same chunk next. */
    if (z->trace_valid && z->trace_pos < z->trace_len &&
        z->layout.module_chunk[z->trace[z->trace_pos]] == c)
        return ZERO_OK;
    drop_chunk(z, c);
    return zr_s3_progress(z);
}

void *zr_s3_param_ptr(zero_ctx *z, int i)
{
    const zp_place *p = &z->layout.place[i];
    int c = p->chunk;
    if (!z->chunk_buf[c] || (z->chunk_users[c] <= 0 && !z->chunk_persist[c])) {
        zr_fail(z, ZERO_ERR_STATE,
                "zero_param_ptr: tensor %d (%s) is not gathered; at ZERO_STAGE=3 call "
                "zero_gather(module %d) first",
                i, z->meta[i].name, z->layout.place[i].chunk >= 0 ? z->layout.chunks[c].first_module : -1);
        return NULL;
    }
    if (wait_chunk(z, c))
        return NULL;
    return (char *)z->chunk_buf[c] + p->offset * z->wsz;
}

void zr_s3_micro_step_done(zero_ctx *z)
{
    if (z->trace_recording) {
        z->trace_recording = 0;
        z->trace_valid = z->trace_len > 0;
        ZR_INFO(ZR_SUB_PART, "stage 3: recorded an order of %d module gathers", z->trace_len);
    } else if (!z->trace_valid) { /* invalidated: record again on the next micro-step */
        z->trace_len = 0;
        z->trace_recording = 1;
    }
    z->trace_pos = 0;
    z->order_hash = 0;
}

/* After an optimizer step the gathered copies are stale: resident (and still held) chunks are
 * gathered again, the rest given back. */
zero_status zr_s3_after_step(zero_ctx *z, int updated)
{
    for (int c = 0; c < z->layout.num_chunks; c++) {
        zero_status s = wait_chunk(z, c);
        if (s)
            return s;
        if (!z->chunk_buf[c])
            continue;
        if (z->chunk_persist[c]) { /* refreshed in its own buffer */
            if ((s = issue_gather(z, c, 1)))
                return s;
            continue;
        }
        int keep = z->chunk_users[c] > 0;
        drop_chunk(z, c);
        if (keep && (s = issue_gather(z, c, 1)))
            return s;
    }
    z->order_hash = 0;
    return ZERO_OK;
}
