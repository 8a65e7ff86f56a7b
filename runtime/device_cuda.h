/* device_cuda.h — the "cuda" device backend: device memory from the stream-ordered allocator
 * under the labelled accounting of device.h, three streams (compute, copy, comm) ordered with
 * events, the element-wise kernels of kernels/ (the .cu files) behind the zr_device_ops members, and pinned
 * host memory for offload buffers. Built only with ZERO_HAVE_CUDA (the CUDA include path comes
 * with the library's link to CUDA::cudart).
 *
 * Streams and ordering (the rule every function below follows):
 * - compute: the model's stream (passed in) or one created here as a *blocking* stream, so a
 *   model that launches on the legacy default stream is ordered with it without doing anything.
 *   The zr_device_ops members (alloc's zero fill, copy, zero, add, sq_norm, adamw) run here and
 *   complete before they return, as device.h requires.
 * - copy: non-blocking stream for host<->device traffic of the offload pipeline
 *   (zr_cuda_copy_async).
 * - comm: non-blocking stream at the highest priority, for NCCL (runtime/comm_nccl.h).
 * Non-blocking streams are not ordered with anything implicitly: use zr_cuda_order.
 * Memory from alloc is usable on all three streams (they are made to wait for its zero fill);
 * free waits for the work already enqueued on all three before the memory goes back. */
#ifndef ZERO_DEVICE_CUDA_H
#define ZERO_DEVICE_CUDA_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "runtime/device.h"


/* 1 when this process can use a GPU: cudaGetDeviceCount succeeds and finds at least one device.
 * Otherwise 0, with `why` (if not NULL) saying what is missing (no driver, no device, ...).
 * Clears the CUDA error it may leave. Local, cheap after the first call. */
int zr_cuda_usable(char *why, size_t len);

/* CUDA devices this process sees (0 when none is usable). */
int zr_cuda_device_count(void);

/* Sets up dev as the cuda backend on device (local_rank % device count), made current for the
 * calling thread. capacity: cap in bytes enforced by the accounting (0 = the GPU's memory is the
 * only limit; running out of it is ZERO_ERR_OOM as well). compute_stream: the model's
 * cudaStream_t, or NULL to create one. Returns ZERO_OK, or ZERO_ERR_UNSUPPORTED (no usable GPU)
 * / ZERO_ERR_SYSTEM (a CUDA call failed) with the reason in err. dev is left zeroed on failure.
 * Local, blocking. */
zero_status zr_device_cuda_init(zr_device *dev, int local_rank, size_t capacity,
                                void *compute_stream, char *err, size_t len);

/* Waits for the three streams, destroys what init created (not a compute stream passed in) and
 * leaves dev zeroed. Every allocation must have been freed. NULL or a non-cuda dev: no-op. */
void zr_device_cuda_destroy(zr_device *dev);

/* 1 when dev was set up by zr_device_cuda_init. */
int zr_device_is_cuda(const zr_device *dev);

/* The CUDA device ordinal and the streams of a cuda dev. */
int zr_cuda_device_ordinal(const zr_device *dev);
cudaStream_t zr_cuda_stream_get(const zr_device *dev, zr_stream_id which);
/* Free memory of the GPU in bytes now (cudaMemGetInfo), 0 if unknown or not cuda. */
size_t zr_cuda_free_memory(zr_device *dev);

/* The GPU's PCI location as placement.h wants it (domain << 8 | bus), or -1 (not cuda, or the
 * attributes are unavailable). */
int zr_cuda_pci_bus(const zr_device *dev);

/* Makes `waiter` wait (on the GPU, the host does not block) for all work enqueued on `producer`
 * so far: an event recorded on producer, waited for on waiter. Returns ZERO_OK or
 * ZERO_ERR_SYSTEM. waiter == producer: no-op. */
zero_status zr_cuda_order(zr_device *dev, zr_stream_id waiter, zr_stream_id producer);

/* cudaMemcpyAsync(cudaMemcpyDefault: any of host, pinned host, device by UVA) on `which`;
 * returns when enqueued. For overlap with the GPU the host side must be pinned
 * (zr_cuda_host_register). Returns ZERO_OK or ZERO_ERR_SYSTEM. */
zero_status zr_cuda_copy_async(zr_device *dev, zr_stream_id which, void *dst, const void *src,
                               size_t bytes);

/* Timed asynchronous copies on the copy stream, for pipelines (the offload's double-buffered
 * staging): a copy in slot `slot` (0..ZR_COPY_SLOTS-1) is bracketed by two timing events;
 * zr_cuda_copy_wait blocks until it is done and gives its duration on the GPU. A slot holds one
 * copy at a time: ZERO_ERR_STATE if it was not waited for (ZERO_ERR_INVALID: not cuda, bad
 * slot; neither queues anything). Copies run in issue order on the one copy stream, whatever
 * their slots. Memory as zr_cuda_copy_async. ZERO_ERR_SYSTEM: a CUDA call failed (recorded for
 * zr_cuda_take_error); the slot still needs a wait when the copy itself was queued. */
zero_status zr_cuda_copy_timed(zr_device *dev, int slot, void *dst, const void *src,
                               size_t bytes);
/* *seconds (if not NULL): the copy's GPU time; 0 for a slot with nothing in flight. */
zero_status zr_cuda_copy_wait(zr_device *dev, int slot, double *seconds);

/* Blocks until the work enqueued on `which` is done. Returns ZERO_OK or ZERO_ERR_SYSTEM (a
 * kernel or copy on that stream failed). */
zero_status zr_cuda_stream_sync(zr_device *dev, zr_stream_id which);

/* The first CUDA error a void zr_device_ops member met since the last call (those members cannot
 * return one): ZERO_OK, or ZERO_ERR_SYSTEM with its message copied to msg (if not NULL). The
 * error is cleared. Call it after a sequence of copies/kernels, e.g. once per step. */
zero_status zr_cuda_take_error(zr_device *dev, char *msg, size_t len);

/* Page-locks `bytes` of existing host memory at ptr (cudaHostRegister), so copies to and from it
 * run asynchronously at full PCIe/NVLink-C2C speed. Returns ZERO_OK, or ZERO_ERR_SYSTEM with the
 * reason in err (if not NULL); the memory stays usable (pageable) then, and the CUDA error is
 * cleared. Local, blocking. */
zero_status zr_cuda_host_register(void *ptr, size_t bytes, char *err, size_t len);
/* Undoes zr_cuda_host_register; no copy may still be in flight from or to ptr. */
void zr_cuda_host_unregister(void *ptr);

#endif
