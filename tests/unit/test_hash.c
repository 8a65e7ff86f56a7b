/* test_hash.c — zk_hash (kernels/hash.h) against libxxhash's XXH3_64bits: every path the CPU
 * has, forced in turn (a path it lacks is reported as skipped), one-shot and streaming in random
 * pieces, every length 0-1100 (XXH3's short-input branches end at 240 bytes, its stripes at 64,
 * its blocks at 1024) and random lengths up to 4 MiB, at every start alignment 0-63; the state
 * moving between paths mid-stream; that every path the CPU has is built and auto picks the
 * widest; and the force switch's errors. Exit status 1 on any failure. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "kernels/hash.h"
#include "tests/common/check.h"

static const char *const g_paths[] = {"baseline", "avx2", "avx512"};
#define N_PATHS 3

/* Whether the CPU has path p's instructions (x86-64; elsewhere only the baseline exists). */
static int cpu_has(int p)
{
#if defined(__x86_64__)
    return p == 0 || (p == 1 && __builtin_cpu_supports("avx2")) ||
           (p == 2 && __builtin_cpu_supports("avx512f"));
#else
    return p == 0;
#endif
}

/* Streams buf[0, n) through the current path in random pieces (some empty). */
static uint64_t streamed(const unsigned char *buf, size_t n)
{
    zk_hash_state st;
    zk_hash_reset(&st);
    size_t at = 0;
    while (at < n) {
        size_t k = (size_t)(rnd_u64() % 4) == 0 ? 0 : (size_t)(rnd_u64() % 700);
        if (rnd_u64() % 8 == 0)
            k = (size_t)(rnd_u64() % (n - at + 1)); /* now and then a long piece */
        k = k > n - at ? n - at : k;
        zk_hash_update(&st, buf + at, k);
        at += k;
    }
    return zk_hash_digest(&st);
}

int main(void)
{
    enum { MAXN = 4 << 20 };
    unsigned char *mem = malloc(MAXN + 64);
    if (!mem)
        return 1;
    rnd_seed(20261129);
    for (size_t i = 0; i < MAXN + 64; i++)
        mem[i] = (unsigned char)rnd_u64();
    printf("     default path on this CPU: %s\n", zk_hash_isa());
    int ran = 0, widest = 0;
    for (int p = 0; p < N_PATHS; p++) {
        if (zk_hash_force(g_paths[p]) != 0) {
            /* on x86-64 a path is refused only where the CPU lacks it: one missing from the build
             * (kernels/sources.cmake) would otherwise pass unseen */
            CHECK(!cpu_has(p), "%s refused on a CPU that has it", g_paths[p]);
            REPORT_LINE("%-8s skipped: this CPU lacks it", g_paths[p]);
            continue;
        }
        widest = p;
        ran++;
        CHECK(strcmp(zk_hash_isa(), g_paths[p]) == 0, "forced %s, running %s", g_paths[p],
              zk_hash_isa());
        for (size_t n = 0; n <= 1100; n++) {
            const unsigned char *b = mem + n % 64;
            uint64_t want = (uint64_t)XXH3_64bits(b, n);
            CHECK(zk_hash(b, n) == want, "%s: %zu bytes at offset %zu: one-shot", g_paths[p], n,
                  n % 64);
            CHECK(streamed(b, n) == want, "%s: %zu bytes at offset %zu: streamed", g_paths[p], n,
                  n % 64);
        }
        for (int t = 0; t < 48; t++) {
            size_t n = (size_t)(rnd_u64() % MAXN), off = (size_t)(rnd_u64() % 64);
            uint64_t want = (uint64_t)XXH3_64bits(mem + off, n);
            CHECK(zk_hash(mem + off, n) == want, "%s: %zu bytes at offset %zu: one-shot",
                  g_paths[p], n, off);
            CHECK(streamed(mem + off, n) == want, "%s: %zu bytes at offset %zu: streamed",
                  g_paths[p], n, off);
        }
        REPORT_LINE("%-8s one-shot and streamed == XXH3_64bits (0-1100 bytes, 48 up to 4 MiB)",
                    g_paths[p]);
    }
    CHECK(ran >= 1, "not even the baseline path ran");

    /* a stream begun on one path and finished on another: the state is xxHash's on every path */
    int have[N_PATHS];
    for (int p = 0; p < N_PATHS; p++)
        have[p] = zk_hash_force(g_paths[p]) == 0;
    for (int a = 0; a < N_PATHS; a++)
        for (int b = 0; b < N_PATHS; b++) {
            if (!have[a] || !have[b])
                continue;
            const size_t n = 3 << 20, cut = 1234567;
            zk_hash_state st;
            zk_hash_force(g_paths[a]);
            zk_hash_reset(&st);
            zk_hash_update(&st, mem + 5, cut);
            zk_hash_force(g_paths[b]);
            zk_hash_update(&st, mem + 5 + cut, n - cut);
            CHECK(zk_hash_digest(&st) == (uint64_t)XXH3_64bits(mem + 5, n),
                  "begun on %s, finished on %s", g_paths[a], g_paths[b]);
        }
    REPORT_LINE("a stream moved between paths mid-way == XXH3_64bits");

    const char *before = zk_hash_isa();
    CHECK(zk_hash_force("sse9") == -1, "an unknown path name was accepted");
    CHECK(strcmp(zk_hash_isa(), before) == 0, "a refused force changed the path");
    CHECK(zk_hash_force("auto") == 0, "auto refused");
    CHECK(strcmp(zk_hash_isa(), g_paths[widest]) == 0, "auto chose %s, the widest path is %s",
          zk_hash_isa(), g_paths[widest]);
    CHECK(zk_hash_force(NULL) == 0, "NULL (auto) refused");
    REPORT_LINE("force: unknown name refused, nothing changed; auto restores %s", zk_hash_isa());
    free(mem);
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}
