/* zero_check — assertions the integration tests make on what libzero writes:
 *   zero-check compare A.safetensors B.safetensors RTOL
 *       same tensors (names, shapes); per tensor max|a - b| <= RTOL * max|b|
 *   zero-check near REPORT.json KEY_A KEY_B RTOL
 *       the numbers at KEY_A and KEY_B (first occurrence of "KEY":) differ by <= RTOL * |B|
 *   zero-check le REPORT.json KEY_A KEY_B     value(KEY_A) <= value(KEY_B)
 *   zero-check get REPORT.json KEY            prints the value
 *   zero-check same REPORT1.json REPORT2.json KEY   the two reports have the same value at KEY
 * Exit 0 when the assertion holds, 1 when it does not, 2 on unreadable input. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "zero-check: cannot open %s\n", path);
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "zero-check: cannot read %s\n", path);
        exit(2);
    }
    buf[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

/* The raw text of the value after the first "key": (a number or a quoted string). */
static const char *json_value(const char *text, const char *key, const char *path)
{
    char pat[256];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (!p) {
        fprintf(stderr, "zero-check: %s has no key \"%s\"\n", path, key);
        exit(2);
    }
    p += strlen(pat);
    while (*p == ' ')
        p++;
    return p;
}

static double json_number(const char *text, const char *key, const char *path)
{
    const char *v = json_value(text, key, path);
    char *end;
    double d = strtod(v, &end);
    if (end == v) {
        fprintf(stderr, "zero-check: %s: \"%s\" is not a number\n", path, key);
        exit(2);
    }
    return d;
}

typedef struct st_tensor {
    char name[256];
    char shape[128];
    uint64_t begin, end;
} st_tensor;

typedef struct st_file {
    char *data;
    size_t len;
    size_t base; /* offset of the data section */
    st_tensor *t;
    int n;
} st_file;

/* Reads the header of a safetensors file: {"name":{"dtype":"F32","shape":[..],
 * "data_offsets":[b,e]},...}; only F32 tensors are expected. */
static void st_open(st_file *s, const char *path)
{
    s->data = slurp(path, &s->len);
    if (s->len < 8) {
        fprintf(stderr, "zero-check: %s: too short for safetensors\n", path);
        exit(2);
    }
    uint64_t hlen = 0;
    for (int k = 0; k < 8; k++)
        hlen |= (uint64_t)(unsigned char)s->data[k] << (8 * k);
    if (8 + hlen > s->len) {
        fprintf(stderr, "zero-check: %s: header length %llu past the end\n", path,
                (unsigned long long)hlen);
        exit(2);
    }
    s->base = 8 + hlen;
    char *h = malloc(hlen + 1);
    memcpy(h, s->data + 8, hlen);
    h[hlen] = 0;
    s->t = NULL;
    s->n = 0;
    const char *p = h;
    /* every entry reads "NAME":{"dtype":...; names written by libzero escape only " and \\ */
    while ((p = strstr(p, "\":{\"dtype\":")) != NULL) {
        const char *nend = p;
        const char *nbeg = nend - 1;
        while (nbeg > h && !(*nbeg == '"' && nbeg[-1] != '\\'))
            nbeg--;
        p += 3;
        s->t = realloc(s->t, (size_t)(s->n + 1) * sizeof *s->t);
        st_tensor *t = &s->t[s->n++];
        size_t nl = (size_t)(nend - nbeg - 1);
        if (nl >= sizeof t->name)
            nl = sizeof t->name - 1;
        memcpy(t->name, nbeg + 1, nl);
        t->name[nl] = 0;
        if (strncmp(p, "\"dtype\":\"F32\"", 13) != 0) {
            fprintf(stderr, "zero-check: %s: tensor %s is not F32\n", path, t->name);
            exit(2);
        }
        const char *sh = strstr(p, "\"shape\":[");
        const char *she = sh ? strchr(sh, ']') : NULL;
        const char *off = strstr(p, "\"data_offsets\":[");
        if (!sh || !she || !off) {
            fprintf(stderr, "zero-check: %s: malformed header near %s\n", path, t->name);
            exit(2);
        }
        size_t sl = (size_t)(she - sh);
        if (sl >= sizeof t->shape)
            sl = sizeof t->shape - 1;
        memcpy(t->shape, sh, sl);
        t->shape[sl] = 0;
        unsigned long long b, e;
        if (sscanf(off, "\"data_offsets\":[%llu,%llu]", &b, &e) != 2 || s->base + e > s->len ||
            b > e) {
            fprintf(stderr, "zero-check: %s: bad data_offsets for %s\n", path, t->name);
            exit(2);
        }
        t->begin = b;
        t->end = e;
        p = off + 16;
    }
    free(h);
}

static int compare(const char *pa, const char *pb, double rtol)
{
    st_file a, b;
    st_open(&a, pa);
    st_open(&b, pb);
    if (a.n != b.n || a.n == 0) {
        printf("FAIL: %s has %d tensors, %s has %d\n", pa, a.n, pb, b.n);
        return 1;
    }
    /* Relative difference of a tensor: max |a - b| over max |b| (the infinity-norm relative
     * error). Element-wise ratios are ill-conditioned for values that cross zero, where the
     * summation order of the ranks moves them by an ulp of the tensor's scale. */
    double worst = 0.0, worst_elem = 0.0;
    const char *worst_name = "";
    size_t count = 0;
    for (int i = 0; i < a.n; i++) {
        if (strcmp(a.t[i].name, b.t[i].name) || strcmp(a.t[i].shape, b.t[i].shape) ||
            a.t[i].end - a.t[i].begin != b.t[i].end - b.t[i].begin) {
            printf("FAIL: tensor %d differs: %s %s] vs %s %s]\n", i, a.t[i].name, a.t[i].shape,
                   b.t[i].name, b.t[i].shape);
            return 1;
        }
        size_t n = (a.t[i].end - a.t[i].begin) / 4;
        const char *xa = a.data + a.base + a.t[i].begin, *xb = b.data + b.base + b.t[i].begin;
        double maxdiff = 0.0, maxb = 0.0;
        for (size_t k = 0; k < n; k++) {
            float va, vb;
            memcpy(&va, xa + 4 * k, 4);
            memcpy(&vb, xb + 4 * k, 4);
            double d = fabs((double)va - (double)vb);
            if (!(d <= maxdiff))
                maxdiff = isnan(d) ? INFINITY : d;
            if (fabs((double)vb) > maxb)
                maxb = fabs((double)vb);
            double e = d / fmax(fabs((double)vb), 1e-3);
            if (!(e <= worst_elem))
                worst_elem = isnan(e) ? INFINITY : e;
        }
        double rel = maxb > 0 ? maxdiff / maxb : maxdiff;
        if (!(rel <= worst)) {
            worst = isnan(rel) ? INFINITY : rel;
            worst_name = a.t[i].name;
        }
        count += n;
    }
    int ok = worst <= rtol;
    printf("%s: %zu values in %d tensors, max relative difference %.3g (limit %.3g) in %s; "
           "element-wise |a-b|/max(|b|,1e-3) at most %.3g\n",
           ok ? "ok" : "FAIL", count, a.n, worst, rtol, worst_name, worst_elem);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "compare"))
        return compare(argv[2], argv[3], atof(argv[4]));
    if ((argc == 6 && !strcmp(argv[1], "near")) || (argc == 5 && !strcmp(argv[1], "le"))) {
        char *t = slurp(argv[2], NULL);
        double a = json_number(t, argv[3], argv[2]), b = json_number(t, argv[4], argv[2]);
        int ok;
        if (argv[1][0] == 'n') {
            double rtol = atof(argv[5]);
            ok = fabs(a - b) <= rtol * fabs(b);
            printf("%s: %s = %.17g, %s = %.17g, relative difference %.3g (limit %.3g)\n",
                   ok ? "ok" : "FAIL", argv[3], a, argv[4], b, b != 0 ? fabs(a - b) / fabs(b) : 0,
                   rtol);
        } else {
            ok = a <= b;
            printf("%s: %s = %.17g <= %s = %.17g\n", ok ? "ok" : "FAIL", argv[3], a, argv[4], b);
        }
        return ok ? 0 : 1;
    }
    if (argc == 4 && !strcmp(argv[1], "get")) {
        char *t = slurp(argv[2], NULL);
        const char *v = json_value(t, argv[3], argv[2]);
        size_t n = strcspn(v, ",\n}");
        printf("%.*s\n", (int)n, v);
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "same")) {
        char *t1 = slurp(argv[2], NULL), *t2 = slurp(argv[3], NULL);
        const char *v1 = json_value(t1, argv[4], argv[2]), *v2 = json_value(t2, argv[4], argv[3]);
        size_t n1 = strcspn(v1, ",\n}"), n2 = strcspn(v2, ",\n}");
        int ok = n1 == n2 && !strncmp(v1, v2, n1);
        printf("%s: %s %.*s vs %.*s\n", ok ? "ok" : "FAIL", argv[4], (int)n1, v1, (int)n2, v2);
        return ok ? 0 : 1;
    }
    fprintf(stderr, "usage: zero-check compare A.st B.st RTOL | near R.json KEY_A KEY_B RTOL | "
                    "le R.json KEY_A KEY_B | get R.json KEY | same R1.json R2.json KEY\n");
    return 2;
}
