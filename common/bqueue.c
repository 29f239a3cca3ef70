/* Bounded MPMC queue (bqueue.h): a ring of pointers under one mutex with two condition variables
 * (not empty / not full) on CLOCK_MONOTONIC, so timeouts are immune to wall-clock jumps. pop_many
 * takes everything available up to `max` in one lock round, which is what lets consumers batch.
 *
 * Wake-ups. Each side counts its waiters under the mutex and is signalled only when one waits,
 * and only after the mutex is released: a consumer woken while the producer still held it would
 * run, find the mutex taken and sleep again on it, and the producer's unlock would have to wake
 * it a second time (two futex calls and context switches per hand-off instead of one). Signalling
 * after the unlock cannot lose a wake-up: a waiter was counted, and released the mutex inside
 * pthread_cond_wait, before the state it waits for could change.
 *
 * Lazy pushes. A consumer that waits with a deadline while it gathers work (the sink lingering
 * for more batches to share a store commit) gains nothing from being woken by each item that
 * can wait: it would take the item and sleep again until the same deadline. bqueue_push_lazy
 * therefore signals only a consumer that waits without a deadline (it would sleep forever), or
 * when the queue is half full (the producer must not block on a full queue until a deadline);
 * a timed waiter takes the lazily pushed items when its deadline passes or an ordinary push
 * wakes it. */
#include "bqueue.h"
#include "clock.h"
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include "err.h"
#include "xmalloc.h"

struct bqueue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    void **ring;
    size_t cap;
    size_t head; /* next pop */
    size_t len;
    unsigned pop_waiters;  /* consumers inside pthread_cond_wait on not_empty */
    unsigned idle_waiters; /* ... of which waiting without a deadline */
    unsigned push_waiters; /* producers inside pthread_cond_wait on not_full */
    bool closed;
};

struct bqueue *bqueue_new(size_t capacity)
{
    struct bqueue *q = xcalloc(1, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    clock_cond_init(&q->not_empty);
    clock_cond_init(&q->not_full);
    q->cap = capacity ? capacity : 1;
    q->ring = xcalloc(q->cap, sizeof *q->ring);
    return q;
}

void bqueue_free(struct bqueue *q)
{
    if (q == NULL)
        return;
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    pthread_mutex_destroy(&q->mu);
    free(q->ring);
    free(q);
}

/* Adds item (the queue has room); true when a consumer waits to be signalled. */
static bool put_locked(struct bqueue *q, void *item)
{
    q->ring[(q->head + q->len) % q->cap] = item;
    q->len++;
    return q->pop_waiters > 0;
}

/* Both pushes: blocks while full; wakes a waiting consumer, always or (lazy) only as the file
 * comment says. */
static int push(struct bqueue *q, void *item, bool lazy)
{
    pthread_mutex_lock(&q->mu);
    while (q->len == q->cap && !q->closed) {
        q->push_waiters++;
        pthread_cond_wait(&q->not_full, &q->mu);
        q->push_waiters--;
    }
    int rv = ERR_CLOSED;
    bool wake = false;
    if (!q->closed) {
        wake = put_locked(q, item) && (!lazy || q->idle_waiters > 0 || 2 * q->len >= q->cap);
        rv = 0;
    }
    pthread_mutex_unlock(&q->mu);
    if (wake)
        pthread_cond_signal(&q->not_empty);
    return rv;
}

int bqueue_push(struct bqueue *q, void *item)
{
    return push(q, item, false);
}

int bqueue_push_lazy(struct bqueue *q, void *item)
{
    return push(q, item, true);
}

int bqueue_try_push(struct bqueue *q, void *item)
{
    pthread_mutex_lock(&q->mu);
    int rv = q->closed ? ERR_CLOSED : q->len == q->cap ? ERR_FULL : 0;
    bool wake = rv == 0 && put_locked(q, item);
    pthread_mutex_unlock(&q->mu);
    if (wake)
        pthread_cond_signal(&q->not_empty);
    return rv;
}

int bqueue_pop_many(struct bqueue *q, void **items, size_t max, int timeout_ms)
{
    struct timespec deadline = clock_mono_deadline(timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&q->mu);
    while (q->len == 0 && !q->closed && timeout_ms != 0) {
        q->pop_waiters++;
        q->idle_waiters += timeout_ms < 0;
        int rc = timeout_ms < 0 ? pthread_cond_wait(&q->not_empty, &q->mu)
                                : pthread_cond_timedwait(&q->not_empty, &q->mu, &deadline);
        q->idle_waiters -= timeout_ms < 0;
        q->pop_waiters--;
        if (rc != 0)
            break;
    }
    int rv;
    bool wake_producers = false, wake_consumer = false;
    if (q->len == 0) {
        rv = q->closed ? ERR_CLOSED : ERR_TIMEOUT;
    } else {
        size_t n = q->len < max ? q->len : max;
        for (size_t i = 0; i < n; i++) {
            items[i] = q->ring[q->head];
            q->head = (q->head + 1) % q->cap;
        }
        q->len -= n;
        wake_producers = q->push_waiters > 0;
        wake_consumer = q->len > 0 && q->pop_waiters > 0;
        rv = (int)n;
    }
    pthread_mutex_unlock(&q->mu);
    if (wake_producers)
        pthread_cond_broadcast(&q->not_full);
    if (wake_consumer)
        pthread_cond_signal(&q->not_empty);
    return rv;
}

void bqueue_close(struct bqueue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

size_t bqueue_len(struct bqueue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}
