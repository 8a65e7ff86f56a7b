/* test_misuse — what libzero refuses instead of computing something wrong in silence, at any
 * world size (run under mpirun -np 1..4); every refusal is a status on every rank plus a message
 * naming what is wrong:
 *  - gradient pointers kept across micro-steps (as llm.c keeps its tensor pointers) at stages 2-3,
 *    where each micro-step's gradient lives in a new reduce bucket: ZERO_ERR_STATE at
 *    zero_grad_ready, the context as before; kept pointers at stages 0-1 stay fine;
 *  - calls on a finalized context: ZERO_ERR_STATE or NULL, no crash, no collective entered;
 *  - invalid dtypes in zero_convert / zero_accumulate / zero_dtype_size: nothing done, size 0;
 *  - inf/nan initial values (rank 0's, broadcast), or values that are inf in the working
 *    precision: ZERO_ERR_INVALID naming the tensor and the element;
 *  - a finite gradient element whose square is inf in fp32 (|g| >= 2^64): an overflow, the step
 *    skipped on every rank like an inf gradient. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zero.h"

#include "../common/api_test.h"

#define HAS(text, part) (strstr((text), (part)) != NULL)

enum { NT = 4, NM = 2, MAXN = 1000 };
static const char *names[NT] = {"a.w", "a.b", "b.w", "b.b"};
static const size_t sizes[NT] = {900, 17, 250, 3}; /* 2 chunks at a 4 KiB bucket, else 1 */
static float init_vals[NT][MAXN];
static zero_tensor tensors[NT];
static int rank, world;

static void make_tensors(void)
{
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

static zero_config host_config(int stage)
{
    zero_config c = ZERO_CONFIG_INIT;
    c.device = ZERO_DEVICE_HOST; /* gradients are written through host pointers */
    c.stage = stage;
    return c;
}

/* ---- a model's gradient, micro-step by micro-step ----------------------------------------- */

/* Asks for the gradient pointers of module m's tensors (both tensors: 2m, 2m + 1). */
static int ask(zero_ctx *z, int m, void *g[NT])
{
    for (int i = 2 * m; i < 2 * m + 2; i++)
        if (!(g[i] = zero_grad_ptr(z, i))) {
            EXPECT(0, "zero_grad_ptr(%d): %s", i, zero_last_error(z));
            return -1;
        }
    return 0;
}

/* Adds module m's gradient of this micro-step through g[]; `poison` (if not 0) replaces element
 * 5 of tensor 2 on the last rank. */
static void add(zero_ctx *z, int m, void *const g[NT], int micro, float poison)
{
    zero_dtype dt = zero_get_config(z)->dtype;
    float v[MAXN];
    for (int i = 2 * m; i < 2 * m + 2; i++) {
        for (size_t k = 0; k < sizes[i]; k++)
            v[k] = 0.01f * (float)((int)((k * 13 + (size_t)i * 7 + (size_t)micro * 5) % 23) - 11) *
                   (float)(rank + 1);
        if (poison != 0.0f && i == 2 && rank == world - 1)
            v[5] = poison;
        zero_accumulate(g[i], dt, v, sizes[i]);
    }
}

/* One micro-step of a model that asks for its pointers every micro-step (the contract). */
static int good_micro_step(zero_ctx *z, int micro, float poison)
{
    void *g[NT];
    for (int m = NM - 1; m >= 0; m--) {
        if (ask(z, m, g))
            return -1;
        add(z, m, g, micro, poison);
        zero_status s = zero_grad_ready(z, m);
        EXPECT(s == ZERO_OK, "ready(%d) at micro-step %d: %s", m, micro, zero_last_error(z));
        if (s)
            return -1;
    }
    zero_status s = zero_step(z);
    EXPECT(s == ZERO_OK, "zero_step at micro-step %d: %s", micro, zero_last_error(z));
    return s ? -1 : 0;
}

static uint64_t digest(zero_ctx *z)
{
    uint64_t d = 0;
    EXPECT(zero_param_digest(z, &d) == ZERO_OK, "digest: %s", zero_last_error(z));
    return d;
}

/* ---- gradient pointers kept across micro-steps --------------------------------------------- */

/* The reference: 4 micro-steps (grad_accum 2) that ask every time. */
static uint64_t reference_run(const zero_config *c)
{
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, c, tensors, NT);
    EXPECT(s == ZERO_OK, "reference init: %s", zero_init_error());
    if (s)
        return 0;
    for (int micro = 0; micro < 4; micro++)
        if (good_micro_step(z, micro, 0.0f))
            break;
    uint64_t d = digest(z);
    zero_finalize(z);
    return d;
}

/* llm.c's way: the pointers of micro-step 0, kept and written through in every later micro-step.
 * Stages 0-1: one buffer for the context's lifetime, so kept pointers are right: nothing is
 * refused and the result is the reference's. Stages 2-3: micro-step 1's first ready is refused
 * (ZERO_ERR_STATE, naming the module and what to do); what was written through the kept pointers
 * went into last micro-step's buckets (free now, or already another chunk's), so the run is not
 * continued. */
static void test_kept_pointers(int stage, size_t bucket_bytes)
{
    zero_config c = host_config(stage);
    c.grad_accum = 2;
    c.bucket_bytes = bucket_bytes;
    c.persist_bytes = 0;
    const uint64_t want = reference_run(&c);
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    EXPECT(s == ZERO_OK, "stage %d init: %s", stage, zero_init_error());
    if (s)
        return;
    void *kept[NT];
    for (int m = 0; m < NM; m++) /* before the first backward, as llm.c does */
        if (ask(z, m, kept))
            goto out;
    for (int micro = 0; micro < 4; micro++) {
        for (int m = NM - 1; m >= 0; m--) {
            add(z, m, kept, micro, 0.0f);
            s = zero_grad_ready(z, m);
            if (stage < 2 || micro == 0) {
                EXPECT(s == ZERO_OK, "stage %d micro-step %d: ready(%d) with kept pointers: %s",
                       stage, micro, m, zero_last_error(z));
                continue;
            }
            const char *msg = zero_last_error(z);
            char mod[32];
            snprintf(mod, sizeof mod, "module %d", m);
            EXPECT(s == ZERO_ERR_STATE, "stage %d micro-step %d: ready(%d) with pointers kept "
                   "from micro-step 0 returned %s", stage, micro, m, zero_status_string(s));
            EXPECT(HAS(msg, mod) && HAS(msg, names[2 * m]) &&
                       HAS(msg, "zero_grad_ptr again every micro-step"),
                   "stage %d: the message should name %s, %s and the remedy: %s", stage, mod,
                   names[2 * m], msg);
            goto out;
        }
        s = zero_step(z);
        EXPECT(s == ZERO_OK, "stage %d micro-step %d: step: %s", stage, micro, zero_last_error(z));
        if (s)
            goto out;
    }
    uint64_t got = digest(z);
    EXPECT(got == want, "stage %d: parameters %016llx with kept pointers, %016llx asking every "
           "micro-step", stage, (unsigned long long)got, (unsigned long long)want);
out:
    zero_finalize(z);
}

/* Stages 2-3: a refused ready changes nothing: a model that reports its modules ready in
 * micro-steps 1-3 before asking for any pointer (but did in micro-step 0) is refused each time,
 * then asks, adds and reports, and ends where the reference ends. */
static void test_refusal_changes_nothing(int stage, size_t bucket_bytes)
{
    zero_config c = host_config(stage);
    c.grad_accum = 2;
    c.bucket_bytes = bucket_bytes;
    c.persist_bytes = 0;
    const uint64_t want = reference_run(&c);
    zero_ctx *z = NULL;
    if (zero_init(&z, &c, tensors, NT) != ZERO_OK) {
        EXPECT(0, "stage %d init: %s", stage, zero_init_error());
        return;
    }
    void *g[NT];
    for (int micro = 0; micro < 4; micro++) {
        for (int m = NM - 1; m >= 0 && micro > 0; m--) {
            zero_status s = zero_grad_ready(z, m);
            EXPECT(s == ZERO_ERR_STATE, "stage %d micro-step %d: ready(%d) before asking: %s (%s)",
                   stage, micro, m, zero_status_string(s), zero_last_error(z));
        }
        for (int m = NM - 1; m >= 0; m--) {
            if (ask(z, m, g))
                goto out;
            add(z, m, g, micro, 0.0f);
            EXPECT(zero_grad_ready(z, m) == ZERO_OK, "stage %d: ready(%d): %s", stage, m,
                   zero_last_error(z));
        }
        EXPECT(zero_step(z) == ZERO_OK, "stage %d: step: %s", stage, zero_last_error(z));
    }
    EXPECT(digest(z) == want, "stage %d (bucket %zu): refused calls changed the result", stage,
           bucket_bytes);
out:
    zero_finalize(z);
}

/* What is not refused, as before: a module never asked for at all (reported as zeros, every
 * micro-step). And what is, where a chunk rule would not see it: a module asked for in one
 * micro-step only, in a chunk shared with a module asked for every time (one chunk holds both
 * modules at the default bucket size). */
static void test_not_refused(void)
{
    void *g[NT];
    for (int stage = 2; stage <= 3; stage++) {
        zero_config c = host_config(stage);
        c.bucket_bytes = 4096; /* one chunk per module */
        c.persist_bytes = 0;
        zero_ctx *z = NULL;
        if (zero_init(&z, &c, tensors, NT) != ZERO_OK) {
            EXPECT(0, "init: %s", zero_init_error());
            continue;
        }
        for (int micro = 0; micro < 3; micro++) {
            EXPECT(zero_grad_ready(z, 1) == ZERO_OK, "stage %d micro-step %d: ready(1) of a "
                   "module never asked for: %s", stage, micro, zero_last_error(z));
            if (ask(z, 0, g))
                break;
            add(z, 0, g, micro, 0.0f);
            EXPECT(zero_grad_ready(z, 0) == ZERO_OK, "ready(0): %s", zero_last_error(z));
            EXPECT(zero_step(z) == ZERO_OK, "step: %s", zero_last_error(z));
        }
        zero_finalize(z);
    }
    zero_config c = host_config(2); /* one chunk holding both modules */
    zero_ctx *z = NULL;
    if (zero_init(&z, &c, tensors, NT) != ZERO_OK) {
        EXPECT(0, "init: %s", zero_init_error());
        return;
    }
    for (int micro = 0; micro < 3; micro++) {
        if (ask(z, 0, g))
            break;
        add(z, 0, g, micro, 0.0f);
        EXPECT(zero_grad_ready(z, 0) == ZERO_OK, "ready(0): %s", zero_last_error(z));
        if (micro == 0 && ask(z, 1, g)) /* module 1 asked for in micro-step 0 only */
            break;
        zero_status s = zero_grad_ready(z, 1);
        EXPECT(s == (micro == 0 ? ZERO_OK : ZERO_ERR_STATE),
               "micro-step %d: ready(1) of a module asked for in micro-step 0 only, its chunk "
               "asked for by module 0: %s (%s)", micro, zero_status_string(s),
               zero_last_error(z));
        if (s != ZERO_OK && (ask(z, 1, g) || zero_grad_ready(z, 1) != ZERO_OK)) /* asked again */
            break;
        EXPECT(zero_step(z) == ZERO_OK, "step: %s", zero_last_error(z));
    }
    zero_finalize(z);
}

/* ---- a finalized context --------------------------------------------------------------------- */

/* Reads the freed context's magic: what include/zero.h promises while the memory is not reused,
 * and nothing here allocates between the finalize and the calls. Under AddressSanitizer that
 * read is (rightly) an error, so the check is left out there. */
static void test_finalized(void)
{
#if defined(__SANITIZE_ADDRESS__)
    if (rank == 0)
        printf("test_misuse: calls after zero_finalize not checked under AddressSanitizer\n");
    return;
#else
    zero_config c = host_config(2);
    zero_ctx *z = NULL;
    if (zero_init(&z, &c, tensors, NT) != ZERO_OK) {
        EXPECT(0, "init: %s", zero_init_error());
        return;
    }
    EXPECT(good_micro_step(z, 0, 0.0f) == 0, "a step before finalize");
    EXPECT(zero_finalize(z) == ZERO_OK, "finalize");
    /* z now points at freed memory; every call below must see that and do nothing */
    double v[1] = {1.0};
    zero_step_info info;
    zero_memory_stats ms;
    EXPECT(zero_step(z) == ZERO_ERR_STATE, "zero_step after finalize");
    EXPECT(zero_grad_ptr(z, 0) == NULL, "zero_grad_ptr after finalize");
    EXPECT(zero_param_ptr(z, 0) == NULL, "zero_param_ptr after finalize");
    EXPECT(zero_grad_ready(z, 0) == ZERO_ERR_STATE, "zero_grad_ready after finalize");
    EXPECT(zero_gather(z, 0) == ZERO_ERR_STATE, "zero_gather after finalize");
    EXPECT(zero_release(z, 0) == ZERO_ERR_STATE, "zero_release after finalize");
    EXPECT(zero_allreduce_sum(z, v, 1) == ZERO_ERR_STATE && v[0] == 1.0,
           "zero_allreduce_sum after finalize (a collective: none may start)");
    EXPECT(zero_last_step(z, &info) == ZERO_ERR_STATE, "zero_last_step after finalize");
    EXPECT(zero_memory_report(z, &ms) == ZERO_ERR_STATE, "zero_memory_report after finalize");
    EXPECT(zero_rank(z) == -1 && zero_world_size(z) == 0 && zero_get_config(z) == NULL &&
               zero_compute_stream(z) == NULL && zero_loss_scale(z) == 1.0f,
           "queries after finalize: rank %d world %d", zero_rank(z), zero_world_size(z));
    EXPECT(HAS(zero_last_error(z), "finalized"), "zero_last_error after finalize: %s",
           zero_last_error(z));
    EXPECT(zero_finalize(z) == ZERO_ERR_STATE, "a second zero_finalize");
    EXPECT(HAS(zero_init_error(), "zero_finalize") && HAS(zero_init_error(), "finalized"),
           "the second finalize's message: %s", zero_init_error());
    EXPECT(zero_finalize(NULL) == ZERO_OK, "finalize(NULL) is still a no-op");
#endif
}

/* ---- invalid dtypes ------------------------------------------------------------------------- */

static void test_dtypes(void)
{
    EXPECT(zero_dtype_size(ZERO_DTYPE_FP32) == 4 && zero_dtype_size(ZERO_DTYPE_BF16) == 2 &&
               zero_dtype_size(ZERO_DTYPE_FP16) == 2,
           "sizes of the valid dtypes");
    EXPECT(zero_dtype_size((zero_dtype)3) == 0 && zero_dtype_size((zero_dtype)-1) == 0 &&
               zero_dtype_size((zero_dtype)1000) == 0,
           "an invalid dtype has size 0");
    float src[16], dst[16], want[16];
    for (int i = 0; i < 16; i++) {
        src[i] = (float)i + 0.5f;
        dst[i] = want[i] = -7.0f;
    }
    const zero_dtype bad[3] = {(zero_dtype)3, (zero_dtype)-1, (zero_dtype)77};
    for (int b = 0; b < 3; b++) {
        zero_convert(dst, bad[b], src, ZERO_DTYPE_FP32, 8);
        zero_convert(dst, ZERO_DTYPE_FP32, src, bad[b], 8);
        zero_convert(dst, bad[b], src, bad[b], 8); /* was a copy of 2 bytes per element */
        zero_accumulate(dst, bad[b], src, 8);
        EXPECT(memcmp(dst, want, sizeof dst) == 0, "dtype %d: dst changed", (int)bad[b]);
    }
    zero_convert(dst, ZERO_DTYPE_FP32, src, ZERO_DTYPE_FP32, 8); /* valid: still works */
    zero_accumulate(dst, ZERO_DTYPE_FP32, src, 8);
    EXPECT(dst[3] == 7.0f && dst[8] == -7.0f, "valid convert + accumulate: %g %g",
           (double)dst[3], (double)dst[8]);
}

/* ---- initial values ------------------------------------------------------------------------- */

/* zero_init with tensor ti's element k set to x in rank `who`'s init (other ranks: NULL init, or
 * the clean values), under dtype dt: the status and message every rank gets. */
static zero_status init_with(int ti, size_t k, float x, int who, int others_null, zero_dtype dt,
                             char *msg, size_t len)
{
    zero_tensor t[NT];
    memcpy(t, tensors, sizeof t);
    static float poisoned[MAXN];
    memcpy(poisoned, init_vals[ti], sizeof poisoned);
    poisoned[k] = x;
    if (rank == who)
        t[ti].init = poisoned;
    else if (others_null)
        for (int i = 0; i < NT; i++)
            t[i].init = NULL;
    zero_config c = host_config(2);
    c.dtype = dt;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, t, NT);
    snprintf(msg, len, "%s", zero_init_error());
    EXPECT((s == ZERO_OK) == (z != NULL), "ctx and status agree");
    zero_finalize(z);
    return s;
}

static void test_initial_values(void)
{
    char msg[512];
    struct {
        int tensor;
        size_t k;
        float x;
        zero_dtype dt;
        const char *says;
    } bad[] = {
        {2, 5, NAN, ZERO_DTYPE_FP32, "tensor 2 (b.w): initial value 5 is nan"},
        {0, 899, INFINITY, ZERO_DTYPE_BF16, "tensor 0 (a.w): initial value 899 is inf"},
        {3, 0, -INFINITY, ZERO_DTYPE_FP16, "tensor 3 (b.b): initial value 0 is -inf"},
        {1, 16, 1e5f, ZERO_DTYPE_FP16, "tensor 1 (a.b): initial value 16 is 100000, which is inf "
                                       "in fp16"},
        {1, 3, -70000.0f, ZERO_DTYPE_FP16, "initial value 3 is -70000, which is -inf in fp16"},
        {2, 7, FLT_MAX, ZERO_DTYPE_BF16, "tensor 2 (b.w): initial value 7 is 3.40282e+38, which "
                                         "is inf in bf16"},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        zero_status s = init_with(bad[b].tensor, bad[b].k, bad[b].x, 0, 1, bad[b].dt, msg,
                                  sizeof msg);
        EXPECT(s == ZERO_ERR_INVALID && HAS(msg, bad[b].says),
               "initial values case %zu: %s, message '%s' should say '%s'", b,
               zero_status_string(s), msg, bad[b].says);
    }
    /* finite in the working precision: taken */
    struct {
        float x;
        zero_dtype dt;
    } fine[] = {{65504.0f, ZERO_DTYPE_FP16}, {1e5f, ZERO_DTYPE_BF16}, {FLT_MAX, ZERO_DTYPE_FP32},
                {-1e-45f, ZERO_DTYPE_FP16}};
    for (size_t f = 0; f < sizeof fine / sizeof fine[0]; f++) {
        zero_status s = init_with(2, 9, fine[f].x, 0, 1, fine[f].dt, msg, sizeof msg);
        EXPECT(s == ZERO_OK, "initial value %g in dtype %d refused: %s", (double)fine[f].x,
               (int)fine[f].dt, msg);
    }
    /* only rank 0's values count: a nan in another rank's init is never read */
    if (world > 1) {
        zero_status s = init_with(2, 5, NAN, world - 1, 0, ZERO_DTYPE_FP32, msg, sizeof msg);
        EXPECT(s == ZERO_OK, "a nan in rank %d's (unused) init refused: %s", world - 1, msg);
    }
}

/* ---- gradients whose square overflows fp32 --------------------------------------------------- */

static void test_huge_gradient(int stage)
{
    zero_config c = host_config(stage);
    zero_ctx *z = NULL;
    if (zero_init(&z, &c, tensors, NT) != ZERO_OK) {
        EXPECT(0, "init: %s", zero_init_error());
        return;
    }
    zero_step_info info;
    EXPECT(good_micro_step(z, 0, 0.0f) == 0, "stage %d: first step", stage);
    const uint64_t before = digest(z);
    /* 3e19 is finite, but its square is not in fp32 (Adam's v would be inf for good) */
    EXPECT(good_micro_step(z, 1, 3.0e19f) == 0, "stage %d: step with 3e19", stage);
    zero_last_step(z, &info);
    EXPECT(info.overflow == 1 && info.applied == 0 && info.skipped == 1 && info.step == 1,
           "stage %d: a gradient of 3e19 on rank %d: overflow %d applied %d skipped %lld", stage,
           world - 1, info.overflow, info.applied, (long long)info.skipped);
    EXPECT(digest(z) == before, "stage %d: parameters changed by the skipped step", stage);
    /* 1e19 squares to 1e38 < FLT_MAX: applied, and every parameter stays finite */
    EXPECT(good_micro_step(z, 2, 1.0e19f) == 0, "stage %d: step with 1e19", stage);
    zero_last_step(z, &info);
    EXPECT(info.overflow == 0 && info.applied == 1 && info.step == 2 && isfinite(info.grad_norm),
           "stage %d: a gradient of 1e19: overflow %d applied %d norm %g", stage, info.overflow,
           info.applied, (double)info.grad_norm);
    EXPECT(good_micro_step(z, 3, 0.0f) == 0, "stage %d: a normal step after", stage);
    zero_last_step(z, &info);
    EXPECT(info.applied == 1 && info.step == 3 && isfinite(info.grad_norm),
           "stage %d: training goes on: applied %d", stage, info.applied);
    if (stage < 3) /* the working parameters: all finite */
        for (int i = 0; i < NT; i++) {
            const float *p = zero_param_ptr(z, i);
            int bad = 0;
            for (size_t k = 0; p && k < sizes[i]; k++)
                bad += !isfinite(p[k]);
            EXPECT(p && bad == 0, "stage %d: tensor %s has %d non-finite parameters", stage,
                   names[i], bad);
        }
    zero_finalize(z);
}

int main(void)
{
    clear_zero_environment();
    make_tensors();
    /* a context to learn rank and world size (and start MPI) */
    zero_config c = host_config(2);
    zero_ctx *z = NULL;
    if (zero_init(&z, &c, tensors, NT) != ZERO_OK) {
        fprintf(stderr, "test_misuse: init failed: %s\n", zero_init_error());
        return 1;
    }
    rank = rank_hint = zero_rank(z);
    world = zero_world_size(z);
    zero_finalize(z);

    for (int stage = 0; stage <= 3; stage++) {
        test_kept_pointers(stage, 4096);
        if (stage >= 2) {
            test_refusal_changes_nothing(stage, 4096);
            test_refusal_changes_nothing(stage, (size_t)32 << 20);
        }
    }
    test_kept_pointers(3, (size_t)32 << 20);
    test_not_refused();
    test_finalized();
    test_dtypes();
    test_initial_values();
    for (int stage = 0; stage <= 3; stage += 1)
        test_huge_gradient(stage);

    if (rank == 0)
        printf("test_misuse: %d ranks, %d checks, %d failures\n", world, checks, failures);
    return failures != 0;
}
