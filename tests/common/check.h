/* check.h — what the unit and GPU test programs share (test-only, header-only): the CHECK macro
 * with its failure counter, the one-line REPORT summary of a group of checks, a seeded random
 * source, and float <-> bits. Include it as "tests/common/check.h" (tests link zero_internal,
 * whose include directories hold the repository root). Everything is static: each test program
 * that includes it gets its own counters and generator state, so a test made of several .c files
 * checks and reports in one of them (or keeps its own count per file).
 *
 *   CHECK(cond, fmt, ...)   counts the check (check_count); when cond is false counts a failure
 *                           (check_failures) and prints it on stderr as CHECK_STYLE says.
 *   check_fail(...)         the failure path of CHECK, for helpers that check on behalf of a
 *                           caller's line.
 *   check_set_context(...)  CHECK_STYLE_EXPR: text printed in brackets after each failed cond.
 *   REPORT(fmt, ...)        prints "ok   " or "FAIL " then fmt on stdout: FAIL when a check failed
 *                           since the previous REPORT. REPORT_LINE adds the newline and flushes.
 *   rnd_*                   splitmix64 (rnd_u64, rnd_u32, rnd_sym) and xorshift64* (rnd_xorshift)
 *                           on one state, from a fixed seed (rnd_seed): same data on every run.
 *
 * How a failed check is printed is the test's choice, made by defining CHECK_STYLE before the
 * include:
 *   CHECK_STYLE_SITE (default)  "FAIL file:line: message"; each call site shows its first
 *                               CHECK_SHOWN_PER_SITE failures, so a broken kernel does not flood
 *                               the log.
 *   CHECK_STYLE_EXPR            "FAIL file:line: cond [context]: message" (" [context]" once
 *                               check_set_context ran); the first CHECK_SHOWN_TOTAL failures of
 *                               the program are shown, later ones only counted.
 *   CHECK_STYLE_FAILED          "file:line: FAILED: cond: message"; every failure shown. */
#ifndef ZERO_TESTS_CHECK_H
#define ZERO_TESTS_CHECK_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define CHECK_STYLE_SITE 0
#define CHECK_STYLE_EXPR 1
#define CHECK_STYLE_FAILED 2
#ifndef CHECK_STYLE
#define CHECK_STYLE CHECK_STYLE_SITE
#endif

#define CHECK_SHOWN_PER_SITE 5 /* CHECK_STYLE_SITE: failures printed per call site */
#define CHECK_SHOWN_TOTAL 25   /* CHECK_STYLE_EXPR: failure lines printed before only counting */

/* Not every test uses every counter or helper. */
#define CHECK_UNUSED_ __attribute__((unused))

static int check_failures CHECK_UNUSED_; /* checks failed so far */
static int check_count CHECK_UNUSED_;    /* checks made so far (CHECK) */
static int check_reported CHECK_UNUSED_; /* check_failures at the last REPORT */
static int check_context_set CHECK_UNUSED_;
static char check_context[256] CHECK_UNUSED_; /* CHECK_STYLE_EXPR: what is being tested */

/* Counts a failed check of `cond` at file:line and prints it unless the style's limit is
 * reached. shown: the call site's count of printed failures (CHECK_STYLE_SITE), NULL for none. */
static inline void check_fail(int *shown, const char *file, int line, const char *cond,
                              const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static inline void check_fail(int *shown, const char *file, int line, const char *cond,
                              const char *fmt, ...)
{
    check_failures++;
    if (CHECK_STYLE == CHECK_STYLE_SITE) {
        if (shown && (*shown)++ >= CHECK_SHOWN_PER_SITE)
            return;
        fprintf(stderr, "FAIL %s:%d: ", file, line);
    } else if (CHECK_STYLE == CHECK_STYLE_EXPR) {
        if (check_failures > CHECK_SHOWN_TOTAL)
            return;
        fprintf(stderr, "FAIL %s:%d: %s", file, line, cond);
        if (check_context_set)
            fprintf(stderr, " [%s]", check_context);
        fputs(": ", stderr);
    } else {
        fprintf(stderr, "%s:%d: FAILED: %s: ", file, line, cond);
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        check_count++;                                                                         \
        if (!(cond)) {                                                                         \
            static int check_shown_;                                                           \
            check_fail(&check_shown_, __FILE__, __LINE__, #cond, __VA_ARGS__);                 \
        }                                                                                      \
    } while (0)

/* Sets the context printed with each failure (CHECK_STYLE_EXPR), printf-style. */
static inline void check_set_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void check_set_context(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(check_context, sizeof check_context, fmt, ap);
    va_end(ap);
    check_context_set = 1;
}

/* ---- one summary line per group of checks ------------------------------------------------- */

static inline void check_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void check_report(const char *fmt, ...)
{
    printf("%s ", check_failures == check_reported ? "ok  " : "FAIL");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    check_reported = check_failures;
}

/* REPORT: fmt carries its own newline. REPORT_LINE: adds the newline and flushes stdout, so the
 * line is out before any later output on stderr. */
#define REPORT(...) check_report(__VA_ARGS__)
#define REPORT_LINE(...)                                                                       \
    do {                                                                                       \
        check_report(__VA_ARGS__);                                                             \
        putchar('\n');                                                                         \
        fflush(stdout);                                                                        \
    } while (0)

/* ---- random numbers ----------------------------------------------------------------------- */

static uint64_t rnd_state CHECK_UNUSED_ = 0x9e3779b97f4a7c15ull;

static inline void rnd_seed(uint64_t seed) { rnd_state = seed; }

/* splitmix64. */
static inline uint64_t rnd_u64(void)
{
    uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint32_t rnd_u32(void) { return (uint32_t)(rnd_u64() >> 32); }

/* Uniform in [-1, 1). */
static inline double rnd_sym(void) { return (double)(rnd_u64() >> 11) * 0x1p-52 - 1.0; }

/* xorshift64*, the generator test_partition's random cases are drawn with. */
static inline uint64_t rnd_xorshift(void)
{
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dull;
}

/* ---- float <-> bits ------------------------------------------------------------------------ */

static inline float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t float_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

#endif
