/* test_files — how libzero writes files and what it lets through to them (run under mpirun
 * -np 1..2): zero_export and the report are written beside their target and renamed over it
 * (a symbolic link is followed and stays a link; a FIFO or a directory is refused and left as it
 * is; a failed write leaves the old file and no temporary file; a temporary file of a process
 * that is gone is removed), the report's status is the same on every rank, names and shapes
 * that would make an export unloadable are refused at zero_init, and a tensor registered
 * differently on one rank is named on every rank. Files live in test_files_np<N>.d in the
 * working directory; rank 0 makes and checks them. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "zero.h"

#include "../common/api_test.h"

static int world_g;

enum { NT = 4 };
static float init_vals[NT][1000];
static zero_tensor tensors[NT];
static char dir[64];

static void make_tensors(void)
{
    static const char *names[NT] = {"a.w", "a.b", "b.w", "b.b"};
    static const size_t sizes[NT] = {900, 17, 250, 3};
    memset(tensors, 0, sizeof tensors);
    for (int i = 0; i < NT; i++) {
        tensors[i].name = names[i];
        tensors[i].numel = sizes[i];
        tensors[i].module = i / 2;
        for (size_t k = 0; k < sizes[i]; k++)
            init_vals[i][k] = 0.01f * (float)((k * 31 + (size_t)i * 7) % 17) - 0.08f;
        tensors[i].init = init_vals[i];
    }
    tensors[0].ndim = 2; /* a.w [30, 30] */
    tensors[0].shape[0] = 30;
    tensors[0].shape[1] = 30;
    tensors[2].ndim = 2; /* b.w [25, 10] */
    tensors[2].shape[0] = 25;
    tensors[2].shape[1] = 10;
    tensors[1].no_decay = tensors[3].no_decay = 1;
}

/* A barrier: every rank's file checks happen between two of these. */
static void sync_ranks(zero_ctx *z)
{
    double v = 0.0;
    zero_allreduce_sum(z, &v, 1);
}

static const char *in_dir(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Rank 0: empties dir (files, FIFOs, links and one level of subdirectories). */
static void clean_dir(void)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        const char *p = in_dir(de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rmdir(p);
        else
            unlink(p);
    }
    closedir(d);
}

/* The whole file, or NULL; *len its size. */
static unsigned char *slurp(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        if (*len == cap) {
            cap = cap ? 2 * cap : 65536;
            unsigned char *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
        }
        size_t n = fread(buf + *len, 1, cap - *len, f);
        if (n == 0)
            break;
        *len += n;
    }
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Whether path is a loadable safetensors file of the registered tensors holding values[i]: the
 * header size, the JSON header naming every tensor with its shape and offsets, the data size,
 * the data (fp32, registration order). Says why not into why. */
static int check_safetensors(const char *path, float (*values)[1000], char *why, size_t wn)
{
    size_t len;
    unsigned char *b = slurp(path, &len);
    int ok = 0;
    uint64_t hl = 0;
    if (!b || len < 8) {
        snprintf(why, wn, "%s: missing or shorter than 8 bytes", path);
        goto out;
    }
    for (int k = 0; k < 8; k++)
        hl |= (uint64_t)b[k] << (8 * k);
    size_t data = 0;
    for (int i = 0; i < NT; i++)
        data += tensors[i].numel * 4;
    if (hl % 8 || 8 + hl + data != len) {
        snprintf(why, wn, "%s: header %llu bytes, file %zu, data %zu", path,
                 (unsigned long long)hl, len, data);
        goto out;
    }
    char *h = malloc(hl + 1);
    memcpy(h, b + 8, hl);
    h[hl] = 0;
    static const char *want[NT] = {
        "\"a.w\":{\"dtype\":\"F32\",\"shape\":[30,30],\"data_offsets\":[0,3600]}",
        "\"a.b\":{\"dtype\":\"F32\",\"shape\":[17],\"data_offsets\":[3600,3668]}",
        "\"b.w\":{\"dtype\":\"F32\",\"shape\":[25,10],\"data_offsets\":[3668,4668]}",
        "\"b.b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4668,4680]}"};
    for (int i = 0; i < NT; i++)
        if (!strstr(h, want[i])) {
            snprintf(why, wn, "%s: header lacks %s: %s", path, want[i], h);
            free(h);
            goto out;
        }
    free(h);
    const unsigned char *p = b + 8 + hl;
    for (int i = 0; i < NT; i++) {
        if (memcmp(p, values[i], tensors[i].numel * 4) != 0) {
            snprintf(why, wn, "%s: the data of %s differ from the parameters", path,
                     tensors[i].name);
            goto out;
        }
        p += tensors[i].numel * 4;
    }
    ok = 1;
out:
    free(b);
    return ok;
}

static int contains(const unsigned char *b, size_t len, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(b + i, s, n) == 0)
            return 1;
    return 0;
}

/* Names in dir that contain ".zero-tmp." (temporary files), written to out. */
static int count_temps(char *out, size_t n)
{
    int k = 0;
    out[0] = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".zero-tmp.")) {
            k++;
            snprintf(out + strlen(out), n - strlen(out), " %s", de->d_name);
        }
    closedir(d);
    return k;
}

/* The host part of libzero's temporary names: the host name, anything but [A-Za-z0-9_-] as _. */
static void host_part(char *h, size_t n)
{
    if (gethostname(h, n) != 0 || !h[0])
        snprintf(h, n, "localhost");
    h[n - 1] = 0;
    if (strlen(h) > 64)
        h[64] = 0;
    for (char *p = h; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            *p = '_';
}

/* A pid no process has: pid_max itself (pids are below it). */
static long dead_pid(void)
{
    long m = 4194304;
    FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
    if (f) {
        if (fscanf(f, "%ld", &m) != 1)
            m = 4194304;
        fclose(f);
    }
    return m;
}

/* Rank 0 caps the size of files it writes (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it
 * fails with EFBIG): a disk that fills up. bytes 0 restores the old limit. */
static void cap_file_size(size_t bytes)
{
    static struct rlimit old;
    static int saved;
    if (rank_hint != 0)
        return;
    if (bytes) {
        getrlimit(RLIMIT_FSIZE, &old);
        saved = 1;
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit r = {(rlim_t)bytes, old.rlim_max};
        setrlimit(RLIMIT_FSIZE, &r);
    } else if (saved) {
        setrlimit(RLIMIT_FSIZE, &old);
        saved = 0;
    }
}

/* zero_init must fail with ZERO_ERR_INVALID and every text[] in the message, on every rank. */
static void expect_invalid(const char *what, const zero_config *cfg, const zero_tensor *t,
                           const char *const *text, int ntext)
{
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, cfg, t, NT);
    EXPECT(s == ZERO_ERR_INVALID && z == NULL, "%s: status %s, expected ZERO_ERR_INVALID (%s)",
           what, zero_status_string(s), zero_init_error());
    for (int k = 0; k < ntext; k++)
        EXPECT(strstr(zero_init_error(), text[k]) != NULL, "%s: message \"%s\" lacks \"%s\"",
               what, zero_init_error(), text[k]);
    if (z)
        zero_finalize(z);
}

/* ---- the cases --------------------------------------------------------------------------- */

/* Exports into plain paths, through symbolic links, onto things that are not regular files, with
 * a disk that fills up, beside stale temporary files. */
static void export_cases(zero_ctx *z, float (*values)[1000])
{
    char why[4096], temps[1024];
    const int r0 = rank_hint == 0;
    /* a plain path: a loadable file, no temporary file left */
    EXPECT(zero_export(z, in_dir("plain.safetensors")) == ZERO_OK, "plain export: %s",
           zero_last_error(z));
    if (r0) {
        EXPECT(check_safetensors(in_dir("plain.safetensors"), values, why, sizeof why), "%s", why);
        EXPECT(count_temps(temps, sizeof temps) == 0, "temporary files left:%s", temps);
    }
    size_t good_len;
    unsigned char *good = r0 ? slurp(in_dir("plain.safetensors"), &good_len) : NULL;

    /* a symbolic link (relative, through a second link) to an existing file: the file gets the
     * export, the links stay links pointing where they did */
    if (r0) {
        write_text(in_dir("real.safetensors"), "old contents\n");
        EXPECT(symlink("real.safetensors", in_dir("link.safetensors")) == 0, "symlink: %s",
               strerror(errno));
        EXPECT(symlink("link.safetensors", in_dir("link2.safetensors")) == 0, "symlink: %s",
               strerror(errno));
    }
    sync_ranks(z);
    EXPECT(zero_export(z, in_dir("link2.safetensors")) == ZERO_OK, "export through links: %s",
           zero_last_error(z));
    if (r0) {
        struct stat st;
        char target[256] = "";
        EXPECT(lstat(in_dir("link2.safetensors"), &st) == 0 && S_ISLNK(st.st_mode),
               "link2.safetensors is no longer a symbolic link");
        EXPECT(lstat(in_dir("link.safetensors"), &st) == 0 && S_ISLNK(st.st_mode),
               "link.safetensors is no longer a symbolic link");
        ssize_t n = readlink(in_dir("link.safetensors"), target, sizeof target - 1);
        EXPECT(n > 0 && strncmp(target, "real.safetensors", (size_t)n) == 0,
               "link.safetensors points elsewhere now");
        EXPECT(lstat(in_dir("real.safetensors"), &st) == 0 && S_ISREG(st.st_mode),
               "real.safetensors is not a regular file");
        EXPECT(check_safetensors(in_dir("real.safetensors"), values, why, sizeof why), "%s", why);
        EXPECT(count_temps(temps, sizeof temps) == 0, "temporary files left:%s", temps);
        /* a dangling link (absolute path) names the file to create */
        char abs[512];
        EXPECT(getcwd(abs, 256) != NULL, "getcwd");
        snprintf(abs + strlen(abs), sizeof abs - strlen(abs), "/%s", in_dir("new.safetensors"));
        EXPECT(symlink(abs, in_dir("dangling.safetensors")) == 0, "symlink: %s",
               strerror(errno));
    }
    sync_ranks(z);
    EXPECT(zero_export(z, in_dir("dangling.safetensors")) == ZERO_OK,
           "export through a dangling link: %s", zero_last_error(z));
    if (r0) {
        struct stat st;
        EXPECT(lstat(in_dir("dangling.safetensors"), &st) == 0 && S_ISLNK(st.st_mode),
               "dangling.safetensors is no longer a symbolic link");
        EXPECT(check_safetensors(in_dir("new.safetensors"), values, why, sizeof why), "%s", why);
    }

    /* a FIFO, a directory, a link to a directory: ZERO_ERR_IO on every rank, naming the path
     * and what it is; each left as it is */
    struct {
        const char *name, *kind;
    } refused[3] = {{"fifo", "FIFO"}, {"subdir", "directory"}, {"dirlink", "directory"}};
    if (r0) {
        EXPECT(mkfifo(in_dir("fifo"), 0644) == 0, "mkfifo: %s", strerror(errno));
        EXPECT(mkdir(in_dir("subdir"), 0755) == 0, "mkdir: %s", strerror(errno));
        EXPECT(symlink("subdir", in_dir("dirlink")) == 0, "symlink: %s", strerror(errno));
    }
    sync_ranks(z);
    for (int k = 0; k < 3; k++) {
        zero_status s = zero_export(z, in_dir(refused[k].name));
        EXPECT(s == ZERO_ERR_IO, "export onto %s: %s, expected ZERO_ERR_IO", refused[k].name,
               zero_status_string(s));
        EXPECT(strstr(zero_last_error(z), in_dir(refused[k].name)) &&
                   strstr(zero_last_error(z), refused[k].kind),
               "export onto %s: the message does not name the path and \"%s\": %s",
               refused[k].name, refused[k].kind, zero_last_error(z));
    }
    if (r0) {
        struct stat st;
        EXPECT(lstat(in_dir("fifo"), &st) == 0 && S_ISFIFO(st.st_mode), "the FIFO was replaced");
        EXPECT(lstat(in_dir("subdir"), &st) == 0 && S_ISDIR(st.st_mode),
               "the directory was replaced");
        EXPECT(lstat(in_dir("dirlink"), &st) == 0 && S_ISLNK(st.st_mode),
               "the link to a directory was replaced");
        EXPECT(count_temps(temps, sizeof temps) == 0, "temporary files left:%s", temps);
    }

    /* the disk fills up during the export: ZERO_ERR_IO on every rank, the earlier export
     * intact, no temporary file */
    cap_file_size(2048);
    zero_status s = zero_export(z, in_dir("plain.safetensors"));
    cap_file_size(0);
    EXPECT(s == ZERO_ERR_IO, "export onto a full disk: %s, expected ZERO_ERR_IO",
           zero_status_string(s));
    EXPECT(strstr(zero_last_error(z), "plain.safetensors") != NULL, "message: %s",
           zero_last_error(z));
    if (r0) {
        size_t len;
        unsigned char *now = slurp(in_dir("plain.safetensors"), &len);
        EXPECT(now && good && len == good_len && memcmp(now, good, len) == 0,
               "a failed export changed the file it was to replace");
        free(now);
        EXPECT(count_temps(temps, sizeof temps) == 0, "a failed export left:%s", temps);
    }

    /* stale temporary files of this target: one of a process that is gone (removed), one of a
     * live process and one of another host (both kept) */
    char host[256], stale[512], stale2[512], live[512], other[512];
    host_part(host, sizeof host);
    snprintf(stale, sizeof stale, ".plain.safetensors.zero-tmp.%s.%ld", host, dead_pid());
    snprintf(stale2, sizeof stale2, ".plain.safetensors.zero-tmp.%s.%ld-2", host, dead_pid());
    snprintf(live, sizeof live, ".plain.safetensors.zero-tmp.%s.%ld", host, (long)getppid());
    snprintf(other, sizeof other, ".plain.safetensors.zero-tmp.%s-elsewhere.%ld", host,
             dead_pid());
    if (r0) {
        write_text(in_dir(stale), "half an export\n");
        write_text(in_dir(stale2), "half an export\n");
        write_text(in_dir(live), "an export in progress\n");
        write_text(in_dir(other), "another host's export\n");
    }
    sync_ranks(z);
    EXPECT(zero_export(z, in_dir("plain.safetensors")) == ZERO_OK, "export beside stale files: %s",
           zero_last_error(z));
    if (r0) {
        EXPECT(access(in_dir(stale), F_OK) != 0, "the stale %s is still there", stale);
        EXPECT(access(in_dir(stale2), F_OK) != 0, "the stale %s is still there", stale2);
        EXPECT(access(in_dir(live), F_OK) == 0, "%s (a live process's) was removed", live);
        EXPECT(access(in_dir(other), F_OK) == 0, "%s (another host's) was removed", other);
        EXPECT(check_safetensors(in_dir("plain.safetensors"), values, why, sizeof why), "%s",
               why);
        unlink(in_dir(live));
        unlink(in_dir(other));
    }
    free(good);
    sync_ranks(z);
}

/* One context with a report at path on rank 0; finalize's status is returned (every rank). */
static zero_status run_with_report(const zero_config *cfg, const char *path, size_t cap)
{
    zero_config c = *cfg;
    if (rank_hint == 0)
        c.report_path = path;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &c, tensors, NT);
    EXPECT(s == ZERO_OK, "init with a report: %s", zero_init_error());
    if (s)
        return ZERO_ERR_INTERNAL;
    EXPECT(zero_step(z) == ZERO_OK, "step: %s", zero_last_error(z));
    cap_file_size(cap);
    s = zero_finalize(z);
    cap_file_size(0);
    return s;
}

static void report_cases(const zero_config *cfg)
{
    char temps[1024];
    const int r0 = rank_hint == 0;
    /* a good report */
    zero_status s = run_with_report(cfg, in_dir("report.json"), 0);
    EXPECT(s == ZERO_OK, "report: %s %s", zero_status_string(s), zero_init_error());
    size_t good_len = 0;
    unsigned char *good = r0 ? slurp(in_dir("report.json"), &good_len) : NULL;
    if (r0)
        EXPECT(good && good_len > 1024 && good[0] == '{' && good[good_len - 2] == '}',
               "the report is not a JSON object of more than 1 KiB (%zu bytes)", good_len);
    /* the disk fills up while the next report is written: ZERO_ERR_IO on every rank, the good
     * report intact, no temporary file */
    s = run_with_report(cfg, in_dir("report.json"), 512);
    EXPECT(s == ZERO_ERR_IO, "report onto a full disk: %s, expected ZERO_ERR_IO on every rank",
           zero_status_string(s));
    EXPECT(strstr(zero_init_error(), "report.json") != NULL, "message: %s", zero_init_error());
    if (r0) {
        size_t len;
        unsigned char *now = slurp(in_dir("report.json"), &len);
        EXPECT(now && len == good_len && memcmp(now, good, len) == 0,
               "a failed report changed the report it was to replace");
        free(now);
        EXPECT(count_temps(temps, sizeof temps) == 0, "a failed report left:%s", temps);
    }
    free(good);
    /* unwritable paths: a directory, a missing directory */
    s = run_with_report(cfg, in_dir("subdir"), 0);
    EXPECT(s == ZERO_ERR_IO, "report onto a directory: %s, expected ZERO_ERR_IO on every rank",
           zero_status_string(s));
    EXPECT(strstr(zero_init_error(), "directory") != NULL, "message: %s", zero_init_error());
    s = run_with_report(cfg, "/nonexistent-dir/report.json", 0);
    EXPECT(s == ZERO_ERR_IO, "report into a missing directory: %s, expected ZERO_ERR_IO on every "
           "rank", zero_status_string(s));
    EXPECT(strstr(zero_init_error(), "/nonexistent-dir/report.json") != NULL, "message: %s",
           zero_init_error());
}

/* Names and shapes an export could not represent; registrations that differ between ranks. */
static void registration_cases(const zero_config *cfg)
{
    zero_tensor bad[NT];
    memcpy(bad, tensors, sizeof bad);
    bad[1].name = "__metadata__";
    expect_invalid("__metadata__", cfg, bad, (const char *[]){"tensor 1", "__metadata__"}, 2);
    const char *invalid_utf8[] = {"a\xff", "b\xc0\xaf", "c\xed\xa0\x80", "d\xf4\x90\x80\x80",
                                  "e\xe2\x82", "f\x80"};
    for (int k = 0; k < 6; k++) {
        memcpy(bad, tensors, sizeof bad);
        bad[2].name = invalid_utf8[k];
        expect_invalid("invalid UTF-8", cfg, bad, (const char *[]){"tensor 2", "UTF-8"}, 2);
    }
    /* the product wraps around 2^64 to numel: (2^62 + 225) * 4 = 2^64 + 900 */
    memcpy(bad, tensors, sizeof bad);
    bad[0].shape[0] = (int64_t)((1ull << 62) + 225);
    bad[0].shape[1] = 4;
    expect_invalid("overflowing shape", cfg, bad, (const char *[]){"tensor 0", "overflows"}, 2);
    /* valid UTF-8 beyond ASCII is fine, and exported as it is */
    memcpy(bad, tensors, sizeof bad);
    bad[1].name = "\xce\xb1.b \xe2\x82\xac \xf0\x9f\x98\x80"; /* "α.b € 😀" */
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, cfg, bad, NT);
    EXPECT(s == ZERO_OK, "a UTF-8 name: %s", zero_init_error());
    if (z) {
        EXPECT(zero_export(z, in_dir("utf8.safetensors")) == ZERO_OK, "export: %s",
               zero_last_error(z));
        if (rank_hint == 0) {
            size_t len;
            unsigned char *b = slurp(in_dir("utf8.safetensors"), &len);
            EXPECT(b && contains(b, len, bad[1].name),
                   "the UTF-8 name is not in the export");
            free(b);
        }
        zero_finalize(z);
    }
    if (world_g < 2)
        return;
    /* on the last rank only: a transposed shape, another no_decay, another name */
    memcpy(bad, tensors, sizeof bad);
    if (rank_hint == world_g - 1) {
        bad[2].shape[0] = 10;
        bad[2].shape[1] = 25;
    }
    char on[32];
    snprintf(on, sizeof on, "on rank %d", world_g - 1);
    expect_invalid("transposed shape on one rank", cfg, bad,
                   (const char *[]){"tensor registration", "tensor 2", "\"b.w\" shape [25, 10]",
                                    "\"b.w\" shape [10, 25]", on},
                   5);
    memcpy(bad, tensors, sizeof bad);
    if (rank_hint == world_g - 1)
        bad[3].no_decay = 0;
    expect_invalid("no_decay on one rank", cfg, bad,
                   (const char *[]){"tensor 3", "no_decay differs", on}, 3);
    memcpy(bad, tensors, sizeof bad);
    if (rank_hint == world_g - 1)
        bad[1].name = "a.bias";
    expect_invalid("a name on one rank", cfg, bad,
                   (const char *[]){"tensor 1", "name differs", "\"a.bias\"", on}, 4);
    /* long names: shown up to 127 bytes; past that they differ all the same */
    static char longname[2][200];
    for (int k = 0; k < 2; k++) {
        memset(longname[k], 'x', 150);
        longname[k][0] = 'b';
        longname[k][149] = k ? '2' : '1';
        longname[k][150] = 0;
    }
    memcpy(bad, tensors, sizeof bad);
    bad[3].name = longname[rank_hint == world_g - 1];
    expect_invalid("a long name on one rank", cfg, bad,
                   (const char *[]){"tensor 3", "name differs", "...\" numel 3", on}, 4);
    memcpy(bad, tensors, sizeof bad);
    if (rank_hint == world_g - 1)
        bad[0].ndim = 0; /* the same 900 elements without a shape */
    expect_invalid("no shape on one rank", cfg, bad,
                   (const char *[]){"tensor 0", "shape differs", "numel 900 (no shape)"}, 3);
}

int main(void)
{
    clear_zero_environment();
    make_tensors();
    zero_config cfg = ZERO_CONFIG_INIT;
    cfg.device = ZERO_DEVICE_HOST;
    cfg.stage = 2;
    cfg.dtype = ZERO_DTYPE_FP32;
    zero_ctx *z = NULL;
    zero_status s = zero_init(&z, &cfg, tensors, NT);
    if (s) {
        fprintf(stderr, "init failed: %s %s\n", zero_status_string(s), zero_init_error());
        return 1;
    }
    rank_hint = zero_rank(z);
    world_g = zero_world_size(z);
    snprintf(dir, sizeof dir, "test_files_np%d.d", world_g);
    if (rank_hint == 0) {
        mkdir(dir, 0755);
        clean_dir();
    }
    sync_ranks(z);
    /* the values an export must hold: the fp32 parameters (stage 2: the full replica on every
     * rank, and with fp32 working precision they are the master) */
    static float values[NT][1000];
    for (int i = 0; i < NT; i++)
        memcpy(values[i], zero_param_ptr(z, i), tensors[i].numel * sizeof(float));
    export_cases(z, values);
    EXPECT(zero_finalize(z) == ZERO_OK, "finalize");

    report_cases(&cfg);
    registration_cases(&cfg);

    zero_ctx *last = NULL;
    if (zero_init(&last, &cfg, tensors, NT) == ZERO_OK) { /* every rank done before cleaning */
        sync_ranks(last);
        if (rank_hint == 0)
            clean_dir();
        zero_finalize(last);
    }
    if (rank_hint == 0) {
        rmdir(dir);
        printf("test_files: %d ranks, %d checks, %d failures\n", world_g, checks, failures);
    }
    return failures != 0;
}
