/* test_api — the public API's contract on bad input and edge cases, at any world size
 * (run under mpirun -np 1..4): every failure is a status plus a message naming the problem,
 * failures on one rank become failures on all ranks (no hang), and an inf/nan gradient on one
 * rank skips the step everywhere without touching the parameters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zero.h"

#include "../common/api_test.h"

enum { NT = 4 };
static float init_vals[NT][1000];
static zero_tensor tensors[NT];

static void make_tensors(void)
{
    static const char *names[NT] = {"a.w", "a.b", "b.w", "b.b"};
    static const size_t sizes[NT] = {900, 17, 250, 3}; /* 2 chunks at a 4 KiB bucket */
    memset(tensors, 0, sizeof tensors);
    for (int i = 0; i < NT; i++) {
        tensors[i].name = names[i];
        tensors[i].numel = sizes[i];
        tensors[i].module = i / 2;
        for (size_t k = 0; k < sizes[i]; k++)
            init_vals[i][k] = 0.01f * (float)((k * 31 + (size_t)i * 7) % 17) - 0.08f;
        tensors[i].init = init_vals[i];
    }
}

/* zero_init must fail with `want` and a message containing `text`. */
static void expect_init_fail(const char *what, zero_ctx **out, const zero_config *cfg,
                             const zero_tensor *t, int n, zero_status want, const char *text)
{
    zero_status s = zero_init(out, cfg, t, n);
    EXPECT(s == want, "%s: status %s, expected %s (%s)", what, zero_status_string(s),
           zero_status_string(want), zero_init_error());
    EXPECT(strstr(zero_init_error(), text) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
           zero_init_error(), text);
    if (out)
        EXPECT(*out == NULL, "%s: ctx not NULL after failure", what);
}

/* One micro-step of fake gradients g = p * (rank + 1) - 0.05 in the working dtype; `poison`
 * (if not 0) replaces one element of tensor 2. */
static int fake_step(zero_ctx *z, int rank, float poison)
{
    zero_dtype dt = zero_get_config(z)->dtype;
    float p[1000], g[1000];
    for (int m = 1; m >= 0; m--) {
        for (int i = 2 * m + 1; i >= 2 * m; i--) {
            if (zero_gather(z, m))
                return 1;
            void *gw = zero_grad_ptr(z, i);
            const void *pw = zero_param_ptr(z, i);
            if (!gw || !pw)
                return 1;
            zero_convert(p, ZERO_DTYPE_FP32, pw, dt, tensors[i].numel);
            if (zero_release(z, m))
                return 1;
            for (size_t k = 0; k < tensors[i].numel; k++)
                g[k] = (p[k] * (float)(rank + 1) - 0.05f) * zero_loss_scale(z);
            if (poison != 0.0f && i == 2)
                g[5] = poison;
            zero_accumulate(gw, dt, g, tensors[i].numel);
        }
        if (zero_grad_ready(z, m))
            return 1;
    }
    return zero_step(z) != ZERO_OK;
}

int main(void)
{
    clear_zero_environment();
    make_tensors();
    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.device = ZERO_DEVICE_HOST; /* the checks read and write tensors through host pointers */
    zero_ctx *z = NULL;

    /* A valid context first: it tells us rank and world size (and initialises MPI). */
    zero_status s = zero_init(&z, &cfg, tensors, NT);
    if (s) {
        fprintf(stderr, "valid init failed: %s %s\n", zero_status_string(s), zero_init_error());
        return 1;
    }
    int rank = zero_rank(z), world = zero_world_size(z);
    rank_hint = rank;

    /* Misuse of a live context. */
    EXPECT(zero_param_ptr(z, NT) == NULL, "param_ptr out of range returned a pointer");
    EXPECT(strstr(zero_last_error(z), "tensor index 4") != NULL, "message: %s", zero_last_error(z));
    EXPECT(zero_grad_ptr(z, -1) == NULL, "grad_ptr(-1) returned a pointer");
    EXPECT(zero_grad_ready(z, 2) == ZERO_ERR_INVALID, "grad_ready(2) with 2 modules");
    EXPECT(zero_gather(z, 7) == ZERO_ERR_INVALID, "gather(7)");
    EXPECT(zero_grad_ready(z, 1) == ZERO_OK, "grad_ready(1)");
    EXPECT(zero_grad_ready(z, 1) == ZERO_ERR_STATE, "grad_ready(1) twice");
    EXPECT(strstr(zero_last_error(z), "already reported ready") != NULL, "message: %s",
           zero_last_error(z));
    EXPECT(zero_step(z) == ZERO_OK, "step after misuse: %s", zero_last_error(z));
    EXPECT(zero_export(z, NULL) == ZERO_ERR_INVALID, "export(NULL)");
    EXPECT(zero_export(z, "/nonexistent-dir/x.safetensors") == ZERO_ERR_IO,
           "export to a missing directory must be ZERO_ERR_IO on every rank");
    EXPECT(zero_allreduce_sum(z, NULL, 1) == ZERO_ERR_INVALID, "allreduce NULL");
    double v[2] = {1.0, (double)rank};
    EXPECT(zero_allreduce_sum(z, v, 2) == ZERO_OK && v[0] == world &&
               v[1] == world * (world - 1) / 2.0,
           "allreduce_sum: %g %g", v[0], v[1]);
    zero_memory_stats ms;
    EXPECT(zero_memory_report(z, &ms) == ZERO_OK && ms.num_params == 1170, "num_params %zu",
           ms.num_params);
    EXPECT(zero_finalize(z) == ZERO_OK, "finalize");
    EXPECT(zero_finalize(NULL) == ZERO_OK, "finalize(NULL)");

    /* Bad arguments: each a status and a message, on every rank. */
    expect_init_fail("NULL ctx", NULL, &cfg, tensors, NT, ZERO_ERR_INVALID, "ctx is NULL");
    zero_ctx *out = NULL;
    expect_init_fail("zero tensors", &out, &cfg, tensors, 0, ZERO_ERR_INVALID,
                     "register at least one tensor");
    expect_init_fail("NULL tensors", &out, &cfg, NULL, 2, ZERO_ERR_INVALID, "tensors is NULL");
    zero_tensor bad[NT];
    memcpy(bad, tensors, sizeof bad);
    bad[1].numel = 0;
    expect_init_fail("0-element tensor", &out, &cfg, bad, NT, ZERO_ERR_INVALID,
                     "tensor 1 (a.b): numel is 0");
    { /* element counts that fit, byte sizes that would not: refused, never allocated wrapped */
        zero_tensor huge = {.name = "huge", .numel = (size_t)1 << 62, .module = 0};
        expect_init_fail("2^62 elements", &out, &cfg, &huge, 1, ZERO_ERR_INVALID,
                         "more than this machine can address");
    }
    memcpy(bad, tensors, sizeof bad);
    bad[3].module = 0;
    expect_init_fail("module order", &out, &cfg, bad, NT, ZERO_ERR_INVALID, "module order");
    memcpy(bad, tensors, sizeof bad);
    bad[2].name = "a.w";
    expect_init_fail("duplicate name", &out, &cfg, bad, NT, ZERO_ERR_INVALID, "registered twice");
    memcpy(bad, tensors, sizeof bad);
    bad[0].name = NULL;
    expect_init_fail("NULL name", &out, &cfg, bad, NT, ZERO_ERR_INVALID, "name is NULL");
    memcpy(bad, tensors, sizeof bad);
    bad[0].ndim = 2;
    bad[0].shape[0] = 10;
    bad[0].shape[1] = 20;
    expect_init_fail("shape", &out, &cfg, bad, NT, ZERO_ERR_INVALID, "shape has 200 elements");
    zero_config badcfg = cfg;
    badcfg.stage = 9;
    expect_init_fail("config field", &out, &badcfg, tensors, NT, ZERO_ERR_INVALID,
                     "zero_config.stage=9");
    /* Bad input on the last rank only: every rank fails, naming that rank. */
    memcpy(bad, tensors, sizeof bad);
    if (rank == world - 1)
        bad[2].numel = 0;
    char who[64];
    snprintf(who, sizeof who, world > 1 && rank != world - 1 ? "rank %d failed" : "numel is 0",
             world - 1);
    expect_init_fail("bad tensor on one rank", &out, &cfg, bad, NT, ZERO_ERR_INVALID, who);
    /* A tensor registration that differs between ranks (valid on each). */
    if (world > 1) {
        memcpy(bad, tensors, sizeof bad);
        if (rank == 0)
            bad[3].numel = 4;
        expect_init_fail("different tensors", &out, &cfg, bad, NT, ZERO_ERR_INVALID,
                         "differs across ranks");
    }
    /* auto resolves to the backend in use; where that is host (no GPU, or a build without
     * CUDA), ZERO_DEVICE=cuda is refused on every rank with the reason. */
    zero_config ac = cfg;
    ac.device = ZERO_DEVICE_AUTO;
    zero_ctx *za = NULL;
    s = zero_init(&za, &ac, tensors, NT);
    EXPECT(s == ZERO_OK, "auto: %s %s", zero_status_string(s), zero_init_error());
    zero_device_kind got = za ? zero_get_config(za)->device : ZERO_DEVICE_AUTO;
    EXPECT(got == ZERO_DEVICE_HOST || got == ZERO_DEVICE_CUDA, "auto resolved to %d", (int)got);
    EXPECT(zero_finalize(za) == ZERO_OK, "finalize auto");
    if (got == ZERO_DEVICE_HOST) {
        setenv("ZERO_DEVICE", "cuda", 1);
        expect_init_fail("cuda without a GPU", &out, &cfg, tensors, NT, ZERO_ERR_UNSUPPORTED,
                         "ZERO_DEVICE=cuda but rank");
        unsetenv("ZERO_DEVICE");
    }

    /* Static loss scale, then an inf gradient on one rank: skipped everywhere. */
    for (int stage = 0; stage <= 2; stage++) {
        zero_config c2 = cfg;
        c2.stage = stage;
        c2.dtype = ZERO_DTYPE_FP16;
        c2.loss_scale = 128.0f;
        s = zero_init(&z, &c2, tensors, NT);
        EXPECT(s == ZERO_OK, "fp16 init: %s", zero_init_error());
        if (s)
            continue;
        EXPECT(zero_loss_scale(z) == 128.0f, "static loss scale %g", zero_loss_scale(z));
        EXPECT(fake_step(z, rank, 0.0f) == 0, "fp16 step: %s", zero_last_error(z));
        zero_step_info info;
        zero_last_step(z, &info);
        EXPECT(info.applied == 1 && info.overflow == 0 && info.step == 1, "first step applied");
        uint64_t before = 0, after = 1;
        zero_param_digest(z, &before);
        EXPECT(fake_step(z, rank, rank == world - 1 ? INFINITY : 0.0f) == 0, "poisoned step");
        zero_last_step(z, &info);
        EXPECT(info.overflow == 1 && info.applied == 0 && info.skipped == 1 && info.step == 1,
               "stage %d: overflow on rank %d not skipped everywhere (overflow %d applied %d)",
               stage, world - 1, info.overflow, info.applied);
        zero_param_digest(z, &after);
        EXPECT(before == after, "stage %d: parameters changed by a skipped step", stage);
        EXPECT(fake_step(z, rank, 0.0f) == 0, "step after overflow");
        zero_last_step(z, &info);
        EXPECT(info.applied == 1 && info.step == 2, "training resumes after a skipped step");
        if (stage == 2) { /* asking for a gradient after its bucket was reduced */
            EXPECT(zero_grad_ptr(z, 0) != NULL, "grad_ptr");
            EXPECT(zero_grad_ready(z, 0) == ZERO_OK, "ready 0");
            EXPECT(zero_grad_ptr(z, 1) != NULL, "grad_ptr while its bucket still fills");
            /* module 1's pointers, asked for every micro-step (else ZERO_ERR_STATE: stale) */
            EXPECT(zero_grad_ptr(z, 2) != NULL && zero_grad_ptr(z, 3) != NULL, "grad_ptr 2, 3");
            EXPECT(zero_grad_ready(z, 1) == ZERO_OK, "ready 1"); /* the bucket is reduced */
            EXPECT(zero_grad_ptr(z, 1) == NULL, "grad_ptr after its bucket was reduced");
            EXPECT(strstr(zero_last_error(z), "already reduced") != NULL, "%s",
                   zero_last_error(z));
            EXPECT(zero_step(z) == ZERO_OK, "step");
        }
        zero_finalize(z);
    }

    /* Stage 3: parameters exist only between zero_gather and zero_release; a gather out of the
     * recorded order is still correct; ranks gathering in different orders all fail. */
    uint64_t ref_digest = 0;
    for (int stage = 0; stage <= 3; stage += 3) {
        zero_config c3 = cfg;
        c3.stage = stage;
        c3.bucket_bytes = 4096; /* one chunk per module */
        c3.persist_bytes = 0;
        s = zero_init(&z, &c3, tensors, NT);
        EXPECT(s == ZERO_OK, "stage %d init: %s", stage, zero_init_error());
        if (s)
            continue;
        if (stage == 3) {
            EXPECT(zero_param_ptr(z, 0) == NULL, "param_ptr before gather at stage 3");
            EXPECT(strstr(zero_last_error(z), "not gathered") != NULL, "%s", zero_last_error(z));
            EXPECT(zero_release(z, 0) == ZERO_ERR_STATE, "release without gather");
        }
        EXPECT(fake_step(z, rank, 0.0f) == 0, "stage %d step 1: %s", stage, zero_last_error(z));
        EXPECT(fake_step(z, rank, 0.0f) == 0, "stage %d step 2: %s", stage, zero_last_error(z));
        /* step 3: gather module 0 then 1 before the backward (not the recorded order) */
        EXPECT(zero_gather(z, 0) == ZERO_OK && zero_gather(z, 1) == ZERO_OK &&
                   zero_param_ptr(z, 3) != NULL && zero_release(z, 1) == ZERO_OK &&
                   zero_release(z, 0) == ZERO_OK,
               "stage %d out-of-order gathers: %s", stage, zero_last_error(z));
        EXPECT(fake_step(z, rank, 0.0f) == 0, "stage %d step 3: %s", stage, zero_last_error(z));
        uint64_t d = 0;
        zero_param_digest(z, &d);
        if (stage == 0)
            ref_digest = d;
        else
            EXPECT(d == ref_digest, "stage 3 digest %016llx differs from stage 0 %016llx",
                   (unsigned long long)d, (unsigned long long)ref_digest);
        if (stage == 3 && world > 1) { /* a resident chunk too: every gather is checked */
            zero_config c4 = c3;
            c4.persist_bytes = (size_t)1 << 20; /* both chunks resident */
            zero_ctx *z4 = NULL;
            EXPECT(zero_init(&z4, &c4, tensors, NT) == ZERO_OK, "resident init: %s",
                   zero_init_error());
            if (z4) {
                s = zero_gather(z4, rank % 2);
                EXPECT(s == ZERO_ERR_COMM, "resident chunks gathered in different orders: %s",
                       zero_status_string(s));
                zero_finalize(z4);
            }
            s = zero_gather(z, rank % 2);
            EXPECT(s == ZERO_ERR_COMM, "gathering different modules on different ranks: %s",
                   zero_status_string(s));
            EXPECT(strstr(zero_last_error(z), "different orders") != NULL, "%s",
                   zero_last_error(z));
        }
        zero_finalize(z);
    }

    /* Two contexts alive in one process (two models), stepped in turn and finalized in either
     * order: each trains exactly as it does alone (same digest), and nothing one finalize
     * releases (log, topology, NUMA memory, communicators) is still used by the other. Both
     * offload their optimizer (NUMA-bound host memory, hwloc placement, each its own). */
    for (int order = 0; order < 2; order++) {
        zero_config ca = cfg, cb = cfg;
        ca.stage = 2;
        ca.offload_optimizer = ZERO_OFFLOAD_CPU;
        cb.stage = 3;
        cb.offload_optimizer = ZERO_OFFLOAD_CPU;
        cb.bucket_bytes = 4096; /* another layout */
        uint64_t alone[2] = {0, 0}, both[2] = {0, 0};
        const zero_config *cs[2] = {&ca, &cb};
        for (int k = 0; k < 2; k++) { /* each alone: the reference */
            zero_ctx *y = NULL;
            EXPECT(zero_init(&y, cs[k], tensors, NT) == ZERO_OK, "alone %d: %s", k,
                   zero_init_error());
            if (!y)
                continue;
            EXPECT(fake_step(y, rank, 0.0f) == 0 && fake_step(y, rank, 0.0f) == 0,
                   "alone %d: %s", k, zero_last_error(y));
            EXPECT(zero_param_digest(y, &alone[k]) == ZERO_OK, "digest alone %d", k);
            EXPECT(zero_finalize(y) == ZERO_OK, "finalize alone %d", k);
        }
        /* both log into one file (ZERO_DEBUG_FILE, per process): the first finalize must not
         * close it under the survivor */
        char logpat[64], logpath[64];
        snprintf(logpat, sizeof logpat, "test_api_two_np%d_%%p.log", world);
        snprintf(logpath, sizeof logpath, "test_api_two_np%d_%ld.log", world, (long)getpid());
        setenv("ZERO_DEBUG_FILE", logpat, 1);
        zero_ctx *y[2] = {NULL, NULL};
        for (int k = 0; k < 2; k++)
            EXPECT(zero_init(&y[k], cs[k], tensors, NT) == ZERO_OK, "context %d of two: %s", k,
                   zero_init_error());
        unsetenv("ZERO_DEBUG_FILE");
        if (y[0] && y[1]) {
            for (int step = 0; step < 2; step++)
                for (int k = 0; k < 2; k++)
                    EXPECT(fake_step(y[k], rank, 0.0f) == 0, "context %d of two, step %d: %s",
                           k, step, zero_last_error(y[k]));
            for (int k = 0; k < 2; k++) {
                EXPECT(zero_param_digest(y[k], &both[k]) == ZERO_OK, "digest %d of two", k);
                EXPECT(both[k] == alone[k], "context %d of two: digest %016llx, alone %016llx",
                       k, (unsigned long long)both[k], (unsigned long long)alone[k]);
            }
        }
        /* order 0: the first created goes first; order 1: the last created goes first */
        int first = order == 0 ? 0 : 1;
        EXPECT(zero_finalize(y[first]) == ZERO_OK, "finalize context %d first", first);
        if (y[1 - first]) { /* the survivor still trains, reports and logs into the file */
            EXPECT(fake_step(y[1 - first], rank, 0.0f) == 0, "survivor %d: %s", 1 - first,
                   zero_last_error(y[1 - first]));
            EXPECT(zero_grad_ready(y[1 - first], 99) == ZERO_ERR_INVALID, "module 99 accepted");
            char line[512] = "";
            int found = 0;
            FILE *lf = fopen(logpath, "r");
            while (lf && fgets(line, sizeof line, lf))
                found |= strstr(line, "module 99") != NULL;
            if (lf)
                fclose(lf);
            EXPECT(found, "order %d: the survivor's warning is not in %s (the first finalize "
                   "closed the shared log?)", order, logpath);
        }
        remove(logpath);
        EXPECT(zero_finalize(y[1 - first]) == ZERO_OK, "finalize context %d second", 1 - first);
    }

    /* A report path set on rank 0 only: finalize collects it on every rank, no hang. */
    {
        zero_config c5 = cfg;
        char path[64];
        snprintf(path, sizeof path, "test_api_report_np%d.json", world);
        if (rank == 0) {
            remove(path);
            c5.report_path = path;
        }
        s = zero_init(&z, &c5, tensors, NT);
        EXPECT(s == ZERO_OK, "init with a rank-0 report: %s", zero_init_error());
        if (!s) {
            EXPECT(fake_step(z, rank, 0.0f) == 0, "step: %s", zero_last_error(z));
            EXPECT(zero_finalize(z) == ZERO_OK, "finalize with a rank-0 report");
            if (rank == 0) {
                FILE *f = fopen(path, "r");
                EXPECT(f != NULL, "rank 0 wrote no report at %s", path);
                if (f)
                    fclose(f);
                remove(path);
            }
        }
    }

    if (rank == 0)
        printf("test_api: %d ranks, %d checks, %d failures\n", world, checks, failures);
    return failures != 0;
}
