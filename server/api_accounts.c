/* GET /v1/accounts/{account_id}: what the service knows of one account right now: its rolling
 * window as the edge holds it (n, W, exact mean and std, the last z; in cluster mode, for an
 * account whose partition another instance consumes, the window of that partition's last saved
 * state in Redis, at most one snapshot interval old), the kill-switch lock in
 * Redis (set after a BLOCK consensus, DESIGN.md 3.4) with its remaining lifetime, and its newest
 * decisions from the store (?limit=, default 10). 404 when none of the three knows the account.
 * A Redis outage does not fail the request: the lock is reported as unknown (null). */
#include "api.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "api_params.h"
#include "buffer.h"
#include "cluster.h"
#include "err.h"
#include "event.h"
#include "pipeline.h"
#include "rpool.h"
#include "shard.h"
#include "snapshot.h"

#define ACCOUNT_DECISIONS_DEFAULT 10

/* {"locked": bool, "ttl_s": int|null}, both null when Redis cannot be asked. */
static json_t *lock_state(const struct http_request *req, const char *account, bool *locked)
{
    *locked = false;
    struct rconn *rc = rpool_get(req->app->redis, API_REDIS_WAIT_MS);
    redisReply *r = NULL;
    if (rc) {
        struct buffer_keys k;
        buffer_keys_init(req->app->cfg, &k);
        char key[sizeof k.lock_prefix + EVENT_ACCOUNT_MAX + 1];
        snprintf(key, sizeof key, "%s%s", k.lock_prefix, account);
        r = rconn_cmd(rc, "PTTL", key, NULL);
        rpool_put(req->app->redis, rc);
    }
    if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
        if (r)
            freeReplyObject(r);
        return json_pack("{s:n, s:n}", "locked", "ttl_s");
    }
    long long pttl = r->integer; /* -2: no key, -1: no expiry, else ms left */
    freeReplyObject(r);
    *locked = pttl != -2;
    json_t *ttl = pttl >= 0 ? json_integer((pttl + 999) / 1000) : json_null();
    return json_pack("{s:b, s:o}", "locked", *locked, "ttl_s", ttl);
}

struct saved_lookup {
    const char *account;
    struct pipeline_account *out;
    uint32_t window;
    bool found;
};

static int on_saved_header(void *ctx, uint64_t seq, uint32_t window)
{
    struct saved_lookup *l = ctx;
    (void)seq;
    l->window = window;
    return 0;
}

/* Two-pass population statistics of the saved window, as the edge computes them. */
static int on_saved_account(void *ctx, const char *account, const double *vals, uint32_t n,
                            double last_z)
{
    struct saved_lookup *l = ctx;
    if (strcmp(account, l->account) != 0)
        return 0;
    double sum = 0, ss = 0;
    for (uint32_t i = 0; i < n; i++)
        sum += vals[i];
    double mean = n ? sum / n : 0;
    for (uint32_t i = 0; i < n; i++)
        ss += (vals[i] - mean) * (vals[i] - mean);
    *l->out = (struct pipeline_account){
        .n = n, .window = l->window, .mean = mean, .std = n ? sqrt(ss / n) : 0, .last_z = last_z};
    l->found = true;
    return 1; /* found: stop the walk */
}

/* Cluster mode: the account's window from its partition's saved state in Redis. */
static bool saved_window(const struct http_request *req, const char *account,
                         struct pipeline_account *out)
{
    const struct cluster *c = pipeline_cluster(req->app->pipeline);
    if (c == NULL || account[0] == '\0')
        return false;
    char key[CONFIG_STR_MAX];
    cluster_key_snap(req->app->cfg, partition_of(account, cluster_partitions(c)), key, sizeof key);
    struct rconn *rc = rpool_get(req->app->redis, API_REDIS_WAIT_MS);
    if (rc == NULL)
        return false;
    redisReply *r = rconn_cmd(rc, "HGET", key, "image", NULL);
    rpool_put(req->app->redis, rc);
    struct saved_lookup l = {account, out, 0, false};
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        struct snapshot_visitor v = {&l, on_saved_header, NULL, on_saved_account};
        snapshot_parse(r->str, r->len, "saved partition state", &v);
    }
    if (r)
        freeReplyObject(r);
    return l.found;
}

void api_accounts_get(const struct http_request *req, struct http_response *resp)
{
    const char *account = req->params[0];
    if (strlen(account) > EVENT_ACCOUNT_MAX) {
        char detail[96];
        snprintf(detail, sizeof detail, "account_id must be 1 to %d bytes", EVENT_ACCOUNT_MAX);
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER, detail, req->path);
        return;
    }
    int limit = 0;
    if (api_params_serve_limit(req, resp, ACCOUNT_DECISIONS_DEFAULT, &limit) != 0)
        return;

    struct pipeline_account w;
    bool known_window =
        pipeline_account(req->app->pipeline, account, &w) == 0 || saved_window(req, account, &w);
    struct store_query q = {.account = account, .limit = limit};
    json_t *decisions = NULL;
    char next[STORE_CURSOR_MAX];
    if (store_list_decisions(req->app->store, &q, &decisions, next) != 0) {
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "the store is unavailable", req->path);
        return;
    }
    bool locked = false;
    json_t *lock = lock_state(req, account, &locked);
    if (!known_window && !locked && json_array_size(decisions) == 0) {
        json_decref(lock);
        json_decref(decisions);
        http_problem(resp, 404, PROBLEM_NOT_FOUND, "no such account", req->path);
        return;
    }
    json_t *window =
        known_window ? json_pack("{s:i, s:i, s:f, s:f, s:f}", "n", (int)w.n, "size", (int)w.window,
                                 "mean", w.mean, "std", w.std, "last_z", w.last_z)
                     : json_null();
    http_json_response(resp, 200,
                       json_pack("{s:s, s:o, s:o, s:o}", "account", account, "window", window,
                                 "lock", lock, "recent_decisions", decisions));
}
