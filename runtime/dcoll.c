/* dcoll.c — collectives on the engine's device buffers: gradient reduce-scatters, parameter
 * all-gathers. NCCL on the comm stream when the context runs on the cuda backend, Open MPI
 * otherwise. Host-buffer collectives (agreement, norm partials, stage-3 order check, report,
 * export) call the MPI backend directly. */
#include "runtime/engine.h"

#include <stdio.h>

#ifdef ZERO_HAVE_NCCL
#include "runtime/device_cuda.h"

/* The comm stream waits (on the GPU) for everything enqueued on the compute stream so far: the
 * model's gradient writes, libzero's copies into a buffer a collective is about to read or
 * overwrite. */
static zero_status order_after_compute(zero_ctx *z)
{
    zero_status s = zr_cuda_order(&z->dev, ZR_STREAM_COMM, ZR_STREAM_COMPUTE);
    if (s)
        snprintf(z->comm.err, sizeof z->comm.err,
                 "ordering the comm stream after the compute stream failed (CUDA event)");
    return s;
}
#endif

zero_status zr_dc_all_gather(zero_ctx *z, void *recv, size_t count, zr_elem e, zr_dreq *req)
{
#ifdef ZERO_HAVE_NCCL
    if (z->nccl) {
        zero_status s = order_after_compute(z);
        return s ? s : zr_nccl_all_gather(z->nccl, recv, count, e, req ? &req->nccl : NULL);
    }
#endif
    return zr_all_gather(&z->comm, recv, count, e, req ? &req->mpi : NULL);
}

zero_status zr_dc_reduce_scatter(zero_ctx *z, const void *send, void *recv, size_t count,
                                 zr_elem e, zr_dreq *req)
{
#ifdef ZERO_HAVE_NCCL
    if (z->nccl) {
        zero_status s = order_after_compute(z);
        return s ? s
                 : zr_nccl_reduce_scatter(z->nccl, send, recv, count, e,
                                          req ? &req->nccl : NULL);
    }
#endif
    return zr_reduce_scatter(&z->comm, send, recv, count, e, req ? &req->mpi : NULL);
}

zero_status zr_dc_all_gather_chunks(zero_ctx *z, char *base)
{
    const zp_layout *L = &z->layout;
    const zr_elem e = zr_elem_of(z->dtype);
    zero_status s = ZERO_OK;
#ifdef ZERO_HAVE_NCCL
    if (z->nccl) { /* one group: one launch for every chunk */
        if ((s = order_after_compute(z)) || (s = zr_nccl_group_start(z->nccl)))
            return s;
        for (int c = 0; c < L->num_chunks && !s; c++)
            s = zr_nccl_all_gather(z->nccl, base + L->chunks[c].offset * z->wsz,
                                   L->chunks[c].slice, e, NULL);
        zero_status g = zr_nccl_group_end(z->nccl, NULL); /* closes the group in any case */
        return s ? s : g;
    }
#endif
    int issued = 0;
    for (int c = 0; c < L->num_chunks && !s; c++, issued++)
        s = zr_all_gather(&z->comm, base + L->chunks[c].offset * z->wsz, L->chunks[c].slice, e,
                          &z->gather_req[c].mpi);
    for (int c = 0; c < issued; c++) {
        zero_status w = zr_wait(&z->comm, &z->gather_req[c].mpi);
        if (!s)
            s = w;
    }
    return s;
}

zero_status zr_dc_reduce_chunks_in_place(zero_ctx *z, char *base, int all_gather)
{
#ifdef ZERO_HAVE_NCCL
    const zp_layout *L = &z->layout;
    const zr_elem e = zr_elem_of(z->dtype);
    if (!z->nccl)
        return ZERO_ERR_INTERNAL;
    zero_status s = order_after_compute(z);
    for (int pass = 0; pass < (all_gather ? 2 : 1) && !s; pass++) {
        int issued = 0;
        for (int c = L->num_chunks - 1; c >= 0 && !s; c--, issued++) {
            char *g = base + L->chunks[c].offset * z->wsz;
            size_t n = L->chunks[c].slice;
            s = pass == 0 ? zr_nccl_reduce_scatter(z->nccl, g, g + (size_t)z->rank * n * z->wsz,
                                                   n, e, &z->gather_req[c].nccl)
                          : zr_nccl_all_gather(z->nccl, g, n, e, &z->gather_req[c].nccl);
        }
        for (int c = L->num_chunks - 1; issued > 0; c--, issued--) {
            zero_status w = zr_nccl_wait(z->nccl, &z->gather_req[c].nccl);
            if (!s)
                s = w;
        }
    }
    return s;
#else
    (void)z;
    (void)base;
    (void)all_gather;
    return ZERO_ERR_INTERNAL;
#endif
}

zero_status zr_dc_wait(zero_ctx *z, zr_dreq *req)
{
#ifdef ZERO_HAVE_NCCL
    if (z->nccl)
        return zr_nccl_wait(z->nccl, &req->nccl);
#endif
    return zr_wait(&z->comm, &req->mpi);
}

zero_status zr_dc_test(zero_ctx *z, zr_dreq *req, int *done)
{
#ifdef ZERO_HAVE_NCCL
    if (z->nccl)
        return zr_nccl_test(z->nccl, &req->nccl, done);
#endif
    return zr_test(&z->comm, &req->mpi, done);
}

void zr_dc_request_free(zero_ctx *z, zr_dreq *req)
{
    (void)z;
#ifdef ZERO_HAVE_NCCL
    zr_nccl_request_destroy(&req->nccl);
#else
    (void)req;
#endif
}
