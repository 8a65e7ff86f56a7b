/* comm.h — the collective backend interface: all_gather, reduce_scatter, all_reduce, broadcast,
 * barrier, each blocking or non-blocking (with a request), every call counting its bus bytes in
 * the nccl-tests convention. The mpi backend (Open MPI) runs on host buffers; it is also the
 * bootstrap: a process started without mpirun is a world of one. */
#ifndef ZERO_COMM_H
#define ZERO_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "zero.h"

typedef enum zr_coll {
    ZR_COLL_ALL_GATHER = 0,
    ZR_COLL_REDUCE_SCATTER = 1,
    ZR_COLL_ALL_REDUCE = 2,
    ZR_COLL_BROADCAST = 3,
    ZR_COLL_BARRIER = 4,
    ZR_COLL_NUM = 5
} zr_coll;

/* Element types the collectives move. */
typedef enum zr_elem {
    ZR_ELEM_F32 = 0,
    ZR_ELEM_BF16 = 1,
    ZR_ELEM_F16 = 2,
    ZR_ELEM_F64 = 3,
    ZR_ELEM_I64 = 4,
    ZR_ELEM_BYTE = 5
} zr_elem;

typedef enum zr_redop { ZR_OP_SUM = 0, ZR_OP_MAX = 1 } zr_redop;

typedef struct zr_comm {
    MPI_Comm comm;          /* a duplicate of MPI_COMM_WORLD */
    int rank, world;
    int local_rank, local_size; /* place among the ranks sharing this node's memory */
    MPI_Op op_sum_bf16, op_sum_f16;
    int counting;           /* 1: bytes count as training traffic; 0: as other traffic */
    double bus_bytes[ZR_COLL_NUM];   /* training traffic, by kind */
    int64_t calls[ZR_COLL_NUM];
    double other_bus_bytes;          /* init broadcast, export, digest, report */
    char err[256];
} zr_comm;

typedef struct zr_request {
    MPI_Request req;
    int active;
} zr_request;

/* Initialises MPI if nobody has (MPI_Finalize then runs at process exit) and duplicates the
 * world communicator. */
zero_status zr_comm_init(zr_comm *c);
void zr_comm_destroy(zr_comm *c);

size_t zr_elem_size(zr_elem e);
zr_elem zr_elem_of(zero_dtype d);

/* recv (count * world elements) <- recv with this rank's block at rank * count (in place).
 * req NULL = blocking. */
zero_status zr_all_gather(zr_comm *c, void *recv, size_t count, zr_elem e, zr_request *req);
/* recv (count elements) <- sum over ranks of send[rank * count ...]. */
zero_status zr_reduce_scatter(zr_comm *c, const void *send, void *recv, size_t count, zr_elem e,
                              zr_request *req);
/* buf (count elements), in place. */
zero_status zr_all_reduce(zr_comm *c, void *buf, size_t count, zr_elem e, zr_redop op,
                          zr_request *req);
zero_status zr_broadcast(zr_comm *c, void *buf, size_t count, zr_elem e, int root,
                         zr_request *req);
zero_status zr_barrier(zr_comm *c);
/* Gathers count elements from every rank into recv (count * world) on root only; blocking.
 * Counted as other traffic. */
zero_status zr_gather(zr_comm *c, const void *send, void *recv, size_t count, zr_elem e, int root);

zero_status zr_wait(zr_comm *c, zr_request *req);
/* Sets *done to 1 when the request has completed (drives MPI progress). */
zero_status zr_test(zr_comm *c, zr_request *req, int *done);

const char *zr_coll_name(zr_coll k);

/* Records one collective of n elements per rank (the gathered / scattered block for all_gather
 * and reduce_scatter, the whole buffer otherwise) in the nccl-tests bus-byte convention: (N-1)/N
 * of the total for all_gather and reduce_scatter, 2(N-1)/N for all_reduce, the buffer for
 * broadcast (N > 1), 0 for barrier; into the training counters or, with counting off, "other".
 * Every collective backend counts through it. */
void zr_comm_count(zr_comm *c, zr_coll kind, size_t n, zr_elem e);

#endif
