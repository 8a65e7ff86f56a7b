/* test_data.c — the token loader (zero_data_*) under mpirun.
 *
 *   test_data union DIR G STEPS [T]   batches of G windows (B = G / world per rank): prints one
 *                                     line per global batch (index, epoch, hash of its rows in
 *                                     order) for data.sh to compare across world sizes; checks
 *                                     that every epoch holds every window of the data once and
 *                                     that targets are inputs shifted by one
 *   test_data save DIR G STEPS K POS  the same, and after batch K writes the position to POS
 *   test_data load DIR G STEPS POS    seeks to the position in POS and goes on to batch STEPS
 *   test_data errors DIR              every bad-data case: its status and message on every rank
 *   test_data fuzz DIR N              N mutated headers: never a crash, only OK / INVALID / IO
 *
 * TEST_DATA_OUTPUT=windows: the loader hands out the windows as uint16 (ZERO_DATA_OUT_WINDOWS);
 * the rows are widened here and hashed as the int32 pair is, so data.sh compares the two outputs.
 *
 * The token files are written here from the documented layout (docs/DATA.md: 256 little-endian
 * int32, magic 20240520, version 1, count; then uint16 tokens), not through libzero's writer. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zero.h>

static int rank, world, failures, cases;
static zero_data_output g_output = ZERO_DATA_OUT_INT32; /* of every loader opened here */

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", rank, __FILE__, __LINE__);                   \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n");                                                                \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

/* ---- an independent writer of llm.c token files ----------------------------------------------- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* header words as given (magic, version, count), then n tokens of width bytes */
static int write_tokens(const char *path, int32_t magic, int32_t version, int64_t count,
                        const uint32_t *tok, int64_t n, int width)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned char hdr[1024];
    memset(hdr, 0, sizeof hdr);
    put32(hdr, (uint32_t)magic);
    put32(hdr + 4, (uint32_t)version);
    put32(hdr + 8, (uint32_t)count);
    if (width == 4 && version == 2)
        put32(hdr + 12, (uint32_t)((uint64_t)count >> 32));
    fwrite(hdr, 1, sizeof hdr, f);
    for (int64_t i = 0; i < n; i++) {
        unsigned char b[4];
        put32(b, tok[i]);
        fwrite(b, 1, (size_t)width, f);
    }
    return fclose(f);
}

static uint64_t rng_state = 12345;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint64_t hash_words(const int32_t *x, int n, uint64_t h)
{
    for (int i = 0; i < n; i++) {
        h ^= (uint32_t)x[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h;
}

/* The data set of union/save/load: three token files of different lengths, random tokens. */
enum { NFILES = 3 };
static const int64_t file_tokens[NFILES] = {16 * 9 + 1, 16 * 5 + 7, 16 * 13 + 3};
static uint32_t *file_data[NFILES];

static void make_data(zero_ctx *z, const char *dir)
{
    rng_state = 777;
    for (int f = 0; f < NFILES; f++) {
        file_data[f] = malloc((size_t)file_tokens[f] * sizeof(uint32_t));
        for (int64_t i = 0; i < file_tokens[f]; i++)
            file_data[f][i] = (uint32_t)(rnd() % 50257);
    }
    if (rank == 0) {
        mkdir(dir, 0755);
        for (int f = 0; f < NFILES; f++) {
            char p[1024];
            snprintf(p, sizeof p, "%s/shard_%02d.bin", dir, f);
            if (write_tokens(p, 20240520, 1, file_tokens[f], file_data[f], file_tokens[f], 2))
                fprintf(stderr, "cannot write %s\n", p);
        }
    }
    double x = 0;
    zero_allreduce_sum(z, &x, 1); /* the files exist before any rank opens them */
}

/* every window of the data set (T tokens + 1), hashed as a row is: inputs then targets */
static uint64_t row_hash(const int32_t *in, const int32_t *tg, int T)
{
    return hash_words(tg, T, hash_words(in, T, 1469598103934665603ull)) & 0xffffffffull;
}

static int expected_windows(int T, uint64_t **out)
{
    int n = 0;
    for (int f = 0; f < NFILES; f++)
        n += (int)((file_tokens[f] - 1) / T);
    uint64_t *h = malloc((size_t)n * sizeof *h);
    int32_t *in = malloc((size_t)(T + 1) * sizeof *in);
    int k = 0;
    for (int f = 0; f < NFILES; f++)
        for (int64_t w = 0; w < (file_tokens[f] - 1) / T; w++) {
            for (int i = 0; i <= T; i++)
                in[i] = (int32_t)file_data[f][w * T + i];
            h[k++] = row_hash(in, in + 1, T);
        }
    free(in);
    *out = h;
    return n;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static zero_ctx *make_ctx(void)
{
    static float w[4] = {1, 2, 3, 4};
    zero_tensor t = {.name = "w", .numel = 4, .module = 0, .init = w};
    zero_config cfg = ZERO_CONFIG_INIT;
    zero_ctx *z = NULL;
    if (zero_init(&z, &cfg, &t, 1)) {
        fprintf(stderr, "zero_init: %s\n", zero_init_error());
        exit(1);
    }
    rank = zero_rank(z);
    world = zero_world_size(z);
    return z;
}

static zero_data *open_data(zero_ctx *z, const char *dir, int B, int T)
{
    char pat[1100];
    snprintf(pat, sizeof pat, "%s/shard_*.bin", dir);
    zero_data_config dc = ZERO_DATA_CONFIG_INIT;
    dc.files = pat;
    dc.batch = B;
    dc.seq = T;
    dc.seed = 99;
    dc.vocab = 50257;
    dc.name = "train";
    dc.output = g_output;
    if (getenv("TEST_DATA_UNIT")) /* windows the shuffle keeps together (data.sh) */
        dc.shuffle_unit = atoi(getenv("TEST_DATA_UNIT"));
    zero_data *d = NULL;
    zero_status s = zero_data_open(z, &dc, &d);
    if (s) {
        fprintf(stderr, "rank %d: zero_data_open: %s: %s\n", rank, zero_status_string(s),
                zero_last_error(z));
        exit(1);
    }
    return d;
}

/* Batches [from, to) of d: every row's hash gathered in global row order; rank 0 prints one line
 * per batch and keeps the hashes by global window for the epoch check. */
static void run_batches(zero_ctx *z, zero_data *d, int G, int T, int64_t from, int64_t to,
                        uint64_t *by_window, int64_t max_window)
{
    const int B = G / world;
    double *rows = malloc((size_t)G * sizeof *rows);
    int32_t *pair = malloc(2 * (size_t)B * (size_t)T * sizeof *pair); /* windows widened */
    for (int64_t k = from; k < to; k++) {
        zero_batch b;
        zero_status s = zero_data_next(d, &b);
        if (s) {
            fprintf(stderr, "rank %d: zero_data_next: %s\n", rank, zero_last_error(z));
            exit(1);
        }
        CHECK(b.index == k, "batch index %" PRId64 ", expected %" PRId64, b.index, k);
        CHECK(b.first_window == (uint64_t)(k * G + rank * B), "first window %" PRIu64,
              b.first_window);
        CHECK(b.batch == B && b.seq == T, "batch shape %d x %d", b.batch, b.seq);
        CHECK(b.dev_inputs == b.inputs, "host backend: device pointers are the host ones");
        if (g_output == ZERO_DATA_OUT_WINDOWS) {
            CHECK(b.tokens && b.dev_tokens == b.tokens && !b.inputs && !b.targets &&
                      b.token_bytes == 2,
                  "window output: tokens %p, inputs %p, %d bytes", b.tokens, (const void *)b.inputs,
                  b.token_bytes);
            const uint16_t *w = b.tokens;
            for (int r = 0; r < B; r++)
                for (int i = 0; i < T; i++) {
                    pair[(size_t)r * T + i] = w[(size_t)r * (T + 1) + i];
                    pair[(size_t)B * T + (size_t)r * T + i] = w[(size_t)r * (T + 1) + i + 1];
                }
            b.inputs = pair;
            b.targets = pair + (size_t)B * T;
        } else {
            CHECK(!b.tokens && b.token_bytes == 4, "int32 output: tokens %p, %d bytes", b.tokens,
                  b.token_bytes);
        }
        memset(rows, 0, (size_t)G * sizeof *rows);
        for (int r = 0; r < B; r++) {
            const int32_t *in = b.inputs + (size_t)r * T, *tg = b.targets + (size_t)r * T;
            for (int i = 0; i + 1 < T; i++)
                CHECK(tg[i] == in[i + 1], "targets are not inputs shifted by one");
            rows[rank * B + r] = (double)row_hash(in, tg, T);
        }
        zero_allreduce_sum(z, rows, G);
        if (rank == 0) {
            uint64_t h = 1469598103934665603ull;
            for (int i = 0; i < G; i++) {
                h = hash_words((const int32_t[]){(int32_t)(uint64_t)rows[i]}, 1, h);
                int64_t g = k * G + i;
                if (by_window && g < max_window)
                    by_window[g] = (uint64_t)rows[i];
            }
            int64_t epoch = b.epoch;
            printf("batch %" PRId64 " epoch %" PRId64 " hash %016" PRIx64 "\n", k, epoch, h);
        }
    }
    free(pair);
    free(rows);
}

/* rank 0: every complete epoch among the first `have` global windows holds every window once */
static void check_epochs(const uint64_t *by_window, int64_t have, int T)
{
    uint64_t *want;
    int W = expected_windows(T, &want);
    qsort(want, (size_t)W, sizeof *want, cmp_u64);
    uint64_t *got = malloc((size_t)W * sizeof *got);
    int epochs = 0;
    for (int64_t e = 0; (e + 1) * W <= have; e++) {
        memcpy(got, by_window + e * W, (size_t)W * sizeof *got);
        qsort(got, (size_t)W, sizeof *got, cmp_u64);
        CHECK(!memcmp(got, want, (size_t)W * sizeof *got),
              "epoch %" PRId64 " is not every window once", e);
        if (e > 0)
            CHECK(memcmp(by_window, by_window + e * W, (size_t)W * sizeof *got) != 0,
                  "epoch %" PRId64 " has the order of epoch 0 (no reshuffle)", e);
        epochs++;
    }
    CHECK(epochs >= 1, "no complete epoch in %" PRId64 " windows (W = %d)", have, W);
    printf("epochs checked: %d (%d windows each)\n", epochs, W);
    free(got);
    free(want);
}

static int mode_stream(int argc, char **argv, const char *mode)
{
    const char *dir = argv[2];
    int G = atoi(argv[3]);
    int64_t steps = atoll(argv[4]);
    int T = 16;
    const char *out = getenv("TEST_DATA_OUTPUT");
    if (out && !strcmp(out, "windows"))
        g_output = ZERO_DATA_OUT_WINDOWS;
    zero_ctx *z = make_ctx();
    if (G % world) {
        if (rank == 0)
            fprintf(stderr, "G %d is not a multiple of %d ranks\n", G, world);
        return 2;
    }
    make_data(z, dir);
    zero_data *d = open_data(z, dir, G / world, T);
    zero_data_info info;
    zero_data_get_info(d, &info);
    CHECK(info.files == NFILES && info.token_bytes == 2, "info: %d files of %d bytes", info.files,
          info.token_bytes);
    CHECK(info.max_token >= 0 && info.max_token < 50257, "verify scan's max token %" PRId64,
          info.max_token);
    int64_t have = steps * G;
    uint64_t *by_window = rank == 0 ? calloc((size_t)have, sizeof *by_window) : NULL;
    if (!strcmp(mode, "union")) {
        run_batches(z, d, G, T, 0, steps, by_window, have);
        /* going back: a position taken mid-run and sought to gives the same batches again */
        zero_data_pos p;
        zero_data_tell(d, &p);
        CHECK(p.windows == (uint64_t)have, "tell: %" PRIu64 " windows", p.windows);
        if (rank == 0)
            check_epochs(by_window, have, T);
    } else if (!strcmp(mode, "save")) {
        int64_t k = atoll(argv[5]);
        run_batches(z, d, G, T, 0, k, NULL, 0);
        zero_data_pos p;
        zero_data_tell(d, &p);
        if (rank == 0) {
            FILE *f = fopen(argv[6], "w");
            fprintf(f, "%" PRIu64 " %" PRIu64 "\n", p.windows, p.fingerprint);
            fclose(f);
        }
    } else { /* load */
        unsigned long long w = 0, fp = 0;
        FILE *f = fopen(argv[5], "r");
        if (!f || fscanf(f, "%llu %llu", &w, &fp) != 2) {
            fprintf(stderr, "cannot read %s\n", argv[5]);
            return 1;
        }
        fclose(f);
        zero_data_pos p = {w, fp};
        zero_status s = zero_data_seek(d, &p);
        CHECK(s == ZERO_OK, "seek: %s", zero_last_error(z));
        run_batches(z, d, G, T, (int64_t)(w / (uint64_t)G), steps, NULL, 0);
        /* a position beyond any data set (a damaged blob) is refused */
        zero_data_pos far = {(uint64_t)1 << 62, fp};
        s = zero_data_seek(d, &far);
        CHECK(s == ZERO_ERR_INVALID && strstr(zero_last_error(z), "beyond any data set"),
              "seek to 2^62 windows: %d %s", s, zero_last_error(z));
        /* a position of other data is refused, and the loader stays where it was */
        zero_data_pos bad = {0, fp ^ 1};
        s = zero_data_seek(d, &bad);
        CHECK(s == ZERO_ERR_INVALID && strstr(zero_last_error(z), "fingerprint"),
              "seek to another data set's position: %d %s", s, zero_last_error(z));
        zero_data_pos now;
        zero_data_tell(d, &now);
        CHECK(now.windows == (uint64_t)steps * (uint64_t)G, "position moved by a refused seek");
    }
    (void)argc;
    free(by_window);
    zero_data_close(d);
    for (int f = 0; f < NFILES; f++)
        free(file_data[f]);
    zero_finalize(z);
    int all = failures;
    if (rank == 0)
        printf("test_data %s: np %d, %d failures\n", mode, world, all);
    return failures ? 1 : 0;
}

/* ---- errors ----------------------------------------------------------------------------------- */

static void barrier(zero_ctx *z)
{
    double x = 0;
    zero_allreduce_sum(z, &x, 1);
}

static void write_text(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, n, f);
    fclose(f);
}

/* opens files (pattern) with B, T, vocab, verify; expects status want and every needle in the
 * message (on every rank); returns the loader when it opened */
static zero_data *expect_open(zero_ctx *z, const char *what, const char *files, int B, int T,
                              int64_t vocab, int verify, zero_data_format fmt, zero_status want,
                              const char *n1, const char *n2)
{
    zero_data_config dc = ZERO_DATA_CONFIG_INIT;
    dc.files = files;
    dc.batch = B;
    dc.seq = T;
    dc.vocab = vocab;
    dc.verify = verify;
    dc.format = fmt;
    dc.shuffle = 0;
    dc.output = g_output;
    zero_data *d = NULL;
    zero_status s = zero_data_open(z, &dc, &d);
    const char *m = zero_last_error(z);
    cases++;
    CHECK(s == want, "%s: status %s, expected %s (%s)", what, zero_status_string(s),
          zero_status_string(want), m);
    CHECK(!n1 || strstr(m, n1), "%s: message lacks '%s': %s", what, n1, m);
    CHECK(!n2 || strstr(m, n2), "%s: message lacks '%s': %s", what, n2, m);
    CHECK((s == ZERO_OK) == (d != NULL), "%s: handle %p with status %d", what, (void *)d, s);
    if (s != ZERO_OK && rank == 0 && getenv("TEST_DATA_SHOW"))
        printf("  %s -> %s\n", what, m);
    return d;
}

static int mode_errors(const char *dir)
{
    zero_ctx *z = make_ctx();
    char p[1024], q[1024], pat[2100];
    uint32_t tok[4096];
    for (int i = 0; i < 4096; i++)
        tok[i] = (uint32_t)(i * 7 % 200);
    if (rank == 0) {
        mkdir(dir, 0755);
        snprintf(p, sizeof p, "%s/magic.bin", dir);
        write_tokens(p, 12345, 1, 100, tok, 100, 2);
        snprintf(p, sizeof p, "%s/version.bin", dir);
        write_tokens(p, 20240520, 9, 100, tok, 100, 2);
        snprintf(p, sizeof p, "%s/longer.bin", dir);
        write_tokens(p, 20240520, 1, 100, tok, 120, 2);
        snprintf(p, sizeof p, "%s/truncated.bin", dir);
        write_tokens(p, 20240520, 1, 100, tok, 60, 2);
        snprintf(p, sizeof p, "%s/short.bin", dir);
        write_tokens(p, 20240520, 1, 5, tok, 5, 2);
        uint32_t bad[400];
        memcpy(bad, tok, sizeof bad);
        bad[37] = 300; /* >= the vocabulary of 256 */
        snprintf(p, sizeof p, "%s/vocab_open.bin", dir);
        write_tokens(p, 20240520, 1, 400, bad, 400, 2);
        memcpy(bad, tok, sizeof bad);
        bad[399] = 70; /* fine */
        bad[390] = 1000; /* in the last window: read by the last rank of a batch of all rows */
        snprintf(p, sizeof p, "%s/vocab_late.bin", dir);
        write_tokens(p, 20240520, 1, 400, bad, 400, 2);
        snprintf(p, sizeof p, "%s/good.bin", dir);
        write_tokens(p, 20240520, 1, 400, tok, 400, 2);
        snprintf(p, sizeof p, "%s/text.txt", dir);
        write_text(p, "hello, token world! hello, token world! hello, token world!", 60);
        uint32_t wide[300];
        for (int i = 0; i < 300; i++)
            wide[i] = 65536u + (uint32_t)i * 1000u;
        snprintf(p, sizeof p, "%s/wide.bin", dir);
        write_tokens(p, 20240520, 2, 300, wide, 300, 4);
        snprintf(p, sizeof p, "%s/llama.bin", dir);
        write_tokens(p, 20240801, 7, 300, wide, 300, 4);
        for (int r = 0; r < world; r++) { /* rank 0 sees two files, the others one */
            snprintf(p, sizeof p, "%s/r%d_a.bin", dir, r);
            write_tokens(p, 20240520, 1, 400, tok, 400, 2);
            if (r == 0) {
                snprintf(p, sizeof p, "%s/r%d_b.bin", dir, r);
                write_tokens(p, 20240520, 1, 400, tok, 400, 2);
            }
        }
    }
    barrier(z);
#define F(name) (snprintf(pat, sizeof pat, "%s/%s", dir, name), pat)
    expect_open(z, "wrong magic", F("magic.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO, ZERO_ERR_INVALID,
                "magic.bin", "not a token file");
    expect_open(z, "wrong magic, tokens format", F("magic.bin"), 2, 16, 256, 1, ZERO_DATA_TOKENS,
                ZERO_ERR_INVALID, "magic.bin", "20240520");
    expect_open(z, "wrong version", F("version.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                ZERO_ERR_INVALID, "version.bin", "version 9");
    expect_open(z, "count disagrees with size", F("longer.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                ZERO_ERR_INVALID, "longer.bin", "disagrees with the file size");
    expect_open(z, "truncated", F("truncated.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                ZERO_ERR_INVALID, "truncated.bin", "truncated");
    expect_open(z, "shorter than a window", F("short.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                ZERO_ERR_INVALID, "short.bin", "shorter than one window");
    expect_open(z, "token >= vocab (verify at open)", F("vocab_open.bin"), 2, 16, 256, 1,
                ZERO_DATA_AUTO, ZERO_ERR_INVALID, "vocab_open.bin", "token 300 at token 37");
    expect_open(z, "empty list", "", 2, 16, 256, 1, ZERO_DATA_AUTO, ZERO_ERR_INVALID, "empty",
                NULL);
    expect_open(z, "list of commas only", ",,", 2, 16, 256, 1, ZERO_DATA_AUTO, ZERO_ERR_INVALID,
                "empty", NULL);
    expect_open(z, "pattern matches nothing", F("nothing_*.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                ZERO_ERR_INVALID, "nothing_*.bin", "matches no file");
    expect_open(z, "missing file", F("missing.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                ZERO_ERR_INVALID, "missing.bin", "No such file");
    snprintf(q, sizeof q, "%s/good.bin,%s/text.txt", dir, dir);
    expect_open(z, "tokens mixed with text", q, 2, 16, 256, 1, ZERO_DATA_AUTO, ZERO_ERR_INVALID,
                "mix", NULL);
    expect_open(z, "batch 0", F("good.bin"), 0, 16, 256, 1, ZERO_DATA_AUTO, ZERO_ERR_INVALID,
                "batch 0", NULL);
    /* blanks around the entries of a list are not part of the names */
    snprintf(q, sizeof q, " %s/good.bin ,\t%s/good.bin ", dir, dir);
    zero_data_close(expect_open(z, "list with blanks", q, 2, 16, 256, 1, ZERO_DATA_AUTO, ZERO_OK,
                                NULL, NULL));
    snprintf(q, sizeof q, "%s/r%d_*.bin", dir, rank);
    expect_open(z, "ranks see other files", q, 2, 16, 256, 1, ZERO_DATA_AUTO,
                world > 1 ? ZERO_ERR_INVALID : ZERO_OK,
                world > 1 ? "number of data files differs across ranks" : NULL, NULL);
    /* settings that differ between ranks */
    zero_data *d = expect_open(z, "seq differs between ranks", F("good.bin"), 2,
                               rank == world - 1 ? 8 : 16, 256, 1, ZERO_DATA_AUTO,
                               world > 1 ? ZERO_ERR_INVALID : ZERO_OK,
                               world > 1 ? "data seq differs" : NULL, NULL);
    zero_data_close(d);
    /* a program built against 0.4: its config ends at shuffle_unit (then padding, here garbage)
     * and its zero_batch at first_window; it gets the int32 output and nothing is written past
     * its batch */
    {
        const size_t a = _Alignof(zero_data_config);
        const size_t old_cfg = (offsetof(zero_data_config, shuffle_unit) + sizeof(int) + a - 1) /
                               a * a;
        union {
            zero_data_config c;
            unsigned char b[sizeof(zero_data_config)];
        } u;
        memset(&u, 0, sizeof u);
        u.c = (zero_data_config)ZERO_DATA_CONFIG_INIT;
        u.c.files = F("good.bin");
        u.c.batch = 1;
        u.c.seq = 4;
        u.c.struct_size = old_cfg;
        for (size_t k = offsetof(zero_data_config, shuffle_unit) + sizeof(int); k < sizeof u.b; k++)
            u.b[k] = 0xab; /* the old struct's padding, and what lies beyond it */
        zero_data *x = NULL;
        zero_status s = zero_data_open(z, &u.c, &x);
        cases++;
        CHECK(s == ZERO_OK && x, "a 0.4 config (%zu bytes, padding garbage): %d %s", old_cfg, s,
              zero_last_error(z));
        if (x) {
            struct {
                unsigned char batch[offsetof(zero_batch, tokens)]; /* 0.4's zero_batch */
                unsigned char canary[sizeof(zero_batch)];
            } ob;
            memset(&ob, 0x5c, sizeof ob);
            s = zero_data_next(x, (zero_batch *)(void *)&ob);
            int intact = 1;
            for (size_t k = 0; k < sizeof ob.canary; k++)
                intact &= ob.canary[k] == 0x5c;
            const zero_batch *got = (const zero_batch *)(void *)&ob;
            CHECK(s == ZERO_OK && intact && got->inputs && got->targets &&
                      got->targets[0] == got->inputs[1],
                  "a 0.4 batch: status %d, bytes past it %s", s, intact ? "intact" : "written");
            zero_data_close(x);
        }
    }
    /* bad settings */
    {
        zero_data_config dc = ZERO_DATA_CONFIG_INIT;
        dc.files = F("good.bin");
        dc.batch = 1;
        dc.seq = 4;
        dc.struct_size = 8;
        zero_data *x = NULL;
        zero_status s = zero_data_open(z, &dc, &x);
        cases++;
        CHECK(s == ZERO_ERR_INVALID && strstr(zero_last_error(z), "ZERO_DATA_CONFIG_INIT") && !x,
              "struct_size 8: %d %s", s, zero_last_error(z));
        dc = (zero_data_config)ZERO_DATA_CONFIG_INIT;
        dc.files = F("good.bin");
        dc.batch = 1;
        dc.seq = 4;
        dc.prefetch = 65;
        s = zero_data_open(z, &dc, &x);
        cases++;
        CHECK(s == ZERO_ERR_INVALID && strstr(zero_last_error(z), "prefetch 65"),
              "prefetch 65: %d %s", s, zero_last_error(z));
        dc.prefetch = -1;
        dc.reserved = 3;
        s = zero_data_open(z, &dc, &x);
        cases++;
        CHECK(s == ZERO_ERR_INVALID && strstr(zero_last_error(z), "cfg.reserved is 3"),
              "reserved 3: %d %s", s, zero_last_error(z));
        dc.reserved = 0;
        dc.output = (zero_data_output)7;
        s = zero_data_open(z, &dc, &x);
        cases++;
        CHECK(s == ZERO_ERR_INVALID && strstr(zero_last_error(z), "output 7") &&
                  strstr(zero_last_error(z), "ZERO_DATA_OUT_WINDOWS"),
              "output 7: %d %s", s, zero_last_error(z));
    }

    /* a bad token found only while training (verify off): every rank gets the error, naming the
     * file and the offset, and the loader stays at the failed batch; with either output */
    for (int out = 0; out < 2; out++) {
        g_output = out ? ZERO_DATA_OUT_WINDOWS : ZERO_DATA_OUT_INT32;
        /* 400 tokens, T = 8: 49 windows; window 48 holds tokens 384..392 (token 390 bad). With
         * batch B per rank, the global batches before it pass. */
        int B = 1, T = 8;
        d = expect_open(z, "token >= vocab (verify off)", F("vocab_late.bin"), B, T, 256, 0,
                        ZERO_DATA_AUTO, ZERO_OK, NULL, NULL);
        if (d) {
            int64_t G = (int64_t)B * world, bad_batch = 48 / G;
            zero_status s = ZERO_OK;
            int64_t k;
            zero_batch b;
            for (k = 0; k <= bad_batch && s == ZERO_OK; k++)
                s = zero_data_next(d, &b);
            cases++;
            CHECK(s == ZERO_ERR_INVALID && k - 1 == bad_batch,
                  "late bad token: status %s at batch %" PRId64 " (expected batch %" PRId64 ")",
                  zero_status_string(s), k - 1, bad_batch);
            CHECK(strstr(zero_last_error(z), "vocab_late.bin") &&
                      strstr(zero_last_error(z), "token 1000 at token 390") &&
                      strstr(zero_last_error(z), "byte offset 1804"),
                  "late bad token message: %s", zero_last_error(z));
            zero_data_pos pos;
            zero_data_tell(d, &pos);
            CHECK(pos.windows == (uint64_t)(bad_batch * G), "position after the failure: %" PRIu64,
                  pos.windows);
            s = zero_data_next(d, &b);
            CHECK(s == ZERO_ERR_INVALID, "the failed batch fails again: %d", s);
            zero_data_close(d);
        }
    }
    g_output = ZERO_DATA_OUT_INT32;

    /* formats that must load: text as bytes, 32-bit tokens (ours and llm.c's llama header) */
    {
        zero_batch b;
        d = expect_open(z, "text read as bytes", F("text.txt"), 1, 6, 256, 1, ZERO_DATA_AUTO,
                        ZERO_OK, NULL, NULL);
        if (d && zero_data_next(d, &b) == ZERO_OK) {
            const char *text = "hello, token world! hello, token world! hello, token world!";
            int ok = 1;
            for (int i = 0; i < 6; i++) /* unshuffled: rank r's row is window r */
                ok &= b.inputs[i] == (unsigned char)text[rank * 6 + i] &&
                      b.targets[i] == (unsigned char)text[rank * 6 + i + 1];
            CHECK(ok, "text bytes: row differs from the text");
        }
        zero_data_close(d);
        const char *wide_files[] = {"wide.bin", "llama.bin"};
        for (int w = 0; w < 2; w++) {
            d = expect_open(z, wide_files[w], F(wide_files[w]), 1, 10, 400000, 1, ZERO_DATA_AUTO,
                            ZERO_OK, NULL, NULL);
            if (d && zero_data_next(d, &b) == ZERO_OK) {
                int ok = 1;
                for (int i = 0; i < 10; i++)
                    ok &= b.inputs[i] == (int32_t)(65536 + (rank * 10 + i) * 1000) &&
                          b.targets[i] == (int32_t)(65536 + (rank * 10 + i + 1) * 1000);
                zero_data_info info;
                zero_data_get_info(d, &info);
                CHECK(ok && info.token_bytes == 4 && info.max_token == 65536 + 299 * 1000,
                      "%s: 32-bit tokens read wrong (max %" PRId64 ")", wide_files[w],
                      info.max_token);
            }
            zero_data_close(d);
        }
        /* the same files as windows: bytes stay bytes, 32-bit tokens 32-bit; the window holds
         * the targets' last token too */
        g_output = ZERO_DATA_OUT_WINDOWS;
        d = expect_open(z, "text as byte windows", F("text.txt"), 1, 6, 256, 0, ZERO_DATA_AUTO,
                        ZERO_OK, NULL, NULL);
        if (d && zero_data_next(d, &b) == ZERO_OK) {
            const char *text = "hello, token world! hello, token world! hello, token world!";
            CHECK(b.token_bytes == 1 && !b.inputs && b.tokens &&
                      !memcmp(b.tokens, text + rank * 6, 7),
                  "text as byte windows: %d bytes per token", b.token_bytes);
        }
        zero_data_close(d);
        for (int w = 0; w < 2; w++) {
            d = expect_open(z, wide_files[w], F(wide_files[w]), 1, 10, 400000, 0, ZERO_DATA_AUTO,
                            ZERO_OK, NULL, NULL);
            if (d && zero_data_next(d, &b) == ZERO_OK) {
                int ok = b.token_bytes == 4 && b.tokens;
                for (int i = 0; ok && i <= 10; i++)
                    ok &= ((const uint32_t *)b.tokens)[i] ==
                          (uint32_t)(65536 + (rank * 10 + i) * 1000);
                CHECK(ok, "%s: 32-bit windows read wrong", wide_files[w]);
            }
            zero_data_close(d);
        }
        /* a 16-bit file beside a 32-bit one: its windows widened to 32 bits */
        snprintf(q, sizeof q, "%s/wide.bin,%s/good.bin", dir, dir);
        d = expect_open(z, "16-bit and 32-bit files as windows", q, 1, 10, 400000, 0,
                        ZERO_DATA_AUTO, ZERO_OK, NULL, NULL);
        if (d) {
            /* unshuffled: windows 0..28 are wide.bin's (300 tokens), then good.bin's (tok[i] =
             * 7 i % 200) */
            zero_data_pos far = {29, 0};
            zero_data_pos here;
            zero_data_tell(d, &here);
            far.fingerprint = here.fingerprint;
            zero_status s = zero_data_seek(d, &far);
            if (s == ZERO_OK && zero_data_next(d, &b) == ZERO_OK) {
                int ok = b.token_bytes == 4;
                for (int i = 0; ok && i <= 10; i++)
                    ok &= ((const uint32_t *)b.tokens)[i] ==
                          (uint32_t)(((rank * 10 + i) * 7) % 200);
                CHECK(ok, "a 16-bit file's windows among 32-bit ones read wrong");
            } else {
                CHECK(0, "mixed widths: seek or next failed: %s", zero_last_error(z));
            }
            zero_data_close(d);
        }
        g_output = ZERO_DATA_OUT_INT32;
        /* 32-bit tokens above the vocabulary: refused at open */
        expect_open(z, "32-bit token >= vocab", F("wide.bin"), 1, 10, 65536, 1, ZERO_DATA_AUTO,
                    ZERO_ERR_INVALID, "wide.bin", "is >= the vocabulary size 65536");
    }

    /* after zero_finalize a loader left open only accepts zero_data_close */
    d = expect_open(z, "open before finalize", F("good.bin"), 2, 16, 256, 1, ZERO_DATA_AUTO,
                    ZERO_OK, NULL, NULL);
    zero_finalize(z);
    if (d) {
        zero_batch b;
        cases++;
        CHECK(zero_data_next(d, &b) == ZERO_ERR_STATE, "next after zero_finalize");
        zero_data_pos pos = {0, 0};
        CHECK(zero_data_seek(d, &pos) == ZERO_ERR_STATE, "seek after zero_finalize");
        CHECK(zero_data_close(d) == ZERO_OK, "close after zero_finalize");
    }
#undef F
    printf("test_data errors: rank %d, np %d, %d cases, %d failures\n", rank, world, cases,
           failures);
    return failures ? 1 : 0;
}

/* ---- fuzz: mutated headers and sizes ---------------------------------------------------------- */

static int mode_fuzz(const char *dir, int iters)
{
    zero_ctx *z = make_ctx();
    char p[1024];
    uint32_t tok[2048];
    int opened = 0, refused = 0;
    rng_state = 4242;
    if (rank == 0)
        mkdir(dir, 0755);
    for (int it = 0; it < iters; it++) {
        /* every rank draws the same mutation; rank 0 writes the file */
        int64_t n = (int64_t)(rnd() % 2000) + 1;
        int width = rnd() % 2 ? 2 : 4;
        int32_t words[3] = {20240520, width == 2 ? 1 : 2, (int32_t)n};
        if (rnd() % 4 == 0)
            words[1] = width == 4 && rnd() % 2 ? 7 : (int32_t)(rnd() % 4);
        int which = (int)(rnd() % 5); /* 4: no mutation but the version's */
        uint64_t v = rnd();
        int64_t written = n;
        switch (which) {
        case 0: words[0] = rnd() % 2 ? (int32_t)v : 20240801; break;
        case 1: words[2] = (int32_t)v; break;                       /* any count */
        case 2: words[2] = (int32_t)(n + (int64_t)(v % 5) - 2); break; /* off by a little */
        case 3: written = (int64_t)(v % (uint64_t)(n + 1)); break; /* truncated data */
        default: break;
        }
        for (int i = 0; i < 2048; i++)
            tok[i] = (uint32_t)(rnd() % 70000);
        snprintf(p, sizeof p, "%s/f%d.bin", dir, it % 4);
        if (rank == 0)
            write_tokens(p, words[0], words[1], words[2], tok, written, width);
        barrier(z);
        zero_data_config dc = ZERO_DATA_CONFIG_INIT;
        dc.files = p;
        dc.batch = 1 + (int)(rnd() % 3);
        dc.seq = 1 + (int)(rnd() % 64);
        dc.vocab = rnd() % 2 ? 0 : 65536;
        dc.verify = (int)(rnd() % 2);
        dc.format = rnd() % 2 ? ZERO_DATA_AUTO : ZERO_DATA_TOKENS;
        zero_data *d = NULL;
        zero_status s = zero_data_open(z, &dc, &d);
        CHECK(s == ZERO_OK || s == ZERO_ERR_INVALID || s == ZERO_ERR_IO,
              "iteration %d: status %s: %s", it, zero_status_string(s), zero_last_error(z));
        if (s == ZERO_OK) {
            opened++;
            zero_batch b;
            for (int k = 0; k < 3; k++) {
                s = zero_data_next(d, &b);
                CHECK(s == ZERO_OK || s == ZERO_ERR_INVALID, "iteration %d: next: %s", it,
                      zero_last_error(z));
                if (s)
                    break;
            }
            zero_data_close(d);
        } else {
            refused++;
        }
        barrier(z); /* nobody reads the file while rank 0 rewrites it */
    }
    zero_finalize(z);
    printf("test_data fuzz: rank %d, %d iterations (%d opened, %d refused), %d failures\n", rank,
           iters, opened, refused, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "errors"))
        return mode_errors(argv[2]);
    if (argc >= 4 && !strcmp(argv[1], "fuzz"))
        return mode_fuzz(argv[2], atoi(argv[3]));
    if (argc >= 5 && !strcmp(argv[1], "union"))
        return mode_stream(argc, argv, "union");
    if (argc >= 7 && !strcmp(argv[1], "save"))
        return mode_stream(argc, argv, "save");
    if (argc >= 6 && !strcmp(argv[1], "load"))
        return mode_stream(argc, argv, "load");
    fprintf(stderr, "usage: see the header of test_data.c\n");
    (void)cases;
    return 2;
}
