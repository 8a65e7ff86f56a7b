/* device.h — the device backend interface (alloc/free with labelled accounting, copies,
 * synchronisation) and the accounting every backend shares: current and peak bytes per label,
 * a capacity that turns an allocation past it into ZERO_ERR_OOM. */
#ifndef ZERO_DEVICE_H
#define ZERO_DEVICE_H

#include <stddef.h>

#include "zero.h"

typedef struct zr_device zr_device;
struct zk_adamw_params;

typedef struct zr_device_ops {
    const char *name;
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
    void (*adamw)(zr_device *dev, float *master, float *m, float *v, const void *grad,
                  zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                  const struct zk_adamw_params *p);
} zr_device_ops;

struct zr_device {
    const zr_device_ops *ops;
    void *impl;                               /* backend state */
    size_t capacity;                          /* bytes; 0 = unlimited */
    size_t current[ZERO_MEM_NUM_LABELS];      /* bytes by label */
    size_t peak[ZERO_MEM_NUM_LABELS];
    size_t current_total, peak_total;
    size_t model_state_peak;                  /* peak of params + grads + optimizer */
    char last_oom[512];                       /* what the last failed allocation wanted */
};

/* Sets up the host backend: ordinary memory with a capacity (0 = unlimited). */
void zr_device_host_init(zr_device *dev, size_t capacity);

/* Allocates bytes under a label; `what` names the buffer for messages. Returns ZERO_OK, or
 * ZERO_ERR_OOM with dev->last_oom describing the request and the memory in use. */
zero_status zr_device_alloc(zr_device *dev, zero_mem_label label, size_t bytes, const char *what,
                            void **out);
void zr_device_free(zr_device *dev, zero_mem_label label, void *ptr, size_t bytes);

/* Host memory for offloaded state, bound to a NUMA node by an hwloc plan (offload/placement.h);
 * no capacity. topo and plan must outlive the device. */
struct zo_topology;
struct zo_plan;
void zr_device_numa_init(zr_device *dev, const struct zo_topology *topo,
                         const struct zo_plan *plan);

const char *zr_mem_label_name(zero_mem_label label);

/* The engine's element-wise work on device memory, through the backend. */
void zr_dev_copy(zr_device *dev, void *dst, const void *src, size_t bytes);
void zr_dev_zero(zr_device *dev, void *dst, size_t bytes);
void zr_dev_add(zr_device *dev, void *dst, zero_dtype dst_type, const void *src,
                zero_dtype src_type, size_t n);
double zr_dev_sq_norm(zr_device *dev, const void *x, zero_dtype type, size_t n, int *nonfinite);
void zr_dev_adamw(zr_device *dev, float *master, float *m, float *v, const void *grad,
                  zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                  const struct zk_adamw_params *p);

#endif
