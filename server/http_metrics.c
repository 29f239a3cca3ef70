/* Per-route HTTP metrics (http_metrics.h). Routes are identified by their position in the
 * static route table, so the arrays below are indexed directly; the extra last slot is
 * "unmatched". Series with a zero count are not rendered (a scrape lists what happened), except
 * that every family always has its HELP and TYPE. */
#include "http_metrics.h"
#include <stdatomic.h>
#include <string.h>
#include "metrics.h"

#define ROUTES_MAX 64 /* route table rows this module has room for */

static const int codes[] = {200, 201, 202, 204, 304, 400, 401, 403, 404, 405,
                            409, 413, 414, 422, 429, 431, 500, 502, 503, 504};
#define NCODES (sizeof codes / sizeof codes[0])
#define CODE_OTHER NCODES /* the slot of any other status */

static _Atomic uint64_t requests[ROUTES_MAX + 1][NCODES + 1];
static struct metrics_hist latency[ROUTES_MAX + 1];

/* The slot of a route: its table position, or ROUTES_MAX for none (or a table too long). */
static size_t route_slot(const struct route *r)
{
    size_t n;
    const struct route *t = route_table(&n);
    if (r == NULL || r < t || r >= t + n || (size_t)(r - t) >= ROUTES_MAX)
        return ROUTES_MAX;
    return (size_t)(r - t);
}

static const char *slot_name(size_t slot)
{
    size_t n;
    const struct route *t = route_table(&n);
    return slot < n && slot < ROUTES_MAX ? t[slot].name : "unmatched";
}

void http_metrics_observe(const struct route *r, int status, double seconds)
{
    size_t slot = route_slot(r), c = CODE_OTHER;
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i] == status)
            c = i;
    atomic_fetch_add_explicit(&requests[slot][c], 1, memory_order_relaxed);
    metrics_hist_observe(&latency[slot], seconds);
}

uint64_t http_metrics_total(void)
{
    uint64_t total = 0;
    for (size_t s = 0; s <= ROUTES_MAX; s++)
        for (size_t c = 0; c <= NCODES; c++)
            total += atomic_load_explicit(&requests[s][c], memory_order_relaxed);
    return total;
}

json_t *http_metrics_latency_json(void)
{
    struct metrics_hist all;
    memset(&all, 0, sizeof all);
    for (size_t s = 0; s <= ROUTES_MAX; s++)
        metrics_hist_add(&all, &latency[s]);
    return metrics_hist_json(&all);
}

int http_metrics_prometheus(struct buf *out)
{
    int rv = buf_printf(out, "# HELP aetheris_http_requests_total HTTP requests served, by route "
                             "and status code\n# TYPE aetheris_http_requests_total counter\n");
    for (size_t s = 0; s <= ROUTES_MAX && rv == 0; s++) {
        for (size_t c = 0; c <= NCODES && rv == 0; c++) {
            uint64_t n = atomic_load_explicit(&requests[s][c], memory_order_relaxed);
            if (n == 0)
                continue;
            char code[8];
            if (c == CODE_OTHER)
                memcpy(code, "other", 6);
            else
                snprintf(code, sizeof code, "%d", codes[c]);
            rv = buf_printf(out, "aetheris_http_requests_total{route=\"%s\",code=\"%s\"} %llu\n",
                            slot_name(s), code, (unsigned long long)n);
        }
    }
    if (rv == 0)
        rv = buf_printf(out, "# HELP aetheris_http_request_duration_seconds HTTP request handling "
                             "time, by route\n# TYPE aetheris_http_request_duration_seconds "
                             "histogram\n");
    for (size_t s = 0; s <= ROUTES_MAX && rv == 0; s++) {
        uint64_t n = 0;
        for (size_t c = 0; c <= NCODES; c++)
            n += atomic_load_explicit(&requests[s][c], memory_order_relaxed);
        if (n == 0)
            continue;
        char labels[96];
        snprintf(labels, sizeof labels, "route=\"%s\"", slot_name(s));
        rv =
            metrics_hist_render(&latency[s], "aetheris_http_request_duration_seconds", labels, out);
    }
    return rv;
}
