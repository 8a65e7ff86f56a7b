/* test_safety — collective safety at 2 ranks (run under mpirun -np 2): ranks that issue
 * different collectives fail together before anything reaches the weights, and a stopped peer
 * is a bounded wait (ZERO_TIMEOUT_S), never a hang. Prints one PASS/FAIL line per case; the last
 * line says "test_safety: N failures". */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include "zero.h"

static int failures, rank_g;

#define EXPECT(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            failures++;                                                                       \
            fprintf(stderr, "rank %d FAIL %s:%d: ", rank_g, __FILE__, __LINE__);              \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

enum { NT = 4, N = 1024 }; /* four modules of equal size: one chunk each at a 4 KiB bucket */
static float init_vals[NT][N];
static zero_tensor tensors[NT];

static void make_tensors(void)
{
    static const char *names[NT] = {"m0", "m1", "m2", "m3"};
    for (int i = 0; i < NT; i++) {
        tensors[i] = (zero_tensor){.name = names[i], .numel = N, .module = i, .init = init_vals[i]};
        for (int k = 0; k < N; k++)
            init_vals[i][k] = 0.001f * (float)((k * 7 + i * 13) % 29);
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Backward over the modules in `order`: gradient 0.01 everywhere, then ready. */
static zero_status backward(zero_ctx *z, const int *order)
{
    float g[N];
    for (int k = 0; k < N; k++)
        g[k] = 0.01f;
    for (int j = 0; j < NT; j++) {
        int m = order[j];
        void *p = zero_grad_ptr(z, m);
        if (!p)
            return ZERO_ERR_STATE;
        zero_accumulate(p, ZERO_DTYPE_FP32, g, N);
        zero_status s = zero_grad_ready(z, m);
        if (s)
            return s;
    }
    return ZERO_OK;
}

static zero_config base_config(void)
{
    zero_config c = ZERO_CONFIG_INIT;
    c.stage = 2;
    c.bucket_bytes = 4096;
    c.timeout_s = 3.0f;
    return c;
}

/* Ranks that report modules ready in different orders (equal-size chunks, so MPI matches the
 * reductions without complaint): zero_step fails with ZERO_ERR_COMM on both ranks, naming the
 * collectives, and no parameter changed. */
static void case_order(int rank)
{
    zero_config c = base_config();
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    EXPECT(s == ZERO_OK, "init: %s", zero_init_error());
    if (s)
        return;
    static const int down[NT] = {3, 2, 1, 0}, other[NT] = {2, 3, 0, 1};
    float before[NT][N];
    for (int i = 0; i < NT; i++)
        memcpy(before[i], zero_param_ptr(z, i), sizeof before[i]);
    s = backward(z, rank == 0 ? down : other);
    if (!s)
        s = zero_step(z);
    EXPECT(s == ZERO_ERR_COMM, "different orders: %s, expected ZERO_ERR_COMM",
           zero_status_string(s));
    EXPECT(strstr(zero_last_error(z), "different collectives") != NULL, "message: %s",
           zero_last_error(z));
    int same = 1;
    for (int i = 0; i < NT; i++)
        same &= memcmp(before[i], zero_param_ptr(z, i), sizeof before[i]) == 0;
    EXPECT(same, "a parameter changed although the step failed");
    EXPECT(zero_step(z) == ZERO_ERR_COMM, "a step after the failure was not refused");
    zero_finalize(z);
    printf("rank %d %s order: %s\n", rank, s == ZERO_ERR_COMM && same ? "PASS" : "FAIL",
           "different collectives detected before the update");
}

/* Stage 3 with one chunk for the whole model (the default bucket): rank 0 makes an extra
 * zero_gather / zero_release (an evaluation pass only it runs) before the backward both make.
 * The ranks then wait in different collectives: each returns ZERO_ERR_COMM within the timeout
 * (or at once, when MPI sees the mismatch), none hangs, and zero_finalize returns. */
static void case_extra_gather(int rank)
{
    zero_config c = base_config();
    c.stage = 3;
    c.bucket_bytes = (size_t)32 << 20; /* one chunk */
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    EXPECT(s == ZERO_OK, "init: %s", zero_init_error());
    if (s)
        return;
    double t0 = now_s();
    if (rank == 0) {
        s = zero_gather(z, 1);
        if (!s)
            s = zero_release(z, 1);
    }
    static const int down[NT] = {3, 2, 1, 0};
    for (int m = NT - 1; m >= 0 && !s; m--)
        s = zero_gather(z, m); /* the "forward": every module gathered */
    for (int m = 0; m < NT && !s; m++)
        s = zero_release(z, m);
    if (!s)
        s = backward(z, down);
    if (!s || s == ZERO_ERR_STATE)
        s = zero_step(z);
    double waited = now_s() - t0;
    EXPECT(s == ZERO_ERR_COMM, "extra gather on rank 0: %s, expected ZERO_ERR_COMM (%s)",
           zero_status_string(s), zero_last_error(z));
    EXPECT(waited < 30.0, "waited %.1f s with ZERO_TIMEOUT_S=3", waited);
    zero_status f = zero_finalize(z);
    printf("rank %d %s extra gather: %s after %.1f s, finalize %s\n", rank,
           s == ZERO_ERR_COMM && waited < 30.0 ? "PASS" : "FAIL", zero_status_string(s), waited,
           zero_status_string(f));
}

/* Rank 1 stops itself (SIGSTOP) before its backward: rank 0's wait for a reduction (inside
 * zero_grad_ptr or zero_step) ends after the timeout (3 s) plus a margin, and zero_step returns
 * ZERO_ERR_COMM; then rank 0 kills rank 1 (which would never continue) and finalizes. */
static void case_stopped_peer(int rank)
{
    zero_config c = base_config();
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    EXPECT(s == ZERO_OK, "init: %s", zero_init_error());
    if (s)
        return;
    double pids[2] = {0.0, 0.0};
    pids[rank] = (double)getpid();
    EXPECT(zero_allreduce_sum(z, pids, 2) == ZERO_OK, "pid exchange");
    static const int down[NT] = {3, 2, 1, 0};
    if (rank == 1) {
        fflush(NULL);
        raise(SIGSTOP); /* until rank 0 kills it */
    }
    double t0 = now_s();
    s = backward(z, down); /* a NULL gradient pointer (its bucket's wait timed out) is STATE */
    if (!s || s == ZERO_ERR_STATE) /* then the step: the timeout, or refused after it */
        s = zero_step(z);
    double waited = now_s() - t0;
    EXPECT(s == ZERO_ERR_COMM, "stopped peer: %s, expected ZERO_ERR_COMM",
           zero_status_string(s));
    EXPECT(waited >= 2.5 && waited < 30.0, "waited %.1f s with ZERO_TIMEOUT_S=3", waited);
    EXPECT(strstr(zero_last_error(z), "ZERO_TIMEOUT_S") != NULL, "message: %s",
           zero_last_error(z));
    kill((pid_t)pids[1], SIGKILL);
    zero_finalize(z);
    printf("rank 0 %s stopped peer: ZERO_ERR_COMM after %.1f s: %s\n",
           s == ZERO_ERR_COMM && waited >= 2.5 && waited < 30.0 ? "PASS" : "FAIL", waited,
           zero_status_string(s));
}

int main(int argc, char **argv)
{
    setenv("ZERO_DEVICE", "host", 1);
    make_tensors();
    MPI_Init(&argc, &argv);
    int rank = 0, world = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    rank_g = rank;
    if (world != 2) {
        fprintf(stderr, "test_safety: run with mpirun -np 2 (got %d ranks)\n", world);
        return 2;
    }
    case_order(rank);
    case_extra_gather(rank);
    case_stopped_peer(rank); /* last: rank 1 ends here, killed */
    printf("test_safety: rank %d, %d failures\n", rank, failures);
    fflush(NULL);
    /* MPI_Finalize would wait for rank 1; libzero already skips it after a broken collective */
    _exit(failures != 0);
}
