/* test_units.c — the engine's state machines without MPI (no mpirun, no MPI_Init): a context built
 * by hand on the host device, whose two collectives (device and host) are a fake in-process
 * backend that plays a world of N identical ranks ("mirror": every rank holds what this one
 * holds), logs every call, completes asynchronous requests only when the test lets it, and checks
 * that nothing an in-flight collective reads changes before it completes.
 *
 *   buckets    stage-2 reduce buckets (runtime/grad.c): acquire, fill, reduce when every module of
 *              a chunk is ready, completion by test or by wait, bucket reuse and zeroing, growth of
 *              the pool, micro_end in descending order, accumulation over micro-steps, the
 *              boundary's collectives, ZERO_ERR_STATE on misuse, a failing reduce-scatter
 *   stage3     the trace and prefetch (runtime/stage3.c): recording, prefetch within
 *              prefetch_bytes and max_live_bytes, hits, keep-for-next, out-of-order gather turning
 *              prefetch off until re-recorded, the resident chunk and its refresh after a step
 *   scaler     zr_scaler_init / zr_scaler_update (DeepSpeed's rule), and the fp16 overflow path of
 *              zero_step
 *   pipeline   zo_pipe_run's schedule against a one-stream copy model
 * Exits non-zero on a failure. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "offload/pipeline.h"
#include "runtime/engine.h"
#include "util/log.h"

#define CHECK_STYLE CHECK_STYLE_EXPR
#include "tests/common/check.h"

/* =============================================================================================
 * The fake collective backend
 * ============================================================================================= */

enum { F_AG, F_RS, F_AR, F_BC, F_GATHER, F_GSTART, F_GEND, F_WAIT, F_TEST, F_FREE, F_NOPS };

typedef struct fcall {
    int op;
    size_t count;
    zr_elem e;
    const void *send;
    void *recv;
    int id;         /* request of an asynchronous issue, or the one waited for / tested / freed */
    int done;       /* F_TEST: the answer */
    int failed;     /* the call returned an injected failure */
    int64_t word0;  /* all_gather of I64: the first word of this rank's block when issued */
} fcall;

typedef struct freq {
    int op;
    size_t count;
    zr_elem e;
    const void *send;
    void *recv;
    zr_redop rop;
    int pending;      /* issued, not yet complete */
    int released;     /* the test lets test() report it done */
    int completed_by; /* F_TEST or F_WAIT */
    unsigned char *snap; /* what the collective reads, as it was at issue */
    const void *snap_src;
    size_t snap_bytes;
} freq;

typedef struct fake {
    int rank, world;
    int auto_done;   /* test() reports every request done at once */
    int fail_op;     /* -1, or the op whose fail_after-th next call fails */
    int fail_after;
    fcall *log;
    int nlog, caplog;
    freq *req;       /* request id = index + 1 */
    int nreq, capreq;
    /* broadcast to this rank (not the root): what the root sends, the k-th broadcast (the
     * initial values come from rank 0 only); NULL: the buffer stays as it is */
    void (*root_data)(void *arg, int k, void *buf, size_t count, zr_elem e);
    void *root_arg;
    int nbcast;
    int violations;
    char violation[256];
} fake;

typedef struct fk_handle {
    uint32_t magic;
    int32_t id;
} fk_handle;
enum { FK_MAGIC = 0xfa4ec011u };

static void fk_violation(fake *f, const char *what, int id)
{
    if (!f->violations++)
        snprintf(f->violation, sizeof f->violation, "%s (request %d)", what, id);
}

static size_t fk_esize(zr_elem e)
{
    switch (e) {
    case ZR_ELEM_F32: return 4;
    case ZR_ELEM_BF16:
    case ZR_ELEM_F16: return 2;
    case ZR_ELEM_F64:
    case ZR_ELEM_I64: return 8;
    default: return 1;
    }
}

/* Sum over N identical ranks: times N. */
static void fk_times_world(fake *f, void *p, size_t n, zr_elem e)
{
    const int w = f->world;
    if (e == ZR_ELEM_F32) {
        for (size_t i = 0; i < n; i++)
            ((float *)p)[i] *= (float)w;
    } else if (e == ZR_ELEM_F64) {
        for (size_t i = 0; i < n; i++)
            ((double *)p)[i] *= (double)w;
    } else if (e == ZR_ELEM_I64) {
        for (size_t i = 0; i < n; i++)
            ((int64_t *)p)[i] *= w;
    } else if (e == ZR_ELEM_F16 || e == ZR_ELEM_BF16) {
        zero_dtype d = e == ZR_ELEM_F16 ? ZERO_DTYPE_FP16 : ZERO_DTYPE_BF16;
        float *tmp = malloc(n * sizeof *tmp);
        zk_cast(tmp, ZERO_DTYPE_FP32, p, d, n);
        for (size_t i = 0; i < n; i++)
            tmp[i] *= (float)w;
        zk_cast(p, d, tmp, ZERO_DTYPE_FP32, n);
        free(tmp);
    } else {
        fk_violation(f, "sum over byte elements", 0);
    }
}

/* The data movement of a collective, mirror semantics. */
static void fk_apply(fake *f, int op, const void *send, void *recv, size_t count, zr_elem e,
                     zr_redop rop)
{
    const size_t bytes = count * fk_esize(e);
    if (op == F_AG) {
        char *own = (char *)recv + (size_t)f->rank * bytes;
        for (int k = 0; k < f->world; k++)
            if (k != f->rank)
                memcpy((char *)recv + (size_t)k * bytes, own, bytes);
    } else if (op == F_RS) {
        memmove(recv, (const char *)send + (size_t)f->rank * bytes, bytes);
        fk_times_world(f, recv, count, e);
    } else if (op == F_AR) {
        if (rop == ZR_OP_SUM)
            fk_times_world(f, recv, count, e);
    }
}

static void fk_log(fake *f, fcall c)
{
    if (f->nlog == f->caplog) {
        f->caplog = f->caplog ? 2 * f->caplog : 256;
        f->log = realloc(f->log, (size_t)f->caplog * sizeof *f->log);
    }
    f->log[f->nlog++] = c;
}

static int fk_id(const zr_creq *req)
{
    fk_handle h;
    memcpy(&h, req->impl, sizeof h);
    return h.magic == FK_MAGIC ? h.id : 0;
}

static void fk_complete(fake *f, freq *r, int by)
{
    if (r->snap && memcmp(r->snap, r->snap_src, r->snap_bytes) != 0)
        fk_violation(f, "a buffer an in-flight collective reads changed before it completed",
                     (int)(r - f->req) + 1);
    fk_apply(f, r->op, r->send, r->recv, r->count, r->e, r->rop);
    free(r->snap);
    r->snap = NULL;
    r->pending = 0;
    r->completed_by = by;
}

static zero_status fk_issue(zr_coll *c, int op, const void *send, void *recv, size_t count,
                            zr_elem e, zr_redop rop, zr_creq *req)
{
    fake *f = c->impl;
    fcall call = {.op = op, .count = count, .e = e, .send = send, .recv = recv};
    if (op == F_AG && e == ZR_ELEM_I64)
        memcpy(&call.word0, (char *)recv + (size_t)f->rank * count * 8, 8);
    if (f->fail_op == op && --f->fail_after == 0) {
        f->fail_op = -1;
        call.failed = 1;
        fk_log(f, call);
        return ZERO_ERR_COMM;
    }
    if (!req) {
        fk_log(f, call);
        fk_apply(f, op, send, recv, count, e, rop);
        return ZERO_OK;
    }
    int old = fk_id(req);
    if (old > 0 && old <= f->nreq && f->req[old - 1].pending)
        fk_violation(f, "a request reused while in flight", old);
    if (f->nreq == f->capreq) {
        f->capreq = f->capreq ? 2 * f->capreq : 64;
        f->req = realloc(f->req, (size_t)f->capreq * sizeof *f->req);
    }
    freq *r = &f->req[f->nreq++];
    memset(r, 0, sizeof *r);
    *r = (freq){.op = op, .count = count, .e = e, .send = send, .recv = recv, .rop = rop,
                .pending = 1};
    const size_t bytes = count * fk_esize(e);
    if (op == F_AG) {
        r->snap_src = (char *)recv + (size_t)f->rank * bytes;
        r->snap_bytes = bytes;
    } else if (op == F_RS) {
        r->snap_src = send;
        r->snap_bytes = bytes * (size_t)f->world;
    } else if (op == F_AR) {
        r->snap_src = recv;
        r->snap_bytes = bytes;
    }
    if (r->snap_bytes) {
        r->snap = malloc(r->snap_bytes);
        memcpy(r->snap, r->snap_src, r->snap_bytes);
    }
    fk_handle h = {FK_MAGIC, f->nreq};
    memset(req->impl, 0, sizeof req->impl);
    memcpy(req->impl, &h, sizeof h);
    call.id = f->nreq;
    fk_log(f, call);
    return ZERO_OK;
}

static zero_status fk_all_gather(zr_coll *c, void *recv, size_t count, zr_elem e, zr_traffic t,
                                 zr_creq *req)
{
    return fk_issue(c, F_AG, NULL, recv, count, e, ZR_OP_SUM, req);
}
static zero_status fk_reduce_scatter(zr_coll *c, const void *send, void *recv, size_t count,
                                     zr_elem e, zr_traffic t, zr_creq *req)
{
    return fk_issue(c, F_RS, send, recv, count, e, ZR_OP_SUM, req);
}
static zero_status fk_all_reduce(zr_coll *c, void *buf, size_t count, zr_elem e, zr_redop op,
                                 zr_traffic t, zr_creq *req)
{
    return fk_issue(c, F_AR, NULL, buf, count, e, op, req);
}
static zero_status fk_broadcast(zr_coll *c, void *buf, size_t count, zr_elem e, int root,
                                zr_traffic t, zr_creq *req)
{
    fake *f = c->impl;
    if (f->root_data && f->rank != root)
        f->root_data(f->root_arg, f->nbcast, buf, count, e);
    f->nbcast++;
    return fk_issue(c, F_BC, NULL, buf, count, e, ZR_OP_SUM, req);
}
static zero_status fk_gather(zr_coll *c, const void *send, void *recv, size_t count, zr_elem e,
                             int root)
{
    fake *f = c->impl;
    fk_log(f, (fcall){.op = F_GATHER, .count = count, .e = e, .send = send, .recv = recv});
    if (f->rank == root)
        for (int k = 0; k < f->world; k++)
            memcpy((char *)recv + (size_t)k * count * fk_esize(e), send, count * fk_esize(e));
    return ZERO_OK;
}
static zero_status fk_group_start(zr_coll *c)
{
    fk_log(c->impl, (fcall){.op = F_GSTART});
    return ZERO_OK;
}
static zero_status fk_group_end(zr_coll *c, zr_creq *req)
{
    /* the group's collectives completed when issued: a request here is complete at once */
    fk_log(c->impl, (fcall){.op = F_GEND});
    if (req)
        memset(req->impl, 0, sizeof req->impl);
    return ZERO_OK;
}
static zero_status fk_wait(zr_coll *c, zr_creq *req)
{
    fake *f = c->impl;
    int id = fk_id(req);
    fk_log(f, (fcall){.op = F_WAIT, .id = id});
    if (id > 0 && id <= f->nreq && f->req[id - 1].pending)
        fk_complete(f, &f->req[id - 1], F_WAIT);
    return ZERO_OK;
}
static zero_status fk_test(zr_coll *c, zr_creq *req, int *done)
{
    fake *f = c->impl;
    int id = fk_id(req);
    *done = 1;
    if (id > 0 && id <= f->nreq && f->req[id - 1].pending) {
        freq *r = &f->req[id - 1];
        if (r->released || f->auto_done)
            fk_complete(f, r, F_TEST);
        else
            *done = 0;
    }
    fk_log(f, (fcall){.op = F_TEST, .id = id, .done = *done});
    return ZERO_OK;
}
static void fk_request_free(zr_coll *c, zr_creq *req)
{
    fake *f = c->impl;
    int id = fk_id(req);
    fk_log(f, (fcall){.op = F_FREE, .id = id});
    if (id > 0 && id <= f->nreq && f->req[id - 1].pending)
        fk_violation(f, "request_free of a request in flight", id);
    memset(req->impl, 0, sizeof req->impl);
}
static void fk_destroy(zr_coll *c)
{
    fake *f = c->impl;
    for (int i = 0; i < f->nreq; i++)
        if (f->req[i].pending)
            fk_violation(f, "backend destroyed with a request in flight", i + 1);
}

static const zr_coll_ops fake_ops = {
    .name = "fake",
    .caps = ZR_COLL_CAP_DEVICE,
    .all_gather = fk_all_gather,
    .reduce_scatter = fk_reduce_scatter,
    .all_reduce = fk_all_reduce,
    .broadcast = fk_broadcast,
    .gather = fk_gather,
    .group_start = fk_group_start,
    .group_end = fk_group_end,
    .wait = fk_wait,
    .test = fk_test,
    .request_free = fk_request_free,
    .destroy = fk_destroy,
};

static void fk_free(fake *f)
{
    for (int i = 0; i < f->nreq; i++)
        free(f->req[i].snap);
    free(f->req);
    free(f->log);
    memset(f, 0, sizeof *f);
}

/* Calls of op in the log from index `from` on. */
static int fk_count(const fake *f, int op, int from)
{
    int n = 0;
    for (int i = from; i < f->nlog; i++)
        n += f->log[i].op == op;
    return n;
}

/* The k-th call of op from index `from` on (k from 0), or NULL. */
static const fcall *fk_nth(const fake *f, int op, int from, int k)
{
    for (int i = from; i < f->nlog; i++)
        if (f->log[i].op == op && k-- == 0)
            return &f->log[i];
    return NULL;
}

static int fk_waits_of(const fake *f, int id, int from)
{
    int n = 0;
    for (int i = from; i < f->nlog; i++)
        n += f->log[i].op == F_WAIT && f->log[i].id == id;
    return n;
}

static const freq *fk_req(const fake *f, int id)
{
    static const freq none;
    return id > 0 && id <= f->nreq ? &f->req[id - 1] : &none;
}

static void fk_release(fake *f, int id)
{
    if (id > 0 && id <= f->nreq)
        f->req[id - 1].released = 1;
}

/* The order-check words (stage 3: the chunk each check_order announces) from `from` on, as a
 * string "0,1,2". */
static const char *fk_words(const fake *f, int from)
{
    static char s[512];
    size_t len = 0;
    s[0] = 0;
    for (int i = from; i < f->nlog && len < sizeof s - 24; i++)
        if (f->log[i].op == F_AG && f->log[i].e == ZR_ELEM_I64 && f->log[i].count == 3)
            len += (size_t)snprintf(s + len, sizeof s - len, "%s%lld", len ? "," : "",
                                    (long long)f->log[i].word0);
    return s;
}

/* =============================================================================================
 * A context built by hand (api.c's order, without MPI or agreement)
 * ============================================================================================= */

/* 11 tensors in 6 modules. With 128-element chunks on 4 ranks (alignment 16): chunk 0 = module 0
 * (padded 64, slices of 16), chunk 1 = module 1, chunk 2 = modules 2-3, chunk 3 = modules 4-5
 * (padded 128, slices of 32). */
static const struct {
    const char *name;
    size_t numel;
    int module;
} model_a[] = {
    {"emb", 40, 0},   {"m1.w", 70, 1}, {"m1.b", 40, 1}, {"m2.w", 30, 2}, {"m2.b", 20, 2},
    {"m3.w", 30, 3}, {"m3.b", 20, 3}, {"m4.w", 30, 4}, {"m4.b", 20, 4}, {"m5.w", 30, 5},
    {"m5.b", 20, 5},
};
enum { NT = sizeof model_a / sizeof model_a[0], NM = 6, NC = 4, WORLD = 4, RANK = 1 };

static float init_value(int i, size_t j) { return 0.25f * (float)(i + 1) + (float)(j % 8) * 0.125f; }

typedef struct rig {
    zero_ctx *z;
    fake dev, host; /* the collectives of z->dcoll and z->hcoll */
    float *init[NT];
} rig;

static zero_config base_config(int stage, zero_dtype dtype)
{
    zero_config c = ZERO_CONFIG_INIT;
    c.stage = stage;
    c.dtype = dtype;
    c.bucket_bytes = 128 * zero_dtype_size(dtype); /* chunks of at most 128 elements */
    c.device = ZERO_DEVICE_HOST;
    return c;
}

static void fake_setup(fake *f, zr_coll *c, zr_comm *comm)
{
    memset(f, 0, sizeof *f);
    f->rank = comm->rank;
    f->world = comm->world;
    f->fail_op = -1;
    c->ops = &fake_ops;
    c->impl = f;
    c->comm = comm;
}

/* What rank 0 broadcasts as the initial values: the k-th broadcast is chunk k, fp32. */
static void rig_root_data(void *arg, int k, void *buf, size_t count, zr_elem e)
{
    const zp_layout *L = arg;
    float *x = buf;
    if (e != ZR_ELEM_F32 || k >= L->num_chunks || count != L->chunks[k].padded) {
        CHECK(0, "broadcast %d: %zu elements of type %d, expected chunk %d's fp32 values", k,
              count, (int)e, k);
        return;
    }
    const zp_chunk *ch = &L->chunks[k];
    memset(x, 0, count * sizeof *x);
    for (int t = ch->first_tensor; t < ch->first_tensor + ch->num_tensors; t++)
        for (size_t j = 0; j < L->place[t].numel; j++)
            x[L->place[t].offset + j] = init_value(t, j);
}

/* Everything zero_init builds, in its order: settings, backends, layout, state, gradient path,
 * initial values, stage 3, the loss scaler. Returns 0 or -1 (a CHECK said why). */
static int rig_open(rig *r, const zero_config *cfg)
{
    memset(r, 0, sizeof *r);
    zero_ctx *z = r->z = calloc(1, sizeof *z);
    z->set.cfg = *cfg;
    z->set.log_level = ZR_LOG_NONE;
    z->set.log_mask = ZR_SUB_ALL;
    z->rank = z->comm.rank = RANK;
    z->world = z->comm.world = WORLD;
    z->comm.local_rank = RANK;
    z->comm.local_size = WORLD;
    zr_device_host_init(&z->dev, cfg->device_memory);
    zr_device_host_init(&z->host, 0);
    fake_setup(&r->dev, &z->dcoll, &z->comm);
    fake_setup(&r->host, &z->hcoll, &z->comm);
    z->dtype = cfg->dtype;
    z->wsz = zero_dtype_size(cfg->dtype);
    z->optim = &zr_optim_adamw;

    zp_tensor pt[NT];
    zero_tensor t[NT];
    memset(t, 0, sizeof t);
    for (int i = 0; i < NT; i++) {
        pt[i].numel = model_a[i].numel;
        pt[i].module = model_a[i].module;
        r->init[i] = malloc(model_a[i].numel * sizeof(float));
        for (size_t j = 0; j < model_a[i].numel; j++)
            r->init[i][j] = init_value(i, j);
        t[i] = (zero_tensor){.name = model_a[i].name, .numel = model_a[i].numel,
                             .module = model_a[i].module, .init = r->init[i]};
    }
    zero_status ls = zp_layout_build(&z->layout, pt, NT, WORLD, cfg->bucket_bytes / z->wsz,
                                     ZR_ALIGN_ELEMS, &z->err);
    CHECK(ls == ZERO_OK, "layout: %s", z->err.msg);
    if (ls)
        return -1;
    z->num_tensors = NT;
    z->meta = calloc(NT, sizeof *z->meta);
    for (int c = 0; c < z->layout.num_chunks; c++)
        if (z->layout.chunks[c].num_tensors > z->seg_cap)
            z->seg_cap = z->layout.chunks[c].num_tensors;
    z->seg = malloc((size_t)z->seg_cap * sizeof *z->seg);
    for (int i = 0; i < NT; i++)
        z->meta[i].name = strdup(model_a[i].name);

    /* the layout the tests below are written for */
    const zp_layout *L = &z->layout;
    static const size_t padded[NC] = {64, 128, 128, 128};
    static const int first_module[NC] = {0, 1, 2, 4}, last_module[NC] = {0, 1, 3, 5};
    CHECK(L->num_chunks == NC && L->num_modules == NM, "%d chunks, %d modules", L->num_chunks,
          L->num_modules);
    if (L->num_chunks != NC)
        return -1;
    for (int c = 0; c < NC; c++)
        CHECK(L->chunks[c].padded == padded[c] && L->chunks[c].slice == padded[c] / WORLD &&
                  L->chunks[c].first_module == first_module[c] &&
                  L->chunks[c].last_module == last_module[c],
              "chunk %d: padded %zu, modules %d..%d", c, L->chunks[c].padded,
              L->chunks[c].first_module, L->chunks[c].last_module);

    r->host.root_data = rig_root_data;
    r->host.root_arg = &z->layout;
    zero_status s = zr_state_alloc(z);
    if (!s)
        s = zr_grads_init(z);
    if (!s)
        s = zr_load_initial_values(z, t);
    if (!s && cfg->stage == 3)
        s = zr_s3_setup(z);
    CHECK(s == ZERO_OK, "building the context: %s", z->err.msg);
    if (s)
        return -1;
    zr_scaler_init(&z->scaler, &z->set.cfg, z->dtype);
    z->last.loss_scale = z->scaler.scale;
    return 0;
}

/* api.c's destroy, then: no device memory left, no request in flight, no violation. */
static void rig_close(rig *r)
{
    zero_ctx *z = r->z;
    if (z) {
        zr_s3_free(z);
        zr_grads_free(z);
        zr_state_free(z);
        CHECK(z->dev.current_total == 0 && z->host.current_total == 0,
              "memory left after the units freed theirs: device %zu, host %zu",
              z->dev.current_total, z->host.current_total);
        for (int i = 0; i < z->num_tensors && z->meta; i++)
            free(z->meta[i].name);
        free(z->meta);
        free(z->seg);
        zp_layout_free(&z->layout);
        zr_coll_destroy(&z->dcoll);
        zr_coll_destroy(&z->hcoll);
        zr_device_destroy(&z->dev);
        zr_device_destroy(&z->host);
        free(z);
    }
    CHECK(r->dev.violations == 0, "device collectives: %d violations, first: %s",
          r->dev.violations, r->dev.violation);
    CHECK(r->host.violations == 0, "host collectives: %d violations, first: %s",
          r->host.violations, r->host.violation);
    fk_free(&r->dev);
    fk_free(&r->host);
    for (int i = 0; i < NT; i++)
        free(r->init[i]);
    r->z = NULL;
}

/* =============================================================================================
 * Gradients: what the model wrote, and what the shard must hold
 * ============================================================================================= */

typedef struct gref {
    float img[NC][128];     /* this micro-step's full chunk gradients as the model wrote them */
    float shard[NC][32];    /* expected reduced shard of this rank, summed over micro-steps */
} gref;

static float grad_value(int i, size_t j, int micro) { return (float)((i * 7 + (int)j + micro * 3) % 13) - 6.0f; }

/* zero_grad_ptr for tensor i and writes its gradient (fp32 contexts); returns the pointer. */
static float *write_grad(rig *r, gref *g, int i, int micro)
{
    zero_ctx *z = r->z;
    float *p = zero_grad_ptr(z, i);
    CHECK(p != NULL, "zero_grad_ptr(%d) at micro-step %d: %s", i, micro, z->err.msg);
    if (!p)
        return NULL;
    const zp_place *pl = &z->layout.place[i];
    for (size_t j = 0; j < pl->numel; j++) {
        p[j] = grad_value(i, j, micro);
        g->img[pl->chunk][pl->offset + j] = p[j];
    }
    return p;
}

/* The micro-step ended: this rank's reduced slice is N times its slice of the images. */
static void gref_micro_done(gref *g, const zp_layout *L)
{
    for (int c = 0; c < NC; c++) {
        size_t lo, hi;
        zp_slice_range(L, c, RANK, &lo, &hi);
        for (size_t e = lo; e < hi; e++)
            g->shard[c][e - lo] += (float)WORLD * g->img[c][e];
    }
    memset(g->img, 0, sizeof g->img);
}

static void check_shard(const zero_ctx *z, const gref *g, const char *when)
{
    const float *sh = z->st.grads;
    int bad = 0;
    for (int c = 0; c < NC; c++) {
        const zp_chunk *ch = &z->layout.chunks[c];
        for (size_t k = 0; k < ch->slice; k++)
            if (sh[ch->shard_offset + k] != g->shard[c][k] && bad++ < 3)
                CHECK(0, "%s: gradient shard of chunk %d at %zu: %g, expected %g", when, c, k,
                      (double)sh[ch->shard_offset + k], (double)g->shard[c][k]);
    }
    CHECK(bad == 0, "%s: %d gradient shard elements differ", when, bad);
}

static int tensor_of_module(int m, int k) /* the k-th tensor of module m */
{
    for (int i = 0; i < NT; i++)
        if (model_a[i].module == m && k-- == 0)
            return i;
    return -1;
}

/* =============================================================================================
 * Stage 2: the reduce buckets
 * ============================================================================================= */

static void test_buckets(void)
{
    check_set_context("buckets");
    zero_config cfg = base_config(2, ZERO_DTYPE_FP32);
    cfg.grad_accum = 2;
    rig r;
    if (rig_open(&r, &cfg)) {
        rig_close(&r);
        return;
    }
    zero_ctx *z = r.z;
    fake *f = &r.dev;
    zr_grads *G = &z->g;
    const zp_layout *L = &z->layout;
    const size_t bucket_bytes = (L->max_padded + L->max_slice) * z->wsz;
    static gref g;
    memset(&g, 0, sizeof g);

    CHECK(G->ops && strcmp(G->ops->name, "buckets") == 0, "stage 2 gradient path: %s",
          G->ops ? G->ops->name : "none");
    /* one bucket for the largest chunk at init; the others on first need (grad.c) */
    CHECK(G->num_buckets == 1, "initial buckets: %d", G->num_buckets);
    CHECK(z->dev.current[ZERO_MEM_BUFFERS] == bucket_bytes, "buffer bytes %zu, expected %zu",
          z->dev.current[ZERO_MEM_BUFFERS], bucket_bytes);
    for (int c = 0; c < NC; c++)
        CHECK(G->chunk_modules[c] == (c < 2 ? 1 : 2), "chunk %d: %d modules", c,
              G->chunk_modules[c]);
    int mark = f->nlog;
    CHECK(fk_count(f, F_RS, 0) == 0 && fk_count(f, F_AG, 0) == 0,
          "collectives on device buffers before backward: %d", f->nlog);

    /* ---- micro-step 0: backward, modules 5..0 -------------------------------------------- */
    /* module 5 (chunk 3, first of its two modules): a bucket, no reduction yet */
    write_grad(&r, &g, 9, 0);
    write_grad(&r, &g, 10, 0);
    CHECK(G->chunk_state[3] == ZR_CHUNK_FILLING && G->chunk_bucket[3] == 0,
          "chunk 3 after its first pointer: state %d bucket %d", G->chunk_state[3],
          G->chunk_bucket[3]);
    CHECK(zero_grad_ready(z, 5) == ZERO_OK, "ready(5): %s", z->err.msg);
    CHECK(G->chunk_state[3] == ZR_CHUNK_FILLING && fk_count(f, F_RS, mark) == 0,
          "chunk 3 with one of two modules ready: state %d, %d reduce-scatters",
          G->chunk_state[3], fk_count(f, F_RS, mark));
    /* module 4 completes chunk 3: one non-blocking reduce-scatter of bucket 0 */
    write_grad(&r, &g, 7, 0);
    write_grad(&r, &g, 8, 0);
    CHECK(zero_grad_ready(z, 4) == ZERO_OK, "ready(4): %s", z->err.msg);
    CHECK(fk_count(f, F_RS, mark) == 1, "reduce-scatters after chunk 3 is ready: %d",
          fk_count(f, F_RS, mark));
    const fcall *rs = fk_nth(f, F_RS, mark, 0);
    int id_c3 = rs ? rs->id : 0;
    if (rs)
        CHECK(rs->send == G->buckets[0].grad && rs->recv == G->buckets[0].slice &&
                  rs->count == L->chunks[3].slice && rs->e == ZR_ELEM_F32 && rs->id > 0,
              "chunk 3's reduce-scatter: send %p recv %p count %zu id %d", rs->send, rs->recv,
              rs->count, rs->id);
    CHECK(id_c3 && fk_id(&G->buckets[0].req) == id_c3, "bucket 0 holds the request");
    CHECK(G->chunk_state[3] == ZR_CHUNK_REDUCING, "chunk 3 state %d", G->chunk_state[3]);
    CHECK(fk_count(f, F_TEST, mark) >= 1 && fk_req(f, id_c3)->pending,
          "ready() tests the reduction without completing it (held)");

    /* misuse: a pointer of a reduced chunk, a module reported twice */
    z->err.status = ZERO_OK;
    CHECK(zero_grad_ptr(z, 9) == NULL && z->err.status == ZERO_ERR_STATE,
          "grad_ptr after the bucket was reduced: status %d", z->err.status);
    CHECK(zero_grad_ptr(z, 7) == NULL, "grad_ptr of the other module of the reduced chunk");
    CHECK(zero_grad_ready(z, 4) == ZERO_ERR_STATE, "module 4 reported twice");
    CHECK(G->chunk_state[3] == ZR_CHUNK_REDUCING && fk_count(f, F_RS, mark) == 1,
          "misuse changed nothing: state %d, %d reduce-scatters", G->chunk_state[3],
          fk_count(f, F_RS, mark));

    /* modules 3, 2 (chunk 2) in the second bucket while chunk 3 is still in flight */
    write_grad(&r, &g, 5, 0);
    CHECK(G->chunk_bucket[2] == 1 && G->num_buckets == 2, "chunk 2 got bucket %d (of %d)",
          G->chunk_bucket[2], G->num_buckets);
    write_grad(&r, &g, 6, 0);
    CHECK(zero_grad_ready(z, 3) == ZERO_OK, "ready(3)");
    write_grad(&r, &g, 3, 0);
    write_grad(&r, &g, 4, 0);
    CHECK(zero_grad_ready(z, 2) == ZERO_OK, "ready(2)");
    CHECK(fk_count(f, F_RS, mark) == 2 && G->chunk_state[2] == ZR_CHUNK_REDUCING,
          "chunk 2 reducing: %d reduce-scatters, state %d", fk_count(f, F_RS, mark),
          G->chunk_state[2]);
    rs = fk_nth(f, F_RS, mark, 1);
    int id_c2 = rs ? rs->id : 0;
    if (rs)
        CHECK(rs->send == G->buckets[1].grad && rs->recv == G->buckets[1].slice &&
                  rs->count == L->chunks[2].slice,
              "chunk 2's reduce-scatter from bucket 1");

    /* module 1 (chunk 1): both buckets reducing, so it waits for the first (chunk 3), and reuses
     * it; no third bucket */
    int before_wait = f->nlog;
    write_grad(&r, &g, 1, 0);
    CHECK(G->num_buckets == 2, "buckets after waiting for one: %d", G->num_buckets);
    CHECK(fk_waits_of(f, id_c3, before_wait) == 1 && fk_req(f, id_c3)->completed_by == F_WAIT,
          "chunk 3's reduction waited for: %d waits", fk_waits_of(f, id_c3, before_wait));
    CHECK(fk_waits_of(f, id_c2, before_wait) == 0 && fk_req(f, id_c2)->pending,
          "chunk 2's reduction left in flight");
    CHECK(G->chunk_state[3] == ZR_CHUNK_DONE && G->chunk_bucket[3] == -1 &&
              G->chunk_bucket[1] == 0 && G->buckets[0].chunk == 1,
          "chunk 3 done, bucket 0 reused for chunk 1: state %d, chunk 1 in bucket %d",
          G->chunk_state[3], G->chunk_bucket[1]);
    /* chunk 3's slice is in the shard already (the first micro-step copies) */
    {
        size_t lo, hi;
        zp_slice_range(L, 3, RANK, &lo, &hi);
        const float *sh = (const float *)z->st.grads + L->chunks[3].shard_offset;
        int bad = 0;
        for (size_t e = lo; e < hi; e++)
            bad += sh[e - lo] != (float)WORLD * g.img[3][e];
        CHECK(bad == 0, "chunk 3's reduced slice in the shard: %d elements differ", bad);
    }

    /* the test lets chunk 2 finish: the next progress completes it by test(), no wait */
    fk_release(f, id_c2);
    int before = f->nlog;
    write_grad(&r, &g, 2, 0);
    CHECK(zero_grad_ready(z, 1) == ZERO_OK, "ready(1)");
    CHECK(fk_req(f, id_c2)->completed_by == F_TEST && fk_waits_of(f, id_c2, 0) == 0,
          "chunk 2 completed by test (completed_by %d)", fk_req(f, id_c2)->completed_by);
    CHECK(G->chunk_state[2] == ZR_CHUNK_DONE && G->buckets[1].chunk == -1,
          "chunk 2 done and its bucket free: state %d", G->chunk_state[2]);
    CHECK(fk_count(f, F_RS, before) == 1 && G->chunk_state[1] == ZR_CHUNK_REDUCING,
          "chunk 1 (one module) reduced at its ready");

    /* chunk 0: a pointer but no ready; zero_step's micro_end reduces it and waits for all */
    write_grad(&r, &g, 0, 0);
    CHECK(G->chunk_bucket[0] == 1, "chunk 0 in the free bucket 1: %d", G->chunk_bucket[0]);
    before = f->nlog;
    CHECK(zero_step(z) == ZERO_OK, "zero_step (micro-step 0): %s", z->err.msg);
    CHECK(fk_count(f, F_RS, before) == 1, "micro_end reduce-scatters: %d",
          fk_count(f, F_RS, before));
    CHECK(fk_count(f, F_AG, before) == 0, "no all-gather inside the window");
    for (int i = 0; i < f->nreq; i++)
        CHECK(!f->req[i].pending, "request %d still in flight after micro_end", i + 1);
    CHECK(z->prog.micro == 1 && z->prog.steps == 0 && z->prog.micro_steps == 1,
          "progress after micro-step 0: micro %d steps %lld", z->prog.micro,
          (long long)z->prog.steps);
    CHECK(fk_count(f, F_RS, mark) == NC, "one reduce-scatter per chunk in micro-step 0: %d",
          fk_count(f, F_RS, mark));
    for (int c = 0; c < NC; c++)
        CHECK(G->chunk_state[c] == ZR_CHUNK_IDLE && G->chunk_ready[c] == 0,
              "chunk %d reset for the next micro-step", c);
    gref_micro_done(&g, L);
    check_shard(z, &g, "after micro-step 0");

    /* ---- micro-step 1: the model holds gradients of three chunks at once ------------------- */
    mark = f->nlog;
    write_grad(&r, &g, 9, 1); /* chunk 3 */
    write_grad(&r, &g, 5, 1); /* chunk 2 */
    CHECK(G->num_buckets == 2, "two chunks held: %d buckets", G->num_buckets);
    write_grad(&r, &g, 1, 1); /* chunk 1: the pool grows */
    CHECK(G->num_buckets == 3 && z->dev.current[ZERO_MEM_BUFFERS] == 3 * bucket_bytes,
          "three chunks held: %d buckets, %zu buffer bytes", G->num_buckets,
          z->dev.current[ZERO_MEM_BUFFERS]);
    CHECK(fk_count(f, F_WAIT, mark) == 0 && fk_count(f, F_RS, mark) == 0,
          "growth without waiting or reducing");
    for (int c = 1; c < NC; c++)
        CHECK(G->chunk_state[c] == ZR_CHUNK_FILLING, "chunk %d filling: %d", c, G->chunk_state[c]);
    /* chunk 0 untouched. zero_step ends the window: micro_end reduces 3, 2, 1 (filling) and 0
     * (idle: it waits for a bucket, the pool does not grow), descending, then the boundary */
    int hmark = r.host.nlog;
    const float scale_before = z->scaler.scale;
    float *params_before = malloc(L->total_padded * sizeof(float));
    memcpy(params_before, z->st.params, L->total_padded * sizeof(float));
    CHECK(zero_step(z) == ZERO_OK, "zero_step (boundary): %s", z->err.msg);
    CHECK(G->num_buckets == 3, "buckets after micro_end: %d", G->num_buckets);
    CHECK(fk_count(f, F_RS, mark) == NC, "micro_end reduce-scatters: %d", fk_count(f, F_RS, mark));
    /* descending: identified by count and by the bucket each one reads */
    static const int order[NC] = {3, 2, 1, 0};
    for (int k = 0; k < NC; k++) {
        rs = fk_nth(f, F_RS, mark, k);
        CHECK(rs && rs->count == L->chunks[order[k]].slice, "reduce-scatter %d: count %zu", k,
              rs ? rs->count : 0);
    }
    const fcall *r3 = fk_nth(f, F_RS, mark, 0), *r0 = fk_nth(f, F_RS, mark, 3);
    CHECK(r3 && r0 && r3->send == r0->send && fk_waits_of(f, r3->id, mark) == 1,
          "chunk 0 reused chunk 3's bucket after waiting for it");
    CHECK(r3 && fk_nth(f, F_RS, mark, 1) && fk_nth(f, F_RS, mark, 2) &&
              fk_nth(f, F_RS, mark, 1)->send != r3->send &&
              fk_nth(f, F_RS, mark, 2)->send != r3->send &&
              fk_nth(f, F_RS, mark, 1)->send != fk_nth(f, F_RS, mark, 2)->send,
          "chunks 2 and 1 in the two other buckets");
    for (int i = 0; i < f->nreq; i++)
        CHECK(!f->req[i].pending, "request %d still in flight after the step", i + 1);
    gref_micro_done(&g, L);
    check_shard(z, &g, "after the boundary (accumulated over two micro-steps)");
    /* the boundary: the norm's all-gather on the host collectives, then one group of blocking
     * all-gathers of every chunk's updated slice into the replica */
    CHECK(fk_count(&r.host, F_AG, hmark) == 1 && fk_nth(&r.host, F_AG, hmark, 0)->e == ZR_ELEM_F64 &&
              fk_nth(&r.host, F_AG, hmark, 0)->count == 7,
          "one norm, sequence and hyperparameter check all-gather (f64, 7 words per rank): %d", fk_count(&r.host, F_AG, hmark));
    int gs = -1, ge = -1;
    for (int i = mark; i < f->nlog; i++) {
        if (f->log[i].op == F_GSTART)
            gs = i;
        if (f->log[i].op == F_GEND)
            ge = i;
    }
    CHECK(gs >= 0 && ge > gs && fk_count(f, F_AG, mark) == NC && fk_count(f, F_AG, gs) == NC &&
              fk_count(f, F_AG, ge) == 0,
          "parameter all-gathers inside one group: start %d end %d, %d all-gathers", gs, ge,
          fk_count(f, F_AG, mark));
    for (int c = 0; c < NC; c++) {
        const fcall *ag = fk_nth(f, F_AG, mark, c);
        CHECK(ag && ag->id == 0 && ag->count == L->chunks[c].slice &&
                  ag->recv == (char *)z->st.params + L->chunks[c].offset * z->wsz,
              "parameter all-gather %d: blocking, chunk %d's replica", c, c);
    }
    CHECK(z->prog.steps == 1 && z->prog.boundaries == 1 && z->prog.micro == 0 &&
              z->prog.micro_steps == 2 && z->last.applied == 1 && z->last.boundary == 1,
          "progress after the boundary: steps %lld micro %d", (long long)z->prog.steps,
          z->prog.micro);
    CHECK(z->scaler.scale == scale_before && scale_before == 1.0f, "fp32: the scale stays 1: %g",
          (double)z->scaler.scale);
    /* the update: elements with a gradient moved, and (mirror all-gather) every rank's block of
     * a chunk equals this rank's */
    {
        const float *p = z->st.params;
        int moved = 0, same_blocks = 1;
        for (int c = 0; c < NC; c++) {
            const zp_chunk *ch = &L->chunks[c];
            for (size_t k = 0; k < ch->slice; k++) {
                float own = p[ch->offset + RANK * ch->slice + k];
                moved += own != params_before[ch->offset + RANK * ch->slice + k];
                for (int b = 0; b < WORLD; b++)
                    same_blocks &= p[ch->offset + (size_t)b * ch->slice + k] == own;
            }
        }
        CHECK(moved > 0, "the optimizer changed this rank's slices");
        CHECK(same_blocks, "the all-gathered replica holds this rank's slice in every block");
    }
    free(params_before);
    rig_close(&r);
    REPORT_LINE("buckets: acquire/fill/reduce, test vs wait completion, reuse, growth, "
                "micro_end order, accumulation, boundary collectives, ZERO_ERR_STATE");
}

/* A failing reduce-scatter: zero_grad_ready returns it, z->err has it, the chunk is not marked
 * reducing. */
static void test_bucket_failure(void)
{
    check_set_context("bucket failure");
    zero_config cfg = base_config(2, ZERO_DTYPE_FP32);
    rig r;
    if (rig_open(&r, &cfg)) {
        rig_close(&r);
        return;
    }
    zero_ctx *z = r.z;
    static gref g;
    memset(&g, 0, sizeof g);
    r.dev.fail_op = F_RS;
    r.dev.fail_after = 1;
    write_grad(&r, &g, 0, 0);
    zero_status s = zero_grad_ready(z, 0);
    CHECK(s == ZERO_ERR_COMM && z->err.status == ZERO_ERR_COMM,
          "ready with a failing reduce-scatter: %d (err %d)", s, z->err.status);
    CHECK(z->g.chunk_state[0] == ZR_CHUNK_FILLING, "chunk 0 not reducing after the failure: %d",
          z->g.chunk_state[0]);
    CHECK(r.dev.nlog > 0 && r.dev.log[r.dev.nlog - 1].failed, "the failed call was the last");
    rig_close(&r);
    REPORT_LINE("bucket failure: ZERO_ERR_COMM from the reduce-scatter reaches the caller");
}

static void visit(rig *r, int m, const char *when);
static int prefetch_id(const rig *r, int dev_from, int k);

/* Finalize in the middle of a micro-step: a reduction (stage 2) or a prefetch (stage 3) still in
 * flight is waited for before its buffers are freed; nothing is left. */
static void test_close_in_flight(void)
{
    for (int stage = 2; stage <= 3; stage++) {
        check_set_context("close in flight, stage %d", stage);
        zero_config cfg = base_config(stage, ZERO_DTYPE_FP32);
        cfg.persist_bytes = 0;
        rig r;
        if (rig_open(&r, &cfg)) {
            rig_close(&r);
            continue;
        }
        zero_ctx *z = r.z;
        static gref g;
        memset(&g, 0, sizeof g);
        int id = 0;
        if (stage == 2) {
            write_grad(&r, &g, 1, 0);
            CHECK(zero_grad_ready(z, 1) == ZERO_OK, "ready(1)");
            const fcall *rs = fk_nth(&r.dev, F_RS, 0, 0);
            id = rs ? rs->id : 0;
        } else { /* record 0, 1, then follow: gather(0) prefetches chunk 1 */
            for (int m = 0; m < 2; m++)
                visit(&r, m, "recording");
            CHECK(zero_step(z) == ZERO_OK, "step: %s", z->err.msg);
            int from = r.dev.nlog;
            CHECK(zero_gather(z, 0) == ZERO_OK, "gather(0)");
            id = prefetch_id(&r, from, 0);
        }
        CHECK(id > 0 && fk_req(&r.dev, id)->pending, "a collective in flight before closing");
        int from = r.dev.nlog;
        zr_s3_free(z);
        zr_grads_free(z);
        CHECK(fk_waits_of(&r.dev, id, from) == 1 && !fk_req(&r.dev, id)->pending,
              "closing waited for it: %d waits", fk_waits_of(&r.dev, id, from));
        rig_close(&r); /* no violation (no buffer freed under a collective), no memory left */
    }
    REPORT_LINE("close in flight: finalize mid-micro-step waits for reductions and prefetches");
}

/* =============================================================================================
 * Stage 3: gather, trace, prefetch
 * ============================================================================================= */

/* The gathered chunk behind tensor i (through zero_param_ptr): every block equals this rank's
 * shard slice (mirror all-gather), and the shard slice is the initial values (or what they
 * became: `from_init` 0). */
static void check_gathered(rig *r, int i, int from_init, const char *when)
{
    zero_ctx *z = r->z;
    const zp_layout *L = &z->layout;
    const zp_place *pl = &L->place[i];
    const zp_chunk *ch = &L->chunks[pl->chunk];
    z->err.status = ZERO_OK;
    const float *p = zero_param_ptr(z, i);
    CHECK(p != NULL, "%s: zero_param_ptr(%d): %s", when, i, z->err.msg);
    if (!p)
        return;
    const float *buf = p - pl->offset;
    const float *own = (const float *)z->st.params + ch->shard_offset;
    int bad = 0;
    for (int b = 0; b < WORLD; b++)
        bad += memcmp(buf + (size_t)b * ch->slice, own, ch->slice * sizeof(float)) != 0;
    CHECK(bad == 0, "%s: chunk %d: %d blocks differ from this rank's shard slice", when,
          pl->chunk, bad);
    if (from_init) {
        size_t lo, hi;
        zp_slice_range(L, pl->chunk, RANK, &lo, &hi);
        int wrong = 0;
        for (size_t e = lo; e < hi; e++) {
            float want = 0.0f;
            for (int t = ch->first_tensor; t < ch->first_tensor + ch->num_tensors; t++)
                if (e >= L->place[t].offset && e < L->place[t].offset + L->place[t].numel)
                    want = init_value(t, e - L->place[t].offset);
            wrong += own[e - lo] != want;
        }
        CHECK(wrong == 0, "%s: chunk %d's shard slice differs from the initial values in %d",
              when, pl->chunk, wrong);
    }
}

/* zero_gather + value check + zero_release of module m. */
static void visit(rig *r, int m, const char *when)
{
    zero_ctx *z = r->z;
    CHECK(zero_gather(z, m) == ZERO_OK, "%s: gather(%d): %s", when, m, z->err.msg);
    check_gathered(r, tensor_of_module(m, 0), 1, when);
    CHECK(zero_release(z, m) == ZERO_OK, "%s: release(%d): %s", when, m, z->err.msg);
}

/* The request id of the k-th asynchronous all-gather on the device collectives from log index
 * dev_from on, 0 if there is none. */
static int prefetch_id(const rig *r, int dev_from, int k)
{
    const fcall *ag = NULL;
    for (int i = dev_from, n = 0; i < r->dev.nlog; i++)
        if (r->dev.log[i].op == F_AG && r->dev.log[i].id > 0 && n++ == k) {
            ag = &r->dev.log[i];
            break;
        }
    return ag ? ag->id : 0;
}

static void test_stage3(void)
{
    check_set_context("stage 3");
    zero_config cfg = base_config(3, ZERO_DTYPE_FP32);
    cfg.grad_accum = 6;
    cfg.persist_bytes = 512;   /* chunk 0 (256 bytes) resident, the others (512) not */
    cfg.prefetch_bytes = 1024; /* two big chunks ahead */
    cfg.max_live_bytes = 0;    /* no cap at first */
    cfg.weight_decay = 0.5f;   /* the step changes every parameter */
    cfg.lr = 0.125f;
    rig r;
    if (rig_open(&r, &cfg)) {
        rig_close(&r);
        return;
    }
    zero_ctx *z = r.z;
    fake *f = &r.dev, *h = &r.host;
    const zp_layout *L = &z->layout;
    const size_t bucket_bytes = (L->max_padded + L->max_slice) * z->wsz;
    const size_t big = L->max_padded * z->wsz; /* a pool buffer: 512 bytes */
    int64_t gathers, prefetches, hits;
    int buffers, trace_len;

    /* set-up: the resident chunk 0 gathered once, blocking; announced on the host first */
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(gathers == 1 && prefetches == 0 && buffers == 0 && trace_len == 0,
          "after set-up: gathers %lld prefetches %lld buffers %d trace %d", (long long)gathers,
          (long long)prefetches, buffers, trace_len);
    CHECK(fk_count(f, F_AG, 0) == 1 && fk_nth(f, F_AG, 0, 0)->id == 0 &&
              fk_nth(f, F_AG, 0, 0)->count == L->chunks[0].slice,
          "set-up all-gathers: %d", fk_count(f, F_AG, 0));
    CHECK(strcmp(fk_words(h, 0), "0") == 0, "set-up order checks: %s", fk_words(h, 0));
    CHECK(z->dev.current[ZERO_MEM_BUFFERS] == bucket_bytes + L->chunks[0].padded * z->wsz,
          "buffers: %zu", z->dev.current[ZERO_MEM_BUFFERS]);
    check_gathered(&r, 0, 1, "resident after set-up");

    /* ---- micro-step 0 records: every gather blocking, nothing prefetched ------------------- */
    int dm = f->nlog, hm = h->nlog;
    for (int m = 0; m < NM; m++)
        visit(&r, m, "recording");
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(fk_count(f, F_AG, dm) == 5 && prefetch_id(&r, dm, 0) == 0,
          "recording: %d all-gathers (1 + 2 + 2 expected), async: %d", fk_count(f, F_AG, dm),
          prefetch_id(&r, dm, 0));
    CHECK(strcmp(fk_words(h, hm), "0,1,2,2,3,3") == 0, "recording order checks: %s",
          fk_words(h, hm));
    CHECK(gathers == 6 && prefetches == 0 && hits == 0 && buffers == 1 && trace_len == 6,
          "recording: gathers %lld prefetches %lld hits %lld buffers %d trace %d",
          (long long)gathers, (long long)prefetches, (long long)hits, buffers, trace_len);
    CHECK(zero_step(z) == ZERO_OK, "step 0: %s", z->err.msg);
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(trace_len == 6, "trace kept after the recording micro-step: %d", trace_len);

    /* ---- micro-step 1 follows the trace: prefetch up to 1024 bytes ahead ------------------- */
    dm = f->nlog;
    hm = h->nlog;
    CHECK(zero_gather(z, 0) == ZERO_OK, "gather(0)");
    /* chunk 0 is resident; chunks 1 and 2 (512 bytes each) prefetched, chunk 3 is past 1024 */
    /* following the recorded order: the fast path, no host exchange for the order check */
    CHECK(strcmp(fk_words(h, hm), "") == 0, "order checks after gather(0): %s",
          fk_words(h, hm));
    CHECK(fk_count(f, F_AG, dm) == 2, "prefetches issued: %d", fk_count(f, F_AG, dm));
    int id1 = prefetch_id(&r, dm, 0), id2 = prefetch_id(&r, dm, 1);
    CHECK(id1 && id2 && fk_req(f, id1)->pending && fk_req(f, id2)->pending,
          "both prefetches asynchronous and in flight (%d, %d)", id1, id2);
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(prefetches == 2 && buffers == 2, "prefetches %lld buffers %d", (long long)prefetches,
          buffers);
    /* misuse: a prefetched chunk is not the model's until it gathers it */
    z->err.status = ZERO_OK;
    CHECK(zero_param_ptr(z, 1) == NULL && z->err.status == ZERO_ERR_STATE,
          "param_ptr of a prefetched, not gathered, module: %d", z->err.status);
    CHECK(zero_release(z, 1) == ZERO_ERR_STATE, "release of a module not gathered");
    CHECK(zero_release(z, 0) == ZERO_OK, "release(0)");
    /* gather(1): a hit, waited for; then chunk 3 comes into the window */
    int dm1 = f->nlog;
    CHECK(zero_gather(z, 1) == ZERO_OK, "gather(1)");
    CHECK(fk_waits_of(f, id1, dm1) == 1 && fk_req(f, id1)->completed_by == F_WAIT,
          "the prefetched chunk 1 waited for at its gather");
    check_gathered(&r, 1, 1, "prefetched chunk 1");
    int id3 = prefetch_id(&r, dm1, 0);
    CHECK(id3 && fk_count(f, F_AG, dm1) == 1 && fk_req(f, id3)->pending,
          "chunk 3 prefetched at gather(1): %d all-gathers", fk_count(f, F_AG, dm1));
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(prefetches == 3 && hits == 1 && buffers == 3, "prefetches %lld hits %lld buffers %d",
          (long long)prefetches, (long long)hits, buffers);
    /* chunk 2 finishes in the background: release(1) drives progress, which completes it by
     * test(); gather(2) then does not wait */
    fk_release(f, id2);
    CHECK(zero_release(z, 1) == ZERO_OK, "release(1)");
    CHECK(fk_req(f, id2)->completed_by == F_TEST, "chunk 2 completed by test(): %d",
          fk_req(f, id2)->completed_by);
    int dm2 = f->nlog;
    visit(&r, 2, "prefetched chunk 2");
    CHECK(fk_waits_of(f, id2, 0) == 0 && fk_count(f, F_AG, dm2) == 0,
          "gather(2): no wait, nothing new issued");
    /* release(2) keeps chunk 2 (module 3 is next in the trace): gather(3) issues nothing */
    int dm3 = f->nlog;
    visit(&r, 3, "kept chunk 2");
    CHECK(fk_count(f, F_AG, dm3) == 0, "gather(3) of the kept chunk: %d all-gathers",
          fk_count(f, F_AG, dm3));
    visit(&r, 4, "prefetched chunk 3");
    CHECK(fk_req(f, id3)->completed_by == F_WAIT, "chunk 3 waited for at gather(4)");
    visit(&r, 5, "kept chunk 3");
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(fk_count(f, F_AG, dm) == 3 && gathers == 9 && prefetches == 3 && hits == 3 &&
              buffers == 3,
          "micro-step 1: %d all-gathers, gathers %lld prefetches %lld hits %lld buffers %d",
          fk_count(f, F_AG, dm), (long long)gathers, (long long)prefetches, (long long)hits,
          buffers);
    CHECK(strcmp(fk_words(h, hm), "") == 0, "micro-step 1 order checks (none on the fast path): %s",
          fk_words(h, hm));
    CHECK(zero_step(z) == ZERO_OK, "step 1: %s", z->err.msg);

    /* ---- micro-step 2: ZERO_MAX_LIVE_MB holds prefetch back ------------------------------- */
    z->set.cfg.max_live_bytes = 2 * big;
    dm = f->nlog;
    hm = h->nlog;
    CHECK(zero_gather(z, 0) == ZERO_OK, "gather(0)");
    CHECK(fk_count(f, F_AG, dm) == 2, "prefetched under the cap: %d", fk_count(f, F_AG, dm));
    CHECK(zero_release(z, 0) == ZERO_OK, "release(0)");
    dm1 = f->nlog;
    CHECK(zero_gather(z, 1) == ZERO_OK, "gather(1)");
    CHECK(fk_count(f, F_AG, dm1) == 0, "chunk 3 not prefetched while two chunks are live: %d",
          fk_count(f, F_AG, dm1));
    CHECK(zero_release(z, 1) == ZERO_OK, "release(1)"); /* chunk 1 dropped: one live */
    dm2 = f->nlog;
    CHECK(zero_gather(z, 2) == ZERO_OK, "gather(2)");
    CHECK(fk_count(f, F_AG, dm2) == 1 && prefetch_id(&r, dm2, 0) > 0,
          "chunk 3 prefetched once chunk 1 was given back: %d", fk_count(f, F_AG, dm2));
    CHECK(zero_release(z, 2) == ZERO_OK, "release(2)");
    for (int m = 3; m < NM; m++)
        visit(&r, m, "micro-step 2");
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(prefetches == 6 && hits == 6 && buffers == 3, "micro-step 2: prefetches %lld hits %lld",
          (long long)prefetches, (long long)hits);
    CHECK(strcmp(fk_words(h, hm), "") == 0, "micro-step 2 order checks (none on the fast path): %s",
          fk_words(h, hm));
    CHECK(zero_step(z) == ZERO_OK, "step 2: %s", z->err.msg);
    z->set.cfg.max_live_bytes = 0;

    /* ---- micro-step 3: out of order turns prefetch off ------------------------------------- */
    dm = f->nlog;
    CHECK(zero_gather(z, 0) == ZERO_OK, "gather(0)"); /* prefetches 1 and 2 */
    CHECK(zero_release(z, 0) == ZERO_OK, "release(0)");
    CHECK(zero_gather(z, 2) == ZERO_OK, "gather(2) out of order");
    check_gathered(&r, 3, 1, "out of order");
    CHECK(zero_release(z, 2) == ZERO_OK, "release(2)");
    dm1 = f->nlog;
    visit(&r, 4, "after the order broke");
    CHECK(fk_count(f, F_AG, dm1) == 1 && prefetch_id(&r, dm1, 0) == 0,
          "gather(4) blocking, nothing prefetched: %d all-gathers", fk_count(f, F_AG, dm1));
    int64_t pf_before = prefetches;
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(prefetches == pf_before + 2, "only gather(0)'s prefetches: %lld",
          (long long)(prefetches - pf_before));
    CHECK(zero_step(z) == ZERO_OK, "step 3: %s", z->err.msg);
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(trace_len == 0, "the broken trace is dropped: %d", trace_len);

    /* ---- micro-step 4 records again (a new order), micro-step 5 follows it ----------------- */
    static const int order4[] = {0, 1, 4, 5};
    for (int k = 0; k < 4; k++)
        visit(&r, order4[k], "re-recording");
    CHECK(zero_step(z) == ZERO_OK, "step 4: %s", z->err.msg);
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(trace_len == 4, "re-recorded trace: %d", trace_len);
    dm = f->nlog;
    hm = h->nlog;
    pf_before = prefetches;
    CHECK(zero_gather(z, 0) == ZERO_OK, "gather(0)");
    CHECK(strcmp(fk_words(h, hm), "") == 0, "no order checks along the new order: %s",
          fk_words(h, hm));
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    CHECK(prefetches == pf_before + 2, "prefetches along the new order: %lld",
          (long long)(prefetches - pf_before));
    CHECK(zero_release(z, 0) == ZERO_OK, "release(0)");
    for (int k = 1; k < 4; k++)
        visit(&r, order4[k], "following the new order");

    /* ---- the boundary (micro-step 5 of 6): the update, then the resident chunk refreshed ---- */
    const float *shard = z->st.params;
    float before0 = shard[L->chunks[0].shard_offset];
    dm = f->nlog;
    hm = h->nlog;
    CHECK(zero_step(z) == ZERO_OK, "step 5 (boundary): %s", z->err.msg);
    CHECK(z->prog.steps == 1 && z->last.applied, "the boundary applied the update");
    CHECK(shard[L->chunks[0].shard_offset] != before0, "weight decay changed the shard");
    const fcall *last = NULL;
    for (int i = dm; i < f->nlog; i++)
        if (f->log[i].op == F_AG)
            last = &f->log[i];
    CHECK(fk_count(f, F_AG, dm) == 1 && last && last->id == 0 &&
              last->count == L->chunks[0].slice,
          "after the step only the resident chunk is gathered again, blocking: %d",
          fk_count(f, F_AG, dm));
    CHECK(strcmp(fk_words(h, hm), "") == 0, "no order check for the refresh (the order is valid): %s",
          fk_words(h, hm));
    check_gathered(&r, 0, 0, "resident chunk after the step");
    for (int i = 0; i < f->nreq; i++)
        CHECK(!f->req[i].pending, "request %d in flight after the step", i + 1);
    rig_close(&r);
    REPORT_LINE("stage3: recording, prefetch window and live cap, hits, keep-next, "
                "out-of-order off and re-record, resident refresh");
}

/* =============================================================================================
 * The loss scaler
 * ============================================================================================= */

static void test_scaler(void)
{
    check_set_context("scaler");
    zero_config c = ZERO_CONFIG_INIT;
    zr_scaler s;

    zr_scaler_init(&s, &c, ZERO_DTYPE_FP32);
    CHECK(!s.dynamic && s.scale == 1.0f, "fp32: static 1 (%d, %g)", s.dynamic, (double)s.scale);
    zr_scaler_update(&s, 0, 1);
    CHECK(s.scale == 1.0f, "fp32: an overflow changes nothing");
    zr_scaler_init(&s, &c, ZERO_DTYPE_BF16);
    CHECK(!s.dynamic && s.scale == 1.0f, "bf16: static 1");
    c.loss_scale = 128.0f;
    zr_scaler_init(&s, &c, ZERO_DTYPE_FP16);
    CHECK(!s.dynamic && s.scale == 128.0f, "fp16 with ZERO_LOSS_SCALE=128: static");
    for (int64_t it = 0; it < 3000; it++)
        zr_scaler_update(&s, it, it % 7 == 0);
    CHECK(s.scale == 128.0f, "static scale never moves: %g", (double)s.scale);

    c.loss_scale = 0.0f;
    zr_scaler_init(&s, &c, ZERO_DTYPE_FP16);
    CHECK(s.dynamic && s.scale == 65536.0f && s.hysteresis_left == 2,
          "fp16 dynamic: 2^16, hysteresis 2 (%g, %d)", (double)s.scale, s.hysteresis_left);
    /* hysteresis: the first overflow only spends it, the second halves */
    zr_scaler_update(&s, 0, 1);
    CHECK(s.scale == 65536.0f && s.hysteresis_left == 1, "first overflow: %g, %d",
          (double)s.scale, s.hysteresis_left);
    zr_scaler_update(&s, 1, 1);
    CHECK(s.scale == 32768.0f, "second overflow halves: %g", (double)s.scale);
    zr_scaler_update(&s, 2, 1);
    CHECK(s.scale == 16384.0f, "hysteresis spent: every overflow halves: %g", (double)s.scale);
    /* growth: 1000 boundaries without overflow after the last one (3..1002) */
    for (int64_t it = 3; it < 1002; it++)
        zr_scaler_update(&s, it, 0);
    CHECK(s.scale == 16384.0f, "999 clean boundaries: no growth yet: %g", (double)s.scale);
    zr_scaler_update(&s, 1002, 0);
    CHECK(s.scale == 32768.0f && s.hysteresis_left == 2,
          "1000 clean boundaries double and restore hysteresis: %g, %d", (double)s.scale,
          s.hysteresis_left);
    for (int64_t it = 1003; it < 2002; it++)
        zr_scaler_update(&s, it, 0);
    CHECK(s.scale == 32768.0f, "the next doubling waits another 1000: %g", (double)s.scale);
    zr_scaler_update(&s, 2002, 0);
    CHECK(s.scale == 65536.0f, "second doubling at 2002: %g", (double)s.scale);
    /* restored hysteresis: one overflow spent, then halving; growth counts from the overflow */
    zr_scaler_update(&s, 2003, 1);
    CHECK(s.scale == 65536.0f && s.hysteresis_left == 1, "restored hysteresis absorbs one: %g",
          (double)s.scale);
    for (int64_t it = 2004; it < 3003; it++)
        zr_scaler_update(&s, it, 0);
    CHECK(s.scale == 65536.0f, "999 clean after the overflow at 2003: %g", (double)s.scale);
    zr_scaler_update(&s, 3003, 0);
    CHECK(s.scale == 131072.0f, "growth 1000 after the overflow at 2003: %g", (double)s.scale);
    /* from the start: 1000 clean boundaries (0..999) double */
    zr_scaler_init(&s, &c, ZERO_DTYPE_FP16);
    for (int64_t it = 0; it < 999; it++)
        zr_scaler_update(&s, it, 0);
    CHECK(s.scale == 65536.0f, "999 clean from the start: %g", (double)s.scale);
    zr_scaler_update(&s, 999, 0);
    CHECK(s.scale == 131072.0f, "1000 clean from the start double: %g", (double)s.scale);
    /* never below 1 */
    zr_scaler_init(&s, &c, ZERO_DTYPE_FP16);
    float lowest = s.scale;
    for (int64_t it = 0; it < 40; it++) {
        zr_scaler_update(&s, it, 1);
        if (s.scale < lowest)
            lowest = s.scale;
    }
    CHECK(s.scale == 1.0f && lowest == 1.0f, "40 overflows: %g (lowest %g)", (double)s.scale,
          (double)lowest);
    REPORT_LINE("scaler: static/dynamic init, hysteresis, halving floor 1, growth every 1000");
}

/* zero_step with fp16: an inf gradient skips the step, spends hysteresis then halves the scale;
 * the parameters stay untouched; a clean boundary applies. */
static void test_scaler_in_step(void)
{
    check_set_context("scaler in zero_step");
    zero_config cfg = base_config(2, ZERO_DTYPE_FP16);
    rig r;
    if (rig_open(&r, &cfg)) {
        rig_close(&r);
        return;
    }
    zero_ctx *z = r.z;
    const size_t pbytes = z->layout.total_padded * z->wsz;
    unsigned char *p0 = malloc(pbytes);
    memcpy(p0, z->st.params, pbytes);
    CHECK(zero_loss_scale(z) == 65536.0f, "fp16 initial scale %g", (double)zero_loss_scale(z));
    static const float expect[3] = {65536.0f, 32768.0f, 32768.0f};
    for (int step = 0; step < 3; step++) {
        const int overflow = step < 2;
        for (int i = 0; i < NT; i++) {
            void *g = zero_grad_ptr(z, i);
            CHECK(g != NULL, "grad_ptr(%d)", i);
            if (!g)
                continue;
            float *v = malloc(model_a[i].numel * sizeof *v);
            for (size_t j = 0; j < model_a[i].numel; j++)
                v[j] = overflow && i == 4 && j == 3 ? INFINITY : 1.0f;
            zk_cast(g, ZERO_DTYPE_FP16, v, ZERO_DTYPE_FP32, model_a[i].numel);
            free(v);
        }
        CHECK(zero_step(z) == ZERO_OK, "step %d: %s", step, z->err.msg);
        zero_step_info info;
        zero_last_step(z, &info);
        CHECK(info.boundary && info.overflow == overflow && info.applied == !overflow,
              "step %d: boundary %d overflow %d applied %d", step, info.boundary, info.overflow,
              info.applied);
        CHECK(zero_loss_scale(z) == expect[step] && info.loss_scale == expect[step],
              "step %d: scale %g (info %g), expected %g", step, (double)zero_loss_scale(z),
              (double)info.loss_scale, (double)expect[step]);
        if (overflow)
            CHECK(memcmp(p0, z->st.params, pbytes) == 0, "step %d skipped: parameters unchanged",
                  step);
        else
            CHECK(memcmp(p0, z->st.params, pbytes) != 0, "step %d applied: parameters changed",
                  step);
    }
    CHECK(z->prog.skipped == 2 && z->prog.steps == 1 && z->prog.boundaries == 3,
          "skipped %lld steps %lld boundaries %lld", (long long)z->prog.skipped,
          (long long)z->prog.steps, (long long)z->prog.boundaries);
    free(p0);
    rig_close(&r);
    REPORT_LINE("scaler in zero_step: fp16 overflow skips, hysteresis, halving, clean applies");
}

/* =============================================================================================
 * The offload pipeline against a one-stream copy model
 * ============================================================================================= */

enum { P_MAXB = 16, P_MAXQ = 64, P_HALF_ELEMS = 8 };

typedef struct pcopy {
    int slot;
    char *dst;
    const char *src;
    size_t bytes;
    int done;
    int block; /* the block it moves */
} pcopy;

typedef struct pctx {
    int nb, next_i;
    zo_block b[P_MAXB];
    float in[P_MAXB][P_HALF_ELEMS], out[P_MAXB][P_HALF_ELEMS];
    int has_out[P_MAXB];
    char staging[2 * P_HALF_ELEMS * sizeof(float)];
    pcopy q[P_MAXQ];
    int nq;
    int slot_last[ZO_SLOTS]; /* the slot's latest copy in q, -1 */
    int half_block[2];       /* block whose input (then result) the half holds, -1 */
    int result_pending[2];   /* the half's result must still be copied out */
    char ev[2048];
    size_t evlen;
    int violations;
    char violation[256];
} pctx;

static void pv(pctx *p, const char *fmt, int a)
{
    if (!p->violations++)
        snprintf(p->violation, sizeof p->violation, fmt, a);
}

static void pev(pctx *p, const char *fmt, int a, int b)
{
    if (p->evlen < sizeof p->ev - 32)
        p->evlen += (size_t)snprintf(p->ev + p->evlen, sizeof p->ev - p->evlen, fmt, a, b);
}

static int p_half_of(const pctx *p, const void *ptr)
{
    for (int h = 0; h < 2; h++)
        if ((const char *)ptr == p->staging + (size_t)h * P_HALF_ELEMS * sizeof(float))
            return h;
    return -1;
}

static int p_next(void *ctx, zo_block *out)
{
    pctx *p = ctx;
    if (p->next_i >= p->nb)
        return 0;
    *out = p->b[p->next_i++];
    return 1;
}

static void p_exec(pctx *p, pcopy *c)
{
    if (c->slot < ZO_SLOT_OUT) { /* into a half: its previous result must be out already */
        int h = p_half_of(p, c->dst);
        if (h >= 0 && p->result_pending[h])
            pv(p, "half %d overwritten before its copy-out ran", h);
        if (h >= 0)
            p->half_block[h] = c->block;
    } else {
        int h = p_half_of(p, c->src);
        if (h >= 0) {
            if (p->half_block[h] != c->block)
                pv(p, "copy-out of block %d reads a half holding another block", c->block);
            p->result_pending[h] = 0;
        }
    }
    memcpy(c->dst, c->src, c->bytes);
    c->done = 1;
}

static void p_copy(void *ctx, int slot, void *dst, const void *src, size_t bytes)
{
    pctx *p = ctx;
    pev(p, "c%d ", slot, 0);
    if (slot < 0 || slot >= ZO_SLOTS) {
        pv(p, "copy into slot %d", slot);
        return;
    }
    if (p->slot_last[slot] >= 0 && !p->q[p->slot_last[slot]].done)
        pv(p, "slot %d reused before its copy was waited for", slot);
    if (bytes > P_HALF_ELEMS * sizeof(float))
        pv(p, "copy of %d bytes, larger than a half", (int)bytes);
    int block = -1;
    for (int k = 0; k < p->nb; k++)
        if ((slot < ZO_SLOT_OUT && src == p->in[k]) || (slot >= ZO_SLOT_OUT && dst == p->out[k]))
            block = k;
    int h = p_half_of(p, slot < ZO_SLOT_OUT ? dst : src);
    if (block < 0 || h != slot % 2) { /* not run: dst may be NULL */
        pv(p, "copy in slot %d not between a block and its half", slot);
        return;
    }
    if (p->nq == P_MAXQ) {
        pv(p, "more than %d copies", P_MAXQ);
        return;
    }
    p->q[p->nq] = (pcopy){slot, dst, src, bytes, 0, block};
    p->slot_last[slot] = p->nq++;
}

/* One copy stream: waiting for a slot runs every copy issued up to the slot's latest. */
static void p_wait(void *ctx, int slot)
{
    pctx *p = ctx;
    pev(p, "w%d ", slot, 0);
    if (slot < 0 || slot >= ZO_SLOTS || p->slot_last[slot] < 0)
        return;
    for (int i = 0; i <= p->slot_last[slot]; i++)
        if (!p->q[i].done)
            p_exec(p, &p->q[i]);
}

static void p_compute(void *ctx, const zo_block *b, void *half)
{
    pctx *p = ctx;
    int k = (int)b->idx;
    int h = p_half_of(p, half);
    pev(p, "x%dh%d ", k, h);
    if (h < 0) {
        pv(p, "compute of block %d outside the halves", k);
        return;
    }
    for (int i = 0; i < p->nq; i++)
        if (!p->q[i].done && (p_half_of(p, p->q[i].dst) == h || p_half_of(p, p->q[i].src) == h))
            pv(p, "compute on half %d with a copy of it still queued", h);
    if (p->half_block[h] != k || memcmp(half, p->in[k], b->n * sizeof(float)) != 0)
        pv(p, "compute of block %d before its input arrived", k);
    float *x = half;
    for (size_t j = 0; j < b->n; j++)
        x[j] = 2.0f * x[j] + 1.0f;
    p->result_pending[h] = b->out != NULL;
}

/* Blocks 0..n-1 of n_k[k] elements, block k copied out unless no_out[k]. */
static void p_setup(pctx *p, int n, const size_t *n_k, const int *no_out)
{
    memset(p, 0, sizeof *p);
    p->nb = n;
    for (int s = 0; s < ZO_SLOTS; s++)
        p->slot_last[s] = -1;
    p->half_block[0] = p->half_block[1] = -1;
    for (int k = 0; k < n; k++) {
        for (int j = 0; j < P_HALF_ELEMS; j++) {
            p->in[k][j] = (float)(100 * k + j);
            p->out[k][j] = -1.0f;
        }
        p->has_out[k] = !no_out || !no_out[k];
        p->b[k] = (zo_block){.idx = (size_t)k, .n = n_k[k], .in = p->in[k],
                             .out = p->has_out[k] ? p->out[k] : NULL};
    }
}

static void p_run_check(pctx *p, const char *what)
{
    zo_pipe pipe = {.ctx = p, .next = p_next, .copy = p_copy, .wait = p_wait,
                    .compute = p_compute, .staging = p->staging,
                    .half_bytes = P_HALF_ELEMS * sizeof(float), .elem_bytes = sizeof(float)};
    zo_pipe_run(&pipe);
    CHECK(p->violations == 0, "%s: %d violations, first: %s", what, p->violations, p->violation);
    for (int i = 0; i < p->nq; i++)
        CHECK(p->q[i].done, "%s: copy %d (slot %d) not waited for at the end", what, i,
              p->q[i].slot);
    int bad = 0, outs = 0;
    for (int k = 0; k < p->nb; k++)
        for (int j = 0; j < P_HALF_ELEMS; j++) {
            float want = p->has_out[k] && (size_t)j < p->b[k].n ? 2.0f * p->in[k][j] + 1.0f : -1.0f;
            bad += p->out[k][j] != want;
        }
    for (int i = 0; i < p->nq; i++)
        outs += p->q[i].slot >= ZO_SLOT_OUT;
    int want_outs = 0;
    for (int k = 0; k < p->nb; k++)
        want_outs += p->has_out[k];
    CHECK(bad == 0, "%s: %d result elements wrong", what, bad);
    CHECK(outs == want_outs, "%s: %d copy-outs, expected %d", what, outs, want_outs);
}

static void test_pipeline(void)
{
    check_set_context("pipeline");
    static pctx p;
    static const size_t n8[P_MAXB] = {8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
    static const size_t n3[3] = {8, 5, 3};

    p_setup(&p, 0, n8, NULL);
    p_run_check(&p, "no blocks");
    CHECK(p.evlen == 0, "no blocks: events \"%s\"", p.ev);

    p_setup(&p, 1, n8, NULL);
    p_run_check(&p, "one block");
    CHECK(strcmp(p.ev, "c0 w0 x0h0 w2 c2 w2 w3 ") == 0, "one block: \"%s\"", p.ev);

    p_setup(&p, 3, n3, NULL);
    p_run_check(&p, "three blocks");
    CHECK(strcmp(p.ev, "c0 c1 w0 x0h0 w2 c2 c0 w1 x1h1 w3 c3 w0 x2h0 w2 c2 w2 w3 ") == 0,
          "three blocks: \"%s\"", p.ev);

    static const int no_mid[3] = {0, 1, 0};
    p_setup(&p, 3, n3, no_mid);
    p_run_check(&p, "middle block without copy-out");
    CHECK(strcmp(p.ev, "c0 c1 w0 x0h0 w2 c2 c0 w1 x1h1 w0 x2h0 w2 c2 w2 w3 ") == 0,
          "middle block without copy-out: \"%s\"", p.ev);

    static const int none[P_MAXB] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    p_setup(&p, 4, n8, none);
    p_run_check(&p, "no copy-outs");
    CHECK(strstr(p.ev, "c2") == NULL && strstr(p.ev, "c3") == NULL, "no copy-outs: \"%s\"",
          p.ev);

    /* random block counts, sizes and copy-outs: the same invariants */
    rnd_seed(12345);
    for (int trial = 0; trial < 300; trial++) {
        size_t nk[P_MAXB];
        int no[P_MAXB];
        int n = 1 + (int)(rnd_u32() % P_MAXB);
        for (int k = 0; k < n; k++) {
            nk[k] = 1 + rnd_u32() % P_HALF_ELEMS;
            no[k] = rnd_u32() % 3 == 0;
        }
        p_setup(&p, n, nk, no);
        char what[64];
        snprintf(what, sizeof what, "random trial %d (%d blocks)", trial, n);
        p_run_check(&p, what);
    }
    REPORT_LINE("pipeline: event order per half, waits before reuse, no copy-out for NULL out, "
                "all copies waited, results");
}

int main(void)
{
    zr_log_setup(getenv("UNITS_VERBOSE") ? ZR_LOG_INFO : ZR_LOG_NONE, ZR_SUB_ALL, NULL, RANK);
    test_buckets();
    test_bucket_failure();
    test_stage3();
    test_close_in_flight();
    test_scaler();
    test_scaler_in_step();
    test_pipeline();
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
