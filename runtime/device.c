/* device.c — labelled memory accounting shared by all device backends, and the host backend
 * (the CPU as the device, with a capacity). */
#include "runtime/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "offload/placement.h"
#include "runtime/log.h"

static const char *const label_names[ZERO_MEM_NUM_LABELS] = {"params", "grads", "optimizer",
                                                             "buffers"};

const char *zr_mem_label_name(zero_mem_label label)
{
    return (unsigned)label < ZERO_MEM_NUM_LABELS ? label_names[label] : "?";
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

zero_status zr_device_alloc(zr_device *dev, zero_mem_label label, size_t bytes, const char *what,
                            void **out)
{
    *out = NULL;
    if (bytes == 0)
        return ZERO_OK;
    if (dev->capacity && (bytes > dev->capacity || dev->current_total > dev->capacity - bytes)) {
        snprintf(dev->last_oom, sizeof dev->last_oom,
                 "%s (%s, %.2f MiB) does not fit the %s device: capacity %.2f MiB, in use %.2f "
                 "MiB (params %.2f, grads %.2f, optimizer %.2f, buffers %.2f)",
                 what, label_names[label], mib(bytes), dev->ops->name, mib(dev->capacity),
                 mib(dev->current_total), mib(dev->current[ZERO_MEM_PARAMS]),
                 mib(dev->current[ZERO_MEM_GRADS]), mib(dev->current[ZERO_MEM_OPTIMIZER]),
                 mib(dev->current[ZERO_MEM_BUFFERS]));
        return ZERO_ERR_OOM;
    }
    void *p = dev->ops->alloc(dev, bytes);
    if (!p) {
        snprintf(dev->last_oom, sizeof dev->last_oom,
                 "%s (%s, %.2f MiB): the %s backend could not allocate it (in use %.2f MiB)", what,
                 label_names[label], mib(bytes), dev->ops->name, mib(dev->current_total));
        return ZERO_ERR_OOM;
    }
    dev->current[label] += bytes;
    dev->current_total += bytes;
    if (dev->current[label] > dev->peak[label])
        dev->peak[label] = dev->current[label];
    if (dev->current_total > dev->peak_total)
        dev->peak_total = dev->current_total;
    size_t state = dev->current[ZERO_MEM_PARAMS] + dev->current[ZERO_MEM_GRADS] +
                   dev->current[ZERO_MEM_OPTIMIZER];
    if (state > dev->model_state_peak)
        dev->model_state_peak = state;
    ZR_TRACE(ZR_SUB_ALLOC, "alloc %s: %zu bytes (%s), in use %zu", what, bytes,
             label_names[label], dev->current_total);
    *out = p;
    return ZERO_OK;
}

void zr_device_free(zr_device *dev, zero_mem_label label, void *ptr, size_t bytes)
{
    if (!ptr)
        return;
    dev->ops->free(dev, ptr, bytes);
    dev->current[label] -= bytes;
    dev->current_total -= bytes;
}

/* ---- element-wise work, through the backend (host twins where it has none) -------------- */

void zr_dev_copy(zr_device *dev, void *dst, const void *src, size_t bytes)
{
    dev->ops->copy(dev, dst, src, bytes);
}

void zr_dev_zero(zr_device *dev, void *dst, size_t bytes)
{
    if (dev->ops->zero)
        dev->ops->zero(dev, dst, bytes);
    else
        memset(dst, 0, bytes);
}

void zr_dev_add(zr_device *dev, void *dst, zero_dtype dst_type, const void *src,
                zero_dtype src_type, size_t n)
{
    if (dev->ops->add)
        dev->ops->add(dev, dst, dst_type, src, src_type, n);
    else
        zk_add(dst, dst_type, src, src_type, n);
}

double zr_dev_sq_norm(zr_device *dev, const void *x, zero_dtype type, size_t n, int *nonfinite)
{
    if (dev->ops->sq_norm)
        return dev->ops->sq_norm(dev, x, type, n, nonfinite);
    return zk_sq_norm(x, type, n, nonfinite);
}

void zr_dev_adamw(zr_device *dev, float *master, float *m, float *v, const void *grad,
                  zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                  const zk_adamw_params *p)
{
    if (dev->ops->adamw)
        dev->ops->adamw(dev, master, m, v, grad, grad_type, work, work_type, n, p);
    else
        zk_adamw(master, m, v, grad, grad_type, work, work_type, n, p);
}

/* ---- host backend ---------------------------------------------------------------------- */

static void *host_alloc(zr_device *dev, size_t bytes)
{
    /* 64-byte alignment: whole cache lines and AVX-512 vectors. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (p)
        memset(p, 0, rounded);
    return p;
}

static void host_free(zr_device *dev, void *ptr, size_t bytes) { free(ptr); }

static void host_copy(zr_device *dev, void *dst, const void *src, size_t bytes)
{
    if (dst != src)
        memmove(dst, src, bytes);
}

static void host_synchronize(zr_device *dev) {}

/* The element-wise members stay NULL: the host twins run on this memory directly. */
static const zr_device_ops host_ops = {"host", host_alloc, host_free, host_copy, host_synchronize,
                                       NULL, NULL, NULL, NULL};

void zr_device_host_init(zr_device *dev, size_t capacity)
{
    memset(dev, 0, sizeof *dev);
    dev->ops = &host_ops;
    dev->capacity = capacity;
}

/* ---- NUMA-bound host memory (offload) --------------------------------------------------- */

typedef struct numa_impl {
    const zo_topology *topo;
    const zo_plan *plan;
} numa_impl;

static void *numa_alloc(zr_device *dev, size_t bytes)
{
    numa_impl *n = dev->impl;
    int bound = 0;
    void *p = zo_alloc(n->topo, n->plan, bytes, &bound);
    if (p) /* Adam moments start at zero; the first touch also places pages on the node */
        memset(p, 0, bytes);
    return p;
}

static void numa_free(zr_device *dev, void *ptr, size_t bytes)
{
    numa_impl *n = dev->impl;
    zo_free(n->topo, ptr, bytes);
}

static const zr_device_ops numa_ops = {"host-numa", numa_alloc, numa_free, host_copy,
                                       host_synchronize, NULL, NULL, NULL, NULL};

void zr_device_numa_init(zr_device *dev, const zo_topology *topo, const zo_plan *plan)
{
    static numa_impl impl; /* one offload placement per process */
    memset(dev, 0, sizeof *dev);
    impl.topo = topo;
    impl.plan = plan;
    dev->ops = &numa_ops;
    dev->impl = &impl;
}
