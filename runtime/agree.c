/* agree.c — zero_init's local argument checks, and agreement across ranks: every rank
 * contributes its local status, message and fingerprint; every rank then returns the same
 * verdict. No rank ever waits in a collective that another rank skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"

static int cmp_name(const void *a, const void *b)
{
    const zero_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

zero_status zr_check_tensors(zero_ctx *z, zero_ctx **out, const zero_tensor *t, int n)
{
    if (!out)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_init: ctx is NULL; pass the address of a zero_ctx * to receive "
                       "the context");
    if (n <= 0)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_init: num_tensors is %d; register at least one tensor", n);
    if (!t)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "zero_init: tensors is NULL but num_tensors is %d", n);
    for (int i = 0; i < n; i++) {
        const zero_tensor *x = &t[i];
        if (!x->name || !x->name[0])
            return zr_fail(&z->err, ZERO_ERR_INVALID, "tensor %d: name is %s; every tensor needs a "
                           "unique name", i, x->name ? "empty" : "NULL");
        if (x->numel == 0)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): numel is 0; every tensor needs at least one element",
                           i, x->name);
        if (x->module < 0)
            return zr_fail(&z->err, ZERO_ERR_INVALID, "tensor %d (%s): module is %d; expected >= 0",
                           i, x->name, x->module);
        if (i > 0 && x->module < t[i - 1].module)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): module %d after module %d; register tensors in "
                           "module order (non-decreasing module ids)",
                           i, x->name, x->module, t[i - 1].module);
        if (x->ndim < 0 || x->ndim > ZERO_MAX_DIMS)
            return zr_fail(&z->err, ZERO_ERR_INVALID, "tensor %d (%s): ndim is %d; expected 0..%d",
                           i, x->name, x->ndim, ZERO_MAX_DIMS);
        if (x->ndim > 0) {
            uint64_t prod = 1;
            for (int d = 0; d < x->ndim; d++) {
                if (x->shape[d] <= 0)
                    return zr_fail(&z->err, ZERO_ERR_INVALID,
                                   "tensor %d (%s): shape[%d] is %lld; expected > 0", i, x->name,
                                   d, (long long)x->shape[d]);
                prod *= (uint64_t)x->shape[d];
            }
            if (prod != x->numel)
                return zr_fail(&z->err, ZERO_ERR_INVALID,
                               "tensor %d (%s): shape has %llu elements but numel is %zu", i,
                               x->name, (unsigned long long)prod, x->numel);
        }
    }
    const zero_tensor **sorted = malloc((size_t)n * sizeof *sorted);
    if (!sorted)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_init: out of host memory");
    for (int i = 0; i < n; i++)
        sorted[i] = &t[i];
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    for (int i = 1; i < n; i++) {
        if (strcmp(sorted[i]->name, sorted[i - 1]->name) == 0) {
            zero_status s = zr_fail(&z->err, ZERO_ERR_INVALID,
                                    "tensor name \"%s\" is registered twice; names must be unique",
                                    sorted[i]->name);
            free(sorted);
            return s;
        }
    }
    free(sorted);
    return ZERO_OK;
}

uint64_t zr_hash_tensors(const zero_tensor *t, int n)
{
    uint64_t h = 0x6a09e667f3bcc909ull;
    for (int i = 0; i < n; i++) {
        h = zr_mix64(h, t[i].numel);
        h = zr_mix64(h, (uint64_t)t[i].module);
        h = zr_mix64(h, (uint64_t)t[i].no_decay);
        for (const char *p = t[i].name; *p; p++)
            h = zr_mix64(h, (unsigned char)*p);
    }
    return h;
}

typedef struct agree_packet {
    int64_t status;
    int64_t nwords;
    int64_t words[ZR_AGREE_WORDS];
    char msg[512];
} agree_packet;

zero_status zr_agree(zero_ctx *z, zero_status local, const int64_t *words,
                         const char *const *names, int nwords)
{
    agree_packet mine;
    memset(&mine, 0, sizeof mine);
    mine.status = local;
    mine.nwords = nwords;
    if (nwords)
        memcpy(mine.words, words, (size_t)nwords * sizeof *words);
    if (local)
        snprintf(mine.msg, sizeof mine.msg, "%s", z->err.msg);
    agree_packet *all = malloc((size_t)z->world * sizeof *all);
    if (!all)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    memcpy(&all[z->rank], &mine, sizeof mine);
    zero_status s =
        zr_coll_all_gather(&z->hcoll, all, sizeof mine, ZR_ELEM_BYTE, ZR_TRAFFIC_OTHER, NULL);
    if (s) {
        free(all);
        return zr_fail(&z->err, s, "agreement among ranks failed: %s", z->comm.err.msg);
    }
    zero_status verdict = local;
    if (!local) {
        for (int r = 0; r < z->world; r++) {
            if (all[r].status) {
                verdict = zr_fail(&z->err, (zero_status)all[r].status, "rank %d failed: %s", r,
                                  all[r].msg);
                break;
            }
        }
    }
    if (!verdict) {
        for (int r = 1; r < z->world && !verdict; r++) {
            for (int w = 0; w < nwords; w++) {
                if (all[r].nwords != nwords || all[r].words[w] != all[0].words[w]) {
                    verdict = zr_fail(&z->err, ZERO_ERR_INVALID,
                                      "%s differs across ranks: %lld on rank 0, %lld on rank %d; "
                                      "every rank must use the same settings and tensors",
                                      names[w], (long long)all[0].words[w],
                                      (long long)all[r].words[w], r);
                    break;
                }
            }
        }
    }
    free(all);
    return verdict;
}

