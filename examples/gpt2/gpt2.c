/* gpt2.c — zero-gpt2: the standalone GPT-2 style model of model.c trained through libzero on a
 * byte-level text corpus.
 *
 * The model keeps its llm.c shape (tensor pointers into one flat fp32 array, its own forward and
 * backward); what libzero changes is marked "libzero:" below:
 *   1. register every tensor in module order (module 0 = wte, wpe; module l + 1 = block l;
 *      module L + 1 = final LayerNorm), .init pointing into the model's array; call zero_init,
 *      then free that array (the engine owns the parameters now);
 *   2. forward and backward read module m's parameters between zero_gather(m) and
 *      zero_release(m) (no-ops below stage 3), converted to fp32 when the working dtype is
 *      bf16/fp16. The lm head is tied to wte, so module 0 is gathered a second time around it;
 *   3. backward ADDS each module's gradient (the loss gradient carries zero_loss_scale) into
 *      zero_grad_ptr, asked for when it is needed, then calls zero_grad_ready(m). wte collects
 *      the head's gradient first and the embedding's last, so module 0 is reported ready once,
 *      at the very end; zero_step replaces the optimizer, once per micro-batch.
 * Data parallelism: the global batch of --batch sequences is split evenly over the ranks; every
 * sequence is drawn from its global row index, so every world size trains on the same data.
 *
 *   zero-gpt2 [--layers L] [--heads H] [--dim C] [--seq T] [--batch B] [--steps N] ... (--help)
 *   mpirun -np 2 zero-gpt2 ...;  ZERO_STAGE=1 ZERO_DTYPE=bf16 zero-gpt2 ...
 *   zero-gpt2 --gradcheck    checks backward against finite differences (no libzero involved)
 */

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blas_info.h"
#include "cli.h"
#include "model.h"
#include "zero.h"

/* Global gradient-norm clipping, as GPT-2 style training does: without it the first steps'
 * large gradients, remembered by Adam's second moment, leave this small tied-embedding model
 * stuck at the unigram loss (~2.98 nats on the corpus) for a hundred steps or more. */
#define GPT2_CLIP 1.0f

#ifndef ZERO_GPT2_CORPUS
#define ZERO_GPT2_CORPUS "examples/gpt2/data/corpus.txt"
#endif

/* ---- command line ------------------------------------------------------------------------- */

/* The checkpoint's user blob: where the data stream stands (the training loader's position), so
 * a resumed run trains on the batches the original would have, at any world size. */
typedef struct resume_blob {
    char magic[8];     /* "zerogpt2" */
    uint32_t version;  /* 2 */
    uint32_t layers, heads, dim, seq, batch;
    uint64_t seed;
    int64_t step;      /* optimizer-loop steps completed */
    uint64_t data_windows, data_fingerprint; /* zero_data_tell of the training loader */
} resume_blob;

typedef struct options {
    int layers;              /* transformer blocks */
    int heads;               /* attention heads, divides dim */
    int dim;                 /* channels */
    int seq;                 /* tokens per sequence (= learned positions) */
    int batch;               /* global sequences per micro-step (all ranks together) */
    int steps;               /* optimizer steps */
    uint64_t seed;           /* parameters and data */
    float lr;                /* AdamW learning rate */
    float wd;                /* AdamW weight decay (not on biases and LayerNorm) */
    float eps;               /* AdamW epsilon, added to the root of the second moment */
    int warmup;              /* learning-rate warmup steps; 0 = none */
    float lr_min;            /* cosine decay's final lr; < 0 = not given (no decay) */
    const char *export_path; /* safetensors file written after training; NULL = none */
    const char *data_path;   /* training data: token files or text (a pattern or list) */
    const char *val_path;    /* validation data; NULL = none */
    int val_every;           /* validation loss every N steps (and at the end) */
    int val_batches;         /* batches per validation pass; 0 = its windows once */
    float data_delay_ms;     /* artificial loader delay per batch; < 0 = ZERO_DATA_DELAY_MS */
    const char *save_dir;    /* checkpoints (zero_save) go here; NULL = none */
    int save_every;          /* also every N optimizer steps; 0 = only at the end */
    int save_async;          /* --save-async: zero_save_async, waited for at the next save */
    const char *resume;      /* checkpoint (or checkpoint directory) to continue from */
    int quiet;               /* no per-step lines */
    int gradcheck;           /* run the gradient check instead of training */
    int gemm;                /* cuda backend: GPT2_GEMM_FP32 / _TF32 / _BF16 (model_cuda.h) */
} options;

static const options default_options = {
    .layers = 2, .heads = 4, .dim = 64, .seq = 64, .batch = 16, .steps = 100, .seed = 1337,
    .lr = 2e-3f, .wd = 0.01f, .eps = 1e-8f, .warmup = 0, .lr_min = -1.0f, .export_path = NULL,
    .data_path = ZERO_GPT2_CORPUS, .val_path = NULL, .val_every = 25, .val_batches = 0,
    .data_delay_ms = -1.0f, .quiet = 0,
    .gradcheck = 0,
};

static void usage(FILE *f) {
    const options *d = &default_options;
    fprintf(f,
            "usage: zero-gpt2 [options]\n"
            "Trains a GPT-2 style byte-level language model on a text file with libzero;\n"
            "ZERO_* environment variables choose stage, dtype, gradient accumulation, ...\n"
            "  --layers L     transformer blocks                          (default %d)\n"
            "  --heads H      attention heads; must divide --dim          (default %d)\n"
            "  --dim C        channels of the residual stream             (default %d)\n"
            "  --seq T        tokens (bytes) per sequence                 (default %d)\n"
            "  --batch B      global sequences per micro-step, all ranks  (default %d;\n"
            "                 must be a multiple of the number of ranks)\n"
            "  --steps N      optimizer steps of this run (0: none)       (default %d)\n"
            "  --seed S       seed of parameters and data                 (default %" PRIu64 ")\n"
            "  --lr X         AdamW learning rate                         (default %g)\n"
            "  --wd X         AdamW weight decay, not on biases and norms (default %g)\n"
            "  --eps X        AdamW epsilon, > 0                          (default %g)\n"
            "  --warmup N     linear warmup: lr x (step + 1) / N for the  (default %d)\n"
            "                 first N steps, then cosine decay from --lr to --lr-min at\n"
            "                 the run's last step (resumed step + --steps); without\n"
            "                 --warmup and --lr-min the lr is constant\n"
            "  --lr-min X     final lr of the cosine decay                (default: --lr)\n"
            "  --data PATTERN training data: token files (zero-tokens; a glob or a comma\n"
            "                 list; tokens must be < 256) or text files read as bytes,\n"
            "                 streamed by libzero's loader (default %s)\n"
            "  --val PATTERN  validation data; its loss is printed every --val-every steps\n"
            "                 and at the end (evaluation pass, no training)\n"
            "  --val-every N  steps between validation passes             (default %d)\n"
            "  --val-batches N batches (of --batch sequences) per pass    (default: the\n"
            "                 validation windows once, at least one batch)\n"
            "  --data-delay-ms D  an artificial delay per batch in the loader (benchmarks;\n"
            "                 default ZERO_DATA_DELAY_MS); ZERO_DATA_PREFETCH sets how many\n"
            "                 batches the loader prepares ahead (0: none)\n"
            "  --export PATH  after training, write the parameters as safetensors (F32)\n"
            "  --save DIR     write a checkpoint into DIR at the end (zero_save)\n"
            "  --save-every N also every N steps (with --save)\n"
            "  --save-async   save while training goes on (zero_save_async); each save is\n"
            "                 committed (zero_save_wait) at the next one and at the end\n"
            "  --resume DIR   continue from a checkpoint (DIR, or a directory --save wrote):\n"
            "                 parameters, Adam state, step and the data position; --steps\n"
            "                 counts the steps of this run\n"
            "  --quiet        no per-step lines, only the final loss\n"
            "  --gemm MODE    cuda backend: matrix products in fp32 (default, exact), tf32\n"
            "                 (tensor cores, inputs rounded to 10-bit mantissas) or bf16 (tensor\n"
            "                 cores, inputs rounded to bf16; needs ZERO_DTYPE=bf16); fp32\n"
            "                 accumulation in every mode; ignored on the host backend\n"
            "  --gradcheck    check backward against finite differences (no libzero) and exit\n"
            "  --help         this text\n"
            "Gradients are clipped to a global norm of %g (ZERO_CLIP overrides; 0 = off).\n"
            "Exit status: 0 success, 1 failure, 2 bad command line.\n",
            d->layers, d->heads, d->dim, d->seq, d->batch, d->steps, d->seed, (double)d->lr,
            (double)d->wd, (double)d->eps, d->warmup, d->data_path, d->val_every,
            (double)GPT2_CLIP);
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
        if (!strcmp(arg, "--gradcheck")) { o->gradcheck = 1; continue; }

        /* every other flag takes a value */
        char name[32];
        const char *val = cli_split(argc, argv, &i, name, sizeof(name));
        int bad;
        if (!strcmp(name, "--layers")) bad = !val || cli_parse_int(val, 1, 1024, &o->layers);
        else if (!strcmp(name, "--heads")) bad = !val || cli_parse_int(val, 1, 1 << 12, &o->heads);
        else if (!strcmp(name, "--dim")) bad = !val || cli_parse_int(val, 1, 1 << 15, &o->dim);
        else if (!strcmp(name, "--seq")) bad = !val || cli_parse_int(val, 1, 1 << 16, &o->seq);
        else if (!strcmp(name, "--batch")) bad = !val || cli_parse_int(val, 1, 1 << 20, &o->batch);
        else if (!strcmp(name, "--steps")) bad = !val || cli_parse_int(val, 0, 1 << 30, &o->steps);
        else if (!strcmp(name, "--seed")) bad = !val || cli_parse_u64(val, &o->seed);
        else if (!strcmp(name, "--lr")) bad = !val || cli_parse_float(val, 0.0f, &o->lr);
        else if (!strcmp(name, "--wd")) bad = !val || cli_parse_float(val, 0.0f, &o->wd);
        else if (!strcmp(name, "--eps"))
            bad = !val || cli_parse_float(val, 0.0f, &o->eps) || !(o->eps > 0.0f);
        else if (!strcmp(name, "--warmup"))
            bad = !val || cli_parse_int(val, 0, 1 << 30, &o->warmup);
        else if (!strcmp(name, "--lr-min")) bad = !val || cli_parse_float(val, 0.0f, &o->lr_min);
        else if (!strcmp(name, "--data")) { bad = !val || !*val; o->data_path = val; }
        else if (!strcmp(name, "--val")) { bad = !val || !*val; o->val_path = val; }
        else if (!strcmp(name, "--val-every"))
            bad = !val || cli_parse_int(val, 1, 1 << 30, &o->val_every);
        else if (!strcmp(name, "--val-batches"))
            bad = !val || cli_parse_int(val, 0, 1 << 20, &o->val_batches);
        else if (!strcmp(name, "--data-delay-ms"))
            bad = !val || cli_parse_float(val, 0.0f, &o->data_delay_ms) ||
                  !(o->data_delay_ms <= 60000.0f);
        else if (!strcmp(name, "--export")) { bad = !val || !*val; o->export_path = val; }
        else if (!strcmp(name, "--save")) { bad = !val || !*val; o->save_dir = val; }
        else if (!strcmp(name, "--save-every"))
            bad = !val || cli_parse_int(val, 1, 1 << 30, &o->save_every);
        else if (!strcmp(name, "--resume")) { bad = !val || !*val; o->resume = val; }
        else if (!strcmp(name, "--gemm")) {
            bad = !val;
            if (val && !strcmp(val, "fp32")) o->gemm = 0;
            else if (val && !strcmp(val, "tf32")) o->gemm = 1;
            else if (val && !strcmp(val, "bf16")) o->gemm = 2;
            else bad = 1;
        }
        else return cli_unknown_option("zero-gpt2", arg);
        if (bad) return cli_bad_value("zero-gpt2", name, val);
    }
    if ((o->save_every || o->save_async) && !o->save_dir) {
        fprintf(stderr, "zero-gpt2: --save-every and --save-async need --save DIR\n");
        return 2;
    }
    if (o->lr_min > o->lr) {
        fprintf(stderr, "zero-gpt2: --lr-min %g is above --lr %g\n", (double)o->lr_min,
                (double)o->lr);
        return 2;
    }
    if (o->dim % o->heads != 0) {
        fprintf(stderr, "zero-gpt2: --heads %d does not divide --dim %d\n", o->heads, o->dim);
        return 2;
    }
    return 0;
}

/* ---- learning-rate schedule ---------------------------------------------------------------- */

/* Linear warmup over `warmup` steps (lr x (step + 1) / warmup), then cosine decay from lr to
 * lr_min over the steps left before last_step, as GPT-2 style training does (llm.c). A function
 * of the optimizer step alone, so a run resumed from a checkpoint with --steps set to the steps it
 * had left follows the schedule of the run it continues. */
typedef struct lr_schedule {
    int on;            /* 0: the lr stays as zero_init resolved it */
    double lr, lr_min; /* peak and final learning rate */
    int warmup;        /* steps */
    int64_t last_step; /* the decay ends here (the resumed step + --steps) */
} lr_schedule;

static double schedule_lr(const lr_schedule *s, int64_t step) {
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    double span = (double)(s->last_step - s->warmup);
    double ratio = span > 0.0 ? (double)(step - s->warmup) / span : 0.0;
    /* 0.5 (1 + cos(pi r)) written as cos^2(pi r / 2): no cancellation near r = 1, so the lr
     * stays > 0 (zero_set_lr's contract) with lr_min 0 */
    double c = cos(1.5707963267948966 * ratio);
    return s->lr_min + (s->lr - s->lr_min) * c * c;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* ---- gradient check (plain model, no libzero) --------------------------------------------- */

/* Where tensor `ptr` of p sits inside a parameter vector theta laid out like p->memory. */
#define THETA(ptr) (theta + ((ptr) - p->memory))

/* (n, out) = (n, in) w^T + b, in double; b may be NULL. */
static void dlinear(double *out, const double *in, const double *w, const double *b, int n,
                    int nin, int nout) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < nout; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < nin; i++) s += in[(size_t)r * nin + i] * w[(size_t)o * nin + i];
            out[(size_t)r * nout + o] = s;
        }
}

static void dlayernorm(double *out, const double *x, const double *w, const double *b, int n,
                       int C) {
    for (int r = 0; r < n; r++) {
        const double *xr = x + (size_t)r * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + 1e-5);
        for (int c = 0; c < C; c++) out[(size_t)r * C + c] = (xr[c] - m) * s * w[c] + b[c];
    }
}

/* The mean cross-entropy of the model with parameters theta (flat, p's layout) on tokens /
 * targets (B, T), recomputed in double precision one sequence at a time: an independent forward
 * written from the formulas, to difference. */
static double loss_double(const gpt2_config *cfg, const gpt2_params *p, const double *theta,
                          const int *tokens, const int *targets, int B) {
    const int T = cfg->seq, C = cfg->dim, NH = cfg->heads, hs = C / NH, V = GPT2_VOCAB;
    double *x = malloc((size_t)T * C * sizeof(double));
    double *ln = malloc((size_t)T * C * sizeof(double));
    double *qkv = malloc((size_t)T * 3 * C * sizeof(double));
    double *y = malloc((size_t)T * C * sizeof(double));
    double *hid = malloc((size_t)T * 4 * C * sizeof(double));
    double *proj = malloc((size_t)T * C * sizeof(double));
    double *logit = malloc((size_t)V * sizeof(double));
    double *sc = malloc((size_t)T * sizeof(double));
    double total = NAN;
    if (!x || !ln || !qkv || !y || !hid || !proj || !logit || !sc) goto out;
    total = 0.0;
    for (int b = 0; b < B; b++) {
        const int *tok = tokens + (size_t)b * T, *tgt = targets + (size_t)b * T;
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                x[(size_t)t * C + c] = THETA(p->emb.wte)[(size_t)tok[t] * C + c] +
                                       THETA(p->emb.wpe)[(size_t)t * C + c];
        for (int l = 0; l < cfg->layers; l++) {
            const gpt2_block *blk = &p->h[l];
            dlayernorm(ln, x, THETA(blk->ln1w), THETA(blk->ln1b), T, C);
            dlinear(qkv, ln, THETA(blk->qkvw), THETA(blk->qkvb), T, C, 3 * C);
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    const double *q = qkv + (size_t)t * 3 * C + (size_t)h * hs;
                    double mx = -INFINITY, sum = 0.0;
                    for (int u = 0; u <= t; u++) {
                        const double *kk = qkv + (size_t)u * 3 * C + C + (size_t)h * hs;
                        double s = 0.0;
                        for (int i = 0; i < hs; i++) s += q[i] * kk[i];
                        sc[u] = s / sqrt((double)hs);
                        if (sc[u] > mx) mx = sc[u];
                    }
                    for (int u = 0; u <= t; u++) sum += (sc[u] = exp(sc[u] - mx));
                    for (int i = 0; i < hs; i++) {
                        double o = 0.0;
                        for (int u = 0; u <= t; u++)
                            o += sc[u] / sum * qkv[(size_t)u * 3 * C + 2 * C + (size_t)h * hs + i];
                        y[(size_t)t * C + (size_t)h * hs + i] = o;
                    }
                }
            dlinear(proj, y, THETA(blk->attprojw), THETA(blk->attprojb), T, C, C);
            for (size_t i = 0; i < (size_t)T * C; i++) x[i] += proj[i];
            dlayernorm(ln, x, THETA(blk->ln2w), THETA(blk->ln2b), T, C);
            dlinear(hid, ln, THETA(blk->fcw), THETA(blk->fcb), T, C, 4 * C);
            for (size_t i = 0; i < (size_t)T * 4 * C; i++) { /* GELU, tanh form */
                double v = hid[i], k = 0.7978845608028654; /* sqrt(2 / pi) */
                hid[i] = 0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v)));
            }
            dlinear(proj, hid, THETA(blk->fcprojw), THETA(blk->fcprojb), T, 4 * C, C);
            for (size_t i = 0; i < (size_t)T * C; i++) x[i] += proj[i];
        }
        dlayernorm(ln, x, THETA(p->lnf.lnfw), THETA(p->lnf.lnfb), T, C);
        for (int t = 0; t < T; t++) {
            dlinear(logit, ln + (size_t)t * C, THETA(p->emb.wte), NULL, 1, C, V);
            double mx = logit[0], sum = 0.0;
            for (int v = 1; v < V; v++) mx = logit[v] > mx ? logit[v] : mx;
            for (int v = 0; v < V; v++) sum += exp(logit[v] - mx);
            total += mx + log(sum) - logit[tgt[t]];
        }
    }
    total /= (double)B * T;
out:
    free(sc);
    free(logit);
    free(proj);
    free(hid);
    free(y);
    free(qkv);
    free(ln);
    free(x);
    return total;
}

/* Compares gpt2_backward with central differences of loss_double on a tiny model, and checks
 * that data rows do not depend on how a batch is split and that backward adds. Returns 0 on
 * pass, 1 on fail. */
static int gradcheck(void) {
    const gpt2_config gc = {.layers = 2, .heads = 2, .dim = 8, .seq = 5};
    const int B = 2;
    const uint64_t seed = 7;
    /* central differences of a double-precision loss with h = 1e-4 are good to ~1e-9; the
     * analytic gradient is fp32 arithmetic, so the test is
     * |analytic - numeric| <= ATOL + RTOL * |numeric| */
    const double h = 1e-4, atol = 2e-6, rtol = 1e-3;
    static const char text[] = "Every gradient is checked against a difference of two losses.";
    const size_t text_len = sizeof(text) - 1;
    const size_t N = (size_t)B * gc.seq;
    int fail = 1;
    gpt2_params p, g;
    gpt2_acts a;
    memset(&p, 0, sizeof(p));
    memset(&g, 0, sizeof(g));
    memset(&a, 0, sizeof(a));
    double *theta = NULL;
    float *g1 = NULL;
    int tok1[16], tgt1[16];
    if (gpt2_params_alloc(&p, &gc) || gpt2_params_alloc(&g, &gc) || gpt2_acts_alloc(&a, &gc, B) ||
        !(theta = malloc(p.numel * sizeof(double))) || !(g1 = malloc(p.numel * sizeof(float)))) {
        fprintf(stderr, "zero-gpt2: gradcheck: out of memory\n");
        goto out;
    }
    blas_info_single_threaded_calls();

    /* parameters far from GPT-2's small init (every gradient sizeable, LayerNorm gains and
     * biases not trivial), so a wrong term cannot hide below the tolerance */
    for (int i = 0; i < gpt2_num_tensors(&gc); i++) {
        gpt2_tensor_desc d;
        gpt2_tensor_info(&gc, i, &d);
        const int gain = d.ndim == 1 && strstr(d.name, "ln") && strstr(d.name, ".weight");
        for (size_t k = 0; k < d.numel; k++)
            p.memory[d.offset + k] = (gain ? 1.0f : 0.0f) +
                0.4f * gpt2_rng_uniform(gpt2_rng_key(seed, (uint64_t)(d.offset + k)));
    }

    /* data: row 1 drawn alone must equal row 1 of the whole batch (any world size) */
    gpt2_batch((const unsigned char *)text, text_len, gc.seq, seed, 3, 1, 0, B, a.tokens,
               a.targets);
    gpt2_batch((const unsigned char *)text, text_len, gc.seq, seed, 3, 1, 1, 1, tok1, tgt1);
    int data_ok = !memcmp(tok1, a.tokens + gc.seq, (size_t)gc.seq * sizeof(int)) &&
                  !memcmp(tgt1, a.targets + gc.seq, (size_t)gc.seq * sizeof(int));
    for (int t = 0; t + 1 < gc.seq; t++) data_ok &= a.targets[t] == a.tokens[t + 1];
    printf("gradcheck: data rows independent of the batch split, targets shifted by one: %s\n",
           data_ok ? "ok" : "FAIL");

    float loss = gpt2_forward(&p, &a, 1.0f);
    gpt2_backward(&p, &g, &a);
    for (size_t k = 0; k < p.numel; k++) theta[k] = p.memory[k];
    double loss_ref = loss_double(&gc, &p, theta, a.tokens, a.targets, B);
    int loss_ok = fabs(loss - loss_ref) <= 1e-5 * (1.0 + fabs(loss_ref));
    printf("gradcheck: loss fp32 %.9g vs fp64 %.9g: %s\n", (double)loss, loss_ref,
           loss_ok ? "ok" : "FAIL");

    /* the wrapper relies on backward ADDING: a second backward must double every gradient */
    memcpy(g1, g.memory, p.numel * sizeof(float));
    gpt2_backward(&p, &g, &a);
    int adds_ok = 1;
    for (size_t k = 0; k < p.numel; k++)
        adds_ok &= fabsf(g.memory[k] - 2.0f * g1[k]) <= 1e-6f * (1.0f + fabsf(g1[k]));
    printf("gradcheck: backward adds into the gradient: %s\n", adds_ok ? "ok" : "FAIL");

    double max_abs = 0.0, max_rel = 0.0;
    size_t bad = 0;
    for (int i = 0; i < gpt2_num_tensors(&gc); i++) {
        gpt2_tensor_desc d;
        gpt2_tensor_info(&gc, i, &d);
        size_t tbad = 0;
        double tmax = 0.0;
        for (size_t k = d.offset; k < d.offset + d.numel; k++) {
            double keep = theta[k];
            theta[k] = keep + h;
            double lp = loss_double(&gc, &p, theta, a.tokens, a.targets, B);
            theta[k] = keep - h;
            double lm = loss_double(&gc, &p, theta, a.tokens, a.targets, B);
            theta[k] = keep;
            double num = (lp - lm) / (2.0 * h), ana = g1[k];
            double err = fabs(ana - num);
            if (err > tmax) tmax = err;
            if (fabs(num) > atol && err / fabs(num) > max_rel) max_rel = err / fabs(num);
            if (!(err <= atol + rtol * fabs(num))) {
                if (tbad < 3)
                    printf("gradcheck: %s[%zu]: analytic %.9g numeric %.9g\n", d.name,
                           k - d.offset, ana, num);
                tbad++;
            }
        }
        if (tmax > max_abs) max_abs = tmax;
        if (tbad) printf("gradcheck: %s: %zu of %zu wrong\n", d.name, tbad, d.numel);
        bad += tbad;
    }
    printf("gradcheck: %zu parameters (layers %d, heads %d, dim %d, seq %d, batch %d, %zu tokens):"
           " max abs err %.3g, max rel err %.3g (tolerance %g + %g * |numeric|): %s\n",
           p.numel, gc.layers, gc.heads, gc.dim, gc.seq, B, N, max_abs, max_rel, atol, rtol,
           bad ? "FAIL" : "ok");
    fail = !(data_ok && loss_ok && adds_ok && bad == 0);
    printf("gradcheck: %s\n", fail ? "FAILED" : "passed");
out:
    free(g1);
    free(theta);
    gpt2_acts_free(&a);
    gpt2_params_free(&g);
    gpt2_params_free(&p);
    return fail;
}

/* ---- training with libzero ---------------------------------------------------------------- */

/* libzero: every zero_* status is checked; a failure names the call and the engine's message. */
#define ZCHECK(call)                                                                              \
    do {                                                                                          \
        zero_status s_ = (call);                                                                  \
        if (s_ != ZERO_OK) {                                                                      \
            fprintf(stderr, "zero-gpt2: rank %d: %s failed: %s: %s\n", rank, #call,              \
                    zero_status_string(s_), zero_last_error(z));                                  \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)

/* libzero: the view helpers below return -1 after printing which pointer call failed. */
#define VCHECK(call)                                                                              \
    do {                                                                                          \
        if ((call) != 0) goto fail;                                                               \
    } while (0)

#ifdef GPT2_HAVE_CUDA
#include "model_cuda.h"
#define GPU_ONLY(x) x
#else
#define GPU_ONLY(x) ((void)0)
#endif

/* Where the model computes: model.c on the CPU, or model_cuda.cu on the GPU when libzero runs
 * on the cuda backend (parameters and gradients are then GPU memory). Same signatures. */
typedef struct model_fns {
    void (*embed_forward)(gpt2_acts *a, const gpt2_embed *e);
    void (*block_forward)(gpt2_acts *a, int l, const gpt2_block *p);
    void (*lnf_forward)(gpt2_acts *a, const gpt2_lnf *p);
    float (*head_forward)(gpt2_acts *a, const float *wte, float scale);
    void (*head_backward)(gpt2_acts *a, const float *wte, float *dwte);
    void (*lnf_backward)(gpt2_acts *a, const gpt2_lnf *p, const gpt2_lnf *d);
    void (*block_backward)(gpt2_acts *a, int l, const gpt2_block *p, const gpt2_block *d);
    void (*embed_backward)(gpt2_acts *a, const gpt2_embed *d);
} model_fns;

static const model_fns cpu_fns = {gpt2_embed_forward, gpt2_block_forward, gpt2_lnf_forward,
                                  gpt2_head_forward,  gpt2_head_backward, gpt2_lnf_backward,
                                  gpt2_block_backward, gpt2_embed_backward};
#ifdef GPT2_HAVE_CUDA
static const model_fns gpu_fns = {gpt2_cuda_embed_forward, gpt2_cuda_block_forward,
                                  gpt2_cuda_lnf_forward,   gpt2_cuda_head_forward,
                                  gpt2_cuda_head_backward, gpt2_cuda_lnf_backward,
                                  gpt2_cuda_block_backward, gpt2_cuda_embed_backward};
#endif

/* What one rank needs to turn a module of the engine into the model's view of it. */
typedef struct module_map {
    zero_ctx *z;
    const gpt2_tensor_desc *desc; /* (num tensors) layout of every registered tensor */
    int layers;                   /* L */
    zero_dtype dtype;             /* working precision */
    float *pbuf;                  /* (max module numel) fp32 parameters of one module (bf16/fp16) */
    float *gbuf;                  /* (max module numel) fp32 gradient of one module (bf16/fp16) */
    gpt2_acts *gpu;               /* cuda backend: views are GPU memory, converted there */
} module_map;

/* First tensor index of module m, and how many it has. */
static int module_first(const module_map *mm, int m, int *count) {
    if (m == 0) {
        *count = GPT2_EMBED_TENSORS;
        return 0;
    }
    if (m <= mm->layers) {
        *count = GPT2_BLOCK_TENSORS;
        return GPT2_EMBED_TENSORS + (m - 1) * GPT2_BLOCK_TENSORS;
    }
    *count = GPT2_LNF_TENSORS;
    return GPT2_EMBED_TENSORS + mm->layers * GPT2_BLOCK_TENSORS;
}

/* libzero: out[0..count) = fp32 parameters of the first `count` tensors of module m: the
 * engine's own memory at fp32, else converted into pbuf. Call between zero_gather(m) and
 * zero_release(m); the view is valid until then. */
static int param_view(module_map *mm, int m, int count, float **out) {
    int n, first = module_first(mm, m, &n);
    size_t off = 0;
    for (int k = 0; k < count; k++) {
        void *ptr = zero_param_ptr(mm->z, first + k);
        if (!ptr) {
            fprintf(stderr, "zero-gpt2: rank %d: zero_param_ptr(%s) failed: %s\n",
                    zero_rank(mm->z), mm->desc[first + k].name, zero_last_error(mm->z));
            return -1;
        }
        if (mm->dtype == ZERO_DTYPE_FP32) {
            out[k] = ptr;
        } else {
            out[k] = mm->pbuf + off;
            if (mm->gpu)
                GPU_ONLY(gpt2_cuda_to_f32(mm->gpu, out[k], ptr, mm->dtype,
                                          mm->desc[first + k].numel));
            else
                zero_convert(out[k], ZERO_DTYPE_FP32, ptr, mm->dtype, mm->desc[first + k].numel);
            off += mm->desc[first + k].numel;
        }
    }
    return 0;
}

/* libzero: out[0..count) = where backward adds module m's gradient. At fp32 that is the
 * engine's gradient memory itself, asked for now (at stages 2-3 it lives in a reduce bucket
 * until zero_grad_ready); else zeroed fp32 space in gbuf that grad_commit adds in. */
static int grad_view(module_map *mm, int m, int count, float **out) {
    int n, first = module_first(mm, m, &n);
    size_t off = 0;
    for (int k = 0; k < count; k++) {
        if (mm->dtype == ZERO_DTYPE_FP32) {
            if (!(out[k] = zero_grad_ptr(mm->z, first + k))) {
                fprintf(stderr, "zero-gpt2: rank %d: zero_grad_ptr(%s) failed: %s\n",
                        zero_rank(mm->z), mm->desc[first + k].name, zero_last_error(mm->z));
                return -1;
            }
        } else {
            out[k] = mm->gbuf + off;
            if (mm->gpu)
                GPU_ONLY(gpt2_cuda_zero(mm->gpu, out[k], mm->desc[first + k].numel));
            else
                memset(out[k], 0, mm->desc[first + k].numel * sizeof(float));
            off += mm->desc[first + k].numel;
        }
    }
    return 0;
}

/* libzero: bf16/fp16 only: adds the fp32 gradients of grad_view into the engine's buffers
 * (rounding once per element). Nothing to do at fp32, where backward added in place. */
static int grad_commit(module_map *mm, int m, int count, float *const *g) {
    if (mm->dtype == ZERO_DTYPE_FP32) return 0;
    int n, first = module_first(mm, m, &n);
    for (int k = 0; k < count; k++) {
        void *dst = zero_grad_ptr(mm->z, first + k);
        if (!dst) {
            fprintf(stderr, "zero-gpt2: rank %d: zero_grad_ptr(%s) failed: %s\n",
                    zero_rank(mm->z), mm->desc[first + k].name, zero_last_error(mm->z));
            return -1;
        }
        if (mm->gpu)
            GPU_ONLY(gpt2_cuda_accumulate(mm->gpu, dst, mm->dtype, g[k],
                                          mm->desc[first + k].numel));
        else
            zero_accumulate(dst, mm->dtype, g[k], mm->desc[first + k].numel);
    }
    return 0;
}

/* Milliseconds the loader's zero_data_next calls have waited so far on this rank. */
static double data_wait_ms(const zero_data *d) {
    zero_data_info di;
    return zero_data_get_info(d, &di) == ZERO_OK ? di.wait_s * 1e3 : 0.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* libzero: this rank's rows of the next global batch into the activations' token arrays (on the
 * GPU from the loader's device copy, already queued on the copy stream). */
_Static_assert(sizeof(int) == sizeof(int32_t), "token arrays are int32");
static zero_status take_batch(zero_data *d, gpt2_acts *acts, int gpu) {
    zero_batch b;
    zero_status s = zero_data_next(d, &b);
    if (s != ZERO_OK) return s;
    const size_t n = (size_t)b.batch * (size_t)b.seq;
    if (b.tokens) { /* windows: row r holds its T + 1 tokens, inputs 0..T-1, targets 1..T */
        const size_t T = (size_t)b.seq, w = (size_t)b.token_bytes;
        const unsigned char *p = b.tokens;
        for (size_t r = 0; r < (size_t)b.batch; r++)
            for (size_t i = 0; i <= T; i++) {
                const unsigned char *q = p + (r * (T + 1) + i) * w;
                int t = w == 1 ? q[0] : w == 2 ? (int)(q[0] | q[1] << 8)
                                               : (int)((uint32_t)q[0] | (uint32_t)q[1] << 8 |
                                                       (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24);
                if (i < T) acts->tokens[r * T + i] = t;
                if (i > 0) acts->targets[r * T + i - 1] = t;
            }
    } else {
        memcpy(acts->tokens, b.inputs, n * sizeof(int32_t));
        memcpy(acts->targets, b.targets, n * sizeof(int32_t));
    }
    if (gpu) GPU_ONLY(gpt2_cuda_load_device(acts, b.dev_inputs, b.dev_targets));
    return ZERO_OK;
}

static zero_status make_blob(resume_blob *rb, const options *o, const gpt2_config *gc,
                             const zero_data *train_data, int64_t step) {
    zero_data_pos pos;
    zero_status s = zero_data_tell(train_data, &pos);
    memset(rb, 0, sizeof(*rb));
    memcpy(rb->magic, "zerogpt2", 8);
    rb->version = 2;
    rb->layers = (uint32_t)gc->layers;
    rb->heads = (uint32_t)gc->heads;
    rb->dim = (uint32_t)gc->dim;
    rb->seq = (uint32_t)gc->seq;
    rb->batch = (uint32_t)o->batch;
    rb->seed = o->seed;
    rb->step = step;
    rb->data_windows = pos.windows;
    rb->data_fingerprint = pos.fingerprint;
    return s;
}

/* The mean loss over `batches` batches of the validation loader, from its start, in an evaluation
 * pass (libzero: no gradients, stage 3 gathers as in training). Collective. */
static zero_status validate(zero_ctx *z, zero_data *val, module_map *mm, const model_fns *fns,
                            gpt2_acts *acts, int batches, double *loss) {
    const int L = mm->layers, lnf_module = L + 1;
    zero_data_pos p;
    double sum = 0.0;
    zero_status s = zero_data_tell(val, &p);
    if (s == ZERO_OK && p.windows != 0) { /* every pass from the first validation batch */
        p.windows = 0;
        s = zero_data_seek(val, &p);
    }
    if (s != ZERO_OK) return s;
    if ((s = zero_eval_begin(z)) != ZERO_OK) return s;
#define ECHECK(call)                                                                              \
    do {                                                                                          \
        if ((s = (call)) != ZERO_OK) goto out;                                                    \
    } while (0)
#define EVIEW(call)                                                                               \
    do {                                                                                          \
        if ((call) != 0) {                                                                        \
            s = ZERO_ERR_STATE;                                                                   \
            goto out;                                                                             \
        }                                                                                         \
    } while (0)
    for (int k = 0; k < batches; k++) {
        gpt2_embed emb;
        gpt2_block blk;
        gpt2_lnf lnf;
        ECHECK(take_batch(val, acts, mm->gpu != NULL));
        ECHECK(zero_gather(z, 0));
        EVIEW(param_view(mm, 0, GPT2_EMBED_TENSORS, emb.t));
        fns->embed_forward(acts, &emb);
        ECHECK(zero_release(z, 0));
        for (int l = 0; l < L; l++) {
            ECHECK(zero_gather(z, l + 1));
            EVIEW(param_view(mm, l + 1, GPT2_BLOCK_TENSORS, blk.t));
            fns->block_forward(acts, l, &blk);
            ECHECK(zero_release(z, l + 1));
        }
        ECHECK(zero_gather(z, lnf_module));
        EVIEW(param_view(mm, lnf_module, GPT2_LNF_TENSORS, lnf.t));
        fns->lnf_forward(acts, &lnf);
        ECHECK(zero_release(z, lnf_module));
        ECHECK(zero_gather(z, 0));
        EVIEW(param_view(mm, 0, 1, emb.t));
        sum += fns->head_forward(acts, emb.wte, 1.0f);
        ECHECK(zero_release(z, 0));
    }
#undef ECHECK
#undef EVIEW
out:;
    zero_status e = zero_eval_end(z);
    if (s == ZERO_OK) s = e;
    double v = sum;
    if (s == ZERO_OK) s = zero_allreduce_sum(z, &v, 1);
    *loss = v / ((double)zero_world_size(z) * (double)batches);
    return s;
}

static int train(const options *o) {
    const gpt2_config gc = {.layers = o->layers, .heads = o->heads, .dim = o->dim, .seq = o->seq};
    const int L = gc.layers, num_tensors = gpt2_num_tensors(&gc), lnf_module = L + 1;
    int rank = 0, exit_code = 1;
    int save_pending = 0; /* a zero_save_async not yet waited for */
    double final_loss = NAN;
    zero_ctx *z = NULL;
    zero_tensor *tensors = NULL;
    gpt2_tensor_desc *desc = NULL;
    gpt2_params model;
    gpt2_acts acts;
    module_map mm;
    const model_fns *fns = &cpu_fns; /* the GPU's on the cuda backend */
    int gpu_failed = 0;              /* a GPU call failed on this rank */
    zero_data *train_data = NULL, *val_data = NULL;
    double *step_ms = NULL; /* [steps] each optimizer step's time, for the summary */
    memset(&model, 0, sizeof(model));
    memset(&acts, 0, sizeof(acts));
    memset(&mm, 0, sizeof(mm));

    blas_info_single_threaded_calls();

    /* The model as it would be standalone: one flat fp32 array, seeded init. */
    if (gpt2_params_alloc(&model, &gc)) {
        fprintf(stderr, "zero-gpt2: out of memory for %zu parameters\n", gpt2_num_params(&gc));
        return 1;
    }
    gpt2_params_init(&model, &gc, o->seed);

    /* libzero: every tensor in module order (module 0 = embeddings, l + 1 = block l, L + 1 =
     * final LayerNorm), .init pointing into the model's array; biases and LayerNorm parameters
     * are exempt from weight decay. The names live in desc until zero_finalize. */
    tensors = calloc((size_t)num_tensors, sizeof(*tensors));
    desc = calloc((size_t)num_tensors, sizeof(*desc));
    if (!tensors || !desc) {
        fprintf(stderr, "zero-gpt2: out of memory\n");
        gpt2_params_free(&model);
        goto fail;
    }
    for (int i = 0; i < num_tensors; i++) {
        gpt2_tensor_desc *d = &desc[i];
        gpt2_tensor_info(&gc, i, d);
        tensors[i] = (zero_tensor){.name = d->name, .numel = d->numel, .module = d->module,
                                   .init = model.memory + d->offset, .ndim = d->ndim,
                                   .no_decay = d->no_decay};
        for (int k = 0; k < d->ndim; k++) tensors[i].shape[k] = d->shape[k];
    }
    zero_config cfg = ZERO_CONFIG_INIT; /* ZERO_* environment variables override these */
    cfg.lr = o->lr;
    cfg.weight_decay = o->wd;
    cfg.eps = o->eps;
    cfg.clip = GPT2_CLIP;
    zero_status st = zero_init(&z, &cfg, tensors, num_tensors);
    /* libzero: the engine holds the parameters now; the model's own copy goes */
    gpt2_params_free(&model);
    free(tensors);
    tensors = NULL;
    if (st != ZERO_OK) {
        fprintf(stderr, "zero-gpt2: zero_init failed: %s: %s\n", zero_status_string(st),
                zero_init_error());
        z = NULL;
        goto fail;
    }

    rank = zero_rank(z);
    const int world = zero_world_size(z);
    const zero_config *rc = zero_get_config(z); /* resolved: flags, then environment */
    const int accum = rc->grad_accum;
    if (o->batch % world != 0) {
        if (rank == 0)
            fprintf(stderr, "zero-gpt2: --batch %d is not a multiple of the %d ranks\n", o->batch,
                    world);
        exit_code = 2;
        goto fail;
    }
    /* data parallel: this rank's sequences of the global batch */
    const int rows = o->batch / world;

    /* libzero's loader: each micro-step's global batch of --batch windows of seq + 1 tokens,
     * rows [rank x rows, (rank + 1) x rows) of it on this rank, prepared ahead on a thread; the
     * same global batches at every world size. Every file is checked before training starts. */
    {
        zero_data_config dc = ZERO_DATA_CONFIG_INIT;
        dc.files = o->data_path;
        dc.batch = rows;
        dc.seq = gc.seq;
        dc.seed = o->seed;
        dc.vocab = GPT2_VOCAB;
        dc.delay_ms = o->data_delay_ms;
        dc.name = "train";
        /* on the host the windows as the files hold them (uint16 from token files: a quarter of
         * the bytes to write), widened into the activations here; on the GPU the int32 pair,
         * whose device copy the model's kernels read */
        dc.output = rc->device == ZERO_DEVICE_CUDA ? ZERO_DATA_OUT_INT32 : ZERO_DATA_OUT_WINDOWS;
        ZCHECK(zero_data_open(z, &dc, &train_data));
        if (o->val_path) {
            dc.files = o->val_path;
            dc.shuffle = 0; /* the same batches at every validation pass */
            dc.name = "val";
            dc.delay_ms = 0.0;
            ZCHECK(zero_data_open(z, &dc, &val_data));
        }
    }
    zero_data_info tinfo;
    ZCHECK(zero_data_get_info(train_data, &tinfo));
    int val_batches = o->val_batches;
    if (val_data && val_batches == 0) {
        zero_data_info vinfo;
        ZCHECK(zero_data_get_info(val_data, &vinfo));
        val_batches = vinfo.windows / o->batch > 0 ? (int)(vinfo.windows / o->batch) : 1;
    }
    if (o->steps > 0 && !(step_ms = calloc((size_t)o->steps, sizeof(*step_ms)))) {
        fprintf(stderr, "zero-gpt2: out of memory\n");
        goto fail;
    }

    mm = (module_map){.z = z, .desc = desc, .layers = L, .dtype = rc->dtype};
    int setup_failed = 0; /* on this rank; agreed below */
    if (rc->device == ZERO_DEVICE_CUDA) {
        /* libzero: on the cuda backend parameters and gradients are GPU memory: the model
         * computes on the GPU, on libzero's compute stream */
#ifdef GPT2_HAVE_CUDA
        char gerr[256];
        if (o->gemm == GPT2_GEMM_BF16 && mm.dtype != ZERO_DTYPE_BF16) {
            if (rank == 0)
                fprintf(stderr, "zero-gpt2: --gemm bf16 needs ZERO_DTYPE=bf16 (the weights are "
                        "%s)\n", mm.dtype == ZERO_DTYPE_FP32 ? "fp32" : "fp16");
            exit_code = 2;
            goto fail;
        }
        if (gpt2_cuda_acts_alloc(&acts, &gc, rows, zero_compute_stream(z), o->gemm, gerr,
                                 sizeof(gerr))) {
            fprintf(stderr, "zero-gpt2: rank %d: %s\n", rank, gerr);
            setup_failed = 1;
        } else {
            mm.gpu = &acts;
            fns = &gpu_fns;
        }
#else
        fprintf(stderr, "zero-gpt2: the cuda backend was chosen but zero-gpt2 was built without "
                "its CUDA path; use ZERO_DEVICE=host\n");
        goto fail;
#endif
    } else if (gpt2_acts_alloc(&acts, &gc, rows)) {
        fprintf(stderr, "zero-gpt2: rank %d: out of memory for activations\n", rank);
        setup_failed = 1;
    }
    if (!setup_failed && mm.dtype != ZERO_DTYPE_FP32) { /* libzero: fp32 copies of one module */
        const size_t n = gpt2_max_module_numel(&gc) * sizeof(float);
        int ok;
        if (mm.gpu) {
            GPU_ONLY(mm.pbuf = gpt2_cuda_malloc(mm.gpu, n));
            GPU_ONLY(mm.gbuf = gpt2_cuda_malloc(mm.gpu, n));
        } else {
            mm.pbuf = malloc(n);
            mm.gbuf = malloc(n);
        }
        ok = mm.pbuf && mm.gbuf;
        if (!ok) {
            fprintf(stderr, "zero-gpt2: rank %d: out of memory\n", rank);
            setup_failed = 1;
        }
    }
    /* every rank learns whether every rank is ready before the first collective of training */
    double ready = setup_failed;
    ZCHECK(zero_allreduce_sum(z, &ready, 1));
    if (ready > 0.0) {
        if (!setup_failed)
            fprintf(stderr, "zero-gpt2: rank %d: another rank could not set up\n", rank);
        goto fail;
    }

    if (rank == 0 && !o->quiet) {
        static const char *dtype_names[] = {"fp32", "bf16", "fp16"};
        char blas[256];
        printf("BLAS: %s; OpenMP: %d thread%s per rank\n", blas_info_describe(blas, sizeof blas),
               omp_get_max_threads(), omp_get_max_threads() == 1 ? "" : "s");
        printf("zero-gpt2: %d layers, %d heads, dim %d, seq %d, %zu parameters | %s: %d file%s, "
               "%" PRId64 " tokens (%s), %" PRId64 " windows per epoch, prefetch %d | "
               "%d rank(s), stage %d, %s, grad accum %d | batch %d (%d per rank), lr %g, wd %g, "
               "clip %g\n",
               L, gc.heads, gc.dim, gc.seq, gpt2_num_params(&gc), o->data_path, tinfo.files,
               tinfo.files == 1 ? "" : "s", tinfo.tokens,
               tinfo.token_bytes == 1 ? "bytes" : tinfo.token_bytes == 2 ? "uint16" : "uint32",
               tinfo.windows, tinfo.prefetch, world,
               rc->stage, (unsigned)mm.dtype < 3 ? dtype_names[mm.dtype] : "?", accum, o->batch,
               rows, (double)rc->lr, (double)rc->weight_decay, (double)rc->clip);
        fflush(stdout);
    }

    /* libzero: a resumed run loads the state and the blob, and goes on from its step */
    int64_t first_step = 0;
    if (o->resume) {
        resume_blob rb;
        size_t rb_len = 0;
        ZCHECK(zero_load(z, o->resume, &rb, sizeof(rb), &rb_len));
        if (rb_len >= offsetof(resume_blob, layers) && !memcmp(rb.magic, "zerogpt2", 8) &&
            rb.version == 1) {
            fprintf(stderr, "zero-gpt2: rank %d: %s was saved by an older zero-gpt2, without the "
                    "data loader's position; it cannot resume on the same batches\n", rank,
                    o->resume);
            goto fail;
        }
        if (rb_len != sizeof(rb) || memcmp(rb.magic, "zerogpt2", 8) != 0 || rb.version != 2 ||
            rb.layers != (uint32_t)L || rb.heads != (uint32_t)gc.heads ||
            rb.dim != (uint32_t)gc.dim || rb.seq != (uint32_t)gc.seq || rb.seed != o->seed) {
            fprintf(stderr, "zero-gpt2: rank %d: %s was not saved by zero-gpt2 with these "
                    "--layers --heads --dim --seq --seed\n", rank, o->resume);
            goto fail;
        }
        first_step = rb.step;
        /* libzero: the loader goes on at the window the original run had reached */
        const zero_data_pos pos = {rb.data_windows, rb.data_fingerprint};
        ZCHECK(zero_data_seek(train_data, &pos));
        if (rank == 0 && !o->quiet)
            printf("zero-gpt2: resumed from %s at step %" PRId64 "\n", o->resume, first_step);
    }
    const int64_t last_step = first_step + o->steps;
    /* libzero: the learning-rate schedule is the program's; its peak is the lr libzero resolved
     * (--lr, or ZERO_LR where the environment overrides it) */
    const lr_schedule sched = {.on = o->warmup > 0 || o->lr_min >= 0.0f,
                               .lr = zero_get_lr(z, 0),
                               .lr_min = o->lr_min >= 0.0f ? (double)o->lr_min : zero_get_lr(z, 0),
                               .warmup = o->warmup,
                               .last_step = last_step};
    if (sched.on && rank == 0 && !o->quiet)
        printf("zero-gpt2: lr schedule: warmup %d step%s, then cosine from %g to %g at step "
               "%" PRId64 "\n", sched.warmup, sched.warmup == 1 ? "" : "s", sched.lr,
               sched.lr_min, last_step);

    const double tokens_per_step = (double)o->batch * (double)o->seq * (double)accum;
    for (int64_t step = first_step; step < last_step; step++) {
        double t0 = now_ms();
        double loss_sum = 0.0; /* this rank's micro-batch losses */
        double wait0 = data_wait_ms(train_data);
        for (int micro = 0; micro < accum; micro++) {
            /* each micro-step trains on its own global batch; libzero's loader has it ready */
            ZCHECK(take_batch(train_data, &acts, mm.gpu != NULL));
            gpt2_embed emb, demb;
            gpt2_block blk, dblk;
            gpt2_lnf lnf, dlnf;

            /* forward, module by module; libzero: stage 3 all-gathers each module here */
            ZCHECK(zero_gather(z, 0));
            VCHECK(param_view(&mm, 0, GPT2_EMBED_TENSORS, emb.t));
            fns->embed_forward(&acts, &emb);
            ZCHECK(zero_release(z, 0));
            for (int l = 0; l < L; l++) {
                ZCHECK(zero_gather(z, l + 1));
                VCHECK(param_view(&mm, l + 1, GPT2_BLOCK_TENSORS, blk.t));
                fns->block_forward(&acts, l, &blk);
                ZCHECK(zero_release(z, l + 1));
            }
            ZCHECK(zero_gather(z, lnf_module));
            VCHECK(param_view(&mm, lnf_module, GPT2_LNF_TENSORS, lnf.t));
            fns->lnf_forward(&acts, &lnf);
            ZCHECK(zero_release(z, lnf_module));
            /* libzero: the lm head is wte (module 0) again, so module 0 is gathered again.
             * The loss is the mean over this rank's tokens (libzero averages gradients over
             * ranks and micro-steps); the loss gradient carries the (fp16) loss scale. */
            ZCHECK(zero_gather(z, 0));
            VCHECK(param_view(&mm, 0, 1, emb.t)); /* wte only */
            loss_sum += fns->head_forward(&acts, emb.wte, zero_loss_scale(z));
            ZCHECK(zero_release(z, 0));

            /* backward, in reverse; libzero: each module gathered again around its backward */
            /* the head: its wte gradient is added now; module 0 is NOT ready until the
             * embedding's share is in as well (grad_view asks for the pointer again there) */
            ZCHECK(zero_gather(z, 0));
            VCHECK(param_view(&mm, 0, 1, emb.t));
            VCHECK(grad_view(&mm, 0, 1, demb.t));
            fns->head_backward(&acts, emb.wte, demb.wte);
            ZCHECK(zero_release(z, 0));
            VCHECK(grad_commit(&mm, 0, 1, demb.t));

            ZCHECK(zero_gather(z, lnf_module));
            VCHECK(param_view(&mm, lnf_module, GPT2_LNF_TENSORS, lnf.t));
            VCHECK(grad_view(&mm, lnf_module, GPT2_LNF_TENSORS, dlnf.t));
            fns->lnf_backward(&acts, &lnf, &dlnf);
            ZCHECK(zero_release(z, lnf_module));
            VCHECK(grad_commit(&mm, lnf_module, GPT2_LNF_TENSORS, dlnf.t));
            ZCHECK(zero_grad_ready(z, lnf_module));

            for (int l = L - 1; l >= 0; l--) {
                ZCHECK(zero_gather(z, l + 1));
                VCHECK(param_view(&mm, l + 1, GPT2_BLOCK_TENSORS, blk.t));
                VCHECK(grad_view(&mm, l + 1, GPT2_BLOCK_TENSORS, dblk.t));
                fns->block_backward(&acts, l, &blk, &dblk);
                ZCHECK(zero_release(z, l + 1));
                VCHECK(grad_commit(&mm, l + 1, GPT2_BLOCK_TENSORS, dblk.t));
                ZCHECK(zero_grad_ready(z, l + 1));
            }

            /* the embedding backward scatters into wte and wpe rows and reads no parameter,
             * so module 0 is not gathered for it; libzero: wte's gradient pointer is asked
             * for again (same bucket: module 0 is not ready yet), then module 0 is ready */
            VCHECK(grad_view(&mm, 0, GPT2_EMBED_TENSORS, demb.t));
            fns->embed_backward(&acts, &demb);
            VCHECK(grad_commit(&mm, 0, GPT2_EMBED_TENSORS, demb.t));
#ifdef GPT2_HAVE_CUDA
            /* a GPU failure is remembered; the rank goes on through its libzero calls (the
             * others wait for them) until the loss all-reduce, where every rank stops */
            if (mm.gpu && !gpu_failed && gpt2_cuda_error(&acts)) {
                fprintf(stderr, "zero-gpt2: rank %d: GPU: %s\n", rank, gpt2_cuda_error(&acts));
                gpu_failed = 1;
            }
#endif
            ZCHECK(zero_grad_ready(z, 0));

            /* libzero: the schedule's lr for this optimizer step (the step count is the
             * schedule's position, so a resumed run goes on where the checkpoint left it),
             * set before the zero_step that ends the window; every rank sets the same value */
            if (sched.on && micro == accum - 1)
                ZCHECK(zero_set_lr(z, 0, schedule_lr(&sched, step)));
            /* libzero: replaces the optimizer; updates only at the accumulation boundary */
            ZCHECK(zero_step(z));
            zero_step_info info;
            ZCHECK(zero_last_step(z, &info));
            if (info.boundary != (micro == accum - 1)) {
                fprintf(stderr, "zero-gpt2: rank %d: zero_step reported boundary=%d at "
                        "micro-step %d of %d\n", rank, info.boundary, micro + 1, accum);
                goto fail;
            }
            if (!info.boundary) continue;

            /* the global mean loss of this optimizer step */
            double sums[2] = {loss_sum, gpu_failed};
            ZCHECK(zero_allreduce_sum(z, sums, 2));
            if (sums[1] > 0.0) {
                fprintf(stderr, "zero-gpt2: rank %d: stopping: a GPU call failed on %g rank(s)\n",
                        rank, sums[1]);
                goto fail;
            }
            double loss = sums[0] / ((double)world * (double)accum);
            final_loss = loss;
            double ms = now_ms() - t0;
            step_ms[step - first_step] = ms;
            double wait_ms = data_wait_ms(train_data) - wait0;
            if (rank == 0 && !o->quiet) {
                zero_memory_stats mem;
                ZCHECK(zero_memory_report(z, &mem));
                char extra[80] = "";
                if (info.loss_scale != 1.0f || info.skipped > 0)
                    snprintf(extra, sizeof(extra), " | loss scale %g | skipped %" PRId64 "%s",
                             (double)info.loss_scale, info.skipped,
                             info.overflow ? " (this step)" : "");
                printf("step %4" PRId64 "/%" PRId64 " | loss %.4f | lr %.2e | grad norm %.4f%s | "
                       "%.0f tok/s | %.1f ms (data wait %.2f) | mem %.2f MiB (peak %.2f MiB)\n",
                       step + 1, last_step, loss, zero_get_lr(z, 0), (double)info.grad_norm, extra,
                       tokens_per_step / (ms * 1e-3), ms, wait_ms,
                       (double)mem.current_total / 1048576.0,
                       (double)mem.peak_total / 1048576.0);
                fflush(stdout);
            }
            /* validation: an evaluation pass every --val-every steps and at the end */
            if (val_data && ((step + 1) % o->val_every == 0 || step + 1 == last_step)) {
                double vloss;
                ZCHECK(validate(z, val_data, &mm, fns, &acts, val_batches, &vloss));
                if (rank == 0 && !o->quiet)
                    printf("step %4" PRId64 "/%" PRId64 " | val loss %.4f (%d batch%s of %d)\n",
                           step + 1, last_step, vloss, val_batches,
                           val_batches == 1 ? "" : "es", o->batch);
            }
            /* libzero: a checkpoint every --save-every steps and at the end */
            if (o->save_dir && ((o->save_every && (step + 1) % o->save_every == 0) ||
                                step + 1 == last_step)) {
                resume_blob rb;
                ZCHECK(make_blob(&rb, o, &gc, train_data, step + 1));
                if (o->save_async) { /* the previous one committed first */
                    if (save_pending) ZCHECK(zero_save_wait(z));
                    ZCHECK(zero_save_async(z, o->save_dir, &rb, sizeof(rb)));
                    save_pending = 1;
                } else {
                    ZCHECK(zero_save(z, o->save_dir, &rb, sizeof(rb)));
                }
                if (rank == 0 && !o->quiet)
                    printf("zero-gpt2: %s step %" PRId64 " to %s\n",
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
        resume_blob rb;
        ZCHECK(make_blob(&rb, o, &gc, train_data, last_step));
        ZCHECK(zero_save(z, o->save_dir, &rb, sizeof(rb)));
    }
    if (rank == 0 && !o->quiet) {
        /* libzero: this rank's device memory beside the ZeRO formula */
        zero_memory_stats mem;
        ZCHECK(zero_memory_report(z, &mem));
        const double M = 1048576.0;
        printf("memory per rank: model state %.2f MiB (formula %.2f MiB), buffers %.2f MiB, "
               "device peak %.2f MiB%s", (double)mem.model_state_peak / M,
               (double)mem.model_state_formula / M, (double)mem.peak[ZERO_MEM_BUFFERS] / M,
               (double)mem.peak_total / M, mem.capacity ? " of " : "");
        if (mem.capacity) printf("%.2f MiB", (double)mem.capacity / M);
        if (mem.host_model_state_formula)
            printf("; host (offload) %.2f MiB (formula %.2f MiB)", (double)mem.host_peak_total / M,
                   (double)mem.host_model_state_formula / M);
        printf("\n");
    }
    if (rank == 0 && o->steps > 2) {
        /* the first two steps (warm-up: page faults, first gathers) are left out */
        const int n = o->steps - 2;
        double mean = 0.0;
        for (int i = 0; i < n; i++) mean += step_ms[2 + i];
        mean /= n;
        qsort(step_ms + 2, (size_t)n, sizeof(*step_ms), cmp_double);
        const double median = n % 2 ? step_ms[2 + n / 2]
                                    : 0.5 * (step_ms[2 + n / 2 - 1] + step_ms[2 + n / 2]);
        zero_data_info di;
        ZCHECK(zero_data_get_info(train_data, &di));
        printf("step time: median %.3f ms, mean %.3f ms over %d steps | data: waited %.3f s, "
               "loader busy %.3f s, %" PRId64 " batches, prefetch %d\n",
               median, mean, n, di.wait_s, di.busy_s, di.batches, di.prefetch);
    }
    if (o->export_path) ZCHECK(zero_export(z, o->export_path));
    exit_code = 0;

fail:
    zero_data_close(val_data);
    zero_data_close(train_data);
    free(step_ms);
    if (mm.gpu) {
        GPU_ONLY(gpt2_cuda_free(mm.gbuf));
        GPU_ONLY(gpt2_cuda_free(mm.pbuf));
        GPU_ONLY(gpt2_cuda_acts_free(&acts));
    } else {
        free(mm.gbuf);
        free(mm.pbuf);
        gpt2_acts_free(&acts);
    }
    if (z) {
        zero_status fs = zero_finalize(z);
        if (fs != ZERO_OK) {
            fprintf(stderr, "zero-gpt2: rank %d: zero_finalize failed: %s\n", rank,
                    zero_status_string(fs));
            if (exit_code == 0) exit_code = 1;
        }
    }
    free(desc);
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
