/* engine.c — zero_init / zero_step and everything between: agreement of all ranks on the
 * configuration, the partitioned state of stages 0–2 on one chunked layout, gradient buckets
 * reduced during backward (stage 2), global-norm clipping, loss scaling, AdamW on the shard and
 * the all-gather of updated parameters. */
#include "runtime/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"
#include "runtime/log.h"
#ifdef ZERO_HAVE_CUDA
#include "runtime/device_cuda.h"
#endif

extern char **environ;

static char init_error[1024];

const char *zero_init_error(void) { return init_error; }

double zr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

zero_status zr_fail(zero_ctx *z, zero_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(z->err, sizeof z->err, fmt, ap);
    va_end(ap);
    ZR_WARN(ZR_SUB_INIT, "%s: %s", zero_status_string(status), z->err);
    return status;
}

static double mib(double bytes) { return bytes / (1024.0 * 1024.0); }

/* ---- argument checks (local) -------------------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    const zero_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static zero_status check_tensors(zero_ctx *z, zero_ctx **out, const zero_tensor *t, int n)
{
    if (!out)
        return zr_fail(z, ZERO_ERR_INVALID,
                       "zero_init: ctx is NULL; pass the address of a zero_ctx * to receive "
                       "the context");
    if (n <= 0)
        return zr_fail(z, ZERO_ERR_INVALID,
                       "zero_init: num_tensors is %d; register at least one tensor", n);
    if (!t)
        return zr_fail(z, ZERO_ERR_INVALID, "zero_init: tensors is NULL but num_tensors is %d",
                       n);
    for (int i = 0; i < n; i++) {
        const zero_tensor *x = &t[i];
        if (!x->name || !x->name[0])
            return zr_fail(z, ZERO_ERR_INVALID, "tensor %d: name is %s; every tensor needs a "
                           "unique name", i, x->name ? "empty" : "NULL");
        if (x->numel == 0)
            return zr_fail(z, ZERO_ERR_INVALID,
                           "tensor %d (%s): numel is 0; every tensor needs at least one element",
                           i, x->name);
        if (x->module < 0)
            return zr_fail(z, ZERO_ERR_INVALID, "tensor %d (%s): module is %d; expected >= 0", i,
                           x->name, x->module);
        if (i > 0 && x->module < t[i - 1].module)
            return zr_fail(z, ZERO_ERR_INVALID,
                           "tensor %d (%s): module %d after module %d; register tensors in "
                           "module order (non-decreasing module ids)",
                           i, x->name, x->module, t[i - 1].module);
        if (x->ndim < 0 || x->ndim > ZERO_MAX_DIMS)
            return zr_fail(z, ZERO_ERR_INVALID, "tensor %d (%s): ndim is %d; expected 0..%d", i,
                           x->name, x->ndim, ZERO_MAX_DIMS);
        if (x->ndim > 0) {
            uint64_t prod = 1;
            for (int d = 0; d < x->ndim; d++) {
                if (x->shape[d] <= 0)
                    return zr_fail(z, ZERO_ERR_INVALID,
                                   "tensor %d (%s): shape[%d] is %lld; expected > 0", i, x->name,
                                   d, (long long)x->shape[d]);
                prod *= (uint64_t)x->shape[d];
            }
            if (prod != x->numel)
                return zr_fail(z, ZERO_ERR_INVALID,
                               "tensor %d (%s): shape has %llu elements but numel is %zu", i,
                               x->name, (unsigned long long)prod, x->numel);
        }
    }
    const zero_tensor **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted)
        return zr_fail(z, ZERO_ERR_SYSTEM, "zero_init: out of host memory");
    for (int i = 0; i < n; i++)
        sorted[i] = &t[i];
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    for (int i = 1; i < n; i++) {
        if (strcmp(sorted[i]->name, sorted[i - 1]->name) == 0) {
            zero_status s = zr_fail(z, ZERO_ERR_INVALID,
                                    "tensor name \"%s\" is registered twice; names must be unique",
                                    sorted[i]->name);
            free(sorted);
            return s;
        }
    }
    free(sorted);
    return ZERO_OK;
}

uint64_t zr_mix64(uint64_t h, uint64_t x)
{
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

static uint64_t hash_tensors(const zero_tensor *t, int n)
{
    uint64_t h = 0x6a09e667f3bcc909ull;
    for (int i = 0; i < n; i++) {
        h = zr_mix64(h, t[i].numel);
        h = zr_mix64(h, (uint64_t)t[i].module);
        h = zr_mix64(h, (uint64_t)t[i].no_decay);
        for (const char *p = t[i].name; *p; p++)
            h = zr_mix64(h, (unsigned char)*p);
    }
    return h;
}

/* ---- agreement across ranks ----------------------------------------------------------------
 * Every rank contributes its local status, message and fingerprint; every rank then returns the
 * same verdict. No rank ever waits in a collective that another rank skipped. */

enum { ZR_AGREE_WORDS = 48 };

typedef struct agree_packet {
    int64_t status;
    int64_t nwords;
    int64_t words[ZR_AGREE_WORDS];
    char msg[512];
} agree_packet;

static zero_status agree(zero_ctx *z, zero_status local, const int64_t *words,
                         const char *const *names, int nwords)
{
    agree_packet mine;
    memset(&mine, 0, sizeof mine);
    mine.status = local;
    mine.nwords = nwords;
    if (nwords)
        memcpy(mine.words, words, (size_t)nwords * sizeof *words);
    if (local)
        snprintf(mine.msg, sizeof mine.msg, "%s", z->err);
    agree_packet *all = malloc((size_t)z->world * sizeof *all);
    if (!all)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
    int save = z->comm.counting;
    z->comm.counting = 0;
    memcpy(&all[z->rank], &mine, sizeof mine);
    zero_status s = zr_all_gather(&z->comm, all, sizeof mine, ZR_ELEM_BYTE, NULL);
    z->comm.counting = save;
    if (s) {
        free(all);
        return zr_fail(z, s, "agreement among ranks failed: %s", z->comm.err);
    }
    zero_status verdict = local;
    if (!local) {
        for (int r = 0; r < z->world; r++) {
            if (all[r].status) {
                verdict = zr_fail(z, (zero_status)all[r].status, "rank %d failed: %s", r,
                                  all[r].msg);
                break;
            }
        }
    }
    if (!verdict) {
        for (int r = 1; r < z->world && !verdict; r++) {
            for (int w = 0; w < nwords; w++) {
                if (all[r].nwords != nwords || all[r].words[w] != all[0].words[w]) {
                    verdict = zr_fail(z, ZERO_ERR_INVALID,
                                      "%s differs across ranks: %lld on rank 0, %lld on rank %d; "
                                      "every rank must use the same settings and tensors",
                                      names[w], (long long)all[0].words[w],
                                      (long long)all[r].words[w], r);
                    break;
                }
            }
        }
    }
    free(all);
    return verdict;
}

/* ---- allocation --------------------------------------------------------------------------- */

/* Device bytes of buffers (outside model state) a stage needs, estimated from the layout. */
static double buffer_bytes(const zero_ctx *z, int stage)
{
    double padded = (double)z->layout.max_padded, slice = (double)z->layout.max_slice;
    if (stage == 3) /* two reduce buckets, two gathered chunks */
        return (4.0 * padded + 2.0 * slice) * (double)z->wsz;
    if (stage == 2)
        return 2.0 * (padded + slice) * (double)z->wsz;
    return slice * (double)z->wsz;
}

void zr_formula_bytes(const zero_ctx *z, uint64_t *device, uint64_t *host)
{
    *device = *host = 0;
    zp_state_bytes(z->set.cfg.stage, z->wsz, z->layout.num_params, z->world, z->offload_opt,
                   z->offload_param, device, host);
}

static zero_status oom(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    /* What the placements are measured against: the cap, or else (cuda) what libzero could get
     * of the GPU now, its free memory plus what libzero holds; 0 = unknown (nothing compared). */
    size_t cap = z->dev.capacity;
#ifdef ZERO_HAVE_CUDA
    if (!cap && zr_device_is_cuda(&z->dev)) {
        size_t free_b = zr_cuda_free_memory(&z->dev);
        cap = free_b ? free_b + z->dev.current_total : 0;
    }
#endif
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
    return zr_fail(z, ZERO_ERR_OOM,
                   "out of device memory on rank %d at ZERO_STAGE=%d%s: %s. Device model state "
                   "per rank for %zu parameters (%s) on %d ranks: %s (plus buffers). %s%s",
                   z->rank, z->set.cfg.stage,
                   z->offload_param ? " with optimizer and parameter offload"
                   : z->offload_opt ? " with optimizer offload" : "",
                   z->dev.last_oom, L->num_params, zr_dtype_name(z->dtype), z->world, table,
                   flen ? "Would fit: "
                   : !cap ? "No device capacity is known to measure the other placements against"
                   : z->dev.capacity ? "Nothing fits this capacity on this many ranks; add ranks or "
                                       "raise ZERO_DEVICE_MEMORY"
                                     : "Nothing smaller fits the GPU's free memory on this many "
                                       "ranks; add ranks",
                   fits);
}

zero_status zr_dev_alloc(zero_ctx *z, zero_mem_label label, size_t bytes, const char *what,
                         void *out)
{
    zero_status s = zr_device_alloc(&z->dev, label, bytes, what, (void **)out);
    return s == ZERO_ERR_OOM ? oom(z) : s;
}

static zero_status new_bucket(zero_ctx *z)
{
    zr_bucket *nb = realloc(z->buckets, (size_t)(z->num_buckets + 1) * sizeof *nb);
    if (!nb)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
    z->buckets = nb;
    zr_bucket *b = &nb[z->num_buckets];
    memset(b, 0, sizeof *b);
    b->chunk = -1;
    b->capacity = z->layout.max_padded;
    zero_status s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, b->capacity * z->wsz, "gradient reduce bucket",
                              &b->grad);
    if (!s)
        s = zr_dev_alloc(z, ZERO_MEM_BUFFERS, z->layout.max_slice * z->wsz, "reduce-scatter output",
                      &b->slice);
    if (s) {
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, b->grad, b->capacity * z->wsz);
        return s;
    }
    z->num_buckets++;
    return ZERO_OK;
}

static zero_status allocate_resident(zero_ctx *z);

/* Host memory of the offloaded state, accounted apart from the device. */
static zero_status host_alloc(zero_ctx *z, zero_mem_label label, size_t bytes, const char *what,
                              void *out)
{
    zero_status s = zr_device_alloc(&z->host, label, bytes, what, (void **)out);
    return s ? zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory: %s", z->host.last_oom) : s;
}

/* Optimizer offload (ZeRO-Offload): fp32 master, m, v and an fp32 gradient shard on the host;
 * the device keeps working-precision parameters and gradients. Parameter offload adds the
 * working parameter shard (stage 3), which then is the master itself when it is fp32. */
static zero_status allocate_offloaded(zero_ctx *z)
{
    size_t shard = z->layout.shard_numel;
    zero_status s;
    if (z->offload_param) {
        if ((s = host_alloc(z, ZERO_MEM_PARAMS, shard * z->wsz, "working parameter shard (host)",
                            &z->params)))
            return s;
    } else if ((s = zr_dev_alloc(z, ZERO_MEM_PARAMS,
                                 (z->set.cfg.stage == 3 ? shard : z->layout.total_padded) * z->wsz,
                                 z->set.cfg.stage == 3 ? "working parameter shard"
                                                       : "working parameters (full replica)",
                                 &z->params))) {
        return s;
    }
    if (z->set.cfg.stage == 1)
        s = zr_dev_alloc(z, ZERO_MEM_GRADS, z->layout.total_padded * z->wsz,
                         "working gradients (full)", &z->grads);
    else
        s = zr_dev_alloc(z, ZERO_MEM_GRADS, shard * z->wsz, "gradient shard", &z->grads);
    if (s)
        return s;
    z->opt_numel = shard;
    z->master_owned = !(z->offload_param && z->dtype == ZERO_DTYPE_FP32);
    if (z->master_owned) {
        if ((s = host_alloc(z, ZERO_MEM_OPTIMIZER, shard * 4, "fp32 master weights (host)",
                            &z->master)))
            return s;
    } else {
        z->master = (float *)z->params;
    }
    if ((s = host_alloc(z, ZERO_MEM_OPTIMIZER, shard * 4, "Adam first moment (host)",
                        &z->adam_m)) ||
        (s = host_alloc(z, ZERO_MEM_OPTIMIZER, shard * 4, "Adam second moment (host)",
                        &z->adam_v)) ||
        (s = host_alloc(z, ZERO_MEM_GRADS, shard * 4, "fp32 gradient shard (host)",
                        &z->host_grad)))
        return s;
    /* staging, two halves: gradients on their way in, updated parameters on their way out */
    size_t block = z->set.cfg.offload_block_bytes / z->wsz;
    z->staging_elems = shard < block ? (shard ? shard : 1) : block;
    return host_alloc(z, ZERO_MEM_BUFFERS, 2 * z->staging_elems * z->wsz,
                      "offload staging (host)", &z->staging);
}

static zero_status allocate_state(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    int stage = z->set.cfg.stage;
    size_t full = L->total_padded, shard = L->shard_numel;
    z->opt_numel = stage == 0 ? full : shard;
    z->master_owned = 1;
    zero_status s;
    if (z->offload_opt) {
        if ((s = allocate_offloaded(z)))
            return s;
    } else {
        if ((s = allocate_resident(z)))
            return s;
    }
    if (stage < 2) /* NCCL reduce-scatters these stages in place (dcoll.c) */
        return z->nccl ? ZERO_OK
                       : zr_dev_alloc(z, ZERO_MEM_BUFFERS, z->layout.max_slice * z->wsz,
                                      "reduce-scatter output", &z->rs_out);
    /* Two buckets: one filling while the previous one reduces. More are added only if the model
     * holds gradient pointers of more chunks at once. */
    for (int i = 0; i < 2; i++)
        if ((s = new_bucket(z)))
            return s;
    return ZERO_OK;
}

/* Everything on the device (no offload). */
static zero_status allocate_resident(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    int stage = z->set.cfg.stage;
    size_t full = L->total_padded, shard = L->shard_numel;
    zero_status s;
    if (stage == 3)
        s = zr_dev_alloc(z, ZERO_MEM_PARAMS, shard * z->wsz, "working parameter shard", &z->params);
    else
        s = zr_dev_alloc(z, ZERO_MEM_PARAMS, full * z->wsz, "working parameters (full replica)",
                         &z->params);
    if (s)
        return s;
    if (stage < 2)
        s = zr_dev_alloc(z, ZERO_MEM_GRADS, full * z->wsz, "working gradients (full)", &z->grads);
    else
        s = zr_dev_alloc(z, ZERO_MEM_GRADS, shard * z->wsz, "gradient shard", &z->grads);
    if (s)
        return s;
    if (z->dtype != ZERO_DTYPE_FP32 &&
        (s = zr_dev_alloc(z, ZERO_MEM_OPTIMIZER, z->opt_numel * 4, "fp32 master weights",
                       &z->master)))
        return s;
    if ((s = zr_dev_alloc(z, ZERO_MEM_OPTIMIZER, z->opt_numel * 4, "Adam first moment",
                       &z->adam_m)) ||
        (s = zr_dev_alloc(z, ZERO_MEM_OPTIMIZER, z->opt_numel * 4, "Adam second moment",
                       &z->adam_v)))
        return s;
    return ZERO_OK;
}

/* cuda backend: the host buffers the offload copies go through are page-locked, so copies run
 * at full PCIe / NVLink-C2C speed and may overlap with the GPU. A refusal (e.g. a locked-memory
 * limit) leaves them pageable: correct, slower, and said once. */
static void pin_host_buffers(zero_ctx *z)
{
#ifdef ZERO_HAVE_CUDA
    if (!zr_device_is_cuda(&z->dev) || !z->offload_opt)
        return;
    char err[256] = "no staging buffer";
    if (z->staging && zr_cuda_host_register(z->staging, 2 * z->staging_elems * z->wsz, err,
                                            sizeof err) == ZERO_OK)
        z->pinned_staging = 1;
    else
        ZR_WARN(ZR_SUB_OFFLOAD, "offload staging buffer is not pinned (%s): copies are slower",
                err);
    if (z->offload_param) {
        if (zr_cuda_host_register(z->params, z->layout.shard_numel * z->wsz, err,
                                  sizeof err) == ZERO_OK)
            z->pinned_params = 1;
        else
            ZR_WARN(ZR_SUB_OFFLOAD, "offloaded parameter shard is not pinned (%s): stage-3 "
                    "gathers copy it more slowly", err);
    }
#else
    (void)z;
#endif
}

static void unpin_host_buffers(zero_ctx *z)
{
#ifdef ZERO_HAVE_CUDA
    if (z->pinned_staging)
        zr_cuda_host_unregister(z->staging);
    if (z->pinned_params)
        zr_cuda_host_unregister(z->params);
#endif
    z->pinned_staging = z->pinned_params = 0;
}

static void free_state(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    int stage = z->set.cfg.stage;
    size_t full = L->total_padded;
    zr_s3_free(z);
    unpin_host_buffers(z); /* before any host buffer goes (every copy has completed) */
    /* parameters: full replica at stages 0–2, shard at 3; on the host with parameter offload */
    zr_device_free(z->offload_param ? &z->host : &z->dev, ZERO_MEM_PARAMS, z->params,
                   (stage == 3 ? L->shard_numel : full) * z->wsz);
    zr_device_free(&z->dev, ZERO_MEM_GRADS, z->grads,
                   (stage < 2 ? full : L->shard_numel) * z->wsz);
    zr_device *opt = z->offload_opt ? &z->host : &z->dev;
    if (z->master_owned)
        zr_device_free(opt, ZERO_MEM_OPTIMIZER, z->master, z->opt_numel * 4);
    zr_device_free(opt, ZERO_MEM_OPTIMIZER, z->adam_m, z->opt_numel * 4);
    zr_device_free(opt, ZERO_MEM_OPTIMIZER, z->adam_v, z->opt_numel * 4);
    zr_device_free(&z->host, ZERO_MEM_GRADS, z->host_grad, L->shard_numel * 4);
    zr_device_free(&z->host, ZERO_MEM_BUFFERS, z->staging, 2 * z->staging_elems * z->wsz);
    z->host_grad = NULL;
    z->staging = NULL;
    zr_device_free(&z->dev, ZERO_MEM_BUFFERS, z->rs_out, z->layout.max_slice * z->wsz);
    for (int i = 0; i < z->num_buckets; i++) {
        zr_dc_wait(z, &z->buckets[i].req); /* finalize in the middle of a micro-step */
        zr_dc_request_free(z, &z->buckets[i].req);
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, z->buckets[i].grad,
                       z->buckets[i].capacity * z->wsz);
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, z->buckets[i].slice, z->layout.max_slice * z->wsz);
    }
    free(z->buckets);
    z->params = z->grads = z->rs_out = NULL;
    z->master = z->adam_m = z->adam_v = NULL;
    z->buckets = NULL;
    z->num_buckets = 0;
}

static void destroy(zero_ctx *z)
{
    if (!z)
        return;
    free_state(z);
    for (int i = 0; i < z->num_tensors && z->meta; i++)
        free(z->meta[i].name);
    free(z->meta);
    free(z->chunk_modules);
    free(z->chunk_bucket);
    free(z->chunk_state);
    free(z->chunk_ready);
    free(z->module_ready);
    free(z->seg);
    for (int c = 0; z->gather_req && c < z->layout.num_chunks; c++)
        zr_dc_request_free(z, &z->gather_req[c]);
    free(z->gather_req);
    zp_layout_free(&z->layout);
    /* nothing is in flight and no device memory is left: the communicator, then the device */
#ifdef ZERO_HAVE_NCCL
    zr_nccl_destroy(z->nccl);
    z->nccl = NULL;
#endif
#ifdef ZERO_HAVE_CUDA
    zr_device_cuda_destroy(&z->dev);
#endif
    zr_comm_destroy(&z->comm);
    free(z);
}

/* ---- device backend ------------------------------------------------------------------------ */

/* engine.h */
zero_status zr_device_error(zero_ctx *z, const char *during)
{
#ifdef ZERO_HAVE_CUDA
    if (zr_device_is_cuda(&z->dev)) {
        char msg[256];
        zero_status s = zr_cuda_take_error(&z->dev, msg, sizeof msg);
        if (s)
            return zr_fail(z, s, "%s on rank %d: CUDA error: %s", during, z->rank, msg);
    }
#else
    (void)z;
    (void)during;
#endif
    return ZERO_OK;
}

/* 1 when this rank could run the cuda backend; otherwise 0 and why not. NCCL wants a GPU of its
 * own for every rank: more ranks on a node than GPUs there is not possible. */
static int cuda_possible(const zero_ctx *z, char *why, size_t len)
{
#if defined(ZERO_HAVE_CUDA) && defined(ZERO_HAVE_NCCL)
    if (!zr_cuda_usable(why, len))
        return 0;
    int gpus = zr_cuda_device_count();
    if (gpus < z->comm.local_size) {
        snprintf(why, len, "%d ranks run on this node but it has %d GPU%s; the cuda backend needs "
                 "one GPU per rank (start at most %d ranks per node)",
                 z->comm.local_size, gpus, gpus == 1 ? "" : "s", gpus);
        return 0;
    }
    return 1;
#elif defined(ZERO_HAVE_CUDA)
    (void)z;
    snprintf(why, len, "this libzero was built without NCCL, which the cuda backend's "
             "collectives need (configure with NCCL_ROOT pointing at NCCL 2.14+)");
    return 0;
#else
    (void)z;
    snprintf(why, len, "this libzero was built without CUDA (configure with -DZERO_CUDA=ON "
             "where nvcc is installed)");
    return 0;
#endif
}

/* ZERO_DEVICE: host; cuda (every rank must have a usable GPU); auto = cuda when every rank has
 * one, else host on every rank (with an INFO line saying why). The cuda backend takes the GPU
 * at local_rank % GPUs of the node, the model's stream (zero_config.cuda_stream) and an NCCL
 * communicator over the MPI world. Collective; every rank leaves with the same backend or the
 * same error. auto falls back to host only when some rank sees no usable GPU; a GPU that is
 * usable but then fails to start (the device or NCCL) is an error on every rank, not a quiet
 * fallback. zero_get_config reports the backend chosen. */
static zero_status select_device(zero_ctx *z)
{
    zero_config *c = &z->set.cfg;
    const char *asked = zr_device_name(c->device);
    char why[256] = "";
    int mine = c->device != ZERO_DEVICE_HOST && cuda_possible(z, why, sizeof why);
    int cuda = 0;
    if (c->device != ZERO_DEVICE_HOST) {
        int64_t lacking = !mine; /* ranks without a usable GPU */
        z->comm.counting = 0;
        zero_status s = zr_all_reduce(&z->comm, &lacking, 1, ZR_ELEM_I64, ZR_OP_SUM, NULL);
        z->comm.counting = 1;
        if (s)
            return zr_fail(z, s, "zero_init: choosing the device: %s", z->comm.err);
        zero_status local = ZERO_OK;
        if (c->device == ZERO_DEVICE_CUDA && !mine)
            local = zr_fail(z, ZERO_ERR_UNSUPPORTED,
                            "ZERO_DEVICE=cuda but rank %d cannot use a GPU: %s; use "
                            "ZERO_DEVICE=host, or auto (cuda where every rank has a GPU, "
                            "else host)", z->rank, why);
        if ((s = agree(z, local, NULL, NULL, 0)))
            return s;
        cuda = lacking == 0;
        if (!cuda)
            ZR_INFO(ZR_SUB_INIT, "ZERO_DEVICE=auto: using the host backend: %s",
                    mine ? "another rank has no usable GPU" : why);
    }
    if (!cuda) {
        zr_device_host_init(&z->dev, c->device_memory);
        c->device = ZERO_DEVICE_HOST;
        return ZERO_OK;
    }
#if defined(ZERO_HAVE_CUDA) && defined(ZERO_HAVE_NCCL)
    char err[256];
    zero_status local = zr_device_cuda_init(&z->dev, z->comm.local_rank, c->device_memory,
                                            c->cuda_stream, err, sizeof err);
    if (local)
        local = zr_fail(z, local, "ZERO_DEVICE=%s: the cuda backend could not start on rank %d "
                        "(local rank %d): %s", asked, z->rank, z->comm.local_rank, err);
    zero_status s = agree(z, local, NULL, NULL, 0);
    if (s)
        return s;
    c->device = ZERO_DEVICE_CUDA;
    s = zr_nccl_init(&z->nccl, &z->comm, zr_cuda_device_ordinal(&z->dev),
                     zr_cuda_stream_get(&z->dev, ZR_STREAM_COMM), (double)c->timeout_s);
    if (s)
        s = zr_fail(z, s, "NCCL communicator on rank %d (GPU %d): %s", z->rank,
                    zr_cuda_device_ordinal(&z->dev), z->comm.err);
    if ((s = agree(z, s, NULL, NULL, 0)))
        return s;
    int v = zr_nccl_version();
    ZR_INFO(ZR_SUB_INIT, "ZERO_DEVICE=%s: cuda backend on GPU %d, NCCL %d.%d.%d, timeout %g s",
            asked, zr_cuda_device_ordinal(&z->dev), v / 10000, v / 100 % 100, v % 100,
            (double)c->timeout_s);
    return ZERO_OK;
#else
    (void)asked;
    return zr_fail(z, ZERO_ERR_INTERNAL, "cuda chosen without a cuda build");
#endif
}

/* Rank 0's initial values, broadcast chunk by chunk: every rank starts from the same numbers.
 * The working copy is converted on the host and copied to the device; the fp32 master slice is
 * copied as is (to the device, or to the host when the optimizer is offloaded). */
static zero_status load_initial_values(zero_ctx *z, const zero_tensor *t)
{
    const zp_layout *L = &z->layout;
    size_t maxp = L->max_padded;
    float *buf = malloc(maxp * sizeof *buf); /* (chunk padded) fp32, host */
    void *work = malloc(maxp * z->wsz);      /* (chunk padded) working, host */
    if (!buf || !work) {
        free(buf);
        free(work);
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory for the initial values");
    }
    z->comm.counting = 0;
    zero_status s = ZERO_OK;
    for (int c = 0; c < L->num_chunks && !s; c++) {
        const zp_chunk *ch = &L->chunks[c];
        memset(buf, 0, ch->padded * sizeof *buf);
        if (z->rank == 0)
            for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++)
                if (t[i].init)
                    memcpy(buf + L->place[i].offset, t[i].init, t[i].numel * sizeof *buf);
        /* in pieces: a chunk holding one huge tensor may exceed MPI's int count */
        for (size_t at = 0; at < ch->padded && !s; at += (size_t)1 << 30) {
            size_t n = ch->padded - at < (size_t)1 << 30 ? ch->padded - at : (size_t)1 << 30;
            if ((s = zr_broadcast(&z->comm, buf + at, n, ZR_ELEM_F32, 0, NULL)))
                s = zr_fail(z, s, "broadcast of initial values: %s", z->comm.err);
        }
        if (s)
            break;
        size_t lo = 0, hi = ch->padded;
        if (z->set.cfg.stage > 0)
            zp_slice_range(L, c, z->rank, &lo, &hi);
        zk_cast(work, z->dtype, buf, ZERO_DTYPE_FP32, ch->padded);
        if (z->set.cfg.stage == 3) /* parameters exist only as this rank's slices */
            zr_dev_copy(&z->dev, (char *)z->params + ch->shard_offset * z->wsz,
                        (char *)work + lo * z->wsz, (hi - lo) * z->wsz);
        else
            zr_dev_copy(&z->dev, (char *)z->params + ch->offset * z->wsz, work,
                        ch->padded * z->wsz);
        if (z->master && z->master_owned) {
            float *dst = z->set.cfg.stage > 0 ? z->master + ch->shard_offset : z->master + ch->offset;
            zr_dev_copy(&z->dev, dst, buf + lo, (hi - lo) * sizeof *buf);
        }
    }
    z->comm.counting = 1;
    free(buf);
    free(work);
    return s;
}

/* The machine's topology, loaded once per process (hwloc discovery takes milliseconds). */
static zo_topology *topology;

/* Offload placement: this rank's NUMA node and cores among the ranks on its node; host buffers
 * are bound there and the CPU optimizer threads pinned to those cores. */
static zero_status plan_offload(zero_ctx *z)
{
    char err[256];
    if (!topology && zo_topology_load(&topology, NULL, err, sizeof err) != 0) {
        ZR_WARN(ZR_SUB_OFFLOAD, "hwloc topology unavailable (%s): offload memory is not bound",
                err);
        return ZERO_OK;
    }
    int gpu_bus = -1; /* cuda: the node nearest the GPU (ZERO_NUMA=auto) */
#ifdef ZERO_HAVE_CUDA
    gpu_bus = zr_cuda_pci_bus(&z->dev);
#endif
    if (zo_plan_rank(topology, z->comm.local_rank, z->comm.local_size, z->set.cfg.numa,
                     z->set.cfg.cpu_threads, gpu_bus, &z->plan, err, sizeof err) != 0)
        return zr_fail(z, ZERO_ERR_INVALID, "ZERO_NUMA=%d: %s", z->set.cfg.numa, err);
    char desc[512];
    zo_plan_describe(topology, &z->plan, desc, sizeof desc);
    if (z->plan.shared > 1)
        ZR_WARN(ZR_SUB_OFFLOAD, "placement: %s", desc);
    else
        ZR_INFO(ZR_SUB_OFFLOAD, "placement: %s", desc);
    zr_device_numa_init(&z->host, topology, &z->plan);
    ZR_INFO(ZR_SUB_OFFLOAD, "CPU AdamW: %s path", zk_adamw_cpu_isa());
    if (z->set.cfg.numa != ZERO_NUMA_OFF && zo_bind_threads(topology, &z->plan) != 0)
        ZR_WARN(ZR_SUB_OFFLOAD, "CPU optimizer threads are not bound (binding unsupported here)");
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
    zero_status s = zr_comm_init(&z->comm);
    if (s) {
        snprintf(init_error, sizeof init_error, "zero_init: %s", z->comm.err);
        free(z);
        return s;
    }
    z->rank = z->comm.rank;
    z->world = z->comm.world;
    zr_log_set_rank(z->rank);

    /* Local checks, then one agreement round: every rank leaves with the same verdict. */
    zr_resolve_result res;
    memset(&res, 0, sizeof res);
    s = check_tensors(z, out, t, n);
    if (!s)
        s = zr_config_resolve(&z->set, cfg, NULL, environ, &res, z->err, sizeof z->err);
    if (!s) {
        zr_log_setup(z->set.log_level, z->set.log_mask, z->set.log_file, z->rank);
        for (int i = 0; i < res.num_applied; i++)
            ZR_INFO(ZR_SUB_ENV, "%s=%s (from the environment)", res.applied[i].name,
                    res.applied[i].value);
        if (z->rank == 0)
            for (int i = 0; i < res.num_warnings; i++)
                ZR_WARN(ZR_SUB_ENV, "%s", res.warnings[i]);
    }
    int64_t words[ZR_AGREE_WORDS];
    const char *names[ZR_AGREE_WORDS];
    int nw = 0;
    if (!s) {
        nw = zr_config_fingerprint(&z->set, words, names, ZR_AGREE_WORDS - 2);
        words[nw] = n;
        names[nw++] = "the number of registered tensors";
        words[nw] = (int64_t)hash_tensors(t, n);
        names[nw++] = "the tensor registration (names, sizes, modules)";
    }
    s = agree(z, s, words, names, nw);
    if (s)
        goto fail;

    zero_config *c = &z->set.cfg;
    /* The report is rank 0's (ZERO_REPORT may be set there only) but collecting it is
     * collective: every rank learns whether rank 0 will write one. */
    c->report_path = z->set.report_path[0] ? z->set.report_path : NULL;
    int64_t report_on = z->set.report_path[0] != 0;
    z->comm.counting = 0;
    s = zr_broadcast(&z->comm, &report_on, 1, ZR_ELEM_I64, 0, NULL);
    z->comm.counting = 1;
    if (s) {
        s = zr_fail(z, s, "zero_init: %s", z->comm.err);
        goto fail;
    }
    z->report_on = (int)report_on;
    z->dtype = c->dtype;
    z->wsz = zero_dtype_size(c->dtype);
    z->offload_opt = c->offload_optimizer == ZERO_OFFLOAD_CPU;
    z->offload_param = c->offload_param == ZERO_OFFLOAD_CPU;
    if (z->offload_opt && c->stage == 0) {
        s = zr_fail(z, ZERO_ERR_INVALID,
                    "ZERO_OFFLOAD_OPTIMIZER=cpu needs ZERO_STAGE 1, 2 or 3 (stage 0 keeps a full "
                    "optimizer on every rank)");
        goto fail;
    }
    if (z->offload_param && (c->stage != 3 || !z->offload_opt)) {
        s = zr_fail(z, ZERO_ERR_INVALID,
                    "ZERO_OFFLOAD_PARAM=cpu needs ZERO_STAGE=3 and ZERO_OFFLOAD_OPTIMIZER=cpu "
                    "(got ZERO_STAGE=%d, ZERO_OFFLOAD_OPTIMIZER=%s)",
                    c->stage, zr_offload_name(c->offload_optimizer));
        goto fail;
    }
    if ((s = select_device(z)))
        goto fail;
    zr_device_host_init(&z->host, 0);
    /* placement is per rank (ZERO_NUMA may differ): agree on its outcome before going on */
    if ((s = agree(z, z->offload_opt ? plan_offload(z) : ZERO_OK, NULL, NULL, 0)))
        goto fail;

    /* Layout: chunks of whole modules up to the bucket size, split into world slices. */
    zp_tensor *pt = malloc((size_t)n * sizeof *pt);
    if (!pt) {
        s = zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        pt[i].numel = t[i].numel;
        pt[i].module = t[i].module;
    }
    size_t chunk_elems = c->bucket_bytes / z->wsz;
    char perr[256];
    int rc = zp_layout_build(&z->layout, pt, n, z->world, chunk_elems ? chunk_elems : 1,
                             ZR_ALIGN_ELEMS, perr, sizeof perr);
    free(pt);
    if (rc) {
        s = zr_fail(z, ZERO_ERR_INVALID, "layout: %s", perr);
        goto fail;
    }
    const zp_layout *L = &z->layout;
    z->num_tensors = n;
    z->meta = calloc((size_t)n, sizeof *z->meta);
    z->chunk_modules = calloc((size_t)L->num_chunks, sizeof(int));
    z->chunk_bucket = malloc((size_t)L->num_chunks * sizeof(int));
    z->chunk_state = calloc((size_t)L->num_chunks, sizeof(int));
    z->chunk_ready = calloc((size_t)L->num_chunks, sizeof(int));
    z->module_ready = calloc((size_t)L->num_modules, 1);
    for (int c2 = 0; c2 < L->num_chunks; c2++)
        if (L->chunks[c2].num_tensors > z->seg_cap)
            z->seg_cap = L->chunks[c2].num_tensors;
    z->seg = malloc((size_t)z->seg_cap * sizeof *z->seg);
    z->gather_req = calloc((size_t)L->num_chunks, sizeof *z->gather_req);
    if (!z->meta || !z->chunk_modules || !z->chunk_bucket || !z->chunk_state || !z->chunk_ready ||
        !z->module_ready || !z->seg || !z->gather_req) {
        s = zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        z->meta[i].name = strdup(t[i].name);
        if (!z->meta[i].name) {
            s = zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
            goto fail;
        }
        z->meta[i].ndim = t[i].ndim;
        memcpy(z->meta[i].shape, t[i].shape, sizeof t[i].shape);
        z->meta[i].no_decay = t[i].no_decay;
    }
    for (int c2 = 0; c2 < L->num_chunks; c2++)
        z->chunk_bucket[c2] = -1;
    for (int m = 0; m < L->num_modules; m++)
        if (L->module_chunk[m] >= 0)
            z->chunk_modules[L->module_chunk[m]]++;
    ZR_INFO(ZR_SUB_PART,
            "layout: %zu parameters in %d tensors, %d modules, %d chunks (bucket %zu elements); "
            "full buffer %zu elements, shard %zu elements per rank on %d ranks",
            L->num_params, n, L->num_modules, L->num_chunks, chunk_elems, L->total_padded,
            L->shard_numel, z->world);

    /* Allocation may fail on one rank only: agree before the next collective. */
    s = agree(z, allocate_state(z), NULL, NULL, 0);
    if (s)
        goto fail;
    pin_host_buffers(z);
    if ((s = load_initial_values(z, t)))
        goto fail;
    if ((s = agree(z, zr_device_error(z, "loading the initial values"), NULL, NULL, 0)))
        goto fail;
    if (c->stage == 3 && (s = zr_s3_setup(z)))
        goto fail;
    ZR_INFO(ZR_SUB_ALLOC,
            "stage %d %s: params %.2f MiB, grads %.2f MiB, optimizer %.2f MiB, buffers %.2f MiB "
            "(formula %.2f MiB of model state)",
            c->stage, zr_dtype_name(z->dtype), mib(z->dev.current[ZERO_MEM_PARAMS]),
            mib(z->dev.current[ZERO_MEM_GRADS]), mib(z->dev.current[ZERO_MEM_OPTIMIZER]),
            mib(z->dev.current[ZERO_MEM_BUFFERS]),
            mib((double)zp_model_state_bytes(c->stage, z->wsz, L->num_params, z->world)));
    if (z->offload_opt)
        ZR_INFO(ZR_SUB_OFFLOAD,
                "offload: host params %.2f MiB, grads %.2f MiB, optimizer %.2f MiB, buffers "
                "%.2f MiB",
                mib(z->host.current[ZERO_MEM_PARAMS]), mib(z->host.current[ZERO_MEM_GRADS]),
                mib(z->host.current[ZERO_MEM_OPTIMIZER]), mib(z->host.current[ZERO_MEM_BUFFERS]));

    z->dynamic_scale = c->loss_scale == 0.0f && z->dtype == ZERO_DTYPE_FP16;
    z->loss_scale = c->loss_scale > 0.0f ? c->loss_scale : z->dynamic_scale ? 65536.0f : 1.0f;
    z->hysteresis_left = 2;
    z->last_rescale_boundary = -1;
    z->last.loss_scale = z->loss_scale;
    z->t_init_done = zr_now();
    *out = z;
    return ZERO_OK;

fail:
    snprintf(init_error, sizeof init_error, "%s", z->err);
    destroy(z);
    return s;
}

/* ---- gradients ------------------------------------------------------------------------------ */

static zero_status complete_bucket(zero_ctx *z, int b)
{
    zr_bucket *bk = &z->buckets[b];
    int c = bk->chunk;
    const zp_chunk *ch = &z->layout.chunks[c];
    void *dst = (char *)z->grads + ch->shard_offset * z->wsz;
    if (z->micro == 0)
        zr_dev_copy(&z->dev, dst, bk->slice, ch->slice * z->wsz);
    else
        zr_dev_add(&z->dev, dst, z->dtype, bk->slice, z->dtype, ch->slice);
    z->chunk_state[c] = ZR_CHUNK_DONE;
    z->chunk_bucket[c] = -1;
    bk->chunk = -1;
    return ZERO_OK;
}

/* Completes every finished reduction without blocking; drives MPI progress. */
static zero_status progress(zero_ctx *z)
{
    for (int b = 0; b < z->num_buckets; b++) {
        zr_bucket *bk = &z->buckets[b];
        if (bk->chunk < 0 || z->chunk_state[bk->chunk] != ZR_CHUNK_REDUCING)
            continue;
        int done = 0;
        zero_status s = zr_dc_test(z, &bk->req, &done);
        if (s)
            return zr_fail(z, s, "gradient reduce-scatter: %s", z->comm.err);
        if (done)
            complete_bucket(z, b);
    }
    return ZERO_OK;
}

static zero_status wait_bucket(zero_ctx *z, int b)
{
    zero_status s = zr_dc_wait(z, &z->buckets[b].req);
    if (s)
        return zr_fail(z, s, "gradient reduce-scatter: %s", z->comm.err);
    return complete_bucket(z, b);
}

static zero_status acquire_bucket(zero_ctx *z, int c)
{
    zero_status s = progress(z);
    if (s)
        return s;
    int b = -1;
    for (int i = 0; i < z->num_buckets && b < 0; i++)
        if (z->buckets[i].chunk < 0)
            b = i;
    if (b < 0) { /* wait for a reducing bucket, else grow the pool */
        for (int i = 0; i < z->num_buckets && b < 0; i++)
            if (z->chunk_state[z->buckets[i].chunk] == ZR_CHUNK_REDUCING) {
                if ((s = wait_bucket(z, i)))
                    return s;
                b = i;
            }
    }
    if (b < 0) {
        if ((s = new_bucket(z)))
            return s;
        b = z->num_buckets - 1;
        ZR_INFO(ZR_SUB_ALLOC, "gradient buckets: grew to %d (the model holds gradients of that "
                "many chunks at once)", z->num_buckets);
    }
    const zp_chunk *ch = &z->layout.chunks[c];
    zr_dev_zero(&z->dev, z->buckets[b].grad, ch->padded * z->wsz);
    z->buckets[b].chunk = c;
    z->chunk_bucket[c] = b;
    z->chunk_state[c] = ZR_CHUNK_FILLING;
    return ZERO_OK;
}

static zero_status issue_reduce(zero_ctx *z, int c)
{
    zr_bucket *bk = &z->buckets[z->chunk_bucket[c]];
    zero_status s = zr_dc_reduce_scatter(z, bk->grad, bk->slice, z->layout.chunks[c].slice,
                                         zr_elem_of(z->dtype), &bk->req);
    if (s)
        return zr_fail(z, s, "gradient reduce-scatter of chunk %d: %s", c, z->comm.err);
    z->chunk_state[c] = ZR_CHUNK_REDUCING;
    ZR_TRACE(ZR_SUB_COMM, "reduce-scatter chunk %d issued (%zu elements per rank)", c,
             z->layout.chunks[c].slice);
    return ZERO_OK;
}

static zero_status check_ctx(const zero_ctx *z)
{
    return z ? ZERO_OK : ZERO_ERR_INVALID;
}

void *zero_param_ptr(zero_ctx *z, int i)
{
    if (check_ctx(z))
        return NULL;
    if (i < 0 || i >= z->num_tensors) {
        zr_fail(z, ZERO_ERR_INVALID, "zero_param_ptr: tensor index %d; expected 0..%d", i,
                z->num_tensors - 1);
        return NULL;
    }
    if (z->set.cfg.stage == 3)
        return zr_s3_param_ptr(z, i);
    const zp_place *p = &z->layout.place[i];
    return (char *)z->params + (z->layout.chunks[p->chunk].offset + p->offset) * z->wsz;
}

void *zero_grad_ptr(zero_ctx *z, int i)
{
    if (check_ctx(z))
        return NULL;
    if (i < 0 || i >= z->num_tensors) {
        zr_fail(z, ZERO_ERR_INVALID, "zero_grad_ptr: tensor index %d; expected 0..%d", i,
                z->num_tensors - 1);
        return NULL;
    }
    const zp_place *p = &z->layout.place[i];
    const zp_chunk *ch = &z->layout.chunks[p->chunk];
    if (z->set.cfg.stage < 2)
        return (char *)z->grads + (ch->offset + p->offset) * z->wsz;
    double t0 = zr_now();
    int c = p->chunk;
    if (z->chunk_state[c] >= ZR_CHUNK_REDUCING) {
        zr_fail(z, ZERO_ERR_STATE,
                "zero_grad_ptr: tensor %d (%s): its bucket was already reduced in this "
                "micro-step (all its modules were reported ready)",
                i, z->meta[i].name);
        return NULL;
    }
    if (z->chunk_state[c] == ZR_CHUNK_IDLE && acquire_bucket(z, c))
        return NULL;
    z->times.in_backward_s += zr_now() - t0;
    return (char *)z->buckets[z->chunk_bucket[c]].grad + p->offset * z->wsz;
}

zero_status zero_grad_ready(zero_ctx *z, int module)
{
    zero_status s = check_ctx(z);
    if (s)
        return s;
    if (module < 0 || module >= z->layout.num_modules)
        return zr_fail(z, ZERO_ERR_INVALID, "zero_grad_ready: module %d; expected 0..%d", module,
                       z->layout.num_modules - 1);
    if (z->module_ready[module])
        return zr_fail(z, ZERO_ERR_STATE,
                       "zero_grad_ready: module %d was already reported ready in this micro-step",
                       module);
    int c = z->layout.module_chunk[module];
    if (c < 0 || z->set.cfg.stage < 2) {
        z->module_ready[module] = 1;
        return ZERO_OK;
    }
    double t0 = zr_now();
    if (z->chunk_state[c] == ZR_CHUNK_IDLE && (s = acquire_bucket(z, c)))
        return s;
    z->module_ready[module] = 1;
    if (++z->chunk_ready[c] == z->chunk_modules[c] && (s = issue_reduce(z, c)))
        return s;
    s = progress(z);
    if (!s && z->set.cfg.stage == 3)
        s = zr_s3_progress(z);
    z->times.in_backward_s += zr_now() - t0;
    return s;
}

/* Stage 2: reduces every chunk not yet reduced in this micro-step (descending order, as
 * backward would) and waits for all reductions. */
static zero_status finish_reductions(zero_ctx *z)
{
    zero_status s;
    for (int c = z->layout.num_chunks - 1; c >= 0; c--) {
        if (z->chunk_state[c] >= ZR_CHUNK_REDUCING)
            continue;
        if (z->chunk_state[c] == ZR_CHUNK_IDLE && (s = acquire_bucket(z, c)))
            return s;
        if ((s = issue_reduce(z, c)))
            return s;
    }
    for (int b = 0; b < z->num_buckets; b++)
        if (z->buckets[b].chunk >= 0 && (s = wait_bucket(z, b)))
            return s;
    return ZERO_OK;
}

/* Stages 0–1: reduce-scatter the full gradient chunk by chunk (descending) at the boundary; the
 * reduced slice goes back to this rank's place in the full buffer. Stage 0 then all-gathers it,
 * which with the reduce-scatter makes an all-reduce with the same additions as stages 1–2. */
static zero_status reduce_full_gradients(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    zr_elem e = zr_elem_of(z->dtype);
    zero_status s;
    if (z->nccl) { /* in place on the device: every chunk in flight, one wait per pass */
        s = zr_dc_reduce_chunks_in_place(z, (char *)z->grads, z->set.cfg.stage == 0);
        return s ? zr_fail(z, s, "gradient reduction: %s", z->comm.err) : ZERO_OK;
    }
    for (int c = L->num_chunks - 1; c >= 0; c--) {
        const zp_chunk *ch = &L->chunks[c];
        char *g = (char *)z->grads + ch->offset * z->wsz;
        zr_dreq *req = &z->gather_req[c]; /* free until the parameter all-gather */
        if ((s = zr_dc_reduce_scatter(z, g, z->rs_out, ch->slice, e, req)) ||
            (s = zr_dc_wait(z, req)))
            return zr_fail(z, s, "gradient reduce-scatter of chunk %d: %s", c, z->comm.err);
        zr_dev_copy(&z->dev, g + (size_t)z->rank * ch->slice * z->wsz, z->rs_out,
                    ch->slice * z->wsz);
        if (z->set.cfg.stage == 0 &&
            ((s = zr_dc_all_gather(z, g, ch->slice, e, req)) || (s = zr_dc_wait(z, req))))
            return zr_fail(z, s, "gradient all-gather of chunk %d: %s", c, z->comm.err);
    }
    return ZERO_OK;
}

/* This rank's reduced gradient for element `off` of chunk c (off inside its slice at stages
 * 1–2, anywhere at stage 0). */
static void *grad_at(const zero_ctx *z, int c, size_t off)
{
    const zp_chunk *ch = &z->layout.chunks[c];
    if (z->set.cfg.stage < 2)
        return (char *)z->grads + (ch->offset + off) * z->wsz;
    return (char *)z->grads + (ch->shard_offset + off - (size_t)z->rank * ch->slice) * z->wsz;
}

/* The tensor pieces inside [lo, hi) of chunk c, into z->seg; returns how many. */
static int segments(zero_ctx *z, int c, size_t lo, size_t hi)
{
    return zp_segments(&z->layout, c, lo, hi, z->seg, z->seg_cap);
}

/* Global squared L2 norm of the summed gradient and the inf/nan flag: each rank sums its own
 * slices in a fixed order, the partial sums are all-gathered and added in rank order, so every
 * stage and every rank gets the same bits. */
static zero_status global_norm(zero_ctx *z, double *sumsq, int *nonfinite)
{
    const zp_layout *L = &z->layout;
    double local = 0.0;
    int bad = 0;
    for (int c = 0; c < L->num_chunks; c++) {
        size_t lo, hi;
        zp_slice_range(L, c, z->rank, &lo, &hi);
        int k = segments(z, c, lo, hi);
        for (int j = 0; j < k; j++)
            local += zr_dev_sq_norm(&z->dev, grad_at(z, c, z->seg[j].chunk_offset), z->dtype,
                                    z->seg[j].numel, &bad);
    }
    /* A device failure during the micro-steps (a kernel, a copy) travels with the partial sums,
     * so every rank stops at this step instead of waiting in the next collective. */
    zero_status dev_err = zr_device_error(z, "gradient reduction");
    double *all = malloc((size_t)z->world * 3 * sizeof *all);
    if (!all)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory");
    all[3 * z->rank] = local;
    all[3 * z->rank + 1] = bad;
    all[3 * z->rank + 2] = dev_err;
    zero_status s = zr_all_gather(&z->comm, all, 3, ZR_ELEM_F64, NULL);
    if (s) {
        free(all);
        return zr_fail(z, s, "gradient norm all-gather: %s", z->comm.err);
    }
    *sumsq = 0.0;
    *nonfinite = 0;
    for (int r = 0; r < z->world; r++) {
        *sumsq += all[3 * r];
        *nonfinite |= all[3 * r + 1] != 0.0;
        if (!s && all[3 * r + 2] != 0.0)
            s = dev_err ? dev_err
                        : zr_fail(z, (zero_status)all[3 * r + 2],
                                  "rank %d failed on its device during this step", r);
    }
    free(all);
    if (s)
        return s;
    if (!isfinite(*sumsq))
        *nonfinite = 1;
    return ZERO_OK;
}

/* AdamW over the elements this rank owns: everything at stage 0, its slices at stages 1–2. */
static void adamw_owned(zero_ctx *z, const zk_adamw_params *base)
{
    const zp_layout *L = &z->layout;
    int stage = z->set.cfg.stage;
    float wd = base->weight_decay;
    zk_adamw_params p = *base;
    for (int c = 0; c < L->num_chunks; c++) {
        const zp_chunk *ch = &L->chunks[c];
        size_t lo = 0, hi = ch->padded;
        if (stage > 0)
            zp_slice_range(L, c, z->rank, &lo, &hi);
        int k = segments(z, c, lo, hi);
        for (int j = 0; j < k; j++) {
            size_t off = z->seg[j].chunk_offset;
            /* index into master / m / v: full layout at stage 0, shard layout above */
            size_t idx = stage == 0 ? ch->offset + off : ch->shard_offset + (off - lo);
            void *work = stage == 3 ? (char *)z->params + idx * z->wsz
                                    : (char *)z->params + (ch->offset + off) * z->wsz;
            float *master = z->master ? z->master + idx : (float *)work;
            p.weight_decay = z->meta[z->seg[j].tensor].no_decay ? 0.0f : wd;
            zr_dev_adamw(&z->dev, master, z->adam_m + idx, z->adam_v + idx, grad_at(z, c, off),
                         z->dtype, z->master ? work : NULL, z->dtype, z->seg[j].numel, &p);
        }
    }
}

/* ---- optimizer offload ------------------------------------------------------------------------
 * For each piece of this rank's shard, in blocks of at most staging_elems elements: the gradient
 * goes to the host (copy-in, device to host), is widened to fp32, the CPU AdamW (zk_adamw_cpu:
 * AVX-512 / AVX2 / scalar, the device kernel's formula in the same order, so offload on and off
 * give the same bits) updates master, m and v, and the working-precision result goes back to the
 * device parameters (copy-out) — or, with parameter offload, straight into the host shard.
 * The staging buffer has two halves, so block k's CPU work overlaps block k+1's copy-in and block
 * k-1's copy-out: on the cuda backend these are timed asynchronous copies on the copy stream
 * (issued in order, so a half is never overwritten before its copy-out has run); on the host
 * backend they are memcpys done on the spot and the overlap is nil. */

typedef struct off_block {
    size_t idx;       /* first element in the shard (master, m, v, host_grad) */
    size_t n;         /* elements */
    const char *grad; /* device gradient */
    char *dev;        /* device parameters; NULL with parameter offload */
    int no_decay;
} off_block;

typedef struct off_iter {
    int c, j, k; /* chunk, segment, segments in z->seg for chunk c */
    size_t b;    /* elements of segment j already handed out */
    size_t lo;   /* chunk c's slice start */
} off_iter;

/* The next block of the shard, in layout order; 0 when done. */
static int off_next(zero_ctx *z, off_iter *it, off_block *out)
{
    const zp_layout *L = &z->layout;
    while (it->c < L->num_chunks) {
        if (it->j < it->k) {
            const zp_chunk *ch = &L->chunks[it->c];
            const zp_segment *sg = &z->seg[it->j];
            size_t off = sg->chunk_offset + it->b, left = sg->numel - it->b;
            size_t idx = ch->shard_offset + (off - it->lo);
            out->idx = idx;
            out->n = left < z->staging_elems ? left : z->staging_elems;
            out->grad = grad_at(z, it->c, off);
            out->dev = z->offload_param             ? NULL
                       : z->set.cfg.stage == 3      ? (char *)z->params + idx * z->wsz
                                                    : (char *)z->params + (ch->offset + off) * z->wsz;
            out->no_decay = z->meta[sg->tensor].no_decay;
            it->b += out->n;
            if (it->b == sg->numel) {
                it->j++;
                it->b = 0;
            }
            return 1;
        }
        if (++it->c < L->num_chunks) { /* it->c starts at -1 */
            size_t hi;
            zp_slice_range(L, it->c, z->rank, &it->lo, &hi);
            it->k = segments(z, it->c, it->lo, hi);
            it->j = 0;
            it->b = 0;
        }
    }
    return 0;
}

enum { ZR_SLOT_IN = 0, ZR_SLOT_OUT = 2 }; /* + staging half: device_cuda.h copy slots */

static char *staging_half(const zero_ctx *z, int h)
{
    return (char *)z->staging + (size_t)h * z->staging_elems * z->wsz;
}

/* A copy of the pipeline: timed and asynchronous on the cuda backend (counted when waited for),
 * synchronous and counted at once on the host backend — and on cuda whenever the timed copy
 * could not be queued (the synchronous copy then also records any CUDA failure for
 * zr_device_error, so the step is never silently short of a block). */
/* Adds one finished copy to the report's counters of its direction. */
static void off_count(zero_ctx *z, int slot, double seconds, double bytes)
{
    if (slot < ZR_SLOT_OUT) {
        z->times.d2h_s += seconds;
        z->times.d2h_bytes += bytes;
    } else {
        z->times.h2d_s += seconds;
        z->times.h2d_bytes += bytes;
    }
}

static void off_copy(zero_ctx *z, int slot, void *dst, const void *src, size_t bytes)
{
#ifdef ZERO_HAVE_CUDA
    if (zr_device_is_cuda(&z->dev)) {
        zero_status s = zr_cuda_copy_timed(&z->dev, slot, dst, src, bytes);
        if (s == ZERO_OK) {
            z->off_pending[slot] = (double)bytes;
            return;
        }
        /* nothing of the copy stream may still touch the staging halves; a slot left busy (a
         * copy queued without its end event) is cleared */
        zr_cuda_stream_sync(&z->dev, ZR_STREAM_COPY);
        zr_cuda_copy_wait(&z->dev, slot, NULL);
    }
#endif
    double t0 = zr_now();
    zr_dev_copy(&z->dev, dst, src, bytes);
    off_count(z, slot, zr_now() - t0, (double)bytes);
}

static void off_wait(zero_ctx *z, int slot)
{
#ifdef ZERO_HAVE_CUDA
    if (zr_device_is_cuda(&z->dev) && z->off_pending[slot] > 0.0) {
        double sec = 0.0;
        if (zr_cuda_copy_wait(&z->dev, slot, &sec) == ZERO_OK) { /* bytes and seconds together */
            off_count(z, slot, sec, z->off_pending[slot]);
        }
        z->off_pending[slot] = 0.0;
    }
#else
    (void)z;
    (void)slot;
#endif
}

static void adamw_offloaded(zero_ctx *z, const zk_adamw_params *base)
{
    zk_adamw_params p = *base;
    off_iter it = {.c = -1};
    off_block cur, nxt;
    if (!off_next(z, &it, &cur))
        return;
#ifdef ZERO_HAVE_CUDA
    /* the copy stream reads gradients the compute stream produced */
    if (zr_device_is_cuda(&z->dev))
        zr_cuda_order(&z->dev, ZR_STREAM_COPY, ZR_STREAM_COMPUTE);
#endif
    off_copy(z, ZR_SLOT_IN, staging_half(z, 0), cur.grad, cur.n * z->wsz);
    for (int k = 0;; k++) {
        const int h = k & 1;
        const int more = off_next(z, &it, &nxt);
        if (more) /* copy-in of the next block into the other half */
            off_copy(z, ZR_SLOT_IN + (h ^ 1), staging_half(z, h ^ 1), nxt.grad,
                     nxt.n * z->wsz);
        off_wait(z, ZR_SLOT_IN + h);
        double t0 = zr_now();
        float *g = z->host_grad + cur.idx;
        zk_cast(g, ZERO_DTYPE_FP32, staging_half(z, h), z->dtype, cur.n); /* exact widening */
        p.weight_decay = cur.no_decay ? 0.0f : base->weight_decay;
        void *work = z->offload_param ? (z->master_owned ? (char *)z->params + cur.idx * z->wsz
                                                         : NULL) /* the shard is the master */
                                      : staging_half(z, h);
        zk_adamw_cpu(z->master + cur.idx, z->adam_m + cur.idx, z->adam_v + cur.idx, g, work,
                     z->dtype, cur.n, &p);
        z->times.cpu_adam_s += zr_now() - t0;
        if (!z->offload_param) { /* copy-out; this half's previous copy-out ran before the
                                    copy-in just waited for (one stream, in order) */
            off_wait(z, ZR_SLOT_OUT + h);
            off_copy(z, ZR_SLOT_OUT + h, cur.dev, staging_half(z, h), cur.n * z->wsz);
        }
        if (!more)
            break;
        cur = nxt;
    }
    off_wait(z, ZR_SLOT_OUT);
    off_wait(z, ZR_SLOT_OUT + 1); /* parameters are on the device before the step returns */
}

/* Stages 1–2: every rank's updated slices to every rank, all chunks in flight at once (one NCCL
 * group on the cuda backend). */
static zero_status gather_params(zero_ctx *z)
{
    zero_status s = zr_dc_all_gather_chunks(z, (char *)z->params);
    return s ? zr_fail(z, s, "parameter all-gather: %s", z->comm.err) : ZERO_OK;
}

/* Dynamic loss scaling, DeepSpeed's rule: an overflow first spends the hysteresis, then halves
 * the scale (never below 1); 1000 boundaries after the last overflow or growth, the scale
 * doubles and the hysteresis is restored. */
enum { ZR_SCALE_WINDOW = 1000, ZR_HYSTERESIS = 2 };

static void update_loss_scale(zero_ctx *z, int overflow)
{
    if (!z->dynamic_scale)
        return;
    int64_t it = z->boundaries - 1; /* index of the boundary just ended */
    if (overflow) {
        if (z->hysteresis_left <= 1)
            z->loss_scale = fmaxf(z->loss_scale * 0.5f, 1.0f);
        else
            z->hysteresis_left--;
        z->last_rescale_boundary = it;
        ZR_INFO(ZR_SUB_INIT, "gradient overflow: step skipped, loss scale now %g", z->loss_scale);
    } else if ((it - z->last_rescale_boundary) % ZR_SCALE_WINDOW == 0) {
        z->hysteresis_left = ZR_HYSTERESIS;
        z->loss_scale *= 2.0f;
        ZR_INFO(ZR_SUB_INIT, "loss scale raised to %g", z->loss_scale);
    }
}

static void reset_micro_state(zero_ctx *z)
{
    const zp_layout *L = &z->layout;
    memset(z->chunk_state, 0, (size_t)L->num_chunks * sizeof *z->chunk_state);
    memset(z->chunk_ready, 0, (size_t)L->num_chunks * sizeof *z->chunk_ready);
    memset(z->module_ready, 0, (size_t)L->num_modules);
}

zero_status zero_step(zero_ctx *z)
{
    zero_status s = check_ctx(z);
    if (s)
        return s;
    const zero_config *c = &z->set.cfg;
    double t0 = zr_now(), t;
    if (c->stage >= 2 && (s = finish_reductions(z)))
        return s;
    reset_micro_state(z);
    if (c->stage == 3)
        zr_s3_micro_step_done(z);
    z->micro_steps++;
    memset(&z->last, 0, sizeof z->last);
    z->last.step = z->steps;
    z->last.skipped = z->skipped;
    z->last.loss_scale = z->loss_scale;
    if (++z->micro < c->grad_accum) {
        z->times.grad_reduce_s += zr_now() - t0;
        z->times.step_s += zr_now() - t0;
        return ZERO_OK;
    }
    z->micro = 0;
    z->boundaries++;
    z->last.boundary = 1;
    if (c->stage < 2 && (s = reduce_full_gradients(z)))
        return s;
    t = zr_now();
    z->times.grad_reduce_s += t - t0;

    double sumsq = 0.0;
    int overflow = 0;
    if ((s = global_norm(z, &sumsq, &overflow)))
        return s;
    /* The reduced gradient is the sum over ranks and micro-steps of loss-scaled means. */
    double denom = (double)z->loss_scale * (double)z->world * (double)c->grad_accum;
    double norm = sqrt(sumsq) / denom;
    z->times.norm_s += zr_now() - t;
    z->last.grad_norm = (float)norm;
    z->last.overflow = overflow;
    if (overflow) {
        z->skipped++;
        ZR_INFO(ZR_SUB_INIT, "step %lld skipped: inf/nan in the gradients",
                (long long)z->boundaries);
    } else {
        t = zr_now();
        double clip = 1.0;
        if (c->clip > 0.0f && norm > (double)c->clip)
            clip = (double)c->clip / (norm + 1e-6);
        z->steps++;
        zk_adamw_params p;
        p.lr = c->lr;
        p.beta1 = c->beta1;
        p.beta2 = c->beta2;
        p.eps = c->eps;
        p.weight_decay = c->weight_decay;
        p.bias_corr1 = (float)(1.0 - pow((double)c->beta1, (double)z->steps));
        p.bias_corr2_sqrt = (float)sqrt(1.0 - pow((double)c->beta2, (double)z->steps));
        p.grad_scale = (float)(clip / denom);
        if (z->offload_opt)
            adamw_offloaded(z, &p);
        else
            adamw_owned(z, &p);
        double t2 = zr_now();
        z->times.optimizer_s += t2 - t;
        if ((c->stage == 1 || c->stage == 2) && (s = gather_params(z)))
            return s;
        z->times.param_gather_s += zr_now() - t2;
        z->last.applied = 1;
    }
    if (c->stage < 2)
        zr_dev_zero(&z->dev, z->grads, z->layout.total_padded * z->wsz);
    if (c->stage == 3) {
        double t3 = zr_now();
        if ((s = zr_s3_after_step(z, !overflow)))
            return s;
        z->times.param_gather_s += zr_now() - t3;
    }
    update_loss_scale(z, overflow);
    z->last.step = z->steps;
    z->last.skipped = z->skipped;
    z->last.loss_scale = z->loss_scale;
    z->times.step_s += zr_now() - t0;
    return ZERO_OK;
}

/* ---- stage 3 entry points (no-ops below stage 3) -------------------------------------------- */

zero_status zero_gather(zero_ctx *z, int module)
{
    zero_status s = check_ctx(z);
    if (s)
        return s;
    if (module < 0 || module >= z->layout.num_modules)
        return zr_fail(z, ZERO_ERR_INVALID, "zero_gather: module %d; expected 0..%d", module,
                       z->layout.num_modules - 1);
    if (z->set.cfg.stage < 3)
        return ZERO_OK;
    double t0 = zr_now();
    s = zr_s3_gather(z, module);
    z->times.gather_wait_s += zr_now() - t0;
    return s;
}

zero_status zero_release(zero_ctx *z, int module)
{
    zero_status s = check_ctx(z);
    if (s)
        return s;
    if (module < 0 || module >= z->layout.num_modules)
        return zr_fail(z, ZERO_ERR_INVALID, "zero_release: module %d; expected 0..%d", module,
                       z->layout.num_modules - 1);
    return z->set.cfg.stage < 3 ? ZERO_OK : zr_s3_release(z, module);
}

/* ---- queries ------------------------------------------------------------------------------- */

float zero_loss_scale(const zero_ctx *z) { return z ? z->loss_scale : 1.0f; }

zero_status zero_last_step(const zero_ctx *z, zero_step_info *info)
{
    if (!z || !info)
        return ZERO_ERR_INVALID;
    *info = z->last;
    return ZERO_OK;
}

int zero_rank(const zero_ctx *z) { return z ? z->rank : -1; }
int zero_world_size(const zero_ctx *z) { return z ? z->world : 0; }
const zero_config *zero_get_config(const zero_ctx *z) { return z ? &z->set.cfg : NULL; }

void *zero_compute_stream(const zero_ctx *z)
{
#ifdef ZERO_HAVE_CUDA
    if (z && zr_device_is_cuda(&z->dev))
        return (void *)zr_cuda_stream_get(&z->dev, ZR_STREAM_COMPUTE);
#else
    (void)z;
#endif
    return NULL;
}

zero_status zero_memory_report(const zero_ctx *z, zero_memory_stats *st)
{
    if (!z || !st)
        return ZERO_ERR_INVALID;
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

zero_status zero_allreduce_sum(zero_ctx *z, double *values, int n)
{
    zero_status s = check_ctx(z);
    if (s)
        return s;
    if (!values || n < 0)
        return zr_fail(z, ZERO_ERR_INVALID, "zero_allreduce_sum: values %p, n %d", (void *)values,
                       n);
    z->comm.counting = 0;
    s = zr_all_reduce(&z->comm, values, (size_t)n, ZR_ELEM_F64, ZR_OP_SUM, NULL);
    z->comm.counting = 1;
    return s ? zr_fail(z, s, "zero_allreduce_sum: %s", z->comm.err) : ZERO_OK;
}

const char *zero_last_error(const zero_ctx *z) { return z ? z->err : "ctx is NULL"; }

zero_status zero_finalize(zero_ctx *z)
{
    if (!z)
        return ZERO_OK;
    z->t_end = zr_now();
    zero_status s = ZERO_OK;
    if (z->report_on)
        s = zr_write_report(z, z->set.report_path);
    char saved[sizeof z->err];
    memcpy(saved, z->err, sizeof saved);
    destroy(z);
    if (s)
        snprintf(init_error, sizeof init_error, "zero_finalize: %s", saved);
    zr_log_close();
    return s;
}

/* ---- utilities ------------------------------------------------------------------------------ */

size_t zero_dtype_size(zero_dtype d) { return d == ZERO_DTYPE_FP32 ? 4 : 2; }

void zero_convert(void *dst, zero_dtype dt, const void *src, zero_dtype st, size_t n)
{
    zk_cast(dst, dt, src, st, n);
}

void zero_accumulate(void *dst, zero_dtype dt, const float *src, size_t n)
{
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
