/* GET /v1/metrics (JSON snapshot: the registry's counters, gauges and latency quantiles, plus
 * queue depth, tracked accounts, uptime and when it was generated; served through the Redis
 * response cache, api_cache.h, with X-Cache: HIT|MISS|BYPASS) and GET /metrics (Prometheus text
 * exposition 0.0.4: the registry, the per-route HTTP metrics, the process metrics and
 * aetheris_instance_info naming the instance; each instance of a cluster reports its own). Both
 * refresh the gauges that are read rather than pushed (pipeline health, Redis lanes) first. */
#include "api.h"
#include "api_cache.h"
#include "buf.h"
#include "clock.h"
#include "buffer.h"
#include "http_metrics.h"
#include "llm.h"
#include "metrics.h"
#include "rpool.h"
#include "api_params.h"
#include "pipeline.h"

#define PROMETHEUS_MAX (4u << 20) /* the exposition is a few KiB; 4 MiB is a safety cap */

/* Sets the gauges that are read rather than pushed: the pipeline's health and queues, and the
 * lanes as Redis reports them (left as they were when Redis cannot be asked; the redis
 * dependency gauge then says so). */
static void refresh_gauges(const struct http_request *req, const struct pipeline_health *h)
{
    metrics_set(G_EDGE_ACCOUNTS, (int64_t)h->accounts);
    metrics_set(G_PIPELINE_QUEUED, (int64_t)h->queued);
    metrics_set(G_UP_MQTT, h->mqtt_up);
    metrics_set(G_UP_REDIS, h->redis_up);
    metrics_set(G_UP_STORE, h->store_up);
    metrics_set(G_UP_LLM, h->llm == LLM_UP);
    struct rconn *rc = rpool_get(req->app->redis, API_REDIS_WAIT_MS);
    if (rc == NULL)
        return;
    struct buffer_keys k;
    buffer_keys_init(req->app->cfg, &k);
    static const struct {
        enum metric_gauge length, pending, lag;
    } lanes[LANE__COUNT] = {
        [LANE_IMMEDIATE] = {G_STREAM_LENGTH_IMMEDIATE, G_STREAM_PENDING_IMMEDIATE,
                            G_STREAM_LAG_IMMEDIATE},
        [LANE_BATCH] = {G_STREAM_LENGTH_BATCH, G_STREAM_PENDING_BATCH, G_STREAM_LAG_BATCH},
    };
    bool ok = true;
    for (int l = 0; l < LANE__COUNT && ok; l++) {
        struct lane_state st;
        ok = buffer_lane_state(rc, &k, (enum lane)l, &st) == 0;
        if (ok) {
            metrics_set(lanes[l].length, st.length);
            metrics_set(lanes[l].pending, st.pending);
            metrics_set(lanes[l].lag, st.lag > 0 ? st.lag : 0);
        }
    }
    redisReply *r = ok ? rconn_cmd(rc, "XLEN", k.deadletter, NULL) : NULL;
    if (r && r->type == REDIS_REPLY_INTEGER)
        metrics_set(G_STREAM_LENGTH_DEADLETTER, r->integer);
    if (r)
        freeReplyObject(r);
    rpool_put(req->app->redis, rc);
}

/* The JSON snapshot as computed now. */
static void metrics_snapshot(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    pipeline_health(req->app->pipeline, &h);
    refresh_gauges(req, &h);
    int64_t up_ms = clock_wall_ms() - req->app->started_ms;
    json_t *m = metrics_json();
    json_object_set_new(json_object_get(m, "counters"), "http_requests",
                        json_integer((json_int_t)http_metrics_total()));
    json_object_set_new(json_object_get(m, "latency_seconds"), "http_request",
                        http_metrics_latency_json());
    json_object_set_new(m, "queues", json_pack("{s:I}", "edge_queued", (json_int_t)h.queued));
    json_object_set_new(m, "accounts", json_integer((json_int_t)h.accounts));
    json_object_set_new(m, "uptime_s", json_integer(up_ms > 0 ? up_ms / 1000 : 0));
    json_object_set_new(m, "instance", json_string(req->app->cfg->node_id));
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
    metrics_inc(r == API_CACHE_HIT    ? M_CACHE_HIT
                : r == API_CACHE_MISS ? M_CACHE_MISS
                                      : M_CACHE_BYPASS);
    if (r == API_CACHE_HIT) {
        http_body_take(resp, 200, "application/json", body, len);
    } else {
        metrics_snapshot(req, resp);
        if (r == API_CACHE_MISS && resp->status == 200)
            api_cache_store(req->app->cache, &ticket, resp->body, resp->len);
    }
    http_add_header(resp, "X-Cache", api_cache_result_name(r));
}

/* Appends v as a Prometheus label value (backslash, quote and newline escaped). */
static int label_value(struct buf *b, const char *v)
{
    int rv = 0;
    for (; *v && rv == 0; v++) {
        if (*v == '\\' || *v == '"')
            rv = buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            rv = buf_append(b, "\\n", 2);
        else
            rv = buf_append(b, v, 1);
    }
    return rv;
}

/* aetheris_instance_info: which instance (node_id) and cluster this exposition belongs to, so
 * several instances' series can be told apart and joined on node_id whatever the scraper's
 * own labels are. */
static int instance_info(struct buf *b, const struct config *cfg)
{
    int rv = buf_printf(b, "# HELP aetheris_instance_info The instance serving these metrics "
                           "(always 1)\n# TYPE aetheris_instance_info gauge\n"
                           "aetheris_instance_info{node_id=\"");
    rv = rv ? rv : label_value(b, cfg->node_id);
    rv = rv ? rv : buf_printf(b, "\",cluster=\"");
    rv = rv ? rv : label_value(b, cfg->cluster_partitions > 0 ? cfg->cluster_name : "");
    return rv ? rv : buf_printf(b, "\",partitions=\"%d\"} 1\n", cfg->cluster_partitions);
}

void api_metrics_prometheus(const struct http_request *req, struct http_response *resp)
{
    struct pipeline_health h;
    pipeline_health(req->app->pipeline, &h);
    refresh_gauges(req, &h);
    struct buf b;
    buf_init(&b, PROMETHEUS_MAX);
    if (metrics_prometheus(&b) != 0 || http_metrics_prometheus(&b) != 0 ||
        instance_info(&b, req->app->cfg) != 0) {
        buf_cleanup(&b);
        http_problem(resp, 500, PROBLEM_INTERNAL, "the metrics exposition is too large", req->path);
        return;
    }
    size_t len = b.len;
    http_body_take(resp, 200, "text/plain; version=0.0.4; charset=utf-8", buf_take(&b), len);
}
