/* test_nccl.c — the nccl collective backend (runtime/comm_nccl.h) at the world size it is started
 * with (1 without mpirun; N under mpirun, one GPU per rank on each node). Inputs are small
 * integers, so every sum and maximum is exact in fp32, bf16 and fp16 whatever order NCCL adds in,
 * and each result is checked against the value it must have (nccl-tests "verifiable" style).
 * Every call's bus bytes and call count are checked against the nccl-tests formulas (the same
 * counters comm_mpi.c fills). Then: requests, grouped calls, the counting switch, argument
 * errors that leave the communicator usable, and the timeout: a comm stream held back by a host
 * function makes the wait give up after the timeout, abort the communicator and return
 * ZERO_ERR_COMM; a new communicator then works. Exit 0, 1 on a failure (any rank), 77 without
 * a GPU for every rank. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>
#include <mpi.h>

#include "gpu_test.h"
#include "kernels/kernels.h"
#include "runtime/comm.h"
#include "runtime/comm_nccl.h"
#include "runtime/device.h"
#include "runtime/device_cuda.h"

static zr_comm g_c;
static zr_device g_dev;
static zr_nccl *g_n;

static const zr_elem elems[3] = {ZR_ELEM_F32, ZR_ELEM_BF16, ZR_ELEM_F16};
static const size_t counts[] = {1, 7, 4099, (1u << 20) + 3};
#define NUM_COUNTS (sizeof counts / sizeof counts[0])

static const char *elem_name(zr_elem e)
{
    return e == ZR_ELEM_F32 ? "f32" : e == ZR_ELEM_BF16 ? "bf16" : "f16";
}

static zero_dtype dtype_of(zr_elem e)
{
    return e == ZR_ELEM_BF16 ? ZERO_DTYPE_BF16 : e == ZR_ELEM_F16 ? ZERO_DTYPE_FP16 : ZERO_DTYPE_FP32;
}

/* Rank r's input at index i: 1..13, so sums over up to 19 ranks stay below 256 (exact in bf16). */
static float val(int r, size_t i) { return (float)(((size_t)r * 5 + i * 3) % 13 + 1); }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of host memory\n");
        exit(1);
    }
    return p;
}

static void *dalloc(size_t bytes)
{
    void *p = NULL;
    zr_error e = {0};
    if (zr_device_alloc(&g_dev, ZERO_MEM_BUFFERS, bytes, "nccl test buffer", &p, &e) != ZERO_OK) {
        fprintf(stderr, "FAIL: %s\n", e.msg);
        exit(1);
    }
    return p;
}

static void dfree(void *p, size_t bytes) { zr_device_free(&g_dev, ZERO_MEM_BUFFERS, p, bytes); }

/* n floats -> device buffer of elem e (exact: all test values are representable). */
static void put(void *d, zr_elem e, const float *h, size_t n)
{
    void *tmp = xmalloc(n * zr_elem_size(e));
    zk_cast(tmp, dtype_of(e), h, ZERO_DTYPE_FP32, n);
    zr_dev_copy(&g_dev, d, tmp, n * zr_elem_size(e));
    free(tmp);
}

static void get(float *h, zr_elem e, const void *d, size_t n)
{
    void *tmp = xmalloc(n * zr_elem_size(e));
    zr_dev_copy(&g_dev, tmp, d, n * zr_elem_size(e));
    zk_cast(h, ZERO_DTYPE_FP32, tmp, dtype_of(e), n);
    free(tmp);
}

static size_t mismatches(const float *got, const float *want, size_t n, size_t *first)
{
    size_t bad = 0;
    *first = n;
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i] && bad++ == 0)
            *first = i;
    return bad;
}

/* The counters moved by exactly one call of `kind` and `bus` bytes. */
static void check_counted(zr_coll_kind kind, double bytes_before, int64_t calls_before, double bus,
                          const char *what)
{
    /* Not bit-equality: all_reduce's 2n(N-1)/N is fractional at N = 3, so the running sum
     * rounds; a relative 1e-12 still catches any wrong formula. */
    const double moved = g_c.bus_bytes[kind] - bytes_before;
    const double tol = 1e-12 * (bytes_before + bus + 1.0);
    CHECK(moved - bus <= tol && bus - moved <= tol && g_c.calls[kind] == calls_before + 1,
          "%s: counted %.0f bytes in %lld calls, expected %.0f in 1", what, moved,
          (long long)(g_c.calls[kind] - calls_before), bus);
}

static void expect_ok(zero_status s, const char *what)
{
    CHECK(s == ZERO_OK, "%s: %s: %s", what, zero_status_string(s), g_c.err.msg);
}

/* ---- the four collectives, blocking --------------------------------------------------------- */

static void test_collectives(void)
{
    const int R = g_c.world, me = g_c.rank;
    for (int ei = 0; ei < 3; ei++)
        for (size_t k = 0; k < NUM_COUNTS; k++) {
            const zr_elem e = elems[ei];
            const size_t n = counts[k], es = zr_elem_size(e), total = n * (size_t)R;
            float *h = xmalloc(total * sizeof(float)), *want = xmalloc(total * sizeof(float));
            float *got = xmalloc(total * sizeof(float));
            void *d = dalloc(total * es), *d2 = dalloc(n * es);
            char what[96];
            size_t first;

            /* all_gather in place: block r holds rank r's values afterwards. */
            for (size_t i = 0; i < total; i++) {
                const int owner = (int)(i / n);
                h[i] = owner == me ? val(me, i % n) : -1000.0f;
                want[i] = val(owner, i % n);
            }
            put(d, e, h, total);
            snprintf(what, sizeof what, "all_gather %s n=%zu", elem_name(e), n);
            double b0 = g_c.bus_bytes[ZR_COLL_ALL_GATHER];
            int64_t c0 = g_c.calls[ZR_COLL_ALL_GATHER];
            expect_ok(zr_nccl_all_gather(g_n, d, n, e, ZR_TRAFFIC_TRAIN, NULL), what);
            check_counted(ZR_COLL_ALL_GATHER, b0, c0, (double)n * es * (R - 1), what);
            get(got, e, d, total);
            size_t bad = mismatches(got, want, total, &first);
            CHECK(bad == 0, "%s: %zu wrong, first at %zu (%g, want %g)", what, bad, first,
                  bad ? got[first] : 0.0, bad ? want[first] : 0.0);

            /* reduce_scatter: element j of every rank's send is val(rank, j). */
            for (size_t j = 0; j < total; j++)
                h[j] = val(me, j);
            for (size_t i = 0; i < n; i++) {
                float s = 0.0f;
                for (int r = 0; r < R; r++)
                    s += val(r, (size_t)me * n + i);
                want[i] = s;
            }
            put(d, e, h, total);
            snprintf(what, sizeof what, "reduce_scatter %s n=%zu", elem_name(e), n);
            b0 = g_c.bus_bytes[ZR_COLL_REDUCE_SCATTER];
            c0 = g_c.calls[ZR_COLL_REDUCE_SCATTER];
            expect_ok(zr_nccl_reduce_scatter(g_n, d, d2, n, e, ZR_TRAFFIC_TRAIN, NULL), what);
            check_counted(ZR_COLL_REDUCE_SCATTER, b0, c0, (double)n * es * (R - 1), what);
            get(got, e, d2, n);
            bad = mismatches(got, want, n, &first);
            CHECK(bad == 0, "%s: %zu wrong, first at %zu (%g, want %g)", what, bad, first,
                  bad ? got[first] : 0.0, bad ? want[first] : 0.0);

            /* all_reduce, sum and max */
            for (int op = 0; op < 2; op++) {
                for (size_t i = 0; i < n; i++) {
                    h[i] = val(me, i);
                    float s = 0.0f, mx = 0.0f;
                    for (int r = 0; r < R; r++) {
                        s += val(r, i);
                        mx = val(r, i) > mx ? val(r, i) : mx;
                    }
                    want[i] = op ? mx : s;
                }
                put(d2, e, h, n);
                snprintf(what, sizeof what, "all_reduce %s %s n=%zu", op ? "max" : "sum",
                         elem_name(e), n);
                b0 = g_c.bus_bytes[ZR_COLL_ALL_REDUCE];
                c0 = g_c.calls[ZR_COLL_ALL_REDUCE];
                expect_ok(zr_nccl_all_reduce(g_n, d2, n, e, op ? ZR_OP_MAX : ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL),
                          what);
                check_counted(ZR_COLL_ALL_REDUCE, b0, c0, 2.0 * (double)n * es * (R - 1) / R,
                              what);
                get(got, e, d2, n);
                bad = mismatches(got, want, n, &first);
                CHECK(bad == 0, "%s: %zu wrong, first at %zu (%g, want %g)", what, bad, first,
                      bad ? got[first] : 0.0, bad ? want[first] : 0.0);
            }

            /* broadcast from the last rank */
            const int root = R - 1;
            for (size_t i = 0; i < n; i++) {
                h[i] = me == root ? val(root, i) : -1000.0f;
                want[i] = val(root, i);
            }
            put(d2, e, h, n);
            snprintf(what, sizeof what, "broadcast %s n=%zu root=%d", elem_name(e), n, root);
            b0 = g_c.bus_bytes[ZR_COLL_BROADCAST];
            c0 = g_c.calls[ZR_COLL_BROADCAST];
            expect_ok(zr_nccl_broadcast(g_n, d2, n, e, root, ZR_TRAFFIC_TRAIN, NULL), what);
            check_counted(ZR_COLL_BROADCAST, b0, c0, R > 1 ? (double)n * es : 0.0, what);
            get(got, e, d2, n);
            bad = mismatches(got, want, n, &first);
            CHECK(bad == 0, "%s: %zu wrong, first at %zu", what, bad, first);

            dfree(d, total * es);
            dfree(d2, n * es);
            free(h), free(want), free(got);
        }
    REPORT_LINE("all_gather, reduce_scatter, all_reduce sum/max, broadcast: f32/bf16/f16 x %zu "
                "counts at world %d, exact values and bus bytes",
                NUM_COUNTS, g_c.world);
}

/* ---- requests, groups, counting switch, other element types -------------------------------- */

static void test_async(void)
{
    const int R = g_c.world, me = g_c.rank;
    const size_t n = 100003;
    float *h = xmalloc(n * sizeof(float)), *want = xmalloc(n * sizeof(float));
    float *got = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        h[i] = val(me, i);
        float s = 0.0f;
        for (int r = 0; r < R; r++)
            s += val(r, i);
        want[i] = s;
    }
    void *a = dalloc(n * 4), *b = dalloc(n * 2);
    size_t first;

    /* one request, completed by zr_nccl_test polling, then zr_nccl_wait on the inactive one */
    zr_nccl_request req = ZR_NCCL_REQUEST_INIT;
    put(a, ZR_ELEM_F32, h, n);
    expect_ok(zr_nccl_all_reduce(g_n, a, n, ZR_ELEM_F32, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, &req), "async all_reduce");
    CHECK(req.active, "the request is not active after an asynchronous call");
    int done = 0;
    for (int polls = 0; !done && polls < 10000000; polls++)
        expect_ok(zr_nccl_test(g_n, &req, &done), "zr_nccl_test");
    CHECK(done && !req.active, "zr_nccl_test never saw the request complete");
    expect_ok(zr_nccl_wait(g_n, &req), "zr_nccl_wait on a completed request");
    get(got, ZR_ELEM_F32, a, n);
    CHECK(mismatches(got, want, n, &first) == 0, "async all_reduce: wrong at %zu", first);

    /* a group of two all_reduces with one request; zr_nccl_wait */
    put(a, ZR_ELEM_F32, h, n);
    put(b, ZR_ELEM_BF16, h, n);
    const int64_t calls0 = g_c.calls[ZR_COLL_ALL_REDUCE];
    expect_ok(zr_nccl_group_start(g_n), "group start");
    expect_ok(zr_nccl_all_reduce(g_n, a, n, ZR_ELEM_F32, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL), "grouped f32");
    expect_ok(zr_nccl_all_reduce(g_n, b, n, ZR_ELEM_BF16, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL), "grouped bf16");
    CHECK(zr_nccl_all_reduce(g_n, b, n, ZR_ELEM_BF16, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, &req) == ZERO_ERR_INVALID,
          "a request inside a group was accepted");
    expect_ok(zr_nccl_group_end(g_n, &req), "group end");
    expect_ok(zr_nccl_wait(g_n, &req), "wait for the group");
    CHECK(g_c.calls[ZR_COLL_ALL_REDUCE] == calls0 + 2, "a group of 2 counted %lld calls",
          (long long)(g_c.calls[ZR_COLL_ALL_REDUCE] - calls0));
    get(got, ZR_ELEM_F32, a, n);
    CHECK(mismatches(got, want, n, &first) == 0, "grouped f32: wrong at %zu", first);
    get(got, ZR_ELEM_BF16, b, n);
    CHECK(mismatches(got, want, n, &first) == 0, "grouped bf16: wrong at %zu", first);
    zr_nccl_request_destroy(&req);

    /* other traffic: the bytes go to other_bus_bytes */
    const double other0 = g_c.other_bus_bytes, ar0 = g_c.bus_bytes[ZR_COLL_ALL_REDUCE];
    expect_ok(zr_nccl_all_reduce(g_n, a, n, ZR_ELEM_F32, ZR_OP_SUM, ZR_TRAFFIC_OTHER, NULL),
              "uncounted");
    const double other = g_c.other_bus_bytes - other0, expect = 2.0 * (double)n * 4 * (R - 1) / R;
    CHECK(g_c.bus_bytes[ZR_COLL_ALL_REDUCE] == ar0 && other - expect < 1e-3 &&
              expect - other < 1e-3,
          "ZR_TRAFFIC_OTHER did not move the bytes to other_bus_bytes");

    /* f64 and i64 sums (metrics, counters) */
    double *hd = xmalloc(n * sizeof(double));
    int64_t *hi = xmalloc(n * sizeof(int64_t));
    for (size_t i = 0; i < n; i++)
        hd[i] = val(me, i) * 0.5, hi[i] = (int64_t)val(me, i) << 40;
    void *dd = dalloc(n * 8);
    zr_dev_copy(&g_dev, dd, hd, n * 8);
    expect_ok(zr_nccl_all_reduce(g_n, dd, n, ZR_ELEM_F64, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL), "f64 all_reduce");
    zr_dev_copy(&g_dev, hd, dd, n * 8);
    zr_dev_copy(&g_dev, dd, hi, n * 8);
    expect_ok(zr_nccl_all_reduce(g_n, dd, n, ZR_ELEM_I64, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL), "i64 all_reduce");
    zr_dev_copy(&g_dev, hi, dd, n * 8);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += hd[i] != want[i] * 0.5 || hi[i] != (int64_t)want[i] << 40;
    CHECK(bad == 0, "f64/i64 all_reduce: %zu wrong", bad);
    dfree(dd, n * 8);
    free(hd), free(hi);

    /* argument errors: refused, communicator still usable */
    CHECK(zr_nccl_group_end(g_n, NULL) == ZERO_ERR_INVALID, "group end without start accepted");
    CHECK(zr_nccl_broadcast(g_n, a, n, ZR_ELEM_F32, R, ZR_TRAFFIC_TRAIN, NULL) == ZERO_ERR_INVALID,
          "a root outside the world accepted");
    CHECK(zr_nccl_all_reduce(g_n, a, n, (zr_elem)99, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL) == ZERO_ERR_INVALID,
          "an unknown element type accepted");
    put(a, ZR_ELEM_F32, h, n);
    expect_ok(zr_nccl_all_reduce(g_n, a, n, ZR_ELEM_F32, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL), "after refused calls");
    get(got, ZR_ELEM_F32, a, n);
    CHECK(mismatches(got, want, n, &first) == 0, "after refused calls: wrong at %zu", first);
    CHECK(!zr_nccl_aborted(g_n), "argument errors aborted the communicator");

    dfree(a, n * 4);
    dfree(b, n * 2);
    free(h), free(want), free(got);
    REPORT_LINE("requests (test, wait), a group with one request, counting switch, f64/i64, "
                "refused arguments");
}

/* ---- timeout ------------------------------------------------------------------------------ */

static atomic_int g_release;

/* Holds the comm stream until released (or 10 s, so the test cannot hang the GPU). */
static void CUDART_CB hold_stream(void *arg)
{
    const double t0 = now_s();
    while (!atomic_load(&g_release) && now_s() - t0 < 10.0) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void test_timeout(void)
{
    cudaStream_t s = zr_nccl_stream(g_n);
    atomic_store(&g_release, 0);
    GT_CUDA(cudaLaunchHostFunc(s, hold_stream, NULL));
    zr_nccl_set_timeout(g_n, 1.0);
    const double t0 = now_s();
    zero_status st = zr_nccl_wait(g_n, NULL);
    const double waited = now_s() - t0;
    atomic_store(&g_release, 1);
    CHECK(st == ZERO_ERR_COMM, "a held stream: wait returned %s", zero_status_string(st));
    CHECK(waited >= 1.0 && waited < 60.0, "gave up after %.2f s, timeout 1 s", waited);
    CHECK(strstr(g_c.err.msg, "did not complete") && strstr(g_c.err.msg, "aborted"),
          "message: %s", g_c.err.msg);
    CHECK(zr_nccl_aborted(g_n), "not aborted after the timeout");
    GT_CUDA(cudaStreamSynchronize(s));
    void *a = dalloc(64);
    CHECK(zr_nccl_all_reduce(g_n, a, 16, ZR_ELEM_F32, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL) == ZERO_ERR_COMM,
          "a call on an aborted communicator did not fail");
    zr_nccl_destroy(g_n);
    g_n = NULL;

    /* The process goes on: a new communicator works. */
    st = zr_nccl_init(&g_n, &g_c, zr_cuda_device_ordinal(&g_dev),
                      zr_cuda_stream_get(&g_dev, ZR_STREAM_COMM), 60.0);
    CHECK(st == ZERO_OK, "a new communicator after the abort: %s", g_c.err.msg);
    if (st == ZERO_OK) {
        float h[16], got[16];
        for (int i = 0; i < 16; i++)
            h[i] = 1.0f;
        put(a, ZR_ELEM_F32, h, 16);
        expect_ok(zr_nccl_all_reduce(g_n, a, 16, ZR_ELEM_F32, ZR_OP_SUM, ZR_TRAFFIC_TRAIN, NULL), "new communicator");
        get(got, ZR_ELEM_F32, a, 16);
        CHECK(got[0] == (float)g_c.world && got[15] == (float)g_c.world,
              "new communicator: %g, want %d", got[0], g_c.world);
    }
    dfree(a, 64);
    REPORT_LINE("timeout: a held comm stream ends in ZERO_ERR_COMM after %.1f s with the "
                "communicator aborted; a new communicator works",
                waited);
}

int main(void)
{
    if (zr_comm_init(&g_c) != ZERO_OK) {
        fprintf(stderr, "FAIL: zr_comm_init: %s\n", g_c.err.msg);
        return 1;
    }
    /* Every rank needs a GPU of its own on its node, or all skip together. */
    char why[256] = "";
    int count = 0;
    int mine = zr_cuda_usable(why, sizeof why);
    if (mine && cudaGetDeviceCount(&count) == cudaSuccess && g_c.local_size > count) {
        snprintf(why, sizeof why, "%d ranks on this node but %d GPUs", g_c.local_size, count);
        mine = 0;
    }
    int all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, g_c.comm);
    if (!all) {
        if (g_c.rank == 0 || !mine)
            printf("SKIP (rank %d): %s\n", g_c.rank, mine ? "another rank has no GPU" : why);
        zr_comm_destroy(&g_c);
        return GT_SKIP;
    }
    char err[256];
    if (zr_device_cuda_init(&g_dev, g_c.local_rank, 0, NULL, err, sizeof err) != ZERO_OK) {
        fprintf(stderr, "FAIL: zr_device_cuda_init: %s\n", err);
        return 1;
    }
    zero_status s = zr_nccl_init(&g_n, &g_c, zr_cuda_device_ordinal(&g_dev),
                                 zr_cuda_stream_get(&g_dev, ZR_STREAM_COMM), 120.0);
    if (s != ZERO_OK) {
        fprintf(stderr, "FAIL: zr_nccl_init: %s\n", g_c.err.msg);
        return 1;
    }
    if (g_c.rank == 0) {
        const int v = zr_nccl_version();
        printf("nccl %d.%d.%d, world %d\n", v / 10000, v / 100 % 100, v % 100, g_c.world);
    }
    rnd_seed(42);
    test_collectives();
    test_async();
    test_timeout();
    zr_nccl_destroy(g_n);
    zr_device_cuda_destroy(&g_dev);

    int failures = 0;
    MPI_Allreduce(&check_failures, &failures, 1, MPI_INT, MPI_SUM, g_c.comm);
    if (g_c.rank == 0)
        printf("%s: %d failed checks over %d ranks\n", failures ? "FAILED" : "passed", failures,
               g_c.world);
    zr_comm_destroy(&g_c);
    return failures ? 1 : 0;
}
