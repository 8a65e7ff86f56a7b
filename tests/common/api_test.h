/* api_test.h — what the in-process integration tests (test_api, test_misuse, test_files,
 * test_matrix, run under mpirun) share: the EXPECT check with its counters, and clearing ZERO_*
 * from the environment, so a test sets its configuration through zero_config alone (ZERO_*
 * variables of the caller would override it). Include once, from the test's one source file. */
#ifndef ZERO_TESTS_API_TEST_H
#define ZERO_TESTS_API_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks, rank_hint;

#define EXPECT(cond, ...)                                                                     \
    do {                                                                                      \
        checks++;                                                                             \
        if (!(cond)) {                                                                        \
            failures++;                                                                       \
            fprintf(stderr, "rank %d FAIL %s:%d: ", rank_hint, __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

extern char **environ;

static void clear_zero_environment(void)
{
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "ZERO_", 5) == 0) {
                char name[128];
                size_t n = strcspn(*e, "=");
                snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1),
                         *e);
                unsetenv(name);
                again = 1;
                break;
            }
        }
    }
}

#endif
