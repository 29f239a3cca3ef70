/* Recent-id memory and bounded queue: duplicates detected, eviction exactly at capacity in
 * arrival order, export order, a long random run against a simple reference, ids 0 and
 * UINT64_MAX; queue FIFO, multi-producer/multi-consumer exactly-once, close and timeouts. */
#include "dedupe.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "bqueue.h"
#include "err.h"
#include "tap.h"

static uint64_t rng = 88172645463325252ULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

enum { PRODUCERS = 4, PER_PRODUCER = 50000 };
static struct bqueue *q;
static unsigned char seen[PRODUCERS * PER_PRODUCER];
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static int dup_count;

static void *producer(void *arg)
{
    uintptr_t base = (uintptr_t)arg * PER_PRODUCER;
    for (uintptr_t i = 0; i < PER_PRODUCER; i++)
        bqueue_push(q, (void *)(base + i + 1));
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    void *items[16];
    int n;
    while ((n = bqueue_pop_many(q, items, 16, -1)) > 0) {
        pthread_mutex_lock(&seen_mu);
        for (int i = 0; i < n; i++) {
            uintptr_t v = (uintptr_t)items[i] - 1;
            dup_count += seen[v];
            seen[v] = 1;
        }
        pthread_mutex_unlock(&seen_mu);
    }
    return NULL;
}

int main(void)
{
    struct dedupe *d = dedupe_new(3);
    ok(!dedupe_check_insert(d, 10) && !dedupe_check_insert(d, 11) && !dedupe_check_insert(d, 12),
       "new ids are not duplicates");
    ok(dedupe_check_insert(d, 11), "a remembered id is a duplicate");
    ok(!dedupe_check_insert(d, 13), "a fourth id is new");
    ok(!dedupe_contains(d, 10) && dedupe_contains(d, 11), "the oldest id was evicted at capacity");
    uint64_t out[3];
    is_int(dedupe_export(d, out), 3, "export count");
    ok(out[0] == 11 && out[1] == 12 && out[2] == 13, "export is oldest first");
    ok(!dedupe_check_insert(d, 0) && dedupe_check_insert(d, 0), "id 0 works");
    ok(!dedupe_check_insert(d, UINT64_MAX) && dedupe_check_insert(d, UINT64_MAX),
       "id UINT64_MAX works");
    dedupe_free(d);

    /* Long random run against a reference ring with linear search. */
    enum { CAP = 1000 };
    d = dedupe_new(CAP);
    uint64_t ring[CAP];
    size_t head = 0, count = 0;
    int bad = 0;
    for (long i = 0; i < 1000000; i++) {
        uint64_t id = next() % 5000; /* small space: plenty of duplicates and evictions */
        bool ref = false;
        for (size_t k = 0; k < count && !ref; k++)
            ref = ring[(head + k) % CAP] == id;
        if (!ref) {
            if (count == CAP) {
                ring[head] = id;
                head = (head + 1) % CAP;
            } else {
                ring[(head + count++) % CAP] = id;
            }
        }
        bad += dedupe_check_insert(d, id) != ref;
    }
    is_int(bad, 0, "1M random ids: same answers as a reference ring");
    is_int(dedupe_count(d), CAP, "count stays at capacity");
    dedupe_free(d);

    /* bqueue */
    q = bqueue_new(2);
    void *items[4];
    is_int(bqueue_try_push(q, (void *)1), 0, "try_push into an empty queue");
    is_int(bqueue_try_push(q, (void *)2), 0, "try_push up to capacity");
    is_int(bqueue_try_push(q, (void *)3), ERR_FULL, "try_push into a full queue is ERR_FULL");
    is_int(bqueue_pop_many(q, items, 4, 0), 2, "pop_many takes what is there");
    ok(items[0] == (void *)1 && items[1] == (void *)2, "FIFO order");
    is_int(bqueue_pop_many(q, items, 4, 20), ERR_TIMEOUT, "pop on empty times out");
    bqueue_push(q, (void *)5);
    bqueue_close(q);
    is_int(bqueue_push(q, (void *)6), ERR_CLOSED, "push after close fails");
    is_int(bqueue_pop_many(q, items, 4, -1), 1, "pop after close drains what is left");
    is_int(bqueue_pop_many(q, items, 4, -1), ERR_CLOSED, "then reports closed");
    bqueue_free(q);

    q = bqueue_new(64);
    pthread_t prod[PRODUCERS], cons[3];
    for (uintptr_t i = 0; i < 3; i++)
        pthread_create(&cons[i], NULL, consumer, NULL);
    for (uintptr_t i = 0; i < PRODUCERS; i++)
        pthread_create(&prod[i], NULL, producer, (void *)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    bqueue_close(q);
    for (int i = 0; i < 3; i++)
        pthread_join(cons[i], NULL);
    int missing = 0;
    for (size_t i = 0; i < sizeof seen; i++)
        missing += !seen[i];
    ok(missing == 0 && dup_count == 0,
       "4 producers x 3 consumers: every item exactly once "
       "(missing %d, duplicated %d)",
       missing, dup_count);
    bqueue_free(q);
    return done_testing();
}
