/* step.c — zero_step: the end of a micro-step and, at the accumulation boundary, the optimizer
 * step: the gradients' last reductions, the global norm (and the inf/nan check), clipping, the
 * loss scaler, the optimizer (optim.h) over the elements this rank owns — on the device, or with
 * optimizer offload through the pipeline of offload/pipeline.h and the CPU — and the updated
 * parameters back to every rank. Progress counters change only once nothing before the update
 * can fail any more. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "offload/pipeline.h"
#include "runtime/engine.h"
#include "util/log.h"

int zr_segments(zero_ctx *z, int c, size_t lo, size_t hi)
{
    return zp_segments(&z->layout, c, lo, hi, z->seg, z->seg_cap);
}

/* The elements chunk c has on this rank: everything at stage 0, its slice above. */
static void owned_range(const zero_ctx *z, int c, size_t *lo, size_t *hi)
{
    *lo = 0;
    *hi = z->layout.chunks[c].padded;
    if (z->set.cfg.stage > 0)
        zp_slice_range(&z->layout, c, z->rank, lo, hi);
}

/* ---- global norm and the sequence check ------------------------------------------------------
 * Each rank sums its own slices in a fixed order, the partial sums are all-gathered and added in
 * rank order, so every stage and every rank gets the same bits. The same exchange carries a
 * device failure during the micro-steps (so every rank stops at this step instead of waiting in
 * the next collective) and the hash of the signatures of every collective since the last
 * boundary (coll.c): ranks that issued different collectives — another order of buckets, an
 * extra gather — fail here, before anything they reduced reaches the weights. */
enum { ZR_NORM_WORDS = 7 }; /* sum, inf/nan, device status, signature hash (2 x 32 bits),
                               hash of the groups' lr and weight decay (2 x 32 bits) */

/* The hyperparameters every rank uses this step (zero_set_lr / zero_set_weight_decay), hashed. */
static uint64_t hyper_hash(const zero_ctx *z)
{
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int g = 0; g < z->num_groups; g++) {
        uint64_t a, b;
        memcpy(&a, &z->groups[g].h.lr, sizeof a);
        memcpy(&b, &z->groups[g].h.weight_decay, sizeof b);
        h = zr_mix64(zr_mix64(h, a), b);
    }
    return h;
}

/* The ranks set different hyperparameters: every rank learns each one's, for the message. */
static zero_status hyper_mismatch(zero_ctx *z)
{
    const int G = z->num_groups;
    double *all = calloc((size_t)z->world * (size_t)G * 2, sizeof *all);
    zero_status s = ZERO_OK;
    if (all) {
        for (int g = 0; g < G; g++) {
            all[((size_t)z->rank * G + g) * 2] = z->groups[g].h.lr;
            all[((size_t)z->rank * G + g) * 2 + 1] = z->groups[g].h.weight_decay;
        }
        s = zr_coll_all_gather(&z->hcoll, all, (size_t)G * 2, ZR_ELEM_F64, ZR_TRAFFIC_OTHER, NULL);
    }
    char what[256] = "the hyperparameters";
    for (int r = 1; all && !s && r < z->world && !strcmp(what, "the hyperparameters"); r++)
        for (int g = 0; g < G; g++) {
            const double *a = all + (size_t)g * 2, *b = all + ((size_t)r * G + g) * 2;
            int f = a[0] != b[0] ? 0 : a[1] != b[1] ? 1 : -1;
            if (f < 0)
                continue;
            snprintf(what, sizeof what, "the %s of group %d%s%s%s: %.9g on rank 0, %.9g on rank %d",
                     f ? "weight decay" : "learning rate", g, z->groups[g].name[0] ? " (" : "",
                     z->groups[g].name, z->groups[g].name[0] ? ")" : "", a[f], b[f], r);
            break;
        }
    zr_comm_release(&z->comm, all);
    zero_status e = zr_fail(&z->err, ZERO_ERR_COMM,
                            "%s differs across ranks at step %lld (zero_set_lr / "
                            "zero_set_weight_decay must give every rank the same values); "
                            "nothing was applied; only zero_finalize is possible now",
                            what, (long long)z->prog.boundaries + 1);
    zr_comm_mark_broken(&z->comm);
    snprintf(z->comm.broken_why, sizeof z->comm.broken_why, "hyperparameters differ");
    return e;
}

/* The ranks' collectives differ: every rank learns what each was doing, for the message. */
static zero_status sequence_mismatch(zero_ctx *z, const double *all)
{
    enum { LINE = 192, LAST = 2 };
    char *lines = calloc((size_t)z->world * LINE * LAST, 1);
    char *mine = lines ? lines + (size_t)z->rank * LINE * LAST : NULL;
    for (int k = 0; mine && k < LAST; k++) {
        /* the collectives before this exchange (the exchange itself is the newest) */
        uint64_t q = z->comm.seq > (uint64_t)(k + 1) ? z->comm.seq - (uint64_t)(k + 1) : 0;
        const zr_flight_entry *e = &z->comm.flight[q % ZR_FLIGHT_LEN];
        if (q && e->seq == q)
            zr_flight_describe(&z->comm, e, mine + k * LINE, LINE);
    }
    if (lines)
        zr_coll_all_gather(&z->hcoll, lines, LINE * LAST, ZR_ELEM_BYTE, ZR_TRAFFIC_OTHER, NULL);
    char msg[ZR_ERROR_MSG];
    size_t n = (size_t)snprintf(msg, sizeof msg,
                                "the ranks issued different collectives before step %lld (nothing "
                                "was applied; only zero_finalize is possible now)",
                                (long long)z->prog.boundaries + 1);
    for (int r = 0; r < z->world && n < sizeof msg; r++) {
        int same = r > 0 && all[ZR_NORM_WORDS * r + 3] == all[3] &&
                   all[ZR_NORM_WORDS * r + 4] == all[4];
        if (same)
            continue;
        const char *l = lines ? lines + (size_t)r * LINE * LAST : NULL;
        const char *before = l && l[LINE] ? l + LINE : NULL;
        n += (size_t)snprintf(msg + n, sizeof msg - n, "; rank %d last: %s%s%s", r,
                              l && l[0] ? l : "(unknown)", before ? ", before it: " : "",
                              before ? before : "");
    }
    zr_comm_release(&z->comm, lines);
    zero_status s = zr_fail(&z->err, ZERO_ERR_COMM, "%s", msg);
    zr_comm_mark_broken(&z->comm);
    snprintf(z->comm.broken_why, sizeof z->comm.broken_why, "collective sequences differ");
    zr_flight_dump(&z->comm, "collective sequences differ across ranks", z->comm.flight_dir);
    return s;
}

static zero_status global_norm(zero_ctx *z, double *sumsq, int *nonfinite)
{
    const zp_layout *L = &z->layout;
    double local = 0.0;
    int bad = 0;
    for (int c = 0; c < L->num_chunks; c++) {
        size_t lo, hi;
        zp_slice_range(L, c, z->rank, &lo, &hi);
        int k = zr_segments(z, c, lo, hi);
        for (int j = 0; j < k; j++)
            if (!z->groups[z->meta[z->seg[j].tensor].group].frozen) /* not trained: not counted */
                local += zr_dev_sq_norm(&z->dev, z->g.ops->at(z, c, z->seg[j].chunk_offset),
                                        z->dtype, z->seg[j].numel, &bad);
    }
    zero_status dev_err = zr_device_error(z, "gradient reduction");
    const uint64_t h = z->comm.sig_hash;
    double *all = malloc((size_t)z->world * ZR_NORM_WORDS * sizeof *all);
    if (!all)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    double *mine = all + (size_t)z->rank * ZR_NORM_WORDS;
    mine[0] = local;
    mine[1] = bad;
    mine[2] = dev_err;
    mine[3] = (double)(h >> 32); /* exact: 32 bits each */
    mine[4] = (double)(h & 0xffffffffu);
    const uint64_t hh = hyper_hash(z);
    mine[5] = (double)(hh >> 32);
    mine[6] = (double)(hh & 0xffffffffu);
    zr_coll_tag(&z->hcoll, "gradient norm and sequence check", -1);
    zero_status s = zr_coll_all_gather(&z->hcoll, all, ZR_NORM_WORDS, ZR_ELEM_F64,
                                       ZR_TRAFFIC_TRAIN, NULL);
    if (s) {
        zr_comm_release(&z->comm, all);
        return zr_fail(&z->err, s, "gradient norm all-gather: %s", z->comm.err.msg);
    }
    for (int r = 1; r < z->world && !s; r++)
        if (all[ZR_NORM_WORDS * r + 3] != all[3] || all[ZR_NORM_WORDS * r + 4] != all[4])
            s = sequence_mismatch(z, all);
    for (int r = 1; r < z->world && !s; r++)
        if (all[ZR_NORM_WORDS * r + 5] != all[5] || all[ZR_NORM_WORDS * r + 6] != all[6])
            s = hyper_mismatch(z);
    if (s) {
        zr_comm_release(&z->comm, all);
        return s;
    }
    z->comm.sig_hash = 0; /* every rank starts the next window from the same point */
    *sumsq = 0.0;
    *nonfinite = 0;
    for (int r = 0; r < z->world; r++) {
        const double *w = all + (size_t)r * ZR_NORM_WORDS;
        *sumsq += w[0];
        *nonfinite |= w[1] != 0.0;
        if (!s && w[2] != 0.0)
            s = dev_err ? dev_err
                        : zr_fail(&z->err, (zero_status)w[2],
                                  "rank %d failed on its device during this step", r);
    }
    zr_comm_release(&z->comm, all);
    if (s)
        return s;
    if (!isfinite(*sumsq))
        *nonfinite = 1;
    return ZERO_OK;
}

/* ---- the optimizer on the device ------------------------------------------------------------- */

/* Over the elements this rank owns, tensor piece by tensor piece. */
static void optimize_owned(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    const int stage = z->set.cfg.stage;
    zr_state *st = &z->st;
    for (int c = 0; c < L->num_chunks; c++) {
        const zp_chunk *ch = &L->chunks[c];
        size_t lo, hi;
        owned_range(z, c, &lo, &hi);
        int k = zr_segments(z, c, lo, hi);
        for (int j = 0; j < k; j++) {
            const zr_tensor_meta *m = &z->meta[z->seg[j].tensor];
            if (z->groups[m->group].frozen)
                continue;
            size_t off = z->seg[j].chunk_offset;
            /* index into master and states: full layout at stage 0, shard layout above */
            size_t idx = stage == 0 ? ch->offset + off : ch->shard_offset + (off - lo);
            void *work = stage == 3 ? (char *)st->params + idx * z->wsz
                                    : (char *)st->params + (ch->offset + off) * z->wsz;
            zr_optim_piece pc = {.master = st->master ? st->master + idx : (float *)work,
                                 .grad = z->g.ops->at(z, c, off),
                                 .grad_type = z->dtype,
                                 .work = st->master ? work : NULL,
                                 .work_type = z->dtype,
                                 .n = z->seg[j].numel,
                                 .no_decay = m->no_decay};
            for (int q = 0; q < z->optim->num_states; q++)
                pc.state[q] = st->ostate[q] + idx;
            z->optim->update(&z->dev, &z->gprep[m->group], &pc);
        }
    }
}

/* ---- the optimizer offloaded: the pipeline's callbacks ------------------------------------------
 * Blocks of at most staging_elems elements of each tensor piece of the shard, in layout order;
 * copies timed and asynchronous where the device can (ZR_DEV_CAP_ASYNC_COPY), else synchronous
 * and counted at once; the CPU work widens the gradient to fp32 (exact) and runs the optimizer's
 * CPU twin, whose working-precision result stays in the half for the copy-out — or, with
 * parameter offload, goes straight into the host shard. */

typedef struct off_ctx {
    zero_ctx *z;
    int c, j, k;          /* chunk, segment, segments in z->seg for chunk c */
    size_t b;             /* elements of segment j already handed out */
    size_t lo;            /* chunk c's slice start */
    double pending[ZO_SLOTS]; /* bytes of the timed copy in each slot */
} off_ctx;

static int off_next(void *ctx, zo_block *out)
{
    off_ctx *o = ctx;
    zero_ctx *z = o->z;
    const zp_layout *L = &z->layout;
    while (o->c < L->num_chunks) {
        if (o->j < o->k) {
            const zp_chunk *ch = &L->chunks[o->c];
            const zp_segment *sg = &z->seg[o->j];
            const zr_tensor_meta *m = &z->meta[sg->tensor];
            if (z->groups[m->group].frozen) { /* nothing in, nothing computed, nothing out */
                o->j++;
                o->b = 0;
                continue;
            }
            size_t off = sg->chunk_offset + o->b, left = sg->numel - o->b;
            size_t idx = ch->shard_offset + (off - o->lo);
            out->idx = idx;
            out->n = left < z->st.staging_elems ? left : z->st.staging_elems;
            out->in = z->g.ops->at(z, o->c, off);
            out->out = z->offload_param        ? NULL
                       : z->set.cfg.stage == 3 ? (char *)z->st.params + idx * z->wsz
                                               : (char *)z->st.params + (ch->offset + off) * z->wsz;
            out->no_decay = m->no_decay;
            out->group = m->group;
            o->b += out->n;
            if (o->b == sg->numel) {
                o->j++;
                o->b = 0;
            }
            return 1;
        }
        if (++o->c < L->num_chunks) { /* o->c starts at -1 */
            size_t hi;
            zp_slice_range(L, o->c, z->rank, &o->lo, &hi);
            o->k = zr_segments(z, o->c, o->lo, hi);
            o->j = 0;
            o->b = 0;
        }
    }
    return 0;
}

/* Adds one finished copy to the report's counters of its direction. */
static void off_count(zero_ctx *z, int slot, double seconds, double bytes)
{
    if (slot < ZO_SLOT_OUT) {
        z->times.d2h_s += seconds;
        z->times.d2h_bytes += bytes;
    } else {
        z->times.h2d_s += seconds;
        z->times.h2d_bytes += bytes;
    }
}

/* Timed and asynchronous where the device can (counted when waited for); otherwise — or when
 * the timed copy could not be queued — synchronous and counted at once (a synchronous copy also
 * records any device failure for zr_device_error, so the step is never silently short of a
 * block). */
static void off_copy(void *ctx, int slot, void *dst, const void *src, size_t bytes)
{
    off_ctx *o = ctx;
    zero_ctx *z = o->z;
    if (zr_dev_has(&z->dev, ZR_DEV_CAP_ASYNC_COPY)) {
        if (zr_dev_copy_timed(&z->dev, slot, dst, src, bytes) == ZERO_OK) {
            o->pending[slot] = (double)bytes;
            return;
        }
        /* nothing of the copy stream may still touch the staging halves; a slot left busy (a
         * copy queued without its end event) is cleared */
        zr_dev_stream_sync(&z->dev, ZR_STREAM_COPY);
        zr_dev_copy_wait(&z->dev, slot, NULL);
    }
    double t0 = zr_now();
    zr_dev_copy(&z->dev, dst, src, bytes);
    off_count(z, slot, zr_now() - t0, (double)bytes);
}

static void off_wait(void *ctx, int slot)
{
    off_ctx *o = ctx;
    if (o->pending[slot] > 0.0) {
        double sec = 0.0;
        if (zr_dev_copy_wait(&o->z->dev, slot, &sec) == ZERO_OK) /* bytes and seconds together */
            off_count(o->z, slot, sec, o->pending[slot]);
        o->pending[slot] = 0.0;
    }
}

static void off_compute(void *ctx, const zo_block *b, void *half)
{
    off_ctx *o = ctx;
    zero_ctx *z = o->z;
    zr_state *st = &z->st;
    double t0 = zr_now();
    float *g = st->host_grad + b->idx;
    zk_cast(g, ZERO_DTYPE_FP32, half, z->dtype, b->n); /* exact widening */
    zr_optim_piece pc = {.master = st->master + b->idx,
                         .grad = g,
                         .grad_type = ZERO_DTYPE_FP32,
                         /* parameter offload: the host shard (none when it is the master) */
                         .work = z->offload_param ? (st->master_owned
                                                         ? (char *)st->params + b->idx * z->wsz
                                                         : NULL)
                                                  : half,
                         .work_type = z->dtype,
                         .n = b->n,
                         .no_decay = b->no_decay};
    for (int q = 0; q < z->optim->num_states; q++)
        pc.state[q] = st->ostate[q] + b->idx;
    z->optim->update_cpu(&z->gprep[b->group], &pc);
    z->times.cpu_adam_s += zr_now() - t0;
}

static void optimize_offloaded(zero_ctx *z)
{
    off_ctx o = {.z = z, .c = -1};
    /* the copies read gradients the compute stream produced */
    zr_dev_order(&z->dev, ZR_STREAM_COPY, ZR_STREAM_COMPUTE);
    zo_pipe p = {.ctx = &o,
                 .next = off_next,
                 .copy = off_copy,
                 .wait = off_wait,
                 .compute = off_compute,
                 .staging = z->st.staging,
                 .half_bytes = z->st.staging_elems * z->wsz,
                 .elem_bytes = z->wsz};
    zo_pipe_run(&p);
}

/* ---- parameters back to every rank --------------------------------------------------------------
 * Stages 1-2: every rank's updated slices of the full replica, all chunks in flight at once (one
 * group: one launch on NCCL). */
static zero_status gather_params(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    const zr_elem e = zr_elem_of(z->dtype);
    char *base = z->st.params;
    zero_status s = zr_coll_group_start(&z->dcoll);
    for (int c = 0; c < L->num_chunks && !s; c++)
        s = zr_coll_all_gather(&z->dcoll, base + L->chunks[c].offset * z->wsz, L->chunks[c].slice,
                               e, ZR_TRAFFIC_TRAIN, NULL);
    if (z->dcoll.ops) { /* the group is closed in any case */
        zero_status g = zr_coll_group_end(&z->dcoll, NULL);
        if (!s)
            s = g;
    }
    return s ? zr_fail(&z->err, s, "parameter all-gather: %s", z->comm.err.msg) : ZERO_OK;
}

/* ---- the loss scaler ------------------------------------------------------------------------
 * Dynamic loss scaling, DeepSpeed's rule: an overflow first spends the hysteresis, then halves
 * the scale (never below 1); 1000 boundaries after the last overflow or growth, the scale doubles
 * and the hysteresis is restored. */
enum { ZR_SCALE_WINDOW = 1000, ZR_HYSTERESIS = 2 };

void zr_scaler_init(zr_scaler *s, const zero_config *c, zero_dtype dtype)
{
    s->dynamic = c->loss_scale == 0.0f && dtype == ZERO_DTYPE_FP16;
    s->scale = c->loss_scale > 0.0f ? c->loss_scale : s->dynamic ? 65536.0f : 1.0f;
    s->hysteresis_left = ZR_HYSTERESIS;
    s->last_rescale = -1;
}

/* After boundary index `it` (0-based). */
void zr_scaler_update(zr_scaler *s, int64_t it, int overflow)
{
    if (!s->dynamic)
        return;
    if (overflow) {
        if (s->hysteresis_left <= 1)
            s->scale = fmaxf(s->scale * 0.5f, 1.0f);
        else
            s->hysteresis_left--;
        s->last_rescale = it;
        ZR_INFO(ZR_SUB_INIT, "gradient overflow: step skipped, loss scale now %g", s->scale);
    } else if ((it - s->last_rescale) % ZR_SCALE_WINDOW == 0) {
        s->hysteresis_left = ZR_HYSTERESIS;
        s->scale *= 2.0f;
        ZR_INFO(ZR_SUB_INIT, "loss scale raised to %g", s->scale);
    }
}

/* ---- zero_step ------------------------------------------------------------------------------- */

/* The update on this rank's shard and the parameters back to every rank. */
static zero_status apply_update(zero_ctx *z, double norm, double denom)
{
    const zero_config *c = &z->set.cfg;
    double t = zr_now(), clip = 1.0;
    if (c->clip > 0.0f && norm > (double)c->clip)
        clip = (double)c->clip / (norm + 1e-6);
    for (int g = 0; g < z->num_groups; g++)
        z->optim->prepare(&z->gprep[g], &z->groups[g].h, z->prog.steps, clip / denom);
    if (z->offload_opt)
        optimize_offloaded(z);
    else
        optimize_owned(z);
    double t2 = zr_now();
    z->times.optimizer_s += t2 - t;
    zero_status s = ZERO_OK;
    if (c->stage == 1 || c->stage == 2)
        s = gather_params(z);
    z->times.param_gather_s += zr_now() - t2;
    return s;
}

/* The boundary of an accumulation window: everything after the gradients' micro-step work. */
static zero_status boundary(zero_ctx *z, double t0)
{
    const zero_config *c = &z->set.cfg;
    zero_status s;
    if ((s = z->g.ops->boundary(z)))
        return s;
    double t = zr_now();
    z->times.grad_reduce_s += t - t0;
    double sumsq = 0.0;
    int overflow = 0;
    if ((s = global_norm(z, &sumsq, &overflow)))
        return s;
    /* Nothing before the update can fail now: the window counts. */
    z->prog.micro = 0;
    z->prog.micro_steps++;
    z->prog.boundaries++;
    z->comm.step = z->prog.boundaries;
    /* The reduced gradient is the sum over ranks and micro-steps of loss-scaled gradients: the
     * mean divides by the ranks and micro-steps too (zero_config.grad_reduce). */
    double denom = (double)z->scaler.scale;
    if (c->grad_reduce == ZERO_GRAD_MEAN)
        denom *= (double)z->world * (double)c->grad_accum;
    double norm = sqrt(sumsq) / denom;
    z->times.norm_s += zr_now() - t;
    z->last.boundary = 1;
    z->last.grad_norm = (float)norm;
    z->last.overflow = overflow;
    if (overflow) {
        z->prog.skipped++;
        ZR_INFO(ZR_SUB_INIT, "step %lld skipped: inf/nan in the gradients",
                (long long)z->prog.boundaries);
    } else {
        z->prog.steps++;
        if ((s = apply_update(z, norm, denom)))
            return s;
        z->last.applied = 1;
    }
    z->g.ops->after_step(z);
    if (c->stage == 3) {
        double t3 = zr_now();
        if ((s = zr_s3_after_step(z)))
            return s;
        z->times.param_gather_s += zr_now() - t3;
    }
    if (!overflow)
        zr_views_refresh(z); /* the fp32 views follow the updated parameters */
    zr_scaler_update(&z->scaler, z->prog.boundaries - 1, overflow);
    return ZERO_OK;
}

zero_status zr_step(zero_ctx *z)
{
    const zero_config *c = &z->set.cfg;
    double t0 = zr_now();
    zero_status s;
    ZR_CHECK(zr_groups_default(z));
    if ((s = z->g.ops->micro_end(z)))
        return s;
    zr_grads_reset_micro(z);
    zr_views_micro_done(z);
    if (c->stage == 3)
        zr_s3_micro_step_done(z);
    memset(&z->last, 0, sizeof z->last);
    z->last.step = z->prog.steps;
    z->last.skipped = z->prog.skipped;
    z->last.loss_scale = z->scaler.scale;
    if (z->prog.micro + 1 < c->grad_accum) {
        z->prog.micro++;
        z->prog.micro_steps++;
        z->times.grad_reduce_s += zr_now() - t0;
    } else if ((s = boundary(z, t0))) {
        return s;
    }
    z->last.step = z->prog.steps;
    z->last.skipped = z->prog.skipped;
    z->last.loss_scale = z->scaler.scale;
    z->times.step_s += zr_now() - t0;
    return ZERO_OK;
}

/* ---- the end: every rank finalizes at the same point ------------------------------------------
 * zero_finalize's first collective: every rank's progress and signature hash. A rank that is
 * still training meets it in another collective (ZERO_ERR_COMM there, within ZERO_TIMEOUT_S);
 * ranks that finalize after different numbers of steps, or after different collectives, learn it
 * here instead of one of them waiting in a step that the others will never take. */
zero_status zr_finalize_agree(zero_ctx *z)
{
    int64_t mine[4] = {z->prog.micro_steps, z->prog.boundaries, (int64_t)(z->comm.sig_hash >> 1),
                       0};
    int64_t *all = calloc((size_t)z->world * 4, sizeof *all);
    if (!all)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    memcpy(all + (size_t)z->rank * 4, mine, sizeof mine);
    zr_coll_tag(&z->hcoll, "finalize agreement", -1);
    zero_status s = zr_coll_all_gather(&z->hcoll, all, 4, ZR_ELEM_I64, ZR_TRAFFIC_OTHER, NULL);
    if (s) {
        zr_comm_release(&z->comm, all);
        return zr_fail(&z->err, s, "zero_finalize: %s", z->comm.err.msg);
    }
    for (int r = 1; r < z->world && !s; r++) {
        const int64_t *a = all, *b = all + (size_t)r * 4;
        if (a[0] != b[0] || a[1] != b[1])
            s = zr_fail(&z->err, ZERO_ERR_COMM,
                        "zero_finalize: rank 0 finalizes after %lld micro-steps (%lld steps), "
                        "rank %d after %lld (%lld): every rank must run the same number of "
                        "zero_step calls",
                        (long long)a[0], (long long)a[1], r, (long long)b[0], (long long)b[1]);
        else if (a[2] != b[2])
            s = zr_fail(&z->err, ZERO_ERR_COMM,
                        "zero_finalize: rank 0 and rank %d issued different collectives since "
                        "the last step (a gather or a gradient on one rank only)",
                        r);
    }
    zr_comm_release(&z->comm, all);
    return s;
}
