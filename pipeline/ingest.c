/* Ingest router (ingest.h). One mutex serializes validation results, duplicate detection, sequence
 * numbers, the journal and the hand-off to the workers: the MQTT reader threads are the main
 * callers, HTTP workers are occasional ones, and the critical section is short (parse happens
 * inside it only because the parser calls back per item; parsing a typical single event costs a
 * few microseconds). Pushing into a full worker queue blocks inside the lock: that is the
 * back-pressure that slows the broker's delivery instead of growing memory.
 *
 * Journal writes per batch. ingest_payload_batched appends to the journal's in-memory batch and
 * returns; ingest_flush writes that batch with one write(2). The native MQTT subscriber calls the
 * first for every message of a socket read and the second once after the read, before it writes
 * the read's PUBACKs (mqttc.h on_batch_end): one write per ~2,000 small messages instead of one
 * per message (the write was 11.6% of the daemon's samples at full QoS 0 load). ingest_payload
 * (HTTP) does both under one lock. Several threads may append between two
 * flushes; whichever flushes first writes everybody's records, which is all a caller needs: its
 * records are in the file when its own ingest_flush returns. The lock is still taken per message:
 * holding it across a read would stall the REST path and the other subscribers for the read's
 * duration, and uncontended it costs tens of nanoseconds.
 *
 * Hand-off. Accepted events are handed to a worker only after their journal records were written
 * (push_pending writes the journal first), so a worker, and so the snapshot that follows a marker,
 * never gets ahead of the journal. They are not handed off per payload either: a worker
 * that scores an event in ~100 ns would be woken (a futex wake and two context switches, several
 * microseconds) for every single-event message, and the sink after it. Hand-offs are spaced at
 * least ingest_handoff_us apart (a leading edge): a flush that comes when the last hand-off
 * is older than that hands off at once, so light traffic never waits; a flush that comes
 * sooner leaves the events in their workers' pending batches until the flusher thread hands
 * everything off at last hand-off + ingest_handoff_us (or until a batch is full, EVBATCH_MAX
 * events). An event thus waits at most ingest_handoff_us after its flush, and a burst costs at
 * most one wake per worker per interval. The flusher sleeps without a timeout while nothing is
 * pending; the next flush that leaves a batch pending wakes it. ingest_handoff_us = 0 hands off
 * at every flush, without the thread. */
#include "ingest.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "clock.h"
#include "err.h"
#include "event.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "shard.h"
#include "thread.h"
#include "xmalloc.h"

#define INGEST_MAX_DEADLETTERS 64 /* per payload; a 1000-item array of junk keeps the first 64 */
/* Full batches waiting for the journal write: 2,048 events, about what one 256 KiB read of small
 * messages holds, so a read costs one write; more are handed off at once (after a write). */
#define INGEST_READY_MAX 64

struct ingest {
    const struct config *cfg;
    pthread_mutex_t mu;
    struct bqueue **queues;
    uint32_t nworkers;
    struct evbatch_pool *pool;
    struct dedupe *dedupe;
    struct journal *journal;
    uint64_t next_seq;
    atomic_bool closed;       /* read without the lock: closing must not wait for a blocked push */
    struct evbatch **pending; /* per worker: the batch being filled */
    struct evbatch *ready[INGEST_READY_MAX]; /* full batches in fill order, not handed off yet */
    size_t nready;
    struct evbatch *dead[INGEST_MAX_DEADLETTERS];
    size_t ndead;
    size_t npending;         /* pending batches not yet handed off (and dead letters) */
    int64_t handoff_ns;      /* 0: hand off at the end of every payload */
    int64_t last_push_ns;    /* monotonic time of the last hand-off */
    pthread_t flusher;       /* hands off what waits, handoff_ns after the last hand-off */
    pthread_cond_t flush_cv; /* wakes an idle flusher, and stops it */
    bool flusher_started;
    bool flusher_idle; /* waiting without a timeout: the next accepted event signals flush_cv */
    bool flusher_stop;
    uint64_t journal_fails;  /* failed journal writes so far (ingest_flush reports new ones) */
    ingest_router_fn router; /* cluster mode: events of partitions consumed elsewhere */
    void *router_ctx;
};

/* Per-call context for the parser callbacks. */
struct parse_ctx {
    struct ingest *ing;
    const char *source;
    struct submit_counts *counts;
    int64_t now_ms;
};

static void push_pending(struct ingest *ing);

/* A CLOCK_MONOTONIC time in ns as a deadline for a condition variable made by clock_cond_init. */
static struct timespec mono_timespec(int64_t ns)
{
    return (struct timespec){.tv_sec = (time_t)(ns / 1000000000),
                             .tv_nsec = (long)(ns % 1000000000)};
}

/* The flusher (see the file comment): hands off whatever is pending handoff_ns after the last
 * hand-off. When a check finds nothing pending it waits until that same moment (the last
 * hand-off + handoff_ns) before it goes idle (waits without a timeout until a payload signals
 * it): under steady traffic events are pending by then and due at that moment, so it wakes once
 * per interval on its timer instead of being signalled by the delivery thread (a futex wake) and
 * then sleeping again until the hand-off is due. Anything that becomes pending meanwhile is due
 * no earlier, so the bound of one interval holds. An idle daemon costs one extra wake-up. */
static void *flusher_main(void *arg)
{
    struct ingest *ing = arg;
    thread_name("ingest-flush");
    bool lingered = false; /* the last check found nothing pending and waited out the interval */
    pthread_mutex_lock(&ing->mu);
    while (!ing->flusher_stop) {
        if (ing->npending == 0 && lingered) {
            ing->flusher_idle = true;
            pthread_cond_wait(&ing->flush_cv, &ing->mu);
            ing->flusher_idle = false;
            lingered = false;
            continue;
        }
        int64_t now = clock_mono_ns();
        int64_t due = ing->last_push_ns + ing->handoff_ns;
        if (ing->npending == 0) {
            lingered = true;
            if (now < due) {
                struct timespec ts = mono_timespec(due);
                pthread_cond_timedwait(&ing->flush_cv, &ing->mu, &ts);
            }
            continue;
        }
        lingered = false;
        if (now < due) {
            struct timespec ts = mono_timespec(due);
            pthread_cond_timedwait(&ing->flush_cv, &ing->mu, &ts);
            continue; /* a payload may have handed everything off meanwhile */
        }
        push_pending(ing);
    }
    pthread_mutex_unlock(&ing->mu);
    return NULL;
}

struct ingest *ingest_new(const struct config *cfg, struct bqueue **worker_queues,
                          uint32_t nworkers, struct evbatch_pool *pool, struct dedupe *dedupe)
{
    struct ingest *ing = xcalloc(1, sizeof *ing);
    ing->cfg = cfg;
    pthread_mutex_init(&ing->mu, NULL);
    ing->queues = worker_queues;
    ing->nworkers = nworkers;
    ing->pool = pool;
    ing->dedupe = dedupe;
    ing->next_seq = 1;
    atomic_init(&ing->closed, false);
    ing->pending = xcalloc(nworkers, sizeof *ing->pending);
    ing->handoff_ns = (int64_t)cfg->ingest_handoff_us * 1000;
    clock_cond_init(&ing->flush_cv);
    if (ing->handoff_ns > 0) {
        ing->flusher_started = pthread_create(&ing->flusher, NULL, flusher_main, ing) == 0;
        if (!ing->flusher_started) {
            log_warn("ingest.flusher", "cannot start the hand-off thread: events are handed to "
                                       "the workers at the end of every payload");
            ing->handoff_ns = 0;
        }
    }
    return ing;
}

void ingest_free(struct ingest *ing)
{
    if (ing == NULL)
        return;
    if (ing->flusher_started) {
        pthread_mutex_lock(&ing->mu);
        ing->flusher_stop = true;
        pthread_cond_signal(&ing->flush_cv);
        pthread_mutex_unlock(&ing->mu);
        pthread_join(ing->flusher, NULL);
    }
    pthread_cond_destroy(&ing->flush_cv);
    for (uint32_t w = 0; w < ing->nworkers; w++)
        evbatch_put(ing->pool, ing->pending[w]);
    for (size_t i = 0; i < ing->nready; i++)
        evbatch_put(ing->pool, ing->ready[i]);
    for (size_t i = 0; i < ing->ndead; i++)
        evbatch_put(ing->pool, ing->dead[i]);
    journal_close(ing->journal);
    dedupe_free(ing->dedupe);
    free(ing->pending);
    pthread_mutex_destroy(&ing->mu);
    free(ing);
}

/* Writes the journal's pending batch: 0, or ERR_IO (counted in journal_fails). A failed flush is
 * logged by the journal, once per outage and at recovery (a line per payload here flooded the log
 * while a disk was full). */
static int flush_journal(struct ingest *ing)
{
    int rv = ing->journal ? journal_flush(ing->journal) : 0;
    if (rv != 0)
        ing->journal_fails++;
    return rv;
}

/* Writes the journal, then hands every batch to its worker, the full ones first (in fill order,
 * so each worker gets its events in order; dead letters go to worker 0, in order with markers).
 * Called with the lock held. */
static void push_pending(struct ingest *ing)
{
    (void)flush_journal(ing); /* a failure was logged; the events are processed either way */
    ing->npending = 0;
    ing->last_push_ns = clock_mono_ns();
    for (size_t i = 0; i < ing->nready; i++)
        if (bqueue_push(ing->queues[ing->ready[i]->worker], ing->ready[i]) != 0)
            evbatch_put(ing->pool, ing->ready[i]);
    ing->nready = 0;
    for (uint32_t w = 0; w < ing->nworkers; w++) {
        if (ing->pending[w] == NULL)
            continue;
        if (bqueue_push(ing->queues[w], ing->pending[w]) != 0)
            evbatch_put(ing->pool, ing->pending[w]);
        ing->pending[w] = NULL;
    }
    for (size_t i = 0; i < ing->ndead; i++)
        if (bqueue_push(ing->queues[0], ing->dead[i]) != 0)
            evbatch_put(ing->pool, ing->dead[i]);
    ing->ndead = 0;
}

/* Adds an accepted event to its worker's pending batch; a full batch joins the ready ones. */
static void route_event(struct ingest *ing, const struct event *ev)
{
    uint32_t w = shard_of(ev->account, ing->nworkers);
    struct evbatch *b = ing->pending[w];
    if (b == NULL) {
        b = evbatch_get(ing->pool);
        b->worker = w;
        ing->pending[w] = b;
        ing->npending++;
    }
    b->items[b->n++].ev = *ev;
    if (b->n < EVBATCH_MAX)
        return;
    ing->ready[ing->nready++] = b;
    ing->pending[w] = NULL;
    if (ing->nready == INGEST_READY_MAX)
        push_pending(ing);
}

static void route_deadletter(struct ingest *ing, struct deadletter_item *dl)
{
    if (ing->ndead == INGEST_MAX_DEADLETTERS) {
        free(dl);
        return;
    }
    struct evbatch *b = evbatch_get(ing->pool);
    b->kind = EVBATCH_DEADLETTER;
    b->dl = dl;
    ing->dead[ing->ndead++] = b;
    ing->npending++;
}

/* Journal form of a dead letter: u8-prefixed source, reason, detail; u16-prefixed text. */
static size_t deadletter_encode(const struct deadletter_item *dl, uint8_t *out)
{
    size_t pos = 0;
    const char *strs[3] = {dl->source, dl->reason, dl->detail};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(strs[i]);
        out[pos++] = (uint8_t)n;
        memcpy(out + pos, strs[i], n);
        pos += n;
    }
    out[pos++] = (uint8_t)(dl->len & 0xff);
    out[pos++] = (uint8_t)(dl->len >> 8);
    memcpy(out + pos, dl->text, dl->len);
    pos += dl->len;
    memcpy(out + pos, &dl->ts_ms, sizeof dl->ts_ms);
    return pos + sizeof dl->ts_ms;
}

static int deadletter_decode(const uint8_t *in, size_t len, struct deadletter_item *dl)
{
    size_t pos = 0;
    char *dsts[3] = {dl->source, dl->reason, dl->detail};
    size_t caps[3] = {sizeof dl->source, sizeof dl->reason, sizeof dl->detail};
    for (int i = 0; i < 3; i++) {
        if (pos >= len || in[pos] >= caps[i] || len - pos - 1 < in[pos])
            return ERR_INVAL;
        size_t n = in[pos++];
        memcpy(dsts[i], in + pos, n);
        dsts[i][n] = '\0';
        pos += n;
    }
    if (len - pos < 2)
        return ERR_INVAL;
    size_t tl = (size_t)in[pos] | ((size_t)in[pos + 1] << 8);
    pos += 2;
    if (tl > DEADLETTER_TEXT_MAX || len - pos != tl + sizeof dl->ts_ms)
        return ERR_INVAL;
    memcpy(dl->text, in + pos, tl);
    dl->len = tl;
    memcpy(&dl->ts_ms, in + pos + tl, sizeof dl->ts_ms);
    return 0;
}

static void on_valid(void *vctx, const struct event *parsed)
{
    struct parse_ctx *ctx = vctx;
    struct ingest *ing = ctx->ing;
    if (ing->router != NULL && ing->router(ing->router_ctx, ctx->source, parsed)) {
        if (ctx->counts)
            ctx->counts->accepted++;
        return;
    }
    if (dedupe_check_insert(ing->dedupe, parsed->txid)) {
        metrics_inc(M_EVENTS_DUPLICATE);
        if (ctx->counts)
            ctx->counts->duplicates++;
        return;
    }
    struct event ev = *parsed;
    ev.ingested_ms = ctx->now_ms;
    uint8_t rec[EVENT_ENCODED_MAX];
    int n = event_encode(&ev, rec, sizeof rec);
    if (ing->journal && n > 0)
        journal_append(ing->journal, ing->next_seq, INGEST_REC_EVENT, rec, (size_t)n);
    ing->next_seq++;
    metrics_inc(M_EVENTS_INGESTED);
    metrics_set(G_LAST_INGEST_MS, ctx->now_ms);
    if (ctx->counts)
        ctx->counts->accepted++;
    route_event(ing, &ev);
}

static void on_invalid(void *vctx, enum event_invalid reason, const char *detail, const char *text,
                       size_t text_len)
{
    struct parse_ctx *ctx = vctx;
    struct ingest *ing = ctx->ing;
    metrics_inc(event_invalid_metric(reason));
    struct submit_counts *c = ctx->counts;
    if (c) {
        if (c->nerrors < SUBMIT_ERRORS_MAX) {
            struct submit_error *e = &c->errors[c->nerrors++];
            e->index = c->accepted + c->duplicates + c->invalid; /* items arrive in order */
            snprintf(e->reason, sizeof e->reason, "%s", event_invalid_name(reason));
            snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
        }
        c->invalid++;
    }
    struct deadletter_item *dl = xcalloc(1, sizeof *dl);
    snprintf(dl->source, sizeof dl->source, "%s", ctx->source);
    snprintf(dl->reason, sizeof dl->reason, "%s", event_invalid_name(reason));
    snprintf(dl->detail, sizeof dl->detail, "%s", detail ? detail : "");
    dl->len = text_len < DEADLETTER_TEXT_MAX ? text_len : DEADLETTER_TEXT_MAX;
    memcpy(dl->text, text, dl->len);
    dl->ts_ms = ctx->now_ms;
    uint8_t rec[DEADLETTER_TEXT_MAX + 256];
    size_t n = deadletter_encode(dl, rec);
    if (ing->journal)
        journal_append(ing->journal, ing->next_seq, INGEST_REC_DEADLETTER, rec, n);
    ing->next_seq++;
    route_deadletter(ing, dl);
}

/* Validates and journals (in memory) one payload. Called with the lock held. */
static void parse_locked(struct ingest *ing, struct parse_ctx *ctx, const char *data, size_t len)
{
    if (len > (size_t)ing->cfg->mqtt_max_payload)
        on_invalid(ctx, EVI_TOO_LARGE, "payload exceeds mqtt_max_payload", data, len);
    else
        event_parse_payload(data, len, (size_t)ing->cfg->mqtt_max_batch, on_valid, on_invalid, ctx);
}

/* Writes the journal, then hands off if a batch is full or the last hand-off is old enough, or
 * leaves that to the flusher (*wake_flusher: signal it after the unlock, its first step is to
 * take the lock). Called with the lock held. A failed write is counted in journal_fails. */
static void flush_locked(struct ingest *ing, bool *wake_flusher)
{
    *wake_flusher = false;
    if (ing->handoff_ns == 0 || ing->nready > 0 ||
        (ing->npending > 0 && clock_mono_ns() - ing->last_push_ns >= ing->handoff_ns)) {
        push_pending(ing); /* writes the journal first */
    } else {
        (void)flush_journal(ing);
        *wake_flusher = ing->npending > 0 && ing->flusher_idle;
    }
}

int ingest_payload(struct ingest *ing, const char *data, size_t len, const char *source,
                   struct submit_counts *counts)
{
    struct parse_ctx ctx = {ing, source, counts, clock_wall_ms()};
    if (atomic_load(&ing->closed))
        return ERR_CLOSED;
    bool wake_flusher;
    pthread_mutex_lock(&ing->mu);
    parse_locked(ing, &ctx, data, len);
    flush_locked(ing, &wake_flusher); /* processed even if the journal write failed */
    pthread_mutex_unlock(&ing->mu);
    if (wake_flusher)
        pthread_cond_signal(&ing->flush_cv);
    return 0;
}

int ingest_payload_batched(struct ingest *ing, const char *data, size_t len, const char *source)
{
    struct parse_ctx ctx = {ing, source, NULL, clock_wall_ms()};
    if (atomic_load(&ing->closed))
        return ERR_CLOSED;
    pthread_mutex_lock(&ing->mu);
    parse_locked(ing, &ctx, data, len);
    pthread_mutex_unlock(&ing->mu);
    return 0;
}

int ingest_flush(struct ingest *ing, uint64_t *fails_seen)
{
    bool wake_flusher;
    pthread_mutex_lock(&ing->mu);
    flush_locked(ing, &wake_flusher);
    int rv = ing->journal_fails != *fails_seen ? ERR_IO : 0;
    *fails_seen = ing->journal_fails;
    pthread_mutex_unlock(&ing->mu);
    if (wake_flusher)
        pthread_cond_signal(&ing->flush_cv);
    return rv;
}

static int on_replay_record(void *vctx, uint64_t seq, uint8_t type, const void *data, size_t len)
{
    struct ingest *ing = vctx;
    if (type == INGEST_REC_EVENT) {
        struct event ev;
        if (event_decode(data, len, &ev) != 0) {
            log_warn("journal.bad_record", "undecodable event record at seq %llu skipped",
                     (unsigned long long)seq);
            return 0;
        }
        if (dedupe_check_insert(ing->dedupe, ev.txid))
            return 0;
        route_event(ing, &ev);
    } else if (type == INGEST_REC_DEADLETTER) {
        struct deadletter_item *dl = xcalloc(1, sizeof *dl);
        if (deadletter_decode(data, len, dl) != 0) {
            free(dl);
            return 0;
        }
        route_deadletter(ing, dl);
        if (ing->ndead == INGEST_MAX_DEADLETTERS)
            push_pending(ing);
    }
    metrics_inc(M_JOURNAL_REPLAYED);
    return 0;
}

int64_t ingest_recover(struct ingest *ing, uint64_t from_seq, char *err, size_t errlen)
{
    char dir[CONFIG_STR_MAX + 16];
    snprintf(dir, sizeof dir, "%s/journal", ing->cfg->data_dir);
    uint64_t next = from_seq;
    pthread_mutex_lock(&ing->mu);
    int64_t n = journal_replay(dir, from_seq, on_replay_record, ing, &next);
    push_pending(ing);
    if (n < 0) {
        snprintf(err, errlen, "journal replay in %s failed: %s", dir, err_str((int)n));
        goto out;
    }
    ing->next_seq = next > from_seq ? next : from_seq;
    if (ing->next_seq == 0)
        ing->next_seq = 1;
    ing->journal = journal_open(dir, ing->next_seq, err, errlen);
    if (ing->journal == NULL)
        n = ERR_IO;
out:
    pthread_mutex_unlock(&ing->mu);
    return n;
}

int64_t ingest_marker(struct ingest *ing)
{
    pthread_mutex_lock(&ing->mu);
    push_pending(ing);
    uint64_t seq = ing->next_seq;
    if (ing->journal && journal_rotate(ing->journal, seq) != 0) {
        pthread_mutex_unlock(&ing->mu);
        return ERR_IO;
    }
    for (uint32_t w = 0; w < ing->nworkers; w++) {
        struct evbatch *b = evbatch_get(ing->pool);
        b->kind = EVBATCH_MARKER;
        b->marker_seq = seq;
        b->worker = w;
        if (w == 0) {
            b->nids = dedupe_count(ing->dedupe);
            b->ids = xmalloc((b->nids ? b->nids : 1) * sizeof *b->ids);
            dedupe_export(ing->dedupe, b->ids);
        }
        if (bqueue_push(ing->queues[w], b) != 0) {
            evbatch_put(ing->pool, b);
            pthread_mutex_unlock(&ing->mu);
            return ERR_CLOSED;
        }
    }
    pthread_mutex_unlock(&ing->mu);
    return (int64_t)seq;
}

void ingest_close(struct ingest *ing)
{
    atomic_store(&ing->closed, true);
}

void ingest_set_router(struct ingest *ing, ingest_router_fn fn, void *ctx)
{
    ing->router = fn;
    ing->router_ctx = ctx;
}

void ingest_remember_ids(struct ingest *ing, const uint64_t *ids, size_t n)
{
    pthread_mutex_lock(&ing->mu);
    for (size_t i = 0; i < n; i++)
        dedupe_check_insert(ing->dedupe, ids[i]);
    pthread_mutex_unlock(&ing->mu);
}
