/* ckpt_format.h — the checkpoint's files, without the engine: the manifest (JSON through
 * jansson), the shard files' header, the block checksums (XXH3-64, kernels/hash.h), and reading
 * any element range of any tensor back from whichever shard files hold it, verified block by
 * block. No MPI, no device: runtime/ckpt.c (zero_save / zero_load) and tools/zero_ckpt.c share it.
 * docs/CHECKPOINT.md is the format's description for readers in other languages.
 *
 * A checkpoint directory holds manifest.json, one shard file per saving rank (rank-RRRRR.bin) and
 * user.bin (the program's opaque blob). A shard file is a 64-byte header followed by slices: runs
 * of one tensor's elements [offset, offset + numel), in blocks of block_elems elements (the last
 * one shorter); a block holds its elements of every array (fp32 master, then the optimizer's
 * states) one array after the other, little-endian fp32, and has its own XXH3-64 in the
 * manifest. */
#ifndef ZERO_CKPT_FORMAT_H
#define ZERO_CKPT_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "zero.h"

#define ZC_FORMAT "libzero-checkpoint"
#define ZC_VERSION 1
#define ZC_MANIFEST "manifest.json"
#define ZC_USER_FILE "user.bin"
#define ZC_LATEST "latest"
#define ZC_MAGIC "ZEROCKPT"
enum {
    ZC_HEADER_BYTES = 64,
    ZC_MAX_ARRAYS = 3,
    ZC_MAX_DIMS = ZERO_MAX_DIMS,
    ZC_BLOCK_ELEMS = 1 << 18, /* 1 MiB of each array per block */
    ZC_NAME_MAX = 64          /* shard file and array names */
};

typedef struct zc_tensor {
    char *name;
    int ndim;
    int64_t shape[ZC_MAX_DIMS];
    uint64_t numel;
    int module;
    int no_decay;
} zc_tensor;

typedef struct zc_file {
    char name[ZC_NAME_MAX]; /* within the checkpoint directory */
    int rank;
    uint64_t bytes;         /* whole file, header included */
    uint64_t hash;          /* XXH3-64 over the 64 header bytes, then every block's hash as 8
                               little-endian bytes, in file order (not over the file's bytes) */
} zc_file;

typedef struct zc_slice {
    int tensor;
    uint64_t offset;  /* first element within the tensor */
    uint64_t numel;
    int file;         /* index into files */
    uint64_t at;      /* byte offset of its first block in the file */
    uint64_t *hash;   /* [zc_blocks(numel)] XXH3-64 of each block */
} zc_slice;

/* Scalars of the saving context. */
typedef struct zc_progress {
    int64_t steps, boundaries, micro_steps, skipped;
    double loss_scale;
    int scale_dynamic;
    int hysteresis_left;
    int64_t last_rescale;
} zc_progress;

typedef struct zc_manifest {
    int version;
    uint64_t id;            /* random; every shard header repeats it */
    char producer[64];
    zc_progress prog;
    int world, stage, dtype, grad_accum;
    char optimizer[ZC_NAME_MAX];
    int num_arrays;
    char arrays[ZC_MAX_ARRAYS][ZC_NAME_MAX];
    uint64_t block_elems;
    int num_tensors;
    zc_tensor *tensors;
    int num_files;
    zc_file *files;
    int num_slices;
    zc_slice *slices;       /* sorted by (tensor, offset) once parsed */
    int *tensor_slice;      /* [num_tensors + 1]: slices of tensor t are [ts[t], ts[t+1]) */
    uint64_t user_bytes, user_hash;
    char *config_json;      /* the saving context's resolved configuration (an object) */
} zc_manifest;

/* Blocks of a slice of n elements. */
uint64_t zc_blocks(uint64_t n, uint64_t block_elems);
/* Bytes of a slice of n elements with `arrays` arrays (its blocks back to back). */
uint64_t zc_slice_bytes(uint64_t n, int arrays);

/* XXH3-64 of the bytes (zk_hash: the widest vector path the CPU has; the values of libxxhash). */
uint64_t zc_hash(const void *p, size_t n);
/* 16 lower-case hex digits; buf >= 17 bytes. */
void zc_hex(uint64_t h, char *buf);

/* The 64-byte shard header: magic, version, rank, world, arrays, checkpoint id, block elements. */
void zc_header_encode(unsigned char *h, int rank, int world, int arrays, uint64_t id,
                      uint64_t block_elems);

/* Parses and checks a manifest (len bytes of JSON): every field present and of its type and
 * range, slices within their tensors and files, covering every tensor exactly once. ZERO_ERR_IO
 * naming `where` and the field on any problem (ZERO_ERR_SYSTEM: no memory). */
zero_status zc_manifest_parse(zc_manifest *m, const char *json, size_t len, const char *where,
                              zr_error *e);
/* The manifest as JSON text (malloc'd, *len bytes, NUL-terminated), or NULL without memory.
 * slices need not be sorted. config_json, when not NULL, must be a JSON object. */
char *zc_manifest_dump(const zc_manifest *m, size_t *len);
void zc_manifest_free(zc_manifest *m);
/* A name and its index, ordered by name (qsort / bsearch with zc_name_cmp): the manifest's
 * duplicate check and zero_load's matching of tensors by name. */
typedef struct zc_name_ix {
    const char *name;
    int i;
} zc_name_ix;
int zc_name_cmp(const void *a, const void *b);

/* Index of the tensor named `name`, or -1. */
int zc_find_tensor(const zc_manifest *m, const char *name);

/* Reads a whole small file (the manifest, user.bin) into a malloc'd buffer; ZERO_ERR_IO naming the
 * path. At most max bytes. */
zero_status zc_read_file(const char *path, size_t max, char **out, size_t *len, zr_error *e);

/* Reading ranges of tensors back. Files are opened on first use; each is checked once against the
 * manifest (size, header: magic, version, rank, checkpoint id). With io ZC_IO_MMAP a file is then
 * mapped whole, and each range is made resident with MADV_POPULATE_READ (an I/O error or a file
 * shorter than the manifest says is an error return there, not a SIGBUS) before its bytes are
 * hashed in place or copied out (whole blocks with no copy through a read buffer). Where the
 * kernel lacks MADV_POPULATE_READ (before Linux 5.14) the file is read with pread instead. A range is
 * populated just before it is touched (one block at a time for whole blocks), so SIGBUS remains
 * possible only in that moment: if another process truncates the shard then, or memory pressure
 * evicts a populated page and reading it again fails. ZC_IO_PREAD has no such window. */
enum { ZC_IO_MMAP = 0, ZC_IO_PREAD = 1 };
typedef struct zc_reader {
    const zc_manifest *m;
    char dir[4096];
    int io;                 /* ZC_IO_MMAP or ZC_IO_PREAD: how shard files are read */
    int *fd;                /* [num_files], -1 = not open */
    unsigned char **map;    /* [num_files] the whole file mapped read-only (io mmap), or NULL */
    unsigned char *buf;     /* whole blocks of one read */
    size_t cap;
    uint64_t bytes_read;
    int opened, mapped;     /* files opened so far, and of those mapped */
} zc_reader;

/* io: ZC_IO_MMAP or ZC_IO_PREAD (above). */
zero_status zc_reader_open(zc_reader *r, const zc_manifest *m, const char *dir, int io,
                           zr_error *e);
/* Elements [first, first + count) of tensor t: out[a] (count floats) receives array a for every
 * a < num_arrays whose out[a] is not NULL. Reads only the blocks that hold the range, verifying
 * each; ZERO_ERR_IO naming the file, the tensor and the block on a short file, a bad header or a
 * checksum that differs. */
zero_status zc_read(zc_reader *r, int t, uint64_t first, uint64_t count, float *const *out,
                    zr_error *e);
/* Every shard file whole: its size and header, every block's hash against the manifest, its
 * slices tiling it from the header to its end, and its file checksum recomputed from the header
 * and the block hashes of the data as read (zc_file.hash). ZERO_ERR_IO naming the file (and the
 * tensor and block) on the first problem. */
zero_status zc_verify_files(zc_reader *r, zr_error *e);
void zc_reader_close(zc_reader *r);

/* The path of the checkpoint `path` names: path itself when it holds a manifest, else the
 * directory its `latest` file names, else its newest step-* directory with a manifest. */
zero_status zc_resolve(const char *path, char *out, size_t cap, zr_error *e);

/* safetensors: the header (u64 size + JSON, padded with spaces to 8 bytes) for n F32 tensors in
 * order; shape NULL or ndim 0 means a vector of numel. Returns a malloc'd buffer of *len bytes. */
typedef struct zc_st_entry {
    const char *name;
    int ndim;
    const int64_t *shape;
    uint64_t numel;
} zc_st_entry;
unsigned char *zc_safetensors_header(const zc_st_entry *t, int n, size_t *len);

#endif
