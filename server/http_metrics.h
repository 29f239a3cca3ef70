/* Per-route HTTP metrics (DESIGN.md 7): `aetheris_http_requests_total{route,code}` and the
 * `aetheris_http_request_duration_seconds{route}` histogram, one series per route of the route
 * table (route.h) plus route="unmatched" for requests no route takes (404, 405, and MHD's own
 * refusals do not reach here). Codes are counted exactly for the statuses the API answers and
 * as "other" beyond them, so the series stay bounded whatever clients send.
 * Thread-safe and lock-free (relaxed atomics), like the registry (metrics.h). */
#ifndef AETHERIS_HTTP_METRICS_H
#define AETHERIS_HTTP_METRICS_H
#include "fmacros.h"
#include <stdint.h>
#include <jansson.h>
#include "buf.h"
#include "route.h"

/* Counts one request: the matched route (NULL when none matched), status and duration. */
void http_metrics_observe(const struct route *r, int status, double seconds);
/* Appends both families; 0 or ERR_FULL. */
int http_metrics_prometheus(struct buf *out);
/* Requests counted so far, all routes and codes. */
uint64_t http_metrics_total(void);
/* {"count","p50","p95","p99"} over every route. New reference. */
json_t *http_metrics_latency_json(void);

#endif
