/* Route table and matcher (route.h). Matching walks the table once, segment by segment; the table
 * is small (a dozen routes) so a linear scan beats any index in clarity and costs well under a
 * microsecond. */
#include "route.h"
#include <stdio.h>
#include <string.h>
#include "api.h"

static const struct route routes[] = {
    {"GET", "/healthz", api_healthz, SCOPE_PUBLIC, false, "healthz"},
    {"GET", "/readyz", api_readyz, SCOPE_PUBLIC, false, "readyz"},
    {"GET", "/v1/health", api_health, SCOPE_PUBLIC, false, "health"},
    {"GET", "/v1/anomalies", api_anomalies_list, SCOPE_READ, false, "anomalies_list"},
    {"GET", "/v1/anomalies/{transaction_id}", api_anomalies_get, SCOPE_READ, false,
     "anomalies_get"},
    {"GET", "/v1/decisions", api_decisions_list, SCOPE_READ, false, "decisions_list"},
    {"GET", "/v1/decisions/{transaction_id}", api_decisions_get, SCOPE_READ, false,
     "decisions_get"},
    {"GET", "/v1/deadletter", api_deadletter_list, SCOPE_READ, false, "deadletter_list"},
    {"POST", "/v1/events", api_events_post, SCOPE_WRITE, true, "events_post"},
    {"GET", "/v1/metrics", api_metrics_json, SCOPE_READ, false, "metrics_json"},
    {"GET", "/metrics", api_metrics_prometheus, SCOPE_PUBLIC, false, "metrics_prometheus"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

const struct route *route_table(size_t *n)
{
    *n = NROUTES;
    return routes;
}

/* Matches path against pattern, capturing {params}; false on mismatch. */
static bool path_matches(const char *pattern, const char *path, struct route_params *params)
{
    params->n = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *pend = strchr(p, '}');
            size_t len = strcspn(s, "/");
            if (pend == NULL || len == 0 || len > ROUTE_PARAM_MAX || params->n == ROUTE_MAX_PARAMS)
                return false;
            memcpy(params->value[params->n], s, len);
            params->value[params->n][len] = '\0';
            params->n++;
            p = pend + 1;
            s += len;
            continue;
        }
        if (*p != *s)
            return false;
        p++;
        s++;
    }
    return *p == '\0' && *s == '\0';
}

enum route_match_result route_match(const char *method, const char *path, const struct route **out,
                                    struct route_params *params, char *allow, size_t allowlen)
{
    bool path_known = false;
    size_t used = 0;
    if (allowlen)
        allow[0] = '\0';
    const char *m = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (size_t i = 0; i < NROUTES; i++) {
        struct route_params tmp;
        if (!path_matches(routes[i].pattern, path, &tmp))
            continue;
        if (strcmp(routes[i].method, m) == 0) {
            *out = &routes[i];
            *params = tmp;
            return ROUTE_MATCH;
        }
        path_known = true;
        int n = snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", routes[i].method);
        if (n > 0 && used + (size_t)n < allowlen)
            used += (size_t)n;
    }
    return path_known ? ROUTE_METHOD_NOT_ALLOWED : ROUTE_NOT_FOUND;
}
