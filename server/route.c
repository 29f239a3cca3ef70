/* Route table and matcher (route.h). The table is small (a dozen routes), so matching is a linear
 * scan that compares segment by segment: clearer than any index and well under a microsecond.
 * The scan never stops at the first path match, because a 405 must list every method the path
 * has. Parameter segments are validated here (length, no NUL escape, no control bytes), so
 * handlers only check their own syntax (e.g. digits for a transaction id). */
#include "route.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "api.h"

#define WEBHOOK_BODY_MAX 16384 /* a subscription document is well under 4 KiB */

static const struct route routes[] = {
    {ROUTE_GET, "/healthz", api_healthz, ROUTE_SCOPE_PUBLIC, 0, 0, "healthz"},
    {ROUTE_GET, "/readyz", api_readyz, ROUTE_SCOPE_PUBLIC, 0, 0, "readyz"},
    {ROUTE_GET, "/v1/health", api_health, ROUTE_SCOPE_PUBLIC, 0, 0, "health"},
    {ROUTE_GET, "/v1/anomalies", api_anomalies_list, ROUTE_SCOPE_READ, 0, 0, "anomalies_list"},
    {ROUTE_GET, "/v1/anomalies/{transaction_id}", api_anomalies_get, ROUTE_SCOPE_READ, 0, 0,
     "anomalies_get"},
    {ROUTE_GET, "/v1/decisions", api_decisions_list, ROUTE_SCOPE_READ, 0, 0, "decisions_list"},
    {ROUTE_GET, "/v1/decisions/{transaction_id}", api_decisions_get, ROUTE_SCOPE_READ, 0, 0,
     "decisions_get"},
    {ROUTE_GET, "/v1/deadletter", api_deadletter_list, ROUTE_SCOPE_READ, 0, 0, "deadletter_list"},
    {ROUTE_GET, "/v1/queues", api_queues_list, ROUTE_SCOPE_READ, 0, 0, "queues_list"},
    {ROUTE_GET, "/v1/queues/{lane}", api_queues_get, ROUTE_SCOPE_READ, 0, 0, "queues_get"},
    {ROUTE_GET, "/v1/cluster", api_cluster_get, ROUTE_SCOPE_READ, 0, 0, "cluster_get"},
    {ROUTE_GET, "/v1/accounts/{account_id}", api_accounts_get, ROUTE_SCOPE_READ, 0, 0,
     "accounts_get"},
    {ROUTE_POST, "/v1/events", api_events_post, ROUTE_SCOPE_WRITE, 0, ROUTE_BODY_CONFIG,
     "events_post"},
    {ROUTE_GET, "/v1/stream", api_stream, ROUTE_SCOPE_READ, 0, 0, "stream"},
    {ROUTE_GET, "/v1/metrics", api_metrics_json, ROUTE_SCOPE_READ, 0, 0, "metrics_json"},
    {ROUTE_GET, "/v1/webhooks", api_webhooks_list, ROUTE_SCOPE_READ, 0, 0, "webhooks_list"},
    {ROUTE_POST, "/v1/webhooks", api_webhooks_create, ROUTE_SCOPE_ADMIN, WEBHOOK_BODY_MAX, 0,
     "webhooks_create"},
    {ROUTE_GET, "/v1/webhooks/{webhook_id}", api_webhooks_get, ROUTE_SCOPE_READ, 0, 0,
     "webhooks_get"},
    {ROUTE_PATCH, "/v1/webhooks/{webhook_id}", api_webhooks_patch, ROUTE_SCOPE_ADMIN,
     WEBHOOK_BODY_MAX, 0, "webhooks_patch"},
    {ROUTE_DELETE, "/v1/webhooks/{webhook_id}", api_webhooks_delete, ROUTE_SCOPE_ADMIN, 0, 0,
     "webhooks_delete"},
    {ROUTE_POST, "/v1/webhooks/{webhook_id}/test", api_webhooks_test, ROUTE_SCOPE_ADMIN, 0, 0,
     "webhooks_test"},
    {ROUTE_POST, "/v1/webhooks/{webhook_id}/rotate-secret", api_webhooks_rotate, ROUTE_SCOPE_ADMIN,
     0, 0, "webhooks_rotate_secret"},
    {ROUTE_GET, "/v1/webhooks/{webhook_id}/deliveries", api_webhooks_deliveries, ROUTE_SCOPE_READ,
     0, 0, "webhooks_deliveries"},
    {ROUTE_GET, "/openapi.json", api_openapi_json, ROUTE_SCOPE_PUBLIC, 0, 0, "openapi_json"},
    {ROUTE_GET, "/openapi.yaml", api_openapi_yaml, ROUTE_SCOPE_PUBLIC, 0, 0, "openapi_yaml"},
    {ROUTE_GET, "/metrics", api_metrics_prometheus, ROUTE_SCOPE_PUBLIC, 0, ROUTE_METRICS_SCOPE,
     "metrics_prometheus"},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static const struct {
    enum route_method bit;
    const char *name;
} methods[] = {
    {ROUTE_GET, "GET"},     {ROUTE_POST, "POST"},     {ROUTE_PUT, "PUT"},
    {ROUTE_PATCH, "PATCH"}, {ROUTE_DELETE, "DELETE"},
};
#define NMETHODS (sizeof methods / sizeof methods[0])

const struct route *route_table(size_t *n)
{
    *n = NROUTES;
    return routes;
}

unsigned route_method_parse(const char *method)
{
    if (strcmp(method, "HEAD") == 0)
        return ROUTE_GET;
    for (size_t i = 0; i < NMETHODS; i++)
        if (strcmp(methods[i].name, method) == 0)
            return methods[i].bit;
    return 0;
}

const char *route_method_name(enum route_method m)
{
    for (size_t i = 0; i < NMETHODS; i++)
        if (methods[i].bit == m)
            return methods[i].name;
    return "";
}

char *route_allow_format(unsigned mask, char *out, size_t outlen)
{
    size_t used = 0;
    if (outlen == 0)
        return out;
    out[0] = '\0';
    for (size_t i = 0; i < NMETHODS; i++) {
        if (!(mask & methods[i].bit))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", methods[i].name);
        if (n < 0 || used + (size_t)n >= outlen) {
            out[used] = '\0'; /* drop the partial method */
            break;
        }
        used += (size_t)n;
    }
    return out;
}

const char *route_scope_name(enum route_scope s)
{
    switch (s) {
    case ROUTE_SCOPE_PUBLIC:
        return "public";
    case ROUTE_SCOPE_READ:
        return "read";
    case ROUTE_SCOPE_WRITE:
        return "write";
    case ROUTE_SCOPE_ADMIN:
        return "admin";
    }
    return "unknown";
}

size_t route_body_cap(const struct route *r, size_t configured_max)
{
    return (r->flags & ROUTE_BODY_CONFIG) ? configured_max : r->body_max;
}

/* A capturable segment: non-empty, bounded, no control bytes and no NUL escape (MHD leaves "%00"
 * undecoded, see http.c, so a NUL can never cut an id short unnoticed). */
static bool param_ok(const char *s, size_t len)
{
    if (len == 0 || len > ROUTE_PARAM_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c == '%' && i + 2 < len && s[i + 1] == '0' && s[i + 2] == '0')
            return false;
    }
    return true;
}

/* Matches path against pattern segment by segment, capturing {params}; false on mismatch. */
static bool path_matches(const char *pattern, const char *path, struct route_params *params)
{
    const char *p = pattern, *s = path;
    params->n = 0;
    for (;;) {
        if (*p == '\0' && *s == '\0')
            return true;
        if (*p != '/' || *s != '/')
            return false;
        p++;
        s++;
        size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
        if (*p == '{') {
            if (!param_ok(s, slen) || params->n == ROUTE_MAX_PARAMS)
                return false;
            memcpy(params->value[params->n], s, slen);
            params->value[params->n][slen] = '\0';
            params->n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return false;
        }
        p += plen;
        s += slen;
    }
}

enum route_result route_match(const char *method, const char *path, const struct route **out,
                              struct route_params *params, unsigned *allowed)
{
    unsigned want = route_method_parse(method);
    *allowed = 0;
    for (size_t i = 0; i < NROUTES; i++) {
        struct route_params tmp;
        if (!path_matches(routes[i].pattern, path, &tmp))
            continue;
        if ((unsigned)routes[i].method == want) {
            *out = &routes[i];
            *params = tmp;
            *allowed = 0; /* other methods of the same path seen before do not matter */
            return ROUTE_MATCH;
        }
        *allowed |= (unsigned)routes[i].method;
    }
    return *allowed ? ROUTE_METHOD_NOT_ALLOWED : ROUTE_NOT_FOUND;
}
