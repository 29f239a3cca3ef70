/* Pipeline wiring and life cycle (pipeline.h).
 *
 * Threads: the MQTT subscriber's reader (mqttsub: socket -> ingest), N edge workers (each owns one
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
#include <unistd.h>
#include "batch.h"
#include "bqueue.h"
#include "clock.h"
#include "cluster.h"
#include "decide.h"
#include "dedupe.h"
#include "detector.h"
#include "edge.h"
#include "feed.h"
#include "outbox.h"
#include "err.h"
#include "event.h"
#include "ingest.h"
#include "log.h"
#include "metrics.h"
#include "mqttc.h"
#include "rconn.h"
#include "shard.h"
#include "sink.h"
#include "snapshot.h"
#include "thread.h"
#include "xmalloc.h"

#define WORKER_POP_MAX 16           /* batches a worker takes per wake-up */
#define WORKER_QUEUE_BATCHES 256    /* per worker: 8,192 events of back-pressure slack */
#define POOL_KEEP_BATCHES 512       /* idle batches kept for reuse (~8 MiB) */
#define MARKER_TIMEOUT_INTERVALS 10 /* a marker not done after this many intervals is abandoned */
/* One partition's saved state is capped like the snapshot file. */
#define PART_IMAGE_MAX ((size_t)8 << 30)
#define FORWARD_FLUSH_MS 5000       /* HTTP events forwarded to their partition's topic */
#define PART_SUBSCRIBE_WAIT_MS 5000 /* a taken partition's session subscribing */

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

struct partition_sub { /* one partition's MQTT session while this instance consumes it */
    struct pipeline *p;
    uint32_t k;
    struct mqttc *sub;           /* only touched by the cluster's threads, one at a time */
    uint64_t journal_fails_seen; /* ingest_flush's, for sub's reader thread */
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
    struct feed *feed;        /* anomalies and decisions for GET /v1/stream */
    struct outbox *outbox;    /* webhook subscriptions new anomalies and decisions are matched to */
    struct mqttc *subscriber; /* single-instance mode: mqtt_topic */
    uint64_t journal_fails_seen;  /* ingest_flush's, for the subscriber's reader thread */
    struct cluster *cluster;      /* cluster mode (cluster_partitions > 0), else NULL */
    struct partition_sub *parts;  /* cluster mode: per partition */
    _Atomic uint64_t *valid_from; /* per partition: first marker holding its restored state */
    struct mqttc *forwarder;      /* publishes events of partitions consumed elsewhere */
    struct rconn *save_rc;        /* the sink thread's, for saving partitions */
    struct rconn *restore_rc;     /* the cluster thread's, for restoring partitions */
    uint64_t start_seq;           /* journal sequence of the local snapshot loaded at start */
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
    char name[16];
    snprintf(name, sizeof name, "worker-%u", (unsigned)w->index);
    thread_name(name);
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
            /* Events without an exception can wait for the sink's linger: no wake-up for them. */
            bool lazy = b->kind == EVBATCH_EVENTS && !evbatch_has_exception(b);
            if ((lazy ? bqueue_push_lazy : bqueue_push)(p->sink_queue, b) != 0)
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

/* The journal records of a read's messages are written once, by on_batch_end, before the read's
 * PUBACKs (ingest.h ingest_payload_batched). */
static int on_message(void *ctx, const char *topic, const void *payload, size_t len)
{
    struct pipeline *p = ctx;
    (void)topic;
    metrics_inc(M_MQTT_MESSAGES);
    /* While stopping, refuse: the message is not acknowledged, so the broker keeps it for the
     * persistent session and delivers it after the restart. */
    return ingest_payload_batched(p->ingest, payload, len, "mqtt") == 0 ? 0 : -1;
}

/* A failed journal write leaves the read unacknowledged: the subscriber reconnects and a
 * persistent session delivers those messages again. */
static int on_batch_end(void *ctx)
{
    struct pipeline *p = ctx;
    return ingest_flush(p->ingest, &p->journal_fails_seen) == 0 ? 0 : -1;
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
    thread_name("timer");
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
/* Cluster mode: partitions, their sessions, saved state and forwarding                        */

/* Per-thread outcome of forwarding during one pipeline_submit (the router runs on the caller's
 * thread, under the ingest lock). */
static _Thread_local int tls_forwarded, tls_forward_failed;

/* ingest router: an event is processed here when its partition is consumed here. Events that
 * arrived over MQTT stay here while the partition is not PART_NONE (they came in order through
 * its session, also while it is being handed over, and are saved with it); the rest are
 * republished on their partition's topic, where the owner's session receives them. */
static bool route_event(void *ctx, const char *source, const struct event *ev)
{
    struct pipeline *p = ctx;
    uint32_t k = partition_of(ev->account, cluster_partitions(p->cluster));
    if (strcmp(source, "mqtt") == 0 ? cluster_state(p->cluster, k) != PART_NONE
                                    : cluster_owns(p->cluster, k))
        return false;
    char topic[CONFIG_STR_MAX + EVENT_ACCOUNT_MAX + 48];
    snprintf(topic, sizeof topic, "%s/%u/%s/%llu", p->cfg->cluster_topic_prefix, k, ev->account,
             (unsigned long long)ev->txid);
    json_t *j = event_to_json(ev);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    int rv = text ? mqttc_publish(p->forwarder, topic, text, strlen(text), 1) : ERR_INTERNAL;
    free(text);
    if (rv == 0) {
        tls_forwarded++;
        metrics_inc(M_CLUSTER_FORWARDED);
    } else {
        tls_forward_failed++;
        log_warn("cluster.forward_failed", "event %llu of partition %u could not be forwarded (%s)",
                 (unsigned long long)ev->txid, k, err_str(rv));
    }
    return true;
}

static int on_partition_message(void *ctx, const char *topic, const void *payload, size_t len)
{
    struct partition_sub *ps = ctx;
    return on_message(ps->p, topic, payload, len);
}

static int on_partition_batch_end(void *ctx)
{
    struct partition_sub *ps = ctx;
    return ingest_flush(ps->p->ingest, &ps->journal_fails_seen) == 0 ? 0 : -1;
}

/* A partition's session connects while its lease is being taken or is held and fresh. */
static bool partition_may_connect(void *ctx)
{
    struct partition_sub *ps = ctx;
    return cluster_state(ps->p->cluster, ps->k) == PART_ACQUIRING ||
           cluster_owns(ps->p->cluster, ps->k);
}

struct restore_part {
    struct pipeline *p;
    size_t accounts;
};

static int on_part_account(void *vctx, const char *account, const double *vals, uint32_t n,
                           double last_z)
{
    struct restore_part *rp = vctx;
    struct worker *w = &rp->p->workers[shard_of(account, rp->p->nworkers)];
    pthread_mutex_lock(&w->shard_mu);
    edge_shard_restore(w->shard, account, vals, n, last_z);
    atomic_store(&w->accounts, edge_shard_accounts(w->shard));
    pthread_mutex_unlock(&w->shard_mu);
    rp->accounts++;
    return 0;
}

/* Loads the saved recent-id memory of the node that last saved a partition. */
static void restore_ids(struct pipeline *p, const char *writer)
{
    char key[CONFIG_STR_MAX];
    cluster_key_ids(p->cfg, writer, key, sizeof key);
    redisReply *r = rconn_cmd(p->restore_rc, "GET", key, NULL);
    if (r != NULL && r->type == REDIS_REPLY_STRING && r->len % 8 == 0) {
        size_t n = r->len / 8;
        uint64_t *ids = xmalloc((n ? n : 1) * sizeof *ids);
        const unsigned char *b = (const unsigned char *)r->str;
        for (size_t i = 0; i < n; i++) {
            uint64_t v = 0;
            for (int j = 7; j >= 0; j--)
                v = v << 8 | b[8 * i + (size_t)j];
            ids[i] = v;
        }
        ingest_remember_ids(p->ingest, ids, n);
        free(ids);
    }
    if (r)
        freeReplyObject(r);
}

/* True when this node (the same node_id and data_dir) wrote the saved image at a journal
 * sequence its own state already covers: the local snapshot it started from, or a snapshot of
 * this run. Its windows then hold everything the image holds and what came after (the journal
 * replayed at start), so keeping them beats restoring the older image. */
static bool saved_by_us(const struct pipeline *p, const redisReply *writer, const redisReply *seq)
{
    if (writer->type != REDIS_REPLY_STRING || seq->type != REDIS_REPLY_STRING ||
        strcmp(writer->str, p->cfg->node_id) != 0)
        return false;
    uint64_t saved = strtoull(seq->str, NULL, 10);
    uint64_t here = sink_snapshot_seq(p->sink);
    return saved > 0 && saved <= (here > p->start_seq ? here : p->start_seq);
}

/* cluster hook: restore partition k's saved windows (and its saver's recent ids) into the edge,
 * mark the first snapshot that holds them, then connect k's session. */
static int partition_acquire(void *ctx, uint32_t k)
{
    struct pipeline *p = ctx;
    char key[CONFIG_STR_MAX];
    cluster_key_snap(p->cfg, k, key, sizeof key);
    redisReply *r = rconn_cmd(p->restore_rc, "HMGET", key, "image", "writer", "seq", NULL);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
        log_warn("cluster.restore_failed", "partition %u: its saved state could not be read", k);
        if (r)
            freeReplyObject(r);
        return ERR_CONN;
    }
    struct restore_part rp = {p, 0};
    bool kept = saved_by_us(p, r->element[1], r->element[2]);
    if (kept) {
        log_info("cluster.kept",
                 "partition %u: last saved by this node at or before its own "
                 "state; the local windows (journal replayed) are kept",
                 k);
    } else if (r->element[0]->type == REDIS_REPLY_STRING) {
        if (r->element[1]->type == REDIS_REPLY_STRING)
            restore_ids(p, r->element[1]->str);
        struct snapshot_visitor v = {&rp, NULL, NULL, on_part_account};
        char what[64];
        snprintf(what, sizeof what, "saved state of partition %u", k);
        if (snapshot_parse(r->element[0]->str, r->element[0]->len, what, &v) != 0)
            log_error("cluster.restore_corrupt",
                      "partition %u: saved state unusable; its windows start empty", k);
    }
    if (!kept)
        log_info("cluster.restored", "partition %u: %zu account windows restored (saved by %s)", k,
                 rp.accounts,
                 r->element[1]->type == REDIS_REPLY_STRING ? r->element[1]->str : "nobody yet");
    freeReplyObject(r);
    int64_t seq = ingest_marker(p->ingest);
    atomic_store(&p->valid_from[k], seq > 0 ? (uint64_t)seq : UINT64_MAX);
    char topic[CONFIG_STR_MAX + 16], client_id[96];
    snprintf(topic, sizeof topic, "%s/%u/#", p->cfg->cluster_topic_prefix, k);
    snprintf(client_id, sizeof client_id, "%s-p%u", p->cfg->cluster_name, k);
    struct mqttc_options mo = {.url = p->cfg->mqtt_url,
                               .client_id = client_id,
                               .username = p->cfg->mqtt_username,
                               .password = p->cfg->mqtt_password,
                               .clean_session = false,
                               .keepalive_s = p->cfg->mqtt_keepalive_s,
                               .subscribe_topic = topic,
                               .subscribe_qos = 1,
                               .on_message = on_partition_message,
                               .on_batch_end = on_partition_batch_end,
                               .may_connect = partition_may_connect,
                               .ctx = &p->parts[k]};
    p->parts[k].sub = mqttc_new(&mo);
    if (p->parts[k].sub == NULL)
        return ERR_INTERNAL;
    /* Active means subscribed: the first owner of a partition creates its session, and what is
     * published before that is not kept by the broker. Not waited for while the broker is down
     * (the forwarder says so): the session connects when it is back. */
    if (mqttc_is_connected(p->forwarder) &&
        mqttc_wait_connected(p->parts[k].sub, PART_SUBSCRIBE_WAIT_MS) != 0)
        log_warn("cluster.subscribe_slow", "partition %u: session not subscribed within %d ms", k,
                 PART_SUBSCRIBE_WAIT_MS);
    return 0;
}

/* cluster hook: disconnect k's session (the broker keeps queueing for it) and, for a hand-over,
 * wait until a snapshot taken after the last of its events has saved it. */
static void partition_release(void *ctx, uint32_t k, bool save)
{
    struct pipeline *p = ctx;
    mqttc_free(p->parts[k].sub, 0); /* a subscriber has no publishes of its own to wait for */
    p->parts[k].sub = NULL;
    if (!save)
        return;
    int64_t seq = ingest_marker(p->ingest);
    if (seq <= 0 || !wait_snapshot(p, (uint64_t)seq, p->cfg->drain_timeout_ms))
        log_warn("cluster.save_timeout",
                 "partition %u handed over without a final save: its next owner "
                 "restores the previous one",
                 k);
}

struct split_ctx {
    struct pipeline *p;
    struct buf *bufs; /* per partition being saved, else max 0 */
    const bool *want;
};

static int on_split_account(void *vctx, const char *account, const double *vals, uint32_t n,
                            double last_z)
{
    struct split_ctx *sc = vctx;
    uint32_t k = partition_of(account, cluster_partitions(sc->p->cluster));
    if (sc->want[k] && snapshot_encode_account(&sc->bufs[k], account, vals, n, last_z) != 0)
        log_error("cluster.save", "account %s does not fit its partition image", account);
    return 0;
}

/* Saves the recent-id memory under this node's ids key (little-endian u64s). */
static void save_ids(struct pipeline *p, const uint64_t *ids, size_t nids)
{
    unsigned char *blob = xmalloc(nids ? nids * 8 : 1);
    for (size_t i = 0; i < nids; i++)
        for (int j = 0; j < 8; j++)
            blob[8 * i + (size_t)j] = (unsigned char)(ids[i] >> (8 * j));
    char key[CONFIG_STR_MAX];
    cluster_key_ids(p->cfg, p->cfg->node_id, key, sizeof key);
    const char *argv[] = {"SET", key, (const char *)blob};
    size_t lens[] = {3, strlen(key), nids * 8};
    redisReply *r = rconn_command(p->save_rc, 3, argv, lens);
    if (r)
        freeReplyObject(r);
    free(blob);
}

/* sink hook: one image per partition consumed here whose restored state this snapshot holds,
 * saved with a fenced write (only while this run holds the lease). */
static void save_partitions(void *ctx, uint64_t seq, const struct buf *const *parts,
                            uint32_t nparts, const uint64_t *ids, size_t nids)
{
    struct pipeline *p = ctx;
    uint32_t np = cluster_partitions(p->cluster);
    bool *want = xcalloc(np, sizeof *want);
    size_t nwant = 0;
    for (uint32_t k = 0; k < np; k++) {
        enum partition_state st = cluster_state(p->cluster, k);
        want[k] =
            (st == PART_ACTIVE || st == PART_RELEASING) && seq >= atomic_load(&p->valid_from[k]);
        nwant += want[k];
    }
    if (nwant == 0) {
        free(want);
        return;
    }
    struct buf *bufs = xcalloc(np, sizeof *bufs);
    for (uint32_t k = 0; k < np; k++)
        buf_init(&bufs[k], want[k] ? PART_IMAGE_MAX : 0);
    struct split_ctx sc = {p, bufs, want};
    struct snapshot_visitor v = {&sc, NULL, NULL, on_split_account};
    struct buf image;
    buf_init(&image, PART_IMAGE_MAX);
    for (uint32_t i = 0; i < nparts; i++) { /* each worker's accounts, walked as an image */
        buf_reset(&image);
        if (snapshot_format(&image, seq, p->params.window, NULL, 0, parts[i]->data,
                            parts[i]->len) == 0)
            snapshot_parse(image.data, image.len, "worker snapshot", &v);
    }
    save_ids(p, ids, nids);
    size_t saved = 0;
    for (uint32_t k = 0; k < np; k++) {
        if (!want[k])
            continue;
        buf_reset(&image);
        if (snapshot_format(&image, seq, p->params.window, NULL, 0, bufs[k].data, bufs[k].len) ==
                0 &&
            cluster_save_partition(p->save_rc, p->cluster, k, seq, image.data, image.len) == 1)
            saved++;
    }
    if (saved < nwant)
        log_warn("cluster.save", "%zu of %zu partitions saved at seq %llu", saved, nwant,
                 (unsigned long long)seq);
    buf_cleanup(&image);
    for (uint32_t k = 0; k < np; k++)
        buf_cleanup(&bufs[k]);
    free(bufs);
    free(want);
}

/* Cluster mode parts of pipeline_new: NULL on success, else what failed. */
static const char *cluster_new_parts(struct pipeline *p, char *err, size_t errlen)
{
    uint32_t np = (uint32_t)p->cfg->cluster_partitions;
    p->parts = xcalloc(np, sizeof *p->parts);
    p->valid_from = xcalloc(np, sizeof *p->valid_from);
    for (uint32_t k = 0; k < np; k++) {
        p->parts[k] = (struct partition_sub){.p = p, .k = k};
        atomic_init(&p->valid_from[k], UINT64_MAX);
    }
    p->save_rc = rconn_new(p->cfg->redis_url, p->cfg->redis_timeout_ms, err, errlen);
    p->restore_rc = rconn_new(p->cfg->redis_url, p->cfg->redis_timeout_ms, err, errlen);
    struct cluster_hooks hooks = {p, partition_acquire, partition_release};
    p->cluster = p->save_rc && p->restore_rc ? cluster_new(p->cfg, &hooks, err, errlen) : NULL;
    if (p->cluster == NULL)
        return "cluster";
    ingest_set_router(p->ingest, route_event, p);
    sink_set_snapshot_hook(p->sink, save_partitions, p);
    return NULL;
}

/* Cluster mode parts of pipeline_start, after the journal replay: let the replayed events reach
 * the edge (a partition restored later must not be changed by them), then join the cluster. */
static int cluster_start_parts(struct pipeline *p, char *err, size_t errlen)
{
    if (!wait_drained(p, clock_mono_ms() + p->cfg->drain_timeout_ms))
        log_warn("cluster.replay_slow", "replayed events still queued when joining the cluster");
    p->forwarder = mqttc_new_publisher(p->cfg, "forward");
    if (p->forwarder == NULL || cluster_start(p->cluster) != 0) {
        snprintf(err, errlen, "cannot start the cluster member (see log)");
        return ERR_INTERNAL;
    }
    return 0;
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
    if (cfg->cluster_partitions > 0 && cluster_new_parts(p, err, errlen) != NULL) {
        pipeline_free(p);
        return NULL;
    }
    return p;
}

int pipeline_start(struct pipeline *p, char *err, size_t errlen)
{
    uint64_t seq = 1;
    int rv = restore_snapshot(p, &seq, err, errlen);
    if (rv != 0)
        return rv;
    p->start_seq = seq;
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
    if (p->cluster != NULL) {
        rv = cluster_start_parts(p, err, errlen);
        if (rv != 0)
            return rv;
        goto timer;
    }
    struct mqttc_options mo = {.url = p->cfg->mqtt_url,
                               .client_id = p->cfg->node_id,
                               .username = p->cfg->mqtt_username,
                               .password = p->cfg->mqtt_password,
                               .clean_session = p->cfg->mqtt_clean_session,
                               .keepalive_s = p->cfg->mqtt_keepalive_s,
                               .subscribe_topic = p->cfg->mqtt_topic,
                               .subscribe_qos = p->cfg->mqtt_qos,
                               .on_message = on_message,
                               .on_batch_end = on_batch_end,
                               .ctx = p};
    p->subscriber = mqttc_new(&mo);
    if (p->subscriber == NULL) {
        snprintf(err, errlen, "cannot create the MQTT subscriber for %s", p->cfg->mqtt_url);
        return ERR_INTERNAL;
    }
timer:
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
    /* Cluster mode: hand every partition over first, while ingest still takes what their
     * sessions deliver (a refused message would reach the next owner after the final save). */
    if (p->cluster != NULL)
        cluster_stop(p->cluster);
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
    cluster_free(p->cluster);
    for (uint32_t k = 0; p->parts != NULL && k < (uint32_t)p->cfg->cluster_partitions; k++)
        mqttc_free(p->parts[k].sub, 0);
    free(p->parts);
    free(p->valid_from);
    mqttc_free(p->forwarder, 2000);
    rconn_free(p->save_rc);
    rconn_free(p->restore_rc);
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
    tls_forwarded = tls_forward_failed = 0;
    int rv = ingest_payload(p->ingest, payload, len, source, counts);
    if (rv == 0 && tls_forward_failed > 0)
        return ERR_CONN;
    if (rv == 0 && tls_forwarded > 0 && mqttc_flush(p->forwarder, FORWARD_FLUSH_MS) != 0)
        return ERR_CONN;
    return rv;
}

struct feed *pipeline_feed(struct pipeline *p)
{
    return p->feed;
}

struct cluster *pipeline_cluster(struct pipeline *p)
{
    return p->cluster;
}

struct outbox *pipeline_outbox(struct pipeline *p)
{
    return p->outbox;
}

int pipeline_account(struct pipeline *p, const char *account, struct pipeline_account *out)
{
    if (account[0] == '\0' || strlen(account) > EVENT_ACCOUNT_MAX)
        return ERR_INVAL;
    if (p->cluster != NULL &&
        !cluster_owns(p->cluster, partition_of(account, cluster_partitions(p->cluster))))
        return ERR_NOTFOUND; /* a window kept from an earlier ownership is stale */
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
    if (p->cluster == NULL) {
        out->mqtt_up = p->subscriber != NULL && mqttc_is_connected(p->subscriber);
    } else { /* the forwarder stands for the broker; a session may be between owners */
        out->mqtt_up = p->forwarder != NULL && mqttc_is_connected(p->forwarder);
        out->cluster = true;
        out->partitions_owned = 0;
        for (uint32_t k = 0; k < cluster_partitions(p->cluster); k++)
            out->partitions_owned += cluster_owns(p->cluster, k);
    }
    out->redis_up = decider_redis_up(p->decider) && sink_redis_up(p->sink);
    out->llm = (int)decider_llm_state(p->decider);
    out->store_up = store_ping(p->store) == 0 && sink_store_writing(p->sink); /* reads + writes */
    out->queued = bqueue_len(p->sink_queue);
    for (uint32_t w = 0; w < p->nworkers; w++) {
        out->queued += bqueue_len(p->worker_queues[w]);
        out->accounts += atomic_load(&p->workers[w].accounts);
    }
}
