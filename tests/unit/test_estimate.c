/* test_estimate.c — checks partition/estimate.c: per-rank device and host model-state bytes for
 * every stage × offload setting against hand-computed numbers, the invalid combinations, the
 * max-Ψ bisection (Ψ fits, Ψ + 1 does not) and the GPT-2 parameter count. Exits non-zero on a
 * failure. */
#include "partition/partition.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Failures print "FAIL file:line: cond: message", the first CHECK_SHOWN_TOTAL of them. */
#define CHECK_STYLE CHECK_STYLE_EXPR
#include "tests/common/check.h"

enum { NONE = 0, CPU = 1 };

/* zp_state_bytes must succeed with exactly (want_dev, want_host). */
static void expect(int line, int stage, size_t p, uint64_t psi, int world, int opt, int param,
                   uint64_t want_dev, uint64_t want_host)
{
    uint64_t dev = 1, host = 1;
    int rc = zp_state_bytes(stage, p, psi, world, opt, param, &dev, &host);
    if (rc != 0 || dev != want_dev || host != want_host)
        check_fail(NULL, __FILE__, line, "zp_state_bytes",
                   "stage %d P=%zu psi=%" PRIu64 " N=%d opt=%d param=%d: rc %d device %" PRIu64
                   " host %" PRIu64 ", expected device %" PRIu64 " host %" PRIu64,
                   stage, p, psi, world, opt, param, rc, dev, host, want_dev, want_host);
}
#define EXPECT(...) expect(__LINE__, __VA_ARGS__)

static void test_hand_computed(void)
{
    const uint64_t G = 1000000000; /* Ψ = 1e9, N = 8 throughout */

    /* bf16/fp16 (P = 2; optimizer state o = 4 master + 4 m + 4 v = 12). No offload: docs/DESIGN.md. */
    EXPECT(0, 2, G, 8, NONE, NONE, 16 * G, 0);         /* (2 + 2 + 12)Ψ = 16e9 */
    EXPECT(1, 2, G, 8, NONE, NONE, 5500000000u, 0);    /* 2Ψ + 2Ψ + 12Ψ/8 = 4e9 + 1.5e9 */
    EXPECT(2, 2, G, 8, NONE, NONE, 3750000000u, 0);    /* 2Ψ + 14Ψ/8 = 2e9 + 1.75e9 */
    EXPECT(3, 2, G, 8, NONE, NONE, 2 * G, 0);          /* 16Ψ/8 = 2e9 */
    /* Optimizer offload: host 16Ψ/8 = 2e9 (master 4 + m 4 + v 4 + fp32 grad shard 4). */
    EXPECT(1, 2, G, 8, CPU, NONE, 4 * G, 2 * G);       /* params 2Ψ + grads 2Ψ = 4e9 */
    EXPECT(2, 2, G, 8, CPU, NONE, 2250000000u, 2 * G); /* params 2Ψ + grad shard 2Ψ/8 */
    EXPECT(3, 2, G, 8, CPU, NONE, 500000000u, 2 * G);  /* param shard 2Ψ/8 + grad shard 2Ψ/8 */
    /* Parameter offload too: device = grad shard 2Ψ/8 = 0.25e9; host (16 + 2)Ψ/8 = 2.25e9. */
    EXPECT(3, 2, G, 8, CPU, CPU, 250000000u, 2250000000u);

    /* fp32 (P = 4; o = 4 m + 4 v = 8: the working copy is the master). */
    EXPECT(0, 4, G, 8, NONE, NONE, 16 * G, 0);         /* (4 + 4 + 8)Ψ */
    EXPECT(1, 4, G, 8, NONE, NONE, 9 * G, 0);          /* 4Ψ + 4Ψ + 8Ψ/8 = 8e9 + 1e9 */
    EXPECT(2, 4, G, 8, NONE, NONE, 5500000000u, 0);    /* 4Ψ + 12Ψ/8 = 4e9 + 1.5e9 */
    EXPECT(3, 4, G, 8, NONE, NONE, 2 * G, 0);          /* 16Ψ/8 */
    /* Optimizer offload: the host optimizer needs its own fp32 master shard (the device copy is
     * not in its reach): host (4 + 8 + 4)Ψ/8 = 2e9, as for bf16. */
    EXPECT(1, 4, G, 8, CPU, NONE, 8 * G, 2 * G);       /* params 4Ψ + grads 4Ψ */
    EXPECT(2, 4, G, 8, CPU, NONE, 4500000000u, 2 * G); /* 4Ψ + 4Ψ/8 = 4e9 + 0.5e9 */
    EXPECT(3, 4, G, 8, CPU, NONE, 1 * G, 2 * G);       /* 4Ψ/8 + 4Ψ/8 */
    /* Parameter offload: the host master shard is the working shard: host stays 16Ψ/8. */
    EXPECT(3, 4, G, 8, CPU, CPU, 500000000u, 2 * G);   /* grad shard 4Ψ/8 */

    /* Rounding: each side's Ψ/N terms are summed, then rounded up once. Ψ = 1000001, N = 8. */
    /* stage 2 bf16 none: 2·1000001 + ceil(14·1000001/8 = 1750001.75) = 2000002 + 1750002 */
    EXPECT(2, 2, 1000001, 8, NONE, NONE, 3750004, 0);
    /* stage 2 bf16 cpu: 2000002 + ceil(2000002/8 = 250000.25); host ceil(16000016/8) */
    EXPECT(2, 2, 1000001, 8, CPU, NONE, 2250003, 2000002);
    /* stage 3 bf16 all: ceil(2000002/8) = 250001; host ceil(18000018/8 = 2250002.25) */
    EXPECT(3, 2, 1000001, 8, CPU, CPU, 250001, 2250003);
    /* stage 1 fp32 cpu, N = 3: 8·7 = 56; host ceil(16·7/3 = 37.33) = 38 */
    EXPECT(1, 4, 7, 3, CPU, NONE, 56, 38);

    /* One rank: stage 3 holds everything, like stage 0; offload moves 16Ψ to the host. */
    EXPECT(3, 2, G, 1, NONE, NONE, 16 * G, 0);
    EXPECT(3, 2, G, 1, CPU, NONE, 4 * G, 16 * G);      /* 2Ψ + 2Ψ on the device */

    /* The DeepSpeed example size: Ψ = 7.5e9, N = 8, bf16, stage 3: 16Ψ/8 = 15e9 bytes
     * = 13.97 GiB (the number tests/unit/estimate.cmake looks for in zero-estimate's table). */
    EXPECT(3, 2, 7500000000u, 8, NONE, NONE, 15000000000u, 0);
    /* NULL outputs are allowed. */
    CHECK(zp_state_bytes(2, 2, G, 8, CPU, NONE, NULL, NULL) == 0, "NULL outputs");
}

static void test_invalid(void)
{
    uint64_t d, h;
    const uint64_t G = 1000000000;
    CHECK(zp_state_bytes(-1, 2, G, 8, 0, 0, &d, &h) == -1, "stage -1");
    CHECK(zp_state_bytes(4, 2, G, 8, 0, 0, &d, &h) == -1, "stage 4");
    CHECK(zp_state_bytes(2, 2, G, 0, 0, 0, &d, &h) == -1, "world 0");
    CHECK(zp_state_bytes(2, 2, G, -3, 0, 0, &d, &h) == -1, "world -3");
    size_t bad_bytes[] = {0, 1, 3, 8};
    for (int i = 0; i < 4; i++)
        CHECK(zp_state_bytes(2, bad_bytes[i], G, 8, 0, 0, &d, &h) == -1, "work_bytes %zu",
              bad_bytes[i]);
    CHECK(zp_state_bytes(0, 2, G, 8, 1, 0, &d, &h) == -1, "optimizer offload at stage 0");
    CHECK(zp_state_bytes(0, 2, G, 8, 1, 1, &d, &h) == -1, "both offloads at stage 0");
    for (int s = 0; s < 3; s++) {
        CHECK(zp_state_bytes(s, 2, G, 8, 1, 1, &d, &h) == -1, "param offload at stage %d", s);
        CHECK(zp_state_bytes(s, 4, G, 8, 0, 1, &d, &h) == -1, "param offload at stage %d", s);
    }
    CHECK(zp_state_bytes(3, 2, G, 8, 0, 1, &d, &h) == -1, "param without optimizer offload");
    CHECK(zp_state_bytes(3, 2, ZP_PSI_MAX + 1, 8, 0, 0, &d, &h) == -1, "psi above ZP_PSI_MAX");
    CHECK(zp_state_bytes(3, 2, ZP_PSI_MAX, 1, 0, 0, &d, &h) == 0, "psi at ZP_PSI_MAX");
    CHECK(d == 16 * ZP_PSI_MAX, "16 * ZP_PSI_MAX without overflow, got %" PRIu64, d);
    uint64_t psi;
    CHECK(zp_max_psi(0, 2, 8, 1, 0, 1u << 30, &psi) == -1, "max psi: invalid offload");
    CHECK(zp_max_psi(2, 3, 8, 0, 0, 1u << 30, &psi) == -1, "max psi: invalid work_bytes");
    CHECK(zp_max_psi(2, 2, 0, 0, 0, 1u << 30, &psi) == -1, "max psi: invalid world");
}

/* Over a grid of Ψ and N: no offload equals zp_model_state_bytes; offload never adds device
 * bytes and never loses any (device + host >= device without offload); param offload below
 * optimizer offload. */
static void test_properties(void)
{
    static const uint64_t psis[] = {1, 7, 1000, 1000001, 124439808, 7500000000u, 175000000000u};
    static const int worlds[] = {1, 2, 3, 7, 8, 64, 1000};
    static const size_t dts[] = {2, 4};
    for (int a = 0; a < 7; a++)
        for (int b = 0; b < 7; b++)
            for (int t = 0; t < 2; t++)
                for (int s = 0; s < 4; s++) {
                    uint64_t psi = psis[a], d0, h0, d1, h1, d2, h2;
                    int n = worlds[b];
                    size_t p = dts[t];
                    CHECK(zp_state_bytes(s, p, psi, n, 0, 0, &d0, &h0) == 0, "valid");
                    CHECK(d0 == zp_model_state_bytes(s, p, psi, n) && h0 == 0,
                          "no offload is the docs/DESIGN.md formula: s%d P%zu N%d", s, p, n);
                    if (s == 0)
                        continue;
                    CHECK(zp_state_bytes(s, p, psi, n, 1, 0, &d1, &h1) == 0, "valid");
                    CHECK(d1 <= d0 && d1 + h1 >= d0, "optimizer offload: s%d P%zu psi %" PRIu64
                          " N%d: %" PRIu64 "+%" PRIu64 " vs %" PRIu64, s, p, psi, n, d1, h1, d0);
                    if (s < 3)
                        continue;
                    CHECK(zp_state_bytes(s, p, psi, n, 1, 1, &d2, &h2) == 0, "valid");
                    CHECK(d2 <= d1 && h2 >= h1 && d2 + h2 <= d1 + h1 + 1,
                          "param offload: P%zu psi %" PRIu64 " N%d", p, psi, n);
                }
}

/* Ψ fits and Ψ + 1 does not; hand-computed capacities. */
static void check_max(int line, int stage, size_t p, int n, int opt, int param, uint64_t cap)
{
    uint64_t psi = 0, d = 0;
    if (zp_max_psi(stage, p, n, opt, param, cap, &psi) != 0) {
        check_fail(NULL, __FILE__, line, "zp_max_psi", "rc != 0");
        return;
    }
    zp_state_bytes(stage, p, psi, n, opt, param, &d, NULL);
    CHECK(d <= cap, "line %d: psi %" PRIu64 " needs %" PRIu64 " > capacity %" PRIu64, line, psi,
          d, cap);
    if (psi < ZP_PSI_MAX) {
        zp_state_bytes(stage, p, psi + 1, n, opt, param, &d, NULL);
        CHECK(d > cap, "line %d: psi + 1 = %" PRIu64 " needs %" PRIu64 " <= capacity %" PRIu64,
              line, psi + 1, d, cap);
    }
}

static void test_max_psi(void)
{
    const uint64_t cap80 = 80ull << 30; /* 80 GiB = 85899345920 bytes */
    uint64_t psi;
    /* stage 0 bf16: 16Ψ <= 85899345920 → Ψ = 5368709120 (exactly 5 Gi) */
    CHECK(zp_max_psi(0, 2, 8, 0, 0, cap80, &psi) == 0 && psi == 5368709120u, "got %" PRIu64, psi);
    /* stage 3 bf16, N = 8: ceil(16Ψ/8) = 2Ψ <= 85899345920 → Ψ = 42949672960 */
    CHECK(zp_max_psi(3, 2, 8, 0, 0, cap80, &psi) == 0 && psi == 42949672960u, "got %" PRIu64,
          psi);
    /* stage 2 bf16, N = 8: 2Ψ + ceil(14Ψ/8). Ψ = 22906492245: 45812984490 + ceil(40086361428.75)
     * = 85899345919 fits; Ψ + 1: 45812984492 + ceil(40086361430.5) = 85899345923 does not. */
    CHECK(zp_max_psi(2, 2, 8, 0, 0, cap80, &psi) == 0 && psi == 22906492245u, "got %" PRIu64,
          psi);
    /* stage 3 bf16 all, N = 8: ceil(2Ψ/8) <= 80 GiB → Ψ = 4 · 85899345920 = 343597383680 */
    CHECK(zp_max_psi(3, 2, 8, 1, 1, cap80, &psi) == 0 && psi == 343597383680u, "got %" PRIu64,
          psi);
    /* Nothing fits in 0 bytes except Ψ = 0. */
    CHECK(zp_max_psi(1, 4, 4, 1, 0, 0, &psi) == 0 && psi == 0, "got %" PRIu64, psi);
    /* Saturation: a huge device and world hold more than the arithmetic allows. */
    CHECK(zp_max_psi(3, 2, 1 << 24, 1, 1, UINT64_MAX, &psi) == 0 && psi == ZP_PSI_MAX,
          "got %" PRIu64, psi);

    static const uint64_t caps[] = {1, 15, 16, 17, 1000003, 24ull << 30, 80ull << 30,
                                    141ull << 30, 1ull << 50};
    static const int worlds[] = {1, 3, 8, 1024};
    for (int c = 0; c < 9; c++)
        for (int w = 0; w < 4; w++)
            for (int p = 2; p <= 4; p += 2)
                for (int s = 0; s < 4; s++) {
                    check_max(__LINE__, s, (size_t)p, worlds[w], 0, 0, caps[c]);
                    if (s > 0)
                        check_max(__LINE__, s, (size_t)p, worlds[w], 1, 0, caps[c]);
                    if (s == 3)
                        check_max(__LINE__, s, (size_t)p, worlds[w], 1, 1, caps[c]);
                }
}

static void test_gpt2(void)
{
    /* GPT-2 small, L = 12, D = 768, V = 50257, T = 1024:
     *   wte 50257·768 = 38597376, wpe 1024·768 = 786432,
     *   blocks 12·(12·768² + 13·768) = 12·(7077888 + 9984) = 85054464, ln_f 2·768 = 1536
     *   total 38597376 + 786432 + 85054464 + 1536 = 124439808 */
    CHECK(zp_gpt2_params(12, 768, 50257, 1024) == 124439808u, "GPT-2 small: %" PRIu64,
          zp_gpt2_params(12, 768, 50257, 1024));
    /* GPT-2 medium, L = 24, D = 1024: 51463168 + 1048576 + 24·(12582912 + 13312) + 2048
     *   = 51463168 + 1048576 + 302309376 + 2048 = 354823168 */
    CHECK(zp_gpt2_params(24, 1024, 50257, 1024) == 354823168u, "GPT-2 medium: %" PRIu64,
          zp_gpt2_params(24, 1024, 50257, 1024));
    /* Tiny, L = 2, D = 4, V = 10, T = 8, term by term:
     *   wte 10·4 = 40, wpe 8·4 = 32,
     *   one block: ln_1 + ln_2 2·2·4 = 16, qkv 4·12 + 12 = 60, attn proj 4·4 + 4 = 20,
     *              fc 4·16 + 16 = 80, fc proj 16·4 + 4 = 68 → 244; two blocks 488,
     *   ln_f 2·4 = 8; total 40 + 32 + 488 + 8 = 568 */
    CHECK(zp_gpt2_params(2, 4, 10, 8) == 568, "tiny: %" PRIu64, zp_gpt2_params(2, 4, 10, 8));
    /* No blocks: wte 1 + wpe 1 + ln_f 2 = 4 */
    CHECK(zp_gpt2_params(0, 1, 1, 1) == 4, "L=0: %" PRIu64, zp_gpt2_params(0, 1, 1, 1));
    CHECK(zp_gpt2_params(-1, 768, 50257, 1024) == 0, "negative layers");
    CHECK(zp_gpt2_params(12, 0, 50257, 1024) == 0, "zero dim");
    CHECK(zp_gpt2_params(12, 768, 0, 1024) == 0, "zero vocab");
    CHECK(zp_gpt2_params(12, 768, 50257, 0) == 0, "zero seq");
    /* 2^30 layers of 12·(2^30)² ≈ 1.4e19 parameters each overflow uint64. */
    CHECK(zp_gpt2_params(1 << 30, 1 << 30, 1, 1) == 0, "overflow");
}

/* The automatic buffer sizes (zp_auto_bucket, zp_auto_stage3) as pure functions, at the sizes of
 * the OOM benchmark and at realistic ones: the bandwidth rule, the capacity share, the floor. */
static void test_auto_sizes(void)
{
    const uint64_t K = 1024, M = K * K, Gi = M * K;
    char why[256];
    /* a realistic GPU: 8 GiB cap; NCCL saturates by 32 MiB, 8 GiB / 64 = 128 MiB: the knee */
    CHECK(zp_auto_bucket(8 * Gi, ZP_KNEE_NCCL, why, sizeof why) == 32 * M, "8 GiB, nccl: %s", why);
    CHECK(strstr(why, "full-bandwidth"), "reason names the bandwidth rule: %s", why);
    /* the host backend's MPI knee under the same cap */
    CHECK(zp_auto_bucket(8 * Gi, ZP_KNEE_MPI, why, sizeof why) == ZP_KNEE_MPI, "8 GiB, mpi: %s",
          why);
    /* the capacity share: 1 GiB / 64 = 16 MiB < 32 MiB */
    CHECK(zp_auto_bucket(Gi, ZP_KNEE_NCCL, why, sizeof why) == 16 * M, "1 GiB, nccl: %s", why);
    CHECK(strstr(why, "1/64"), "reason names the capacity share: %s", why);
    /* the OOM benchmark's caps: 64 MiB -> 1 MiB; 24 MiB -> 384 KiB -> 256 KiB (power of two) */
    CHECK(zp_auto_bucket(64 * M, ZP_KNEE_MPI, NULL, 0) == M, "64 MiB");
    CHECK(zp_auto_bucket(24 * M, ZP_KNEE_MPI, NULL, 0) == 256 * K, "24 MiB");
    /* the floor */
    CHECK(zp_auto_bucket(M, ZP_KNEE_MPI, why, sizeof why) == ZP_AUTO_BUCKET_MIN, "1 MiB: %s", why);
    CHECK(strstr(why, "floor"), "reason names the floor: %s", why);
    /* no capacity known: the knee */
    CHECK(zp_auto_bucket(0, ZP_KNEE_MPI, NULL, 0) == ZP_KNEE_MPI, "unknown capacity");
    /* the same at every stage: the function has no stage; a power of two for any capacity */
    for (uint64_t cap = 3 * M; cap < 100 * Gi; cap = cap * 3 / 2 + 12345) {
        size_t b = zp_auto_bucket(cap, ZP_KNEE_NCCL, NULL, 0);
        CHECK(b >= ZP_AUTO_BUCKET_MIN && b <= ZP_KNEE_NCCL && (b & (b - 1)) == 0 &&
                  (b == ZP_AUTO_BUCKET_MIN || b <= cap / 64),
              "capacity %llu: bucket %zu", (unsigned long long)cap, b);
    }

    size_t pf, live;
    /* 300 M parameters, bf16, 8 ranks at stage 3 on 8 GiB: 16 x 300e6 / 8 = 600 MB of state,
     * chunks of 32 MiB, two buckets reserved: plenty left, max live at its 1 GiB cap */
    uint64_t psi = 300000000, state = 16 * psi / 8, chunk = 32 * M, reserve = 2 * (chunk + chunk / 8);
    zp_auto_stage3(8 * Gi, state, reserve, chunk, &pf, &live, why, sizeof why);
    CHECK(live == Gi && pf == 2 * chunk, "8 GiB: prefetch %zu live %zu (%s)", pf, live, why);
    /* tight: 24 MiB, 20 MiB held, 3 MiB reserved: 1 MiB left, max live 512 KiB, one 400 KiB
     * chunk ahead */
    zp_auto_stage3(24 * M, 20 * M, 3 * M, 400 * K, &pf, &live, why, sizeof why);
    CHECK(live == 512 * K && pf == 400 * K, "tight: prefetch %zu live %zu (%s)", pf, live, why);
    /* nothing left: no prefetch, and max live never 0 (0 would mean no cap) */
    zp_auto_stage3(24 * M, 23 * M, 2 * M, 400 * K, &pf, &live, NULL, 0);
    CHECK(pf == 0 && live == 1, "full: prefetch %zu live %zu", pf, live);
    /* capacity unknown: two chunks ahead, 1 GiB cap */
    zp_auto_stage3(0, 20 * M, 3 * M, 400 * K, &pf, &live, NULL, 0);
    CHECK(pf == 800 * K && live == Gi, "unknown: prefetch %zu live %zu", pf, live);
}

int main(void)
{
    test_hand_computed();
    test_invalid();
    test_properties();
    test_max_psi();
    test_gpt2();
    test_auto_sizes();
    if (check_failures) {
        fprintf(stderr, "test_estimate: %d failure(s)\n", check_failures);
        return 1;
    }
    printf("test_estimate: all checks passed\n");
    return 0;
}
