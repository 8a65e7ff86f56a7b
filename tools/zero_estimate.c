/* zero-estimate — per-rank device and host bytes of model state for every ZeRO stage, offload
 * setting and world size (partition/estimate.c), and the largest model a device holds.
 * Usage: zero-estimate --params 7.5e9 --world 8 [options]; see --help. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partition/partition.h"

#define MAX_WORLDS 32
#define MAX_ROWS (8 * (MAX_WORLDS + 1)) /* (stage, offload) pairs × worlds, --world included */
#define CELL 32                   /* bytes of one formatted table cell */
#define NUM_COLS 7

static const char *const usage_text =
    "usage: zero-estimate (--params P | --layers L --dim D [--vocab V] [--seq T]) [options]\n"
    "\n"
    "Per-rank bytes of model state (working parameters and gradients, fp32 master, Adam m and v)\n"
    "on the device and on the host, for ZeRO stages 0-3 with and without CPU offload.\n"
    "\n"
    "  --params P        parameter count: 7.5e9, 125000000, 1.5B, 350M, 7B (suffix K, M, B, T)\n"
    "  --layers L --dim D  or a GPT-2 shape (tied embeddings), with\n"
    "  --vocab V         vocabulary (default 50257)\n"
    "  --seq T           context length (default 1024)\n"
    "  --world N         ranks; shown with the default world sizes 1, 2, 4, 8, 16\n"
    "  --worlds A,B,...  world sizes to show instead of the default ones\n"
    "  --dtype D         fp32, bf16 or fp16 working precision (default bf16)\n"
    "  --offload O       none, cpu (optimizer, stages 1-3) or all (optimizer and parameters,\n"
    "                    stage 3); default: every setting\n"
    "  --capacity C      device bytes per rank, e.g. 80G, 40GiB, 24576M (K, M, G, T are powers of\n"
    "                    1024): marks the rows that fit and gives the largest model that fits\n"
    "  -h, --help        this text\n"
    "\n"
    "Exit status: 0, or 2 for a bad argument.\n";

/* Offload settings as the table shows them, and the flags they stand for. */
typedef struct offload_mode {
    const char *name;
    int optimizer, param;
} offload_mode;

static const offload_mode offload_modes[] = {
    {"none", 0, 0},
    {"cpu", 1, 0},
    {"all", 1, 1},
};
#define NUM_OFFLOAD ((int)(sizeof offload_modes / sizeof offload_modes[0]))

typedef struct options {
    uint64_t psi;       /* parameters */
    int have_params;    /* --params given */
    int layers, dim, vocab, seq; /* GPT-2 shape; layers < 0 when not given */
    int world;          /* --world, 0 when not given */
    int worlds[MAX_WORLDS];
    int num_worlds;     /* 0: the default list */
    size_t work_bytes;  /* 2 or 4 */
    const char *dtype;
    int offload;        /* index into offload_modes, -1: all of them */
    uint64_t capacity;  /* bytes, 0 when not given */
} options;

static int bad(const char *flag, const char *value, const char *why)
{
    if (value)
        fprintf(stderr, "zero-estimate: %s %s: %s (see --help)\n", flag, value, why);
    else
        fprintf(stderr, "zero-estimate: %s: %s (see --help)\n", flag, why);
    return 2;
}

/* A positive decimal or floating-point number followed by an optional unit suffix, matched
 * case-insensitively against units[] (each with its multiplier). Returns the value rounded to
 * the nearest integer, or -1 when text is not such a number or exceeds max. */
typedef struct unit {
    const char *suffix;
    double scale;
} unit;

static double parse_scaled(const char *text, const unit *units, int num_units, double max)
{
    if (!isdigit((unsigned char)text[0]) && text[0] != '.')
        return -1; /* no sign, no "inf"/"nan", no leading space */
    errno = 0;
    char *end;
    double v = strtod(text, &end);
    if (end == text || errno == ERANGE || !isfinite(v))
        return -1;
    double scale = 1.0;
    if (*end) {
        int found = 0;
        for (int i = 0; i < num_units && !found; i++) {
            size_t n = strlen(units[i].suffix);
            int same = strlen(end) == n;
            for (size_t k = 0; same && k < n; k++)
                same = tolower((unsigned char)end[k]) == tolower((unsigned char)units[i].suffix[k]);
            if (same) {
                scale = units[i].scale;
                found = 1;
            }
        }
        if (!found)
            return -1;
    }
    v = nearbyint(v * scale);
    return v > max ? -1 : v;
}

static int parse_int(const char *text, int lo, int hi, int *out)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end;
    long v = strtol(text, &end, 10);
    if (*end || errno == ERANGE || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

static int parse_worlds(const char *text, options *o)
{
    o->num_worlds = 0;
    for (const char *p = text;; p++) { /* each item: digits up to ',' or the end */
        if (!isdigit((unsigned char)*p) || o->num_worlds == MAX_WORLDS)
            return -1;
        errno = 0;
        char *end;
        long v = strtol(p, &end, 10);
        if (errno == ERANGE || v < 1 || v > (1 << 24) || (*end != ',' && *end != '\0'))
            return -1;
        o->worlds[o->num_worlds++] = (int)v;
        if (*end == '\0')
            return 0;
        p = end;
    }
}

/* Returns 0 to go on, 1 after --help, 2 after a bad argument (message already printed). */
static int parse_args(int argc, char **argv, options *o)
{
    static const unit count_units[] = {{"K", 1e3}, {"M", 1e6}, {"B", 1e9}, {"T", 1e12}};
    static const unit byte_units[] = {
        {"B", 1.0},           {"K", 0x1p10},  {"KiB", 0x1p10}, {"KB", 0x1p10},
        {"M", 0x1p20},        {"MiB", 0x1p20}, {"MB", 0x1p20},  {"G", 0x1p30},
        {"GiB", 0x1p30},      {"GB", 0x1p30},  {"T", 0x1p40},   {"TiB", 0x1p40},
        {"TB", 0x1p40},
    };
    memset(o, 0, sizeof *o);
    o->layers = o->dim = -1;
    o->vocab = 50257;
    o->seq = 1024;
    o->work_bytes = 2;
    o->dtype = "bf16";
    o->offload = -1;
    for (int i = 1; i < argc; i++) {
        const char *flag = argv[i];
        if (!strcmp(flag, "-h") || !strcmp(flag, "--help")) {
            fputs(usage_text, stdout);
            return 1;
        }
        if (strncmp(flag, "--", 2) != 0)
            return bad(flag, NULL, "unexpected argument");
        if (i + 1 >= argc)
            return bad(flag, NULL, "needs a value");
        const char *v = argv[++i];
        if (!strcmp(flag, "--params")) {
            double p = parse_scaled(v, count_units, 4, (double)ZP_PSI_MAX);
            if (p < 1 || (uint64_t)p > ZP_PSI_MAX)
                return bad(flag, v,
                           "expected a parameter count, 1 to 2^58, such as 7.5e9, 350M or 7B");
            o->psi = (uint64_t)p;
            o->have_params = 1;
        } else if (!strcmp(flag, "--layers")) {
            if (parse_int(v, 0, 1 << 20, &o->layers))
                return bad(flag, v, "expected a layer count, 0..1048576");
        } else if (!strcmp(flag, "--dim")) {
            if (parse_int(v, 1, 1 << 24, &o->dim))
                return bad(flag, v, "expected a width, 1..16777216");
        } else if (!strcmp(flag, "--vocab")) {
            if (parse_int(v, 1, 1 << 30, &o->vocab))
                return bad(flag, v, "expected a vocabulary size, 1..1073741824");
        } else if (!strcmp(flag, "--seq")) {
            if (parse_int(v, 1, 1 << 30, &o->seq))
                return bad(flag, v, "expected a context length, 1..1073741824");
        } else if (!strcmp(flag, "--world")) {
            if (parse_int(v, 1, 1 << 24, &o->world))
                return bad(flag, v, "expected a rank count, 1..16777216");
        } else if (!strcmp(flag, "--worlds")) {
            if (parse_worlds(v, o))
                return bad(flag, v, "expected a comma-separated list of rank counts, e.g. 1,2,4,8 "
                                    "(at most 32, each 1..16777216)");
        } else if (!strcmp(flag, "--dtype")) {
            if (!strcmp(v, "fp32"))
                o->work_bytes = 4;
            else if (!strcmp(v, "bf16") || !strcmp(v, "fp16"))
                o->work_bytes = 2;
            else
                return bad(flag, v, "expected fp32, bf16 or fp16");
            o->dtype = v;
        } else if (!strcmp(flag, "--offload")) {
            o->offload = -2;
            for (int k = 0; k < NUM_OFFLOAD; k++)
                if (!strcmp(v, offload_modes[k].name))
                    o->offload = k;
            if (o->offload == -2)
                return bad(flag, v, "expected none, cpu or all");
        } else if (!strcmp(flag, "--capacity")) {
            double c = parse_scaled(v, byte_units, (int)(sizeof byte_units / sizeof *byte_units),
                                    0x1p63);
            if (c < 1)
                return bad(flag, v, "expected device bytes per rank such as 80G, 40GiB or 24576M");
            o->capacity = (uint64_t)c;
        } else {
            return bad(flag, v, "unknown option");
        }
    }
    int shape = o->layers >= 0 || o->dim >= 0;
    if (o->have_params && shape)
        return bad("--params", NULL, "give either --params or --layers/--dim, not both");
    if (shape && (o->layers < 0 || o->dim < 0))
        return bad(o->layers < 0 ? "--layers" : "--dim", NULL, "needed with a model shape");
    if (!o->have_params && !shape)
        return bad("--params", NULL, "needed (or --layers and --dim)");
    if (shape) {
        o->psi = zp_gpt2_params(o->layers, o->dim, o->vocab, o->seq);
        if (o->psi < 1 || o->psi > ZP_PSI_MAX)
            return bad("--layers/--dim", NULL, "the GPT-2 shape has no or too many parameters");
    }
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The world sizes to show: --worlds or 1, 2, 4, 8, 16; with --world's N added; sorted, unique. */
static int world_list(const options *o, int *out)
{
    static const int defaults[] = {1, 2, 4, 8, 16};
    int n = 0;
    if (o->num_worlds > 0) {
        memcpy(out, o->worlds, (size_t)o->num_worlds * sizeof *out);
        n = o->num_worlds;
    } else {
        memcpy(out, defaults, sizeof defaults);
        n = (int)(sizeof defaults / sizeof *defaults);
    }
    if (o->world > 0 && n < MAX_WORLDS + 1)
        out[n++] = o->world;
    qsort(out, (size_t)n, sizeof *out, cmp_int);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || out[i] != out[u - 1])
            out[u++] = out[i];
    return u;
}

/* 1234567 → "1,234,567" */
static void with_commas(uint64_t v, char *out, size_t len)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v), k = 0;
    for (int i = 0; i < n && (size_t)k + 2 < len; i++) {
        if (i > 0 && (n - i) % 3 == 0)
            out[k++] = ',';
        out[k++] = digits[i];
    }
    out[k] = '\0';
}

/* 7500000000 → "7.50B" */
static void short_count(uint64_t v, char *out, size_t len)
{
    static const char suffix[] = {'K', 'M', 'B', 'T'};
    double x = (double)v;
    int s = -1;
    while (s < 3 && x >= 999.995) {
        x /= 1000.0;
        s++;
    }
    if (s < 0)
        snprintf(out, len, "%llu", (unsigned long long)v);
    else
        snprintf(out, len, "%.2f%c", x, suffix[s]);
}

static double gib(uint64_t bytes) { return (double)bytes / 0x1p30; }

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;

    int worlds[MAX_WORLDS + 1];
    int num_worlds = world_list(&o, worlds);

    char count[40], count_short[16], cap[64] = "";
    with_commas(o.psi, count, sizeof count);
    short_count(o.psi, count_short, sizeof count_short);
    if (o.capacity)
        snprintf(cap, sizeof cap, ", device capacity %.2f GiB per rank", gib(o.capacity));
    printf("Model state per rank for %s parameters (%s), dtype %s%s%s", count, count_short,
           o.dtype, o.work_bytes == 4 ? " (fp32 master is the working copy)" : " (fp32 master)",
           cap);
    if (o.layers >= 0)
        printf("; GPT-2 L=%d D=%d V=%d T=%d", o.layers, o.dim, o.vocab, o.seq);
    printf("\n\n");

    /* Format every cell first, then print with each column as wide as its widest cell. */
    static const char *const head[NUM_COLS] = {"stage",   "offload", "world",     "device GiB",
                                               "host GiB", "fits",    "max params"};
    const int ncols = o.capacity ? NUM_COLS : NUM_COLS - 2;
    static char cells[MAX_ROWS][NUM_COLS][CELL];
    int group_end[MAX_ROWS] = {0}; /* 1: last row of a (stage, offload) group */
    int nrows = 0;
    for (int stage = 0; stage <= 3; stage++) {
        for (int m = 0; m < NUM_OFFLOAD; m++) {
            if (o.offload >= 0 && m != o.offload)
                continue;
            const offload_mode *om = &offload_modes[m];
            int first = nrows;
            for (int w = 0; w < num_worlds; w++) {
                uint64_t dev, host;
                if (zp_state_bytes(stage, o.work_bytes, o.psi, worlds[w], om->optimizer,
                                   om->param, &dev, &host) != 0)
                    break; /* no such configuration at this stage */
                char(*c)[CELL] = cells[nrows];
                snprintf(c[0], CELL, "%d", stage);
                snprintf(c[1], CELL, "%s", om->name);
                snprintf(c[2], CELL, "%d", worlds[w]);
                snprintf(c[3], CELL, "%.2f", gib(dev));
                snprintf(c[4], CELL, "%.2f", gib(host));
                if (o.capacity) {
                    uint64_t max_psi = 0;
                    zp_max_psi(stage, o.work_bytes, worlds[w], om->optimizer, om->param,
                               o.capacity, &max_psi);
                    snprintf(c[5], CELL, "%s", dev <= o.capacity ? "yes" : "no");
                    short_count(max_psi, c[6], CELL);
                }
                nrows++;
            }
            if (nrows > first)
                group_end[nrows - 1] = 1;
        }
    }

    int width[NUM_COLS];
    for (int k = 0; k < ncols; k++) {
        width[k] = (int)strlen(head[k]);
        for (int r = 0; r < nrows; r++)
            if ((int)strlen(cells[r][k]) > width[k])
                width[k] = (int)strlen(cells[r][k]);
    }
    for (int k = 0; k < ncols; k++) /* offload is text: left-aligned; the rest right-aligned */
        printf(k == 1 ? "%s%-*s" : "%s%*s", k ? "  " : "", width[k], head[k]);
    printf("\n");
    for (int r = 0; r < nrows; r++) {
        for (int k = 0; k < ncols; k++)
            printf(k == 1 ? "%s%-*s" : "%s%*s", k ? "  " : "", width[k], cells[r][k]);
        printf("\n");
        if (group_end[r] && r + 1 < nrows)
            printf("\n");
    }

    printf("\nGiB = 2^30 bytes per rank. Offload: none = all model state on the device;\n"
           "cpu = fp32 master, Adam m and v and an fp32 gradient shard on the host (ZeRO-Offload,\n"
           "stages 1-3); all = cpu plus the working parameter shard (ZeRO-Infinity, stage 3).\n");
    if (o.capacity)
        printf("fits: device model state <= capacity. max params: the largest model whose device\n"
               "model state fits the capacity at that stage, offload and world size.\n");
    printf("Model state only: buffers (gradient buckets, prefetch pool), activations and\n"
           "framework overhead are not included.\n");
    if (ferror(stdout) || fflush(stdout) != 0) {
        fprintf(stderr, "zero-estimate: writing the table failed\n");
        return 1;
    }
    return 0;
}
