/* device_cuda.c — the "cuda" device backend (device_cuda.h): stream-ordered allocations that
 * fail softly (NULL, CUDA's last error cleared, so the accounting reports ZERO_ERR_OOM and the
 * process goes on), the zr_device_ops members on the compute stream, the copy and comm streams
 * with one reusable event each for cross-stream ordering, and pinned host registration. */
#include "runtime/device_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/kernels.h"
#include "kernels/kernels_cuda.h"
#include "util/log.h"

typedef struct cuda_impl {
    int ordinal;                          /* CUDA device */
    int pools;                            /* 1: cudaMallocAsync/cudaFreeAsync are supported */
    int own_compute;                      /* 1: the compute stream was created here */
    cudaStream_t stream[ZR_STREAM_NUM];   /* compute, copy, comm */
    cudaEvent_t event[ZR_STREAM_NUM];     /* last point recorded on each stream (reused) */
    double *norm_dev;                     /* (2 + blocks,) device: [0] sum, [1] nonfinite flag
                                             (an int in a double slot), [2..] block sums */
    size_t norm_dev_len;                  /* doubles in norm_dev */
    double *norm_host;                    /* (2,) pinned host: [0] and [1] of norm_dev copied back */
    cudaEvent_t slot_start[ZR_COPY_SLOTS], slot_end[ZR_COPY_SLOTS]; /* timed copies (timing on) */
    int slot_busy[ZR_COPY_SLOTS];         /* 1: a copy was issued in the slot and not waited for */
    int slot_timed[ZR_COPY_SLOTS];        /* 1: both of its events were recorded */
    cudaError_t first_error;              /* first failure of a void op since zr_cuda_take_error */
    char first_msg[256];
} cuda_impl;

static const zr_device_ops cuda_ops; /* defined at the end of the file */

/* ---- errors ------------------------------------------------------------------------------- */

/* Keeps the first failure of a void op (for zr_cuda_take_error), logs it, and clears CUDA's last
 * error so a later launch check does not take it for its own. Returns 1 on success. */
static int op_ok(cuda_impl *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess)
        return 1;
    (void)cudaGetLastError();
    if (c->first_error == cudaSuccess) {
        c->first_error = e;
        snprintf(c->first_msg, sizeof c->first_msg, "%s: %s (%s)", what, cudaGetErrorString(e),
                 cudaGetErrorName(e));
    }
    ZR_WARN(ZR_SUB_ALLOC, "cuda device %d: %s: %s", c->ordinal, what, cudaGetErrorString(e));
    return 0;
}

/* For functions that return a status: message into err, CUDA's last error cleared. */
#define CUDA_GOTO(call, label)                                                                 \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            (void)cudaGetLastError();                                                          \
            if (err && len)                                                                    \
                snprintf(err, len, "%s failed: %s (%s:%d)", #call, cudaGetErrorString(e_),    \
                         __FILE__, __LINE__);                                                  \
            goto label;                                                                        \
        }                                                                                      \
    } while (0)

static zero_status cuda_status(cuda_impl *c, cudaError_t e, const char *what)
{
    return op_ok(c, e, what) ? ZERO_OK : ZERO_ERR_SYSTEM;
}

/* ---- probing ------------------------------------------------------------------------------ */

int zr_cuda_usable(char *why, size_t len)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess && count > 0)
        return 1;
    (void)cudaGetLastError();
    if (!why || !len)
        return 0;
    int runtime = 0, driver = 0;
    cudaRuntimeGetVersion(&runtime);
    cudaDriverGetVersion(&driver);
    (void)cudaGetLastError();
    if (e == cudaErrorInsufficientDriver && driver == 0)
        snprintf(why, len, "no NVIDIA driver (libcuda) is installed or loadable");
    else if (e == cudaErrorInsufficientDriver)
        snprintf(why, len,
                 "the NVIDIA driver supports CUDA %d.%d, older than this build's runtime %d.%d",
                 driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    else if (e == cudaErrorNoDevice || (e == cudaSuccess && count == 0))
        snprintf(why, len, "no CUDA device is visible to this process (see CUDA_VISIBLE_DEVICES)");
    else
        snprintf(why, len, "cudaGetDeviceCount failed: %s (%s)", cudaGetErrorString(e),
                 cudaGetErrorName(e));
    return 0;
}

int zr_cuda_device_count(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return count;
}

/* ---- zr_device_ops ------------------------------------------------------------------------ */

static void use_device(const cuda_impl *c)
{
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != c->ordinal)
        cudaSetDevice(c->ordinal);
}

static cudaError_t order_on(cuda_impl *c, zr_stream_id waiter, zr_stream_id producer)
{
    cudaError_t e = cudaEventRecord(c->event[producer], c->stream[producer]);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent(c->stream[waiter], c->event[producer], 0);
    return e;
}

static cudaError_t sync_all(cuda_impl *c)
{
    cudaError_t first = cudaSuccess;
    for (int i = 0; i < ZR_STREAM_NUM; i++) {
        cudaError_t e = cudaStreamSynchronize(c->stream[i]);
        if (first == cudaSuccess)
            first = e;
    }
    return first;
}

static void *raw_alloc(cuda_impl *c, size_t bytes)
{
    void *p = NULL;
    cudaError_t e = c->pools ? cudaMallocAsync(&p, bytes, c->stream[ZR_STREAM_COMPUTE])
                             : cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation && c->pools) {
        /* Memory given back with cudaFreeAsync returns to the pool only when the free has run on
         * its stream: wait for that once, then ask again. */
        (void)cudaGetLastError();
        sync_all(c);
        e = cudaMallocAsync(&p, bytes, c->stream[ZR_STREAM_COMPUTE]);
    }
    if (e != cudaSuccess) {
        /* Not sticky, but left as the last error it would fail the next launch check. */
        (void)cudaGetLastError();
        ZR_INFO(ZR_SUB_ALLOC, "cuda device %d: allocation of %zu bytes failed: %s", c->ordinal,
                bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void raw_free(cuda_impl *c, void *ptr)
{
    if (c->pools) {
        /* Free after everything already enqueued on the copy and comm streams, too. */
        op_ok(c, order_on(c, ZR_STREAM_COMPUTE, ZR_STREAM_COPY), "ordering a free");
        op_ok(c, order_on(c, ZR_STREAM_COMPUTE, ZR_STREAM_COMM), "ordering a free");
        op_ok(c, cudaFreeAsync(ptr, c->stream[ZR_STREAM_COMPUTE]), "cudaFreeAsync");
    } else {
        op_ok(c, sync_all(c), "synchronizing before cudaFree");
        op_ok(c, cudaFree(ptr), "cudaFree");
    }
}

/* Zero-filled on the compute stream; the copy and comm streams are made to wait for the fill, so
 * the memory is ready on all three without blocking the host. */
static void *cuda_alloc(zr_device *dev, size_t bytes)
{
    cuda_impl *c = dev->impl;
    use_device(c);
    void *p = raw_alloc(c, bytes);
    if (!p)
        return NULL;
    cudaError_t e = cudaMemsetAsync(p, 0, bytes, c->stream[ZR_STREAM_COMPUTE]);
    if (e == cudaSuccess)
        e = order_on(c, ZR_STREAM_COPY, ZR_STREAM_COMPUTE);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent(c->stream[ZR_STREAM_COMM], c->event[ZR_STREAM_COMPUTE], 0);
    if (!op_ok(c, e, "zero fill of a new allocation")) {
        raw_free(c, p);
        return NULL;
    }
    return p;
}

static void cuda_free(zr_device *dev, void *ptr, size_t bytes)
{
    cuda_impl *c = dev->impl;
    use_device(c);
    raw_free(c, ptr);
}

/* Runs on the compute stream and waits for it: ordered after the compute work before it, and
 * complete on return (device.h). Any mix of host and device pointers (cudaMemcpyDefault). */
static void cuda_copy(zr_device *dev, void *dst, const void *src, size_t bytes)
{
    cuda_impl *c = dev->impl;
    if (bytes == 0 || dst == src)
        return;
    use_device(c);
    cudaStream_t s = c->stream[ZR_STREAM_COMPUTE];
    if (op_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s), "cudaMemcpyAsync"))
        op_ok(c, cudaStreamSynchronize(s), "copy");
}

static void cuda_synchronize(zr_device *dev)
{
    cuda_impl *c = dev->impl;
    use_device(c);
    op_ok(c, sync_all(c), "synchronize");
}

static void cuda_zero(zr_device *dev, void *dst, size_t bytes)
{
    cuda_impl *c = dev->impl;
    if (bytes == 0)
        return;
    use_device(c);
    cudaStream_t s = c->stream[ZR_STREAM_COMPUTE];
    if (op_ok(c, cudaMemsetAsync(dst, 0, bytes, s), "cudaMemsetAsync"))
        op_ok(c, cudaStreamSynchronize(s), "zero");
}

static void cuda_add(zr_device *dev, void *dst, zero_dtype dst_type, const void *src,
                     zero_dtype src_type, size_t n)
{
    cuda_impl *c = dev->impl;
    use_device(c);
    cudaStream_t s = c->stream[ZR_STREAM_COMPUTE];
    if (op_ok(c, (cudaError_t)zk_cuda_add(dst, dst_type, src, src_type, n, s), "zk_cuda_add"))
        op_ok(c, cudaStreamSynchronize(s), "add");
}

static void cuda_adamw(zr_device *dev, float *master, float *m, float *v, const void *grad,
                       zero_dtype grad_type, void *work, zero_dtype work_type, size_t n,
                       const struct zk_adamw_params *p)
{
    cuda_impl *c = dev->impl;
    use_device(c);
    cudaStream_t s = c->stream[ZR_STREAM_COMPUTE];
    cudaError_t e = (cudaError_t)zk_cuda_adamw(master, m, v, grad, grad_type, work, work_type, n,
                                               p, s);
    if (op_ok(c, e, "zk_cuda_adamw"))
        op_ok(c, cudaStreamSynchronize(s), "adamw");
}

/* The same sum as zk_sq_norm, bit for bit (zero_math.h). The scratch grows to the largest n seen
 * and is the backend's own (not in the labelled accounting: 8 bytes per 4096 elements). On a
 * CUDA failure the result is nan and the error waits in zr_cuda_take_error. */
static double cuda_sq_norm(zr_device *dev, const void *x, zero_dtype type, size_t n,
                           int *nonfinite)
{
    cuda_impl *c = dev->impl;
    use_device(c);
    cudaStream_t s = c->stream[ZR_STREAM_COMPUTE];
    const size_t need = 2 + zk_cuda_sq_norm_scratch(n);
    if (need > c->norm_dev_len) {
        if (c->norm_dev)
            raw_free(c, c->norm_dev);
        c->norm_dev_len = 0;
        c->norm_dev = raw_alloc(c, need * sizeof(double));
        if (!c->norm_dev) {
            op_ok(c, cudaErrorMemoryAllocation, "squared-norm scratch");
            return NAN;
        }
        c->norm_dev_len = need;
    }
    int *flag = (int *)(c->norm_dev + 1);
    cudaError_t e = cudaMemsetAsync(flag, 0, sizeof *flag, s);
    if (e == cudaSuccess)
        e = (cudaError_t)zk_cuda_sq_norm(x, type, n, c->norm_dev + 2, c->norm_dev, 0, flag, s);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(c->norm_host, c->norm_dev, 2 * sizeof(double),
                            cudaMemcpyDeviceToHost, s);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(s);
    if (!op_ok(c, e, "squared norm"))
        return NAN;
    int found;
    memcpy(&found, &c->norm_host[1], sizeof found);
    if (found && nonfinite)
        *nonfinite = 1;
    return c->norm_host[0];
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* Frees in reverse order of creation; safe on a partly built impl (zeroed members skipped). */
static void impl_release(cuda_impl *c)
{
    if (!c)
        return;
    for (int i = 0; i < ZR_STREAM_NUM; i++)
        if (c->stream[i])
            cudaStreamSynchronize(c->stream[i]);
    if (c->norm_dev) { /* all streams are idle: nothing can still use it */
        if (c->pools)
            cudaFreeAsync(c->norm_dev, c->stream[ZR_STREAM_COMPUTE]);
        else
            cudaFree(c->norm_dev);
        cudaStreamSynchronize(c->stream[ZR_STREAM_COMPUTE]);
    }
    if (c->norm_host)
        cudaFreeHost(c->norm_host);
    for (int i = 0; i < ZR_STREAM_NUM; i++)
        if (c->event[i])
            cudaEventDestroy(c->event[i]);
    for (int i = 0; i < ZR_COPY_SLOTS; i++) {
        if (c->slot_start[i])
            cudaEventDestroy(c->slot_start[i]);
        if (c->slot_end[i])
            cudaEventDestroy(c->slot_end[i]);
    }
    for (int i = ZR_STREAM_COPY; i < ZR_STREAM_NUM; i++)
        if (c->stream[i])
            cudaStreamDestroy(c->stream[i]);
    if (c->own_compute && c->stream[ZR_STREAM_COMPUTE])
        cudaStreamDestroy(c->stream[ZR_STREAM_COMPUTE]);
    (void)cudaGetLastError();
    free(c);
}

zero_status zr_device_cuda_init(zr_device *dev, int local_rank, size_t capacity,
                                void *compute_stream, char *err, size_t len)
{
    memset(dev, 0, sizeof *dev);
    if (err && len)
        err[0] = '\0';
    char why[256];
    if (!zr_cuda_usable(why, sizeof why)) {
        if (err && len)
            snprintf(err, len, "no usable GPU: %s", why);
        return ZERO_ERR_UNSUPPORTED;
    }
    int count = 0;
    cudaGetDeviceCount(&count);
    cuda_impl *c = calloc(1, sizeof *c);
    if (!c) {
        if (err && len)
            snprintf(err, len, "out of host memory for the cuda backend's state");
        return ZERO_ERR_SYSTEM;
    }
    c->ordinal = (local_rank < 0 ? 0 : local_rank) % count;
    CUDA_GOTO(cudaSetDevice(c->ordinal), fail);
    CUDA_GOTO(cudaDeviceGetAttribute(&c->pools, cudaDevAttrMemoryPoolsSupported, c->ordinal),
              fail);
    int least = 0, greatest = 0; /* numerically: greatest priority is the lowest number */
    CUDA_GOTO(cudaDeviceGetStreamPriorityRange(&least, &greatest), fail);
    if (compute_stream) {
        c->stream[ZR_STREAM_COMPUTE] = (cudaStream_t)compute_stream;
    } else {
        /* Blocking: ordered with the legacy default stream a simple model launches on. */
        CUDA_GOTO(cudaStreamCreateWithFlags(&c->stream[ZR_STREAM_COMPUTE], cudaStreamDefault),
                  fail);
        c->own_compute = 1;
    }
    CUDA_GOTO(cudaStreamCreateWithFlags(&c->stream[ZR_STREAM_COPY], cudaStreamNonBlocking), fail);
    /* Collectives first: a reduce-scatter waiting behind queued kernels stalls every rank. */
    CUDA_GOTO(cudaStreamCreateWithPriority(&c->stream[ZR_STREAM_COMM], cudaStreamNonBlocking,
                                           greatest),
              fail);
    for (int i = 0; i < ZR_STREAM_NUM; i++)
        CUDA_GOTO(cudaEventCreateWithFlags(&c->event[i], cudaEventDisableTiming), fail);
    for (int i = 0; i < ZR_COPY_SLOTS; i++) {
        CUDA_GOTO(cudaEventCreate(&c->slot_start[i]), fail);
        CUDA_GOTO(cudaEventCreate(&c->slot_end[i]), fail);
    }
    CUDA_GOTO(cudaMallocHost((void **)&c->norm_host, 2 * sizeof(double)), fail);

    struct cudaDeviceProp prop;
    CUDA_GOTO(cudaGetDeviceProperties(&prop, c->ordinal), fail);
    dev->ops = &cuda_ops;
    dev->impl = c;
    dev->capacity = capacity;
    ZR_INFO(ZR_SUB_INIT,
            "cuda device %d of %d: %s, compute capability %d.%d, %.1f GiB; stream-ordered "
            "allocator %s; compute stream %s; cap %.1f MiB",
            c->ordinal, count, prop.name, prop.major, prop.minor,
            (double)prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0), c->pools ? "on" : "off",
            c->own_compute ? "created" : "given", (double)capacity / (1024.0 * 1024.0));
    return ZERO_OK;
fail:
    impl_release(c);
    memset(dev, 0, sizeof *dev);
    return ZERO_ERR_SYSTEM;
}

void zr_device_cuda_destroy(zr_device *dev)
{
    if (!zr_device_is_cuda(dev))
        return;
    cuda_impl *c = dev->impl;
    use_device(c);
    if (dev->current_total)
        ZR_WARN(ZR_SUB_ALLOC, "cuda device %d destroyed with %zu bytes still allocated",
                c->ordinal, dev->current_total);
    impl_release(c);
    memset(dev, 0, sizeof *dev);
}

int zr_device_is_cuda(const zr_device *dev)
{
    return dev && dev->ops == &cuda_ops && dev->impl;
}

/* ---- streams, events, copies --------------------------------------------------------------- */

int zr_cuda_device_ordinal(const zr_device *dev)
{
    return zr_device_is_cuda(dev) ? ((const cuda_impl *)dev->impl)->ordinal : -1;
}

size_t zr_cuda_free_memory(zr_device *dev)
{
    if (!zr_device_is_cuda(dev))
        return 0;
    cuda_impl *c = dev->impl;
    use_device(c);
    size_t free_b = 0, total = 0;
    if (cudaMemGetInfo(&free_b, &total) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return free_b;
}

int zr_cuda_pci_bus(const zr_device *dev)
{
    int ord = zr_cuda_device_ordinal(dev), domain = 0, bus = 0;
    if (ord < 0 || cudaDeviceGetAttribute(&domain, cudaDevAttrPciDomainId, ord) != cudaSuccess ||
        cudaDeviceGetAttribute(&bus, cudaDevAttrPciBusId, ord) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1;
    }
    return domain << 8 | (bus & 0xff);
}

cudaStream_t zr_cuda_stream_get(const zr_device *dev, zr_stream_id which)
{
    if (!zr_device_is_cuda(dev) || (unsigned)which >= ZR_STREAM_NUM)
        return NULL;
    return ((const cuda_impl *)dev->impl)->stream[which];
}

zero_status zr_cuda_order(zr_device *dev, zr_stream_id waiter, zr_stream_id producer)
{
    if (!zr_device_is_cuda(dev) || (unsigned)waiter >= ZR_STREAM_NUM ||
        (unsigned)producer >= ZR_STREAM_NUM)
        return ZERO_ERR_INVALID;
    if (waiter == producer)
        return ZERO_OK;
    cuda_impl *c = dev->impl;
    use_device(c);
    return cuda_status(c, order_on(c, waiter, producer), "ordering streams");
}

zero_status zr_cuda_copy_async(zr_device *dev, zr_stream_id which, void *dst, const void *src,
                               size_t bytes)
{
    if (!zr_device_is_cuda(dev) || (unsigned)which >= ZR_STREAM_NUM)
        return ZERO_ERR_INVALID;
    if (bytes == 0 || dst == src)
        return ZERO_OK;
    cuda_impl *c = dev->impl;
    use_device(c);
    return cuda_status(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream[which]),
                       "cudaMemcpyAsync");
}

zero_status zr_cuda_copy_timed(zr_device *dev, int slot, void *dst, const void *src,
                               size_t bytes)
{
    if (!zr_device_is_cuda(dev) || slot < 0 || slot >= ZR_COPY_SLOTS)
        return ZERO_ERR_INVALID;
    cuda_impl *c = dev->impl;
    if (c->slot_busy[slot])
        return ZERO_ERR_STATE;
    use_device(c);
    cudaStream_t s = c->stream[ZR_STREAM_COPY];
    cudaError_t e = cudaEventRecord(c->slot_start[slot], s);
    if (e == cudaSuccess)
        e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s);
    if (e != cudaSuccess) /* nothing in flight */
        return cuda_status(c, e, "timed copy");
    c->slot_busy[slot] = 1; /* the copy is queued: the slot must be waited for */
    e = cudaEventRecord(c->slot_end[slot], s);
    c->slot_timed[slot] = e == cudaSuccess;
    return cuda_status(c, e, "timed copy (end event)");
}

zero_status zr_cuda_copy_wait(zr_device *dev, int slot, double *seconds)
{
    if (seconds)
        *seconds = 0.0;
    if (!zr_device_is_cuda(dev) || slot < 0 || slot >= ZR_COPY_SLOTS)
        return ZERO_ERR_INVALID;
    cuda_impl *c = dev->impl;
    if (!c->slot_busy[slot])
        return ZERO_OK;
    use_device(c);
    c->slot_busy[slot] = 0;
    if (!c->slot_timed[slot]) /* no end event to wait for: the whole copy stream then */
        return cuda_status(c, cudaStreamSynchronize(c->stream[ZR_STREAM_COPY]),
                           "waiting for an untimed copy");
    cudaError_t e = cudaEventSynchronize(c->slot_end[slot]);
    float ms = 0.0f;
    if (e == cudaSuccess)
        e = cudaEventElapsedTime(&ms, c->slot_start[slot], c->slot_end[slot]);
    if (e == cudaSuccess && seconds)
        *seconds = (double)ms * 1e-3;
    return cuda_status(c, e, "waiting for a timed copy");
}

zero_status zr_cuda_stream_sync(zr_device *dev, zr_stream_id which)
{
    if (!zr_device_is_cuda(dev) || (unsigned)which >= ZR_STREAM_NUM)
        return ZERO_ERR_INVALID;
    cuda_impl *c = dev->impl;
    use_device(c);
    return cuda_status(c, cudaStreamSynchronize(c->stream[which]), "cudaStreamSynchronize");
}

zero_status zr_cuda_take_error(zr_device *dev, char *msg, size_t len)
{
    if (!zr_device_is_cuda(dev))
        return ZERO_ERR_INVALID;
    cuda_impl *c = dev->impl;
    if (c->first_error == cudaSuccess) {
        if (msg && len)
            msg[0] = '\0';
        return ZERO_OK;
    }
    if (msg && len)
        snprintf(msg, len, "%s", c->first_msg);
    c->first_error = cudaSuccess;
    c->first_msg[0] = '\0';
    return ZERO_ERR_SYSTEM;
}

/* ---- pinned host memory ------------------------------------------------------------------- */

zero_status zr_cuda_host_register(void *ptr, size_t bytes, char *err, size_t len)
{
    if (!ptr || bytes == 0)
        return ZERO_OK;
    cudaError_t e = cudaHostRegister(ptr, bytes, cudaHostRegisterDefault);
    if (e == cudaSuccess)
        return ZERO_OK;
    (void)cudaGetLastError();
    if (err && len)
        snprintf(err, len, "cudaHostRegister of %zu bytes failed: %s (the memory stays pageable)",
                 bytes, cudaGetErrorString(e));
    ZR_WARN(ZR_SUB_OFFLOAD, "cudaHostRegister of %zu bytes failed: %s", bytes,
            cudaGetErrorString(e));
    return ZERO_ERR_SYSTEM;
}

void zr_cuda_host_unregister(void *ptr)
{
    if (ptr && cudaHostUnregister(ptr) != cudaSuccess)
        (void)cudaGetLastError();
}

/* ---- the zr_device_ops members that device.h adds over the kernels ------------------------- */

static zero_status op_stream_sync(zr_device *dev, zr_stream_id which)
{
    return zr_cuda_stream_sync(dev, which);
}

static void *op_stream(const zr_device *dev, zr_stream_id which)
{
    return (void *)zr_cuda_stream_get(dev, which);
}

static zero_status op_host_register(zr_device *dev, void *ptr, size_t bytes, char *err, size_t len)
{
    return zr_cuda_host_register(ptr, bytes, err, len);
}

static void op_host_unregister(zr_device *dev, void *ptr) { zr_cuda_host_unregister(ptr); }

static const zr_device_ops cuda_ops = {
    .name = "cuda",
    .caps = ZR_DEV_CAP_ASYNC_COPY | ZR_DEV_CAP_PINNING,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .copy = cuda_copy,
    .synchronize = cuda_synchronize,
    .zero = cuda_zero,
    .add = cuda_add,
    .sq_norm = cuda_sq_norm,
    .adamw = cuda_adamw,
    .order = zr_cuda_order,
    .stream_sync = op_stream_sync,
    .stream = op_stream,
    .copy_timed = zr_cuda_copy_timed,
    .copy_wait = zr_cuda_copy_wait,
    .host_register = op_host_register,
    .host_unregister = op_host_unregister,
    .take_error = zr_cuda_take_error,
    .free_memory = zr_cuda_free_memory,
    .pci_bus = zr_cuda_pci_bus,
    .destroy = zr_device_cuda_destroy,
};
