/* ckpt.c — zero_save and zero_load: sharded, checksummed checkpoints committed atomically, that
 * load at any world size, stage, dtype or offload setting (the file format: ckpt_format.h,
 * docs/CHECKPOINT.md).
 *
 * Save: rank 0 makes a temporary directory beside the checkpoints; every rank writes the elements
 * it owns in the layout (its slice of every chunk, also at stage 0), fp32 master and optimizer
 * states block by block, into its own shard file and fsyncs it; the block checksums come to rank
 * 0, which writes user.bin and the manifest (last), fsyncs the directory, renames it to
 * step-<steps> (exchanging it with an older one of the same name), fsyncs the parent, points
 * `latest` at it (written and renamed the same way) and prunes to ZERO_CKPT_KEEP. A crash at any
 * point leaves the previous checkpoint whole and `latest` naming a complete one.
 *
 * Load: rank 0 reads the manifest and every rank parses the same bytes; each rank reads exactly
 * the blocks holding the elements it owns in its own layout (zc_read), verifying each (pass 1);
 * the ranks agree; only then does each read the same blocks again, verified again, straight into
 * the state (pass 2: from the page cache as a rule; working copies converted from the master),
 * and the replicas are all-gathered. A corrupt, short or missing file fails pass 1, leaving the
 * context as it was; only a file that changes between the passes can leave it partly replaced
 * (said in the message; loading a checkpoint again repairs it). */
#define _GNU_SOURCE /* renameat2 (RENAME_EXCHANGE) */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "kernels/kernels.h"
#include "runtime/ckpt_format.h"
#include "runtime/engine.h"
#include "util/log.h"

enum { ZR_PATH = 4096 };

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    int err = errno;
    close(fd);
    if (r != 0 && !zr_sync_unsupported(err)) {
        errno = err;
        return -1;
    }
    return 0;
}

static int write_all(int fd, const void *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

/* A new file written whole: created exclusively, written, fsynced, closed. */
static int write_new_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int ok = write_all(fd, p, n) == 0 && (fsync(fd) == 0 || zr_sync_unsupported(errno));
    int err = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    errno = err;
    return ok ? 0 : -1;
}

/* "<host>.<pid>" of this process: names its temporary directories, so that one left by a process
 * that is gone can be recognised and removed. */
static void owner_tag(char *buf, size_t n)
{
    char host[65] = "";
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "localhost");
    host[64] = 0;
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            *p = '_';
    snprintf(buf, n, "%s.%ld", host, (long)getpid());
}

/* Removes a flat directory (files only) and the directory itself; 0 or -1. */
static int remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    char p[ZR_PATH + 300];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        unlink(p);
    }
    closedir(d);
    return rmdir(dir);
}

/* Temporary and discarded directories (".zero-tmp.*.<host>.<pid>", ".zero-old.*.<host>.<pid>"),
 * and temporary `latest` files, left in root by processes of this host that are gone. */
static void remove_stale_dirs(const char *root)
{
    char me[128];
    owner_tag(me, sizeof me);
    char *dot = strrchr(me, '.');
    *dot = 0; /* the host part */
    DIR *d = opendir(root);
    if (!d)
        return;
    struct dirent *de;
    char p[ZR_PATH + 300];
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strncmp(n, ".zero-tmp.", 10) != 0 && strncmp(n, ".zero-old.", 10) != 0)
            continue;
        const char *pid_at = strrchr(n, '.');
        if (!pid_at || pid_at == n)
            continue;
        /* the host part is just before the pid */
        const char *host_at = pid_at - 1;
        while (host_at > n && *host_at != '.')
            host_at--;
        size_t hl = (size_t)(pid_at - host_at - 1);
        if (hl != strlen(me) || strncmp(host_at + 1, me, hl) != 0)
            continue;
        char *end;
        long pid = strtol(pid_at + 1, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        snprintf(p, sizeof p, "%s/%s", root, n);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) { /* a `latest` being written */
            unlink(p);
            continue;
        }
        if (!strncmp(n, ".zero-old.", 10)) {
            /* ".zero-old.<step dir>.<host>.<pid>": a checkpoint moved away to be replaced. When
             * the process died before its replacement took the name, it is put back. */
            char step[256], back[ZR_PATH + 300];
            size_t sl = (size_t)(host_at - (n + 10));
            if (sl > 0 && sl < sizeof step) {
                memcpy(step, n + 10, sl);
                step[sl] = 0;
                snprintf(back, sizeof back, "%s/%s", root, step);
                if (lstat(back, &st) != 0 && errno == ENOENT && rename(p, back) == 0) {
                    ZR_WARN(ZR_SUB_INIT, "put %s back: the save that was replacing it did not "
                            "finish", back);
                    continue;
                }
            }
        }
        if (remove_flat_dir(p) == 0)
            ZR_INFO(ZR_SUB_INIT, "removed %s, left by process %ld, which is gone", p, pid);
    }
    closedir(d);
}

/* mkdir -p */
static int make_dirs(const char *path)
{
    char p[ZR_PATH];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    if (stat(p, &st) != 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

/* ---- where the state is --------------------------------------------------------------------- */

/* Pointers to element `off` of chunk c (inside this rank's slice [lo, hi)) of the fp32 master
 * (array 0) and the optimizer's states (1..): full layout at stage 0, shard layout above; with an
 * fp32 working copy that is the master, the parameters. */
static float *array_at(zero_ctx *z, int a, int c, size_t off, size_t lo)
{
    const zp_chunk *ch = &z->layout.chunks[c];
    const int stage = z->set.cfg.stage;
    size_t idx = stage == 0 ? ch->offset + off : ch->shard_offset + (off - lo);
    if (a > 0)
        return z->st.ostate[a - 1] + idx;
    if (z->st.master)
        return z->st.master + idx;
    return (float *)z->st.params + (stage == 3 ? ch->shard_offset + (off - lo) : ch->offset + off);
}

/* The working copy of element `off` of chunk c. */
static void *work_at(zero_ctx *z, int c, size_t off, size_t lo)
{
    const zp_chunk *ch = &z->layout.chunks[c];
    size_t idx = z->set.cfg.stage == 3 ? ch->shard_offset + (off - lo) : ch->offset + off;
    return (char *)z->st.params + idx * z->wsz;
}

/* Registered tensors and the engine's internal ones (engine.h zr_pub: a tensor with slices is
 * one internal tensor per slice): checkpoints name and index the registered ones. */
static int pub_count(const zero_ctx *z) { return z->pub ? z->num_pub : z->num_tensors; }
static int pub_of(const zero_ctx *z, int j) { return z->pub ? z->int_pub[j] : j; }
static const zr_tensor_meta *pub_meta(const zero_ctx *z, int i)
{
    return z->pub ? &z->pub[i].meta : &z->meta[i];
}
static uint64_t pub_numel(const zero_ctx *z, int i)
{
    return z->pub ? (uint64_t)z->pub[i].numel : (uint64_t)z->layout.place[i].numel;
}
/* The first element of internal tensor j within its registered tensor. */
static uint64_t pub_base(const zero_ctx *z, int j)
{
    if (!z->pub)
        return 0;
    const zr_pub *p = &z->pub[z->int_pub[j]];
    return (uint64_t)z->int_slice[j] * (uint64_t)(p->numel / (size_t)p->slices);
}

/* What each rank writes: its slice of every chunk, tensor piece by piece, in layout order. */
typedef struct piece {
    int tensor;
    uint64_t offset, numel;
    int chunk;
    size_t chunk_offset, lo;
} piece;

/* The pieces of rank r (out may be NULL to count). */
static int rank_pieces(zero_ctx *z, int r, piece *out)
{
    const zp_layout *L = &z->layout;
    int n = 0;
    for (int c = 0; c < L->num_chunks; c++) {
        size_t lo, hi;
        zp_slice_range(L, c, r, &lo, &hi);
        int k = zr_segments(z, c, lo, hi);
        for (int j = 0; j < k; j++, n++)
            if (out)
                out[n] = (piece){z->seg[j].tensor, z->seg[j].tensor_offset, z->seg[j].numel, c,
                                 z->seg[j].chunk_offset, lo};
    }
    return n;
}

/* ---- save ------------------------------------------------------------------------------------ */

/* Where a save writes before its commit: the temporary directory and the checkpoint id. */
typedef struct save_where {
    uint64_t id;
    char tmp[ZR_PATH];
} save_where;

/* One rank's shard file as written: its size, checksums and block count. */
typedef struct shard_out {
    uint64_t bytes;
    uint64_t file_hash; /* XXH3-64 over the header and the block hashes (ckpt_format.h) */
    uint64_t *hash;     /* block hashes in file order */
    uint64_t nblocks;
} shard_out;

/* An asynchronous save (zero_save_async .. zero_save_wait); the snapshot buffer stays for the
 * next one until zero_finalize. */
struct zr_async_save {
    pthread_t thread;
    int running;              /* the writer thread was started and not joined */
    int pending;              /* zero_save_async succeeded, zero_save_wait not yet called */
    unsigned char *buf;       /* this rank's shard file, whole: ZR_DIO_ALIGN-aligned */
    size_t cap, len;
    piece *pc;                /* this rank's pieces (room for any rank's) */
    int npc, arrays;
    shard_out so;             /* its size; its checksums, by the writer thread */
    const zo_topology *topo;  /* where the writer thread binds (the data loader's way), or NULL */
    const zo_plan *plan;
    char root[ZR_PATH], name[64], path[ZR_PATH + 64];
    save_where where;
    long long step;
    int err;                  /* the writer's: 0 or an errno */
    double t_start, write_s;
    zc_manifest m;            /* rank 0: the manifest, built at zero_save_async */
    int have_manifest;
    uint64_t *all, stride;    /* rank 0: the checksums the manifest borrows, filled at the wait */
    unsigned char *user;      /* rank 0: a copy of the user blob */
    size_t user_len;
};

static uint64_t pieces_blocks(const piece *p, int n)
{
    uint64_t b = 0;
    for (int i = 0; i < n; i++)
        b += zc_blocks(p[i].numel, ZC_BLOCK_ELEMS);
    return b;
}

/* The shard file's writer. The data goes through an aligned buffer; where the file system takes
 * O_DIRECT, whole 4 KiB multiples of it go straight to the disk through a second descriptor (no
 * page cache to fill: the memory a buffered write would take is what costs most on a guest whose
 * freed pages go back to its host), and the tail through the buffered one. Elsewhere (tmpfs,
 * some network file systems) every write is buffered, with writeback started every 32 MiB. */
enum { ZR_WBUF = 8 << 20, ZR_DIO_ALIGN = 4096 };

typedef struct shard_writer {
    int fd;              /* buffered */
    int dfd;             /* O_DIRECT on the same file, or -1 */
    unsigned char *buf;  /* ZR_WBUF + one block, ZR_DIO_ALIGN-aligned */
    size_t fill;         /* bytes in buf */
    uint64_t at;         /* file offset of buf[0] */
    uint64_t flushed;    /* buffered writes: writeback started up to here */
} shard_writer;

/* Writes the first n bytes of the buffer at w->at (n a multiple of ZR_DIO_ALIGN unless last). */
static int writer_put(shard_writer *w, size_t n, int last)
{
    size_t done = 0;
    while (done < n) {
        int direct = w->dfd >= 0 && !last;
        ssize_t r = pwrite(direct ? w->dfd : w->fd, w->buf + done, n - done,
                           (off_t)(w->at + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && direct && errno == EINVAL) { /* O_DIRECT refused after all: buffered */
            close(w->dfd);
            w->dfd = -1;
            continue;
        }
        if (r <= 0)
            return -1;
        done += (size_t)r;
    }
    w->at += n;
    if (w->dfd < 0 && w->at - w->flushed >= ((uint64_t)32 << 20)) {
        sync_file_range(w->fd, (off_t)w->flushed, (off_t)(w->at - w->flushed),
                        SYNC_FILE_RANGE_WRITE);
        w->flushed = w->at;
    }
    return 0;
}

/* Hands whole aligned pieces of a full buffer to the disk, keeping the unaligned rest. */
static int writer_drain(shard_writer *w)
{
    if (w->fill < ZR_WBUF)
        return 0;
    size_t n = w->fill / ZR_DIO_ALIGN * ZR_DIO_ALIGN;
    if (writer_put(w, n, 0) != 0)
        return -1;
    memmove(w->buf, w->buf + n, w->fill - n);
    w->fill -= n;
    return 0;
}

/* Creates the shard file: a buffered descriptor, and an O_DIRECT one where the file system takes
 * it (-1 elsewhere). 0, or -1 with errno. */
static int writer_open(shard_writer *w, const char *path)
{
    w->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0)
        return -1;
    w->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
    return 0;
}

/* fsync (when ok) and close; ok, or 0 with errno set to the first error. */
static int writer_close(shard_writer *w, int ok)
{
    int err = errno;
    if (ok && fsync(w->fd) != 0 && !zr_sync_unsupported(errno)) {
        ok = 0;
        err = errno;
    }
    if (w->dfd >= 0)
        close(w->dfd);
    if (w->fd >= 0 && close(w->fd) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    w->fd = w->dfd = -1;
    errno = err;
    return ok;
}

/* nb elements of piece p from element e0, array by array (master, then the optimizer's states),
 * into dst: one block of the shard file. */
static void fill_block(zero_ctx *z, const piece *p, uint64_t e0, uint64_t nb, int A, float *dst)
{
    const size_t off = p->chunk_offset + e0;
    for (int a = 0; a < A; a++)
        zr_dev_copy(&z->dev, dst + (size_t)a * nb, array_at(z, a, p->chunk, off, p->lo),
                    (size_t)nb * sizeof *dst);
}

/* The file checksum's share of block hash h: its 8 little-endian bytes. */
static void file_hash_add(XXH3_state_t *fh, uint64_t h)
{
    unsigned char le[8];
    for (int k = 0; k < 8; k++)
        le[k] = (unsigned char)(h >> (8 * k));
    XXH3_64bits_update(fh, le, 8);
}

/* Writes this rank's shard file: header, then its pieces block by block, through the writer's
 * buffer (ZR_WBUF at a time). */
static zero_status write_shard(zero_ctx *z, const char *path, uint64_t id, const piece *pc,
                               int npc, shard_out *o)
{
    const int A = 1 + z->optim->num_states;
    const uint64_t B = ZC_BLOCK_ELEMS;
    const size_t block_bytes = (size_t)(B * (uint64_t)A) * sizeof(float);
    o->nblocks = pieces_blocks(pc, npc);
    o->hash = malloc((o->nblocks ? o->nblocks : 1) * sizeof *o->hash);
    shard_writer w = {.fd = -1, .dfd = -1};
    void *mem = NULL;
    if (posix_memalign(&mem, ZR_DIO_ALIGN, ZR_WBUF + block_bytes) != 0)
        mem = NULL;
    w.buf = mem;
    XXH3_state_t *fh = XXH3_createState();
    if (!o->hash || !w.buf || !fh) {
        free(w.buf);
        XXH3_freeState(fh);
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_save: out of host memory");
    }
    if (writer_open(&w, path) != 0) {
        int err = errno;
        free(w.buf);
        XXH3_freeState(fh);
        return zr_fail(&z->err, ZERO_ERR_IO, "zero_save: cannot create %s: %s", path,
                       strerror(err));
    }
    zc_header_encode(w.buf, z->rank, z->world, A, id, B);
    w.fill = ZC_HEADER_BYTES;
    XXH3_64bits_reset(fh);
    XXH3_64bits_update(fh, w.buf, ZC_HEADER_BYTES);
    int ok = 1;
    uint64_t q = 0;
    for (int i = 0; ok && i < npc; i++) {
        for (uint64_t e0 = 0; ok && e0 < pc[i].numel; e0 += B) {
            uint64_t nb = pc[i].numel - e0 < B ? pc[i].numel - e0 : B;
            const size_t bytes = (size_t)nb * (size_t)A * sizeof(float);
            float *blk = (float *)(w.buf + w.fill); /* 4-byte aligned: the header is 64 bytes */
            fill_block(z, &pc[i], e0, nb, A, blk);
            o->hash[q] = zc_hash(blk, bytes);
            file_hash_add(fh, o->hash[q++]);
            w.fill += bytes;
            ok = writer_drain(&w) == 0;
        }
    }
    if (ok && w.fill && writer_put(&w, w.fill, 1) != 0)
        ok = 0;
    ok = writer_close(&w, ok);
    int err = errno;
    o->bytes = w.at;
    o->file_hash = XXH3_64bits_digest(fh);
    XXH3_freeState(fh);
    free(w.buf);
    if (!ok)
        return zr_fail(&z->err, ZERO_ERR_IO, "zero_save: writing %s: %s", path, strerror(err));
    return ZERO_OK;
}

/* The bytes of this rank's shard file (header, then every piece block by block) into buf, which
 * holds them (the same bytes write_shard writes): zero_save_async's snapshot, taken without
 * hashing (hash_shard does it on the writer thread). o->bytes is set, o->hash allocated. */
static zero_status fill_shard(zero_ctx *z, uint64_t id, const piece *pc, int npc,
                              unsigned char *buf, shard_out *o)
{
    const int A = 1 + z->optim->num_states;
    const uint64_t B = ZC_BLOCK_ELEMS;
    o->nblocks = pieces_blocks(pc, npc);
    o->hash = malloc((o->nblocks ? o->nblocks : 1) * sizeof *o->hash);
    if (!o->hash)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_save_async: out of host memory");
    zc_header_encode(buf, z->rank, z->world, A, id, B);
    uint64_t at = ZC_HEADER_BYTES;
    for (int i = 0; i < npc; i++)
        for (uint64_t e0 = 0; e0 < pc[i].numel; e0 += B) {
            uint64_t nb = pc[i].numel - e0 < B ? pc[i].numel - e0 : B;
            fill_block(z, &pc[i], e0, nb, A, (float *)(buf + at));
            at += (uint64_t)nb * (uint64_t)A * sizeof(float);
        }
    o->bytes = at;
    return ZERO_OK;
}

/* The block hashes and the file checksum of a shard file held whole in buf (pieces pc, A arrays),
 * as write_shard computes them while writing. */
static int hash_shard(const unsigned char *buf, const piece *pc, int npc, int A, shard_out *o)
{
    XXH3_state_t *fh = XXH3_createState();
    if (!fh)
        return -1;
    XXH3_64bits_reset(fh);
    XXH3_64bits_update(fh, buf, ZC_HEADER_BYTES);
    const uint64_t B = ZC_BLOCK_ELEMS;
    uint64_t at = ZC_HEADER_BYTES, q = 0;
    for (int i = 0; i < npc; i++)
        for (uint64_t e0 = 0; e0 < pc[i].numel; e0 += B) {
            uint64_t nb = pc[i].numel - e0 < B ? pc[i].numel - e0 : B;
            const size_t bytes = (size_t)nb * (size_t)A * sizeof(float);
            o->hash[q] = zc_hash(buf + at, bytes);
            file_hash_add(fh, o->hash[q++]);
            at += bytes;
        }
    o->file_hash = XXH3_64bits_digest(fh);
    XXH3_freeState(fh);
    return 0;
}

/* Rank 0's manifest for every rank's pieces and their gathered hashes (borrowed from all). pc is
 * scratch space for any rank's pieces; it is left holding the last rank's. */
static zero_status build_manifest(zero_ctx *z, const char *what, zc_manifest *m, uint64_t id,
                                  const uint64_t *all,
                                  uint64_t stride, piece *pc, uint64_t user_len,
                                  uint64_t user_hash)
{
    memset(m, 0, sizeof *m);
    m->version = ZC_VERSION;
    m->id = id;
    snprintf(m->producer, sizeof m->producer, "libzero %d.%d.%d", ZERO_VERSION_MAJOR,
             ZERO_VERSION_MINOR, ZERO_VERSION_PATCH);
    m->prog = (zc_progress){z->prog.steps,      z->prog.boundaries,      z->prog.micro_steps,
                            z->prog.skipped,    (double)z->scaler.scale, z->scaler.dynamic,
                            z->scaler.hysteresis_left, z->scaler.last_rescale};
    m->world = z->world;
    m->stage = z->set.cfg.stage;
    m->dtype = (int)z->dtype;
    m->grad_accum = z->set.cfg.grad_accum;
    snprintf(m->optimizer, sizeof m->optimizer, "%s", z->optim->name);
    m->num_arrays = 1 + z->optim->num_states;
    snprintf(m->arrays[0], ZC_NAME_MAX, "master");
    snprintf(m->arrays[1], ZC_NAME_MAX, "exp_avg");
    snprintf(m->arrays[2], ZC_NAME_MAX, "exp_avg_sq");
    m->block_elems = ZC_BLOCK_ELEMS;
    m->user_bytes = user_len;
    m->user_hash = user_hash;
    char *cfg = NULL;
    size_t cl = 0;
    FILE *cf = open_memstream(&cfg, &cl);
    if (cf) {
        zr_config_write_json(&z->set, cf);
        fclose(cf);
    }
    m->config_json = cfg;
    m->num_tensors = pub_count(z);
    m->tensors = calloc((size_t)m->num_tensors, sizeof *m->tensors);
    m->num_files = z->world;
    m->files = calloc((size_t)z->world, sizeof *m->files);
    int total = 0;
    for (int r = 0; r < z->world; r++)
        total += rank_pieces(z, r, NULL);
    m->num_slices = total;
    m->slices = calloc((size_t)(total ? total : 1), sizeof *m->slices);
    if (!m->tensors || !m->files || !m->slices)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: out of host memory", what);
    for (int i = 0; i < m->num_tensors; i++) {
        zc_tensor *t = &m->tensors[i];
        const zr_tensor_meta *pm = pub_meta(z, i);
        t->name = pm->name; /* borrowed: not freed by zc_manifest_free (see save) */
        t->ndim = pm->ndim;
        memcpy(t->shape, pm->shape, sizeof t->shape);
        t->numel = pub_numel(z, i);
        t->module = z->pub ? z->pub[i].module : z->tensor_module ? z->tensor_module[i] : 0;
        t->no_decay = pm->no_decay;
    }
    int k = 0;
    for (int r = 0; r < z->world; r++) {
        const uint64_t *row = all + (uint64_t)r * stride;
        zc_file *f = &m->files[r];
        snprintf(f->name, sizeof f->name, "rank-%05d.bin", r);
        f->rank = r;
        f->bytes = row[1];
        f->hash = row[2];
        int n = rank_pieces(z, r, pc);
        uint64_t at = ZC_HEADER_BYTES, q = 0;
        for (int i = 0; i < n; i++, k++) {
            zc_slice *s = &m->slices[k];
            s->tensor = pub_of(z, pc[i].tensor);
            s->offset = pub_base(z, pc[i].tensor) + pc[i].offset;
            s->numel = pc[i].numel;
            s->file = r;
            s->at = at;
            s->hash = (uint64_t *)(row + 3 + q); /* borrowed */
            q += zc_blocks(pc[i].numel, ZC_BLOCK_ELEMS);
            at += zc_slice_bytes(pc[i].numel, m->num_arrays);
        }
    }
    return ZERO_OK;
}

/* The borrowed parts of a saved manifest are not the manifest's to free. */
static void free_built_manifest(zc_manifest *m)
{
    free(m->tensors);
    free(m->files);
    free(m->slices);
    free(m->config_json);
    memset(m, 0, sizeof *m);
}

typedef struct step_dir {
    long long step;
    char name[64];
} step_dir;

static int step_cmp(const void *a, const void *b)
{
    const step_dir *x = a, *y = b;
    return x->step < y->step ? -1 : x->step > y->step;
}

/* ZERO_CKPT_KEEP: the newest `keep` step-* directories stay (and `current` always). Each one
 * removed is first renamed to a discarded name, so a crash while deleting it leaves no
 * half-deleted step-* directory. */
static void prune(const char *what, const char *root, int keep, const char *current)
{
    if (keep <= 0)
        return;
    DIR *d = opendir(root);
    if (!d)
        return;
    step_dir *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        long long s;
        char tail;
        if (sscanf(de->d_name, "step-%lld%c", &s, &tail) != 1 || strlen(de->d_name) >= 64)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            step_dir *nv = realloc(v, cap * sizeof *v);
            if (!nv)
                break;
            v = nv;
        }
        v[n].step = s;
        snprintf(v[n].name, sizeof v[n].name, "%s", de->d_name);
        n++;
    }
    closedir(d);
    qsort(v, n, sizeof *v, step_cmp);
    char tag[128], from[ZR_PATH + 80], to[ZR_PATH + 300];
    owner_tag(tag, sizeof tag);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        if (!strcmp(v[i].name, current))
            continue;
        snprintf(from, sizeof from, "%s/%s", root, v[i].name);
        snprintf(to, sizeof to, "%s/.zero-old.%s.%s", root, v[i].name, tag);
        if (rename(from, to) == 0 && remove_flat_dir(to) == 0)
            ZR_INFO(ZR_SUB_INIT, "%s: removed %s (ZERO_CKPT_KEEP=%d)", what, from, keep);
        else
            ZR_WARN(ZR_SUB_INIT, "%s: could not remove %s: %s", what, from, strerror(errno));
    }
    free(v);
}

/* Rank 0: user.bin and the manifest into tmp, then tmp becomes root/name and `latest` names it. */
static zero_status commit(zero_ctx *z, const char *what, const char *root, const char *tmp,
                          const char *name, const zc_manifest *m, const void *user,
                          size_t user_len)
{
    char p[ZR_PATH + 80], q[ZR_PATH + 300];
    snprintf(p, sizeof p, "%s/" ZC_USER_FILE, tmp);
    if (write_new_file(p, user_len ? user : "", user_len) != 0)
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: writing %s: %s", what, p, strerror(errno));
    size_t len = 0;
    char *json = zc_manifest_dump(m, &len);
    if (!json)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: out of host memory", what);
    snprintf(p, sizeof p, "%s/" ZC_MANIFEST, tmp);
    int w = write_new_file(p, json, len);
    free(json);
    if (w != 0)
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: writing %s: %s", what, p, strerror(errno));
    if (fsync_dir(tmp) != 0)
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: syncing %s: %s", what, tmp, strerror(errno));
    /* into place: exchanged with an older checkpoint of the same name, which then goes */
    snprintf(p, sizeof p, "%s/%s", root, name);
    struct stat st;
    int exists = lstat(p, &st) == 0;
    if (exists) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, p, RENAME_EXCHANGE) != 0) {
            if (!zr_sync_unsupported(errno))
                return zr_fail(&z->err, ZERO_ERR_IO, "%s: replacing %s: %s", what, p,
                               strerror(errno));
            /* no atomic exchange on this file system: the old one is moved away first */
            char tag[128];
            owner_tag(tag, sizeof tag);
            snprintf(q, sizeof q, "%s/.zero-old.%s.%s", root, name, tag);
            if (rename(p, q) != 0)
                return zr_fail(&z->err, ZERO_ERR_IO, "%s: replacing %s: %s", what, p,
                               strerror(errno));
            if (rename(tmp, p) != 0) {
                int err = errno;
                rename(q, p); /* the old one back */
                return zr_fail(&z->err, ZERO_ERR_IO, "%s: replacing %s: %s", what, p,
                               strerror(err));
            }
            remove_flat_dir(q);
        } else {
            remove_flat_dir(tmp); /* tmp now holds the older checkpoint */
        }
    } else if (rename(tmp, p) != 0) {
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: renaming %s to %s: %s", what, tmp, p,
                       strerror(errno));
    }
    if (fsync_dir(root) != 0)
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: syncing %s: %s", what, root, strerror(errno));
    /* latest: a small file renamed over the old one */
    char tag[128];
    owner_tag(tag, sizeof tag);
    snprintf(q, sizeof q, "%s/.zero-tmp.latest.%s", root, tag);
    unlink(q);
    char line[80];
    int ll = snprintf(line, sizeof line, "%s\n", name);
    snprintf(p, sizeof p, "%s/" ZC_LATEST, root);
    if (write_new_file(q, line, (size_t)ll) != 0 || rename(q, p) != 0) {
        int err = errno;
        unlink(q);
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: updating %s: %s", what, p, strerror(err));
    }
    if (fsync_dir(root) != 0)
        return zr_fail(&z->err, ZERO_ERR_IO, "%s: syncing %s: %s", what, root, strerror(errno));
    prune(what, root, z->set.ckpt_keep, name);
    return ZERO_OK;
}

static uint64_t new_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
    }
    return id ? id : 1;
}

static zero_status check_boundary(zero_ctx *z, const char *what)
{
    if (z->eval)
        return zr_fail(&z->err, ZERO_ERR_STATE,
                       "%s inside an evaluation pass (zero_eval_begin): call zero_eval_end first",
                       what);
    if (z->prog.micro != 0)
        return zr_fail(&z->err, ZERO_ERR_STATE,
                       "%s: in the middle of a gradient-accumulation window (micro-step %d of "
                       "%d); call it after the zero_step that ends the window",
                       what, z->prog.micro, z->set.cfg.grad_accum);
    return ZERO_OK;
}

/* The arguments and state every save checks; the same verdict on every rank. */
static zero_status save_check(zero_ctx *z, const char *what, const char *dir, const void *user,
                              size_t user_len)
{
    zero_status s = ZERO_OK;
    if (!dir || !dir[0])
        s = zr_fail(&z->err, ZERO_ERR_INVALID, "%s: dir is %s", what, dir ? "empty" : "NULL");
    else if (strlen(dir) >= ZR_PATH - 400)
        s = zr_fail(&z->err, ZERO_ERR_INVALID, "%s: dir %.80s... is too long", what, dir);
    else if (user_len && !user)
        s = zr_fail(&z->err, ZERO_ERR_INVALID, "%s: user is NULL with user_len %zu", what,
                    user_len);
    else if (user_len > ((size_t)1 << 30))
        s = zr_fail(&z->err, ZERO_ERR_INVALID,
                    "%s: user_len %zu is larger than the 1 GiB a checkpoint's user blob may hold",
                    what, user_len);
    if (!s && z->asave && z->asave->pending)
        s = zr_fail(&z->err, ZERO_ERR_STATE,
                    "%s: the asynchronous save of %s/%s is still in flight; call zero_save_wait "
                    "first", what, z->asave->root, z->asave->name);
    if (!s)
        s = check_boundary(z, what);
    if (!s)
        s = zr_device_error(z, "before saving");
    return zr_agree(z, s, NULL, NULL, 0);
}

/* Rank 0 makes the temporary directory beside the checkpoints; every rank learns its path and
 * the checkpoint id. */
static zero_status save_begin(zero_ctx *z, const char *what, const char *root, const char *name,
                              save_where *where)
{
    zero_status s = ZERO_OK;
    memset(where, 0, sizeof *where);
    if (z->rank == 0) {
        where->id = new_id();
        char tag[128];
        owner_tag(tag, sizeof tag);
        snprintf(where->tmp, sizeof where->tmp, "%s/.zero-tmp.%s.%016" PRIx64 ".%s", root, name,
                 where->id, tag);
        if (make_dirs(root) != 0)
            s = zr_fail(&z->err, ZERO_ERR_IO, "%s: cannot create the directory %s: %s", what,
                        root, strerror(errno));
        else {
            remove_stale_dirs(root);
            if (mkdir(where->tmp, 0755) != 0)
                s = zr_fail(&z->err, ZERO_ERR_IO, "%s: cannot create %s: %s", what, where->tmp,
                            strerror(errno));
        }
    }
    zero_status b = zr_coll_broadcast(&z->hcoll, where, sizeof *where, ZR_ELEM_BYTE, 0,
                                      ZR_TRAFFIC_OTHER, NULL);
    if (b)
        return zr_fail(&z->err, b, "%s: %s", what, z->comm.err.msg);
    return zr_rank0_verdict(z, s, what);
}

/* This rank's pieces in an array long enough for any rank's (*npc of them); NULL when out of
 * host memory. */
static piece *save_pieces(zero_ctx *z, int *npc)
{
    int maxpc = *npc = rank_pieces(z, z->rank, NULL);
    for (int r = 0; r < z->world; r++) {
        int n = rank_pieces(z, r, NULL);
        maxpc = n > maxpc ? n : maxpc;
    }
    piece *pc = malloc((size_t)(maxpc ? maxpc : 1) * sizeof *pc);
    if (pc)
        rank_pieces(z, z->rank, pc);
    return pc;
}

/* The words of one rank's row of gathered checksums (0, bytes, file hash, block hashes), for the
 * rank with the most blocks: layout arithmetic, the same on every rank. pc is scratch space for
 * any rank's pieces (save_pieces), left holding this rank's; NULL gives the bare 3. */
static uint64_t save_stride(zero_ctx *z, piece *pc)
{
    uint64_t stride = 3;
    for (int r = 0; pc && r < z->world; r++) {
        int n = rank_pieces(z, r, pc);
        uint64_t rb = 3 + pieces_blocks(pc, n);
        stride = rb > stride ? rb : stride;
    }
    if (pc) /* back to this rank's own */
        rank_pieces(z, z->rank, pc);
    return stride;
}

/* The ranks agree on s; then every rank's shard size, file hash and block hashes go to rank 0
 * (*all: rows of *stride words, save_stride; rank 0's to free). */
static zero_status save_gather(zero_ctx *z, const char *what, zero_status s, const shard_out *so,
                               piece *pc, uint64_t **all, uint64_t *stride)
{
    *stride = save_stride(z, pc);
    uint64_t *mine = calloc(*stride, sizeof *mine);
    *all = z->rank == 0 ? calloc(*stride * (uint64_t)z->world, sizeof **all) : NULL;
    if (!s && (!mine || (z->rank == 0 && !*all)))
        s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: out of host memory", what);
    zero_status agreed = zr_agree(z, s, NULL, NULL, 0);
    if (!agreed) {
        mine[0] = 0;
        mine[1] = so->bytes;
        mine[2] = so->file_hash;
        memcpy(mine + 3, so->hash, so->nblocks * sizeof *so->hash);
        zero_status g = zr_coll_gather(&z->hcoll, mine, *all ? *all : mine, *stride, ZR_ELEM_I64,
                                       0);
        if (g)
            agreed = zr_fail(&z->err, g, "%s: gathering checksums: %s", what, z->comm.err.msg);
    }
    free(mine);
    return agreed;
}

zero_status zero_save(zero_ctx *z, const char *dir, const void *user, size_t user_len)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    /* every rank has the same verdict before anyone touches a file */
    ZR_CHECK(save_check(z, "zero_save", dir, user, user_len));
    double t0 = zr_now();
    const char *root = dir;
    char name[64];
    snprintf(name, sizeof name, "step-%08lld", (long long)z->prog.steps);
    save_where where;
    ZR_CHECK(save_begin(z, "zero_save", root, name, &where));

    /* every rank: its shard file */
    int npc = 0;
    piece *pc = save_pieces(z, &npc);
    shard_out so;
    memset(&so, 0, sizeof so);
    char path[ZR_PATH + 64];
    snprintf(path, sizeof path, "%s/rank-%05d.bin", where.tmp, z->rank);
    zero_status s = ZERO_OK;
    if (!pc)
        s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_save: out of host memory");
    else {
        s = write_shard(z, path, where.id, pc, npc, &so);
        if (!s) /* a copy out of the device that failed: what was hashed is not the state */
            s = zr_device_error(z, "saving a checkpoint");
    }
    uint64_t *all = NULL, stride = 0;
    zero_status agreed = save_gather(z, "zero_save", s, &so, pc, &all, &stride);
    s = agreed;
    if (!s && z->rank == 0) {
        zc_manifest m;
        s = build_manifest(z, "zero_save", &m, where.id, all, stride, pc,
                           (uint64_t)user_len, zc_hash(user_len ? user : "", user_len));
        if (!s)
            s = commit(z, "zero_save", root, where.tmp, name, &m, user, user_len);
        free_built_manifest(&m);
    }
    if (s && z->rank == 0 && !z->comm.broken)
        remove_flat_dir(where.tmp); /* the previous checkpoint stays as it was */
    free(all);
    free(pc);
    free(so.hash);
    if (agreed)
        return agreed;
    s = zr_rank0_verdict(z, s, "zero_save");
    if (!s && z->rank == 0)
        ZR_INFO(ZR_SUB_INIT, "zero_save: %s/%s (step %lld, %d shard files) in %.3f s", root, name,
                (long long)z->prog.steps, z->world, zr_now() - t0);
    return s;
}

/* ---- asynchronous save ----------------------------------------------------------------------- */

/* zero_save_async's writer thread: the checksums of the snapshot (a->buf, a->len bytes, the whole
 * shard file), then the file into a->path as write_shard writes it (O_DIRECT where it can, the
 * tail buffered, fsync). It touches nothing but what a holds; a->err = 0 or the errno of the
 * first failure. */
static void *async_writer(void *arg)
{
    zr_async_save *a = arg;
    double t0 = zr_now();
    if (a->topo) { /* off the training thread's core (it inherited that binding) */
        char desc[160];
        (void)zo_bind_helper_thread(a->topo, a->plan, desc, sizeof desc);
    }
    if (hash_shard(a->buf, a->pc, a->npc, a->arrays, &a->so) != 0) {
        a->err = ENOMEM;
        return NULL;
    }
    shard_writer w = {.fd = -1, .dfd = -1};
    int ok = writer_open(&w, a->path) == 0;
    const size_t body = a->len / ZR_DIO_ALIGN * ZR_DIO_ALIGN; /* a->buf is aligned */
    for (size_t done = 0; ok && done < body;) { /* ZR_WBUF at a time, as write_shard drains */
        const size_t n = body - done < ZR_WBUF ? body - done : ZR_WBUF;
        w.buf = a->buf + done;
        ok = writer_put(&w, n, 0) == 0;
        done += n;
    }
    if (ok && a->len > body) {
        w.buf = a->buf + body;
        ok = writer_put(&w, a->len - body, 1) == 0;
    }
    if (w.fd >= 0)
        ok = writer_close(&w, ok);
    a->err = ok ? 0 : errno ? errno : EIO;
    a->write_s = zr_now() - t0;
    return NULL;
}

/* What an asynchronous save holds between zero_save_async and zero_save_wait, but the snapshot
 * buffer (kept for the next save). */
static void async_clear(zr_async_save *a)
{
    if (a->have_manifest)
        free_built_manifest(&a->m);
    a->have_manifest = 0;
    free(a->all);
    free(a->user);
    free(a->pc);
    free(a->so.hash);
    a->all = NULL;
    a->user = NULL;
    a->pc = NULL;
    memset(&a->so, 0, sizeof a->so);
    a->user_len = 0;
    a->pending = 0;
}

void zr_ckpt_join(zero_ctx *z)
{
    zr_async_save *a = z->asave;
    if (a && a->running) {
        pthread_join(a->thread, NULL);
        a->running = 0;
    }
}

void zr_ckpt_release(zero_ctx *z)
{
    zr_async_save *a = z->asave;
    if (!a)
        return;
    zr_ckpt_join(z);
    if (a->pending) {
        if (z->rank == 0 && !z->comm.broken)
            remove_flat_dir(a->where.tmp);
        ZR_WARN(ZR_SUB_INIT, "the asynchronous save of %s/%s was never committed "
                "(zero_save_wait not called): abandoned, the previous checkpoint stays",
                a->root, a->name);
    }
    async_clear(a);
    free(a->buf);
    free(a);
    z->asave = NULL;
}

zero_status zero_save_async(zero_ctx *z, const char *dir, const void *user, size_t user_len)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    const char *what = "zero_save_async";
    ZR_CHECK(save_check(z, what, dir, user, user_len));
    double t0 = zr_now();
    zero_status s = ZERO_OK;
    if (!z->asave && !(z->asave = calloc(1, sizeof *z->asave)))
        s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: out of host memory", what);
    ZR_CHECK(zr_agree(z, s, NULL, NULL, 0));
    zr_async_save *a = z->asave;
    snprintf(a->root, sizeof a->root, "%s", dir);
    snprintf(a->name, sizeof a->name, "step-%08lld", (long long)z->prog.steps);
    a->step = z->prog.steps;
    ZR_CHECK(save_begin(z, what, a->root, a->name, &a->where));

    /* the snapshot: this rank's shard file, whole, in host memory (checksums on the thread) */
    a->arrays = 1 + z->optim->num_states;
    a->pc = save_pieces(z, &a->npc);
    uint64_t need = ZC_HEADER_BYTES;
    for (int i = 0; a->pc && i < a->npc; i++)
        need += zc_slice_bytes(a->pc[i].numel, a->arrays);
    if (!a->pc)
        s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: out of host memory", what);
    else if (need > a->cap) {
        free(a->buf);
        a->buf = NULL;
        a->cap = 0;
        void *mem = NULL;
        if (posix_memalign(&mem, ZR_DIO_ALIGN, (size_t)need) != 0)
            s = zr_fail(&z->err, ZERO_ERR_SYSTEM,
                        "%s: out of host memory for the %" PRIu64 "-byte snapshot of this "
                        "rank's state", what, need);
        a->buf = mem;
        a->cap = mem ? (size_t)need : 0;
    }
    if (!s)
        s = fill_shard(z, a->where.id, a->pc, a->npc, a->buf, &a->so);
    if (!s)
        s = zr_device_error(z, "saving a checkpoint");
    a->len = (size_t)a->so.bytes;
    const double t_snap = zr_now() - t0;
    /* rank 0: the manifest as of this step (its sizes and checksums filled in at the wait) */
    s = zr_agree(z, s, NULL, NULL, 0);
    const int agreed = !s;
    a->stride = save_stride(z, a->pc);
    if (!s && z->rank == 0) {
        a->all = calloc(a->stride * (uint64_t)z->world, sizeof *a->all);
        a->user = malloc(user_len ? user_len : 1);
        if (!a->all || !a->user)
            s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: out of host memory", what);
        if (!s) {
            s = build_manifest(z, what, &a->m, a->where.id, a->all, a->stride, a->pc,
                               (uint64_t)user_len, zc_hash(user_len ? user : "", user_len));
            a->have_manifest = 1;
            rank_pieces(z, z->rank, a->pc); /* the writer walks this rank's own pieces */
            if (user_len)
                memcpy(a->user, user, user_len);
            a->user_len = user_len;
        }
    }
    if (agreed)
        s = zr_rank0_verdict(z, s, what);
    if (!s) { /* every rank's writer */
        snprintf(a->path, sizeof a->path, "%s/rank-%05d.bin", a->where.tmp, z->rank);
        a->err = 0;
        a->topo = z->topo;
        a->plan = &z->plan;
        int rc = pthread_create(&a->thread, NULL, async_writer, a);
        if (rc != 0)
            s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "%s: cannot start the writer thread: %s", what,
                        strerror(rc));
        a->running = rc == 0;
        s = zr_agree(z, s, NULL, NULL, 0);
    }
    if (s) {
        zr_ckpt_join(z);
        /* every rank's writer stopped before rank 0 removes the directory they write into */
        if (!z->comm.broken)
            (void)zr_agree(z, ZERO_OK, NULL, NULL, 0);
        if (z->rank == 0 && !z->comm.broken)
            remove_flat_dir(a->where.tmp);
        async_clear(a);
        return s;
    }
    a->pending = 1;
    a->t_start = zr_now();
    ZR_INFO(ZR_SUB_INIT, "%s: the state of step %lld taken in %.3f s (%zu bytes); %s/%s being "
            "written", what, a->step, t_snap, a->len, a->root, a->name);
    return ZERO_OK;
}

zero_status zero_save_wait(zero_ctx *z)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    zr_async_save *a = z->asave;
    zero_status s = ZERO_OK;
    if (!a || !a->pending)
        s = zr_fail(&z->err, ZERO_ERR_STATE,
                    "zero_save_wait: no asynchronous save in flight (zero_save_async)");
    ZR_CHECK(zr_agree(z, s, NULL, NULL, 0));
    double t0 = zr_now();
    zr_ckpt_join(z);
    if (a->err)
        s = zr_fail(&z->err, ZERO_ERR_IO, "zero_save_wait: writing %s: %s", a->path,
                    strerror(a->err));
    uint64_t *all = NULL, stride = 0;
    zero_status agreed = save_gather(z, "zero_save_wait", s, &a->so, a->pc, &all, &stride);
    s = agreed;
    if (!s && z->rank == 0) { /* the sizes and checksums into the manifest, then the commit */
        memcpy(a->all, all, stride * (uint64_t)z->world * sizeof *all);
        for (int r = 0; r < z->world; r++) {
            a->m.files[r].bytes = all[(uint64_t)r * stride + 1];
            a->m.files[r].hash = all[(uint64_t)r * stride + 2];
        }
        s = commit(z, "zero_save_wait", a->root, a->where.tmp, a->name, &a->m, a->user,
                   a->user_len);
    }
    if (s && z->rank == 0 && !z->comm.broken)
        remove_flat_dir(a->where.tmp); /* the previous checkpoint stays as it was */
    free(all);
    const double waited = zr_now() - t0, since = zr_now() - a->t_start;
    async_clear(a);
    if (agreed)
        return agreed;
    s = zr_rank0_verdict(z, s, "zero_save_wait");
    if (!s && z->rank == 0)
        ZR_INFO(ZR_SUB_INIT, "zero_save_wait: %s/%s (step %lld) committed; checksummed and "
                "written in %.3f s, %.3f s after zero_save_async, of which this call waited "
                "%.3f s", a->root, a->name, a->step, a->write_s, since, waited);
    return s;
}

/* ---- load ------------------------------------------------------------------------------------ */

static void shape_text(int ndim, const int64_t *shape, uint64_t numel, char *buf, size_t n)
{
    if (ndim == 0) {
        snprintf(buf, n, "%" PRIu64 " elements", numel);
        return;
    }
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && o < n; d++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (o < n)
        snprintf(buf + o, n - o, "]");
}

/* Registered tensors against the checkpoint's, by name: map[i] = the checkpoint's index of
 * registered tensor i. ZERO_ERR_INVALID naming the first tensor missing, extra or of another
 * shape. */
static zero_status match_tensors(zero_ctx *z, const zc_manifest *m, const char *where, int *map)
{
    int n = m->num_tensors;
    zc_name_ix *ix = malloc((size_t)n * sizeof *ix);
    if (!ix)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_load: out of host memory");
    for (int j = 0; j < n; j++)
        ix[j] = (zc_name_ix){m->tensors[j].name, j};
    qsort(ix, (size_t)n, sizeof *ix, zc_name_cmp);
    zero_status s = ZERO_OK;
    int found = 0;
    for (int i = 0; i < pub_count(z) && !s; i++) {
        zc_name_ix key = {pub_meta(z, i)->name, 0};
        zc_name_ix *hit = bsearch(&key, ix, (size_t)n, sizeof *ix, zc_name_cmp);
        if (!hit) {
            s = zr_fail(&z->err, ZERO_ERR_INVALID,
                        "zero_load: checkpoint %s has no tensor \"%s\" (registered as tensor %d); "
                        "it holds %d tensors of another model or version",
                        where, pub_meta(z, i)->name, i, n);
            break;
        }
        const zc_tensor *t = &m->tensors[hit->i];
        const zr_tensor_meta *r = pub_meta(z, i);
        uint64_t numel = pub_numel(z, i);
        int same = t->numel == numel &&
                   (t->ndim == 0 || r->ndim == 0 ||
                    (t->ndim == r->ndim &&
                     !memcmp(t->shape, r->shape, (size_t)t->ndim * sizeof *t->shape)));
        if (!same) {
            char a[160], b[160];
            shape_text(t->ndim, t->shape, t->numel, a, sizeof a);
            shape_text(r->ndim, r->shape, numel, b, sizeof b);
            s = zr_fail(&z->err, ZERO_ERR_INVALID,
                        "zero_load: tensor \"%s\" is %s in checkpoint %s but registered as %s",
                        r->name, a, where, b);
        }
        map[i] = hit->i;
        found++;
    }
    if (!s && found != n) {
        /* an extra tensor: the first of the checkpoint's that no registered name matched */
        zc_name_ix *reg = malloc((size_t)pub_count(z) * sizeof *reg);
        if (!reg)
            s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_load: out of host memory");
        for (int i = 0; reg && i < pub_count(z); i++)
            reg[i] = (zc_name_ix){pub_meta(z, i)->name, i};
        if (reg)
            qsort(reg, (size_t)pub_count(z), sizeof *reg, zc_name_cmp);
        for (int j = 0; reg && j < n && !s; j++) {
            zc_name_ix key = {m->tensors[j].name, 0};
            if (!bsearch(&key, reg, (size_t)pub_count(z), sizeof *reg, zc_name_cmp))
                s = zr_fail(&z->err, ZERO_ERR_INVALID,
                            "zero_load: checkpoint %s has tensor \"%s\", which is not "
                            "registered (%d tensors there, %d registered)",
                            where, m->tensors[j].name, n, pub_count(z));
        }
        free(reg);
    }
    free(ix);
    return s;
}

enum { ZR_LOAD_PIECE = 1 << 22 }; /* elements per read through the bounce buffers */

typedef struct load_pass {
    zc_reader rd;
    const int *map;
    int A;
    int install;   /* 0: read and verify only (pass 1); 1: into the state (pass 2) */
    int direct;    /* every destination is host memory: read straight into it */
    float *tmp;    /* [A][ZR_LOAD_PIECE] fp32, host */
    void *wtmp;    /* [ZR_LOAD_PIECE] working, host */
} load_pass;

/* One piece of one segment: n elements at element `off` of chunk c (slice start lo), tensor
 * elements from `first`. */
static zero_status load_piece(zero_ctx *z, load_pass *lp, int c, size_t lo, size_t off, int t,
                              size_t first, size_t n)
{
    float *out[ZC_MAX_ARRAYS] = {NULL, NULL, NULL};
    const int fp16 = z->dtype == ZERO_DTYPE_FP16;
    if (!lp->install)
        out[0] = fp16 ? lp->tmp : NULL; /* the values matter only for fp16's range check */
    for (int a = 0; lp->install && a < lp->A; a++)
        out[a] = lp->direct ? array_at(z, a, c, off, lo) : lp->tmp + (size_t)a * ZR_LOAD_PIECE;
    zr_error e;
    zr_error_clear(&e);
    if (zc_read(&lp->rd, lp->map[pub_of(z, t)], pub_base(z, t) + first, n, out, &e))
        return zr_fail(&z->err, e.status, "zero_load: %s%s", e.msg,
                       lp->install ? " (the file changed while it was being loaded: the state is "
                                     "partly replaced; load a checkpoint again)"
                                   : "");
    if (!lp->install) {
        for (size_t x = 0; fp16 && x < n; x++) /* a master value that is inf in fp16 */
            if (!(fabsf(out[0][x]) < 65520.0f))
                return zr_fail(&z->err, ZERO_ERR_INVALID,
                               "zero_load: tensor \"%s\", element %zu: %g is beyond fp16's "
                               "range (ZERO_DTYPE=fp16; largest finite value 65504)",
                               z->meta[t].name, first + x, (double)out[0][x]);
        return ZERO_OK;
    }
    if (!lp->direct) /* the bounce buffers into the state */
        for (int a = 0; a < lp->A; a++)
            zr_dev_copy(&z->dev, array_at(z, a, c, off, lo), out[a], n * sizeof(float));
    /* the working copy: the master rounded (with no master, it was read), through the bounce
     * buffer in pieces (a direct read takes whole segments, larger than the buffer) */
    for (size_t x = 0; z->st.master && x < n; x += ZR_LOAD_PIECE) {
        size_t m = n - x < ZR_LOAD_PIECE ? n - x : ZR_LOAD_PIECE;
        zk_cast(lp->wtmp, z->dtype, out[0] + x, ZERO_DTYPE_FP32, m);
        zr_dev_copy(&z->dev, work_at(z, c, off + x, lo), lp->wtmp, m * z->wsz);
    }
    return ZERO_OK;
}

/* This rank's elements, segment by segment of its slice of every chunk in the context's layout:
 * read and verified (pass 1), or read into the state (pass 2). */
static zero_status run_pass(zero_ctx *z, load_pass *lp)
{
    const zp_layout *L = &z->layout;
    for (int c = 0; c < L->num_chunks; c++) {
        size_t lo, hi;
        zp_slice_range(L, c, z->rank, &lo, &hi);
        int k = zr_segments(z, c, lo, hi);
        for (int j = 0; j < k; j++) {
            const zp_segment sg = z->seg[j];
            /* whole segments where nothing bounces (a verify-only pass without values, or
             * direct reads); else in pieces of the bounce buffers */
            int whole = (!lp->install && z->dtype != ZERO_DTYPE_FP16) ||
                        (lp->install && lp->direct);
            size_t step = whole ? sg.numel : ZR_LOAD_PIECE;
            for (size_t x = 0; x < sg.numel; x += step) {
                size_t n = sg.numel - x < step ? sg.numel - x : step;
                ZR_CHECK(load_piece(z, lp, c, lo, sg.chunk_offset + x, sg.tensor,
                                    sg.tensor_offset + x, n));
            }
        }
    }
    return ZERO_OK;
}

/* The replicas after pass 2: stages 0-2 all-gather the working parameters, stage 0 also the
 * master and the states. */
static zero_status gather_loaded(zero_ctx *z, int A)
{
    const zp_layout *L = &z->layout;
    const int stage = z->set.cfg.stage;
    zero_status s = zr_coll_group_start(&z->dcoll);
    for (int c = 0; c < L->num_chunks && !s && stage < 3; c++) {
        const zp_chunk *ch = &L->chunks[c];
        s = zr_coll_all_gather(&z->dcoll, (char *)z->st.params + ch->offset * z->wsz, ch->slice,
                               zr_elem_of(z->dtype), ZR_TRAFFIC_OTHER, NULL);
        for (int a = 0; a < A && !s && stage == 0; a++)
            if (a > 0 || z->st.master)
                s = zr_coll_all_gather(&z->dcoll, array_at(z, a, c, 0, 0), ch->slice, ZR_ELEM_F32,
                                       ZR_TRAFFIC_OTHER, NULL);
    }
    if (z->dcoll.ops) {
        zero_status g = zr_coll_group_end(&z->dcoll, NULL);
        if (!s)
            s = g;
    }
    if (s)
        return zr_fail(&z->err, s, "zero_load: all-gather of the loaded state: %s",
                       z->comm.err.msg);
    return ZERO_OK;
}

zero_status zero_load(zero_ctx *z, const char *path, void *user, size_t user_cap,
                      size_t *user_len)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    zero_status s = ZERO_OK;
    if (!path || !path[0])
        s = zr_fail(&z->err, ZERO_ERR_INVALID, "zero_load: path is %s", path ? "empty" : "NULL");
    else if (user_cap && !user)
        s = zr_fail(&z->err, ZERO_ERR_INVALID, "zero_load: user is NULL with user_cap %zu",
                    user_cap);
    if (!s)
        s = check_boundary(z, "zero_load");
    ZR_CHECK(zr_agree(z, s, NULL, NULL, 0));
    double t0 = zr_now();

    /* rank 0 finds the checkpoint and reads its manifest; every rank parses the same bytes */
    struct {
        uint64_t len;
        char where[ZR_PATH];
    } hdr;
    memset(&hdr, 0, sizeof hdr);
    char *json = NULL;
    size_t jlen = 0;
    if (z->rank == 0) {
        zr_error e;
        zr_error_clear(&e);
        s = zc_resolve(path, hdr.where, sizeof hdr.where, &e);
        if (!s) {
            char mp[ZR_PATH + 32];
            snprintf(mp, sizeof mp, "%s/" ZC_MANIFEST, hdr.where);
            s = zc_read_file(mp, (size_t)1 << 31, &json, &jlen, &e);
        }
        if (s)
            s = zr_fail(&z->err, s, "zero_load: %s", e.msg);
        hdr.len = jlen;
    }
    zero_status b = zr_coll_broadcast(&z->hcoll, &hdr, sizeof hdr, ZR_ELEM_BYTE, 0,
                                      ZR_TRAFFIC_OTHER, NULL);
    if (b) {
        free(json);
        return zr_fail(&z->err, b, "zero_load: %s", z->comm.err.msg);
    }
    if ((s = zr_rank0_verdict(z, s, "zero_load"))) {
        free(json);
        return s;
    }
    if (z->rank != 0 && !(json = malloc(hdr.len + 1)))
        s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_load: out of host memory");
    if ((s = zr_agree(z, s, NULL, NULL, 0))) {
        free(json);
        return s;
    }
    b = zr_coll_broadcast(&z->hcoll, json, hdr.len, ZR_ELEM_BYTE, 0, ZR_TRAFFIC_OTHER, NULL);
    if (b) {
        free(json);
        return zr_fail(&z->err, b, "zero_load: %s", z->comm.err.msg);
    }

    zc_manifest m;
    memset(&m, 0, sizeof m);
    zr_error e;
    zr_error_clear(&e);
    const int A = 1 + z->optim->num_states;
    int *map = NULL;
    void *blob = NULL;
    load_pass lp;
    memset(&lp, 0, sizeof lp);
    s = zc_manifest_parse(&m, json, hdr.len, hdr.where, &e);
    free(json);
    if (s)
        s = zr_fail(&z->err, s, "zero_load: %s", e.msg);
    if (!s && (strcmp(m.optimizer, z->optim->name) != 0 || m.num_arrays != A))
        s = zr_fail(&z->err, ZERO_ERR_INVALID,
                    "zero_load: checkpoint %s holds the state of optimizer \"%s\" (%d arrays); "
                    "this context runs \"%s\" (%d)",
                    hdr.where, m.optimizer, m.num_arrays, z->optim->name, A);
    if (!s && user_len)
        *user_len = (size_t)m.user_bytes;
    if (!s && user && m.user_bytes > user_cap)
        s = zr_fail(&z->err, ZERO_ERR_INVALID,
                    "zero_load: the checkpoint's user blob is %" PRIu64 " bytes, user_cap is %zu "
                    "(nothing was loaded; *user_len says how many bytes it needs)",
                    m.user_bytes, user_cap);
    if (!s) {
        map = malloc((size_t)pub_count(z) * sizeof *map);
        blob = malloc(m.user_bytes ? (size_t)m.user_bytes : 1);
        lp.tmp = malloc((size_t)A * ZR_LOAD_PIECE * sizeof(float));
        lp.wtmp = malloc((size_t)ZR_LOAD_PIECE * z->wsz);
        if (!map || !blob || !lp.tmp || !lp.wtmp)
            s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_load: out of host memory");
    }
    if (!s)
        s = match_tensors(z, &m, hdr.where, map);
    if (!s) {
        zr_error e2;
        zr_error_clear(&e2);
        const int io = z->set.ckpt_io == ZR_DATA_IO_PREAD ? ZC_IO_PREAD : ZC_IO_MMAP;
        if ((s = zc_reader_open(&lp.rd, &m, hdr.where, io, &e2)))
            s = zr_fail(&z->err, s, "zero_load: %s", e2.msg);
        lp.map = map;
        lp.A = A;
        lp.direct = zr_dev_is_host(&z->dev) &&
                    zr_dev_is_host(z->offload_opt ? &z->host : &z->dev) &&
                    zr_dev_is_host(z->offload_param ? &z->host : &z->dev);
    }
    double t1 = zr_now();
    if (!s) /* pass 1: every block this rank needs, read and verified; nothing changes */
        s = run_pass(z, &lp);
    double t2 = zr_now();
    if (!s && z->rank == 0) { /* the user blob, rank 0's to read and check */
        char up[ZR_PATH + 32];
        snprintf(up, sizeof up, "%s/" ZC_USER_FILE, hdr.where);
        char *ub = NULL;
        size_t ul = 0;
        if (zc_read_file(up, (size_t)m.user_bytes, &ub, &ul, &e))
            s = zr_fail(&z->err, ZERO_ERR_IO, "zero_load: %s", e.msg);
        else if (ul != m.user_bytes || zc_hash(ub, ul) != m.user_hash)
            s = zr_fail(&z->err, ZERO_ERR_IO,
                        "zero_load: checkpoint %s: %s: %s", hdr.where, ZC_USER_FILE,
                        ul != m.user_bytes ? "its size differs from the manifest's"
                                           : "checksum mismatch: the file is corrupt");
        else
            memcpy(blob, ub, ul);
        free(ub);
    }
    /* every rank's verdict before anything changes */
    s = zr_agree(z, s, NULL, NULL, 0);
    if (!s) {
        /* pass 2: the same blocks again (from the page cache, as a rule), verified again, into
         * the state; then the replicas */
        lp.install = 1;
        t2 = zr_now();
        s = zr_agree(z, run_pass(z, &lp), NULL, NULL, 0);
        ZR_INFO(ZR_SUB_INIT, "zero_load: pass 1 (read, verify) %.3f s, pass 2 (into the state) "
                "%.3f s, %.1f MB read (ZERO_CKPT_IO=%s: %d of the %d files it opened mapped)",
                t2 - t1, zr_now() - t2, lp.rd.bytes_read / 1e6,
                lp.rd.io == ZC_IO_PREAD ? "pread" : "mmap", lp.rd.mapped, lp.rd.opened);
        if (!s)
            s = gather_loaded(z, A);
        if (!s && m.user_bytes) {
            b = zr_coll_broadcast(&z->hcoll, blob, (size_t)m.user_bytes, ZR_ELEM_BYTE, 0,
                                  ZR_TRAFFIC_OTHER, NULL);
            if (b)
                s = zr_fail(&z->err, b, "zero_load: %s", z->comm.err.msg);
        }
        if (!s) {
            z->prog.steps = m.prog.steps;
            z->prog.boundaries = m.prog.boundaries;
            z->prog.micro_steps = m.prog.micro_steps;
            z->prog.skipped = m.prog.skipped;
            z->prog.micro = 0;
            z->comm.step = z->prog.boundaries;
            zr_scaler_init(&z->scaler, &z->set.cfg, z->dtype);
            if (z->scaler.dynamic && m.prog.scale_dynamic) { /* fp16 to fp16: where it was */
                z->scaler.scale = (float)m.prog.loss_scale;
                z->scaler.hysteresis_left = m.prog.hysteresis_left;
                z->scaler.last_rescale = m.prog.last_rescale;
            }
            memset(&z->last, 0, sizeof z->last);
            z->last.step = z->prog.steps;
            z->last.skipped = z->prog.skipped;
            z->last.loss_scale = z->scaler.scale;
            if (user && m.user_bytes)
                memcpy(user, blob, (size_t)m.user_bytes);
            if (z->set.cfg.stage == 3)
                s = zr_s3_after_step(z);
            zr_views_refresh(z);
        }
        /* a device that failed while taking the state, or a stage-3 refresh that failed on one
         * rank, fails the load on every rank */
        s = zr_agree(z, s ? s : zr_device_error(z, "loading a checkpoint"), NULL, NULL, 0);
    }
    if (!s)
        ZR_INFO(ZR_SUB_INIT, "zero_load: %s (step %lld, saved by %d ranks at stage %d) in %.3f s",
                hdr.where, (long long)m.prog.steps, m.world, m.stage, zr_now() - t0);
    zc_manifest_free(&m);
    zc_reader_close(&lp.rd);
    free(lp.tmp);
    free(lp.wtmp);
    free(map);
    free(blob);
    return s;
}
