/* error.c — see error.h. */
#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/log.h"

zero_status zr_fail_at(zr_error *e, zero_status status, const char *file, int line,
                       const char *fmt, ...)
{
    if (status == ZERO_OK)
        return ZERO_OK;
    char msg[ZR_ERROR_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (e) {
        e->status = status;
        memcpy(e->msg, msg, sizeof msg);
        e->file = file;
        e->line = line;
    }
    ZR_WARN(ZR_SUB_INIT, "%s: %s", zero_status_string(status), msg);
    return status;
}

zero_status zr_error_set(zr_error *e, zero_status status, const char *fmt, ...)
{
    if (status == ZERO_OK || !e)
        return status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->file = NULL;
    e->line = 0;
    return status;
}

void zr_error_clear(zr_error *e)
{
    e->status = ZERO_OK;
    e->msg[0] = '\0';
    e->file = NULL;
    e->line = 0;
}
