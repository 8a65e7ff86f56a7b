/* comm_nccl.c — the nccl collective backend (comm_nccl.h): a non-blocking NCCL communicator
 * bootstrapped over MPI, collectives on one stream, and waits that poll for completion,
 * asynchronous errors and a timeout, aborting the communicator rather than hanging. */
#include "runtime/comm_nccl.h"
#include "runtime/device_cuda.h"

#include <nccl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"

#if NCCL_VERSION_CODE < NCCL_VERSION(2, 14, 0)
#error "the nccl backend needs NCCL 2.14 or newer (non-blocking communicators, ncclCommFinalize)"
#endif

struct zr_nccl {
    zr_comm *c;            /* bootstrap, world, bus-byte counters, error message */
    ncclComm_t comm;       /* NULL once aborted or destroyed */
    cudaStream_t stream;   /* every collective runs here */
    int own_stream;        /* 1: created by zr_nccl_init */
    int device;            /* CUDA ordinal */
    int group_depth;       /* open zr_nccl_group_start calls */
    int group_ops;         /* collectives queued in the open group */
    int aborted;
    double timeout_s;      /* <= 0: none */
    char last_op[96];      /* latest collective or group, for messages */
    char abort_reason[192];
};

/* ---- time and polling --------------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Collectives of a step usually finish within microseconds of the wait, so poll hot at first;
 * then sleep in growing steps so a long wait does not take a core from the ranks on this node
 * (CI and tests oversubscribe cores). */
static void backoff(unsigned *polls)
{
    ++*polls;
    if (*polls < 512)
        return;
    struct timespec ts = {0, *polls < 4096 ? 20000L : 200000L};
    nanosleep(&ts, NULL);
}

static int timed_out(const zr_nccl *n, double since)
{
    return n->timeout_s > 0 && now_s() - since > n->timeout_s;
}

/* ---- errors ------------------------------------------------------------------------------- */

static zero_status fail(zr_nccl *n, zero_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static zero_status fail(zr_nccl *n, zero_status s, const char *fmt, ...)
{
    char msg[ZR_ERROR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return zr_fail(&n->c->err, s, "%s", msg);
}

/* Aborts the communicator (kernels in flight stop, resources go) and returns ZERO_ERR_COMM with
 * the reason in c->err. Every later call fails with that reason. */
static zero_status abort_with(zr_nccl *n, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static zero_status abort_with(zr_nccl *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->abort_reason, sizeof n->abort_reason, fmt, ap);
    va_end(ap);
    if (n->comm) {
        ncclCommAbort(n->comm);
        n->comm = NULL;
    }
    n->aborted = 1;
    (void)cudaGetLastError();
    return fail(n, ZERO_ERR_COMM, "%s; the NCCL communicator was aborted", n->abort_reason);
}

/* An NCCL failure: argument and usage errors leave the communicator usable; anything else
 * (system, internal, remote errors) means it cannot be trusted and is aborted. */
static zero_status nccl_error(zr_nccl *n, ncclResult_t rc, const char *what)
{
    const char *detail = ncclGetLastError(n->comm);
    if (rc == ncclInvalidArgument || rc == ncclInvalidUsage)
        return fail(n, ZERO_ERR_COMM, "%s: %s (%s)", what, ncclGetErrorString(rc),
                    detail ? detail : "");
    return abort_with(n, "%s: %s (%s)", what, ncclGetErrorString(rc), detail ? detail : "");
}

/* Refuses calls on an aborted communicator. */
static zero_status usable(zr_nccl *n)
{
    if (!n)
        return ZERO_ERR_INVALID;
    if (n->aborted || !n->comm)
        return fail(n, ZERO_ERR_COMM, "the NCCL communicator was aborted earlier: %s",
                    n->abort_reason[0] ? n->abort_reason : "destroyed");
    return ZERO_OK;
}

/* ---- completion --------------------------------------------------------------------------- */

/* On a non-blocking communicator a call may return ncclInProgress: NCCL is still working on it,
 * and no other NCCL call (nor CUDA work on its stream) may come before the state leaves
 * ncclInProgress. Polls that state under the timeout. */
static zero_status settle(zr_nccl *n, ncclResult_t rc, const char *what, double since)
{
    unsigned polls = 0;
    while (rc == ncclInProgress) {
        ncclResult_t q = ncclCommGetAsyncError(n->comm, &rc);
        if (q != ncclSuccess)
            rc = q;
        if (rc != ncclInProgress)
            break;
        if (timed_out(n, since))
            return abort_with(n, "%s did not complete within %.0f s (ZERO_TIMEOUT_S)", what,
                              n->timeout_s);
        backoff(&polls);
    }
    return rc == ncclSuccess ? ZERO_OK : nccl_error(n, rc, what);
}

/* Until `event` (NULL: the whole stream) has completed: polls CUDA, NCCL's asynchronous error and
 * the clock. */
static zero_status wait_until(zr_nccl *n, cudaEvent_t event, double since, const char *what)
{
    unsigned polls = 0;
    for (;;) {
        cudaError_t q = event ? cudaEventQuery(event) : cudaStreamQuery(n->stream);
        if (q == cudaSuccess)
            return ZERO_OK;
        if (q != cudaErrorNotReady) {
            (void)cudaGetLastError();
            return abort_with(n, "CUDA error while waiting for %s: %s", what,
                              cudaGetErrorString(q));
        }
        ncclResult_t st = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(n->comm, &st);
        if (r != ncclSuccess)
            st = r;
        if (st != ncclSuccess && st != ncclInProgress)
            return abort_with(n, "asynchronous NCCL error during %s: %s (%s)", what,
                              ncclGetErrorString(st), ncclGetLastError(n->comm));
        if (timed_out(n, since))
            return abort_with(n,
                              "%s did not complete within %.0f s (ZERO_TIMEOUT_S): a rank may "
                              "have stopped or called collectives in another order",
                              what, n->timeout_s);
        backoff(&polls);
    }
}

/* After an enqueue outside a group: record the request, or block (req NULL). */
static zero_status complete(zr_nccl *n, zr_nccl_request *req, double since)
{
    if (!req)
        return wait_until(n, NULL, since, n->last_op);
    cudaError_t e = cudaSuccess;
    if (!req->event)
        e = cudaEventCreateWithFlags(&req->event, cudaEventDisableTiming);
    if (e == cudaSuccess)
        e = cudaEventRecord(req->event, n->stream);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return abort_with(n, "recording the completion of %s: %s", n->last_op,
                          cudaGetErrorString(e));
    }
    req->active = 1;
    req->enqueued = since;
    return ZERO_OK;
}

void zr_nccl_request_destroy(zr_nccl_request *req)
{
    if (req && req->event) {
        cudaEventDestroy(req->event);
        (void)cudaGetLastError();
    }
    if (req) {
        req->event = NULL;
        req->active = 0;
    }
}

zero_status zr_nccl_wait(zr_nccl *n, zr_nccl_request *req)
{
    zero_status s = usable(n);
    if (s)
        return s;
    if (!req)
        return wait_until(n, NULL, now_s(), "the collectives on the comm stream");
    if (!req->active)
        return ZERO_OK;
    req->active = 0;
    return wait_until(n, req->event, req->enqueued, n->last_op);
}

zero_status zr_nccl_test(zr_nccl *n, zr_nccl_request *req, int *done)
{
    *done = 0;
    zero_status s = usable(n);
    if (s)
        return s;
    if (!req || !req->active) {
        *done = 1;
        return ZERO_OK;
    }
    cudaError_t q = cudaEventQuery(req->event);
    if (q == cudaSuccess) {
        req->active = 0;
        *done = 1;
        return ZERO_OK;
    }
    if (q != cudaErrorNotReady) {
        (void)cudaGetLastError();
        req->active = 0;
        return abort_with(n, "CUDA error while testing %s: %s", n->last_op, cudaGetErrorString(q));
    }
    ncclResult_t st = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(n->comm, &st);
    if (r != ncclSuccess)
        st = r;
    if (st != ncclSuccess && st != ncclInProgress) {
        req->active = 0;
        return abort_with(n, "asynchronous NCCL error during %s: %s (%s)", n->last_op,
                          ncclGetErrorString(st), ncclGetLastError(n->comm));
    }
    if (timed_out(n, req->enqueued)) {
        req->active = 0;
        return abort_with(n, "%s did not complete within %.0f s (ZERO_TIMEOUT_S)", n->last_op,
                          n->timeout_s);
    }
    return ZERO_OK;
}

/* ---- collectives -------------------------------------------------------------------------- */

static int nccl_type(zr_elem e, ncclDataType_t *t)
{
    switch (e) {
    case ZR_ELEM_F32: *t = ncclFloat32; return 1;
    case ZR_ELEM_BF16: *t = ncclBfloat16; return 1;
    case ZR_ELEM_F16: *t = ncclFloat16; return 1;
    case ZR_ELEM_F64: *t = ncclFloat64; return 1;
    case ZR_ELEM_I64: *t = ncclInt64; return 1;
    case ZR_ELEM_BYTE: *t = ncclUint8; return 1;
    default: return 0;
    }
}

/* Common entry: state and argument checks, the type, a description for messages. */
static zero_status begin(zr_nccl *n, zr_coll_kind kind, size_t count_, zr_elem e, zr_nccl_request *req,
                         ncclDataType_t *t)
{
    zero_status s = usable(n);
    if (s)
        return s;
    if (!nccl_type(e, t))
        return fail(n, ZERO_ERR_INVALID, "%s: element type %d has no NCCL type", zr_coll_name(kind),
                    (int)e);
    if (req && n->group_depth > 0)
        return fail(n, ZERO_ERR_INVALID,
                    "%s inside a group takes no request: pass it to zr_nccl_group_end",
                    zr_coll_name(kind));
    if (req && req->active)
        return fail(n, ZERO_ERR_INVALID, "%s: the request is still active (wait for it first)",
                    zr_coll_name(kind));
    snprintf(n->last_op, sizeof n->last_op, "%s of %zu elements of %zu bytes", zr_coll_name(kind),
             count_, zr_elem_size(e));
    return ZERO_OK;
}

/* Common exit: the enqueue's own completion, then the request or the blocking wait (outside a
 * group; inside, zr_nccl_group_end does that). */
static zero_status finish(zr_nccl *n, ncclResult_t rc, zr_nccl_request *req, double since)
{
    zero_status s = settle(n, rc, n->last_op, since);
    if (s)
        return s;
    if (n->group_depth > 0) {
        n->group_ops++;
        return ZERO_OK;
    }
    return complete(n, req, since);
}

zero_status zr_nccl_all_gather(zr_nccl *n, void *recv, size_t count_, zr_elem e,
                               zr_traffic traffic, zr_nccl_request *req)
{
    ncclDataType_t t = ncclFloat32;
    zero_status s = begin(n, ZR_COLL_ALL_GATHER, count_, e, req, &t);
    if (s)
        return s;
    const double since = now_s();
    zr_comm *c = n->c;
    const size_t es = zr_elem_size(e);
    zr_comm_count(c, ZR_COLL_ALL_GATHER, count_, e, traffic);
    /* In place: NCCL's in-place form sends from this rank's own block of recv. */
    const void *send = (const char *)recv + (size_t)c->rank * count_ * es;
    return finish(n, ncclAllGather(send, recv, count_, t, n->comm, n->stream), req, since);
}

zero_status zr_nccl_reduce_scatter(zr_nccl *n, const void *send, void *recv, size_t count_,
                                   zr_elem e, zr_traffic traffic, zr_nccl_request *req)
{
    ncclDataType_t t = ncclFloat32;
    zero_status s = begin(n, ZR_COLL_REDUCE_SCATTER, count_, e, req, &t);
    if (s)
        return s;
    const double since = now_s();
    zr_comm *c = n->c;
    zr_comm_count(c, ZR_COLL_REDUCE_SCATTER, count_, e, traffic);
    return finish(n, ncclReduceScatter(send, recv, count_, t, ncclSum, n->comm, n->stream), req,
                  since);
}

zero_status zr_nccl_all_reduce(zr_nccl *n, void *buf, size_t count_, zr_elem e, zr_redop op,
                               zr_traffic traffic, zr_nccl_request *req)
{
    ncclDataType_t t = ncclFloat32;
    zero_status s = begin(n, ZR_COLL_ALL_REDUCE, count_, e, req, &t);
    if (s)
        return s;
    if (op != ZR_OP_SUM && op != ZR_OP_MAX)
        return fail(n, ZERO_ERR_INVALID, "all_reduce: unknown reduction %d", (int)op);
    const double since = now_s();
    zr_comm *c = n->c;
    zr_comm_count(c, ZR_COLL_ALL_REDUCE, count_, e, traffic);
    return finish(n,
                  ncclAllReduce(buf, buf, count_, t, op == ZR_OP_MAX ? ncclMax : ncclSum, n->comm,
                                n->stream),
                  req, since);
}

zero_status zr_nccl_broadcast(zr_nccl *n, void *buf, size_t count_, zr_elem e, int root,
                              zr_traffic traffic, zr_nccl_request *req)
{
    ncclDataType_t t = ncclFloat32;
    zero_status s = begin(n, ZR_COLL_BROADCAST, count_, e, req, &t);
    if (s)
        return s;
    zr_comm *c = n->c;
    if (root < 0 || root >= c->world)
        return fail(n, ZERO_ERR_INVALID, "broadcast: root %d outside the world of %d", root,
                    c->world);
    const double since = now_s();
    zr_comm_count(c, ZR_COLL_BROADCAST, count_, e, traffic);
    return finish(n, ncclBroadcast(buf, buf, count_, t, root, n->comm, n->stream), req, since);
}

zero_status zr_nccl_group_start(zr_nccl *n)
{
    zero_status s = usable(n);
    if (s)
        return s;
    ncclResult_t rc = ncclGroupStart();
    if (rc != ncclSuccess)
        return nccl_error(n, rc, "ncclGroupStart");
    if (n->group_depth++ == 0)
        n->group_ops = 0;
    return ZERO_OK;
}

zero_status zr_nccl_group_end(zr_nccl *n, zr_nccl_request *req)
{
    if (!n)
        return ZERO_ERR_INVALID;
    if (n->group_depth == 0)
        return fail(n, ZERO_ERR_INVALID, "zr_nccl_group_end without zr_nccl_group_start");
    /* NCCL's group depth belongs to the thread: every start is ended, even after a failure
     * inside the group (later groups, other communicators, would nest in it otherwise) */
    const double since = now_s();
    n->group_depth--;
    ncclResult_t rc = ncclGroupEnd();
    zero_status s = usable(n);
    if (s)
        return s;
    if (req && (n->group_depth > 0 || req->active))
        return fail(n, ZERO_ERR_INVALID,
                    "zr_nccl_group_end: a request belongs to the outermost group end, and must "
                    "not be active");
    if (n->group_depth > 0)
        return rc == ncclSuccess ? ZERO_OK : nccl_error(n, rc, "ncclGroupEnd (nested)");
    snprintf(n->last_op, sizeof n->last_op, "a group of %d collectives", n->group_ops);
    s = settle(n, rc, n->last_op, since);
    if (s)
        return s;
    return complete(n, req, since);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

int zr_nccl_version(void)
{
    int v = 0;
    return ncclGetVersion(&v) == ncclSuccess ? v : 0;
}

cudaStream_t zr_nccl_stream(const zr_nccl *n) { return n ? n->stream : NULL; }

void zr_nccl_set_timeout(zr_nccl *n, double timeout_s)
{
    if (n)
        n->timeout_s = timeout_s;
}

int zr_nccl_aborted(const zr_nccl *n) { return n && n->aborted; }

void zr_nccl_abort(zr_nccl *n, const char *why)
{
    if (n && !n->aborted)
        abort_with(n, "%s", why ? why : "aborted by the caller");
}

/* The ranks' agreement (minimum of ok over the world), so one rank's local failure makes every
 * rank return instead of leaving the others inside NCCL's initialisation. */
static int all_ok(zr_comm *c, int ok)
{
    int all = 0;
    if (MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, c->comm) != MPI_SUCCESS)
        return 0;
    return all;
}

static void release(zr_nccl *n)
{
    if (n->comm) {
        ncclCommAbort(n->comm);
        n->comm = NULL;
    }
    if (n->own_stream && n->stream)
        cudaStreamDestroy(n->stream);
    (void)cudaGetLastError();
    free(n);
}

zero_status zr_nccl_init(zr_nccl **out, zr_comm *c, int cuda_device, cudaStream_t stream,
                         double timeout_s)
{
    *out = NULL;
    zr_error_clear(&c->err);
    char why[256] = "";
    zr_nccl *n = calloc(1, sizeof *n);
    int ok = n != NULL;
    if (!ok)
        snprintf(why, sizeof why, "out of host memory for the NCCL communicator");
    if (ok) {
        n->c = c;
        n->device = cuda_device;
        n->timeout_s = timeout_s;
        n->stream = stream;
        cudaError_t e = cudaSetDevice(cuda_device);
        if (e == cudaSuccess && !stream) {
            e = cudaStreamCreateWithFlags(&n->stream, cudaStreamNonBlocking);
            n->own_stream = e == cudaSuccess;
        }
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            snprintf(why, sizeof why, "nccl: CUDA device %d: %s", cuda_device,
                     cudaGetErrorString(e));
            ok = 0;
        }
    }
    /* The unique id: made on rank 0, sent to all over MPI (not counted: bootstrap traffic). */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (ok && c->rank == 0) {
        ncclResult_t rc = ncclGetUniqueId(&id);
        if (rc != ncclSuccess) {
            snprintf(why, sizeof why, "ncclGetUniqueId: %s (%s)", ncclGetErrorString(rc),
                     ncclGetLastError(NULL));
            ok = 0;
        }
    }
    if (!all_ok(c, ok) ||
        MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->comm) != MPI_SUCCESS) {
        if (ok)
            snprintf(why, sizeof why, "nccl: another rank could not set up NCCL");
        if (n)
            release(n);
        return zr_fail(&c->err, ZERO_ERR_COMM, "%s", why);
    }

    const double since = now_s();
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; /* every wait is ours to bound (settle), initialisation included */
    snprintf(n->last_op, sizeof n->last_op, "NCCL initialisation of %d ranks", c->world);
    ncclResult_t rc = ncclCommInitRankConfig(&n->comm, c->world, id, c->rank, &config);
    zero_status s = ZERO_OK;
    if (rc != ncclSuccess && rc != ncclInProgress)
        s = fail(n, ZERO_ERR_COMM, "ncclCommInitRankConfig: %s (%s)", ncclGetErrorString(rc),
                 ncclGetLastError(n->comm));
    /* A rank whose call failed at once will never join the bootstrap: say so before the others
     * start waiting for it (NCCL goes on initialising in its own thread meanwhile). */
    if (!all_ok(c, s == ZERO_OK)) {
        if (s == ZERO_OK)
            fail(n, ZERO_ERR_COMM, "nccl: initialisation failed on another rank");
        release(n);
        return ZERO_ERR_COMM;
    }
    s = settle(n, rc, n->last_op, since);
    if (!all_ok(c, s == ZERO_OK)) {
        if (s == ZERO_OK)
            fail(n, ZERO_ERR_COMM, "nccl: initialisation failed on another rank");
        release(n);
        return ZERO_ERR_COMM;
    }
    int version = zr_nccl_version();
    ZR_INFO(ZR_SUB_INIT | ZR_SUB_COMM,
            "nccl %d.%d.%d: rank %d of %d on CUDA device %d, %s stream, timeout %.0f s",
            version / 10000, version / 100 % 100, version % 100, c->rank, c->world, cuda_device,
            n->own_stream ? "own" : "given", timeout_s);
    *out = n;
    return ZERO_OK;
}

void zr_nccl_destroy(zr_nccl *n)
{
    if (!n)
        return;
    cudaSetDevice(n->device);
    if (n->comm && !n->aborted) {
        const double since = now_s();
        zero_status s = wait_until(n, NULL, since, "the last collectives before destroy");
        if (s == ZERO_OK)
            s = settle(n, ncclCommFinalize(n->comm), "ncclCommFinalize", since);
        if (s == ZERO_OK && n->comm) {
            ncclCommDestroy(n->comm);
            n->comm = NULL;
        }
    }
    release(n);
}

/* ---- the nccl collective backend (coll.h) ----------------------------------------------------
 * The zr_nccl above behind the collective interface, on the device's comm stream. Before a
 * collective (or a group) reads buffers, the comm stream waits for what the compute stream has
 * enqueued so far (the model's gradient writes, libzero's copies); a request is an NCCL request
 * kept in the zr_creq. */

_Static_assert(sizeof(zr_nccl_request) <= sizeof(((zr_creq *)0)->impl),
               "zr_creq too small for an NCCL request");

typedef struct nccl_coll {
    zr_nccl *n;
    zr_device *dev;
    int grouping; /* group depth: ordered once, at the outermost start */
} nccl_coll;

static zr_nccl_request *nreq(zr_creq *r) { return r ? (zr_nccl_request *)(void *)r->impl : NULL; }

static zero_status after_compute(zr_coll *c)
{
    nccl_coll *k = c->impl;
    if (k->grouping)
        return ZERO_OK;
    zero_status s = zr_dev_order(k->dev, ZR_STREAM_COMM, ZR_STREAM_COMPUTE);
    if (s)
        zr_fail(&c->comm->err, s,
                "ordering the comm stream after the compute stream failed (CUDA event)");
    return s;
}

static zero_status nc_all_gather(zr_coll *c, void *recv, size_t count, zr_elem e, zr_traffic t,
                                 zr_creq *req)
{
    zero_status s = after_compute(c);
    return s ? s : zr_nccl_all_gather(((nccl_coll *)c->impl)->n, recv, count, e, t, nreq(req));
}

static zero_status nc_reduce_scatter(zr_coll *c, const void *send, void *recv, size_t count,
                                     zr_elem e, zr_traffic t, zr_creq *req)
{
    zero_status s = after_compute(c);
    return s ? s
             : zr_nccl_reduce_scatter(((nccl_coll *)c->impl)->n, send, recv, count, e, t,
                                      nreq(req));
}

static zero_status nc_all_reduce(zr_coll *c, void *buf, size_t count, zr_elem e, zr_redop op,
                                 zr_traffic t, zr_creq *req)
{
    zero_status s = after_compute(c);
    return s ? s
             : zr_nccl_all_reduce(((nccl_coll *)c->impl)->n, buf, count, e, op, t, nreq(req));
}

static zero_status nc_broadcast(zr_coll *c, void *buf, size_t count, zr_elem e, int root,
                                zr_traffic t, zr_creq *req)
{
    zero_status s = after_compute(c);
    return s ? s
             : zr_nccl_broadcast(((nccl_coll *)c->impl)->n, buf, count, e, root, t, nreq(req));
}

static zero_status nc_gather(zr_coll *c, const void *send, void *recv, size_t count, zr_elem e,
                             int root)
{
    return zr_fail(&c->comm->err, ZERO_ERR_UNSUPPORTED,
                   "gather is not a collective of the nccl backend");
}

static zero_status nc_group_start(zr_coll *c)
{
    nccl_coll *k = c->impl;
    zero_status s = after_compute(c);
    if (!s && (s = zr_nccl_group_start(k->n)) == ZERO_OK)
        k->grouping++;
    return s;
}

static zero_status nc_group_end(zr_coll *c, zr_creq *req)
{
    nccl_coll *k = c->impl;
    if (k->grouping > 0)
        k->grouping--;
    return zr_nccl_group_end(k->n, nreq(req));
}

static zero_status nc_wait(zr_coll *c, zr_creq *req)
{
    return zr_nccl_wait(((nccl_coll *)c->impl)->n, nreq(req));
}

static zero_status nc_test(zr_coll *c, zr_creq *req, int *done)
{
    return zr_nccl_test(((nccl_coll *)c->impl)->n, nreq(req), done);
}

static void nc_request_free(zr_coll *c, zr_creq *req) { zr_nccl_request_destroy(nreq(req)); }

static void nc_destroy(zr_coll *c)
{
    nccl_coll *k = c->impl;
    if (k)
        zr_nccl_destroy(k->n);
    free(k);
}

static const zr_coll_ops nccl_ops = {
    .name = "nccl",
    .caps = ZR_COLL_CAP_DEVICE | ZR_COLL_CAP_RS_IN_PLACE,
    .all_gather = nc_all_gather,
    .reduce_scatter = nc_reduce_scatter,
    .all_reduce = nc_all_reduce,
    .broadcast = nc_broadcast,
    .gather = nc_gather,
    .group_start = nc_group_start,
    .group_end = nc_group_end,
    .wait = nc_wait,
    .test = nc_test,
    .request_free = nc_request_free,
    .destroy = nc_destroy,
};

zero_status zr_coll_nccl_init(zr_coll *c, zr_comm *comm, zr_device *dev, double timeout_s)
{
    memset(c, 0, sizeof *c);
    nccl_coll *k = calloc(1, sizeof *k);
    if (!k) {
        return zr_fail(&comm->err, ZERO_ERR_SYSTEM, "out of host memory");
    }
    k->dev = dev;
    zero_status s = zr_nccl_init(&k->n, comm, zr_cuda_device_ordinal(dev),
                                 zr_cuda_stream_get(dev, ZR_STREAM_COMM), timeout_s);
    if (s) {
        free(k);
        return s;
    }
    c->ops = &nccl_ops;
    c->impl = k;
    c->comm = comm;
    return ZERO_OK;
}
