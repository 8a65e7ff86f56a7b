/* tokfile.c — token files: header, file lists, checked reads (tokfile.h). */
#define _GNU_SOURCE
#include "runtime/tokfile.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token files are little-endian; zt_widen reads 16-bit tokens as they are in memory"
#endif

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

int zt_header_write(unsigned char out[ZT_HEADER_BYTES], int width, int64_t ntok)
{
    if ((width != 2 && width != 4) || ntok < 0 || (width == 2 && ntok > INT32_MAX))
        return -1;
    memset(out, 0, ZT_HEADER_BYTES);
    put_le32(out, ZT_MAGIC);
    put_le32(out + 4, width == 2 ? ZT_VERSION_U16 : ZT_VERSION_U32);
    put_le32(out + 8, (uint32_t)((uint64_t)ntok & 0xffffffffu));
    if (width == 4)
        put_le32(out + 12, (uint32_t)((uint64_t)ntok >> 32));
    return 0;
}

int zt_header_parse(const unsigned char hdr[ZT_HEADER_BYTES], uint64_t file_size, const char *name,
                    int *magic, int *version, int *width, int64_t *ntok, char *err, size_t len)
{
    int m = (int)le32(hdr), v = (int)le32(hdr + 4);
    *magic = m;
    *version = v;
    if (m != ZT_MAGIC && m != ZT_MAGIC_LLAMA)
        return 1;
    if (file_size < ZT_HEADER_BYTES) {
        snprintf(err, len, "%s: truncated: %llu bytes, shorter than the %d-byte header of a token "
                 "file (magic %d)", name, (unsigned long long)file_size, ZT_HEADER_BYTES, m);
        return -1;
    }
    int64_t n;
    if (m == ZT_MAGIC && v == ZT_VERSION_U16) {
        *width = 2;
        n = (int32_t)le32(hdr + 8);
    } else if (m == ZT_MAGIC && v == ZT_VERSION_U32) {
        *width = 4;
        n = (int64_t)((uint64_t)le32(hdr + 8) | (uint64_t)le32(hdr + 12) << 32);
    } else if (m == ZT_MAGIC_LLAMA && v == ZT_VERSION_LLAMA) {
        *width = 4;
        n = (int32_t)le32(hdr + 8);
    } else {
        snprintf(err, len,
                 "%s: token file version %d is not known (magic %d: expected version %s)", name,
                 v, m, m == ZT_MAGIC ? "1 (uint16 tokens) or 2 (uint32 tokens)" : "7 (uint32 tokens)");
        return -1;
    }
    if (n < 0 || (uint64_t)n > (UINT64_MAX - ZT_HEADER_BYTES) / (uint64_t)*width) {
        snprintf(err, len, "%s: the header's token count %lld is not a valid count", name,
                 (long long)n);
        return -1;
    }
    uint64_t want = ZT_HEADER_BYTES + (uint64_t)n * (uint64_t)*width;
    if (file_size < want) {
        snprintf(err, len,
                 "%s: truncated: the header says %lld tokens (%llu bytes with the header) but the "
                 "file has %llu bytes",
                 name, (long long)n, (unsigned long long)want, (unsigned long long)file_size);
        return -1;
    }
    if (file_size > want) {
        snprintf(err, len,
                 "%s: the header's token count %lld disagrees with the file size: %llu bytes, "
                 "%llu more than the header and %lld tokens of %d bytes",
                 name, (long long)n, (unsigned long long)file_size,
                 (unsigned long long)(file_size - want), (long long)n, *width);
        return -1;
    }
    *ntok = n;
    return 0;
}

void zt_free_paths(char **paths, int n)
{
    if (!paths)
        return;
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

static int push_path(char ***paths, int *n, int *cap, const char *p)
{
    if (*n == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        char **np = realloc(*paths, (size_t)nc * sizeof *np);
        if (!np)
            return -1;
        *paths = np;
        *cap = nc;
    }
    if (!((*paths)[*n] = strdup(p)))
        return -1;
    (*n)++;
    return 0;
}

int zt_expand(const char *files, char ***paths, int *n, char *err, size_t len)
{
    *paths = NULL;
    *n = 0;
    int cap = 0;
    char *copy = files ? strdup(files) : NULL;
    if (files && !copy) {
        snprintf(err, len, "out of host memory");
        return -1;
    }
    char *save = NULL;
    for (char *pat = copy ? strtok_r(copy, ",", &save) : NULL; pat;
         pat = strtok_r(NULL, ",", &save)) {
        while (*pat == ' ' || *pat == '\t') /* "a.bin, b.bin" */
            pat++;
        for (size_t k = strlen(pat); k > 0 && (pat[k - 1] == ' ' || pat[k - 1] == '\t'); k--)
            pat[k - 1] = '\0';
        if (!*pat)
            continue;
        glob_t g;
        memset(&g, 0, sizeof g);
        int rc = glob(pat, GLOB_ERR, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
            struct stat sb;
            /* a literal path glob did not match: say why */
            if (!strpbrk(pat, "*?[") && stat(pat, &sb) != 0)
                snprintf(err, len, "data file %s: %s", pat, strerror(errno));
            else
                snprintf(err, len, "data pattern '%s' matches no file", pat);
            globfree(&g);
            goto fail;
        }
        if (rc != 0) {
            snprintf(err, len, "data pattern '%s': %s", pat,
                     rc == GLOB_NOSPACE ? "out of memory" : "a directory could not be read");
            globfree(&g);
            goto fail;
        }
        int literal = !strpbrk(pat, "*?[");
        for (size_t i = 0; i < g.gl_pathc; i++) {
            struct stat sb;
            if (stat(g.gl_pathv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
                if (literal) {
                    snprintf(err, len, "data file %s is a directory, not a file", pat);
                    globfree(&g);
                    goto fail;
                }
                continue; /* a pattern like data/ * also matches folders: not files */
            }
            if (push_path(paths, n, &cap, g.gl_pathv[i])) {
                snprintf(err, len, "out of host memory");
                globfree(&g);
                goto fail;
            }
        }
        globfree(&g);
    }
    free(copy);
    if (*n == 0) {
        snprintf(err, len, "the data file list '%s' is empty", files ? files : "");
        zt_free_paths(*paths, 0);
        *paths = NULL;
        return -1;
    }
    return 0;
fail:
    free(copy);
    zt_free_paths(*paths, *n);
    *paths = NULL;
    *n = 0;
    return -1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcasecmp(s + a - b, suffix);
}

/* pread of exactly len bytes at off; 0, or -1 (errno; EIO-like 0 for a short read: the file
 * changed) */
static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    unsigned char *p = buf;
    while (len) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = 0;
            return -1;
        }
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

zero_status zt_open(zt_file *f, const char *path, zero_data_format format, int use_map, char *err,
                    size_t len)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    zero_status st = ZERO_ERR_IO;
    if (!(f->path = strdup(path))) {
        snprintf(err, len, "out of host memory");
        return ZERO_ERR_SYSTEM;
    }
    if ((f->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(err, len, "data file %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) {
        snprintf(err, len, "data file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, len, "data file %s is not a regular file", path);
        st = ZERO_ERR_INVALID;
        goto fail;
    }
    f->size = (uint64_t)sb.st_size;
    int parsed = 1; /* not a token file */
    if (format != ZERO_DATA_BYTES && f->size >= 4) {
        unsigned char hdr[ZT_HEADER_BYTES];
        memset(hdr, 0, sizeof hdr);
        size_t want = f->size < ZT_HEADER_BYTES ? (size_t)f->size : ZT_HEADER_BYTES;
        if (pread_full(f->fd, hdr, want, 0) != 0) {
            snprintf(err, len, "data file %s: reading the header: %s", path,
                     errno ? strerror(errno) : "the file changed size");
            goto fail;
        }
        parsed = zt_header_parse(hdr, f->size, path, &f->magic, &f->version, &f->width, &f->ntok,
                                 err, len);
        if (parsed < 0) {
            st = ZERO_ERR_INVALID;
            goto fail;
        }
    }
    if (parsed == 0) {
        f->has_header = 1;
    } else if (format == ZERO_DATA_TOKENS || (format == ZERO_DATA_AUTO && ends_with(path, ".bin"))) {
        uint32_t m = 0;
        if (f->size >= 4 && pread_full(f->fd, &m, 4, 0) == 0) {
            unsigned char *b = (unsigned char *)&m;
            m = le32(b);
        }
        snprintf(err, len,
                 "%s is not a token file: its first int32 is %lld, not the magic %d%s (%llu "
                 "bytes)%s",
                 path, f->size >= 4 ? (long long)(int32_t)m : -1LL, ZT_MAGIC,
                 f->size < 4 ? ", the file is shorter than a header" : "",
                 (unsigned long long)f->size,
                 format == ZERO_DATA_AUTO ? "; a file named *.bin must be a token file, other "
                                            "names are read as bytes" : "");
        st = ZERO_ERR_INVALID;
        goto fail;
    } else {
        f->width = 1;
        f->ntok = (int64_t)f->size;
        f->magic = f->version = 0;
    }
    if (use_map && f->size > 0) {
        void *m = mmap(NULL, (size_t)f->size, PROT_READ, MAP_SHARED, f->fd, 0);
        if (m == MAP_FAILED) {
            snprintf(err, len, "data file %s: mmap: %s", path, strerror(errno));
            goto fail;
        }
        f->map = m;
    }
    return ZERO_OK;
fail:
    zt_close(f);
    return st;
}

void zt_close(zt_file *f)
{
    if (f->map)
        munmap((void *)f->map, (size_t)f->size);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

/* Token i of n at p, `width` bytes each, little-endian. */
static uint32_t token_at(const unsigned char *p, int64_t i, int width)
{
    if (width == 1)
        return p[i];
    if (width == 2)
        return (uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8;
    return le32(p + 4 * i);
}

/* The bound every token must stay below: vocab, or (vocab 0) int32's range. */
static uint64_t vocab_limit(int64_t vocab)
{
    return vocab > 0 ? (uint64_t)vocab : (uint64_t)INT32_MAX + 1;
}

/* The index of the first of n tokens at p that is >= lim, or -1: the slow search the callers
 * make only once the largest token is known to be too large. */
static int64_t first_bad(const unsigned char *p, int64_t n, int width, uint64_t lim)
{
    for (int64_t i = 0; i < n; i++)
        if ((uint64_t)token_at(p, i, width) >= lim)
            return i;
    return -1;
}

int64_t zt_widen(int32_t *dst, const unsigned char *src, int64_t n, int width, int64_t vocab)
{
    /* plain loops the compiler vectorises; the first bad token is searched only when the
     * largest one is bad */
    uint32_t mx = 0;
    if (width == 1) {
        for (int64_t i = 0; i < n; i++)
            dst[i] = src[i];
        for (int64_t i = 0; i < n; i++)
            mx = src[i] > mx ? src[i] : mx;
    } else if (width == 2) {
        uint16_t v[256];
        for (int64_t i0 = 0; i0 < n; i0 += 256) {
            int64_t k = n - i0 < 256 ? n - i0 : 256;
            memcpy(v, src + 2 * i0, (size_t)k * 2); /* little-endian hosts: the tokens as they are */
            for (int64_t i = 0; i < k; i++) {
                dst[i0 + i] = v[i];
                mx = v[i] > mx ? v[i] : mx;
            }
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            uint32_t t = le32(src + 4 * i);
            dst[i] = (int32_t)t;
            mx = t > mx ? t : mx;
        }
    }
    uint64_t lim = vocab_limit(vocab);
    if (n <= 0 || (uint64_t)mx < lim)
        return -1;
    for (int64_t i = 0; i < n; i++)
        if ((uint64_t)(uint32_t)dst[i] >= lim)
            return i;
    return -1;
}

/* A window's inputs (tokens 0..T-1) and targets (1..T) from one pass over its T + 1 uint16
 * tokens, with the largest: the loader's hot loop, compiled for the CPU's widest vector ISA
 * (explicit AVX-512 / AVX2 intrinsics measured no faster than these clones). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define ZT_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ZT_SIMD_CLONES
#endif
typedef uint16_t zt_u16 __attribute__((may_alias, aligned(1)));
ZT_SIMD_CLONES
static uint32_t pair16(int32_t *restrict in, int32_t *restrict tg, const zt_u16 *restrict s,
                       int64_t T)
{
    uint32_t mx = s[0];
    for (int64_t i = 0; i < T; i++) {
        uint32_t a = s[i], b = s[i + 1];
        in[i] = (int32_t)a;
        tg[i] = (int32_t)b;
        mx = b > mx ? b : mx;
    }
    return mx;
}

int64_t zt_widen_pair(int32_t *in, int32_t *tg, const unsigned char *src, int64_t T, int width,
                      int64_t vocab)
{
    if (width != 2) {
        int64_t bad = zt_widen(in, src, T, width, vocab);
        if (bad >= 0)
            return bad;
        bad = zt_widen(tg, src + width, T, width, vocab);
        return bad >= 0 ? bad + 1 : -1;
    }
    uint32_t mx = pair16(in, tg, (const zt_u16 *)src, T);
    uint64_t lim = vocab_limit(vocab);
    return (uint64_t)mx < lim ? -1 : first_bad(src, T + 1, 2, lim);
}

/* n tokens copied as they are, with the largest: the window output's loop. The copy and the
 * comparison vectorise into one pass, measured faster than memcpy followed by a separate scan
 * (docs/BENCHMARKS.md, "Data loader"). */
ZT_SIMD_CLONES
static uint32_t copy16(uint16_t *restrict d, const zt_u16 *restrict s, int64_t n)
{
    uint16_t mx = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t a = s[i];
        d[i] = a;
        mx = a > mx ? a : mx;
    }
    return mx;
}

typedef uint32_t zt_u32 __attribute__((may_alias, aligned(1)));
ZT_SIMD_CLONES
static uint32_t copy32(uint32_t *restrict d, const zt_u32 *restrict s, int64_t n)
{
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t a = s[i];
        d[i] = a;
        mx = a > mx ? a : mx;
    }
    return mx;
}

int64_t zt_copy_window(void *dst, int dst_width, const unsigned char *src, int64_t n,
                       int src_width, int64_t vocab)
{
    uint32_t mx = 0;
    if (n <= 0)
        return -1;
    if (dst_width == 2 && src_width == 2) {
        mx = copy16(dst, (const zt_u16 *)src, n);
    } else if (dst_width == 4 && src_width == 4) {
        mx = copy32(dst, (const zt_u32 *)src, n);
    } else {
        /* bytes, or a narrower file among wider ones: token by token */
        for (int64_t i = 0; i < n; i++) {
            uint32_t t = token_at(src, i, src_width);
            if (dst_width == 1)
                ((unsigned char *)dst)[i] = (unsigned char)t;
            else if (dst_width == 2)
                ((uint16_t *)dst)[i] = (uint16_t)t;
            else
                ((uint32_t *)dst)[i] = t;
            mx = t > mx ? t : mx;
        }
    }
    uint64_t lim = vocab_limit(vocab);
    return (uint64_t)mx < lim ? -1 : first_bad(src, n, src_width, lim);
}

ZT_SIMD_CLONES
static uint32_t max16(const zt_u16 *restrict s, int64_t n)
{
    uint16_t mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = s[i] > mx ? s[i] : mx;
    return mx;
}

ZT_SIMD_CLONES
static uint32_t max32(const zt_u32 *restrict s, int64_t n)
{
    uint32_t mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = s[i] > mx ? s[i] : mx;
    return mx;
}

int64_t zt_check(const void *p, int64_t n, int width, int64_t vocab)
{
    uint32_t mx = 0;
    if (n <= 0)
        return -1;
    if (width == 2) {
        mx = max16(p, n);
    } else if (width == 4) {
        mx = max32(p, n);
    } else {
        for (int64_t i = 0; i < n; i++)
            mx = ((const unsigned char *)p)[i] > mx ? ((const unsigned char *)p)[i] : mx;
    }
    uint64_t lim = vocab_limit(vocab);
    return (uint64_t)mx < lim ? -1 : first_bad(p, n, width, lim);
}

int zt_read_windows(const zt_file *f, int64_t first, int64_t T, int k, void *dst,
                    size_t stride, char *err, size_t len)
{
    const size_t w = (size_t)f->width;
    if (k < 1 || first < 0 || first + (int64_t)k * T + 1 > f->ntok) {
        snprintf(err, len, "%s: windows at token %lld are outside the file's %lld tokens", f->path,
                 (long long)first, (long long)f->ntok);
        return -1;
    }
    uint64_t off = (f->has_header ? ZT_HEADER_BYTES : 0) + (uint64_t)first * w;
    const uint64_t off0 = off;
    unsigned char *out = dst;
    struct iovec iov[ZT_IOV_MAX];
    for (int j0 = 0; j0 < k; j0 += ZT_IOV_MAX) {
        int n = k - j0 < ZT_IOV_MAX ? k - j0 : ZT_IOV_MAX;
        /* rows of T tokens; the last row of the run gets its (T + 1)-th token from the file too */
        for (int j = 0; j < n; j++) {
            iov[j].iov_base = out + (size_t)(j0 + j) * stride;
            iov[j].iov_len = (size_t)T * w + (j0 + j == k - 1 ? w : 0);
        }
        struct iovec *v = iov;
        int left = n;
        while (left > 0) {
            ssize_t r = preadv(f->fd, v, left, (off_t)off);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                snprintf(err, len, "%s: reading %d windows at offset %llu: %s", f->path, k,
                         (unsigned long long)off0,
                         r < 0 ? strerror(errno) : "the file is shorter than when it was opened");
                return -1;
            }
            off += (uint64_t)r;
            while (left > 0 && (size_t)r >= v->iov_len) {
                r -= (ssize_t)v->iov_len;
                v++;
                left--;
            }
            if (left > 0) {
                v->iov_base = (unsigned char *)v->iov_base + r;
                v->iov_len -= (size_t)r;
            }
        }
    }
    /* a window's last token is the next one's first */
    for (int j = 0; j + 1 < k; j++)
        memcpy(out + (size_t)j * stride + (size_t)T * w, out + (size_t)(j + 1) * stride, w);
    return 0;
}

void zt_bad_token(const zt_file *f, int64_t at, uint32_t tok, int64_t vocab, char *err,
                  size_t len)
{
    uint64_t off = (f->has_header ? ZT_HEADER_BYTES : 0) + (uint64_t)at * (uint64_t)f->width;
    if (vocab > 0)
        snprintf(err, len,
                 "%s: token %u at token %lld (byte offset %llu) is >= the vocabulary size %lld",
                 f->path, tok, (long long)at, (unsigned long long)off, (long long)vocab);
    else
        snprintf(err, len, "%s: token %u at token %lld (byte offset %llu) is beyond int32", f->path,
                 tok, (long long)at, (unsigned long long)off);
}

const unsigned char *zt_source(const zt_file *f, int64_t first, int64_t n, void *raw, char *err,
                               size_t len)
{
    if (first < 0 || n < 0 || first + n > f->ntok) {
        snprintf(err, len, "%s: tokens [%lld, %lld) are outside the file's %lld", f->path,
                 (long long)first, (long long)(first + n), (long long)f->ntok);
        return NULL;
    }
    uint64_t off = (f->has_header ? ZT_HEADER_BYTES : 0) + (uint64_t)first * (uint64_t)f->width;
    size_t bytes = (size_t)n * (size_t)f->width;
    if (f->map)
        return f->map + off;
    if (pread_full(f->fd, raw, bytes, off) != 0) {
        snprintf(err, len, "%s: reading %zu bytes at offset %llu: %s", f->path, bytes,
                 (unsigned long long)off,
                 errno ? strerror(errno) : "the file is shorter than when it was opened");
        return NULL;
    }
    return raw;
}

zero_status zt_scan(const zt_file *f, int64_t first, int64_t n, int64_t vocab, void *raw,
                    int64_t chunk, int64_t *max_tok, char *err, size_t len)
{
    int64_t mx = -1;
    int32_t buf[4096];
    if (chunk > 4096)
        chunk = 4096;
    if (chunk <= 0) /* raw holds chunk tokens: never more than the caller said */
        chunk = 1;
    for (int64_t at = first; at < first + n;) {
        int64_t k = first + n - at < chunk ? first + n - at : chunk;
        const unsigned char *src = zt_source(f, at, k, raw, err, len);
        if (!src)
            return ZERO_ERR_IO;
        int64_t bad = zt_widen(buf, src, k, f->width, vocab);
        for (int64_t i = 0; i < k; i++)
            if ((int64_t)(uint32_t)buf[i] > mx)
                mx = (uint32_t)buf[i];
        if (bad >= 0) {
            zt_bad_token(f, at + bad, (uint32_t)buf[bad], vocab, err, len);
            *max_tok = mx;
            return ZERO_ERR_INVALID;
        }
        at += k;
    }
    *max_tok = mx;
    return ZERO_OK;
}
