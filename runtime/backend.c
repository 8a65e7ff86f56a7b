/* backend.c — the one file that knows which backends exist: it picks the device backend
 * (ZERO_DEVICE: host or cuda), builds the collective backends over it (nccl for the cuda
 * backend's device buffers, mpi for everything else) and, for the CPU offload, the NUMA-bound
 * host memory and the hwloc placement of this rank. Everything else in the engine reaches them
 * only through the device (device.h) and collective (coll.h) interfaces. */
#include <stdio.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/engine.h"
#include "util/log.h"
#ifdef ZERO_HAVE_CUDA
#include "runtime/device_cuda.h"
#endif
#ifdef ZERO_HAVE_NCCL
#include "runtime/comm_nccl.h"
#endif

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
        zero_status s =
            zr_coll_all_reduce(&z->hcoll, &lacking, 1, ZR_ELEM_I64, ZR_OP_SUM, ZR_TRAFFIC_OTHER,
                               NULL);
        if (s)
            return zr_fail(&z->err, s, "zero_init: choosing the device: %s", z->comm.err.msg);
        zero_status local = ZERO_OK;
        if (c->device == ZERO_DEVICE_CUDA && !mine)
            local = zr_fail(&z->err, ZERO_ERR_UNSUPPORTED,
                            "ZERO_DEVICE=cuda but rank %d cannot use a GPU: %s; use "
                            "ZERO_DEVICE=host, or auto (cuda where every rank has a GPU, "
                            "else host)", z->rank, why);
        if ((s = zr_agree(z, local, NULL, NULL, 0)))
            return s;
        cuda = lacking == 0;
        if (!cuda)
            ZR_INFO(ZR_SUB_INIT, "ZERO_DEVICE=auto: using the host backend: %s",
                    mine ? "another rank has no usable GPU" : why);
    }
    if (!cuda) { /* the host device; its buffers move through mpi like every host buffer */
        zr_device_host_init(&z->dev, c->device_memory);
        c->device = ZERO_DEVICE_HOST;
        zero_status s = zr_coll_mpi_init(&z->dcoll, &z->comm);
        return s ? zr_fail(&z->err, s, "zero_init: %s", z->comm.err.msg) : ZERO_OK;
    }
#if defined(ZERO_HAVE_CUDA) && defined(ZERO_HAVE_NCCL)
    char err[256];
    zero_status local = zr_device_cuda_init(&z->dev, z->comm.local_rank, c->device_memory,
                                            c->cuda_stream, err, sizeof err);
    if (local)
        local = zr_fail(&z->err, local,
                        "ZERO_DEVICE=%s: the cuda backend could not start on rank %d "
                        "(local rank %d): %s",
                        asked, z->rank, z->comm.local_rank, err);
    zero_status s = zr_agree(z, local, NULL, NULL, 0);
    if (s)
        return s;
    c->device = ZERO_DEVICE_CUDA;
    s = zr_coll_nccl_init(&z->dcoll, &z->comm, &z->dev, (double)c->timeout_s);
    if (s)
        s = zr_fail(&z->err, s, "NCCL communicator on rank %d (GPU %d): %s", z->rank,
                    zr_cuda_device_ordinal(&z->dev), z->comm.err.msg);
    if ((s = zr_agree(z, s, NULL, NULL, 0)))
        return s;
    int v = zr_nccl_version();
    ZR_INFO(ZR_SUB_INIT, "ZERO_DEVICE=%s: cuda backend on GPU %d, NCCL %d.%d.%d, timeout %g s",
            asked, zr_cuda_device_ordinal(&z->dev), v / 10000, v / 100 % 100, v % 100,
            (double)c->timeout_s);
    return ZERO_OK;
#else
    (void)asked;
    return zr_fail(&z->err, ZERO_ERR_INTERNAL, "cuda chosen without a cuda build");
#endif
}

/* Offload placement: this rank's NUMA node and cores among the ranks on its node; host buffers
 * are bound there and the CPU optimizer threads pinned to those cores. */
static zero_status plan_offload(zero_ctx *z)
{
    zr_error pe = {0};
    if (!z->topo && zo_topology_load(&z->topo, NULL, &pe) != ZERO_OK) {
        ZR_WARN(ZR_SUB_OFFLOAD, "hwloc topology unavailable (%s): offload memory is not bound",
                pe.msg);
        return ZERO_OK;
    }
    int gpu_bus = zr_dev_pci_bus(&z->dev); /* cuda: the node nearest the GPU (ZERO_NUMA=auto) */
    zero_status s = zo_plan_rank(z->topo, z->comm.local_rank, z->comm.local_size,
                                 z->set.cfg.numa, z->set.cfg.cpu_threads, gpu_bus, &z->plan, &pe);
    if (s)
        return zr_fail(&z->err, s, "ZERO_NUMA=%d: %s", z->set.cfg.numa, pe.msg);
    char desc[512];
    zo_plan_describe(z->topo, &z->plan, desc, sizeof desc);
    if (z->plan.shared > 1)
        ZR_WARN(ZR_SUB_OFFLOAD, "placement: %s", desc);
    else
        ZR_INFO(ZR_SUB_OFFLOAD, "placement: %s", desc);
    if (zr_device_numa_init(&z->host, z->topo, &z->plan) != ZERO_OK)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    ZR_INFO(ZR_SUB_OFFLOAD, "CPU AdamW: %s path", zk_adamw_cpu_isa());
    if (z->set.cfg.numa != ZERO_NUMA_OFF && zo_bind_threads(z->topo, &z->plan) != 0)
        ZR_WARN(ZR_SUB_OFFLOAD, "CPU optimizer threads are not bound (binding unsupported here)");
    return ZERO_OK;
}

zero_status zr_backend_bootstrap(zero_ctx *z)
{
    zero_status s = zr_comm_init(&z->comm);
    if (!s && (s = zr_coll_mpi_init(&z->hcoll, &z->comm)))
        zr_comm_destroy(&z->comm);
    z->hcoll.host = 1;
    if (s)
        return zr_fail(&z->err, s, "zero_init: %s", z->comm.err.msg);
    z->rank = z->comm.rank;
    z->world = z->comm.world;
    /* bounded from the first exchange on: the default until the configuration is agreed */
    const zero_config defaults = ZERO_CONFIG_INIT;
    z->comm.timeout_s = (double)defaults.timeout_s;
    return ZERO_OK;
}

zero_status zr_backend_open(zero_ctx *z)
{
    /* every rank reaches the agreement below, whatever failed locally before it */
    z->comm.timeout_s = (double)z->set.cfg.timeout_s;
    z->comm.flight_dir = z->set.debug_dir[0] ? z->set.debug_dir : NULL;
    zero_status s = select_device(z);
    if (!s) {
        zr_device_host_init(&z->host, 0);
        /* placement is per rank (ZERO_NUMA may differ) */
        if (z->offload_opt)
            s = plan_offload(z);
    }
    return zr_agree(z, s, NULL, NULL, 0);
}

void zr_backend_close(zero_ctx *z)
{
    /* nothing is in flight and no device memory is left: the communicators, then the devices */
    zr_coll_destroy(&z->dcoll);
    zr_coll_destroy(&z->hcoll);
    zr_device_destroy(&z->host);
    zr_device_destroy(&z->dev);
    zo_topology_free(z->topo);
    z->topo = NULL;
    zr_comm_destroy(&z->comm);
}
