/* report.c — the JSON report written at zero_finalize (docs/REPORT.md): resolved configuration,
 * memory peaks per rank against the formula, traffic against the formula, phase times, stage-3
 * counters and the parameter digest. Collective; rank 0 writes (through io.c: a temporary file
 * renamed over the target), every rank returns rank 0's verdict. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "runtime/engine.h"
#include "util/log.h"

/* io.c: a file written on rank 0 beside its target and renamed over it; rank 0's verdict for
 * every rank. */

/* ---- JSON report ----------------------------------------------------------------------------- */

/* per rank: device params grads optimizer buffers total model_state current_total, then host
 * peak total, host model state peak, host init peak, then the data loaders' wait and busy
 * times (nanoseconds) */
enum { ZR_RANK_WORDS = 12 };

/* Every rank's peaks, all-gathered (every rank takes part); *out (world x ZR_RANK_WORDS) is
 * rank 0's to free. */
static zero_status gather_peaks(zero_ctx *z, int64_t **out)
{
    int64_t *peaks = calloc((size_t)z->world * ZR_RANK_WORDS, sizeof *peaks);
    *out = NULL;
    if (!peaks)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory for the report");
    int64_t *mine = peaks + (size_t)z->rank * ZR_RANK_WORDS;
    for (int l = 0; l < ZERO_MEM_NUM_LABELS; l++)
        mine[l] = (int64_t)z->dev.peak[l];
    mine[4] = (int64_t)z->dev.peak_total;
    mine[5] = (int64_t)z->dev.model_state_peak;
    mine[6] = (int64_t)z->dev.current_total;
    mine[7] = (int64_t)z->host.peak_total;
    mine[8] = (int64_t)z->host.model_state_peak;
    mine[9] = (int64_t)z->host_init_peak;
    zr_data_totals dt;
    zr_data_totals_now(z, &dt);
    mine[10] = (int64_t)(dt.wait_s * 1e9);
    mine[11] = (int64_t)(dt.busy_s * 1e9);
    zero_status s =
        zr_coll_all_gather(&z->hcoll, peaks, ZR_RANK_WORDS, ZR_ELEM_I64, ZR_TRAFFIC_OTHER, NULL);
    if (s) {
        zr_comm_release(&z->comm, peaks);
        return zr_fail(&z->err, s, "report: %s", z->comm.err.msg);
    }
    *out = peaks;
    return ZERO_OK;
}

static void write_memory(zero_ctx *z, FILE *f, const int64_t *peaks)
{
    const zp_layout *L = &z->layout;
    int64_t max[ZR_RANK_WORDS] = {0};
    for (int r = 0; r < z->world; r++)
        for (int k = 0; k < ZR_RANK_WORDS; k++)
            if (peaks[r * ZR_RANK_WORDS + k] > max[k])
                max[k] = peaks[r * ZR_RANK_WORDS + k];
    fprintf(f, "  \"memory\": {\n");
    fprintf(f, "    \"capacity_bytes\": %zu,\n", z->dev.capacity);
    fprintf(f, "    \"model_state_peak_bytes\": %" PRId64 ",\n", max[5]);
    uint64_t fdev = 0, fhost = 0;
    zr_formula_bytes(z, &fdev, &fhost);
    fprintf(f, "    \"model_state_formula_bytes\": %" PRIu64 ",\n", fdev);
    fprintf(f, "    \"host_model_state_peak_bytes\": %" PRId64 ",\n", max[8]);
    fprintf(f, "    \"host_model_state_formula_bytes\": %" PRIu64 ",\n", fhost);
    fprintf(f, "    \"host_peak_bytes\": %" PRId64 ",\n", max[7]);
    fprintf(f, "    \"host_init_peak_bytes\": %" PRId64 ",\n", max[9]);
    fprintf(f, "    \"device_peak_bytes\": %" PRId64 ",\n", max[4]);
    fprintf(f, "    \"max_chunk_bytes\": %zu,\n    \"max_slice_bytes\": %zu,\n",
            L->max_padded * z->wsz, L->max_slice * z->wsz);
    /* device bytes that are not model state (buckets, gather buffers, resident chunks, the
     * reduce-scatter output, fp32 views, the loaders' device batches), peak, max over ranks */
    fprintf(f, "    \"buffer_peak_bytes\": %" PRId64 ",\n", max[3]);
    const zero_config *c = &z->set.cfg;
    fprintf(f, "    \"buffers\": {\"bucket_bytes\": %zu, \"bucket_auto\": %s, \"prefetch_bytes\": %zu, "
               "\"prefetch_auto\": %s, \"max_live_bytes\": %zu, \"max_live_auto\": %s, "
               "\"num_chunks\": %d, \"bucket_why\": \"%s\", \"stage3_why\": \"%s\"},\n",
            c->bucket_bytes, z->auto_sizes & 1 ? "true" : "false", c->prefetch_bytes,
            z->auto_sizes & 2 ? "true" : "false", c->max_live_bytes,
            z->auto_sizes & 4 ? "true" : "false", L->num_chunks, z->auto_bucket_why,
            z->auto_s3_why);
    fprintf(f, "    \"peak_bytes\": {\"params\": %" PRId64 ", \"grads\": %" PRId64
               ", \"optimizer\": %" PRId64 ", \"buffers\": %" PRId64 ", \"total\": %" PRId64 "},\n",
            max[0], max[1], max[2], max[3], max[4]);
    fprintf(f, "    \"per_rank\": [");
    for (int r = 0; r < z->world; r++) {
        const int64_t *p = peaks + (size_t)r * ZR_RANK_WORDS;
        fprintf(f, "%s\n      {\"rank\": %d, \"params\": %" PRId64 ", \"grads\": %" PRId64
                   ", \"optimizer\": %" PRId64 ", \"buffers\": %" PRId64 ", \"total\": %" PRId64
                   ", \"model_state\": %" PRId64 ", \"host_init_peak\": %" PRId64 "}",
                r ? "," : "", r, p[0], p[1], p[2], p[3], p[4], p[5], p[9]);
    }
    fprintf(f, "\n    ]\n  },\n");
}

/* Training traffic per step against the formula. Stage 2 reduce-scatters every micro-step:
 * (accum - 1) more gradient passes per step; stage 3 gathers and reduces every micro-step: accum
 * times the whole 3 psi. */
static void write_comm(zero_ctx *z, FILE *f)
{
    const zero_config *c = &z->set.cfg;
    const zp_layout *L = &z->layout;
    double total_bus = 0.0;
    for (int k = 0; k < ZR_COLL_NUM; k++)
        total_bus += z->comm.bus_bytes[k];
    double formula = zp_bus_bytes_per_step(c->stage, z->wsz, L->num_params, z->world);
    if (c->stage == 2)
        formula += (double)(c->grad_accum - 1) * (double)L->num_params * (double)z->wsz *
                   (double)(z->world - 1) / (double)z->world;
    if (c->stage == 3)
        formula *= (double)c->grad_accum;
    int64_t boundaries = z->prog.boundaries;
    fprintf(f, "  \"comm\": {\n    \"bus_bytes\": {");
    for (int k = 0; k < ZR_COLL_NUM; k++)
        fprintf(f, "\"%s\": %.0f, ", zr_coll_name((zr_coll_kind)k), z->comm.bus_bytes[k]);
    fprintf(f, "\"total\": %.0f},\n    \"calls\": {", total_bus);
    for (int k = 0; k < ZR_COLL_NUM; k++)
        fprintf(f, "%s\"%s\": %" PRId64, k ? ", " : "", zr_coll_name((zr_coll_kind)k),
                z->comm.calls[k]);
    fprintf(f, "},\n    \"other_bus_bytes\": %.0f,\n", z->comm.other_bus_bytes);
    fprintf(f, "    \"bus_bytes_per_step\": %.1f,\n",
            boundaries ? total_bus / (double)boundaries : 0.0);
    fprintf(f, "    \"host_round_trips\": %lld,\n    \"host_round_trips_per_step\": %.3f,\n",
            (long long)z->round_trips,
            boundaries ? (double)z->round_trips / (double)boundaries : 0.0);
    fprintf(f, "    \"bus_bytes_formula_per_step\": %.1f\n  },\n", formula);
}

static void write_times(zero_ctx *z, FILE *f)
{
    const zr_phase_times *pt = &z->times;
    double wall = z->t_end - z->t_init_done;
    fprintf(f, "  \"time\": {\"wall_s\": %.6f, \"step_s\": %.6f, \"grad_reduce_s\": %.6f, "
               "\"norm_s\": %.6f, \"optimizer_s\": %.6f, \"param_gather_s\": %.6f, "
               "\"in_backward_s\": %.6f, \"gather_wait_s\": %.6f, \"model_s\": %.6f},\n",
            wall, pt->step_s, pt->grad_reduce_s, pt->norm_s, pt->optimizer_s, pt->param_gather_s,
            pt->in_backward_s, pt->gather_wait_s,
            wall - pt->step_s - pt->in_backward_s - pt->gather_wait_s);
    fprintf(f, "  \"offload\": {\"d2h_bytes\": %.0f, \"d2h_s\": %.6f, \"h2d_bytes\": %.0f, "
               "\"h2d_s\": %.6f, \"cpu_adam_s\": %.6f},\n",
            pt->d2h_bytes, pt->d2h_s, pt->h2d_bytes, pt->h2d_s, pt->cpu_adam_s);
    int64_t gathers, prefetches, hits;
    int buffers, trace_len;
    zr_s3_counters(z, &gathers, &prefetches, &hits, &buffers, &trace_len);
    fprintf(f, "  \"stage3\": {\"gathers\": %" PRId64 ", \"prefetches\": %" PRId64
               ", \"prefetch_hits\": %" PRId64 ", \"gather_buffers\": %d, \"trace_length\": %d},\n",
            gathers, prefetches, hits, buffers, trace_len);
}

static void write_header(zero_ctx *z, FILE *f)
{
    const zero_config *c = &z->set.cfg;
    const zp_layout *L = &z->layout;
    fprintf(f, "{\n  \"version\": \"%d.%d.%d\",\n", ZERO_VERSION_MAJOR, ZERO_VERSION_MINOR,
            ZERO_VERSION_PATCH);
    fprintf(f, "  \"config\": ");
    zr_config_write_json(&z->set, f);
    fprintf(f, ",\n  \"backend\": {\"device\": \"%s\", \"collectives\": \"%s\"},\n",
            z->dev.ops->name, z->dcoll.ops->name);
    fprintf(f, "  \"world_size\": %d,\n  \"stage\": %d,\n  \"dtype\": \"%s\",\n", z->world,
            c->stage, zr_dtype_name(z->dtype));
    fprintf(f, "  \"num_params\": %zu,\n  \"padded_params\": %zu,\n  \"shard_params\": %zu,\n",
            L->num_params, L->total_padded, L->shard_numel);
    fprintf(f, "  \"num_tensors\": %d,\n  \"num_modules\": %d,\n  \"num_chunks\": %d,\n",
            z->num_tensors, L->num_modules, L->num_chunks);
    fprintf(f, "  \"steps\": %" PRId64 ",\n  \"micro_steps\": %" PRId64 ",\n", z->prog.steps,
            z->prog.micro_steps);
    fprintf(f, "  \"skipped_steps\": %" PRId64 ",\n  \"loss_scale\": %.9g,\n",
            z->prog.skipped, (double)z->scaler.scale);
}

/* The data loaders (docs/REPORT.md "data"): rank 0's counters; wait and busy times also as
 * the largest over the ranks (the step waits for the slowest rank). */
static void write_data(zero_ctx *z, FILE *f, const int64_t *peaks)
{
    zr_data_totals dt;
    zr_data_totals_now(z, &dt);
    int64_t wmax = 0, bmax = 0;
    for (int r = 0; r < z->world; r++) {
        if (peaks[r * ZR_RANK_WORDS + 10] > wmax)
            wmax = peaks[r * ZR_RANK_WORDS + 10];
        if (peaks[r * ZR_RANK_WORDS + 11] > bmax)
            bmax = peaks[r * ZR_RANK_WORDS + 11];
    }
    fprintf(f, "  \"data\": {\"loaders\": %d, \"batches\": %" PRId64 ", \"tokens\": %" PRIu64
               ", \"bytes_read\": %" PRIu64 ", \"wait_s\": %.6f, \"busy_s\": %.6f, "
               "\"wait_s_max\": %.6f, \"busy_s_max\": %.6f, \"prefetch\": %d, \"io\": \"%s\"},\n",
            dt.loaders, dt.batches, dt.tokens, dt.bytes, dt.wait_s, dt.busy_s, (double)wmax * 1e-9,
            (double)bmax * 1e-9, dt.prefetch, dt.io == ZR_DATA_IO_PREAD ? "pread" : "mmap");
}

typedef struct report_args {
    const int64_t *peaks;
    uint64_t digest;
} report_args;

static zero_status write_report_body(zero_ctx *z, FILE *f, void *arg)
{
    const report_args *a = arg;
    write_header(z, f);
    write_memory(z, f, a->peaks);
    write_comm(z, f);
    write_times(z, f);
    write_data(z, f, a->peaks);
    fprintf(f, "  \"param_digest\": \"%016" PRIx64 "\"\n}\n", a->digest);
    return ZERO_OK; /* a write error is found when io.c flushes the file */
}

zero_status zr_write_report(zero_ctx *z, const char *path)
{
    report_args a = {NULL, 0};
    int64_t *peaks = NULL;
    ZR_CHECK(zero_param_digest(z, &a.digest));
    ZR_CHECK(gather_peaks(z, &peaks));
    a.peaks = peaks;
    /* rank 0 writes; every rank returns its verdict */
    zero_status s = zr_write_rank0_file(z, "report", path, write_report_body, &a);
    zr_comm_release(&z->comm, peaks);
    if (!s && z->rank == 0)
        ZR_INFO(ZR_SUB_INIT, "report written to %s", path);
    return s;
}
