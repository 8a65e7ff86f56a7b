/* bench_oom — the OOM benchmark: for a world size and a device capacity (ZERO_DEVICE_MEMORY on
 * the host backend), the largest GPT-2 (zero-gpt2) that trains 3 steps at each ZeRO stage,
 * found by binary search over the width at a fixed depth. Prints a table (stage, parameters,
 * peak device bytes per rank, the analytical maximum for the stage, their ratio) and writes
 * DIR/oom.csv and DIR/oom.svg.
 *   zero-bench-oom --np N --out DIR [--layers L] [--heads H] [--seq T] [--batch B]
 *                  [--stages 0,1,2,3] [--offload none,cpu,all] [--dtype fp32|bf16]
 * Rows: every stage with no offload, then optimizer offload (cpu) at stages 1-3 and optimizer +
 * parameter offload (all) at stage 3, as far as --stages and --offload select.
 * Exit 0 when every stage trained at least the smallest model, 1 otherwise, 2 on bad flags. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "partition/partition.h"
#include "zero.h"

typedef struct options {
    int np, layers, heads, seq, batch;
    const char *out;
    const char *dtype;
    int stages[4], num_stages;
    int offloads;            /* bits: 1 none, 2 cpu, 4 all */
} options;

typedef struct result {
    int stage;
    int offload;             /* 0 none, 1 optimizer, 2 optimizer + parameters */
    int dim;                 /* 0: not even the smallest model trained */
    uint64_t params;
    uint64_t peak;           /* device peak bytes per rank (max over ranks) */
    uint64_t analytic_psi;   /* largest Ψ the stage's formula allows in the capacity */
} result;

static char bindir[PATH_MAX];

static void usage(FILE *f)
{
    fprintf(f, "usage: zero-bench-oom --np N --out DIR [--layers L] [--heads H] [--seq T] "
               "[--batch B] [--stages 0,1,2,3] [--dtype fp32|bf16]\n"
               "The capacity per rank comes from ZERO_DEVICE_MEMORY (required).\n");
}

static int read_number(const char *path, const char *key, uint64_t *v)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(buf, pat);
    if (!p)
        return -1;
    *v = strtoull(p + strlen(pat), NULL, 10);
    return 0;
}

/* Trains 3 steps of a GPT-2 of width dim at `stage`; 1 = it trained, 0 = it did not. */
static const char *const offload_names[3] = {"none", "cpu", "all"};

static int trial(const options *o, int stage, int offload, int dim, uint64_t *peak)
{
    char report[PATH_MAX + 64], log[PATH_MAX + 64], cmd[4 * PATH_MAX];
    snprintf(report, sizeof report, "%s/trial.json", o->out);
    snprintf(log, sizeof log, "%s/trial.log", o->out);
    remove(report);
    snprintf(cmd, sizeof cmd,
             "ZERO_STAGE=%d ZERO_OFFLOAD_OPTIMIZER=%s ZERO_OFFLOAD_PARAM=%s ZERO_DTYPE=%s "
             "ZERO_REPORT='%s' '%s/zero-mpirun' -np %d '%s/zero-gpt2' "
             "--layers %d --heads %d --dim %d --seq %d --batch %d --steps 3 --quiet > '%s' 2>&1",
             stage, offload ? "cpu" : "none", offload == 2 ? "cpu" : "none", o->dtype, report,
             ZERO_SCRIPTS_DIR, o->np, bindir, o->layers, o->heads, dim, o->seq, o->batch, log);
    int rc = system(cmd);
    int ok = rc == 0 && read_number(report, "device_peak_bytes", peak) == 0;
    printf("  stage %d offload %-4s dim %5d: %s\n", stage, offload_names[offload], dim,
           ok ? "trains" : "fails");
    fflush(stdout);
    return ok;
}

static void write_svg(const options *o, const result *r, int n, uint64_t capacity)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/oom.svg", o->out);
    FILE *f = fopen(path, "w");
    if (!f)
        return;
    uint64_t maxp = 1;
    for (int i = 0; i < n; i++) {
        if (r[i].params > maxp)
            maxp = r[i].params;
        if (r[i].analytic_psi > maxp)
            maxp = r[i].analytic_psi;
    }
    int W = 140 * n + 120, H = 360, left = 70, bottom = 300, barw = 50;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\">Largest GPT-2 that trains, %d ranks, "
               "%.1f MiB per rank (%s)</text>\n",
            left, o->np, (double)capacity / 1048576.0, o->dtype);
    for (int i = 0; i < n; i++) {
        int x = left + 20 + i * 2 * (barw + 20);
        int h1 = (int)(250.0 * (double)r[i].params / (double)maxp);
        int h2 = (int)(250.0 * (double)r[i].analytic_psi / (double)maxp);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#3b6ea8\"/>\n", x,
                bottom - h1, barw, h1);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#c9d6e8\"/>\n",
                x + barw, bottom - h2, barw, h2);
        fprintf(f, "<text x=\"%d\" y=\"%d\">%.2fM</text>\n", x, bottom - h1 - 4,
                (double)r[i].params / 1e6);
        fprintf(f, "<text x=\"%d\" y=\"%d\">stage %d%s</text>\n", x + 10, bottom + 18,
                r[i].stage, r[i].offload == 2 ? " +opt+param" : r[i].offload ? " +opt" : "");
    }
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, bottom,
            W - 20, bottom);
    fprintf(f, "<rect x=\"%d\" y=\"330\" width=\"12\" height=\"12\" fill=\"#3b6ea8\"/>"
               "<text x=\"%d\" y=\"341\">trained (parameters)</text>\n", left, left + 16);
    fprintf(f, "<rect x=\"%d\" y=\"330\" width=\"12\" height=\"12\" fill=\"#c9d6e8\"/>"
               "<text x=\"%d\" y=\"341\">formula maximum (model state only)</text>\n",
            left + 180, left + 196);
    fprintf(f, "</svg>\n");
    fclose(f);
}

static int parse_int(const char *flag, const char *v, int lo, int *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end || x < lo || x > 1 << 20) {
        fprintf(stderr, "zero-bench-oom: %s %s: expected an integer >= %d\n", flag, v, lo);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int main(int argc, char **argv)
{
    options o = {.np = 0, .layers = 32, .heads = 4, .seq = 16, .batch = 0, .out = NULL,
                 .dtype = "fp32", .stages = {0, 1, 2, 3}, .num_stages = 4, .offloads = 7};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "zero-bench-oom: %s needs a value\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        int bad = 0;
        if (!strcmp(a, "--np"))
            bad = parse_int(a, v, 1, &o.np);
        else if (!strcmp(a, "--layers"))
            bad = parse_int(a, v, 1, &o.layers);
        else if (!strcmp(a, "--heads"))
            bad = parse_int(a, v, 1, &o.heads);
        else if (!strcmp(a, "--seq"))
            bad = parse_int(a, v, 2, &o.seq);
        else if (!strcmp(a, "--batch"))
            bad = parse_int(a, v, 1, &o.batch);
        else if (!strcmp(a, "--out"))
            o.out = v;
        else if (!strcmp(a, "--dtype")) {
            o.dtype = v;
            bad = strcmp(v, "fp32") && strcmp(v, "bf16") ? -1 : 0;
            if (bad)
                fprintf(stderr, "zero-bench-oom: --dtype %s: expected fp32 or bf16\n", v);
        } else if (!strcmp(a, "--stages")) {
            o.num_stages = 0;
            for (const char *p = v; *p; p++) {
                if (*p >= '0' && *p <= '3' && o.num_stages < 4)
                    o.stages[o.num_stages++] = *p - '0';
                else if (*p != ',')
                    bad = -1;
            }
            if (bad || !o.num_stages) {
                fprintf(stderr, "zero-bench-oom: --stages %s: expected a list of 0..3\n", v);
                bad = -1;
            }
        } else if (!strcmp(a, "--offload")) {
            o.offloads = 0;
            char buf[64];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
                for (int k = 0; k < 3; k++)
                    if (!strcmp(t, offload_names[k]))
                        o.offloads |= 1 << k;
            if (!o.offloads) {
                fprintf(stderr, "zero-bench-oom: --offload %s: expected a list of none cpu all\n",
                        v);
                bad = -1;
            }
        } else {
            fprintf(stderr, "zero-bench-oom: unknown flag %s\n", a);
            bad = -1;
        }
        if (bad) {
            usage(stderr);
            return 2;
        }
    }
    const char *capv = getenv("ZERO_DEVICE_MEMORY");
    if (!o.np || !o.out || !capv) {
        fprintf(stderr, "zero-bench-oom: --np, --out and ZERO_DEVICE_MEMORY are required\n");
        usage(stderr);
        return 2;
    }
    uint64_t capacity = 0;
    {
        char *end;
        double x = strtod(capv, &end);
        uint64_t unit = 1;
        if (*end == 'K' || *end == 'k')
            unit = 1024;
        else if (*end == 'M' || *end == 'm')
            unit = 1024 * 1024;
        else if (*end == 'G' || *end == 'g')
            unit = 1024 * 1024 * 1024;
        capacity = (uint64_t)(x * (double)unit);
        if (capacity == 0) {
            fprintf(stderr, "zero-bench-oom: ZERO_DEVICE_MEMORY=%s: expected a size like 64M\n",
                    capv);
            return 2;
        }
    }
    if (!o.batch)
        o.batch = o.np;
    if (mkdir(o.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "zero-bench-oom: cannot create %s: %s\n", o.out, strerror(errno));
        return 2;
    }
    ssize_t len = readlink("/proc/self/exe", bindir, sizeof bindir - 1);
    if (len <= 0) {
        fprintf(stderr, "zero-bench-oom: cannot find its own directory\n");
        return 1;
    }
    bindir[len] = 0;
    char *slash = strrchr(bindir, '/');
    if (slash)
        *slash = 0;

    size_t work = !strcmp(o.dtype, "fp32") ? 4 : 2;
    result res[8];
    int nres = 0, all_ok = 1;
    for (int off = 0; off < 3; off++)
        for (int si = 0; si < o.num_stages; si++) {
            int st = o.stages[si];
            if (!(o.offloads & (1 << off)) || (off == 1 && st == 0) || (off == 2 && st != 3))
                continue;
            memset(&res[nres], 0, sizeof res[nres]);
            res[nres].stage = st;
            res[nres++].offload = off;
        }
    printf("OOM benchmark: %d ranks, ZERO_DEVICE_MEMORY=%s per rank, GPT-2 %d layers, %d heads, "
           "seq %d, %s\n", o.np, capv, o.layers, o.heads, o.seq, o.dtype);
    for (int ri = 0; ri < nres; ri++) {
        result *r = &res[ri];
        int stage = r->stage, off = r->offload;
        zp_max_psi(stage, work, o.np, off > 0, off == 2, capacity, &r->analytic_psi);
        /* width in multiples of the head count; double until a failure, then bisect */
        int step = o.heads, lo = 0, hi = 0;
        uint64_t peak = 0, lo_peak = 0;
        for (int k = 8;; k *= 2) {
            if (trial(&o, stage, off, k * step, &peak)) {
                lo = k;
                lo_peak = peak;
            } else {
                hi = k;
                break;
            }
            if (k > 1 << 16)
                break;
        }
        while (hi - lo > 1) {
            int mid = (lo + hi) / 2;
            if (trial(&o, stage, off, mid * step, &peak)) {
                lo = mid;
                lo_peak = peak;
            } else {
                hi = mid;
            }
        }
        if (lo > 0) {
            r->dim = lo * step;
            r->params = zp_gpt2_params(o.layers, r->dim, 256, o.seq);
            r->peak = lo_peak;
        } else {
            all_ok = 0;
        }
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/oom.csv", o.out);
    FILE *csv = fopen(path, "w");
    if (!csv) {
        fprintf(stderr, "zero-bench-oom: cannot write %s\n", path);
        return 1;
    }
    fprintf(csv, "stage,offload,world,capacity_bytes,dtype,layers,dim,params,peak_device_bytes,"
                 "analytic_max_params,ratio\n");
    printf("\n%5s %8s %6s %12s %18s %20s %7s\n", "stage", "offload", "dim", "params",
           "peak device bytes", "formula max params", "ratio");
    const result *s0 = NULL, *s3 = NULL;
    for (int ri = 0; ri < nres; ri++) {
        const result *r = &res[ri];
        double ratio = r->analytic_psi ? (double)r->params / (double)r->analytic_psi : 0.0;
        printf("%5d %8s %6d %12" PRIu64 " %18" PRIu64 " %20" PRIu64 " %7.3f\n", r->stage,
               offload_names[r->offload], r->dim, r->params, r->peak, r->analytic_psi, ratio);
        fprintf(csv, "%d,%s,%d,%" PRIu64 ",%s,%d,%d,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%.4f\n",
                r->stage, offload_names[r->offload], o.np, capacity, o.dtype, o.layers, r->dim,
                r->params, r->peak, r->analytic_psi, ratio);
        if (r->offload == 0 && r->stage == 0)
            s0 = r;
        if (r->offload == 0 && r->stage == 3)
            s3 = r;
    }
    fclose(csv);
    write_svg(&o, res, nres, capacity);
    if (s0 && s3 && s0->params)
        printf("\nstage 3 / stage 0 largest model: %.2fx (the formula's ideal is %dx)\n",
               (double)s3->params / (double)s0->params, o.np);
    printf("wrote %s/oom.csv and %s/oom.svg\n", o.out, o.out);
    return all_ok ? 0 : 1;
}
