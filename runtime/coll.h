/* coll.h — the collective interface: the single door every collective of a context passes
 * through. A backend fills a zr_coll_ops table; the engine holds two zr_coll, one for its
 * device buffers (gradients, parameters: nccl on the cuda backend, mpi on the host backend) and
 * one for host buffers (agreement, norms, the stage-3 order check, report, export: always mpi),
 * and calls them only through the zr_coll_* functions below. runtime/backend.c constructs them;
 * nothing else names a backend.
 *
 * Semantics every backend keeps (counts are elements per rank):
 * - all_gather: recv (count * world) gets every rank's block at rank * count; this rank's block
 *   is already in place.
 * - reduce_scatter: recv (count) = sum over ranks of send[rank * count ...] (send count * world).
 *   With ZR_COLL_CAP_RS_IN_PLACE, recv may be this rank's block of send.
 * - all_reduce (in place), broadcast (from root), gather (to root only; host backends).
 * - req NULL = blocking: complete on return. A request = asynchronous: complete once wait, or
 *   test reporting done, has returned. A zero-initialised zr_creq is idle; request_free releases
 *   what a backend keeps in it between uses (it must not be in flight).
 * - group_start .. group_end: the collectives between them (req NULL) form one launch; group_end
 *   with a request makes the group asynchronous, with NULL blocks for all of them.
 * - Every call adds its bus bytes to the zr_comm counters (comm.h) under traffic class t.
 * - On failure a call returns ZERO_ERR_COMM / INVALID / UNSUPPORTED and comm->err says why.
 * All calls are collective over the context's ranks and made from one thread. */
#ifndef ZERO_COLL_H
#define ZERO_COLL_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/comm.h"

/* An in-flight collective: storage the backend interprets (an MPI request; an NCCL event). */
typedef struct zr_creq {
    _Alignas(16) unsigned char impl[48];
    uint64_t seq; /* its flight-recorder entry (coll.c), 0 = none */
} zr_creq;

enum {
    ZR_COLL_CAP_DEVICE = 1u << 0,      /* moves device buffers (else host buffers) */
    ZR_COLL_CAP_RS_IN_PLACE = 1u << 1, /* reduce_scatter's recv may be this rank's send block */
};

typedef struct zr_coll zr_coll;

typedef struct zr_coll_ops {
    const char *name;
    unsigned caps;
    zero_status (*all_gather)(zr_coll *c, void *recv, size_t count, zr_elem e, zr_traffic t,
                              zr_creq *req);
    zero_status (*reduce_scatter)(zr_coll *c, const void *send, void *recv, size_t count,
                                  zr_elem e, zr_traffic t, zr_creq *req);
    zero_status (*all_reduce)(zr_coll *c, void *buf, size_t count, zr_elem e, zr_redop op,
                              zr_traffic t, zr_creq *req);
    zero_status (*broadcast)(zr_coll *c, void *buf, size_t count, zr_elem e, int root,
                             zr_traffic t, zr_creq *req);
    /* blocking, counted as other traffic; ZERO_ERR_UNSUPPORTED where the backend has none */
    zero_status (*gather)(zr_coll *c, const void *send, void *recv, size_t count, zr_elem e,
                          int root);
    zero_status (*group_start)(zr_coll *c);
    zero_status (*group_end)(zr_coll *c, zr_creq *req);
    zero_status (*wait)(zr_coll *c, zr_creq *req);
    zero_status (*test)(zr_coll *c, zr_creq *req, int *done);
    void (*request_free)(zr_coll *c, zr_creq *req);
    void (*destroy)(zr_coll *c);
} zr_coll_ops;

struct zr_coll {
    const zr_coll_ops *ops; /* NULL: not set up */
    void *impl;
    zr_comm *comm;          /* ranks, counters, err */
    int host;               /* host buffers: a blocking call is a host round trip (comm.h) */
};

/* The mpi backend over comm's communicator (host buffers). Local. */
zero_status zr_coll_mpi_init(zr_coll *c, zr_comm *comm);

/* The door: every collective goes through these (coll.c). Each one is numbered, its signature
 * (kind, count, element type, traffic class, tag, step) folded into comm->sig_hash and kept in
 * the flight recorder; a failure or timeout marks the group broken (every later call returns
 * ZERO_ERR_COMM at once) and dumps the recorder to the log. */
zero_status zr_coll_all_gather(zr_coll *c, void *recv, size_t count, zr_elem e, zr_traffic t,
                               zr_creq *req);
zero_status zr_coll_reduce_scatter(zr_coll *c, const void *send, void *recv, size_t count,
                                   zr_elem e, zr_traffic t, zr_creq *req);
zero_status zr_coll_all_reduce(zr_coll *c, void *buf, size_t count, zr_elem e, zr_redop op,
                               zr_traffic t, zr_creq *req);
zero_status zr_coll_broadcast(zr_coll *c, void *buf, size_t count, zr_elem e, int root,
                              zr_traffic t, zr_creq *req);
zero_status zr_coll_gather(zr_coll *c, const void *send, void *recv, size_t count, zr_elem e,
                           int root);
zero_status zr_coll_group_start(zr_coll *c);
zero_status zr_coll_group_end(zr_coll *c, zr_creq *req);
zero_status zr_coll_wait(zr_coll *c, zr_creq *req);
zero_status zr_coll_test(zr_coll *c, zr_creq *req, int *done);
/* Names the next collective issued on c's group for signatures and the flight recorder: what
 * libzero is doing and the chunk or module it is for. Untagged collectives are named by their
 * kind. */
void zr_coll_tag(zr_coll *c, const char *what, int id);
static inline void zr_coll_request_free(zr_coll *c, zr_creq *req)
{
    if (c->ops)
        c->ops->request_free(c, req);
}
static inline int zr_coll_has(const zr_coll *c, unsigned cap)
{
    return (c->ops->caps & cap) == cap;
}
/* Ends the backend (a zr_coll never set up: no-op). */
static inline void zr_coll_destroy(zr_coll *c)
{
    if (c->ops)
        c->ops->destroy(c);
    c->ops = NULL;
    c->impl = NULL;
}

#endif
