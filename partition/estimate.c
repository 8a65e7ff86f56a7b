/* estimate.c — per-rank model-state bytes on the device and on the host for every ZeRO stage,
 * with and without CPU offload; the largest model a device holds; the GPT-2 parameter count.
 * Pure arithmetic, no I/O. Without offload the numbers are zp_model_state_bytes (docs/DESIGN.md). */
#include <stdio.h>
#include "partition/partition.h"

/* Bytes per parameter of model state, split into what a rank holds in full (×Ψ) and what is
 * divided across the world (×Ψ/N, the /N sum rounded up once, as zp_model_state_bytes does). */
typedef struct state_coeffs {
    uint64_t dev_full;   /* device bytes per parameter, whole model */
    uint64_t dev_shard;  /* device bytes per parameter of this rank's shard */
    uint64_t host_shard; /* host bytes per parameter of this rank's shard (nothing is full) */
} state_coeffs;

static int check_config(int stage, size_t work_bytes, int world, int offload_optimizer,
                        int offload_param)
{
    if (stage < 0 || stage > 3 || world < 1 || (work_bytes != 2 && work_bytes != 4))
        return -1;
    if (offload_optimizer && stage == 0)
        return -1; /* stage 0 keeps no optimizer shard: nothing is partitioned to offload */
    if (offload_param && (stage < 3 || !offload_optimizer))
        return -1; /* only stage 3 shards parameters; see state_coeffs_offload for the second */
    return 0;
}

/* Coefficients with the optimizer offloaded (stages 1–3), and the parameters too (stage 3).
 * P = working bytes per element (2 bf16/fp16, 4 fp32).
 *
 * ZeRO-Offload: the optimizer step runs on the host (CPU Adam) over this rank's shard, so all
 * it touches lives there: Adam m and v (8), the fp32 master parameters (4) and the fp32 copy of
 * the reduced gradient shard it reads (4) — host 16Ψ/N at either precision. With fp32 the
 * master can no longer double as the working copy, which is on the device: the host updates its
 * own fp32 shard and copies it back into the device's working parameters after the step.
 * The device keeps what forward and backward touch, in working precision:
 *   stage 1: parameters P·Ψ (full) + gradients P·Ψ (full: reduced only at the end of backward)
 *            → device 2P·Ψ
 *   stage 2: parameters P·Ψ (full) + the reduced gradient shard P·Ψ/N (kept until it is copied
 *            to the host as fp32)                                   → device P·Ψ + P·Ψ/N
 *   stage 3: parameter shard P·Ψ/N + gradient shard P·Ψ/N            → device 2P·Ψ/N
 *
 * ZeRO-Infinity parameter offload (stage 3, on top of the optimizer offload): the working
 * parameter shard moves to the host as well and is gathered module by module into the prefetch
 * pool (a buffer, not model state). The device keeps only the gradient shard: device P·Ψ/N.
 * On the host, with fp32 the master shard now is the working shard (the optimizer updates it
 * in place and the gathers read it), so the host stays 16Ψ/N; with bf16/fp16 the P-byte working
 * shard sits beside the fp32 master: host (16 + P)Ψ/N.
 *
 * Parameter offload without optimizer offload is not modelled: with the optimizer on the device
 * its master and m, v stay there, and every step would ship the updated shard out to the host
 * and gather it back, saving at most P·Ψ/N (nothing at fp32, where the device master would have
 * to be split from the host working copy). */
static state_coeffs state_coeffs_offload(int stage, uint64_t p, int offload_param)
{
    state_coeffs c = {0, 0, 16};
    switch (stage) {
    case 1: c.dev_full = 2 * p; break;
    case 2: c.dev_full = p; c.dev_shard = p; break;
    default:
        if (offload_param) {
            c.dev_shard = p;
            c.host_shard += p == 4 ? 0 : p;
        } else {
            c.dev_shard = 2 * p;
        }
        break;
    }
    return c;
}

int zp_state_bytes(int stage, size_t work_bytes, uint64_t psi, int world, int offload_optimizer,
                   int offload_param, uint64_t *device, uint64_t *host)
{
    if (check_config(stage, work_bytes, world, offload_optimizer, offload_param) != 0 ||
        psi > ZP_PSI_MAX)
        return -1;
    uint64_t dev, hst;
    if (!offload_optimizer) {
        /* Everything on the device: the docs/DESIGN.md table. */
        dev = zp_model_state_bytes(stage, work_bytes, psi, world);
        hst = 0;
    } else {
        /* psi <= ZP_PSI_MAX (2^58) and every coefficient is <= 18, so nothing overflows. */
        const state_coeffs c = state_coeffs_offload(stage, work_bytes, offload_param);
        const uint64_t n = (uint64_t)world;
        dev = c.dev_full * psi + (c.dev_shard * psi + n - 1) / n;
        hst = (c.host_shard * psi + n - 1) / n;
    }
    if (device)
        *device = dev;
    if (host)
        *host = hst;
    return 0;
}

int zp_max_psi(int stage, size_t work_bytes, int world, int offload_optimizer, int offload_param,
               uint64_t capacity, uint64_t *psi)
{
    if (check_config(stage, work_bytes, world, offload_optimizer, offload_param) != 0)
        return -1;
    /* Device bytes never decrease as Ψ grows, so bisect on the exact formula (rounding
     * included): lo always fits (Ψ = 0 needs 0 bytes), hi never does. */
    uint64_t dev = 0;
    zp_state_bytes(stage, work_bytes, ZP_PSI_MAX, world, offload_optimizer, offload_param, &dev,
                   NULL);
    uint64_t lo = 0, hi = ZP_PSI_MAX;
    if (dev <= capacity)
        lo = hi; /* saturated: the limit of the arithmetic, not of the device */
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        zp_state_bytes(stage, work_bytes, mid, world, offload_optimizer, offload_param, &dev, NULL);
        if (dev <= capacity)
            lo = mid;
        else
            hi = mid;
    }
    if (psi)
        *psi = lo;
    return 0;
}

/* a*b + c on uint64, setting *overflow instead of wrapping. */
static uint64_t mul_add(uint64_t a, uint64_t b, uint64_t c, int *overflow)
{
    if (b != 0 && a > (UINT64_MAX - c) / b) {
        *overflow = 1;
        return 0;
    }
    return a * b + c;
}

uint64_t zp_gpt2_params(int layers, int dim, int vocab, int seq)
{
    if (layers < 0 || dim < 1 || vocab < 1 || seq < 1)
        return 0;
    const uint64_t d = (uint64_t)dim;
    int overflow = 0;
    /* One block: ln_1 and ln_2 (weight + bias: 2·2·D), attention qkv (D·3D + 3D), attention
     * projection (D·D + D), MLP fc (D·4D + 4D), MLP projection (4D·D + D): 12D² + 13D. */
    uint64_t block = mul_add(mul_add(12, d, 0, &overflow), d, 13 * d, &overflow);
    /* Token embedding wte (V·D, tied with the LM head, so counted once), position embedding
     * wpe (T·D), the blocks, and the final ln_f (2D). */
    uint64_t total = mul_add((uint64_t)layers, block, 2 * d, &overflow);
    total = mul_add((uint64_t)seq, d, total, &overflow);
    total = mul_add((uint64_t)vocab, d, total, &overflow);
    return overflow ? 0 : total;
}

static uint64_t pow2_floor(uint64_t x)
{
    uint64_t p = 1;
    while (p <= x / 2)
        p *= 2;
    return p;
}

size_t zp_auto_bucket(uint64_t capacity, uint64_t knee, char *why, size_t len)
{
    uint64_t b = knee ? knee : ZP_KNEE_MPI;
    const char *by = "the collectives' full-bandwidth size";
    if (capacity && capacity / ZP_AUTO_CAPACITY_SHARE < b) {
        b = capacity / ZP_AUTO_CAPACITY_SHARE;
        by = "1/64 of the device capacity";
    }
    if (b < ZP_AUTO_BUCKET_MIN) {
        b = ZP_AUTO_BUCKET_MIN;
        by = "the 64 KiB floor (smaller messages are latency)";
    }
    b = pow2_floor(b);
    if (why && len)
        snprintf(why, len, "%llu bytes: %s (full-bandwidth size %llu, capacity %s%llu)",
                 (unsigned long long)b, by, (unsigned long long)(knee ? knee : ZP_KNEE_MPI),
                 capacity ? "" : "unknown, ", (unsigned long long)capacity);
    return (size_t)b;
}

void zp_auto_stage3(uint64_t capacity, uint64_t state, uint64_t reserve, uint64_t chunk,
                    size_t *prefetch, size_t *max_live, char *why, size_t len)
{
    const uint64_t cap_live = (uint64_t)1 << 30;
    uint64_t live = cap_live, left = 0;
    if (capacity) {
        left = capacity > state + reserve ? capacity - state - reserve : 0;
        live = left / 2 < cap_live ? left / 2 : cap_live;
    }
    if (live == 0)
        live = 1; /* 0 would mean "no cap" */
    uint64_t pf = 2 * chunk;
    if (pf > live)
        pf = live >= chunk ? live / chunk * chunk : 0;
    *prefetch = (size_t)pf;
    *max_live = (size_t)live;
    if (why && len) {
        if (capacity)
            snprintf(why, len,
                     "prefetch %llu, max live %llu: %llu bytes left of %llu after the model "
                     "state (%llu) and the reduce buffers (%llu); largest chunk %llu",
                     (unsigned long long)pf, (unsigned long long)live, (unsigned long long)left,
                     (unsigned long long)capacity, (unsigned long long)state,
                     (unsigned long long)reserve, (unsigned long long)chunk);
        else
            snprintf(why, len, "prefetch %llu (2 largest chunks), max live %llu: capacity unknown",
                     (unsigned long long)pf, (unsigned long long)live);
    }
}

