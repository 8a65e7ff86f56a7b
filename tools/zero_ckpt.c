/* zero-ckpt — inspects, verifies, exports and compares libzero checkpoints (zero_save) without MPI
 * or a device: only the format's code (runtime/ckpt_format.h; the format: docs/CHECKPOINT.md).
 * Usage: zero-ckpt info|verify|export|diff ...; see --help. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/ckpt_format.h"

/* Elements of one tensor read at a time (per array), so that a huge tensor never needs its
 * whole size in memory: export holds up to 3 arrays of it (96 MiB), diff 6 (192 MiB). */
enum { PIECE_ELEMS = 1 << 23 };

/* Exit statuses. */
enum { EXIT_SAME = 0, EXIT_BAD = 1, EXIT_USAGE = 2 };

static const char *const usage_text =
    "usage: zero-ckpt info DIR [--json]\n"
    "       zero-ckpt verify DIR\n"
    "       zero-ckpt export DIR OUT.safetensors [--moments]\n"
    "       zero-ckpt diff DIR1 DIR2 [--all]\n"
    "\n"
    "Reads checkpoints written by zero_save (docs/CHECKPOINT.md) without MPI or a device. DIR is\n"
    "a checkpoint directory (holding manifest.json) or a directory zero_save wrote into (its\n"
    "`latest`, else its newest step-* directory).\n"
    "\n"
    "  info    the manifest's summary (progress, world size, stage, dtype, optimizer, files) and\n"
    "          one line per tensor; --json prints it as one JSON object instead\n"
    "  verify  every shard file's size, header and file checksum, every block's checksum, and\n"
    "          user.bin's size and checksum; prints \"OK ...\" or the first problem\n"
    "  export  the fp32 master as safetensors (F32), tensors in registration order: the same\n"
    "          bytes as zero_export of the saved state; --moments adds \"<name>.exp_avg\" and\n"
    "          \"<name>.exp_avg_sq\" of every tensor after all the masters. Written to a\n"
    "          temporary file beside OUT, then renamed over it\n"
    "  diff    the two checkpoints' tensors (same names and sizes; order, world size and stage\n"
    "          may differ) compared element by element, for every array (master, exp_avg,\n"
    "          exp_avg_sq): a line per tensor and array that differs (every one with --all) with\n"
    "          the largest absolute difference, the largest relative one |a-b|/max(|a|,|b|)\n"
    "          (0 when both are 0) and the count of elements whose bits differ (-0 and 0, or two\n"
    "          NaNs with other payloads, differ; a NaN against a number is an infinite\n"
    "          difference); then `diff: max_abs=A max_rel=R differing=N tensors=T` (T: tensors\n"
    "          with a difference)\n"
    "  -h, --help  this text\n"
    "\n"
    "Exit status: 0 success (diff: every bit equal); 1 a checkpoint problem (verify: corrupt,\n"
    "missing or truncated file; diff: some element differs); 2 a bad argument (diff: also\n"
    "checkpoints of other tensors, or any error reading them).\n";

static int usage_error(const char *fmt, const char *what)
{
    fprintf(stderr, "zero-ckpt: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(zero-ckpt --help for the usage)\n");
    return EXIT_USAGE;
}

/* ---- a checkpoint: where it is, its manifest, a reader --------------------------------------- */

typedef struct ckpt {
    char dir[4096];
    zc_manifest m;
    zc_reader r;
    int open;
} ckpt;

static zero_status ckpt_open(ckpt *c, const char *path, zr_error *e)
{
    memset(c, 0, sizeof *c);
    ZR_CHECK(zc_resolve(path, c->dir, sizeof c->dir, e));
    char mp[4096 + 32];
    snprintf(mp, sizeof mp, "%s/" ZC_MANIFEST, c->dir);
    char *json = NULL;
    size_t len = 0;
    ZR_CHECK(zc_read_file(mp, (size_t)1 << 31, &json, &len, e));
    zero_status s = zc_manifest_parse(&c->m, json, len, c->dir, e);
    free(json);
    ZR_CHECK(s);
    s = zc_reader_open(&c->r, &c->m, c->dir, ZC_IO_MMAP, e);
    if (s) {
        zc_manifest_free(&c->m);
        return s;
    }
    c->open = 1;
    return ZERO_OK;
}

static void ckpt_close(ckpt *c)
{
    if (!c->open)
        return;
    zc_reader_close(&c->r);
    zc_manifest_free(&c->m);
    c->open = 0;
}

/* Elements per zc_read: PIECE_ELEMS, in whole blocks when a block is smaller. */
static uint64_t piece_elems(const zc_manifest *m)
{
    uint64_t B = m->block_elems;
    return B >= PIECE_ELEMS ? B : PIECE_ELEMS / B * B;
}

static uint64_t max_numel(const zc_manifest *m)
{
    uint64_t n = 0;
    for (int t = 0; t < m->num_tensors; t++)
        n = m->tensors[t].numel > n ? m->tensors[t].numel : n;
    return n;
}

static const char *dtype_name(int d)
{
    return d == ZERO_DTYPE_FP32 ? "fp32" : d == ZERO_DTYPE_BF16 ? "bf16" : d == ZERO_DTYPE_FP16 ? "fp16" : "?";
}

static void shape_text(const zc_tensor *t, char *buf, size_t n)
{
    if (t->ndim == 0) {
        snprintf(buf, n, "[%" PRIu64 "]", t->numel);
        return;
    }
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, d ? ", " : "", t->shape[d]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

/* ---- info ------------------------------------------------------------------------------------ */

static int info_json(const ckpt *c)
{
    const zc_manifest *m = &c->m;
    char id[17];
    zc_hex(m->id, id);
    uint64_t params = 0, bytes = 0;
    json_t *root = json_object(), *arr = json_array(), *tens = json_array(), *files = json_array();
    for (int a = 0; a < m->num_arrays; a++)
        json_array_append_new(arr, json_string(m->arrays[a]));
    for (int t = 0; t < m->num_tensors; t++) {
        const zc_tensor *x = &m->tensors[t];
        json_t *shape = json_array();
        for (int d = 0; d < x->ndim; d++)
            json_array_append_new(shape, json_integer(x->shape[d]));
        json_array_append_new(tens, json_pack("{s:s, s:o, s:I, s:i, s:b}", "name", x->name,
                                              "shape", shape, "numel", (json_int_t)x->numel,
                                              "module", x->module, "no_decay", x->no_decay));
        params += x->numel;
    }
    for (int f = 0; f < m->num_files; f++) {
        json_array_append_new(files, json_pack("{s:s, s:i, s:I}", "name", m->files[f].name,
                                               "rank", m->files[f].rank, "bytes",
                                               (json_int_t)m->files[f].bytes));
        bytes += m->files[f].bytes;
    }
    json_object_set_new(root, "path", json_string(c->dir));
    json_object_set_new(root, "version", json_integer(m->version));
    json_object_set_new(root, "id", json_string(id));
    json_object_set_new(root, "producer", json_string(m->producer));
    json_object_set_new(root, "steps", json_integer(m->prog.steps));
    json_object_set_new(root, "boundaries", json_integer(m->prog.boundaries));
    json_object_set_new(root, "skipped", json_integer(m->prog.skipped));
    json_object_set_new(root, "micro_steps", json_integer(m->prog.micro_steps));
    json_object_set_new(root, "loss_scale", json_real(m->prog.loss_scale));
    json_object_set_new(root, "scale_dynamic", json_boolean(m->prog.scale_dynamic));
    json_object_set_new(root, "world", json_integer(m->world));
    json_object_set_new(root, "stage", json_integer(m->stage));
    json_object_set_new(root, "dtype", json_string(dtype_name(m->dtype)));
    json_object_set_new(root, "grad_accum", json_integer(m->grad_accum));
    json_object_set_new(root, "optimizer", json_string(m->optimizer));
    json_object_set_new(root, "arrays", arr);
    json_object_set_new(root, "block_elems", json_integer((json_int_t)m->block_elems));
    json_object_set_new(root, "num_tensors", json_integer(m->num_tensors));
    json_object_set_new(root, "parameters", json_integer((json_int_t)params));
    json_object_set_new(root, "num_files", json_integer(m->num_files));
    json_object_set_new(root, "file_bytes", json_integer((json_int_t)bytes));
    json_object_set_new(root, "user_bytes", json_integer((json_int_t)m->user_bytes));
    json_object_set_new(root, "files", files);
    json_object_set_new(root, "tensors", tens);
    json_t *cfg = m->config_json ? json_loads(m->config_json, 0, NULL) : NULL;
    json_object_set_new(root, "config", cfg ? cfg : json_object());
    int ok = json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER) == 0;
    json_decref(root);
    printf("\n");
    return ok && fflush(stdout) == 0 ? EXIT_SAME : EXIT_BAD;
}

static int info(const ckpt *c)
{
    const zc_manifest *m = &c->m;
    char id[17];
    zc_hex(m->id, id);
    uint64_t params = 0, bytes = 0;
    for (int t = 0; t < m->num_tensors; t++)
        params += m->tensors[t].numel;
    for (int f = 0; f < m->num_files; f++)
        bytes += m->files[f].bytes;
    printf("path         %s\n", c->dir);
    printf("format       %s version %d\n", ZC_FORMAT, m->version);
    printf("id           %s\n", id);
    printf("producer     %s\n", m->producer);
    printf("step         %" PRId64 "\n", m->prog.steps);
    printf("boundaries   %" PRId64 "\n", m->prog.boundaries);
    printf("skipped      %" PRId64 "\n", m->prog.skipped);
    printf("micro_steps  %" PRId64 "\n", m->prog.micro_steps);
    if (m->prog.scale_dynamic)
        printf("loss scale   %g (dynamic, hysteresis left %d, last rescale at boundary %" PRId64
               ")\n",
               m->prog.loss_scale, m->prog.hysteresis_left, m->prog.last_rescale);
    else
        printf("loss scale   %g (static)\n", m->prog.loss_scale);
    printf("world size   %d\n", m->world);
    printf("stage        %d\n", m->stage);
    printf("dtype        %s\n", dtype_name(m->dtype));
    printf("grad_accum   %d\n", m->grad_accum);
    printf("optimizer    %s (arrays:", m->optimizer);
    for (int a = 0; a < m->num_arrays; a++)
        printf(" %s", m->arrays[a]);
    printf(")\n");
    printf("block_elems  %" PRIu64 "\n", m->block_elems);
    printf("tensors      %d\n", m->num_tensors);
    printf("parameters   %" PRIu64 "\n", params);
    printf("files        %d shard files, %" PRIu64 " bytes\n", m->num_files, bytes);
    printf("user blob    %" PRIu64 " bytes\n", m->user_bytes);
    size_t w = 4;
    for (int t = 0; t < m->num_tensors; t++)
        w = strlen(m->tensors[t].name) > w ? strlen(m->tensors[t].name) : w;
    printf("\n%-*s  %-20s %12s %6s  %s\n", (int)w, "name", "shape", "numel", "module",
           "no_decay");
    for (int t = 0; t < m->num_tensors; t++) {
        const zc_tensor *x = &m->tensors[t];
        char sh[200];
        shape_text(x, sh, sizeof sh);
        printf("%-*s  %-20s %12" PRIu64 " %6d  %s\n", (int)w, x->name, sh, x->numel, x->module,
               x->no_decay ? "yes" : "no");
    }
    return fflush(stdout) == 0 ? EXIT_SAME : EXIT_BAD;
}

/* ---- verify ---------------------------------------------------------------------------------- */

static int verify(ckpt *c)
{
    const zc_manifest *m = &c->m;
    zr_error e;
    zr_error_clear(&e);
    zero_status s = zc_verify_files(&c->r, &e);
    if (!s) { /* user.bin: its size and checksum, as zero_load checks them */
        char up[4096 + 32];
        snprintf(up, sizeof up, "%s/" ZC_USER_FILE, c->dir);
        char *ub = NULL;
        size_t ul = 0;
        s = zc_read_file(up, (size_t)m->user_bytes, &ub, &ul, &e);
        if (!s && (ul != m->user_bytes || zc_hash(ub, ul) != m->user_hash))
            s = zr_error_set(&e, ZERO_ERR_IO, "checkpoint %s: %s: %s", c->dir, ZC_USER_FILE,
                             ul != m->user_bytes ? "its size differs from the manifest's"
                                                 : "checksum mismatch: the file is corrupt");
        free(ub);
    }
    if (s) {
        fprintf(stderr, "zero-ckpt verify: %s\n", e.msg);
        return EXIT_BAD;
    }
    uint64_t blocks = 0, bytes = 0;
    for (int k = 0; k < m->num_slices; k++)
        blocks += zc_blocks(m->slices[k].numel, m->block_elems);
    for (int f = 0; f < m->num_files; f++)
        bytes += m->files[f].bytes;
    printf("OK %s: step %" PRId64 ", %d tensors, %d shard files (%" PRIu64 " bytes, %" PRIu64
           " blocks), %s (%" PRIu64 " bytes): every checksum matches\n",
           c->dir, m->prog.steps, m->num_tensors, m->num_files, bytes, blocks, ZC_USER_FILE,
           m->user_bytes);
    return EXIT_SAME;
}

/* ---- export ---------------------------------------------------------------------------------- */

static int write_at(int fd, const void *p, size_t n, uint64_t at)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)at);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p = (const char *)p + w;
        n -= (size_t)w;
        at += (uint64_t)w;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const zc_st_entry *)a)->name, ((const zc_st_entry *)b)->name);
}

/* The safetensors entries: every master in manifest order, then with moments every tensor's
 * other arrays as "<name>.<array>"; *data[j] gets entry j's data offset (bytes after the header).
 * Returns the count, or -1 (message in e). */
static int st_entries(const zc_manifest *m, int moments, zc_st_entry **out, uint64_t **data,
                      zr_error *e)
{
    const int T = m->num_tensors, A = moments ? m->num_arrays : 1, n = T * A;
    zc_st_entry *t = calloc((size_t)n, sizeof *t);
    zc_st_entry *sorted = calloc((size_t)n, sizeof *sorted);
    uint64_t *off = calloc((size_t)n, sizeof *off);
    int ok = t && sorted && off;
    for (int j = 0; ok && j < n; j++) {
        const zc_tensor *x = &m->tensors[j < T ? j : (j - T) / (A - 1)];
        int a = j < T ? 0 : 1 + (j - T) % (A - 1);
        char *name = NULL;
        if (a == 0)
            name = x->name;
        else if ((name = malloc(strlen(x->name) + strlen(m->arrays[a]) + 2)) != NULL)
            sprintf(name, "%s.%s", x->name, m->arrays[a]);
        ok = name != NULL;
        t[j] = (zc_st_entry){name, x->ndim, x->shape, x->numel};
        off[j] = j ? off[j - 1] + t[j - 1].numel * 4 : 0;
    }
    if (!ok) {
        zr_error_set(e, ZERO_ERR_SYSTEM, "out of host memory");
    } else { /* a name like "w.exp_avg" registered beside "w" would appear twice */
        memcpy(sorted, t, (size_t)n * sizeof *t);
        qsort(sorted, (size_t)n, sizeof *sorted, name_cmp);
        for (int j = 1; j < n && ok; j++)
            if (!strcmp(sorted[j].name, sorted[j - 1].name)) {
                zr_error_set(e, ZERO_ERR_INVALID, "the safetensors name \"%s\" would appear "
                             "twice (a tensor of the checkpoint has that name)", sorted[j].name);
                ok = 0;
            }
    }
    free(sorted);
    if (!ok) {
        for (int j = T; t && j < n; j++)
            free((char *)t[j].name);
        free(t);
        free(off);
        return -1;
    }
    *out = t;
    *data = off;
    return n;
}

static int export_st(ckpt *c, const char *out, int moments)
{
    const zc_manifest *m = &c->m;
    const int T = m->num_tensors, A = moments ? m->num_arrays : 1;
    zr_error e;
    zr_error_clear(&e);
    zc_st_entry *ent = NULL;
    uint64_t *off = NULL;
    int n = st_entries(m, moments, &ent, &off, &e);
    if (n < 0) {
        fprintf(stderr, "zero-ckpt export: %s\n", e.msg);
        return EXIT_BAD;
    }
    size_t hlen = 0;
    unsigned char *hdr = zc_safetensors_header(ent, n, &hlen);
    const uint64_t P = piece_elems(m), mx = max_numel(m), cap = mx < P ? mx : P;
    float *buf[ZC_MAX_ARRAYS] = {NULL, NULL, NULL};
    int ok = hdr != NULL;
    for (int a = 0; a < A; a++)
        ok = ok && (buf[a] = malloc((size_t)cap * sizeof(float))) != NULL;
    /* the temporary file beside out */
    const char *slash = strrchr(out, '/');
    char tmp[4096 + 64];
    int fd = -1;
    if (!ok) {
        fprintf(stderr, "zero-ckpt export: out of host memory\n");
    } else if (snprintf(tmp, sizeof tmp, "%.*s.%s.zero-ckpt.%ld.tmp",
                        slash ? (int)(slash - out + 1) : 0, out, slash ? slash + 1 : out,
                        (long)getpid()) >= (int)sizeof tmp) {
        fprintf(stderr, "zero-ckpt export: the path %s is too long\n", out);
        ok = 0;
    } else if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
        fprintf(stderr, "zero-ckpt export: cannot create %s: %s\n", tmp, strerror(errno));
        ok = 0;
    } else if (write_at(fd, hdr, hlen, 0) != 0) {
        fprintf(stderr, "zero-ckpt export: writing %s: %s\n", tmp, strerror(errno));
        ok = 0;
    }
    /* every tensor piece by piece, each of its arrays to where the header puts it */
    for (int t = 0; ok && t < T; t++) {
        for (uint64_t first = 0; ok && first < m->tensors[t].numel; first += P) {
            uint64_t cnt = m->tensors[t].numel - first < P ? m->tensors[t].numel - first : P;
            if (zc_read(&c->r, t, first, cnt, buf, &e)) {
                fprintf(stderr, "zero-ckpt export: %s\n", e.msg);
                ok = 0;
                break;
            }
            for (int a = 0; ok && a < A; a++) {
                int j = a == 0 ? t : T + t * (A - 1) + (a - 1);
                if (write_at(fd, buf[a], (size_t)cnt * sizeof(float),
                             hlen + off[j] + first * sizeof(float)) != 0) {
                    fprintf(stderr, "zero-ckpt export: writing %s: %s\n", tmp, strerror(errno));
                    ok = 0;
                }
            }
        }
    }
    if (ok && fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) {
        fprintf(stderr, "zero-ckpt export: syncing %s: %s\n", tmp, strerror(errno));
        ok = 0;
    }
    if (fd >= 0 && close(fd) != 0 && ok) {
        fprintf(stderr, "zero-ckpt export: writing %s: %s\n", tmp, strerror(errno));
        ok = 0;
    }
    if (ok && rename(tmp, out) != 0) {
        fprintf(stderr, "zero-ckpt export: renaming %s to %s: %s\n", tmp, out, strerror(errno));
        ok = 0;
    }
    if (!ok && fd >= 0)
        unlink(tmp);
    if (ok) { /* the rename, durable */
        char dir[4096];
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash == out ? 1 : slash - out) : 1,
                 slash ? out : ".");
        int dfd = open(dir, O_RDONLY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        uint64_t total = hlen + (n ? off[n - 1] + ent[n - 1].numel * 4 : 0);
        printf("zero-ckpt export: %s: %d tensors%s, %" PRIu64 " bytes, from %s (step %" PRId64
               ")\n",
               out, n, moments ? " (masters and moments)" : "", total, c->dir, m->prog.steps);
    }
    for (int a = 0; a < ZC_MAX_ARRAYS; a++)
        free(buf[a]);
    for (int j = T; j < n; j++)
        free((char *)ent[j].name);
    free(ent);
    free(off);
    free(hdr);
    return ok ? EXIT_SAME : EXIT_BAD;
}

/* ---- diff ------------------------------------------------------------------------------------ */

typedef struct diff_stat {
    double max_abs, max_rel;
    unsigned long long differing;
} diff_stat;

static void compare(const float *x, const float *y, uint64_t n, diff_stat *d)
{
    for (uint64_t i = 0; i < n; i++) {
        uint32_t bx, by;
        memcpy(&bx, &x[i], 4);
        memcpy(&by, &y[i], 4);
        if (bx == by)
            continue;
        d->differing++;
        double a = x[i], b = y[i], abs_d, rel;
        if (isnan(a) && isnan(b))
            abs_d = rel = 0.0; /* other payloads: counted, no magnitude */
        else if (isnan(a) || isnan(b))
            abs_d = rel = INFINITY;
        else {
            abs_d = fabs(a - b);
            double mag = fmax(fabs(a), fabs(b));
            rel = mag == 0.0 ? 0.0 : isinf(abs_d) ? INFINITY : abs_d / mag;
        }
        d->max_abs = fmax(d->max_abs, abs_d);
        d->max_rel = fmax(d->max_rel, rel);
    }
}

static int diff(ckpt *c1, ckpt *c2, int all)
{
    const zc_manifest *m1 = &c1->m, *m2 = &c2->m;
    if (m1->num_tensors != m2->num_tensors) {
        fprintf(stderr, "zero-ckpt diff: %s has %d tensors, %s has %d\n", c1->dir,
                m1->num_tensors, c2->dir, m2->num_tensors);
        return EXIT_USAGE;
    }
    if (m1->num_arrays != m2->num_arrays || strcmp(m1->optimizer, m2->optimizer) != 0) {
        fprintf(stderr, "zero-ckpt diff: %s holds optimizer %s (%d arrays), %s holds %s (%d)\n",
                c1->dir, m1->optimizer, m1->num_arrays, c2->dir, m2->optimizer,
                m2->num_arrays);
        return EXIT_USAGE;
    }
    const int T = m1->num_tensors, A = m1->num_arrays;
    int *map = malloc((size_t)T * sizeof *map);
    if (!map) {
        fprintf(stderr, "zero-ckpt diff: out of host memory\n");
        return EXIT_USAGE;
    }
    for (int t = 0; t < T; t++) {
        const zc_tensor *x = &m1->tensors[t];
        map[t] = zc_find_tensor(m2, x->name);
        if (map[t] < 0 || m2->tensors[map[t]].numel != x->numel) {
            if (map[t] < 0)
                fprintf(stderr, "zero-ckpt diff: tensor \"%s\" of %s is not in %s\n", x->name,
                        c1->dir, c2->dir);
            else
                fprintf(stderr, "zero-ckpt diff: tensor \"%s\" has %" PRIu64 " elements in %s, "
                        "%" PRIu64 " in %s\n", x->name, x->numel, c1->dir,
                        m2->tensors[map[t]].numel, c2->dir);
            free(map);
            return EXIT_USAGE;
        }
    }
    const uint64_t P1 = piece_elems(m1), P2 = piece_elems(m2), P = P1 < P2 ? P1 : P2;
    const uint64_t mx = max_numel(m1), cap = mx < P ? mx : P;
    float *b1[ZC_MAX_ARRAYS] = {NULL, NULL, NULL}, *b2[ZC_MAX_ARRAYS] = {NULL, NULL, NULL};
    int rc = EXIT_SAME;
    for (int a = 0; a < A; a++)
        if (!(b1[a] = malloc((size_t)cap * sizeof(float))) ||
            !(b2[a] = malloc((size_t)cap * sizeof(float))))
            rc = EXIT_USAGE;
    if (rc)
        fprintf(stderr, "zero-ckpt diff: out of host memory\n");
    printf("diff: %s (step %" PRId64 ") against %s (step %" PRId64 ")\n", c1->dir,
           m1->prog.steps, c2->dir, m2->prog.steps);
    diff_stat total = {0, 0, 0};
    int tensors = 0;
    zr_error e;
    zr_error_clear(&e);
    for (int t = 0; t < T && rc != EXIT_USAGE; t++) {
        const zc_tensor *x = &m1->tensors[t];
        diff_stat d[ZC_MAX_ARRAYS];
        memset(d, 0, sizeof d);
        for (uint64_t first = 0; first < x->numel; first += P) {
            uint64_t cnt = x->numel - first < P ? x->numel - first : P;
            if (zc_read(&c1->r, t, first, cnt, b1, &e) ||
                zc_read(&c2->r, map[t], first, cnt, b2, &e)) {
                fprintf(stderr, "zero-ckpt diff: %s\n", e.msg);
                rc = EXIT_USAGE;
                break;
            }
            for (int a = 0; a < A; a++)
                compare(b1[a], b2[a], cnt, &d[a]);
        }
        if (rc == EXIT_USAGE)
            break;
        int any = 0;
        for (int a = 0; a < A; a++) {
            if (d[a].differing || all)
                printf("%s %s: max_abs=%g max_rel=%g differing=%llu of %" PRIu64 "\n", x->name,
                       m1->arrays[a], d[a].max_abs, d[a].max_rel, d[a].differing, x->numel);
            any |= d[a].differing != 0;
            total.max_abs = fmax(total.max_abs, d[a].max_abs);
            total.max_rel = fmax(total.max_rel, d[a].max_rel);
            total.differing += d[a].differing;
        }
        tensors += any;
    }
    for (int a = 0; a < ZC_MAX_ARRAYS; a++) {
        free(b1[a]);
        free(b2[a]);
    }
    free(map);
    if (rc == EXIT_USAGE)
        return rc;
    printf("diff: max_abs=%g max_rel=%g differing=%llu tensors=%d\n", total.max_abs,
           total.max_rel, total.differing, tensors);
    return total.differing ? EXIT_BAD : EXIT_SAME;
}

/* ---- main ------------------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    const char *pos[3] = {NULL, NULL, NULL};
    int npos = 0, json = 0, moments = 0, all = 0;
    if (argc < 2)
        return usage_error("%s", "no command");
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(usage_text, stdout);
            return EXIT_SAME;
        }
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json") && !strcmp(cmd, "info"))
            json = 1;
        else if (!strcmp(a, "--moments") && !strcmp(cmd, "export"))
            moments = 1;
        else if (!strcmp(a, "--all") && !strcmp(cmd, "diff"))
            all = 1;
        else if (a[0] == '-' && a[1] == '-')
            return usage_error("unknown option %s for this command", a);
        else if (npos < 3)
            pos[npos++] = a;
        else
            return usage_error("too many arguments (%s)", a);
    }
    int want = !strcmp(cmd, "info") || !strcmp(cmd, "verify") ? 1
               : !strcmp(cmd, "export") || !strcmp(cmd, "diff") ? 2
                                                                 : -1;
    if (want < 0)
        return usage_error("unknown command %s", cmd);
    if (npos != want)
        return usage_error(want == 1 ? "%s takes one checkpoint directory"
                                     : !strcmp(cmd, "export") ? "%s takes DIR OUT.safetensors"
                                                               : "%s takes DIR1 DIR2",
                           cmd);
    for (int i = 0; i < npos; i++)
        if (!pos[i][0])
            return usage_error("%s: an argument is empty", cmd);

    zr_error e;
    zr_error_clear(&e);
    static ckpt c1, c2; /* large (paths): not on the stack */
    /* diff: any error reading a checkpoint is 2 (1 says "they differ") */
    const int open_fail = !strcmp(cmd, "diff") ? EXIT_USAGE : EXIT_BAD;
    if (ckpt_open(&c1, pos[0], &e)) {
        fprintf(stderr, "zero-ckpt %s: %s\n", cmd, e.msg);
        return open_fail;
    }
    int rc;
    if (!strcmp(cmd, "info"))
        rc = json ? info_json(&c1) : info(&c1);
    else if (!strcmp(cmd, "verify"))
        rc = verify(&c1);
    else if (!strcmp(cmd, "export"))
        rc = export_st(&c1, pos[1], moments);
    else if (ckpt_open(&c2, pos[1], &e)) {
        fprintf(stderr, "zero-ckpt %s: %s\n", cmd, e.msg);
        rc = open_fail;
    } else {
        rc = diff(&c1, &c2, all);
        ckpt_close(&c2);
    }
    ckpt_close(&c1);
    return rc;
}
