/* api.c — the public entry points of zero.h: each checks its arguments and hands over to one
 * unit (engine.h lists them). zero_init builds a context in the order its parts depend on:
 * the ranks, the configuration (agreed by every rank), the backends, the layout, the state, the
 * gradient path, the initial values, stage 3. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/engine.h"
#include "util/log.h"

extern char **environ;

/* The message of the last zero_init (or zero_finalize) that failed on this thread: there is no
 * context to hold it. */
static _Thread_local char init_error[ZR_ERROR_MSG];

const char *zero_init_error(void) { return init_error; }

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

static void destroy(zero_ctx *z)
{
    if (!z)
        return;
    /* After a collective failed or timed out, MPI may still write into the buffers it was
     * given (a collective cannot be cancelled): the model state, buckets and gather buffers are
     * then left allocated rather than handed back to the allocator under MPI's feet. The
     * process is expected to end soon after. */
    if (!z->comm.broken) {
        zr_s3_free(z);
        zr_grads_free(z);
        zr_state_free(z);
    }
    for (int i = 0; i < z->num_tensors && z->meta; i++)
        free(z->meta[i].name);
    free(z->meta);
    free(z->tensor_module);
    free(z->seg);
    zp_layout_free(&z->layout);
    zr_backend_close(z);
    if (z->log_open)
        zr_log_release();
    /* volatile: a store just before free is otherwise a dead store the compiler may drop */
    *(volatile uint32_t *)&z->magic = ZR_CTX_DEAD;
    free(z);
}

/* ---- zero_init, in steps --------------------------------------------------------------------- */

/* Local checks and the configuration, then one agreement round: every rank leaves with the same
 * verdict. */
static zero_status configure(zero_ctx *z, zero_ctx **out, const zero_config *cfg,
                             const zero_tensor *t, int n)
{
    zr_resolve_result res;
    memset(&res, 0, sizeof res);
    zero_status s = zr_check_tensors(z, out, t, n);
    if (!s)
        s = zr_config_resolve(&z->set, cfg, NULL, environ, &res, &z->err);
    if (!s) {
        zr_log_open(z->set.log_level, z->set.log_mask, z->set.log_file, z->rank);
        z->log_open = 1;
        for (int i = 0; i < res.num_applied; i++)
            ZR_INFO(ZR_SUB_ENV, "%s=%s (from the environment)", res.applied[i].name,
                    res.applied[i].value);
        if (z->rank == 0)
            for (int i = 0; i < res.num_warnings; i++)
                ZR_WARN(ZR_SUB_ENV, "%s", res.warnings[i]);
    }
    int64_t words[ZR_AGREE_WORDS];
    const char *names[ZR_AGREE_WORDS];
    int kinds[ZR_AGREE_WORDS]; /* how each word is shown (zr_config_word_text) */
    int nw = 0;
    if (!s)
        nw = zr_config_fingerprint(&z->set, words, names, kinds, ZR_AGREE_WORDS - 2);
    /* the tensor count and registration hash are appended by zr_agree_tensors */
    return zr_agree_tensors(z, s, words, names, kinds, nw, t, n);
}

/* What the agreed configuration implies: the report, the precision, the offload. */
static zero_status settle(zero_ctx *z)
{
    zero_config *c = &z->set.cfg;
    /* The report is rank 0's (ZERO_REPORT may be set there only) but collecting it is
     * collective: every rank learns whether rank 0 will write one. */
    c->report_path = z->set.report_path[0] ? z->set.report_path : NULL;
    int64_t report_on = z->set.report_path[0] != 0;
    zero_status s = zr_coll_broadcast(&z->hcoll, &report_on, 1, ZR_ELEM_I64, 0, ZR_TRAFFIC_OTHER,
                                      NULL);
    if (s)
        return zr_fail(&z->err, s, "zero_init: %s", z->comm.err.msg);
    z->report_on = (int)report_on;
    z->dtype = c->dtype;
    z->wsz = zero_dtype_size(c->dtype);
    z->optim = &zr_optim_adamw;
    z->offload_opt = c->offload_optimizer == ZERO_OFFLOAD_CPU;
    z->offload_param = c->offload_param == ZERO_OFFLOAD_CPU;
    if (z->offload_opt && c->stage == 0)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "ZERO_OFFLOAD_OPTIMIZER=cpu needs ZERO_STAGE 1, 2 or 3 (stage 0 keeps a "
                       "full optimizer on every rank)");
    if (z->offload_param && (c->stage != 3 || !z->offload_opt))
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "ZERO_OFFLOAD_PARAM=cpu needs ZERO_STAGE=3 and ZERO_OFFLOAD_OPTIMIZER=cpu "
                       "(got ZERO_STAGE=%d, ZERO_OFFLOAD_OPTIMIZER=%s)",
                       c->stage, zr_offload_name(c->offload_optimizer));
    return ZERO_OK;
}

/* Layout: chunks of whole modules up to the bucket size, split into world slices; the tensors'
 * names and shapes for export. */
static zero_status lay_out(zero_ctx *z, const zero_tensor *t, int n)
{
    zp_tensor *pt = malloc((size_t)n * sizeof *pt);
    if (!pt)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    for (int i = 0; i < n; i++) {
        pt[i].numel = t[i].numel;
        pt[i].module = t[i].module;
    }
    size_t chunk_elems = z->set.cfg.bucket_bytes / z->wsz;
    zr_error le = {0};
    zero_status s = zp_layout_build(&z->layout, pt, n, z->world, chunk_elems ? chunk_elems : 1,
                                    ZR_ALIGN_ELEMS, &le);
    free(pt);
    if (s)
        return zr_fail(&z->err, s, "layout: %s", le.msg);
    const zp_layout *L = &z->layout;
    /* every buffer is at most 16 bytes per element (fp32 master + two states + working copies):
     * a model whose byte sizes would not fit size_t is refused here, not allocated wrapped */
    if (L->total_padded > SIZE_MAX / 16)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "layout: %zu parameter elements (padded) are more than this machine can "
                       "address as bytes (at most %zu)",
                       L->total_padded, (size_t)(SIZE_MAX / 16));
    z->num_tensors = n;
    z->meta = calloc((size_t)n, sizeof *z->meta);
    z->tensor_module = malloc((size_t)n * sizeof *z->tensor_module);
    for (int c = 0; c < L->num_chunks; c++)
        if (L->chunks[c].num_tensors > z->seg_cap)
            z->seg_cap = L->chunks[c].num_tensors;
    z->seg = malloc((size_t)z->seg_cap * sizeof *z->seg);
    if (!z->meta || !z->tensor_module || !z->seg)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    for (int i = 0; i < n; i++) {
        z->tensor_module[i] = t[i].module;
        if (!(z->meta[i].name = strdup(t[i].name)))
            return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
        z->meta[i].ndim = t[i].ndim;
        memcpy(z->meta[i].shape, t[i].shape, sizeof t[i].shape);
        z->meta[i].no_decay = t[i].no_decay;
    }
    ZR_INFO(ZR_SUB_PART,
            "layout: %zu parameters in %d tensors, %d modules, %d chunks (bucket %zu elements); "
            "full buffer %zu elements, shard %zu elements per rank on %d ranks",
            L->num_params, n, L->num_modules, L->num_chunks, chunk_elems, L->total_padded,
            L->shard_numel, z->world);
    return ZERO_OK;
}

static void log_memory(zero_ctx *z)
{
    const zero_config *c = &z->set.cfg;
    ZR_INFO(ZR_SUB_ALLOC,
            "stage %d %s: params %.2f MiB, grads %.2f MiB, optimizer %.2f MiB, buffers %.2f MiB "
            "(formula %.2f MiB of model state)",
            c->stage, zr_dtype_name(z->dtype), mib(z->dev.current[ZERO_MEM_PARAMS]),
            mib(z->dev.current[ZERO_MEM_GRADS]), mib(z->dev.current[ZERO_MEM_OPTIMIZER]),
            mib(z->dev.current[ZERO_MEM_BUFFERS]),
            mib((double)zp_model_state_bytes(c->stage, z->wsz, z->layout.num_params, z->world)));
    if (z->offload_opt)
        ZR_INFO(ZR_SUB_OFFLOAD,
                "offload: host params %.2f MiB, grads %.2f MiB, optimizer %.2f MiB, buffers "
                "%.2f MiB",
                mib(z->host.current[ZERO_MEM_PARAMS]), mib(z->host.current[ZERO_MEM_GRADS]),
                mib(z->host.current[ZERO_MEM_OPTIMIZER]), mib(z->host.current[ZERO_MEM_BUFFERS]));
}

/* Everything after the ranks exist; on failure z->err says why. */
static zero_status build(zero_ctx *z, zero_ctx **out, const zero_config *cfg,
                         const zero_tensor *t, int n)
{
    zero_status s;
    ZR_CHECK(configure(z, out, cfg, t, n));
    ZR_CHECK(settle(z));
    ZR_CHECK(zr_backend_open(z));
    ZR_CHECK(zr_agree(z, lay_out(z, t, n), NULL, NULL, 0));
    /* Allocation may fail on one rank only: agree before the next collective. */
    s = zr_state_alloc(z);
    if (!s)
        s = zr_grads_init(z);
    ZR_CHECK(zr_agree(z, s, NULL, NULL, 0));
    ZR_CHECK(zr_load_initial_values(z, t));
    ZR_CHECK(zr_agree(z, zr_device_error(z, "loading the initial values"), NULL, NULL, 0));
    if (z->set.cfg.stage == 3)
        ZR_CHECK(zr_s3_setup(z));
    log_memory(z);
    zr_scaler_init(&z->scaler, &z->set.cfg, z->dtype);
    z->last.loss_scale = z->scaler.scale;
    z->t_init_done = zr_now();
    z->comm.round_trips = 0; /* from here on: training */
    return ZERO_OK;
}

zero_status zero_init(zero_ctx **out, const zero_config *cfg, const zero_tensor *t, int n)
{
    init_error[0] = 0;
    if (out)
        *out = NULL;
    zero_ctx *z = calloc(1, sizeof *z);
    if (!z) {
        snprintf(init_error, sizeof init_error, "zero_init: out of host memory");
        return ZERO_ERR_SYSTEM;
    }
    zero_status s = zr_backend_bootstrap(z);
    if (s) {
        snprintf(init_error, sizeof init_error, "%s", z->err.msg);
        free(z);
        return s;
    }
    zr_log_set_rank(z->rank);
    if ((s = build(z, out, cfg, t, n))) {
        snprintf(init_error, sizeof init_error, "%s", z->err.msg);
        destroy(z);
        return s;
    }
    z->magic = ZR_CTX_MAGIC;
    *out = z;
    return ZERO_OK;
}

/* ---- training calls -------------------------------------------------------------------------- */


/* NULL is ZERO_ERR_INVALID; a context that is not live is ZERO_ERR_STATE, nothing written into
 * it (zero_last_error has the message). */
static zero_status check_ctx(const zero_ctx *z)
{
    if (!z)
        return ZERO_ERR_INVALID;
    return zr_ctx_live(z) ? ZERO_OK : ZERO_ERR_STATE;
}

static zero_status check_module(zero_ctx *z, const char *call, int module)
{
    if (module < 0 || module >= z->layout.num_modules)
        return zr_fail(&z->err, ZERO_ERR_INVALID, "%s: module %d; expected 0..%d", call, module,
                       z->layout.num_modules - 1);
    return ZERO_OK;
}

static int check_tensor(zero_ctx *z, const char *call, int i)
{
    if (i >= 0 && i < z->num_tensors)
        return 1;
    zr_fail(&z->err, ZERO_ERR_INVALID, "%s: tensor index %d; expected 0..%d", call, i,
            z->num_tensors - 1);
    return 0;
}

void *zero_param_ptr(zero_ctx *z, int i)
{
    if (check_ctx(z) || !check_tensor(z, "zero_param_ptr", i))
        return NULL;
    if (z->set.cfg.stage == 3)
        return zr_s3_param_ptr(z, i);
    const zp_place *p = &z->layout.place[i];
    return (char *)z->st.params + (z->layout.chunks[p->chunk].offset + p->offset) * z->wsz;
}

void *zero_grad_ptr(zero_ctx *z, int i)
{
    if (check_ctx(z) || !check_tensor(z, "zero_grad_ptr", i))
        return NULL;
    double t0 = zr_now();
    void *p = z->g.ops->ptr(z, i);
    z->times.in_backward_s += zr_now() - t0;
    return p;
}

zero_status zero_grad_ready(zero_ctx *z, int module)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_module(z, "zero_grad_ready", module));
    if (z->g.module_ready[module])
        return zr_fail(&z->err, ZERO_ERR_STATE,
                       "zero_grad_ready: module %d was already reported ready in this micro-step",
                       module);
    int c = z->layout.module_chunk[module];
    if (c < 0) {
        z->g.module_ready[module] = 1;
        return ZERO_OK;
    }
    double t0 = zr_now();
    zero_status s = z->g.ops->ready(z, module, c);
    z->times.in_backward_s += zr_now() - t0;
    return s;
}

zero_status zero_step(zero_ctx *z)
{
    ZR_CHECK(check_ctx(z));
    return zr_step(z);
}

zero_status zero_gather(zero_ctx *z, int module)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_module(z, "zero_gather", module));
    if (z->set.cfg.stage < 3)
        return ZERO_OK;
    double t0 = zr_now();
    zero_status s = zr_s3_gather(z, module);
    z->times.gather_wait_s += zr_now() - t0;
    return s;
}

zero_status zero_release(zero_ctx *z, int module)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_module(z, "zero_release", module));
    return z->set.cfg.stage < 3 ? ZERO_OK : zr_s3_release(z, module);
}

zero_status zero_allreduce_sum(zero_ctx *z, double *values, int n)
{
    ZR_CHECK(check_ctx(z));
    if (!values || n < 0)
        return zr_fail(&z->err, ZERO_ERR_INVALID, "zero_allreduce_sum: values %p, n %d",
                       (void *)values, n);
    zero_status s = zr_coll_all_reduce(&z->hcoll, values, (size_t)n, ZR_ELEM_F64, ZR_OP_SUM,
                                       ZR_TRAFFIC_OTHER, NULL);
    return s ? zr_fail(&z->err, s, "zero_allreduce_sum: %s", z->comm.err.msg) : ZERO_OK;
}

zero_status zero_finalize(zero_ctx *z)
{
    if (!z)
        return ZERO_OK;
    if (!zr_ctx_live(z)) {
        snprintf(init_error, sizeof init_error,
                 "zero_finalize: not a live context (finalized already?); nothing done");
        return ZERO_ERR_STATE;
    }
    z->t_end = zr_now();
    z->round_trips = z->comm.round_trips;
    /* every rank finalizes at the same point, after the same steps and collectives */
    zero_status s = zr_finalize_agree(z);
    if (!s && z->report_on)
        s = zr_write_report(z, z->set.report_path);
    if (s)
        snprintf(init_error, sizeof init_error, "%s%s",
                 strncmp(z->err.msg, "zero_finalize: ", 15) ? "zero_finalize: " : "", z->err.msg);
    destroy(z);
    return s;
}

/* ---- queries --------------------------------------------------------------------------------- */

float zero_loss_scale(const zero_ctx *z) { return zr_ctx_live(z) ? z->scaler.scale : 1.0f; }

zero_status zero_last_step(const zero_ctx *z, zero_step_info *info)
{
    if (!z || !info)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    *info = z->last;
    return ZERO_OK;
}

int zero_rank(const zero_ctx *z) { return zr_ctx_live(z) ? z->rank : -1; }
int zero_world_size(const zero_ctx *z) { return zr_ctx_live(z) ? z->world : 0; }
const zero_config *zero_get_config(const zero_ctx *z) { return zr_ctx_live(z) ? &z->set.cfg : NULL; }

void *zero_compute_stream(const zero_ctx *z)
{
    return zr_ctx_live(z) ? zr_dev_stream(&z->dev, ZR_STREAM_COMPUTE) : NULL;
}

zero_status zero_memory_report(const zero_ctx *z, zero_memory_stats *st)
{
    if (!z || !st)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    memset(st, 0, sizeof *st);
    for (int l = 0; l < ZERO_MEM_NUM_LABELS; l++) {
        st->current[l] = z->dev.current[l];
        st->peak[l] = z->dev.peak[l];
    }
    st->current_total = z->dev.current_total;
    st->peak_total = z->dev.peak_total;
    st->model_state_peak = z->dev.model_state_peak;
    uint64_t dev = 0, host = 0;
    zr_formula_bytes(z, &dev, &host);
    st->model_state_formula = (size_t)dev;
    st->host_current_total = z->host.current_total;
    st->host_peak_total = z->host.peak_total;
    st->host_model_state_formula = (size_t)host;
    st->capacity = z->dev.capacity;
    st->num_params = z->layout.num_params;
    return ZERO_OK;
}

const char *zero_last_error(const zero_ctx *z)
{
    if (!z)
        return "ctx is NULL";
    return zr_ctx_live(z) ? z->err.msg
                   : "not a live context: it was finalized (zero_finalize), or the pointer is "
                     "not one zero_init returned";
}

/* ---- utilities ------------------------------------------------------------------------------- */

static int dtype_valid(zero_dtype d)
{
    return d == ZERO_DTYPE_FP32 || d == ZERO_DTYPE_BF16 || d == ZERO_DTYPE_FP16;
}

size_t zero_dtype_size(zero_dtype d)
{
    return d == ZERO_DTYPE_FP32 ? 4 : dtype_valid(d) ? 2 : 0;
}

void zero_convert(void *dst, zero_dtype dt, const void *src, zero_dtype st, size_t n)
{
    if (dtype_valid(dt) && dtype_valid(st))
        zk_cast(dst, dt, src, st, n);
}

void zero_accumulate(void *dst, zero_dtype dt, const float *src, size_t n)
{
    if (dtype_valid(dt))
        zk_add_f32(dst, dt, src, n);
}

const char *zero_status_string(zero_status s)
{
    switch (s) {
    case ZERO_OK: return "ZERO_OK";
    case ZERO_ERR_INVALID: return "ZERO_ERR_INVALID";
    case ZERO_ERR_OOM: return "ZERO_ERR_OOM";
    case ZERO_ERR_STATE: return "ZERO_ERR_STATE";
    case ZERO_ERR_COMM: return "ZERO_ERR_COMM";
    case ZERO_ERR_IO: return "ZERO_ERR_IO";
    case ZERO_ERR_UNSUPPORTED: return "ZERO_ERR_UNSUPPORTED";
    case ZERO_ERR_SYSTEM: return "ZERO_ERR_SYSTEM";
    case ZERO_ERR_INTERNAL: return "ZERO_ERR_INTERNAL";
    }
    return "ZERO_ERR_UNKNOWN";
}
