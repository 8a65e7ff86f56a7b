/* adam_cpu.c — CPU Adam of ZeRO-Offload (kernels.h: zk_adamw_cpu): the AdamW update of
 * zero_math.h on an fp32 master/m/v/gradient shard in host memory, with the working copy (fp32,
 * bf16 or fp16) written in the same pass. AVX-512 and AVX2 paths live in this one file as
 * target-attributed functions chosen at run time from what the CPU has (the binary stays
 * portable: no -march), beside a scalar fallback. OpenMP over fixed blocks.
 *
 * Every path returns the bits of zk_adamw (kernels.c) and of the CUDA kernel: the vector code
 * performs zm_adamw's operations one by one in its order — an fma exactly where zm_adamw has one
 * (where PyTorch's CPU kernels fuse), separate multiplies and adds everywhere else (fusing skips
 * a rounding and changes results) — and vector sqrt and div are correctly rounded like the
 * scalar ones. (The one freedom left is which nan comes out where two nans meet: see kernels.h.)
 * The file is compiled with -ffp-contract=off (kernels/sources.cmake) so GCC fuses none of the
 * intrinsics' separate multiplies and adds. The update moves 30 bytes per element (bf16 copy)
 * and is limited by memory bandwidth; what keeps one thread at that limit (docs/BENCHMARKS.md,
 * "CPU Adam"): a short software prefetch into L1 (ZK_PREFETCH_BYTES), vectors that start on a
 * cache line (the first elements up to master's next line are done apart), and streaming
 * (non-temporal) stores for the working copy of a large update (ZK_STREAM_MIN). */
#include "kernels.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "zero_math.h"

#if defined(__x86_64__) || defined(__i386__)
#define ZK_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define ZK_X86 0
#endif

#define ZK_BLOCK 4096    /* elements per OpenMP work item (a multiple of every vector step) */
#define ZK_OMP_MIN 32768 /* below this many elements the calling thread does all the work */
#define ZK_NONE 3        /* "no working copy" (after the three dtypes) */
/* Software prefetch distance, in bytes ahead of the current element of each fp32 input stream.
 * The L2 hardware prefetcher brings the streams from memory; what one thread lacks is the lines
 * in L1 before the loads that need them: with a square root and two divides in flight per vector
 * the out-of-order window fills with waiting loads. A prefetch 6 lines ahead gets them there in
 * time. Farther is worse, not better: at 1.5 KiB (right for Zen 3) a Zen 4 thread fell to 0.83
 * of the memory-only pass, at 256-512 bytes it reaches it (docs/BENCHMARKS.md: the measured
 * distances, and why far prefetches are thought to stall). */
#define ZK_PREFETCH_BYTES 384
/* Cache line; the vector loops start each block on a line of master (see zk_adamw_cpu). */
#define ZK_LINE 64
/* Updates of at least this many elements write the working copy with streaming stores (where
 * it is aligned for them): it is write-only, so a normal store first reads each line from memory
 * (2 more bytes per element for bf16), and such an update (>= 60 MiB of traffic) leaves no part
 * of it in a last-level cache for its reader anyway. Smaller updates keep it cached. */
#define ZK_STREAM_MIN ((size_t)1 << 21)

#define ZK_INLINE static inline __attribute__((always_inline))

enum { ZK_ISA_SCALAR = 0, ZK_ISA_AVX2 = 1, ZK_ISA_AVX512 = 2, ZK_ISA_AUTO = -1 };

static const char *const g_isa_names[] = {"scalar", "avx2", "avx512"};

/* The path forced by zk_adamw_cpu_force, or ZK_ISA_AUTO. */
static atomic_int g_forced = ZK_ISA_AUTO;

/* ---- scalar: zm_adamw element by element (also the tail of the vector paths) --------------- */

/* The portable path: zk_adamw's loop (the compiler may still vectorise it for the baseline ISA,
 * SSE2 on x86-64). wt is a literal at every call site, so each working type gets its own loop.
 * Inlined into the vector paths' functions too, where it finishes the last < 16 elements. */
ZK_INLINE void scalar_range(float *restrict master, float *restrict m, float *restrict v,
                            const float *restrict grad, void *restrict work, int wt, size_t lo,
                            size_t hi, const zm_adamw_coef *c)
{
    const zm_adamw_coef k = *c;
#pragma omp simd
    for (size_t i = lo; i < hi; i++) {
        float p = master[i], mi = m[i], vi = v[i];
        zm_adamw(&p, &mi, &vi, grad[i], &k);
        master[i] = p;
        m[i] = mi;
        v[i] = vi;
        if (wt != ZK_NONE)
            zm_store(work, wt, i, p);
    }
}

static void scalar_block(float *master, float *m, float *v, const float *grad, void *work,
                         int wt, size_t lo, size_t hi, const zm_adamw_coef *c)
{
    switch (wt) {
    case ZERO_DTYPE_FP32:
        scalar_range(master, m, v, grad, work, ZERO_DTYPE_FP32, lo, hi, c);
        break;
    case ZERO_DTYPE_BF16:
        scalar_range(master, m, v, grad, work, ZERO_DTYPE_BF16, lo, hi, c);
        break;
    case ZERO_DTYPE_FP16:
        scalar_range(master, m, v, grad, work, ZERO_DTYPE_FP16, lo, hi, c);
        break;
    default:
        scalar_range(master, m, v, grad, work, ZK_NONE, lo, hi, c);
        break;
    }
}

#if ZK_X86

/* Prefetch the cache line ZK_PREFETCH_BYTES past x[i] of each fp32 input. Integer arithmetic on
 * the address: past the end of an array it names no object, and prefetches never fault. */
#define ZK_PREFETCH_LINE(x, i)                                                                  \
    _mm_prefetch((const char *)((uintptr_t)((x) + (i)) + ZK_PREFETCH_BYTES), _MM_HINT_T0)

ZK_INLINE void prefetch_inputs(const float *master, const float *m, const float *v,
                               const float *grad, size_t i)
{
    ZK_PREFETCH_LINE(grad, i);
    ZK_PREFETCH_LINE(master, i);
    ZK_PREFETCH_LINE(m, i);
    ZK_PREFETCH_LINE(v, i);
}

/* Whether the working copy of elements lo.. (element size wes) may take streaming stores of
 * `bytes` bytes, which must be aligned: nt asked for them and work + lo is aligned. The vector
 * loops step 16 elements from lo, so every store is then aligned. */
static inline int stream_ok(int nt, const void *work, size_t wes, size_t lo, size_t bytes)
{
    return nt && (uintptr_t)work % wes == 0 && ((uintptr_t)work + lo * wes) % bytes == 0;
}

/* ---- AVX2 (+F16C): 8 lanes, 16 elements per iteration -------------------------------------- */

#define ZK_AVX2 __attribute__((target("avx2,f16c,fma")))
#define ZK_AVX2_INLINE static inline __attribute__((always_inline, target("avx2,f16c,fma")))

typedef struct avx2_coef {
    __m256 grad_scale, decay, l2, lerp_coef, beta2, one_minus_beta2, bias_corr2_sqrt, eps, step;
    int lerp_from_m, use_l2;
} avx2_coef;

ZK_AVX2_INLINE avx2_coef avx2_coefs(const zm_adamw_coef *c)
{
    avx2_coef k;
    k.grad_scale = _mm256_set1_ps(c->grad_scale);
    k.decay = _mm256_set1_ps(c->decay);
    k.l2 = _mm256_set1_ps(c->l2);
    k.lerp_coef = _mm256_set1_ps(c->lerp_coef);
    k.beta2 = _mm256_set1_ps(c->beta2);
    k.one_minus_beta2 = _mm256_set1_ps(c->one_minus_beta2);
    k.bias_corr2_sqrt = _mm256_set1_ps(c->bias_corr2_sqrt);
    k.eps = _mm256_set1_ps(c->eps);
    k.step = _mm256_set1_ps(c->step);
    k.lerp_from_m = c->lerp_from_m;
    k.use_l2 = c->use_l2;
    return k;
}

/* zm_adamw on elements i..i+7, operation for operation; returns the updated master. (Which nan
 * comes out where two nans meet in an add or multiply is not fixed: the compiler may swap the
 * operands of these commutative operations, here as in zk_adamw, whose own variants differ.) */
ZK_AVX2_INLINE __m256 avx2_update(float *master, float *m, float *v, const float *grad, size_t i,
                                  const avx2_coef *k)
{
    const __m256 p = _mm256_loadu_ps(master + i), mo = _mm256_loadu_ps(m + i);
    __m256 g = _mm256_mul_ps(_mm256_loadu_ps(grad + i), k->grad_scale);
    if (k->use_l2)
        g = _mm256_fmadd_ps(p, k->l2, g);
    __m256 pn = _mm256_mul_ps(p, k->decay);
    __m256 mn = _mm256_fmadd_ps(k->lerp_coef, _mm256_sub_ps(g, mo), k->lerp_from_m ? mo : g);
    __m256 vn = _mm256_fmadd_ps(_mm256_mul_ps(k->one_minus_beta2, g), g,
                                _mm256_mul_ps(_mm256_loadu_ps(v + i), k->beta2));
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vn), k->bias_corr2_sqrt), k->eps);
    pn = _mm256_sub_ps(pn, _mm256_div_ps(_mm256_mul_ps(k->step, mn), denom));
    _mm256_storeu_ps(master + i, pn);
    _mm256_storeu_ps(m + i, mn);
    _mm256_storeu_ps(v + i, vn);
    return pn;
}

/* zm_f32_to_bf16 on 8 lanes, each result in the low half of its 32-bit lane. */
ZK_AVX2_INLINE __m256i avx2_bf16(__m256 x)
{
    const __m256i u = _mm256_castps_si256(x);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    const __m256i biased = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
    const __m256i rounded = _mm256_srli_epi32(biased, 16);
    const __m256i nan = _mm256_or_si256(hi, _mm256_set1_epi32(0x0040));
    /* Unordered with itself is exactly zero_math.h's (u & 0x7fffffff) > 0x7f800000, in one
     * instruction. */
    const __m256 is_nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rounded),
                                                _mm256_castsi256_ps(nan), is_nan));
}

/* F16C with an explicit round-to-nearest-even immediate (not MXCSR): IEEE conversion, which is
 * what zm_f32_to_f16 computes, subnormals, overflow to inf and quiet nan with the top payload
 * bits included (the unit test checks this on every class of input). */
#define ZK_F16_RNE _MM_FROUND_TO_NEAREST_INT

/* Stores of the working copy: streaming when s (stream_ok), else plain unaligned stores. */
ZK_AVX2_INLINE void avx2_put_ps(float *dst, __m256 x, int s)
{
    if (s)
        _mm256_stream_ps(dst, x);
    else
        _mm256_storeu_ps(dst, x);
}

/* 16 working elements of 16 bits: AVX alone, so the AVX2 and the AVX-512 paths both inline it. */
static inline __attribute__((always_inline, target("avx"))) void avx_put_256(uint16_t *dst,
                                                                            __m256i x, int s)
{
    if (s)
        _mm256_stream_si256((__m256i *)dst, x);
    else
        _mm256_storeu_si256((__m256i *)dst, x);
}

ZK_AVX2_INLINE void avx2_put_128(uint16_t *dst, __m128i x, int s)
{
    if (s)
        _mm_stream_si128((__m128i *)dst, x);
    else
        _mm_storeu_si128((__m128i *)dst, x);
}

/* nt: streaming stores for the working copy where stream_ok allows them. */
ZK_AVX2_INLINE void avx2_range(float *master, float *m, float *v, const float *grad, void *work,
                               int wt, int nt, size_t lo, size_t hi, const zm_adamw_coef *c)
{
    const avx2_coef k = avx2_coefs(c);
    const int s = wt != ZK_NONE && stream_ok(nt, work, wt == ZERO_DTYPE_FP32 ? 4 : 2, lo,
                                             wt == ZERO_DTYPE_FP16 ? 16 : 32);
    size_t i = lo;
    for (; i + 16 <= hi; i += 16) { /* 16 floats: one 64-byte line of each input */
        prefetch_inputs(master, m, v, grad, i);
        const __m256 a = avx2_update(master, m, v, grad, i, &k);
        const __m256 b = avx2_update(master, m, v, grad, i + 8, &k);
        if (wt == ZERO_DTYPE_FP32) {
            avx2_put_ps((float *)work + i, a, s);
            avx2_put_ps((float *)work + i + 8, b, s);
        } else if (wt == ZERO_DTYPE_BF16) {
            /* packus interleaves the 128-bit halves (a0-3 b0-3 a4-7 b4-7); the permute restores
             * element order. Every lane is <= 0xffff, so nothing saturates. */
            const __m256i h = _mm256_permute4x64_epi64(
                _mm256_packus_epi32(avx2_bf16(a), avx2_bf16(b)), 0xd8);
            avx_put_256((uint16_t *)work + i, h, s);
        } else if (wt == ZERO_DTYPE_FP16) {
            avx2_put_128((uint16_t *)work + i, _mm256_cvtps_ph(a, ZK_F16_RNE), s);
            avx2_put_128((uint16_t *)work + i + 8, _mm256_cvtps_ph(b, ZK_F16_RNE), s);
        }
    }
    scalar_range(master, m, v, grad, work, wt, i, hi, c);
}

ZK_AVX2 static void avx2_block(float *master, float *m, float *v, const float *grad, void *work,
                               int wt, int nt, size_t lo, size_t hi, const zm_adamw_coef *c)
{
    switch (wt) {
    case ZERO_DTYPE_FP32:
        avx2_range(master, m, v, grad, work, ZERO_DTYPE_FP32, nt, lo, hi, c);
        break;
    case ZERO_DTYPE_BF16:
        avx2_range(master, m, v, grad, work, ZERO_DTYPE_BF16, nt, lo, hi, c);
        break;
    case ZERO_DTYPE_FP16:
        avx2_range(master, m, v, grad, work, ZERO_DTYPE_FP16, nt, lo, hi, c);
        break;
    default:
        avx2_range(master, m, v, grad, work, ZK_NONE, 0, lo, hi, c);
        break;
    }
}

/* ---- AVX-512F: 16 lanes, 16 elements per iteration ----------------------------------------- */

/* Only AVX-512F instructions are used (vcvtps2ph zmm, vpmovdw, compare-into-mask, blend, fma),
 * so every AVX-512 CPU qualifies. Not AVX512-BF16's vcvtneps2bf16: it flushes subnormals. The
 * fma target is for the scalar tail (scalar_range's fmaf becomes one instruction); every
 * AVX-512F CPU has FMA, and dispatch checks it. */
#define ZK_AVX512 __attribute__((target("avx512f,fma")))
#define ZK_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,fma")))

typedef struct avx512_coef {
    __m512 grad_scale, decay, l2, lerp_coef, beta2, one_minus_beta2, bias_corr2_sqrt, eps, step;
    int lerp_from_m, use_l2;
} avx512_coef;

ZK_AVX512_INLINE avx512_coef avx512_coefs(const zm_adamw_coef *c)
{
    avx512_coef k;
    k.grad_scale = _mm512_set1_ps(c->grad_scale);
    k.decay = _mm512_set1_ps(c->decay);
    k.l2 = _mm512_set1_ps(c->l2);
    k.lerp_coef = _mm512_set1_ps(c->lerp_coef);
    k.beta2 = _mm512_set1_ps(c->beta2);
    k.one_minus_beta2 = _mm512_set1_ps(c->one_minus_beta2);
    k.bias_corr2_sqrt = _mm512_set1_ps(c->bias_corr2_sqrt);
    k.eps = _mm512_set1_ps(c->eps);
    k.step = _mm512_set1_ps(c->step);
    k.lerp_from_m = c->lerp_from_m;
    k.use_l2 = c->use_l2;
    return k;
}

/* avx2_update on 16 lanes. */
ZK_AVX512_INLINE __m512 avx512_update(float *master, float *m, float *v, const float *grad,
                                      size_t i, const avx512_coef *k)
{
    const __m512 p = _mm512_loadu_ps(master + i), mo = _mm512_loadu_ps(m + i);
    __m512 g = _mm512_mul_ps(_mm512_loadu_ps(grad + i), k->grad_scale);
    if (k->use_l2)
        g = _mm512_fmadd_ps(p, k->l2, g);
    __m512 pn = _mm512_mul_ps(p, k->decay);
    __m512 mn = _mm512_fmadd_ps(k->lerp_coef, _mm512_sub_ps(g, mo), k->lerp_from_m ? mo : g);
    __m512 vn = _mm512_fmadd_ps(_mm512_mul_ps(k->one_minus_beta2, g), g,
                                _mm512_mul_ps(_mm512_loadu_ps(v + i), k->beta2));
    __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vn), k->bias_corr2_sqrt), k->eps);
    pn = _mm512_sub_ps(pn, _mm512_div_ps(_mm512_mul_ps(k->step, mn), denom));
    _mm512_storeu_ps(master + i, pn);
    _mm512_storeu_ps(m + i, mn);
    _mm512_storeu_ps(v + i, vn);
    return pn;
}

/* avx2_bf16 on 16 lanes, narrowed to 16 bits (vpmovdw truncates; every lane is <= 0xffff). */
ZK_AVX512_INLINE __m256i avx512_bf16(__m512 x)
{
    const __m512i u = _mm512_castps_si512(x);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    const __m512i biased = _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
    const __m512i rounded = _mm512_srli_epi32(biased, 16);
    const __m512i nan = _mm512_or_si512(hi, _mm512_set1_epi32(0x0040));
    const __mmask16 is_nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(is_nan, rounded, nan));
}

ZK_AVX512_INLINE void avx512_put_ps(float *dst, __m512 x, int s)
{
    if (s)
        _mm512_stream_ps(dst, x);
    else
        _mm512_storeu_ps(dst, x);
}


ZK_AVX512_INLINE void avx512_range(float *master, float *m, float *v, const float *grad,
                                   void *work, int wt, int nt, size_t lo, size_t hi,
                                   const zm_adamw_coef *c)
{
    const avx512_coef k = avx512_coefs(c);
    const int s = wt != ZK_NONE && stream_ok(nt, work, wt == ZERO_DTYPE_FP32 ? 4 : 2, lo,
                                             wt == ZERO_DTYPE_FP32 ? 64 : 32);
    size_t i = lo;
    for (; i + 16 <= hi; i += 16) {
        prefetch_inputs(master, m, v, grad, i);
        const __m512 a = avx512_update(master, m, v, grad, i, &k);
        if (wt == ZERO_DTYPE_FP32)
            avx512_put_ps((float *)work + i, a, s);
        else if (wt == ZERO_DTYPE_BF16)
            avx_put_256((uint16_t *)work + i, avx512_bf16(a), s);
        else if (wt == ZERO_DTYPE_FP16)
            avx_put_256((uint16_t *)work + i, _mm512_cvtps_ph(a, ZK_F16_RNE), s);
    }
    scalar_range(master, m, v, grad, work, wt, i, hi, c);
}

ZK_AVX512 static void avx512_block(float *master, float *m, float *v, const float *grad,
                                   void *work, int wt, int nt, size_t lo, size_t hi,
                                   const zm_adamw_coef *c)
{
    switch (wt) {
    case ZERO_DTYPE_FP32:
        avx512_range(master, m, v, grad, work, ZERO_DTYPE_FP32, nt, lo, hi, c);
        break;
    case ZERO_DTYPE_BF16:
        avx512_range(master, m, v, grad, work, ZERO_DTYPE_BF16, nt, lo, hi, c);
        break;
    case ZERO_DTYPE_FP16:
        avx512_range(master, m, v, grad, work, ZERO_DTYPE_FP16, nt, lo, hi, c);
        break;
    default:
        avx512_range(master, m, v, grad, work, ZK_NONE, 0, lo, hi, c);
        break;
    }
}

#endif /* ZK_X86 */

/* ---- dispatch ----------------------------------------------------------------------------- */

#if ZK_X86
/* F16C from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows the
 * name (clang 14 does not). It uses the ymm state that the avx2 check below has vouched for. */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
#endif

/* __builtin_cpu_supports also checks that the OS saves the ymm/zmm state; libgcc fills the
 * table it reads in a constructor, so no __builtin_cpu_init is needed here. */
static int isa_supported(int isa)
{
    switch (isa) {
    case ZK_ISA_SCALAR:
        return 1;
#if ZK_X86
    case ZK_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    case ZK_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

static int isa_current(void)
{
    const int forced = atomic_load_explicit(&g_forced, memory_order_relaxed);
    if (forced != ZK_ISA_AUTO)
        return forced;
    if (isa_supported(ZK_ISA_AVX512))
        return ZK_ISA_AVX512;
    if (isa_supported(ZK_ISA_AVX2))
        return ZK_ISA_AVX2;
    return ZK_ISA_SCALAR;
}

const char *zk_adamw_cpu_isa(void)
{
    return g_isa_names[isa_current()];
}

int zk_adamw_cpu_force(const char *isa)
{
    if (!isa || strcmp(isa, "auto") == 0) {
        atomic_store(&g_forced, ZK_ISA_AUTO);
        return 0;
    }
    for (int k = 0; k < (int)(sizeof g_isa_names / sizeof g_isa_names[0]); k++)
        if (strcmp(isa, g_isa_names[k]) == 0) {
            if (!isa_supported(k))
                return -1;
            atomic_store(&g_forced, k);
            return 0;
        }
    return -1;
}

/* nt: streaming stores for the working copy (vector paths, where aligned). */
static void adamw_cpu_block(int isa, float *master, float *m, float *v, const float *grad,
                            void *work, int wt, int nt, size_t lo, size_t hi,
                            const zm_adamw_coef *c)
{
#if ZK_X86
    if (isa == ZK_ISA_AVX512) {
        avx512_block(master, m, v, grad, work, wt, nt, lo, hi, c);
        return;
    }
    if (isa == ZK_ISA_AVX2) {
        avx2_block(master, m, v, grad, work, wt, nt, lo, hi, c);
        return;
    }
#endif
    scalar_block(master, m, v, grad, work, wt, lo, hi, c);
}

/* Orders this thread's streaming stores before what follows (they are weakly ordered); the end
 * of the parallel region then publishes them like any other store. */
static void stream_fence(void)
{
#if ZK_X86
    _mm_sfence();
#endif
}

void zk_adamw_cpu(float *master, float *m, float *v, const float *grad, void *work,
                  zero_dtype work_type, size_t n, const zk_adamw_params *p)
{
    if (n == 0)
        return;
    const zm_adamw_coef c =
        zm_adamw_coefs(p->lr, p->beta1, p->beta2, p->eps, p->weight_decay, p->bias_corr1,
                       p->bias_corr2_sqrt, p->grad_scale, p->l2);
    const int isa = isa_current();
    const int wt = work ? (int)work_type : ZK_NONE;
    const int nt = isa != ZK_ISA_SCALAR && wt != ZK_NONE && n >= ZK_STREAM_MIN;
    /* The elements before master's next cache line first, on this thread: the blocks then start
     * on a line, so no vector of master (or of an array at master's offset in a line, as
     * page-aligned and equally misaligned arrays are) straddles two lines. Any split gives the
     * same bits: each element's result depends on that element alone. */
    size_t head = 0;
    if (isa != ZK_ISA_SCALAR) {
        head = (ZK_LINE - (uintptr_t)master % ZK_LINE) % ZK_LINE / sizeof(float);
        head = head < n ? head : n;
        if (head)
            adamw_cpu_block(isa, master, m, v, grad, work, wt, 0, 0, head, &c);
    }
    const size_t rest = n - head, nblocks = (rest + ZK_BLOCK - 1) / ZK_BLOCK;
#pragma omp parallel if (rest >= ZK_OMP_MIN)
    {
#pragma omp for schedule(static) nowait
        for (size_t b = 0; b < nblocks; b++) {
            const size_t lo = head + b * ZK_BLOCK;
            const size_t hi = n - lo < ZK_BLOCK ? n : lo + ZK_BLOCK;
            adamw_cpu_block(isa, master, m, v, grad, work, wt, nt, lo, hi, &c);
        }
        if (nt)
            stream_fence();
    }
}
