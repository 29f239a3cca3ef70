/* Time sources. Wall clock for timestamps that leave the process (ms since the Unix epoch);
 * monotonic clock for durations and deadlines, including condition-variable deadlines.
 * Thread-safe. */
#ifndef AETHERIS_CLOCK_H
#define AETHERIS_CLOCK_H
#include "fmacros.h"
#include <pthread.h>
#include <stdint.h>
#include <time.h>

int64_t clock_wall_ms(void); /* CLOCK_REALTIME in milliseconds */
int64_t clock_mono_ns(void); /* CLOCK_MONOTONIC in nanoseconds */
int64_t clock_mono_ms(void); /* CLOCK_MONOTONIC in milliseconds */
/* Sleeps for ms milliseconds, or us microseconds (restarts on EINTR). */
void clock_sleep_ms(int64_t ms);
void clock_sleep_us(int64_t us);
/* The absolute CLOCK_MONOTONIC time ms (negative = 0) from now, for pthread_cond_timedwait on a
 * condition variable made by clock_cond_init(). */
struct timespec clock_mono_deadline(int64_t ms);
/* Initializes a condition variable whose timed waits use CLOCK_MONOTONIC (immune to wall-clock
 * steps). */
void clock_cond_init(pthread_cond_t *cv);

#endif
