/* test_config — the ZERO_* table (runtime/config.c) and logging (util/log.c), with a fake
 * environment: nothing here reads the real one. Exits non-zero and names every failed check. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/config.h"
#include "util/log.h"

/* Failures print "file:line: FAILED: cond: message", every one of them. */
#define CHECK_STYLE CHECK_STYLE_FAILED
#include "tests/common/check.h"

#ifndef ZERO_TEST_TMPDIR
#define ZERO_TEST_TMPDIR "."
#endif

/* ---- the fake environment --------------------------------------------------------------- */

#define MAX_FAKE 64
static const char *fake_name[MAX_FAKE];
static const char *fake_value[MAX_FAKE];
static int num_fake;

static void env_clear(void) { num_fake = 0; }

static void env_set(const char *name, const char *value) {
    for (int i = 0; i < num_fake; i++) {
        if (strcmp(fake_name[i], name) == 0) {
            fake_value[i] = value;
            return;
        }
    }
    if (num_fake < MAX_FAKE) {
        fake_name[num_fake] = name;
        fake_value[num_fake] = value;
        num_fake++;
    }
}

static const char *fake_get(const char *name) {
    for (int i = 0; i < num_fake; i++)
        if (strcmp(fake_name[i], name) == 0) return fake_value[i];
    return NULL;
}

/* Resolves with the fake environment; err gets the message. */
static zero_status resolve(zr_settings *s, const zero_config *program, char *const *names,
                           zr_resolve_result *r, char *err, size_t errlen) {
    zr_error e = {0};
    zero_status st = zr_config_resolve(s, program, fake_get, names, r, &e);
    if (err && errlen)
        snprintf(err, errlen, "%s", e.msg);
    return st;
}

static const char *allowed_of(const char *name) {
    const char *n, *allowed;
    for (int i = 0; zr_config_var(i, &n, NULL, &allowed) == 0; i++)
        if (strcmp(n, name) == 0) return allowed;
    return NULL;
}

/* Every zero_config field but report_path and cuda_stream (program-only pointers). */
static int same_config(const zero_config *a, const zero_config *b) {
    return a->stage == b->stage && a->dtype == b->dtype && a->bucket_bytes == b->bucket_bytes &&
           a->grad_accum == b->grad_accum && a->clip == b->clip &&
           a->loss_scale == b->loss_scale && a->device == b->device &&
           a->device_memory == b->device_memory &&
           a->offload_optimizer == b->offload_optimizer &&
           a->offload_param == b->offload_param && a->prefetch_bytes == b->prefetch_bytes &&
           a->max_live_bytes == b->max_live_bytes && a->persist_bytes == b->persist_bytes &&
           a->cpu_threads == b->cpu_threads && a->numa == b->numa && a->lr == b->lr && a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps &&
           a->weight_decay == b->weight_decay && a->timeout_s == b->timeout_s &&
           a->offload_block_bytes == b->offload_block_bytes;
}

static void expect_defaults(const zr_settings *s, const char *what) {
    const zero_config init = ZERO_CONFIG_INIT;
    CHECK(same_config(&s->cfg, &init), "%s: config differs from ZERO_CONFIG_INIT", what);
    CHECK(s->cfg.report_path == NULL, "%s: report_path should be NULL", what);
    CHECK(s->log_level == ZR_LOG_WARN, "%s: log_level %d", what, s->log_level);
    CHECK(s->log_mask == ZR_SUB_ALL, "%s: log_mask %#x", what, s->log_mask);
    CHECK(s->log_file[0] == '\0', "%s: log_file '%s'", what, s->log_file);
    CHECK(s->report_path[0] == '\0', "%s: report_path '%s'", what, s->report_path);
    CHECK(s->data_prefetch == 2, "%s: data_prefetch %d", what, s->data_prefetch);
    CHECK(s->data_verify == ZR_DATA_VERIFY_AUTO, "%s: data_verify %d", what, s->data_verify);
    CHECK(s->data_io == ZR_DATA_IO_MMAP, "%s: data_io %d", what, s->data_io);
    CHECK(s->ckpt_io == ZR_DATA_IO_MMAP, "%s: ckpt_io %d", what, s->ckpt_io);
    CHECK(s->data_delay_ms == 0.0f, "%s: data_delay_ms %g", what, (double)s->data_delay_ms);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_defaults(void) {
    zr_settings s;
    zr_resolve_result r;
    char err[512];
    env_clear();
    zero_status st = resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(st == ZERO_OK, "no environment: %s", err);
    expect_defaults(&s, "no environment");
    CHECK(r.num_applied == 0, "applied %d", r.num_applied);
    CHECK(r.num_warnings == 0, "warnings %d", r.num_warnings);

    const zero_config init = ZERO_CONFIG_INIT;
    st = resolve(&s, &init, NULL, NULL, NULL, 0);
    CHECK(st == ZERO_OK, "ZERO_CONFIG_INIT program, NULL result and err");
    expect_defaults(&s, "ZERO_CONFIG_INIT program");

    /* Empty and blank values count as unset. */
    env_set("ZERO_STAGE", "");
    env_set("ZERO_DTYPE", "   ");
    st = resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(st == ZERO_OK, "empty values: %s", err);
    expect_defaults(&s, "empty values");
    CHECK(r.num_applied == 0, "empty values applied %d", r.num_applied);
}

/* The default text of every table row must resolve to ZERO_CONFIG_INIT. */
static void test_table_defaults(void) {
    zr_settings s;
    zr_resolve_result r;
    char err[512];
    const char *name, *def, *allowed;
    int n = 0, set = 0;
    env_clear();
    for (; zr_config_var(n, &name, &def, &allowed) == 0; n++) {
        CHECK(strncmp(name, "ZERO_", 5) == 0, "name %s", name);
        CHECK(allowed && allowed[0], "%s has no allowed text", name);
        if (def[0]) {
            env_set(name, def);
            set++;
        }
    }
    CHECK(n == 34, "table has %d variables", n);
    zero_status st = resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(st == ZERO_OK, "defaults as text: %s", err);
    expect_defaults(&s, "defaults as text");
    CHECK(r.num_applied == set, "applied %d of %d", r.num_applied, set);
}

static void test_overrides(void) {
    zr_settings s;
    zr_resolve_result r;
    char err[512];
    env_clear();
    env_set("ZERO_STAGE", "3");
    env_set("ZERO_DTYPE", "BF16");
    env_set("ZERO_BUCKET_MB", "512K");
    env_set("ZERO_GRAD_ACCUM", "8");
    env_set("ZERO_CLIP", "1.0");
    env_set("ZERO_LOSS_SCALE", "1024");
    env_set("ZERO_DEVICE", "host");
    env_set("ZERO_DEVICE_MEMORY", "2G");
    env_set("ZERO_OFFLOAD_OPTIMIZER", "cpu");
    env_set("ZERO_OFFLOAD_PARAM", "CPU");
    env_set("ZERO_PREFETCH_MB", "16");
    env_set("ZERO_MAX_LIVE_MB", "2GiB");
    env_set("ZERO_PERSIST_KB", "128");
    env_set("ZERO_CPU_THREADS", "6");
    env_set("ZERO_NUMA", "OFF");
    env_set("ZERO_LR", "3e-4");
    env_set("ZERO_BETA1", "0.8");
    env_set("ZERO_BETA2", "0.95");
    env_set("ZERO_EPS", "1e-6");
    env_set("ZERO_WEIGHT_DECAY", " 0.1 ");
    env_set("ZERO_TIMEOUT_S", "45.5");
    env_set("ZERO_OFFLOAD_BLOCK_MB", "64K");
    env_set("ZERO_DEBUG", "info");
    env_set("ZERO_DEBUG_SUBSYS", "^COMM");
    env_set("ZERO_DEBUG_FILE", "/tmp/zero.%h.%p.log");
    env_set("ZERO_REPORT", "out.json");
    env_set("ZERO_CKPT_IO", "PREAD");
    zero_status st = resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(st == ZERO_OK, "overrides: %s", err);
    CHECK(s.ckpt_io == ZR_DATA_IO_PREAD, "ckpt_io %d", s.ckpt_io);
    const zero_config *c = &s.cfg;
    CHECK(c->stage == 3, "stage %d", c->stage);
    CHECK(c->dtype == ZERO_DTYPE_BF16, "dtype %d", (int)c->dtype);
    CHECK(c->bucket_bytes == 512u << 10, "bucket_bytes %zu", c->bucket_bytes);
    CHECK(c->grad_accum == 8, "grad_accum %d", c->grad_accum);
    CHECK(c->clip == 1.0f, "clip %g", (double)c->clip);
    CHECK(c->loss_scale == 1024.0f, "loss_scale %g", (double)c->loss_scale);
    CHECK(c->device == ZERO_DEVICE_HOST, "device %d", (int)c->device);
    CHECK(c->device_memory == (size_t)2 << 30, "device_memory %zu", c->device_memory);
    CHECK(c->offload_optimizer == ZERO_OFFLOAD_CPU, "offload_optimizer");
    CHECK(c->offload_param == ZERO_OFFLOAD_CPU, "offload_param");
    CHECK(c->prefetch_bytes == (size_t)16 << 20, "prefetch_bytes %zu", c->prefetch_bytes);
    CHECK(c->max_live_bytes == (size_t)2 << 30, "max_live_bytes %zu", c->max_live_bytes);
    CHECK(c->persist_bytes == (size_t)128 << 10, "persist_bytes %zu", c->persist_bytes);
    CHECK(c->cpu_threads == 6, "cpu_threads %d", c->cpu_threads);
    CHECK(c->numa == ZERO_NUMA_OFF, "numa %d", c->numa);
    CHECK(c->lr == 3e-4, "lr %g", (double)c->lr);
    CHECK(c->beta1 == 0.8, "beta1 %g", (double)c->beta1);
    CHECK(c->beta2 == 0.95, "beta2 %g", (double)c->beta2);
    CHECK(c->eps == 1e-6, "eps %g", (double)c->eps);
    CHECK(c->weight_decay == 0.1, "weight_decay %g", (double)c->weight_decay);
    CHECK(c->timeout_s == 45.5f, "timeout_s %g", (double)c->timeout_s);
    CHECK(c->offload_block_bytes == (size_t)64 << 10, "offload_block_bytes %zu",
          c->offload_block_bytes);
    CHECK(s.log_level == ZR_LOG_INFO, "log_level %d", s.log_level);
    CHECK(s.log_mask == (ZR_SUB_ALL & ~(unsigned)ZR_SUB_COMM), "log_mask %#x", s.log_mask);
    CHECK(strcmp(s.log_file, "/tmp/zero.%h.%p.log") == 0, "log_file '%s'", s.log_file);
    CHECK(strcmp(s.report_path, "out.json") == 0, "report_path '%s'", s.report_path);
    CHECK(c->report_path == s.report_path, "cfg.report_path should point at report_path");
    CHECK(r.num_applied == 27, "applied %d", r.num_applied);
    int found = 0;
    for (int i = 0; i < r.num_applied; i++)
        found |= strcmp(r.applied[i].name, "ZERO_WEIGHT_DECAY") == 0 &&
                 strcmp(r.applied[i].value, "0.1") == 0;
    CHECK(found, "applied should hold ZERO_WEIGHT_DECAY=0.1 (trimmed)");

    /* Each variable on its own, and a few more spellings. */
    struct {
        const char *name, *value;
    } one[] = {{"ZERO_LOSS_SCALE", "Dynamic"}, {"ZERO_BUCKET_MB", "25"}, {"ZERO_DEVICE", "cuda"},
               {"ZERO_DEBUG", "TRACE"},        {"ZERO_DEBUG", "none"},   {"ZERO_CLIP", "0"}};
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
        env_clear();
        env_set(one[i].name, one[i].value);
        st = resolve(&s, NULL, NULL, &r, err, sizeof err);
        CHECK(st == ZERO_OK && r.num_applied == 1, "%s=%s: %s", one[i].name, one[i].value, err);
    }
    env_clear();
    env_set("ZERO_BUCKET_MB", "25");
    resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(s.cfg.bucket_bytes == (size_t)25 << 20, "ZERO_BUCKET_MB=25 -> %zu", s.cfg.bucket_bytes);
    /* "auto" (any case) where the table allows it, back from a number; not elsewhere */
    {
        zero_config prog = ZERO_CONFIG_INIT;
        prog.bucket_bytes = (size_t)8 << 20;
        env_set("ZERO_BUCKET_MB", "AUTO");
        env_set("ZERO_PREFETCH_MB", "auto");
        st = resolve(&s, &prog, NULL, &r, err, sizeof err);
        CHECK(st == ZERO_OK && s.cfg.bucket_bytes == ZERO_SIZE_AUTO &&
                  s.cfg.prefetch_bytes == ZERO_SIZE_AUTO,
              "ZERO_BUCKET_MB=AUTO -> %zu, ZERO_PREFETCH_MB=auto -> %zu: %s", s.cfg.bucket_bytes,
              s.cfg.prefetch_bytes, err);
        env_set("ZERO_PERSIST_KB", "auto");
        st = resolve(&s, NULL, NULL, &r, err, sizeof err);
        CHECK(st == ZERO_ERR_INVALID && strstr(err, "ZERO_PERSIST_KB=auto"),
              "ZERO_PERSIST_KB=auto is not allowed: %d %s", st, err);
        env_clear();
        env_set("ZERO_BUCKET_MB", "25");
    }
    env_set("ZERO_DEBUG", "TRACE");
    env_set("ZERO_DEBUG_SUBSYS", "init, part");
    resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(s.log_level == ZR_LOG_TRACE, "TRACE -> %d", s.log_level);
    CHECK(s.log_mask == (ZR_SUB_INIT | ZR_SUB_PART), "init, part -> %#x", s.log_mask);
    env_set("ZERO_DEBUG_SUBSYS", "^ALL");
    resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(s.log_mask == 0, "^ALL -> %#x", s.log_mask);
    env_set("ZERO_DEBUG_SUBSYS", "ALL");
    resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(s.log_mask == ZR_SUB_ALL, "ALL -> %#x", s.log_mask);
    env_set("ZERO_DEBUG_SUBSYS", "^COMM,ALLOC");
    resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(s.log_mask == (ZR_SUB_ALL & ~(unsigned)(ZR_SUB_COMM | ZR_SUB_ALLOC)),
          "^COMM,ALLOC -> %#x", s.log_mask);

    /* ZERO_NUMA: a word (any case) or a node index; ZERO_CPU_THREADS: 0 means "one per core". */
    struct {
        const char *value;
        int numa;
    } numa[] = {{"auto", ZERO_NUMA_AUTO}, {"Auto", ZERO_NUMA_AUTO}, {"off", ZERO_NUMA_OFF},
                {"0", 0},                 {" 3 ", 3},               {"4095", 4095}};
    for (size_t i = 0; i < sizeof numa / sizeof numa[0]; i++) {
        env_clear();
        env_set("ZERO_NUMA", numa[i].value);
        st = resolve(&s, NULL, NULL, &r, err, sizeof err);
        CHECK(st == ZERO_OK && s.cfg.numa == numa[i].numa && r.num_applied == 1,
              "ZERO_NUMA=%s -> %d, expected %d: %s", numa[i].value, s.cfg.numa, numa[i].numa,
              err);
    }
    env_clear();
    env_set("ZERO_CPU_THREADS", "0");
    st = resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(st == ZERO_OK && s.cfg.cpu_threads == 0 && r.num_applied == 1, "ZERO_CPU_THREADS=0");
    env_set("ZERO_CPU_THREADS", "4096");
    st = resolve(&s, NULL, NULL, &r, err, sizeof err);
    CHECK(st == ZERO_OK && s.cfg.cpu_threads == 4096, "ZERO_CPU_THREADS=4096: %s", err);
}

static void test_program(void) {
    zr_settings s;
    char err[512];
    zero_config p = ZERO_CONFIG_INIT;
    p.stage = 1;
    p.lr = 0.5f;
    p.report_path = "prog.json";
    p.cpu_threads = 3;
    p.numa = 1;
    env_clear();
    zero_status st = resolve(&s, &p, NULL, NULL, err, sizeof err);
    CHECK(st == ZERO_OK, "program: %s", err);
    CHECK(s.cfg.stage == 1 && s.cfg.lr == 0.5f, "program values kept");
    CHECK(s.cfg.cpu_threads == 3 && s.cfg.numa == 1, "program placement kept");
    CHECK(strcmp(s.report_path, "prog.json") == 0, "program report_path -> '%s'", s.report_path);
    CHECK(s.cfg.report_path == s.report_path, "cfg.report_path re-pointed");

    env_set("ZERO_STAGE", "3");
    env_set("ZERO_REPORT", "env.json");
    st = resolve(&s, &p, NULL, NULL, err, sizeof err);
    CHECK(st == ZERO_OK, "program + env: %s", err);
    CHECK(s.cfg.stage == 3, "environment wins: stage %d", s.cfg.stage);
    CHECK(s.cfg.lr == 0.5f, "unset variable keeps program lr");
    CHECK(strcmp(s.report_path, "env.json") == 0, "ZERO_REPORT wins: '%s'", s.report_path);
    env_set("ZERO_NUMA", "auto");
    env_set("ZERO_CPU_THREADS", "2");
    st = resolve(&s, &p, NULL, NULL, err, sizeof err);
    CHECK(st == ZERO_OK && s.cfg.numa == ZERO_NUMA_AUTO && s.cfg.cpu_threads == 2,
          "environment wins over program placement: numa %d cpu_threads %d", s.cfg.numa,
          s.cfg.cpu_threads);
    p.numa = ZERO_NUMA_OFF;
    env_clear();
    st = resolve(&s, &p, NULL, NULL, err, sizeof err);
    CHECK(st == ZERO_OK && s.cfg.numa == ZERO_NUMA_OFF, "program ZERO_NUMA_OFF: %s", err);

    /* Program fields are checked and named. */
    struct {
        const char *field, *value;
    } bad[] = {
        {"zero_config.stage=7", "0..3"},
        {"zero_config.dtype=9", "fp32"},
        {"zero_config.bucket_bytes=100", "4K"},
        {"zero_config.grad_accum=0", "1000000"},
        {"zero_config.lr=-1", "> 0"},
        {"zero_config.beta2=1", "[0, 1)"},
        {"zero_config.loss_scale=-1", "dynamic"},
        {"zero_config.device=5", "auto"},
        {"zero_config.clip=nan", ">= 0"},
        {"zero_config.cpu_threads=-1", "0 to 4096"},
        {"zero_config.numa=-3", "auto, off or a NUMA node"},
        {"zero_config.numa=4096", "0 to 4095"},
    };
    env_clear();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        zero_config q = ZERO_CONFIG_INIT;
        switch (i) {
        case 0: q.stage = 7; break;
        case 1: q.dtype = (zero_dtype)9; break;
        case 2: q.bucket_bytes = 100; break;
        case 3: q.grad_accum = 0; break;
        case 4: q.lr = -1.0f; break;
        case 5: q.beta2 = 1.0f; break;
        case 6: q.loss_scale = -1.0f; break;
        case 7: q.device = (zero_device_kind)5; break;
        case 8: q.clip = NAN; break;
        case 9: q.cpu_threads = -1; break;
        case 10: q.numa = -3; break;
        case 11: q.numa = 4096; break;
        }
        st = resolve(&s, &q, NULL, NULL, err, sizeof err);
        CHECK(st == ZERO_ERR_INVALID, "%s accepted", bad[i].field);
        CHECK(strstr(err, bad[i].field) != NULL, "message '%s' should name '%s'", err,
              bad[i].field);
        CHECK(strstr(err, bad[i].value) != NULL || (i == 0 && strstr(err, "0 1 2 3")),
              "message '%s' should say what is allowed ('%s')", err, bad[i].value);
    }

    char long_path[600];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    zero_config q = ZERO_CONFIG_INIT;
    q.report_path = long_path;
    st = resolve(&s, &q, NULL, NULL, err, sizeof err);
    CHECK(st == ZERO_ERR_INVALID && strstr(err, "zero_config.report_path"), "long path: %s", err);
    env_set("ZERO_DEBUG_FILE", long_path);
    st = resolve(&s, NULL, NULL, NULL, err, sizeof err);
    CHECK(st == ZERO_ERR_INVALID && strstr(err, "ZERO_DEBUG_FILE"), "long env path: %s", err);
}

static void test_errors(void) {
    struct {
        const char *name, *value;
    } bad[] = {
        {"ZERO_STAGE", "7"},          {"ZERO_BUCKET_MB", "abc"},    {"ZERO_DEVICE_MEMORY", "-1"},
        {"ZERO_DTYPE", "fp8"},        {"ZERO_LOSS_SCALE", "-2"},    {"ZERO_GRAD_ACCUM", "0"},
        {"ZERO_STAGE", "2x"},         {"ZERO_STAGE", "99999999999999999999"},
        {"ZERO_GRAD_ACCUM", "1000001"}, {"ZERO_BUCKET_MB", "1K"},   {"ZERO_BUCKET_MB", "65G"},
        {"ZERO_CLIP", "-0.5"},        {"ZERO_CLIP", "nan"},         {"ZERO_LR", "0"},
        {"ZERO_LR", "1e-400"},        {"ZERO_LR", "1e39"},          {"ZERO_BETA1", "1"},
        {"ZERO_BETA2", "-0.1"},       {"ZERO_EPS", "inf"},          {"ZERO_WEIGHT_DECAY", "x"},
        {"ZERO_LOSS_SCALE", "0"},     {"ZERO_LOSS_SCALE", "inf"},   {"ZERO_DEVICE", "gpu"},
        {"ZERO_OFFLOAD_OPTIMIZER", "nvme"}, {"ZERO_DEBUG", "LOUD"},
        {"ZERO_DEBUG_SUBSYS", "INIT,FOO"},  {"ZERO_PERSIST_KB", "12Q"},
        {"ZERO_CPU_THREADS", "-1"},   {"ZERO_CPU_THREADS", "4097"}, {"ZERO_CPU_THREADS", "auto"},
        {"ZERO_NUMA", "-1"},          {"ZERO_NUMA", "-2"},          {"ZERO_NUMA", "4096"},
        {"ZERO_NUMA", "on"},          {"ZERO_NUMA", "1.5"},         {"ZERO_NUMA", "2x"},
        {"ZERO_NUMA", "99999999999999999999"}, {"ZERO_TIMEOUT_S", "-1"},
        {"ZERO_TIMEOUT_S", "soon"},   {"ZERO_OFFLOAD_BLOCK_MB", "1K"},
        {"ZERO_OFFLOAD_BLOCK_MB", "2G"},
        /* not 0 but 0 as a float, where 0 means off or dynamic (or is not allowed) */
        {"ZERO_CLIP", "1e-50"},       {"ZERO_TIMEOUT_S", "1e-50"},  {"ZERO_LOSS_SCALE", "1e-50"},
        {"ZERO_WEIGHT_DECAY", "1e-400"}, {"ZERO_CLIP", "-1e-50"},   {"ZERO_EPS", "1e-320"},
        {"ZERO_OPTIMIZER", "sgd"},
    };
    zr_settings s;
    char err[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        env_clear();
        env_set(bad[i].name, bad[i].value);
        zero_status st = resolve(&s, NULL, NULL, NULL, err, sizeof err);
        char nv[128];
        snprintf(nv, sizeof nv, "%s=%s", bad[i].name, bad[i].value);
        const char *allowed = allowed_of(bad[i].name);
        CHECK(st == ZERO_ERR_INVALID, "%s accepted (status %d)", nv, (int)st);
        CHECK(strstr(err, nv) != NULL, "message '%s' should contain '%s'", err, nv);
        CHECK(allowed && strstr(err, allowed) != NULL, "message '%s' should contain '%s'", err,
              allowed ? allowed : "?");
    }

    /* The messages the docs promise, word for word. */
    env_clear();
    env_set("ZERO_STAGE", "7");
    resolve(&s, NULL, NULL, NULL, err, sizeof err);
    CHECK(strcmp(err, "ZERO_STAGE=7 is not allowed: expected one of 0 1 2 3") == 0, "'%s'", err);
    env_clear();
    env_set("ZERO_BUCKET_MB", "abc");
    resolve(&s, NULL, NULL, NULL, err, sizeof err);
    CHECK(strstr(err, "ZERO_BUCKET_MB=abc is not a size: expected a number with an optional "
                      "K/M/G/T suffix (e.g. 25, 512K, 64M, 2GiB)") == err,
          "'%s'", err);
    env_clear();
    env_set("ZERO_DEVICE_MEMORY", "-1");
    resolve(&s, NULL, NULL, NULL, err, sizeof err);
    CHECK(strstr(err, "ZERO_DEVICE_MEMORY=-1 is not a size: ") == err, "'%s'", err);
    env_clear();
    env_set("ZERO_NUMA", "on");
    resolve(&s, NULL, NULL, NULL, err, sizeof err);
    CHECK(strcmp(err, "ZERO_NUMA=on is not allowed: expected auto, off or a NUMA node index "
                      "from 0 to 4095") == 0,
          "'%s'", err);

    /* A small err buffer is cut, not overrun. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    resolve(&s, NULL, NULL, NULL, tiny, sizeof tiny);
    CHECK(tiny[7] == '\0', "tiny err buffer not terminated");

    /* Values that round to 0 say so; the smallest floats, and 0 itself, are still taken. */
    env_clear();
    env_set("ZERO_CLIP", "1e-50");
    resolve(&s, NULL, NULL, NULL, err, sizeof err);
    CHECK(strstr(err, "ZERO_CLIP=1e-50 is not allowed: it is not 0 but rounds to 0 as a 32-bit "
                      "float") == err,
          "'%s'", err);
    struct {
        const char *name, *value;
        size_t offset;
        float want;
    } tiny_ok[] = {
        {"ZERO_CLIP", "1e-45", offsetof(zr_settings, cfg.clip), 1e-45f},
        {"ZERO_TIMEOUT_S", "2e-40", offsetof(zr_settings, cfg.timeout_s), 2e-40f},
        {"ZERO_TIMEOUT_S", "0", offsetof(zr_settings, cfg.timeout_s), 0.0f},
        {"ZERO_CLIP", "0.0e-50", offsetof(zr_settings, cfg.clip), 0.0f},
        {"ZERO_LOSS_SCALE", "1e-45", offsetof(zr_settings, cfg.loss_scale), 1e-45f},
    };
    for (size_t i = 0; i < sizeof tiny_ok / sizeof tiny_ok[0]; i++) {
        env_clear();
        env_set(tiny_ok[i].name, tiny_ok[i].value);
        zero_status st = resolve(&s, NULL, NULL, NULL, err, sizeof err);
        float got;
        memcpy(&got, (const char *)&s + tiny_ok[i].offset, sizeof got);
        CHECK(st == ZERO_OK && got == tiny_ok[i].want, "%s=%s: status %d, value %g (%s)",
              tiny_ok[i].name, tiny_ok[i].value, (int)st, (double)got, err);
    }
}

static void test_unknown(void) {
    char *names[] = {"PATH=/bin",           "ZERO_STAGEE=1",  "ZERO_STAGE=2",
                     "ZERO_FOOBARBAZQUX=1", "ZERO_BUCKET=8",  "ZERO_debug=INFO",
                     "ZERO_DEBUG_LEVEL=3",  "ZEROX_STAGE=1", NULL};
    zr_settings s;
    zr_resolve_result r;
    char err[512];
    env_clear();
    zero_status st = resolve(&s, NULL, names, &r, err, sizeof err);
    CHECK(st == ZERO_OK, "unknown names are not errors: %s", err);
    CHECK(r.num_warnings == 5, "warnings %d", r.num_warnings);
    const char *expect[] = {
        "unknown variable ZERO_STAGEE=1; did you mean ZERO_STAGE?",
        "unknown variable ZERO_FOOBARBAZQUX=1; no similar",
        "unknown variable ZERO_BUCKET=8; did you mean ZERO_BUCKET_MB?",
        "unknown variable ZERO_debug=INFO; did you mean ZERO_DEBUG?",
        "unknown variable ZERO_DEBUG_LEVEL=3; did you mean ZERO_DEBUG?",
    };
    for (int i = 0; i < 5 && i < r.num_warnings; i++)
        CHECK(strstr(r.warnings[i], expect[i]) == r.warnings[i], "warning '%s', expected '%s'",
              r.warnings[i], expect[i]);
}

static void test_sizes(void) {
    struct {
        const char *text;
        uint64_t unit;
        int ok;
        uint64_t bytes;
    } cases[] = {
        {"512K", 1, 0, 512ull << 10},
        {"64M", 1, 0, 64ull << 20},
        {"2G", 1, 0, 2ull << 30},
        {"2GiB", 1, 0, 2ull << 30},
        {"2gb", 1, 0, 2ull << 30},
        {"2 GiB", 1, 0, 2ull << 30},
        {"1.5G", 1, 0, 3ull << 29},
        {"0.5K", 1, 0, 512},
        {".5M", 1, 0, 512ull << 10},
        {"3T", 1, 0, 3ull << 40},
        {"25", 1ull << 20, 0, 25ull << 20},
        {"25", 1, 0, 25},
        {"4096B", 1ull << 20, 0, 4096},
        {"0", 1ull << 20, 0, 0},
        {"16383P", 1, -1, 0},
        {"", 1, -1, 0},
        {"   ", 1, -1, 0},
        {"-1", 1, -1, 0},
        {"+1", 1, -1, 0},
        {"12Q", 1, -1, 0},
        {"1e99", 1, -1, 0},
        {"1.", 1, -1, 0},
        {".", 1, -1, 0},
        {"1.5.2G", 1, -1, 0},
        {"2GiBx", 1, -1, 0},
        {"2iB", 1, -1, 0},
        {"18446744073709551615", 1, 0, UINT64_MAX},
        {"18446744073709551616", 1, -1, 0},
        {"16777216T", 1, -1, 0},
        {"16777215.99999T", 1, 0, 0 /* not checked */},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t b = 12345;
        int rc = zr_parse_size(cases[i].text, cases[i].unit, &b);
        CHECK(rc == cases[i].ok, "zr_parse_size(\"%s\") returned %d", cases[i].text, rc);
        if (rc == 0 && cases[i].ok == 0 && cases[i].bytes)
            CHECK(b == cases[i].bytes, "zr_parse_size(\"%s\") = %llu, expected %llu",
                  cases[i].text, (unsigned long long)b, (unsigned long long)cases[i].bytes);
    }
    uint64_t b;
    CHECK(zr_parse_size(NULL, 1, &b) == -1, "NULL text");
    CHECK(zr_parse_size("1", 0, &b) == -1, "unit 0");
}

static void test_fingerprint(void) {
    zr_settings a, b;
    int64_t wa[64], wb[64];
    const char *names[64];
    env_clear();
    resolve(&a, NULL, NULL, NULL, NULL, 0);
    int kinds[64];
    int na = zr_config_fingerprint(&a, wa, names, kinds, 64);
    CHECK(na == 19, "fingerprint has %d words", na);
    int has_stage = 0, has_lr = 0;
    for (int i = 0; i < na; i++) {
        has_stage |= strcmp(names[i], "ZERO_STAGE") == 0;
        has_lr |= strcmp(names[i], "ZERO_LR") == 0;
        CHECK(strcmp(names[i], "ZERO_REPORT") != 0 && strncmp(names[i], "ZERO_DEBUG", 10) != 0,
              "%s should not be in the fingerprint", names[i]);
        CHECK(strcmp(names[i], "ZERO_NUMA") != 0 && strcmp(names[i], "ZERO_CPU_THREADS") != 0,
              "%s is per rank and should not be in the fingerprint", names[i]);
    }
    CHECK(has_stage && has_lr, "fingerprint names ZERO_STAGE and ZERO_LR");

    /* Logging and the report path may differ between ranks. */
    env_set("ZERO_DEBUG", "INFO");
    env_set("ZERO_DEBUG_FILE", "log.%p");
    env_set("ZERO_REPORT", "r.json");
    /* So may placement: where work runs, not what it computes. */
    env_set("ZERO_NUMA", "1");
    env_set("ZERO_CPU_THREADS", "7");
    resolve(&b, NULL, NULL, NULL, NULL, 0);
    int nb = zr_config_fingerprint(&b, wb, NULL, NULL, 64);
    CHECK(nb == na && memcmp(wa, wb, sizeof(int64_t) * (size_t)na) == 0,
          "logging, report or placement settings changed the fingerprint");

    const char *vary[][2] = {{"ZERO_STAGE", "3"},     {"ZERO_LR", "0.0010001"},
                             {"ZERO_DTYPE", "bf16"},  {"ZERO_BUCKET_MB", "33"},
                             {"ZERO_DEVICE", "host"}, {"ZERO_LOSS_SCALE", "1"}};
    for (size_t i = 0; i < sizeof vary / sizeof vary[0]; i++) {
        env_clear();
        env_set(vary[i][0], vary[i][1]);
        resolve(&b, NULL, NULL, NULL, NULL, 0);
        nb = zr_config_fingerprint(&b, wb, NULL, NULL, 64);
        CHECK(nb == na && memcmp(wa, wb, sizeof(int64_t) * (size_t)na) != 0,
              "%s=%s did not change the fingerprint", vary[i][0], vary[i][1]);
    }
    CHECK(zr_config_fingerprint(&a, wa, NULL, NULL, 4) == 4, "max is respected");

    /* ---- the words as text: settings shown as they are written, not as raw bits ---------- */
    env_clear();
    env_set("ZERO_LR", "0.0003");
    env_set("ZERO_DTYPE", "bf16");
    env_set("ZERO_BUCKET_MB", "2");
    resolve(&b, NULL, NULL, NULL, NULL, 0);
    nb = zr_config_fingerprint(&b, wb, names, kinds, 64);
    struct {
        const char *name, *text;
    } shown[] = {{"ZERO_LR", "0.0003"},          {"ZERO_DTYPE", "bf16"},
                 {"ZERO_BUCKET_MB", "2097152 bytes"}, {"ZERO_STAGE", "2"},
                 {"ZERO_LOSS_SCALE", "dynamic"}, {"ZERO_CLIP", "0"},
                 {"ZERO_DEVICE", "auto"},        {"ZERO_BETA2", "0.999"},
                 {"ZERO_EPS", "1e-08"}};
    for (size_t k = 0; k < sizeof shown / sizeof shown[0]; k++) {
        int found = 0;
        for (int i = 0; i < nb; i++) {
            if (strcmp(names[i], shown[k].name) != 0) continue;
            char text[64];
            zr_config_word_text(kinds[i], wb[i], text, sizeof text);
            CHECK(strcmp(text, shown[k].text) == 0, "%s's word shown as '%s', expected '%s'",
                  shown[k].name, text, shown[k].text);
            const char *vn;
            CHECK(zr_config_var(kinds[i], &vn, NULL, NULL) == 0 && strcmp(vn, names[i]) == 0,
                  "kinds[%d] = %d is not the table index of %s", i, kinds[i], names[i]);
            found = 1;
        }
        CHECK(found, "%s not in the fingerprint", shown[k].name);
    }
    char text[64];
    zr_config_word_text(ZR_WORD_INT, -1234567890123ll, text, sizeof text);
    CHECK(strcmp(text, "-1234567890123") == 0, "a plain word shown as '%s'", text);
    zr_config_word_text(9999, 42, text, sizeof text);
    CHECK(strcmp(text, "42") == 0, "an unknown kind shown as '%s' (expected the integer)", text);
    char tiny[4];
    zr_config_word_text(kinds[0], wb[0], tiny, sizeof tiny);
    CHECK(memchr(tiny, 0, sizeof tiny) != NULL, "a small buffer is cut and terminated");
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_json(void) {
    zr_settings s;
    char path[512];
    snprintf(path, sizeof path, "%s/test_config.json", ZERO_TEST_TMPDIR);
    env_clear();
    env_set("ZERO_DTYPE", "bf16");
    env_set("ZERO_LR", "3e-4");
    env_set("ZERO_REPORT", "r.json");
    zero_status st = resolve(&s, NULL, NULL, NULL, NULL, 0);
    CHECK(st == ZERO_OK, "resolve for JSON");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    zr_config_write_json(&s, f);
    fclose(f);
    const char *j = read_file(path);
    CHECK(j != NULL, "cannot read %s", path);
    if (!j) return;
    size_t n = strlen(j);
    CHECK(n > 2 && j[0] == '{' && j[n - 1] == '}', "not one object without newline: %s", j);
    const char *want[] = {"\"stage\": 2",
                          "\"dtype\": \"bf16\"",
                          "\"bucket_bytes\": \"auto\"",
                          "\"grad_accum\": 1",
                          "\"clip\": 0",
                          "\"loss_scale\": \"dynamic\"",
                          "\"device\": \"auto\"",
                          "\"device_memory\": 0",
                          "\"offload_optimizer\": \"none\"",
                          "\"offload_param\": \"none\"",
                          "\"prefetch_bytes\": \"auto\"",
                          "\"max_live_bytes\": \"auto\"",
                          "\"persist_bytes\": 65536",
                          "\"cpu_threads\": 0,",
                          "\"numa\": \"auto\",",
                          "\"lr\": 0.0003,",
                          "\"beta1\": 0.9,",
                          "\"beta2\": 0.999,",
                          "\"eps\": 1e-08,",
                          "\"weight_decay\": 0,",
                          "\"timeout_s\": 600}"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(j, want[i]) != NULL, "JSON lacks %s: %s", want[i], j);
    CHECK(strstr(j, "r.json") == NULL && strstr(j, "log") == NULL, "JSON has extras: %s", j);

    env_set("ZERO_LOSS_SCALE", "128");
    resolve(&s, NULL, NULL, NULL, NULL, 0);
    f = fopen(path, "w");
    if (!f) return;
    zr_config_write_json(&s, f);
    fclose(f);
    j = read_file(path);
    CHECK(j && strstr(j, "\"loss_scale\": 128,"), "static loss scale: %s", j ? j : "");

    /* ZERO_NUMA is a word or a number in JSON. */
    const char *numa[][2] = {{"off", "\"numa\": \"off\","}, {"2", "\"numa\": 2,"}};
    for (int i = 0; i < 2; i++) {
        env_set("ZERO_NUMA", numa[i][0]);
        env_set("ZERO_CPU_THREADS", "12");
        resolve(&s, NULL, NULL, NULL, NULL, 0);
        f = fopen(path, "w");
        if (!f) return;
        zr_config_write_json(&s, f);
        fclose(f);
        j = read_file(path);
        CHECK(j && strstr(j, numa[i][1]) && strstr(j, "\"cpu_threads\": 12,"),
              "ZERO_NUMA=%s: %s", numa[i][0], j ? j : "");
    }
}

static void test_names_and_markdown(void) {
    CHECK(strcmp(zr_dtype_name(ZERO_DTYPE_BF16), "bf16") == 0, "bf16");
    CHECK(strcmp(zr_dtype_name(ZERO_DTYPE_FP16), "fp16") == 0, "fp16");
    CHECK(strcmp(zr_dtype_name(ZERO_DTYPE_FP32), "fp32") == 0, "fp32");
    CHECK(strcmp(zr_device_name(ZERO_DEVICE_HOST), "host") == 0, "host");
    CHECK(strcmp(zr_device_name(ZERO_DEVICE_CUDA), "cuda") == 0, "cuda");
    CHECK(strcmp(zr_device_name(ZERO_DEVICE_AUTO), "auto") == 0, "auto");
    CHECK(strcmp(zr_offload_name(ZERO_OFFLOAD_CPU), "cpu") == 0, "cpu");
    CHECK(strcmp(zr_offload_name(ZERO_OFFLOAD_NONE), "none") == 0, "none");
    CHECK(strcmp(zr_dtype_name((zero_dtype)42), "unknown") == 0, "unknown dtype");

    char path[512];
    snprintf(path, sizeof path, "%s/test_config.md", ZERO_TEST_TMPDIR);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    zr_config_write_markdown(f);
    fclose(f);
    const char *md = read_file(path);
    CHECK(md && strncmp(md, "# ", 2) == 0, "markdown title");
    if (!md) return;
    CHECK(strstr(md, "| variable | values | default | meaning |") != NULL, "table header");
    CHECK(strstr(md, "build/bin/zero-envdoc") != NULL, "generated-by line");
    CHECK(strstr(md, "ZERO_ERR_INVALID") != NULL, "mentions ZERO_ERR_INVALID");
    const char *name, *def;
    for (int i = 0; zr_config_var(i, &name, &def, NULL) == 0; i++) {
        char row[64];
        snprintf(row, sizeof row, "| `%s` |", name);
        CHECK(strstr(md, row) != NULL, "no row for %s", name);
    }
    CHECK(zr_config_var(-1, NULL, NULL, NULL) == -1, "index -1");
}

static void test_log(void) {
    char pattern[512], path[512];
    snprintf(pattern, sizeof pattern, "%s/test_config.%%p.log", ZERO_TEST_TMPDIR);
    snprintf(path, sizeof path, "%s/test_config.%ld.log", ZERO_TEST_TMPDIR, (long)getpid());
    CHECK(zr_log_level_now == ZR_LOG_WARN, "default level %d", zr_log_level_now);
    CHECK(zr_log_mask_now == ZR_SUB_ALL, "default mask %#x", zr_log_mask_now);

    int rc = zr_log_setup(ZR_LOG_INFO, ZR_SUB_ALL & ~(unsigned)ZR_SUB_COMM, pattern, 3);
    CHECK(rc == 0, "zr_log_setup(%s) failed", pattern);
    ZR_WARN(ZR_SUB_INIT, "first %d", 1);
    ZR_INFO(ZR_SUB_ENV, "ZERO_STAGE=%d\n", 3); /* trailing newline is not doubled */
    ZR_INFO(ZR_SUB_COMM, "masked out");
    ZR_TRACE(ZR_SUB_INIT, "above the level");
    char longmsg[3000];
    memset(longmsg, 'z', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    ZR_WARN(ZR_SUB_ALLOC, "%s", longmsg);
    zr_log_close();

    const char *text = read_file(path);
    CHECK(text != NULL, "no log file %s", path);
    if (!text) return;
    char pid_rank[64];
    snprintf(pid_rank, sizeof pid_rank, ":%ld:3 zero WARN first 1\n", (long)getpid());
    CHECK(strstr(text, pid_rank) != NULL, "WARN line: %s", text);
    snprintf(pid_rank, sizeof pid_rank, ":%ld:3 zero INFO ENV ZERO_STAGE=3\n", (long)getpid());
    CHECK(strstr(text, pid_rank) != NULL, "INFO line: %s", text);
    CHECK(strstr(text, "masked out") == NULL, "masked subsystem was written");
    CHECK(strstr(text, "above the level") == NULL, "TRACE written at INFO");
    CHECK(strstr(text, "zz\n") != NULL && strlen(text) > 3000, "long message cut");
    int lines = 0;
    for (const char *c = text; *c; c++) lines += *c == '\n';
    CHECK(lines == 3, "%d lines", lines);
    remove(path);

    /* A file that cannot be opened leaves logging on stderr and says so. */
    rc = zr_log_setup(ZR_LOG_NONE, ZR_SUB_ALL, "/nonexistent-dir/x.log", 0);
    CHECK(rc == -1, "unopenable log file accepted");
    zr_log_setup(ZR_LOG_WARN, ZR_SUB_ALL, NULL, -1);
}

int main(void) {
    test_defaults();
    test_table_defaults();
    test_overrides();
    test_program();
    test_errors();
    test_unknown();
    test_sizes();
    test_fingerprint();
    test_json();
    test_names_and_markdown();
    test_log();
    if (check_failures) {
        fprintf(stderr, "test_config: %d of %d checks failed\n", check_failures, check_count);
        return 1;
    }
    printf("test_config: all %d checks passed\n", check_count);
    return 0;
}
