/* test_slices.c — tensors that span modules (zero_tensor.slices): a model with stacked (L, ...)
 * tensors registered three ways, trained the same way at stage 3 (and stage 1):
 *   S  each stacked tensor once, with slices = L (slice l in module 1 + l);
 *   P  each layer's slice registered as its own tensor in module 1 + l (the same layout as S);
 *   M  each stacked tensor as one module (the whole tensor gathered at once).
 * Checks: S and P train to the same parameters (digest: the same layout), S and M export the
 * same file (whole tensors, registration order), S's device peak equals P's and is below M's at
 * stage 3; zero_param_ptr of a sliced tensor and a slice out of range are ZERO_ERR_INVALID; slices
 * that do not divide the tensor are ZERO_ERR_INVALID at zero_init on every rank; a checkpoint of S
 * loads into M with the same export; init_fn is called with the whole tensor's element indices.
 * Run under mpirun at any world size. Ends with "test_slices: np N, F failures". */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zero.h"

enum { L = 4, R = 64, C = 32 }; /* A: (L, R, C), B: (L, C), emb: (C), head: (C) */
static int rank, world, failures;

#define EXPECT(cond, ...)                                                                         \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            failures++;                                                                           \
            fprintf(stderr, "rank %d FAIL %s:%d: ", rank, __FILE__, __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fputc('\n', stderr);                                                                  \
        }                                                                                         \
    } while (0)

static float value(int which, size_t k) /* initial values keyed by (tensor, element) */
{
    uint64_t x = ((uint64_t)(which + 1) << 32) ^ k;
    x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 32;
    return (float)((double)(x & 0xffffff) / 16777216.0 - 0.5);
}

static void init_keyed(void *user, int tensor, size_t first, size_t count, float *dst)
{
    const int *which = user; /* the stacked tensor this callback is for (0 = A, 1 = B) */
    (void)tensor;
    for (size_t k = 0; k < count; k++)
        dst[k] = value(*which, first + k);
}

static float init_a[L * R * C], init_b[L * C], init_e[C], init_h[C];
static int which_a = 0, which_b = 1;

typedef enum { REG_S, REG_P, REG_M } reg_kind;
typedef struct {
    zero_tensor t[2 + 2 * L];
    int n;
    char names[2 + 2 * L][32];
} reg;

static void make_reg(reg *g, reg_kind k, int use_fn)
{
    memset(g, 0, sizeof *g);
    int n = 0;
    g->t[n++] = (zero_tensor){.name = "emb", .numel = C, .module = 0, .init = init_e};
    if (k == REG_S || k == REG_M) {
        g->t[n++] = (zero_tensor){.name = "A", .numel = L * R * C, .module = 1,
                                  .ndim = 3, .shape = {L, R, C},
                                  .slices = k == REG_S ? L : 1};
        g->t[n++] = (zero_tensor){.name = "B", .numel = L * C, .module = k == REG_S ? 1 : 2,
                                  .ndim = 2, .shape = {L, C}, .no_decay = 1,
                                  .slices = k == REG_S ? L : 1};
        if (use_fn) {
            g->t[1].init_fn = init_keyed, g->t[1].init_user = &which_a;
            g->t[2].init_fn = init_keyed, g->t[2].init_user = &which_b;
        } else {
            g->t[1].init = init_a, g->t[2].init = init_b;
        }
    } else {
        for (int l = 0; l < L; l++) {
            snprintf(g->names[n], 32, "A[%d]", l);
            g->t[n++] = (zero_tensor){.name = g->names[n - 1], .numel = R * C, .module = 1 + l,
                                      .ndim = 3, .shape = {1, R, C},
                                      .init = init_a + (size_t)l * R * C};
            snprintf(g->names[n], 32, "B[%d]", l);
            g->t[n++] = (zero_tensor){.name = g->names[n - 1], .numel = C, .module = 1 + l,
                                      .ndim = 2, .shape = {1, C}, .no_decay = 1,
                                      .init = init_b + (size_t)l * C};
        }
    }
    int last = k == REG_M ? 3 : 1 + L;
    g->t[n++] = (zero_tensor){.name = "head", .numel = C, .module = last, .init = init_h};
    g->n = n;
}

/* The gradient of a parameter: a fixed function of its value, its (stacked tensor, element)
 * identity, the step and the rank. */
static float grad_of(float p, int which, size_t k, int step)
{
    return 0.25f * p + 0.01f * (float)((int)((k * 7 + (size_t)which * 3 + (size_t)step) % 13) - 6) +
           0.001f * (float)rank;
}

/* Identity of internal piece (tensor t of registration g, module m-relative layer l). */
typedef struct { void *p; size_t n; int which; size_t base; } piece;

/* The pieces of module m under registration k: pointers (params or grads) and identities. */
static int module_pieces(zero_ctx *z, reg_kind k, int m, int grads, piece *out)
{
    int n = 0;
#define PTR(i, l) (grads ? ((l) < 0 ? zero_grad_ptr(z, i) : zero_grad_slice(z, i, l))             \
                         : ((l) < 0 ? zero_param_ptr(z, i) : zero_param_slice(z, i, l)))
    if (m == 0)
        out[n++] = (piece){PTR(0, -1), C, 2, 0};
    if (k == REG_S && m >= 1 && m <= L) {
        out[n++] = (piece){PTR(1, m - 1), R * C, 0, (size_t)(m - 1) * R * C};
        out[n++] = (piece){PTR(2, m - 1), C, 1, (size_t)(m - 1) * C};
    }
    if (k == REG_P && m >= 1 && m <= L) {
        out[n++] = (piece){PTR(1 + 2 * (m - 1), -1), R * C, 0, (size_t)(m - 1) * R * C};
        out[n++] = (piece){PTR(2 + 2 * (m - 1), -1), C, 1, (size_t)(m - 1) * C};
    }
    if (k == REG_M && m == 1)
        out[n++] = (piece){PTR(1, -1), L * R * C, 0, 0};
    if (k == REG_M && m == 2)
        out[n++] = (piece){PTR(2, -1), L * C, 1, 0};
    int last = k == REG_M ? 3 : 1 + L;
    if (m == last)
        out[n++] = (piece){PTR(k == REG_P ? 1 + 2 * L : 3, -1), C, 3, 0};
#undef PTR
    return n;
}

typedef struct {
    uint64_t digest;
    size_t peak;
    int ok;
} result;

static result train(reg_kind k, int stage, int steps, const char *export_path, const char *save,
                    int use_fn)
{
    result r = {0, 0, 0};
    reg g;
    make_reg(&g, k, use_fn);
    zero_config cfg;
    zero_config_init(&cfg);
    cfg.device = ZERO_DEVICE_HOST;
    cfg.stage = stage;
    cfg.bucket_bytes = 8192; /* about one layer per chunk */
    cfg.persist_bytes = 0;
    cfg.lr = 1e-2f;
    cfg.weight_decay = 0.1f;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, g.t, g.n);
    EXPECT(s == ZERO_OK, "zero_init (registration %d): %s", (int)k, zero_init_error());
    if (s)
        return r;
    int nm = zero_num_modules(z);
    piece pc[4];
    float vals[L * R * C];
    int ok = 1;
    for (int step = 0; step < steps && ok; step++) {
        for (int m = nm - 1; m >= 0 && ok; m--) { /* backward only: read, then add a gradient */
            ok &= zero_gather(z, m) == ZERO_OK;
            int np = module_pieces(z, k, m, 0, pc);
            size_t at = 0;
            for (int q = 0; q < np && ok; q++) {
                ok &= pc[q].p != NULL;
                if (ok)
                    memcpy(vals + at, pc[q].p, pc[q].n * sizeof(float));
                at += pc[q].n;
            }
            ok &= zero_release(z, m) == ZERO_OK;
            np = module_pieces(z, k, m, 1, pc);
            at = 0;
            for (int q = 0; q < np && ok; q++) {
                float *gp = pc[q].p;
                ok &= gp != NULL;
                for (size_t e = 0; ok && e < pc[q].n; e++)
                    gp[e] += grad_of(vals[at + e], pc[q].which, pc[q].base + e, step);
                at += pc[q].n;
            }
            ok &= zero_grad_ready(z, m) == ZERO_OK;
        }
        ok &= zero_step(z) == ZERO_OK;
    }
    EXPECT(ok, "training (registration %d, stage %d): %s", (int)k, stage, zero_last_error(z));
    if (ok && k == REG_S) { /* the whole tensor is not one pointer; slices are bounded */
        EXPECT(zero_param_ptr(z, 1) == NULL, "zero_param_ptr of a sliced tensor");
        EXPECT(zero_grad_ptr(z, 1) == NULL, "zero_grad_ptr of a sliced tensor");
        EXPECT(strstr(zero_last_error(z), "zero_grad_slice") != NULL, "message: %s",
               zero_last_error(z));
        EXPECT(zero_param_slice(z, 1, L) == NULL, "slice L of L");
        EXPECT(zero_tensor_slices(z, 1) == L && zero_tensor_module(z, 1) == 1 &&
                   zero_num_tensors(z) == 4,
               "queries: slices %d module %d tensors %d", zero_tensor_slices(z, 1),
               zero_tensor_module(z, 1), zero_num_tensors(z));
    }
    zero_memory_stats ms;
    zero_memory_report(z, &ms);
    r.peak = ms.peak_total;
    EXPECT(zero_param_digest(z, &r.digest) == ZERO_OK, "digest");
    if (export_path)
        EXPECT(zero_export(z, export_path) == ZERO_OK, "export: %s", zero_last_error(z));
    if (save)
        EXPECT(zero_save(z, save, NULL, 0) == ZERO_OK, "save: %s", zero_last_error(z));
    r.ok = ok;
    zero_finalize(z);
    return r;
}

static int same_files(const char *a, const char *b)
{
    FILE *x = fopen(a, "rb"), *y = fopen(b, "rb");
    int same = x && y;
    while (same) {
        int p = fgetc(x), q = fgetc(y);
        same = p == q;
        if (p == EOF || q == EOF)
            break;
    }
    if (x)
        fclose(x);
    if (y)
        fclose(y);
    return same;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    const char *root = argc > 1 ? argv[1] : ".";
    if (rank == 0)
        mkdir(root, 0755);
    MPI_Barrier(MPI_COMM_WORLD);
    for (size_t k = 0; k < L * R * C; k++)
        init_a[k] = value(0, k);
    for (size_t k = 0; k < L * C; k++)
        init_b[k] = value(1, k);
    for (int k = 0; k < C; k++)
        init_e[k] = value(2, (size_t)k), init_h[k] = value(3, (size_t)k);
    char es[512], em[512], ef[512], ck[512], el[512];
    snprintf(es, sizeof es, "%s/s_np%d.st", root, world);
    snprintf(em, sizeof em, "%s/m_np%d.st", root, world);
    snprintf(ef, sizeof ef, "%s/f_np%d.st", root, world);
    snprintf(el, sizeof el, "%s/l_np%d.st", root, world);
    snprintf(ck, sizeof ck, "%s/ck_np%d", root, world);
    for (int stage = 1; stage <= 3; stage += 2) {
        result s = train(REG_S, stage, 6, es, stage == 3 ? ck : NULL, 0);
        result p = train(REG_P, stage, 6, NULL, NULL, 0);
        result m = train(REG_M, stage, 6, em, NULL, 0);
        result f = train(REG_S, stage, 6, ef, NULL, 1); /* init_fn instead of init arrays */
        EXPECT(f.digest == s.digest, "stage %d: init_fn with slices: digest differs", stage);
        EXPECT(s.digest == p.digest, "stage %d: slices %016llx != per-layer tensors %016llx",
               stage, (unsigned long long)s.digest, (unsigned long long)p.digest);
        if (rank == 0) {
            EXPECT(same_files(es, em), "stage %d: the export with slices differs from the one "
                   "with one module per tensor", stage);
            EXPECT(same_files(es, ef), "stage %d: init_fn with slices differs from init arrays",
                   stage);
        }
        if (stage == 3 && rank == 0)
            printf("stage 3: device peak %zu bytes with slices, %zu with per-layer tensors, %zu "
                   "with one module per tensor\n", s.peak, p.peak, m.peak);
        if (stage == 3) {
            EXPECT(s.peak == p.peak, "stage 3: device peak %zu with slices, %zu per-layer tensors",
                   s.peak, p.peak);
            EXPECT(s.peak < m.peak, "stage 3: device peak %zu with slices, not below %zu with one "
                   "module per tensor", s.peak, m.peak);
        }
    }
    /* the checkpoint of the sliced registration loads into the one-module-per-tensor one */
    {
        reg g;
        make_reg(&g, REG_M, 0);
        zero_config cfg;
        zero_config_init(&cfg);
        cfg.device = ZERO_DEVICE_HOST;
        cfg.stage = 2;
        zero_ctx *z = NULL;
        EXPECT(zero_init(&z, &cfg, g.t, g.n) == ZERO_OK, "zero_init: %s", zero_init_error());
        if (z) {
            EXPECT(zero_load(z, ck, NULL, 0, NULL) == ZERO_OK, "load: %s", zero_last_error(z));
            EXPECT(zero_export(z, el) == ZERO_OK, "export");
            zero_finalize(z);
            if (rank == 0) /* the stage-3 export of S after 6 steps */
                EXPECT(same_files(es, el), "the checkpoint with slices, loaded into one module "
                       "per tensor, exports differently");
        }
    }
    /* slices that do not divide the tensor: ZERO_ERR_INVALID on every rank */
    {
        reg g;
        make_reg(&g, REG_S, 0);
        g.t[1].slices = 3; /* 4 layers */
        zero_config cfg;
        zero_config_init(&cfg);
        cfg.device = ZERO_DEVICE_HOST;
        zero_ctx *z = NULL;
        zero_status s = zero_init(&z, &cfg, g.t, g.n);
        EXPECT(s == ZERO_ERR_INVALID && strstr(zero_init_error(), "slices 3"),
               "slices 3 of 4: %s: %s", zero_status_string(s), zero_init_error());
        if (z)
            zero_finalize(z);
    }
    /* registrations refused on the registered array, before slices are split */
    for (int c = 0; c < 3; c++) {
        reg g;
        make_reg(&g, REG_S, 0);
        const char *want = c == 0 ? "name is NULL" : c == 1 ? "registered twice" : "init_fn";
        if (c == 0)
            g.t[1].name = NULL;
        if (c == 1)
            g.t[3].name = "A"; /* the head named like the sliced tensor */
        if (c == 2) {
            g.t[1].init_fn = init_keyed; /* and init_a */
            g.t[1].init_user = &which_a;
        }
        zero_config cfg;
        zero_config_init(&cfg);
        cfg.device = ZERO_DEVICE_HOST;
        zero_ctx *z = NULL;
        zero_status s = zero_init(&z, &cfg, g.t, g.n);
        EXPECT(s == ZERO_ERR_INVALID && strstr(zero_init_error(), want),
               "case %d: %s: %s (expected \"%s\")", c, zero_status_string(s), zero_init_error(),
               want);
        if (z)
            zero_finalize(z);
    }
    /* slice -1 is not a slice; fp32 views with a module whose gradient is never asked for */
    {
        reg g;
        make_reg(&g, REG_S, 0);
        zero_config cfg;
        zero_config_init(&cfg);
        cfg.device = ZERO_DEVICE_HOST;
        cfg.stage = 2;
        cfg.dtype = ZERO_DTYPE_BF16;
        cfg.fp32_views = 1; /* one chunk for the whole model: modules share a view */
        zero_ctx *z = NULL;
        EXPECT(zero_init(&z, &cfg, g.t, g.n) == ZERO_OK, "zero_init: %s", zero_init_error());
        if (z) {
            EXPECT(zero_param_slice(z, 0, -1) == NULL, "zero_param_slice(0, -1) is not NULL");
            int ok = 1;
            for (int step = 0; step < 3 && ok; step++) {
                for (int m = zero_num_modules(z) - 1; m >= 0 && ok; m--) {
                    if (m == 0) { /* the embedding: never asked for (zeros) */
                        ok &= zero_grad_ready(z, 0) == ZERO_OK;
                        continue;
                    }
                    piece pc[4];
                    int np = module_pieces(z, REG_S, m, 1, pc);
                    for (int q = 0; q < np && ok; q++) {
                        float *gp = pc[q].p;
                        ok &= gp != NULL;
                        for (size_t e = 0; ok && e < pc[q].n; e++)
                            gp[e] += 0.01f;
                    }
                    ok &= zero_grad_ready(z, m) == ZERO_OK;
                }
                ok &= zero_step(z) == ZERO_OK;
            }
            EXPECT(ok, "fp32 views with a module never asked for: %s", zero_last_error(z));
            zero_finalize(z);
        }
    }
    int all = 0;
    MPI_Allreduce(&failures, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_slices: np %d, %d failures\n", world, all);
    MPI_Finalize();
    return all ? 1 : 0;
}
