/* test_gpu_device.c — the cuda device backend (runtime/device_cuda.h) through the accounting
 * layer of device.h: allocations past the capacity cap and past the GPU's own memory both fail
 * with ZERO_ERR_OOM and the process goes on (a later allocation and kernel work); zero-filled
 * memory; copies round-trip between host, device and pinned memory at odd sizes and offsets;
 * the element-wise members equal the host twins bit for bit; streams order with events; a
 * compute stream passed in is used and left alive. Exit 0, 1 on a failure, 77 without a GPU. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "gpu_test.h"
#include "kernels/kernels.h"
#include "runtime/device.h"
#include "runtime/device_cuda.h"

/* The message of the last failed allocation (zr_device_alloc writes it). */
static zr_error g_oom;

#define MiB ((size_t)1 << 20)

static void *host_alloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "FAIL: out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static void fill_random(void *p, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        ((unsigned char *)p)[i] = (unsigned char)rnd_u64();
}

static int all_zero(const void *p, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        if (((const unsigned char *)p)[i])
            return 0;
    return 1;
}

static void expect_no_error(zr_device *dev, const char *after)
{
    char msg[256];
    zero_status s = zr_cuda_take_error(dev, msg, sizeof msg);
    CHECK(s == ZERO_OK, "CUDA error after %s: %s", after, msg);
}

/* ---- capacity and OOM --------------------------------------------------------------------- */

static void test_oom(zr_device *dev)
{
    void *a = NULL, *b = NULL, *c = NULL;
    zero_status s = zr_device_alloc(dev, ZERO_MEM_PARAMS, 40 * MiB, "test params", &a, &g_oom);
    CHECK(s == ZERO_OK && a, "40 MiB under a 64 MiB cap: %s", zero_status_string(s));

    /* Zero-filled (device.h), checked on the host through the backend's copy. */
    unsigned char *h = host_alloc(40 * MiB);
    memset(h, 0x5a, 40 * MiB);
    zr_dev_copy(dev, h, a, 40 * MiB);
    CHECK(all_zero(h, 40 * MiB), "a new allocation is not zero-filled");
    free(h);

    s = zr_device_alloc(dev, ZERO_MEM_OPTIMIZER, 32 * MiB, "test moments", &b, &g_oom);
    CHECK(s == ZERO_ERR_OOM && !b, "32 MiB more past the cap: got %s", zero_status_string(s));
    CHECK(strstr(g_oom.msg, "test moments") != NULL, "the OOM message does not name the buffer: %s",
          g_oom.msg);
    CHECK(dev->current_total == 40 * MiB, "a failed allocation changed the accounting");

    /* The process goes on: an allocation that fits succeeds. */
    s = zr_device_alloc(dev, ZERO_MEM_GRADS, 16 * MiB, "test grads", &c, &g_oom);
    CHECK(s == ZERO_OK && c, "16 MiB after an OOM: %s", zero_status_string(s));
    CHECK(dev->current[ZERO_MEM_PARAMS] == 40 * MiB && dev->current[ZERO_MEM_GRADS] == 16 * MiB &&
              dev->peak_total == 56 * MiB && dev->model_state_peak == 56 * MiB,
          "accounting: params %zu grads %zu peak %zu state peak %zu", dev->current[0],
          dev->current[1], dev->peak_total, dev->model_state_peak);
    zr_device_free(dev, ZERO_MEM_PARAMS, a, 40 * MiB);
    zr_device_free(dev, ZERO_MEM_GRADS, c, 16 * MiB);
    CHECK(dev->current_total == 0, "current_total %zu after freeing all", dev->current_total);
    REPORT_LINE("capacity cap: over-cap allocation is ZERO_ERR_OOM, a later one succeeds, zero "
                "fill, accounting");

    /* Past the GPU's own memory, without a cap: the backend fails softly. */
    size_t free_b = 0, total_b = 0;
    GT_CUDA(cudaMemGetInfo(&free_b, &total_b));
    const size_t cap = dev->capacity;
    dev->capacity = 0;
    void *huge = NULL;
    s = zr_device_alloc(dev, ZERO_MEM_BUFFERS, total_b * 2, "more than the GPU", &huge, &g_oom);
    CHECK(s == ZERO_ERR_OOM && !huge, "2x the GPU's memory: got %s", zero_status_string(s));
    CHECK(strstr(g_oom.msg, "backend") != NULL, "OOM message: %s", g_oom.msg);
    CHECK(cudaGetLastError() == cudaSuccess, "the failed cudaMalloc left an error behind");
    void *small = NULL;
    s = zr_device_alloc(dev, ZERO_MEM_BUFFERS, 2 * MiB, "after the real OOM", &small, &g_oom);
    CHECK(s == ZERO_OK && small, "2 MiB after a real OOM: %s", zero_status_string(s));
    if (small) {
        /* Kernel work still runs: 1 + 1 = 2 on every element (second half into the first). */
        const size_t n = MiB / 4;
        float *ones = host_alloc(2 * MiB);
        for (size_t i = 0; i < 2 * n; i++)
            ones[i] = 1.0f;
        zr_dev_copy(dev, small, ones, 2 * MiB);
        zr_dev_add(dev, small, ZERO_DTYPE_FP32, (float *)small + n, ZERO_DTYPE_FP32, n);
        zr_dev_copy(dev, ones, small, MiB);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += ones[i] != 2.0f;
        CHECK(bad == 0, "add after a real OOM: %zu wrong elements", bad);
        free(ones);
        zr_device_free(dev, ZERO_MEM_BUFFERS, small, 2 * MiB);
    }
    dev->capacity = cap;
    expect_no_error(dev, "the real OOM");
    REPORT_LINE("GPU memory exhausted: ZERO_ERR_OOM, no CUDA error left, later allocation and "
                "kernel work succeed");
}

/* ---- copies ------------------------------------------------------------------------------- */

static void test_copies(zr_device *dev)
{
    const size_t bytes = 1000003; /* odd, not a multiple of any vector width */
    unsigned char *src = host_alloc(bytes), *back = host_alloc(bytes);
    fill_random(src, bytes);
    unsigned char *d1 = NULL, *d2 = NULL;
    CHECK(zr_device_alloc(dev, ZERO_MEM_BUFFERS, bytes + 8, "copy a", (void **)&d1, &g_oom) == ZERO_OK &&
              zr_device_alloc(dev, ZERO_MEM_BUFFERS, bytes + 8, "copy b", (void **)&d2, &g_oom) ==
                  ZERO_OK,
          "allocations for the copy test");
    if (!d1 || !d2)
        return;
    /* host -> device (offset 3) -> device (offset 5) -> host */
    zr_dev_copy(dev, d1 + 3, src, bytes);
    zr_dev_copy(dev, d2 + 5, d1 + 3, bytes);
    memset(back, 0, bytes);
    zr_dev_copy(dev, back, d2 + 5, bytes);
    CHECK(memcmp(src, back, bytes) == 0, "H2D, D2D, D2H at odd offsets: data differs");
    expect_no_error(dev, "synchronous copies");
    REPORT_LINE("zr_dev_copy: host -> device -> device -> host, %zu bytes at odd offsets", bytes);

    /* Pinned host memory, asynchronous copies on the copy stream, ordered with the compute
     * stream by events: H2D and D2D (copy) -> add (compute) -> D2H (copy). */
    const size_t n = 262147; /* floats */
    float *pinned = host_alloc(n * sizeof(float));
    char err[256];
    zero_status s = zr_cuda_host_register(pinned, n * sizeof(float), err, sizeof err);
    CHECK(s == ZERO_OK, "zr_cuda_host_register: %s", err);
    for (size_t i = 0; i < n; i++)
        pinned[i] = (float)(i % 1000);
    float *d = (float *)d1, *e = (float *)d2; /* bytes + 8 >= n * 4 */
    CHECK(zr_cuda_copy_async(dev, ZR_STREAM_COPY, d, pinned, n * sizeof(float)) == ZERO_OK &&
              zr_cuda_copy_async(dev, ZR_STREAM_COPY, e, d, n * sizeof(float)) == ZERO_OK,
          "H2D and D2D on the copy stream");
    CHECK(zr_cuda_order(dev, ZR_STREAM_COMPUTE, ZR_STREAM_COPY) == ZERO_OK, "order compute");
    zr_dev_add(dev, d, ZERO_DTYPE_FP32, e, ZERO_DTYPE_FP32, n); /* doubles every element */
    CHECK(zr_cuda_order(dev, ZR_STREAM_COPY, ZR_STREAM_COMPUTE) == ZERO_OK, "order copy");
    CHECK(zr_cuda_copy_async(dev, ZR_STREAM_COPY, pinned, d, n * sizeof(float)) == ZERO_OK,
          "D2H on the copy stream");
    CHECK(zr_cuda_stream_sync(dev, ZR_STREAM_COPY) == ZERO_OK, "sync the copy stream");
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += pinned[i] != (float)(2 * (i % 1000));
    CHECK(bad == 0, "pinned round trip through a kernel: %zu wrong elements", bad);
    zr_cuda_host_unregister(pinned);
    free(pinned);
    expect_no_error(dev, "asynchronous copies");
    REPORT_LINE("pinned host memory, copy stream and events: H2D -> add -> D2H in order");

    zr_device_free(dev, ZERO_MEM_BUFFERS, d1, bytes + 8);
    zr_device_free(dev, ZERO_MEM_BUFFERS, d2, bytes + 8);
    free(src), free(back);
}

/* ---- element-wise members against the host twins ---------------------------------------- */

static void test_ops(zr_device *dev)
{
    const size_t n = 300007;
    float *p = host_alloc(n * 4), *m = host_alloc(n * 4), *v = host_alloc(n * 4);
    uint16_t *g = host_alloc(n * 2), *w = host_alloc(n * 2);
    for (size_t i = 0; i < n; i++) {
        p[i] = (float)rnd_sym();
        m[i] = (float)rnd_sym() * 1e-3f;
        v[i] = (float)(rnd_sym() * rnd_sym()) * 1e-6f;
        g[i] = zk_f32_to_bf16((float)rnd_sym() * 1e-2f);
    }
    float *dp, *dm, *dv;
    uint16_t *dg, *dw;
    int ok = zr_device_alloc(dev, ZERO_MEM_OPTIMIZER, n * 4, "p", (void **)&dp, &g_oom) == ZERO_OK &&
             zr_device_alloc(dev, ZERO_MEM_OPTIMIZER, n * 4, "m", (void **)&dm, &g_oom) == ZERO_OK &&
             zr_device_alloc(dev, ZERO_MEM_OPTIMIZER, n * 4, "v", (void **)&dv, &g_oom) == ZERO_OK &&
             zr_device_alloc(dev, ZERO_MEM_GRADS, n * 2, "g", (void **)&dg, &g_oom) == ZERO_OK &&
             zr_device_alloc(dev, ZERO_MEM_PARAMS, n * 2, "w", (void **)&dw, &g_oom) == ZERO_OK;
    CHECK(ok, "allocations for the element-wise test");
    if (!ok)
        exit(1);
    zr_dev_copy(dev, dp, p, n * 4), zr_dev_copy(dev, dm, m, n * 4), zr_dev_copy(dev, dv, v, n * 4);
    zr_dev_copy(dev, dg, g, n * 2);

    /* squared norm (bitwise), with the nonfinite flag left alone for finite data */
    int hf = 0, df = 0;
    double hn = zk_sq_norm(g, ZERO_DTYPE_BF16, n, &hf);
    double dn = zr_dev_sq_norm(dev, dg, ZERO_DTYPE_BF16, n, &df);
    CHECK(memcmp(&hn, &dn, sizeof hn) == 0 && hf == 0 && df == 0,
          "sq_norm: device %.17g host %.17g", dn, hn);
    /* a larger n than before grows the scratch */
    double hn2 = zk_sq_norm(p, ZERO_DTYPE_FP32, n, &hf);
    double dn2 = zr_dev_sq_norm(dev, dp, ZERO_DTYPE_FP32, n, &df);
    CHECK(memcmp(&hn2, &dn2, sizeof hn2) == 0, "sq_norm fp32: device %.17g host %.17g", dn2,
          hn2);

    /* AdamW with a bf16 gradient and a bf16 working copy (bitwise) */
    zk_adamw_params hp = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                          .weight_decay = 0.01f, .bias_corr1 = 0.271f, .bias_corr2_sqrt = 0.0547f,
                          .grad_scale = 0.25f};
    zk_adamw(p, m, v, g, ZERO_DTYPE_BF16, w, ZERO_DTYPE_BF16, n, &hp);
    zr_dev_adamw(dev, dp, dm, dv, dg, ZERO_DTYPE_BF16, dw, ZERO_DTYPE_BF16, n, &hp);
    float *gp = host_alloc(n * 4), *gm = host_alloc(n * 4), *gv = host_alloc(n * 4);
    uint16_t *gw = host_alloc(n * 2);
    zr_dev_copy(dev, gp, dp, n * 4), zr_dev_copy(dev, gm, dm, n * 4);
    zr_dev_copy(dev, gv, dv, n * 4), zr_dev_copy(dev, gw, dw, n * 2);
    CHECK(memcmp(gp, p, n * 4) == 0 && memcmp(gm, m, n * 4) == 0 && memcmp(gv, v, n * 4) == 0 &&
              memcmp(gw, w, n * 2) == 0,
          "zr_dev_adamw differs from zk_adamw");

    /* zero */
    zr_dev_zero(dev, dw, n * 2);
    zr_dev_copy(dev, gw, dw, n * 2);
    CHECK(all_zero(gw, n * 2), "zr_dev_zero left non-zero bytes");
    expect_no_error(dev, "the element-wise members");

    /* A failing member (invalid dtype) is kept for zr_cuda_take_error, then cleared; the device
     * still works. */
    zr_dev_add(dev, dw, (zero_dtype)7, dg, ZERO_DTYPE_BF16, n);
    char msg[256];
    CHECK(zr_cuda_take_error(dev, msg, sizeof msg) == ZERO_ERR_SYSTEM && msg[0],
          "an invalid dtype was not reported");
    CHECK(zr_cuda_take_error(dev, msg, sizeof msg) == ZERO_OK, "the error was not cleared");
    zr_dev_zero(dev, dp, n * 4);
    expect_no_error(dev, "work after a reported error");
    REPORT_LINE("zero/add/sq_norm/adamw members bitwise vs host twins; errors kept and cleared");

    zr_device_free(dev, ZERO_MEM_OPTIMIZER, dp, n * 4);
    zr_device_free(dev, ZERO_MEM_OPTIMIZER, dm, n * 4);
    zr_device_free(dev, ZERO_MEM_OPTIMIZER, dv, n * 4);
    zr_device_free(dev, ZERO_MEM_GRADS, dg, n * 2);
    zr_device_free(dev, ZERO_MEM_PARAMS, dw, n * 2);
    free(p), free(m), free(v), free(g), free(w), free(gp), free(gm), free(gv), free(gw);
}

/* ---- a compute stream passed in ------------------------------------------------------------ */

static void test_given_stream(void)
{
    cudaStream_t mine;
    GT_CUDA(cudaStreamCreate(&mine));
    zr_device dev;
    char err[256];
    int count = 0;
    GT_CUDA(cudaGetDeviceCount(&count));
    /* local_rank past the device count wraps around */
    zero_status s = zr_device_cuda_init(&dev, count, 0, mine, err, sizeof err);
    CHECK(s == ZERO_OK, "init with a given stream: %s", err);
    if (s != ZERO_OK)
        return;
    CHECK(zr_cuda_device_ordinal(&dev) == 0, "local_rank %d should map to device 0", count);
    CHECK(zr_cuda_stream_get(&dev, ZR_STREAM_COMPUTE) == mine, "the given stream is not used");
    void *p = NULL;
    CHECK(zr_device_alloc(&dev, ZERO_MEM_BUFFERS, 4096, "x", &p, &g_oom) == ZERO_OK, "alloc");
    zr_device_free(&dev, ZERO_MEM_BUFFERS, p, 4096);
    zr_device_cuda_destroy(&dev);
    CHECK(cudaStreamQuery(mine) == cudaSuccess, "destroy broke the caller's stream");
    CHECK(!zr_device_is_cuda(&dev), "destroy left the device set up");
    cudaStreamDestroy(mine);
    REPORT_LINE("a compute stream passed in is used and survives destroy; local_rank wraps");
}

int main(void)
{
    char why[256];
    if (!zr_cuda_usable(why, sizeof why)) {
        printf("SKIP: no usable GPU: %s\n", why);
        return GT_SKIP;
    }
    rnd_seed(777);
    zr_device dev;
    char err[256];
    zero_status s = zr_device_cuda_init(&dev, 0, 64 * MiB, NULL, err, sizeof err);
    CHECK(s == ZERO_OK, "zr_device_cuda_init: %s", err);
    if (s != ZERO_OK)
        return 1;
    CHECK(zr_device_is_cuda(&dev) && strcmp(dev.ops->name, "cuda") == 0, "not the cuda backend");
    cudaStream_t st[ZR_STREAM_NUM];
    for (int i = 0; i < ZR_STREAM_NUM; i++)
        st[i] = zr_cuda_stream_get(&dev, (zr_stream_id)i);
    CHECK(st[0] && st[1] && st[2] && st[0] != st[1] && st[1] != st[2] && st[0] != st[2],
          "three distinct streams expected");
    REPORT_LINE("init: cuda backend on device %d, three streams", zr_cuda_device_ordinal(&dev));

    test_oom(&dev);
    dev.capacity = 0; /* the rest needs no cap */
    test_copies(&dev);
    test_ops(&dev);
    zr_device_cuda_destroy(&dev);
    test_given_stream();
    printf("%s: %d failed checks\n", check_failures ? "FAILED" : "passed", check_failures);
    return check_failures ? 1 : 0;
}
