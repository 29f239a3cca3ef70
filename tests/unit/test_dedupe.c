/* Recent-id memory and bounded queue: duplicates detected, eviction exactly at capacity in
 * arrival order, export order, long random runs against a simple reference (including a tiny
 * table whose probe runs wrap around its end), sequential ids, ids 0 and UINT64_MAX also when
 * evicted; queue FIFO, multi-producer/multi-consumer exactly-once, close and timeouts. */
#include "dedupe.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "bqueue.h"
#include "err.h"
#include "tap.h"

/* Reference: a ring of the last cap distinct new ids, searched linearly. */
struct ref {
    uint64_t *ring;
    size_t cap, head, count;
};

static bool ref_contains(const struct ref *r, uint64_t id)
{
    for (size_t k = 0; k < r->count; k++)
        if (r->ring[(r->head + k) % r->cap] == id)
            return true;
    return false;
}

/* Same contract as dedupe_check_insert. */
static bool ref_check_insert(struct ref *r, uint64_t id)
{
    if (ref_contains(r, id))
        return true;
    if (r->count == r->cap) {
        r->ring[r->head] = id;
        r->head = (r->head + 1) % r->cap;
    } else {
        r->ring[(r->head + r->count++) % r->cap] = id;
    }
    return false;
}

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

    d = dedupe_new(2);
    dedupe_check_insert(d, 0);
    dedupe_check_insert(d, UINT64_MAX);
    ok(!dedupe_check_insert(d, 5) && !dedupe_contains(d, 0) && dedupe_contains(d, UINT64_MAX),
       "id 0 is evicted like any other");
    ok(!dedupe_check_insert(d, 6) && !dedupe_contains(d, UINT64_MAX) && dedupe_contains(d, 5),
       "id UINT64_MAX is evicted like any other");
    ok(!dedupe_check_insert(d, 0) && !dedupe_check_insert(d, UINT64_MAX), "both are new again");
    ok(!dedupe_contains(d, 7) && !dedupe_contains(d, 7) && dedupe_count(d) == 2,
       "contains never inserts");
    dedupe_free(d);

    d = dedupe_new(1);
    ok(!dedupe_check_insert(d, 1) && dedupe_check_insert(d, 1) && !dedupe_check_insert(d, 2) &&
           !dedupe_contains(d, 1) && dedupe_count(d) == 1,
       "capacity 1 remembers only the last id");
    dedupe_free(d);

    /* Long random runs against the reference ring: capacity 1000 over a small id space (plenty
     * of duplicates and evictions), and capacity 8 (a 16-slot table: clusters wrap around). */
    static const size_t caps[] = {1000, 8};
    static const uint64_t spaces[] = {5000, 40};
    for (int t = 0; t < 2; t++) {
        size_t cap = caps[t];
        struct ref r = {calloc(cap, sizeof(uint64_t)), cap, 0, 0};
        d = dedupe_new(cap);
        int bad = 0;
        for (long i = 0; i < 1000000; i++) {
            uint64_t id = next() % spaces[t];
            if (i % 3 == 0)
                id = UINT64_MAX - id; /* both ends of the id space */
            bad += dedupe_check_insert(d, id) != ref_check_insert(&r, id);
        }
        is_int(bad, 0, "1M random ids, capacity %zu: same answers as a reference ring", cap);
        is_int(dedupe_count(d), cap, "count stays at capacity %zu", cap);
        uint64_t *exp = calloc(cap, sizeof *exp);
        size_t n = dedupe_export(d, exp);
        int order = n == cap;
        for (size_t k = 0; k < n && order; k++)
            order = exp[k] == r.ring[(r.head + k) % cap];
        ok(order, "export after wrap-around lists the ids oldest first (capacity %zu)", cap);
        int member = 1;
        for (uint64_t id = 0; id < spaces[t] && member; id++)
            member = dedupe_contains(d, id) == ref_contains(&r, id) &&
                     dedupe_contains(d, UINT64_MAX - id) == ref_contains(&r, UINT64_MAX - id);
        ok(member, "membership of every id in the space matches (capacity %zu)", cap);
        free(exp);
        free(r.ring);
        dedupe_free(d);
    }

    /* Sequential transactionIds: exactly the last 1000 are remembered at every step. */
    d = dedupe_new(1000);
    int wrong = 0;
    for (uint64_t id = 1; id <= 1000000; id++) {
        wrong += dedupe_check_insert(d, id);
        if (id % 9973 == 0)
            wrong += !dedupe_contains(d, id - 999) || (id > 1000 && dedupe_contains(d, id - 1000));
    }
    is_int(wrong, 0, "1M sequential ids: each new, exactly the newest 1000 remembered");
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
