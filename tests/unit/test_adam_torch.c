/* test_adam_torch.c — libzero's AdamW and Adam-L2 bitwise against PyTorch's: the reference
 * vectors of tests/adam_ref/adam_ref.bin (torch.optim.AdamW / torch.optim.Adam on fp32 CPU
 * tensors, written by tests/adam_ref/gen_ref.py; torch's version in adam_ref.txt) replayed on
 * every path that updates parameters: zm_adamw in a plain loop, the host twin zk_adamw, the CPU
 * Adam zk_adamw_cpu on each SIMD path this CPU has (scalar, avx2, avx512; the others reported as
 * skipped), and the engine's optimizer (zr_optim_adamw: prepare, then update on the host device
 * and update_cpu). Final parameters and both moments must equal torch's bit for bit, and the bf16
 * working copy must equal torch's fp32 result rounded to bf16 (torch's own conversion, stored in
 * the file, and an independent round-to-nearest-even here). A nan result must be a nan in bf16
 * too, but not the same one: torch's vectorised conversion writes 0xffff for every nan, libzero
 * keeps the sign and top payload (zero_math.h). Usage: test_adam_torch FILE.
 *
 * adam_ref.bin, little-endian:
 *   header   "ZADAMREF", u32 version (1), u32 number of cases, char[32] torch version (NUL-padded)
 *   a case   u32 mode (0 AdamW, 1 Adam-L2), u32 n, u32 steps, u32 param kind, u32 grad kind,
 *            u32 0, u64 seed, f64 lr, beta1, beta2, eps, weight_decay;
 *            f32[n] p, f32[n] exp_avg, f32[n] exp_avg_sq, u16[n] p as bf16, after `steps` steps
 * The inputs are not stored: the initial parameters and each step's gradients come from the
 * generator below, which is gen_ref.py's (splitmix64; values built from random bits). */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/zero_math.h"
#include "runtime/device.h"
#include "runtime/optim.h"
#include "tests/common/check.h"

#define REF_MAGIC "ZADAMREF"
#define REF_VERSION 1u
#define REF_HEADER_BYTES 48 /* magic 8, version 4, cases 4, torch version 32 */
#define REF_CASE_BYTES 72   /* 6 u32, u64, 5 f64 */

/* ---- gen_ref.py's generator ---------------------------------------------------------------- */

enum { K_NORMAL, K_WIDE, K_TINY, K_HUGE, K_ZERO, K_MIXED, K_CONST, K_ALT, K_NUM };

/* Exponent-field ranges [lo, hi] of the kinds that draw one (gen_ref.py: EXP_RANGE). */
static const uint32_t g_exp_lo[4] = {117, 60, 0, 180}, g_exp_hi[4] = {128, 190, 24, 200};

static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* fp32 bits of one value of `kind` from 64 random bits: sign bit 63, exponent from bits 40..55,
 * mantissa bits 8..30, the mixed kind's choice (and the tiny kind's zeros) from bits 32..39. */
static uint32_t value_bits(int kind, uint64_t r)
{
    if (kind == K_MIXED)
        kind = (int)(((r >> 32) & 0xff) % 5);
    const uint32_t sign = (uint32_t)(r >> 63) << 31;
    if (kind == K_ZERO)
        return sign;
    const uint32_t lo = g_exp_lo[kind], hi = g_exp_hi[kind];
    const uint32_t e = lo + (uint32_t)((r >> 40) & 0xffff) % (hi - lo + 1);
    const uint32_t mant = (uint32_t)(r >> 8) & 0x7fffff;
    if (kind == K_TINY && ((r >> 32) & 7) == 0)
        return sign;
    return sign | e << 23 | mant;
}

static void draw(uint64_t *s, int kind, float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = zm_bits_f32(value_bits(kind, sm64(s)));
}

/* ---- the file ------------------------------------------------------------------------------ */

typedef struct ref_case {
    uint32_t mode, n, steps, pkind, gkind;
    uint64_t seed;
    double lr, beta1, beta2, eps, wd;
    const float *p, *m, *v; /* (n,) torch's final values */
    const uint16_t *p_bf16; /* (n,) torch's p.to(bfloat16) */
} ref_case;

static uint32_t rd_u32(const unsigned char *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t rd_u64(const unsigned char *b)
{
    return (uint64_t)rd_u32(b) | (uint64_t)rd_u32(b + 4) << 32;
}

static double rd_f64(const unsigned char *b)
{
    return zm_bits_f64(rd_u64(b));
}

/* Reads the whole file; returns the cases (malloc'd, pointing into *blob) or NULL after saying
 * why on stderr. The arrays are copied out so they are aligned. */
static ref_case *load(const char *path, int *ncases, char torch_version[33])
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "test_adam_torch: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = size > 0 ? malloc((size_t)size) : NULL;
    if (!b || fread(b, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "test_adam_torch: cannot read %s\n", path);
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    const size_t len = (size_t)size;
    if (len < REF_HEADER_BYTES || memcmp(b, REF_MAGIC, 8) != 0 || rd_u32(b + 8) != REF_VERSION) {
        fprintf(stderr, "test_adam_torch: %s is not a reference file of version %u (expected "
                        "the magic %s and version %u)\n",
                path, len >= 12 ? rd_u32(b + 8) : 0u, REF_MAGIC, REF_VERSION);
        free(b);
        return NULL;
    }
    const int nc = (int)rd_u32(b + 12);
    memcpy(torch_version, b + 16, 32);
    torch_version[32] = '\0';
    ref_case *cs = calloc((size_t)nc, sizeof *cs);
    size_t at = REF_HEADER_BYTES;
    for (int k = 0; k < nc; k++) {
        ref_case *c = &cs[k];
        if (at + REF_CASE_BYTES > len)
            goto truncated;
        const unsigned char *h = b + at;
        c->mode = rd_u32(h), c->n = rd_u32(h + 4), c->steps = rd_u32(h + 8);
        c->pkind = rd_u32(h + 12), c->gkind = rd_u32(h + 16), c->seed = rd_u64(h + 24);
        c->lr = rd_f64(h + 32), c->beta1 = rd_f64(h + 40), c->beta2 = rd_f64(h + 48);
        c->eps = rd_f64(h + 56), c->wd = rd_f64(h + 64);
        at += REF_CASE_BYTES;
        const size_t n = c->n;
        if (c->mode > 1 || c->pkind >= K_NUM || c->gkind >= K_NUM || n == 0 ||
            at + n * 14 > len) {
            fprintf(stderr, "test_adam_torch: %s: case %d is malformed\n", path, k);
            goto fail;
        }
        float *p = malloc(n * 4), *m = malloc(n * 4), *v = malloc(n * 4);
        uint16_t *w = malloc(n * 2);
        for (size_t i = 0; i < n; i++) {
            p[i] = zm_bits_f32(rd_u32(b + at + 4 * i));
            m[i] = zm_bits_f32(rd_u32(b + at + 4 * (n + i)));
            v[i] = zm_bits_f32(rd_u32(b + at + 4 * (2 * n + i)));
            w[i] = (uint16_t)(b[at + 12 * n + 2 * i] | b[at + 12 * n + 2 * i + 1] << 8);
        }
        c->p = p, c->m = m, c->v = v, c->p_bf16 = w;
        at += n * 14;
    }
    if (at != len) {
        fprintf(stderr, "test_adam_torch: %s: %zu bytes after the last case\n", path, len - at);
        goto fail;
    }
    free(b);
    *ncases = nc;
    return cs;
truncated:
    fprintf(stderr, "test_adam_torch: %s is truncated\n", path);
fail:
    free(b);
    free(cs); /* the arrays of the cases read so far are left to the exit */
    return NULL;
}

/* ---- the paths ----------------------------------------------------------------------------- */

enum {
    PATH_ZM,      /* zm_adamw in a plain loop */
    PATH_HOST,    /* zk_adamw (the host backend's "device" kernel) */
    PATH_CPU,     /* zk_adamw_cpu, on the ISA in g_isas[isa] */
    PATH_OPTIM,   /* zr_optim_adamw.update on the host device */
    PATH_OPTIM_CPU /* zr_optim_adamw.update_cpu */
};

static const char *const g_isas[] = {"scalar", "avx2", "avx512"};
#define N_ISAS 3

typedef struct path {
    int kind, isa;
    char name[40];
    int cases_ok;
} path;

static zr_device g_dev;

static zk_adamw_params params_of(const ref_case *c, int64_t t)
{
    zk_adamw_params hp;
    memset(&hp, 0, sizeof hp);
    hp.lr = c->lr, hp.beta1 = c->beta1, hp.beta2 = c->beta2, hp.eps = c->eps;
    hp.weight_decay = c->wd;
    hp.grad_scale = 1.0f;
    hp.l2 = (int)c->mode;
    zk_adamw_bias(&hp, t);
    return hp;
}

/* One optimizer step of n elements on path pa; work receives the bf16 copy (not in PATH_ZM,
 * which writes it with zm_f32_to_bf16 itself). */
static void step_on(const path *pa, const ref_case *c, int64_t t, float *p, float *m, float *v,
                    const float *g, uint16_t *work)
{
    const size_t n = c->n;
    const zk_adamw_params hp = params_of(c, t);
    switch (pa->kind) {
    case PATH_ZM: {
        const zm_adamw_coef k =
            zm_adamw_coefs(hp.lr, hp.beta1, hp.beta2, hp.eps, hp.weight_decay, hp.bias_corr1,
                           hp.bias_corr2_sqrt, hp.grad_scale, hp.l2);
        for (size_t i = 0; i < n; i++) {
            zm_adamw(&p[i], &m[i], &v[i], g[i], &k);
            work[i] = zm_f32_to_bf16(p[i]);
        }
        break;
    }
    case PATH_HOST:
        zk_adamw(p, m, v, g, ZERO_DTYPE_FP32, work, ZERO_DTYPE_BF16, n, &hp);
        break;
    case PATH_CPU:
        CHECK(zk_adamw_cpu_force(g_isas[pa->isa]) == 0, "cannot force %s", g_isas[pa->isa]);
        zk_adamw_cpu(p, m, v, g, work, ZERO_DTYPE_BF16, n, &hp);
        zk_adamw_cpu_force("auto");
        break;
    default: {
        const zr_hyper h = {c->lr, c->wd, c->beta1, c->beta2, c->eps, (int)c->mode};
        zr_optim_prep prep;
        zr_optim_adamw.prepare(&prep, &h, t, 1.0);
        zr_optim_piece pc = {.master = p,
                             .state = {m, v},
                             .grad = g,
                             .grad_type = ZERO_DTYPE_FP32,
                             .work = work,
                             .work_type = ZERO_DTYPE_BF16,
                             .n = n,
                             .no_decay = 0};
        if (pa->kind == PATH_OPTIM)
            zr_optim_adamw.update(&g_dev, &prep, &pc);
        else
            zr_optim_adamw.update_cpu(&prep, &pc);
        break;
    }
    }
}

/* Round to nearest even, written apart from zero_math.h: the bf16 torch's fp32 value rounds to
 * (no nan in the references). */
static uint16_t rne_bf16(float f)
{
    const uint32_t u = zm_f32_bits(f);
    const uint32_t low = u & 0xffffu, up = u >> 16;
    if (low > 0x8000u || (low == 0x8000u && (up & 1u)))
        return (uint16_t)(up + 1);
    return (uint16_t)up;
}

static int bf16_isnan(uint16_t h)
{
    return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
}

static int f32_isnan(float f)
{
    return (zm_f32_bits(f) & 0x7fffffffu) > 0x7f800000u;
}

/* Whether a working-copy value is the reference's: equal bits, or both nans. */
static int bf16_ok(uint16_t got, uint16_t want, float want_f32)
{
    return got == want || (f32_isnan(want_f32) && bf16_isnan(got) && bf16_isnan(want));
}

static const char *mode_name(uint32_t mode)
{
    return mode ? "adam-l2" : "adamw";
}

/* The first differing element of an array, printed; returns the count of differing ones. */
static size_t diff(const char *what, const float *got, const float *want, size_t n,
                   const path *pa, int k)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (zm_f32_bits(got[i]) != zm_f32_bits(want[i]) && bad++ == 0)
            fprintf(stderr, "     %s case %d: %s[%zu] = %.9g (0x%08x), torch %.9g (0x%08x)\n",
                    pa->name, k, what, i, (double)got[i], zm_f32_bits(got[i]), (double)want[i],
                    zm_f32_bits(want[i]));
    return bad;
}

static void run_case(path *pa, const ref_case *c, int k)
{
    const size_t n = c->n;
    float *p = malloc(n * 4), *m = calloc(n, 4), *v = calloc(n, 4), *g = malloc(n * 4);
    uint16_t *work = malloc(n * 2);
    uint64_t s = c->seed;
    draw(&s, (int)c->pkind, p, n);
    for (uint32_t t = 1; t <= c->steps; t++) {
        if (c->gkind == K_CONST || c->gkind == K_ALT) {
            uint64_t s2 = c->seed ^ 0x5bd1e995u;
            draw(&s2, K_NORMAL, g, n);
            if (c->gkind == K_ALT && t % 2 == 0)
                for (size_t i = 0; i < n; i++)
                    g[i] = -g[i];
        } else {
            draw(&s, (int)c->gkind, g, n);
        }
        memset(work, 0xa5, n * 2);
        step_on(pa, c, t, p, m, v, g, work);
    }
    const size_t bp = diff("p", p, c->p, n, pa, k), bm = diff("exp_avg", m, c->m, n, pa, k);
    const size_t bv = diff("exp_avg_sq", v, c->v, n, pa, k);
    size_t bw = 0;
    for (size_t i = 0; i < n; i++)
        bw += !bf16_ok(work[i], c->p_bf16[i], c->p[i]);
    CHECK(bp + bm + bv + bw == 0,
          "%s case %d (%s lr=%g betas=%g,%g eps=%g wd=%g, n=%u, %u steps, params %u, grads "
          "%u): %zu p, %zu exp_avg, %zu exp_avg_sq, %zu bf16 values differ from torch's",
          pa->name, k, mode_name(c->mode), c->lr, c->beta1, c->beta2, c->eps, c->wd, c->n,
          c->steps, c->pkind, c->gkind, bp, bm, bv, bw);
    pa->cases_ok += bp + bm + bv + bw == 0;
    free(p), free(m), free(v), free(g), free(work);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_adam_torch tests/adam_ref/adam_ref.bin\n");
        return 2;
    }
    int nc = 0;
    char torch_version[33];
    ref_case *cs = load(argv[1], &nc, torch_version);
    if (!cs)
        return 1;
    printf("     %d reference cases from torch %s (%s)\n", nc, torch_version, argv[1]);

    /* torch's bf16 conversion is round to nearest even of its fp32 result */
    size_t nb = 0, nvals = 0, nnan = 0;
    for (int k = 0; k < nc; k++)
        for (size_t i = 0; i < cs[k].n; i++, nvals++) {
            if (f32_isnan(cs[k].p[i])) {
                nnan++;
                nb += !bf16_isnan(cs[k].p_bf16[i]);
            } else {
                nb += rne_bf16(cs[k].p[i]) != cs[k].p_bf16[i];
            }
        }
    CHECK(nb == 0, "%zu of torch's bf16 values are not its fp32 values rounded to nearest even",
          nb);
    REPORT_LINE("torch's bf16 of %zu fp32 results = round to nearest even (%zu nans: nan)", nvals,
                nnan);

    zr_device_host_init(&g_dev, 0);
    omp_set_num_threads(2);
    path paths[8];
    int np = 0;
    paths[np++] = (path){PATH_ZM, 0, "zm_adamw", 0};
    paths[np++] = (path){PATH_HOST, 0, "zk_adamw", 0};
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (zk_adamw_cpu_force(g_isas[isa]) != 0) {
            printf("skip zk_adamw_cpu/%s: this CPU lacks the instructions\n", g_isas[isa]);
            continue;
        }
        paths[np] = (path){PATH_CPU, isa, "", 0};
        snprintf(paths[np].name, sizeof paths[np].name, "zk_adamw_cpu/%s", g_isas[isa]);
        np++;
    }
    zk_adamw_cpu_force("auto");
    paths[np++] = (path){PATH_OPTIM, 0, "zr_optim_adamw.update", 0};
    paths[np++] = (path){PATH_OPTIM_CPU, 0, "zr_optim_adamw.update_cpu", 0};

    for (int q = 0; q < np; q++) {
        for (int k = 0; k < nc; k++)
            run_case(&paths[q], &cs[k], k);
        REPORT_LINE("%s: %d/%d cases (AdamW and Adam-L2, 1-1000 steps) bitwise equal to torch "
                    "(p, exp_avg, exp_avg_sq, bf16 copy)",
                    paths[q].name, paths[q].cases_ok, nc);
    }
    if (check_failures) {
        fprintf(stderr, "test_adam_torch: %d check(s) FAILED\n", check_failures);
        return 1;
    }
    printf("test_adam_torch: all checks passed (%d paths x %d cases)\n", np, nc);
    return 0;
}
