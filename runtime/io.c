/* io.c — the parameters out of the engine: the full fp32 values gathered chunk by chunk to rank
 * 0, written as safetensors (zero_export) or hashed (zero_param_digest); and how libzero writes a
 * file (the export, the report): into a temporary file beside the target, synced, then renamed
 * over it, so the target is either the old file or the complete new one. Traffic counted as
 * "other". */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "runtime/ckpt_format.h"
#include "runtime/engine.h"
#include "util/log.h"

/* ---- files ------------------------------------------------------------------------------------
 * A file is written as <dir>/.<name>.zero-tmp.<host>.<pid> beside its target, flushed, fsynced,
 * renamed over the target and the directory fsynced. A symbolic link is followed: the rename
 * replaces the file it points to and the link stays. A target that exists and is not a regular
 * file (a directory, a FIFO, a device) is refused and left as it is. A failure removes the
 * temporary file; one left by a process that was killed is removed by the next write of the same
 * target on the same host, once that process is gone. */

typedef struct zr_out {
    FILE *f;
    const char *path;       /* as the caller gave it */
    char target[PATH_MAX];  /* what the rename replaces: path, or the file its links point to */
    char dir[PATH_MAX];     /* target's directory */
    char tmp[PATH_MAX];     /* the temporary file in dir */
} zr_out;

enum { ZR_LINK_HOPS = 40, ZR_TMP_BASE = 128, ZR_TMP_HOST = 64 };

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISFIFO(m) ? "a FIFO (named pipe)"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISSOCK(m) ? "a socket"
                         : "not a regular file";
}

/* " (through a symbolic link to T)" when the target is not the path given, else "". */
static const char *via(const zr_out *o, char *buf, size_t len)
{
    if (strcmp(o->path, o->target) == 0)
        return "";
    snprintf(buf, len, " (through a symbolic link to %s)", o->target);
    return buf;
}

/* p's directory into dir and its last component into *base: "a/b" -> "a", "b"; "b" -> ".", "b";
 * "/b" -> "/", "b". -1 when the directory does not fit. */
static int split_path(const char *p, char *dir, size_t cap, const char **base)
{
    const char *slash = strrchr(p, '/');
    size_t n = !slash ? 1 : slash == p ? 1 : (size_t)(slash - p);
    if (n >= cap)
        return -1;
    if (!slash)
        memcpy(dir, ".", 2);
    else {
        memcpy(dir, p, n);
        dir[n] = 0;
    }
    *base = slash ? slash + 1 : p;
    return 0;
}

/* o->target: path with its symbolic links followed (a dangling one names the file to create);
 * *st and *exists describe it. Refuses a target that exists and is not a regular file. */
static zero_status resolve_target(zr_error *e, const char *what, zr_out *o, struct stat *st,
                                  int *exists)
{
    char buf[PATH_MAX + 64];
    *exists = 0;
    if ((size_t)snprintf(o->target, sizeof o->target, "%s", o->path) >= sizeof o->target)
        return zr_fail(e, ZERO_ERR_IO, "%s: the path %.80s... is longer than %d bytes", what,
                       o->path, PATH_MAX - 1);
    for (int hops = 0;; hops++) {
        if (lstat(o->target, st) != 0) {
            if (errno == ENOENT)
                return ZERO_OK;
            return zr_fail(e, ZERO_ERR_IO, "%s: cannot write %s%s: %s", what, o->path,
                           via(o, buf, sizeof buf), strerror(errno));
        }
        if (!S_ISLNK(st->st_mode))
            break;
        char link[PATH_MAX], dir[PATH_MAX];
        const char *base;
        ssize_t n = hops < ZR_LINK_HOPS ? readlink(o->target, link, sizeof link - 1) : -1;
        if (n < 0)
            return zr_fail(e, ZERO_ERR_IO, "%s: cannot write %s: following the symbolic link "
                           "%s: %s", what, o->path, o->target,
                           hops < ZR_LINK_HOPS ? strerror(errno) : "too many levels of links");
        link[n] = 0;
        size_t len;
        if (link[0] == '/' || split_path(o->target, dir, sizeof dir, &base) != 0)
            len = (size_t)snprintf(o->target, sizeof o->target, "%s", link);
        else
            len = (size_t)snprintf(o->target, sizeof o->target, "%s/%s", dir, link);
        if (len >= sizeof o->target)
            return zr_fail(e, ZERO_ERR_IO, "%s: cannot write %s: the symbolic link points to a "
                           "path longer than %d bytes", what, o->path, PATH_MAX - 1);
    }
    if (!S_ISREG(st->st_mode))
        return zr_fail(e, ZERO_ERR_IO,
                       "%s: cannot write %s%s: it is %s, not a regular file; libzero replaces "
                       "only regular files and leaves it as it is",
                       what, o->path, via(o, buf, sizeof buf), file_kind(st->st_mode));
    *exists = 1;
    return ZERO_OK;
}

/* ".<base>.zero-tmp.<host>." (base and host shortened to keep the name under NAME_MAX); the
 * pid follows. */
static void tmp_prefix(char *buf, size_t len, const char *base)
{
    char host[ZR_TMP_HOST + 1] = "";
    if (gethostname(host, sizeof host) != 0 || !host[0])
        snprintf(host, sizeof host, "localhost");
    host[ZR_TMP_HOST] = 0;
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            *p = '_'; /* no dots: the pid is what follows the last one */
    snprintf(buf, len, ".%.*s.zero-tmp.%s.", (int)ZR_TMP_BASE, base, host);
}

/* Removes the temporary files of this target (prefix) left in dir by processes of this host
 * that are gone. A name is "<prefix><pid>" or "<prefix><pid>-<k>". */
static void remove_stale(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t pl = strlen(prefix);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *p = de->d_name;
        if (strncmp(p, prefix, pl) != 0 || p[pl] < '0' || p[pl] > '9')
            continue;
        char *end;
        errno = 0;
        long pid = strtol(p + pl, &end, 10);
        if (errno || pid <= 0 || (long)(pid_t)pid != pid)
            continue;
        if (*end == '-' && end[1] >= '0' && end[1] <= '9')
            end += strspn(end + 1, "0123456789") + 1;
        if (*end || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive (or someone else's: EPERM) */
        char full[PATH_MAX];
        struct stat st;
        if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, p) < sizeof full &&
            lstat(full, &st) == 0 && S_ISREG(st.st_mode) && unlink(full) == 0)
            ZR_INFO(ZR_SUB_INIT, "removed %s, left by process %ld, which is gone", full, pid);
    }
    closedir(d);
}

/* Creates the temporary file for path (o->f); the target is checked, stale temporary files of
 * the same target removed. */
static zero_status out_open(zr_error *e, const char *what, const char *path, zr_out *o)
{
    memset(o, 0, sizeof *o);
    o->path = path ? path : "";
    if (!o->path[0])
        return zr_fail(e, ZERO_ERR_IO, "%s: no path to write to", what);
    struct stat st;
    int exists;
    ZR_CHECK(resolve_target(e, what, o, &st, &exists));
    const char *base;
    if (split_path(o->target, o->dir, sizeof o->dir, &base) != 0 || !base[0] ||
        strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return zr_fail(e, ZERO_ERR_IO, "%s: cannot write %s: it names a directory, not a file",
                       what, o->path);
    char prefix[ZR_TMP_BASE + ZR_TMP_HOST + 16];
    tmp_prefix(prefix, sizeof prefix, base);
    remove_stale(o->dir, prefix);
    int fd = -1, err = 0;
    for (int k = 0; k < 100 && fd < 0; k++) { /* -k: another context of this process, or a
                                                 stale file from an earlier process of our pid */
        size_t n = k ? (size_t)snprintf(o->tmp, sizeof o->tmp, "%s/%s%ld-%d", o->dir, prefix,
                                        (long)getpid(), k)
                     : (size_t)snprintf(o->tmp, sizeof o->tmp, "%s/%s%ld", o->dir, prefix,
                                        (long)getpid());
        if (n >= sizeof o->tmp) {
            err = ENAMETOOLONG;
            break;
        }
        fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = fd < 0 ? errno : 0;
        if (fd < 0 && err != EEXIST)
            break;
    }
    if (fd < 0) {
        char buf[PATH_MAX + 64];
        return zr_fail(e, ZERO_ERR_IO, "%s: cannot write %s%s: creating a temporary file in %s: "
                       "%s", what, o->path, via(o, buf, sizeof buf), o->dir, strerror(err));
    }
    if (exists)
        (void)fchmod(fd, st.st_mode & 0777); /* the replaced file's permissions (best effort) */
    o->f = fdopen(fd, "wb");
    if (!o->f) {
        err = errno;
        close(fd);
        unlink(o->tmp);
        return zr_fail(e, ZERO_ERR_SYSTEM, "%s: cannot write %s: %s", what, o->path,
                       strerror(err));
    }
    return ZERO_OK;
}

/* Closes and removes the temporary file (after a failure). */
static void out_abort(zr_out *o)
{
    if (!o->f)
        return;
    fclose(o->f);
    o->f = NULL;
    unlink(o->tmp);
}

/* (engine.h) A file system that cannot sync (some FUSE and network ones) is not a write error. */
int zr_sync_unsupported(int err) { return err == EINVAL || err == ENOTSUP || err == ENOSYS; }

/* Flushes, syncs and closes the temporary file and renames it over the target; the directory is
 * synced so the rename lasts. On failure the temporary file is removed and the target is as it
 * was. */
static zero_status out_commit(zr_error *e, const char *what, zr_out *o)
{
    FILE *f = o->f;
    o->f = NULL;
    const char *step = NULL;
    int err = 0;
    if (ferror(f)) {
        step = "writing";
        err = errno ? errno : EIO;
    } else if (fflush(f) != 0) {
        step = "writing";
        err = errno;
    } else if (fsync(fileno(f)) != 0 && !zr_sync_unsupported(errno)) {
        step = "syncing";
        err = errno;
    }
    if (fclose(f) != 0 && !step) {
        step = "closing";
        err = errno;
    }
    if (!step && rename(o->tmp, o->target) != 0) {
        step = "renaming over the target";
        err = errno;
    }
    if (step) {
        char buf[PATH_MAX + 64];
        unlink(o->tmp);
        return zr_fail(e, ZERO_ERR_IO, "%s: cannot write %s%s: %s %s: %s", what, o->path,
                       via(o, buf, sizeof buf), step, o->tmp, strerror(err));
    }
    int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && !zr_sync_unsupported(errno))
            ZR_WARN(ZR_SUB_INIT, "%s: %s is written but syncing its directory %s failed: %s",
                    what, o->target, o->dir, strerror(errno));
        close(dfd);
    }
    return ZERO_OK;
}

/* (engine.h) Rank 0's status and message, for every rank. Collective. */
zero_status zr_rank0_verdict(zero_ctx *z, zero_status s, const char *what)
{
    struct {
        int64_t status;
        char msg[ZR_ERROR_MSG];
    } v;
    memset(&v, 0, sizeof v);
    v.status = s;
    if (z->rank == 0 && s)
        snprintf(v.msg, sizeof v.msg, "%s", z->err.msg);
    zero_status b =
        zr_coll_broadcast(&z->hcoll, &v, sizeof v, ZR_ELEM_BYTE, 0, ZR_TRAFFIC_OTHER, NULL);
    if (b)
        return zr_fail(&z->err, b, "%s: sharing rank 0's result: %s", what, z->comm.err.msg);
    if (z->rank == 0)
        return s;
    if (v.status)
        return zr_fail(&z->err, (zero_status)v.status, "rank 0 failed: %s", v.msg);
    return ZERO_OK;
}

/* (engine.h) Writes path on rank 0 (through fill, as described above; stdio errors are found
 * when the file is committed); every rank returns rank 0's status and message. Collective. */
zero_status zr_write_rank0_file(zero_ctx *z, const char *what, const char *path,
                                zr_fill_fn fill, void *arg)
{
    zero_status s = ZERO_OK;
    if (z->rank == 0) {
        zr_out o;
        s = out_open(&z->err, what, path, &o);
        if (!s)
            s = fill(z, o.f, arg);
        if (!s)
            s = out_commit(&z->err, what, &o);
        else
            out_abort(&o);
    }
    return zr_rank0_verdict(z, s, what);
}

/* ---- chunks of the master parameters --------------------------------------------------------- */

/* Calls fn(rank-0 buffer of chunk c's fp32 master values, (padded)) for every chunk in order,
 * on rank 0; other ranks only contribute their slices. Traffic counted as "other". */
typedef zero_status (*chunk_fn)(zero_ctx *z, int c, const float *full, void *arg);

static zero_status for_each_master_chunk(zero_ctx *z, chunk_fn fn, void *arg)
{
    const zp_layout *L = &z->layout;
    float *full = z->rank == 0 ? malloc(L->max_padded * sizeof *full) : NULL; /* (chunk padded) */
    float *slice = malloc(L->max_slice * sizeof *slice); /* (max slice) fp32, host: MPI sends it */
    int stage = z->set.cfg.stage;
    zero_status s = ZERO_OK, fs = ZERO_OK;
    /* every rank learns whether every rank has its buffers, and a device that has not failed
     * since the last step (the state read here is what it computed), before anyone gathers */
    zero_status dev = zr_device_error(z, "before reading the parameters");
    int64_t mine_ok = !((z->rank == 0 && !full) || !slice);
    int64_t bad = dev ? 2 : !mine_ok, any_bad = bad;
    zero_status r = zr_coll_all_reduce(&z->hcoll, &any_bad, 1, ZR_ELEM_I64, ZR_OP_MAX,
                                       ZR_TRAFFIC_OTHER, NULL);
    if (r) {
        zr_comm_release(&z->comm, full);
        zr_comm_release(&z->comm, slice);
        return zr_fail(&z->err, r, "parameter gather: %s", z->comm.err.msg);
    }
    if (any_bad) {
        zr_comm_release(&z->comm, full);
        zr_comm_release(&z->comm, slice);
        if (any_bad == 2)
            return dev ? dev : zr_fail(&z->err, ZERO_ERR_SYSTEM, "another rank's device failed");
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "out of host memory gathering parameters (on %s)",
                       mine_ok ? "another rank" : "this rank");
    }
    for (int c = 0; c < L->num_chunks && !s; c++) {
        const zp_chunk *ch = &L->chunks[c];
        size_t lo, hi;
        zp_slice_range(L, c, z->rank, &lo, &hi);
        const float *mine;
        if (z->st.master)
            mine = stage == 0 ? z->st.master + ch->offset + lo : z->st.master + ch->shard_offset;
        else if (stage == 3)
            mine = (const float *)z->st.params + ch->shard_offset;
        else
            mine = (const float *)z->st.params + ch->offset + lo;
        float dummy = 0.0f;
        if (slice)
            zr_dev_copy(&z->dev, slice, mine, ch->slice * sizeof *slice);
        s = zr_coll_gather(&z->hcoll, slice ? slice : mine, full ? full : &dummy, ch->slice,
                           ZR_ELEM_F32, 0);
        if (s) {
            s = zr_fail(&z->err, s, "parameter gather: %s", z->comm.err.msg);
            break;
        }
        if (z->rank == 0 && !fs && fn)
            fs = fn(z, c, full, arg);
    }
    zr_comm_release(&z->comm, full);
    zr_comm_release(&z->comm, slice);
    return s ? s : fs;
}

/* ---- digest ---------------------------------------------------------------------------------- */

static zero_status digest_chunk(zero_ctx *z, int c, const float *full, void *arg)
{
    uint64_t *h = arg;
    const zp_chunk *ch = &z->layout.chunks[c];
    for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
        const float *x = full + z->layout.place[i].offset;
        for (size_t k = 0; k < z->layout.place[i].numel; k++) {
            uint32_t w;
            memcpy(&w, &x[k], sizeof w);
            *h = (*h ^ w) * 0x100000001b3ull; /* FNV-1a over 32-bit words */
        }
    }
    return ZERO_OK;
}

zero_status zero_param_digest(zero_ctx *z, uint64_t *digest)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    uint64_t h = 0xcbf29ce484222325ull;
    zero_status s = for_each_master_chunk(z, digest_chunk, &h);
    zero_status b = zr_coll_broadcast(&z->hcoll, &h, 1, ZR_ELEM_I64, 0, ZR_TRAFFIC_OTHER, NULL);
    if (!s && b)
        s = zr_fail(&z->err, b, "digest broadcast: %s", z->comm.err.msg);
    if (digest)
        *digest = h;
    return s;
}

/* ---- safetensors export ---------------------------------------------------------------------- */

typedef struct export_state {
    FILE *f;
    const char *path;
    uint64_t *at;   /* with tensors split into slices: each internal tensor's file offset */
} export_state;

/* A registered tensor split into slices (zero_tensor.slices) is several internal tensors in
 * several chunks: each is written at its place in the whole tensor. Without slices the internal
 * tensors are the registered ones, in order, and the file is written front to back. */
static int has_slices(const zero_ctx *z) { return z->pub && z->num_pub != z->num_tensors; }

static zero_status export_chunk(zero_ctx *z, int c, const float *full, void *arg)
{
    export_state *e = arg;
    const zp_chunk *ch = &z->layout.chunks[c];
    for (int i = ch->first_tensor; i < ch->first_tensor + ch->num_tensors; i++) {
        size_t n = z->layout.place[i].numel;
        if ((e->at && fseeko(e->f, (off_t)e->at[i], SEEK_SET) != 0) ||
            fwrite(full + z->layout.place[i].offset, sizeof(float), n, e->f) != n)
            return zr_fail(&z->err, ZERO_ERR_IO, "zero_export: writing %s: %s", e->path,
                           strerror(errno));
    }
    return ZERO_OK;
}

/* The file offset of every internal tensor, after a header of hlen bytes. */
static uint64_t *slice_offsets(const zero_ctx *z, size_t hlen)
{
    uint64_t *at = malloc((size_t)z->num_tensors * sizeof *at);
    uint64_t *start = malloc((size_t)z->num_pub * sizeof *start);
    if (at && start) {
        uint64_t off = hlen;
        for (int i = 0; i < z->num_pub; i++) {
            start[i] = off;
            off += (uint64_t)z->pub[i].numel * 4;
        }
        for (int j = 0; j < z->num_tensors; j++) {
            const zr_pub *p = &z->pub[z->int_pub[j]];
            at[j] = start[z->int_pub[j]] +
                    (uint64_t)z->int_slice[j] * (p->numel / (size_t)p->slices) * 4;
        }
    } else {
        free(at);
        at = NULL;
    }
    free(start);
    return at;
}

/* safetensors: u64 little-endian header size, a JSON header (padded with spaces to 8 bytes),
 * then the tensors' bytes in header order (runtime/ckpt_format.c writes the header, for
 * zero-ckpt export too). */
static zero_status write_header(zero_ctx *z, FILE *f, const char *path, size_t *hlen)
{
    const int n = z->pub ? z->num_pub : z->num_tensors; /* the registered tensors */
    zc_st_entry *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    if (!t)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_export: out of host memory");
    for (int i = 0; i < n; i++)
        t[i] = z->pub ? (zc_st_entry){z->pub[i].meta.name, z->pub[i].meta.ndim,
                                      z->pub[i].meta.shape, z->pub[i].numel}
                      : (zc_st_entry){z->meta[i].name, z->meta[i].ndim, z->meta[i].shape,
                                      z->layout.place[i].numel};
    size_t len = 0;
    unsigned char *buf = zc_safetensors_header(t, n, &len);
    *hlen = len;
    free(t);
    if (!buf)
        return zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_export: out of host memory");
    int ok = fwrite(buf, 1, len, f) == len;
    free(buf);
    return ok ? ZERO_OK
              : zr_fail(&z->err, ZERO_ERR_IO, "zero_export: writing %s: %s", path,
                        strerror(errno));
}

zero_status zero_export(zero_ctx *z, const char *path)
{
    if (!z)
        return ZERO_ERR_INVALID;
    if (!zr_ctx_live(z))
        return ZERO_ERR_STATE;
    if (!path || !path[0])
        return zr_fail(&z->err, ZERO_ERR_INVALID, "zero_export: path is %s",
                       path ? "empty" : "NULL");
    zr_out o;
    memset(&o, 0, sizeof o);
    export_state e = {NULL, path, NULL};
    zero_status s = ZERO_OK;
    if (z->rank == 0) {
        s = out_open(&z->err, "zero_export", path, &o);
        size_t hlen = 0;
        if (!s) {
            e.f = o.f;
            s = write_header(z, e.f, path, &hlen);
        }
        if (!s && has_slices(z) && !(e.at = slice_offsets(z, hlen)))
            s = zr_fail(&z->err, ZERO_ERR_SYSTEM, "zero_export: out of host memory");
    }
    /* Everyone gathers even if rank 0 already failed, so no rank waits alone. */
    zero_status g = for_each_master_chunk(z, s ? NULL : export_chunk, &e);
    if (z->rank == 0) {
        if (!s)
            s = g;
        if (!s)
            s = out_commit(&z->err, "zero_export", &o);
        else
            out_abort(&o);
    }
    free(e.at);
    s = zr_rank0_verdict(z, s, "zero_export"); /* every rank returns rank 0's verdict */
    if (!s && z->rank == 0)
        ZR_INFO(ZR_SUB_INIT, "exported %d tensors to %s", z->pub ? z->num_pub : z->num_tensors,
                path);
    return s;
}
