/* test_ckpt — the error paths of zero_save / zero_load (run under mpirun -np 1, 2 and 3): every
 * refused call returns the same status on every rank, names what is wrong, and leaves the context
 * exactly as it was (the master's digest, the step and skipped counts, and the optimizer's state:
 * one more step afterwards gives the digest of a reference context that never saw the call).
 *
 * One small model of six tensors in four modules (bucket 4096 bytes: several chunks), host
 * backend, stage 2 fp32, trained 3 steps with gradients written here (they depend on the step,
 * the tensor, the element and the rank), saved into <root>/main with a different user blob on
 * every rank. Then, case by case:
 *  - each shard file: a byte flipped in its data (ZERO_ERR_IO naming the file and the tensor), in
 *    each header field (magic, version, rank, world, arrays, id, block size, reserved bytes), the
 *    file truncated, lengthened, deleted;
 *  - manifest.json deleted, cut short, not JSON, "version" 2, another "format", a field missing,
 *    a file's "bytes" off by one either way, a block checksum changed, another optimizer; user.bin
 *    flipped, truncated, deleted; `latest` naming nothing or outside the directory: ZERO_ERR_IO
 *    (the optimizer: ZERO_ERR_INVALID);
 *  - a context of another model (a tensor missing, an extra one, another shape with the same numel,
 *    another numel): ZERO_ERR_INVALID naming the tensor;
 *  - the user blob larger than user_cap (ZERO_ERR_INVALID, *user_len = its size), user NULL with
 *    cap 0 (fine), user NULL with a cap (ZERO_ERR_INVALID);
 *  - zero_save / zero_load inside an accumulation window (grad_accum 2): ZERO_ERR_STATE, and the
 *    window then ends as if they had not been called;
 *  - NULL or empty dir / path, user NULL with a length: ZERO_ERR_INVALID; dir a regular file,
 *    path a directory without a checkpoint, a path that does not exist, a shard file: ZERO_ERR_IO;
 *  - what must work: a fresh context loads the same digest and counts, rank 0's blob reaches every
 *    rank, a second save at the same step replaces the first (`latest` names it, no temporary
 *    directory left), ZERO_CKPT_KEEP=2 keeps the newest two of four, the root (through `latest`,
 *    and without it the newest step-*) and the step directory both load, contexts of stage 0/1/3
 *    and bf16/fp16 load the same fp32 master (stage 3 fp32 then steps like the reference).
 * Only rank 0 changes files, between MPI_Barriers, and puts them back after each case.
 * Prints one line per case ("ok   ..." or "FAIL ...") and "test_ckpt: np N, K cases, F failures"
 * (F summed over the ranks; exit status 1 when F > 0).
 * Usage: test_ckpt [root] (default $OUT/test_ckpt_np<N>, else ./test_ckpt_np<N>.d); only the
 * subdirectories it makes there are removed. CKPT_TEST_DEBUG=WARN shows libzero's log. Every
 * ZERO_* variable is cleared but ZERO_CKPT_IO and ZERO_DEBUG_SUBSYS. */
#define _GNU_SOURCE /* nftw's FTW_PHYS/FTW_DEPTH */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <mpi.h>

#include "zero.h"

#include "runtime/ckpt_format.h"

#include "../common/api_test.h"

static int rank, world;
static char root[1024];
enum { TRAIN_STEPS = 3 };

/* ---- the models ------------------------------------------------------------------------------ */

enum { MAX_T = 8, MAX_NUMEL = 1200 };
typedef enum { M_BASE, M_MISSING, M_EXTRA, M_SHAPE, M_NUMEL } model_kind;

typedef struct model {
    int nt;
    zero_tensor t[MAX_T];
    float init[MAX_T][MAX_NUMEL];
} model;

static void add_tensor(model *m, const char *name, int module, int no_decay, int ndim, int64_t d0,
                       int64_t d1, size_t numel)
{
    int i = m->nt++;
    zero_tensor *t = &m->t[i];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->module = module;
    t->no_decay = no_decay;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = numel;
    for (size_t k = 0; k < numel; k++) /* by name, so variants share the values of a tensor */
        m->init[i][k] = 0.01f * (float)((k * 31 + strlen(name) * 7 + (size_t)name[0]) % 17) - 0.08f;
    t->init = m->init[i];
}

/* The base model and its variants: a checkpoint of the base is another model's for them. */
static void make_model(model *m, model_kind kind)
{
    memset(m, 0, sizeof *m);
    add_tensor(m, "emb.w", 0, 0, 2, 40, 30, 1200);
    if (kind == M_SHAPE)
        add_tensor(m, "l1.w", 1, 0, 2, 15, 60, 900); /* same numel, another shape */
    else
        add_tensor(m, "l1.w", 1, 0, 2, 30, 30, 900);
    add_tensor(m, "l1.b", 1, 1, 1, 30, 0, 30);
    add_tensor(m, "l2.w", 2, 0, 2, 30, 20, 600);
    add_tensor(m, "l2.b", 2, 1, 0, 0, 0, kind == M_NUMEL ? 21 : 20); /* a vector, no shape */
    if (kind != M_EXTRA)
        add_tensor(m, "head.w", 3, 0, 2, 20, 10, 200);
    if (kind == M_MISSING)
        add_tensor(m, "extra.w", 4, 0, 1, 7, 0, 7);
}

static zero_config base_config(int stage, zero_dtype dt, int accum)
{
    zero_config c = ZERO_CONFIG_INIT;
    c.device = ZERO_DEVICE_HOST;
    c.stage = stage;
    c.dtype = dt;
    c.grad_accum = accum;
    c.bucket_bytes = 4096; /* several chunks */
    c.persist_bytes = 0;
    c.lr = 1e-2f;
    c.weight_decay = 0.01f;
    c.cpu_threads = 1;
    c.numa = ZERO_NUMA_OFF;
    c.timeout_s = 60.0f;
    if (dt == ZERO_DTYPE_FP16)
        c.loss_scale = 1.0f; /* static: no overflow-skipped steps in this small model */
    return c;
}

static zero_ctx *make_ctx(const model *m, zero_config c)
{
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, m->t, m->nt);
    if (s) {
        fprintf(stderr, "rank %d: zero_init (stage %d dtype %d): %s: %s\n", rank, c.stage,
                (int)c.dtype, zero_status_string(s), zero_init_error());
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return z;
}

/* One micro-step: gradients depend on the micro-step index k, the tensor, the element and the
 * rank; modules reported in reverse order, as a backward does. */
static zero_status micro_step(zero_ctx *z, const model *m, int k)
{
    static float g[MAX_NUMEL];
    zero_dtype dt = zero_get_config(z)->dtype;
    for (int mod = m->t[m->nt - 1].module; mod >= 0; mod--) {
        for (int i = 0; i < m->nt; i++) {
            if (m->t[i].module != mod)
                continue;
            void *p = zero_grad_ptr(z, i);
            if (!p)
                return ZERO_ERR_STATE;
            for (size_t j = 0; j < m->t[i].numel; j++)
                g[j] = 0.02f * (float)((int)((j * 7 + (size_t)i * 13 + (size_t)k * 5 +
                                              (size_t)rank * 3) % 23) - 11) / 11.0f;
            zero_accumulate(p, dt, g, m->t[i].numel);
        }
        zero_status s = zero_grad_ready(z, mod);
        if (s)
            return s;
    }
    return zero_step(z);
}

/* micro-steps k0 .. k0 + n - 1 */
static void train(zero_ctx *z, const model *m, int k0, int n)
{
    for (int k = k0; k < k0 + n; k++) {
        zero_status s = micro_step(z, m, k);
        EXPECT(s == ZERO_OK, "micro-step %d: %s: %s", k, zero_status_string(s), zero_last_error(z));
    }
}

typedef struct snap {
    uint64_t digest;
    int64_t step, skipped;
    float scale;
} snap;

static snap take(zero_ctx *z)
{
    snap v = {0, -1, -1, 0.0f};
    zero_status s = zero_param_digest(z, &v.digest);
    EXPECT(s == ZERO_OK, "zero_param_digest: %s", zero_last_error(z));
    zero_step_info info;
    s = zero_last_step(z, &info);
    EXPECT(s == ZERO_OK, "zero_last_step: %s", zero_last_error(z));
    v.step = info.step;
    v.skipped = info.skipped;
    v.scale = zero_loss_scale(z);
    return v;
}

static void expect_same(const snap *a, const snap *b, const char *what)
{
    EXPECT(a->digest == b->digest, "%s: digest %016" PRIx64 ", expected %016" PRIx64, what,
           b->digest, a->digest);
    EXPECT(a->step == b->step && a->skipped == b->skipped,
           "%s: step %" PRId64 " skipped %" PRId64 ", expected %" PRId64 " and %" PRId64, what,
           b->step, b->skipped, a->step, a->skipped);
    EXPECT(a->scale == b->scale, "%s: loss scale %g, expected %g", what, (double)b->scale,
           (double)a->scale);
}

/* ---- cases ----------------------------------------------------------------------------------- */

static int cases;
static int case_failures_at;
static char case_name[160];
static char case_detail[200];

static void case_begin(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void case_begin(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(case_name, sizeof case_name, fmt, ap);
    va_end(ap);
    case_detail[0] = 0;
    case_failures_at = failures;
}

static void case_end(void)
{
    int mine = failures - case_failures_at, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    cases++;
    if (rank == 0) {
        printf("%s %s%s%s\n", all ? "FAIL" : "ok  ", case_name, case_detail[0] ? ": " : "",
               case_detail);
        fflush(stdout);
    }
}

/* s must be `want` on this rank and on every other rank; the message must hold each needle. */
static void expect_status(zero_ctx *z, zero_status s, zero_status want, const char *n1,
                          const char *n2)
{
    const char *msg = zero_last_error(z);
    EXPECT(s == want, "%s: %s, expected %s (%s)", case_name, zero_status_string(s),
           zero_status_string(want), msg);
    int v[2] = {(int)s, -(int)s}, r[2];
    MPI_Allreduce(v, r, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    EXPECT(r[0] == -r[1], "%s: the ranks returned different statuses (%d..%d)", case_name, -r[1],
           r[0]);
    if (want != ZERO_OK) {
        EXPECT(!n1 || strstr(msg, n1), "%s: the message does not name \"%s\": %s", case_name, n1,
               msg);
        EXPECT(!n2 || strstr(msg, n2), "%s: the message does not name \"%s\": %s", case_name, n2,
               msg);
    }
    if (rank == 0 && (want != ZERO_OK || s != ZERO_OK))
        snprintf(case_detail, sizeof case_detail, "%s: %.150s", zero_status_string(s),
                 s ? msg : "");
}

/* ---- files (rank 0) -------------------------------------------------------------------------- */

static const char *path_in(const char *dir, const char *name)
{
    static char buf[8][2048];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static unsigned char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
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
        fprintf(stderr, "test_ckpt: cannot write %s: %s\n", path, strerror(errno));
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
}

/* A file's original bytes, kept to put it back after a case. */
typedef struct saved_file {
    char path[2048];
    unsigned char *data;
    size_t len;
} saved_file;

static saved_file keep_file(const char *path)
{
    saved_file f;
    snprintf(f.path, sizeof f.path, "%s", path);
    f.data = rank == 0 ? slurp(path, &f.len) : NULL;
    if (rank == 0 && !f.data) {
        fprintf(stderr, "test_ckpt: cannot read %s\n", path);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    return f;
}

static void restore_file(const saved_file *f)
{
    if (rank == 0)
        spit(f->path, f->data, f->len);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static void rm_tree(const char *p)
{
    struct stat st;
    if (lstat(p, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode))
        nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else
        unlink(p);
}

/* Entries of dir whose names start with prefix; the last one's name in last. */
static int count_entries(const char *dir, const char *prefix, char *last, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (!strncmp(de->d_name, prefix, strlen(prefix))) {
            n++;
            if (last)
                snprintf(last, cap, "%s", de->d_name);
        }
    closedir(d);
    return n;
}

/* The manifest of checkpoint directory dir, read and parsed (zc_manifest_free it). */
static zero_status read_manifest(const char *dir, zc_manifest *m, zr_error *e)
{
    char *json = NULL;
    size_t len = 0;
    zr_error_clear(e);
    memset(m, 0, sizeof *m);
    zero_status r = zc_read_file(path_in(dir, ZC_MANIFEST), (size_t)1 << 30, &json, &len, e);
    if (!r)
        r = zc_manifest_parse(m, json, len, dir, e);
    free(json);
    return r;
}

static void barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }

/* ---- the checkpoint under test --------------------------------------------------------------- */

static model base;
static zero_ctx *z;          /* stage 2 fp32, saved at TRAIN_STEPS into <root>/main */
static snap s0;              /* z at the save */
static uint64_t d1;          /* the reference's digest one step later */
static char main_root[1100]; /* <root>/main */
static char ckdir[1200];     /* <root>/main/step-00000003 */
static zc_manifest man;      /* its manifest, parsed on every rank */

static size_t blob_of(int r, unsigned char *buf)
{
    size_t n = (size_t)snprintf((char *)buf, 64, "user blob of rank %d:", r);
    for (int k = 0; k < 10 + 7 * r; k++)
        buf[n++] = (unsigned char)(r * 41 + k * 3);
    return n;
}

/* After a refused call on z: one step must give the reference's digest (the optimizer's state is
 * intact too); then z is put back at the save by loading it. */
static void main_continues(void)
{
    train(z, &base, TRAIN_STEPS, 1);
    snap s = take(z);
    EXPECT(s.digest == d1, "%s: one step after the refused call: digest %016" PRIx64
           ", the reference's %016" PRIx64, case_name, s.digest, d1);
    EXPECT(s.step == s0.step + 1, "%s: step %" PRId64 " after one more", case_name, s.step);
    zero_status st = zero_load(z, ckdir, NULL, 0, NULL);
    EXPECT(st == ZERO_OK, "%s: loading the checkpoint back: %s", case_name, zero_last_error(z));
    snap back = take(z);
    expect_same(&s0, &back, "loaded back");
}

/* zero_load(z, path) must fail with want on every rank, naming n1 and n2, with z unchanged; then
 * the file rank 0 changed (orig, when not NULL) is put back and z must go on like the reference. */
static void main_load_refused(const char *path, zero_status want, const char *n1, const char *n2,
                              const saved_file *orig)
{
    barrier(); /* rank 0's change to the files is made */
    snap before = take(z);
    unsigned char ub[256];
    size_t ul = 12345;
    zero_status s = zero_load(z, path, ub, sizeof ub, &ul);
    expect_status(z, s, want, n1, n2);
    snap after = take(z);
    expect_same(&before, &after, case_name);
    if (orig)
        restore_file(orig);
    barrier();
    main_continues();
}

static void shard_cases(void)
{
    for (int f = 0; f < man.num_files; f++) {
        const char *fname = man.files[f].name;
        const char *fpath = path_in(ckdir, fname);
        saved_file orig = keep_file(fpath);

        /* data: a byte in the middle of each of the file's slices */
        for (int k = 0; k < man.num_slices; k++) {
            const zc_slice *sl = &man.slices[k];
            if (sl->file != f)
                continue;
            const char *tname = man.tensors[sl->tensor].name;
            uint64_t at = sl->at + zc_slice_bytes(sl->numel, man.num_arrays) / 2;
            case_begin("%s: byte %" PRIu64 " flipped (tensor \"%s\" elements %" PRIu64
                       "..%" PRIu64 ") -> ZERO_ERR_IO",
                       fname, at, tname, sl->offset, sl->offset + sl->numel - 1);
            if (rank == 0) {
                unsigned char *d = malloc(orig.len);
                memcpy(d, orig.data, orig.len);
                d[at] ^= 0x5a;
                spit(fpath, d, orig.len);
                free(d);
            }
            char quoted[80];
            snprintf(quoted, sizeof quoted, "\"%s\"", tname);
            main_load_refused(ckdir, ZERO_ERR_IO, fname, quoted, &orig);
            case_end();
        }

        /* the header, field by field (layout: ckpt_format.c zc_header_encode) */
        static const struct {
            int at;
            const char *field;
        } hdr[] = {{0, "magic"},   {7, "magic"},   {8, "version"}, {12, "rank"},
                   {16, "world"},  {20, "arrays"}, {24, "id"},     {31, "id"},
                   {32, "block_elems"}, {40, "reserved"}, {63, "reserved"}};
        for (size_t h = 0; h < sizeof hdr / sizeof *hdr; h++) {
            case_begin("%s: header byte %d (%s) flipped -> ZERO_ERR_IO", fname, hdr[h].at,
                       hdr[h].field);
            if (rank == 0) {
                unsigned char *d = malloc(orig.len);
                memcpy(d, orig.data, orig.len);
                d[hdr[h].at] ^= 0x01;
                spit(fpath, d, orig.len);
                free(d);
            }
            main_load_refused(ckdir, ZERO_ERR_IO, fname, NULL, &orig);
            case_end();
        }

        /* truncated: by one byte, to half, to less than a header, to nothing */
        const size_t cut[4] = {orig.len - 1, orig.len / 2, 40, 0};
        for (int c = 0; c < 4; c++) {
            case_begin("%s: truncated to %zu of %zu bytes -> ZERO_ERR_IO", fname, cut[c],
                       orig.len);
            if (rank == 0 && truncate(fpath, (off_t)cut[c]) != 0)
                EXPECT(0, "truncate %s: %s", fpath, strerror(errno));
            main_load_refused(ckdir, ZERO_ERR_IO, fname, NULL, &orig);
            case_end();
        }
        case_begin("%s: one byte appended -> ZERO_ERR_IO", fname);
        if (rank == 0) {
            FILE *a = fopen(fpath, "ab");
            if (a) {
                fputc(0, a);
                fclose(a);
            }
        }
        main_load_refused(ckdir, ZERO_ERR_IO, fname, NULL, &orig);
        case_end();

        case_begin("%s: deleted -> ZERO_ERR_IO", fname);
        if (rank == 0)
            unlink(fpath);
        main_load_refused(ckdir, ZERO_ERR_IO, fname, NULL, &orig);
        case_end();

        free(orig.data);
    }
}

/* The reader itself (rank 0, both ways of reading), on a checkpoint of its own whose one tensor
 * spans 4.5 blocks (so that every rank's slice holds at least one whole block at np <= 4): a
 * shard cut after the reader opened (and, with ZC_IO_MMAP, mapped) it must read as ZERO_ERR_IO
 * naming the file and the failed read, not end the process with SIGBUS — the mapped reader makes
 * each range resident with MADV_POPULATE_READ just before touching it — whether the range is only
 * verified (hashed in place), copied into every array (whole blocks, block by block on OpenMP's
 * threads) or into the master only (through the read buffer). The cut is a page boundary in the
 * middle of the slice's first block, so the bytes lost are whole pages (a cut inside a page would
 * read as zeros through the mapping and fail the checksum instead). */
static void truncated_while_open_cases(void)
{
    const size_t numel = (size_t)ZC_BLOCK_ELEMS * 9 / 2;
    float *init = malloc(numel * sizeof *init);
    for (size_t k = 0; init && k < numel; k++)
        init[k] = 0.001f * (float)(k % 977);
    zero_tensor t = {.name = "big.w", .numel = numel, .module = 0, .init = init};
    zero_config c = base_config(1, ZERO_DTYPE_FP32, 1);
    c.bucket_bytes = (size_t)64 << 20; /* one chunk */
    char dir[1200], sd[1300];
    snprintf(dir, sizeof dir, "%s/big", root);
    snprintf(sd, sizeof sd, "%s/step-00000000", dir);
    zero_ctx *bz = NULL;
    zero_status s = init ? zero_init(&bz, &c, &t, 1) : ZERO_ERR_SYSTEM;
    EXPECT(s == ZERO_OK, "zero_init of the 4.5-block model: %s", zero_init_error());
    if (!s) {
        s = zero_save(bz, dir, NULL, 0);
        EXPECT(s == ZERO_OK, "zero_save of the 4.5-block model: %s", zero_last_error(bz));
        EXPECT(zero_finalize(bz) == ZERO_OK, "finalize: %s", zero_init_error());
    }
    zc_manifest bm;
    memset(&bm, 0, sizeof bm);
    int parsed = 0;
    if (rank == 0 && !s) {
        zr_error e;
        zero_status r = read_manifest(sd, &bm, &e);
        EXPECT(r == ZERO_OK, "the 4.5-block model's manifest: %s", e.msg);
        parsed = !r;
    }
    const zc_slice *sl = NULL; /* rank 0's slice */
    for (int k = 0; parsed && k < bm.num_slices; k++)
        if (bm.files[bm.slices[k].file].rank == 0)
            sl = &bm.slices[k];
    const uint64_t bb = (uint64_t)bm.block_elems * (uint64_t)bm.num_arrays * 4;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    static const char *const dest[3] = {"verified only", "into every array", "into the master"};
    for (int io = ZC_IO_MMAP; io <= ZC_IO_PREAD; io++)
        for (int d = 0; d < 3; d++) {
            case_begin("a shard cut inside its first block while a reader (%s, %s) has it open "
                       "-> ZERO_ERR_IO, no SIGBUS",
                       io == ZC_IO_MMAP ? "mmap" : "pread", dest[d]);
            if (rank == 0 && parsed) {
                EXPECT(sl && sl->numel >= bm.block_elems, "%s: rank 0 has no whole block",
                       case_name);
            }
            if (rank == 0 && sl && sl->numel >= bm.block_elems) {
                const char *fname = bm.files[sl->file].name;
                const char *fpath = path_in(sd, fname);
                const uint64_t cut = (sl->at + bb / 2) / page * page;
                saved_file orig = keep_file(fpath);
                float *buf = malloc((size_t)sl->numel * 3 * sizeof *buf);
                float *out[ZC_MAX_ARRAYS] = {NULL, NULL, NULL};
                for (int a = 0; d > 0 && buf && a < bm.num_arrays && a < 3; a++)
                    if (d == 1 || a == 0)
                        out[a] = buf + (size_t)a * sl->numel;
                zc_reader rd;
                zr_error e;
                zr_error_clear(&e);
                zero_status s1 = buf ? zc_reader_open(&rd, &bm, sd, io, &e) : ZERO_ERR_SYSTEM;
                EXPECT(s1 == ZERO_OK, "%s: zc_reader_open: %s", case_name, e.msg);
                if (!s1) {
                    s1 = zc_read(&rd, sl->tensor, sl->offset, 1, out, &e); /* opens (maps) it */
                    EXPECT(s1 == ZERO_OK, "%s: the first read: %s", case_name, e.msg);
                    if (io == ZC_IO_MMAP && !rd.map[sl->file]) /* an older kernel, no mmap */
                        snprintf(case_detail, sizeof case_detail,
                                 "the file was not mapped (no MADV_POPULATE_READ?): pread");
                    EXPECT(truncate(fpath, (off_t)cut) == 0, "truncate %s: %s", fpath,
                           strerror(errno));
                    zero_status s2 = zc_read(&rd, sl->tensor, sl->offset, sl->numel, out, &e);
                    EXPECT(s2 == ZERO_ERR_IO && strstr(e.msg, fname) && !strstr(e.msg, "checksum"),
                           "%s: %s (%s), expected ZERO_ERR_IO naming %s and a failed read",
                           case_name, zero_status_string(s2), e.msg, fname);
                    if (!case_detail[0])
                        snprintf(case_detail, sizeof case_detail, "%s: %.150s",
                                 zero_status_string(s2), e.msg);
                    zc_reader_close(&rd);
                }
                free(buf);
                restore_file(&orig);
                free(orig.data);
            }
            barrier();
            case_end();
        }
    if (parsed)
        zc_manifest_free(&bm);
    free(init);
}

/* text with the first `old` (after `from`, when not NULL) replaced by `new`; NULL if absent */
static char *replace_text(const char *text, const char *from, const char *old, const char *new)
{
    const char *base_at = from ? strstr(text, from) : text;
    const char *p = base_at ? strstr(base_at, old) : NULL;
    if (!p)
        return NULL;
    size_t a = (size_t)(p - text), ol = strlen(old), nl = strlen(new), tl = strlen(text);
    char *out = malloc(tl - ol + nl + 1);
    memcpy(out, text, a);
    memcpy(out + a, new, nl);
    memcpy(out + a + nl, p + ol, tl - a - ol + 1);
    return out;
}

/* text without the line holding the first `needle` (after `from`, when not NULL) */
static char *delete_line(const char *text, const char *from, const char *needle)
{
    const char *base_at = from ? strstr(text, from) : text;
    const char *p = base_at ? strstr(base_at, needle) : NULL;
    if (!p)
        return NULL;
    const char *b = p, *e = strchr(p, '\n');
    while (b > text && b[-1] != '\n')
        b--;
    e = e ? e + 1 : p + strlen(p);
    size_t tl = strlen(text);
    char *out = malloc(tl + 1);
    memcpy(out, text, (size_t)(b - text));
    memcpy(out + (b - text), e, tl - (size_t)(e - text) + 1);
    return out;
}

/* The number after `key` (after `from`) replaced by number + delta. */
static char *shift_number(const char *text, const char *from, const char *key, long long delta)
{
    const char *base_at = from ? strstr(text, from) : text;
    const char *p = base_at ? strstr(base_at, key) : NULL;
    if (!p)
        return NULL;
    p += strlen(key);
    char *end;
    long long v = strtoll(p, &end, 10);
    char num[32];
    snprintf(num, sizeof num, "%lld", v + delta);
    size_t a = (size_t)(p - text), tl = strlen(text);
    char *out = malloc(tl + 40);
    memcpy(out, text, a);
    strcpy(out + a, num);
    strcat(out, end);
    return out;
}

typedef struct text_case {
    const char *name;
    char *text;            /* the manifest as the case writes it (rank 0) */
    zero_status want;
    const char *n1, *n2;
} text_case;

/* A checkpoint of other values (one step ahead) whose last slice is corrupt: the rank that reads
 * it meets the bad block after the good ones, the other ranks find nothing wrong; every rank must
 * end with the state it had, the optimizer's included (main_continues). A load that wrote a good
 * slice into the state before it knew of the bad one would fail here (the other cases load the
 * checkpoint the state already holds, so such a write would go unseen). */
static void restore_cases(void)
{
    case_begin("a checkpoint one step ahead, its last slice corrupt -> ZERO_ERR_IO, the state "
               "as it was on every rank");
    train(z, &base, TRAIN_STEPS, 1);
    char ahead[1200], step_dir[1300];
    snprintf(ahead, sizeof ahead, "%s/ahead", root);
    zero_status s = zero_save(z, ahead, NULL, 0);
    EXPECT(s == ZERO_OK, "saving one step ahead: %s", zero_last_error(z));
    snprintf(step_dir, sizeof step_dir, "%s/step-%08lld", ahead, (long long)(s0.step + 1));
    s = zero_load(z, ckdir, NULL, 0, NULL); /* back to the save */
    EXPECT(s == ZERO_OK, "loading the checkpoint back: %s", zero_last_error(z));
    /* the same layout as main's: the last file's last slice */
    int f = man.num_files - 1, k_last = -1;
    for (int k = 0; k < man.num_slices; k++)
        if (man.slices[k].file == f && (k_last < 0 || man.slices[k].at > man.slices[k_last].at))
            k_last = k;
    const zc_slice *sl = &man.slices[k_last];
    const char *fpath = path_in(step_dir, man.files[f].name);
    if (rank == 0) {
        size_t len = 0;
        unsigned char *d = slurp(fpath, &len);
        if (!d) {
            fprintf(stderr, "test_ckpt: cannot read %s\n", fpath);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        d[sl->at + zc_slice_bytes(sl->numel, man.num_arrays) / 2] ^= 0x5a;
        spit(fpath, d, len);
        free(d);
    }
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", man.tensors[sl->tensor].name);
    main_load_refused(step_dir, ZERO_ERR_IO, man.files[f].name, quoted, NULL);
    case_end();
}

static void manifest_cases(void)
{
    const char *mpath = path_in(ckdir, ZC_MANIFEST);
    saved_file orig = keep_file(mpath);
    const char *t = rank == 0 ? (const char *)orig.data : NULL;

    case_begin("manifest.json deleted, loaded by its directory -> ZERO_ERR_IO");
    if (rank == 0)
        unlink(mpath);
    main_load_refused(ckdir, ZERO_ERR_IO, ZC_MANIFEST, NULL, &orig);
    case_end();

    case_begin("manifest.json deleted, loaded by the root (latest) -> ZERO_ERR_IO");
    if (rank == 0)
        unlink(mpath);
    main_load_refused(main_root, ZERO_ERR_IO, ZC_MANIFEST, NULL, &orig);
    case_end();

    char f0[80], f_last[80];
    snprintf(f0, sizeof f0, "\"name\": \"%s\"", man.files[0].name);
    snprintf(f_last, sizeof f_last, "\"name\": \"%s\"", man.files[man.num_files - 1].name);
    char user_key[] = "\"user\": {";
    text_case tc[] = {
        {"manifest.json cut to half -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_MANIFEST, "JSON"},
        {"manifest.json empty -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_MANIFEST, "JSON"},
        {"manifest.json a JSON array -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_MANIFEST, NULL},
        {"manifest.json \"version\": 2 -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_MANIFEST, "version"},
        {"manifest.json \"version\": \"1\" -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, "version", NULL},
        {"manifest.json another \"format\" -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, "format", NULL},
        {"manifest.json \"block_elems\" missing -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, "block_elems",
         NULL},
        {"manifest.json \"id\" missing -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, "\"id\"", NULL},
        {"manifest.json \"byte_order\" big -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, "byte_order", NULL},
        {"manifest.json \"id\" another checkpoint's -> ZERO_ERR_IO", NULL, ZERO_ERR_IO,
         "another checkpoint", NULL},
        {"manifest.json first file's \"bytes\" + 1 -> ZERO_ERR_IO", NULL, ZERO_ERR_IO,
         man.files[0].name, NULL},
        {"manifest.json last file's \"bytes\" - 1 -> ZERO_ERR_IO", NULL, ZERO_ERR_IO,
         man.files[man.num_files - 1].name, NULL},
        {"manifest.json a block checksum changed -> ZERO_ERR_IO", NULL, ZERO_ERR_IO,
         "checksum", NULL},
        {"manifest.json a slice's \"numel\" + 1 -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_MANIFEST,
         NULL},
        {"manifest.json user \"bytes\" + 1 -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_USER_FILE, NULL},
        {"manifest.json user \"xxh3\" changed -> ZERO_ERR_IO", NULL, ZERO_ERR_IO, ZC_USER_FILE,
         NULL},
        {"manifest.json optimizer \"sgd\" -> ZERO_ERR_INVALID", NULL, ZERO_ERR_INVALID, "sgd",
         NULL},
    };
    const int ntc = (int)(sizeof tc / sizeof *tc);
    if (rank == 0) {
        size_t half = strlen(t) / 2;
        tc[0].text = strndup(t, half);
        tc[1].text = strdup("");
        tc[2].text = strdup("[1, 2, 3]\n");
        tc[3].text = replace_text(t, NULL, "\"version\": 1", "\"version\": 2");
        tc[4].text = replace_text(t, NULL, "\"version\": 1", "\"version\": \"1\"");
        tc[5].text = replace_text(t, NULL, "\"libzero-checkpoint\"", "\"libzero-checkpoint2\"");
        tc[6].text = delete_line(t, NULL, "\"block_elems\":");
        tc[7].text = delete_line(t, NULL, "\"id\":");
        tc[8].text = replace_text(t, NULL, "\"little\"", "\"big\"");
        char id_new[40], id_old[40];
        char hex[17];
        zc_hex(man.id, hex);
        snprintf(id_old, sizeof id_old, "\"id\": \"%s\"", hex);
        zc_hex(man.id ^ 1, hex);
        snprintf(id_new, sizeof id_new, "\"id\": \"%s\"", hex);
        tc[9].text = replace_text(t, NULL, id_old, id_new);
        tc[10].text = shift_number(t, f0, "\"bytes\": ", 1);
        tc[11].text = shift_number(t, f_last, "\"bytes\": ", -1);
        /* the first block checksum of the first slice: its first digit changed */
        char *x = strdup(t);
        char *h = strstr(strstr(strstr(x, "\"slices\""), "\"xxh3\": ["), "\n");
        h = strchr(h, '"') + 1;
        *h = *h == '0' ? '1' : '0';
        tc[12].text = x;
        tc[13].text = shift_number(t, "\"slices\"", "\"numel\": ", 1);
        tc[14].text = shift_number(t, user_key, "\"bytes\": ", 1);
        x = strdup(t);
        h = strstr(strstr(x, user_key), "\"xxh3\": \"") + 9;
        *h = *h == '0' ? '1' : '0';
        tc[15].text = x;
        tc[16].text = replace_text(t, NULL, "\"name\": \"adamw\"", "\"name\": \"sgd\"");
    }
    for (int c = 0; c < ntc; c++) {
        case_begin("%s", tc[c].name);
        int made = rank != 0 || tc[c].text != NULL;
        MPI_Bcast(&made, 1, MPI_INT, 0, MPI_COMM_WORLD);
        EXPECT(made, "%s: the manifest's text to change was not found", tc[c].name);
        if (made) {
            if (rank == 0)
                spit(mpath, tc[c].text, strlen(tc[c].text));
            main_load_refused(ckdir, tc[c].want, tc[c].n1, tc[c].n2, &orig);
        }
        free(tc[c].text);
        case_end();
    }

    /* user.bin */
    const char *upath = path_in(ckdir, ZC_USER_FILE);
    saved_file uorig = keep_file(upath);
    case_begin("user.bin: a byte flipped -> ZERO_ERR_IO");
    if (rank == 0) {
        unsigned char *d = malloc(uorig.len);
        memcpy(d, uorig.data, uorig.len);
        d[uorig.len / 2] ^= 0x20;
        spit(upath, d, uorig.len);
        free(d);
    }
    main_load_refused(ckdir, ZERO_ERR_IO, ZC_USER_FILE, NULL, &uorig);
    case_end();
    case_begin("user.bin: truncated -> ZERO_ERR_IO");
    if (rank == 0)
        spit(upath, uorig.data, uorig.len - 1);
    main_load_refused(ckdir, ZERO_ERR_IO, ZC_USER_FILE, NULL, &uorig);
    case_end();
    case_begin("user.bin: one byte longer -> ZERO_ERR_IO");
    if (rank == 0) {
        unsigned char *d = malloc(uorig.len + 1);
        memcpy(d, uorig.data, uorig.len);
        d[uorig.len] = 'x';
        spit(upath, d, uorig.len + 1);
        free(d);
    }
    main_load_refused(ckdir, ZERO_ERR_IO, ZC_USER_FILE, NULL, &uorig);
    case_end();
    case_begin("user.bin: deleted -> ZERO_ERR_IO");
    if (rank == 0)
        unlink(upath);
    main_load_refused(ckdir, ZERO_ERR_IO, ZC_USER_FILE, NULL, &uorig);
    case_end();

    /* latest */
    const char *lpath = path_in(main_root, ZC_LATEST);
    saved_file lorig = keep_file(lpath);
    static const char bad_latest[3][32] = {"../main/step-00000003\n", "\n", ".."};
    for (int c = 0; c < 3; c++) {
        char shown[32];
        snprintf(shown, sizeof shown, "%.*s", (int)strcspn(bad_latest[c], "\n"), bad_latest[c]);
        case_begin("latest holding \"%s\" -> ZERO_ERR_IO", shown);
        if (rank == 0)
            spit(lpath, bad_latest[c], strlen(bad_latest[c]));
        main_load_refused(main_root, ZERO_ERR_IO, ZC_LATEST, NULL, &lorig);
        case_end();
    }
    /* latest naming a checkpoint that is not there (a replacement stopped between its renames
     * on a file system without RENAME_EXCHANGE): the newest complete step-* is loaded */
    case_begin("latest naming a missing step-99999999 -> the newest complete step-* loads");
    if (rank == 0)
        spit(lpath, "step-99999999\n", 14);
    barrier();
    train(z, &base, TRAIN_STEPS, 1); /* away from the save, so the load must change z back */
    zero_status ls = zero_load(z, main_root, NULL, 0, NULL);
    expect_status(z, ls, ZERO_OK, NULL, NULL);
    snap back = take(z);
    expect_same(&s0, &back, case_name);
    restore_file(&lorig);
    barrier();
    case_end();
    free(lorig.data);
    free(uorig.data);
    free(orig.data);
}

/* A context of another model: the load is ZERO_ERR_INVALID naming the tensor, and the context then
 * trains like a twin that never saw the load. */
static void other_model_case(model_kind kind, const char *what, const char *tensor)
{
    case_begin("a model with %s: ZERO_ERR_INVALID naming \"%s\"", what, tensor);
    static model m;
    make_model(&m, kind);
    zero_ctx *a = make_ctx(&m, base_config(2, ZERO_DTYPE_FP32, 1));
    zero_ctx *twin = make_ctx(&m, base_config(2, ZERO_DTYPE_FP32, 1));
    train(a, &m, 0, 1);
    train(twin, &m, 0, 1);
    snap before = take(a);
    unsigned char ub[256];
    zero_status s = zero_load(a, ckdir, ub, sizeof ub, NULL);
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", tensor);
    expect_status(a, s, ZERO_ERR_INVALID, quoted, NULL);
    snap after = take(a);
    expect_same(&before, &after, case_name);
    train(a, &m, 1, 1);
    train(twin, &m, 1, 1);
    snap sa = take(a), st = take(twin);
    expect_same(&st, &sa, "one step after the refused load, against the twin");
    EXPECT(zero_finalize(a) == ZERO_OK && zero_finalize(twin) == ZERO_OK, "finalize: %s",
           zero_init_error());
    case_end();
}

static void user_blob_cases(void)
{
    unsigned char want[128], ub[128];
    size_t wl = blob_of(0, want);

    case_begin("user blob larger than user_cap -> ZERO_ERR_INVALID, *user_len = its size");
    barrier();
    snap before = take(z);
    size_t ul = 0;
    zero_status s = zero_load(z, ckdir, ub, wl - 1, &ul);
    expect_status(z, s, ZERO_ERR_INVALID, "user", NULL);
    EXPECT(ul == wl, "*user_len %zu, the blob is %zu bytes", ul, wl);
    snap after = take(z);
    expect_same(&before, &after, case_name);
    main_continues();
    case_end();

    case_begin("user NULL with user_cap 3 -> ZERO_ERR_INVALID");
    before = take(z);
    s = zero_load(z, ckdir, NULL, 3, &ul);
    expect_status(z, s, ZERO_ERR_INVALID, "user", NULL);
    after = take(z);
    expect_same(&before, &after, case_name);
    main_continues();
    case_end();

    case_begin("user NULL with user_cap 0 loads (and says the blob's size)");
    train(z, &base, TRAIN_STEPS, 1); /* moved away from the checkpoint */
    ul = 0;
    s = zero_load(z, ckdir, NULL, 0, &ul);
    expect_status(z, s, ZERO_OK, NULL, NULL);
    EXPECT(ul == wl, "*user_len %zu, the blob is %zu bytes", ul, wl);
    after = take(z);
    expect_same(&s0, &after, case_name);
    case_end();

    case_begin("user blob exactly user_cap: rank 0's blob on every rank");
    memset(ub, 0xee, sizeof ub);
    ul = 0;
    s = zero_load(z, ckdir, ub, wl, &ul);
    expect_status(z, s, ZERO_OK, NULL, NULL);
    EXPECT(ul == wl && !memcmp(ub, want, wl), "rank %d got %zu bytes, not rank 0's %zu", rank, ul,
           wl);
    EXPECT(ub[wl] == 0xee, "bytes written past the blob");
    case_end();
}

static void argument_cases(void)
{
    static const struct {
        const char *what;
        int save;
        const char *path;
        int user_null;
        size_t n;
    } c[] = {
        {"zero_save(dir NULL)", 1, NULL, 0, 4},        {"zero_save(dir \"\")", 1, "", 0, 4},
        {"zero_save(user NULL, user_len 4)", 1, "-", 1, 4},
        {"zero_load(path NULL)", 0, NULL, 0, 16},      {"zero_load(path \"\")", 0, "", 0, 16},
    };
    for (size_t k = 0; k < sizeof c / sizeof *c; k++) {
        case_begin("%s -> ZERO_ERR_INVALID", c[k].what);
        snap before = take(z);
        const char *p = c[k].path && !strcmp(c[k].path, "-") ? path_in(root, "args") : c[k].path;
        unsigned char ub[16] = "abcd";
        zero_status s = c[k].save ? zero_save(z, p, c[k].user_null ? NULL : ub, c[k].n)
                                  : zero_load(z, p, ub, c[k].n, NULL);
        expect_status(z, s, ZERO_ERR_INVALID, c[k].save ? "zero_save" : "zero_load", NULL);
        snap after = take(z);
        expect_same(&before, &after, case_name);
        struct stat st;
        EXPECT(stat(path_in(root, "args"), &st) != 0, "zero_save made %s", path_in(root, "args"));
        main_continues();
        case_end();
    }
    case_begin("zero_save / zero_load(NULL context) -> ZERO_ERR_INVALID");
    EXPECT(zero_save(NULL, root, NULL, 0) == ZERO_ERR_INVALID, "zero_save(NULL)");
    EXPECT(zero_load(NULL, ckdir, NULL, 0, NULL) == ZERO_ERR_INVALID, "zero_load(NULL)");
    case_end();

    /* paths that are not checkpoints */
    if (rank == 0) {
        mkdir(path_in(root, "empty"), 0755);
        spit(path_in(root, "afile"), "x", 1);
    }
    barrier();
    const char *p_empty = path_in(root, "empty"), *p_none = path_in(root, "does-not-exist");
    case_begin("zero_load(a directory without a checkpoint) -> ZERO_ERR_IO");
    main_load_refused(p_empty, ZERO_ERR_IO, p_empty, NULL, NULL);
    case_end();
    case_begin("zero_load(a path that does not exist) -> ZERO_ERR_IO");
    main_load_refused(p_none, ZERO_ERR_IO, p_none, NULL, NULL);
    case_end();
    case_begin("zero_load(a shard file) -> ZERO_ERR_IO");
    main_load_refused(path_in(ckdir, man.files[0].name), ZERO_ERR_IO, man.files[0].name, NULL, NULL);
    case_end();
    case_begin("zero_save(dir a regular file) -> ZERO_ERR_IO");
    snap before = take(z);
    zero_status s = zero_save(z, path_in(root, "afile"), "u", 1);
    expect_status(z, s, ZERO_ERR_IO, "afile", NULL);
    snap after = take(z);
    expect_same(&before, &after, case_name);
    main_continues();
    case_end();
    case_begin("zero_save(dir below a regular file) -> ZERO_ERR_IO");
    s = zero_save(z, path_in(root, "afile/sub"), "u", 1);
    expect_status(z, s, ZERO_ERR_IO, "afile", NULL);
    after = take(z);
    expect_same(&before, &after, case_name);
    main_continues();
    case_end();
}

/* grad_accum 2: zero_save and zero_load after one micro-step of a window are ZERO_ERR_STATE; the
 * window then ends exactly as a twin's that made neither call. */
static void accumulation_case(void)
{
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/accum", root);
    zero_ctx *a = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 2));
    zero_ctx *twin = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 2));
    train(a, &base, 0, 2);
    train(twin, &base, 0, 2);

    case_begin("grad_accum 2: zero_save at a boundary works");
    zero_status s = zero_save(a, dir, "a", 1);
    expect_status(a, s, ZERO_OK, NULL, NULL);
    case_end();

    train(a, &base, 2, 1); /* one micro-step of the next window */
    train(twin, &base, 2, 1);
    snap before = take(a);
    case_begin("grad_accum 2: zero_save after one micro-step -> ZERO_ERR_STATE");
    s = zero_save(a, dir, "b", 1);
    expect_status(a, s, ZERO_ERR_STATE, "zero_save", NULL);
    char last[256] = "";
    if (rank == 0) {
        EXPECT(count_entries(dir, "step-", last, sizeof last) == 1 &&
                   !strcmp(last, "step-00000001"),
               "after the refused save: %s holds %d step-* (last %s)", dir,
               count_entries(dir, "step-", NULL, 0), last);
        EXPECT(count_entries(dir, ".zero-", NULL, 0) == 0, "a temporary directory is left in %s",
               dir);
    }
    snap after = take(a);
    expect_same(&before, &after, case_name);
    case_end();

    case_begin("grad_accum 2: zero_load after one micro-step -> ZERO_ERR_STATE");
    size_t ul = 77;
    unsigned char ub[8];
    s = zero_load(a, dir, ub, sizeof ub, &ul);
    expect_status(a, s, ZERO_ERR_STATE, "zero_load", NULL);
    after = take(a);
    expect_same(&before, &after, case_name);
    case_end();

    case_begin("grad_accum 2: the window then ends like the twin's, and saves");
    train(a, &base, 3, 1);
    train(twin, &base, 3, 1);
    snap sa = take(a), st = take(twin);
    expect_same(&st, &sa, "after the window, against the twin");
    EXPECT(sa.step == 2, "step %" PRId64 ", expected 2", sa.step);
    s = zero_save(a, dir, "c", 1);
    expect_status(a, s, ZERO_OK, NULL, NULL);
    s = zero_load(twin, dir, ub, sizeof ub, &ul);
    expect_status(twin, s, ZERO_OK, NULL, NULL);
    EXPECT(ul == 1 && ub[0] == 'c', "the blob of the second save");
    st = take(twin);
    expect_same(&sa, &st, "the twin after loading it");
    EXPECT(zero_finalize(a) == ZERO_OK && zero_finalize(twin) == ZERO_OK, "finalize: %s",
           zero_init_error());
    case_end();
}

/* Rank 0: dir's `latest` names step-<step> and no temporary directory is left in dir. */
static void expect_latest(const char *dir, int step)
{
    size_t n = 0;
    unsigned char *l = slurp(path_in(dir, ZC_LATEST), &n);
    char want[32];
    snprintf(want, sizeof want, "step-%08d\n", step);
    EXPECT(l && n == strlen(want) && !memcmp(l, want, n), "%s: latest is \"%.*s\"", case_name,
           l ? (int)n : 0, l ? (const char *)l : "");
    free(l);
    EXPECT(count_entries(dir, ".zero-tmp", NULL, 0) == 0, "%s: a temporary directory left",
           case_name);
}

/* zero_save_async .. zero_save_wait, on a context of its own: the checkpoint holds the state,
 * step and blob of the zero_save_async call although training goes on meanwhile (loaded and
 * trained on, it matches the context that kept training: the moments are the saved step's too);
 * misuse is ZERO_ERR_STATE on every rank; zero_finalize abandons a save never waited for and
 * leaves the previous checkpoint as `latest`. */
static void async_cases(void)
{
    char dir[1200], last[256];
    snprintf(dir, sizeof dir, "%s/async", root);
    zero_ctx *az = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 1));
    train(az, &base, 0, TRAIN_STEPS);
    const snap at = take(az);
    static const unsigned char blob[] = "the data position of the async save";

    case_begin("zero_save_wait with no save in flight -> ZERO_ERR_STATE");
    expect_status(az, zero_save_wait(az), ZERO_ERR_STATE, "no asynchronous save", NULL);
    case_end();

    case_begin("zero_save_async at step %d -> ZERO_OK, the state untouched", TRAIN_STEPS);
    zero_status s = zero_save_async(az, dir, blob, sizeof blob);
    expect_status(az, s, ZERO_OK, NULL, NULL);
    snap now = take(az);
    expect_same(&at, &now, "after zero_save_async");
    case_end();

    case_begin("zero_save while an asynchronous save is in flight -> ZERO_ERR_STATE");
    expect_status(az, zero_save(az, dir, NULL, 0), ZERO_ERR_STATE, "still in flight",
                  "zero_save_wait");
    case_end();
    case_begin("zero_save_async while one is in flight -> ZERO_ERR_STATE");
    expect_status(az, zero_save_async(az, dir, NULL, 0), ZERO_ERR_STATE, "still in flight",
                  NULL);
    case_end();

    case_begin("2 steps of training, then zero_save_wait -> ZERO_OK, `latest` names step %d",
               TRAIN_STEPS);
    train(az, &base, TRAIN_STEPS, 2);
    expect_status(az, zero_save_wait(az), ZERO_OK, NULL, NULL);
    if (rank == 0) {
        expect_latest(dir, TRAIN_STEPS);
        /* every file whole: sizes, headers, block and file checksums (zero-ckpt verify's) */
        char sd[1300];
        snprintf(sd, sizeof sd, "%s/step-%08d", dir, TRAIN_STEPS);
        zc_manifest am;
        zc_reader rd;
        zr_error e;
        zero_status v = read_manifest(sd, &am, &e);
        if (!v && !(v = zc_reader_open(&rd, &am, sd, ZC_IO_MMAP, &e))) {
            v = zc_verify_files(&rd, &e);
            zc_reader_close(&rd);
        }
        EXPECT(v == ZERO_OK && am.prog.steps == TRAIN_STEPS && am.world == world,
               "%s: verify: %s (steps %" PRId64 ")", case_name, e.msg, am.prog.steps);
        zc_manifest_free(&am);
    }
    case_end();

    case_begin("the asynchronous checkpoint loads to the state and blob of step %d, and trains "
               "on like the context that never stopped", TRAIN_STEPS);
    zero_ctx *lz = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 1));
    unsigned char back[64];
    size_t bl = 0;
    s = zero_load(lz, dir, back, sizeof back, &bl);
    expect_status(lz, s, ZERO_OK, NULL, NULL);
    snap got = take(lz);
    expect_same(&at, &got, "loaded");
    EXPECT(bl == sizeof blob && !memcmp(back, blob, bl), "%s: the blob (%zu bytes) differs",
           case_name, bl);
    train(lz, &base, TRAIN_STEPS, 2);
    snap lz2 = take(lz), az2 = take(az);
    expect_same(&az2, &lz2, "2 steps after the load");
    EXPECT(zero_finalize(lz) == ZERO_OK, "finalize: %s", zero_init_error());
    case_end();

    /* a shard that cannot be written: the last rank's files limited to 4 KiB (RLIMIT_FSIZE,
     * SIGXFSZ ignored, so the write fails with EFBIG), for the writer thread and for zero_save */
    for (int sync = 0; sync < 2; sync++) {
        case_begin("%s with the last rank's shard unwritable (EFBIG) -> ZERO_ERR_IO on every rank, "
                   "no temporary directory, `latest` still step %d",
                   sync ? "zero_save" : "zero_save_async + zero_save_wait", TRAIN_STEPS);
        struct rlimit old_lim;
        void (*old_sig)(int) = SIG_DFL;
        const int limited = rank == world - 1;
        if (limited) {
            getrlimit(RLIMIT_FSIZE, &old_lim);
            struct rlimit lim = {4096, old_lim.rlim_max};
            old_sig = signal(SIGXFSZ, SIG_IGN);
            EXPECT(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit: %s", strerror(errno));
        }
        if (sync)
            s = zero_save(az, dir, NULL, 0);
        else {
            s = zero_save_async(az, dir, NULL, 0);
            expect_status(az, s, ZERO_OK, NULL, NULL);
            if (!s)
                s = zero_save_wait(az);
        }
        if (limited) {
            setrlimit(RLIMIT_FSIZE, &old_lim);
            signal(SIGXFSZ, old_sig);
        }
        char shard[32];
        snprintf(shard, sizeof shard, "rank-%05d.bin", world - 1);
        expect_status(az, s, ZERO_ERR_IO, shard, "File too large");
        barrier();
        if (rank == 0) {
            expect_latest(dir, TRAIN_STEPS);
            EXPECT(count_entries(dir, "step-", NULL, 0) == 1, "%s: %d step directories",
                   case_name, count_entries(dir, "step-", NULL, 0));
        }
        case_end();
    }

    case_begin("zero_finalize with an asynchronous save in flight abandons it; `latest` still "
               "names step %d", TRAIN_STEPS);
    s = zero_save_async(az, dir, NULL, 0);
    expect_status(az, s, ZERO_OK, NULL, NULL);
    EXPECT(zero_finalize(az) == ZERO_OK, "finalize: %s", zero_init_error());
    barrier();
    if (rank == 0) {
        EXPECT(count_entries(dir, "step-", last, sizeof last) == 1 &&
                   atoi(last + 5) == TRAIN_STEPS,
               "%s: step directories: %d, the last %s", case_name,
               count_entries(dir, "step-", NULL, 0), last);
        expect_latest(dir, TRAIN_STEPS);
    }
    case_end();
}

static void success_cases(void)
{
    unsigned char want[128], ub[128];
    size_t wl = blob_of(0, want), ul;

    case_begin("a fresh context loads the checkpoint: digest, counts, rank 0's blob everywhere");
    zero_ctx *f = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 1));
    ul = 0;
    zero_status s = zero_load(f, ckdir, ub, sizeof ub, &ul);
    expect_status(f, s, ZERO_OK, NULL, NULL);
    snap sf = take(f);
    expect_same(&s0, &sf, case_name);
    EXPECT(ul == wl && !memcmp(ub, want, wl), "rank %d: blob of %zu bytes, not rank 0's", rank, ul);
    train(f, &base, TRAIN_STEPS, 1);
    sf = take(f);
    EXPECT(sf.digest == d1, "one step after the load: %016" PRIx64 ", the reference's %016" PRIx64,
           sf.digest, d1);
    EXPECT(zero_finalize(f) == ZERO_OK, "finalize: %s", zero_init_error());
    case_end();

    case_begin("loading by the root follows latest");
    train(z, &base, TRAIN_STEPS, 1);
    s = zero_load(z, main_root, NULL, 0, NULL);
    expect_status(z, s, ZERO_OK, NULL, NULL);
    snap sz = take(z);
    expect_same(&s0, &sz, case_name);
    case_end();

    /* the same step twice into one directory: the second replaces the first */
    char twice[1200];
    snprintf(twice, sizeof twice, "%s/twice", root);
    case_begin("saving twice at the same step: the second replaces the first");
    s = zero_save(z, twice, "first", 5);
    expect_status(z, s, ZERO_OK, NULL, NULL);
    unsigned char mine[128];
    size_t ml = blob_of(rank, mine);
    s = zero_save(z, twice, mine, ml); /* rank 0's counts */
    expect_status(z, s, ZERO_OK, NULL, NULL);
    if (rank == 0) {
        char last[256] = "", lt[64];
        EXPECT(count_entries(twice, "step-", last, sizeof last) == 1, "%s: %d step-* directories",
               twice, count_entries(twice, "step-", NULL, 0));
        EXPECT(count_entries(twice, ".zero-", NULL, 0) == 0, "temporary directories left in %s",
               twice);
        size_t ll;
        unsigned char *l = slurp(path_in(twice, ZC_LATEST), &ll);
        snprintf(lt, sizeof lt, "step-%08d\n", TRAIN_STEPS);
        EXPECT(l && !strcmp((char *)l, lt), "latest holds \"%s\", expected \"%s\"",
               l ? (char *)l : "(none)", lt);
        free(l);
    }
    memset(ub, 0, sizeof ub);
    s = zero_load(z, twice, ub, sizeof ub, &ul);
    expect_status(z, s, ZERO_OK, NULL, NULL);
    EXPECT(ul == wl && !memcmp(ub, want, wl), "the blob is not the second save's rank 0 blob");
    sz = take(z);
    expect_same(&s0, &sz, case_name);
    case_end();

    /* ZERO_CKPT_KEEP=2: four saves at steps 1..4 leave the newest two */
    char keep[1200];
    snprintf(keep, sizeof keep, "%s/keep", root);
    case_begin("ZERO_CKPT_KEEP=2, four saves: the newest two step-* directories stay");
    setenv("ZERO_CKPT_KEEP", "2", 1);
    zero_ctx *k = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 1));
    unsetenv("ZERO_CKPT_KEEP");
    snap at[5];
    for (int i = 1; i <= 4; i++) {
        train(k, &base, i - 1, 1);
        at[i] = take(k);
        unsigned char b = (unsigned char)i;
        s = zero_save(k, keep, &b, 1);
        expect_status(k, s, ZERO_OK, NULL, NULL);
    }
    if (rank == 0) {
        struct stat st;
        EXPECT(count_entries(keep, "step-", NULL, 0) == 2, "%s holds %d step-* directories", keep,
               count_entries(keep, "step-", NULL, 0));
        EXPECT(stat(path_in(keep, "step-00000003"), &st) == 0 &&
                   stat(path_in(keep, "step-00000004"), &st) == 0,
               "step-00000003 and step-00000004 are not both in %s", keep);
        EXPECT(count_entries(keep, ".zero-", NULL, 0) == 0, "temporary directories left in %s",
               keep);
    }
    unsigned char b = 0;
    s = zero_load(k, path_in(keep, "step-00000003"), &b, 1, NULL);
    expect_status(k, s, ZERO_OK, NULL, NULL);
    snap sk = take(k);
    expect_same(&at[3], &sk, "step-00000003 by its directory");
    EXPECT(b == 3, "blob %d, expected 3", b);
    s = zero_load(k, keep, &b, 1, NULL);
    expect_status(k, s, ZERO_OK, NULL, NULL);
    sk = take(k);
    expect_same(&at[4], &sk, "the root, through latest");
    EXPECT(b == 4, "blob %d, expected 4", b);
    case_end();

    case_begin("without latest, the root loads its newest step-* directory");
    if (rank == 0)
        unlink(path_in(keep, ZC_LATEST));
    barrier();
    s = zero_load(k, path_in(keep, "step-00000003"), NULL, 0, NULL);
    expect_status(k, s, ZERO_OK, NULL, NULL);
    s = zero_load(k, keep, &b, 1, NULL);
    expect_status(k, s, ZERO_OK, NULL, NULL);
    sk = take(k);
    expect_same(&at[4], &sk, case_name);
    EXPECT(b == 4, "blob %d, expected 4", b);
    EXPECT(zero_finalize(k) == ZERO_OK, "finalize: %s", zero_init_error());
    case_end();

    /* other stages and working precisions: the same fp32 master */
    static const struct {
        int stage;
        zero_dtype dt;
        const char *name;
        int steps_like_ref;
    } o[] = {{3, ZERO_DTYPE_BF16, "stage 3 bf16", 0},
             {0, ZERO_DTYPE_FP32, "stage 0 fp32", 1},
             {1, ZERO_DTYPE_FP16, "stage 1 fp16", 0},
             {3, ZERO_DTYPE_FP32, "stage 3 fp32", 1}};
    for (size_t i = 0; i < sizeof o / sizeof *o; i++) {
        case_begin("saved at stage 2 fp32, loaded at %s: the same master%s", o[i].name,
                   o[i].steps_like_ref ? ", and one step like the reference" : "");
        zero_ctx *c = make_ctx(&base, base_config(o[i].stage, o[i].dt, 1));
        ul = 0;
        s = zero_load(c, ckdir, ub, sizeof ub, &ul);
        expect_status(c, s, ZERO_OK, NULL, NULL);
        snap sc = take(c);
        EXPECT(sc.digest == s0.digest && sc.step == s0.step && sc.skipped == s0.skipped,
               "%s: digest %016" PRIx64 " step %" PRId64 ", expected %016" PRIx64 " and %" PRId64,
               o[i].name, sc.digest, sc.step, s0.digest, s0.step);
        EXPECT(ul == wl && !memcmp(ub, want, wl), "%s: the blob", o[i].name);
        if (o[i].steps_like_ref) {
            train(c, &base, TRAIN_STEPS, 1);
            sc = take(c);
            EXPECT(sc.digest == d1, "%s: one step after the load: %016" PRIx64
                   ", the reference's %016" PRIx64, o[i].name, sc.digest, d1);
        }
        EXPECT(zero_finalize(c) == ZERO_OK, "finalize: %s", zero_init_error());
        case_end();
    }
}

int main(int argc, char **argv)
{
    const char *dbg = getenv("CKPT_TEST_DEBUG");
    char dbg_copy[32] = "NONE";
    if (dbg && dbg[0])
        snprintf(dbg_copy, sizeof dbg_copy, "%s", dbg);
    /* kept: how shards are read (the cases run under either way) and what the log shows */
    static const char *const kept[2] = {"ZERO_CKPT_IO", "ZERO_DEBUG_SUBSYS"};
    char kept_val[2][64] = {"", ""};
    for (int k = 0; k < 2; k++)
        if (getenv(kept[k]))
            snprintf(kept_val[k], sizeof kept_val[k], "%s", getenv(kept[k]));
    clear_zero_environment();
    setenv("ZERO_DEBUG", dbg_copy, 1); /* the refusals are the point: not logged */
    for (int k = 0; k < 2; k++)
        if (kept_val[k][0])
            setenv(kept[k], kept_val[k], 1);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    rank_hint = rank;
    if (argc > 1)
        snprintf(root, sizeof root, "%s", argv[1]);
    else if (getenv("OUT") && getenv("OUT")[0])
        snprintf(root, sizeof root, "%s/test_ckpt_np%d", getenv("OUT"), world);
    else
        snprintf(root, sizeof root, "test_ckpt_np%d.d", world);
    snprintf(main_root, sizeof main_root, "%s/main", root);
    snprintf(ckdir, sizeof ckdir, "%s/step-%08d", main_root, TRAIN_STEPS);
    if (rank == 0) {
        static const char *const mine[] = {"main", "twice", "keep", "accum", "empty", "afile",
                                           "args"};
        char cmd[1100];
        snprintf(cmd, sizeof cmd, "%s", root);
        for (char *p = cmd + 1; *p; p++) /* mkdir -p */
            if (*p == '/') {
                *p = 0;
                mkdir(cmd, 0755);
                *p = '/';
            }
        mkdir(root, 0755);
        for (size_t i = 0; i < sizeof mine / sizeof *mine; i++)
            rm_tree(path_in(root, mine[i]));
        printf("test_ckpt: np %d, root %s\n", world, root);
        fflush(stdout);
    }
    barrier();
    double t0 = MPI_Wtime();

    /* the checkpoint, and the reference one step further */
    make_model(&base, M_BASE);
    z = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 1));
    zero_ctx *ref = make_ctx(&base, base_config(2, ZERO_DTYPE_FP32, 1));
    train(z, &base, 0, TRAIN_STEPS);
    train(ref, &base, 0, TRAIN_STEPS + 1);
    s0 = take(z);
    snap sr = take(ref);
    d1 = sr.digest;
    EXPECT(zero_finalize(ref) == ZERO_OK, "finalize: %s", zero_init_error());
    unsigned char blob[128];
    size_t bl = blob_of(rank, blob); /* every rank its own: rank 0's is saved */
    case_begin("zero_save at step %d into %s (blobs differ per rank)", TRAIN_STEPS, main_root);
    zero_status s = zero_save(z, main_root, blob, bl);
    expect_status(z, s, ZERO_OK, NULL, NULL);
    snap after = take(z);
    expect_same(&s0, &after, "after zero_save");
    case_end();
    if (s) {
        if (rank == 0)
            printf("test_ckpt: np %d, %d cases, %d failures\n", world, cases, failures);
        MPI_Finalize();
        return 1;
    }
    /* every rank parses the manifest once: the shard files, slices and tensors the cases name */
    {
        zr_error e;
        zero_status r = read_manifest(ckdir, &man, &e);
        if (r) {
            fprintf(stderr, "rank %d: the saved manifest: %s\n", rank, e.msg);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        EXPECT(man.num_files == world, "%d shard files at np %d", man.num_files, world);
        EXPECT(man.prog.steps == TRAIN_STEPS, "manifest steps %" PRId64, man.prog.steps);
    }

    shard_cases();
    truncated_while_open_cases();
    restore_cases();
    manifest_cases();
    other_model_case(M_MISSING, "a tensor the checkpoint lacks", "extra.w");
    other_model_case(M_EXTRA, "a tensor fewer than the checkpoint", "head.w");
    other_model_case(M_SHAPE, "a tensor of another shape, same numel", "l1.w");
    other_model_case(M_NUMEL, "a tensor of another numel", "l2.b");
    user_blob_cases();
    accumulation_case();
    argument_cases();
    success_cases();
    async_cases();

    zc_manifest_free(&man);
    EXPECT(zero_finalize(z) == ZERO_OK, "finalize: %s", zero_init_error());
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0)
        printf("test_ckpt: np %d, %d cases, %d failures (%.1f s)\n", world, cases, total,
               MPI_Wtime() - t0);
    MPI_Finalize();
    return total ? 1 : 0;
}
