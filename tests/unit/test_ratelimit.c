/* The token-bucket rate limiter (ratelimit.c) against a real redis-server: a burst then refusal
 * with the RateLimit-* values, refill over time, per-bucket independence, one bucket shared by
 * two limiters (two daemons on one Redis), the bucket's expiry in Redis, atomicity under
 * concurrent takers, fractional rates; then Redis stopped (the in-process buckets take over with
 * the same limit) and restarted (Redis decides again), a busy pool, and disabled limiting. */
#include "ratelimit.h"
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "servers.h"
#include "tap.h"

static char url[128];

static struct config limits(double rps, int burst)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.rate_limit_rps = rps;
    cfg.rate_limit_burst = burst;
    return cfg;
}

/* One Redis command's integer reply, or -100 on any failure. */
static long long redis_int(struct rpool *p, const char *cmd, const char *key)
{
    struct rconn *c = rpool_get(p, 1000);
    redisReply *r = c ? rconn_cmd(c, cmd, key, NULL) : NULL;
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -100;
    if (r)
        freeReplyObject(r);
    if (c)
        rpool_put(p, c);
    return v;
}

static void test_bucket(struct rpool *p)
{
    struct config cfg = limits(4, 3); /* a token every 250 ms */
    struct ratelimit *rl = ratelimit_new(&cfg, p);
    ok(ratelimit_enabled(rl), "enabled with rps > 0");
    struct ratelimit_result r;
    for (int i = 0; i < 3; i++) {
        ratelimit_take(rl, "key:a", &r);
        ok(r.allowed && !r.local && r.limit == 3 && r.remaining == 2 - i,
           "take %d allowed by Redis, %ld left", i + 1, r.remaining);
        ok(r.reset_s == 1 && r.retry_after_s == 0, "reset 1 s (full in <= 750 ms), no Retry-After");
    }
    ratelimit_take(rl, "key:a", &r);
    ok(!r.allowed && !r.local && r.remaining == 0, "the 4th is refused");
    ok(r.retry_after_s == 1 && r.reset_s == 1, "Retry-After and Reset round up to 1 s");
    ok(ratelimit_redis_in_use(rl), "Redis in use");
    ratelimit_take(rl, "key:b", &r);
    ok(r.allowed && r.remaining == 2, "another bucket is independent");

    long long pttl = redis_int(p, "PTTL", "aetheris:ratelimit:key:a");
    ok(pttl > 0 && pttl <= 1750, "the Redis bucket expires about when full again (%lld ms)", pttl);
    is_int(redis_int(p, "EXISTS", "aetheris:ratelimit:key:nobody"), 0, "no state for idle keys");

    srv_sleep_ms(300);
    ratelimit_take(rl, "key:a", &r);
    ok(r.allowed && r.remaining == 0, "one token back after ~250 ms");
    ratelimit_take(rl, "key:a", &r);
    ok(!r.allowed, "and only one");
    srv_sleep_ms(900);
    int allowed = 0;
    for (int i = 0; i < 5; i++) {
        ratelimit_take(rl, "key:a", &r);
        allowed += r.allowed;
    }
    is_int(allowed, 3, "refill stops at the burst");

    struct ratelimit *other = ratelimit_new(&cfg, p); /* a second daemon on the same Redis */
    ratelimit_take(rl, "key:shared", &r);
    ratelimit_take(other, "key:shared", &r);
    ok(r.allowed && r.remaining == 1, "two limiters share one bucket through Redis");
    ratelimit_free(other);
    ratelimit_free(rl);

    struct config slow = limits(0.5, 1); /* a token every 2 s */
    rl = ratelimit_new(&slow, p);
    ratelimit_take(rl, "key:slow", &r);
    ok(r.allowed && r.remaining == 0 && r.reset_s == 2, "0.5 rps: full again in 2 s");
    ratelimit_take(rl, "key:slow", &r);
    ok(!r.allowed && r.retry_after_s == 2, "refused for 2 s");
    ratelimit_free(rl);

    struct config off = limits(0, 3);
    rl = ratelimit_new(&off, p);
    ok(!ratelimit_enabled(rl), "rps 0 disables limiting");
    allowed = 0;
    for (int i = 0; i < 10; i++) {
        ratelimit_take(rl, "key:free", &r);
        allowed += r.allowed && r.limit == 0;
    }
    is_int(allowed, 10, "disabled: everything allowed, no limit to report");
    is_int(redis_int(p, "EXISTS", "aetheris:ratelimit:key:free"), 0, "and no Redis state");
    ratelimit_free(rl);
}

struct racer {
    struct ratelimit *rl;
    atomic_int *allowed, *local;
};

static void *race(void *arg)
{
    struct racer *x = arg;
    for (int i = 0; i < 25; i++) {
        struct ratelimit_result r;
        ratelimit_take(x->rl, "key:race", &r);
        atomic_fetch_add(x->allowed, r.allowed);
        atomic_fetch_add(x->local, r.local);
    }
    return NULL;
}

static void test_atomic(struct rpool *p)
{
    struct config cfg = limits(0.001, 20); /* no refill during the test */
    struct ratelimit *rl = ratelimit_new(&cfg, p);
    atomic_int allowed = 0, local = 0;
    struct racer x = {rl, &allowed, &local};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, race, &x);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    is_int(atomic_load(&local), 0, "4 threads on a 4-connection pool: all decided by Redis");
    is_int(atomic_load(&allowed), 20, "100 concurrent takes from a burst of 20: exactly 20 pass");
    ratelimit_free(rl);
}

static void test_outage(struct test_server *srv, struct rpool *p)
{
    struct config cfg = limits(10, 3);
    struct ratelimit *rl = ratelimit_new(&cfg, p);
    struct ratelimit_result r;
    ratelimit_take(rl, "key:o", &r);
    ok(r.allowed && !r.local, "Redis decides");

    srv_kill(srv, SIGKILL);
    int allowed = 0;
    long long t0 = srv_now_ms();
    for (int i = 0; i < 5; i++) {
        ratelimit_take(rl, "key:o", &r);
        allowed += r.allowed;
        ok(r.local && r.limit == 3, "Redis down: take %d decided locally", i + 1);
    }
    ok(srv_now_ms() - t0 < 1000, "without waiting on the dead Redis");
    is_int(allowed, 3, "the local bucket enforces the same burst");
    ok(!r.allowed && r.retry_after_s == 1, "with Retry-After");
    ok(!ratelimit_redis_in_use(rl), "the fallback is reported");

    ok(srv_restart(srv), "redis restarted");
    long long end = srv_now_ms() + 5000; /* the reconnect backoff is at most 2 s */
    do {
        srv_sleep_ms(50);
        ratelimit_take(rl, "key:back", &r);
    } while (r.local && srv_now_ms() < end);
    ok(!r.local && r.allowed, "Redis decides again after it returns");
    ok(ratelimit_redis_in_use(rl), "and is reported in use");
    ratelimit_free(rl);

    /* Every pooled connection busy: the request is decided locally at once instead of waiting,
     * but Redis is not reported lost. */
    rl = ratelimit_new(&cfg, p);
    struct rconn *held[4];
    for (int i = 0; i < 4; i++)
        held[i] = rpool_get(p, 1000);
    t0 = srv_now_ms();
    ratelimit_take(rl, "key:busy", &r);
    ok(r.local && r.allowed, "a busy pool: decided locally");
    ok(srv_now_ms() - t0 < 500, "after a short wait");
    ok(ratelimit_redis_in_use(rl), "Redis is still reported in use");
    for (int i = 0; i < 4; i++)
        rpool_put(p, held[i]);
    ratelimit_free(rl);

    rl = ratelimit_new(&cfg, NULL);
    ratelimit_take(rl, "ip:127.0.0.1", &r);
    ok(r.local && r.allowed && r.remaining == 2, "without Redis at all: local buckets");
    ok(!ratelimit_redis_in_use(rl), "reported as local");
    ratelimit_free(rl);
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    struct test_server srv;
    srv_start_or_exit(&srv, SRV_REDIS, NULL);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", srv.port);
    char err[256];
    struct rpool *p = rpool_new(url, 300, 4, err, sizeof err);
    test_bucket(p);
    test_atomic(p);
    test_outage(&srv, p);
    rpool_free(p);
    srv_cleanup(&srv);
    return done_testing();
}
