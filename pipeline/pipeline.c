/* Pipeline wiring and life cycle (pipeline.h).
 *
 * Threads: paho's delivery thread (MQTT subscriber -> ingest), N edge workers (each owns one
 * edge_shard: no locks on account state), the sink, the decider, and a snapshot timer. Queues:
 * one per worker (ingest -> worker, FIFO, so a marker splits every worker's stream at the same
 * sequence number) and one into the sink.
 *
 * Start: load the snapshot (windows, recent ids, sequence S), start workers and sink, replay the
 * journal from S, then start the decider and the subscriber. Stop: close ingest, let the queues
 * drain, stop the subscriber, push a final marker and wait for its snapshot (all bounded by
 * drain_timeout_ms), then close the queues in pipeline order so every stage drains into the next
 * before it exits. */
#include "pipeline.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "batch.h"
#include "bqueue.h"
#include "clock.h"
#include "decide.h"
#include "dedupe.h"
#include "detector.h"
#include "edge.h"
#include "feed.h"
#include "outbox.h"
#include "err.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "mqttc.h"
#include "shard.h"
#include "sink.h"
#include "snapshot.h"
#include "xmalloc.h"

#define WORKER_POP_MAX 16           /* batches a worker takes per wake-up */
#define WORKER_QUEUE_BATCHES 256    /* per worker: 8,192 events of back-pressure slack */
#define POOL_KEEP_BATCHES 512       /* idle batches kept for reuse (~8 MiB) */
#define MARKER_TIMEOUT_INTERVALS 10 /* a marker not done after this many intervals is abandoned */

struct worker {
    struct pipeline *p;
    uint32_t index;
    struct edge_shard *shard;
    pthread_mutex_t shard_mu; /* held by the worker per batch; pipeline_account reads under it */
    struct bqueue *in;
    pthread_t thread;
    bool started;
    atomic_size_t accounts;
};

struct pipeline {
    const struct config *cfg;
    struct store *store;
    struct zscore_params params;
    uint32_t nworkers;
    struct worker *workers;
    struct bqueue **worker_queues;
    struct bqueue *sink_queue;
    struct evbatch_pool *pool;
    struct dedupe *dedupe; /* owned by ingest; kept for restoring the snapshot */
    struct ingest *ingest;
    struct sink *sink;
    struct decider *decider;
    struct feed *feed;     /* anomalies and decisions for GET /v1/stream */
    struct outbox *outbox; /* webhook subscriptions new anomalies and decisions are matched to */
    struct mqttc *subscriber;
    pthread_t timer;
    bool timer_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    bool started;      /* some thread runs: pipeline_stop has work to do */
    bool sink_started; /* a final snapshot can be written */
    bool stopped;
};

/* ------------------------------------------------------------------------------------------ */
/* Edge workers                                                                                 */

static void encode_account(void *ctx, const char *account, const double *vals, uint32_t n,
                           double last_z)
{
    struct evbatch *b = ctx;
    if (snapshot_encode_account(&b->snap, account, vals, n, last_z) != 0)
        log_error("snapshot.encode", "account %s could not be encoded", account);
}

static void worker_score(struct worker *w, struct evbatch *b)
{
    int64_t now = clock_wall_ms();
    struct edge_item items[EVBATCH_MAX];
    for (uint32_t i = 0; i < b->n; i++) {
        struct scored_event *se = &b->items[i];
        items[i] = (struct edge_item){se->ev.account, se->ev.amount, &se->r};
        se->detected_ms = now;
    }
    edge_shard_score_batch(w->shard, items, b->n);
    metrics_add(M_EVENTS_SCORED, b->n);
    atomic_store(&w->accounts, edge_shard_accounts(w->shard));
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct pipeline *p = w->p;
    void *items[WORKER_POP_MAX];
    for (;;) {
        int n = bqueue_pop_many(w->in, items, WORKER_POP_MAX, -1);
        if (n < 0)
            break;
        for (int i = 0; i < n; i++) {
            struct evbatch *b = items[i];
            pthread_mutex_lock(&w->shard_mu);
            if (b->kind == EVBATCH_EVENTS)
                worker_score(w, b);
            else if (b->kind == EVBATCH_MARKER)
                edge_shard_foreach(w->shard, encode_account, b);
            pthread_mutex_unlock(&w->shard_mu);
            if (bqueue_push(p->sink_queue, b) != 0)
                evbatch_put(p->pool, b);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Snapshot restore                                                                             */

struct restore_ctx {
    struct pipeline *p;
    uint64_t seq;
    size_t accounts;
};

static int on_snap_header(void *vctx, uint64_t seq, uint32_t window)
{
    struct restore_ctx *ctx = vctx;
    ctx->seq = seq;
    if (window != ctx->p->params.window)
        log_warn("snapshot.window_changed",
                 "snapshot was taken with window %u, now %u: windows are cut or grown to fit",
                 window, ctx->p->params.window);
    return 0;
}

static int on_snap_ids(void *vctx, const uint64_t *ids, size_t n)
{
    struct restore_ctx *ctx = vctx;
    for (size_t i = 0; i < n; i++)
        dedupe_check_insert(ctx->p->dedupe, ids[i]);
    return 0;
}

static int on_snap_account(void *vctx, const char *account, const double *vals, uint32_t n,
                           double last_z)
{
    struct restore_ctx *ctx = vctx;
    struct pipeline *p = ctx->p;
    edge_shard_restore(p->workers[shard_of(account, p->nworkers)].shard, account, vals, n, last_z);
    ctx->accounts++;
    return 0;
}

/* Loads the snapshot if there is one; *seq is the journal sequence to replay from. */
static int restore_snapshot(struct pipeline *p, uint64_t *seq, char *err, size_t errlen)
{
    char path[CONFIG_STR_MAX + 16];
    snprintf(path, sizeof path, "%s/edge.snap", p->cfg->data_dir);
    struct restore_ctx ctx = {p, 1, 0};
    struct snapshot_visitor v = {&ctx, on_snap_header, on_snap_ids, on_snap_account};
    int rv = snapshot_load(path, &v);
    if (rv == ERR_NOTFOUND) {
        *seq = 1;
        return 0;
    }
    if (rv != 0) {
        snprintf(err, errlen,
                 "edge snapshot %s is unreadable (%s); move it away to start from "
                 "the journal alone",
                 path, err_str(rv));
        return rv;
    }
    for (uint32_t w = 0; w < p->nworkers; w++)
        atomic_store(&p->workers[w].accounts, edge_shard_accounts(p->workers[w].shard));
    log_info("snapshot.restored", "restored %zu accounts and %zu recent ids at seq %llu",
             ctx.accounts, dedupe_count(p->dedupe), (unsigned long long)ctx.seq);
    *seq = ctx.seq;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* MQTT subscriber and snapshot timer                                                           */

static int on_message(void *ctx, const char *topic, const void *payload, size_t len)
{
    struct pipeline *p = ctx;
    (void)topic;
    metrics_inc(M_MQTT_MESSAGES);
    /* While stopping, refuse: paho keeps the message and it is delivered after the restart. */
    return ingest_payload(p->ingest, payload, len, "mqtt", NULL) == 0 ? 0 : -1;
}

/* Waits until every pipeline queue is empty, or the monotonic deadline passes. */
static bool wait_drained(struct pipeline *p, int64_t deadline_ms)
{
    for (;;) {
        size_t queued = bqueue_len(p->sink_queue);
        for (uint32_t w = 0; w < p->nworkers; w++)
            queued += bqueue_len(p->worker_queues[w]);
        if (queued == 0)
            return true;
        if (clock_mono_ms() >= deadline_ms)
            return false;
        clock_sleep_ms(5);
    }
}

/* Waits until the sink has committed the snapshot of marker seq, or timeout_ms passes. */
static bool wait_snapshot(struct pipeline *p, uint64_t seq, int64_t timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (sink_snapshot_seq(p->sink) < seq) {
        if (clock_mono_ms() >= deadline)
            return false;
        clock_sleep_ms(5);
    }
    return true;
}

static void *timer_main(void *arg)
{
    struct pipeline *p = arg;
    uint64_t outstanding = 0;
    int64_t issued_ms = 0;
    int64_t interval = p->cfg->snapshot_interval_ms;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += interval / 1000;
        ts.tv_nsec += (interval % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        if (p->stopping)
            break;
        pthread_mutex_unlock(&p->mu);
        int64_t now = clock_mono_ms();
        bool done = sink_snapshot_seq(p->sink) >= outstanding;
        if (done || now - issued_ms > MARKER_TIMEOUT_INTERVALS * interval) {
            int64_t seq = ingest_marker(p->ingest);
            if (seq > 0) {
                outstanding = (uint64_t)seq;
                issued_ms = now;
            }
        }
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                   */

struct pipeline *pipeline_new(const struct config *cfg, struct store *store, char *err,
                              size_t errlen)
{
    (void)err;
    (void)errlen;
    struct pipeline *p = xcalloc(1, sizeof *p);
    p->cfg = cfg;
    p->store = store;
    struct detector_params dp;
    detector_config(cfg, &p->params, &dp);
    p->nworkers = (uint32_t)cfg->edge_workers;
    p->pool = evbatch_pool_new(POOL_KEEP_BATCHES);
    p->sink_queue = bqueue_new((size_t)cfg->queue_capacity);
    p->workers = xcalloc(p->nworkers, sizeof *p->workers);
    p->worker_queues = xcalloc(p->nworkers, sizeof *p->worker_queues);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        p->worker_queues[w] = bqueue_new(WORKER_QUEUE_BATCHES);
        p->workers[w] = (struct worker){
            .p = p, .index = w, .shard = edge_shard_new(&p->params), .in = p->worker_queues[w]};
        edge_shard_set_detector(p->workers[w].shard, &dp);
        atomic_init(&p->workers[w].accounts, 0);
        pthread_mutex_init(&p->workers[w].shard_mu, NULL);
    }
    p->dedupe = dedupe_new((size_t)cfg->dedupe_capacity);
    p->ingest = ingest_new(cfg, p->worker_queues, p->nworkers, p->pool, p->dedupe);
    p->feed = feed_new((size_t)cfg->sse_backlog);
    p->outbox = outbox_new();
    p->sink = sink_new(cfg, store, p->pool, p->nworkers, p->sink_queue, p->feed, p->outbox);
    p->decider = decider_new(cfg, store, p->feed, p->outbox);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    return p;
}

int pipeline_start(struct pipeline *p, char *err, size_t errlen)
{
    uint64_t seq = 1;
    int rv = restore_snapshot(p, &seq, err, errlen);
    if (rv != 0)
        return rv;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        if (pthread_create(&p->workers[w].thread, NULL, worker_main, &p->workers[w]) != 0) {
            snprintf(err, errlen, "cannot start edge worker %u", w);
            return ERR_INTERNAL;
        }
        p->workers[w].started = true;
        p->started = true;
    }
    if (sink_start(p->sink) != 0) {
        snprintf(err, errlen, "cannot start the sink (see log)");
        return ERR_INTERNAL;
    }
    p->sink_started = true;
    int64_t replayed = ingest_recover(p->ingest, seq, err, errlen);
    if (replayed < 0)
        return (int)replayed;
    if (replayed > 0)
        log_info("journal.replayed", "replayed %lld journal records after seq %llu",
                 (long long)replayed, (unsigned long long)seq);
    if (decider_start(p->decider) != 0) {
        snprintf(err, errlen, "cannot start the decider (see log)");
        return ERR_INTERNAL;
    }
    char persist[CONFIG_STR_MAX + 16];
    snprintf(persist, sizeof persist, "%s/mqtt", p->cfg->data_dir);
    struct mqttc_options mo = {.url = p->cfg->mqtt_url,
                               .client_id = p->cfg->node_id,
                               .username = p->cfg->mqtt_username,
                               .password = p->cfg->mqtt_password,
                               /* QoS 0 has nothing to redeliver: no file per message */
                               .persist_dir = p->cfg->mqtt_qos > 0 ? persist : NULL,
                               .clean_session = p->cfg->mqtt_clean_session,
                               .keepalive_s = p->cfg->mqtt_keepalive_s,
                               .subscribe_topic = p->cfg->mqtt_topic,
                               .subscribe_qos = p->cfg->mqtt_qos,
                               .on_message = on_message,
                               .ctx = p};
    p->subscriber = mqttc_new(&mo);
    if (p->subscriber == NULL) {
        snprintf(err, errlen, "cannot create the MQTT subscriber for %s", p->cfg->mqtt_url);
        return ERR_INTERNAL;
    }
    if (pthread_create(&p->timer, NULL, timer_main, p) != 0) {
        snprintf(err, errlen, "cannot start the snapshot timer");
        return ERR_INTERNAL;
    }
    p->timer_started = true;
    return 0;
}

void pipeline_stop(struct pipeline *p)
{
    if (!p->started || p->stopped)
        return;
    p->stopped = true;
    /* Close ingest first, and if the queues do not drain in time (a dependency is down), abort the
     * sink so they do: a delivery callback blocked on a full queue would otherwise keep the
     * subscriber's disconnect waiting forever. What is dropped is still in the journal. */
    ingest_close(p->ingest);
    int64_t deadline = clock_mono_ms() + p->cfg->drain_timeout_ms;
    if (!p->sink_started || !wait_drained(p, deadline)) {
        log_warn("pipeline.drain_timeout",
                 "queues not drained within %d ms; the journal keeps "
                 "the rest for the next start",
                 p->cfg->drain_timeout_ms);
        sink_abort(p->sink);
        if (!p->sink_started)
            bqueue_close(p->sink_queue);
    }
    mqttc_free(p->subscriber, 2000);
    p->subscriber = NULL;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->timer_started)
        pthread_join(p->timer, NULL);

    int64_t seq = p->sink_started ? ingest_marker(p->ingest) : ERR_CLOSED;
    int64_t left = deadline - clock_mono_ms();
    if (seq <= 0 || !wait_snapshot(p, (uint64_t)seq, left > 1000 ? left : 1000)) {
        log_warn("pipeline.snapshot_timeout", "final snapshot not written; the journal keeps "
                                              "the rest for the next start");
        sink_abort(p->sink);
    }
    for (uint32_t w = 0; w < p->nworkers; w++)
        bqueue_close(p->worker_queues[w]);
    for (uint32_t w = 0; w < p->nworkers; w++)
        if (p->workers[w].started)
            pthread_join(p->workers[w].thread, NULL);
    bqueue_close(p->sink_queue);
    sink_join(p->sink);
    decider_stop(p->decider);
}

void pipeline_free(struct pipeline *p)
{
    if (p == NULL)
        return;
    pipeline_stop(p);
    mqttc_free(p->subscriber, 0);
    decider_free(p->decider);
    sink_free(p->sink);
    feed_free(p->feed);
    outbox_free(p->outbox);
    ingest_free(p->ingest); /* frees the dedupe too */
    void *item;
    for (uint32_t w = 0; w < p->nworkers; w++) {
        while (bqueue_pop_many(p->worker_queues[w], &item, 1, 0) == 1)
            evbatch_put(p->pool, item);
        bqueue_free(p->worker_queues[w]);
        edge_shard_free(p->workers[w].shard);
        pthread_mutex_destroy(&p->workers[w].shard_mu);
    }
    while (bqueue_pop_many(p->sink_queue, &item, 1, 0) == 1)
        evbatch_put(p->pool, item);
    bqueue_free(p->sink_queue);
    evbatch_pool_free(p->pool);
    free(p->workers);
    free(p->worker_queues);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int pipeline_submit(struct pipeline *p, const char *payload, size_t len, const char *source,
                    struct submit_counts *counts)
{
    return ingest_payload(p->ingest, payload, len, source, counts);
}

struct feed *pipeline_feed(struct pipeline *p)
{
    return p->feed;
}

struct outbox *pipeline_outbox(struct pipeline *p)
{
    return p->outbox;
}

int pipeline_account(struct pipeline *p, const char *account, struct pipeline_account *out)
{
    if (account[0] == '\0' || strlen(account) > EVENT_ACCOUNT_MAX)
        return ERR_INVAL;
    struct worker *w = &p->workers[shard_of(account, p->nworkers)];
    int rv = ERR_NOTFOUND;
    pthread_mutex_lock(&w->shard_mu);
    const struct zwin *win = edge_shard_find(w->shard, account);
    if (win != NULL) {
        out->n = win->n;
        out->window = p->params.window;
        out->last_z = win->last_z;
        zwin_exact_stats(win, p->params.window, &out->mean, &out->std);
        rv = 0;
    }
    pthread_mutex_unlock(&w->shard_mu);
    return rv;
}

void pipeline_health(struct pipeline *p, struct pipeline_health *out)
{
    memset(out, 0, sizeof *out);
    out->mqtt_up = p->subscriber != NULL && mqttc_is_connected(p->subscriber);
    out->redis_up = decider_redis_up(p->decider) && sink_redis_up(p->sink);
    out->llm = (int)decider_llm_state(p->decider);
    out->store_up = store_ping(p->store) == 0 && sink_store_writing(p->sink); /* reads + writes */
    out->queued = bqueue_len(p->sink_queue);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        out->queued += bqueue_len(p->worker_queues[w]);
        out->accounts += atomic_load(&p->workers[w].accounts);
    }
}
