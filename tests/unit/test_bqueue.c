/* Bounded queue: FIFO order across ring wrap-around, try_push on a full queue, pop timeouts
 * (measured on the monotonic clock), close semantics (drain then ERR_CLOSED, blocked pushers and
 * poppers woken), back-pressure, and a multi-producer multi-consumer run in which every item must
 * be seen exactly once and in per-producer order; lazy pushes leave a consumer with a deadline
 * asleep until it or an ordinary push, wake one without a deadline, and wake any at half full.
 * alarm() bounds the whole run. */
#include "bqueue.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "err.h"
#include "tap.h"

#define NPRODUCERS 4
#define NCONSUMERS 4
#define PER_PRODUCER 50000
#define MPMC_CAPACITY 64 /* small, so producers really block on a full queue */
#define POP_MAX 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Items are (producer << 32 | sequence) + 1, so no item is NULL. */
static void *encode(unsigned producer, unsigned seq)
{
    return (void *)(uintptr_t)((((uint64_t)producer << 32) | seq) + 1);
}

static void decode(void *item, unsigned *producer, unsigned *seq)
{
    uint64_t v = (uint64_t)(uintptr_t)item - 1;
    *producer = (unsigned)(v >> 32);
    *seq = (unsigned)(v & 0xffffffffu);
}

struct mpmc {
    struct bqueue *q;
    _Atomic unsigned char seen[NPRODUCERS][PER_PRODUCER];
    atomic_int out_of_order;
    atomic_int bad_items;
    atomic_long popped;
};

struct producer_arg {
    struct mpmc *m;
    unsigned id;
    int failures;
};

static void *producer_main(void *p)
{
    struct producer_arg *a = p;
    for (unsigned s = 0; s < PER_PRODUCER; s++)
        a->failures += bqueue_push(a->m->q, encode(a->id, s)) != 0;
    return NULL;
}

struct consumer_arg {
    struct mpmc *m;
    int final_rv;
};

static void *consumer_main(void *p)
{
    struct consumer_arg *a = p;
    struct mpmc *m = a->m;
    long next[NPRODUCERS] = {0}; /* lowest sequence this consumer may still see per producer */
    void *items[POP_MAX];
    int n;
    while ((n = bqueue_pop_many(m->q, items, POP_MAX, -1)) > 0) {
        for (int i = 0; i < n; i++) {
            unsigned prod, seq;
            decode(items[i], &prod, &seq);
            if (prod >= NPRODUCERS || seq >= PER_PRODUCER) {
                atomic_fetch_add(&m->bad_items, 1);
                continue;
            }
            atomic_fetch_add(&m->seen[prod][seq], 1);
            if ((long)seq < next[prod])
                atomic_fetch_add(&m->out_of_order, 1);
            next[prod] = (long)seq + 1;
        }
        atomic_fetch_add(&m->popped, n);
    }
    a->final_rv = n;
    return NULL;
}

static void test_mpmc(void)
{
    struct mpmc *m = calloc(1, sizeof *m);
    m->q = bqueue_new(MPMC_CAPACITY);
    pthread_t pt[NPRODUCERS], ct[NCONSUMERS];
    struct producer_arg pa[NPRODUCERS];
    struct consumer_arg ca[NCONSUMERS];
    for (unsigned i = 0; i < NCONSUMERS; i++) {
        ca[i] = (struct consumer_arg){m, 0};
        pthread_create(&ct[i], NULL, consumer_main, &ca[i]);
    }
    for (unsigned i = 0; i < NPRODUCERS; i++) {
        pa[i] = (struct producer_arg){m, i, 0};
        pthread_create(&pt[i], NULL, producer_main, &pa[i]);
    }
    int push_failures = 0;
    for (unsigned i = 0; i < NPRODUCERS; i++) {
        pthread_join(pt[i], NULL);
        push_failures += pa[i].failures;
    }
    bqueue_close(m->q);
    int closed_ok = 0;
    for (unsigned i = 0; i < NCONSUMERS; i++) {
        pthread_join(ct[i], NULL);
        closed_ok += ca[i].final_rv == ERR_CLOSED;
    }
    long missing = 0, duplicated = 0;
    for (unsigned p = 0; p < NPRODUCERS; p++) {
        for (unsigned s = 0; s < PER_PRODUCER; s++) {
            unsigned char c = atomic_load(&m->seen[p][s]);
            missing += c == 0;
            duplicated += c > 1;
        }
    }
    is_int(push_failures, 0, "MPMC: every blocking push succeeded");
    is_int(atomic_load(&m->popped), (long)NPRODUCERS * PER_PRODUCER,
           "MPMC: %d items popped in total", NPRODUCERS * PER_PRODUCER);
    is_int(missing, 0, "MPMC: no item lost");
    is_int(duplicated, 0, "MPMC: no item delivered twice");
    is_int(atomic_load(&m->bad_items), 0, "MPMC: no corrupted item");
    is_int(atomic_load(&m->out_of_order), 0, "MPMC: each consumer sees each producer in order");
    is_int(closed_ok, NCONSUMERS, "MPMC: every consumer ends with ERR_CLOSED after close");
    is_int(bqueue_len(m->q), 0, "MPMC: queue empty at the end");
    bqueue_free(m->q);
    free(m);
}

struct blocked {
    struct bqueue *q;
    atomic_int done;
    int rv;
    void *item;
};

static void *blocked_push_main(void *p)
{
    struct blocked *b = p;
    b->rv = bqueue_push(b->q, b->item);
    atomic_store(&b->done, 1);
    return NULL;
}

static void *blocked_pop_main(void *p)
{
    struct blocked *b = p;
    b->rv = bqueue_pop_many(b->q, &b->item, 1, -1);
    atomic_store(&b->done, 1);
    return NULL;
}

/* Starts fn on a thread and reports whether it is still blocked after 50 ms. */
static int still_blocked_after_start(pthread_t *t, void *(*fn)(void *), struct blocked *b)
{
    pthread_create(t, NULL, fn, b);
    sleep_ms(50);
    return atomic_load(&b->done) == 0;
}

static void test_basic(void)
{
    struct bqueue *q = bqueue_new(4);
    void *items[8];
    for (int i = 1; i <= 4; i++)
        is_int(bqueue_try_push(q, (void *)(uintptr_t)i), 0, "try_push %d of 4", i);
    is_int(bqueue_try_push(q, (void *)5), ERR_FULL, "try_push on a full queue is ERR_FULL");
    is_int(bqueue_len(q), 4, "len counts the items");
    is_int(bqueue_pop_many(q, items, 3, 0), 3, "pop_many stops at max");
    ok(items[0] == (void *)1 && items[1] == (void *)2 && items[2] == (void *)3, "FIFO order");
    is_int(bqueue_pop_many(q, items, 8, 0), 1, "pop_many takes what is left");
    ok(items[0] == (void *)4, "last item");

    /* 1000 rounds of 3 pushes and 3 pops walk head around the 4-slot ring many times. */
    int order_errors = 0;
    uintptr_t next_in = 1, next_out = 1;
    for (int round = 0; round < 1000; round++) {
        for (int k = 0; k < 3; k++)
            order_errors += bqueue_try_push(q, (void *)next_in++) != 0;
        int n = bqueue_pop_many(q, items, 8, 0);
        order_errors += n != 3;
        for (int k = 0; k < n; k++)
            order_errors += items[k] != (void *)next_out++;
    }
    is_int(order_errors, 0, "FIFO order holds across ring wrap-around");

    double t0 = now_s();
    is_int(bqueue_pop_many(q, items, 8, 0), ERR_TIMEOUT, "timeout 0 on empty: ERR_TIMEOUT");
    ok(now_s() - t0 < 0.05, "timeout 0 does not wait");
    t0 = now_s();
    is_int(bqueue_pop_many(q, items, 8, 120), ERR_TIMEOUT, "timeout 120 ms on empty: ERR_TIMEOUT");
    double waited = now_s() - t0;
    ok(waited >= 0.115 && waited < 2.0, "pop waited about 120 ms (%.3f s)", waited);
    bqueue_free(q);

    /* A pop with a timeout returns as soon as an item arrives. */
    q = bqueue_new(2);
    struct blocked b = {.q = q};
    pthread_t t;
    ok(still_blocked_after_start(&t, blocked_pop_main, &b), "pop(-1) blocks on an empty queue");
    is_int(bqueue_push(q, (void *)42), 0, "push wakes it");
    pthread_join(t, NULL);
    ok(b.rv == 1 && b.item == (void *)42, "the blocked pop got the item");
    bqueue_free(q);
}

static void test_backpressure_and_close(void)
{
    void *items[4];
    struct bqueue *q = bqueue_new(1);
    is_int(bqueue_push(q, (void *)1), 0, "push into capacity 1");
    struct blocked b = {.q = q, .item = (void *)2};
    pthread_t t;
    ok(still_blocked_after_start(&t, blocked_push_main, &b), "push blocks while full");
    is_int(bqueue_len(q), 1, "nothing past capacity");
    is_int(bqueue_pop_many(q, items, 4, 0), 1, "a pop makes room");
    pthread_join(t, NULL);
    is_int(b.rv, 0, "the blocked push then succeeds");
    is_int(bqueue_pop_many(q, items, 4, 0), 1, "its item is in the queue");
    ok(items[0] == (void *)2, "and it is the right one");

    /* close wakes a blocked pusher with ERR_CLOSED */
    is_int(bqueue_push(q, (void *)3), 0, "fill again");
    b = (struct blocked){.q = q, .item = (void *)4};
    ok(still_blocked_after_start(&t, blocked_push_main, &b), "push blocks while full");
    bqueue_close(q);
    pthread_join(t, NULL);
    is_int(b.rv, ERR_CLOSED, "close wakes a blocked push with ERR_CLOSED");
    is_int(bqueue_push(q, (void *)5), ERR_CLOSED, "push after close: ERR_CLOSED");
    is_int(bqueue_try_push(q, (void *)5), ERR_CLOSED, "try_push after close: ERR_CLOSED");
    is_int(bqueue_pop_many(q, items, 4, -1), 1, "pop after close drains what is left");
    ok(items[0] == (void *)3, "the item pushed before close");
    is_int(bqueue_pop_many(q, items, 4, -1), ERR_CLOSED, "then ERR_CLOSED, without blocking");
    is_int(bqueue_pop_many(q, items, 4, 100), ERR_CLOSED, "ERR_CLOSED also with a timeout");
    bqueue_close(q);
    is_int(bqueue_pop_many(q, items, 4, 0), ERR_CLOSED, "close is idempotent");
    bqueue_free(q);

    /* close wakes a blocked popper */
    q = bqueue_new(8);
    b = (struct blocked){.q = q};
    ok(still_blocked_after_start(&t, blocked_pop_main, &b), "pop blocks on an empty queue");
    double t0 = now_s();
    bqueue_close(q);
    pthread_join(t, NULL);
    is_int(b.rv, ERR_CLOSED, "close wakes a blocked pop with ERR_CLOSED");
    ok(now_s() - t0 < 1.0, "promptly");
    bqueue_free(q);

    q = bqueue_new(0);
    is_int(bqueue_try_push(q, (void *)1), 0, "capacity 0 is raised to 1");
    is_int(bqueue_try_push(q, (void *)2), ERR_FULL, "and holds one item");
    bqueue_free(q);
    bqueue_free(NULL);
    ok(1, "bqueue_free(NULL) is a no-op");
}

struct timed_pop {
    struct bqueue *q;
    int timeout_ms;
    int rv;
    double took_s; /* from the call to its return */
};

static void *timed_pop_main(void *p)
{
    struct timed_pop *t = p;
    void *items[8];
    double t0 = now_s();
    t->rv = bqueue_pop_many(t->q, items, 8, t->timeout_ms);
    t->took_s = now_s() - t0;
    return NULL;
}

/* A consumer popping with timeout_ms on q, started 50 ms before the pushes that follow. */
static void timed_pop_start(pthread_t *th, struct timed_pop *t, struct bqueue *q, int timeout_ms)
{
    *t = (struct timed_pop){.q = q, .timeout_ms = timeout_ms};
    pthread_create(th, NULL, timed_pop_main, t);
    sleep_ms(50);
}

static void test_lazy_push(void)
{
    struct bqueue *q = bqueue_new(8);
    pthread_t th;
    struct timed_pop t;
    timed_pop_start(&th, &t, q, 400);
    is_int(bqueue_push_lazy(q, encode(0, 1)), 0, "lazy push");
    pthread_join(th, NULL);
    ok(t.rv == 1 && t.took_s >= 0.38,
       "a consumer waiting with a deadline is not woken by a lazy push: it takes the item at its "
       "deadline (%d after %.3f s)",
       t.rv, t.took_s);

    timed_pop_start(&th, &t, q, 5000);
    bqueue_push_lazy(q, encode(0, 2));
    sleep_ms(50);
    bqueue_push(q, encode(0, 3));
    pthread_join(th, NULL);
    ok(t.rv == 2 && t.took_s < 2.5,
       "an ordinary push wakes it early, and it takes the lazy item too (%d after %.3f s)", t.rv,
       t.took_s);

    timed_pop_start(&th, &t, q, -1);
    bqueue_push_lazy(q, encode(0, 4));
    pthread_join(th, NULL);
    ok(t.rv == 1 && t.took_s < 2.5,
       "a consumer waiting without a deadline is woken by a lazy push (%d after %.3f s)", t.rv,
       t.took_s);

    timed_pop_start(&th, &t, q, 5000);
    for (unsigned i = 0; i < 4; i++)
        bqueue_push_lazy(q, encode(0, 5 + i));
    pthread_join(th, NULL);
    ok(t.rv >= 1 && t.took_s < 2.5,
       "lazy pushes wake a timed waiter once the queue is half full (%d after %.3f s)", t.rv,
       t.took_s);
    void *rest[8];
    int left = bqueue_pop_many(q, rest, 8, 0);
    is_int(t.rv + (left > 0 ? left : 0), 4, "and nothing is lost");
    bqueue_close(q);
    is_int(bqueue_push_lazy(q, encode(0, 9)), ERR_CLOSED, "a closed queue refuses lazy pushes");
    bqueue_free(q);
}

int main(void)
{
    alarm(60); /* a deadlock fails the test instead of hanging ctest */
    test_basic();
    test_backpressure_and_close();
    test_lazy_push();
    test_mpmc();
    return done_testing();
}
