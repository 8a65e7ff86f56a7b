/* agree.c — zero_init's local argument checks, and agreement across ranks: every rank
 * contributes its local status, message and fingerprint; every rank then returns the same
 * verdict. No rank ever waits in a collective that another rank skipped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/engine.h"
#include "util/log.h"

static int cmp_name(const void *a, const void *b)
{
    const zero_tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* The offset of the first byte of s that is not part of a well-formed UTF-8 sequence (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF), or -1 when s is valid UTF-8. */
static long utf8_invalid_at(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (s[i]) {
        unsigned char c = s[i];
        int len;
        unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the second byte */
        if (c < 0x80)
            len = 1;
        else if (c >= 0xc2 && c <= 0xdf)
            len = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            if (c == 0xe0)
                lo = 0xa0; /* overlong */
            if (c == 0xed)
                hi = 0x9f; /* surrogates */
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            if (c == 0xf0)
                lo = 0x90; /* overlong */
            if (c == 0xf4)
                hi = 0x8f; /* above U+10FFFF */
        } else
            return (long)i;
        for (int k = 1; k < len; k++) {
            unsigned char b = s[i + k]; /* a NUL ends the loop here: it is not a continuation */
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf))
                return (long)(i + k);
        }
        i += (size_t)len;
    }
    return -1;
}

/* A tensor's name: exported as a safetensors key, so a non-empty UTF-8 string that is not the
 * format's reserved "__metadata__". */
static zero_status check_name(zero_ctx *z, int i, const char *name)
{
    if (!name || !name[0])
        return zr_fail(&z->err, ZERO_ERR_INVALID, "tensor %d: name is %s; every tensor needs a "
                       "unique name", i, name ? "empty" : "NULL");
    long bad = utf8_invalid_at(name);
    if (bad >= 0)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "tensor %d: name is not valid UTF-8 (byte %ld is 0x%02x, after \"%.*s\"); "
                       "names are exported as safetensors keys, which are UTF-8 strings",
                       i, bad, (unsigned char)name[bad], (int)(bad > 64 ? 64 : bad), name);
    if (strcmp(name, "__metadata__") == 0)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "tensor %d: name \"__metadata__\" is reserved by the safetensors format "
                       "(zero_export writes its metadata under it); rename the tensor", i);
    return ZERO_OK;
}

/* ndim and shape: the product of the dimensions, computed without overflowing 64 bits, must be
 * numel. */
static zero_status check_shape(zero_ctx *z, int i, const zero_tensor *x)
{
    if (x->ndim < 0 || x->ndim > ZERO_MAX_DIMS)
        return zr_fail(&z->err, ZERO_ERR_INVALID, "tensor %d (%s): ndim is %d; expected 0..%d",
                       i, x->name, x->ndim, ZERO_MAX_DIMS);
    uint64_t prod = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (x->shape[d] <= 0)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): shape[%d] is %lld; expected > 0", i, x->name, d,
                           (long long)x->shape[d]);
        if (prod > UINT64_MAX / (uint64_t)x->shape[d])
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): the shape's product overflows 64 bits at shape[%d] "
                           "= %lld; numel is %zu",
                           i, x->name, d, (long long)x->shape[d], x->numel);
        prod *= (uint64_t)x->shape[d];
    }
    if (x->ndim > 0 && prod != x->numel)
        return zr_fail(&z->err, ZERO_ERR_INVALID,
                       "tensor %d (%s): shape has %llu elements but numel is %zu", i, x->name,
                       (unsigned long long)prod, x->numel);
    return ZERO_OK;
}

/* (engine.h) The array as the program registered it, before tensors with slices are split into
 * one internal tensor per slice (zr_check_tensors then checks those): names, uniqueness, module
 * order by each tensor's first module, and init and init_fn not both set. */
zero_status zr_check_registered(zero_ctx *z, const zero_tensor *t, int n)
{
    for (int i = 0; t && i < n; i++) {
        ZR_CHECK(check_name(z, i, t[i].name));
        if (t[i].init && t[i].init_fn)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): both init and init_fn are set; give one (init_fn is "
                           "called by every rank for its own elements, init is rank 0's array)",
                           i, t[i].name);
        if (i > 0 && t[i].module < t[i - 1].module)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): module %d after module %d; register tensors in "
                           "module order (non-decreasing module ids; a tensor with slices by "
                           "the module of its slice 0)",
                           i, t[i].name, t[i].module, t[i - 1].module);
    }
    const zero_tensor **sorted = t && n > 0 ? malloc((size_t)n * sizeof *sorted) : NULL;
    if (t && n > 0 && !sorted)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_init: out of host memory");
    for (int i = 0; sorted && i < n; i++)
        sorted[i] = &t[i];
    if (sorted)
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_name);
    zero_status s = ZERO_OK;
    for (int i = 1; sorted && i < n && !s; i++)
        if (strcmp(sorted[i]->name, sorted[i - 1]->name) == 0)
            s = zr_fail(&z->err, ZERO_ERR_INVALID,
                        "tensor name \"%s\" is registered twice; names must be unique",
                        sorted[i]->name);
    free(sorted);
    return s;
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
        ZR_CHECK(check_name(z, i, x->name));
        if (x->numel == 0)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): numel is 0; every tensor needs at least one element",
                           i, x->name);
        if (x->module < 0 || x->module > n - 1) /* dense: per-module arrays stay small */
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): module is %d; expected 0..%d (module ids are at most "
                           "num_tensors - 1: number the modules 0, 1, 2, ... in registration "
                           "order)",
                           i, x->name, x->module, n - 1);
        if (i > 0 && x->module < t[i - 1].module)
            return zr_fail(&z->err, ZERO_ERR_INVALID,
                           "tensor %d (%s): module %d after module %d; register tensors in "
                           "module order (non-decreasing module ids)",
                           i, x->name, x->module, t[i - 1].module);
        ZR_CHECK(check_shape(z, i, x));
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

/* One tensor's registration, as it is hashed and (on the failure path) compared across ranks. */
static uint64_t hash_tensor(uint64_t h, const zero_tensor *x)
{
    h = zr_mix64(h, x->numel);
    h = zr_mix64(h, (uint64_t)x->module);
    h = zr_mix64(h, (uint64_t)x->no_decay);
    h = zr_mix64(h, (uint64_t)x->group);
    h = zr_mix64(h, (uint64_t)(x->init_fn != NULL)); /* sharded init or rank 0's values */
    h = zr_mix64(h, (uint64_t)x->ndim);
    for (int d = 0; d < x->ndim && d < ZERO_MAX_DIMS; d++)
        h = zr_mix64(h, (uint64_t)x->shape[d]);
    for (const char *p = x->name; *p; p++)
        h = zr_mix64(h, (unsigned char)*p);
    return h;
}

uint64_t zr_hash_tensors(const zero_tensor *t, int n)
{
    uint64_t h = 0x6a09e667f3bcc909ull;
    for (int i = 0; i < n; i++)
        h = hash_tensor(h, &t[i]);
    return h;
}

/* ---- agreement ------------------------------------------------------------------------------- */

typedef struct agree_packet {
    int64_t status;
    int64_t nwords;
    int64_t words[ZR_AGREE_WORDS];
    char msg[512];
} agree_packet;

/* One round: every rank's packet. The verdict is computed from the gathered packets only (the
 * local status aside, which a failing rank keeps), so every rank reaches the same one. *differs
 * is the lowest word index at which any rank differs from rank 0 when every rank is fine and
 * has as many words (-1: none differs, or a rank failed, or the word counts differ): every rank
 * computes the same. */
static zero_status agree_round(zero_ctx *z, zero_status local, const int64_t *words,
                               const char *const *names, const int *kinds, int nwords,
                               int quiet_word, int *differs, int *quiet)
{
    *differs = -1;
    *quiet = 0;
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
        zr_comm_release(&z->comm, all);
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
    for (int r = 1; r < z->world && !verdict; r++) {
        if (all[r].nwords != all[0].nwords) {
            verdict = zr_fail(&z->err, ZERO_ERR_INVALID,
                              "ranks 0 and %d compare different settings (%lld and %lld words); "
                              "every rank must run the same libzero",
                              r, (long long)all[0].nwords, (long long)all[r].nwords);
            break;
        }
        for (int w = 0; w < all[0].nwords && w < ZR_AGREE_WORDS; w++) {
            if (all[r].words[w] != all[0].words[w]) {
                int kind = kinds && w < nwords ? kinds[w] : ZR_WORD_INT;
                char v0[96], vr[96];
                zr_config_word_text(kind, all[0].words[w], v0, sizeof v0);
                zr_config_word_text(kind, all[r].words[w], vr, sizeof vr);
                /* quiet_word's message is logged by the caller, which may replace it */
                *quiet = w == quiet_word;
                verdict = zr_error_set(&z->err, ZERO_ERR_INVALID,
                                       "%s differs across ranks: %s on rank 0, %s on rank %d; "
                                       "every rank must use the same settings and tensors",
                                       w < nwords ? names[w] : "a setting", v0, vr, r);
                if (!*quiet)
                    ZR_WARN(ZR_SUB_INIT, "%s: %s", zero_status_string(verdict), z->err.msg);
                *differs = w;
                break;
            }
        }
    }
    if (verdict == ZERO_ERR_INVALID && *differs >= 0) {
        for (int r = 1; r < z->world; r++) {
            if (all[r].nwords != all[0].nwords)
                *differs = -1;
            for (int w = 0; w < *differs; w++)
                if (all[r].words[w] != all[0].words[w]) {
                    *differs = w;
                    break;
                }
        }
    }
    zr_comm_release(&z->comm, all);
    return verdict;
}

zero_status zr_agree(zero_ctx *z, zero_status local, const int64_t *words,
                     const char *const *names, int nwords)
{
    int differs, quiet;
    return agree_round(z, local, words, names, NULL, nwords, -1, &differs, &quiet);
}

/* The failure path of zr_agree_tensors: one record per tensor, all-gathered, to name the first
 * tensor whose registration differs from rank 0's. */
enum { ZR_REC_NAME = 128 };
typedef struct tensor_rec {
    int64_t numel, module, no_decay, ndim, group, init_fn;
    int64_t shape[ZERO_MAX_DIMS];
    uint64_t name_hash;          /* the whole name */
    uint64_t name_len;
    char name[ZR_REC_NAME];      /* its beginning, for the message */
} tensor_rec;

static void make_rec(tensor_rec *r, const zero_tensor *x)
{
    memset(r, 0, sizeof *r);
    r->numel = (int64_t)x->numel;
    r->module = x->module;
    r->no_decay = x->no_decay;
    r->group = x->group;
    r->init_fn = x->init_fn != NULL;
    r->ndim = x->ndim;
    memcpy(r->shape, x->shape, (size_t)x->ndim * sizeof *r->shape);
    r->name_hash = 0x6a09e667f3bcc909ull;
    for (const char *p = x->name; *p; p++)
        r->name_hash = zr_mix64(r->name_hash, (unsigned char)*p);
    r->name_len = strlen(x->name);
    snprintf(r->name, sizeof r->name, "%s", x->name);
}

/* "\"b.w\" shape [25, 10] module 1" (no_decay and numel when they say something). */
static void describe_rec(const tensor_rec *r, char *buf, size_t len)
{
    int o = snprintf(buf, len, "\"%s%s\"", r->name, r->name_len >= ZR_REC_NAME ? "..." : "");
    if (r->ndim > 0) {
        o += snprintf(buf + o, len - (size_t)o, " shape [");
        for (int d = 0; d < r->ndim && (size_t)o < len; d++)
            o += snprintf(buf + o, len - (size_t)o, "%s%lld", d ? ", " : "",
                          (long long)r->shape[d]);
        if ((size_t)o < len)
            o += snprintf(buf + o, len - (size_t)o, "]");
    } else if ((size_t)o < len)
        o += snprintf(buf + o, len - (size_t)o, " numel %lld (no shape)", (long long)r->numel);
    if ((size_t)o < len)
        o += snprintf(buf + o, len - (size_t)o, " module %lld", (long long)r->module);
    if (r->no_decay && (size_t)o < len)
        snprintf(buf + o, len - (size_t)o, " no_decay");
}

static void differing_fields(const tensor_rec *a, const tensor_rec *b, char *buf, size_t len)
{
    buf[0] = 0;
    int name = a->name_hash != b->name_hash || a->name_len != b->name_len ||
               strcmp(a->name, b->name) != 0;
    int shape = a->ndim != b->ndim ||
                memcmp(a->shape, b->shape, (size_t)(a->ndim > 0 ? a->ndim : 0) *
                                               sizeof *a->shape) != 0;
    const char *f[7] = {name ? "name" : NULL, shape ? "shape" : NULL,
                        a->numel != b->numel ? "numel" : NULL,
                        a->module != b->module ? "module" : NULL,
                        a->no_decay != b->no_decay ? "no_decay" : NULL,
                        a->group != b->group ? "group" : NULL,
                        a->init_fn != b->init_fn ? "init_fn (set on one rank only)" : NULL};
    for (int k = 0; k < 7; k++)
        if (f[k])
            snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", buf[0] ? ", " : "", f[k]);
}

/* All ranks register the same number of tensors but their hashes differ: find the first one. */
static zero_status name_differing_tensor(zero_ctx *z, const zero_tensor *t, int n)
{
    size_t per = (size_t)n * sizeof(tensor_rec);
    tensor_rec *all = calloc((size_t)z->world, per);
    /* every rank learns whether every rank has the buffer before the gather */
    int64_t bad = !all;
    zero_status s = zr_coll_all_reduce(&z->hcoll, &bad, 1, ZR_ELEM_I64, ZR_OP_MAX,
                                       ZR_TRAFFIC_OTHER, NULL);
    if (s || bad) { /* out of memory somewhere: the first round's message stands */
        zr_comm_release(&z->comm, all);
        return s ? zr_fail(&z->err, s, "agreement among ranks failed: %s", z->comm.err.msg)
                 : ZERO_OK;
    }
    for (int i = 0; i < n; i++)
        make_rec(&all[(size_t)z->rank * (size_t)n + (size_t)i], &t[i]);
    s = zr_coll_all_gather(&z->hcoll, all, per, ZR_ELEM_BYTE, ZR_TRAFFIC_OTHER, NULL);
    if (s) {
        zr_comm_release(&z->comm, all);
        return zr_fail(&z->err, s, "agreement among ranks failed: %s", z->comm.err.msg);
    }
    zero_status verdict = ZERO_OK;
    for (int i = 0; i < n && !verdict; i++) {
        const tensor_rec *a = &all[i];
        for (int r = 1; r < z->world; r++) {
            const tensor_rec *b = &all[(size_t)r * (size_t)n + (size_t)i];
            if (memcmp(a, b, sizeof *a) == 0)
                continue;
            char fields[64], da[512], db[512];
            differing_fields(a, b, fields, sizeof fields);
            describe_rec(a, da, sizeof da);
            describe_rec(b, db, sizeof db);
            verdict = zr_fail(&z->err, ZERO_ERR_INVALID,
                              "the tensor registration differs across ranks: tensor %d (%s "
                              "differs) is %s on rank 0 but %s on rank %d; every rank must "
                              "register the same tensors in the same order",
                              i, fields[0] ? fields : "registration", da, db, r);
            break;
        }
    }
    zr_comm_release(&z->comm, all);
    return verdict;
}

/* (engine.h) zr_agree for zero_init's configuration words (kinds[] as zr_config_fingerprint
 * writes them, or NULL) followed by the tensor registration: appends the tensor count and
 * zr_hash_tensors(t, n). When the tensors are what differs, a second round, on that failure path
 * only, names the first tensor that differs and how (its name, shape, module on rank 0 and on the
 * differing rank). Collective. */
zero_status zr_agree_tensors(zero_ctx *z, zero_status local, const int64_t *words,
                             const char *const *names, const int *kinds, int nwords,
                             const zero_tensor *t, int n)
{
    int64_t w[ZR_AGREE_WORDS] = {0};
    const char *nm[ZR_AGREE_WORDS] = {0};
    int kd[ZR_AGREE_WORDS] = {0};
    int nw = 0;
    if (!local) {
        if (nwords < 0 || nwords > ZR_AGREE_WORDS - 2)
            local = zr_fail(&z->err, ZERO_ERR_INTERNAL, "agreement: %d setting words, at most %d",
                            nwords, ZR_AGREE_WORDS - 2);
        else {
            if (nwords)
                memcpy(w, words, (size_t)nwords * sizeof *w);
            for (; nw < nwords; nw++) {
                nm[nw] = names[nw];
                kd[nw] = kinds ? kinds[nw] : ZR_WORD_INT;
            }
            w[nw] = n;
            kd[nw] = ZR_WORD_INT;
            nm[nw++] = "the number of registered tensors";
            w[nw] = (int64_t)zr_hash_tensors(t, n);
            kd[nw] = ZR_WORD_INT;
            nm[nw++] = "the tensor registration (names, shapes, sizes, modules, no_decay, groups, "
                       "init_fn)";
        }
    }
    int differs, quiet;
    zero_status verdict =
        agree_round(z, local, w, nm, kd, local ? 0 : nw, nw - 1, &differs, &quiet);
    /* Only the hash differs, on any rank (so every rank registers as many tensors): a second
     * round names the tensor. `differs` comes from the gathered words, so every rank takes this
     * branch or none. */
    zero_status s = ZERO_OK;
    if (verdict == ZERO_ERR_INVALID && differs >= 0 && differs == nw - 1)
        s = name_differing_tensor(z, t, n); /* a message of its own unless out of memory */
    if (s)
        return s;
    if (quiet)
        ZR_WARN(ZR_SUB_INIT, "%s: %s", zero_status_string(verdict), z->err.msg);
    return verdict;
}
