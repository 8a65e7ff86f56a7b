/* comm_mpi.c — the process group (zr_comm over MPI) and the mpi collective backend (coll.h) over
 * Open MPI. bf16 and fp16 sums use user-defined
 * MPI operations (the sum formed in fp32, rounded to nearest even), so every stage reduces the
 * working precision with the same arithmetic. */
#include "runtime/coll.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>

#include "kernels/kernels.h"
#include "util/clock.h"
#include "util/log.h"

static const char *const coll_names[ZR_COLL_NUM] = {"all_gather", "reduce_scatter", "all_reduce",
                                                    "broadcast", "barrier"};

const char *zr_coll_name(zr_coll_kind k) { return (unsigned)k < ZR_COLL_NUM ? coll_names[k] : "?"; }

size_t zr_elem_size(zr_elem e)
{
    static const size_t sizes[] = {4, 2, 2, 8, 8, 1};
    return sizes[e];
}

zr_elem zr_elem_of(zero_dtype d)
{
    return d == ZERO_DTYPE_BF16 ? ZR_ELEM_BF16 : d == ZERO_DTYPE_FP16 ? ZR_ELEM_F16 : ZR_ELEM_F32;
}

static MPI_Datatype mpi_type(zr_elem e)
{
    switch (e) {
    case ZR_ELEM_F32: return MPI_FLOAT;
    case ZR_ELEM_BF16:
    case ZR_ELEM_F16: return MPI_UINT16_T;
    case ZR_ELEM_F64: return MPI_DOUBLE;
    case ZR_ELEM_I64: return MPI_INT64_T;
    default: return MPI_BYTE;
    }
}

static void sum_bf16(void *in, void *inout, int *len, MPI_Datatype *type)
{
    zk_add(inout, ZERO_DTYPE_BF16, in, ZERO_DTYPE_BF16, (size_t)*len);
}

static void sum_f16(void *in, void *inout, int *len, MPI_Datatype *type)
{
    zk_add(inout, ZERO_DTYPE_FP16, in, ZERO_DTYPE_FP16, (size_t)*len);
}

static zero_status mpi_fail(zr_comm *c, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return zr_fail(&c->err, ZERO_ERR_COMM, "%s failed: %s", what, msg);
}

#define MPI_CHECK(c, call)                                                                    \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != MPI_SUCCESS)                                                               \
            return mpi_fail((c), rc_, #call);                                                 \
    } while (0)

static int we_initialized_mpi;
static int some_comm_broken; /* process-wide: MPI_Finalize could wait for a lost peer */

void zr_comm_release(const zr_comm *c, void *p)
{
    if (!c->broken)
        free(p);
}

void zr_comm_mark_broken(zr_comm *c)
{
    c->broken = 1;
    some_comm_broken = 1;
}

static void finalize_at_exit(void)
{
    if (some_comm_broken) /* MPI_Finalize would wait for the peers a collective lost */
        return;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin)
        MPI_Finalize();
}

zero_status zr_comm_init(zr_comm *c)
{
    memset(c, 0, sizeof *c);
    c->comm = MPI_COMM_NULL;
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (fin) {
        return zr_fail(&c->err, ZERO_ERR_STATE, "MPI has already been finalized in this process");
    }
    if (!init) {
        int provided = 0;
        MPI_CHECK(c, MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
        if (!we_initialized_mpi) {
            we_initialized_mpi = 1;
            atexit(finalize_at_exit);
        }
        /* MPI errors come back as statuses, never as an abort of the job */
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    }
    MPI_CHECK(c, MPI_Comm_dup(MPI_COMM_WORLD, &c->comm));
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_CHECK(c, MPI_Comm_rank(c->comm, &c->rank));
    MPI_CHECK(c, MPI_Comm_size(c->comm, &c->world));
    MPI_Comm node;
    MPI_CHECK(c, MPI_Comm_split_type(c->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node));
    MPI_Comm_rank(node, &c->local_rank);
    MPI_Comm_size(node, &c->local_size);
    MPI_Comm_free(&node);
    MPI_CHECK(c, MPI_Op_create(sum_bf16, 1, &c->op_sum_bf16));
    MPI_CHECK(c, MPI_Op_create(sum_f16, 1, &c->op_sum_f16));
    return ZERO_OK;
}

void zr_comm_destroy(zr_comm *c)
{
    if (c->op_sum_bf16 != MPI_OP_NULL && c->op_sum_bf16)
        MPI_Op_free(&c->op_sum_bf16);
    if (c->op_sum_f16 != MPI_OP_NULL && c->op_sum_f16)
        MPI_Op_free(&c->op_sum_f16);
    if (c->comm != MPI_COMM_NULL && !c->broken) /* a broken one may have operations pending */
        MPI_Comm_free(&c->comm);
    c->comm = MPI_COMM_NULL;
}

static MPI_Op mpi_op(zr_comm *c, zr_elem e, zr_redop op)
{
    if (op == ZR_OP_MAX)
        return MPI_MAX;
    if (e == ZR_ELEM_BF16)
        return c->op_sum_bf16;
    if (e == ZR_ELEM_F16)
        return c->op_sum_f16;
    return MPI_SUM;
}

void zr_comm_count(zr_comm *c, zr_coll_kind kind, size_t n, zr_elem e, zr_traffic t)
{
    double bytes = (double)n * (double)zr_elem_size(e), N = (double)c->world, bus = 0.0;
    switch (kind) {
    case ZR_COLL_ALL_GATHER:
    case ZR_COLL_REDUCE_SCATTER: bus = bytes * (N - 1.0); break; /* total N*bytes, (N-1)/N */
    case ZR_COLL_ALL_REDUCE: bus = 2.0 * bytes * (N - 1.0) / N; break;
    case ZR_COLL_BROADCAST: bus = c->world > 1 ? bytes : 0.0; break;
    default: break;
    }
    if (t == ZR_TRAFFIC_TRAIN) {
        c->bus_bytes[kind] += bus;
        c->calls[kind]++;
    } else {
        c->other_bus_bytes += bus;
    }
}

static zero_status check_count(zr_comm *c, size_t n, const char *what)
{
    if (n > (size_t)INT_MAX) {
        return zr_fail(&c->err, ZERO_ERR_UNSUPPORTED,
                       "%s of %zu elements per rank exceeds MPI's int count; use a smaller "
                       "ZERO_BUCKET_MB or smaller modules",
                       what, n);
    }
    return ZERO_OK;
}

/* ---- the mpi collective backend (coll.h) ------------------------------------------------------
 * A request is an MPI request kept in the zr_creq. Inside a group, a call without a request is
 * issued non-blocking and kept in the backend's pending list; group_end waits for all of them
 * (MPI has no launch to merge, so a group is only a way to have them all in flight at once). */

typedef struct mpi_req {
    MPI_Request req;
    int active;
    double since; /* when it was issued: its timeout counts from here */
} mpi_req;
_Static_assert(sizeof(mpi_req) <= sizeof(((zr_creq *)0)->impl), "zr_creq too small for MPI");

typedef struct mpi_impl {
    int grouping;          /* group_start depth */
    MPI_Request *pending;  /* the group's requests */
    int npending, cap;
} mpi_impl;

static mpi_req *mreq(zr_creq *r) { return (mpi_req *)(void *)r->impl; }

/* The watchdog: waits for n requests by testing them until they complete or comm->timeout_s
 * seconds have passed since `since` (0 = no limit). On timeout: ZERO_ERR_COMM naming `what`; the
 * requests stay pending (MPI cannot cancel a collective), so the group must not be used again. */
/* Open MPI 4.1 reports a failure of a non-blocking collective (a truncation when ranks disagree
 * on a count) through MPI_COMM_WORLD's error handler, not the communicator's: an application
 * that initialised MPI itself keeps ERRORS_ARE_FATAL there, and the job would abort. Around
 * libzero's tests the world's handler returns errors; the application's comes back after. */
static MPI_Errhandler world_returns_errors(void)
{
    MPI_Errhandler saved = MPI_ERRHANDLER_NULL;
    MPI_Comm_get_errhandler(MPI_COMM_WORLD, &saved);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return saved;
}

static void world_handler_back(MPI_Errhandler saved)
{
    if (saved == MPI_ERRHANDLER_NULL)
        return;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, saved);
    MPI_Errhandler_free(&saved);
}

static int test_requests(int n, MPI_Request *r, int *flag)
{
    MPI_Errhandler saved = world_returns_errors();
    int rc = MPI_Testall(n, r, flag, MPI_STATUSES_IGNORE);
    world_handler_back(saved);
    return rc;
}

static zero_status poll_until(zr_comm *m, MPI_Request *r, int n, double since, const char *what)
{
    for (unsigned polls = 0;; polls++) {
        int flag = 0;
        int rc = MPI_Testall(n, r, &flag, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_fail(m, rc, what);
        if (flag)
            return ZERO_OK;
        if (m->timeout_s > 0.0 && zr_now() - since > m->timeout_s) {
            m->timed_out = 1;
            return zr_fail(&m->err, ZERO_ERR_COMM,
                           "%s did not complete within ZERO_TIMEOUT_S=%g s on rank %d of %d: a "
                           "rank is stopped, slower than the timeout, or waiting in a different "
                           "collective (which ones cannot be known from here; see each rank's "
                           "flight recorder in the log)",
                           what, m->timeout_s, m->rank, m->world);
        }
        if (polls >= 64)
            sched_yield(); /* let a rank sharing this core run */
    }
}

/* The world's error handler is switched once around the whole wait, not at every poll. */
static zero_status wait_deadline(zr_comm *m, MPI_Request *r, int n, double since, const char *what)
{
    MPI_Errhandler saved = world_returns_errors();
    zero_status s = poll_until(m, r, n, since, what);
    world_handler_back(saved);
    return s;
}

/* Where a call's MPI request goes: the caller's, a new pending slot of the group, or NULL
 * (blocking). *fail is set when the pending list cannot grow. */
static MPI_Request *slot_for(zr_coll *c, zr_creq *req, mpi_req **active, int *fail)
{
    mpi_impl *m = c->impl;
    *active = NULL;
    *fail = 0;
    if (req) {
        *active = mreq(req);
        return &mreq(req)->req;
    }
    if (!m->grouping)
        return NULL;
    if (m->npending == m->cap) {
        int ncap = m->cap ? 2 * m->cap : 16;
        MPI_Request *np = realloc(m->pending, (size_t)ncap * sizeof *np);
        if (!np) {
            zr_fail(&c->comm->err, ZERO_ERR_SYSTEM, "out of host memory for a group");
            *fail = 1;
            return NULL;
        }
        m->pending = np;
        m->cap = ncap;
    }
    return &m->pending[m->npending++];
}

/* Marks the call done at once (world of one): nothing is in flight. */
static void nothing_in_flight(zr_coll *c, zr_creq *req)
{
    if (req)
        mreq(req)->active = 0;
}

/* Issues the non-blocking form into slot; without a slot (a blocking call) into a local request
 * that the watchdog waits for. */
#define MPI_ISSUE(c, slot, req_of, what, nonblocking_call)                                    \
    do {                                                                                      \
        MPI_Request local_;                                                                   \
        const double since_ = zr_now();                                                       \
        if (!(slot))                                                                          \
            (slot) = &local_;                                                                 \
        MPI_CHECK((c)->comm, nonblocking_call);                                               \
        if (req_of) {                                                                         \
            (req_of)->active = 1;                                                             \
            (req_of)->since = since_;                                                         \
        } else if ((slot) == &local_) {                                                       \
            zero_status ws_ = wait_deadline((c)->comm, &local_, 1, since_, what);             \
            if (ws_)                                                                          \
                return ws_;                                                                   \
        }                                                                                     \
    } while (0)

/* What every mpi collective does first: the count check, the traffic count, and where its
 * request goes. *done = 1 for a world of one (nothing to exchange; the caller finishes locally). */
static zero_status mpi_begin(zr_coll *c, zr_coll_kind kind, size_t n, zr_elem e, zr_traffic t,
                             zr_creq *req, MPI_Request **slot, mpi_req **act, int *done)
{
    zr_comm *m = c->comm;
    zero_status s = check_count(m, n, zr_coll_name(kind));
    *slot = NULL;
    *act = NULL;
    *done = 0;
    if (s)
        return s;
    zr_comm_count(m, kind, n, e, t);
    if (m->world == 1) {
        nothing_in_flight(c, req);
        *done = 1;
        return ZERO_OK;
    }
    int fail;
    *slot = slot_for(c, req, act, &fail);
    return fail ? ZERO_ERR_SYSTEM : ZERO_OK;
}

static zero_status mpi_all_gather(zr_coll *c, void *recv, size_t n, zr_elem e, zr_traffic t,
                                  zr_creq *req)
{
    zr_comm *m = c->comm;
    mpi_req *act;
    MPI_Request *slot;
    int done;
    zero_status s = mpi_begin(c, ZR_COLL_ALL_GATHER, n, e, t, req, &slot, &act, &done);
    if (s || done)
        return s;
    MPI_ISSUE(c, slot, act, "all_gather",
              MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)n, mpi_type(e),
                             m->comm, slot));
    return ZERO_OK;
}

static zero_status mpi_reduce_scatter(zr_coll *c, const void *send, void *recv, size_t n,
                                      zr_elem e, zr_traffic t, zr_creq *req)
{
    zr_comm *m = c->comm;
    mpi_req *act;
    MPI_Request *slot;
    int done;
    zero_status s = mpi_begin(c, ZR_COLL_REDUCE_SCATTER, n, e, t, req, &slot, &act, &done);
    if (done && recv != send)
        memcpy(recv, send, n * zr_elem_size(e));
    if (s || done)
        return s;
    MPI_ISSUE(c, slot, act, "reduce_scatter",
              MPI_Ireduce_scatter_block(send, recv, (int)n, mpi_type(e), mpi_op(m, e, ZR_OP_SUM),
                                        m->comm, slot));
    return ZERO_OK;
}

static zero_status mpi_all_reduce(zr_coll *c, void *buf, size_t n, zr_elem e, zr_redop op,
                                  zr_traffic t, zr_creq *req)
{
    zr_comm *m = c->comm;
    mpi_req *act;
    MPI_Request *slot;
    int done;
    zero_status s = mpi_begin(c, ZR_COLL_ALL_REDUCE, n, e, t, req, &slot, &act, &done);
    if (s || done)
        return s;
    MPI_ISSUE(c, slot, act, "all_reduce",
              MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(e), mpi_op(m, e, op), m->comm,
                             slot));
    return ZERO_OK;
}

static zero_status mpi_broadcast(zr_coll *c, void *buf, size_t n, zr_elem e, int root,
                                 zr_traffic t, zr_creq *req)
{
    zr_comm *m = c->comm;
    mpi_req *act;
    MPI_Request *slot;
    int done;
    zero_status s = mpi_begin(c, ZR_COLL_BROADCAST, n, e, t, req, &slot, &act, &done);
    if (s || done)
        return s;
    MPI_ISSUE(c, slot, act, "broadcast", MPI_Ibcast(buf, (int)n, mpi_type(e), root, m->comm, slot));
    return ZERO_OK;
}

static zero_status mpi_gather(zr_coll *c, const void *send, void *recv, size_t n, zr_elem e,
                              int root)
{
    zr_comm *m = c->comm;
    zero_status s = check_count(m, n, "gather");
    if (s)
        return s;
    m->other_bus_bytes += (double)n * zr_elem_size(e) * (m->world - 1);
    if (m->world == 1) {
        memcpy(recv, send, n * zr_elem_size(e));
        return ZERO_OK;
    }
    MPI_Request r;
    MPI_CHECK(m, MPI_Igather(send, (int)n, mpi_type(e), recv, (int)n, mpi_type(e), root, m->comm,
                             &r));
    return wait_deadline(m, &r, 1, zr_now(), "gather");
}

static zero_status mpi_group_start(zr_coll *c)
{
    ((mpi_impl *)c->impl)->grouping++;
    return ZERO_OK;
}

static zero_status mpi_group_end(zr_coll *c, zr_creq *req)
{
    mpi_impl *m = c->impl;
    if (m->grouping == 0) {
        return zr_fail(&c->comm->err, ZERO_ERR_INVALID, "group end without a group start");
    }
    if (req)
        mreq(req)->active = 0; /* complete once this returns */
    if (--m->grouping > 0 || m->npending == 0)
        return ZERO_OK;
    int n = m->npending;
    m->npending = 0;
    return wait_deadline(c->comm, m->pending, n, zr_now(), "a group of collectives");
}

static zero_status mpi_wait(zr_coll *c, zr_creq *req)
{
    mpi_req *r = mreq(req);
    if (!r->active)
        return ZERO_OK;
    zero_status s = wait_deadline(c->comm, &r->req, 1, r->since, "a non-blocking collective");
    if (!s)
        r->active = 0;
    return s;
}

static zero_status mpi_test(zr_coll *c, zr_creq *req, int *done)
{
    mpi_req *r = mreq(req);
    if (!r->active) {
        *done = 1;
        return ZERO_OK;
    }
    int flag = 0;
    MPI_CHECK(c->comm, test_requests(1, &r->req, &flag));
    if (flag)
        r->active = 0;
    *done = flag;
    return ZERO_OK;
}

static void mpi_request_free(zr_coll *c, zr_creq *req) {}

static void mpi_destroy(zr_coll *c)
{
    mpi_impl *m = c->impl;
    if (m)
        free(m->pending);
    free(m);
}

static const zr_coll_ops mpi_ops = {
    .name = "mpi",
    .caps = 0,
    .all_gather = mpi_all_gather,
    .reduce_scatter = mpi_reduce_scatter,
    .all_reduce = mpi_all_reduce,
    .broadcast = mpi_broadcast,
    .gather = mpi_gather,
    .group_start = mpi_group_start,
    .group_end = mpi_group_end,
    .wait = mpi_wait,
    .test = mpi_test,
    .request_free = mpi_request_free,
    .destroy = mpi_destroy,
};

zero_status zr_coll_mpi_init(zr_coll *c, zr_comm *comm)
{
    memset(c, 0, sizeof *c);
    mpi_impl *m = calloc(1, sizeof *m);
    if (!m) {
        return zr_fail(&comm->err, ZERO_ERR_SYSTEM, "out of host memory");
    }
    c->ops = &mpi_ops;
    c->impl = m;
    c->comm = comm;
    return ZERO_OK;
}
