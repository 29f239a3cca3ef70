/* Health endpoints: /healthz (the process answers), /readyz (every dependency answers: for load
 * balancers), /v1/health (component detail for people and dashboards). */
#include "api.h"
#include <stdio.h>
#include <string.h>
#include "clock.h"
#include "pipeline.h"

void api_healthz(const struct http_request *req, struct http_response *resp)
{
    (void)req;
    http_json(resp, 200, json_pack("{s:s}", "status", "ok"));
}

void api_readyz(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    pipeline_health(req->app->pipeline, &h);
    if (h.mqtt_up && h.redis_up && h.store_up) {
        http_json(resp, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    char detail[128];
    snprintf(detail, sizeof detail, "not ready:%s%s%s", h.mqtt_up ? "" : " mqtt",
             h.redis_up ? "" : " redis", h.store_up ? "" : " store");
    http_problem(resp, 503, "unavailable", detail, req->path);
}

static json_t *component(bool up)
{
    return json_pack("{s:s}", "status", up ? "up" : "down");
}

void api_health(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    pipeline_health(req->app->pipeline, &h);
    const char *status = !h.store_up ? "down" : (h.mqtt_up && h.redis_up) ? "ok" : "degraded";
    json_t *store = component(h.store_up);
    json_object_set_new(store, "backend", json_string(store_backend_name(req->app->store)));
    json_t *comps = json_pack("{s:o, s:o, s:o, s:{s:s}, s:{s:s}}", "mqtt", component(h.mqtt_up),
                              "redis", component(h.redis_up), "store", store, "llm", "status",
                              "disabled", "webhooks", "status", "disabled");
    http_json(resp, 200,
              json_pack("{s:s, s:s, s:s, s:I, s:o, s:I, s:I}", "status", status, "version",
                        AETHERIS_VERSION, "node_id", req->app->cfg->node_id, "uptime_s",
                        (json_int_t)((clock_wall_ms() - req->app->started_ms) / 1000), "components",
                        comps, "queued", (json_int_t)h.queued, "accounts", (json_int_t)h.accounts));
}
