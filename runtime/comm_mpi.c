/* comm_mpi.c — the mpi collective backend over Open MPI. bf16 and fp16 sums use user-defined
 * MPI operations (the sum formed in fp32, rounded to nearest even), so every stage reduces the
 * working precision with the same arithmetic. */
#include "runtime/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/log.h"

static const char *const coll_names[ZR_COLL_NUM] = {"all_gather", "reduce_scatter", "all_reduce",
                                                    "broadcast", "barrier"};

const char *zr_coll_name(zr_coll k) { return (unsigned)k < ZR_COLL_NUM ? coll_names[k] : "?"; }

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
    snprintf(c->err, sizeof c->err, "%s failed: %s", what, msg);
    ZR_WARN(ZR_SUB_COMM, "%s", c->err);
    return ZERO_ERR_COMM;
}

#define MPI_CHECK(c, call)                                                                    \
    do {                                                                                      \
        int rc_ = (call);                                                                     \
        if (rc_ != MPI_SUCCESS)                                                               \
            return mpi_fail((c), rc_, #call);                                                 \
    } while (0)

static int we_initialized_mpi;

static void finalize_at_exit(void)
{
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
        snprintf(c->err, sizeof c->err, "MPI has already been finalized in this process");
        return ZERO_ERR_STATE;
    }
    if (!init) {
        int provided = 0;
        MPI_CHECK(c, MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
        if (!we_initialized_mpi) {
            we_initialized_mpi = 1;
            atexit(finalize_at_exit);
        }
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
    c->counting = 1;
    return ZERO_OK;
}

void zr_comm_destroy(zr_comm *c)
{
    if (c->op_sum_bf16 != MPI_OP_NULL && c->op_sum_bf16)
        MPI_Op_free(&c->op_sum_bf16);
    if (c->op_sum_f16 != MPI_OP_NULL && c->op_sum_f16)
        MPI_Op_free(&c->op_sum_f16);
    if (c->comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->comm);
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

void zr_comm_count(zr_comm *c, zr_coll kind, size_t n, zr_elem e)
{
    double bytes = (double)n * (double)zr_elem_size(e), N = (double)c->world, bus = 0.0;
    switch (kind) {
    case ZR_COLL_ALL_GATHER:
    case ZR_COLL_REDUCE_SCATTER: bus = bytes * (N - 1.0); break; /* total N*bytes, (N-1)/N */
    case ZR_COLL_ALL_REDUCE: bus = 2.0 * bytes * (N - 1.0) / N; break;
    case ZR_COLL_BROADCAST: bus = c->world > 1 ? bytes : 0.0; break;
    default: break;
    }
    if (c->counting) {
        c->bus_bytes[kind] += bus;
        c->calls[kind]++;
    } else {
        c->other_bus_bytes += bus;
    }
}

static zero_status check_count(zr_comm *c, size_t n, const char *what)
{
    if (n > (size_t)INT_MAX) {
        snprintf(c->err, sizeof c->err,
                 "%s of %zu elements per rank exceeds MPI's int count; use a smaller "
                 "ZERO_BUCKET_MB or smaller modules",
                 what, n);
        return ZERO_ERR_UNSUPPORTED;
    }
    return ZERO_OK;
}

zero_status zr_all_gather(zr_comm *c, void *recv, size_t n, zr_elem e, zr_request *req)
{
    zero_status s = check_count(c, n, "all_gather");
    if (s)
        return s;
    zr_comm_count(c, ZR_COLL_ALL_GATHER, n, e);
    if (c->world == 1) {
        if (req)
            req->active = 0;
        return ZERO_OK;
    }
    if (req) {
        MPI_CHECK(c, MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)n, mpi_type(e),
                                    c->comm, &req->req));
        req->active = 1;
    } else {
        MPI_CHECK(c, MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, (int)n, mpi_type(e),
                                   c->comm));
    }
    return ZERO_OK;
}

zero_status zr_reduce_scatter(zr_comm *c, const void *send, void *recv, size_t n, zr_elem e,
                              zr_request *req)
{
    zero_status s = check_count(c, n, "reduce_scatter");
    if (s)
        return s;
    zr_comm_count(c, ZR_COLL_REDUCE_SCATTER, n, e);
    if (c->world == 1) {
        memcpy(recv, send, n * zr_elem_size(e));
        if (req)
            req->active = 0;
        return ZERO_OK;
    }
    if (req) {
        MPI_CHECK(c, MPI_Ireduce_scatter_block(send, recv, (int)n, mpi_type(e),
                                               mpi_op(c, e, ZR_OP_SUM), c->comm, &req->req));
        req->active = 1;
    } else {
        MPI_CHECK(c, MPI_Reduce_scatter_block(send, recv, (int)n, mpi_type(e),
                                              mpi_op(c, e, ZR_OP_SUM), c->comm));
    }
    return ZERO_OK;
}

zero_status zr_all_reduce(zr_comm *c, void *buf, size_t n, zr_elem e, zr_redop op,
                          zr_request *req)
{
    zero_status s = check_count(c, n, "all_reduce");
    if (s)
        return s;
    zr_comm_count(c, ZR_COLL_ALL_REDUCE, n, e);
    if (c->world == 1) {
        if (req)
            req->active = 0;
        return ZERO_OK;
    }
    if (req) {
        MPI_CHECK(c, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(e), mpi_op(c, e, op),
                                    c->comm, &req->req));
        req->active = 1;
    } else {
        MPI_CHECK(c, MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, mpi_type(e), mpi_op(c, e, op),
                                   c->comm));
    }
    return ZERO_OK;
}

zero_status zr_broadcast(zr_comm *c, void *buf, size_t n, zr_elem e, int root, zr_request *req)
{
    zero_status s = check_count(c, n, "broadcast");
    if (s)
        return s;
    zr_comm_count(c, ZR_COLL_BROADCAST, n, e);
    if (c->world == 1) {
        if (req)
            req->active = 0;
        return ZERO_OK;
    }
    if (req) {
        MPI_CHECK(c, MPI_Ibcast(buf, (int)n, mpi_type(e), root, c->comm, &req->req));
        req->active = 1;
    } else {
        MPI_CHECK(c, MPI_Bcast(buf, (int)n, mpi_type(e), root, c->comm));
    }
    return ZERO_OK;
}

zero_status zr_barrier(zr_comm *c)
{
    zr_comm_count(c, ZR_COLL_BARRIER, 0, ZR_ELEM_BYTE);
    if (c->world > 1)
        MPI_CHECK(c, MPI_Barrier(c->comm));
    return ZERO_OK;
}

zero_status zr_gather(zr_comm *c, const void *send, void *recv, size_t n, zr_elem e, int root)
{
    zero_status s = check_count(c, n, "gather");
    if (s)
        return s;
    c->other_bus_bytes += (double)n * zr_elem_size(e) * (c->world - 1);
    if (c->world == 1) {
        memcpy(recv, send, n * zr_elem_size(e));
        return ZERO_OK;
    }
    MPI_CHECK(c, MPI_Gather(send, (int)n, mpi_type(e), recv, (int)n, mpi_type(e), root, c->comm));
    return ZERO_OK;
}

zero_status zr_wait(zr_comm *c, zr_request *req)
{
    if (!req->active)
        return ZERO_OK;
    req->active = 0;
    MPI_CHECK(c, MPI_Wait(&req->req, MPI_STATUS_IGNORE));
    return ZERO_OK;
}

zero_status zr_test(zr_comm *c, zr_request *req, int *done)
{
    if (!req->active) {
        *done = 1;
        return ZERO_OK;
    }
    int flag = 0;
    MPI_CHECK(c, MPI_Test(&req->req, &flag, MPI_STATUS_IGNORE));
    if (flag)
        req->active = 0;
    *done = flag;
    return ZERO_OK;
}
