/* GET /v1/metrics (JSON snapshot: the registry's counters and latency quantiles, plus queue
 * depth, tracked accounts, uptime and when it was generated; served through the Redis response
 * cache, api_cache.h, with X-Cache: HIT|MISS|BYPASS) and GET /metrics (Prometheus text exposition
 * 0.0.4, the registry rendered as is). */
#include "api.h"
#include "api_cache.h"
#include "buf.h"
#include "clock.h"
#include "metrics.h"
#include "pipeline.h"

#define PROMETHEUS_MAX (4u << 20) /* the exposition is a few KiB; 4 MiB is a safety cap */

/* The JSON snapshot as computed now. */
static void metrics_snapshot(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    pipeline_health(req->app->pipeline, &h);
    int64_t up_ms = clock_wall_ms() - req->app->started_ms;
    json_t *m = metrics_json();
    json_object_set_new(m, "queues", json_pack("{s:I}", "edge_queued", (json_int_t)h.queued));
    json_object_set_new(m, "accounts", json_integer((json_int_t)h.accounts));
    json_object_set_new(m, "uptime_s", json_integer(up_ms > 0 ? up_ms / 1000 : 0));
    json_object_set_new(m, "generated_ms", json_integer(clock_wall_ms()));
    http_json_response(resp, 200, m);
}

void api_metrics_json(const struct http_request *req, struct http_response *resp)
{
    struct api_cache_ticket ticket;
    char *body = NULL;
    size_t len = 0;
    enum api_cache_result r =
        api_cache_lookup(req->app->cache, req->route->name, "", &body, &len, &ticket);
    if (r == API_CACHE_HIT) {
        http_body_take(resp, 200, "application/json", body, len);
    } else {
        metrics_snapshot(req, resp);
        if (r == API_CACHE_MISS && resp->status == 200)
            api_cache_store(req->app->cache, &ticket, resp->body, resp->len);
    }
    http_add_header(resp, "X-Cache", api_cache_result_name(r));
}

void api_metrics_prometheus(const struct http_request *req, struct http_response *resp)
{
    struct buf b;
    buf_init(&b, PROMETHEUS_MAX);
    if (metrics_prometheus(&b) != 0) {
        buf_cleanup(&b);
        http_problem(resp, 500, PROBLEM_INTERNAL, "the metrics exposition is too large", req->path);
        return;
    }
    size_t len = b.len;
    http_body_take(resp, 200, "text/plain; version=0.0.4; charset=utf-8", buf_take(&b), len);
}
