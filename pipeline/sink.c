/* The sink thread (sink.h). It pops many batches at once and stages them, so one store
 * transaction, one Redis pipeline and one MQTT flush cover everything that arrived together:
 * under load the per-event cost of durability falls as the batches grow. A marker forces the
 * staged work to be flushed first, which is what makes the snapshot consistent: when every
 * worker's part of marker S is here, every effect of every event before S has been written. */
#include "sink.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "buf.h"
#include "buffer.h"
#include "clock.h"
#include "err.h"
#include "feed.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "mqttc.h"
#include "outbox.h"
#include "rconn.h"
#include "snapshot.h"
#include "thread.h"
#include "xmalloc.h"

#define SINK_STAGE_MAX 2048    /* batches staged per flush (hand-offs are often a few events) */
#define SINK_FLUSH_EVENTS 8192 /* a flush closes at this many events: one store transaction */
#define SINK_MAX_ASSEMBLIES 4  /* snapshot markers in flight at once */
#define SINK_BACKOFF_MAX_MS 1000
#define SINK_CONNECT_WAIT_MS 2000 /* a just-started publisher gets this long to connect */
/* Cap of the buffer holding one flush's transaction documents: a flush has at most
 * SINK_FLUSH_EVENTS + EVBATCH_MAX - 1 events, each document a few KiB at the very most (every
 * field at its length limit, escaped), so this is never reached. */
#define SINK_DOCS_MAX (64u << 20)

struct assembly { /* the parts of one snapshot marker */
    uint64_t seq;
    uint32_t parts;
    struct evbatch **part; /* per worker */
};

struct sink {
    const struct config *cfg;
    sink_snapshot_fn snapshot_hook; /* cluster mode: saves owned partitions (NULL = none) */
    void *snapshot_ctx;
    struct store *store;
    struct evbatch_pool *pool;
    struct feed *feed;     /* exceptions are announced here (GET /v1/stream) */
    struct outbox *outbox; /* and matched against webhook subscriptions */
    uint32_t nworkers;
    struct bqueue *in;
    pthread_t thread;
    bool started;
    atomic_bool aborted;
    atomic_bool redis_up;
    atomic_bool store_writing; /* the last store write succeeded (a full disk clears it) */
    _Atomic uint64_t snapshot_seq;
    struct rconn *rc;
    struct mqttc *pub;
    bool publish_failing; /* the last publish of exceptions failed (logged once) */
    struct buffer_keys keys;
    struct assembly asm_[SINK_MAX_ASSEMBLIES];
    /* staging of one flush */
    struct evbatch *staged[SINK_STAGE_MAX];
    size_t nstaged;
    size_t nstaged_events;
    bool staged_exception;   /* an exception is staged: flush as soon as the queue is empty */
    int64_t first_staged_ns; /* when the oldest staged batch was taken */
    struct buf docs;         /* the flush's transaction documents, NUL-separated, reused */
};

struct sink *sink_new(const struct config *cfg, struct store *store, struct evbatch_pool *pool,
                      uint32_t nworkers, struct bqueue *in, struct feed *feed,
                      struct outbox *outbox)
{
    struct sink *s = xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->store = store;
    s->pool = pool;
    s->feed = feed;
    s->outbox = outbox;
    s->nworkers = nworkers;
    s->in = in;
    atomic_init(&s->aborted, false);
    atomic_init(&s->redis_up, true);
    atomic_init(&s->store_writing, true);
    atomic_init(&s->snapshot_seq, 0);
    buffer_keys_init(cfg, &s->keys);
    buf_init(&s->docs, SINK_DOCS_MAX);
    for (int i = 0; i < SINK_MAX_ASSEMBLIES; i++)
        s->asm_[i].part = xcalloc(nworkers, sizeof *s->asm_[i].part);
    return s;
}

/* Sleeps for the current backoff and doubles it; false once aborted. */
static bool backoff_wait(struct sink *s, int *backoff_ms)
{
    if (atomic_load(&s->aborted))
        return false;
    clock_sleep_ms(*backoff_ms);
    *backoff_ms = *backoff_ms * 2 > SINK_BACKOFF_MAX_MS ? SINK_BACKOFF_MAX_MS : *backoff_ms * 2;
    return !atomic_load(&s->aborted);
}

/* The exception payload of DESIGN.md 3.3. Caller owns the reference. */
static json_t *exception_json(const struct config *cfg, const struct scored_event *se)
{
    json_t *o = event_to_json(&se->ev);
    json_object_set_new(o, "zScore", json_real(se->r.z));
    json_object_set_new(o, "mean", json_real(se->r.mean));
    json_object_set_new(o, "std", json_real(se->r.std));
    json_object_set_new(o, "accountHistoryLength", json_integer(se->r.history_len));
    json_object_set_new(o, "suspicion", json_real(se->r.suspicion));
    json_object_set_new(o, "priority", json_string(se->r.immediate ? "immediate" : "batch"));
    json_object_set_new(o, "timestamp", json_integer(se->detected_ms));
    json_object_set_new(o, "detectedBy", json_string(cfg->node_id));
    return o;
}

/* Staged rows of one flush, with the JSON texts they point to (the transactions' in the sink's
 * docs buffer). */
struct flush_rows {
    struct store_txn *txn;
    size_t *txn_doc; /* offset of each row's document in docs; SIZE_MAX: none */
    size_t ntxn;
    struct store_exception *exc;
    char **exc_doc;
    size_t *exc_len;
    struct outbox_event *exc_outbox; /* the webhook deliveries of each exception */
    size_t noutbox;                  /* their total */
    enum lane *lanes;
    double *suspicion;
    size_t nexc;
    struct store_deadletter *dl;
    size_t ndl;
};

static void rows_build(struct sink *s, struct flush_rows *fr)
{
    size_t nev = 0;
    for (size_t i = 0; i < s->nstaged; i++)
        nev += s->staged[i]->kind == EVBATCH_EVENTS ? s->staged[i]->n : 1;
    fr->txn = xcalloc(nev, sizeof *fr->txn);
    fr->txn_doc = xcalloc(nev, sizeof *fr->txn_doc);
    buf_reset(&s->docs);
    fr->exc = xcalloc(nev, sizeof *fr->exc);
    fr->exc_doc = xcalloc(nev, sizeof *fr->exc_doc);
    fr->exc_len = xcalloc(nev, sizeof *fr->exc_len);
    fr->exc_outbox = xcalloc(nev, sizeof *fr->exc_outbox);
    fr->lanes = xcalloc(nev, sizeof *fr->lanes);
    fr->suspicion = xcalloc(nev, sizeof *fr->suspicion);
    fr->dl = xcalloc(nev, sizeof *fr->dl);
    for (size_t i = 0; i < s->nstaged; i++) {
        struct evbatch *b = s->staged[i];
        if (b->kind == EVBATCH_DEADLETTER) {
            struct deadletter_item *d = b->dl;
            fr->dl[fr->ndl++] =
                (struct store_deadletter){d->source, d->reason, d->ts_ms, d->text, d->len};
            continue;
        }
        for (uint32_t j = 0; j < b->n; j++) {
            const struct scored_event *se = &b->items[j];
            size_t at = s->docs.len;
            fr->txn_doc[fr->ntxn] = event_json_append(&se->ev, &s->docs) == 0 ? at : SIZE_MAX;
            fr->txn[fr->ntxn] = (struct store_txn){se->ev.txid, se->ev.account, se->ev.amount,
                                                   se->ev.ingested_ms, NULL};
            fr->ntxn++;
            if (!se->r.exception)
                continue;
            json_t *ex = exception_json(s->cfg, se);
            char *text = json_dumps(ex, JSON_COMPACT);
            json_decref(ex);
            size_t k = fr->nexc++;
            fr->exc_doc[k] = text;
            fr->exc_len[k] = strlen(text);
            fr->lanes[k] = se->r.immediate ? LANE_IMMEDIATE : LANE_BATCH;
            fr->suspicion[k] = se->r.suspicion;
            struct outbox_event *ob = &fr->exc_outbox[k];
            if (s->outbox)
                outbox_match(s->outbox, OUTBOX_ANOMALY, NULL, se->ev.txid, se->detected_ms, text,
                             fr->exc_len[k], ob);
            fr->noutbox += ob->nrows;
            fr->exc[k] =
                (struct store_exception){.txid = se->ev.txid,
                                         .account = se->ev.account,
                                         .priority = se->r.immediate ? "immediate" : "batch",
                                         .suspicion = se->r.suspicion,
                                         .z = se->r.z,
                                         .detected_ms = se->detected_ms,
                                         .json = text,
                                         .outbox = ob->rows,
                                         .noutbox = ob->nrows};
        }
    }
    for (size_t i = 0; i < fr->ntxn; i++) /* the buffer has stopped moving */
        fr->txn[i].json = fr->txn_doc[i] == SIZE_MAX ? NULL : s->docs.data + fr->txn_doc[i];
}

static void rows_cleanup(struct flush_rows *fr)
{
    for (size_t i = 0; i < fr->nexc; i++) {
        free(fr->exc_doc[i]);
        outbox_event_free(&fr->exc_outbox[i]);
    }
    free(fr->exc_outbox);
    free(fr->txn);
    free(fr->txn_doc);
    free(fr->exc);
    free(fr->exc_doc);
    free(fr->exc_len);
    free(fr->lanes);
    free(fr->suspicion);
    free(fr->dl);
}

/* Writes the store rows, one transaction for the whole flush, retrying until they are in.
 * false when aborted. */
static bool flush_store(struct sink *s, const struct flush_rows *fr)
{
    int backoff = 50;
    bool logged = false;
    for (;;) {
        struct store_ingest in = {
            fr->txn, fr->ntxn, fr->exc, fr->nexc, fr->dl, fr->ndl, s->cfg->deadletter_keep};
        int rv = store_put_ingest(s->store, &in);
        atomic_store(&s->store_writing, rv == 0);
        if (rv == 0) {
            if (fr->noutbox > 0)
                outbox_wake(s->outbox);
            if (logged)
                log_info("sink.store_recovered", "store writes resumed");
            metrics_add(M_STORE_ROWS, fr->ntxn + fr->nexc + fr->ndl);
            return true;
        }
        metrics_inc(M_STORE_ERRORS);
        if (!logged)
            log_error("sink.store_failed", "store write failed (%s); retrying until it recovers",
                      err_str(rv));
        logged = true;
        if (!backoff_wait(s, &backoff))
            return false;
    }
}

static bool flush_streams(struct sink *s, const struct flush_rows *fr)
{
    int backoff = 50;
    while (fr->nexc > 0) {
        int rv = buffer_add(s->rc, &s->keys, fr->nexc, (const char *const *)fr->exc_doc,
                            fr->exc_len, fr->lanes, fr->suspicion);
        atomic_store(&s->redis_up, rv == 0);
        if (rv == 0)
            return true;
        if (!backoff_wait(s, &backoff))
            return false;
    }
    return true;
}

/* Publishes the exceptions on the exceptions topic (QoS 1) without waiting for the broker's
 * acknowledgements: a wait would put a broker round trip into every flush, and nothing depends
 * on it. The Redis stream is the durable path to the agents; the topic is a notification, so
 * while the broker is unreachable it is skipped and counted, never retried. */
static void publish_exceptions(struct sink *s, const struct flush_rows *fr)
{
    size_t failed = 0;
    if (fr->nexc > 0 && !s->publish_failing && !mqttc_is_connected(s->pub))
        mqttc_wait_connected(s->pub, SINK_CONNECT_WAIT_MS); /* e.g. right after start-up */
    for (size_t i = 0; i < fr->nexc; i++)
        if (mqttc_publish(s->pub, s->cfg->exceptions_topic, fr->exc_doc[i], fr->exc_len[i], 1) != 0)
            failed++;
    metrics_add(M_EXCEPTIONS_PUBLISHED, fr->nexc - failed);
    metrics_add(M_EXCEPTIONS_UNPUBLISHED, failed);
    if (failed > 0 && !s->publish_failing)
        log_warn("sink.publish_failed",
                 "%zu exceptions not published on %s (broker unreachable); "
                 "they are in the stream and the store",
                 failed, s->cfg->exceptions_topic);
    s->publish_failing = failed > 0;
}

static void count_anomalies(const struct flush_rows *fr)
{
    for (size_t i = 0; i < fr->nexc; i++)
        metrics_inc(fr->lanes[i] == LANE_IMMEDIATE ? M_ANOMALIES_IMMEDIATE : M_ANOMALIES_BATCH);
}

/* Writes everything staged, in the order store -> feed -> streams -> topic, then recycles the
 * batches. */
static void flush_staged(struct sink *s)
{
    if (s->nstaged == 0)
        return;
    struct flush_rows fr = {0};
    rows_build(s, &fr);
    bool stored = flush_store(s, &fr);
    if (stored)
        metrics_add(M_SINK_FLUSHES, 1);
    /* The feed gets an anomaly once it is in the store and before it reaches its stream, so no
     * stream client can see its decision first (the decider reads the stream). */
    for (size_t i = 0; stored && s->feed && i < fr.nexc; i++)
        feed_publish(s->feed, FEED_ANOMALY, fr.exc_doc[i], fr.exc_len[i]);
    if (stored && flush_streams(s, &fr)) {
        publish_exceptions(s, &fr);
        count_anomalies(&fr);
    }
    rows_cleanup(&fr);
    for (size_t i = 0; i < s->nstaged; i++)
        evbatch_put(s->pool, s->staged[i]);
    s->nstaged = 0;
    s->nstaged_events = 0;
    s->staged_exception = false;
}

static void write_snapshot(struct sink *s, struct assembly *a)
{
    char path[CONFIG_STR_MAX + 16], jdir[CONFIG_STR_MAX + 16], err[256];
    if (atomic_load(&s->aborted))
        return; /* staged work may have been dropped: the snapshot would claim too much */
    snprintf(path, sizeof path, "%s/edge.snap", s->cfg->data_dir);
    snprintf(jdir, sizeof jdir, "%s/journal", s->cfg->data_dir);
    struct snapshot_writer *w =
        snapshot_begin(path, a->seq, (uint32_t)s->cfg->window_size, err, sizeof err);
    if (w == NULL) {
        log_error("snapshot.failed", "cannot start snapshot %s: %s", path, err);
        return;
    }
    int rv = snapshot_put_ids(w, a->part[0]->ids, a->part[0]->nids);
    for (uint32_t i = 0; i < s->nworkers && rv == 0; i++)
        rv = snapshot_put_encoded(w, a->part[i]->snap.data, a->part[i]->snap.len);
    if (rv != 0) {
        snapshot_abort(w);
        log_error("snapshot.failed", "writing snapshot %s failed: %s", path, err_str(rv));
        return;
    }
    if (snapshot_commit(w) != 0) {
        log_error("snapshot.failed", "committing snapshot %s failed", path);
        return;
    }
    if (s->snapshot_hook != NULL) {
        const struct buf **parts = xcalloc(s->nworkers, sizeof *parts);
        for (uint32_t i = 0; i < s->nworkers; i++)
            parts[i] = &a->part[i]->snap;
        s->snapshot_hook(s->snapshot_ctx, a->seq, parts, s->nworkers, a->part[0]->ids,
                         a->part[0]->nids);
        free(parts);
    }
    atomic_store(&s->snapshot_seq, a->seq);
    metrics_inc(M_SNAPSHOTS);
    int deleted = journal_truncate_before(jdir, a->seq);
    log_debug("snapshot.written", "snapshot at seq %llu, %d journal segment(s) deleted",
              (unsigned long long)a->seq, deleted);
}

static void assembly_release(struct sink *s, struct assembly *a)
{
    for (uint32_t i = 0; i < s->nworkers; i++) {
        evbatch_put(s->pool, a->part[i]);
        a->part[i] = NULL;
    }
    a->seq = 0;
    a->parts = 0;
}

/* Files one worker's marker part; writes the snapshot once all parts are in. */
static void on_marker(struct sink *s, struct evbatch *b)
{
    struct assembly *a = NULL, *oldest = &s->asm_[0];
    for (int i = 0; i < SINK_MAX_ASSEMBLIES && a == NULL; i++)
        if (s->asm_[i].seq == b->marker_seq)
            a = &s->asm_[i];
    for (int i = 0; i < SINK_MAX_ASSEMBLIES && a == NULL; i++)
        if (s->asm_[i].seq == 0)
            a = &s->asm_[i];
    if (a == NULL) {
        for (int i = 1; i < SINK_MAX_ASSEMBLIES; i++)
            if (s->asm_[i].seq < oldest->seq)
                oldest = &s->asm_[i];
        assembly_release(s, oldest);
        a = oldest;
    }
    a->seq = b->marker_seq;
    if (b->worker >= s->nworkers || a->part[b->worker] != NULL) {
        evbatch_put(s->pool, b);
        return;
    }
    a->part[b->worker] = b;
    if (++a->parts < s->nworkers)
        return;
    write_snapshot(s, a);
    assembly_release(s, a);
}

/* Stages one batch for the next flush. */
static void stage(struct sink *s, struct evbatch *b)
{
    if (s->nstaged == 0)
        s->first_staged_ns = clock_mono_ns();
    s->staged[s->nstaged++] = b;
    s->nstaged_events += b->kind == EVBATCH_EVENTS ? b->n : 1;
    s->staged_exception = s->staged_exception || evbatch_has_exception(b);
}

/* How long the next pop may wait (ms, bqueue_pop_many's timeout): forever with nothing staged;
 * not at all once an exception is staged (its decision waits for this flush); otherwise until
 * the oldest staged batch has lingered sink_linger_ms. The edge workers push batches without an
 * exception lazily (bqueue_push_lazy), so those do not wake the sink during that wait: it takes
 * them all at its end, one wake-up per linger instead of one per hand-off; a batch with an
 * exception wakes it at once. */
static int pop_timeout_ms(const struct sink *s)
{
    if (s->nstaged == 0)
        return -1;
    if (s->staged_exception)
        return 0;
    int64_t left = s->first_staged_ns + (int64_t)s->cfg->sink_linger_ms * 1000000 - clock_mono_ns();
    return left > 0 ? (int)((left + 999999) / 1000000) : 0;
}

/* Stages what the queue holds until the queue is empty (at once when an exception is staged,
 * else after the oldest staged batch has waited sink_linger_ms for company) or the flush is full
 * (SINK_STAGE_MAX batches or SINK_FLUSH_EVENTS events), then flushes. A store transaction's cost
 * is mostly per page it dirties (the account index puts nearly every row on its own page) and
 * per commit, not per row: under load a flush grows to thousands of events, and at a few
 * thousand events a second the linger turns one commit per hand-off (a few events) into one per
 * millisecond. Exceptions never linger: the decider reads them from the stream this flush feeds. */
static void *sink_main(void *arg)
{
    struct sink *s = arg;
    thread_name("sink");
    void *items[SINK_STAGE_MAX];
    for (;;) {
        int n = bqueue_pop_many(s->in, items, SINK_STAGE_MAX - s->nstaged, pop_timeout_ms(s));
        if (n < 0) {
            if (n == ERR_TIMEOUT && pop_timeout_ms(s) > 0)
                continue; /* woken early: linger on */
            flush_staged(s);
            if (n == ERR_TIMEOUT)
                continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            struct evbatch *b = items[i];
            if (b->kind == EVBATCH_MARKER) {
                flush_staged(s);
                on_marker(s, b);
            } else {
                stage(s, b);
            }
        }
        if (s->nstaged == SINK_STAGE_MAX || s->nstaged_events >= SINK_FLUSH_EVENTS ||
            (s->nstaged > 0 && !s->staged_exception && pop_timeout_ms(s) == 0))
            flush_staged(s);
    }
    return NULL;
}

void sink_set_snapshot_hook(struct sink *s, sink_snapshot_fn fn, void *ctx)
{
    s->snapshot_hook = fn;
    s->snapshot_ctx = ctx;
}

int sink_start(struct sink *s)
{
    char err[256];
    s->rc = rconn_new(s->cfg->redis_url, s->cfg->redis_timeout_ms, err, sizeof err);
    if (s->rc == NULL) {
        log_error("sink.redis_url", "%s", err);
        return ERR_INVAL;
    }
    s->pub = mqttc_new_publisher(s->cfg, "sink");
    if (s->pub == NULL)
        return ERR_INTERNAL;
    if (pthread_create(&s->thread, NULL, sink_main, s) != 0)
        return ERR_INTERNAL;
    s->started = true;
    return 0;
}

void sink_abort(struct sink *s)
{
    atomic_store(&s->aborted, true);
}

void sink_join(struct sink *s)
{
    if (s->started)
        pthread_join(s->thread, NULL);
    s->started = false;
}

void sink_free(struct sink *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < SINK_MAX_ASSEMBLIES; i++) {
        assembly_release(s, &s->asm_[i]);
        free(s->asm_[i].part);
    }
    for (size_t i = 0; i < s->nstaged; i++)
        evbatch_put(s->pool, s->staged[i]);
    mqttc_free(s->pub, 2000);
    rconn_free(s->rc);
    buf_cleanup(&s->docs);
    free(s);
}

uint64_t sink_snapshot_seq(const struct sink *s)
{
    return atomic_load(&((struct sink *)s)->snapshot_seq);
}

bool sink_redis_up(const struct sink *s)
{
    return atomic_load(&((struct sink *)s)->redis_up);
}

bool sink_store_writing(const struct sink *s)
{
    return atomic_load(&((struct sink *)s)->store_writing);
}
