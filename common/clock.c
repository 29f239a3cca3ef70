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

void clock_sleep_us(int64_t us)
{
    struct timespec req = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000L};
    struct timespec rem;
    while (nanosleep(&req, &rem) != 0 && errno == EINTR)
        req = rem;
}

void clock_sleep_ms(int64_t ms)
{
    clock_sleep_us(ms * 1000);
}

struct timespec clock_mono_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

void clock_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}
