/* Health endpoints: GET /healthz (the process answers: liveness), GET /readyz (broker, Redis and
 * store all answer: for load balancers and test harnesses), GET /v1/health (component detail for
 * people and dashboards, including whether the response cache is in use or bypassed because
 * Redis is unreachable). pipeline_health pings the store on every call, so readiness reflects
 * the store at the moment of the probe. */
#include "api.h"
#include "api_cache.h"
#include "auth.h"
#include "ratelimit.h"
#include "stream.h"
#include "llm.h"
#include "webhooks.h"
#include <stdio.h>
#include "clock.h"
#include "pipeline.h"
#include "rpool.h"

/* The pipeline's view of its dependencies (the store pinged now), with the API's own Redis. */
static void probe(const struct http_request *req, struct pipeline_health *h)
{
    pipeline_health(req->app->pipeline, h);
    h->redis_up = h->redis_up && (req->app->redis == NULL || rpool_is_up(req->app->redis));
}

static json_int_t uptime_s(const struct app *app)
{
    int64_t ms = clock_wall_ms() - app->started_ms;
    return ms > 0 ? (json_int_t)(ms / 1000) : 0;
}

void api_healthz(const struct http_request *req, struct http_response *resp)
{
    (void)req;
    http_json_response(resp, 200, json_pack("{s:s}", "status", "ok"));
}

void api_readyz(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    probe(req, &h);
    if (h.mqtt_up && h.redis_up && h.store_up) {
        http_json_response(resp, 200, json_pack("{s:s}", "status", "ready"));
        return;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "not ready; down:%s%s%s", h.mqtt_up ? "" : " mqtt",
             h.redis_up ? "" : " redis", h.store_up ? "" : " store");
    http_problem(resp, 503, PROBLEM_UNAVAILABLE, detail, req->path);
}

static json_t *component(bool up)
{
    return json_pack("{s:s}", "status", up ? "up" : "down");
}

/* The LLM agents: "disabled" (rule agents), "up", or "degraded" (breaker open: rule agents
 * decide until a trial call succeeds). */
static const char *llm_status(int state)
{
    return state == LLM_UP ? "up" : state == LLM_DEGRADED ? "degraded" : "disabled";
}

/* {"status": "up"|"down"|"disabled", "enabled", "disabled", "inflight", "outbox"}. */
static json_t *webhooks_component(const struct app *app)
{
    if (app->webhooks == NULL)
        return json_pack("{s:s}", "status", "disabled");
    struct webhooks_health wh;
    webhooks_health(app->webhooks, &wh);
    return json_pack("{s:s, s:i, s:i, s:i, s:I}", "status", wh.running ? "up" : "down", "enabled",
                     wh.enabled, "disabled", wh.disabled, "inflight", wh.inflight, "outbox",
                     (json_int_t)wh.outbox);
}

void api_health(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    probe(req, &h);
    const char *status = !h.store_up                                        ? "down"
                         : h.mqtt_up && h.redis_up && h.llm != LLM_DEGRADED ? "ok"
                                                                            : "degraded";
    json_t *store = component(h.store_up);
    json_object_set_new(store, "backend", json_string(store_backend_name(req->app->store)));
    const struct app *app = req->app;
    bool cache_up = app->cache == NULL || api_cache_up(app->cache);
    json_t *cache = json_pack("{s:s, s:i, s:i, s:I}", "status", cache_up ? "up" : "bypassed",
                              "ttl_s", app->cfg->cache_ttl_s, "invalidate_ms",
                              app->cfg->cache_invalidate_ms, "invalidations",
                              (json_int_t)(app->cache ? api_cache_invalidations(app->cache) : 0));
    const char *limiter = app->limiter == NULL || !ratelimit_enabled(app->limiter) ? "disabled"
                          : ratelimit_redis_in_use(app->limiter)                   ? "redis"
                                                                                   : "local";
    json_t *components = json_pack(
        "{s:o, s:o, s:o, s:o, s:{s:s}, s:{s:s}, s:{s:s}, s:o}", "mqtt", component(h.mqtt_up),
        "redis", component(h.redis_up), "store", store, "cache", cache, "ratelimit", "status",
        limiter, "auth", "status", app->auth && !auth_enabled(app->auth) ? "disabled" : "enabled",
        "llm", "status", llm_status(h.llm), "webhooks", webhooks_component(app));
    if (app->streams)
        json_object_set_new(components, "stream",
                            json_pack("{s:s, s:I, s:i}", "status", "up", "clients",
                                      (json_int_t)stream_hub_clients(app->streams), "max",
                                      app->cfg->sse_max_streams));
    http_json_response(resp, 200,
                       json_pack("{s:s, s:s, s:s, s:I, s:o, s:I, s:I}", "status", status, "version",
                                 AETHERIS_VERSION, "node_id", req->app->cfg->node_id, "uptime_s",
                                 uptime_s(req->app), "components", components, "queued",
                                 (json_int_t)h.queued, "accounts", (json_int_t)h.accounts));
}
