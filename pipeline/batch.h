/* The unit of work between pipeline threads: a batch of events in journal order for one edge
 * worker, a snapshot marker, or one dead letter. Batches are recycled through a bounded pool so
 * the steady state allocates nothing per event.
 * Ownership: whoever popped a batch from a queue owns it and must pass it on or give it back with
 * evbatch_put(). The pool itself is thread-safe. */
#ifndef AETHERIS_BATCH_H
#define AETHERIS_BATCH_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "event.h"
#include "zscore.h"

#define EVBATCH_MAX 32           /* events per batch: ~16 KiB, amortizes queue hand-offs */
#define DEADLETTER_TEXT_MAX 1024 /* rejected payloads are kept truncated to this many bytes */

enum evbatch_kind {
    EVBATCH_EVENTS = 0, /* items[0..n) to score (edge) or to persist (sink) */
    EVBATCH_MARKER,     /* snapshot marker: every event before marker_seq precedes it */
    EVBATCH_DEADLETTER  /* one rejected input in `dl` */
};

struct scored_event {
    struct event ev;
    struct zscore_result r; /* filled by the edge worker */
    int64_t detected_ms;    /* wall clock when the edge worker scored it */
};

struct deadletter_item {
    char source[16]; /* "mqtt" | "http" */
    char reason[32]; /* event_invalid_name() */
    char detail[128];
    int64_t ts_ms;
    size_t len;
    char text[DEADLETTER_TEXT_MAX];
};

struct evbatch {
    enum evbatch_kind kind;
    uint32_t n;          /* EVENTS: items used */
    uint32_t worker;     /* MARKER: the worker that encoded `snap`; EVENTS: its worker (ingest) */
    uint64_t marker_seq; /* MARKER: journal sequence the snapshot is consistent with */
    uint64_t *ids;       /* MARKER for worker 0: the recent-id memory (owned, may be NULL) */
    size_t nids;
    struct buf snap;            /* MARKER: the worker's accounts, snapshot_encode_account form */
    struct deadletter_item *dl; /* DEADLETTER: owned */
    struct scored_event items[EVBATCH_MAX];
};

struct evbatch_pool;

/* A pool keeping at most `keep` idle batches (the rest are freed when returned). */
struct evbatch_pool *evbatch_pool_new(size_t keep);
void evbatch_pool_free(struct evbatch_pool *pool); /* frees idle batches; NULL no-op */
/* An empty EVENTS batch (recycled or new). Never NULL. */
struct evbatch *evbatch_get(struct evbatch_pool *pool);
/* Returns a batch (releasing what it owns). NULL is a no-op. */
void evbatch_put(struct evbatch_pool *pool, struct evbatch *b);
/* True for an EVENTS batch with at least one scored exception (its decision waits for the sink's
 * flush of it). */
bool evbatch_has_exception(const struct evbatch *b);

#endif
