/* coll.c — the door every collective passes through (coll.h). Before a backend runs a
 * collective, the door numbers it, folds its signature into the group's running hash (which
 * step.c compares across ranks at every optimizer boundary, before any update) and records it in
 * the flight recorder; when a backend reports a failure or a timeout the door marks the group
 * broken, so every later collective fails at once instead of waiting on ranks that are no longer
 * in step, and writes the recorder to the log. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runtime/coll.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"

void zr_coll_tag(zr_coll *c, const char *what, int id)
{
    c->comm->next_what = what;
    c->comm->next_id = id;
}

static zr_flight_entry *record(zr_comm *m, zr_coll_kind kind, size_t count, zr_elem e,
                               zr_traffic t)
{
    const uint64_t seq = ++m->seq;
    zr_flight_entry *f = &m->flight[seq % ZR_FLIGHT_LEN];
    *f = (zr_flight_entry){.seq = seq,
                           .kind = kind,
                           .count = count,
                           .elem = e,
                           .traffic = t,
                           .what = m->next_what ? m->next_what : zr_coll_name(kind),
                           .id = m->next_what ? m->next_id : -1,
                           .step = m->step,
                           .t_start = zr_now(),
                           .state = ZR_FL_ISSUED};
    m->next_what = NULL;
    m->next_id = -1;
    uint64_t h = zr_mix64(m->sig_hash, seq);
    h = zr_mix64(h, (uint64_t)kind);
    h = zr_mix64(h, (uint64_t)count);
    h = zr_mix64(h, (uint64_t)e);
    h = zr_mix64(h, (uint64_t)t);
    h = zr_mix64(h, (uint64_t)(f->id + 1));
    for (const char *p = f->what; *p; p++)
        h = zr_mix64(h, (unsigned char)*p);
    m->sig_hash = h;
    return f;
}

static zr_flight_entry *entry_of(zr_comm *m, uint64_t seq)
{
    zr_flight_entry *f = &m->flight[seq % ZR_FLIGHT_LEN];
    return seq && f->seq == seq ? f : NULL;
}

/* A collective that failed breaks the group: the ranks may no longer be in step. */
static zero_status broke(zr_comm *m, zr_flight_entry *f, zero_status s)
{
    if (f) {
        f->state = m->timed_out ? ZR_FL_TIMEOUT : ZR_FL_FAILED;
        f->t_end = zr_now();
    }
    if (s == ZERO_ERR_COMM && !m->broken) {
        zr_comm_mark_broken(m);
        snprintf(m->broken_why, sizeof m->broken_why, "%s", m->err.msg);
        zr_flight_dump(m, m->err.msg, m->flight_dir);
    }
    return s;
}

static zero_status refuse(zr_comm *m, zr_coll_kind kind)
{
    return zr_fail(&m->err, ZERO_ERR_COMM,
                   "%s not started: an earlier collective of this context failed (%s); only "
                   "zero_finalize is possible now",
                   zr_coll_name(kind), m->broken_why);
}

/* After a call that may leave a request in flight: done now, or when waited for. */
static zero_status issued(zr_coll *c, zr_flight_entry *f, zero_status s, zr_creq *req)
{
    zr_comm *m = c->comm;
    if (s)
        return broke(m, f, s);
    if (!req && c->host && !m->group_first)
        m->round_trips++; /* the host waited for the other ranks */
    if (req) {
        req->seq = f->seq;
    } else if (!m->group_first) {
        f->state = ZR_FL_DONE;
        f->t_end = zr_now();
    }
    return ZERO_OK;
}

zero_status zr_coll_all_gather(zr_coll *c, void *recv, size_t count, zr_elem e, zr_traffic t,
                               zr_creq *req)
{
    zr_comm *m = c->comm;
    if (m->broken)
        return refuse(m, ZR_COLL_ALL_GATHER);
    zr_flight_entry *f = record(m, ZR_COLL_ALL_GATHER, count, e, t);
    return issued(c, f, c->ops->all_gather(c, recv, count, e, t, req), req);
}

zero_status zr_coll_reduce_scatter(zr_coll *c, const void *send, void *recv, size_t count,
                                   zr_elem e, zr_traffic t, zr_creq *req)
{
    zr_comm *m = c->comm;
    if (m->broken)
        return refuse(m, ZR_COLL_REDUCE_SCATTER);
    zr_flight_entry *f = record(m, ZR_COLL_REDUCE_SCATTER, count, e, t);
    return issued(c, f, c->ops->reduce_scatter(c, send, recv, count, e, t, req), req);
}

zero_status zr_coll_all_reduce(zr_coll *c, void *buf, size_t count, zr_elem e, zr_redop op,
                               zr_traffic t, zr_creq *req)
{
    zr_comm *m = c->comm;
    if (m->broken)
        return refuse(m, ZR_COLL_ALL_REDUCE);
    zr_flight_entry *f = record(m, ZR_COLL_ALL_REDUCE, count, e, t);
    return issued(c, f, c->ops->all_reduce(c, buf, count, e, op, t, req), req);
}

zero_status zr_coll_broadcast(zr_coll *c, void *buf, size_t count, zr_elem e, int root,
                              zr_traffic t, zr_creq *req)
{
    zr_comm *m = c->comm;
    if (m->broken)
        return refuse(m, ZR_COLL_BROADCAST);
    zr_flight_entry *f = record(m, ZR_COLL_BROADCAST, count, e, t);
    return issued(c, f, c->ops->broadcast(c, buf, count, e, root, t, req), req);
}

zero_status zr_coll_gather(zr_coll *c, const void *send, void *recv, size_t count, zr_elem e,
                           int root)
{
    zr_comm *m = c->comm;
    if (m->broken)
        return refuse(m, ZR_COLL_ALL_GATHER);
    zr_flight_entry *f = record(m, ZR_COLL_ALL_GATHER, count, e, ZR_TRAFFIC_OTHER);
    f->what = "gather to rank 0";
    return issued(c, f, c->ops->gather(c, send, recv, count, e, root), NULL);
}

zero_status zr_coll_group_start(zr_coll *c)
{
    zr_comm *m = c->comm;
    if (m->broken)
        return refuse(m, ZR_COLL_ALL_GATHER);
    zero_status s = c->ops->group_start(c);
    if (!s && !m->group_first)
        m->group_first = m->seq + 1;
    return s;
}

zero_status zr_coll_group_end(zr_coll *c, zr_creq *req)
{
    zr_comm *m = c->comm;
    const uint64_t first = m->group_first;
    m->group_first = 0;
    zero_status s = c->ops->group_end(c, req);
    if (s)
        return broke(m, entry_of(m, m->seq), s);
    for (uint64_t q = first; first && q <= m->seq; q++) {
        zr_flight_entry *f = entry_of(m, q);
        if (!f)
            continue;
        if (req) {
            req->seq = q; /* the group's last collective stands for it */
        } else {
            f->state = ZR_FL_DONE;
            f->t_end = zr_now();
        }
    }
    return ZERO_OK;
}

zero_status zr_coll_wait(zr_coll *c, zr_creq *req)
{
    zr_comm *m = c->comm;
    zr_flight_entry *f = entry_of(m, req->seq);
    if (m->broken && f && f->state == ZR_FL_ISSUED)
        return refuse(m, f->kind); /* a peer is gone: waiting would not end */
    zero_status s = c->ops->wait(c, req);
    if (s)
        return broke(m, f, s);
    if (f && f->state == ZR_FL_ISSUED) {
        f->state = ZR_FL_DONE;
        f->t_end = zr_now();
    }
    req->seq = 0;
    return ZERO_OK;
}

zero_status zr_coll_test(zr_coll *c, zr_creq *req, int *done)
{
    zr_comm *m = c->comm;
    zr_flight_entry *f = entry_of(m, req->seq);
    if (m->broken && f && f->state == ZR_FL_ISSUED)
        return refuse(m, f->kind);
    zero_status s = c->ops->test(c, req, done);
    if (s)
        return broke(m, f, s);
    if (*done) {
        if (f && f->state == ZR_FL_ISSUED) {
            f->state = ZR_FL_DONE;
            f->t_end = zr_now();
        }
        req->seq = 0;
    }
    return ZERO_OK;
}

/* ---- the flight recorder's text -------------------------------------------------------------- */

static const char *state_name(int s)
{
    switch (s) {
    case ZR_FL_ISSUED: return "in flight";
    case ZR_FL_DONE: return "done";
    case ZR_FL_FAILED: return "failed";
    default: return "timed out";
    }
}

void zr_flight_describe(const zr_comm *c, const zr_flight_entry *e, char *buf, size_t len)
{
    static const char *const elem_names[] = {"f32", "bf16", "f16", "f64", "i64", "byte"};
    char where[48] = "";
    if (e->id >= 0)
        snprintf(where, sizeof where, " %d", e->id);
    double end = e->t_end > 0.0 ? e->t_end : zr_now();
    snprintf(buf, len, "%s #%llu (%s%s, step %lld, %zu x %s): %s after %.3f s",
             zr_coll_name(e->kind), (unsigned long long)e->seq, e->what, where,
             (long long)e->step, e->count, (unsigned)e->elem < 6 ? elem_names[e->elem] : "?",
             state_name(e->state), end - e->t_start);
}

void zr_flight_dump(const zr_comm *c, const char *why, const char *dir)
{
    FILE *f = NULL;
    if (dir && dir[0]) {
        char path[1024];
        snprintf(path, sizeof path, "%s/zero-flight-rank%d-%ld.txt", dir, c->rank,
                 (long)getpid());
        f = fopen(path, "w");
        if (!f)
            ZR_WARN(ZR_SUB_COMM, "flight recorder: cannot write %s", path);
    }
    ZR_WARN(ZR_SUB_COMM, "flight recorder of rank %d (%s): the last collectives, oldest first",
            c->rank, why);
    if (f)
        fprintf(f, "rank %d: %s\n", c->rank, why);
    uint64_t first = c->seq > ZR_FLIGHT_LEN ? c->seq - ZR_FLIGHT_LEN + 1 : 1;
    for (uint64_t q = first; q <= c->seq; q++) {
        const zr_flight_entry *e = &c->flight[q % ZR_FLIGHT_LEN];
        if (e->seq != q)
            continue;
        char line[256];
        zr_flight_describe(c, e, line, sizeof line);
        ZR_WARN(ZR_SUB_COMM, "  %s", line);
        if (f)
            fprintf(f, "%s\n", line);
    }
    if (f)
        fclose(f);
}
