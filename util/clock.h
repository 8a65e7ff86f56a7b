/* clock.h — monotonic seconds, for the phase times of the report and for timeouts. */
#ifndef ZERO_UTIL_CLOCK_H
#define ZERO_UTIL_CLOCK_H

#include <time.h>

static inline double zr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
