/* report.c — what leaves the engine as files or digests: the full fp32 parameters gathered
 * chunk by chunk to rank 0 (zero_export as safetensors, zero_param_digest) and the JSON report
 * written at zero_finalize. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/engine.h"
#include "runtime/log.h"

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
    int save = z->comm.counting;
    z->comm.counting = 0;
    /* every rank learns whether every rank has its buffers, and a device that has not failed
     * since the last step (the state read here is what it computed), before anyone gathers */
    zero_status dev = zr_device_error(z, "before reading the parameters");
    int64_t mine_ok = !((z->rank == 0 && !full) || !slice);
    int64_t bad = dev ? 2 : !mine_ok, any_bad = bad;
    int all_ok = zr_all_reduce(&z->comm, &any_bad, 1, ZR_ELEM_I64, ZR_OP_MAX, NULL) == ZERO_OK &&
                 !any_bad;
    if (!all_ok) {
        z->comm.counting = save;
        free(full);
        free(slice);
        if (any_bad == 2)
            return dev ? dev : zr_fail(z, ZERO_ERR_SYSTEM, "another rank's device failed");
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory gathering parameters (on %s)",
                       mine_ok ? "another rank" : "this rank");
    }
    for (int c = 0; c < L->num_chunks && !s; c++) {
        const zp_chunk *ch = &L->chunks[c];
        size_t lo, hi;
        zp_slice_range(L, c, z->rank, &lo, &hi);
        const float *mine;
        if (z->master)
            mine = stage == 0 ? z->master + ch->offset + lo : z->master + ch->shard_offset;
        else if (stage == 3)
            mine = (const float *)z->params + ch->shard_offset;
        else
            mine = (const float *)z->params + ch->offset + lo;
        float dummy = 0.0f;
        if (slice)
            zr_dev_copy(&z->dev, slice, mine, ch->slice * sizeof *slice);
        s = zr_gather(&z->comm, slice ? slice : mine, full ? full : &dummy, ch->slice,
                      ZR_ELEM_F32, 0);
        if (s) {
            s = zr_fail(z, s, "parameter gather: %s", z->comm.err);
            break;
        }
        if (z->rank == 0 && !fs && fn)
            fs = fn(z, c, full, arg);
    }
    z->comm.counting = save;
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
    int save = z->comm.counting;
    z->comm.counting = 0;
    zero_status b = zr_broadcast(&z->comm, &h, 1, ZR_ELEM_I64, 0, NULL);
    z->comm.counting = save;
    if (!s && b)
        s = zr_fail(z, b, "digest broadcast: %s", z->comm.err);
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
            return zr_fail(z, ZERO_ERR_IO, "zero_export: writing %s: %s", e->path,
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
        return zr_fail(z, ZERO_ERR_SYSTEM, "zero_export: out of host memory");
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
    return ok ? ZERO_OK : zr_fail(z, ZERO_ERR_IO, "zero_export: writing header: %s", strerror(errno));
}

zero_status zero_export(zero_ctx *z, const char *path)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!path || !path[0])
        return zr_fail(z, ZERO_ERR_INVALID, "zero_export: path is %s", path ? "empty" : "NULL");
    char tmp[4096];
    export_state e = {NULL, path};
    zero_status s = ZERO_OK;
    if (z->rank == 0) {
        snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
        e.f = fopen(tmp, "wb");
        if (!e.f)
            s = zr_fail(z, ZERO_ERR_IO, "zero_export: cannot create %s: %s", tmp, strerror(errno));
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
            s = zr_fail(z, ZERO_ERR_IO, "zero_export: closing %s: %s", tmp, strerror(errno));
        if (!s && rename(tmp, path) != 0)
            s = zr_fail(z, ZERO_ERR_IO, "zero_export: renaming %s to %s: %s", tmp, path,
                        strerror(errno));
        if (s && e.f)
            remove(tmp);
    }
    /* Rank 0's verdict for everyone. */
    int64_t st = s;
    int save = z->comm.counting;
    z->comm.counting = 0;
    zr_broadcast(&z->comm, &st, 1, ZR_ELEM_I64, 0, NULL);
    z->comm.counting = save;
    if (st && !s)
        s = zr_fail(z, (zero_status)st, "zero_export: rank 0 failed to write %s", path);
    if (!s && z->rank == 0)
        ZR_INFO(ZR_SUB_INIT, "exported %d tensors to %s", z->num_tensors, path);
    return s;
}

/* ---- JSON report ----------------------------------------------------------------------------- */

/* per rank: device params grads optimizer buffers total model_state current_total, then host
 * peak total and host model state peak */
enum { ZR_RANK_WORDS = 9 };

zero_status zr_write_report(zero_ctx *z, const char *path)
{
    uint64_t digest = 0;
    zero_status s = zero_param_digest(z, &digest);
    if (s)
        return s;
    /* Per-rank peaks to rank 0 (every rank takes part). */
    int64_t *peaks = calloc((size_t)z->world * ZR_RANK_WORDS, sizeof *peaks);
    if (!peaks)
        return zr_fail(z, ZERO_ERR_SYSTEM, "out of host memory for the report");
    int64_t *mine = peaks + (size_t)z->rank * ZR_RANK_WORDS;
    for (int l = 0; l < ZERO_MEM_NUM_LABELS; l++)
        mine[l] = (int64_t)z->dev.peak[l];
    mine[4] = (int64_t)z->dev.peak_total;
    mine[5] = (int64_t)z->dev.model_state_peak;
    mine[6] = (int64_t)z->dev.current_total;
    mine[7] = (int64_t)z->host.peak_total;
    mine[8] = (int64_t)z->host.model_state_peak;
    int save = z->comm.counting;
    z->comm.counting = 0;
    s = zr_all_gather(&z->comm, peaks, ZR_RANK_WORDS, ZR_ELEM_I64, NULL);
    z->comm.counting = save;
    if (s) {
        free(peaks);
        return zr_fail(z, s, "report: %s", z->comm.err);
    }
    if (z->rank != 0) {
        free(peaks);
        return ZERO_OK;
    }
    int64_t max[ZR_RANK_WORDS] = {0};
    for (int r = 0; r < z->world; r++)
        for (int k = 0; k < ZR_RANK_WORDS; k++)
            if (peaks[r * ZR_RANK_WORDS + k] > max[k])
                max[k] = peaks[r * ZR_RANK_WORDS + k];

    FILE *f = fopen(path, "w");
    if (!f) {
        free(peaks);
        return zr_fail(z, ZERO_ERR_IO, "report: cannot write %s: %s", path, strerror(errno));
    }
    const zero_config *c = &z->set.cfg;
    const zp_layout *L = &z->layout;
    int64_t boundaries = z->boundaries;
    double total_bus = 0.0;
    for (int k = 0; k < ZR_COLL_NUM; k++)
        total_bus += z->comm.bus_bytes[k];
    double formula = zp_bus_bytes_per_step(c->stage, z->wsz, L->num_params, z->world);
    /* Stage 2 reduce-scatters every micro-step: (accum - 1) more gradient passes per step;
     * stage 3 gathers and reduces every micro-step: accum times the whole 3Ψ. */
    if (c->stage == 2)
        formula += (double)(c->grad_accum - 1) * (double)L->num_params * (double)z->wsz *
                   (double)(z->world - 1) / (double)z->world;
    if (c->stage == 3)
        formula *= (double)c->grad_accum;
    double wall = z->t_end - z->t_init_done;

    fprintf(f, "{\n  \"version\": \"%d.%d.%d\",\n", ZERO_VERSION_MAJOR, ZERO_VERSION_MINOR,
            ZERO_VERSION_PATCH);
    fprintf(f, "  \"config\": ");
    zr_config_write_json(&z->set, f);
    fprintf(f, ",\n  \"backend\": {\"device\": \"%s\", \"collectives\": \"%s\"},\n",
            z->dev.ops->name, z->nccl ? "nccl" : "mpi");
    fprintf(f, "  \"world_size\": %d,\n  \"stage\": %d,\n  \"dtype\": \"%s\",\n", z->world,
            c->stage, zr_dtype_name(z->dtype));
    fprintf(f, "  \"num_params\": %zu,\n  \"padded_params\": %zu,\n  \"shard_params\": %zu,\n",
            L->num_params, L->total_padded, L->shard_numel);
    fprintf(f, "  \"num_tensors\": %d,\n  \"num_modules\": %d,\n  \"num_chunks\": %d,\n",
            z->num_tensors, L->num_modules, L->num_chunks);
    fprintf(f, "  \"steps\": %" PRId64 ",\n  \"micro_steps\": %" PRId64 ",\n", z->steps,
            z->micro_steps);
    fprintf(f, "  \"skipped_steps\": %" PRId64 ",\n  \"loss_scale\": %.9g,\n", z->skipped,
            (double)z->loss_scale);
    fprintf(f, "  \"memory\": {\n");
    fprintf(f, "    \"capacity_bytes\": %zu,\n", z->dev.capacity);
    fprintf(f, "    \"model_state_peak_bytes\": %" PRId64 ",\n", max[5]);
    uint64_t fdev = 0, fhost = 0;
    zr_formula_bytes(z, &fdev, &fhost);
    fprintf(f, "    \"model_state_formula_bytes\": %" PRIu64 ",\n", fdev);
    fprintf(f, "    \"host_model_state_peak_bytes\": %" PRId64 ",\n", max[8]);
    fprintf(f, "    \"host_model_state_formula_bytes\": %" PRIu64 ",\n", fhost);
    fprintf(f, "    \"host_peak_bytes\": %" PRId64 ",\n", max[7]);
    fprintf(f, "    \"device_peak_bytes\": %" PRId64 ",\n", max[4]);
    fprintf(f, "    \"max_chunk_bytes\": %zu,\n    \"max_slice_bytes\": %zu,\n",
            L->max_padded * z->wsz, L->max_slice * z->wsz);
    fprintf(f, "    \"peak_bytes\": {\"params\": %" PRId64 ", \"grads\": %" PRId64
               ", \"optimizer\": %" PRId64 ", \"buffers\": %" PRId64 ", \"total\": %" PRId64 "},\n",
            max[0], max[1], max[2], max[3], max[4]);
    fprintf(f, "    \"per_rank\": [");
    for (int r = 0; r < z->world; r++) {
        const int64_t *p = peaks + (size_t)r * ZR_RANK_WORDS;
        fprintf(f, "%s\n      {\"rank\": %d, \"params\": %" PRId64 ", \"grads\": %" PRId64
                   ", \"optimizer\": %" PRId64 ", \"buffers\": %" PRId64 ", \"total\": %" PRId64
                   ", \"model_state\": %" PRId64 "}",
                r ? "," : "", r, p[0], p[1], p[2], p[3], p[4], p[5]);
    }
    fprintf(f, "\n    ]\n  },\n");
    fprintf(f, "  \"comm\": {\n    \"bus_bytes\": {");
    for (int k = 0; k < ZR_COLL_NUM; k++)
        fprintf(f, "\"%s\": %.0f, ", zr_coll_name((zr_coll)k), z->comm.bus_bytes[k]);
    fprintf(f, "\"total\": %.0f},\n    \"calls\": {", total_bus);
    for (int k = 0; k < ZR_COLL_NUM; k++)
        fprintf(f, "%s\"%s\": %" PRId64, k ? ", " : "", zr_coll_name((zr_coll)k),
                z->comm.calls[k]);
    fprintf(f, "},\n    \"other_bus_bytes\": %.0f,\n", z->comm.other_bus_bytes);
    fprintf(f, "    \"bus_bytes_per_step\": %.1f,\n",
            boundaries ? total_bus / (double)boundaries : 0.0);
    fprintf(f, "    \"bus_bytes_formula_per_step\": %.1f\n  },\n", formula);
    fprintf(f, "  \"time\": {\"wall_s\": %.6f, \"step_s\": %.6f, \"grad_reduce_s\": %.6f, "
               "\"norm_s\": %.6f, \"optimizer_s\": %.6f, \"param_gather_s\": %.6f, "
               "\"in_backward_s\": %.6f, \"gather_wait_s\": %.6f, \"model_s\": %.6f},\n",
            wall, z->times.step_s, z->times.grad_reduce_s, z->times.norm_s, z->times.optimizer_s,
            z->times.param_gather_s, z->times.in_backward_s, z->times.gather_wait_s,
            wall - z->times.step_s - z->times.in_backward_s - z->times.gather_wait_s);
    const zr_phase_times *pt = &z->times;
    fprintf(f, "  \"offload\": {\"d2h_bytes\": %.0f, \"d2h_s\": %.6f, \"h2d_bytes\": %.0f, "
               "\"h2d_s\": %.6f, \"cpu_adam_s\": %.6f},\n",
            pt->d2h_bytes, pt->d2h_s, pt->h2d_bytes, pt->h2d_s, pt->cpu_adam_s);
    fprintf(f, "  \"stage3\": {\"gathers\": %" PRId64 ", \"prefetches\": %" PRId64
               ", \"prefetch_hits\": %" PRId64 ", \"gather_buffers\": %d, \"trace_length\": %d},\n",
            z->gathers, z->prefetches, z->prefetch_hits, z->pool_total, z->trace_len);
    fprintf(f, "  \"param_digest\": \"%016" PRIx64 "\"\n}\n", digest);
    free(peaks);
    if (fclose(f) != 0)
        return zr_fail(z, ZERO_ERR_IO, "report: writing %s: %s", path, strerror(errno));
    ZR_INFO(ZR_SUB_INIT, "report written to %s", path);
    return ZERO_OK;
}
