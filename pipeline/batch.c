/* Batch pool (batch.h): a bqueue used as a bounded free list. get() pops without waiting and falls
 * back to a fresh allocation; put() resets the batch and frees it when the pool is full, so idle
 * memory is bounded by `keep` batches. */
#include "batch.h"
#include <stdlib.h>
#include "bqueue.h"
#include "err.h"
#include "xmalloc.h"

#define SNAPSHOT_PART_MAX                                                                          \
    ((size_t)8 << 30) /* one shard's encoded accounts: 8 GiB is ~20M accounts */

struct evbatch_pool {
    struct bqueue *idle;
};

struct evbatch_pool *evbatch_pool_new(size_t keep)
{
    struct evbatch_pool *pool = xcalloc(1, sizeof *pool);
    pool->idle = bqueue_new(keep ? keep : 1);
    return pool;
}

void evbatch_pool_free(struct evbatch_pool *pool)
{
    if (pool == NULL)
        return;
    bqueue_close(pool->idle);
    void *item;
    while (bqueue_pop_many(pool->idle, &item, 1, 0) == 1)
        free(item);
    bqueue_free(pool->idle);
    free(pool);
}

static void evbatch_reset(struct evbatch *b)
{
    b->kind = EVBATCH_EVENTS;
    b->n = 0;
    b->worker = 0;
    b->marker_seq = 0;
    free(b->ids);
    b->ids = NULL;
    b->nids = 0;
    buf_cleanup(&b->snap);
    free(b->dl);
    b->dl = NULL;
}

struct evbatch *evbatch_get(struct evbatch_pool *pool)
{
    void *item;
    if (bqueue_pop_many(pool->idle, &item, 1, 0) == 1)
        return item;
    struct evbatch *b = xcalloc(1, sizeof *b);
    buf_init(&b->snap, SNAPSHOT_PART_MAX);
    return b;
}

void evbatch_put(struct evbatch_pool *pool, struct evbatch *b)
{
    if (b == NULL)
        return;
    evbatch_reset(b);
    if (bqueue_try_push(pool->idle, b) != 0)
        free(b);
}

bool evbatch_has_exception(const struct evbatch *b)
{
    for (uint32_t i = 0; b->kind == EVBATCH_EVENTS && i < b->n; i++)
        if (b->items[i].r.exception)
            return true;
    return false;
}
