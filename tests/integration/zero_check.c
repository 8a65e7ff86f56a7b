/* zero_check — assertions the integration tests make on what libzero writes:
 *   zero-check compare A.safetensors B.safetensors RTOL
 *       same tensors (names, shapes); per tensor max|a - b| <= RTOL * max|b|
 *   zero-check near REPORT.json KEY_A KEY_B RTOL
 *       the numbers at KEY_A and KEY_B differ by <= RTOL * |B|
 *   zero-check le REPORT.json KEY_A KEY_B     value(KEY_A) <= value(KEY_B)
 *   zero-check get REPORT.json KEY            prints the value
 *   zero-check same REPORT1.json REPORT2.json KEY   the two reports have the same value at KEY
 * The report is read as JSON (jansson). A KEY is
 *   - a path from the root with dots: memory.device_peak_bytes, time.wall_s,
 *     memory.per_rank.0.total (an array element by its index); a leading dot anchors a
 *     top-level key (.stage is the top-level "stage", config.stage the configured one);
 *   - or a bare name without dots (model_state_peak_bytes), found wherever it is in the
 *     document: it must occur exactly once; a name found at several paths is an error that
 *     lists them (exit 2), never a silent first match.
 * get prints integers as integers, other numbers with the fewest digits (at most 17) that read
 * back as the same double, strings raw, true/false/null as such, objects and arrays as compact
 * JSON.
 * Exit 0 when the assertion holds, 1 when it does not, 2 on unreadable or bad input (a file
 * that is not JSON, a missing or ambiguous key, a value that is not a number where one is
 * needed, a bad tolerance). */
#include <errno.h>
#include <jansson.h>
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

/* ---- the JSON report ------------------------------------------------------------------------- */

static json_t *load_report(const char *path)
{
    json_error_t err;
    /* a report with the same key twice in one object is malformed: refused, not resolved */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (err.line < 1) /* not opened or not read */
            fprintf(stderr, "zero-check: %s\n", err.text);
        else
            fprintf(stderr, "zero-check: %s: not JSON (line %d, column %d): %s\n", path,
                    err.line, err.column, err.text);
        exit(2);
    }
    return root;
}

/* Paths found for a bare key: "a.b.c" as typed on the command line (a top-level one with a
 * leading dot, so that every listed path resolves to that one place). */
typedef struct found {
    char **paths;
    json_t **values;
    int n;
} found;

static void find_key(json_t *v, const char *key, const char *prefix, found *f)
{
    char *sub = NULL;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            size_t len = strlen(prefix) + strlen(k) + 2;
            sub = realloc(sub, len);
            snprintf(sub, len, "%s.%s", prefix, k);
            if (!strcmp(k, key)) {
                f->paths = realloc(f->paths, (size_t)(f->n + 1) * sizeof *f->paths);
                f->values = realloc(f->values, (size_t)(f->n + 1) * sizeof *f->values);
                f->paths[f->n] = strdup(sub);
                f->values[f->n++] = x;
            }
            find_key(x, key, sub, f);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            size_t len = strlen(prefix) + 24;
            sub = realloc(sub, len);
            snprintf(sub, len, "%s.%zu", prefix, i);
            find_key(x, key, sub, f);
        }
    }
    free(sub);
}

/* A path printed for the user: nested ones without the leading dot (config.stage), top-level
 * ones with it (.stage), since a bare name means "anywhere". */
static const char *shown(const char *p)
{
    return strchr(p + 1, '.') ? p + 1 : p;
}

/* The value at KEY (see the top of the file); exits 2 when there is none or several. */
static json_t *lookup(json_t *root, const char *key, const char *path)
{
    if (!key[0]) {
        fprintf(stderr, "zero-check: %s: empty key\n", path);
        exit(2);
    }
    if (!strchr(key, '.')) {
        found f = {NULL, NULL, 0};
        find_key(root, key, "", &f);
        if (f.n == 1)
            return f.values[0];
        if (f.n == 0) {
            fprintf(stderr, "zero-check: %s has no key \"%s\"\n", path, key);
            exit(2);
        }
        fprintf(stderr, "zero-check: %s: key \"%s\" is ambiguous, it occurs at %d paths:", path,
                key, f.n);
        for (int i = 0; i < f.n; i++)
            fprintf(stderr, " %s", shown(f.paths[i]));
        fprintf(stderr, " (name one of them)\n");
        exit(2);
    }
    json_t *v = root;
    const char *p = key[0] == '.' ? key + 1 : key;
    for (;;) {
        size_t n = strcspn(p, ".");
        char seg[256];
        if (n == 0 || n >= sizeof seg) {
            fprintf(stderr, "zero-check: bad key \"%s\" (%s path segment)\n", key,
                    n ? "overlong" : "an empty");
            exit(2);
        }
        memcpy(seg, p, n);
        seg[n] = 0;
        /* what v is, for messages: the key up to this segment */
        char where[300];
        if (p - key > (key[0] == '.'))
            snprintf(where, sizeof where, "\"%.*s\"", (int)(p - key - 1), key);
        else
            snprintf(where, sizeof where, "the document");
        json_t *next = NULL;
        if (json_is_object(v)) {
            next = json_object_get(v, seg);
        } else if (json_is_array(v)) {
            char *end;
            errno = 0;
            unsigned long long i = strtoull(seg, &end, 10);
            if (*end || seg[0] < '0' || seg[0] > '9' || errno) {
                fprintf(stderr, "zero-check: %s: %s is an array: \"%s\" is not an index\n", path,
                        where, seg);
                exit(2);
            }
            if (i < json_array_size(v))
                next = json_array_get(v, (size_t)i);
        } else {
            fprintf(stderr, "zero-check: %s: %s is a %s, not an object or array\n", path, where,
                    json_is_string(v) ? "string" : "number, boolean or null");
            exit(2);
        }
        if (!next) {
            fprintf(stderr, "zero-check: %s has no \"%.*s\"\n", path, (int)(p + n - key), key);
            exit(2);
        }
        v = next;
        if (!p[n])
            return v;
        p += n + 1;
    }
}

static void need_number(json_t *v, const char *key, const char *path)
{
    if (!json_is_number(v)) {
        fprintf(stderr, "zero-check: %s: \"%s\" is not a number\n", path, key);
        exit(2);
    }
}

/* The value as get prints it (malloc'd): integers as integers, reals with the fewest digits
 * that read back as the same double, strings raw, the rest as compact JSON. */
static char *format_value(json_t *v)
{
    char buf[64];
    if (json_is_integer(v)) {
        snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return strdup(buf);
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
        return strdup(buf);
    }
    if (json_is_string(v))
        return strdup(json_string_value(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    return s ? s : strdup("?");
}

/* -1, 0, 1 for a < b, a == b, a > b (integers compared exactly); 2 when unordered (NaN). */
static int cmp_numbers(json_t *a, json_t *b)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    double x = json_number_value(a), y = json_number_value(b);
    return x < y ? -1 : x > y ? 1 : x == y ? 0 : 2;
}

static double parse_tolerance(const char *s)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end || errno || !(d >= 0)) {
        fprintf(stderr, "zero-check: bad tolerance \"%s\" (a number >= 0)\n", s);
        exit(2);
    }
    return d;
}

int main(int argc, char **argv)
{
    if (argc == 5 && !strcmp(argv[1], "compare"))
        return compare(argv[2], argv[3], parse_tolerance(argv[4]));
    if ((argc == 6 && !strcmp(argv[1], "near")) || (argc == 5 && !strcmp(argv[1], "le"))) {
        double rtol = argc == 6 ? parse_tolerance(argv[5]) : 0;
        json_t *root = load_report(argv[2]);
        json_t *va = lookup(root, argv[3], argv[2]), *vb = lookup(root, argv[4], argv[2]);
        need_number(va, argv[3], argv[2]);
        need_number(vb, argv[4], argv[2]);
        char *sa = format_value(va), *sb = format_value(vb);
        int ok;
        if (argv[1][0] == 'n') {
            double a = json_number_value(va), b = json_number_value(vb);
            ok = fabs(a - b) <= rtol * fabs(b);
            printf("%s: %s = %s, %s = %s, relative difference %.3g (limit %.3g)\n",
                   ok ? "ok" : "FAIL", argv[3], sa, argv[4], sb,
                   b != 0 ? fabs(a - b) / fabs(b) : a == b ? 0 : INFINITY, rtol);
        } else {
            int c = cmp_numbers(va, vb);
            ok = c == -1 || c == 0;
            printf("%s: %s = %s %s %s = %s\n", ok ? "ok" : "FAIL", argv[3], sa,
                   ok ? "<=" : "is not <=", argv[4], sb);
        }
        return ok ? 0 : 1;
    }
    if (argc == 4 && !strcmp(argv[1], "get")) {
        json_t *root = load_report(argv[2]);
        printf("%s\n", format_value(lookup(root, argv[3], argv[2])));
        return 0;
    }
    if (argc == 5 && !strcmp(argv[1], "same")) {
        json_t *r1 = load_report(argv[2]), *r2 = load_report(argv[3]);
        json_t *v1 = lookup(r1, argv[4], argv[2]), *v2 = lookup(r2, argv[4], argv[3]);
        /* numbers by value (1 and 1.0 are the same), the rest as JSON values */
        int ok = json_is_number(v1) && json_is_number(v2) ? cmp_numbers(v1, v2) == 0
                                                          : json_equal(v1, v2);
        printf("%s: %s %s vs %s\n", ok ? "ok" : "FAIL", argv[4], format_value(v1),
               format_value(v2));
        return ok ? 0 : 1;
    }
    fprintf(stderr, "usage: zero-check compare A.st B.st RTOL | near R.json KEY_A KEY_B RTOL | "
                    "le R.json KEY_A KEY_B | get R.json KEY | same R1.json R2.json KEY\n"
                    "KEY: a dotted path (memory.device_peak_bytes, memory.per_rank.0.total,\n"
                    "     .stage for a top-level key) or a name that occurs once in the report\n");
    return 2;
}
