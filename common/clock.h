/* Time sources. Wall clock for timestamps that leave the process (ms since the Unix epoch);
 * monotonic clock for durations and deadlines. Thread-safe. */
#ifndef AETHERIS_CLOCK_H
#define AETHERIS_CLOCK_H
#include "fmacros.h"
#include <stdint.h>

int64_t clock_wall_ms(void); /* CLOCK_REALTIME in milliseconds */
int64_t clock_mono_ns(void); /* CLOCK_MONOTONIC in nanoseconds */
int64_t clock_mono_ms(void); /* CLOCK_MONOTONIC in milliseconds */
/* Sleeps for ms milliseconds (restarts on EINTR). */
void clock_sleep_ms(int64_t ms);

#endif
