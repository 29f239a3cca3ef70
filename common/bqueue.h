/* Bounded, closable multi-producer multi-consumer queue of pointers: the only way pipeline threads
 * talk to each other. Push blocks while full (back-pressure); try_push does not. After close,
 * pushes fail with ERR_CLOSED and pops drain what is left, then return ERR_CLOSED.
 * Thread-safe. The queue does not own its items: whoever pops one owns it. */
#ifndef AETHERIS_BQUEUE_H
#define AETHERIS_BQUEUE_H
#include "fmacros.h"
#include <stddef.h>

struct bqueue;

/* Creates a queue holding at most `capacity` (>= 1) items. */
struct bqueue *bqueue_new(size_t capacity);
/* Frees the queue; items still inside are not freed. NULL is a no-op. */
void bqueue_free(struct bqueue *q);
/* Blocks while full; 0, or ERR_CLOSED if the queue is (or becomes) closed. */
int bqueue_push(struct bqueue *q, void *item);
/* bqueue_push for an item that can wait: a consumer waiting with a deadline is not woken for it
 * (it takes it at its deadline or at the next ordinary push), one waiting without a deadline is,
 * and so is any consumer once the queue is half full. For queues with one consumer. */
int bqueue_push_lazy(struct bqueue *q, void *item);
/* 0, ERR_FULL or ERR_CLOSED; never blocks. */
int bqueue_try_push(struct bqueue *q, void *item);
/* Pops up to `max` items into `items`, waiting up to timeout_ms (< 0: forever, 0: no wait) for
 * the first one. Returns the count (>= 1), ERR_TIMEOUT, or ERR_CLOSED once closed and empty. */
int bqueue_pop_many(struct bqueue *q, void **items, size_t max, int timeout_ms);
/* Wakes all waiters; later pushes fail. Idempotent. */
void bqueue_close(struct bqueue *q);
/* Current number of items (a snapshot). */
size_t bqueue_len(struct bqueue *q);

#endif
