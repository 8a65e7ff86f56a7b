/* io.c — the parameters out of the engine: the full fp32 values gathered chunk by chunk to rank
 * 0, written as safetensors (zero_export) or hashed (zero_param_digest). Traffic counted as
 * "other". */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/engine.h"
#include "util/log.h"

/* Calls fn(rank-0 buffer of chunk c's fp32 master values, (padded)) for every chunk in order,
 * on rank 0; other ranks only contribute their slices. Traffic counted as "other". */
typedef zero_status (*chunk_fn)(zero_ctx *z, int c, const float *full, void *arg);

static zero_status for_each_master_chunk(zero_ctx *z, chunk_fn fn, void *arg)
{
    const zp_layout *L = &z->layout;
    float *full = z->rank == 0 ? malloc(L->max_padded * sizeof *full) : NULL; /* (chunk padded) */
    float *slice = malloc(L->max_slice * sizeof *slice); /* (max slice) fp32, host: MPI sends it */
    int stage = z->set.cfg.stage;
    zero_status s = ZERO_OK, fs = ZERO_OK;
    /* every rank learns whether every rank has its buffers, and a device that has not failed
     * since the last step (the state read here is what it computed), before anyone gathers */
    zero_status dev = zr_device_error(z, "before reading the parameters");
    int64_t mine_ok = !((z->rank == 0 && !full) || !slice);
    int64_t bad = dev ? 2 : !mine_ok, any_bad = bad;
    int all_ok = zr_coll_all_reduce(&z->hcoll, &any_bad, 1, ZR_ELEM_I64, ZR_OP_MAX,
                                    ZR_TRAFFIC_OTHER, NULL) == ZERO_OK &&
                 !any_bad;
    if (!all_ok) {
        free(full);
        free(slice);
        if (any_bad == 2)
            return dev ? dev : zr_fail(&z->err, ZERO_ERR_SYSTEM, "another rank's device failed");
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory gathering parameters (on %s)",
                       mine_ok ? "another rank" : "this rank");
    }
    for (int c = 0; c < L->num_chunks && !s; c++) {
        const zp_chunk *ch = &L->chunks[c];
        size_t lo, hi;
        zp_slice_range(L, c, z->rank, &lo, &hi);
        const float *mine;
        if (z->st.master)
            mine = stage == 0 ? z->st.master + ch->offset + lo : z->st.master + ch->shard_offset;
        else if (stage == 3)
            mine = (const float *)z->st.params + ch->shard_offset;
        else
            mine = (const float *)z->st.params + ch->offset + lo;
        float dummy = 0.0f;
        if (slice)
            zr_dev_copy(&z->dev, slice, mine, ch->slice * sizeof *slice);
        s = zr_coll_gather(&z->hcoll, slice ? slice : mine, full ? full : &dummy, ch->slice,
                           ZR_ELEM_F32, 0);
        if (s) {
            s = zr_fail(&z->err, s, "parameter gather: %s", z->comm.err.msg);
            break;
        }
        if (z->rank == 0 && !fs && fn)
            fs = fn(z, c, full, arg);
    }
    free(full);
    free(slice);
    return s ? s : fs;
}

/* ---- digest ---------------------------------------------------------------------------------- */

static zero_status digest_chunk(zero_ctx *z, int c, const float *full, void *arg)
{
    uint64_t *h = arg;
    const zp_chunk *ch = &z->layout.chunks[c];
    for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
        const float *x = full + z->layout.place[i].offset;
        for (size_t k = 0; k < z->layout.place[i].numel; k++) {
            uint32_t w;
            memcpy(&w, &x[k], sizeof w);
            *h = (*h ^ w) * 0x100000001b3ull; /* FNV-1a over 32-bit words */
        }
    }
    return ZERO_OK;
}

zero_status zero_param_digest(zero_ctx *z, uint64_t *digest)
{
    if (!z)
        return ZERO_ERR_INVALID;
    uint64_t h = 0xcbf29ce484222325ull;
    zero_status s = for_each_master_chunk(z, digest_chunk, &h);
    zero_status b = zr_coll_broadcast(&z->hcoll, &h, 1, ZR_ELEM_I64, 0, ZR_TRAFFIC_OTHER, NULL);
    if (!s && b)
        s = zr_fail(&z->err, b, "digest broadcast: %s", z->comm.err.msg);
    if (digest)
        *digest = h;
    return s;
}

/* ---- safetensors export ---------------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

typedef struct export_state {
    FILE *f;
    const char *path;
} export_state;

static zero_status export_chunk(zero_ctx *z, int c, const float *full, void *arg)
{
    export_state *e = arg;
    const zp_chunk *ch = &z->layout.chunks[c];
    for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
        size_t n = z->layout.place[i].numel;
        if (fwrite(full + z->layout.place[i].offset, sizeof(float), n, e->f) != n)
            return zr_fail(&z->err, ZERO_ERR_IO, "zero_export: writing %s: %s", e->path,
                           strerror(errno));
    }
    return ZERO_OK;
}

/* safetensors: u64 little-endian header size, a JSON header (padded with spaces to 8 bytes),
 * then the tensors' bytes in header order. */
static zero_status write_header(zero_ctx *z, FILE *f)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *h = open_memstream(&buf, &len);
    if (!h)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_export: out of host memory");
    fprintf(h, "{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"libzero\"}");
    uint64_t off = 0;
    for (int i = 0; i < z->num_tensors; i++) {
        const zr_tensor_meta *m = &z->meta[i];
        uint64_t bytes = (uint64_t)z->layout.place[i].numel * 4;
        fputc(',', h);
        json_string(h, m->name);
        fprintf(h, ":{\"dtype\":\"F32\",\"shape\":[");
        if (m->ndim == 0)
            fprintf(h, "%zu", z->layout.place[i].numel);
        for (int d = 0; d < m->ndim; d++)
            fprintf(h, "%s%" PRId64, d ? "," : "", m->shape[d]);
        fprintf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
        off += bytes;
    }
    fputc('}', h);
    while ((ftell(h) % 8) != 0)
        fputc(' ', h);
    fclose(h);
    unsigned char size_le[8];
    for (int k = 0; k < 8; k++)
        size_le[k] = (unsigned char)((uint64_t)len >> (8 * k));
    int ok = fwrite(size_le, 1, 8, f) == 8 && fwrite(buf, 1, len, f) == len;
    free(buf);
    return ok ? ZERO_OK
              : zr_fail(&z->err, ZERO_ERR_IO, "zero_export: writing header: %s", strerror(errno));
}

zero_status zero_export(zero_ctx *z, const char *path)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!path || !path[0])
        return zr_fail(&z->err, ZERO_ERR_INVALID, "zero_export: path is %s",
                       path ? "empty" : "NULL");
    char tmp[4096];
    export_state e = {NULL, path};
    zero_status s = ZERO_OK;
    if (z->rank == 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
        e.f = fopen(tmp, "wb");
        if (!e.f)
            s = zr_fail(&z->err, ZERO_ERR_IO, "zero_export: cannot create %s: %s", tmp,
                        strerror(errno));
        else
            s = write_header(z, e.f);
    }
    /* Everyone gathers even if rank 0 already failed, so no rank waits alone. */
    zero_status g = for_each_master_chunk(z, s ? NULL : export_chunk, &e);
    (void)g;
    if (z->rank == 0) {
        if (!s)
            s = g;
        if (e.f && fclose(e.f) != 0 && !s)
            s = zr_fail(&z->err, ZERO_ERR_IO, "zero_export: closing %s: %s", tmp, strerror(errno));
        if (!s && rename(tmp, path) != 0)
            s = zr_fail(&z->err, ZERO_ERR_IO, "zero_export: renaming %s to %s: %s", tmp, path,
                        strerror(errno));
        if (s && e.f)
            remove(tmp);
    }
    /* Rank 0's verdict for everyone. */
    int64_t st = s;
    zr_coll_broadcast(&z->hcoll, &st, 1, ZR_ELEM_I64, 0, ZR_TRAFFIC_OTHER, NULL);
    if (st && !s)
        s = zr_fail(&z->err, (zero_status)st, "zero_export: rank 0 failed to write %s", path);
    if (!s && z->rank == 0)
        ZR_INFO(ZR_SUB_INIT, "exported %d tensors to %s", z->num_tensors, path);
    return s;
}

