/* fuzz_ckpt — a bounded, fixed-seed fuzz loop over what zero_load reads before it trusts anything:
 * the manifest and the shard headers (run at np 1; under AddressSanitizer/UBSan too, see below).
 *
 * One checkpoint of a small model (five tensors, 4096-byte buckets: several slices) is saved, then
 * each iteration changes one file, calls zero_load on it, and puts the file back:
 *  - targeted: the first value of every numeric field of the manifest replaced, in turn, by values
 *    at and beyond the edges (-1, 0, 2^31, 2^32, 2^40, 2^63 - 1, -2^63, 2^64 - 1, 1e300, 1.5, ...);
 *  - random: a byte flipped, random bytes inserted, the text cut at a random length, two adjacent
 *    digits swapped, a number replaced by one of the values above, a line deleted, a line
 *    repeated, whitespace added between tokens (which must load), a shard header's bytes randomised,
 *    a shard file cut or lengthened.
 * Property: zero_load returns ZERO_OK, ZERO_ERR_IO or ZERO_ERR_INVALID (never another status, never
 * a crash or a hang: each load must take under 10 s); after any outcome the context's digest and
 * step/skipped counts are those of the checkpoint (it was at the checkpoint before the call, so a
 * failed load left it alone and a successful one loaded the same values); whitespace-only changes
 * load; a shard file whose header or length changed is ZERO_ERR_IO. The parser is also called directly (zc_manifest_parse) on every mutated manifest: ZERO_OK or
 * ZERO_ERR_IO with a message, and when it refuses the text zero_load must be ZERO_ERR_IO too.
 * Half of the loads pass user = NULL (the blob is then not bounded by user_cap).
 * Mutations that load are counted by the manifest key they touched (values replaced by the same
 * value, and fields zero_load does not use: producer, config, stage, world, module, micro_steps,
 * the fp16 scaler's fields in an fp32 run, the files' xxh3...) and printed at the end.
 *
 * Usage: fuzz_ckpt [root [iterations [seed]]] (default root $OUT/fuzz_ckpt or ./fuzz_ckpt.d,
 * 300 random iterations, seed 20250117). FUZZ_ONLY=i runs random iteration i alone (same draws),
 * FUZZ_VERBOSE=1 prints every iteration. Ends with "fuzz_ckpt: N iterations, F failures".
 * (A user "bytes" beyond the 1 GiB zero_save allows is refused by the parser: ZERO_ERR_IO, never an
 * allocation of that size.)
 *
 * Under AddressSanitizer and UBSan (CMake option ZERO_SANITIZE):
 *   cmake -S . -B build-asan -DZERO_CUDA=OFF -DZERO_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
 *   cmake --build build-asan -j2 --target fuzz_ckpt test_ckpt
 *   ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
 *   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
 *     scripts/zero-mpirun -np 1 build-asan/bin/fuzz_ckpt /tmp/fuzz_ckpt
 * (detect_leaks=0: Open MPI's own allocations show up as leaks at exit; allocator_may_return_null
 * =1: a huge malloc returns NULL as glibc's does, instead of aborting the process, so the known gap
 * below is reported as such; halt_on_error=1 makes a UBSan report fatal, as ASan's are.) In that
 * build `ctest -R ckpt_fuzz` runs it with these options. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "zero.h"

#include "runtime/ckpt_format.h"

#include "../common/api_test.h"

/* ---- random numbers ---------------------------------------------------------------------------- */

static uint64_t rng;

static uint64_t next_u64(void)
{
    uint64_t x = (rng += 0x9e3779b97f4a7c15ull);
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t pick(size_t n) { return n ? (size_t)(next_u64() % n) : 0; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the model and its checkpoint ------------------------------------------------------------ */

enum { NT = 5, MAXN = 700 };
static float init_vals[NT][MAXN];
static zero_tensor tensors[NT];

static void make_tensors(void)
{
    static const char *names[NT] = {"in.w", "in.b", "mid.w", "out.w", "out.b"};
    static const size_t numel[NT] = {600, 24, 700, 240, 10};
    static const int module[NT] = {0, 0, 1, 2, 2};
    for (int i = 0; i < NT; i++) {
        tensors[i] = (zero_tensor){.name = names[i], .numel = numel[i], .module = module[i],
                                   .init = init_vals[i], .no_decay = numel[i] < 32};
        if (i == 0 || i == 2 || i == 3) {
            tensors[i].ndim = 2;
            tensors[i].shape[0] = i == 0 ? 24 : i == 2 ? 28 : 24;
            tensors[i].shape[1] = (int64_t)numel[i] / tensors[i].shape[0];
        }
        for (size_t k = 0; k < numel[i]; k++)
            init_vals[i][k] = 0.01f * (float)((k * 13 + (size_t)i * 5) % 19) - 0.09f;
    }
}

static void train_step(zero_ctx *z, int k)
{
    float g[MAXN];
    for (int mod = 2; mod >= 0; mod--) {
        for (int i = 0; i < NT; i++) {
            if (tensors[i].module != mod)
                continue;
            void *p = zero_grad_ptr(z, i);
            EXPECT(p != NULL, "zero_grad_ptr: %s", zero_last_error(z));
            if (!p)
                return;
            for (size_t j = 0; j < tensors[i].numel; j++)
                g[j] = 0.01f * (float)((int)((j * 3 + (size_t)i * 11 + (size_t)k * 7) % 17) - 8);
            zero_accumulate(p, ZERO_DTYPE_FP32, g, tensors[i].numel);
        }
        zero_status s = zero_grad_ready(z, mod);
        EXPECT(s == ZERO_OK, "zero_grad_ready: %s", zero_last_error(z));
    }
    zero_status s = zero_step(z);
    EXPECT(s == ZERO_OK, "zero_step: %s", zero_last_error(z));
}

/* ---- files ----------------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        *len = (size_t)n;
    }
    return buf;
}

static void spit(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(p, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok) {
        fprintf(stderr, "fuzz_ckpt: cannot write %s: %s\n", path, strerror(errno));
        exit(2);
    }
}

/* ---- mutations -------------------------------------------------------------------------------- */

/* A growable buffer: the mutated file. */
typedef struct buf {
    char *p;
    size_t n;
} buf;

static buf copy_of(const char *p, size_t n)
{
    buf b = {malloc(n + 64), n};
    memcpy(b.p, p, n);
    b.p[n] = 0;
    return b;
}

static void buf_splice(buf *b, size_t at, size_t del, const char *ins, size_t insn)
{
    char *q = malloc(b->n - del + insn + 64);
    memcpy(q, b->p, at);
    memcpy(q + at, ins, insn);
    memcpy(q + at + insn, b->p + at + del, b->n - at - del);
    b->n = b->n - del + insn;
    q[b->n] = 0;
    free(b->p);
    b->p = q;
}

static const char *const edge_values[] = {
    "-1", "0", "1", "2147483647", "2147483648", "4294967296", "1073741825", "68719476736",
    "1099511627776", "9223372036854775807", "-9223372036854775808", "18446744073709551615",
    "99999999999999999999999", "1e300", "-0", "1.5", "null", "\"7\""};
enum { NEDGE = sizeof edge_values / sizeof *edge_values };

/* The span [*a, *b) of the number starting at or after `from`; 0 if none. */
static int number_at(const buf *t, size_t from, size_t *a, size_t *b)
{
    for (size_t i = from; i < t->n; i++) {
        char c = t->p[i];
        if ((c >= '0' && c <= '9') || (c == '-' && i + 1 < t->n && t->p[i + 1] >= '0' &&
                                       t->p[i + 1] <= '9')) {
            /* not inside a string (the hex checksums, names): count quotes on the line */
            size_t ls = i;
            while (ls > 0 && t->p[ls - 1] != '\n')
                ls--;
            int q = 0;
            for (size_t k = ls; k < i; k++)
                q += t->p[k] == '"';
            size_t e = i + 1;
            while (e < t->n && strchr("0123456789.eE+-", t->p[e]))
                e++;
            if (q % 2 == 0) {
                *a = i;
                *b = e;
                return 1;
            }
            i = e;
        }
    }
    return 0;
}

/* The manifest key of the line holding byte `at` ("" when none), for the summary. */
static void key_at(const char *text, size_t n, size_t at, char *key, size_t cap)
{
    if (at >= n)
        at = n ? n - 1 : 0;
    size_t ls = at;
    while (ls > 0 && text[ls - 1] != '\n')
        ls--;
    const char *q = memchr(text + ls, '"', n - ls);
    key[0] = 0;
    if (q && (size_t)(q - text) <= at + 64) {
        const char *e = memchr(q + 1, '"', n - (size_t)(q + 1 - text));
        if (e && (size_t)(e - q) < cap && memchr(q, '\n', (size_t)(e - q)) == NULL)
            snprintf(key, cap, "%.*s", (int)(e - q - 1), q + 1);
    }
    if (!key[0])
        snprintf(key, cap, "(line of byte %zu)", at);
}

typedef enum {
    K_FLIP, K_INSERT, K_CUT, K_SWAP_DIGITS, K_NUMBER, K_DELETE_LINE, K_REPEAT_LINE, K_SPACE,
    K_HEADER, K_SHARD_LEN, K_NKINDS
} kind;
static const char *kind_name[K_NKINDS] = {"flip",   "insert", "cut",    "swap-digits", "number",
                                          "delete-line", "repeat-line", "whitespace", "header",
                                          "shard-length"};

typedef struct mutation {
    kind k;
    int file;      /* -1 = the manifest, else the shard file's index */
    buf text;      /* the file as the iteration writes it */
    char what[200];
    size_t at;     /* where (for the key) */
} mutation;

static void mutate_manifest(mutation *m, const char *orig, size_t len, kind k)
{
    m->k = k;
    m->file = -1;
    m->text = copy_of(orig, len);
    buf *t = &m->text;
    size_t at = pick(len);
    m->at = at;
    switch (k) {
    case K_FLIP: {
        unsigned char x = (unsigned char)(1 + pick(255));
        t->p[at] = (char)((unsigned char)t->p[at] ^ x);
        snprintf(m->what, sizeof m->what, "byte %zu ^= 0x%02x", at, x);
        break;
    }
    case K_INSERT: {
        char ins[8];
        size_t n = 1 + pick(8);
        for (size_t i = 0; i < n; i++)
            ins[i] = (char)pick(256);
        buf_splice(t, at, 0, ins, n);
        snprintf(m->what, sizeof m->what, "%zu random bytes inserted at %zu", n, at);
        break;
    }
    case K_CUT:
        t->n = at;
        t->p[at] = 0;
        snprintf(m->what, sizeof m->what, "cut to %zu of %zu bytes", at, len);
        break;
    case K_SWAP_DIGITS: {
        size_t i = at, tries = 0;
        for (; tries < len; tries++, i = (i + 1) % (len - 1))
            if (t->p[i] >= '0' && t->p[i] <= '9' && t->p[i + 1] >= '0' && t->p[i + 1] <= '9' &&
                t->p[i] != t->p[i + 1])
                break;
        char c = t->p[i];
        t->p[i] = t->p[i + 1];
        t->p[i + 1] = c;
        m->at = i;
        snprintf(m->what, sizeof m->what, "digits at %zu swapped", i);
        break;
    }
    case K_NUMBER: {
        size_t a, b;
        if (!number_at(t, at, &a, &b) && !number_at(t, 0, &a, &b))
            break;
        const char *v = edge_values[pick(NEDGE)];
        snprintf(m->what, sizeof m->what, "number %.*s at %zu -> %s", (int)(b - a), t->p + a, a,
                 v);
        m->at = a;
        buf_splice(t, a, b - a, v, strlen(v));
        break;
    }
    case K_DELETE_LINE:
    case K_REPEAT_LINE: {
        size_t ls = at, le = at;
        while (ls > 0 && t->p[ls - 1] != '\n')
            ls--;
        while (le < t->n && t->p[le] != '\n')
            le++;
        if (le < t->n)
            le++;
        if (k == K_DELETE_LINE)
            buf_splice(t, ls, le - ls, "", 0);
        else {
            char *line = strndup(t->p + ls, le - ls);
            buf_splice(t, le, 0, line, le - ls);
            free(line);
        }
        snprintf(m->what, sizeof m->what, "line at %zu %s", ls,
                 k == K_DELETE_LINE ? "deleted" : "repeated");
        m->at = ls;
        break;
    }
    case K_SPACE: {
        /* whitespace right after a structural character outside strings: JSON means the same */
        size_t i = at, tries = 0;
        for (; tries < len; tries++, i = (i + 1) % len) {
            char c = t->p[i];
            if (c != ',' && c != ':' && c != '[' && c != '{')
                continue;
            size_t ls = i;
            while (ls > 0 && t->p[ls - 1] != '\n')
                ls--;
            int q = 0;
            for (size_t j = ls; j < i; j++)
                q += t->p[j] == '"';
            if (q % 2 == 0)
                break;
        }
        static const char *const ws[] = {" ", "\n", "\t", "  \r\n  "};
        const char *w = ws[pick(4)];
        buf_splice(t, i + 1, 0, w, strlen(w));
        m->at = i;
        snprintf(m->what, sizeof m->what, "whitespace after byte %zu", i);
        break;
    }
    default:
        break;
    }
}

static void mutate_shard(mutation *m, int file, const char *orig, size_t len, kind k)
{
    m->k = k;
    m->file = file;
    m->text = copy_of(orig, len);
    buf *t = &m->text;
    if (k == K_HEADER) {
        int n = 1 + (int)pick(4);
        int o = snprintf(m->what, sizeof m->what, "header bytes");
        for (int i = 0; i < n; i++) {
            size_t at = pick(ZC_HEADER_BYTES);
            unsigned char v = (unsigned char)pick(256);
            t->p[at] = (char)v;
            o += snprintf(m->what + o, sizeof m->what - (size_t)o, " [%zu]=0x%02x", at, v);
        }
    } else {
        size_t nl = pick(2) ? pick(len) : len + 1 + pick(100);
        if (nl > len) {
            char pad[128];
            for (size_t i = 0; i < sizeof pad; i++)
                pad[i] = (char)pick(256);
            buf_splice(t, len, 0, pad, nl - len);
        } else {
            t->n = nl;
        }
        snprintf(m->what, sizeof m->what, "length %zu of %zu", nl, len);
    }
}

/* ---- the loop ---------------------------------------------------------------------------------- */

static zero_ctx *z;
static char ckdir[1200], mpath[1300];
static char *man_text;
static size_t man_len;
static int nfiles;
static char shard_path[8][1300];
static char *shard_text[8];
static size_t shard_len[8];
static uint64_t d0;
static int64_t step0, skipped0;
static int iterations_run, accepted[K_NKINDS];

enum { MAX_KEYS = 64 };
static struct {
    char key[64];
    int n;
} accepted_keys[MAX_KEYS];
static int naccepted_keys;

static void note_accepted(const char *key)
{
    for (int i = 0; i < naccepted_keys; i++)
        if (!strcmp(accepted_keys[i].key, key)) {
            accepted_keys[i].n++;
            return;
        }
    if (naccepted_keys < MAX_KEYS) {
        snprintf(accepted_keys[naccepted_keys].key, sizeof accepted_keys[0].key, "%s", key);
        accepted_keys[naccepted_keys++].n = 1;
    }
}

static int verbose;

/* Writes the mutation, loads, checks, puts the file back. */
static void run_one(const char *label, mutation *m, int user_null)
{
    const int fails_before = failures;
    const char *path = m->file < 0 ? mpath : shard_path[m->file];
    spit(path, m->text.p, m->text.n);

    /* the parser on its own */
    zero_status ps = ZERO_OK;
    if (m->file < 0) {
        zc_manifest pm;
        zr_error e;
        zr_error_clear(&e);
        ps = zc_manifest_parse(&pm, m->text.p, m->text.n, "fuzz", &e);
        EXPECT(ps == ZERO_OK || ps == ZERO_ERR_IO, "%s (%s): zc_manifest_parse: %s: %s", label,
               m->what, zero_status_string(ps), e.msg);
        EXPECT(ps == ZERO_OK || e.msg[0], "%s (%s): zc_manifest_parse failed without a message",
               label, m->what);
        if (ps == ZERO_OK) {
            EXPECT(pm.user_bytes <= ((uint64_t)1 << 30), "%s (%s): the parser took a user blob of "
                   "%llu bytes, beyond zero_save's 1 GiB", label, m->what,
                   (unsigned long long)pm.user_bytes);
            zc_manifest_free(&pm);
        }
    }

    unsigned char ub[4096];
    size_t ul = 0;
    double t0 = now_s();
    zero_status s = user_null ? zero_load(z, ckdir, NULL, 0, &ul)
                              : zero_load(z, ckdir, ub, sizeof ub, &ul);
    double dt = now_s() - t0;
    const char *msg = zero_last_error(z);
    EXPECT(s == ZERO_OK || s == ZERO_ERR_IO || s == ZERO_ERR_INVALID,
           "%s (%s, user %s): zero_load: %s: %s", label, m->what, user_null ? "NULL" : "buffer",
           zero_status_string(s), msg);
    EXPECT(dt < 10.0, "%s (%s): zero_load took %.1f s", label, m->what, dt);
    EXPECT(ps == ZERO_OK || s == ZERO_ERR_IO,
           "%s (%s): the parser refused the manifest but zero_load returned %s", label, m->what,
           zero_status_string(s));
    EXPECT(m->k != K_SPACE || s == ZERO_OK, "%s (%s): whitespace only, yet %s: %s", label,
           m->what, zero_status_string(s), msg);
    /* every byte of a shard header is checked (magic, version, rank, world, arrays, id, block
     * size, reserved zeros), and so is the file's length */
    const int shard_changed = m->file >= 0 && (m->text.n != shard_len[m->file] ||
                                               memcmp(m->text.p, shard_text[m->file], m->text.n));
    EXPECT(!shard_changed || s == ZERO_ERR_IO, "%s (%s): a changed shard file, yet %s", label,
           m->what, zero_status_string(s));
    if ((s == ZERO_ERR_COMM || s == ZERO_ERR_SYSTEM || s == ZERO_ERR_INTERNAL)) {
        /* the context accepts only zero_finalize now: the run cannot go on */
        fprintf(stderr, "fuzz_ckpt: %s (%s): %s leaves the context unusable; stopping\n", label,
                m->what, zero_status_string(s));
        spit(path, m->file < 0 ? man_text : shard_text[m->file],
             m->file < 0 ? man_len : shard_len[m->file]);
        printf("fuzz_ckpt: %d iterations, %d failures\n", iterations_run + 1, failures);
        exit(1);
    }
    uint64_t d = 0;
    zero_status ds = zero_param_digest(z, &d);
    zero_step_info info;
    zero_last_step(z, &info);
    EXPECT(ds == ZERO_OK && d == d0 && info.step == step0 && info.skipped == skipped0,
           "%s (%s): after %s the context is at digest %016" PRIx64 " step %" PRId64
           ", the checkpoint's %016" PRIx64 " step %" PRId64,
           label, m->what, zero_status_string(s), d, info.step, d0, step0);
    if (s == ZERO_OK) {
        accepted[m->k]++;
        char key[64];
        if (m->file < 0)
            key_at(m->text.p, m->text.n, m->at, key, sizeof key);
        else
            snprintf(key, sizeof key, "shard %s", kind_name[m->k]);
        if (m->k != K_SPACE)
            note_accepted(key);
    }
    if (verbose || failures != fails_before)
        printf("%s %s: %s%s%s -> %s%s%.160s\n", failures != fails_before ? "FAIL" : "ok  ", label,
               m->file < 0 ? "manifest " : "shard ", m->file < 0 ? "" : shard_path[m->file] +
               strlen(ckdir) + 1, m->what, zero_status_string(s), s ? ": " : "", s ? msg : "");
    /* put it back */
    spit(path, m->file < 0 ? man_text : shard_text[m->file],
         m->file < 0 ? man_len : shard_len[m->file]);
    free(m->text.p);
    iterations_run++;
}

/* Every numeric field's first value, replaced by every edge value. */
static void targeted(void)
{
    buf t = {man_text, man_len};
    char seen[64][48];
    int nseen = 0;
    size_t from = 0, a, b;
    int it = 0;
    while (number_at(&t, from, &a, &b)) {
        from = b;
        char key[48];
        key_at(man_text, man_len, a, key, sizeof key);
        int dup = 0;
        for (int i = 0; i < nseen; i++)
            dup |= !strcmp(seen[i], key);
        if (dup || nseen == 64)
            continue;
        snprintf(seen[nseen++], sizeof seen[0], "%s", key);
        for (int v = 0; v < NEDGE; v++) {
            mutation m = {K_NUMBER, -1, copy_of(man_text, man_len), "", a};
            snprintf(m.what, sizeof m.what, "\"%s\" %.*s -> %s", key, (int)(b - a), man_text + a,
                     edge_values[v]);
            buf_splice(&m.text, a, b - a, edge_values[v], strlen(edge_values[v]));
            char label[32];
            snprintf(label, sizeof label, "targeted %d", it++);
            run_one(label, &m, v % 2);
        }
    }
    printf("fuzz_ckpt: targeted: %d numeric fields x %d values\n", nseen, NEDGE);
}

int main(int argc, char **argv)
{
    clear_zero_environment();
    setenv("ZERO_DEBUG", getenv("FUZZ_ZERO_DEBUG") ? getenv("FUZZ_ZERO_DEBUG") : "NONE", 1);
    verbose = getenv("FUZZ_VERBOSE") && atoi(getenv("FUZZ_VERBOSE")) > 0;
    const int only = getenv("FUZZ_ONLY") ? atoi(getenv("FUZZ_ONLY")) : -1;
    char root[1024];
    if (argc > 1)
        snprintf(root, sizeof root, "%s", argv[1]);
    else if (getenv("OUT") && getenv("OUT")[0])
        snprintf(root, sizeof root, "%s/fuzz_ckpt", getenv("OUT"));
    else
        snprintf(root, sizeof root, "fuzz_ckpt.d");
    int iterations = argc > 2 ? atoi(argv[2]) : 300;
    if (iterations < 0 || iterations > 1000000)
        iterations = 300;
    rng = argc > 3 ? strtoull(argv[3], NULL, 0) : 20250117u;

    make_tensors();
    zero_config c = ZERO_CONFIG_INIT;
    c.device = ZERO_DEVICE_HOST;
    c.stage = 2;
    c.bucket_bytes = 4096;
    c.lr = 1e-2f;
    c.cpu_threads = 1;
    c.numa = ZERO_NUMA_OFF;
    c.timeout_s = 60.0f;
    zero_status s = zero_init(&z, &c, tensors, NT);
    if (s) {
        fprintf(stderr, "fuzz_ckpt: zero_init: %s: %s\n", zero_status_string(s),
                zero_init_error());
        return 2;
    }
    if (zero_world_size(z) != 1) {
        fprintf(stderr, "fuzz_ckpt: run it at np 1 (the files are changed by this process)\n");
        zero_finalize(z);
        return 2;
    }
    train_step(z, 0);
    train_step(z, 1);
    /* the directory: a fresh save (step-00000002 replaces any older one of that name) */
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "%s", root);
    for (char *p = cmd + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(cmd, 0755);
            *p = '/';
        }
    s = zero_save(z, root, "fuzz user blob", 14);
    if (s) {
        fprintf(stderr, "fuzz_ckpt: zero_save %s: %s\n", root, zero_last_error(z));
        return 2;
    }
    snprintf(ckdir, sizeof ckdir, "%s/step-00000002", root);
    snprintf(mpath, sizeof mpath, "%s/" ZC_MANIFEST, ckdir);
    man_text = slurp(mpath, &man_len);
    zc_manifest pm;
    zr_error e;
    zr_error_clear(&e);
    if (!man_text || zc_manifest_parse(&pm, man_text, man_len, ckdir, &e)) {
        fprintf(stderr, "fuzz_ckpt: the saved manifest: %s\n", e.msg);
        return 2;
    }
    nfiles = pm.num_files < 8 ? pm.num_files : 8;
    for (int f = 0; f < nfiles; f++) {
        snprintf(shard_path[f], sizeof shard_path[f], "%s/%s", ckdir, pm.files[f].name);
        shard_text[f] = slurp(shard_path[f], &shard_len[f]);
    }
    printf("fuzz_ckpt: %s: %d tensors, %d slices, %d shard file(s), manifest %zu bytes\n", ckdir,
           pm.num_tensors, pm.num_slices, nfiles, man_len);
    zc_manifest_free(&pm);
    zero_param_digest(z, &d0);
    zero_step_info info;
    zero_last_step(z, &info);
    step0 = info.step;
    skipped0 = info.skipped;
    double t0 = now_s();

    if (only < 0)
        targeted();
    const uint64_t seed = rng;
    for (int it = 0; it < iterations; it++) {
        if (only >= 0 && it != only)
            continue;
        rng = seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(it + 1)); /* iteration it's own draws */
        kind k = (kind)pick(K_NKINDS);
        int f = (int)pick((size_t)nfiles);
        int user_null = (int)pick(2);
        mutation m;
        memset(&m, 0, sizeof m);
        if (k == K_HEADER || k == K_SHARD_LEN)
            mutate_shard(&m, f, shard_text[f], shard_len[f], k);
        else
            mutate_manifest(&m, man_text, man_len, k);
        char label[32];
        snprintf(label, sizeof label, "%d %s", it, kind_name[k]);
        run_one(label, &m, user_null);
    }

    /* the checkpoint as saved still loads */
    s = zero_load(z, ckdir, NULL, 0, NULL);
    EXPECT(s == ZERO_OK, "the unchanged checkpoint: %s", zero_last_error(z));
    printf("fuzz_ckpt: loads that succeeded, by kind:");
    for (int k = 0; k < K_NKINDS; k++)
        if (accepted[k])
            printf(" %s %d", kind_name[k], accepted[k]);
    printf("\nfuzz_ckpt: non-whitespace changes that loaded, by the key they touched:");
    for (int i = 0; i < naccepted_keys; i++)
        printf(" %s %d%s", accepted_keys[i].key, accepted_keys[i].n,
               i + 1 < naccepted_keys ? "," : "");
    printf("\n");
    zero_finalize(z);
    for (int f = 0; f < nfiles; f++)
        free(shard_text[f]);
    free(man_text);
    printf("fuzz_ckpt: %d iterations, %d failures (%.1f s)\n", iterations_run, failures,
           now_s() - t0);
    return failures ? 1 : 0;
}
