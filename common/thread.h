/* Thread names. Every long-lived thread names itself, so `top -H`, `ps -L`, perf and gdb show
 * which part of the daemon a thread is (sink, worker-0, mqtt-sub, ...). Linux keeps at most 15
 * bytes of a name; longer names are cut there. */
#ifndef AETHERIS_THREAD_H
#define AETHERIS_THREAD_H
#include "fmacros.h"
#include <sys/prctl.h>

/* Names the calling thread (best effort: a failure leaves the inherited name). */
static inline void thread_name(const char *name)
{
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

#endif
