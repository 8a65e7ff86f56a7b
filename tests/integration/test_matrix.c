/* test_matrix — the stage x dtype x offload x accumulation matrix in one process per world size
 * (ctest runs it under mpirun -np 1..4): about a hundred contexts one after another on a small
 * tanh MLP defined here (forward and backward in double on the working-precision parameters,
 * data drawn per global row so every world size sees the same global batch), each trained for
 * STEPS steps and checked against numbers, never against English:
 *   - bit identity: at one world size, dtype and accumulation 1, every stage and variant (optimizer
 *     offload, parameter offload, 4 KiB offload blocks, stage 3 without prefetch, with resident
 *     chunks, under a live cap) ends with stage 0's zero_param_digest; with accumulation 2,
 *     stages 0-1 (which reduce the window's sum) agree bit for bit among themselves, and stages
 *     2-3 (which reduce every micro-step) among themselves; "wide" runs (chunks of several
 *     modules) agree with stage 0 of their layout;
 *   - accuracy: the exported fp32 master weights (zero_export, read back here) against a
 *     reference computed here in double precision on the whole global batch (same data, AdamW,
 *     clipping, accumulation and skipped steps): fp32 per tensor within 1e-5 of the tensor's
 *     largest value at every stage and world size; bf16/fp16 (forward and backward on rounded
 *     parameters) within 10% of the distance the reference moved from the initial values;
 *     accumulation and clipping must move the result away from a plain run's;
 *   - memory and traffic: zero_memory_report's model-state peak within 1% of the formula on
 *     every rank; offload lowers each rank's device peak; from the JSON report (jansson): bus
 *     bytes per step against the formula, offloaded host state against its formula, offload
 *     copy bytes, stage-3 prefetch counters, the stage-3 device peak under a live cap, and the
 *     report's digest against zero_param_digest;
 *   - zero_last_step: the boundary on the last micro-step only, steps + skipped = steps run, the
 *     gradient norm against the reference's (fp32), fp16's dynamic loss scale skipping steps;
 *   - determinism: a configuration run twice ends with the same digest.
 * One line per configuration (rank 0), a summary, exit status non-zero on any failure.
 * MATRIX_ONLY=TEXT runs only the configurations whose name contains TEXT and keeps the last
 * one's report and export (test_matrix_npN_PID.json, .safetensors) for a look. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "zero.h"

#include "../common/api_test.h"

/* ---- checks ------------------------------------------------------------------------------- */

static int config_failures;

/* ---- the model: Linear(32,32) tanh Linear(32,128) tanh Linear(128,128) tanh Linear(128,1) -- */

enum { NL = 4, NT = 2 * NL, MAXW = 128, STEPS = 8, BATCH = 24 /* rows: divisible by 1..4 */ };
static const int dims[NL + 1] = {32, 32, 128, 128, 1};
/* 4 KiB buckets: one chunk per module at every dtype; the last chunk, which stage 3 keeps from
 * forward into backward, is small, so stage-3 bus bytes stay within 1% of the formula; padding
 * stays under 0.5% of the model at every world size. The "wide" variants take 64 KiB buckets:
 * fp32 {layers 0, 1} {layer 2} {layer 3}, bf16/fp16 one chunk of all four modules. */
static const size_t BUCKET = 4 << 10, WIDE_BUCKET = 64 << 10;
static const float LR = 3e-3f, WD = 0.01f;
/* Adam's eps: 1e-8 turns the rounding of another reduction order (another world size, or the
 * double-precision reference) into update differences of up to ~lr on weights whose gradient
 * cancels; 1e-5 keeps the update well conditioned (bit identity does not depend on it). */
static const float EPS = 1e-5f;
static const float CLIP = 0.05f;

static size_t toff[NT + 1], PSI;
static float init_vals[32 * 32 + 32 + 32 * 128 + 128 + 128 * 128 + 128 + 128 + 1];
static zero_tensor tensors[NT];
static char tnames[NT][24];

static uint64_t mix64(uint64_t z)
{
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t key2(uint64_t a, uint64_t b) { return mix64(a ^ mix64(b)); }
static double urand(uint64_t k) { return (double)(mix64(k) >> 11) * 0x1p-52 - 1.0; } /* [-1,1) */

enum { KEY_INIT = 11, KEY_TEACHER = 12, KEY_DATA = 13 };

static void make_model(void)
{
    memset(tensors, 0, sizeof tensors);
    size_t off = 0;
    for (int l = 0; l < NL; l++) {
        for (int k = 0; k < 2; k++) {
            int i = 2 * l + k;
            size_t n = k == 0 ? (size_t)dims[l + 1] * (size_t)dims[l] : (size_t)dims[l + 1];
            snprintf(tnames[i], sizeof tnames[i], "layers.%d.%s", l, k ? "bias" : "weight");
            tensors[i].name = tnames[i];
            tensors[i].numel = n;
            tensors[i].module = l;
            tensors[i].init = init_vals + off;
            tensors[i].ndim = k == 0 ? 2 : 1;
            tensors[i].shape[0] = dims[l + 1];
            tensors[i].shape[1] = dims[l];
            tensors[i].no_decay = k;
            double bound = 1.0 / sqrt((double)dims[l]);
            for (size_t e = 0; e < n; e++)
                init_vals[off + e] = (float)(bound * urand(key2(KEY_INIT, off + e)));
            toff[i] = off;
            off += n;
        }
    }
    toff[NT] = off;
    PSI = off;
}

/* Row `grow` of the global batch of (step, micro): the same numbers whichever rank makes it. */
static void make_row(int step, int micro, int grow, double *x, double *target)
{
    uint64_t k = key2(key2(key2(KEY_DATA, (uint64_t)step), (uint64_t)micro), (uint64_t)grow);
    double s = 0.0;
    for (int j = 0; j < dims[0]; j++) {
        x[j] = 1.7320508 * urand(key2(k, (uint64_t)j));
        s += 1.5 / sqrt((double)dims[0]) * urand(key2(KEY_TEACHER, (uint64_t)j)) * x[j];
    }
    *target = sin(s) + 0.25 * x[0] * x[1];
}

static void layer_fwd(double *y, const double *x, const double *w, const double *b, int rows,
                      int in, int out, int act)
{
    for (int r = 0; r < rows; r++)
        for (int o = 0; o < out; o++) {
            double s = b[o];
            for (int i = 0; i < in; i++)
                s += w[(size_t)o * in + i] * x[(size_t)r * in + i];
            y[(size_t)r * out + o] = act ? tanh(s) : s;
        }
}

/* dw, db = gradients of the layer (overwritten); dx (may be NULL) = gradient of its input. */
static void layer_bwd(double *dx, double *dw, double *db, double *dy, const double *y,
                      const double *x, const double *w, int rows, int in, int out, int act)
{
    if (act)
        for (size_t k = 0; k < (size_t)rows * out; k++)
            dy[k] *= 1.0 - y[k] * y[k];
    for (int o = 0; o < out; o++) {
        double sb = 0.0;
        for (int i = 0; i < in; i++) {
            double s = 0.0;
            for (int r = 0; r < rows; r++)
                s += dy[(size_t)r * out + o] * x[(size_t)r * in + i];
            dw[(size_t)o * in + i] = s;
        }
        for (int r = 0; r < rows; r++)
            sb += dy[(size_t)r * out + o];
        db[o] = sb;
    }
    if (dx)
        for (int r = 0; r < rows; r++)
            for (int i = 0; i < in; i++) {
                double s = 0.0;
                for (int o = 0; o < out; o++)
                    s += dy[(size_t)r * out + o] * w[(size_t)o * in + i];
                dx[(size_t)r * in + i] = s;
            }
}

/* Activations of `rows` rows: h[l] is layer l's input (h[NL] the output), d[] two gradient
 * buffers. */
typedef struct acts {
    double *h[NL + 1], *d[2], *target;
} acts;

static int acts_alloc(acts *a, int rows)
{
    memset(a, 0, sizeof *a);
    for (int l = 0; l <= NL; l++)
        a->h[l] = malloc((size_t)rows * dims[l] * sizeof(double));
    a->d[0] = malloc((size_t)rows * MAXW * sizeof(double));
    a->d[1] = malloc((size_t)rows * MAXW * sizeof(double));
    a->target = malloc((size_t)rows * sizeof(double));
    int ok = a->d[0] && a->d[1] && a->target;
    for (int l = 0; l <= NL; l++)
        ok = ok && a->h[l];
    return ok ? 0 : -1;
}

static void acts_free(acts *a)
{
    for (int l = 0; l <= NL; l++)
        free(a->h[l]);
    free(a->d[0]);
    free(a->d[1]);
    free(a->target);
}

/* The loss is LOSS_GAIN x the mean squared error: gradients large enough that fp16's initial
 * dynamic loss scale (65536) overflows at every world size, and small enough that it comes down
 * within the run (measured: 2-5 of 8 steps skipped at 1-4 ranks). */
#define LOSS_GAIN 4.0

/* Loss gradient over `rows` rows, times scale, into dy. */
static void loss_grad(double *dy, const double *y, const double *t, int rows, double scale)
{
    for (int r = 0; r < rows; r++)
        dy[r] = LOSS_GAIN * 2.0 * (y[r] - t[r]) / rows * scale;
}

/* ---- the reference: the same training in double on the whole global batch ---------------- */

typedef struct reference {
    int accum;
    float clip;
    unsigned skip_mask; /* bit s: step s was skipped (fp16 overflow) */
    double *p;          /* PSI parameters, registration order */
    double norm[STEPS]; /* gradient norm of each step (before clipping) */
} reference;

static reference refs[16];
static int num_refs;

static const reference *get_reference(int accum, float clip, unsigned skip_mask)
{
    for (int k = 0; k < num_refs; k++)
        if (refs[k].accum == accum && refs[k].clip == clip && refs[k].skip_mask == skip_mask)
            return &refs[k];
    if (num_refs == (int)(sizeof refs / sizeof refs[0]))
        return NULL;
    reference *R = &refs[num_refs];
    double *p = malloc(PSI * sizeof(double)), *g = malloc(PSI * sizeof(double));
    double *m = calloc(PSI, sizeof(double)), *v = calloc(PSI, sizeof(double));
    double *gt = malloc(PSI * sizeof(double));
    acts a;
    if (!p || !g || !m || !v || !gt || acts_alloc(&a, BATCH)) {
        fprintf(stderr, "out of memory for the reference\n");
        exit(2);
    }
    for (size_t k = 0; k < PSI; k++)
        p[k] = init_vals[k];
    int applied = 0;
    for (int step = 0; step < STEPS; step++) {
        memset(g, 0, PSI * sizeof(double));
        for (int micro = 0; micro < accum; micro++) {
            for (int r = 0; r < BATCH; r++)
                make_row(step, micro, r, a.h[0] + (size_t)r * dims[0], &a.target[r]);
            for (int l = 0; l < NL; l++)
                layer_fwd(a.h[l + 1], a.h[l], p + toff[2 * l], p + toff[2 * l + 1], BATCH,
                          dims[l], dims[l + 1], l < NL - 1);
            double *dy = a.d[NL % 2];
            loss_grad(dy, a.h[NL], a.target, BATCH, 1.0);
            for (int l = NL - 1; l >= 0; l--) {
                double *dyl = a.d[(l + 1) % 2], *dx = l > 0 ? a.d[l % 2] : NULL;
                layer_bwd(dx, gt + toff[2 * l], gt + toff[2 * l + 1], dyl, a.h[l + 1], a.h[l],
                          p + toff[2 * l], BATCH, dims[l], dims[l + 1], l < NL - 1);
            }
            for (size_t k = 0; k < PSI; k++)
                g[k] += gt[k] / accum;
        }
        double sq = 0.0;
        for (size_t k = 0; k < PSI; k++)
            sq += g[k] * g[k];
        R->norm[step] = sqrt(sq);
        if (skip_mask >> step & 1)
            continue;
        applied++;
        double f = clip > 0.0f && R->norm[step] > clip ? clip / (R->norm[step] + 1e-6) : 1.0;
        double bc1 = 1.0 - pow(0.9, applied), bc2 = sqrt(1.0 - pow(0.999, applied));
        for (int i = 0; i < NT; i++) {
            double wd = tensors[i].no_decay ? 0.0 : WD;
            for (size_t k = toff[i]; k < toff[i + 1]; k++) {
                double gk = g[k] * f;
                p[k] *= 1.0 - (double)LR * wd;
                m[k] = 0.9 * m[k] + 0.1 * gk;
                v[k] = 0.999 * v[k] + 0.001 * gk * gk;
                p[k] -= LR / bc1 * m[k] / (sqrt(v[k]) / bc2 + EPS);
            }
        }
    }
    acts_free(&a);
    free(g);
    free(m);
    free(v);
    free(gt);
    R->accum = accum;
    R->clip = clip;
    R->skip_mask = skip_mask;
    R->p = p;
    num_refs++;
    return R;
}

/* max over tensors of max|a - b| / max|b| */
static double rel_err(const float *a, const double *b)
{
    double worst = 0.0;
    for (int i = 0; i < NT; i++) {
        double d = 0.0, s = 0.0;
        for (size_t k = toff[i]; k < toff[i + 1]; k++) {
            d = fmax(d, fabs((double)a[k] - b[k]));
            s = fmax(s, fabs(b[k]));
        }
        worst = fmax(worst, d / (s > 0.0 ? s : 1.0));
    }
    return worst;
}

/* ||a - b|| / ||b - init||: the distance from the reference relative to how far the reference
 * moved from the initial values (the training's own displacement) */
static double disp_err(const float *a, const double *b)
{
    double d = 0.0, m = 0.0;
    for (size_t k = 0; k < PSI; k++) {
        d += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
        m += (b[k] - init_vals[k]) * (b[k] - init_vals[k]);
    }
    return sqrt(d / m);
}

/* ---- JSON: the report and the safetensors header ------------------------------------------ */

/* The value at a dotted path ("comm.bus_bytes_per_step"), or NULL. */
static json_t *jpath(json_t *root, const char *path)
{
    char part[128];
    json_t *cur = root;
    while (cur && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof part)
            return NULL;
        memcpy(part, path, n);
        part[n] = 0;
        cur = json_is_object(cur) ? json_object_get(cur, part) : NULL;
        path += n + (path[n] == '.');
    }
    return cur;
}

static double jnum(json_t *root, const char *path)
{
    json_t *v = jpath(root, path);
    EXPECT(json_is_number(v), "report: no number at %s", path);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Reads an F32 safetensors file written by zero_export into out (PSI floats, registration
 * order); every tensor must be there with its shape. Returns 0 on success. */
static int read_export(const char *path, float *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        EXPECT(0, "cannot open %s", path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    int ok = buf && len >= 8 && fread(buf, 1, (size_t)len, f) == (size_t)len;
    fclose(f);
    uint64_t hlen = 0;
    for (int k = 0; ok && k < 8; k++)
        hlen |= (uint64_t)buf[k] << (8 * k);
    ok = ok && 8 + hlen <= (uint64_t)len;
    json_t *hdr = NULL;
    if (ok) {
        json_error_t je;
        hdr = json_loadb((const char *)buf + 8, hlen, 0, &je);
        EXPECT(hdr != NULL, "%s: header is not JSON: %s", path, je.text);
        ok = hdr != NULL;
    }
    for (int i = 0; ok && i < NT; i++) {
        json_t *t = json_object_get(hdr, tensors[i].name);
        json_t *dt = json_object_get(t, "dtype"), *off = json_object_get(t, "data_offsets");
        json_t *shape = json_object_get(t, "shape");
        size_t b = (size_t)json_integer_value(json_array_get(off, 0));
        size_t e = (size_t)json_integer_value(json_array_get(off, 1));
        int shape_ok = json_is_array(shape) && (int)json_array_size(shape) == tensors[i].ndim;
        for (int d = 0; shape_ok && d < tensors[i].ndim; d++)
            shape_ok = json_integer_value(json_array_get(shape, d)) == tensors[i].shape[d];
        ok = t && json_is_string(dt) && !strcmp(json_string_value(dt), "F32") && shape_ok &&
             e - b == tensors[i].numel * 4 && 8 + hlen + e <= (uint64_t)len;
        EXPECT(ok, "%s: tensor %s missing, not F32, or wrong shape/size", path,
               tensors[i].name);
        if (ok)
            memcpy(out + toff[i], buf + 8 + hlen + b, tensors[i].numel * 4);
    }
    json_decref(hdr);
    free(buf);
    return ok ? 0 : -1;
}

/* ---- one configuration -------------------------------------------------------------------- */

typedef struct variant {
    int stage;
    zero_dtype dtype;
    int accum;
    int off_opt, off_param;
    int block;    /* offload_block_bytes = 4 KiB: many blocks per tensor */
    int nopf;     /* stage 3: prefetch_bytes = 0 */
    int resident; /* stage 3: persist_bytes = 1 MiB (every chunk resident) */
    int livecap;  /* stage 3: max_live_bytes = 32 KiB */
    int clip;     /* clip = CLIP */
    int wide;     /* bucket_bytes = WIDE_BUCKET: chunks of several modules */
    int repeat;   /* a second run of an earlier configuration */
} variant;

typedef struct result {
    int ok;             /* trained to the end (every rank) */
    uint64_t digest;
    int applied, skipped;
    unsigned skip_mask;
    float norm[STEPS];
    size_t peak_total;  /* this rank's device peak */
    double err;         /* against the reference (rank 0) */
} result;

static const char *dtype_name(zero_dtype d)
{
    return d == ZERO_DTYPE_FP32 ? "fp32" : d == ZERO_DTYPE_BF16 ? "bf16" : "fp16";
}

static void variant_name(const variant *v, char *s, size_t n)
{
    snprintf(s, n, "%s accum=%d stage %d%s%s%s%s%s%s%s%s%s", dtype_name(v->dtype), v->accum,
             v->stage, v->off_opt ? " +offload_opt" : "", v->off_param ? " +offload_param" : "",
             v->block ? " +4K_blocks" : "", v->nopf ? " +no_prefetch" : "",
             v->resident ? " +resident" : "", v->livecap ? " +live_cap" : "",
             v->wide ? " +wide_chunks" : "", v->clip ? " +clip" : "",
             v->repeat ? " (again)" : "");
}

static int world, rank;
static char report_path[64], export_path[64];
static float *exported;

/* Trains one configuration for STEPS steps. Checks made on every rank go into the count that
 * is all-reduced before zero_finalize; rank 0 then reads the report and the export. */
static void run(const variant *v, result *res, json_t **report)
{
    memset(res, 0, sizeof *res);
    *report = NULL;
    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.device = ZERO_DEVICE_HOST; /* the model reads and writes through host pointers */
    cfg.stage = v->stage;
    cfg.dtype = v->dtype;
    cfg.bucket_bytes = v->wide ? WIDE_BUCKET : BUCKET;
    cfg.grad_accum = v->accum;
    cfg.clip = v->clip ? CLIP : 0.0f;
    cfg.offload_optimizer = v->off_opt ? ZERO_OFFLOAD_CPU : ZERO_OFFLOAD_NONE;
    cfg.offload_param = v->off_param ? ZERO_OFFLOAD_CPU : ZERO_OFFLOAD_NONE;
    if (v->block)
        cfg.offload_block_bytes = 4096;
    cfg.persist_bytes = v->resident ? (size_t)1 << 20 : 0; /* else every chunk is gathered */
    if (v->nopf)
        cfg.prefetch_bytes = 0;
    if (v->livecap)
        cfg.max_live_bytes = 32 << 10;
    cfg.lr = LR;
    cfg.weight_decay = WD;
    cfg.eps = EPS;
    if (rank == 0) {
        remove(report_path);
        cfg.report_path = report_path;
    }
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, tensors, NT);
    EXPECT(s == ZERO_OK, "zero_init: %s: %s", zero_status_string(s), zero_init_error());
    if (s)
        return;
    const int rows = BATCH / world, row0 = rank * rows;
    const zero_dtype dt = v->dtype;
    acts a;
    double *w = malloc(MAXW * MAXW * sizeof(double)), *gw = malloc(MAXW * MAXW * sizeof(double));
    double *bias = malloc(MAXW * sizeof(double)), *gb = malloc(MAXW * sizeof(double));
    float *f = malloc(MAXW * MAXW * sizeof(float));
    if (acts_alloc(&a, rows) || !w || !gw || !bias || !gb || !f) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    int local_ok = 1;
/* a failed call: the context's message, and this configuration stops training */
#define ZTRY(call)                                                                            \
    do {                                                                                      \
        zero_status s_ = (call);                                                              \
        EXPECT(s_ == ZERO_OK, "%s: %s: %s", #call, zero_status_string(s_), zero_last_error(z)); \
        if (s_) {                                                                             \
            local_ok = 0;                                                                     \
            goto done;                                                                        \
        }                                                                                     \
    } while (0)
/* parameters of layer l as double, between zero_gather and zero_release */
#define LOAD_LAYER(l, with_bias)                                                              \
    do {                                                                                      \
        ZTRY(zero_gather(z, l));                                                              \
        const void *pw_ = zero_param_ptr(z, 2 * (l)), *pb_ = zero_param_ptr(z, 2 * (l) + 1);  \
        EXPECT(pw_ && pb_, "param_ptr of layer %d: %s", l, zero_last_error(z));               \
        if (!pw_ || !pb_) {                                                                   \
            local_ok = 0;                                                                     \
            goto done;                                                                        \
        }                                                                                     \
        size_t nw_ = tensors[2 * (l)].numel, nb_ = tensors[2 * (l) + 1].numel;                \
        zero_convert(f, ZERO_DTYPE_FP32, pw_, dt, nw_);                                       \
        for (size_t k_ = 0; k_ < nw_; k_++)                                                   \
            w[k_] = f[k_];                                                                    \
        if (with_bias) {                                                                      \
            zero_convert(f, ZERO_DTYPE_FP32, pb_, dt, nb_);                                   \
            for (size_t k_ = 0; k_ < nb_; k_++)                                               \
                bias[k_] = f[k_];                                                             \
        }                                                                                     \
        ZTRY(zero_release(z, l));                                                             \
    } while (0)
/* adds n doubles (as fp32) into tensor i's gradient */
#define ADD_GRAD(i, src, n)                                                                   \
    do {                                                                                      \
        void *g_ = zero_grad_ptr(z, i);                                                       \
        EXPECT(g_ != NULL, "grad_ptr(%d): %s", i, zero_last_error(z));                        \
        if (!g_) {                                                                            \
            local_ok = 0;                                                                     \
            goto done;                                                                        \
        }                                                                                     \
        for (size_t k_ = 0; k_ < (size_t)(n); k_++)                                           \
            f[k_] = (float)(src)[k_];                                                         \
        zero_accumulate(g_, dt, f, n);                                                        \
    } while (0)

    for (int step = 0; step < STEPS; step++) {
        for (int micro = 0; micro < v->accum; micro++) {
            for (int r = 0; r < rows; r++)
                make_row(step, micro, row0 + r, a.h[0] + (size_t)r * dims[0], &a.target[r]);
            for (int l = 0; l < NL; l++) {
                LOAD_LAYER(l, 1);
                layer_fwd(a.h[l + 1], a.h[l], w, bias, rows, dims[l], dims[l + 1], l < NL - 1);
            }
            loss_grad(a.d[NL % 2], a.h[NL], a.target, rows, zero_loss_scale(z));
            for (int l = NL - 1; l >= 0; l--) {
                LOAD_LAYER(l, 0);
                double *dy = a.d[(l + 1) % 2], *dx = l > 0 ? a.d[l % 2] : NULL;
                layer_bwd(dx, gw, gb, dy, a.h[l + 1], a.h[l], w, rows, dims[l], dims[l + 1],
                          l < NL - 1);
                ADD_GRAD(2 * l, gw, tensors[2 * l].numel);
                ADD_GRAD(2 * l + 1, gb, tensors[2 * l + 1].numel);
                ZTRY(zero_grad_ready(z, l));
            }
            ZTRY(zero_step(z));
            zero_step_info info;
            ZTRY(zero_last_step(z, &info));
            int last = micro == v->accum - 1;
            EXPECT(info.boundary == last, "step %d micro %d: boundary %d", step, micro,
                   info.boundary);
            if (!last) {
                EXPECT(!info.applied && !info.overflow, "micro-step %d applied or overflowed",
                       micro);
                continue;
            }
            EXPECT(info.applied != info.overflow, "step %d: applied %d, overflow %d", step,
                   info.applied, info.overflow);
            if (info.overflow)
                res->skip_mask |= 1u << step;
            res->norm[step] = info.grad_norm;
            res->applied = (int)info.step;
            res->skipped = (int)info.skipped;
        }
    }
    EXPECT(res->applied + res->skipped == STEPS, "applied %d + skipped %d steps, ran %d",
           res->applied, res->skipped, STEPS);
    if (v->dtype == ZERO_DTYPE_FP16) /* the dynamic loss scale starts at 65536: too high here */
        EXPECT(res->skipped >= 1 && res->applied >= 1,
               "fp16: %d skipped, %d applied; expected both", res->skipped, res->applied);
    else
        EXPECT(res->skipped == 0, "%d steps skipped without fp16", res->skipped);

    zero_memory_stats ms;
    ZTRY(zero_memory_report(z, &ms));
    EXPECT(ms.num_params == PSI, "num_params %zu, registered %zu", ms.num_params, PSI);
    EXPECT(fabs((double)ms.model_state_peak - (double)ms.model_state_formula) <=
               0.01 * (double)ms.model_state_formula,
           "model state peak %zu, formula %zu (> 1%% apart)", ms.model_state_peak,
           ms.model_state_formula);
    res->peak_total = ms.peak_total;
    ZTRY(zero_param_digest(z, &res->digest));
    if (rank == 0)
        remove(export_path);
    ZTRY(zero_export(z, export_path));
done:;
    /* every rank learns whether every rank trained to the end and passed its checks */
    double agree[2] = {local_ok ? 0.0 : 1.0, (double)config_failures};
    s = zero_allreduce_sum(z, agree, 2);
    EXPECT(s == ZERO_OK, "allreduce: %s", zero_last_error(z));
    res->ok = s == ZERO_OK && agree[0] == 0.0;
    if (rank == 0 && s == ZERO_OK && agree[1] > config_failures)
        config_failures = (int)agree[1]; /* another rank's failures fail this line too */
    s = zero_finalize(z);
    EXPECT(s == ZERO_OK, "zero_finalize: %s: %s", zero_status_string(s), zero_init_error());
    acts_free(&a);
    free(w);
    free(gw);
    free(bias);
    free(gb);
    free(f);
    if (rank != 0 || !res->ok)
        return;
    json_error_t je;
    *report = json_load_file(report_path, 0, &je);
    EXPECT(*report != NULL, "report %s: %s", report_path, je.text);
    if (read_export(export_path, exported))
        res->ok = 0;
#undef ZTRY
#undef LOAD_LAYER
#undef ADD_GRAD
}

/* ---- the matrix --------------------------------------------------------------------------- */

/* What one (dtype, accumulation) group remembers: the first run of each stage. */
typedef struct group {
    result base[2][4]; /* [wide][stage] */
    int have[2][4];
} group;

static int configs, failed_configs;

/* Runs one variant and checks it; prints its line on rank 0. */
static void check_variant(const variant *v, group *gr, result *out)
{
    char name[160];
    variant_name(v, name, sizeof name);
    const char *only = getenv("MATRIX_ONLY"); /* debugging: the configurations named so */
    if (only && !strstr(name, only))
        return;
    config_failures = 0;
    result r;
    json_t *rep = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run(v, &r, &rep);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char note[256] = "";
    size_t nn = 0;
#define NOTE(...)                                                                             \
    nn += (size_t)snprintf(note + nn, nn < sizeof note ? sizeof note - nn : 0, __VA_ARGS__)
    const int fp32 = v->dtype == ZERO_DTYPE_FP32, fp16 = v->dtype == ZERO_DTYPE_FP16;
    const size_t wsz = zero_dtype_size(v->dtype);
    if (r.ok) {
        /* bit identity within the world size: the same digest as this group's stage 0 (stages
         * 0-1 at accumulation 2, which reduce the window's sum) or stage 2 (stages 2-3 at
         * accumulation 2, which reduce every micro-step); the repeat of a run: its digest */
        int bstage = v->accum > 1 && v->stage >= 2 ? 2 : 0;
        if (!v->clip && v->repeat) {
            EXPECT(out && r.digest == out->digest, "run twice: digest %016llx then %016llx",
                   (unsigned long long)(out ? out->digest : 0), (unsigned long long)r.digest);
            NOTE(" digest %s the first run's;", out && r.digest == out->digest ? "=" : "!=");
        } else if (!v->clip && gr->have[v->wide][bstage]) {
            EXPECT(r.digest == gr->base[v->wide][bstage].digest,
                   "digest %016llx, stage %d's %016llx", (unsigned long long)r.digest, bstage,
                   (unsigned long long)gr->base[v->wide][bstage].digest);
            if (v->stage != bstage || v->off_opt)
                NOTE(" digest %s stage %d's;",
                     r.digest == gr->base[v->wide][bstage].digest ? "=" : "!=", bstage);
        }
        /* offload: optimizer state off the device, so a lower device peak on this rank */
        if (v->off_opt && gr->have[v->wide][v->stage])
            EXPECT(r.peak_total < gr->base[v->wide][v->stage].peak_total,
                   "offload: device peak %zu, not below %zu without", r.peak_total,
                   gr->base[v->wide][v->stage].peak_total);
    }
    if (rank == 0 && r.ok) {
        /* against the double-precision reference, with this run's skipped steps */
        const reference *R = get_reference(v->accum, v->clip ? CLIP : 0.0f, r.skip_mask);
        if (fp32) { /* per tensor: max|a - ref| <= 1e-5 max|ref| */
            r.err = rel_err(exported, R->p);
            EXPECT(r.err <= 1e-5, "exported weights %.3g from the reference (tolerance 1e-5)",
                   r.err);
            NOTE(" ref %.2g;", r.err);
        } else { /* computed with rounded parameters: within 10% of the training's displacement */
            r.err = disp_err(exported, R->p);
            EXPECT(r.err <= 0.1, "exported weights %.3g of the displacement from the reference "
                   "(tolerance 0.1)", r.err);
            NOTE(" ref %.2g of the displacement;", r.err);
        }
        if (fp32) {
            double worst = 0.0;
            for (int s = 0; s < STEPS; s++)
                worst = fmax(worst, fabs(r.norm[s] - R->norm[s]) / R->norm[s]);
            EXPECT(worst <= 1e-4, "gradient norm %.3g from the reference's", worst);
            /* accumulation and clipping change the result: the comparison can fail */
            if (v->accum > 1 || v->clip) {
                double d = rel_err(exported, get_reference(1, 0.0f, 0)->p);
                EXPECT(d > 1e-3, "%s trained the weights of a plain run (%.3g apart)",
                       v->clip ? "clipping" : "accumulation", d);
                NOTE(" %.2g from a plain run;", d);
            }
            if (v->clip) {
                float mx = 0.0f;
                for (int s = 0; s < STEPS; s++)
                    mx = fmaxf(mx, r.norm[s]);
                EXPECT(mx > CLIP, "gradient norm never above the clip (max %g)", mx);
            }
        }
        if (fp16)
            NOTE(" %d steps skipped;", r.skipped);
    }
    if (rank == 0 && rep) {
        double bus = jnum(rep, "comm.bus_bytes_per_step");
        double busf = jnum(rep, "comm.bus_bytes_formula_per_step");
        /* stage 3 refreshes resident chunks once per step instead of gathering them twice:
         * at most the formula there; fp16's skipped steps gather no parameters: at most the
         * formula + 1% (padding; stage 0 reduces as much as ever). With chunks of
         * several modules, the first micro-step (before the gather order is recorded) gathers
         * a chunk again for each of its modules after the first, in forward and in backward. */
        int near = !fp16 && !(v->stage == 3 && (v->resident || v->wide));
        double extra = 0.0;
        if (v->stage == 3 && v->wide)
            extra = 2.0 * (jnum(rep, "num_modules") - jnum(rep, "num_chunks")) *
                    jnum(rep, "memory.max_chunk_bytes") * (world - 1) / world / STEPS;
        if (world > 1) {
            if (near)
                EXPECT(fabs(bus - busf) <= 0.01 * busf, "bus bytes/step %.0f, formula %.0f",
                       bus, busf);
            else
                EXPECT(bus <= busf * (fp16 ? 1.01 : 1.0) + extra,
                       "bus bytes/step %.0f above the formula %.0f (+ %.0f)", bus, busf, extra);
            NOTE(" bus %+.2f%%;", 100.0 * (bus - busf) / busf);
        } else {
            EXPECT(bus == 0.0 && busf == 0.0, "one rank: bus bytes %.0f, formula %.0f", bus, busf);
        }
        if (v->off_opt) {
            double hp = jnum(rep, "memory.host_model_state_peak_bytes");
            double hf = jnum(rep, "memory.host_model_state_formula_bytes");
            EXPECT(hf > 0 && fabs(hp - hf) <= 0.01 * hf, "host state peak %.0f, formula %.0f",
                   hp, hf);
            double d2h = jnum(rep, "offload.d2h_bytes"), h2d = jnum(rep, "offload.h2d_bytes");
            if (v->off_param)
                EXPECT(h2d == 0.0, "parameter offload copied %.0f bytes back", h2d);
            /* one rank owns every parameter: each applied step copies the gradient out and the
             * parameters back, Psi working elements each way */
            if (world == 1 && v->accum == 1 && !fp16) {
                double want = (double)STEPS * (double)PSI * (double)wsz;
                EXPECT(d2h == want, "d2h %.0f bytes, expected %.0f", d2h, want);
                if (!v->off_param)
                    EXPECT(h2d == want, "h2d %.0f bytes, expected %.0f", h2d, want);
            }
        } else {
            EXPECT(jnum(rep, "offload.d2h_bytes") == 0.0, "d2h bytes without offload");
        }
        if (v->stage == 3) {
            double pf = jnum(rep, "stage3.prefetches"), hits = jnum(rep, "stage3.prefetch_hits");
            if (v->nopf)
                EXPECT(pf == 0.0, "prefetch_bytes 0, yet %.0f prefetches", pf);
            else if (!v->resident && !v->livecap && jnum(rep, "num_chunks") > 1)
                EXPECT(pf > 0.0 && hits == pf, "%.0f prefetches, %.0f used", pf, hits);
            else
                EXPECT(hits == pf, "%.0f prefetches, %.0f used", pf, hits);
            if (v->livecap) { /* state + live cap + one gather beyond it + two reduce buckets */
                double chunk = jnum(rep, "memory.max_chunk_bytes");
                double bound = jnum(rep, "memory.model_state_formula_bytes") + (32 << 10) +
                               chunk + 2.0 * (chunk + jnum(rep, "memory.max_slice_bytes"));
                double peak = jnum(rep, "memory.device_peak_bytes");
                EXPECT(peak <= bound, "device peak %.0f above state + cap + chunk + buckets %.0f",
                       peak, bound);
                NOTE(" peak %.0f <= %.0f;", peak, bound);
            }
        }
        json_t *dg = jpath(rep, "param_digest");
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r.digest);
        EXPECT(json_is_string(dg) && !strcmp(json_string_value(dg), hex),
               "report digest %s, zero_param_digest %s",
               json_is_string(dg) ? json_string_value(dg) : "?", hex);
        json_decref(rep);
    }
    if (r.ok && !v->repeat && !v->clip && !gr->have[v->wide][v->stage] && !v->off_opt && !v->nopf &&
        !v->resident && !v->livecap) {
        gr->base[v->wide][v->stage] = r;
        gr->have[v->wide][v->stage] = 1;
    }
    if (out && !v->repeat)
        *out = r;
    configs++;
    failed_configs += config_failures != 0;
    if (rank == 0) {
        double ms =
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6;
        printf("%s np=%d %-48s %016llx %5.0f ms%s\n", config_failures ? "FAIL" : "PASS", world,
               name, (unsigned long long)r.digest, ms, note);
        fflush(stdout);
    }
#undef NOTE
}

int main(void)
{
    clear_zero_environment();
    make_model();
    /* A first context tells rank and world size (and initialises MPI). */
    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.device = ZERO_DEVICE_HOST;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, tensors, NT);
    if (s) {
        fprintf(stderr, "zero_init: %s: %s\n", zero_status_string(s), zero_init_error());
        return 1;
    }
    rank = zero_rank(z);
    world = zero_world_size(z);
    rank_hint = rank;
    /* files named after rank 0's process: runs of the suite side by side in one build tree
     * do not share them */
    double id = rank == 0 ? (double)getpid() : 0.0;
    s = zero_allreduce_sum(z, &id, 1);
    zero_finalize(z);
    if (s) {
        fprintf(stderr, "zero_allreduce_sum: %s\n", zero_status_string(s));
        return 1;
    }
    snprintf(report_path, sizeof report_path, "test_matrix_np%d_%.0f.json", world, id);
    snprintf(export_path, sizeof export_path, "test_matrix_np%d_%.0f.safetensors", world, id);
    exported = malloc(PSI * sizeof(float));
    if (!exported)
        return 2;
    if (rank == 0)
        printf("test_matrix: %d rank(s), %zu parameters, %d steps, global batch %d, "
               "bucket %zu bytes\n", world, PSI, STEPS, BATCH, BUCKET);

    static const zero_dtype dtypes[3] = {ZERO_DTYPE_FP32, ZERO_DTYPE_BF16, ZERO_DTYPE_FP16};
    for (int di = 0; di < 3; di++) {
        for (int accum = 1; accum <= 2; accum++) {
            group gr;
            memset(&gr, 0, sizeof gr);
            const zero_dtype dt = dtypes[di];
            variant b = {.dtype = dt, .accum = accum};
            result first;
            for (int stage = 0; stage <= 3; stage++) {
                variant v = b;
                v.stage = stage;
                check_variant(&v, &gr, &first);
                /* determinism: stage 2 run twice (fp32, accumulation 1) */
                if (stage == 2 && dt == ZERO_DTYPE_FP32 && accum == 1) {
                    v.repeat = 1;
                    check_variant(&v, &gr, &first);
                    v.repeat = 0;
                }
                if (stage == 0)
                    continue;
                v.off_opt = 1;
                check_variant(&v, &gr, NULL);
                /* 4 KiB offload blocks; at stage 3 with the parameter shard on the device
                 * (fp32) and on the host (bf16, fp16) */
                v.block = 1;
                v.off_param = stage == 3 && dt != ZERO_DTYPE_FP32;
                check_variant(&v, &gr, NULL);
                if (stage == 3) {
                    variant p = b;
                    p.stage = 3;
                    p.off_opt = p.off_param = 1;
                    check_variant(&p, &gr, &first);
                    p.repeat = 1; /* determinism with CPU AdamW threads and offload copies */
                    if (accum == 1)
                        check_variant(&p, &gr, &first);
                    variant q = b;
                    q.stage = 3;
                    q.nopf = 1;
                    check_variant(&q, &gr, NULL);
                    q.nopf = 0;
                    q.resident = 1;
                    check_variant(&q, &gr, NULL);
                    q.resident = 0;
                    q.livecap = 1;
                    check_variant(&q, &gr, NULL);
                    q.off_opt = q.off_param = 1;
                    check_variant(&q, &gr, NULL);
                }
            }
            /* chunks of several modules: stage 3 (optimizer and parameters offloaded too)
             * against stage 0 of the same layout */
            if (accum == 1)
                for (int k = 0; k < 3; k++) {
                    variant w = b;
                    w.wide = 1;
                    w.stage = k ? 3 : 0;
                    w.off_opt = w.off_param = k == 2;
                    check_variant(&w, &gr, NULL);
                }
            /* global-norm clipping across shards: fp32 only (each stage against the clipped
             * reference) */
            if (dt == ZERO_DTYPE_FP32 && accum == 1)
                for (int stage = 0; stage <= 3; stage++) {
                    variant c = b;
                    c.stage = stage;
                    c.clip = 1;
                    check_variant(&c, &gr, NULL);
                }
        }
    }
    if (rank == 0) {
        if (!getenv("MATRIX_ONLY")) { /* else the last one's report and export stay */
            remove(report_path);
            remove(export_path);
        }
        printf("test_matrix: %d rank(s): %d configurations, %d failed; %d checks on rank 0, "
               "%d failed\n", world, configs, failed_configs, checks, failures);
    }
    free(exported);
    return failures != 0 || failed_configs != 0;
}
