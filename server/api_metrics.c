/* GET /v1/metrics (JSON snapshot) and GET /metrics (Prometheus text exposition 0.0.4). */
#include "api.h"
#include "buf.h"
#include "clock.h"
#include "metrics.h"
#include "pipeline.h"

#define PROMETHEUS_MAX (4 << 20) /* the exposition is a few KiB; 4 MiB is a safety cap */

void api_metrics_json(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    pipeline_health(req->app->pipeline, &h);
    json_t *m = metrics_json();
    json_object_set_new(m, "queues", json_pack("{s:I}", "pipeline_batches", (json_int_t)h.queued));
    json_object_set_new(m, "accounts", json_integer((json_int_t)h.accounts));
    json_object_set_new(m, "uptime_s",
                        json_integer((clock_wall_ms() - req->app->started_ms) / 1000));
    http_json(resp, 200, m);
}

void api_metrics_prometheus(const struct http_request *req, struct http_response *resp)
{
    struct buf b;
    buf_init(&b, PROMETHEUS_MAX);
    if (metrics_prometheus(&b) != 0) {
        buf_cleanup(&b);
        http_problem(resp, 500, "internal", "metrics exposition too large", req->path);
        return;
    }
    resp->status = 200;
    resp->len = b.len;
    resp->body = buf_take(&b);
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
