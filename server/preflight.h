/* Start-up dependency checks (FAIL_FAST_HEALTHCHECK): the broker, Redis and the store are each
 * tried once, within startup_timeout_ms, before the pipeline starts. With fail_fast_healthcheck
 * on, any failure ends start-up with a message naming the dependency and its address; otherwise the
 * failures are logged and the daemon starts degraded, each component reconnecting on its own. */
#ifndef AETHERIS_PREFLIGHT_H
#define AETHERIS_PREFLIGHT_H
#include "fmacros.h"
#include "config.h"
#include "store.h"

/* Checks every dependency (broker, Redis, store) and logs one preflight.dependencies line with
 * each one's state. Returns 0 when all answered, else ERR_CONN with err naming the first one
 * that did not (the caller decides whether that is fatal). */
int preflight_check(const struct config *cfg, struct store *store, char *err, size_t errlen);
/* mkdir -p for a directory path: 0 or ERR_IO (err filled). */
int preflight_mkdirs(const char *path, char *err, size_t errlen);

#endif
