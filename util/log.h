/* log.h — NCCL-style logging: a level and a subsystem mask from ZERO_DEBUG / ZERO_DEBUG_SUBSYS,
 * lines prefixed "host:pid:rank zero LEVEL", written to stderr or ZERO_DEBUG_FILE (%h = host,
 * %p = pid). The level and mask are checked before any formatting. Process-wide state, shared by
 * every context of the process: each context opens it (zr_log_open) and releases it
 * (zr_log_release); the file closes when the last user releases it. */
#ifndef ZERO_LOG_H
#define ZERO_LOG_H

#include <stdarg.h>

enum zr_log_level { ZR_LOG_NONE = 0, ZR_LOG_WARN = 1, ZR_LOG_INFO = 2, ZR_LOG_TRACE = 3 };

enum zr_log_subsys {
    ZR_SUB_INIT = 1u << 0,
    ZR_SUB_PART = 1u << 1,
    ZR_SUB_COMM = 1u << 2,
    ZR_SUB_OFFLOAD = 1u << 3,
    ZR_SUB_ALLOC = 1u << 4,
    ZR_SUB_ENV = 1u << 5,
    ZR_SUB_ALL = 0xffffffffu
};

extern int zr_log_level_now;       /* current level; read by the macros */
extern unsigned zr_log_mask_now;   /* current subsystem mask */

/* Applies level, mask and file pattern (NULL or "" = stderr); rank goes into the prefix.
 * Returns 0, or -1 if the file cannot be opened (logging then stays on stderr). */
int zr_log_setup(int level, unsigned mask, const char *file_pattern, int rank);
void zr_log_set_rank(int rank);
/* Closes the file now (logging goes to stderr); for tools and tests. */
void zr_log_close(void);
/* zr_log_setup for a user that later calls zr_log_release (a context): the settings apply to the
 * whole process, and the file stays open while any user holds it. */
int zr_log_open(int level, unsigned mask, const char *file_pattern, int rank);
void zr_log_release(void);
void zr_log_write(int level, unsigned subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ZR_LOG(level, sub, ...)                                                               \
    do {                                                                                      \
        if (zr_log_level_now >= (level) && (zr_log_mask_now & (unsigned)(sub)))               \
            zr_log_write((level), (unsigned)(sub), __VA_ARGS__);                              \
    } while (0)
#define ZR_WARN(sub, ...) ZR_LOG(ZR_LOG_WARN, sub, __VA_ARGS__)
#define ZR_INFO(sub, ...) ZR_LOG(ZR_LOG_INFO, sub, __VA_ARGS__)
#define ZR_TRACE(sub, ...) ZR_LOG(ZR_LOG_TRACE, sub, __VA_ARGS__)

#endif
