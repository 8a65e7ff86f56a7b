/* test_gpu_data.c — the token loader on the cuda backend (a world of one): every batch's device
 * copy (dev_inputs / dev_targets for the int32 output, dev_tokens for the window output), read back
 * after zero_compute_stream is synchronised, equals the host batch, with the ring (prefetch 2: the
 * next batch's copy queued on the copy stream) and without it (prefetch 0); and the window output
 * holds the int32 output's tokens. The token file is written here from the documented layout
 * (docs/DATA.md). Exit 0, 1 on a failure, 77 without a GPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "gpu_test.h"
#include "runtime/device_cuda.h"
#include "zero.h"

enum { NTOK = 4000, B = 3, T = 16, BATCHES = 12 };

static void put32(unsigned char *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static int write_file(const char *path)
{
    unsigned char hdr[1024] = {0};
    put32(hdr, 20240520);
    put32(hdr + 4, 1);
    put32(hdr + 8, NTOK);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int ok = fwrite(hdr, 1, sizeof hdr, f) == sizeof hdr;
    for (int i = 0; i < NTOK && ok; i++) {
        unsigned char t[2] = {(unsigned char)(i * 37 % 50000), (unsigned char)(i * 37 % 50000 >> 8)};
        ok = fwrite(t, 1, 2, f) == 2;
    }
    return fclose(f) == 0 && ok ? 0 : -1;
}

/* BATCHES batches of one loader: host inputs (int32 output) or widened windows into tok
 * [BATCHES][B][T + 1], each batch's device copy checked against the host one. */
static void run(zero_ctx *z, const char *path, zero_data_output out, int prefetch,
                int32_t (*tok)[B][T + 1])
{
    zero_data_config dc = ZERO_DATA_CONFIG_INIT;
    dc.files = path;
    dc.batch = B;
    dc.seq = T;
    dc.seed = 5;
    dc.vocab = 50257;
    dc.prefetch = prefetch;
    dc.output = out;
    zero_data *d = NULL;
    zero_status s = zero_data_open(z, &dc, &d);
    CHECK(s == ZERO_OK, "zero_data_open (output %d, prefetch %d): %s", (int)out, prefetch,
          zero_last_error(z));
    if (s)
        return;
    cudaStream_t cs = (cudaStream_t)zero_compute_stream(z);
    int same = 1;
    for (int k = 0; k < BATCHES; k++) {
        zero_batch b;
        s = zero_data_next(d, &b);
        CHECK(s == ZERO_OK, "zero_data_next %d: %s", k, zero_last_error(z));
        if (s)
            break;
        GT_CUDA(cudaStreamSynchronize(cs)); /* ordered after the batch's copy */
        if (out == ZERO_DATA_OUT_WINDOWS) {
            size_t n = (size_t)B * (T + 1) * (size_t)b.token_bytes;
            unsigned char *h = malloc(n);
            GT_CUDA(cudaMemcpy(h, b.dev_tokens, n, cudaMemcpyDeviceToHost));
            same &= b.token_bytes == 2 && !b.inputs && !b.dev_inputs && memcmp(h, b.tokens, n) == 0;
            const uint16_t *w = b.tokens;
            for (int r = 0; r < B; r++)
                for (int i = 0; i <= T; i++)
                    tok[k][r][i] = w[r * (T + 1) + i];
            free(h);
        } else {
            size_t n = (size_t)B * T * sizeof(int32_t);
            int32_t *hi = malloc(n), *ht = malloc(n);
            GT_CUDA(cudaMemcpy(hi, b.dev_inputs, n, cudaMemcpyDeviceToHost));
            GT_CUDA(cudaMemcpy(ht, b.dev_targets, n, cudaMemcpyDeviceToHost));
            same &= !b.tokens && memcmp(hi, b.inputs, n) == 0 && memcmp(ht, b.targets, n) == 0;
            for (int r = 0; r < B; r++) {
                for (int i = 0; i < T; i++)
                    tok[k][r][i] = b.inputs[r * T + i];
                tok[k][r][T] = b.targets[r * T + T - 1];
            }
            free(hi);
            free(ht);
        }
    }
    CHECK(same, "output %d, prefetch %d: a device copy differs from the host batch", (int)out,
          prefetch);
    zero_data_close(d);
    REPORT_LINE("loader on cuda, output %s, prefetch %d: %d device batches equal the host ones",
                out == ZERO_DATA_OUT_WINDOWS ? "windows" : "int32", prefetch, BATCHES);
}

int main(void)
{
    char why[256];
    if (!zr_cuda_usable(why, sizeof why)) {
        printf("SKIP: no usable GPU: %s\n", why);
        return GT_SKIP;
    }
    char path[] = "/tmp/test_gpu_data.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || close(fd) != 0 || write_file(path) != 0) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        return 1;
    }
    static float w[4] = {1, 2, 3, 4};
    zero_tensor t = {.name = "w", .numel = 4, .module = 0, .init = w};
    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.device = ZERO_DEVICE_CUDA;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, &t, 1);
    CHECK(s == ZERO_OK, "zero_init on cuda: %s", zero_init_error());
    if (s) {
        unlink(path);
        return 1;
    }
    static int32_t ref[BATCHES][B][T + 1], got[BATCHES][B][T + 1];
    run(z, path, ZERO_DATA_OUT_INT32, 0, ref);
    const zero_data_output outs[2] = {ZERO_DATA_OUT_INT32, ZERO_DATA_OUT_WINDOWS};
    const int pfs[2] = {2, 0};
    for (int o = 0; o < 2; o++)
        for (int p = 0; p < 2; p++) {
            if (o == 0 && p == 1)
                continue; /* the reference */
            memset(got, 0xff, sizeof got);
            run(z, path, outs[o], pfs[p], got);
            CHECK(memcmp(got, ref, sizeof got) == 0,
                  "output %d, prefetch %d: other tokens than the int32 output without prefetch",
                  (int)outs[o], pfs[p]);
        }
    zero_finalize(z);
    unlink(path);
    printf("%s: %d failed checks\n", check_failures ? "FAILED" : "passed", check_failures);
    return check_failures ? 1 : 0;
}
