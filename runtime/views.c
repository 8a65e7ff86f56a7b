/* views.c — fp32 views (zero_config.fp32_views) at a bf16/fp16 working precision: the model
 * reads parameters and writes gradients in fp32, libzero converts on its side, so fp32 kernels run
 * unchanged. Parameters: stages 0-2 keep an fp32 copy of the working replica, refreshed whenever
 * the replica changes (init, each applied step, zero_load); stage 3 converts a gathered chunk
 * into an fp32 buffer the first time a pointer into it is asked for after the gather. Gradients:
 * the model adds into an fp32 view (stages 0-1: one for the whole model; stages 2-3: one per
 * chunk while its modules are in backward), and zero_grad_ready adds each of the module's tensors
 * into the working gradient (rounded once, as zero_accumulate does) and zeroes the view. Every
 * buffer is device memory under the "buffers" label. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/engine.h"
#include "util/log.h"

/* fp32 dst = src (working), n elements, on the device. */
static void to_fp32(zero_ctx *z, float *dst, const void *src, size_t n)
{
    if (zr_dev_is_host(&z->dev)) {
        zk_cast(dst, ZERO_DTYPE_FP32, src, z->dtype, n);
        return;
    }
    zr_dev_zero(&z->dev, dst, n * sizeof *dst);
    zr_dev_add(&z->dev, dst, ZERO_DTYPE_FP32, src, z->dtype, n);
}

static size_t chunk_bytes(const zero_ctx *z) { return z->layout.max_padded * sizeof(float); }

static zero_status pool_get(zero_ctx *z, float **out)
{
    zr_views *v = &z->views;
    if (v->pool_len > 0) {
        *out = v->pool[--v->pool_len];
        return ZERO_OK;
    }
    float **np = realloc(v->pool, (size_t)(v->pool_total + 1) * sizeof *np);
    if (!np)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    v->pool = np;
    ZR_CHECK(zr_dev_alloc(z, ZERO_MEM_BUFFERS, chunk_bytes(z), "fp32 views", out));
    v->pool_total++;
    return ZERO_OK;
}

static void pool_put(zero_ctx *z, float **slot)
{
    if (*slot)
        z->views.pool[z->views.pool_len++] = *slot;
    *slot = NULL;
}

zero_status zr_views_init(zero_ctx *z)
{
    zr_views *v = &z->views;
    memset(v, 0, sizeof *v);
    if (!z->set.cfg.fp32_views || z->dtype == ZERO_DTYPE_FP32)
        return ZERO_OK;
    v->on = 1;
    const zp_layout *L = &z->layout;
    const int stage = z->set.cfg.stage;
    size_t full = L->total_padded * sizeof(float);
    if (stage < 3)
        ZR_CHECK(zr_dev_alloc(z, ZERO_MEM_BUFFERS, full, "fp32 view of the parameters",
                              &v->pfull));
    if (stage < 2)
        ZR_CHECK(zr_dev_alloc(z, ZERO_MEM_BUFFERS, full, "fp32 view of the gradients",
                              &v->gfull));
    size_t nc = (size_t)L->num_chunks;
    v->gchunk = calloc(nc, sizeof *v->gchunk);
    v->gready = calloc(nc, sizeof *v->gready);
    v->pchunk = calloc(nc, sizeof *v->pchunk);
    v->pvalid = calloc(nc, 1);
    if (!v->gchunk || !v->gready || !v->pchunk || !v->pvalid)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    ZR_INFO(ZR_SUB_ALLOC, "fp32 views: %zu bytes of parameters, %zu of gradients, chunk views "
            "of %zu bytes at stage 3 / in backward at stages 2-3",
            stage < 3 ? full : 0, stage < 2 ? full : 0, chunk_bytes(z));
    return ZERO_OK;
}

void zr_views_free(zero_ctx *z)
{
    zr_views *v = &z->views;
    if (!v->on)
        return;
    const zp_layout *L = &z->layout;
    size_t full = L->total_padded * sizeof(float);
    for (int c = 0; v->gchunk && c < L->num_chunks; c++) {
        pool_put(z, &v->gchunk[c]);
        pool_put(z, &v->pchunk[c]);
    }
    for (int i = 0; i < v->pool_len; i++)
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, v->pool[i], chunk_bytes(z));
    if (v->pfull)
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, v->pfull, full);
    if (v->gfull)
        zr_device_free(&z->dev, ZERO_MEM_BUFFERS, v->gfull, full);
    free(v->pool);
    free(v->gchunk);
    free(v->gready);
    free(v->pchunk);
    free(v->pvalid);
    memset(v, 0, sizeof *v);
}

void zr_views_refresh(zero_ctx *z)
{
    zr_views *v = &z->views;
    if (!v->on)
        return;
    if (v->pfull)
        to_fp32(z, v->pfull, z->st.params, z->layout.total_padded);
    if (v->pvalid)
        memset(v->pvalid, 0, (size_t)z->layout.num_chunks);
}

void zr_views_chunk_changed(zero_ctx *z, int c, int gone)
{
    zr_views *v = &z->views;
    if (!v->on)
        return;
    v->pvalid[c] = 0;
    if (gone)
        pool_put(z, &v->pchunk[c]);
}

void *zr_views_param(zero_ctx *z, int i, void *work)
{
    zr_views *v = &z->views;
    const zp_place *p = &z->layout.place[i];
    if (v->pfull)
        return v->pfull + z->layout.chunks[p->chunk].offset + p->offset;
    int c = p->chunk;
    if (!v->pchunk[c] && pool_get(z, &v->pchunk[c]))
        return NULL;
    if (!v->pvalid[c]) { /* the gathered chunk, converted once per gather */
        const char *base = (const char *)work - p->offset * z->wsz;
        to_fp32(z, v->pchunk[c], base, z->layout.chunks[c].padded);
        v->pvalid[c] = 1;
    }
    return v->pchunk[c] + p->offset;
}

void *zr_views_grad(zero_ctx *z, int i)
{
    zr_views *v = &z->views;
    const zp_place *p = &z->layout.place[i];
    if (v->gfull)
        return v->gfull + z->layout.chunks[p->chunk].offset + p->offset;
    int c = p->chunk;
    if (!v->gchunk[c]) {
        if (pool_get(z, &v->gchunk[c]))
            return NULL;
        zr_dev_zero(&z->dev, v->gchunk[c], z->layout.chunks[c].padded * sizeof(float));
    }
    return v->gchunk[c] + p->offset;
}

zero_status zr_views_ready(zero_ctx *z, int module)
{
    zr_views *v = &z->views;
    int c = z->layout.module_chunk[module];
    /* stages 2-3: only a module whose pointers were asked for in this micro-step has written a
     * view (asking for a bucket pointer of another would mark it as asked, and the stale-pointer
     * check would then refuse it next time) */
    if (!v->gfull && z->g.module_asked && z->g.module_asked[module] != ZR_ASKED_NOW)
        return ZERO_OK;
    for (int i = 0; i < z->num_tensors; i++) {
        if (z->tensor_module[i] != module)
            continue;
        const zp_place *p = &z->layout.place[i];
        float *view = v->gfull ? v->gfull + z->layout.chunks[p->chunk].offset + p->offset
                      : v->gchunk[c] ? v->gchunk[c] + p->offset
                                     : NULL;
        if (!view)
            continue; /* never asked for this micro-step: nothing was written */
        void *work = z->g.ops->ptr(z, i);
        if (!work)
            return z->err.status ? z->err.status : ZERO_ERR_INTERNAL;
        zr_dev_add(&z->dev, work, z->dtype, view, ZERO_DTYPE_FP32, p->numel);
        zr_dev_zero(&z->dev, view, p->numel * sizeof(float));
    }
    return ZERO_OK;
}

void zr_views_after_ready(zero_ctx *z, int module)
{
    zr_views *v = &z->views;
    int c = z->layout.module_chunk[module];
    if (!v->gfull && c >= 0 && ++v->gready[c] == z->g.chunk_modules[c])
        pool_put(z, &v->gchunk[c]); /* the chunk's backward is done */
}

void zr_views_micro_done(zero_ctx *z)
{
    zr_views *v = &z->views;
    if (!v->on || v->gfull)
        return;
    for (int c = 0; c < z->layout.num_chunks; c++) {
        v->gready[c] = 0;
        pool_put(z, &v->gchunk[c]);
    }
}
