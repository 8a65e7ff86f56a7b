/* comm_nccl.h — the nccl collective backend: the collectives of comm.h over device buffers,
 * enqueued on a communication stream, with a timeout that aborts the communicator instead of
 * hanging. Built only with ZERO_HAVE_NCCL (which implies ZERO_HAVE_CUDA).
 *
 * - Bootstrap: the NCCL unique id is made on rank 0 and broadcast over the zr_comm's MPI
 *   communicator, so an NCCL communicator always spans exactly the MPI world of that zr_comm.
 * - Counting: every collective adds its bus bytes and a call to the *same* zr_comm counters the
 *   mpi backend fills (bus_bytes[], calls[], or other_bus_bytes for ZR_TRAFFIC_OTHER), with the
 *   same nccl-tests convention (comm_mpi.c): all_gather and reduce_scatter n*(N-1) elements,
 *   all_reduce 2n(N-1)/N, broadcast n (0 at N = 1). Counted when enqueued. The report therefore
 *   shows one set of numbers whatever backend moved the bytes.
 * - Errors: written to c->err (where the engine already looks after a zr_comm call) and returned
 *   as ZERO_ERR_COMM (NCCL or CUDA failure, timeout, aborted communicator) or ZERO_ERR_INVALID
 *   (bad argument or call sequence).
 * - Streams: everything runs on one stream (zr_nccl_stream), normally the cuda device's comm
 *   stream (device_cuda.h). Before a collective reads a buffer written on the compute stream, make
 *   the comm stream wait for it (zr_cuda_order(dev, ZR_STREAM_COMM, ZR_STREAM_COMPUTE)); before
 *   compute work reads a result, make the compute stream wait (zr_cuda_order(dev,
 *   ZR_STREAM_COMPUTE, ZR_STREAM_COMM)) or wait on the host (zr_nccl_wait).
 * - Requests: req NULL = blocking (returns when the comm stream has drained, or on timeout); a
 *   request = asynchronous: an event recorded after the collective, completed by zr_nccl_wait or
 *   zr_nccl_test. Inside a group, collectives only queue: req must be NULL there, and the group's
 *   request (or blocking wait) is given to zr_nccl_group_end.
 * - Timeout: every wait (on a request, the stream, or NCCL's own progress of a non-blocking
 *   communicator) polls cudaEventQuery/cudaStreamQuery and ncclCommGetAsyncError; when an
 *   operation is not complete timeout_s seconds after it was enqueued (a blocking call: after the
 *   call began), or on an asynchronous NCCL error, it calls
 *   ncclCommAbort and returns ZERO_ERR_COMM. Every later call then returns ZERO_ERR_COMM. The
 *   other ranks stop the same way when their own timeout expires.
 * All functions must be called from one thread (the one that called zr_nccl_init). */
#ifndef ZERO_COMM_NCCL_H
#define ZERO_COMM_NCCL_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "runtime/coll.h"
#include "runtime/device.h"

typedef struct zr_nccl zr_nccl;

/* An asynchronous collective (or group). Start from ZR_NCCL_REQUEST_INIT; the event is created on
 * first use and kept for reuse until zr_nccl_request_destroy. */
typedef struct zr_nccl_request {
    cudaEvent_t event; /* recorded on the comm stream after the operation */
    int active;        /* 1 from enqueue until zr_nccl_wait / zr_nccl_test sees it done */
    double enqueued;   /* monotonic seconds at enqueue: the timeout counts from here */
} zr_nccl_request;

#define ZR_NCCL_REQUEST_INIT {NULL, 0, 0.0}

void zr_nccl_request_destroy(zr_nccl_request *req);

/* Creates the NCCL communicator of c's world on CUDA device `cuda_device` (made current): unique
 * id from rank 0 over MPI, a non-blocking communicator, initialisation polled under the timeout.
 * stream: the stream collectives run on (normally zr_cuda_stream_get(dev, ZR_STREAM_COMM)), or
 * NULL to create a non-blocking one. timeout_s: seconds a wait may take before the communicator
 * is aborted; <= 0 = wait forever (asynchronous errors still end it). c must outlive the result.
 * Collective (all ranks of c), blocking. On failure *out is NULL and c->err says why. */
zero_status zr_nccl_init(zr_nccl **out, zr_comm *c, int cuda_device, cudaStream_t stream,
                         double timeout_s);

/* Waits for the stream, finalises and destroys the communicator (or only frees what is left
 * after an abort). Collective when the communicator is healthy. NULL: no-op. */
void zr_nccl_destroy(zr_nccl *n);

/* ncclCommAbort now (for a caller that gives up, e.g. another rank failed); `why` goes into
 * c->err. Local. Later calls return ZERO_ERR_COMM. */
void zr_nccl_abort(zr_nccl *n, const char *why);

/* 1 after an abort (timeout, asynchronous error, zr_nccl_abort). */
int zr_nccl_aborted(const zr_nccl *n);

cudaStream_t zr_nccl_stream(const zr_nccl *n);
void zr_nccl_set_timeout(zr_nccl *n, double timeout_s);

/* The NCCL library's version code (ncclGetVersion), e.g. 22809 for 2.28.9; 0 if unknown. */
int zr_nccl_version(void);

/* The collectives of comm.h on device buffers (counts in elements, as there). Enqueued on the
 * comm stream. Collective. See the file comment for req, errors and counting.
 * all_gather: recv (count * world) with this rank's block at rank * count, in place. */
zero_status zr_nccl_all_gather(zr_nccl *n, void *recv, size_t count, zr_elem e, zr_traffic t,
                               zr_nccl_request *req);
/* recv (count) <- sum over ranks of send[rank * count ...] (send: count * world). */
zero_status zr_nccl_reduce_scatter(zr_nccl *n, const void *send, void *recv, size_t count,
                                   zr_elem e, zr_traffic t, zr_nccl_request *req);
/* buf (count), in place; ZR_OP_SUM or ZR_OP_MAX. */
zero_status zr_nccl_all_reduce(zr_nccl *n, void *buf, size_t count, zr_elem e, zr_redop op,
                               zr_traffic t, zr_nccl_request *req);
zero_status zr_nccl_broadcast(zr_nccl *n, void *buf, size_t count, zr_elem e, int root,
                              zr_traffic t, zr_nccl_request *req);

/* Several collectives as one launch (e.g. one per chunk): start, the collectives with req NULL,
 * end. Groups nest; the outermost end launches them, and its req (NULL = block until the comm
 * stream drains) covers all of them. Collective. */
zero_status zr_nccl_group_start(zr_nccl *n);
zero_status zr_nccl_group_end(zr_nccl *n, zr_nccl_request *req);

/* Blocks until req's operation is complete (req NULL: all work on the comm stream), under the
 * timeout. Local. An inactive request returns ZERO_OK at once. */
zero_status zr_nccl_wait(zr_nccl *n, zr_nccl_request *req);

/* *done = 1 when req's operation is complete (then req is inactive), else 0; also checks for
 * asynchronous errors and the timeout (counted from the request's enqueue). Local, non-blocking. */
zero_status zr_nccl_test(zr_nccl *n, zr_nccl_request *req, int *done);

/* The nccl backend of the collective interface (coll.h) on dev's comm stream (dev: a cuda
 * device, which must outlive it): zr_nccl_init, then every collective ordered after dev's
 * compute stream. Collective, blocking; on failure comm->err says why. */
zero_status zr_coll_nccl_init(zr_coll *c, zr_comm *comm, zr_device *dev, double timeout_s);

#endif
