/* mlp.c — zero-mlp: the standalone MLP of model.c trained through libzero.
 *
 * The model keeps its llm.c shape (flat fp32 parameters, its own forward/backward); what libzero
 * changes is marked "libzero:" below, and it is little:
 *   1. register each layer's weight and bias, .init pointing into the model's own array, call
 *      zero_init, then free that array (the engine owns the parameters now);
 *   2. forward/backward read layer l's parameters between zero_gather(l) and zero_release(l)
 *      (no-ops below stage 3), converted to fp32 when the working dtype is bf16/fp16;
 *   3. backward ADDS each layer's gradient (times the loss scale) into zero_grad_ptr and calls
 *      zero_grad_ready(l); zero_step replaces the optimizer, once per micro-batch.
 * Data parallelism: the global batch of --batch rows is split evenly over the ranks; the rows are
 * generated from their global index, so every world size trains on the same data.
 *
 *   zero-mlp [--layers L] [--width W] [--batch B] [--steps N] [--lr X] ...   (--help)
 *   mpirun -np 2 zero-mlp ...;  ZERO_STAGE=3 ZERO_DTYPE=bf16 zero-mlp ...
 *   zero-mlp --gradcheck    checks backward against finite differences (no libzero involved)
 */

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "model.h"
#include "zero.h"

/* ---- command line ------------------------------------------------------------------------- */

typedef struct options {
    int layers;              /* hidden layers */
    int width;               /* input and hidden width */
    int batch;               /* global batch rows per micro-step (all ranks together) */
    int steps;               /* optimizer steps */
    uint64_t seed;           /* parameters, teacher and data */
    float lr;                /* AdamW learning rate */
    float wd;                /* AdamW weight decay (not applied to biases) */
    float eps;               /* AdamW epsilon, added to the root of the second moment */
    const char *export_path; /* safetensors file written after training; NULL = none */
    const char *save_dir;    /* checkpoints (zero_save) go here; NULL = none */
    int save_every;          /* also every N optimizer steps; 0 = only at the end */
    int save_async;          /* --save-async: zero_save_async, waited for at the next save */
    const char *resume;      /* checkpoint (or checkpoint directory) to continue from */
    int fp32_views;          /* bf16/fp16: libzero hands out fp32 views (zero_config.fp32_views) */
    int quiet;               /* no per-step lines */
    int gradcheck;           /* run the gradient check instead of training */
} options;

static const options default_options = {
    .layers = 4, .width = 128, .batch = 48, .steps = 50, .seed = 42,
    .lr = 3e-3f, .wd = 0.01f, .eps = 1e-8f, .export_path = NULL, .save_dir = NULL,
    .save_every = 0, .resume = NULL, .quiet = 0, .gradcheck = 0,
};

static void usage(FILE *f) {
    const options *d = &default_options;
    fprintf(f,
            "usage: zero-mlp [options]\n"
            "Trains a tanh MLP on synthetic regression data (a fixed random teacher network)\n"
            "with libzero; ZERO_* environment variables choose stage, dtype, offload, ...\n"
            "  --layers L     hidden layers Linear(W, W) + tanh           (default %d)\n"
            "  --width W      input and hidden width                      (default %d)\n"
            "  --batch B      global batch rows per micro-step, all ranks (default %d;\n"
            "                 must be a multiple of the number of ranks)\n"
            "  --steps N      optimizer steps of this run (0: none)       (default %d)\n"
            "  --seed S       seed of parameters, teacher and data        (default %" PRIu64 ")\n"
            "  --lr X         AdamW learning rate                         (default %g)\n"
            "  --wd X         AdamW weight decay, not on biases           (default %g)\n"
            "  --eps X        AdamW epsilon, > 0                          (default %g)\n"
            "  --export PATH  after training, write the parameters as safetensors (F32)\n"
            "  --save DIR     write a checkpoint into DIR at the end (zero_save)\n"
            "  --save-every N also every N steps (with --save)\n"
            "  --save-async   save while training goes on (zero_save_async); each save is\n"
            "                 committed (zero_save_wait) at the next one and at the end\n"
            "  --resume DIR   continue from a checkpoint (DIR, or a directory --save wrote):\n"
            "                 parameters, Adam state, step and the data position; --steps\n"
            "                 counts the steps of this run\n"
            "  --fp32-views   at bf16/fp16, let libzero convert: the model reads fp32 parameters\n"
            "                 and adds fp32 gradients (zero_config.fp32_views)\n"
            "  --quiet        no per-step lines, only the final loss\n"
            "  --gradcheck    check backward against finite differences (no libzero) and exit\n"
            "  --help         this text\n"
            "Exit status: 0 success, 1 failure, 2 bad command line.\n",
            d->layers, d->width, d->batch, d->steps, d->seed, (double)d->lr, (double)d->wd,
            (double)d->eps);
}

/* Returns 0 to go on, 1 after --help, 2 on a bad command line (message on stderr). Accepts both
 * "--flag value" and "--flag=value". */
static int parse_args(int argc, char **argv, options *o) {
    *o = default_options;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return 1;
        if (!strcmp(arg, "--quiet")) { o->quiet = 1; continue; }
        if (!strcmp(arg, "--save-async")) { o->save_async = 1; continue; }
        if (!strcmp(arg, "--fp32-views")) { o->fp32_views = 1; continue; }
        if (!strcmp(arg, "--gradcheck")) { o->gradcheck = 1; continue; }

        /* every other flag takes a value */
        char name[32];
        const char *val = cli_split(argc, argv, &i, name, sizeof(name));
        int bad;
        if (!strcmp(name, "--layers")) bad = !val || cli_parse_int(val, 1, 4096, &o->layers);
        else if (!strcmp(name, "--width")) bad = !val || cli_parse_int(val, 1, 1 << 16, &o->width);
        else if (!strcmp(name, "--batch")) bad = !val || cli_parse_int(val, 1, 1 << 24, &o->batch);
        else if (!strcmp(name, "--steps")) bad = !val || cli_parse_int(val, 0, 1 << 30, &o->steps);
        else if (!strcmp(name, "--seed")) bad = !val || cli_parse_u64(val, &o->seed);
        else if (!strcmp(name, "--lr")) bad = !val || cli_parse_float(val, 0.0f, &o->lr);
        else if (!strcmp(name, "--wd")) bad = !val || cli_parse_float(val, 0.0f, &o->wd);
        else if (!strcmp(name, "--eps"))
            bad = !val || cli_parse_float(val, 0.0f, &o->eps) || !(o->eps > 0.0f);
        else if (!strcmp(name, "--export")) { bad = !val || !*val; o->export_path = val; }
        else if (!strcmp(name, "--save")) { bad = !val || !*val; o->save_dir = val; }
        else if (!strcmp(name, "--save-every"))
            bad = !val || cli_parse_int(val, 1, 1 << 30, &o->save_every);
        else if (!strcmp(name, "--resume")) { bad = !val || !*val; o->resume = val; }
        else return cli_unknown_option("zero-mlp", arg);
        if (bad) return cli_bad_value("zero-mlp", name, val);
    }
    if ((o->save_every || o->save_async) && !o->save_dir) {
        fprintf(stderr, "zero-mlp: --save-every and --save-async need --save DIR\n");
        return 2;
    }
    return 0;
}

/* The checkpoint's user blob: where the data stream stands (data rows are a function of seed,
 * step, micro-step and row), so a resumed run trains on the batches the original would have. */
typedef struct resume_blob {
    char magic[8];     /* "zero-mlp" */
    uint32_t version;  /* 1 */
    uint32_t layers, width, batch;
    uint64_t seed;
    int64_t step;      /* optimizer-loop steps completed */
} resume_blob;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- gradient check (plain model, no libzero) --------------------------------------------- */

/* The loss of the model with parameters theta (flat, p's layout), recomputed in double
 * precision: an independent forward to difference. */
static double loss_double(const mlp_params *p, const double *theta, const float *x,
                          const float *target, int rows) {
    const int W = p->layer[0].in;
    double *h = malloc(2 * (size_t)W * sizeof(double));
    if (!h) return NAN;
    double sum = 0.0;
    for (int r = 0; r < rows; r++) {
        double *cur = h, *next = h + W;
        for (int i = 0; i < W; i++) cur[i] = x[(size_t)r * W + i];
        double y = 0.0;
        for (int l = 0; l < p->num_layers; l++) {
            const mlp_linear *ly = &p->layer[l];
            const double *w = theta + (ly->w - p->memory), *b = theta + (ly->b - p->memory);
            for (int o = 0; o < ly->out; o++) {
                double s = b[o];
                for (int i = 0; i < ly->in; i++) s += w[(size_t)o * ly->in + i] * cur[i];
                if (l + 1 < p->num_layers) next[o] = tanh(s);
                else y = s;
            }
            double *t = cur; cur = next; next = t;
        }
        sum += (y - target[r]) * (y - target[r]);
    }
    free(h);
    return sum / rows;
}

/* Compares mlp_backward with central differences of loss_double on a tiny model, and checks that
 * data rows do not depend on how a batch is split. Returns 0 on pass, 1 on fail. */
static int gradcheck(void) {
    const mlp_config mc = {.layers = 2, .width = 5};
    const int rows = 3;
    const uint64_t seed = 7;
    /* central differences in double with h = 1e-5 are good to ~1e-9; the analytic gradient is
     * computed in fp32, so compare with |analytic - numeric| <= ATOL + RTOL * |numeric| */
    const double h = 1e-5, atol = 1e-5, rtol = 1e-3;
    int fail = 1;
    mlp_params p, g;
    mlp_acts a;
    mlp_teacher t;
    float *target = malloc((size_t)rows * sizeof(float));
    float *x1 = malloc((size_t)mc.width * sizeof(float));
    double *theta = NULL;
    memset(&g, 0, sizeof(g));
    memset(&a, 0, sizeof(a));
    memset(&t, 0, sizeof(t));
    if (mlp_params_alloc(&p, &mc)) goto out;
    if (mlp_params_alloc(&g, &mc) || mlp_acts_alloc(&a, &mc, rows) ||
        mlp_teacher_init(&t, mc.width, seed) || !target || !x1)
        goto out;
    theta = malloc(p.numel * sizeof(double));
    if (!theta) goto out;
    mlp_params_init(&p, seed);

    /* data: row 1 generated alone must equal row 1 of the whole batch (any world size) */
    mlp_data(&t, seed, 3, 1, 0, rows, mlp_acts_h(&a, 0), target);
    float t1;
    mlp_data(&t, seed, 3, 1, 1, 1, x1, &t1);
    int data_ok = !memcmp(x1, mlp_acts_h(&a, 0) + mc.width, (size_t)mc.width * sizeof(float)) &&
                  t1 == target[1];
    printf("gradcheck: data rows independent of the batch split: %s\n", data_ok ? "ok" : "FAIL");

    float loss = mlp_forward(&p, &a, target, 1.0f);
    mlp_backward(&p, &g, &a);
    for (size_t k = 0; k < p.numel; k++) theta[k] = p.memory[k];
    double loss_ref = loss_double(&p, theta, mlp_acts_h(&a, 0), target, rows);
    int loss_ok = fabs(loss - loss_ref) <= 1e-5 * (1.0 + fabs(loss_ref));
    printf("gradcheck: loss fp32 %.9g vs fp64 %.9g: %s\n", (double)loss, loss_ref,
           loss_ok ? "ok" : "FAIL");

    double max_abs = 0.0, max_rel = 0.0;
    size_t bad = 0;
    for (size_t k = 0; k < p.numel; k++) {
        double keep = theta[k];
        theta[k] = keep + h;
        double lp = loss_double(&p, theta, mlp_acts_h(&a, 0), target, rows);
        theta[k] = keep - h;
        double lm = loss_double(&p, theta, mlp_acts_h(&a, 0), target, rows);
        theta[k] = keep;
        double num = (lp - lm) / (2.0 * h), ana = g.memory[k];
        double err = fabs(ana - num);
        if (err > max_abs) max_abs = err;
        if (err / fmax(fabs(num), 1e-12) > max_rel && fabs(num) > atol) max_rel = err / fabs(num);
        if (!(err <= atol + rtol * fabs(num))) {
            if (bad < 10) printf("gradcheck: param %zu: analytic %.9g numeric %.9g\n", k, ana, num);
            bad++;
        }
    }
    printf("gradcheck: %zu parameters (layers %d, width %d, batch %d): max abs err %.3g, "
           "max rel err %.3g (tolerance %g + %g * |numeric|): %s\n",
           p.numel, mc.layers, mc.width, rows, max_abs, max_rel, atol, rtol, bad ? "FAIL" : "ok");
    fail = !(data_ok && loss_ok && bad == 0);
    printf("gradcheck: %s\n", fail ? "FAILED" : "passed");
out:
    if (!theta) fprintf(stderr, "zero-mlp: gradcheck: out of memory\n");
    free(theta);
    free(x1);
    free(target);
    mlp_teacher_free(&t);
    mlp_acts_free(&a);
    mlp_params_free(&g);
    mlp_params_free(&p);
    return fail;
}

/* ---- training with libzero ---------------------------------------------------------------- */

/* libzero: every zero_* status is checked; a failure names the call and the engine's message. */
#define ZCHECK(call)                                                                              \
    do {                                                                                          \
        zero_status s_ = (call);                                                                  \
        if (s_ != ZERO_OK) {                                                                      \
            fprintf(stderr, "zero-mlp: rank %d: %s failed: %s: %s\n", rank, #call,               \
                    zero_status_string(s_), zero_last_error(z));                                  \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

/* libzero: the pointer-returning calls give NULL on failure. */
#define ZCHECK_PTR(ptr, call)                                                                     \
    do {                                                                                          \
        if (!((ptr) = (call))) {                                                                  \
            fprintf(stderr, "zero-mlp: rank %d: %s failed: %s\n", rank, #call,                  \
                    zero_last_error(z));                                                          \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

#ifdef MLP_HAVE_CUDA
#include "model_cuda.h"
/* A GPU call of the model (model_cuda.h). A failure is printed and remembered, and the rank goes
 * on through its libzero calls (other ranks wait for them in collectives) until the loss
 * all-reduce of the step, where every rank learns of it and stops. */
#define GPU(call)                                                                                 \
    do {                                                                                          \
        if (gpu && !gpu_failed && (call)) {                                                       \
            fprintf(stderr, "zero-mlp: rank %d: %s\n", rank, mlp_gpu_error(gpu));                \
            gpu_failed = 1;                                                                       \
        }                                                                                         \
    } while (0)
#else
typedef struct mlp_gpu mlp_gpu; /* never created without the CUDA path */
#define GPU(call) ((void)0)
#endif

static int train(const options *o) {
    const mlp_config mc = {.layers = o->layers, .width = o->width};
    const int L = mc.layers, W = mc.width, num_layers = L + 1, num_tensors = 2 * num_layers;
    int rank = 0, exit_code = 1;
    int save_pending = 0; /* a zero_save_async not yet waited for */
    double final_loss = NAN;
    zero_ctx *z = NULL;
    mlp_gpu *gpu = NULL; /* the model's GPU side, on the cuda backend */
    int gpu_failed = 0;  /* a GPU call failed on this rank (agreed at the loss all-reduce) */
    zero_tensor *tensors = NULL;
    char(*names)[32] = NULL;
    mlp_params model;
    mlp_acts acts;
    mlp_teacher teacher;
    float *target = NULL, *dw = NULL, *db = NULL, *pw = NULL, *pb = NULL;
    memset(&acts, 0, sizeof(acts));
    memset(&teacher, 0, sizeof(teacher));

    /* The model as it would be standalone: one flat fp32 array, seeded init. */
    if (mlp_params_alloc(&model, &mc)) {
        fprintf(stderr, "zero-mlp: out of memory for %d x %d parameters\n", L, W);
        return 1;
    }
    mlp_params_init(&model, o->seed);

    /* libzero: one module per layer (module id = layer index), weight then bias; the head is
     * layer L. .init points into the model's array; biases are exempt from weight decay. */
    tensors = calloc((size_t)num_tensors, sizeof(*tensors));
    names = calloc((size_t)num_tensors, sizeof(*names)); /* kept until zero_finalize */
    if (!tensors || !names) {
        fprintf(stderr, "zero-mlp: out of memory\n");
        mlp_params_free(&model);
        goto fail;
    }
    for (int l = 0; l < num_layers; l++) {
        const mlp_linear *ly = &model.layer[l];
        zero_tensor *tw = &tensors[2 * l], *tb = &tensors[2 * l + 1];
        snprintf(names[2 * l], sizeof(names[0]), "layers.%d.weight", l);
        snprintf(names[2 * l + 1], sizeof(names[0]), "layers.%d.bias", l);
        *tw = (zero_tensor){.name = names[2 * l], .numel = (size_t)ly->out * (size_t)ly->in,
                            .module = l, .init = ly->w, .ndim = 2, .shape = {ly->out, ly->in}};
        *tb = (zero_tensor){.name = names[2 * l + 1], .numel = (size_t)ly->out, .module = l,
                            .init = ly->b, .ndim = 1, .shape = {ly->out}, .no_decay = 1};
    }
    zero_config cfg = ZERO_CONFIG_INIT; /* ZERO_* environment variables override these */
    cfg.lr = o->lr;
    cfg.weight_decay = o->wd;
    cfg.eps = o->eps;
    cfg.fp32_views = o->fp32_views; /* libzero: fp32 in and out of the model at bf16/fp16 */
    zero_status st = zero_init(&z, &cfg, tensors, num_tensors);
    /* libzero: the engine holds the parameters now; the model's own copy goes */
    mlp_params_free(&model);
    free(tensors);
    tensors = NULL;
    if (st != ZERO_OK) {
        fprintf(stderr, "zero-mlp: zero_init failed: %s: %s\n", zero_status_string(st),
                zero_init_error());
        z = NULL;
        goto fail;
    }

    rank = zero_rank(z);
    const int world = zero_world_size(z);
    const zero_config *rc = zero_get_config(z); /* resolved: flags, then environment */
    const zero_dtype dtype = rc->dtype;
    const int accum = rc->grad_accum;
    if (o->batch % world != 0) {
        if (rank == 0)
            fprintf(stderr, "zero-mlp: --batch %d is not a multiple of the %d ranks\n", o->batch,
                    world);
        exit_code = 2;
        goto fail;
    }
    /* data parallel: this rank's rows of the global batch */
    const int rows = o->batch / world;
    const int64_t row0 = (int64_t)rank * rows;

    /* libzero: on the cuda backend parameters and gradients are GPU memory: the model then
     * computes on the GPU, on libzero's compute stream (model_cuda.h) */
    int setup_failed = 0; /* on this rank; agreed below */
    if (rc->device == ZERO_DEVICE_CUDA) {
#ifdef MLP_HAVE_CUDA
        char gerr[256];
        if (mlp_gpu_create(&gpu, L, W, rows, zero_compute_stream(z), gerr, sizeof(gerr))) {
            fprintf(stderr, "zero-mlp: rank %d: %s\n", rank, gerr);
            setup_failed = 1;
        }
#else
        fprintf(stderr, "zero-mlp: the cuda backend was chosen but zero-mlp was built without "
                "its CUDA path; use ZERO_DEVICE=host\n");
        goto fail;
#endif
    }

    const size_t wmax = (size_t)W * (size_t)W;
    if (mlp_acts_alloc(&acts, &mc, rows) || mlp_teacher_init(&teacher, W, o->seed) ||
        !(target = malloc((size_t)rows * sizeof(float))) ||
        !(dw = malloc(wmax * sizeof(float))) || !(db = malloc((size_t)W * sizeof(float))) ||
        !(pw = malloc(wmax * sizeof(float))) || !(pb = malloc((size_t)W * sizeof(float)))) {
        fprintf(stderr, "zero-mlp: rank %d: out of memory\n", rank);
        setup_failed = 1;
    }
    /* every rank learns whether every rank is ready before the first collective of training */
    double ready = setup_failed;
    ZCHECK(zero_allreduce_sum(z, &ready, 1));
    if (ready > 0.0) {
        if (!setup_failed)
            fprintf(stderr, "zero-mlp: rank %d: another rank could not set up\n", rank);
        goto fail;
    }

    if (rank == 0 && !o->quiet) {
        size_t nparam = 0;
        for (int l = 0; l < num_layers; l++)
            nparam += mlp_layer_weight_numel(&mc, l) + mlp_layer_bias_numel(&mc, l);
        static const char *dtype_names[] = {"fp32", "bf16", "fp16"};
        printf("zero-mlp: %d layers, width %d, %zu parameters | %d rank(s), stage %d, %s, "
               "grad accum %d | batch %d (%d rows per rank), lr %g, wd %g\n",
               L, W, nparam, world, rc->stage,
               (unsigned)dtype < 3 ? dtype_names[dtype] : "?", accum, o->batch, rows,
               (double)rc->lr, (double)rc->weight_decay);
    }

    /* libzero: a resumed run loads the state and the blob, and goes on from its step */
    int64_t first_step = 0;
    uint64_t seed = o->seed;
    if (o->resume) {
        resume_blob rb;
        size_t rb_len = 0;
        ZCHECK(zero_load(z, o->resume, &rb, sizeof(rb), &rb_len));
        if (rb_len != sizeof(rb) || memcmp(rb.magic, "zero-mlp", 8) != 0 || rb.version != 1 ||
            rb.layers != (uint32_t)L || rb.width != (uint32_t)W || rb.seed != o->seed) {
            fprintf(stderr, "zero-mlp: rank %d: %s was not saved by zero-mlp with --layers %d "
                    "--width %d --seed %" PRIu64 "\n", rank, o->resume, L, W, o->seed);
            goto fail;
        }
        first_step = rb.step;
        if (rank == 0 && !o->quiet)
            printf("zero-mlp: resumed from %s at step %" PRId64 "\n", o->resume, first_step);
    }
    const int64_t last_step = first_step + o->steps;

    for (int64_t step = first_step; step < last_step; step++) {
        double t0 = now_ms();
        double loss_sum = 0.0; /* this rank's micro-batch losses */
        for (int micro = 0; micro < accum; micro++) {
            /* each micro-step trains on its own global batch */
            mlp_data(&teacher, seed, step, micro, row0, rows, mlp_acts_h(&acts, 0), target);
            GPU(mlp_gpu_load(gpu, mlp_acts_h(&acts, 0), target));

            /* forward */
            for (int l = 0; l < num_layers; l++) {
                const int out = l < L ? W : 1;
                const size_t nw = (size_t)out * (size_t)W;
                const float *w, *b;
                void *zw, *zb;
                ZCHECK(zero_gather(z, l)); /* libzero: stage 3 all-gathers layer l here */
                ZCHECK_PTR(zw, zero_param_ptr(z, 2 * l));
                ZCHECK_PTR(zb, zero_param_ptr(z, 2 * l + 1));
                if (gpu) {
                    GPU(mlp_gpu_forward(gpu, l, zw, zb, o->fp32_views ? ZERO_DTYPE_FP32 : dtype));
                    ZCHECK(zero_release(z, l));
                    continue;
                }
                if (dtype == ZERO_DTYPE_FP32 || o->fp32_views) {
                    w = zw;
                    b = zb;
                } else { /* libzero: bf16/fp16 parameters, computed with in fp32 */
                    zero_convert(pw, ZERO_DTYPE_FP32, zw, dtype, nw);
                    zero_convert(pb, ZERO_DTYPE_FP32, zb, dtype, (size_t)out);
                    w = pw;
                    b = pb;
                }
                mlp_layer_io io = mlp_acts_layer(&acts, l);
                mlp_linear_forward(io.y, io.x, w, b, rows, W, out, l < L);
                ZCHECK(zero_release(z, l));
            }
            /* the mean over this rank's rows; libzero averages gradients over ranks and
             * micro-steps. The loss gradient carries the (fp16) loss scale. */
            if (gpu) {
                float lg = 0.0f;
                GPU(mlp_gpu_loss(gpu, zero_loss_scale(z), &lg));
                loss_sum += lg;
            } else {
                loss_sum += mlp_mse_loss(acts.dy, acts.y, target, rows, zero_loss_scale(z));
            }

            /* backward, last layer first */
            for (int l = num_layers - 1; l >= 0; l--) {
                const int out = l < L ? W : 1;
                const size_t nw = (size_t)out * (size_t)W;
                const float *w;
                void *zw, *gw, *gb;
                ZCHECK(zero_gather(z, l)); /* stage 3: gathered again for backward */
                ZCHECK_PTR(zw, zero_param_ptr(z, 2 * l));
                if (gpu) { /* the kernels are enqueued on libzero's stream: release at once */
                    ZCHECK_PTR(gw, zero_grad_ptr(z, 2 * l));
                    ZCHECK_PTR(gb, zero_grad_ptr(z, 2 * l + 1));
                    GPU(mlp_gpu_backward(gpu, l, zw, gw, gb, o->fp32_views ? ZERO_DTYPE_FP32 : dtype));
                    ZCHECK(zero_release(z, l));
                    ZCHECK(zero_grad_ready(z, l));
                    continue;
                }
                if (dtype == ZERO_DTYPE_FP32 || o->fp32_views) {
                    w = zw;
                } else {
                    zero_convert(pw, ZERO_DTYPE_FP32, zw, dtype, nw);
                    w = pw;
                }
                mlp_layer_io io = mlp_acts_layer(&acts, l);
                mlp_linear_backward(io.dx, dw, db, io.dy, io.y, io.x, w, rows, W, out, l < L);
                ZCHECK(zero_release(z, l));
                /* libzero: add the layer's gradient into the engine's gradient buffers, asked
                 * for now (at stage 2-3 they live in a bucket until zero_grad_ready) */
                ZCHECK_PTR(gw, zero_grad_ptr(z, 2 * l));
                ZCHECK_PTR(gb, zero_grad_ptr(z, 2 * l + 1));
                if (dtype == ZERO_DTYPE_FP32 || o->fp32_views) {
                    float *fw = gw, *fb = gb;
                    for (size_t k = 0; k < nw; k++) fw[k] += dw[k];
                    for (int k = 0; k < out; k++) fb[k] += db[k];
                } else {
                    zero_accumulate(gw, dtype, dw, nw);
                    zero_accumulate(gb, dtype, db, (size_t)out);
                }
                ZCHECK(zero_grad_ready(z, l));
            }

            /* libzero: replaces the optimizer; updates only at the accumulation boundary */
            ZCHECK(zero_step(z));
            zero_step_info info;
            ZCHECK(zero_last_step(z, &info));
            if (info.boundary != (micro == accum - 1)) {
                fprintf(stderr, "zero-mlp: rank %d: zero_step reported boundary=%d at micro-step "
                        "%d of %d\n", rank, info.boundary, micro + 1, accum);
                goto fail;
            }
            if (!info.boundary) continue;

            /* the global mean loss of this optimizer step */
            double sums[2] = {loss_sum, gpu_failed};
            ZCHECK(zero_allreduce_sum(z, sums, 2));
            if (sums[1] > 0.0) {
                fprintf(stderr, "zero-mlp: rank %d: stopping: a GPU call failed on %g rank(s)\n",
                        rank, sums[1]);
                goto fail;
            }
            double loss = sums[0] / ((double)world * (double)accum);
            final_loss = loss;
            double ms = now_ms() - t0;
            if (rank == 0 && !o->quiet) {
                zero_memory_stats mem;
                ZCHECK(zero_memory_report(z, &mem));
                char skipped[48] = "";
                if (info.skipped > 0 || info.overflow)
                    snprintf(skipped, sizeof(skipped), " | skipped %" PRId64 "%s", info.skipped,
                             info.overflow ? " (this step)" : "");
                printf("step %4" PRId64 "/%" PRId64 " | loss %.6f | grad norm %.4f | loss scale "
                       "%g%s | %.2f ms | mem %.2f MiB (peak %.2f MiB)\n",
                       step + 1, last_step, loss, (double)info.grad_norm, (double)info.loss_scale,
                       skipped, ms, (double)mem.current_total / 1048576.0,
                       (double)mem.peak_total / 1048576.0);
                fflush(stdout);
            }
            /* libzero: a checkpoint every --save-every steps and at the end */
            if (o->save_dir && ((o->save_every && (step + 1) % o->save_every == 0) ||
                                step + 1 == last_step)) {
                resume_blob rb = {.version = 1, .layers = (uint32_t)L, .width = (uint32_t)W,
                                  .batch = (uint32_t)o->batch, .seed = seed, .step = step + 1};
                memcpy(rb.magic, "zero-mlp", 8);
                if (o->save_async) { /* the previous one committed first */
                    if (save_pending) ZCHECK(zero_save_wait(z));
                    ZCHECK(zero_save_async(z, o->save_dir, &rb, sizeof(rb)));
                    save_pending = 1;
                } else {
                    ZCHECK(zero_save(z, o->save_dir, &rb, sizeof(rb)));
                }
                if (rank == 0 && !o->quiet)
                    printf("zero-mlp: %s step %" PRId64 " to %s\n",
                           o->save_async ? "saving (asynchronously)" : "saved", step + 1,
                           o->save_dir);
            }
        }
    }

    if (save_pending) { /* the last asynchronous save committed before anything else */
        ZCHECK(zero_save_wait(z));
        save_pending = 0;
    }
    /* --steps 0 --save: the loaded (or initial) state saved as it is */
    if (o->save_dir && o->steps == 0) {
        resume_blob rb = {.version = 1, .layers = (uint32_t)L, .width = (uint32_t)W,
                          .batch = (uint32_t)o->batch, .seed = o->seed, .step = last_step};
        memcpy(rb.magic, "zero-mlp", 8);
        ZCHECK(zero_save(z, o->save_dir, &rb, sizeof(rb)));
    }
    if (o->export_path) ZCHECK(zero_export(z, o->export_path));
    exit_code = 0;

fail:
    free(pb);
    free(pw);
    free(db);
    free(dw);
    free(target);
#ifdef MLP_HAVE_CUDA
    mlp_gpu_destroy(gpu);
#endif
    mlp_teacher_free(&teacher);
    mlp_acts_free(&acts);
    if (z) {
        zero_status fs = zero_finalize(z);
        if (fs != ZERO_OK) {
            fprintf(stderr, "zero-mlp: rank %d: zero_finalize failed: %s\n", rank,
                    zero_status_string(fs));
            if (exit_code == 0) exit_code = 1;
        }
    }
    free(names);
    free(tensors);
    if (exit_code == 0 && rank == 0 && o->steps > 0) printf("final loss %.6f\n", final_loss);
    return exit_code;
}

int main(int argc, char **argv) {
    options o;
    int pa = parse_args(argc, argv, &o);
    if (pa == 1) {
        usage(stdout);
        return 0;
    }
    if (pa == 2) {
        usage(stderr);
        return 2;
    }
    if (o.gradcheck) return gradcheck();
    return train(&o);
}
