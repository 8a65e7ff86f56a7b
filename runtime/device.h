/* device.h — the device backend interface (alloc/free with labelled accounting, copies,
 * synchronisation) and the accounting every backend shares: current and peak bytes per label,
 * a capacity that turns an allocation past it into ZERO_ERR_OOM. */
#ifndef ZERO_DEVICE_H
#define ZERO_DEVICE_H

#include <stddef.h>

#include "util/error.h"
#include "zero.h"

typedef struct zr_device zr_device;
struct zk_adamw_params;

/* The streams of a device: compute (the model's and libzero's element-wise work), copy (the
 * offload pipeline's host<->device traffic), comm (collectives on device buffers). A backend
 * without streams (host) runs everything at once, in call order. */
typedef enum zr_stream_id {
    ZR_STREAM_COMPUTE = 0,
    ZR_STREAM_COPY = 1,
    ZR_STREAM_COMM = 2,
    ZR_STREAM_NUM = 3
} zr_stream_id;

/* Capabilities (zr_device_ops.caps). */
enum {
    ZR_DEV_CAP_ASYNC_COPY = 1u << 0, /* copy_timed queues copies that overlap the host */
    ZR_DEV_CAP_PINNING = 1u << 1,    /* host_register page-locks host memory for such copies */
};

/* Timed copy slots of copy_timed: 0..ZR_COPY_SLOTS_OFFLOAD-1 the offload pipeline's
 * double-buffered staging, the others the data loaders' batches (data.c, two per loader). */
enum { ZR_COPY_SLOTS_OFFLOAD = 4, ZR_COPY_SLOTS = 12 };

/* Everything the engine asks of a device, as one table (a backend fills every member; the
 * zr_dev_* functions below are the only callers). Members that return void cannot fail in a way
 * the engine can act on at once: a backend records such a failure and reports it through
 * take_error, which the engine calls at its agreement points. */
typedef struct zr_device_ops {
    const char *name;
    unsigned caps;
    /* Raw allocation of `bytes` zero-filled bytes; NULL when the backend has no memory. */
    void *(*alloc)(zr_device *dev, size_t bytes);
    void (*free)(zr_device *dev, void *ptr, size_t bytes);
    /* Copy of bytes between any two of device and host memory; complete on return. */
    void (*copy)(zr_device *dev, void *dst, const void *src, size_t bytes);
    void (*synchronize)(zr_device *dev);
    /* Element-wise kernels on device memory (kernels/kernels.h semantics); complete on return.
     * NULL members fall back to the host twins (host-addressable memory only). */
    void (*zero)(zr_device *dev, void *dst, size_t bytes);
    void (*add)(zr_device *dev, void *dst, zero_dtype dst_type, const void *src,
                zero_dtype src_type, size_t n);
    double (*sq_norm)(zr_device *dev, const void *x, zero_dtype type, size_t n, int *nonfinite);
    /* The fused AdamW kernel (zk_adamw's formula), which the optimizer (optim.h) runs. */
    void (*adamw)(zr_device *dev, float *master, float *m, float *v, const void *grad,
                  zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                  const struct zk_adamw_params *p);
    /* Streams and events: `waiter` waits (on the device; the host does not block) for the work
     * enqueued on `producer` so far; stream_sync blocks the host until `which` is idle; stream
     * gives the backend's handle (a cudaStream_t), NULL where there is none. */
    zero_status (*order)(zr_device *dev, zr_stream_id waiter, zr_stream_id producer);
    zero_status (*stream_sync)(zr_device *dev, zr_stream_id which);
    void *(*stream)(const zr_device *dev, zr_stream_id which);
    /* Asynchronous timed copies on the copy stream (ZR_DEV_CAP_ASYNC_COPY): a copy in slot
     * 0..ZR_COPY_SLOTS-1 until copy_wait, which gives its duration on the device.
     * ZERO_ERR_UNSUPPORTED where the backend has none (nothing is queued). */
    zero_status (*copy_timed)(zr_device *dev, int slot, void *dst, const void *src, size_t bytes);
    zero_status (*copy_wait)(zr_device *dev, int slot, double *seconds);
    /* Page-locks host memory for asynchronous copies (ZR_DEV_CAP_PINNING); ZERO_ERR_UNSUPPORTED
     * elsewhere. The memory stays usable when it fails. */
    zero_status (*host_register)(zr_device *dev, void *ptr, size_t bytes, char *err, size_t len);
    void (*host_unregister)(zr_device *dev, void *ptr);
    /* The first failure of a void member since the last call (ZERO_ERR_SYSTEM + message), then
     * cleared; ZERO_OK when none. */
    zero_status (*take_error)(zr_device *dev, char *msg, size_t len);
    /* Free device memory now in bytes, 0 if unknown (host: no device of its own). */
    size_t (*free_memory)(zr_device *dev);
    /* The device's PCI location as offload/placement.h wants it (domain << 8 | bus), or -1. */
    int (*pci_bus)(const zr_device *dev);
    /* Releases what the backend set up (streams, handles, its impl); every allocation has been
     * freed. The device is left zeroed. */
    void (*destroy)(zr_device *dev);
} zr_device_ops;

struct zr_device {
    const zr_device_ops *ops;
    void *impl;                               /* backend state */
    size_t capacity;                          /* bytes; 0 = unlimited */
    size_t current[ZERO_MEM_NUM_LABELS];      /* bytes by label */
    size_t peak[ZERO_MEM_NUM_LABELS];
    size_t current_total, peak_total;
    size_t model_state_peak;                  /* peak of params + grads + optimizer */
};

/* Sets up the host backend: ordinary memory with a capacity (0 = unlimited). */
void zr_device_host_init(zr_device *dev, size_t capacity);

/* Allocates bytes under a label; `what` names the buffer for messages. Returns ZERO_OK, or
 * ZERO_ERR_OOM with e (may be NULL) describing the request and the memory in use. */
zero_status zr_device_alloc(zr_device *dev, zero_mem_label label, size_t bytes, const char *what,
                            void **out, zr_error *e);
void zr_device_free(zr_device *dev, zero_mem_label label, void *ptr, size_t bytes);
/* Whether `bytes` more fit under the capacity (always 1 without one). */
int zr_device_fits(const zr_device *dev, size_t bytes);

/* Host memory for offloaded state, bound to a NUMA node by an hwloc plan (offload/placement.h);
 * no capacity. topo and plan must outlive the device. Returns ZERO_OK, or ZERO_ERR_SYSTEM (no
 * host memory for its state; dev is then the plain host backend). */
struct zo_topology;
struct zo_plan;
zero_status zr_device_numa_init(zr_device *dev, const struct zo_topology *topo,
                                const struct zo_plan *plan);

/* Ends a device of any backend (ops->destroy); a zeroed dev (never set up) is a no-op. */
void zr_device_destroy(zr_device *dev);

const char *zr_mem_label_name(zero_mem_label label);

/* Whether the device's memory is host memory the CPU may read and write directly (the host and
 * host-numa backends). */
int zr_dev_is_host(const zr_device *dev);

/* The engine's element-wise work on device memory, through the backend. */
void zr_dev_copy(zr_device *dev, void *dst, const void *src, size_t bytes);
void zr_dev_zero(zr_device *dev, void *dst, size_t bytes);
void zr_dev_add(zr_device *dev, void *dst, zero_dtype dst_type, const void *src,
                zero_dtype src_type, size_t n);
double zr_dev_sq_norm(zr_device *dev, const void *x, zero_dtype type, size_t n, int *nonfinite);
void zr_dev_adamw(zr_device *dev, float *master, float *m, float *v, const void *grad,
                  zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                  const struct zk_adamw_params *p);
zero_status zr_dev_order(zr_device *dev, zr_stream_id waiter, zr_stream_id producer);
zero_status zr_dev_stream_sync(zr_device *dev, zr_stream_id which);
void *zr_dev_stream(const zr_device *dev, zr_stream_id which);
zero_status zr_dev_copy_timed(zr_device *dev, int slot, void *dst, const void *src, size_t bytes);
zero_status zr_dev_copy_wait(zr_device *dev, int slot, double *seconds);
zero_status zr_dev_host_register(zr_device *dev, void *ptr, size_t bytes, char *err, size_t len);
void zr_dev_host_unregister(zr_device *dev, void *ptr);
zero_status zr_dev_take_error(zr_device *dev, char *msg, size_t len);
size_t zr_dev_free_memory(zr_device *dev);
int zr_dev_pci_bus(const zr_device *dev);
int zr_dev_has(const zr_device *dev, unsigned cap);

#endif
