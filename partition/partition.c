/* partition.c — the ZeRO layout arithmetic: module-ordered tensors laid into chunks, each chunk
 * padded so it splits into `world` equal slices, slice → tensor-piece lookup, and the docs/DESIGN.md
 * model-state and bus-byte formulas. Pure functions of their arguments; no I/O. */
#include "partition/partition.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records ZERO_ERR_INVALID and the message in e (may be NULL); returns the status. */
static zero_status fail(zr_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static zero_status fail(zr_error *e, const char *fmt, ...)
{
    char msg[ZR_ERROR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return zr_error_set(e, ZERO_ERR_INVALID, "%s", msg);
}

/* Rounds x up to a multiple of a (a power of two); returns 0 on overflow, which callers treat
 * as an error because no valid x rounds to 0 (x == 0 rounds to itself, and is checked first). */
static size_t align_up_pow2(size_t x, size_t a)
{
    if (x > SIZE_MAX - (a - 1))
        return 0;
    return (x + (a - 1)) & ~(a - 1);
}

/* Rounds x up to a multiple of m (any m >= 1); 0 on overflow, as above. */
static size_t round_up(size_t x, size_t m)
{
    size_t r = x % m;
    if (r == 0)
        return x;
    if (x > SIZE_MAX - (m - r))
        return 0;
    return x + (m - r);
}

/* End (in elements) of tensors [first, last) of one module placed from `start` in a chunk, each
 * at an aligned offset; writes the offsets to place when place != NULL. Returns 0 on overflow. */
static size_t place_module(const zp_tensor *tensors, int first, int last, size_t start,
                           size_t align, zp_place *place, int chunk)
{
    size_t end = start;
    for (int i = first; i < last; i++) {
        size_t off = align_up_pow2(end, align);
        if (off == 0 && end != 0)
            return 0;
        if (tensors[i].numel > SIZE_MAX - off)
            return 0;
        if (place) {
            place[i].chunk = chunk;
            place[i].offset = off;
            place[i].numel = tensors[i].numel;
        }
        end = off + tensors[i].numel;
    }
    return end;
}

static zero_status check_args(const zp_tensor *tensors, int n, int world, size_t chunk_elems,
                              size_t align, zr_error *e)
{
    if (world < 1)
        return fail(e, "world %d: must be >= 1", world);
    if (align == 0 || (align & (align - 1)) != 0)
        return fail(e, "align %zu: must be a power of two >= 1", align);
    if (align > SIZE_MAX / (size_t)world)
        return fail(e, "world %d x align %zu: overflows size_t", world, align);
    if (chunk_elems == 0)
        return fail(e, "chunk_elems 0: must be >= 1");
    if (n < 0)
        return fail(e, "n %d: tensor count must be >= 1", n);
    if (n == 0)
        return fail(e, "no tensors (n is 0)");
    if (!tensors)
        return fail(e, "tensors is NULL with n %d", n);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const zp_tensor *t = &tensors[i];
        if (t->numel == 0)
            return fail(e, "tensor %d: numel is 0", i);
        if (t->module < 0)
            return fail(e, "tensor %d: module %d is negative", i, t->module);
        if (i == 0 && t->module != 0)
            return fail(e, "tensor 0: module %d (the first module must be 0)", t->module);
        if (i > 0 && t->module < tensors[i - 1].module)
            return fail(e, "tensor %d: module %d after module %d (modules must be non-decreasing)",
                        i, t->module, tensors[i - 1].module);
        if (t->module == INT_MAX)
            return fail(e, "tensor %d: module %d is too large", i, t->module);
        if (t->numel > SIZE_MAX - total)
            return fail(e, "tensor %d: numel %zu overflows the total element count", i,
                        t->numel);
        total += t->numel;
    }
    return 0;
}

/* Greedy over whole modules: a module joins the open chunk when the chunk's end (inner alignment
 * gaps included, final padding excluded, so the grouping is the same at every world size) stays
 * <= chunk_elems; otherwise it opens a new chunk, which it may overflow on its own. Fills place,
 * chunks (used, tensors, modules) and module_chunk; *nc and *num_params. */
static zero_status group_modules(const zp_tensor *tensors, int n, size_t chunk_elems, size_t align,
                                 zp_place *place, zp_chunk *chunks, int *module_chunk, int *nc,
                                 size_t *num_params, zr_error *e)
{
    *nc = 0;
    *num_params = 0;
    for (int first = 0; first < n;) {
        int last = first + 1; /* tensors [first, last) form one module */
        while (last < n && tensors[last].module == tensors[first].module)
            last++;
        zp_chunk *open = *nc > 0 ? &chunks[*nc - 1] : NULL;
        size_t end = 0;
        if (open) {
            end = place_module(tensors, first, last, open->used, align, NULL, 0);
            if (end == 0 || end > chunk_elems)
                open = NULL; /* overflowed or would exceed the target: start a new chunk */
        }
        if (!open) {
            open = &chunks[(*nc)++];
            memset(open, 0, sizeof(*open));
            open->first_tensor = first;
            open->first_module = tensors[first].module;
        }
        end = place_module(tensors, first, last, open->used, align, place, *nc - 1);
        if (end == 0)
            return fail(e, "tensor %d: module %d overflows size_t when placed in a chunk", first,
                        tensors[first].module);
        open->used = end;
        open->num_tensors += last - first;
        open->last_module = tensors[first].module;
        module_chunk[tensors[first].module] = *nc - 1;
        for (int i = first; i < last; i++)
            *num_params += tensors[i].numel;
        first = last;
    }
    return ZERO_OK;
}

/* Pads each chunk to equal, align-multiple slices and takes the prefix sums into layout. */
static zero_status pad_chunks(zp_layout *layout, zp_chunk *chunks, int nc, int world,
                              size_t world_align, zr_error *e)
{
    size_t total = 0, shard = 0, max_padded = 0, max_slice = 0;
    for (int c = 0; c < nc; c++) {
        zp_chunk *ch = &chunks[c];
        size_t padded = round_up(ch->used, world_align);
        if (padded == 0 || padded > SIZE_MAX - total)
            return fail(e, "chunk %d: %zu elements padded to a multiple of %zu overflow size_t", c,
                        ch->used, world_align);
        ch->padded = padded;
        ch->slice = padded / (size_t)world;
        ch->offset = total;
        ch->shard_offset = shard;
        total += padded;
        shard += ch->slice;
        if (padded > max_padded)
            max_padded = padded;
        if (ch->slice > max_slice)
            max_slice = ch->slice;
    }
    layout->total_padded = total;
    layout->shard_numel = shard;
    layout->max_padded = max_padded;
    layout->max_slice = max_slice;
    return ZERO_OK;
}

zero_status zp_layout_build(zp_layout *layout, const zp_tensor *tensors, int n, int world,
                            size_t chunk_elems, size_t align, zr_error *e)
{
    if (!layout)
        return fail(e, "layout is NULL");
    memset(layout, 0, sizeof(*layout));
    zero_status s = check_args(tensors, n, world, chunk_elems, align, e);
    if (s)
        return s;
    const int num_modules = tensors[n - 1].module + 1;
    zp_place *place = malloc((size_t)n * sizeof(*place));
    zp_chunk *chunks = malloc((size_t)n * sizeof(*chunks)); /* at most one chunk per tensor */
    int *module_chunk = malloc((size_t)num_modules * sizeof(*module_chunk));
    int nc = 0;
    size_t num_params = 0;
    if (!place || !chunks || !module_chunk) {
        s = zr_error_set(e, ZERO_ERR_SYSTEM,
                         "out of host memory for a layout of %d tensors, %d modules", n,
                         num_modules);
        goto cleanup;
    }
    for (int m = 0; m < num_modules; m++)
        module_chunk[m] = -1;
    ZR_CHECK_GOTO(group_modules(tensors, n, chunk_elems, align, place, chunks, module_chunk, &nc,
                                &num_params, e),
                  s, cleanup);
    ZR_CHECK_GOTO(pad_chunks(layout, chunks, nc, world, (size_t)world * align, e), s, cleanup);
    zp_chunk *shrunk = realloc(chunks, (size_t)nc * sizeof(*chunks));
    if (shrunk)
        chunks = shrunk; /* a failed shrink keeps the larger block, which is still correct */
    layout->world = world;
    layout->align = align;
    layout->chunk_elems = chunk_elems;
    layout->num_tensors = n;
    layout->num_chunks = nc;
    layout->num_modules = num_modules;
    layout->place = place;
    layout->chunks = chunks;
    layout->module_chunk = module_chunk;
    layout->num_params = num_params;
    return ZERO_OK;

cleanup:
    memset(layout, 0, sizeof(*layout)); /* nothing of it to undo */
    free(module_chunk);
    free(chunks);
    free(place);
    return s;
}

void zp_layout_free(zp_layout *layout)
{
    if (!layout)
        return;
    free(layout->module_chunk);
    free(layout->chunks);
    free(layout->place);
    memset(layout, 0, sizeof(*layout));
}

void zp_slice_range(const zp_layout *layout, int c, int rank, size_t *lo, size_t *hi)
{
    size_t a = 0, b = 0;
    if (layout && c >= 0 && c < layout->num_chunks && rank >= 0 && rank < layout->world) {
        a = (size_t)rank * layout->chunks[c].slice;
        b = a + layout->chunks[c].slice;
    }
    if (lo)
        *lo = a;
    if (hi)
        *hi = b;
}

int zp_segments(const zp_layout *layout, int c, size_t lo, size_t hi, zp_segment *out, int max)
{
    if (!layout || c < 0 || c >= layout->num_chunks || lo >= hi)
        return 0;
    const zp_chunk *ch = &layout->chunks[c];
    const zp_place *place = layout->place;
    int begin = ch->first_tensor, end = ch->first_tensor + ch->num_tensors;

    /* Tensors of a chunk sit at increasing offsets: find the first one ending after lo. */
    int a = begin, b = end;
    while (a < b) {
        int mid = a + (b - a) / 2;
        if (place[mid].offset + place[mid].numel <= lo)
            a = mid + 1;
        else
            b = mid;
    }

    int count = 0;
    for (int i = a; i < end && place[i].offset < hi; i++) {
        size_t t_lo = place[i].offset, t_hi = place[i].offset + place[i].numel;
        size_t s_lo = t_lo > lo ? t_lo : lo;
        size_t s_hi = t_hi < hi ? t_hi : hi;
        if (s_lo >= s_hi)
            continue;
        if (out && count < max) {
            out[count].tensor = i;
            out[count].tensor_offset = s_lo - t_lo;
            out[count].chunk_offset = s_lo;
            out[count].numel = s_hi - s_lo;
        }
        count++;
    }
    return count;
}

uint64_t zp_model_state_bytes(int stage, size_t work_bytes, uint64_t psi, int world)
{
    if (stage < 0 || stage > 3 || world < 1 || work_bytes == 0)
        return 0;
    const uint64_t p = work_bytes;                       /* bytes per working element */
    const uint64_t o = 8 + (work_bytes == 4 ? 0 : 4);    /* Adam m, v (+ fp32 master) */
    const uint64_t n = (uint64_t)world;
#define ZP_CEIL_DIV(x) (((x) + n - 1) / n)
    switch (stage) {
    case 0: return (2 * p + o) * psi;
    case 1: return 2 * p * psi + ZP_CEIL_DIV(o * psi);
    case 2: return p * psi + ZP_CEIL_DIV((p + o) * psi);
    default: return ZP_CEIL_DIV((2 * p + o) * psi);
    }
#undef ZP_CEIL_DIV
}

double zp_bus_bytes_per_step(int stage, size_t work_bytes, uint64_t psi, int world)
{
    if (stage < 0 || stage > 3 || world < 1)
        return 0.0;
    /* Stages 0–2: one reduce-scatter + one all-gather of Ψ; stage 3 adds the second gather
     * of the parameters for backward. Each moves Ψ(N−1)/N elements per rank. */
    double passes = stage == 3 ? 3.0 : 2.0;
    return passes * (double)psi * (double)(world - 1) / (double)world * (double)work_bytes;
}
