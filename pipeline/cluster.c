/* Partition leases and membership (cluster.h).
 *
 * Two threads, each with its own Redis connection. The keeper ticks every quarter lease:
 *   1. heartbeat: one script ZADDs this node to the members set with score now + lease (Redis
 *      TIME, so instances need no synchronised clocks), drops expired members, refreshes this
 *      node's info key and returns the live members, which it hands to the main thread;
 *   2. renew: one compare-and-PEXPIRE script per held lease; a lease found held by someone else
 *      is lost at once; one not renewed for 3/4 lease (Redis down) is given up.
 * The main thread, after each heartbeat:
 *   3. assign: cluster_assign over the sorted live members;
 *   4. release what should be someone else's (hook with save, then compare-and-DEL), then take
 *      what should be ours and is free (SET PX when absent, or when the holder is this node's
 *      previous run: the same node_id with another token), run the acquire hook, and mark it
 *      active.
 * The hooks can take a while (a hand-over waits for a snapshot), which is why renewals have a
 * thread of their own: a slow hand-over must not let the other leases lapse. Moving a
 * partition out of PART_ACTIVE is a compare-and-swap, so the two threads never both give it
 * up.
 * Releases come before acquisitions, so a hand-over is: the old owner stops consuming, saves,
 * deletes the lease; the new owner takes it at its next tick and restores what was saved.
 *
 * Why leases and not a coordinator: Redis is already a dependency and SET PX plus scripts give
 * mutual exclusion with expiry; the MQTT broker adds a second fence, since a partition's session
 * has one client id and the broker disconnects the older connection when a new one takes it. */
#include "cluster.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "rpool.h"
#include "shard.h"
#include "thread.h"
#include "xmalloc.h"

#define CLUSTER_KEY_MAX 320   /* prefix (128) + cluster name (64) + node id (64) + the rest */
#define CLUSTER_TOKEN_MAX 128 /* node id (64) + '|' + wall ms + '.' + pid */
#define CLUSTER_INFO_MAX 1024 /* the member info JSON */
#define CLUSTER_NODE_MAX 64   /* node_id's size in struct config */

/* KEYS[1] members zset, KEYS[2] this member's info; ARGV: node, lease ms, info JSON. Returns the
 * live members. Redis 7 replicates a script's effects, so TIME before writes is allowed. */
static const char HEARTBEAT_LUA[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
    "redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])\n"
    "return redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')\n";
/* KEYS[1] lease; ARGV: my value, lease ms, "<node>|". 1 when the lease is now ours. */
static const char ACQUIRE_LUA[] = "local v = redis.call('GET', KEYS[1])\n"
                                  "if v == false or v == ARGV[1] or "
                                  "string.sub(v, 1, #ARGV[3]) == ARGV[3] then\n"
                                  "  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
                                  "  return 1\n"
                                  "end\n"
                                  "return 0\n";
/* KEYS[1] lease, KEYS[2] snap hash; ARGV: my value, lease ms. 1 renewed, 0 not ours. A lease
 * that expired (a stall longer than the lease) and that nobody took since is taken again when
 * the partition's saved state is this run's or absent: nobody else consumed it meanwhile, so
 * this run's windows are still the latest and keeping the partition beats a hand-over. */
static const char RENEW_LUA[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "if v == false then\n"
    "  local t = redis.call('HGET', KEYS[2], 'token')\n"
    "  if t == false or t == ARGV[1] then\n"
    "    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "    return 1\n"
    "  end\n"
    "end\n"
    "return 0\n";
/* KEYS[1] lease; ARGV: my value. 1 deleted, 0 not ours. */
static const char RELEASE_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                  "  return redis.call('DEL', KEYS[1])\n"
                                  "end\n"
                                  "return 0\n";
/* KEYS[1] lease, KEYS[2] snap hash; ARGV: my value, image, writer node, seq, wall ms. */
static const char SAVE_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[2], 'image', ARGV[2], 'writer', ARGV[3], 'seq', ARGV[4], "
    "'saved_ms', ARGV[5], 'token', ARGV[1])\n"
    "return 1\n";
/* KEYS[1] members zset, KEYS[2] this member's info; ARGV: node. */
static const char LEAVE_LUA[] = "redis.call('ZREM', KEYS[1], ARGV[1])\n"
                                "redis.call('DEL', KEYS[2])\n"
                                "return 1\n";

struct cluster {
    const struct config *cfg;
    struct cluster_hooks hooks;
    uint32_t nparts;
    int lease_ms;
    struct rconn *rc;  /* the main thread's own */
    struct rconn *krc; /* the keeper thread's own */
    char token[CLUSTER_TOKEN_MAX];
    char node_prefix[80]; /* "<node_id>|": a lease with it and another token is our last run's */
    char key_members[CLUSTER_KEY_MAX];
    char key_self[CLUSTER_KEY_MAX];
    _Atomic int *state;       /* enum partition_state per partition */
    _Atomic int64_t *renewed; /* CLOCK_MONOTONIC ms of the last successful take or renewal */
    _Atomic uint32_t owned;   /* partitions ACTIVE */
    int64_t started_ms;       /* wall clock */
    struct rscript heartbeat, acquire, renew, release, save, leave;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* CLOCK_MONOTONIC; signalled by cluster_stop */
    atomic_bool stop;        /* the main thread: hand everything over and end */
    atomic_bool keeper_stop; /* the keeper: end (after the main thread has) */
    pthread_t keeper;
    char (*members)[CLUSTER_NODE_MAX]; /* the keeper's last member list, under mu */
    int nmembers;
    uint64_t members_gen; /* bumped by each successful heartbeat */
    bool stopped;
};

/* ------------------------------------------------------------------------------------------ */
/* Keys and the assignment                                                                     */

void cluster_key_lease(const struct config *cfg, uint32_t k, char *out, size_t len)
{
    snprintf(out, len, "%scluster:%s:lease:%u", cfg->redis_prefix, cfg->cluster_name, k);
}

void cluster_key_snap(const struct config *cfg, uint32_t k, char *out, size_t len)
{
    snprintf(out, len, "%scluster:%s:snap:%u", cfg->redis_prefix, cfg->cluster_name, k);
}

void cluster_key_ids(const struct config *cfg, const char *node, char *out, size_t len)
{
    snprintf(out, len, "%scluster:%s:ids:%s", cfg->redis_prefix, cfg->cluster_name, node);
}

static void key_member(const struct config *cfg, const char *node, char *out, size_t len)
{
    snprintf(out, len, "%scluster:%s:member:%s", cfg->redis_prefix, cfg->cluster_name, node);
}

/* Rank of a member for partition k: the mixed hash of the member's name and k. */
static uint64_t rank_of(const char *member, uint32_t k)
{
    return shard_mix(shard_hash(member, strlen(member)) ^ shard_mix((uint64_t)k + 1));
}

void cluster_assign(const char *const *members, size_t n, uint32_t npartitions, int32_t *owner)
{
    if (n == 0) {
        for (uint32_t k = 0; k < npartitions; k++)
            owner[k] = -1;
        return;
    }
    size_t cap = (npartitions + n - 1) / n;
    size_t *count = xcalloc(n, sizeof *count);
    bool *tried = xcalloc(n, sizeof *tried);
    for (uint32_t k = 0; k < npartitions; k++) {
        memset(tried, 0, n * sizeof *tried);
        int32_t pick = -1;
        /* the best-ranked member with room; ties (equal hashes) broken by name */
        for (size_t round = 0; round < n && pick < 0; round++) {
            int32_t best = -1;
            uint64_t best_rank = 0;
            for (size_t i = 0; i < n; i++) {
                if (tried[i])
                    continue;
                uint64_t r = rank_of(members[i], k);
                if (best < 0 || r > best_rank ||
                    (r == best_rank && strcmp(members[i], members[best]) < 0)) {
                    best = (int32_t)i;
                    best_rank = r;
                }
            }
            tried[best] = true;
            if (count[best] < cap)
                pick = best;
        }
        owner[k] = pick;
        count[pick]++;
    }
    free(count);
    free(tried);
}

/* ------------------------------------------------------------------------------------------ */
/* Redis calls                                                                                  */

/* Runs a script with string arguments; the integer it returned, or ERR_CONN / ERR_IO. */
static long long script_int(struct rconn *rc, const struct rscript *s, int nkeys, int nargs,
                            const char *const *args, const size_t *lens)
{
    redisReply *r = rscript_run(rc, s, nkeys, nargs, args, lens);
    if (r == NULL)
        return ERR_CONN;
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : ERR_IO;
    if (r->type == REDIS_REPLY_ERROR)
        log_warn("cluster.script", "cluster script failed: %s", r->str);
    freeReplyObject(r);
    return v;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The heartbeat: fills members (sorted; the caller frees the reply) and returns how many, or
 * ERR_CONN. */
static int heartbeat(struct cluster *c, redisReply **reply, const char **members)
{
    char info[CLUSTER_INFO_MAX], lease[16];
    json_t *j = json_pack("{s:s,s:s,s:i,s:I,s:i}", "node_id", c->cfg->node_id, "http_host",
                          c->cfg->http_host, "http_port", c->cfg->http_port, "started_ms",
                          (json_int_t)c->started_ms, "partitions", (int)atomic_load(&c->owned));
    char *text = json_dumps(j, JSON_COMPACT);
    snprintf(info, sizeof info, "%s", text ? text : "{}");
    free(text);
    json_decref(j);
    snprintf(lease, sizeof lease, "%d", c->lease_ms);
    const char *args[] = {c->key_members, c->key_self, c->cfg->node_id, lease, info};
    redisReply *r = rscript_run(c->krc, &c->heartbeat, 2, 5, args, NULL);
    *reply = r;
    if (r == NULL)
        return ERR_CONN;
    if (r->type != REDIS_REPLY_ARRAY) {
        if (r->type == REDIS_REPLY_ERROR)
            log_warn("cluster.heartbeat", "heartbeat failed: %s", r->str);
        return ERR_IO;
    }
    size_t n = 0;
    for (size_t i = 0; i < r->elements && n < CLUSTER_MEMBERS_MAX; i++)
        if (r->element[i]->type == REDIS_REPLY_STRING)
            members[n++] = r->element[i]->str;
    if (r->elements > CLUSTER_MEMBERS_MAX)
        log_warn("cluster.too_many", "%zu members; only %d take part", r->elements,
                 CLUSTER_MEMBERS_MAX);
    qsort(members, n, sizeof *members, cmp_str);
    return (int)n;
}

static long long lease_call(struct cluster *c, struct rconn *rc, const struct rscript *s,
                            uint32_t k, bool with_ms, bool with_prefix)
{
    char key[CLUSTER_KEY_MAX], ms[16];
    cluster_key_lease(c->cfg, k, key, sizeof key);
    snprintf(ms, sizeof ms, "%d", c->lease_ms);
    const char *args[4] = {key, c->token, ms, c->node_prefix};
    int nargs = 2 + (with_ms ? 1 : 0) + (with_prefix ? 1 : 0);
    return script_int(rc, s, 1, nargs, args, NULL);
}

/* The keeper's renewal of k: 1 renewed (or taken again), 0 held by another, < 0 Redis down. */
static long long renew(struct cluster *c, uint32_t k)
{
    char lease[CLUSTER_KEY_MAX], snap[CLUSTER_KEY_MAX], ms[16];
    cluster_key_lease(c->cfg, k, lease, sizeof lease);
    cluster_key_snap(c->cfg, k, snap, sizeof snap);
    snprintf(ms, sizeof ms, "%d", c->lease_ms);
    const char *args[] = {lease, snap, c->token, ms};
    return script_int(c->krc, &c->renew, 2, 4, args, NULL);
}

int cluster_save_partition(struct rconn *rc, const struct cluster *c, uint32_t k, uint64_t seq,
                           const void *image, size_t len)
{
    char lease[CLUSTER_KEY_MAX], snap[CLUSTER_KEY_MAX], seqs[24], ms[24];
    cluster_key_lease(c->cfg, k, lease, sizeof lease);
    cluster_key_snap(c->cfg, k, snap, sizeof snap);
    snprintf(seqs, sizeof seqs, "%llu", (unsigned long long)seq);
    snprintf(ms, sizeof ms, "%lld", (long long)clock_wall_ms());
    const char *args[] = {lease, snap, c->token, image, c->cfg->node_id, seqs, ms};
    size_t lens[] = {strlen(lease),           strlen(snap), strlen(c->token), len,
                     strlen(c->cfg->node_id), strlen(seqs), strlen(ms)};
    long long v = script_int(rc, &c->save, 2, 7, args, lens);
    return v < 0 ? ERR_CONN : (int)v;
}

/* ------------------------------------------------------------------------------------------ */
/* The thread                                                                                   */

static void set_state(struct cluster *c, uint32_t k, enum partition_state s)
{
    enum partition_state was = (enum partition_state)atomic_exchange(&c->state[k], (int)s);
    if (was == PART_ACTIVE && s != PART_ACTIVE)
        atomic_fetch_sub(&c->owned, 1);
    else if (was != PART_ACTIVE && s == PART_ACTIVE)
        atomic_fetch_add(&c->owned, 1);
    metrics_set(G_CLUSTER_PARTITIONS_OWNED, (int64_t)atomic_load(&c->owned));
}

/* Stops consuming k if it is still active (the keeper and the main thread may both want to:
 * whoever moves it from ACTIVE to RELEASING does it). With save, the state is saved and the
 * lease deleted (a hand-over); rc is the calling thread's connection. */
static void give_up(struct cluster *c, struct rconn *rc, uint32_t k, bool save, const char *why)
{
    int active = PART_ACTIVE;
    if (!atomic_compare_exchange_strong(&c->state[k], &active, PART_RELEASING))
        return;
    atomic_fetch_sub(&c->owned, 1);
    metrics_set(G_CLUSTER_PARTITIONS_OWNED, (int64_t)atomic_load(&c->owned));
    c->hooks.release(c->hooks.ctx, k, save);
    if (save && lease_call(c, rc, &c->release, k, false, false) < 0)
        log_warn("cluster.release",
                 "lease of partition %u not deleted (Redis down); it expires "
                 "by itself",
                 k);
    set_state(c, k, PART_NONE);
    metrics_inc(save ? M_CLUSTER_RELEASED : M_CLUSTER_LOST);
    log_info(save ? "cluster.released" : "cluster.lost", "partition %u %s (%s)", k,
             save ? "handed over" : "given up", why);
}

/* Keeper: renews every lease held (also while a partition is being taken or handed over, which
 * can take a while); gives up an active partition whose lease another instance holds or that
 * could not be renewed for 3/4 lease. */
static void renew_all(struct cluster *c)
{
    for (uint32_t k = 0; k < c->nparts; k++) {
        if (atomic_load(&c->state[k]) == PART_NONE)
            continue;
        int64_t t = clock_mono_ms();
        long long v = renew(c, k);
        if (v == 1)
            atomic_store(&c->renewed[k], t);
        else if (v == 0)
            give_up(c, c->krc, k, false, "its lease expired and another instance holds it");
        else if (clock_mono_ms() - atomic_load(&c->renewed[k]) >= (int64_t)c->lease_ms * 3 / 4)
            give_up(c, c->krc, k, false, "its lease could not be renewed in time");
    }
}

static void rebalance(struct cluster *c, const char *const *members, int n)
{
    int32_t *owner = xcalloc(c->nparts, sizeof *owner);
    cluster_assign(members, (size_t)n, c->nparts, owner);
    int32_t me = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(members[i], c->cfg->node_id) == 0)
            me = i;
    for (uint32_t k = 0; k < c->nparts && !atomic_load(&c->stop); k++)
        if (atomic_load(&c->state[k]) == PART_ACTIVE && owner[k] != me)
            give_up(c, c->rc, k, true, "rebalance");
    for (uint32_t k = 0; k < c->nparts && me >= 0 && !atomic_load(&c->stop); k++) {
        if (owner[k] != me || atomic_load(&c->state[k]) != PART_NONE)
            continue;
        int64_t t = clock_mono_ms();
        if (lease_call(c, c->rc, &c->acquire, k, true, true) != 1)
            continue; /* still held (its owner hands it over) or Redis is down */
        atomic_store(&c->renewed[k], t);
        set_state(c, k, PART_ACQUIRING);
        if (c->hooks.acquire(c->hooks.ctx, k) != 0) {
            lease_call(c, c->rc, &c->release, k, false, false);
            set_state(c, k, PART_NONE);
            continue;
        }
        set_state(c, k, PART_ACTIVE);
        metrics_inc(M_CLUSTER_ACQUIRED);
        log_info("cluster.acquired", "partition %u is now consumed here", k);
    }
    free(owner);
}

/* Sleeps on c->cv until `every` ms pass or *flag is set; c->mu held. */
static void nap(struct cluster *c, atomic_bool *flag, int64_t every)
{
    struct timespec ts = clock_mono_deadline(every);
    while (!atomic_load(flag) && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0)
        ;
}

/* The keeper thread: heartbeat and renewals every quarter lease, never held up by a hook; it
 * publishes the live members for the main thread (members, nmembers, members_gen under mu). */
static void *keeper_main(void *arg)
{
    struct cluster *c = arg;
    thread_name("cluster-keeper");
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->keeper_stop)) {
        pthread_mutex_unlock(&c->mu);
        redisReply *reply = NULL;
        const char *members[CLUSTER_MEMBERS_MAX];
        int n = heartbeat(c, &reply, members);
        pthread_mutex_lock(&c->mu);
        if (n > 0) {
            for (int i = 0; i < n; i++)
                snprintf(c->members[i], sizeof c->members[i], "%s", members[i]);
            c->nmembers = n;
            c->members_gen++;
            pthread_cond_broadcast(&c->cv);
        }
        pthread_mutex_unlock(&c->mu);
        if (reply)
            freeReplyObject(reply);
        renew_all(c);
        pthread_mutex_lock(&c->mu);
        nap(c, &c->keeper_stop, c->lease_ms / 4);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* The main thread: rebalances after every heartbeat; at stop, hands everything over. */
static void *cluster_main(void *arg)
{
    struct cluster *c = arg;
    thread_name("cluster");
    uint64_t seen = 0;
    const char **names = xcalloc(CLUSTER_MEMBERS_MAX, sizeof *names);
    char(*copy)[CLUSTER_NODE_MAX] = xcalloc(CLUSTER_MEMBERS_MAX, sizeof *copy);
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->stop)) {
        if (c->members_gen == seen) {
            nap(c, &c->stop, c->lease_ms / 4);
            continue;
        }
        seen = c->members_gen;
        int n = c->nmembers;
        for (int i = 0; i < n; i++) {
            memcpy(copy[i], c->members[i], sizeof copy[i]);
            names[i] = copy[i];
        }
        pthread_mutex_unlock(&c->mu);
        rebalance(c, names, n);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    for (uint32_t k = 0; k < c->nparts; k++)
        give_up(c, c->rc, k, true, "shutdown");
    free(names);
    free(copy);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Life cycle and queries                                                                       */

struct cluster *cluster_new(const struct config *cfg, const struct cluster_hooks *hooks, char *err,
                            size_t errlen)
{
    struct rconn *rc = rconn_new(cfg->redis_url, cfg->redis_timeout_ms, err, errlen);
    if (rc == NULL)
        return NULL;
    struct cluster *c = xcalloc(1, sizeof *c);
    c->cfg = cfg;
    c->hooks = *hooks;
    c->rc = rc;
    c->krc = rconn_new(cfg->redis_url, cfg->redis_timeout_ms, err, errlen);
    c->members = xcalloc(CLUSTER_MEMBERS_MAX, sizeof *c->members);
    c->nparts = (uint32_t)cfg->cluster_partitions;
    c->lease_ms = cfg->cluster_lease_ms;
    c->started_ms = clock_wall_ms();
    snprintf(c->token, sizeof c->token, "%s|%lld.%ld", cfg->node_id, (long long)c->started_ms,
             (long)getpid());
    snprintf(c->node_prefix, sizeof c->node_prefix, "%s|", cfg->node_id);
    snprintf(c->key_members, sizeof c->key_members, "%scluster:%s:members", cfg->redis_prefix,
             cfg->cluster_name);
    key_member(cfg, cfg->node_id, c->key_self, sizeof c->key_self);
    c->state = xcalloc(c->nparts ? c->nparts : 1, sizeof *c->state);
    c->renewed = xcalloc(c->nparts ? c->nparts : 1, sizeof *c->renewed);
    for (uint32_t k = 0; k < c->nparts; k++) {
        atomic_init(&c->state[k], PART_NONE);
        atomic_init(&c->renewed[k], 0);
    }
    atomic_init(&c->owned, 0);
    atomic_init(&c->stop, false);
    atomic_init(&c->keeper_stop, false);
    rscript_init(&c->heartbeat, HEARTBEAT_LUA);
    rscript_init(&c->acquire, ACQUIRE_LUA);
    rscript_init(&c->renew, RENEW_LUA);
    rscript_init(&c->release, RELEASE_LUA);
    rscript_init(&c->save, SAVE_LUA);
    rscript_init(&c->leave, LEAVE_LUA);
    pthread_mutex_init(&c->mu, NULL);
    clock_cond_init(&c->cv);
    return c;
}

int cluster_start(struct cluster *c)
{
    if (pthread_create(&c->keeper, NULL, keeper_main, c) != 0)
        return ERR_INTERNAL;
    if (pthread_create(&c->thread, NULL, cluster_main, c) != 0) {
        atomic_store(&c->keeper_stop, true);
        pthread_join(c->keeper, NULL);
        return ERR_INTERNAL;
    }
    c->started = true;
    return 0;
}

/* The main thread hands every partition over while the keeper still renews their leases; then
 * the keeper stops and this node leaves the members set. */
void cluster_stop(struct cluster *c)
{
    if (!c->started || c->stopped)
        return;
    c->stopped = true;
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->stop, true);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->keeper_stop, true);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->keeper, NULL);
    const char *args[] = {c->key_members, c->key_self, c->cfg->node_id};
    script_int(c->krc, &c->leave, 2, 3, args, NULL);
}

void cluster_free(struct cluster *c)
{
    if (c == NULL)
        return;
    cluster_stop(c);
    rconn_free(c->rc);
    rconn_free(c->krc);
    free(c->members);
    free(c->state);
    free(c->renewed);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

uint32_t cluster_partitions(const struct cluster *c)
{
    return c->nparts;
}

enum partition_state cluster_state(const struct cluster *c, uint32_t k)
{
    return k < c->nparts ? (enum partition_state)atomic_load(&c->state[k]) : PART_NONE;
}

bool cluster_owns(const struct cluster *c, uint32_t k)
{
    return cluster_state(c, k) == PART_ACTIVE &&
           clock_mono_ms() - atomic_load(&c->renewed[k]) < (int64_t)c->lease_ms * 3 / 4;
}

const char *cluster_token(const struct cluster *c)
{
    return c->token;
}

/* The member list with each member's info (parsed) and last-seen time. */
static json_t *describe_instances(struct rconn *rc, const struct config *cfg, bool *down)
{
    char key[CLUSTER_KEY_MAX];
    snprintf(key, sizeof key, "%scluster:%s:members", cfg->redis_prefix, cfg->cluster_name);
    redisReply *r = rconn_cmd(rc, "ZRANGE", key, "0", "-1", "WITHSCORES", NULL);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        *down = r == NULL;
        if (r)
            freeReplyObject(r);
        return NULL;
    }
    json_t *out = json_array();
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i + 1 < r->elements && i / 2 < CLUSTER_MEMBERS_MAX; i += 2) {
        const char *node = r->element[i]->str;
        double expires = strtod(r->element[i + 1]->str ? r->element[i + 1]->str : "0", NULL);
        key_member(cfg, node, key, sizeof key);
        redisReply *info = rconn_cmd(rc, "GET", key, NULL);
        json_t *doc = info && info->type == REDIS_REPLY_STRING
                          ? json_loadb(info->str, info->len, 0, NULL)
                          : NULL;
        if (info)
            freeReplyObject(info);
        if (!json_is_object(doc)) {
            json_decref(doc);
            continue; /* expired between the two reads */
        }
        json_t *o = json_pack("{s:s,s:O,s:O,s:O,s:O,s:I}", "node_id", node, "http_host",
                              json_object_get(doc, "http_host"), "http_port",
                              json_object_get(doc, "http_port"), "started_ms",
                              json_object_get(doc, "started_ms"), "partitions",
                              json_object_get(doc, "partitions"), "last_seen_ms",
                              (json_int_t)(now - ((int64_t)expires - cfg->cluster_lease_ms)));
        json_decref(doc);
        if (o)
            json_array_append_new(out, o);
    }
    freeReplyObject(r);
    return out;
}

/* Each partition's lease holder (node id), age since its last renewal and time to expiry. */
static json_t *describe_leases(struct rconn *rc, const struct config *cfg, bool *down)
{
    uint32_t n = (uint32_t)cfg->cluster_partitions;
    json_t *out = json_array();
    char key[CLUSTER_KEY_MAX];
    for (uint32_t k = 0; k < n; k++) {
        cluster_key_lease(cfg, k, key, sizeof key);
        struct rcmd cmds[2] = {{0}, {0}};
        rcmd_add(&cmds[0], "GET");
        rcmd_add(&cmds[0], key);
        rcmd_add(&cmds[1], "PTTL");
        rcmd_add(&cmds[1], key);
        redisReply *rep[2];
        if (rconn_pipeline(rc, 2, cmds, rep) != 0) {
            *down = true;
            json_decref(out);
            return NULL;
        }
        json_t *owner = json_null();
        if (rep[0]->type == REDIS_REPLY_STRING) {
            const char *bar = memchr(rep[0]->str, '|', rep[0]->len);
            owner = json_stringn(rep[0]->str, bar ? (size_t)(bar - rep[0]->str) : rep[0]->len);
        }
        long long ttl = rep[1]->type == REDIS_REPLY_INTEGER ? rep[1]->integer : -2;
        json_t *o = json_pack("{s:i,s:o}", "partition", (int)k, "owner", owner);
        if (ttl >= 0) {
            json_object_set_new(o, "lease_ttl_ms", json_integer(ttl));
            json_object_set_new(o, "lease_age_ms", json_integer(cfg->cluster_lease_ms - ttl));
        } else {
            json_object_set_new(o, "lease_ttl_ms", json_null());
            json_object_set_new(o, "lease_age_ms", json_null());
        }
        json_array_append_new(out, o);
        freeReplyObject(rep[0]);
        freeReplyObject(rep[1]);
    }
    return out;
}

json_t *cluster_describe(struct rconn *rc, const struct config *cfg, const struct cluster *c,
                         bool *redis_down)
{
    *redis_down = false;
    json_t *out = json_pack("{s:s,s:s,s:i,s:i}", "mode", c ? "partitioned" : "single", "node_id",
                            cfg->node_id, "partitions", c ? (int)c->nparts : 0, "lease_ms",
                            cfg->cluster_lease_ms);
    if (c == NULL) {
        json_t *self =
            json_pack("{s:s,s:s,s:i,s:i,s:i}", "node_id", cfg->node_id, "http_host", cfg->http_host,
                      "http_port", cfg->http_port, "partitions", 0, "last_seen_ms", 0);
        json_object_set_new(out, "instances", json_pack("[o]", self));
        json_object_set_new(out, "assignments", json_array());
        return out;
    }
    json_t *instances = describe_instances(rc, cfg, redis_down);
    json_t *leases = instances ? describe_leases(rc, cfg, redis_down) : NULL;
    if (instances == NULL || leases == NULL) {
        json_decref(instances);
        json_decref(out);
        *redis_down = true;
        return NULL;
    }
    json_object_set_new(out, "instances", instances);
    json_object_set_new(out, "assignments", leases);
    return out;
}
