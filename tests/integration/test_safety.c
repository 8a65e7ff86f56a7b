/* test_safety — collective safety at 2 or more ranks (run under mpirun -np 2 and -np 4): ranks
 * that issue different collectives fail together before anything reaches the weights, and a
 * stopped peer is a bounded wait (ZERO_TIMEOUT_S), never a hang, with the flight recorder's dump
 * (ZERO_DEBUG_DIR) naming the collective that timed out. Prints one PASS/FAIL line per case and
 * rank; rank 1 ends killed (it stopped itself), so the verdict is the last line rank 0 prints,
 * "test_safety: np N, F failures", F counting the failures of every rank that returned.
 *
 * `test_safety kill` (safety_kill.sh): rank 1 SIGKILLs itself in the middle of training; the
 * other ranks print what their zero_step returned if they get that far ("rank R returned
 * <status> after X s"). Whether libzero (ZERO_TIMEOUT_S) or mpirun (which aborts the job when a
 * rank dies of a signal) ends them is for the script to read from the output. */
#include <dirent.h>
#include <errno.h>
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

#include "../common/api_test.h"

enum { NT = 4, N = 1024 }; /* four modules of equal size: one chunk each at a 4 KiB bucket */
static float init_vals[NT][N];
static zero_tensor tensors[NT];

enum { STOP_TIMEOUT_S = 5, STOP_LIMIT_S = 15 }; /* the ZERO_TIMEOUT_S and bound */
enum { TAG_VERDICT = 71, TAG_GO = 72 };

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

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
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
 * reductions without complaint; rank r takes order r % 4, so at 4 ranks every rank differs from
 * every other): zero_step fails with ZERO_ERR_COMM on every rank, naming the collectives, and no
 * parameter changed. */
static void case_order(int rank)
{
    zero_config c = base_config();
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    EXPECT(s == ZERO_OK, "init: %s", zero_init_error());
    if (s)
        return;
    static const int orders[4][NT] = {{3, 2, 1, 0}, {2, 3, 0, 1}, {1, 0, 3, 2}, {0, 1, 2, 3}};
    float before[NT][N];
    for (int i = 0; i < NT; i++)
        memcpy(before[i], zero_param_ptr(z, i), sizeof before[i]);
    s = backward(z, orders[rank % 4]);
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
    fflush(stdout);
}

/* Stage 3 with one chunk for the whole model (the default bucket): rank 0 makes an extra
 * zero_gather / zero_release (an evaluation pass only it runs) before the backward every rank
 * makes. The ranks then wait in different collectives: each returns ZERO_ERR_COMM within the
 * timeout (or at once, when MPI sees the mismatch), none hangs, and zero_finalize returns. */
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
    fflush(stdout);
}

/* 1 when `path` has a line that names a collective of `kind` and says "timed out". */
static int dump_names(const char *path, const char *kind, char *first, size_t first_len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        if (strncmp(line, kind, strlen(kind)) == 0 && strstr(line, "timed out")) {
            found = 1;
            line[strcspn(line, "\n")] = 0;
            snprintf(first, first_len, "%s", line);
        }
    fclose(f);
    return found;
}

/* A fresh directory for this run's flight recorder dumps, made by rank 0 and named to all. */
static void make_debug_dir(int rank, char *dir, size_t len)
{
    memset(dir, 0, len);
    if (rank == 0) {
        const char *tmp = getenv("TMPDIR");
        snprintf(dir, len, "%s/zero-safety-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(dir)) {
            EXPECT(0, "mkdtemp %s: %s", dir, strerror(errno));
            dir[0] = 0;
        }
    }
    MPI_Bcast(dir, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
}

static void remove_debug_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1200];
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "zero-flight-rank", 16) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

typedef struct verdict {
    int failures;
    int status;
    double waited;
} verdict;

/* Rank 1 stops itself (SIGSTOP) before its backward. Every other rank's wait for a reduction
 * (inside zero_grad_ptr or zero_step) ends after ZERO_TIMEOUT_S=5 s, well within 15 s, and
 * zero_step returns ZERO_ERR_COMM; each of them finds the reduce-scatter it waited for marked
 * "timed out" in the flight recorder it wrote to ZERO_DEBUG_DIR. The waiting ranks send their
 * verdicts to rank 0 (point to point on MPI_COMM_WORLD; rank 1 sent its own, the earlier cases'
 * failures, before it stopped); once it has them all, rank 0 prints the verdict line, lets the
 * others exit, and kills rank 1, which would never continue. Returns on rank 0 only (and on
 * every rank when zero_init failed). */
static void case_stopped_peer(int rank, int world)
{
    char dir[1024];
    make_debug_dir(rank, dir, sizeof dir);
    if (dir[0])
        setenv("ZERO_DEBUG_DIR", dir, 1); /* env only; read by zero_init */
    zero_config c = base_config();
    c.timeout_s = (float)STOP_TIMEOUT_S;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    unsetenv("ZERO_DEBUG_DIR");
    EXPECT(s == ZERO_OK, "init: %s", zero_init_error());
    if (s) { /* every rank failed alike (zero_init agrees): nobody stopped */
        if (rank == 0)
            printf("test_safety: np %d, %d failures (stopped peer: init failed)\n", world,
                   failures);
        return;
    }
    double *pids = calloc((size_t)world, sizeof *pids);
    pids[rank] = (double)getpid();
    EXPECT(zero_allreduce_sum(z, pids, world) == ZERO_OK, "pid exchange");
    const pid_t stopped = (pid_t)pids[1];
    free(pids);
    static const int down[NT] = {3, 2, 1, 0};
    if (rank == 1) {
        verdict early = {failures, 0, 0.0}; /* the earlier cases' failures of this rank */
        MPI_Send(&early, (int)sizeof early, MPI_BYTE, 0, TAG_VERDICT, MPI_COMM_WORLD);
        fflush(NULL);
        raise(SIGSTOP); /* until rank 0 kills it */
        _exit(3);       /* not reached: SIGCONT would be a bug of this test */
    }
    double t0 = now_s();
    s = backward(z, down); /* a NULL gradient pointer (its bucket's wait timed out) is STATE */
    if (!s || s == ZERO_ERR_STATE) /* then the step: the timeout, or refused after it */
        s = zero_step(z);
    double waited = now_s() - t0;
    const int before = failures;
    EXPECT(s == ZERO_ERR_COMM, "stopped peer: %s, expected ZERO_ERR_COMM",
           zero_status_string(s));
    EXPECT(waited >= STOP_TIMEOUT_S - 0.5 && waited <= STOP_LIMIT_S,
           "waited %.1f s with ZERO_TIMEOUT_S=%d (allowed: up to %d s)", waited, STOP_TIMEOUT_S,
           STOP_LIMIT_S);
    EXPECT(strstr(zero_last_error(z), "ZERO_TIMEOUT_S") != NULL, "message: %s",
           zero_last_error(z));
    zero_finalize(z);
    char path[1200], line[512] = "";
    snprintf(path, sizeof path, "%s/zero-flight-rank%d-%ld.txt", dir, rank, (long)getpid());
    int named = dir[0] && dump_names(path, "reduce_scatter", line, sizeof line);
    EXPECT(named, "flight recorder %s: no reduce_scatter line that says \"timed out\"", path);
    printf("rank %d %s stopped peer: %s after %.1f s (ZERO_TIMEOUT_S=%d); flight recorder: "
           "%s\n",
           rank, failures == before ? "PASS" : "FAIL", zero_status_string(s), waited,
           STOP_TIMEOUT_S, named ? line : "(no timed-out reduce_scatter)");
    fflush(stdout);

    verdict mine = {failures, (int)s, waited};
    if (rank != 0) {
        MPI_Send(&mine, (int)sizeof mine, MPI_BYTE, 0, TAG_VERDICT, MPI_COMM_WORLD);
        /* Stay until rank 0 has printed the verdict (its kill of rank 1 makes mpirun end the
         * job, which may end this rank first: that is fine now). */
        int go = 0, done = 0;
        MPI_Request r;
        MPI_Irecv(&go, 1, MPI_INT, 0, TAG_GO, MPI_COMM_WORLD, &r);
        for (double t = now_s(); !done && now_s() - t < 60.0; nap_ms(10))
            MPI_Test(&r, &done, MPI_STATUS_IGNORE);
        _exit(failures != 0);
    }
    /* rank 0: rank 1's (sent before it stopped) and every waiting rank's verdict, for at most
     * 30 s each (they all returned already) */
    int total = failures, missing = 0;
    for (int r = 1; r < world; r++) {
        verdict v = {0, 0, 0.0};
        MPI_Request q;
        int done = 0;
        MPI_Irecv(&v, (int)sizeof v, MPI_BYTE, r, TAG_VERDICT, MPI_COMM_WORLD, &q);
        for (double t = now_s(); !done && now_s() - t < 30.0; nap_ms(10))
            MPI_Test(&q, &done, MPI_STATUS_IGNORE);
        if (!done) {
            EXPECT(0, "no verdict from rank %d within 30 s", r);
            missing++;
            MPI_Cancel(&q);
            continue;
        }
        total += v.failures;
    }
    if (total == 0 && dir[0])
        remove_debug_dir(dir);
    else if (dir[0])
        printf("test_safety: flight recorder dumps kept in %s\n", dir);
    printf("test_safety: np %d, %d failures%s\n", world, total,
           missing ? " (verdicts missing)" : "");
    fflush(NULL);
    for (int r = 2; r < world; r++) {
        int go = 1;
        MPI_Send(&go, 1, MPI_INT, r, TAG_GO, MPI_COMM_WORLD);
    }
    kill(stopped, SIGKILL);
    failures = total;
}

/* `kill` mode: two clean steps, then rank 1 dies of SIGKILL before its third backward; the
 * others report what their third step returned (if mpirun has not ended them first). */
static int kill_mode(int rank)
{
    zero_config c = base_config();
    c.timeout_s = (float)STOP_TIMEOUT_S;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    if (s) {
        printf("rank %d FAIL kill: init %s: %s\n", rank, zero_status_string(s),
               zero_init_error());
        return 1;
    }
    static const int down[NT] = {3, 2, 1, 0};
    for (int step = 0; step < 2 && !s; step++) {
        s = backward(z, down);
        if (!s)
            s = zero_step(z);
    }
    if (s) {
        printf("rank %d FAIL kill: clean step: %s: %s\n", rank, zero_status_string(s),
               zero_last_error(z));
        return 1;
    }
    printf("rank %d: 2 steps done\n", rank);
    fflush(NULL);
    if (rank == 1)
        raise(SIGKILL);
    double t0 = now_s();
    s = backward(z, down);
    if (!s || s == ZERO_ERR_STATE)
        s = zero_step(z);
    double waited = now_s() - t0;
    /* the verdict line short and on its own (a long line may be cut by stderr's in mpirun's
     * merged output), the message after it */
    printf("rank %d returned %s after %.1f s (ZERO_TIMEOUT_S=%d)\n", rank,
           zero_status_string(s), waited, STOP_TIMEOUT_S);
    fflush(stdout);
    printf("rank %d message: %s\n", rank, zero_last_error(z));
    zero_status f = zero_finalize(z);
    printf("rank %d finalize %s\n", rank, zero_status_string(f));
    fflush(NULL);
    return s != ZERO_ERR_COMM;
}

int main(int argc, char **argv)
{
    clear_zero_environment();
    setenv("ZERO_DEVICE", "host", 1);
    make_tensors();
    MPI_Init(&argc, &argv);
    int rank = 0, world = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    rank_hint = rank;
    if (world < 2) {
        fprintf(stderr, "test_safety: run with mpirun -np 2 or more (got %d ranks)\n", world);
        return 2;
    }
    if (argc > 1 && strcmp(argv[1], "kill") == 0)
        _exit(kill_mode(rank)); /* no MPI_Finalize: a peer is dead */
    if (argc > 1) {
        fprintf(stderr, "test_safety: unknown mode %s (expected none or kill)\n", argv[1]);
        return 2;
    }
    case_order(rank);
    case_extra_gather(rank);
    case_stopped_peer(rank, world); /* last: rank 1 ends here, killed; ranks >= 2 exit here */
    fflush(NULL);
    /* MPI_Finalize would wait for rank 1; libzero already skips it after a broken collective */
    _exit(failures != 0);
}
