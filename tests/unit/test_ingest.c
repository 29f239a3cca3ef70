/* The ingest router's hand-off to the edge workers (ingest.c): with ingest_handoff_us > 0 a
 * payload arriving after a quiet interval reaches its worker's queue before ingest_payload
 * returns (light traffic never waits); a payload arriving within the interval waits in the
 * pending batch and the flusher hands it off once the interval since the last hand-off is over;
 * ingest_handoff_us = 0 hands every payload off at once. Timing-dependent checks are asserted
 * only when the machine kept to the precondition (two calls closer than the interval), and say
 * so otherwise, so a loaded machine cannot turn them into false failures.
 * Batched journal writes: ingest_payload_batched writes nothing and hands nothing off; the next
 * ingest_flush writes every record with exactly one write(2) (counted by a write() defined here,
 * which the executable's own definition makes the one every module calls) and only then hands
 * the events off; a failed write (RLIMIT_FSIZE, SIGXFSZ ignored) is reported by ingest_flush to
 * every caller that flushed before it, once. */
#include "ingest.h"
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "clock.h"
#include "err.h"
#include "journal.h"
#include "metrics.h"
#include "tap.h"

static atomic_int write_calls; /* write(2) calls made through write() */

/* Counts, then does the system call (the interposed libc symbol cannot be reached by name). */
ssize_t write(int fd, const void *buf, size_t count)
{
    atomic_fetch_add(&write_calls, 1);
    return syscall(SYS_write, fd, buf, count);
}

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
    int64_t before = clock_wall_ms();
    for (unsigned i = 1; i <= 3; i++)
        send_event(&r, i);
    is_int(drain_events(&r), 3, "ingest_handoff_us=0: every payload is handed off at once");
    int64_t stamp = metrics_gauge(G_LAST_INGEST_MS);
    ok(stamp >= before && stamp <= clock_wall_ms(),
       "the last-ingest gauge holds the newest event's ingest time");
    metrics_set(G_LAST_INGEST_MS, 0);
    send_event(&r, 3);
    is_int(drain_events(&r), 0, "a duplicate transactionId is dropped");
    is_int(metrics_gauge(G_LAST_INGEST_MS), 0, "and does not move it");
    rig_close(&r);
}

static int count_record(void *ctx, uint64_t seq, uint8_t type, const void *data, size_t len)
{
    (void)seq, (void)type, (void)data, (void)len;
    (*(int *)ctx)++;
    return 0;
}

static int journal_records(const char *dir)
{
    int n = 0;
    uint64_t next;
    return journal_replay(dir, 1, count_record, &n, &next) < 0 ? -1 : n;
}

static void test_batched(void)
{
    struct rig r;
    char tmpl[] = "/tmp/aetheris-ingest-XXXXXX", jdir[sizeof tmpl + 16], err[256];
    ok(mkdtemp(tmpl) != NULL, "temporary data dir");
    config_defaults(&r.cfg);
    r.cfg.ingest_handoff_us = 0;
    snprintf(r.cfg.data_dir, sizeof r.cfg.data_dir, "%s", tmpl);
    snprintf(jdir, sizeof jdir, "%s/journal", tmpl);
    r.queue = bqueue_new(64);
    r.pool = evbatch_pool_new(8);
    r.ing = ingest_new(&r.cfg, &r.queue, 1, r.pool, dedupe_new(1000));
    is_int(ingest_recover(r.ing, 1, err, sizeof err), 0, "journal opened (nothing to replay)");

    atomic_store(&write_calls, 0);
    for (unsigned i = 1; i <= 100; i++) {
        char text[128];
        int len = snprintf(text, sizeof text,
                           "{\"transactionId\":%u,\"accountOrigin\":\"2000%02u\",\"amount\":1}", i,
                           i % 7);
        ingest_payload_batched(r.ing, text, (size_t)len, "test");
    }
    is_int(atomic_load(&write_calls), 0, "100 batched payloads: no write");
    is_int(journal_size(jdir), 0, "... nothing in the journal file yet");
    is_int(bqueue_len(r.queue), 0, "... and nothing handed off before it is journaled");
    uint64_t seen = 0;
    is_int(ingest_flush(r.ing, &seen), 0, "ingest_flush: 0");
    is_int(atomic_load(&write_calls), 1, "one write(2) for the 100 payloads");
    is_int(journal_records(jdir), 100, "the 100 records are in the file");
    is_int(drain_events(&r), 100, "then handed off (ingest_handoff_us=0)");
    is_int(ingest_flush(r.ing, &seen), 0, "a flush with nothing appended");
    is_int(atomic_load(&write_calls), 1, "... writes nothing");

    /* a full disk: writes past RLIMIT_FSIZE fail with EFBIG */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)journal_size(jdir);
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    uint64_t other = seen; /* a second subscriber that flushed as far as this one */
    send_event(&r, 1000);  /* ingest_payload: its write fails, the event is processed anyway */
    is_int(drain_events(&r), 1, "the journal write failed: the event is processed anyway");
    const char *ev = "{\"transactionId\":1001,\"accountOrigin\":\"200001\",\"amount\":1}";
    ingest_payload_batched(r.ing, ev, strlen(ev), "test");
    is_int(ingest_flush(r.ing, &seen), ERR_IO, "ingest_flush reports the failed write");
    is_int(ingest_flush(r.ing, &other), ERR_IO,
           "... and so does another caller's next flush (its records may have been in it)");
    is_int(ingest_flush(r.ing, &seen), 0, "once");
    setrlimit(RLIMIT_FSIZE, &old);
    is_int(journal_records(jdir), 100, "nothing of the failed writes is in the file");
    ev = "{\"transactionId\":1002,\"accountOrigin\":\"200001\",\"amount\":1}";
    ingest_payload_batched(r.ing, ev, strlen(ev), "test");
    is_int(ingest_flush(r.ing, &seen), 0, "space back: the next flush writes");
    is_int(journal_records(jdir), 101, "... its record");
    rig_close(&r);
    char cmd[sizeof tmpl + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    ok(system(cmd) == 0, "temporary data dir removed");
}

int main(void)
{
    test_leading_edge();
    test_no_thread();
    test_batched();
    return done_testing();
}
