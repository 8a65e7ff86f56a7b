/* config.c — the table of ZERO_* settings and everything driven by it: resolving a zero_config
 * against the environment, size parsing, docs/ENV.md, the cross-rank fingerprint and the JSON
 * form of a resolved configuration. Adding a setting means adding one row to zr_vars[]. */
#include "runtime/config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/log.h"

/* Enum-typed fields are stored through an int pointer. */
_Static_assert(sizeof(zero_dtype) == sizeof(int), "zero_dtype must be int-sized");
_Static_assert(sizeof(zero_device_kind) == sizeof(int), "zero_device_kind must be int-sized");
_Static_assert(sizeof(zero_offload) == sizeof(int), "zero_offload must be int-sized");
_Static_assert(sizeof(zero_optimizer) == sizeof(int), "zero_optimizer must be int-sized");
_Static_assert(sizeof(((zr_settings *)0)->log_file) == sizeof(((zr_settings *)0)->report_path),
               "path fields share one capacity");

#define ZR_PATH_CAP sizeof(((zr_settings *)0)->report_path) /* bytes, with the NUL */
#define ZR_KiB ((uint64_t)1 << 10)
#define ZR_MiB ((uint64_t)1 << 20)
#define ZR_GiB ((uint64_t)1 << 30)
#define ZR_TiB ((uint64_t)1 << 40)

enum zr_type {
    ZR_T_INT,    /* int in [ilo, ihi] */
    ZR_T_INTWORD, /* int: one of words[] (any value), or an integer in [ilo, ihi] */
    ZR_T_ENUM,   /* int (or int-sized C enum) named by one of words[] */
    ZR_T_SIZE,   /* size_t bytes in [slo, shi]; a bare number is in `unit` */
    ZR_T_FLOAT,  /* finite float in flo..fhi, each end open or closed */
    ZR_T_DOUBLE, /* finite double in flo..fhi (the optimizer's hyperparameters: torch holds them
                    as Python floats, doubles) */
    ZR_T_SCALE,  /* float: "dynamic" (stored 0) or a number in flo..fhi */
    ZR_T_SUBSYS, /* unsigned mask of the words[] bits, or ALL */
    ZR_T_PATH    /* char[ZR_PATH_CAP], at most shi characters */
};

typedef struct zr_word {
    const char *word;
    int value;
} zr_word;

typedef struct zr_var {
    const char *name;    /* the environment variable */
    enum zr_type type;
    size_t offset;       /* where the value lives in zr_settings */
    const char *field;   /* zero_config member (messages, JSON); NULL = environment only */
    const char *def;     /* default, in the variable's own syntax; "" = unset */
    const char *allowed; /* what is allowed, for messages and docs */
    const char *desc;    /* one line for docs/ENV.md */
    long long ilo, ihi;
    const zr_word *words; /* ends with a NULL word */
    uint64_t unit, slo, shi;
    double flo, fhi;
    int flo_open, fhi_open;
    int per_rank;         /* may differ between ranks (where work runs, not what it computes):
                             left out of the cross-rank fingerprint */
    int size_auto;        /* ZR_T_SIZE: "auto" is allowed (stored as ZERO_SIZE_AUTO; zero_init
                             chooses the size, runtime/api.c resolve_auto_sizes) */
} zr_var;

static const zr_word zr_dtype_words[] = {
    {"fp32", ZERO_DTYPE_FP32}, {"bf16", ZERO_DTYPE_BF16}, {"fp16", ZERO_DTYPE_FP16}, {NULL, 0}};
static const zr_word zr_device_words[] = {
    {"auto", ZERO_DEVICE_AUTO}, {"cuda", ZERO_DEVICE_CUDA}, {"host", ZERO_DEVICE_HOST}, {NULL, 0}};
static const zr_word zr_offload_words[] = {
    {"none", ZERO_OFFLOAD_NONE}, {"cpu", ZERO_OFFLOAD_CPU}, {NULL, 0}};
static const zr_word zr_numa_words[] = {
    {"auto", ZERO_NUMA_AUTO}, {"off", ZERO_NUMA_OFF}, {NULL, 0}};
static const zr_word zr_data_verify_words[] = {{"auto", ZR_DATA_VERIFY_AUTO},
                                               {"off", ZR_DATA_VERIFY_OFF},
                                               {"on", ZR_DATA_VERIFY_ON},
                                               {NULL, 0}};
static const zr_word zr_data_io_words[] = {
    {"mmap", ZR_DATA_IO_MMAP}, {"pread", ZR_DATA_IO_PREAD}, {NULL, 0}};
static const zr_word zr_optimizer_words[] = {
    {"adamw", ZERO_OPT_ADAMW}, {"adam", ZERO_OPT_ADAM}, {NULL, 0}};
static const zr_word zr_level_words[] = {{"NONE", ZR_LOG_NONE},
                                         {"WARN", ZR_LOG_WARN},
                                         {"INFO", ZR_LOG_INFO},
                                         {"TRACE", ZR_LOG_TRACE},
                                         {NULL, 0}};
static const zr_word zr_subsys_words[] = {
    {"INIT", (int)ZR_SUB_INIT},       {"PART", (int)ZR_SUB_PART},   {"COMM", (int)ZR_SUB_COMM},
    {"OFFLOAD", (int)ZR_SUB_OFFLOAD}, {"ALLOC", (int)ZR_SUB_ALLOC}, {"ENV", (int)ZR_SUB_ENV},
    {NULL, 0}};

#define CFG(member) offsetof(zr_settings, cfg.member), #member
#define ENV_ONLY(member) offsetof(zr_settings, member), NULL

/* The table. Names are a contract with users; defaults must equal ZERO_CONFIG_INIT (a unit test
 * resolves every default text and compares). */
static const zr_var zr_vars[] = {
    {"ZERO_STAGE", ZR_T_INT, CFG(stage), "2", "one of 0 1 2 3",
     "what is partitioned across ranks: 0 nothing (data parallel), 1 optimizer state, "
     "2 also gradients, 3 also parameters",
     .ilo = 0, .ihi = 3},
    {"ZERO_DTYPE", ZR_T_ENUM, CFG(dtype), "fp32", "one of fp32 bf16 fp16",
     "working precision of parameters and gradients on the device (master weights and Adam "
     "moments are always fp32)",
     .words = zr_dtype_words},
    {"ZERO_BUCKET_MB", ZR_T_SIZE, CFG(bucket_bytes), "auto",
     "auto, or a size from 4K to 64G, a bare number is MiB",
     "reduce bucket and chunk size: gradients are reduce-scattered and parameters all-gathered "
     "in chunks of about this size; auto = the size where the collectives reach full bandwidth, "
     "at most 1/64 of the device capacity, at least 64K, a power of two (docs/DESIGN.md §7; "
     "logged at INFO)",
     .unit = ZR_MiB, .slo = 4 * ZR_KiB, .shi = 64 * ZR_GiB, .size_auto = 1},
    {"ZERO_GRAD_ACCUM", ZR_T_INT, CFG(grad_accum), "1", "an integer from 1 to 1000000",
     "micro-steps (zero_step calls) per optimizer step", .ilo = 1, .ihi = 1000000},
    {"ZERO_CLIP", ZR_T_FLOAT, CFG(clip), "0", "a number >= 0",
     "maximum global L2 norm of the gradient; 0 = no clipping", .flo = 0, .fhi = FLT_MAX},
    {"ZERO_LOSS_SCALE", ZR_T_SCALE, CFG(loss_scale), "dynamic", "dynamic or a number > 0",
     "loss scale: dynamic (fp16: grows, and halves on overflow; 1 for fp32 and bf16) or a "
     "static value",
     .flo = 0, .flo_open = 1, .fhi = FLT_MAX},
    {"ZERO_DEVICE", ZR_T_ENUM, CFG(device), "auto", "one of auto cuda host",
     "device backend: cuda, host (the CPU is the device), auto (cuda when libzero was built "
     "with CUDA and NCCL and every rank has a GPU of its own, else host, said at INFO)",
     .words = zr_device_words},
    {"ZERO_DEVICE_MEMORY", ZR_T_SIZE, CFG(device_memory), "0",
     "a size, a bare number is bytes",
     "device memory capacity (host backend) or cap (cuda); 0 = all memory",
     .unit = 1, .slo = 0, .shi = UINT64_MAX},
    {"ZERO_OFFLOAD_OPTIMIZER", ZR_T_ENUM, CFG(offload_optimizer), "none", "one of none cpu",
     "where the fp32 master weights and Adam state live", .words = zr_offload_words},
    {"ZERO_OFFLOAD_PARAM", ZR_T_ENUM, CFG(offload_param), "none", "one of none cpu",
     "stage 3: where the parameter shards live", .words = zr_offload_words},
    {"ZERO_OFFLOAD_BLOCK_MB", ZR_T_SIZE, CFG(offload_block_bytes), "8",
     "a size from 4K to 1G, a bare number is MiB",
     "per rank: optimizer offload: gradients go to the host and updated parameters come back in "
     "blocks of at most this many bytes (cut at tensor boundaries) through two staging buffers "
     "of this size; on cuda the copies overlap the CPU AdamW. Results do not depend on it",
     .unit = ZR_MiB, .slo = 4 * ZR_KiB, .shi = ZR_GiB, .per_rank = 1},
    {"ZERO_CPU_THREADS", ZR_T_INT, CFG(cpu_threads), "0", "an integer from 0 to 4096",
     "per rank: CPU optimizer threads of a rank; 0 = one per core of its share of the node's "
     "cores (local ranks share no core while there are enough); when bound, capped at its "
     "hardware threads",
     .ilo = 0, .ihi = 4096, .per_rank = 1},
    {"ZERO_NUMA", ZR_T_INTWORD, CFG(numa), "auto", "auto, off or a NUMA node index from 0 to 4095",
     "per rank: where offloaded optimizer state and CPU optimizer threads go: auto = the NUMA "
     "node local to the rank's GPU (host backend: the nodes and cores divided among the local "
     "ranks), off = no binding, N = node N (numbered as numactl and lscpu show it) for every local "
     "rank; `zero-info` prints the plan",
     .ilo = 0, .ihi = 4095, .words = zr_numa_words, .per_rank = 1},
    {"ZERO_PREFETCH_MB", ZR_T_SIZE, CFG(prefetch_bytes), "auto",
     "auto, or a size, a bare number is MiB",
     "stage 3: parameter bytes gathered ahead of their use; 0 = no prefetch; auto = two "
     "buckets, within what the device has left after the model state and the reduce buckets",
     .unit = ZR_MiB, .slo = 0, .shi = UINT64_MAX - 1, .size_auto = 1},
    {"ZERO_MAX_LIVE_MB", ZR_T_SIZE, CFG(max_live_bytes), "auto",
     "auto, or a size, a bare number is MiB",
     "stage 3: cap on the bytes of gathered parameters (prefetch stops at it; gathers the model "
     "asks for always proceed); 0 = no cap; auto = half of what the device has left after the "
     "model state and the reduce buckets, at most 1 GiB",
     .unit = ZR_MiB, .slo = 0, .shi = UINT64_MAX - 1, .size_auto = 1},
    {"ZERO_PERSIST_KB", ZR_T_SIZE, CFG(persist_bytes), "64", "a size, a bare number is KiB",
     "stage 3: chunks with fewer parameter bytes than this stay gathered",
     .unit = ZR_KiB, .slo = 0, .shi = UINT64_MAX},
    {"ZERO_LR", ZR_T_DOUBLE, CFG(lr), "0.001", "a number > 0", "AdamW learning rate",
     .flo = 0, .flo_open = 1, .fhi = FLT_MAX},
    {"ZERO_BETA1", ZR_T_DOUBLE, CFG(beta1), "0.9", "a number in [0, 1)",
     "AdamW decay rate of the first moment", .flo = 0, .fhi = 1, .fhi_open = 1},
    {"ZERO_BETA2", ZR_T_DOUBLE, CFG(beta2), "0.999", "a number in [0, 1)",
     "AdamW decay rate of the second moment", .flo = 0, .fhi = 1, .fhi_open = 1},
    {"ZERO_EPS", ZR_T_DOUBLE, CFG(eps), "1e-08", "a number > 0",
     "AdamW epsilon, added to the root of the second moment", .flo = 0, .flo_open = 1,
     .fhi = FLT_MAX},
    {"ZERO_WEIGHT_DECAY", ZR_T_DOUBLE, CFG(weight_decay), "0", "a number >= 0",
     "AdamW decoupled weight decay (not applied to tensors marked no_decay)", .flo = 0,
     .fhi = FLT_MAX},
    {"ZERO_OPTIMIZER", ZR_T_ENUM, CFG(optimizer), "adamw", "one of adamw adam",
     "the optimizer's formula, bitwise PyTorch's for fp32: adamw = torch.optim.AdamW (decoupled "
     "weight decay), adam = torch.optim.Adam (weight decay added to the gradient as an L2 term)",
     .words = zr_optimizer_words},
    {"ZERO_TIMEOUT_S", ZR_T_FLOAT, CFG(timeout_s), "600", "a number of seconds >= 0",
     "per rank: the longest a rank waits for a collective (MPI or NCCL), counted from when it was "
     "issued: one not complete by then returns ZERO_ERR_COMM naming it, the context then accepts "
     "only zero_finalize (on the cuda backend the NCCL communicator is aborted as well), and the "
     "rank's flight recorder goes to the log. Bounds every exchange after zero_init has read "
     "this setting; the exchanges before it wait at most the default. 0 = wait forever",
     .flo = 0, .fhi = FLT_MAX, .per_rank = 1},
    {"ZERO_CKPT_KEEP", ZR_T_INT, ENV_ONLY(ckpt_keep), "0", "an integer from 0 to 1000000",
     "zero_save keeps the newest K checkpoints (step-* directories) of its directory and removes "
     "older ones after a save has committed; 0 = keep all",
     .ilo = 0, .ihi = 1000000},
    {"ZERO_CKPT_IO", ZR_T_ENUM, ENV_ONLY(ckpt_io), "mmap", "one of mmap pread",
     "per rank: how zero_load reads shard files: a read-only memory map whose ranges are made "
     "resident and then hashed and copied in place (pread where the kernel cannot populate a "
     "mapping, before Linux 5.14), or pread into a buffer; the same checks either way",
     .words = zr_data_io_words, .per_rank = 1},
    {"ZERO_DATA_PREFETCH", ZR_T_INT, ENV_ONLY(data_prefetch), "2", "an integer from 0 to 64",
     "per rank: batches a data loader (zero_data_open) prepares ahead on its thread while the "
     "model trains; 0 = each zero_data_next reads its batch itself",
     .ilo = 0, .ihi = 64, .per_rank = 1},
    {"ZERO_DATA_VERIFY", ZR_T_ENUM, ENV_ONLY(data_verify), "auto", "one of auto off on",
     "whether zero_data_open checks every token against the vocabulary before training (the "
     "ranks split the files): on, off (tokens are checked as they are read), auto (on when the "
     "files hold at most 1 GiB)",
     .words = zr_data_verify_words},
    {"ZERO_DATA_IO", ZR_T_ENUM, ENV_ONLY(data_io), "mmap", "one of mmap pread",
     "per rank: how a data loader reads token files: a read-only memory map, or pread into a "
     "buffer (zero-bench-data measures both)",
     .words = zr_data_io_words, .per_rank = 1},
    {"ZERO_DATA_DELAY_MS", ZR_T_FLOAT, ENV_ONLY(data_delay_ms), "0", "a number from 0 to 60000",
     "per rank: an artificial delay in milliseconds per batch in the data loader, to show "
     "prefetching hide a slow input pipeline (zero-bench-data); 0 = none",
     .flo = 0, .fhi = 60000, .per_rank = 1},
    {"ZERO_DEBUG", ZR_T_ENUM, ENV_ONLY(log_level), "WARN", "one of NONE WARN INFO TRACE",
     "log level; INFO also logs every value taken from the environment", .words = zr_level_words},
    {"ZERO_DEBUG_SUBSYS", ZR_T_SUBSYS, ENV_ONLY(log_mask), "ALL",
     "a comma list of INIT PART COMM OFFLOAD ALLOC ENV ALL, a leading ^ excludes the listed ones",
     "subsystems that are logged", .words = zr_subsys_words},
    {"ZERO_DEBUG_FILE", ZR_T_PATH, ENV_ONLY(log_file), "", "a path, %h = host name, %p = process id",
     "log file instead of stderr", .shi = ZR_PATH_CAP - 1},
    {"ZERO_DEBUG_DIR", ZR_T_PATH, ENV_ONLY(debug_dir), "", "a directory",
     "where each rank also writes its flight recorder (its last collectives, "
     "zero-flight-rank<R>-<pid>.txt) when a collective fails or times out or the ranks' "
     "collectives differ; unset = the log only",
     .shi = ZR_PATH_CAP - 1},
    {"ZERO_REPORT", ZR_T_PATH, ENV_ONLY(report_path), "", "a path",
     "JSON report written by rank 0 at zero_finalize; when unset, zero_config.report_path",
     .shi = ZR_PATH_CAP - 1},
};

#undef CFG
#undef ENV_ONLY

#define ZR_NUM_VARS ((int)(sizeof(zr_vars) / sizeof(zr_vars[0])))

/* Values longer than this are cut in messages. */
#define ZR_SHOWN 160

static const char *zr_getenv(const char *name) { return getenv(name); }

static int zr_ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

static int zr_word_value(const zr_word *words, const char *text, int *value) {
    for (const zr_word *w = words; w->word; w++) {
        if (zr_ieq(w->word, text)) {
            *value = w->value;
            return 0;
        }
    }
    return -1;
}

static const char *zr_word_name(const zr_word *words, int value) {
    for (const zr_word *w = words; w->word; w++)
        if (w->value == value) return w->word;
    return "unknown";
}

const char *zr_dtype_name(zero_dtype d) { return zr_word_name(zr_dtype_words, (int)d); }
const char *zr_device_name(zero_device_kind d) { return zr_word_name(zr_device_words, (int)d); }
const char *zr_offload_name(zero_offload o) { return zr_word_name(zr_offload_words, (int)o); }

int zr_config_var(int i, const char **name, const char **default_text, const char **allowed) {
    if (i < 0 || i >= ZR_NUM_VARS) return -1;
    if (name) *name = zr_vars[i].name;
    if (default_text) *default_text = zr_vars[i].def;
    if (allowed) *allowed = zr_vars[i].allowed;
    return 0;
}

/* ---- sizes ------------------------------------------------------------------------------- */

int zr_parse_size(const char *text, uint64_t default_unit, uint64_t *bytes) {
    if (!text || !bytes || default_unit == 0) return -1;
    const char *s = text;
    while (isspace((unsigned char)*s)) s++;
    /* Must start with a digit or ".digit": this rejects "", "-1" and "+1". */
    if (!isdigit((unsigned char)s[0]) && !(s[0] == '.' && isdigit((unsigned char)s[1])))
        return -1;

    uint64_t whole = 0;
    for (; isdigit((unsigned char)*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (whole > (UINT64_MAX - d) / 10) return -1;
        whole = whole * 10 + d;
    }
    /* Fraction as num / den; digits past the 18th are below a byte even at T and are ignored. */
    uint64_t num = 0, den = 1;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s)) return -1;
        for (; isdigit((unsigned char)*s); s++) {
            if (den < 1000000000000000000ull) {
                num = num * 10 + (uint64_t)(*s - '0');
                den *= 10;
            }
        }
    }
    while (isspace((unsigned char)*s)) s++;

    uint64_t mult = default_unit;
    if (*s) {
        switch (toupper((unsigned char)*s)) {
        case 'B': mult = 1; break;
        case 'K': mult = ZR_KiB; break;
        case 'M': mult = ZR_MiB; break;
        case 'G': mult = ZR_GiB; break;
        case 'T': mult = ZR_TiB; break;
        default: return -1;
        }
        int bare_b = toupper((unsigned char)*s) == 'B';
        s++;
        if (!bare_b) {
            if (tolower((unsigned char)s[0]) == 'i' && tolower((unsigned char)s[1]) == 'b')
                s += 2;
            else if (tolower((unsigned char)s[0]) == 'b')
                s++;
        }
        while (isspace((unsigned char)*s)) s++;
        if (*s) return -1;
    }

    if (whole > UINT64_MAX / mult) return -1;
    uint64_t total = whole * mult;
    /* The fractional part is below mult (<= 2^40), so a double holds it to well under a byte. */
    uint64_t frac = (uint64_t)((double)num / (double)den * (double)mult + 0.5);
    if (frac > UINT64_MAX - total) return -1;
    *bytes = total + frac;
    return 0;
}

/* The shortest %g form that reads back as the same float. */
/* The shortest %g text that reads back as x; without an exponent where one is not needed
 * (600, not 6e+02). */
static void zr_format_double(char *buf, size_t n, double x) {
    int digits = 1;
    for (; digits <= 17; digits++) {
        snprintf(buf, n, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) break;
    }
    double a = fabs(x);
    if (!strchr(buf, 'e') || a < 1e-4 || a >= 1e9) return;
    char plain[64];
    for (; digits <= 17; digits++) {
        snprintf(plain, sizeof plain, "%.*g", digits, x);
        if (!strchr(plain, 'e') && strtod(plain, NULL) == x) {
            snprintf(buf, n, "%s", plain);
            return;
        }
    }
}

static void zr_format_float(char *buf, size_t n, float x) {
    int digits = 1;
    for (; digits <= 9; digits++) {
        snprintf(buf, n, "%.*g", digits, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    double a = fabs((double)x);
    if (!strchr(buf, 'e') || a < 1e-4 || a >= 1e9) return;
    char plain[64];
    for (; digits <= 9; digits++) {
        snprintf(plain, sizeof plain, "%.*g", digits, (double)x);
        if (!strchr(plain, 'e') && strtof(plain, NULL) == x) {
            snprintf(buf, n, "%s", plain);
            return;
        }
    }
}

/* ---- parsing one value ------------------------------------------------------------------- */

static void *zr_slot(zr_settings *s, const zr_var *v) { return (char *)s + v->offset; }
static const void *zr_cslot(const zr_settings *s, const zr_var *v) {
    return (const char *)s + v->offset;
}

static int zr_float_in_range(const zr_var *v, double x) {
    if (!isfinite(x)) return 0;
    if (v->flo_open ? !(x > v->flo) : !(x >= v->flo)) return 0;
    if (v->fhi_open ? !(x < v->fhi) : !(x <= v->fhi)) return 0;
    return 1;
}

/* Reads a finite number that fits a float. Returns 0, -1 when the text is not a number, or -2
 * when it is not 0 but rounds to 0 as a float (1e-50): 0 means "off" for several settings, so a
 * tiny value must not silently become that. */
static int zr_parse_float(const char *text, float *out) {
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (end == text || *end != '\0') return -1;
    if (!isfinite(x) || fabs(x) > FLT_MAX) return -1;
    if (x != 0.0 && (float)x == 0.0f) return -2;
    *out = (float)x;
    return 0;
}

/* The message of zr_parse_float's verdict rc (-1 or -2) for variable v. */
static zero_status zr_float_error(const zr_var *v, const char *text, int rc, zr_error *e) {
    if (rc == -2)
        zr_fail(e, ZERO_ERR_INVALID,
                "%s=%.*s is not allowed: it is not 0 but rounds to 0 as a 32-bit float (the "
                "smallest positive one is 1.4e-45)%s: expected %s",
                v->name, ZR_SHOWN, text,
                v->type == ZR_T_SCALE         ? ", where 0 means dynamic (write dynamic if that "
                                                "is meant)"
                : zr_float_in_range(v, 0.0) ? ", where 0 means off (write 0 if off is meant)"
                                            : "",
                v->allowed);
    else
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not a number: expected %s", v->name, ZR_SHOWN,
                text, v->allowed);
    return ZERO_ERR_INVALID;
}

static int zr_parse_subsys(const zr_word *words, const char *text, unsigned *mask, char *bad,
                           size_t badlen) {
    const char *s = text;
    int exclude = 0;
    if (*s == '^') {
        exclude = 1;
        s++;
    }
    unsigned listed = 0;
    while (*s) {
        size_t len = strcspn(s, ",");
        char word[32];
        const char *a = s, *b = s + len;
        while (a < b && isspace((unsigned char)*a)) a++;
        while (b > a && isspace((unsigned char)b[-1])) b--;
        if (b > a) {
            size_t wl = (size_t)(b - a);
            int value = 0;
            if (wl >= sizeof word) {
                snprintf(bad, badlen, "%.*s", (int)(wl > 31 ? 31 : wl), a);
                return -1;
            }
            memcpy(word, a, wl);
            word[wl] = '\0';
            if (zr_ieq(word, "ALL")) {
                listed = ZR_SUB_ALL;
            } else if (zr_word_value(words, word, &value) == 0) {
                listed |= (unsigned)value;
            } else {
                snprintf(bad, badlen, "%s", word);
                return -1;
            }
        }
        s += len;
        if (*s == ',') s++;
    }
    *mask = exclude ? (unsigned)ZR_SUB_ALL & ~listed : listed;
    return 0;
}

/* One parser per variable type: `text` (trimmed, non-empty) for variable v, stored at p. */

static zero_status apply_int(const zr_var *v, const char *text, void *p, zr_error *e) {
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not an integer: expected %s", v->name, ZR_SHOWN,
                text, v->allowed);
        return ZERO_ERR_INVALID;
    }
    if (x < v->ilo || x > v->ihi) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s", v->name, ZR_SHOWN, text,
                v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(int *)p = (int)x;
    return ZERO_OK;
}

static zero_status apply_intword(const zr_var *v, const char *text, void *p, zr_error *e) {
    int value;
    if (zr_word_value(v->words, text, &value) == 0) {
        *(int *)p = value;
        return ZERO_OK;
    }
    char *end;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || x < v->ilo || x > v->ihi) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s", v->name, ZR_SHOWN, text,
                v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(int *)p = (int)x;
    return ZERO_OK;
}

static zero_status apply_enum(const zr_var *v, const char *text, void *p, zr_error *e) {
    int value;
    if (zr_word_value(v->words, text, &value) != 0) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s (any case)", v->name,
                ZR_SHOWN, text, v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(int *)p = value;
    return ZERO_OK;
}

static zero_status apply_size(const zr_var *v, const char *text, void *p, zr_error *e) {
    uint64_t bytes;
    if (v->size_auto && !strcasecmp(text, "auto")) {
        *(size_t *)p = ZERO_SIZE_AUTO;
        return ZERO_OK;
    }
    if (zr_parse_size(text, v->unit, &bytes) != 0) {
        zr_fail(e, ZERO_ERR_INVALID,
                "%s=%.*s is not a size: expected a number with an optional K/M/G/T suffix "
                "(e.g. 25, 512K, 64M, 2GiB); allowed: %s",
                v->name, ZR_SHOWN, text, v->allowed);
        return ZERO_ERR_INVALID;
    }
    if (bytes < v->slo || bytes > v->shi || bytes > (uint64_t)SIZE_MAX) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s", v->name, ZR_SHOWN, text,
                v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(size_t *)p = (size_t)bytes;
    return ZERO_OK;
}

static zero_status apply_float(const zr_var *v, const char *text, void *p, zr_error *e) {
    float x;
    int rc = zr_parse_float(text, &x);
    if (rc != 0) return zr_float_error(v, text, rc, e);
    /* The range is checked on the float actually stored. */
    if (!zr_float_in_range(v, (double)x)) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s", v->name, ZR_SHOWN, text,
                v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(float *)p = x;
    return ZERO_OK;
}

static zero_status apply_double(const zr_var *v, const char *text, void *p, zr_error *e) {
    char *end;
    errno = 0;
    double x = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(x)) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not a number: expected %s", v->name, ZR_SHOWN,
                text, v->allowed);
        return ZERO_ERR_INVALID;
    }
    if (errno == ERANGE) { /* too small for a normal double: not 0 (0 may mean "off") */
        zr_fail(e, ZERO_ERR_INVALID,
                "%s=%.*s is not allowed: it is below the smallest normal double (2.2e-308), "
                "where 0 would be taken; expected %s",
                v->name, ZR_SHOWN, text, v->allowed);
        return ZERO_ERR_INVALID;
    }
    if (!zr_float_in_range(v, x)) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s", v->name, ZR_SHOWN, text,
                v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(double *)p = x;
    return ZERO_OK;
}

static zero_status apply_scale(const zr_var *v, const char *text, void *p, zr_error *e) {
    float x;
    if (zr_ieq(text, "dynamic")) {
        *(float *)p = 0.0f;
        return ZERO_OK;
    }
    int rc = zr_parse_float(text, &x);
    if (rc == -2) return zr_float_error(v, text, rc, e);
    if (rc != 0 || !zr_float_in_range(v, (double)x)) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed: expected %s", v->name, ZR_SHOWN, text,
                v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(float *)p = x;
    return ZERO_OK;
}

static zero_status apply_subsys(const zr_var *v, const char *text, void *p, zr_error *e) {
    char bad[32];
    unsigned mask;
    if (zr_parse_subsys(v->words, text, &mask, bad, sizeof bad) != 0) {
        zr_fail(e, ZERO_ERR_INVALID, "%s=%.*s is not allowed (%s): expected %s", v->name, ZR_SHOWN,
                text, bad, v->allowed);
        return ZERO_ERR_INVALID;
    }
    *(unsigned *)p = mask;
    return ZERO_OK;
}

static zero_status apply_path(const zr_var *v, const char *text, void *p, zr_error *e) {
    size_t len = strlen(text);
    if (len > v->shi) {
        zr_fail(e, ZERO_ERR_INVALID,
                "%s=%.*s... is too long: expected %s of at most %llu characters", v->name,
                64, text, v->allowed, (unsigned long long)v->shi);
        return ZERO_ERR_INVALID;
    }
    memcpy(p, text, len + 1);
    return ZERO_OK;
}

/* Parses `text` (trimmed, non-empty) for variable v and stores it in s. */
static zero_status zr_apply(const zr_var *v, const char *text, zr_settings *s, zr_error *e) {
    void *p = zr_slot(s, v);
    switch (v->type) {
    case ZR_T_INT: return apply_int(v, text, p, e);
    case ZR_T_INTWORD: return apply_intword(v, text, p, e);
    case ZR_T_ENUM: return apply_enum(v, text, p, e);
    case ZR_T_SIZE: return apply_size(v, text, p, e);
    case ZR_T_FLOAT: return apply_float(v, text, p, e);
    case ZR_T_DOUBLE: return apply_double(v, text, p, e);
    case ZR_T_SCALE: return apply_scale(v, text, p, e);
    case ZR_T_SUBSYS: return apply_subsys(v, text, p, e);
    case ZR_T_PATH: return apply_path(v, text, p, e);
    }
    return zr_fail(e, ZERO_ERR_INTERNAL, "%s: unknown variable type (internal error)", v->name);
}

/* Checks the program's value of a zero_config field against the same limits. */
static zero_status zr_check_field(const zr_var *v, const zr_settings *s, zr_error *e) {
    const void *p = zr_cslot(s, v);
    char shown[64];
    int ok = 1;
    const char *allowed = v->allowed;
    switch (v->type) {
    case ZR_T_INT: {
        int x = *(const int *)p;
        ok = x >= v->ilo && x <= v->ihi;
        snprintf(shown, sizeof shown, "%d", x);
        break;
    }
    case ZR_T_ENUM: {
        int x = *(const int *)p;
        ok = 0;
        for (const zr_word *w = v->words; w->word; w++) ok |= w->value == x;
        snprintf(shown, sizeof shown, "%d", x);
        break;
    }
    case ZR_T_INTWORD: {
        int x = *(const int *)p;
        ok = x >= v->ilo && x <= v->ihi;
        for (const zr_word *w = v->words; w->word; w++) ok |= w->value == x;
        snprintf(shown, sizeof shown, "%d", x);
        break;
    }
    case ZR_T_SIZE: {
        uint64_t x = (uint64_t)*(const size_t *)p;
        ok = (x >= v->slo && x <= v->shi) || (v->size_auto && x == (uint64_t)ZERO_SIZE_AUTO);
        snprintf(shown, sizeof shown, "%llu", (unsigned long long)x);
        break;
    }
    case ZR_T_FLOAT: {
        float x = *(const float *)p;
        ok = zr_float_in_range(v, (double)x);
        snprintf(shown, sizeof shown, "%g", (double)x);
        break;
    }
    case ZR_T_DOUBLE: {
        double x = *(const double *)p;
        ok = zr_float_in_range(v, x);
        snprintf(shown, sizeof shown, "%.17g", x);
        break;
    }
    case ZR_T_SCALE: {
        float x = *(const float *)p;
        ok = x == 0.0f || zr_float_in_range(v, (double)x);
        allowed = "0 (dynamic) or a number > 0";
        snprintf(shown, sizeof shown, "%g", (double)x);
        break;
    }
    case ZR_T_SUBSYS:
    case ZR_T_PATH: return ZERO_OK; /* not zero_config fields */
    }
    if (!ok) {
        zr_fail(e, ZERO_ERR_INVALID, "zero_config.%s=%s is not allowed: expected %s", v->field,
                shown, allowed);
        return ZERO_ERR_INVALID;
    }
    return ZERO_OK;
}

/* ---- unknown names ----------------------------------------------------------------------- */

/* Edit distance, ASCII case-insensitive; names longer than 63 characters are cut. */
static int zr_distance(const char *a, size_t na, const char *b) {
    int row[64], prev[64];
    size_t nb = strlen(b);
    if (na > 63) na = 63;
    if (nb > 63) nb = 63;
    for (size_t j = 0; j <= nb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int best = prev[j - 1] + cost;
            if (prev[j] + 1 < best) best = prev[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
        }
        memcpy(prev, row, (nb + 1) * sizeof(int));
    }
    return prev[nb];
}

/* Whether p[0..np) is a prefix of s[0..ns), ignoring case. */
static int zr_is_prefix(const char *p, size_t np, const char *s, size_t ns) {
    if (np > ns) return 0;
    for (size_t k = 0; k < np; k++)
        if (tolower((unsigned char)p[k]) != tolower((unsigned char)s[k])) return 0;
    return 1;
}

/* The known name nearest to an unknown one, or NULL when none is close. A name that is a prefix
 * of the other comes first (ZERO_BUCKET -> ZERO_BUCKET_MB, ZERO_DEBUG_LEVEL -> ZERO_DEBUG rather
 * than ZERO_DEBUG_FILE); otherwise the nearest within about a third of the part after "ZERO_". */
static const char *zr_suggest(const char *name, size_t len) {
    const size_t pre = 5; /* "ZERO_" */
    const char *near = NULL, *prefixed = NULL;
    int near_d = INT_MAX, prefixed_d = INT_MAX;
    for (int i = 0; i < ZR_NUM_VARS; i++) {
        const char *known = zr_vars[i].name;
        size_t kl = strlen(known);
        int d = zr_distance(name, len, known);
        if (d < near_d) {
            near_d = d;
            near = known;
        }
        int related = (len >= pre + 3 && zr_is_prefix(name, len, known, kl)) ||
                      (kl >= pre + 3 && zr_is_prefix(known, kl, name, len));
        if (related && d < prefixed_d) {
            prefixed_d = d;
            prefixed = known;
        }
    }
    if (prefixed) return prefixed;
    return near_d <= 1 + (int)(len - pre) / 3 ? near : NULL;
}

static void zr_scan_unknown(char *const *environ_names, zr_resolve_result *r) {
    if (!environ_names) return;
    for (char *const *e = environ_names; *e; e++) {
        const char *entry = *e;
        if (strncmp(entry, "ZERO_", 5) != 0) continue;
        size_t len = strcspn(entry, "=");
        int known = 0;
        for (int i = 0; i < ZR_NUM_VARS && !known; i++)
            known = strlen(zr_vars[i].name) == len && strncmp(zr_vars[i].name, entry, len) == 0;
        if (known || r->num_warnings >= ZR_MAX_WARNINGS) continue;
        const char *value = entry[len] == '=' ? entry + len + 1 : "";
        const char *near = zr_suggest(entry, len);
        char *w = r->warnings[r->num_warnings++];
        if (near)
            snprintf(w, sizeof r->warnings[0], "unknown variable %.*s=%.40s; did you mean %s?",
                     (int)(len > 80 ? 80 : len), entry, value, near);
        else
            snprintf(w, sizeof r->warnings[0],
                     "unknown variable %.*s=%.40s; no similar ZERO_* variable (see docs/ENV.md)",
                     (int)(len > 80 ? 80 : len), entry, value);
    }
}

/* ---- resolve ----------------------------------------------------------------------------- */

/* Bytes of the field a variable writes. */
static size_t zr_type_size(const zr_var *v) {
    switch (v->type) {
    case ZR_T_SIZE: return sizeof(size_t);
    case ZR_T_FLOAT:
    case ZR_T_SCALE: return sizeof(float);
    case ZR_T_DOUBLE: return sizeof(double);
    case ZR_T_INT:
    case ZR_T_ENUM:
    case ZR_T_INTWORD: return sizeof(int);
    case ZR_T_SUBSYS: return sizeof(unsigned);
    case ZR_T_PATH: break;
    }
    return 0;
}

/* A field's value as text: for a log line (words bare, sizes "N bytes") or, json, as a JSON value
 * (words quoted, sizes bare, no value for paths and subsystem masks: null). */
static void zr_field_text(const zr_settings *s, const zr_var *v, char *buf, size_t n, int json) {
    const void *p = zr_cslot(s, v);
    const char *q = json ? "\"" : "";
    switch (v->type) {
    case ZR_T_INT: snprintf(buf, n, "%d", *(const int *)p); return;
    case ZR_T_ENUM:
        snprintf(buf, n, "%s%s%s", q, zr_word_name(v->words, *(const int *)p), q);
        return;
    case ZR_T_INTWORD: {
        int x = *(const int *)p;
        const zr_word *w = v->words;
        while (w->word && w->value != x) w++;
        if (w->word)
            snprintf(buf, n, "%s%s%s", q, w->word, q);
        else
            snprintf(buf, n, "%d", x);
        return;
    }
    case ZR_T_SIZE:
        if (v->size_auto && *(const size_t *)p == ZERO_SIZE_AUTO)
            snprintf(buf, n, "%sauto%s", q, q);
        else
            snprintf(buf, n, "%llu%s", (unsigned long long)*(const size_t *)p, json ? "" : " bytes");
        return;
    case ZR_T_SCALE:
        if (*(const float *)p == 0.0f) {
            snprintf(buf, n, "%sdynamic%s", q, q);
            return;
        }
        /* fall through */
    case ZR_T_FLOAT: zr_format_float(buf, n, *(const float *)p); return;
    case ZR_T_DOUBLE: zr_format_double(buf, n, *(const double *)p); return;
    case ZR_T_SUBSYS:
    case ZR_T_PATH: break;
    }
    snprintf(buf, n, "%s", json ? "null" : "?");
}

void zero_config_init_sized(zero_config *cfg, size_t struct_size) {
    if (!cfg || struct_size == 0) return;
    const zero_config init = ZERO_CONFIG_INIT;
    size_t n = struct_size < sizeof init ? struct_size : sizeof init;
    memset(cfg, 0, struct_size);
    memcpy(cfg, &init, n);
    if (struct_size >= sizeof cfg->struct_size) cfg->struct_size = struct_size;
}

/* zero_config as libzero 0.3 laid it out (version 3): the hyperparameters were floats and
 * `optimizer` did not exist. A program built against 0.3's zero.h passes this layout. */
typedef struct zr_config_v3 {
    size_t struct_size;
    uint64_t magic;
    size_t tensor_size;
    int stage;
    zero_dtype dtype;
    size_t bucket_bytes;
    int grad_accum;
    float clip, loss_scale;
    zero_device_kind device;
    size_t device_memory;
    zero_offload offload_optimizer, offload_param;
    size_t prefetch_bytes, max_live_bytes, persist_bytes;
    const char *report_path;
    int cpu_threads, numa;
    float lr, beta1, beta2, eps, weight_decay;
    size_t offload_block_bytes;
    float timeout_s;
    void *cuda_stream;
    const zero_group *groups;
    int num_groups;
    zero_grad_reduce grad_reduce;
    int fp32_views;
} zr_config_v3;

/* A version-3 configuration (size bytes of it known to the program) in this version's layout:
 * the fields it has, the hyperparameters widened to double; the others stay at their defaults. */
static void from_v3(zero_config *out, const zero_config *program, size_t size) {
    zr_config_v3 o;
    memset(&o, 0, sizeof o);
    /* defaults for the fields past the program's size */
    o.groups = NULL, o.num_groups = 0, o.grad_reduce = out->grad_reduce, o.fp32_views = 0;
    memcpy(&o, program, size < sizeof o ? size : sizeof o);
    out->stage = o.stage, out->dtype = o.dtype, out->bucket_bytes = o.bucket_bytes;
    out->grad_accum = o.grad_accum, out->clip = o.clip, out->loss_scale = o.loss_scale;
    out->device = o.device, out->device_memory = o.device_memory;
    out->offload_optimizer = o.offload_optimizer, out->offload_param = o.offload_param;
    out->prefetch_bytes = o.prefetch_bytes, out->max_live_bytes = o.max_live_bytes;
    out->persist_bytes = o.persist_bytes, out->report_path = o.report_path;
    out->cpu_threads = o.cpu_threads, out->numa = o.numa;
    out->lr = o.lr, out->beta1 = o.beta1, out->beta2 = o.beta2, out->eps = o.eps;
    out->weight_decay = o.weight_decay, out->offload_block_bytes = o.offload_block_bytes;
    out->timeout_s = o.timeout_s, out->cuda_stream = o.cuda_stream, out->tensor_size = o.tensor_size;
    out->groups = o.groups, out->num_groups = o.num_groups, out->grad_reduce = o.grad_reduce;
    out->fp32_views = o.fp32_views;
}

zero_status zr_config_from_program(zero_config *out, const zero_config *program, zr_error *e) {
    const zero_config init = ZERO_CONFIG_INIT;
    *out = init;
    if (!program) return ZERO_OK;
    const size_t v3 = offsetof(zr_config_v3, groups); /* the first versioned layout ends here */
    if ((program->magic >> 32) != (ZERO_CONFIG_MAGIC >> 32))
        return zr_fail(e, ZERO_ERR_INVALID,
                       "zero_config was not initialised (its magic is %#llx): start from "
                       "ZERO_CONFIG_INIT or zero_config_init(&cfg), then change fields",
                       (unsigned long long)program->magic);
    unsigned version = (unsigned)(program->magic & 0xffffffffu);
    size_t size = program->struct_size;
    if (version < 3 || size < v3)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "zero_config version %u (%zu bytes) is older than this libzero reads "
                       "(version 3 and later, >= %zu bytes); rebuild against its zero.h",
                       version, size, v3);
    if (version == 3) {
        if (size > sizeof(zr_config_v3))
            return zr_fail(e, ZERO_ERR_INVALID,
                           "zero_config version 3 of %zu bytes: version 3 has at most %zu",
                           size, sizeof(zr_config_v3));
        from_v3(out, program, size);
        out->struct_size = sizeof *out;
        out->magic = ZERO_CONFIG_MAGIC | ZERO_CONFIG_VERSION;
        return ZERO_OK;
    }
    const size_t v4 = offsetof(zero_config, groups);
    if (size < v4)
        return zr_fail(e, ZERO_ERR_INVALID,
                       "zero_config version %u of %zu bytes is shorter than version 4's first "
                       "part (%zu bytes): older than this libzero reads, or not from "
                       "ZERO_CONFIG_INIT; rebuild against this libzero's zero.h",
                       version, size, v4);
    if (size > sizeof *out) {
        const unsigned char *tail = (const unsigned char *)program + sizeof *out;
        for (size_t k = 0; k < size - sizeof *out; k++)
            if (tail[k])
                return zr_fail(e, ZERO_ERR_UNSUPPORTED,
                               "zero_config of %zu bytes (version %u) sets fields this libzero "
                               "(%zu bytes, version %d) does not know: update libzero",
                               size, version, sizeof *out, ZERO_CONFIG_VERSION);
        size = sizeof *out;
    }
    memcpy(out, program, size);
    out->struct_size = sizeof *out;
    out->magic = ZERO_CONFIG_MAGIC | ZERO_CONFIG_VERSION;
    return ZERO_OK;
}

zero_status zr_config_resolve(zr_settings *out, const zero_config *program,
                              const char *(*get)(const char *name), char *const *environ_names,
                              zr_resolve_result *result, zr_error *e) {
    zr_resolve_result scratch;
    if (!result) result = &scratch;
    memset(result, 0, sizeof *result);
    if (e) zr_error_clear(e);
    if (!out) {
        zr_fail(e, ZERO_ERR_INVALID, "zr_config_resolve: out is NULL");
        return ZERO_ERR_INVALID;
    }
    if (!get) get = zr_getenv;

    memset(out, 0, sizeof *out);
    zero_status pst = zr_config_from_program(&out->cfg, program, e);
    if (pst != ZERO_OK) return pst;
    out->cfg.report_path = NULL;
    zr_settings defaults;
    memset(&defaults, 0, sizeof defaults);
    zr_config_from_program(&defaults.cfg, NULL, NULL);
    out->log_level = ZR_LOG_WARN;
    out->log_mask = ZR_SUB_ALL;
    out->data_prefetch = 2; /* the ZERO_DATA_* defaults of the table */
    out->data_verify = ZR_DATA_VERIFY_AUTO;
    out->data_io = ZR_DATA_IO_MMAP;
    out->ckpt_io = ZR_DATA_IO_MMAP;
    out->data_delay_ms = 0.0f;

    zr_scan_unknown(environ_names, result);

    for (int i = 0; i < ZR_NUM_VARS; i++) {
        if (!zr_vars[i].field) continue;
        zero_status st = zr_check_field(&zr_vars[i], out, e);
        if (st != ZERO_OK) return st;
    }
    if (program && program->report_path) {
        size_t len = strlen(program->report_path);
        if (len >= ZR_PATH_CAP) {
            zr_fail(e, ZERO_ERR_INVALID,
                    "zero_config.report_path=%.64s... is too long: expected at most %zu "
                    "characters",
                    program->report_path, ZR_PATH_CAP - 1);
            return ZERO_ERR_INVALID;
        }
        memcpy(out->report_path, program->report_path, len + 1);
    }

    for (int i = 0; i < ZR_NUM_VARS; i++) {
        const zr_var *v = &zr_vars[i];
        const char *raw = get(v->name);
        if (!raw) continue;
        /* Surrounding blanks are ignored; an empty value counts as unset. */
        while (isspace((unsigned char)*raw)) raw++;
        size_t len = strlen(raw);
        while (len > 0 && isspace((unsigned char)raw[len - 1])) len--;
        if (len == 0) continue;
        char text[2 * ZR_PATH_CAP];
        if (len >= sizeof text) {
            zr_fail(e, ZERO_ERR_INVALID, "%s=%.64s... is too long: expected %s", v->name, raw,
                    v->allowed);
            return ZERO_ERR_INVALID;
        }
        memcpy(text, raw, len);
        text[len] = '\0';
        /* a value the program chose (not the default) that the environment replaces */
        char prog[64] = "";
        if (v->field && memcmp(zr_cslot(out, v), zr_cslot(&defaults, v), zr_type_size(v)) != 0)
            zr_field_text(out, v, prog, sizeof prog, 0);
        zero_status st = zr_apply(v, text, out, e);
        if (st != ZERO_OK) return st;
        if (result->num_applied < ZR_MAX_APPLIED) {
            zr_applied *a = &result->applied[result->num_applied++];
            a->name = v->name;
            snprintf(a->value, sizeof a->value, "%s", text);
            snprintf(a->program, sizeof a->program, "%s", prog);
        }
    }

    /* The resolved config names its own copy of the path: re-point it if *out is copied. */
    out->cfg.report_path = out->report_path[0] ? out->report_path : NULL;
    return ZERO_OK;
}

/* ---- outputs ----------------------------------------------------------------------------- */

/* A Markdown table cell: '|' would end the cell. */
static void zr_md_cell(FILE *f, const char *text) {
    for (const char *c = text; *c; c++) {
        if (*c == '|') fputc('\\', f);
        fputc(*c, f);
    }
}

void zr_config_write_markdown(FILE *f) {
    fputs("# Environment variables\n"
          "\n"
          "libzero takes its settings from the `zero_config` that the program passes to "
          "`zero_init`,\n"
          "and then from the `ZERO_*` environment variables below: the environment wins, so one "
          "binary\n"
          "can be tuned without rebuilding. Every value taken from the environment is logged at "
          "INFO\n"
          "(`ZERO_DEBUG=INFO`, subsystem ENV). A value that is not allowed makes `zero_init` "
          "fail with\n"
          "`ZERO_ERR_INVALID` and a message naming the variable, the value and what is allowed; "
          "the\n"
          "program's own `zero_config` fields are checked against the same limits. An empty "
          "variable\n"
          "counts as unset. A `ZERO_*` variable that is not in this table draws a warning "
          "naming the\n"
          "nearest known one. All ranks must resolve the same values, except for the logging "
          "variables,\n"
          "`ZERO_REPORT` and those marked \"per rank\" (they decide where work runs, not what it "
          "computes);\n"
          "`zero_init` checks this.\n"
          "\n"
          "Sizes are a number, with an optional fraction, and an optional suffix `K`, `M`, `G` "
          "or `T`\n"
          "(powers of 1024; `KB`, `KiB`, `MB`, `MiB`... mean the same; `B` means bytes; any "
          "case), e.g.\n"
          "`512K`, `64M`, `1.5G`, `2GiB`. A bare number is in the unit the values column "
          "names. Words\n"
          "(`bf16`, `cpu`, `INFO`...) are matched in any case.\n"
          "\n"
          "| variable | values | default | meaning |\n"
          "|---|---|---|---|\n",
          f);
    for (int i = 0; i < ZR_NUM_VARS; i++) {
        const zr_var *v = &zr_vars[i];
        fprintf(f, "| `%s` | ", v->name);
        zr_md_cell(f, v->allowed);
        fputs(" | ", f);
        if (v->def[0]) {
            fputc('`', f);
            zr_md_cell(f, v->def);
            fputc('`', f);
        } else {
            fputs("unset", f);
        }
        fputs(" | ", f);
        zr_md_cell(f, v->desc);
        fputs(" |\n", f);
    }
    fputs("\n"
          "This file is generated from the table in `runtime/config.c` by "
          "`build/bin/zero-envdoc`; do not\n"
          "edit it by hand. Regenerate it with `build/bin/zero-envdoc docs/ENV.md` (the "
          "`envdoc` test\n"
          "fails when it is out of date).\n",
          f);
}

int zr_config_fingerprint(const zr_settings *s, int64_t *words, const char **names, int *kinds,
                          int max) {
    int n = 0;
    for (int i = 0; i < ZR_NUM_VARS && n < max; i++) {
        const zr_var *v = &zr_vars[i];
        if (!v->field || v->per_rank) continue; /* logging, report path, placement */
        const void *p = zr_cslot(s, v);
        int64_t w = 0;
        switch (v->type) {
        case ZR_T_INT:
        case ZR_T_INTWORD:
        case ZR_T_ENUM: w = *(const int *)p; break;
        case ZR_T_SIZE: w = (int64_t)*(const size_t *)p; break;
        case ZR_T_FLOAT:
        case ZR_T_SCALE: {
            uint32_t bits;
            memcpy(&bits, p, sizeof bits);
            w = (int64_t)bits;
            break;
        }
        case ZR_T_DOUBLE: memcpy(&w, p, sizeof w); break;
        case ZR_T_SUBSYS:
        case ZR_T_PATH: continue;
        }
        words[n] = w;
        if (names) names[n] = v->name;
        if (kinds) kinds[n] = i;
        n++;
    }
    return n;
}

void zr_config_word_text(int kind, int64_t w, char *buf, size_t n) {
    if (!buf || n == 0) return;
    const zr_var *v = kind >= 0 && kind < ZR_NUM_VARS ? &zr_vars[kind] : NULL;
    if (!v) {
        snprintf(buf, n, "%lld", (long long)w);
        return;
    }
    switch (v->type) {
    case ZR_T_ENUM:
    case ZR_T_INTWORD: {
        const zr_word *x = v->words;
        while (x->word && x->value != (int)w) x++;
        if (x->word)
            snprintf(buf, n, "%s", x->word);
        else
            snprintf(buf, n, "%lld", (long long)w);
        return;
    }
    case ZR_T_SIZE:
        if (v->size_auto && (uint64_t)w == (uint64_t)ZERO_SIZE_AUTO)
            snprintf(buf, n, "auto");
        else
            snprintf(buf, n, "%llu bytes", (unsigned long long)(uint64_t)w);
        return;
    case ZR_T_FLOAT:
    case ZR_T_SCALE: {
        uint32_t bits = (uint32_t)w;
        float f;
        memcpy(&f, &bits, sizeof f);
        if (v->type == ZR_T_SCALE && f == 0.0f)
            snprintf(buf, n, "dynamic");
        else
            zr_format_float(buf, n, f);
        return;
    }
    case ZR_T_DOUBLE: {
        double d;
        memcpy(&d, &w, sizeof d);
        zr_format_double(buf, n, d);
        return;
    }
    case ZR_T_INT:
    case ZR_T_SUBSYS:
    case ZR_T_PATH: break;
    }
    snprintf(buf, n, "%lld", (long long)w);
}

void zr_config_write_json(const zr_settings *s, FILE *f) {
    fputc('{', f);
    int first = 1;
    for (int i = 0; i < ZR_NUM_VARS; i++) {
        const zr_var *v = &zr_vars[i];
        if (!v->field) continue;
        char value[128];
        zr_field_text(s, v, value, sizeof value, 1);
        fprintf(f, "%s\"%s\": %s", first ? "" : ", ", v->field, value);
        first = 0;
    }
    fputc('}', f);
}
