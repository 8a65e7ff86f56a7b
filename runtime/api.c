/* api.c — the public entry points of zero.h: each checks its arguments and hands over to one
 * unit (engine.h lists them). zero_init builds a context in the order its parts depend on:
 * the ranks, the configuration (agreed by every rank), the backends, the layout, the state, the
 * gradient path, the initial values, stage 3. */
#include <limits.h>
#include <math.h>
#include <stddef.h>
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
    zr_data_detach_all(z);
    zr_ckpt_release(z); /* an asynchronous save not waited for is abandoned */
    /* After a collective failed or timed out, MPI may still write into the buffers it was
     * given (a collective cannot be cancelled): the model state, buckets and gather buffers are
     * then left allocated rather than handed back to the allocator under MPI's feet. The
     * process is expected to end soon after. */
    if (!z->comm.broken) {
        zr_views_free(z);
        zr_s3_free(z);
        zr_grads_free(z);
        zr_state_free(z);
    }
    for (int i = 0; i < z->num_tensors && z->meta; i++)
        free(z->meta[i].name);
    free(z->meta);
    for (int i = 0; i < z->num_pub && z->pub; i++) {
        free(z->pub[i].meta.name);
        free(z->pub[i].internal);
    }
    free(z->pub);
    free(z->int_pub);
    free(z->int_slice);
    free(z->groups);
    free(z->ugroups);
    free(z->gprep);
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

/* ---- tensors that span modules (zero_tensor.slices) --------------------------------------- */

static int slices_ok(const zero_tensor *x)
{
    int L = x->slices;
    if (L <= 1)
        return L >= 0;
    return x->numel % (size_t)L == 0 && (x->ndim <= 0 || x->shape[0] % L == 0) &&
           x->module <= INT_MAX - L;
}

/* init_fn of one slice: the program's callback in the whole tensor's index and elements. */
typedef struct slice_init {
    zero_init_fn fn;
    void *user;
    int pub;
    size_t base;
} slice_init;

static void slice_init_call(void *u, int tensor, size_t first, size_t count, float *dst)
{
    const slice_init *x = u;
    (void)tensor;
    x->fn(x->user, x->pub, x->base + first, count, dst);
}

/* The program's tensors with their slices split into internal tensors, in module order. */
typedef struct expansion {
    zero_tensor *t;
    int n;
    char **names;        /* [n] "<name>[l]" for slices, else NULL */
    slice_init *tramp;   /* [n] */
    int *pub, *slice;    /* [n] */
} expansion;

typedef struct slice_key {
    int module, pub, slice;
} slice_key;

static int slice_key_cmp(const void *a, const void *b)
{
    const slice_key *x = a, *y = b;
    if (x->module != y->module)
        return x->module < y->module ? -1 : 1;
    if (x->pub != y->pub)
        return x->pub < y->pub ? -1 : 1;
    return x->slice - y->slice;
}

static void expansion_free(expansion *e)
{
    for (int j = 0; e->names && j < e->n; j++)
        free(e->names[j]);
    free(e->names);
    free(e->t);
    free(e->tramp);
    free(e->pub);
    free(e->slice);
    memset(e, 0, sizeof *e);
}

/* 1 when some tensor has slices (then e holds the internal tensors), 0 when none does (e
 * untouched: the program's array is used as it is), -1 without memory. Invalid slices count as
 * one (configure refuses them). */
static int expand(const zero_tensor *t, int n, expansion *e)
{
    memset(e, 0, sizeof *e);
    int total = 0, any = 0;
    for (int i = 0; i < n; i++) {
        int L = slices_ok(&t[i]) && t[i].slices > 1 ? t[i].slices : 1;
        any |= L > 1;
        if (total > INT_MAX - L)
            return -1;
        total += L;
    }
    if (!any)
        return 0;
    slice_key *k = malloc((size_t)total * sizeof *k);
    e->n = total;
    e->t = calloc((size_t)total, sizeof *e->t);
    e->names = calloc((size_t)total, sizeof *e->names);
    e->tramp = calloc((size_t)total, sizeof *e->tramp);
    e->pub = malloc((size_t)total * sizeof *e->pub);
    e->slice = malloc((size_t)total * sizeof *e->slice);
    if (!k || !e->t || !e->names || !e->tramp || !e->pub || !e->slice) {
        free(k);
        expansion_free(e);
        return -1;
    }
    int j = 0;
    for (int i = 0; i < n; i++) {
        int L = slices_ok(&t[i]) && t[i].slices > 1 ? t[i].slices : 1;
        for (int l = 0; l < L; l++)
            k[j++] = (slice_key){t[i].module + l, i, l};
    }
    qsort(k, (size_t)total, sizeof *k, slice_key_cmp);
    for (j = 0; j < total; j++) {
        const zero_tensor *x = &t[k[j].pub];
        int L = slices_ok(x) && x->slices > 1 ? x->slices : 1;
        zero_tensor *y = &e->t[j];
        *y = *x;
        y->slices = 1;
        e->pub[j] = k[j].pub;
        e->slice[j] = k[j].slice;
        if (L == 1)
            continue;
        size_t S = x->numel / (size_t)L, base = (size_t)k[j].slice * S;
        size_t len = (x->name ? strlen(x->name) : 0) + 16;
        if (!(e->names[j] = malloc(len))) {
            free(k);
            expansion_free(e);
            return -1;
        }
        snprintf(e->names[j], len, "%s[%d]", x->name ? x->name : "", k[j].slice);
        y->name = e->names[j];
        y->numel = S;
        y->module = x->module + k[j].slice;
        if (x->ndim > 0)
            y->shape[0] = x->shape[0] / L;
        y->init = x->init ? x->init + base : NULL;
        if (x->init_fn) {
            e->tramp[j] = (slice_init){x->init_fn, x->init_user, k[j].pub, base};
            y->init_fn = slice_init_call;
            y->init_user = &e->tramp[j];
        }
    }
    free(k);
    return 1;
}

/* The registered tensors after a successful build: names, shapes and which internal tensor holds
 * each slice. */
static zero_status set_public(zero_ctx *z, const zero_tensor *t, int n, const expansion *e)
{
    z->pub = calloc((size_t)(n ? n : 1), sizeof *z->pub);
    z->int_pub = malloc((size_t)z->num_tensors * sizeof *z->int_pub);
    z->int_slice = malloc((size_t)z->num_tensors * sizeof *z->int_slice);
    if (!z->pub || !z->int_pub || !z->int_slice)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    z->num_pub = n;
    for (int i = 0; i < n; i++) {
        zr_pub *p = &z->pub[i];
        p->meta.name = strdup(t[i].name);
        p->meta.ndim = t[i].ndim;
        memcpy(p->meta.shape, t[i].shape, sizeof p->meta.shape);
        p->meta.no_decay = t[i].no_decay;
        p->meta.group = t[i].group;
        p->numel = t[i].numel;
        p->module = t[i].module;
        p->slices = e->t && t[i].slices > 1 ? t[i].slices : 1;
        p->internal = malloc((size_t)p->slices * sizeof *p->internal);
        if (!p->meta.name || !p->internal)
            return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    }
    for (int j = 0; j < z->num_tensors; j++) {
        int i = e->t ? e->pub[j] : j, l = e->t ? e->slice[j] : 0;
        z->int_pub[j] = i;
        z->int_slice[j] = l;
        z->pub[i].internal[l] = j;
    }
    return ZERO_OK;
}

/* ---- parameter groups -------------------------------------------------------------------- */

static zero_status check_hyper(zero_ctx *z, const char *what, double lr, double wd, double b1,
                               double b2, double eps)
{
    const char *bad = !(lr > 0.0 && lr <= 3.4e38)   ? "lr"
                      : !(wd >= 0.0 && wd <= 3.4e38) ? "weight_decay"
                      : !(b1 >= 0.0 && b1 < 1.0)     ? "beta1"
                      : !(b2 >= 0.0 && b2 < 1.0)     ? "beta2"
                      : !(eps > 0.0 && eps <= 3.4e38) ? "eps"
                                                     : NULL;
    if (!bad)
        return ZERO_OK;
    double v = !strcmp(bad, "lr") ? lr : !strcmp(bad, "weight_decay") ? wd
               : !strcmp(bad, "beta1")                                ? b1
               : !strcmp(bad, "beta2")                                ? b2
                                                                      : eps;
    return zr_fail(&z->err, ZERO_ERR_INVALID,
                   "%s: %s=%g is not allowed: lr and eps must be > 0, weight_decay >= 0 "
                   "(finite), beta1 and beta2 in [0, 1)",
                   what, bad, v);
}

/* The groups from zero_config.groups, or one from its lr, betas, eps and weight_decay; each
 * tensor's group checked. */
static zero_status set_groups(zero_ctx *z, const zero_tensor *t, int n,
                              const zr_resolve_result *res)
{
    const zero_config *c = &z->set.cfg;
    if (c->num_groups < 0 || (c->num_groups > 0) != (c->groups != NULL))
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_config: groups %s with num_groups %d; give both or neither",
                       c->groups ? "set" : "NULL", c->num_groups);
    if (c->grad_reduce != ZERO_GRAD_MEAN && c->grad_reduce != ZERO_GRAD_SUM)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_config.grad_reduce=%d is not allowed: expected ZERO_GRAD_MEAN (0) or "
                       "ZERO_GRAD_SUM (1)", (int)c->grad_reduce);
    int G = c->num_groups ? c->num_groups : 1;
    z->groups = calloc((size_t)G, sizeof *z->groups);
    z->gprep = calloc((size_t)G, sizeof *z->gprep);
    if (!z->groups || !z->gprep)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    z->num_groups = G;
    if (c->num_groups && !(z->ugroups = calloc((size_t)G, sizeof *z->ugroups)))
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    for (int g = 0; g < G; g++) {
        zr_group *x = &z->groups[g];
        if (c->num_groups) {
            const zero_group *u = &c->groups[g];
            snprintf(x->name, sizeof x->name, "%s", u->name ? u->name : "");
            x->h = (zr_hyper){u->lr, u->weight_decay, u->beta1, u->beta2, u->eps,
                              c->optimizer == ZERO_OPT_ADAM};
            x->frozen = u->frozen != 0;
        } else {
            x->h = (zr_hyper){c->lr, c->weight_decay, c->beta1, c->beta2, c->eps,
                              c->optimizer == ZERO_OPT_ADAM};
        }
        char what[96];
        snprintf(what, sizeof what, "zero_config.groups[%d]", g);
        ZR_CHECK(check_hyper(z, c->num_groups ? what : "zero_config", x->h.lr,
                             x->h.weight_decay, x->h.beta1, x->h.beta2, x->h.eps));
        if (c->num_groups) { /* the resolved configuration points at libzero's own copy */
            z->ugroups[g] = c->groups[g];
            z->ugroups[g].name = x->name;
        }
    }
    if (c->num_groups)
        z->set.cfg.groups = z->ugroups;
    for (int i = 0; i < n; i++)
        if (t[i].group < 0 || t[i].group >= G)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): group %d; expected 0..%d (zero_config.num_groups %d)",
                           i, t[i].name, t[i].group, G - 1, c->num_groups);
    if (c->num_groups)
        for (int i = 0; i < res->num_applied; i++) {
            const char *v = res->applied[i].name;
            if (!strcmp(v, "ZERO_LR") || !strcmp(v, "ZERO_BETA1") || !strcmp(v, "ZERO_BETA2") ||
                !strcmp(v, "ZERO_EPS") || !strcmp(v, "ZERO_WEIGHT_DECAY"))
                ZR_WARN(ZR_SUB_ENV, "%s=%s is ignored: the program gives parameter groups "
                        "(zero_config.groups), which hold their own hyperparameters",
                        v, res->applied[i].value);
        }
    return ZERO_OK;
}

/* For the cross-rank check at init: everything of the groups. */
static uint64_t groups_hash(const zero_ctx *z)
{
    uint64_t h = (uint64_t)z->num_groups;
    for (int g = 0; g < z->num_groups; g++) {
        const double v[5] = {z->groups[g].h.lr, z->groups[g].h.weight_decay, z->groups[g].h.beta1,
                             z->groups[g].h.beta2, z->groups[g].h.eps};
        for (int k = 0; k < 5; k++) {
            uint64_t b;
            memcpy(&b, &v[k], sizeof b);
            h = zr_mix64(h, b);
        }
        h = zr_mix64(h, (uint64_t)z->groups[g].frozen);
    }
    return h;
}

/* (engine.h) A context built field by field (the unit tests' rig) gets one group from its
 * configuration the first time it steps. */
zero_status zr_groups_default(zero_ctx *z)
{
    if (z->groups)
        return ZERO_OK;
    const zero_config *c = &z->set.cfg;
    z->groups = calloc(1, sizeof *z->groups);
    z->gprep = calloc(1, sizeof *z->gprep);
    if (!z->groups || !z->gprep)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    z->groups[0].h = (zr_hyper){c->lr, c->weight_decay, c->beta1, c->beta2, c->eps,
                              c->optimizer == ZERO_OPT_ADAM};
    z->num_groups = 1;
    return ZERO_OK;
}

/* Local checks and the configuration, then one agreement round: every rank leaves with the same
 * verdict. */
static zero_status configure(zero_ctx *z, zero_ctx **out, const zero_config *cfg,
                             const zero_tensor *t, int n)
{
    zr_resolve_result res;
    memset(&res, 0, sizeof res);
    /* the configuration first: its magic and version say whether the tensors can be read */
    zero_status s = zr_config_resolve(&z->set, cfg, NULL, environ, &res, &z->err);
    if (!s && z->init_pre) /* found while reading the tensor array: every rank hears of it */
        s = zr_fail(&z->err, z->init_pre, "%s", z->init_pre_msg);
    if (!s && z->src_t)
        s = zr_check_registered(z, z->src_t, z->src_n);
    for (int i = 0; !s && z->src_t && i < z->src_n; i++)
        if (!slices_ok(&z->src_t[i]))
            s = zr_fail(&z->err, ZERO_ERR_INVALID,
                        "tensor %d (%s): slices %d; expected 0 or 1 (one module), or L >= 2 "
                        "dividing numel (%zu)%s and module + L within int",
                        i, z->src_t[i].name ? z->src_t[i].name : "?", z->src_t[i].slices,
                        z->src_t[i].numel, z->src_t[i].ndim > 0 ? " and shape[0]" : "");
    if (!s)
        s = zr_check_tensors(z, out, t, n);
    if (!s) {
        zr_log_open(z->set.log_level, z->set.log_mask, z->set.log_file, z->rank);
        z->log_open = 1;
        for (int i = 0; i < res.num_applied; i++) {
            if (res.applied[i].program[0])
                ZR_INFO(ZR_SUB_ENV, "%s=%s (from the environment) overrides the program's value "
                        "%s", res.applied[i].name, res.applied[i].value, res.applied[i].program);
            else
                ZR_INFO(ZR_SUB_ENV, "%s=%s (from the environment)", res.applied[i].name,
                        res.applied[i].value);
        }
        if (z->rank == 0)
            for (int i = 0; i < res.num_warnings; i++)
                ZR_WARN(ZR_SUB_ENV, "%s", res.warnings[i]);
    }
    if (!s)
        s = set_groups(z, t, n, &res);
    int64_t words[ZR_AGREE_WORDS];
    const char *names[ZR_AGREE_WORDS];
    int kinds[ZR_AGREE_WORDS]; /* how each word is shown (zr_config_word_text) */
    int nw = 0;
    if (!s) {
        nw = zr_config_fingerprint(&z->set, words, names, kinds, ZR_AGREE_WORDS - 5);
        words[nw] = (int64_t)groups_hash(z);
        names[nw] = "the parameter groups (zero_config.groups: lr, weight_decay, betas, eps, frozen)";
        kinds[nw++] = ZR_WORD_INT;
        words[nw] = z->set.cfg.grad_reduce;
        names[nw] = "zero_config.grad_reduce (0 = mean, 1 = sum)";
        kinds[nw++] = ZR_WORD_INT;
        words[nw] = z->set.cfg.fp32_views != 0;
        names[nw] = "zero_config.fp32_views";
        kinds[nw++] = ZR_WORD_INT;
    }
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
    /* the largest module, aligned and padded as a chunk of its own would be: the smallest
     * chunk any bucket size can give (the OOM advisor's floor) */
    size_t mod = 0, best = 0;
    for (int i = 0; i < n; i++) {
        if (i > 0 && t[i].module != t[i - 1].module)
            mod = 0;
        mod += (t[i].numel + ZR_ALIGN_ELEMS - 1) / ZR_ALIGN_ELEMS * ZR_ALIGN_ELEMS;
        if (mod > best)
            best = mod;
    }
    const size_t unit = (size_t)z->world * ZR_ALIGN_ELEMS;
    z->max_module_elems = (best + unit - 1) / unit * unit;
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
        z->meta[i].group = t[i].group;
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

zero_status zr_max_over_ranks(zero_ctx *z, int64_t mine, int64_t *out)
{
    int64_t v = mine;
    *out = mine;
    zero_status s = zr_coll_all_reduce(&z->hcoll, &v, 1, ZR_ELEM_I64, ZR_OP_MAX,
                                       ZR_TRAFFIC_OTHER, NULL);
    if (s)
        return zr_fail(&z->err, s, "agreeing on a value across ranks: %s", z->comm.err.msg);
    *out = v;
    return ZERO_OK;
}

/* The device capacity the automatic sizes plan for: the cap, else (cuda) the free memory, else
 * unknown (0: the host backend without ZERO_DEVICE_MEMORY). The smallest over the ranks, so every
 * rank chooses the same sizes. Collective. */
static zero_status agreed_capacity(zero_ctx *z, uint64_t *cap)
{
    uint64_t mine = z->dev.capacity ? z->dev.capacity : zr_dev_free_memory(&z->dev);
    if (mine > (uint64_t)INT64_MAX)
        mine = (uint64_t)INT64_MAX;
    /* the smallest known capacity: the largest of -cap, an unknown one as INT64_MIN */
    int64_t neg = INT64_MIN;
    zero_status s = zr_max_over_ranks(z, mine ? -(int64_t)mine : INT64_MIN, &neg);
    *cap = s || neg == INT64_MIN ? 0 : (uint64_t)-neg;
    return s;
}

/* ZERO_BUCKET_MB=auto (the default): the size from the agreed capacity and the backend's
 * full-bandwidth message size (partition/estimate.c zp_auto_bucket), before the layout. */
static zero_status resolve_bucket(zero_ctx *z)
{
    if (z->set.cfg.bucket_bytes != ZERO_SIZE_AUTO)
        return ZERO_OK;
    uint64_t cap;
    ZR_CHECK(agreed_capacity(z, &cap));
    uint64_t knee = !strcmp(z->dcoll.ops->name, "nccl") ? ZP_KNEE_NCCL : ZP_KNEE_MPI;
    z->set.cfg.bucket_bytes = zp_auto_bucket(cap, knee, z->auto_bucket_why,
                                             sizeof z->auto_bucket_why);
    z->auto_sizes |= 1;
    if (z->rank == 0)
        ZR_INFO(ZR_SUB_ALLOC, "ZERO_BUCKET_MB=auto: %s", z->auto_bucket_why);
    return ZERO_OK;
}

/* ZERO_PREFETCH_MB / ZERO_MAX_LIVE_MB = auto: from what the device has left once the model
 * state, the reduce buckets and (stage 3) the resident chunks are allocated — the most any rank
 * holds — and the largest chunk (zp_auto_stage3). Collective. */
static zero_status resolve_stage3_sizes(zero_ctx *z)
{
    zero_config *c = &z->set.cfg;
    if (c->prefetch_bytes != ZERO_SIZE_AUTO && c->max_live_bytes != ZERO_SIZE_AUTO)
        return ZERO_OK;
    uint64_t cap;
    int64_t held = 0;
    ZR_CHECK(agreed_capacity(z, &cap));
    ZR_CHECK(zr_max_over_ranks(z, (int64_t)z->dev.current_total, &held));
    size_t pf, live;
    /* buckets beyond the one zero_init made (grad.c): two more of the largest chunk */
    const zp_layout *L = &z->layout;
    uint64_t reserve = c->stage >= 2 ? 2 * (uint64_t)(L->max_padded + L->max_slice) * z->wsz : 0;
    zp_auto_stage3(cap, (uint64_t)held, reserve, (uint64_t)L->max_padded * z->wsz, &pf, &live,
                   z->auto_s3_why, sizeof z->auto_s3_why);
    if (c->prefetch_bytes == ZERO_SIZE_AUTO) {
        c->prefetch_bytes = pf;
        z->auto_sizes |= 2;
    }
    if (c->max_live_bytes == ZERO_SIZE_AUTO) {
        c->max_live_bytes = live;
        z->auto_sizes |= 4;
    }
    if (z->rank == 0 && c->stage == 3)
        ZR_INFO(ZR_SUB_ALLOC, "ZERO_PREFETCH_MB / ZERO_MAX_LIVE_MB=auto: %s", z->auto_s3_why);
    return ZERO_OK;
}

/* Everything after the ranks exist; on failure z->err says why. */
static zero_status build(zero_ctx *z, zero_ctx **out, const zero_config *cfg,
                         const zero_tensor *t, int n)
{
    zero_status s;
    ZR_CHECK(configure(z, out, cfg, t, n));
    ZR_CHECK(settle(z));
    ZR_CHECK(zr_backend_open(z));
    ZR_CHECK(resolve_bucket(z));
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
    ZR_CHECK(resolve_stage3_sizes(z));
    zero_status v = set_public(z, z->src_t, z->src_n, z->src_ex);
    if (!v)
        v = zr_views_init(z);
    ZR_CHECK(zr_agree(z, v, NULL, NULL, 0));
    zr_views_refresh(z);
    log_memory(z);
    /* host bytes libzero held during zero_init, peak: the offloaded state, the device's when the
     * device is host memory, and the initial values' buffers (allocated after the state) */
    z->host_init_peak = z->init_transient_peak + z->host.peak_total +
                        (zr_dev_is_host(&z->dev) ? z->dev.peak_total : 0);
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
    /* the tensors as this libzero declares them: the program's array has its own stride
     * (zero_config.tensor_size), fields it does not know are zero */
    zero_tensor *tt = NULL;
    size_t tsize = cfg ? cfg->tensor_size : sizeof(zero_tensor);
    const size_t t_v3 = offsetof(zero_tensor, group);
    zero_config checked;
    /* the configuration's magic and version before anything reads the tensor array with its
     * stride (a program built against an older zero.h is refused, not read out of bounds) */
    if (zr_config_from_program(&checked, cfg, NULL) != ZERO_OK) {
        t = NULL; /* not read; configure refuses the configuration on every rank, agreed */
        n = 0;
    } else if (t && n > 0 && tsize != sizeof(zero_tensor)) {
        if (tsize < t_v3) {
            z->init_pre = ZERO_ERR_INVALID;
            snprintf(z->init_pre_msg, sizeof z->init_pre_msg,
                     "zero_config.tensor_size is %zu; expected sizeof(zero_tensor) (%zu, at "
                     "least %zu): start from ZERO_CONFIG_INIT or zero_config_init",
                     tsize, sizeof(zero_tensor), t_v3);
        } else if (!(tt = calloc((size_t)n, sizeof *tt))) {
            z->init_pre = ZERO_ERR_SYSTEM;
            snprintf(z->init_pre_msg, sizeof z->init_pre_msg, "zero_init: out of host memory");
        } else {
            for (int i = 0; i < n && !z->init_pre; i++) {
                const unsigned char *src = (const unsigned char *)t + (size_t)i * tsize;
                memcpy(&tt[i], src, tsize < sizeof *tt ? tsize : sizeof *tt);
                for (size_t k = sizeof *tt; k < tsize && !z->init_pre; k++) /* unknown fields */
                    if (src[k]) {
                        z->init_pre = ZERO_ERR_UNSUPPORTED;
                        snprintf(z->init_pre_msg, sizeof z->init_pre_msg,
                                 "tensor %d sets fields this libzero does not know "
                                 "(zero_config.tensor_size %zu, this libzero's %zu): update "
                                 "libzero", i, tsize, sizeof *tt);
                    }
            }
        }
        if (z->init_pre) { /* not read further; configure refuses it on every rank, agreed */
            t = NULL;
            n = 0;
        } else {
            t = tt;
        }
    }
    expansion ex;
    memset(&ex, 0, sizeof ex);
    const zero_tensor *te = t;
    int ne = n;
    if (!s && t && n > 0) {
        int r = expand(t, n, &ex);
        if (r < 0) {
            z->init_pre = ZERO_ERR_SYSTEM;
            snprintf(z->init_pre_msg, sizeof z->init_pre_msg, "zero_init: out of host memory");
        } else if (r > 0) {
            te = ex.t;
            ne = ex.n;
        }
    }
    z->src_t = t;
    z->src_n = n;
    z->src_ex = &ex;
    if (s || (s = build(z, out, cfg, te, ne))) {
        expansion_free(&ex);
        free(tt);
        snprintf(init_error, sizeof init_error, "%s", z->err.msg);
        destroy(z);
        return s;
    }
    z->src_t = NULL;
    z->src_ex = NULL;
    expansion_free(&ex);
    free(tt);
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

/* Registered tensors: z->pub, or (a context built field by field, the unit tests' rig) the
 * internal tensors themselves. */
static int check_tensor(zero_ctx *z, const char *call, int i)
{
    int n = z->pub ? z->num_pub : z->num_tensors;
    if (i >= 0 && i < n)
        return 1;
    zr_fail(&z->err, ZERO_ERR_INVALID, "%s: tensor index %d; expected 0..%d", call, i, n - 1);
    return 0;
}

/* The internal tensor of tensor i's slice l, or -1 (the error in z->err). slice -1: the whole
 * tensor, which must have no slices. */
static int internal_of(zero_ctx *z, const char *call, int i, int slice)
{
    if (!check_tensor(z, call, i))
        return -1;
    if (!z->pub) {
        if (slice <= 0)
            return i;
        zr_fail(&z->err, ZERO_ERR_INVALID, "%s: slice %d of tensor %d, which has none", call,
                slice, i);
        return -1;
    }
    const zr_pub *p = &z->pub[i];
    if (slice < 0) {
        if (p->slices == 1)
            return p->internal[0];
        zr_fail(&z->err, ZERO_ERR_INVALID,
                "%s: tensor %d (%s) has %d slices in modules %d..%d: use %s(ctx, %d, slice)",
                call, i, p->meta.name, p->slices, p->module, p->module + p->slices - 1,
                strstr(call, "grad") ? "zero_grad_slice" : "zero_param_slice", i);
        return -1;
    }
    if (slice >= p->slices) {
        zr_fail(&z->err, ZERO_ERR_INVALID, "%s: slice %d of tensor %d (%s); expected 0..%d", call,
                slice, i, p->meta.name, p->slices - 1);
        return -1;
    }
    return p->internal[slice];
}

static void *param_ptr(zero_ctx *z, int i);
static void *grad_ptr(zero_ctx *z, int i);

void *zero_param_ptr(zero_ctx *z, int i)
{
    if (check_ctx(z))
        return NULL;
    int j = internal_of(z, "zero_param_ptr", i, -1);
    return j < 0 ? NULL : param_ptr(z, j);
}

void *zero_param_slice(zero_ctx *z, int i, int slice)
{
    if (check_ctx(z))
        return NULL;
    int j = slice < 0 ? -1 : internal_of(z, "zero_param_slice", i, slice);
    if (slice < 0)
        zr_fail(&z->err, ZERO_ERR_INVALID, "zero_param_slice: slice %d; expected >= 0", slice);
    return j < 0 ? NULL : param_ptr(z, j);
}

void *zero_grad_ptr(zero_ctx *z, int i)
{
    if (check_ctx(z))
        return NULL;
    int j = internal_of(z, "zero_grad_ptr", i, -1);
    return j < 0 ? NULL : grad_ptr(z, j);
}

void *zero_grad_slice(zero_ctx *z, int i, int slice)
{
    if (check_ctx(z))
        return NULL;
    int j = slice < 0 ? -1 : internal_of(z, "zero_grad_slice", i, slice);
    if (slice < 0)
        zr_fail(&z->err, ZERO_ERR_INVALID, "zero_grad_slice: slice %d; expected >= 0", slice);
    return j < 0 ? NULL : grad_ptr(z, j);
}

/* Internal tensor i's working (or fp32 view) parameters. */
static void *param_ptr(zero_ctx *z, int i)
{
    void *w;
    if (z->set.cfg.stage == 3) {
        w = zr_s3_param_ptr(z, i);
    } else {
        const zp_place *p = &z->layout.place[i];
        w = (char *)z->st.params + (z->layout.chunks[p->chunk].offset + p->offset) * z->wsz;
    }
    return w && z->views.on ? zr_views_param(z, i, w) : w;
}

/* Gradients and steps are refused inside an evaluation pass. */
static zero_status check_not_eval(zero_ctx *z, const char *call)
{
    if (!z->eval)
        return ZERO_OK;
    return zr_fail(&z->err, ZERO_ERR_STATE,
                   "%s inside an evaluation pass (zero_eval_begin): call zero_eval_end first",
                   call);
}

static void *grad_ptr(zero_ctx *z, int i)
{
    if (check_not_eval(z, "zero_grad_ptr"))
        return NULL;
    double t0 = zr_now();
    void *p = z->g.ops->ptr(z, i); /* the bucket taken, the module marked as asked for */
    if (p && z->views.on)
        p = zr_views_grad(z, i);
    z->times.in_backward_s += zr_now() - t0;
    return p;
}

zero_status zero_grad_ready(zero_ctx *z, int module)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_module(z, "zero_grad_ready", module));
    ZR_CHECK(check_not_eval(z, "zero_grad_ready"));
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
    zero_status s = ZERO_OK;
    /* fp32 views: the module's gradients into the working ones first (not for a module whose
     * pointers are stale: the gradient path refuses it below) */
    if (z->views.on && !(z->g.module_asked && z->g.module_asked[module] == ZR_ASKED_BEFORE))
        s = zr_views_ready(z, module);
    if (!s)
        s = z->g.ops->ready(z, module, c);
    if (!s && z->views.on)
        zr_views_after_ready(z, module);
    z->times.in_backward_s += zr_now() - t0;
    return s;
}

zero_status zero_step(zero_ctx *z)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_not_eval(z, "zero_step"));
    return zr_step(z);
}

/* ---- hyperparameters and evaluation ------------------------------------------------------- */

static zero_status check_group(zero_ctx *z, const char *call, int g)
{
    if (g >= 0 && g < z->num_groups)
        return ZERO_OK;
    return zr_fail(&z->err, ZERO_ERR_INVALID, "%s: group %d; expected 0..%d", call, g,
                   z->num_groups - 1);
}

zero_status zero_set_lr(zero_ctx *z, int group, double lr)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_group(z, "zero_set_lr", group));
    if (!(lr > 0.0 && lr <= 3.4e38))
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_set_lr: lr=%g for group %d; expected a finite number > 0", lr, group);
    z->groups[group].h.lr = lr;
    return ZERO_OK;
}

zero_status zero_set_weight_decay(zero_ctx *z, int group, double wd)
{
    ZR_CHECK(check_ctx(z));
    ZR_CHECK(check_group(z, "zero_set_weight_decay", group));
    if (!(wd >= 0.0 && wd <= 3.4e38))
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_set_weight_decay: weight_decay=%g for group %d; expected a finite "
                       "number >= 0", wd, group);
    z->groups[group].h.weight_decay = wd;
    return ZERO_OK;
}

double zero_get_lr(const zero_ctx *z, int group)
{
    if (!zr_ctx_live(z) || group < 0 || group >= z->num_groups)
        return NAN;
    return z->groups[group].h.lr;
}

zero_status zero_eval_begin(zero_ctx *z)
{
    ZR_CHECK(check_ctx(z));
    if (z->eval)
        return zr_fail(&z->err, ZERO_ERR_STATE, "zero_eval_begin: already in an evaluation pass");
    int ready = 0;
    for (int m = 0; m < z->layout.num_modules; m++)
        ready += z->g.module_ready && z->g.module_ready[m];
    int held = z->set.cfg.stage == 3 ? zr_s3_held(z) : 0;
    if (ready || held)
        return zr_fail(&z->err, ZERO_ERR_STATE,
                       "zero_eval_begin: in the middle of a micro-step (%d module(s) reported "
                       "ready, %d chunk(s) gathered by the model); call it between zero_step and "
                       "the next backward, with every module released",
                       ready, held);
    if (z->set.cfg.stage == 3)
        zr_s3_eval(z, 1);
    z->eval = 1;
    return ZERO_OK;
}

zero_status zero_eval_end(zero_ctx *z)
{
    ZR_CHECK(check_ctx(z));
    if (!z->eval)
        return zr_fail(&z->err, ZERO_ERR_STATE, "zero_eval_end: not in an evaluation pass");
    int held = z->set.cfg.stage == 3 ? zr_s3_held(z) : 0;
    if (held)
        return zr_fail(&z->err, ZERO_ERR_STATE,
                       "zero_eval_end: %d chunk(s) still gathered; zero_release every module "
                       "gathered in the pass first", held);
    if (z->set.cfg.stage == 3)
        zr_s3_eval(z, 0);
    z->eval = 0;
    return ZERO_OK;
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
    zr_data_detach_all(z); /* the loaders' threads stop; their counters go to the report */
    zr_ckpt_join(z);       /* an asynchronous save's writer finishes its file (destroy, after
                            * every rank has, abandons a save never waited for) */
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

zero_status zero_module_tensors(const zero_ctx *z, int module, int *first, int *count)
{
    if (!z || !first || !count)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    *first = -1;
    *count = 0;
    if (module < 0 || module >= z->layout.num_modules)
        return ZERO_ERR_INVALID;
    for (int i = 0; i < z->num_pub; i++) {
        int m = z->pub[i].module;
        if (m == module && *first < 0)
            *first = i;
        if (m == module)
            (*count)++;
    }
    return ZERO_OK;
}

int zero_tensor_module(const zero_ctx *z, int i)
{
    if (!zr_ctx_live(z) || i < 0 || i >= z->num_pub)
        return -1;
    return z->pub[i].module;
}

int zero_tensor_slices(const zero_ctx *z, int i)
{
    if (!zr_ctx_live(z) || i < 0 || i >= z->num_pub)
        return -1;
    return z->pub[i].slices;
}

int zero_tensor_group(const zero_ctx *z, int i)
{
    if (!zr_ctx_live(z) || i < 0 || i >= z->num_pub)
        return -1;
    return z->pub[i].meta.group;
}

int zero_num_modules(const zero_ctx *z) { return zr_ctx_live(z) ? z->layout.num_modules : 0; }
int zero_num_tensors(const zero_ctx *z) { return zr_ctx_live(z) ? z->num_pub : 0; }

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
    st->host_init_peak = z->host_init_peak;
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
