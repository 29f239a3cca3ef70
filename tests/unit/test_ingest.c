/* The ingest router's hand-off to the edge workers (ingest.c): with ingest_handoff_us > 0 a
 * payload arriving after a quiet interval reaches its worker's queue before ingest_payload
 * returns (light traffic never waits); a payload arriving within the interval waits in the
 * pending batch and the flusher hands it off once the interval since the last hand-off is over;
 * ingest_handoff_us = 0 hands every payload off at once. Timing-dependent checks are asserted
 * only when the machine kept to the precondition (two calls closer than the interval), and say
 * so otherwise, so a loaded machine cannot turn them into false failures. */
#include "ingest.h"
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "clock.h"
#include "tap.h"

#define INTERVAL_US 100000 /* the longest ingest_handoff_us: 100 ms between hand-offs */

struct rig {
    struct config cfg;
    struct bqueue *queue;
    struct evbatch_pool *pool;
    struct ingest *ing;
};

static void rig_open(struct rig *r, int handoff_us)
{
    config_defaults(&r->cfg);
    r->cfg.ingest_handoff_us = handoff_us;
    r->queue = bqueue_new(64);
    r->pool = evbatch_pool_new(8);
    r->ing = ingest_new(&r->cfg, &r->queue, 1, r->pool, dedupe_new(1000));
}

static void rig_close(struct rig *r)
{
    ingest_free(r->ing);
    void *items[64];
    int n = bqueue_pop_many(r->queue, items, 64, 0);
    for (int i = 0; i < n; i++)
        evbatch_put(r->pool, items[i]);
    bqueue_free(r->queue);
    evbatch_pool_free(r->pool);
}

static void send_event(struct rig *r, unsigned txid)
{
    char text[128];
    int len = snprintf(text, sizeof text,
                       "{\"transactionId\":%u,\"accountOrigin\":\"200001\",\"amount\":10.5}", txid);
    ingest_payload(r->ing, text, (size_t)len, "test", NULL);
}

/* Events queued for the worker so far (pops and recycles the batches). */
static size_t drain_events(struct rig *r)
{
    void *items[64];
    size_t events = 0;
    int n = bqueue_pop_many(r->queue, items, 64, 0);
    for (int i = 0; i < n; i++) {
        events += ((struct evbatch *)items[i])->n;
        evbatch_put(r->pool, items[i]);
    }
    return events;
}

static void test_leading_edge(void)
{
    struct rig r;
    rig_open(&r, INTERVAL_US);
    send_event(&r, 1);
    is_int(bqueue_len(r.queue), 1, "the first payload is handed off before ingest_payload returns");
    is_int(drain_events(&r), 1, "... with its event");

    int64_t t0 = clock_mono_ns();
    send_event(&r, 2);
    bool close_enough = clock_mono_ns() - t0 < (int64_t)INTERVAL_US * 1000 / 2;
    if (close_enough)
        is_int(bqueue_len(r.queue), 0, "a payload within the interval waits in the pending batch");
    else
        ok(1, "# SKIP the machine took half the interval between two calls");

    /* The flusher hands it off at last hand-off + interval: wait up to 20 intervals. */
    size_t got = 0;
    int64_t deadline = clock_mono_ns() + (int64_t)INTERVAL_US * 1000 * 20;
    while (got == 0 && clock_mono_ns() < deadline) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
        got = drain_events(&r);
    }
    is_int(got, 1, "the flusher hands the waiting event off");
    ok(clock_mono_ns() - t0 >= (int64_t)INTERVAL_US * 1000 / 2,
       "... not before the interval since the last hand-off");
    rig_close(&r);
}

static void test_no_thread(void)
{
    struct rig r;
    rig_open(&r, 0);
    for (unsigned i = 1; i <= 3; i++)
        send_event(&r, i);
    is_int(drain_events(&r), 3, "ingest_handoff_us=0: every payload is handed off at once");
    send_event(&r, 3);
    is_int(drain_events(&r), 0, "a duplicate transactionId is dropped");
    rig_close(&r);
}

int main(void)
{
    test_leading_edge();
    test_no_thread();
    return done_testing();
}
