/* comm.h — what every collective backend shares: the process group (MPI, which is also the
 * bootstrap), element types, reduction operations, and the traffic counters in the nccl-tests
 * convention. The collective interface itself is coll.h. */
#ifndef ZERO_COMM_H
#define ZERO_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "zero.h"

typedef enum zr_coll_kind {
    ZR_COLL_ALL_GATHER = 0,
    ZR_COLL_REDUCE_SCATTER = 1,
    ZR_COLL_ALL_REDUCE = 2,
    ZR_COLL_BROADCAST = 3,
    ZR_COLL_BARRIER = 4,
    ZR_COLL_NUM = 5
} zr_coll_kind;

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

/* Which counters a collective's bytes go to: the training traffic the report compares with the
 * ZeRO formula, or everything else (init broadcast, agreement, export, digest, report). Passed
 * with every call (coll.h). */
typedef enum zr_traffic { ZR_TRAFFIC_TRAIN = 0, ZR_TRAFFIC_OTHER = 1 } zr_traffic;

/* The process group every backend of a context spans: an MPI communicator (the bootstrap: a
 * process started without mpirun is a world of one), the ranks, and the traffic counters that
 * every collective backend of the context adds to. */
typedef struct zr_comm {
    MPI_Comm comm;          /* a duplicate of MPI_COMM_WORLD */
    int rank, world;
    int local_rank, local_size; /* place among the ranks sharing this node's memory */
    MPI_Op op_sum_bf16, op_sum_f16;
    double bus_bytes[ZR_COLL_NUM];   /* training traffic, by kind */
    int64_t calls[ZR_COLL_NUM];
    double other_bus_bytes;          /* init broadcast, export, digest, report */
    zr_error err;                    /* the last failure of a collective backend over this group */
} zr_comm;

/* Initialises MPI if nobody has (MPI_Finalize then runs at process exit) and duplicates the
 * world communicator. */
zero_status zr_comm_init(zr_comm *c);
void zr_comm_destroy(zr_comm *c);

size_t zr_elem_size(zr_elem e);
zr_elem zr_elem_of(zero_dtype d);
const char *zr_coll_name(zr_coll_kind k);

/* Records one collective of n elements per rank (the gathered / scattered block for all_gather
 * and reduce_scatter, the whole buffer otherwise) in the nccl-tests bus-byte convention: (N-1)/N
 * of the total for all_gather and reduce_scatter, 2(N-1)/N for all_reduce, the buffer for
 * broadcast (N > 1), 0 for barrier; into the training counters or the "other" total by t. Every
 * collective backend counts through it. */
void zr_comm_count(zr_comm *c, zr_coll_kind kind, size_t n, zr_elem e, zr_traffic t);

#endif
