/* Redis response cache with generation-counter invalidation (api_cache.h).
 *
 * Keys (prefix = redis_prefix):
 *   <prefix>cache:gen                              one integer, the generation
 *   <prefix>cache:<node>:<name>:<gen>:<variant>    a cached body, SET with EX cache_ttl_s
 * The node id is part of an entry's key because a metrics snapshot describes one daemon.
 *
 * Lookup is one round trip: a Lua script reads the generation and the entry of that generation
 * together, so a reader can never pair an old generation with a newer entry. A MISS hands the
 * caller the key of the generation it saw; storing there is always safe, because any event after
 * that read moves the generation on and the next lookup misses.
 *
 * Invalidation never deletes (no KEYS/SCAN): bumping the generation orphans every entry at once,
 * and the orphans expire on their TTL. The bump is coalesced: the invalidation thread compares an
 * event stamp (the sum of the event-driven metrics counters: received, scored, anomalies,
 * decisions, webhook delivery outcomes) with the stamp of its last successful INCR every
 * CACHE_POLL_MS (a few atomic loads) and sends one INCR when it moved, but never two within
 * cache_invalidate_ms. So an event after a quiet spell is visible within a poll plus the INCR round
 * trip (the leading edge), and however high the event rate, there are at most 1000 /
 * cache_invalidate_ms Redis calls per second while a cached body hides an event for at most one
 * period (plus the round trip). If the INCR fails, the stamp is not recorded, the next period
 * retries, and until one succeeds every lookup BYPASSes: entries cached before a Redis outage are
 * never served after it for events that arrived during it.
 *
 * In front of Redis, each process keeps a copy of the newest bodies it read or stored (a few
 * slots, one per route and variant), tagged with this process's invalidation count as it was
 * before the Redis lookup, and serves it without a round trip while that count has not moved,
 * no invalidation is owed, and the copy is younger than LOCAL_LIFE_MS (and the TTL). That is the
 * same freshness bound: a cached body is a snapshot of this node (its key names the node), so
 * only this node's events change it, and every one of them moves the count within one period.
 * Other nodes' bumps orphan the Redis entry but do not change what the body says.
 *
 * A lookup also takes the invalidator's look itself (the same stamp comparison and the same
 * one-INCR-per-period election), so a read right after an event never depends on the
 * invalidation thread being scheduled in time on a busy machine.
 */
#include "api_cache.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "thread.h"
#include "xmalloc.h"

#define CACHE_POOL_WAIT_MS 100 /* a busy pool means skip the cache, not wait for it */
#define LOCAL_SLOTS 8          /* in-process copies: routes x variants actually cached */
#define LOCAL_LIFE_MS 1000     /* an in-process copy is checked against Redis this often */

struct local_copy {
    char name[API_CACHE_KEY_MAX]; /* "" = free */
    char *body;
    size_t len;
    unsigned long long invalidated; /* the invalidation count it is valid for */
    int64_t expires_ms;             /* monotonic */
    int64_t used_ms;                /* for replacing the least recently used slot */
};

struct api_cache {
    const struct config *cfg;
    struct rpool *redis;
    struct rscript lookup_script;
    char gen_key[256];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    atomic_bool up;
    atomic_bool behind; /* an invalidation failed and is not yet made good: do not serve */
    atomic_ullong invalidations;
    _Atomic uint64_t published;   /* the event stamp of the last successful INCR */
    _Atomic int64_t last_bump_ms; /* monotonic start of the last INCR: one per period */
    pthread_mutex_t local_mu;     /* guards local[] */
    struct local_copy local[LOCAL_SLOTS];
};

/* Returns {generation, entry-or-nil}. KEYS[1] = generation key; ARGV[1] = entry key up to the
 * generation, ARGV[2] = the rest (":" variant). */
static const char LOOKUP_LUA[] = "local g = redis.call('GET', KEYS[1]) or '0'\n"
                                 "return {g, redis.call('GET', ARGV[1] .. g .. ARGV[2])}\n";

/* The counters that move when an event arrives, is decided or is delivered to a webhook: the
 * invalidation trigger. */
static const enum metric_counter event_counters[] = {
    M_EVENTS_INGESTED,       M_EVENTS_DUPLICATE,  M_INVALID_BAD_JSON,    M_INVALID_NOT_OBJECT,
    M_INVALID_TXID,          M_INVALID_ACCOUNT,   M_INVALID_AMOUNT,      M_INVALID_FIELD,
    M_INVALID_TOO_LARGE,     M_EVENTS_SCORED,     M_ANOMALIES_IMMEDIATE, M_ANOMALIES_BATCH,
    M_DECISIONS_APPROVE,     M_DECISIONS_REVIEW,  M_DECISIONS_BLOCK,     M_WEBHOOK_DELIVERED,
    M_WEBHOOK_RETRY,         M_WEBHOOK_EXHAUSTED, M_WEBHOOK_GONE,        M_WEBHOOK_DROPPED,
    M_WEBHOOK_AUTO_DISABLED,
};

#define CACHE_POLL_MS 1 /* how often the invalidator looks at the event counters */

static uint64_t event_stamp(void)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < sizeof event_counters / sizeof event_counters[0]; i++)
        sum += metrics_get(event_counters[i]);
    return sum;
}

/* Sends one INCR of the generation; true when Redis took it. */
static bool bump_generation(struct api_cache *c)
{
    struct rconn *rc = rpool_get(c->redis, CACHE_POOL_WAIT_MS);
    if (rc == NULL)
        return false;
    redisReply *r = rconn_cmd(rc, "INCR", c->gen_key, NULL);
    rpool_put(c->redis, rc);
    bool ok = r != NULL && r->type == REDIS_REPLY_INTEGER;
    if (r)
        freeReplyObject(r);
    atomic_store(&c->up, ok);
    atomic_store(&c->behind, !ok);
    if (ok)
        atomic_fetch_add(&c->invalidations, 1);
    return ok;
}

/* Bumps the generation when the event stamp moved since the last successful bump and a period
 * has passed since the last attempt; whoever wins the compare-and-swap on last_bump_ms sends the
 * INCR, so there is at most one per period however many threads call this. A failed INCR leaves
 * the stamp unpublished: the next period retries. */
static void maybe_bump(struct api_cache *c)
{
    uint64_t stamp = event_stamp();
    if (stamp == atomic_load(&c->published))
        return;
    int64_t now = clock_mono_ms();
    int64_t last = atomic_load(&c->last_bump_ms);
    if (now < last + c->cfg->cache_invalidate_ms ||
        !atomic_compare_exchange_strong(&c->last_bump_ms, &last, now))
        return;
    if (bump_generation(c))
        atomic_store(&c->published, stamp);
}

static void *invalidator_main(void *arg)
{
    struct api_cache *c = arg;
    thread_name("cache-inval");
    pthread_mutex_lock(&c->mu);
    while (!c->stop) {
        /* Look every CACHE_POLL_MS; bump at once when a period has passed since the last bump
         * (the leading edge: an event after a quiet spell is visible within a poll), else at
         * the end of the period (coalescing under load). */
        int64_t wait =
            atomic_load(&c->last_bump_ms) + c->cfg->cache_invalidate_ms - clock_mono_ms();
        struct timespec until = clock_mono_deadline(wait > CACHE_POLL_MS ? wait : CACHE_POLL_MS);
        pthread_cond_timedwait(&c->cv, &c->mu, &until);
        if (c->stop)
            break;
        pthread_mutex_unlock(&c->mu);
        maybe_bump(c);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

struct api_cache *api_cache_new(const struct config *cfg, struct rpool *redis)
{
    struct api_cache *c = xcalloc(1, sizeof *c);
    c->cfg = cfg;
    c->redis = redis;
    rscript_init(&c->lookup_script, LOOKUP_LUA);
    snprintf(c->gen_key, sizeof c->gen_key, "%scache:gen", cfg->redis_prefix);
    atomic_init(&c->up, true);
    atomic_init(&c->behind, false);
    atomic_init(&c->invalidations, 0);
    atomic_init(&c->published, event_stamp());
    atomic_init(&c->last_bump_ms, clock_mono_ms() - cfg->cache_invalidate_ms);
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->local_mu, NULL);
    clock_cond_init(&c->cv);
    if (pthread_create(&c->thread, NULL, invalidator_main, c) != 0) {
        pthread_mutex_destroy(&c->local_mu);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return NULL;
    }
    return c;
}

void api_cache_free(struct api_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    for (int i = 0; i < LOCAL_SLOTS; i++)
        free(c->local[i].body);
    pthread_mutex_destroy(&c->local_mu);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* A copy of the in-process body `name` when it is still valid for count `invalidated`. */
static bool local_get(struct api_cache *c, const char *name, unsigned long long invalidated,
                      char **body, size_t *len)
{
    bool hit = false;
    int64_t now = clock_mono_ms();
    pthread_mutex_lock(&c->local_mu);
    for (int i = 0; i < LOCAL_SLOTS && !hit; i++) {
        struct local_copy *l = &c->local[i];
        if (strcmp(l->name, name) != 0 || l->invalidated != invalidated || now >= l->expires_ms)
            continue;
        *body = xmalloc(l->len + 1);
        memcpy(*body, l->body, l->len + 1);
        *len = l->len;
        l->used_ms = now;
        hit = true;
    }
    pthread_mutex_unlock(&c->local_mu);
    return hit;
}

/* Keeps body as the in-process copy of `name`, valid while the count stays `invalidated`. */
static void local_put(struct api_cache *c, const char *name, unsigned long long invalidated,
                      const char *body, size_t len)
{
    int64_t now = clock_mono_ms();
    int64_t life = (int64_t)c->cfg->cache_ttl_s * 1000;
    char *copy = xmalloc(len + 1);
    memcpy(copy, body, len);
    copy[len] = '\0';
    pthread_mutex_lock(&c->local_mu);
    struct local_copy *slot = &c->local[0];
    for (int i = 0; i < LOCAL_SLOTS; i++) {
        struct local_copy *l = &c->local[i];
        if (strcmp(l->name, name) == 0 || l->name[0] == '\0') {
            slot = l;
            break;
        }
        if (l->used_ms < slot->used_ms)
            slot = l;
    }
    free(slot->body);
    snprintf(slot->name, sizeof slot->name, "%s", name);
    slot->body = copy;
    slot->len = len;
    slot->invalidated = invalidated;
    slot->expires_ms = now + (life < LOCAL_LIFE_MS ? life : LOCAL_LIFE_MS);
    slot->used_ms = now;
    pthread_mutex_unlock(&c->local_mu);
}

enum api_cache_result api_cache_lookup(struct api_cache *c, const char *name, const char *variant,
                                       char **body, size_t *len, struct api_cache_ticket *ticket)
{
    char head[API_CACHE_KEY_MAX], tail[API_CACHE_KEY_MAX];
    snprintf(head, sizeof head, "%scache:%s:%s:", c->cfg->redis_prefix, c->cfg->node_id, name);
    int n = snprintf(tail, sizeof tail, ":%s", variant);
    if (n < 0 || (size_t)n >= sizeof tail)
        return API_CACHE_BYPASS; /* an absurd query string is simply not cached */
    maybe_bump(c); /* the reader's own look: no wait for the invalidator thread to wake */
    if (atomic_load(&c->behind))
        return API_CACHE_BYPASS;
    ticket->invalidated = atomic_load(&c->invalidations);
    n = snprintf(ticket->local, sizeof ticket->local, "%s%s", name, tail);
    if (n < 0 || (size_t)n >= sizeof ticket->local)
        return API_CACHE_BYPASS;
    if (local_get(c, ticket->local, ticket->invalidated, body, len))
        return API_CACHE_HIT;
    struct rconn *rc = rpool_get(c->redis, CACHE_POOL_WAIT_MS);
    if (rc == NULL)
        return API_CACHE_BYPASS;
    const char *args[3] = {c->gen_key, head, tail};
    redisReply *r = rscript_run(rc, &c->lookup_script, 1, 3, args, NULL);
    rpool_put(c->redis, rc);
    bool ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
              r->element[0]->type == REDIS_REPLY_STRING;
    atomic_store(&c->up, r != NULL);
    if (!ok) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_warn("cache.lookup", "cache lookup script failed: %s", r->str);
        if (r)
            freeReplyObject(r);
        return API_CACHE_BYPASS;
    }
    enum api_cache_result res = API_CACHE_MISS;
    const redisReply *v = r->element[1];
    if (v->type == REDIS_REPLY_STRING) {
        *body = xmalloc(v->len + 1);
        memcpy(*body, v->str, v->len);
        (*body)[v->len] = '\0';
        *len = v->len;
        res = API_CACHE_HIT;
        local_put(c, ticket->local, ticket->invalidated, v->str, v->len);
    } else {
        n = snprintf(ticket->key, sizeof ticket->key, "%s%s%s", head, r->element[0]->str, tail);
        if (n < 0 || (size_t)n >= sizeof ticket->key)
            res = API_CACHE_BYPASS;
    }
    freeReplyObject(r);
    return res;
}

void api_cache_store(struct api_cache *c, const struct api_cache_ticket *ticket, const char *body,
                     size_t len)
{
    struct rconn *rc = rpool_get(c->redis, CACHE_POOL_WAIT_MS);
    if (rc == NULL)
        return;
    char ttl[16];
    snprintf(ttl, sizeof ttl, "%d", c->cfg->cache_ttl_s);
    const char *argv[5] = {"SET", ticket->key, body, "EX", ttl};
    size_t lens[5] = {3, strlen(ticket->key), len, 2, strlen(ttl)};
    redisReply *r = rconn_command(rc, 5, argv, lens);
    rpool_put(c->redis, rc);
    atomic_store(&c->up, r != NULL);
    if (r && r->type != REDIS_REPLY_ERROR)
        local_put(c, ticket->local, ticket->invalidated, body, len);
    if (r)
        freeReplyObject(r);
}

const char *api_cache_result_name(enum api_cache_result r)
{
    switch (r) {
    case API_CACHE_HIT:
        return "HIT";
    case API_CACHE_MISS:
        return "MISS";
    case API_CACHE_BYPASS:
        return "BYPASS";
    }
    return "BYPASS";
}

bool api_cache_up(const struct api_cache *c)
{
    return atomic_load(&c->up) && !atomic_load(&c->behind);
}

unsigned long long api_cache_invalidations(const struct api_cache *c)
{
    return atomic_load(&c->invalidations);
}
