/* pipeline.c — see pipeline.h. */
#include "offload/pipeline.h"

static char *half(const zo_pipe *p, int h) { return p->staging + (size_t)h * p->half_bytes; }

void zo_pipe_run(const zo_pipe *p)
{
    zo_block cur, nxt;
    if (!p->next(p->ctx, &cur))
        return;
    p->copy(p->ctx, ZO_SLOT_IN, half(p, 0), cur.in, cur.n * p->elem_bytes);
    for (int k = 0;; k++) {
        const int h = k & 1;
        const int more = p->next(p->ctx, &nxt);
        if (more) /* copy-in of the next block into the other half */
            p->copy(p->ctx, ZO_SLOT_IN + (h ^ 1), half(p, h ^ 1), nxt.in, nxt.n * p->elem_bytes);
        p->wait(p->ctx, ZO_SLOT_IN + h);
        p->compute(p->ctx, &cur, half(p, h));
        if (cur.out) { /* this half's previous copy-out ran before the copy-in just waited for
                          (copies run in issue order) */
            p->wait(p->ctx, ZO_SLOT_OUT + h);
            p->copy(p->ctx, ZO_SLOT_OUT + h, cur.out, half(p, h), cur.n * p->elem_bytes);
        }
        if (!more)
            break;
        cur = nxt;
    }
    p->wait(p->ctx, ZO_SLOT_OUT);
    p->wait(p->ctx, ZO_SLOT_OUT + 1); /* results are in place before the pipeline returns */
}
