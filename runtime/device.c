/* device.c — labelled memory accounting shared by all device backends, and the host backend
 * (the CPU as the device, with a capacity). */
#include "runtime/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "offload/placement.h"
#include "util/log.h"

static const char *const label_names[ZERO_MEM_NUM_LABELS] = {"params", "grads", "optimizer",
                                                             "buffers"};

int zr_dev_is_host(const zr_device *dev)
{
    return dev->ops && !strncmp(dev->ops->name, "host", 4);
}

const char *zr_mem_label_name(zero_mem_label label)
{
    return (unsigned)label < ZERO_MEM_NUM_LABELS ? label_names[label] : "?";
}

static double mib(size_t bytes) { return (double)bytes / (1024.0 * 1024.0); }

int zr_device_fits(const zr_device *dev, size_t bytes)
{
    return !dev->capacity || (bytes <= dev->capacity && dev->current_total <= dev->capacity - bytes);
}

zero_status zr_device_alloc(zr_device *dev, zero_mem_label label, size_t bytes, const char *what,
                            void **out, zr_error *e)
{
    *out = NULL;
    if (bytes == 0)
        return ZERO_OK;
    if (dev->capacity && (bytes > dev->capacity || dev->current_total > dev->capacity - bytes)) {
        return zr_fail(e, ZERO_ERR_OOM,
                       "%s (%s, %.2f MiB) does not fit the %s device: capacity %.2f MiB, in use "
                       "%.2f MiB (params %.2f, grads %.2f, optimizer %.2f, buffers %.2f)",
                       what, label_names[label], mib(bytes), dev->ops->name, mib(dev->capacity),
                       mib(dev->current_total), mib(dev->current[ZERO_MEM_PARAMS]),
                       mib(dev->current[ZERO_MEM_GRADS]), mib(dev->current[ZERO_MEM_OPTIMIZER]),
                       mib(dev->current[ZERO_MEM_BUFFERS]));
    }
    void *p = dev->ops->alloc(dev, bytes);
    if (!p) {
        return zr_fail(e, ZERO_ERR_OOM,
                       "%s (%s, %.2f MiB): the %s backend could not allocate it (in use %.2f MiB)",
                       what, label_names[label], mib(bytes), dev->ops->name,
                       mib(dev->current_total));
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

zero_status zr_dev_order(zr_device *dev, zr_stream_id waiter, zr_stream_id producer)
{
    return dev->ops->order(dev, waiter, producer);
}

zero_status zr_dev_stream_sync(zr_device *dev, zr_stream_id which)
{
    return dev->ops->stream_sync(dev, which);
}

void *zr_dev_stream(const zr_device *dev, zr_stream_id which)
{
    return dev->ops ? dev->ops->stream(dev, which) : NULL;
}

zero_status zr_dev_copy_timed(zr_device *dev, int slot, void *dst, const void *src, size_t bytes)
{
    return dev->ops->copy_timed(dev, slot, dst, src, bytes);
}

zero_status zr_dev_copy_wait(zr_device *dev, int slot, double *seconds)
{
    return dev->ops->copy_wait(dev, slot, seconds);
}

zero_status zr_dev_host_register(zr_device *dev, void *ptr, size_t bytes, char *err, size_t len)
{
    return dev->ops->host_register(dev, ptr, bytes, err, len);
}

void zr_dev_host_unregister(zr_device *dev, void *ptr) { dev->ops->host_unregister(dev, ptr); }

zero_status zr_dev_take_error(zr_device *dev, char *msg, size_t len)
{
    return dev->ops->take_error(dev, msg, len);
}

size_t zr_dev_free_memory(zr_device *dev) { return dev->ops->free_memory(dev); }

int zr_dev_pci_bus(const zr_device *dev) { return dev->ops->pci_bus(dev); }

int zr_dev_has(const zr_device *dev, unsigned cap) { return (dev->ops->caps & cap) == cap; }

void zr_device_destroy(zr_device *dev)
{
    if (dev->ops)
        dev->ops->destroy(dev);
    memset(dev, 0, sizeof *dev);
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

/* No streams: everything is complete when called. */
static zero_status host_order(zr_device *dev, zr_stream_id waiter, zr_stream_id producer)
{
    return ZERO_OK;
}

static zero_status host_stream_sync(zr_device *dev, zr_stream_id which) { return ZERO_OK; }

static void *host_stream(const zr_device *dev, zr_stream_id which) { return NULL; }

static zero_status host_copy_timed(zr_device *dev, int slot, void *dst, const void *src,
                                   size_t bytes)
{
    return ZERO_ERR_UNSUPPORTED;
}

static zero_status host_copy_wait(zr_device *dev, int slot, double *seconds)
{
    if (seconds)
        *seconds = 0.0;
    return ZERO_OK;
}

static zero_status host_register(zr_device *dev, void *ptr, size_t bytes, char *err, size_t len)
{
    if (err && len)
        snprintf(err, len, "the %s backend does not pin memory", dev->ops->name);
    return ZERO_ERR_UNSUPPORTED;
}

static void host_unregister(zr_device *dev, void *ptr) {}

static zero_status host_take_error(zr_device *dev, char *msg, size_t len) { return ZERO_OK; }

static size_t host_free_memory(zr_device *dev) { return 0; }

static int host_pci_bus(const zr_device *dev) { return -1; }

static void host_destroy(zr_device *dev) {}

/* What every host-memory device shares (the plain host device and the NUMA-bound one): no
 * streams, synchronous copies, nothing to pin or to report. The element-wise members stay NULL:
 * the host twins run on this memory directly. */
#define HOST_MEMORY_OPS                                                                       \
    .copy = host_copy, .synchronize = host_synchronize, .order = host_order,                  \
    .stream_sync = host_stream_sync, .stream = host_stream, .copy_timed = host_copy_timed,    \
    .copy_wait = host_copy_wait, .host_register = host_register,                              \
    .host_unregister = host_unregister, .take_error = host_take_error,                        \
    .free_memory = host_free_memory, .pci_bus = host_pci_bus

static const zr_device_ops host_ops = {
    .name = "host",
    .alloc = host_alloc,
    .free = host_free,
    .destroy = host_destroy,
    HOST_MEMORY_OPS,
};

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

static void numa_destroy(zr_device *dev) { free(dev->impl); }

static const zr_device_ops numa_ops = {
    .name = "host-numa",
    .alloc = numa_alloc,
    .free = numa_free,
    .destroy = numa_destroy,
    HOST_MEMORY_OPS,
};

zero_status zr_device_numa_init(zr_device *dev, const zo_topology *topo, const zo_plan *plan)
{
    numa_impl *impl = malloc(sizeof *impl); /* this device's own: contexts place apart */
    if (!impl)
        return ZERO_ERR_SYSTEM;
    memset(dev, 0, sizeof *dev);
    impl->topo = topo;
    impl->plan = plan;
    dev->ops = &numa_ops;
    dev->impl = impl;
    return ZERO_OK;
}
