/* GET /v1/queues (every lane's depth) and GET /v1/queues/{lane} (a lane's oldest entries): the
 * Redis Streams buffer of DESIGN.md 3.4 seen from the API, read live (never cached: the point is
 * to watch it move).
 *
 * Per decision lane (immediate, batch) and the dead-letter stream:
 *   length         XLEN: entries in the stream (acknowledged ones included until trimmed)
 *   pending        delivered to a consumer and not yet acknowledged (XPENDING summary)
 *   lag            not yet delivered to the group (XINFO GROUPS "lag", Redis 7)
 *   oldest_age_ms  age of the oldest entry still to be decided: the oldest pending entry, else
 *                  the first undelivered one; null when there is none. The dead-letter stream
 *                  has no consumer group: its oldest entry.
 *   consumers      consumers of the group
 * Stream ids are "<ms>-<seq>", so an entry's age is read from its id with no extra field. */
#include "api.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "api_params.h"
#include "buffer.h"
#include "clock.h"
#include "rpool.h"

enum { QUEUE_IMMEDIATE, QUEUE_BATCH, QUEUE_DEADLETTER, QUEUE__COUNT };
static const char *const queue_names[QUEUE__COUNT] = {"immediate", "batch", "deadletter"};

static const char *queue_key(const struct buffer_keys *k, int q)
{
    return q == QUEUE_DEADLETTER ? k->deadletter : k->stream[q];
}

static json_t *age_of(const char *id, int64_t now)
{
    int64_t ms = id ? buffer_id_ms(id) : -1;
    if (ms < 0)
        return json_null();
    return json_integer(now > ms ? now - ms : 0);
}

static const char *field_str(const redisReply *map, const char *name)
{
    for (size_t i = 0; map && map->type == REDIS_REPLY_ARRAY && i + 1 < map->elements; i += 2) {
        const redisReply *k = map->element[i], *v = map->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && strcmp(k->str, name) == 0)
            return v->type == REDIS_REPLY_STRING ? v->str : NULL;
    }
    return NULL;
}

/* The id of the first entry of an XRANGE reply, or NULL. */
static const char *first_id(const redisReply *r)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements == 0)
        return NULL;
    const redisReply *e = r->element[0];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    return e->element[0]->str;
}

/* One decision lane: its state (buffer_lane_state) and, when nothing is pending, the first
 * undelivered entry. NULL when the connection failed. */
static json_t *lane_stats(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
                          int64_t now)
{
    struct lane_state st;
    if (buffer_lane_state(rc, k, lane, &st) != 0)
        return NULL;
    json_t *oldest = NULL;
    if (st.pending > 0) {
        oldest = age_of(st.oldest_pending, now);
    } else {
        /* Nothing pending: the oldest entry to decide is the first one after last-delivered
         * (the whole stream when the group does not exist yet). */
        char start[BUFFER_ID_MAX + 2];
        snprintf(start, sizeof start, "(%s", st.last_delivered);
        redisReply *x = rconn_cmd(rc, "XRANGE", k->stream[lane], st.last_delivered[0] ? start : "-",
                                  "+", "COUNT", "1", NULL);
        if (x == NULL)
            return NULL;
        oldest = age_of(first_id(x), now);
        freeReplyObject(x);
    }
    json_t *out = json_pack("{s:I, s:I, s:o, s:I}", "length", (json_int_t)st.length, "pending",
                            (json_int_t)st.pending, "oldest_age_ms", oldest, "consumers",
                            (json_int_t)st.consumers);
    json_object_set_new(out, "lag",
                        !st.group     ? json_integer(0)
                        : st.lag >= 0 ? json_integer(st.lag)
                                      : json_null());
    return out;
}

/* The dead-letter stream: no consumer group, every entry is waiting for a person. */
static json_t *deadletter_stats(struct rconn *rc, const struct buffer_keys *k, int64_t now)
{
    struct rcmd cmds[2] = {0};
    rcmd_add(&cmds[0], "XLEN");
    rcmd_add(&cmds[0], k->deadletter);
    rcmd_add(&cmds[1], "XRANGE");
    rcmd_add(&cmds[1], k->deadletter);
    rcmd_add(&cmds[1], "-");
    rcmd_add(&cmds[1], "+");
    rcmd_add(&cmds[1], "COUNT");
    rcmd_add(&cmds[1], "1");
    redisReply *r[2] = {0};
    if (rconn_pipeline(rc, 2, cmds, r) != 0)
        return NULL;
    long long length = r[0]->type == REDIS_REPLY_INTEGER ? r[0]->integer : 0;
    json_t *lane =
        json_pack("{s:I, s:i, s:o, s:i, s:i}", "length", (json_int_t)length, "pending", 0,
                  "oldest_age_ms", age_of(first_id(r[1]), now), "consumers", 0, "lag", 0);
    freeReplyObject(r[0]);
    freeReplyObject(r[1]);
    return lane;
}

void api_queues_list(const struct http_request *req, struct http_response *resp)
{
    struct rconn *rc = api_redis_borrow(req, resp);
    if (rc == NULL)
        return;
    struct buffer_keys k;
    buffer_keys_init(req->app->cfg, &k);
    int64_t now = clock_wall_ms();
    json_t *lanes = json_object();
    bool ok = true;
    for (int q = 0; q < QUEUE__COUNT && ok; q++) {
        json_t *lane =
            q == QUEUE_DEADLETTER ? deadletter_stats(rc, &k, now) : lane_stats(rc, &k, q, now);
        ok = lane != NULL;
        if (ok)
            json_object_set_new(lanes, queue_names[q], lane);
    }
    rpool_put(req->app->redis, rc);
    if (!ok) {
        json_decref(lanes);
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "Redis is unavailable", req->path);
        return;
    }
    http_json_response(resp, 200, json_pack("{s:o}", "lanes", lanes));
}

/* One XRANGE entry as an API item: id, enqueued_ms, and per lane kind the exception (parsed
 * payload) and suspicion, or the dead-letter reason and source lane. */
static json_t *entry_item(const redisReply *e, bool deadletter)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return NULL;
    const char *id = e->element[0]->str;
    const redisReply *fields = e->element[1];
    int64_t ms = buffer_id_ms(id);
    json_t *item =
        json_pack("{s:s, s:o}", "id", id, "enqueued_ms", ms >= 0 ? json_integer(ms) : json_null());
    const char *payload = field_str(fields, "payload");
    json_t *exception = payload ? json_loads(payload, 0, NULL) : NULL;
    json_object_set_new(item, "exception", exception ? exception : json_null());
    if (deadletter) {
        const char *reason = field_str(fields, "reason"), *lane = field_str(fields, "lane");
        json_object_set_new(item, "reason", json_string(reason ? reason : ""));
        json_object_set_new(item, "source_lane", json_string(lane ? lane : ""));
        json_object_set_new(item, "suspicion", json_null());
    } else {
        const char *s = field_str(fields, "suspicion");
        char *end = NULL;
        double v = s ? strtod(s, &end) : 0;
        json_object_set_new(item, "suspicion",
                            (s && end != s && *end == '\0') ? json_real(v) : json_null());
    }
    return item;
}

void api_queues_get(const struct http_request *req, struct http_response *resp)
{
    int q = 0;
    while (q < QUEUE__COUNT && strcmp(queue_names[q], req->params[0]) != 0)
        q++;
    if (q == QUEUE__COUNT) {
        http_problem(resp, 404, PROBLEM_NOT_FOUND,
                     "no such queue; queues are immediate, batch and deadletter", req->path);
        return;
    }
    int limit = 0;
    if (api_params_serve_limit(req, resp, 0, &limit) != 0)
        return;
    struct rconn *rc = api_redis_borrow(req, resp);
    if (rc == NULL)
        return;
    struct buffer_keys k;
    buffer_keys_init(req->app->cfg, &k);
    char count[16];
    snprintf(count, sizeof count, "%d", limit);
    redisReply *r = rconn_cmd(rc, "XRANGE", queue_key(&k, q), "-", "+", "COUNT", count, NULL);
    rpool_put(req->app->redis, rc);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (r)
            freeReplyObject(r);
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "Redis is unavailable", req->path);
        return;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < r->elements; i++) {
        json_t *item = entry_item(r->element[i], q == QUEUE_DEADLETTER);
        if (item)
            json_array_append_new(items, item);
    }
    freeReplyObject(r);
    http_json_response(resp, 200, json_pack("{s:s, s:o}", "lane", queue_names[q], "items", items));
}
