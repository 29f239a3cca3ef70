/* The live feed ring: sequence numbers, type filters, readers that fall behind the ring (told
 * how many they missed, then resumed at the oldest kept event), a cursor from the future, the
 * notify callback, and a publisher thread racing readers (every event seen once, in order). */
#include "feed.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"

static int notified;
static void on_notify(void *ctx)
{
    (void)ctx;
    notified++;
}

static void publish_n(struct feed *f, int from, int n, enum feed_type type)
{
    char text[32];
    for (int i = from; i < from + n; i++) {
        int len = snprintf(text, sizeof text, "{\"n\":%d}", i);
        feed_publish(f, type, text, (size_t)len);
    }
}

static void test_ring(void)
{
    struct feed *f = feed_new(4);
    feed_set_notify(f, on_notify, NULL);
    struct feed_event ev;
    uint64_t cursor = feed_head(f), missed = 0;
    is_int(cursor, 0, "empty feed: head 0");
    is_int(feed_next(f, &cursor, FEED_ANOMALY | FEED_DECISION, &ev, &missed), 0, "nothing yet");
    publish_n(f, 1, 2, FEED_ANOMALY);
    publish_n(f, 3, 1, FEED_DECISION);
    is_int(notified, 3, "notify runs once per publish");
    is_int(feed_next(f, &cursor, FEED_DECISION, &ev, &missed), 1, "decision filter finds one");
    ok(ev.seq == 3 && ev.type == FEED_DECISION && strcmp(ev.json, "{\"n\":3}") == 0,
       "the decision, seq 3");
    free(ev.json);
    is_int(cursor, 3, "cursor moved past the skipped anomalies");
    cursor = 0;
    is_int(feed_next(f, &cursor, FEED_ANOMALY | FEED_DECISION, &ev, &missed), 1, "from the start");
    ok(ev.seq == 1 && missed == 0, "first event, nothing missed");
    free(ev.json);

    publish_n(f, 4, 6, FEED_ANOMALY); /* head 9, ring keeps 6..9 */
    is_int(feed_next(f, &cursor, FEED_ANOMALY, &ev, &missed), 1, "a reader left behind");
    ok(missed == 4 && ev.seq == 6, "is told it missed 4 (2..5) and resumes at 6 (%llu, %llu)",
       (unsigned long long)missed, (unsigned long long)ev.seq);
    free(ev.json);
    cursor = 1000;
    is_int(feed_next(f, &cursor, FEED_ANOMALY, &ev, &missed), 0, "a cursor from the future");
    is_int(cursor, 9, "is brought back to now");
    feed_free(f);
}

struct race {
    struct feed *f;
    int n;
};

static void *publisher(void *arg)
{
    struct race *r = arg;
    publish_n(r->f, 1, r->n, FEED_ANOMALY);
    return NULL;
}

static void test_race(void)
{
    struct race r = {feed_new(100000), 50000};
    pthread_t t;
    pthread_create(&t, NULL, publisher, &r);
    uint64_t cursor = 0, missed = 0, expect = 1;
    bool in_order = true;
    while (expect <= (uint64_t)r.n) {
        struct feed_event ev;
        if (feed_next(r.f, &cursor, FEED_ANOMALY, &ev, &missed)) {
            char want[32];
            snprintf(want, sizeof want, "{\"n\":%llu}", (unsigned long long)expect);
            in_order = in_order && ev.seq == expect && strcmp(ev.json, want) == 0 && !missed;
            free(ev.json);
            expect++;
        }
    }
    pthread_join(t, NULL);
    ok(in_order, "50000 events read while published: each once, in order");
    feed_free(r.f);
}

int main(void)
{
    test_ring();
    test_race();
    return done_testing();
}
