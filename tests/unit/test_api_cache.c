/* rpool and the response cache (api_cache.c) against a real redis-server: pool borrow/return and
 * its timeout when exhausted, Lua scripts through EVALSHA with the EVAL fallback, cache MISS ->
 * store -> HIT, invalidation by the generation counter when the event counters move (coalesced:
 * one INCR for many events), and the outage cycle: BYPASS while Redis is down, no stale HIT after
 * it returns until the owed invalidation is made. */
#include "api_cache.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "metrics.h"
#include "servers.h"
#include "tap.h"

static char url[128];

static void test_pool(void)
{
    char err[256];
    is_int(rpool_new("http://x", 100, 2, err, sizeof err) == NULL, 1, "malformed URL refused");
    struct rpool *p = rpool_new(url, 500, 2, err, sizeof err);
    struct rconn *a = rpool_get(p, 10), *b = rpool_get(p, 10);
    ok(a && b && a != b, "two distinct connections borrowed");
    long long t0 = srv_now_ms();
    ok(rpool_get(p, 100) == NULL, "a third borrow times out");
    ok(srv_now_ms() - t0 >= 90, "after waiting about the given time");
    rpool_put(p, b);
    ok(rpool_get(p, 10) == b, "a returned connection is borrowed again");

    static const char src[] = "return {KEYS[1], ARGV[1]}";
    struct rscript s;
    rscript_init(&s, src);
    is_int(strlen(s.sha1), 40, "sha1 is 40 hex digits");
    redisReply *r = rconn_cmd(a, "SCRIPT", "FLUSH", NULL);
    freeReplyObject(r);
    const char *args[2] = {"k", "v"};
    for (int i = 0; i < 2; i++) { /* first NOSCRIPT -> EVAL, then EVALSHA hits */
        r = rscript_run(a, &s, 1, 2, args, NULL);
        ok(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
               strcmp(r->element[0]->str, "k") == 0 && strcmp(r->element[1]->str, "v") == 0,
           "script run %d returns its keys and arguments", i + 1);
        if (r)
            freeReplyObject(r);
    }
    r = rconn_cmd(a, "SCRIPT", "EXISTS", s.sha1, NULL);
    ok(r && r->type == REDIS_REPLY_ARRAY && r->element[0]->integer == 1,
       "the sha1 matches what Redis computed");
    freeReplyObject(r);
    ok(rpool_is_up(p), "pool up");
    rpool_put(p, a);
    rpool_put(p, b);
    rpool_free(p);
}

/* Lookup with a fresh ticket; stores `body` on a MISS. */
static enum api_cache_result lookup_store(struct api_cache *c, const char *body, char **got)
{
    struct api_cache_ticket t;
    size_t len = 0;
    *got = NULL;
    enum api_cache_result r = api_cache_lookup(c, "metrics_json", "", got, &len, &t);
    if (r == API_CACHE_MISS)
        api_cache_store(c, &t, body, strlen(body));
    return r;
}

static bool wait_invalidations(struct api_cache *c, unsigned long long want, int timeout_ms)
{
    long long end = srv_now_ms() + timeout_ms;
    while (api_cache_invalidations(c) < want && srv_now_ms() < end)
        srv_sleep_ms(10);
    return api_cache_invalidations(c) >= want;
}

/* Leading edge: with a period far longer than any scheduling delay, the first event after a
 * quiet spell still invalidates at once (well inside the period), and a second event right after
 * it waits for the period to end (at most one INCR per period). */
static void test_leading_edge(void)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.cache_invalidate_ms = 6000;
    cfg.cache_ttl_s = 60;
    char err[256];
    struct rpool *p = rpool_new(url, 300, 2, err, sizeof err);
    struct api_cache *c = api_cache_new(&cfg, p);
    srv_sleep_ms(100);
    int64_t t0 = srv_now_ms();
    metrics_inc(M_EVENTS_INGESTED);
    ok(wait_invalidations(c, 1, 3000),
       "leading edge: the first event invalidates at once (%lld ms "
       "of a 6000 ms period)",
       (long long)(srv_now_ms() - t0));
    metrics_inc(M_EVENTS_INGESTED);
    srv_sleep_ms(500);
    is_int(api_cache_invalidations(c), 1, "a second event inside the period waits for its end");
    api_cache_free(c);
    rpool_free(p);
}

static void test_cache(struct test_server *srv)
{
    struct config cfg;
    config_defaults(&cfg);
    cfg.cache_invalidate_ms = 50;
    cfg.cache_ttl_s = 60;
    char err[256];
    struct rpool *p = rpool_new(url, 300, 2, err, sizeof err);
    struct api_cache *c = api_cache_new(&cfg, p);
    char *got = NULL;
    is_int(lookup_store(c, "v1", &got), API_CACHE_MISS, "first lookup misses");
    is_int(lookup_store(c, "v1-again", &got), API_CACHE_HIT, "second lookup hits");
    ok(got && strcmp(got, "v1") == 0, "with the stored body");
    free(got);
    srv_sleep_ms(200);
    is_int(api_cache_invalidations(c), 0, "no events: no invalidation");

    metrics_inc(M_EVENTS_INGESTED);
    ok(wait_invalidations(c, 1, 2000), "an event after a quiet spell invalidates");
    int64_t burst0 = srv_now_ms();
    for (int i = 0; i < 1000; i++) { /* 1000 events spread over about 4 periods */
        metrics_inc(M_EVENTS_INGESTED);
        if (i % 100 == 0)
            srv_sleep_ms(20);
    }
    srv_sleep_ms(150);
    /* The bound follows the time the burst really took, so a loaded machine (longer sleeps, more
     * periods) cannot fail it: one INCR per started period plus the leading edge. */
    long long periods = (srv_now_ms() - burst0) / 50 + 1;
    long long n = (long long)api_cache_invalidations(c);
    ok(n >= 2 && n <= periods + 2,
       "1000 events cost at most one invalidation per period (+ the leading edge): %lld in %lld "
       "periods",
       n, periods);
    is_int(lookup_store(c, "v2", &got), API_CACHE_MISS, "the old entry is no longer served");
    is_int(lookup_store(c, "x", &got), API_CACHE_HIT, "the new one is");
    ok(got && strcmp(got, "v2") == 0, "with the new body");
    free(got);
    metrics_inc(M_CACHE_HIT);
    srv_sleep_ms(150);
    is_int(api_cache_invalidations(c), n, "non-event counters do not invalidate");

    srv_kill(srv, SIGKILL);
    metrics_inc(M_DECISIONS_BLOCK);
    srv_sleep_ms(200); /* the invalidation fails: owed */
    is_int(lookup_store(c, "v3", &got), API_CACHE_BYPASS, "Redis down: bypass");
    ok(!api_cache_up(c), "cache reported down");
    ok(srv_restart(srv), "redis restarted");
    ok(wait_invalidations(c, (uint64_t)n + 1, 5000),
       "the owed invalidation lands after the restart");
    is_int(lookup_store(c, "v3", &got), API_CACHE_MISS, "then the cache misses");
    ok(api_cache_up(c), "and is up again");
    api_cache_free(c);
    rpool_free(p);
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    struct test_server srv;
    srv_start_or_exit(&srv, SRV_REDIS, NULL);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", srv.port);
    test_pool();
    test_leading_edge();
    test_cache(&srv);
    srv_cleanup(&srv);
    return done_testing();
}
