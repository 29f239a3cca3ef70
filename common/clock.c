/* Clock helpers (clock.h): thin wrappers over clock_gettime/nanosleep. */
#include "clock.h"
#include <errno.h>
#include <time.h>

static int64_t ts_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t clock_wall_ms(void)
{
    return ts_ns(CLOCK_REALTIME) / 1000000LL;
}

int64_t clock_mono_ns(void)
{
    return ts_ns(CLOCK_MONOTONIC);
}

int64_t clock_mono_ms(void)
{
    return ts_ns(CLOCK_MONOTONIC) / 1000000LL;
}

void clock_sleep_ms(int64_t ms)
{
    struct timespec req = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    struct timespec rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}
