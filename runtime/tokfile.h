/* tokfile.h — token files (docs/DATA.md): the llm.c header (256 little-endian int32: magic,
 * version, token count), its 16- and 32-bit versions, files read as bytes, the expansion of a
 * file list, and reading a run of tokens as int32 (through a memory map or pread) with the
 * vocabulary check. No engine, no MPI, no device: runtime/data.c, tools/zero_tokens.c and the
 * tests use it. */
#ifndef ZERO_TOKFILE_H
#define ZERO_TOKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "zero.h"

#define ZT_MAGIC 20240520        /* llm.c's token files */
#define ZT_MAGIC_LLAMA 20240801  /* llm.c's 32-bit token files (version 7) */
#define ZT_VERSION_U16 1
#define ZT_VERSION_U32 2
#define ZT_VERSION_LLAMA 7
#define ZT_HEADER_INTS 256
#define ZT_HEADER_BYTES (ZT_HEADER_INTS * 4)

typedef struct zt_file {
    char *path;
    int fd;                     /* -1 when closed */
    int width;                  /* bytes per token: 1 (a file read as bytes), 2 or 4 */
    int has_header;             /* a token file (tokens start at ZT_HEADER_BYTES) */
    int magic, version;         /* of the header; 0 for bytes */
    int64_t ntok;               /* tokens in the file */
    uint64_t size;              /* bytes of the file when opened */
    const unsigned char *map;   /* the whole file mapped read-only, or NULL (pread) */
} zt_file;

/* The header of a token file holding ntok tokens of `width` bytes (2: version 1; 4: version 2),
 * as 256 little-endian int32 in out (1024 bytes). The count goes in word 2 (low 32 bits) and, for
 * version 2, word 3 (high 32 bits); version 1 holds at most 2^31 - 1 tokens. Returns 0, or -1
 * for a width or count the format cannot hold. */
int zt_header_write(unsigned char out[ZT_HEADER_BYTES], int width, int64_t ntok);

/* Parses a header read from a file of file_size bytes (name for messages). Returns 0 with *width
 * and *ntok set, 1 when the first word is not a known magic (the file is not a token file), or
 * -1 with a message in err: an unknown version, a negative count, a file shorter than its
 * header, or a token count that disagrees with the file size (truncated, or longer than the
 * header says). */
int zt_header_parse(const unsigned char hdr[ZT_HEADER_BYTES], uint64_t file_size, const char *name,
                    int *magic, int *version, int *width, int64_t *ntok, char *err, size_t len);

/* Expands a file list (a glob pattern, or several separated by ','; each pattern's matches
 * sorted by name; a pattern without wildcards names one file that must exist) into *paths (n
 * strings, each malloc'd, and the array; zt_free_paths frees them). Returns 0, or -1 with err
 * naming the pattern that matches nothing, or an empty list. */
int zt_expand(const char *files, char ***paths, int *n, char *err, size_t len);
void zt_free_paths(char **paths, int n);

/* Opens and checks a file in `format` (zero_data_format's rules), mapping it when use_map.
 * Returns ZERO_OK, ZERO_ERR_INVALID (wrong format: message in err naming the file) or
 * ZERO_ERR_IO (cannot open or read it). f is closed on failure. */
zero_status zt_open(zt_file *f, const char *path, zero_data_format format, int use_map, char *err,
                    size_t len);
void zt_close(zt_file *f);

/* The bytes of tokens [first, first + n): a pointer into the map, or raw (n * width bytes) filled
 * by pread. NULL with err set when the range is outside the file or the read fails. */
const unsigned char *zt_source(const zt_file *f, int64_t first, int64_t n, void *raw, char *err,
                               size_t len);

/* n tokens of `width` bytes at src as int32 into dst; the index of the first token >= vocab
 * (vocab 0: beyond int32), or -1. */
int64_t zt_widen(int32_t *dst, const unsigned char *src, int64_t n, int width, int64_t vocab);

/* A window of T + 1 tokens at src as inputs (its tokens 0..T-1, into in) and targets (1..T, into
 * tg), int32; the index in the window of the first token >= vocab (vocab 0: beyond int32), or -1.
 * One pass for 16-bit tokens. */
int64_t zt_widen_pair(int32_t *in, int32_t *tg, const unsigned char *src, int64_t T, int width,
                      int64_t vocab);

/* n tokens of src_width bytes at src copied into dst at dst_width bytes each (dst_width >=
 * src_width; little-endian, as in the file): a row of the window output. The index of the first
 * token >= vocab (0: only int32's range), or -1. */
int64_t zt_copy_window(void *dst, int dst_width, const unsigned char *src, int64_t n,
                       int src_width, int64_t vocab);

/* The index of the first of n tokens of `width` bytes at p that is >= vocab (0: only int32's
 * range), or -1: the largest first, in one vectorised pass. */
int64_t zt_check(const void *p, int64_t n, int width, int64_t vocab);

/* k windows of T + 1 tokens that follow each other in the file (window j starts at token
 * first + j T) into dst, row j at dst + j stride bytes, at the file's width: one preadv for up to
 * ZT_IOV_MAX rows, each row's last token copied from the next row's first. 0, or -1 with err. */
enum { ZT_IOV_MAX = 256 };
int zt_read_windows(const zt_file *f, int64_t first, int64_t T, int k, void *dst,
                    size_t stride, char *err, size_t len);

/* The message for token `tok` at index `at` of f that is >= vocab. */
void zt_bad_token(const zt_file *f, int64_t at, uint32_t tok, int64_t vocab, char *err, size_t len);

/* Scans tokens [first, first + n) for the largest token and the first one >= vocab (vocab 0:
 * none is). raw: scratch of chunk * width bytes for pread (chunk > 0 tokens at a time).
 * Returns ZERO_OK with *max_tok (-1 when n is 0), ZERO_ERR_INVALID with err naming the first bad
 * token, or ZERO_ERR_IO. */
zero_status zt_scan(const zt_file *f, int64_t first, int64_t n, int64_t vocab, void *raw,
                    int64_t chunk, int64_t *max_tok, char *err, size_t len);

#endif
