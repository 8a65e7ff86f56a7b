/* ckpt_format.c — the checkpoint's files (ckpt_format.h): manifest JSON in and out (jansson),
 * shard headers, XXH3-64 block checksums (kernels/hash.h; the file checksum's short stream
 * through libxxhash), verified reads of tensor ranges, and the
 * safetensors header shared with zero_export. */
#define _DEFAULT_SOURCE /* preadv */
#include "runtime/ckpt_format.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "kernels/hash.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checkpoint format is little-endian; this code writes memory as it is"
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22 /* Linux 5.14; older kernels answer EINVAL and get pread */
#endif

uint64_t zc_blocks(uint64_t n, uint64_t block_elems) { return (n + block_elems - 1) / block_elems; }

uint64_t zc_slice_bytes(uint64_t n, int arrays) { return n * (uint64_t)arrays * 4u; }

uint64_t zc_hash(const void *p, size_t n) { return zk_hash(p, n); }

void zc_hex(uint64_t h, char *buf) { snprintf(buf, 17, "%016" PRIx64, h); }

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int k = 3; k >= 0; k--)
        v = (v << 8) | p[k];
    return v;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--)
        v = (v << 8) | p[k];
    return v;
}

/* 0 magic[8] | 8 version u32 | 12 rank u32 | 16 world u32 | 20 arrays u32 | 24 id u64 |
 * 32 block_elems u64 | 40 zeros to 64 */
void zc_header_encode(unsigned char *h, int rank, int world, int arrays, uint64_t id,
                      uint64_t block_elems)
{
    memset(h, 0, ZC_HEADER_BYTES);
    memcpy(h, ZC_MAGIC, 8);
    put_u32(h + 8, ZC_VERSION);
    put_u32(h + 12, (uint32_t)rank);
    put_u32(h + 16, (uint32_t)world);
    put_u32(h + 20, (uint32_t)arrays);
    put_u64(h + 24, id);
    put_u64(h + 32, block_elems);
}

/* ---- manifest out ------------------------------------------------------------------------- */

static json_t *hex_string(uint64_t h)
{
    char b[17];
    zc_hex(h, b);
    return json_string(b);
}

static const char *dtype_text(int d)
{
    return d == ZERO_DTYPE_FP32 ? "fp32" : d == ZERO_DTYPE_BF16 ? "bf16" : d == ZERO_DTYPE_FP16 ? "fp16" : "?";
}

char *zc_manifest_dump(const zc_manifest *m, size_t *len)
{
    json_t *root = json_object(), *o;
    if (!root)
        return NULL;
    json_object_set_new(root, "format", json_string(ZC_FORMAT));
    json_object_set_new(root, "version", json_integer(m->version));
    json_object_set_new(root, "id", hex_string(m->id));
    json_object_set_new(root, "producer", json_string(m->producer));
    json_object_set_new(root, "byte_order", json_string("little"));
    json_object_set_new(root, "hash", json_string("xxh3-64"));
    o = json_object();
    json_object_set_new(o, "steps", json_integer(m->prog.steps));
    json_object_set_new(o, "boundaries", json_integer(m->prog.boundaries));
    json_object_set_new(o, "micro_steps", json_integer(m->prog.micro_steps));
    json_object_set_new(o, "skipped", json_integer(m->prog.skipped));
    json_object_set_new(o, "loss_scale", json_real(m->prog.loss_scale));
    json_object_set_new(o, "scale_dynamic", json_boolean(m->prog.scale_dynamic));
    json_object_set_new(o, "hysteresis_left", json_integer(m->prog.hysteresis_left));
    json_object_set_new(o, "last_rescale", json_integer(m->prog.last_rescale));
    json_object_set_new(root, "progress", o);
    json_object_set_new(root, "world", json_integer(m->world));
    json_object_set_new(root, "stage", json_integer(m->stage));
    json_object_set_new(root, "dtype", json_string(dtype_text(m->dtype)));
    json_object_set_new(root, "grad_accum", json_integer(m->grad_accum));
    o = json_object();
    json_object_set_new(o, "name", json_string(m->optimizer));
    json_t *arr = json_array();
    for (int a = 0; a < m->num_arrays; a++)
        json_array_append_new(arr, json_string(m->arrays[a]));
    json_object_set_new(o, "arrays", arr);
    json_object_set_new(root, "optimizer", o);
    json_object_set_new(root, "block_elems", json_integer((json_int_t)m->block_elems));
    o = json_object();
    json_object_set_new(o, "file", json_string(ZC_USER_FILE));
    json_object_set_new(o, "bytes", json_integer((json_int_t)m->user_bytes));
    json_object_set_new(o, "xxh3", hex_string(m->user_hash));
    json_object_set_new(root, "user", o);
    json_t *cfg = m->config_json ? json_loads(m->config_json, 0, NULL) : NULL;
    json_object_set_new(root, "config", cfg ? cfg : json_object());
    arr = json_array();
    for (int i = 0; i < m->num_tensors; i++) {
        const zc_tensor *t = &m->tensors[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        o = json_object();
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "numel", json_integer((json_int_t)t->numel));
        json_object_set_new(o, "module", json_integer(t->module));
        json_object_set_new(o, "no_decay", json_boolean(t->no_decay));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "tensors", arr);
    arr = json_array();
    for (int f = 0; f < m->num_files; f++) {
        o = json_object();
        json_object_set_new(o, "name", json_string(m->files[f].name));
        json_object_set_new(o, "rank", json_integer(m->files[f].rank));
        json_object_set_new(o, "bytes", json_integer((json_int_t)m->files[f].bytes));
        json_object_set_new(o, "xxh3", hex_string(m->files[f].hash));
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "files", arr);
    arr = json_array();
    for (int k = 0; k < m->num_slices; k++) {
        const zc_slice *s = &m->slices[k];
        json_t *h = json_array();
        uint64_t nb = zc_blocks(s->numel, m->block_elems);
        for (uint64_t b = 0; b < nb; b++)
            json_array_append_new(h, hex_string(s->hash[b]));
        o = json_object();
        json_object_set_new(o, "tensor", json_integer(s->tensor));
        json_object_set_new(o, "offset", json_integer((json_int_t)s->offset));
        json_object_set_new(o, "numel", json_integer((json_int_t)s->numel));
        json_object_set_new(o, "file", json_integer(s->file));
        json_object_set_new(o, "at", json_integer((json_int_t)s->at));
        json_object_set_new(o, "xxh3", h);
        json_array_append_new(arr, o);
    }
    json_object_set_new(root, "slices", arr);
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (text && len)
        *len = strlen(text);
    return text;
}

/* ---- manifest in -------------------------------------------------------------------------- */

typedef struct parse_ctx {
    const char *where;
    zr_error *e;
    zero_status s;
} parse_ctx;

static zero_status bad(parse_ctx *p, const char *fmt, const char *field, const char *detail)
{
    if (!p->s) {
        char what[256];
        snprintf(what, sizeof what, fmt, field, detail ? detail : "");
        p->s = zr_error_set(p->e, ZERO_ERR_IO, "checkpoint %s: %s: %s", p->where, ZC_MANIFEST,
                            what);
    }
    return p->s;
}

static json_t *field(parse_ctx *p, json_t *o, const char *name, json_type type)
{
    json_t *v = json_is_object(o) ? json_object_get(o, name) : NULL;
    if (!v) {
        bad(p, "the field \"%s\" is missing%s", name, NULL);
        return NULL;
    }
    if (json_typeof(v) != type && !(type == JSON_REAL && json_is_integer(v)) &&
        !(type == JSON_TRUE && json_is_boolean(v))) {
        bad(p, "the field \"%s\" has the wrong type%s", name, NULL);
        return NULL;
    }
    return v;
}

static int64_t get_int(parse_ctx *p, json_t *o, const char *name, int64_t lo, int64_t hi)
{
    json_t *v = field(p, o, name, JSON_INTEGER);
    if (!v)
        return lo;
    int64_t x = (int64_t)json_integer_value(v);
    if (x < lo || x > hi) {
        char d[96];
        snprintf(d, sizeof d, " (%" PRId64 ", allowed %" PRId64 "..%" PRId64 ")", x, lo, hi);
        bad(p, "the field \"%s\" is out of range%s", name, d);
        return lo;
    }
    return x;
}

static uint64_t get_hex(parse_ctx *p, json_t *v, const char *name)
{
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    uint64_t h = 0;
    if (!s || strlen(s) != 16) {
        bad(p, "the field \"%s\" is not a 16-digit hex checksum%s", name, NULL);
        return 0;
    }
    for (int k = 0; k < 16; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) {
            bad(p, "the field \"%s\" is not a 16-digit hex checksum%s", name, NULL);
            return 0;
        }
        h = (h << 4) | (uint64_t)d;
    }
    return h;
}

static void get_name(parse_ctx *p, json_t *o, const char *name, char *dst, size_t cap)
{
    json_t *v = field(p, o, name, JSON_STRING);
    const char *s = v ? json_string_value(v) : "";
    if (v && (strlen(s) >= cap || !s[0] || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..")))
        bad(p, "the field \"%s\" is not a plain name%s", name, NULL);
    snprintf(dst, cap, "%s", p->s ? "" : s);
}

static int slice_cmp(const void *a, const void *b)
{
    const zc_slice *x = a, *y = b;
    if (x->tensor != y->tensor)
        return x->tensor < y->tensor ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int zc_name_cmp(const void *a, const void *b)
{
    return strcmp(((const zc_name_ix *)a)->name, ((const zc_name_ix *)b)->name);
}

static void parse_tensors(parse_ctx *p, zc_manifest *m, json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n == 0 || n > INT_MAX / 2) {
        bad(p, "the field \"%s\" is empty or too long%s", "tensors", NULL);
        return;
    }
    m->tensors = calloc(n, sizeof *m->tensors);
    if (!m->tensors) {
        p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
        return;
    }
    m->num_tensors = (int)n;
    for (size_t i = 0; i < n && !p->s; i++) {
        json_t *o = json_array_get(arr, i);
        zc_tensor *t = &m->tensors[i];
        json_t *nm = field(p, o, "name", JSON_STRING);
        json_t *sh = field(p, o, "shape", JSON_ARRAY);
        if (p->s)
            return;
        t->name = strdup(json_string_value(nm));
        if (!t->name) {
            p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
            return;
        }
        t->numel = (uint64_t)get_int(p, o, "numel", 1, INT64_MAX);
        t->module = (int)get_int(p, o, "module", 0, INT_MAX);
        json_t *nd = field(p, o, "no_decay", JSON_TRUE);
        t->no_decay = nd && json_is_true(nd);
        size_t nd_ = json_array_size(sh);
        if (nd_ > ZC_MAX_DIMS) {
            bad(p, "tensor \"%s\" has more than 8 dimensions%s", t->name, NULL);
            return;
        }
        t->ndim = (int)nd_;
        uint64_t prod = 1;
        int over = 0;
        for (int d = 0; d < t->ndim; d++) {
            json_t *v = json_array_get(sh, (size_t)d);
            int64_t x = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
            if (x < 1) {
                bad(p, "tensor \"%s\" has a bad shape%s", t->name, NULL);
                return;
            }
            t->shape[d] = x;
            over |= prod > UINT64_MAX / (uint64_t)x;
            prod *= (uint64_t)x;
        }
        if (t->ndim > 0 && (over || prod != t->numel))
            bad(p, "tensor \"%s\": its shape does not multiply to its numel%s", t->name, NULL);
    }
    if (p->s)
        return;
    zc_name_ix *ix = malloc(n * sizeof *ix);
    if (!ix) {
        p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
        return;
    }
    for (size_t i = 0; i < n; i++)
        ix[i] = (zc_name_ix){m->tensors[i].name, (int)i};
    qsort(ix, n, sizeof *ix, zc_name_cmp);
    for (size_t i = 1; i < n && !p->s; i++)
        if (!strcmp(ix[i].name, ix[i - 1].name))
            bad(p, "the tensor name \"%s\" appears twice%s", ix[i].name, NULL);
    free(ix);
}

static void parse_files(parse_ctx *p, zc_manifest *m, json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n == 0 || n > 1u << 24) {
        bad(p, "the field \"%s\" is empty or too long%s", "files", NULL);
        return;
    }
    m->files = calloc(n, sizeof *m->files);
    if (!m->files) {
        p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
        return;
    }
    m->num_files = (int)n;
    for (size_t f = 0; f < n && !p->s; f++) {
        json_t *o = json_array_get(arr, f);
        zc_file *x = &m->files[f];
        get_name(p, o, "name", x->name, sizeof x->name);
        x->rank = (int)get_int(p, o, "rank", 0, INT_MAX);
        x->bytes = (uint64_t)get_int(p, o, "bytes", ZC_HEADER_BYTES, INT64_MAX);
        json_t *h = field(p, o, "xxh3", JSON_STRING);
        if (h)
            x->hash = get_hex(p, h, "xxh3");
    }
}

static void parse_slices(parse_ctx *p, zc_manifest *m, json_t *arr)
{
    size_t n = json_array_size(arr);
    if (n == 0 || n > INT_MAX / 2) {
        bad(p, "the field \"%s\" is empty or too long%s", "slices", NULL);
        return;
    }
    m->slices = calloc(n, sizeof *m->slices);
    if (!m->slices) {
        p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
        return;
    }
    m->num_slices = (int)n;
    for (size_t k = 0; k < n && !p->s; k++) {
        json_t *o = json_array_get(arr, k);
        zc_slice *s = &m->slices[k];
        s->tensor = (int)get_int(p, o, "tensor", 0, m->num_tensors - 1);
        s->file = (int)get_int(p, o, "file", 0, m->num_files - 1);
        s->offset = (uint64_t)get_int(p, o, "offset", 0, INT64_MAX);
        s->numel = (uint64_t)get_int(p, o, "numel", 1, INT64_MAX);
        s->at = (uint64_t)get_int(p, o, "at", ZC_HEADER_BYTES, INT64_MAX);
        json_t *h = field(p, o, "xxh3", JSON_ARRAY);
        if (p->s)
            return;
        const zc_tensor *t = &m->tensors[s->tensor];
        const zc_file *f = &m->files[s->file];
        if (s->offset > t->numel || s->numel > t->numel - s->offset)
            return (void)bad(p, "a slice of tensor \"%s\" lies outside it%s", t->name, NULL);
        if (s->numel > (UINT64_MAX / 16) / (uint64_t)m->num_arrays ||
            s->at > f->bytes || zc_slice_bytes(s->numel, m->num_arrays) > f->bytes - s->at)
            return (void)bad(p, "a slice of tensor \"%s\" lies outside its file %s", t->name,
                             f->name);
        uint64_t nb = zc_blocks(s->numel, m->block_elems);
        if (json_array_size(h) != nb)
            return (void)bad(p, "a slice of tensor \"%s\" has the wrong number of checksums%s",
                             t->name, NULL);
        s->hash = malloc(nb * sizeof *s->hash);
        if (!s->hash) {
            p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
            return;
        }
        for (uint64_t b = 0; b < nb && !p->s; b++)
            s->hash[b] = get_hex(p, json_array_get(h, b), "xxh3");
    }
    if (p->s)
        return;
    /* every tensor covered exactly once, in order */
    qsort(m->slices, n, sizeof *m->slices, slice_cmp);
    m->tensor_slice = calloc((size_t)m->num_tensors + 1, sizeof *m->tensor_slice);
    if (!m->tensor_slice) {
        p->s = zr_error_set(p->e, ZERO_ERR_SYSTEM, "out of host memory reading a manifest");
        return;
    }
    size_t k = 0;
    for (int t = 0; t < m->num_tensors && !p->s; t++) {
        m->tensor_slice[t] = (int)k;
        uint64_t next = 0;
        for (; k < n && m->slices[k].tensor == t; k++) {
            if (m->slices[k].offset != next)
                return (void)bad(p, "the slices of tensor \"%s\" overlap or leave a gap%s",
                                 m->tensors[t].name, NULL);
            next += m->slices[k].numel;
        }
        if (next != m->tensors[t].numel)
            return (void)bad(p, "the slices of tensor \"%s\" do not cover it%s",
                             m->tensors[t].name, NULL);
    }
    m->tensor_slice[m->num_tensors] = (int)k;
}

zero_status zc_manifest_parse(zc_manifest *m, const char *json, size_t len, const char *where,
                              zr_error *e)
{
    memset(m, 0, sizeof *m);
    parse_ctx p = {where, e, ZERO_OK};
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        char d[200];
        snprintf(d, sizeof d, " (line %d: %s)", je.line, je.text);
        bad(&p, "not valid JSON%s%s", "", d);
        return p.s;
    }
    json_t *v = field(&p, root, "format", JSON_STRING);
    if (v && strcmp(json_string_value(v), ZC_FORMAT) != 0)
        bad(&p, "the field \"%s\" is not \"" ZC_FORMAT "\"%s", "format", NULL);
    m->version = (int)get_int(&p, root, "version", 0, INT_MAX);
    if (!p.s && m->version != ZC_VERSION) {
        char d[96];
        snprintf(d, sizeof d, " %d; this libzero reads version %d", m->version, ZC_VERSION);
        bad(&p, "format %s%s", "version", d);
    }
    v = field(&p, root, "id", JSON_STRING);
    if (v)
        m->id = get_hex(&p, v, "id");
    v = field(&p, root, "producer", JSON_STRING);
    if (v)
        snprintf(m->producer, sizeof m->producer, "%s", json_string_value(v));
    v = field(&p, root, "byte_order", JSON_STRING);
    if (v && strcmp(json_string_value(v), "little") != 0)
        bad(&p, "the field \"%s\" is not \"little\"%s", "byte_order", NULL);
    v = field(&p, root, "hash", JSON_STRING);
    if (v && strcmp(json_string_value(v), "xxh3-64") != 0)
        bad(&p, "the field \"%s\" is not \"xxh3-64\"%s", "hash", NULL);
    json_t *pr = field(&p, root, "progress", JSON_OBJECT);
    if (pr) {
        m->prog.steps = get_int(&p, pr, "steps", 0, INT64_MAX);
        m->prog.boundaries = get_int(&p, pr, "boundaries", 0, INT64_MAX);
        m->prog.micro_steps = get_int(&p, pr, "micro_steps", 0, INT64_MAX);
        m->prog.skipped = get_int(&p, pr, "skipped", 0, INT64_MAX);
        json_t *ls = field(&p, pr, "loss_scale", JSON_REAL);
        m->prog.loss_scale = ls ? json_number_value(ls) : 1.0;
        if (!p.s && !(m->prog.loss_scale > 0.0 && m->prog.loss_scale <= (double)FLT_MAX))
            bad(&p, "the field \"%s\" is out of range%s", "loss_scale", NULL);
        json_t *dy = field(&p, pr, "scale_dynamic", JSON_TRUE);
        m->prog.scale_dynamic = dy && json_is_true(dy);
        m->prog.hysteresis_left = (int)get_int(&p, pr, "hysteresis_left", 0, 1 << 20);
        m->prog.last_rescale = get_int(&p, pr, "last_rescale", -1, INT64_MAX);
        if (!p.s && (m->prog.steps > INT64_MAX - m->prog.skipped ||
                     m->prog.steps + m->prog.skipped != m->prog.boundaries ||
                     m->prog.micro_steps < m->prog.boundaries))
            bad(&p, "the fields \"%s\" disagree (steps + skipped != boundaries, or fewer "
                "micro_steps than boundaries)%s", "progress",
                NULL);
    }
    m->world = (int)get_int(&p, root, "world", 1, 1 << 24);
    m->stage = (int)get_int(&p, root, "stage", 0, 3);
    v = field(&p, root, "dtype", JSON_STRING);
    m->dtype = -1;
    for (int d = 0; v && d < 3; d++)
        if (!strcmp(json_string_value(v), dtype_text(d)))
            m->dtype = d;
    if (v && m->dtype < 0)
        bad(&p, "the field \"%s\" is not fp32, bf16 or fp16%s", "dtype", NULL);
    m->grad_accum = (int)get_int(&p, root, "grad_accum", 1, INT_MAX);
    json_t *op = field(&p, root, "optimizer", JSON_OBJECT);
    if (op) {
        get_name(&p, op, "name", m->optimizer, sizeof m->optimizer);
        json_t *arr = field(&p, op, "arrays", JSON_ARRAY);
        size_t na = arr ? json_array_size(arr) : 0;
        if (arr && (na < 1 || na > ZC_MAX_ARRAYS))
            bad(&p, "the field \"%s\" must list 1 to 3 arrays%s", "arrays", NULL);
        for (size_t a = 0; !p.s && a < na; a++) {
            json_t *x = json_array_get(arr, a);
            if (!json_is_string(x) || strlen(json_string_value(x)) >= ZC_NAME_MAX)
                bad(&p, "the field \"%s\" must hold array names%s", "arrays", NULL);
            else
                snprintf(m->arrays[a], ZC_NAME_MAX, "%s", json_string_value(x));
        }
        m->num_arrays = (int)na;
    }
    m->block_elems = (uint64_t)get_int(&p, root, "block_elems", 1, 1 << 22);
    json_t *u = field(&p, root, "user", JSON_OBJECT);
    if (u) {
        m->user_bytes = (uint64_t)get_int(&p, u, "bytes", 0, (int64_t)1 << 30); /* zero_save's cap */
        v = field(&p, u, "xxh3", JSON_STRING);
        if (v)
            m->user_hash = get_hex(&p, v, "xxh3");
    }
    json_t *cfg = field(&p, root, "config", JSON_OBJECT);
    if (cfg)
        m->config_json = json_dumps(cfg, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_t *ta = field(&p, root, "tensors", JSON_ARRAY);
    json_t *fa = field(&p, root, "files", JSON_ARRAY);
    json_t *sa = field(&p, root, "slices", JSON_ARRAY);
    if (!p.s)
        parse_tensors(&p, m, ta);
    if (!p.s)
        parse_files(&p, m, fa);
    /* one file per saving rank, file f holding rank f's slices */
    for (int f = 0; !p.s && f < m->num_files; f++)
        if (m->files[f].rank != f || m->num_files != m->world)
            bad(&p, "the field \"%s\" must list one file per rank of the saving world, in rank "
                "order%s", "files", NULL);
    if (!p.s)
        parse_slices(&p, m, sa);
    json_decref(root);
    if (p.s)
        zc_manifest_free(m);
    return p.s;
}

void zc_manifest_free(zc_manifest *m)
{
    for (int i = 0; m->tensors && i < m->num_tensors; i++)
        free(m->tensors[i].name);
    for (int k = 0; m->slices && k < m->num_slices; k++)
        free(m->slices[k].hash);
    free(m->tensors);
    free(m->files);
    free(m->slices);
    free(m->tensor_slice);
    free(m->config_json);
    memset(m, 0, sizeof *m);
}

int zc_find_tensor(const zc_manifest *m, const char *name)
{
    for (int i = 0; i < m->num_tensors; i++)
        if (!strcmp(m->tensors[i].name, name))
            return i;
    return -1;
}

/* ---- files -------------------------------------------------------------------------------- */

/* pread until n bytes or end of file; the bytes read, or -1 with errno. */
static ssize_t read_full(int fd, void *buf, size_t n, uint64_t at)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (char *)buf + got, n - got, (off_t)(at + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

zero_status zc_read_file(const char *path, size_t max, char **out, size_t *len, zr_error *e)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return zr_error_set(e, ZERO_ERR_IO, "cannot read %s: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return zr_error_set(e, ZERO_ERR_IO, "cannot read %s: %s", path,
                            S_ISREG(st.st_mode) ? "larger than expected" : "not a regular file");
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return zr_error_set(e, ZERO_ERR_SYSTEM, "out of host memory reading %s", path);
    }
    ssize_t r = read_full(fd, buf, n, 0);
    int err = errno;
    close(fd);
    if (r != (ssize_t)n) {
        free(buf);
        return zr_error_set(e, ZERO_ERR_IO, "cannot read %s: %s", path,
                            r < 0 ? strerror(err) : "it changed while being read");
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return ZERO_OK;
}

zero_status zc_reader_open(zc_reader *r, const zc_manifest *m, const char *dir, int io,
                           zr_error *e)
{
    memset(r, 0, sizeof *r);
    r->m = m;
    r->io = io == ZC_IO_PREAD ? ZC_IO_PREAD : ZC_IO_MMAP;
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    r->fd = malloc((size_t)m->num_files * sizeof *r->fd);
    r->map = calloc((size_t)m->num_files ? (size_t)m->num_files : 1, sizeof *r->map);
    for (int f = 0; r->fd && f < m->num_files; f++)
        r->fd[f] = -1;
    uint64_t block = zc_slice_bytes(m->block_elems, m->num_arrays);
    /* one block per read (3 MiB with the default block size): a destination that stays in the
     * last-level cache while it is hashed; larger reads measured slower */
    r->cap = (size_t)block;
    r->buf = malloc(r->cap);
    if (!r->fd || !r->map || !r->buf) {
        zc_reader_close(r);
        return zr_error_set(e, ZERO_ERR_SYSTEM, "out of host memory reading checkpoint %s", dir);
    }
    for (int f = 0; f < m->num_files; f++)
        r->fd[f] = -1;
    return ZERO_OK;
}

void zc_reader_close(zc_reader *r)
{
    for (int f = 0; r->fd && r->m && f < r->m->num_files; f++) {
        if (r->map && r->map[f])
            munmap(r->map[f], (size_t)r->m->files[f].bytes);
        if (r->fd[f] >= 0)
            close(r->fd[f]);
    }
    free(r->fd);
    free(r->map);
    r->map = NULL;
    free(r->buf);
    r->fd = NULL;
    r->buf = NULL;
}

static zero_status open_file(zc_reader *r, int f, zr_error *e)
{
    if (r->fd[f] >= 0)
        return ZERO_OK;
    const zc_file *x = &r->m->files[f];
    char path[4096 + ZC_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s/%s", r->dir, x->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: shard file %s: %s", r->dir, x->name,
                            strerror(err));
    }
    unsigned char h[ZC_HEADER_BYTES];
    const char *why = NULL;
    char d[160];
    if ((uint64_t)st.st_size != x->bytes) {
        snprintf(d, sizeof d, "it is %" PRIu64 " bytes, the manifest says %" PRIu64 "%s",
                 (uint64_t)st.st_size, x->bytes,
                 (uint64_t)st.st_size < x->bytes ? " (truncated)" : "");
        why = d;
    } else if (read_full(fd, h, sizeof h, 0) != (ssize_t)sizeof h)
        why = "its header cannot be read";
    else if (memcmp(h, ZC_MAGIC, 8) != 0)
        why = "its header does not start with " ZC_MAGIC;
    else if (get_u32(h + 8) != ZC_VERSION)
        why = "its header has another format version";
    else if (get_u64(h + 24) != r->m->id)
        why = "it belongs to another checkpoint (its id differs from the manifest's)";
    else if (get_u32(h + 12) != (uint32_t)x->rank || get_u32(h + 16) != (uint32_t)r->m->world ||
             get_u32(h + 20) != (uint32_t)r->m->num_arrays || get_u64(h + 32) != r->m->block_elems)
        why = "its header disagrees with the manifest (rank, world, arrays or block size)";
    else {
        int nonzero = 0;
        for (int k = 40; k < ZC_HEADER_BYTES; k++)
            nonzero |= h[k];
        if (nonzero)
            why = "its header's reserved bytes (40-63) are not zero";
    }
    if (why) {
        close(fd);
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: shard file %s: %s", r->dir, x->name,
                            why);
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL); /* a larger readahead window */
    r->fd[f] = fd;
    r->opened++;
    if (r->io == ZC_IO_MMAP) { /* mapped when the kernel can populate ranges with an error return */
        void *p = mmap(NULL, (size_t)x->bytes, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED && madvise(p, 1, MADV_POPULATE_READ) == 0) {
            (void)madvise(p, (size_t)x->bytes, MADV_SEQUENTIAL);
            r->map[f] = p;
            r->mapped++;
        } else if (p != MAP_FAILED)
            munmap(p, (size_t)x->bytes);
    }
    return ZERO_OK;
}

/* With a mapping: bytes [at, at + n) of file f made resident (0), or -1 with errno: EIO where
 * the kernel answers EFAULT (an access would have raised SIGBUS: a read error, or the file
 * shrank), 0 for a range past the end of the file as opened. */
static int populate(zc_reader *r, int f, uint64_t at, uint64_t n)
{
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), a0 = at & ~(page - 1);
    if (at + n > r->m->files[f].bytes) {
        errno = 0;
        return -1;
    }
    for (int tries = 0;; tries++) {
        if (madvise(r->map[f] + a0, (size_t)(at + n - a0), MADV_POPULATE_READ) == 0)
            return 0;
        if (errno == EFAULT)
            errno = EIO;
        if ((errno != EINTR && errno != EAGAIN) || tries == 8)
            return -1;
    }
}

/* preadv until every iovec is full or the file ends; the bytes read, or -1 with errno. */
static ssize_t readv_full(int fd, struct iovec *iov, int n, uint64_t at)
{
    size_t got = 0;
    while (n > 0) {
        ssize_t r = preadv(fd, iov, n, (off_t)at);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
        at += (uint64_t)r;
        while (n > 0 && (size_t)r >= iov->iov_len) { /* the filled ones */
            r -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + r;
            iov->iov_len -= (size_t)r;
        }
    }
    return (ssize_t)got;
}

/* Bytes [at, at + n) of open file f to hash in place: in the mapping, or read into r->buf (n at
 * most r->cap). NULL when they cannot all be read (*got: -1 with errno, or the bytes read). */
static const unsigned char *view(zc_reader *r, int f, size_t n, uint64_t at, ssize_t *got)
{
    if (!r->map[f]) {
        *got = read_full(r->fd[f], r->buf, n, at);
        return *got == (ssize_t)n ? r->buf : NULL;
    }
    if (populate(r, f, at, n) != 0) {
        *got = errno ? -1 : 0;
        return NULL;
    }
    *got = (ssize_t)n;
    return r->map[f] + at;
}

static zero_status short_read(zc_reader *r, const zc_slice *s, int t, ssize_t got, uint64_t at,
                              zr_error *e)
{
    return zr_error_set(e, ZERO_ERR_IO,
                        "checkpoint %s: shard file %s: tensor \"%s\": %s at byte %" PRIu64, r->dir,
                        r->m->files[s->file].name, r->m->tensors[t].name,
                        got < 0 ? strerror(errno) : "short read (truncated?)", at);
}

static zero_status bad_block(zc_reader *r, const zc_slice *s, int t, uint64_t q, uint64_t nb,
                             zr_error *e)
{
    uint64_t q0 = q * r->m->block_elems;
    return zr_error_set(e, ZERO_ERR_IO,
                        "checkpoint %s: shard file %s: tensor \"%s\", elements %" PRIu64
                        "..%" PRIu64 " (block %" PRIu64 " of its slice at byte %" PRIu64
                        "): checksum mismatch: the data is corrupt",
                        r->dir, r->m->files[s->file].name, r->m->tensors[t].name,
                        s->offset + q0, s->offset + q0 + nb - 1, q, s->at);
}

enum {
    ZC_RUN_BLOCKS = 32,           /* whole blocks read together (one preadv) */
    ZC_PARALLEL_BYTES = 4 << 20,  /* fewer bytes than this are not shared among threads */
};

/* Blocks kb..ke of slice s, each wholly inside the range and every array wanted, straight into
 * the destinations (array by array): with pread, one preadv for them all, then the hashes; from
 * the mapping, block by block on OpenMP's threads, each made resident just before it is copied
 * and hashed as it landed, while it is in cache. A block's hash is streamed over its pieces
 * (XXH3's streaming digest equals the one-shot hash of the block's bytes). The first block in
 * file order that cannot be read or does not match is the one reported. */
static zero_status read_whole_blocks(zc_reader *r, const zc_slice *s, int t, uint64_t kb,
                                     uint64_t ke, uint64_t first, float *const *out, zr_error *e)
{
    const uint64_t B = r->m->block_elems, A = (uint64_t)r->m->num_arrays, bb = B * A * 4;
    struct iovec iov[ZC_RUN_BLOCKS * ZC_MAX_ARRAYS];
    int n = 0;
    uint64_t bytes = 0;
    for (uint64_t q = kb; q <= ke; q++)
        for (uint64_t ar = 0; ar < A; ar++) {
            iov[n].iov_base = out[ar] + (s->offset + q * B - first);
            iov[n++].iov_len = (size_t)B * 4;
            bytes += B * 4;
        }
    const uint64_t at = s->at + kb * bb;
    const unsigned char *src = r->map[s->file];
    if (!src) {
        ssize_t got = readv_full(r->fd[s->file], iov, n, at);
        if (got != (ssize_t)bytes)
            return short_read(r, s, t, got, at, e);
    }
    const long nq = (long)(ke - kb + 1);
    long badq = nq, failq = nq;
#pragma omp parallel for schedule(static) reduction(min : badq, failq) \
    if (nq > 1 && bytes >= ZC_PARALLEL_BYTES)
    for (long i = 0; i < nq; i++) {
        const uint64_t q = kb + (uint64_t)i;
        if (src) {
            if (populate(r, s->file, at + (uint64_t)i * bb, bb) != 0) {
                failq = i < failq ? i : failq;
                continue;
            }
            for (uint64_t ar = 0; ar < A; ar++)
                memcpy(iov[(uint64_t)i * A + ar].iov_base, src + at + (uint64_t)i * bb + ar * B * 4,
                       (size_t)B * 4);
        }
        zk_hash_state st;
        zk_hash_reset(&st);
        for (uint64_t ar = 0; ar < A; ar++)
            zk_hash_update(&st, out[ar] + (s->offset + q * B - first), (size_t)B * 4);
        if (zk_hash_digest(&st) != s->hash[q])
            badq = i < badq ? i : badq;
    }
    if (failq < badq) { /* that block again, on this thread, for its errno */
        const uint64_t fat = at + (uint64_t)failq * bb;
        int again = populate(r, s->file, fat, bb);
        if (again == 0) /* it went through this time: the first failure was an I/O error */
            errno = EIO;
        return short_read(r, s, t, again != 0 && !errno ? 0 : -1, fat, e);
    }
    if (badq < nq)
        return bad_block(r, s, t, kb + (uint64_t)badq, B, e);
    r->bytes_read += bytes;
    return ZERO_OK;
}

zero_status zc_read(zc_reader *r, int t, uint64_t first, uint64_t count, float *const *out,
                    zr_error *e)
{
    const zc_manifest *m = r->m;
    const uint64_t B = m->block_elems, A = (uint64_t)m->num_arrays, end = first + count;
    int all = 1, some = 0;
    for (uint64_t ar = 0; ar < A; ar++) {
        all &= out[ar] != NULL;
        some |= out[ar] != NULL;
    }
    int lo = m->tensor_slice[t], hi = m->tensor_slice[t + 1];
    while (lo < hi) { /* first slice whose end is past `first` */
        int mid = lo + (hi - lo) / 2;
        if (m->slices[mid].offset + m->slices[mid].numel <= first)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (int k = lo; k < m->tensor_slice[t + 1] && m->slices[k].offset < end; k++) {
        const zc_slice *s = &m->slices[k];
        ZR_CHECK(open_file(r, s->file, e));
        uint64_t a = first > s->offset ? first - s->offset : 0; /* slice coordinates */
        uint64_t b = end - s->offset < s->numel ? end - s->offset : s->numel;
        uint64_t k0 = a / B, k1 = (b - 1) / B;
        const uint64_t per = r->cap / (B * A * 4); /* whole blocks per buffered read, >= 1 */
        for (uint64_t kb = k0; kb <= k1;) {
            /* full blocks inside [a, b): straight into the destinations */
            uint64_t ke = kb;
            while (all && ke <= k1 && ke - kb < ZC_RUN_BLOCKS && ke * B >= a &&
                   (ke + 1) * B <= b)
                ke++;
            if (ke > kb) {
                ZR_CHECK(read_whole_blocks(r, s, t, kb, ke - 1, first, out, e));
                kb = ke;
                continue;
            }
            /* an edge block, or arrays not wanted: through the buffer */
            ke = kb + per - 1 < k1 ? kb + per - 1 : k1;
            uint64_t e0 = kb * B, e1 = (ke + 1) * B < s->numel ? (ke + 1) * B : s->numel;
            uint64_t at = s->at + e0 * A * 4, bytes = (e1 - e0) * A * 4;
            /* nothing to copy out: hashed in place; else out of a mapping into the buffer first,
             * so that what is hashed is what is taken */
            ssize_t got;
            const unsigned char *p = view(r, s->file, (size_t)bytes, at, &got);
            if (!p)
                return short_read(r, s, t, got, at, e);
            if (some && p != r->buf)
                p = memcpy(r->buf, p, (size_t)bytes);
            r->bytes_read += bytes;
            for (uint64_t q = kb; q <= ke; q++) {
                uint64_t q0 = q * B, nb = s->numel - q0 < B ? s->numel - q0 : B;
                if (zc_hash(p, (size_t)(nb * A * 4)) != s->hash[q])
                    return bad_block(r, s, t, q, nb, e);
                uint64_t c0 = a > q0 ? a : q0, c1 = b < q0 + nb ? b : q0 + nb;
                for (uint64_t ar = 0; c0 < c1 && ar < A; ar++)
                    if (out[ar])
                        memcpy(out[ar] + (s->offset + c0 - first), p + (ar * nb + (c0 - q0)) * 4,
                               (size_t)(c1 - c0) * 4);
                p += nb * A * 4;
            }
            kb = ke + 1;
        }
    }
    return ZERO_OK;
}

typedef struct at_ix {
    uint64_t at;
    int k;
} at_ix;

static int at_cmp(const void *a, const void *b)
{
    const at_ix *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* One shard file, as write_shard (runtime/ckpt.c) defines its checksum: XXH3-64 over the 64
 * header bytes, then the hash of every block, as 8 little-endian bytes, in file order. The block
 * hashes are those of the data as read, each also checked against the manifest's; the slices of
 * the file (ix: n of them, sorted by `at`) must tile it from the header to its end. */
static zero_status verify_file(zc_reader *r, int f, const at_ix *ix, int n, XXH3_state_t *fh,
                               zr_error *e)
{
    const zc_manifest *m = r->m;
    const zc_file *x = &m->files[f];
    const uint64_t B = m->block_elems, A = (uint64_t)m->num_arrays;
    ZR_CHECK(open_file(r, f, e));
    unsigned char h[ZC_HEADER_BYTES];
    if (read_full(r->fd[f], h, sizeof h, 0) != (ssize_t)sizeof h)
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: shard file %s: its header cannot be "
                            "read", r->dir, x->name);
    r->bytes_read += sizeof h;
    XXH3_64bits_reset(fh);
    XXH3_64bits_update(fh, h, sizeof h);
    uint64_t next = ZC_HEADER_BYTES; /* where the next slice must start */
    for (int i = 0; i < n; i++) {
        const zc_slice *s = &m->slices[ix[i].k];
        const char *tn = m->tensors[s->tensor].name;
        if (s->at != next)
            return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: shard file %s: the slice of tensor "
                                "\"%s\" at byte %" PRIu64 " %s (expected at byte %" PRIu64 ")",
                                r->dir, x->name, tn, s->at,
                                s->at < next ? "overlaps the one before" : "leaves a gap",
                                next);
        const uint64_t nbl = zc_blocks(s->numel, B);
        const uint64_t per = r->cap / (B * A * 4); /* whole blocks per read, >= 1 */
        for (uint64_t kb = 0; kb < nbl; kb += per) {
            uint64_t ke = kb + per < nbl ? kb + per : nbl; /* blocks [kb, ke) */
            uint64_t e0 = kb * B, e1 = ke * B < s->numel ? ke * B : s->numel;
            uint64_t at = s->at + e0 * A * 4, bytes = (e1 - e0) * A * 4;
            ssize_t got;
            const unsigned char *p = view(r, f, (size_t)bytes, at, &got);
            if (!p)
                return zr_error_set(e, ZERO_ERR_IO,
                                    "checkpoint %s: shard file %s: tensor \"%s\": %s at byte %" PRIu64,
                                    r->dir, x->name, tn,
                                    got < 0 ? strerror(errno) : "short read (truncated?)", at);
            r->bytes_read += bytes;
            for (uint64_t q = kb; q < ke; q++) {
                uint64_t q0 = q * B, nb = s->numel - q0 < B ? s->numel - q0 : B;
                uint64_t bh = zc_hash(p, (size_t)(nb * A * 4));
                if (bh != s->hash[q])
                    return zr_error_set(e, ZERO_ERR_IO,
                                        "checkpoint %s: shard file %s: tensor \"%s\", elements "
                                        "%" PRIu64 "..%" PRIu64 " (block %" PRIu64 " of its slice "
                                        "at byte %" PRIu64 "): checksum mismatch: the data is "
                                        "corrupt",
                                        r->dir, x->name, tn, s->offset + q0,
                                        s->offset + q0 + nb - 1, q, s->at);
                unsigned char le[8];
                for (int k = 0; k < 8; k++)
                    le[k] = (unsigned char)(bh >> (8 * k));
                XXH3_64bits_update(fh, le, 8);
                p += nb * A * 4;
            }
        }
        next = s->at + zc_slice_bytes(s->numel, m->num_arrays);
    }
    if (next != x->bytes)
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: shard file %s: bytes %" PRIu64 "..%"
                            PRIu64 " belong to no slice", r->dir, x->name, next, x->bytes - 1);
    if (XXH3_64bits_digest(fh) != x->hash)
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: shard file %s: file checksum "
                            "mismatch (header and block checksums): the file or the manifest is "
                            "corrupt", r->dir, x->name);
    return ZERO_OK;
}

zero_status zc_verify_files(zc_reader *r, zr_error *e)
{
    const zc_manifest *m = r->m;
    at_ix *ix = malloc((size_t)m->num_slices * sizeof *ix);
    XXH3_state_t *fh = XXH3_createState();
    zero_status s = ZERO_OK;
    if (!ix || !fh)
        s = zr_error_set(e, ZERO_ERR_SYSTEM, "out of host memory verifying checkpoint %s", r->dir);
    for (int f = 0; f < m->num_files && !s; f++) {
        int n = 0;
        for (int k = 0; k < m->num_slices; k++)
            if (m->slices[k].file == f)
                ix[n++] = (at_ix){m->slices[k].at, k};
        qsort(ix, (size_t)n, sizeof *ix, at_cmp);
        s = verify_file(r, f, ix, n, fh, e);
    }
    XXH3_freeState(fh);
    free(ix);
    return s;
}

/* ---- which checkpoint ------------------------------------------------------------------------ */

static int has_manifest(const char *dir)
{
    char p[4096 + 32];
    struct stat st;
    snprintf(p, sizeof p, "%s/" ZC_MANIFEST, dir);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

zero_status zc_resolve(const char *path, char *out, size_t cap, zr_error *e)
{
    if (strlen(path) + 40 >= cap || strlen(path) + 40 >= 4096)
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint path %.80s... is too long", path);
    if (has_manifest(path)) {
        snprintf(out, cap, "%s", path);
        return ZERO_OK;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: %s", path,
                            stat(path, &st) != 0 ? strerror(errno) : "not a directory");
    char latest[4096 + 16];
    snprintf(latest, sizeof latest, "%s/" ZC_LATEST, path);
    char *text = NULL;
    size_t len = 0;
    zr_error ignore;
    if (zc_read_file(latest, 1024, &text, &len, &ignore) == ZERO_OK) {
        while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
            text[--len] = 0;
        int plain = len > 0 && !strchr(text, '/') && strcmp(text, ".") && strcmp(text, "..");
        if (plain)
            snprintf(out, cap, "%s/%s", path, text);
        free(text);
        if (!plain)
            return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: its %s file does not name a "
                                "checkpoint directory", path, ZC_LATEST);
        if (has_manifest(out))
            return ZERO_OK;
        /* latest names a checkpoint that is not there (a save that replaced a checkpoint of the
         * same step without an atomic exchange was stopped between its renames): the newest
         * complete one below */
    }
    /* no latest: the newest step-* directory with a manifest */
    DIR *d = opendir(path);
    if (!d)
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: %s", path, strerror(errno));
    long long best = -1;
    struct dirent *de;
    char cand[4096 + 300];
    while ((de = readdir(d)) != NULL) {
        long long n;
        char tail;
        if (sscanf(de->d_name, "step-%lld%c", &n, &tail) != 1 || n < 0 || n <= best)
            continue;
        snprintf(cand, sizeof cand, "%s/%s", path, de->d_name);
        if (has_manifest(cand)) {
            best = n;
            snprintf(out, cap, "%s", cand);
        }
    }
    closedir(d);
    if (best < 0)
        return zr_error_set(e, ZERO_ERR_IO, "checkpoint %s: no %s there, no %s file and no "
                            "step-* directory with one", path, ZC_MANIFEST, ZC_LATEST);
    return ZERO_OK;
}

/* ---- safetensors header ------------------------------------------------------------------ */

static void st_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

unsigned char *zc_safetensors_header(const zc_st_entry *t, int n, size_t *len)
{
    char *buf = NULL;
    size_t jl = 0;
    FILE *h = open_memstream(&buf, &jl);
    if (!h)
        return NULL;
    fprintf(h, "{\"__metadata__\":{\"format\":\"pt\",\"producer\":\"libzero\"}");
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = t[i].numel * 4;
        fputc(',', h);
        st_string(h, t[i].name);
        fprintf(h, ":{\"dtype\":\"F32\",\"shape\":[");
        if (t[i].ndim == 0 || !t[i].shape)
            fprintf(h, "%" PRIu64, t[i].numel);
        for (int d = 0; t[i].shape && d < t[i].ndim; d++)
            fprintf(h, "%s%" PRId64, d ? "," : "", t[i].shape[d]);
        fprintf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
        off += bytes;
    }
    fputc('}', h);
    while ((ftell(h) % 8) != 0)
        fputc(' ', h);
    if (fclose(h) != 0) {
        free(buf);
        return NULL;
    }
    unsigned char *out = malloc(jl + 8);
    if (out) {
        put_u64(out, (uint64_t)jl);
        memcpy(out + 8, buf, jl);
        *len = jl + 8;
    }
    free(buf);
    return out;
}
