/* error.h — the one internal error object and its check macros, used by every layer above util/.
 *
 * A zr_error holds the first failure of an operation: its status, a message written for the user
 * (which variable, which value, what is allowed) and where in libzero it was raised. A function
 * that can fail returns a zero_status and, on failure, has filled the zr_error it was given with
 * zr_fail; its caller either handles the status or passes it up unchanged with ZR_CHECK /
 * ZR_CHECK_GOTO (the NCCLCHECK manner: propagate, clean up at one label). A message is written
 * where the cause is known; a caller that adds context records a new one around it ("gradient
 * reduce-scatter of chunk 3: <the backend's message>"). */
#ifndef ZERO_UTIL_ERROR_H
#define ZERO_UTIL_ERROR_H

#include <stddef.h>

#include "zero.h"

enum { ZR_ERROR_MSG = 1024 };

typedef struct zr_error {
    zero_status status;     /* ZERO_OK until a failure is recorded */
    char msg[ZR_ERROR_MSG]; /* what went wrong, for zero_last_error */
    const char *file;       /* where it was raised (libzero source file and line) */
    int line;
} zr_error;

/* Records status and the formatted message in e (replacing what was there), logs it at WARN and
 * returns status. status ZERO_OK records nothing and returns ZERO_OK. e may be NULL (then only
 * logged). Use through zr_fail. */
zero_status zr_fail_at(zr_error *e, zero_status status, const char *file, int line,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
#define zr_fail(e, status, ...) zr_fail_at((e), (status), __FILE__, __LINE__, __VA_ARGS__)

/* zr_fail without the log line, for the lower layers (partition/, offload/) whose callers decide
 * whether a failure is worth a warning (a layout probe that does not fit is not). */
zero_status zr_error_set(zr_error *e, zero_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears e (status ZERO_OK, empty message). */
void zr_error_clear(zr_error *e);

/* Propagate: return the status of call when it is not ZERO_OK. */
#define ZR_CHECK(call)                                                                        \
    do {                                                                                      \
        zero_status zr_s_ = (call);                                                           \
        if (zr_s_ != ZERO_OK)                                                                 \
            return zr_s_;                                                                     \
    } while (0)

/* Propagate to a clean-up label: status variable s gets the status of call. */
#define ZR_CHECK_GOTO(call, s, label)                                                         \
    do {                                                                                      \
        if (((s) = (call)) != ZERO_OK)                                                        \
            goto label;                                                                       \
    } while (0)

#endif
