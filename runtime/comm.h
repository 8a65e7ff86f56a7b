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

/* The flight recorder: the last ZR_FLIGHT_LEN collectives of a context, newest last, dumped to
 * the log when a collective fails or times out, so a hang can be read after the fact. */
enum { ZR_FLIGHT_LEN = 64 };
enum { ZR_FL_ISSUED = 0, ZR_FL_DONE = 1, ZR_FL_FAILED = 2, ZR_FL_TIMEOUT = 3 };

typedef struct zr_flight_entry {
    uint64_t seq;          /* 1, 2, ... in issue order */
    zr_coll_kind kind;
    size_t count;
    zr_elem elem;
    zr_traffic traffic;
    const char *what;      /* what libzero was doing ("reduce-scatter chunk", "gather chunk") */
    int id;                /* its chunk or module, -1 when none */
    int64_t step;          /* optimizer boundaries before it */
    double t_start, t_end; /* monotonic seconds; t_end 0 while in flight */
    int state;             /* ZR_FL_* */
} zr_flight_entry;

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
    /* collective safety (coll.c) */
    double timeout_s;                /* ZERO_TIMEOUT_S: longest wait for a collective; 0 = none */
    const char *flight_dir;          /* ZERO_DEBUG_DIR: where dumps also go; NULL = log only */
    int broken;                      /* a collective failed or timed out: no further ones */
    int timed_out;                   /* set by a backend whose wait hit timeout_s */
    char broken_why[256];            /* the failure that broke the group */
    uint64_t group_first;            /* seq of the first collective of the open group */
    int64_t round_trips;             /* blocking host-buffer exchanges (zr_coll.host) */
    uint64_t seq;                    /* collectives issued */
    uint64_t sig_hash;               /* hash of their signatures since the last check */
    int64_t step;                    /* optimizer boundaries so far (for signatures) */
    const char *next_what;           /* the tag of the next collective (zr_coll_tag) */
    int next_id;
    zr_flight_entry flight[ZR_FLIGHT_LEN];
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

/* The ranks of c can no longer be trusted to be in step (a collective failed or timed out):
 * later collectives are refused, its communicator is not freed, and MPI is not finalized at
 * exit (either could wait for the peers forever). */
void zr_comm_mark_broken(zr_comm *c);

/* free(p), unless the group is broken: a buffer of a collective that failed or timed out may
 * still be written by MPI (the collective cannot be cancelled), so it is left allocated. */
void zr_comm_release(const zr_comm *c, void *p);

/* Writes the flight recorder to the log (WARN), oldest first, and to
 * <dir>/zero-flight-rank<R>-<pid>.txt when dir is not NULL or empty. */
void zr_flight_dump(const zr_comm *c, const char *why, const char *dir);

/* One line describing entry e ("reduce_scatter #12 (reduce-scatter chunk 3, step 4, 4096 x
 * bf16): in flight for 5.0 s"). */
void zr_flight_describe(const zr_comm *c, const zr_flight_entry *e, char *buf, size_t len);

#endif
