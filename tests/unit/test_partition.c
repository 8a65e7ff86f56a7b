/* test_partition.c — checks the partition arithmetic against its contract: random tensor sets at
 * world sizes 1..9 (every element owned by exactly one rank, no padding handed out as data, the
 * greedy chunking rule, prefix sums), hand-computed layouts, every argument error, and the
 * model-state / bus-byte formulas against hand-computed numbers. Exits non-zero on a failure. */
#include "partition/partition.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Failures print "FAIL file:line: cond [context]: message", the first CHECK_SHOWN_TOTAL of them;
 * the random cases come from rnd_xorshift (xorshift64*, fixed seed: the same cases every run). */
#define CHECK_STYLE CHECK_STYLE_EXPR
#include "tests/common/check.h"

/* zp_layout_build with its message copied into err (as the checks below read it); 0 or -1. */
static int layout_build(zp_layout *L, const zp_tensor *t, int n, int world, size_t chunk_elems,
                        size_t align, char *err, size_t errlen)
{
    zr_error e = {0};
    zero_status s = zp_layout_build(L, t, n, world, chunk_elems, align, &e);
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", e.msg);
    return s == ZERO_OK ? 0 : -1;
}

#define NUM_CASES 2000
#define MAX_WORLD 9
#define MAX_TENSORS 40

static size_t rnd_range(size_t lo, size_t hi) /* uniform-ish in [lo, hi] */
{
    return lo + (size_t)(rnd_xorshift() % (uint64_t)(hi - lo + 1));
}

static size_t up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* ---------------------------------------------------------------------------------------------
 * Properties of one layout; marks is scratch of num_params bytes. Returns segments visited. */
static long check_layout(const zp_tensor *t, int n, int world, size_t chunk_elems, size_t align,
                         uint8_t *marks, size_t *tbase, zp_segment *segs)
{
    zp_layout L;
    char err[256];
    int rc = layout_build(&L, t, n, world, chunk_elems, align, err, sizeof(err));
    CHECK(rc == 0, "build failed: %s", err);
    if (rc != 0)
        return 0;

    size_t psi = 0;
    for (int i = 0; i < n; i++) {
        tbase[i] = psi;
        psi += t[i].numel;
    }
    CHECK(L.world == world && L.align == align && L.chunk_elems == chunk_elems, "echoed arguments");
    CHECK(L.num_tensors == n, "num_tensors %d", L.num_tensors);
    CHECK(L.num_params == psi, "num_params %zu, expected %zu", L.num_params, psi);
    CHECK(L.num_modules == t[n - 1].module + 1, "num_modules %d", L.num_modules);
    CHECK(L.num_chunks >= 1 && L.num_chunks <= n, "num_chunks %d", L.num_chunks);

    /* Chunks: contiguous tensor ranges covering 0..n once, prefix sums, padding rules. */
    int next_tensor = 0;
    size_t total = 0, shard = 0, max_padded = 0, max_slice = 0, wa = (size_t)world * align;
    for (int c = 0; c < L.num_chunks; c++) {
        const zp_chunk *ch = &L.chunks[c];
        CHECK(ch->first_tensor == next_tensor, "chunk %d: first_tensor %d, expected %d", c,
              ch->first_tensor, next_tensor);
        CHECK(ch->num_tensors >= 1 && ch->first_tensor + ch->num_tensors <= n,
              "chunk %d: num_tensors %d", c, ch->num_tensors);
        if (ch->num_tensors < 1 || ch->first_tensor != next_tensor || ch->first_tensor + ch->num_tensors > n)
            break;
        int f = ch->first_tensor, e = f + ch->num_tensors;
        next_tensor = e;
        CHECK(ch->first_module == t[f].module && ch->last_module == t[e - 1].module,
              "chunk %d: modules [%d, %d]", c, ch->first_module, ch->last_module);
        /* Tight packing: each tensor at the next aligned offset after the previous one. */
        size_t end = 0;
        for (int i = f; i < e; i++) {
            const zp_place *p = &L.place[i];
            CHECK(p->chunk == c, "tensor %d: chunk %d, expected %d", i, p->chunk, c);
            CHECK(p->numel == t[i].numel, "tensor %d: numel %zu", i, p->numel);
            CHECK(p->offset % align == 0, "tensor %d: offset %zu not aligned", i, p->offset);
            CHECK(p->offset == up(end, align), "tensor %d: offset %zu, expected %zu", i, p->offset,
                  up(end, align));
            end = p->offset + p->numel;
        }
        CHECK(ch->used == end, "chunk %d: used %zu, expected %zu", c, ch->used, end);
        CHECK(ch->used <= chunk_elems || ch->first_module == ch->last_module,
              "chunk %d: used %zu > chunk_elems %zu with modules [%d, %d]", c, ch->used,
              chunk_elems, ch->first_module, ch->last_module);
        /* Greedy: the next module would not have fitted in this chunk. */
        if (e < n) {
            size_t grow = ch->used;
            for (int i = e; i < n && t[i].module == t[e].module; i++)
                grow = up(grow, align) + t[i].numel;
            CHECK(grow > chunk_elems, "chunk %d: next module %d (end %zu) fits in %zu", c,
                  t[e].module, grow, chunk_elems);
            CHECK(t[e].module != t[e - 1].module, "chunk %d splits module %d", c, t[e].module);
        }
        CHECK(ch->padded % wa == 0 && ch->padded >= wa, "chunk %d: padded %zu", c, ch->padded);
        CHECK(ch->padded >= ch->used && ch->padded - ch->used < wa,
              "chunk %d: padded %zu for used %zu (overhead must be < %zu)", c, ch->padded, ch->used, wa);
        CHECK(ch->slice * (size_t)world == ch->padded && ch->slice % align == 0,
              "chunk %d: slice %zu", c, ch->slice);
        CHECK(ch->offset == total, "chunk %d: offset %zu, expected %zu", c, ch->offset, total);
        CHECK(ch->shard_offset == shard, "chunk %d: shard_offset %zu, expected %zu", c,
              ch->shard_offset, shard);
        total += ch->padded;
        shard += ch->slice;
        if (ch->padded > max_padded)
            max_padded = ch->padded;
        if (ch->slice > max_slice)
            max_slice = ch->slice;
    }
    CHECK(L.max_padded == max_padded && L.max_slice == max_slice,
          "max_padded %zu / max_slice %zu, expected %zu / %zu", L.max_padded, L.max_slice,
          max_padded, max_slice);
    CHECK(next_tensor == n, "chunks cover %d of %d tensors", next_tensor, n);
    CHECK(L.total_padded == total, "total_padded %zu, expected %zu", L.total_padded, total);
    CHECK(L.shard_numel == shard, "shard_numel %zu, expected %zu", L.shard_numel, shard);
    CHECK(L.shard_numel * (size_t)world == L.total_padded, "shard_numel x world != total_padded");

    /* module_chunk: every module with tensors maps to their chunk, the others to -1. */
    for (int m = 0, i = 0; m < L.num_modules; m++) {
        int expect = -1;
        while (i < n && t[i].module < m)
            i++;
        if (i < n && t[i].module == m)
            expect = L.place[i].chunk;
        CHECK(L.module_chunk[m] == expect, "module %d: chunk %d, expected %d", m, L.module_chunk[m],
              expect);
    }
    for (int i = 0; i < n; i++)
        CHECK(L.module_chunk[t[i].module] == L.place[i].chunk, "tensor %d: module %d split", i,
              t[i].module);

    /* Ownership: walk every rank's slice of every chunk; each element counted exactly once. */
    long visited = 0;
    memset(marks, 0, psi);
    for (int c = 0; c < L.num_chunks; c++) {
        const zp_chunk *ch = &L.chunks[c];
        for (int r = 0; r < world; r++) {
            size_t lo, hi;
            zp_slice_range(&L, c, r, &lo, &hi);
            CHECK(lo == (size_t)r * ch->slice && hi == lo + ch->slice && hi <= ch->padded,
                  "chunk %d rank %d: slice [%zu, %zu)", c, r, lo, hi);
            int cnt = zp_segments(&L, c, lo, hi, NULL, 0);
            CHECK(cnt >= 0 && cnt <= ch->num_tensors, "chunk %d rank %d: %d segments", c, r, cnt);
            if (cnt < 0 || cnt > ch->num_tensors)
                continue;
            segs[cnt].tensor = -7; /* sentinel: nothing is written past the count */
            int got = zp_segments(&L, c, lo, hi, segs, cnt);
            CHECK(got == cnt && segs[cnt].tensor == -7, "chunk %d rank %d: %d then %d segments", c,
                  r, cnt, got);
            if (cnt > 1) { /* a short out array gets the first max pieces and the full count */
                zp_segment few[2];
                few[1].tensor = -9;
                CHECK(zp_segments(&L, c, lo, hi, few, 1) == cnt && few[1].tensor == -9 &&
                          few[0].tensor == segs[0].tensor && few[0].numel == segs[0].numel,
                      "chunk %d rank %d: truncated query", c, r);
            }
            size_t expect_data = 0; /* elements of tensors inside [lo, hi), computed directly */
            for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
                size_t a = L.place[i].offset, b = a + t[i].numel;
                if (a < lo)
                    a = lo;
                if (b > hi)
                    b = hi;
                if (a < b)
                    expect_data += b - a;
            }
            size_t got_data = 0, prev_end = lo;
            int prev_tensor = -1;
            for (int s = 0; s < cnt; s++) {
                const zp_segment *g = &segs[s];
                int i = g->tensor;
                visited++;
                CHECK(i >= ch->first_tensor && i < ch->first_tensor + ch->num_tensors && i > prev_tensor,
                      "chunk %d rank %d seg %d: tensor %d", c, r, s, i);
                if (i < ch->first_tensor || i >= ch->first_tensor + ch->num_tensors || i <= prev_tensor)
                    break;
                CHECK(g->numel > 0 && g->tensor_offset + g->numel <= t[i].numel,
                      "seg of tensor %d: [%zu, +%zu) past numel %zu", i, g->tensor_offset, g->numel,
                      t[i].numel);
                CHECK(g->chunk_offset == L.place[i].offset + g->tensor_offset,
                      "seg of tensor %d: chunk_offset %zu", i, g->chunk_offset);
                CHECK(g->chunk_offset >= prev_end && g->chunk_offset + g->numel <= hi,
                      "seg of tensor %d: [%zu, +%zu) outside [%zu, %zu) or overlapping", i,
                      g->chunk_offset, g->numel, prev_end, hi);
                if (g->tensor_offset + g->numel > t[i].numel)
                    continue;
                uint8_t *m = marks + tbase[i] + g->tensor_offset;
                for (size_t k = 0; k < g->numel; k++)
                    m[k]++;
                got_data += g->numel;
                prev_end = g->chunk_offset + g->numel;
                prev_tensor = i;
            }
            CHECK(got_data == expect_data, "chunk %d rank %d: %zu data elements, expected %zu", c,
                  r, got_data, expect_data);
        }
        /* An arbitrary sub-range returns exactly the data inside it. */
        size_t lo = rnd_range(0, ch->padded - 1), hi = rnd_range(lo + 1, ch->padded);
        size_t expect_data = 0, got_data = 0;
        for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
            size_t a = L.place[i].offset, b = a + t[i].numel;
            a = a < lo ? lo : a;
            b = b > hi ? hi : b;
            expect_data += a < b ? b - a : 0;
        }
        int cnt = zp_segments(&L, c, lo, hi, segs, ch->num_tensors);
        for (int s = 0; s < cnt && s < ch->num_tensors; s++)
            got_data += segs[s].numel;
        CHECK(got_data == expect_data, "chunk %d [%zu, %zu): %zu elements, expected %zu", c, lo, hi,
              got_data, expect_data);
    }
    size_t bad = 0, first_bad = 0;
    for (size_t k = 0; k < psi; k++) {
        if (marks[k] != 1) {
            if (bad++ == 0)
                first_bad = k;
        }
    }
    CHECK(bad == 0, "%zu elements not owned exactly once (first: flat element %zu, count %u)", bad,
          first_bad, bad ? (unsigned)marks[first_bad] : 0u);

    zp_layout_free(&L);
    CHECK(L.place == NULL && L.chunks == NULL && L.module_chunk == NULL && L.num_chunks == 0,
          "free leaves the layout zeroed");
    return visited;
}

static void test_random(long *layouts, long *chunks, long *segments)
{
    zp_tensor t[MAX_TENSORS];
    size_t tbase[MAX_TENSORS];
    zp_segment segs[MAX_TENSORS + 1];
    uint8_t *marks = malloc((size_t)MAX_TENSORS * 5000);
    if (!marks) {
        CHECK(marks != NULL, "out of memory");
        return;
    }
    static const size_t aligns[] = {1, 2, 4, 16, 64};
    for (int k = 0; k < NUM_CASES && check_failures < CHECK_SHOWN_TOTAL; k++) {
        int n = (int)rnd_range(1, MAX_TENSORS);
        int small = rnd_xorshift() % 4 == 0; /* many tiny tensors stress the alignment gaps */
        int module = 0;
        for (int i = 0; i < n; i++) {
            if (i > 0 && rnd_xorshift() % 2 == 0)
                /* sometimes leave id gaps */
                module += rnd_xorshift() % 4 == 0 ? (int)rnd_range(2, 3) : 1;
            t[i].module = module;
            t[i].numel = small ? rnd_range(1, 8) : rnd_range(1, 5000);
        }
        size_t chunk_elems = rnd_xorshift() % 3 == 0 ? rnd_range(1, 200) : rnd_range(1, 20000);
        size_t align = aligns[rnd_xorshift() % 5];
        for (int world = 1; world <= MAX_WORLD; world++) {
            check_set_context("case %d: n %d, chunk_elems %zu, align %zu, world %d", k, n,
                              chunk_elems, align, world);
            *segments += check_layout(t, n, world, chunk_elems, align, marks, tbase, segs);
            (*layouts)++;
        }
        zp_layout L;
        if (layout_build(&L, t, n, 1, chunk_elems, align, NULL, 0) == 0) {
            *chunks += L.num_chunks;
            zp_layout_free(&L);
        }
    }
    free(marks);
}

/* ---------------------------------------------------------------------------------------------
 * Hand-computed layouts. */
static void expect_seg(const zp_layout *L, int c, int rank, int n_expect, const zp_segment *expect)
{
    size_t lo, hi;
    zp_segment got[8];
    zp_slice_range(L, c, rank, &lo, &hi);
    int n = zp_segments(L, c, lo, hi, got, 8);
    CHECK(n == n_expect, "chunk %d rank %d: %d segments, expected %d", c, rank, n, n_expect);
    for (int s = 0; s < n && s < n_expect; s++)
        CHECK(got[s].tensor == expect[s].tensor && got[s].tensor_offset == expect[s].tensor_offset &&
                  got[s].chunk_offset == expect[s].chunk_offset && got[s].numel == expect[s].numel,
              "chunk %d rank %d seg %d: {%d, %zu, %zu, %zu}, expected {%d, %zu, %zu, %zu}", c, rank,
              s, got[s].tensor, got[s].tensor_offset, got[s].chunk_offset, got[s].numel,
              expect[s].tensor, expect[s].tensor_offset, expect[s].chunk_offset, expect[s].numel);
}

static void expect_chunk(const zp_layout *L, int c, size_t offset, size_t used, size_t padded,
                         size_t slice, size_t shard_offset, int ft, int nt, int fm, int lm)
{
    const zp_chunk *ch = &L->chunks[c];
    CHECK(ch->offset == offset && ch->used == used && ch->padded == padded && ch->slice == slice &&
              ch->shard_offset == shard_offset,
          "chunk %d: offset %zu used %zu padded %zu slice %zu shard_offset %zu", c, ch->offset,
          ch->used, ch->padded, ch->slice, ch->shard_offset);
    CHECK(ch->first_tensor == ft && ch->num_tensors == nt && ch->first_module == fm &&
              ch->last_module == lm,
          "chunk %d: tensors %d+%d modules [%d, %d]", c, ch->first_tensor, ch->num_tensors,
          ch->first_module, ch->last_module);
}

static void expect_place(const zp_layout *L, int i, int chunk, size_t offset)
{
    CHECK(L->place[i].chunk == chunk && L->place[i].offset == offset,
          "tensor %d: chunk %d offset %zu, expected chunk %d offset %zu", i, L->place[i].chunk,
          L->place[i].offset, chunk, offset);
}

static void test_hand(void)
{
    zp_layout L;
    char err[256];

    /* A: align 4, world 2, chunk 16. Module 0 ends at 11; module 1 would end at 19 > 16, so it
     * opens chunk 1 (ends 7); module 2 starts at 8 and ends at 10 <= 16, so it joins. */
    check_set_context("hand A");
    const zp_tensor a[] = {{5, 0}, {3, 0}, {7, 1}, {2, 2}};
    if (layout_build(&L, a, 4, 2, 16, 4, err, sizeof(err)) != 0) {
        CHECK(0, "build: %s", err);
    } else {
        CHECK(L.num_chunks == 2 && L.num_modules == 3 && L.num_params == 17 &&
                  L.total_padded == 32 && L.shard_numel == 16,
              "chunks %d modules %d params %zu total %zu shard %zu", L.num_chunks, L.num_modules,
              L.num_params, L.total_padded, L.shard_numel);
        expect_chunk(&L, 0, 0, 11, 16, 8, 0, 0, 2, 0, 0);
        expect_chunk(&L, 1, 16, 10, 16, 8, 8, 2, 2, 1, 2);
        expect_place(&L, 0, 0, 0);
        expect_place(&L, 1, 0, 8);
        expect_place(&L, 2, 1, 0);
        expect_place(&L, 3, 1, 8);
        CHECK(L.module_chunk[0] == 0 && L.module_chunk[1] == 1 && L.module_chunk[2] == 1,
              "module_chunk %d %d %d", L.module_chunk[0], L.module_chunk[1], L.module_chunk[2]);
        expect_seg(&L, 0, 0, 1, (zp_segment[]){{0, 0, 0, 5}});
        expect_seg(&L, 0, 1, 1, (zp_segment[]){{1, 0, 8, 3}});
        expect_seg(&L, 1, 0, 1, (zp_segment[]){{2, 0, 0, 7}});
        expect_seg(&L, 1, 1, 1, (zp_segment[]){{3, 0, 8, 2}});
        zp_layout_free(&L);
    }

    /* B: align 2, world 3, one chunk of 20 used elements padded to 24 (slices of 8); tensor 0
     * straddles ranks 0 and 1; module id 1 has no tensors. */
    check_set_context("hand B");
    const zp_tensor b[] = {{10, 0}, {5, 0}, {4, 2}};
    if (layout_build(&L, b, 3, 3, 100, 2, err, sizeof(err)) != 0) {
        CHECK(0, "build: %s", err);
    } else {
        CHECK(L.num_chunks == 1 && L.num_modules == 3 && L.total_padded == 24 && L.shard_numel == 8,
              "chunks %d modules %d total %zu shard %zu", L.num_chunks, L.num_modules,
              L.total_padded, L.shard_numel);
        expect_chunk(&L, 0, 0, 20, 24, 8, 0, 0, 3, 0, 2);
        expect_place(&L, 0, 0, 0);
        expect_place(&L, 1, 0, 10);
        expect_place(&L, 2, 0, 16);
        CHECK(L.module_chunk[0] == 0 && L.module_chunk[1] == -1 && L.module_chunk[2] == 0,
              "module_chunk %d %d %d", L.module_chunk[0], L.module_chunk[1], L.module_chunk[2]);
        expect_seg(&L, 0, 0, 1, (zp_segment[]){{0, 0, 0, 8}});
        expect_seg(&L, 0, 1, 2, (zp_segment[]){{0, 8, 8, 2}, {1, 0, 10, 5}});
        expect_seg(&L, 0, 2, 1, (zp_segment[]){{2, 0, 16, 4}});
        zp_segment s[2];
        CHECK(zp_segments(&L, 0, 15, 16, s, 2) == 0, "the gap [15, 16) holds no data");
        CHECK(zp_segments(&L, 0, 20, 24, s, 2) == 0, "the padding [20, 24) holds no data");
        CHECK(zp_segments(&L, 0, 9, 9, s, 2) == 0, "an empty range holds no data");
        CHECK(zp_segments(&L, 1, 0, 8, s, 2) == 0, "chunk 1 does not exist");
        CHECK(zp_segments(&L, -1, 0, 8, s, 2) == 0, "chunk -1 does not exist");
        size_t lo = 99, hi = 99;
        zp_slice_range(&L, 0, 3, &lo, &hi);
        CHECK(lo == 0 && hi == 0, "rank 3 of world 3: [%zu, %zu)", lo, hi);
        zp_slice_range(&L, 5, 0, &lo, &hi);
        CHECK(lo == 0 && hi == 0, "chunk 5: [%zu, %zu)", lo, hi);
        zp_layout_free(&L);
    }

    /* C: align 1, world 4, chunk 10. Module 1 (12 + 2) is oversized and gets chunk 1 alone;
     * modules 2 and 3 fill chunk 2 to exactly 10. */
    check_set_context("hand C");
    const zp_tensor cc[] = {{3, 0}, {12, 1}, {2, 1}, {4, 2}, {5, 3}, {1, 3}};
    if (layout_build(&L, cc, 6, 4, 10, 1, err, sizeof(err)) != 0) {
        CHECK(0, "build: %s", err);
    } else {
        CHECK(L.num_chunks == 3 && L.num_params == 27 && L.total_padded == 32 && L.shard_numel == 8,
              "chunks %d params %zu total %zu shard %zu", L.num_chunks, L.num_params,
              L.total_padded, L.shard_numel);
        expect_chunk(&L, 0, 0, 3, 4, 1, 0, 0, 1, 0, 0);
        expect_chunk(&L, 1, 4, 14, 16, 4, 1, 1, 2, 1, 1);
        expect_chunk(&L, 2, 20, 10, 12, 3, 5, 3, 3, 2, 3);
        expect_place(&L, 1, 1, 0);
        expect_place(&L, 2, 1, 12);
        expect_place(&L, 3, 2, 0);
        expect_place(&L, 4, 2, 4);
        expect_place(&L, 5, 2, 9);
        expect_seg(&L, 0, 3, 0, NULL);
        expect_seg(&L, 1, 2, 1, (zp_segment[]){{1, 8, 8, 4}});
        expect_seg(&L, 1, 3, 1, (zp_segment[]){{2, 0, 12, 2}});
        expect_seg(&L, 2, 1, 2, (zp_segment[]){{3, 3, 3, 1}, {4, 0, 4, 2}});
        expect_seg(&L, 2, 3, 1, (zp_segment[]){{5, 0, 9, 1}});
        zp_layout_free(&L);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Every argument error: -1, a message naming the bad value, and a zeroed, freeable layout. */
static int g_error_cases;

static void expect_error(const char *what, const zp_tensor *t, int n, int world, size_t chunk_elems,
                         size_t align, const char *need1, const char *need2)
{
    zp_layout L, zero;
    char err[256];
    memset(&L, 0xAB, sizeof(L));
    memset(&zero, 0, sizeof(zero));
    memset(err, 0, sizeof(err));
    check_set_context("error case: %s", what);
    g_error_cases++;
    int rc = layout_build(&L, t, n, world, chunk_elems, align, err, sizeof(err));
    CHECK(rc == -1, "returned %d", rc);
    CHECK(strstr(err, need1) != NULL, "message \"%s\" lacks \"%s\"", err, need1);
    CHECK(!need2 || strstr(err, need2) != NULL, "message \"%s\" lacks \"%s\"", err, need2);
    CHECK(memcmp(&L, &zero, sizeof(L)) == 0, "layout not zeroed after the error");
    zp_layout_free(&L);
    /* Without an error buffer the call still fails cleanly. */
    CHECK(layout_build(&L, t, n, world, chunk_elems, align, NULL, 0) == -1, "no err buffer");
    zp_layout_free(&L);
}

static void test_errors(void)
{
    const zp_tensor ok[] = {{4, 0}, {4, 1}};
    const zp_tensor zero_numel[] = {{1, 0}, {2, 0}, {3, 1}, {0, 1}};
    const zp_tensor decreasing[] = {{1, 0}, {1, 1}, {1, 2}, {1, 4}, {1, 4}, {1, 2}};
    const zp_tensor negative[] = {{1, 0}, {1, -1}};
    const zp_tensor first_not_zero[] = {{1, 1}, {1, 2}};
    const zp_tensor total_overflow[] = {{SIZE_MAX / 2 + 1, 0}, {SIZE_MAX / 2 + 1, 1}};
    const zp_tensor place_overflow[] = {{SIZE_MAX / 2, 0}, {SIZE_MAX / 2 + 1, 0}};
    const zp_tensor pad_overflow[] = {{SIZE_MAX - 10, 0}};

    expect_error("n 0", ok, 0, 1, 16, 1, "no tensors", NULL);
    expect_error("n -1", ok, -1, 1, 16, 1, "n -1", NULL);
    expect_error("tensors NULL", NULL, 2, 1, 16, 1, "NULL", NULL);
    expect_error("world 0", ok, 2, 0, 16, 1, "world 0", ">= 1");
    expect_error("world -3", ok, 2, -3, 16, 1, "world -3", NULL);
    expect_error("align 0", ok, 2, 2, 16, 0, "align 0", "power of two");
    expect_error("align 6", ok, 2, 2, 16, 6, "align 6", "power of two");
    expect_error("chunk_elems 0", ok, 2, 2, 0, 4, "chunk_elems 0", NULL);
    expect_error("numel 0", zero_numel, 4, 2, 16, 4, "tensor 3", "numel is 0");
    expect_error("decreasing", decreasing, 6, 2, 16, 4, "tensor 5: module 2 after module 4",
                 "non-decreasing");
    expect_error("negative module", negative, 2, 2, 16, 4, "tensor 1", "module -1");
    expect_error("first module 1", first_not_zero, 2, 2, 16, 4, "tensor 0", "module 1");
    expect_error("world x align overflow", ok, 2, 8, 16, (size_t)1 << (sizeof(size_t) * 8 - 2),
                 "world 8", "overflow");
    expect_error("total overflow", total_overflow, 2, 1, 16, 1, "tensor 1", "overflow");
    expect_error("placement overflow", place_overflow, 2, 1, SIZE_MAX, 2, "tensor 0", "overflow");
    expect_error("padding overflow", pad_overflow, 1, 1, 16, 16, "chunk 0", "overflow");

    check_set_context("error case: layout NULL");
    char err[64] = "";
    CHECK(layout_build(NULL, ok, 2, 1, 16, 1, err, sizeof(err)) == -1 && strstr(err, "layout"),
          "message \"%s\"", err);
    check_set_context("error case: short err buffer");
    char tiny[8];
    memset(tiny, 'x', sizeof(tiny));
    zp_layout L;
    CHECK(layout_build(&L, ok, 2, 0, 16, 1, tiny, sizeof(tiny)) == -1 && tiny[7] == '\0' &&
              strncmp(tiny, "world 0", 7) == 0,
          "truncated message");
    zp_layout_free(&L);
    zp_layout_free(NULL);
}

/* ---------------------------------------------------------------------------------------------
 * docs/DESIGN.md memory and communication formulas against hand-computed numbers. */
static void test_formulas(void)
{
    struct {
        int stage;
        size_t work;
        uint64_t psi;
        int world;
        uint64_t bytes;
    } const cases[] = {
        /* Ψ = 1000, N = 4. fp32: 16Ψ, 8Ψ + 8Ψ/N, 4Ψ + 12Ψ/N, 16Ψ/N. */
        {0, 4, 1000, 4, 16000}, {1, 4, 1000, 4, 10000}, {2, 4, 1000, 4, 7000}, {3, 4, 1000, 4, 4000},
        /* bf16: 16Ψ, 4Ψ + 12Ψ/N, 2Ψ + 14Ψ/N, 16Ψ/N. */
        {0, 2, 1000, 4, 16000}, {1, 2, 1000, 4, 7000}, {2, 2, 1000, 4, 5500}, {3, 2, 1000, 4, 4000},
        /* N = 3 rounds the sharded terms up: 8000/3 -> 2667, 16000/3 -> 5334, 14000/3 -> 4667. */
        {1, 4, 1000, 3, 10667}, {2, 4, 1000, 3, 8000}, {3, 4, 1000, 3, 5334},
        {1, 2, 1000, 3, 8000}, {2, 2, 1000, 3, 6667}, {3, 2, 1000, 3, 5334},
        /* Ψ = 1001, N = 4, bf16: 4004 + 3003, 2002 + ceil(3503.5), ceil(4004). */
        {1, 2, 1001, 4, 7007}, {2, 2, 1001, 4, 5506}, {3, 2, 1001, 4, 4004},
        /* One rank: every stage holds everything. */
        {0, 2, 1000, 1, 16000}, {1, 2, 1000, 1, 16000}, {2, 2, 1000, 1, 16000}, {3, 4, 1000, 1, 16000},
        /* A 175B model, fp16 working, 64 ranks: 16Ψ, 4Ψ + 12Ψ/64, 2Ψ + 14Ψ/64, 16Ψ/64. */
        {0, 2, 175000000000ull, 64, 2800000000000ull},
        {1, 2, 175000000000ull, 64, 700000000000ull + 32812500000ull},
        {2, 2, 175000000000ull, 64, 350000000000ull + 38281250000ull},
        {3, 2, 175000000000ull, 64, 43750000000ull},
        /* Invalid stages and worlds give 0. */
        {-1, 4, 1000, 4, 0}, {4, 4, 1000, 4, 0}, {1, 4, 1000, 0, 0},
    };
    check_set_context("zp_model_state_bytes");
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        uint64_t got = zp_model_state_bytes(cases[k].stage, cases[k].work, cases[k].psi, cases[k].world);
        CHECK(got == cases[k].bytes, "stage %d, %zu-byte work, psi %llu, world %d: %llu, expected %llu",
              cases[k].stage, cases[k].work, (unsigned long long)cases[k].psi, cases[k].world,
              (unsigned long long)got, (unsigned long long)cases[k].bytes);
    }
    /* Sharding never costs memory: bytes never grow with the stage at N > 1. */
    for (int w = 2; w <= 16; w++)
        for (int s = 1; s <= 3; s++)
            for (size_t p = 2; p <= 4; p += 2)
                CHECK(zp_model_state_bytes(s, p, 12345, w) <= zp_model_state_bytes(s - 1, p, 12345, w),
                      "stage %d > stage %d at world %d, %zu-byte work", s, s - 1, w, p);

    struct {
        int stage;
        size_t work;
        uint64_t psi;
        int world;
        double bytes;
    } const bus[] = {
        /* 2Ψ(N−1)/N elements at stages 0–2, 3Ψ(N−1)/N at stage 3, times the element size. */
        {0, 4, 1000, 4, 6000.0}, {1, 4, 1000, 4, 6000.0}, {2, 4, 1000, 4, 6000.0}, {3, 4, 1000, 4, 9000.0},
        {0, 2, 1000, 4, 3000.0}, {1, 2, 1000, 4, 3000.0}, {2, 2, 1000, 4, 3000.0}, {3, 2, 1000, 4, 4500.0},
        {2, 2, 1000, 1, 0.0}, {3, 2, 1000, 1, 0.0}, {3, 4, 300, 3, 2400.0}, {1, 2, 300, 3, 800.0},
        {-1, 4, 1000, 4, 0.0}, {4, 4, 1000, 4, 0.0}, {1, 4, 1000, 0, 0.0},
    };
    check_set_context("zp_bus_bytes_per_step");
    for (size_t k = 0; k < sizeof(bus) / sizeof(bus[0]); k++) {
        double got = zp_bus_bytes_per_step(bus[k].stage, bus[k].work, bus[k].psi, bus[k].world);
        double diff = got - bus[k].bytes;
        CHECK(diff < 1e-9 * (bus[k].bytes + 1.0) && -diff < 1e-9 * (bus[k].bytes + 1.0),
              "stage %d, %zu-byte work, psi %llu, world %d: %.6f, expected %.6f", bus[k].stage,
              bus[k].work, (unsigned long long)bus[k].psi, bus[k].world, got, bus[k].bytes);
    }
}

int main(void)
{
    long layouts = 0, chunks = 0, segments = 0;
    test_hand();
    test_errors();
    test_formulas();
    test_random(&layouts, &chunks, &segments);
    if (check_failures > 0) {
        fprintf(stderr, "partition: FAILED, %d check(s) failed%s\n", check_failures,
                check_failures > CHECK_SHOWN_TOTAL ? " (first ones shown)" : "");
        return 1;
    }
    printf("partition: ok: 3 hand layouts, %d error cases, formulas, %d random sets x worlds 1..%d "
           "(%ld layouts, %ld chunks at world 1, %ld segments checked)\n",
           g_error_cases, NUM_CASES, MAX_WORLD, layouts, chunks, segments);
    return 0;
}
