/* Token-bucket rate limiter (ratelimit.h).
 *
 * Redis path: one EVALSHA per request. The script reads TIME, refills the bucket from the time
 * since its last update (capped at the burst), takes a token when one is whole, stores
 * {tokens, ts} and sets the hash to expire once a full bucket would have refilled (an idle
 * client costs nothing). It returns {allowed, remaining, ms to the next token, ms to full}.
 * Local path: the same arithmetic over a direct-mapped table of RL_LOCAL_SLOTS buckets under a
 * mutex, on the monotonic clock; a bucket name hashing to a busy slot takes it over (starting
 * full), which can only make the fallback more lenient for colliding clients, never stricter.
 * The pool is asked with a short wait: a busy or dead Redis sends the request to the local
 * table instead of delaying it. Only a failed or refused command reports Redis as lost (health
 * and the log line); a pool that is merely busy under load does not, so the reported limiter
 * does not flap with contention. */
#include "ratelimit.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "clock.h"
#include "log.h"
#include "shard.h"
#include "xmalloc.h"

#define RL_LOCAL_SLOTS 4096
#define RL_BUCKET_MAX 96
#define RL_POOL_WAIT_MS 20

static const char TAKE_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local rate = tonumber(ARGV[1]) / 1000\n"
    "local burst = tonumber(ARGV[2])\n"
    "local s = redis.call('HMGET', KEYS[1], 'tokens', 'ts')\n"
    "local tokens = tonumber(s[1]) or burst\n"
    "local ts = tonumber(s[2]) or now\n"
    "if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end\n"
    "local allowed = 0\n"
    "if tokens >= 1 then tokens = tokens - 1; allowed = 1 end\n"
    "redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)\n"
    "local wait = 0\n"
    "if allowed == 0 then wait = math.ceil((1 - tokens) / rate) end\n"
    "return {allowed, math.floor(tokens), wait, math.ceil((burst - tokens) / rate)}\n";

struct local_bucket {
    char name[RL_BUCKET_MAX];
    double tokens;
    int64_t ts_ms;
};

struct ratelimit {
    const struct config *cfg;
    struct rpool *redis;
    struct rscript take;
    char rate_text[32], burst_text[16];
    pthread_mutex_t mu;
    struct local_bucket *local;
    atomic_bool redis_in_use;
};

struct ratelimit *ratelimit_new(const struct config *cfg, struct rpool *redis)
{
    struct ratelimit *rl = xcalloc(1, sizeof *rl);
    rl->cfg = cfg;
    rl->redis = redis;
    rscript_init(&rl->take, TAKE_LUA);
    snprintf(rl->rate_text, sizeof rl->rate_text, "%.6f", cfg->rate_limit_rps);
    snprintf(rl->burst_text, sizeof rl->burst_text, "%d", cfg->rate_limit_burst);
    rl->local = xcalloc(RL_LOCAL_SLOTS, sizeof *rl->local);
    pthread_mutex_init(&rl->mu, NULL);
    atomic_init(&rl->redis_in_use, redis != NULL);
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->mu);
    free(rl->local);
    free(rl);
}

bool ratelimit_enabled(const struct ratelimit *rl)
{
    return rl->cfg->rate_limit_rps > 0;
}

bool ratelimit_redis_in_use(const struct ratelimit *rl)
{
    return atomic_load(&rl->redis_in_use);
}

static long ms_to_s(long long ms)
{
    return ms <= 0 ? 0 : (long)((ms + 999) / 1000);
}

static void fill(struct ratelimit_result *out, bool allowed, long long remaining, long long wait_ms,
                 long long full_ms, bool local, long burst)
{
    out->allowed = allowed;
    out->limit = burst;
    out->remaining = remaining < 0 ? 0 : (long)remaining;
    out->reset_s = allowed ? ms_to_s(full_ms) : ms_to_s(wait_ms);
    out->retry_after_s = allowed ? 0 : (ms_to_s(wait_ms) < 1 ? 1 : ms_to_s(wait_ms));
    out->local = local;
}

enum redis_outcome {
    RL_REDIS_DECIDED, /* *out holds Redis's decision */
    RL_REDIS_BUSY,    /* no pooled connection came free in time: Redis itself may be fine */
    RL_REDIS_FAILED   /* no Redis, a connection error or a script error */
};

/* The Redis decision into *out when it is RL_REDIS_DECIDED. */
static enum redis_outcome take_redis(struct ratelimit *rl, const char *bucket,
                                     struct ratelimit_result *out)
{
    if (rl->redis == NULL)
        return RL_REDIS_FAILED;
    struct rconn *rc = rpool_get(rl->redis, RL_POOL_WAIT_MS);
    if (rc == NULL)
        return RL_REDIS_BUSY;
    char key[RL_BUCKET_MAX + 160];
    snprintf(key, sizeof key, "%sratelimit:%s", rl->cfg->redis_prefix, bucket);
    const char *args[3] = {key, rl->rate_text, rl->burst_text};
    redisReply *r = rscript_run(rc, &rl->take, 1, 3, args, NULL);
    rpool_put(rl->redis, rc);
    bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 4;
    for (size_t i = 0; ok && i < 4; i++)
        ok = r->element[i]->type == REDIS_REPLY_INTEGER;
    if (ok)
        fill(out, r->element[0]->integer == 1, r->element[1]->integer, r->element[2]->integer,
             r->element[3]->integer, false, rl->cfg->rate_limit_burst);
    else if (r && r->type == REDIS_REPLY_ERROR)
        log_warn("ratelimit.script", "rate-limit script failed: %s", r->str);
    if (r)
        freeReplyObject(r);
    return ok ? RL_REDIS_DECIDED : RL_REDIS_FAILED;
}

static void take_local(struct ratelimit *rl, const char *bucket, struct ratelimit_result *out)
{
    uint64_t h = shard_hash(bucket, strlen(bucket));
    double rate = rl->cfg->rate_limit_rps / 1000.0, burst = rl->cfg->rate_limit_burst;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&rl->mu);
    struct local_bucket *b = &rl->local[h % RL_LOCAL_SLOTS];
    if (strncmp(b->name, bucket, sizeof b->name) != 0) {
        snprintf(b->name, sizeof b->name, "%s", bucket);
        b->tokens = burst;
        b->ts_ms = now;
    }
    if (now > b->ts_ms)
        b->tokens = fmin(burst, b->tokens + (double)(now - b->ts_ms) * rate);
    b->ts_ms = now;
    bool allowed = b->tokens >= 1;
    if (allowed)
        b->tokens -= 1;
    double tokens = b->tokens;
    pthread_mutex_unlock(&rl->mu);
    fill(out, allowed, (long long)floor(tokens), allowed ? 0 : (long long)ceil((1 - tokens) / rate),
         (long long)ceil((burst - tokens) / rate), true, (long)burst);
}

void ratelimit_take(struct ratelimit *rl, const char *bucket, struct ratelimit_result *out)
{
    if (!ratelimit_enabled(rl)) {
        *out = (struct ratelimit_result){.allowed = true};
        return;
    }
    enum redis_outcome got = take_redis(rl, bucket, out);
    if (got != RL_REDIS_BUSY) {
        bool redis = got == RL_REDIS_DECIDED;
        if (redis != atomic_exchange(&rl->redis_in_use, redis))
            log_info(redis ? "ratelimit.redis" : "ratelimit.local",
                     redis ? "rate limiting through Redis again"
                           : "Redis unavailable: rate limiting with the in-process buckets");
    }
    if (got != RL_REDIS_DECIDED)
        take_local(rl, bucket, out);
}
