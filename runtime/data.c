/* data.c — the token loader (zero_data_*, docs/DATA.md): which window of which file each rank's
 * row is (a seeded per-epoch permutation of files and of windows inside each file, the same at
 * every world size), a ring of prepared batches filled by one thread per loader, the ranks'
 * agreement on every batch, and on the cuda backend the host-to-device copy of the next batch
 * queued on the copy stream while the current one trains. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xxhash.h>

#include "offload/placement.h"
#include "runtime/engine.h"
#include "runtime/tokfile.h"
#include "util/clock.h"
#include "util/log.h"

enum { DATA_MSG = 512 };

/* One prepared batch: inputs then targets, [2 x B x T] int32; or (window output) B windows of
 * T + 1 tokens of the files' width. */
typedef struct data_slot {
    int32_t *buf;
    int pinned;
    int ready;             /* filled for batch `batch` */
    int64_t batch;         /* batch number since the base position */
    int64_t ready_batch;   /* the batch ready in it, -1 none: the same as ready and batch, read
                              with atomics by a thread spinning without the lock */
    zero_status status;    /* of its preparation */
    char msg[DATA_MSG];
    uint64_t first_window; /* this rank's first row */
} data_slot;

/* What a reader (the loader's thread, or zero_data_next itself without prefetch) keeps: the
 * order of the epoch it is in, and scratch for one window. */
typedef struct data_reader {
    int64_t epoch;         /* of perm and cum; -1 = none yet */
    int *perm;             /* [files] file order of the epoch */
    int64_t *cum;          /* [files + 1] windows before the j-th file of the order */
    unsigned char *raw;    /* [(B T + 1) x width] pread scratch: a run of windows */
    int *row_file;         /* [B] the file and first token of each row of a batch */
    int64_t *row_tok;
    uint64_t bytes;        /* token bytes read */
    double busy_s;
    /* the last window located, and how many windows after it follow it in its file in this
     * epoch's order (the rest of its shuffle unit): the next global window is then found by
     * arithmetic */
    uint64_t last_g;
    int last_file;
    int64_t last_tok;
    int64_t run;
} data_reader;

struct zero_data {
    zero_ctx *z;                 /* NULL once zero_finalize detached the loader */
    struct zero_data *next;      /* z->data_open */
    char name[32];
    int B, T, shuffle, prefetch, verify, io;
    int output;                  /* zero_data_output */
    int fill_tokens;             /* the program's zero_batch has tokens..token_bytes */
    size_t out_bytes;            /* of one prepared batch, and of each device buffer */
    uint64_t seed;
    int64_t vocab;
    zero_data_format format;
    double delay_ms;
    int rank, world;
    int nfiles;
    zt_file *files;              /* [nfiles] */
    int64_t *file_windows;       /* [nfiles] */
    int64_t *file_unit;          /* [nfiles] windows kept together by the shuffle (a unit) */
    int shuffle_unit;            /* the setting: windows per unit, 0 = auto */
    int64_t windows;             /* per epoch */
    int64_t tokens;
    int width;                   /* widest token */
    int64_t max_token;           /* from the verify scan, else -1 */
    uint64_t fingerprint;        /* files, seq, seed, shuffle, format: what a position means */
    uint64_t files_hash;         /* the files' names and token counts */

    /* the ring: slot b % nslots holds batch b (counted from base) */
    int nslots;
    data_slot *slots;
    uint64_t base;               /* global window of batch 0 */
    int64_t take;                /* batches handed out since base */
    int64_t fill;                /* batches prepared (or being prepared) since base */
    int stop;
    int thread_on;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_space;
    data_reader rd;
    data_reader rd_caller;       /* the caller's, when zero_data_next prepares batches itself */

    /* cuda: device copies of the batches, two, by batch parity; copy slots copy_slot + parity */
    int32_t *dev[2];
    int copy_slot;               /* -1: copies are synchronous */
    int64_t dev_batch[2];        /* batch whose copy is queued in dev[k], -1 none */
    int dev_pending[2];          /* copy queued and not waited for */

    /* counters (this rank) */
    int64_t batches;
    double wait_s;
};

/* ---- the order of windows --------------------------------------------------------------------- */

static uint64_t smix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A permutation of [0, n), i -> its image, from key: a four-round Feistel network on the
 * smallest even number of bits that holds n - 1, walked until the value falls below n (a
 * permutation of a superset restricted to the set). No table: any index, any time. */
static uint64_t permute(uint64_t i, uint64_t n, uint64_t key)
{
    if (n <= 1)
        return 0;
    int bits = 64 - __builtin_clzll(n - 1);
    int half = (bits + 1) / 2;
    uint64_t mask = (half >= 64) ? ~0ull : ((1ull << half) - 1);
    uint64_t x = i;
    do {
        uint64_t l = x >> half, r = x & mask;
        for (int k = 0; k < 4; k++) {
            uint64_t f = smix(key ^ smix(r + (uint64_t)k * 0x632be59bd9b4e019ull)) & mask;
            uint64_t nl = r;
            r = l ^ f;
            l = nl;
        }
        x = l << half | r;
    } while (x >= n);
    return x;
}

static uint64_t epoch_key(const zero_data *d, int64_t epoch)
{
    return smix(d->seed ^ smix((uint64_t)epoch * 0xd1342543de82ef95ull + 0x5851f42d4c957f2dull));
}

/* The epoch's file order (Fisher-Yates from the epoch's key) and its prefix sums. */
static void reader_epoch(const zero_data *d, data_reader *rd, int64_t epoch)
{
    if (rd->epoch == epoch)
        return;
    for (int j = 0; j < d->nfiles; j++)
        rd->perm[j] = j;
    if (d->shuffle) {
        uint64_t s = epoch_key(d, epoch);
        for (int j = d->nfiles - 1; j > 0; j--) {
            s = smix(s);
            int k = (int)(s % (uint64_t)(j + 1));
            int t = rd->perm[j];
            rd->perm[j] = rd->perm[k];
            rd->perm[k] = t;
        }
    }
    rd->cum[0] = 0;
    for (int j = 0; j < d->nfiles; j++)
        rd->cum[j + 1] = rd->cum[j] + d->file_windows[rd->perm[j]];
    rd->epoch = epoch;
}

/* Global window g: its file and first token. */
static void locate(const zero_data *d, data_reader *rd, uint64_t g, int *file, int64_t *tok)
{
    if (rd->run > 0 && g == rd->last_g + 1) {
        rd->run--;
        rd->last_g = g;
        rd->last_tok += d->T;
        *file = rd->last_file;
        *tok = rd->last_tok;
        return;
    }
    int64_t epoch = (int64_t)(g / (uint64_t)d->windows);
    int64_t i = (int64_t)(g % (uint64_t)d->windows);
    reader_epoch(d, rd, epoch);
    int lo = 0, hi = d->nfiles - 1; /* the j with cum[j] <= i < cum[j + 1] */
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (rd->cum[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    int f = rd->perm[lo];
    uint64_t w = (uint64_t)(i - rd->cum[lo]);
    /* windows after this one that follow it in the file: the rest of the file in order */
    int64_t run = rd->cum[lo + 1] - 1 - i;
    if (d->shuffle) {
        /* the file's whole units in a permuted order, each unit's windows in order, the
         * windows of a partial last unit at the end */
        const uint64_t U = (uint64_t)d->file_unit[f];
        const uint64_t units = (uint64_t)d->file_windows[f] / U;
        if (w < units * U) {
            run = (int64_t)(U - 1 - w % U);
            w = permute(w / U, units, smix(epoch_key(d, epoch) ^ (uint64_t)f)) * U + w % U;
        }
    }
    *file = f;
    *tok = (int64_t)w * d->T;
    rd->last_g = g;
    rd->last_file = f;
    rd->last_tok = *tok;
    rd->run = run;
}

/* ---- preparing a batch ------------------------------------------------------------------------ */

static void sleep_ms(double ms)
{
    if (ms <= 0.0)
        return;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000.0),
                          .tv_nsec = (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Batch b (since base) of this rank into s; the token bytes read and the seconds spent are
 * added to *bytes and *busy. Rows whose windows follow each other in a file (a run: the windows
 * of a shuffle unit) are read together: from a mapping row by row, the next run's first row
 * prefetched; through pread in one call per run (the window output scattered straight into the
 * rows by preadv). */
static void prepare(zero_data *d, data_reader *rd, int64_t b, data_slot *s, uint64_t *bytes,
                    double *busy)
{
    double t0 = zr_now();
    const int B = d->B, T = d->T;
    const uint64_t G = (uint64_t)B * (uint64_t)d->world;
    uint64_t g0 = d->base + (uint64_t)b * G + (uint64_t)d->rank * (uint64_t)B;
    int32_t *in = s->buf, *tg = s->buf + (size_t)B * (size_t)T;
    const int windows = d->output == ZERO_DATA_OUT_WINDOWS;
    const size_t row_bytes = ((size_t)T + 1) * (size_t)d->width; /* a window's, window output */
    s->status = ZERO_OK;
    s->msg[0] = '\0';
    s->batch = b;
    s->first_window = g0;
    sleep_ms(d->delay_ms);
    for (int r = 0; r < B; r++)
        locate(d, rd, g0 + (uint64_t)r, &rd->row_file[r], &rd->row_tok[r]);
    for (int r = 0; r < B && s->status == ZERO_OK;) {
        const int f = rd->row_file[r];
        const int64_t tok = rd->row_tok[r];
        const zt_file *zf = &d->files[f];
        int k = 1; /* the run: rows r .. r + k - 1 */
        while (r + k < B && k < ZT_IOV_MAX && rd->row_file[r + k] == f &&
               rd->row_tok[r + k] == tok + (int64_t)k * T)
            k++;
        if (zf->map && r + k < B) {
            /* the next run starts elsewhere: its first row is fetched while this run is
             * converted (inside a run the hardware prefetcher follows the rows) */
            const zt_file *n = &d->files[rd->row_file[r + k]];
            const unsigned char *p = n->map + (n->has_header ? ZT_HEADER_BYTES : 0) +
                                     (size_t)rd->row_tok[r + k] * (size_t)n->width;
            const size_t nb = ((size_t)T + 1) * (size_t)n->width;
            for (size_t o = 0; o < nb; o += 64)
                __builtin_prefetch(p + o, 0, 3);
        }
        const int64_t ntok = (int64_t)k * T + 1;
        int64_t bad = -1, bad_at = 0;
        uint32_t bad_val = 0;
        if (windows && !zf->map && zf->width == d->width) {
            unsigned char *dst = (unsigned char *)s->buf + (size_t)r * row_bytes;
            if (zt_read_windows(zf, tok, T, k, dst, row_bytes, s->msg, sizeof s->msg) != 0) {
                s->status = ZERO_ERR_IO;
                break;
            }
            bad = zt_check(dst, (int64_t)k * (T + 1), d->width, d->vocab);
            if (bad >= 0) { /* row bad / (T + 1), token bad % (T + 1) of its window */
                bad_at = tok + (bad / (T + 1)) * T + bad % (T + 1);
                int32_t v;
                zt_widen(&v, dst + (size_t)bad * (size_t)d->width, 1, d->width, 0);
                bad_val = (uint32_t)v;
            }
        } else {
            /* the run's tokens: a pointer into the mapping, or one pread into the scratch */
            const unsigned char *src = zt_source(zf, tok, ntok, rd->raw, s->msg, sizeof s->msg);
            if (!src) {
                s->status = ZERO_ERR_IO;
                break;
            }
            for (int j = 0; j < k && bad < 0; j++) {
                const unsigned char *w = src + (size_t)j * (size_t)T * (size_t)zf->width;
                /* inputs are the window's tokens 0..T-1, targets 1..T, widened straight from
                 * the file; or the window copied as it is */
                int64_t e = windows ? zt_copy_window((unsigned char *)s->buf +
                                                         (size_t)(r + j) * row_bytes,
                                                     d->width, w, (int64_t)T + 1, zf->width,
                                                     d->vocab)
                                    : zt_widen_pair(in + (size_t)(r + j) * T,
                                                    tg + (size_t)(r + j) * T, w, T, zf->width,
                                                    d->vocab);
                if (e >= 0) {
                    bad = e;
                    bad_at = tok + (int64_t)j * T + e;
                    int32_t v;
                    zt_widen(&v, w + (size_t)e * (size_t)zf->width, 1, zf->width, 0);
                    bad_val = (uint32_t)v;
                }
            }
        }
        if (bad >= 0) {
            zt_bad_token(zf, bad_at, bad_val, d->vocab, s->msg, sizeof s->msg);
            s->status = ZERO_ERR_INVALID;
            break;
        }
        *bytes += (uint64_t)ntok * (uint64_t)zf->width;
        r += k;
    }
    *busy += zr_now() - t0;
}

/* Before a thread sleeps on a condition variable for something another thread is about to do,
 * it spins a little: a sleep's wake-up costs tens of microseconds where a futex wake crosses
 * virtual CPUs, more than preparing a batch. Called without the lock. */
#define DATA_SPIN_S 50e-6

/* A spin's pause: the core goes to any other thread that wants it (ranks and threads sharing
 * cores, as the tests' four ranks on two do), else the spin goes on at once. */
static void cpu_relax(void)
{
    sched_yield();
}

/* 1 once batch b is ready in slot s, 0 after DATA_SPIN_S. */
static int spin_ready(const data_slot *s, int64_t b)
{
    double t0 = zr_now();
    for (unsigned i = 1;; i++) {
        if (__atomic_load_n(&s->ready_batch, __ATOMIC_ACQUIRE) == b)
            return 1;
        cpu_relax();
        if ((i & 63) == 0 && zr_now() - t0 > DATA_SPIN_S)
            return 0;
    }
}

/* 1 once the caller took a batch since `take` was seen (a slot came free) or the thread is asked
 * to stop, 0 after DATA_SPIN_S. */
static int spin_space(const zero_data *d, int64_t take)
{
    double t0 = zr_now();
    for (unsigned i = 1;; i++) {
        if (__atomic_load_n(&d->take, __ATOMIC_ACQUIRE) != take ||
            __atomic_load_n(&d->stop, __ATOMIC_ACQUIRE))
            return 1;
        cpu_relax();
        if ((i & 63) == 0 && zr_now() - t0 > DATA_SPIN_S)
            return 0;
    }
}

/* Claims the next batch to prepare (`fill`), prepares it with reader rd outside the lock and
 * hands it out: called, and returning, with the lock held, by the loader's thread or by
 * zero_data_next while the ring is behind. The slot is free: fill < take + prefetch, so it is
 * neither the caller's batch (take - 1) nor one still handed out. */
static void claim_and_prepare(zero_data *d, data_reader *rd)
{
    int64_t b = d->fill++;
    data_slot *s = &d->slots[b % d->nslots];
    s->ready = 0;
    __atomic_store_n(&s->ready_batch, -1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&d->mu);
    uint64_t bytes = 0;
    double busy = 0.0;
    prepare(d, rd, b, s, &bytes, &busy);
    pthread_mutex_lock(&d->mu);
    rd->bytes += bytes; /* read under the lock by zero_data_get_info */
    rd->busy_s += busy;
    s->ready = 1;
    __atomic_store_n(&s->ready_batch, b, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&d->cv_ready);
}

static void *loader_main(void *arg)
{
    zero_data *d = arg;
    /* with a placement plan (offload), the thread keeps off the step thread's core; otherwise
     * it runs where the process may (the launcher's binding) */
    if (d->z->topo) {
        char desc[160];
        int rc = zo_bind_helper_thread(d->z->topo, &d->z->plan, desc, sizeof desc);
        if (rc != 0)
            ZR_WARN(ZR_SUB_OFFLOAD, "data loader '%s': thread %s", d->name, desc);
        else
            ZR_INFO(ZR_SUB_OFFLOAD, "data loader '%s': thread bound to %s", d->name, desc);
    }
    pthread_mutex_lock(&d->mu);
    for (;;) {
        int spun = 0;
        while (!d->stop && d->fill >= d->take + d->prefetch) {
            if (!spun) {
                int64_t take = d->take;
                pthread_mutex_unlock(&d->mu);
                spun = 1;
                spin_space(d, take);
                pthread_mutex_lock(&d->mu);
                continue;
            }
            pthread_cond_wait(&d->cv_space, &d->mu);
        }
        if (d->stop)
            break;
        claim_and_prepare(d, &d->rd);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Empties the ring and sets its base (the thread idle, nothing in it). */
static void ring_reset(zero_data *d, uint64_t base)
{
    pthread_mutex_lock(&d->mu);
    /* the thread leaves at its next look */
    __atomic_store_n(&d->stop, d->thread_on, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&d->cv_space);
    pthread_mutex_unlock(&d->mu);
    if (d->thread_on) {
        pthread_join(d->thread, NULL);
        d->thread_on = 0;
    }
    __atomic_store_n(&d->stop, 0, __ATOMIC_RELEASE);
    d->base = base;
    __atomic_store_n(&d->take, 0, __ATOMIC_RELEASE);
    d->fill = 0;
    for (int i = 0; i < d->nslots; i++) {
        d->slots[i].ready = 0;
        d->slots[i].ready_batch = -1;
    }
}

static zero_status ring_start(zero_data *d, zr_error *e)
{
    if (d->prefetch == 0)
        return ZERO_OK;
    int rc = pthread_create(&d->thread, NULL, loader_main, d);
    if (rc)
        return zr_fail(e, ZERO_ERR_SYSTEM, "data loader '%s': cannot start its thread: %s",
                       d->name, strerror(rc));
    d->thread_on = 1;
    return ZERO_OK;
}

/* ---- device copies (cuda) --------------------------------------------------------------------- */

static void dev_wait(zero_data *d, int k)
{
    if (d->dev_pending[k]) {
        zr_dev_copy_wait(&d->z->dev, d->copy_slot + k, NULL);
        d->dev_pending[k] = 0;
    }
}

/* Queues the copy of batch b (in slot s) into dev[b % 2] on the copy stream, after the compute
 * stream's work so far (which may still read that buffer, two batches ago). 0, or -1 when it
 * could not be queued (the caller copies synchronously). */
static int dev_queue(zero_data *d, int64_t b, const data_slot *s)
{
    int k = (int)(b & 1);
    if (d->copy_slot < 0)
        return -1;
    dev_wait(d, k);
    if (zr_dev_order(&d->z->dev, ZR_STREAM_COPY, ZR_STREAM_COMPUTE) != ZERO_OK)
        return -1;
    if (zr_dev_copy_timed(&d->z->dev, d->copy_slot + k, d->dev[k], s->buf, d->out_bytes) !=
        ZERO_OK)
        return -1;
    d->dev_pending[k] = 1;
    d->dev_batch[k] = b;
    return 0;
}

static void dev_forget(zero_data *d)
{
    for (int k = 0; k < 2; k++) {
        if (d->dev[k])
            dev_wait(d, k);
        d->dev_batch[k] = -1;
    }
}

/* ---- open ------------------------------------------------------------------------------------- */

static void reader_free(data_reader *rd)
{
    free(rd->perm);
    free(rd->cum);
    free(rd->raw);
    free(rd->row_file);
    free(rd->row_tok);
    memset(rd, 0, sizeof *rd);
}

static int reader_alloc(data_reader *rd, int nfiles, int B, int T, int width)
{
    memset(rd, 0, sizeof *rd);
    rd->epoch = -1;
    rd->run = 0;
    rd->perm = calloc((size_t)nfiles, sizeof *rd->perm);
    rd->cum = calloc((size_t)nfiles + 1, sizeof *rd->cum);
    rd->raw = malloc(((size_t)B * (size_t)T + 1) * (size_t)width);
    rd->row_file = calloc((size_t)B, sizeof *rd->row_file);
    rd->row_tok = calloc((size_t)B, sizeof *rd->row_tok);
    return rd->perm && rd->cum && rd->raw && rd->row_file && rd->row_tok ? 0 : -1;
}

/* Frees what the loader holds on its context (thread, device buffers, pinning, copy slots) and
 * adds its counters to the context's totals. */
static void detach(zero_data *d)
{
    zero_ctx *z = d->z;
    if (!z)
        return;
    ring_reset(d, d->base);
    dev_forget(d);
    for (int k = 0; k < 2; k++)
        if (d->dev[k])
            zr_device_free(&z->dev, ZERO_MEM_BUFFERS, d->dev[k], d->out_bytes);
    d->dev[0] = d->dev[1] = NULL;
    if (d->copy_slot >= 0)
        z->data_copy_slots &= ~(3u << d->copy_slot);
    for (int i = 0; i < d->nslots; i++)
        if (d->slots[i].pinned) {
            zr_dev_host_unregister(&z->dev, d->slots[i].buf);
            d->slots[i].pinned = 0;
        }
    z->data.batches += d->batches;
    z->data.bytes += d->rd.bytes + d->rd_caller.bytes;
    z->data.tokens += (uint64_t)d->batches * (uint64_t)d->B * (uint64_t)d->T;
    z->data.wait_s += d->wait_s;
    z->data.busy_s += d->rd.busy_s + d->rd_caller.busy_s;
    for (zero_data **p = &z->data_open; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    d->z = NULL;
}

static void data_free(zero_data *d)
{
    if (!d)
        return;
    detach(d);
    if (d->slots) {
        for (int i = 0; i < d->nslots; i++)
            free(d->slots[i].buf);
        free(d->slots);
    }
    for (int i = 0; i < d->nfiles; i++)
        zt_close(&d->files[i]);
    free(d->files);
    free(d->file_windows);
    free(d->file_unit);
    reader_free(&d->rd);
    reader_free(&d->rd_caller);
    pthread_cond_destroy(&d->cv_ready);
    pthread_cond_destroy(&d->cv_space);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

static const char *file_base(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The settings: the program's, else the environment's. */
static zero_status settle(zero_data *d, zero_ctx *z, const zero_data_config *cfg_in, zr_error *e)
{
    zero_data_config cfg = ZERO_DATA_CONFIG_INIT;
    /* the fields up to name are the first layout; later ones take their defaults when the
     * program's struct ends before them, and a larger struct must be zero past this one */
    const size_t first = offsetof(zero_data_config, name) + sizeof(cfg.name);
    if (cfg_in->struct_size < first || cfg_in->struct_size > 4096)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "zero_data_open: cfg.struct_size is %zu: initialise the config with "
                       "ZERO_DATA_CONFIG_INIT",
                       cfg_in->struct_size);
    for (size_t k = sizeof cfg; k < cfg_in->struct_size; k++)
        if (((const unsigned char *)cfg_in)[k])
            return zr_fail(e, ZERO_ERR_UNSUPPORTED,
                           "zero_data_open: cfg is %zu bytes and sets fields this libzero (%zu "
                           "bytes) does not know: update libzero",
                           cfg_in->struct_size, sizeof cfg);
    memcpy(&cfg, cfg_in, cfg_in->struct_size < sizeof cfg ? cfg_in->struct_size : sizeof cfg);
    /* fields a program's struct ends before keep their defaults: a 0.4 program's struct ends
     * at shuffle_unit and its padding (where `reserved` is, never read), before `output` */
    const size_t has_output = offsetof(zero_data_config, output) + sizeof cfg.output;
    if (cfg_in->struct_size >= has_output && cfg.reserved != 0) /* kept for a later meaning */
        return zr_fail(e, ZERO_ERR_INVALID,
                       "zero_data_open: cfg.reserved is %d: it must be 0 (ZERO_DATA_CONFIG_INIT "
                       "sets it)", cfg.reserved);
    snprintf(d->name, sizeof d->name, "%s", cfg.name && *cfg.name ? cfg.name : "data");
    if (!cfg.files || !*cfg.files)
        return zr_fail(e, ZERO_ERR_INVALID, "data loader '%s': the file list (cfg.files) is empty",
                       d->name);
    if (cfg.batch < 1 || cfg.seq < 1 || cfg.seq > (1 << 28))
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': batch %d and seq %d: each must be >= 1 (seq <= 2^28)",
                       d->name, cfg.batch, cfg.seq);
    if ((uint64_t)cfg.batch * (uint64_t)cfg.seq > ((uint64_t)1 << 31) / 2)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': batch %d x seq %d tokens is too large for one batch "
                       "(at most 2^30)",
                       d->name, cfg.batch, cfg.seq);
    if (cfg.shuffle != 0 && cfg.shuffle != 1)
        return zr_fail(e, ZERO_ERR_INVALID, "data loader '%s': shuffle %d: expected 0 or 1",
                       d->name, cfg.shuffle);
    if (cfg.vocab < 0 || cfg.vocab > (int64_t)INT32_MAX + 1)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': vocab %lld: expected 0 (no check) to 2^31", d->name,
                       (long long)cfg.vocab);
    if ((unsigned)cfg.format > ZERO_DATA_BYTES)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': format %d: expected ZERO_DATA_AUTO, _TOKENS or _BYTES",
                       d->name, (int)cfg.format);
    if (cfg.prefetch < -1 || cfg.prefetch > 64)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': prefetch %d: expected -1 (ZERO_DATA_PREFETCH) or 0 to 64",
                       d->name, cfg.prefetch);
    if (cfg.verify < -1 || cfg.verify > 1)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': verify %d: expected -1 (ZERO_DATA_VERIFY), 0 or 1",
                       d->name, cfg.verify);
    if (!(cfg.delay_ms <= 60000.0) && !(cfg.delay_ms < 0.0))
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': delay_ms %g: expected a number up to 60000 (< 0: "
                       "ZERO_DATA_DELAY_MS)",
                       d->name, cfg.delay_ms);
    if (cfg.shuffle_unit < 0)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': shuffle_unit %d: expected 0 (auto) or a number of "
                       "windows >= 1", d->name, cfg.shuffle_unit);
    if (cfg.output != ZERO_DATA_OUT_INT32 && cfg.output != ZERO_DATA_OUT_WINDOWS)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "data loader '%s': output %d: expected ZERO_DATA_OUT_INT32 (0) or "
                       "ZERO_DATA_OUT_WINDOWS (1)", d->name, (int)cfg.output);
    d->output = cfg.output;
    d->fill_tokens = cfg_in->struct_size >= has_output; /* its zero_batch has tokens.. */
    d->shuffle_unit = cfg.shuffle_unit;
    d->B = cfg.batch;
    d->T = cfg.seq;
    d->seed = cfg.seed;
    d->shuffle = cfg.shuffle;
    d->vocab = cfg.vocab;
    d->format = cfg.format;
    d->prefetch = cfg.prefetch >= 0 ? cfg.prefetch : z->set.data_prefetch;
    d->verify = cfg.verify >= 0 ? cfg.verify : z->set.data_verify;
    d->delay_ms = cfg.delay_ms >= 0.0 ? cfg.delay_ms : (double)z->set.data_delay_ms;
    d->io = z->set.data_io;
    return ZERO_OK;
}

/* Every file opened and checked, the windows counted, the fingerprint computed (this rank). */
static zero_status open_files(zero_data *d, const char *files, zr_error *e)
{
    char msg[DATA_MSG];
    char **paths = NULL;
    int n = 0;
    if (zt_expand(files, &paths, &n, msg, sizeof msg))
        return zr_fail(e, ZERO_ERR_INVALID, "data loader '%s': %s", d->name, msg);
    zero_status st = ZERO_OK;
    d->files = calloc((size_t)n, sizeof *d->files);
    d->file_windows = calloc((size_t)n, sizeof *d->file_windows);
    d->file_unit = calloc((size_t)n, sizeof *d->file_unit);
    if (!d->files || !d->file_windows || !d->file_unit) {
        st = zr_fail(e, ZERO_ERR_SYSTEM, "out of host memory");
        goto out;
    }
    for (int i = 0; i < n; i++)
        d->files[i].fd = -1;
    XXH3_state_t *h = XXH3_createState();
    if (!h) {
        st = zr_fail(e, ZERO_ERR_SYSTEM, "out of host memory");
        goto out;
    }
    XXH3_64bits_reset(h);
    int bytes_files = 0;
    for (int i = 0; i < n; i++) {
        st = zt_open(&d->files[i], paths[i], d->format, d->io == ZR_DATA_IO_MMAP, msg, sizeof msg);
        if (st) {
            zr_fail(e, st, "data loader '%s': %s", d->name, msg);
            break;
        }
        d->nfiles = i + 1;
        const zt_file *f = &d->files[i];
        bytes_files += f->width == 1;
        if (f->ntok < (int64_t)d->T + 1) {
            st = zr_fail(e, ZERO_ERR_INVALID,
                         "data loader '%s': %s holds %lld token%s, shorter than one window of "
                         "seq + 1 = %d tokens",
                         d->name, f->path, (long long)f->ntok, f->ntok == 1 ? "" : "s", d->T + 1);
            break;
        }
        d->file_windows[i] = (f->ntok - 1) / d->T;
        /* shuffle unit: the setting, or about 32 Ki tokens of consecutive windows (one random
         * place in memory per unit instead of per window), at most 1/16 of the file's windows
         * so that a small file is still shuffled */
        int64_t U = d->shuffle_unit;
        if (U == 0) {
            U = 32768 / d->T;
            if (U > d->file_windows[i] / 16)
                U = d->file_windows[i] / 16;
        }
        d->file_unit[i] = U < 1 ? 1 : U;
        d->windows += d->file_windows[i];
        d->tokens += f->ntok;
        if (f->width > d->width)
            d->width = f->width;
        const char *b = file_base(f->path);
        int64_t w[2] = {f->ntok, f->width};
        XXH3_64bits_update(h, b, strlen(b) + 1);
        XXH3_64bits_update(h, w, sizeof w);
    }
    if (!st && bytes_files && bytes_files != n)
        st = zr_fail(e, ZERO_ERR_INVALID,
                     "data loader '%s': the files mix token files and files read as bytes (%d "
                     "of %d are bytes); give one kind, or set format",
                     d->name, bytes_files, n);
    d->files_hash = XXH3_64bits_digest(h);
    int64_t w[5] = {d->T, d->shuffle, (int64_t)d->seed, d->width == 1, d->shuffle_unit};
    XXH3_64bits_update(h, w, sizeof w);
    d->fingerprint = XXH3_64bits_digest(h);
    XXH3_freeState(h);
out:
    zt_free_paths(paths, n);
    return st;
}

/* Every token of every file < vocab: rank r scans the r-th part of each file. The largest token
 * goes to d->max_token on every rank. Collective. */
static zero_status verify_all(zero_data *d, zero_ctx *z)
{
    char msg[DATA_MSG];
    zero_status local = ZERO_OK;
    int64_t mx = -1;
    unsigned char *raw = malloc(4096 * 4);
    if (!raw)
        local = zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    for (int i = 0; i < d->nfiles && !local; i++) {
        const zt_file *f = &d->files[i];
        int64_t lo = f->ntok * z->rank / z->world, hi = f->ntok * (z->rank + 1) / z->world;
        if (f->ntok > INT64_MAX / z->world) { /* no overflow for huge counts */
            lo = f->ntok / z->world * z->rank;
            hi = z->rank == z->world - 1 ? f->ntok : f->ntok / z->world * (z->rank + 1);
        }
        int64_t m = -1;
        zero_status st = zt_scan(f, lo, hi - lo, d->vocab, raw, 4096, &m, msg, sizeof msg);
        if (m > mx)
            mx = m;
        if (st)
            local = zr_fail(&z->err, st, "data loader '%s': %s", d->name, msg);
    }
    free(raw);
    zero_status s = zr_agree(z, local, NULL, NULL, 0);
    if (s)
        return s;
    return zr_max_over_ranks(z, mx, &d->max_token);
}

/* The ring, its pinning and the device copies (this rank). */
static zero_status alloc_ring(zero_data *d, zero_ctx *z)
{
    /* the int32 pair; a window output (T + 1 tokens of at most 4 bytes) fits in it too */
    const size_t bytes = 2 * (size_t)d->B * (size_t)d->T * sizeof(int32_t);
    d->out_bytes = d->output == ZERO_DATA_OUT_WINDOWS
                       ? (size_t)d->B * ((size_t)d->T + 1) * (size_t)d->width
                       : bytes;
    d->nslots = d->prefetch + 1;
    if (!(d->slots = calloc((size_t)d->nslots, sizeof *d->slots)))
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    const size_t page = 4096, alloc = (bytes + page - 1) / page * page;
    for (int i = 0; i < d->nslots; i++) {
        if (posix_memalign((void **)&d->slots[i].buf, page, alloc))
            return zr_fail(&z->err, ZERO_ERR_SYSTEM,
                           "data loader '%s': out of host memory for %d batches of %zu bytes",
                           d->name, d->nslots, bytes);
        memset(d->slots[i].buf, 0, alloc);
        d->slots[i].ready_batch = -1;
    }
    if (reader_alloc(&d->rd, d->nfiles, d->B, d->T, d->width) ||
        (d->prefetch > 0 && reader_alloc(&d->rd_caller, d->nfiles, d->B, d->T, d->width)))
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    d->copy_slot = -1;
    d->dev_batch[0] = d->dev_batch[1] = -1;
    if (zr_dev_is_host(&z->dev))
        return ZERO_OK;
    /* device memory for two batches; the host slots page-locked for asynchronous copies */
    for (int k = 0; k < 2; k++) {
        char what[64];
        snprintf(what, sizeof what, "data loader '%s' batch %d", d->name, k);
        zero_status st = zr_device_alloc(&z->dev, ZERO_MEM_BUFFERS, d->out_bytes, what,
                                         (void **)&d->dev[k], &z->err);
        if (st)
            return st;
    }
    if (!zr_dev_has(&z->dev, ZR_DEV_CAP_ASYNC_COPY))
        return ZERO_OK;
    for (int i = 0; i < d->nslots; i++) {
        char err[256];
        if (zr_dev_host_register(&z->dev, d->slots[i].buf, alloc, err, sizeof err) == ZERO_OK)
            d->slots[i].pinned = 1;
        else
            ZR_WARN(ZR_SUB_OFFLOAD, "data loader '%s': batch buffers stay pageable: %s", d->name,
                    err);
    }
    for (int s = ZR_COPY_SLOTS_OFFLOAD; s + 1 < ZR_COPY_SLOTS; s += 2)
        if (!(z->data_copy_slots & (3u << s))) {
            z->data_copy_slots |= 3u << s;
            d->copy_slot = s;
            break;
        }
    return ZERO_OK;
}

zero_status zero_data_open(zero_ctx *z, const zero_data_config *cfg, zero_data **out)
{
    if (out)
        *out = NULL;
    if (!z || !cfg || !out) {
        if (zr_ctx_live(z))
            zr_error_set(&z->err, ZERO_ERR_INVALID, "zero_data_open: NULL %s",
                         !cfg ? "cfg" : "data");
        return ZERO_ERR_INVALID;
    }
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    zr_error_clear(&z->err);
    zero_data *d = calloc(1, sizeof *d);
    if (!d)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory");
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv_ready, NULL);
    pthread_cond_init(&d->cv_space, NULL);
    d->rank = z->rank;
    d->world = z->world;
    d->max_token = -1;
    d->copy_slot = -1;
    zero_status local = settle(d, z, cfg, &z->err);
    if (!local)
        local = open_files(d, cfg->files, &z->err);
    /* the ranks must see the same files and ask for the same batches */
    int64_t words[] = {d->B, d->T, (int64_t)d->seed, d->shuffle, d->shuffle_unit, d->vocab,
                       d->format, d->output, d->nfiles, d->tokens, (int64_t)d->files_hash};
    static const char *const names[] = {"the data batch", "the data seq", "the data seed",
                                        "the data shuffle", "the data shuffle unit",
                                        "the data vocab", "the data format", "the data output",
                                        "the number of data files", "the data's token count",
                                        "the data files' hash (names and token counts)"};
    zero_status s = zr_agree(z, local, words, names, (int)(sizeof words / sizeof words[0]));
    if (!s) {
        int on = d->verify == ZR_DATA_VERIFY_ON ||
                 (d->verify == ZR_DATA_VERIFY_AUTO &&
                  (uint64_t)d->tokens * (uint64_t)d->width <= ((uint64_t)1 << 30));
        int64_t vw[1] = {on};
        static const char *const vnames[] = {"ZERO_DATA_VERIFY (on or off)"};
        s = zr_agree(z, ZERO_OK, vw, vnames, 1);
        d->verify = on;
        if (!s && on)
            s = verify_all(d, z);
    }
    if (!s) {
        d->z = z; /* from here on data_free gives back what alloc_ring took on the context */
        local = alloc_ring(d, z);
        s = zr_agree(z, local, NULL, NULL, 0);
    }
    if (!s) {
        /* a thread that cannot start is a local failure; every rank learns of it */
        s = zr_agree(z, ring_start(d, &z->err), NULL, NULL, 0);
    }
    if (s) {
        zr_data_totals keep = z->data; /* a loader that never opened counts for nothing */
        data_free(d);
        z->data = keep;
        return s;
    }
    d->next = z->data_open;
    z->data_open = d;
    z->data.loaders++;
    if (d->prefetch > z->data.prefetch)
        z->data.prefetch = d->prefetch;
    z->data.io = d->io;
    if (d->rank == 0)
        ZR_INFO(ZR_SUB_INIT,
                "data loader '%s': %d file%s, %lld tokens of %d byte%s, %lld windows of %d+1 per "
                "epoch, %d x %d per rank per batch, prefetch %d, %s%s",
                d->name, d->nfiles, d->nfiles == 1 ? "" : "s", (long long)d->tokens, d->width,
                d->width == 1 ? "" : "s", (long long)d->windows, d->T, d->B, d->T, d->prefetch,
                d->io == ZR_DATA_IO_MMAP ? "mmap" : "pread",
                d->verify ? ", every token checked" : "");
    *out = d;
    return ZERO_OK;
}

/* ---- next, tell, seek, close ------------------------------------------------------------------ */

static zero_status data_check(const zero_data *d)
{
    if (!d)
        return ZERO_ERR_INVALID;
    if (!d->z || !zr_ctx_live(d->z))
        return ZERO_ERR_STATE; /* detached by zero_finalize */
    return ZERO_OK;
}

zero_status zero_data_next(zero_data *d, zero_batch *batch)
{
    zero_status s = data_check(d);
    if (s)
        return s;
    zero_ctx *z = d->z;
    zr_error_clear(&z->err);
    if (!batch) /* agreed, so the other ranks do not wait in the agreement alone */
        return zr_agree(z, zr_fail(&z->err, ZERO_ERR_INVALID, "zero_data_next: NULL batch"),
                        NULL, NULL, 0);
    const int64_t b = d->take;
    data_slot *slot = &d->slots[b % d->nslots];
    double t0 = zr_now();
    /* no thread (prefetch 0, or a restart after a seek that failed): the call reads itself */
    const int sync = !d->thread_on;
    if (sync) {
        /* cuda: the one slot may still be the source of the last batch's queued copy */
        if (d->dev[0] && d->nslots == 1) {
            dev_wait(d, 0);
            dev_wait(d, 1);
        }
        if (!slot->ready || slot->batch != b) {
            prepare(d, &d->rd, b, slot, &d->rd.bytes, &d->rd.busy_s);
            slot->ready = 1;
        }
    } else {
        pthread_mutex_lock(&d->mu);
        int spun = 0;
        while (!(slot->ready && slot->batch == b)) {
            /* the ring is behind: rather than wait, the caller prepares the next batch that
             * the thread has not claimed (this one, or one ahead while the thread finishes this
             * one), so that both cores read when the data is the bottleneck; a ring that keeps
             * ahead of the steps never gets here */
            if (d->fill < d->take + d->prefetch) {
                claim_and_prepare(d, &d->rd_caller);
                continue;
            }
            if (!spun) { /* the thread is at it: it will be done in a moment */
                pthread_mutex_unlock(&d->mu);
                spun = 1;
                spin_ready(slot, b);
                pthread_mutex_lock(&d->mu);
                continue;
            }
            pthread_cond_wait(&d->cv_ready, &d->mu);
        }
        pthread_mutex_unlock(&d->mu);
    }
    d->wait_s += zr_now() - t0;
    zero_status local = slot->status;
    if (local)
        zr_error_set(&z->err, local, "data loader '%s': %s", d->name, slot->msg);
    s = zr_agree(z, local, NULL, NULL, 0);
    if (s) {
        /* a failed batch stays the next one (without a thread: it is read again) */
        if (sync)
            slot->ready = 0;
        return s;
    }
    const size_t bt = (size_t)d->B * (size_t)d->T;
    const int32_t *din = slot->buf, *dtg = slot->buf + bt;
    if (d->dev[0]) {
        int k = (int)(b & 1);
        if (d->dev_batch[k] != b && dev_queue(d, b, slot) != 0) {
            zr_dev_copy(&z->dev, d->dev[k], slot->buf, d->out_bytes);
            d->dev_batch[k] = b;
        }
        zr_dev_order(&z->dev, ZR_STREAM_COMPUTE, ZR_STREAM_COPY);
        din = d->dev[k];
        dtg = d->dev[k] + bt;
    }
    const int windows = d->output == ZERO_DATA_OUT_WINDOWS;
    batch->inputs = windows ? NULL : slot->buf;
    batch->targets = windows ? NULL : slot->buf + bt;
    batch->dev_inputs = windows ? NULL : din;
    batch->dev_targets = windows ? NULL : dtg;
    if (d->fill_tokens) {
        batch->tokens = windows ? (const void *)slot->buf : NULL;
        batch->dev_tokens = windows ? (const void *)din : NULL;
        batch->token_bytes = windows ? d->width : 4;
    }
    batch->batch = d->B;
    batch->seq = d->T;
    const uint64_t G = (uint64_t)d->B * (uint64_t)d->world;
    batch->index = (int64_t)((d->base + (uint64_t)b * G) / G);
    batch->epoch = (int64_t)(slot->first_window / (uint64_t)d->windows);
    batch->first_window = slot->first_window;
    d->batches++;

    /* the batch before this one is done with: its slot goes back to the thread (once its
     * device copy, long finished, is waited for) */
    if (d->dev[0] && b > 0)
        dev_wait(d, (int)((b - 1) & 1));
    pthread_mutex_lock(&d->mu);
    __atomic_store_n(&d->take, b + 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&d->cv_space);
    /* the next batch's copy, when it is ready, goes on the copy stream now */
    data_slot *nx = &d->slots[(b + 1) % d->nslots];
    int next_ready = !sync && nx->ready && nx->batch == b + 1 && nx->status == ZERO_OK;
    pthread_mutex_unlock(&d->mu);
    if (d->dev[0] && next_ready)
        dev_queue(d, b + 1, nx);
    return ZERO_OK;
}

zero_status zero_data_tell(const zero_data *d, zero_data_pos *pos)
{
    if (!d || !pos)
        return ZERO_ERR_INVALID;
    pos->windows = d->base + (uint64_t)d->take * (uint64_t)d->B * (uint64_t)d->world;
    pos->fingerprint = d->fingerprint;
    return ZERO_OK;
}

zero_status zero_data_seek(zero_data *d, const zero_data_pos *pos)
{
    zero_status s = data_check(d);
    if (s)
        return s;
    zero_ctx *z = d->z;
    zr_error_clear(&z->err);
    zero_status local = ZERO_OK;
    if (!pos)
        local = zr_fail(&z->err, ZERO_ERR_INVALID, "zero_data_seek: NULL position");
    else if (pos->windows >= ((uint64_t)1 << 62))
        local = zr_fail(&z->err, ZERO_ERR_INVALID,
                        "data loader '%s': position %llu windows is beyond any data set (a "
                        "damaged checkpoint blob?)",
                        d->name, (unsigned long long)pos->windows);
    else if (pos->fingerprint != d->fingerprint)
        local = zr_fail(&z->err, ZERO_ERR_INVALID,
                        "data loader '%s': the position (fingerprint %016llx) was taken on other "
                        "data or settings than this loader's (%016llx): the files' names or "
                        "token counts, seq, seed, shuffle or format differ",
                        d->name, (unsigned long long)pos->fingerprint,
                        (unsigned long long)d->fingerprint);
    int64_t words[1] = {pos && !local ? (int64_t)pos->windows : 0};
    static const char *const names[] = {"the data position (windows)"};
    s = zr_agree(z, local, words, names, 1);
    if (s)
        return s;
    ring_reset(d, pos->windows);
    dev_forget(d);
    s = ring_start(d, &z->err);
    return zr_agree(z, s, NULL, NULL, 0);
}

zero_status zero_data_get_info(const zero_data *d, zero_data_info *info)
{
    if (!d || !info)
        return ZERO_ERR_INVALID;
    memset(info, 0, sizeof *info);
    info->files = d->nfiles;
    info->token_bytes = d->width;
    info->tokens = d->tokens;
    info->windows = d->windows;
    info->max_token = d->max_token;
    info->prefetch = d->prefetch;
    info->io = d->io == ZR_DATA_IO_MMAP ? "mmap" : "pread";
    info->batches = d->batches;
    zero_data *m = (zero_data *)d;
    pthread_mutex_lock(&m->mu);
    info->bytes_read = d->rd.bytes + d->rd_caller.bytes;
    info->busy_s = d->rd.busy_s + d->rd_caller.busy_s;
    pthread_mutex_unlock(&m->mu);
    info->wait_s = d->wait_s;
    return ZERO_OK;
}

zero_status zero_data_close(zero_data *d)
{
    data_free(d);
    return ZERO_OK;
}

void zr_data_detach_all(zero_ctx *z)
{
    while (z->data_open)
        detach(z->data_open);
}

void zr_data_totals_now(const zero_ctx *z, zr_data_totals *out)
{
    *out = z->data;
    for (const zero_data *d = z->data_open; d; d = d->next) {
        zero_data_info in;
        zero_data_get_info(d, &in);
        out->batches += in.batches;
        out->bytes += in.bytes_read;
        out->tokens += (uint64_t)in.batches * (uint64_t)d->B * (uint64_t)d->T;
        out->wait_s += in.wait_s;
        out->busy_s += in.busy_s;
    }
}
