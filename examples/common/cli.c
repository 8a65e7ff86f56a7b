/* cli.c — command-line parsing shared by the example programs (cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_parse_int(const char *s, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (*s == '-') return -1;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_float(const char *s, float lo, float *out) {
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo) return -1;
    *out = v;
    return 0;
}

const char *cli_split(int argc, char **argv, int *i, char *name, size_t name_size) {
    const char *arg = argv[*i];
    const char *eq = strchr(arg, '=');
    if (eq) {
        size_t n = (size_t)(eq - arg);
        if (n >= name_size) n = name_size - 1;
        memcpy(name, arg, n);
        name[n] = '\0';
        return eq + 1;
    }
    snprintf(name, name_size, "%s", arg);
    return *i + 1 < argc ? argv[++*i] : NULL;
}

int cli_unknown_option(const char *prog, const char *arg) {
    fprintf(stderr, "%s: unknown option '%s'\n", prog, arg);
    return 2;
}

int cli_bad_value(const char *prog, const char *name, const char *val) {
    if (val) fprintf(stderr, "%s: bad value '%s' for %s\n", prog, val, name);
    else fprintf(stderr, "%s: %s needs a value\n", prog, name);
    return 2;
}
