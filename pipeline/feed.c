/* Live feed ring (feed.h). Slot i holds sequence numbers congruent to i modulo the capacity;
 * the ring keeps [head - capacity + 1, head]. A publish copies the text under the lock and
 * frees the evicted copy after unlocking; a read copies the event out under the lock, so a slow
 * reader holds nothing while it writes to its socket. */
#include "feed.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "xmalloc.h"

struct slot {
    uint64_t seq;
    enum feed_type type;
    char *json;
    size_t len;
};

struct feed {
    pthread_mutex_t mu;
    size_t capacity;
    struct slot *ring;
    atomic_uint_fast64_t head;
    void (*notify)(void *ctx);
    void *notify_ctx;
};

struct feed *feed_new(size_t capacity)
{
    struct feed *f = xcalloc(1, sizeof *f);
    f->capacity = capacity ? capacity : 1;
    f->ring = xcalloc(f->capacity, sizeof *f->ring);
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->head, 0);
    return f;
}

void feed_free(struct feed *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->capacity; i++)
        free(f->ring[i].json);
    free(f->ring);
    pthread_mutex_destroy(&f->mu);
    free(f);
}

void feed_publish(struct feed *f, enum feed_type type, const char *json, size_t len)
{
    char *copy = xmalloc(len + 1);
    memcpy(copy, json, len);
    copy[len] = '\0';
    pthread_mutex_lock(&f->mu);
    uint64_t seq = atomic_load(&f->head) + 1;
    struct slot *s = &f->ring[seq % f->capacity];
    char *evicted = s->json;
    *s = (struct slot){seq, type, copy, len};
    atomic_store(&f->head, seq);
    void (*notify)(void *) = f->notify;
    void *ctx = f->notify_ctx;
    pthread_mutex_unlock(&f->mu);
    free(evicted);
    if (notify)
        notify(ctx);
}

int feed_next(struct feed *f, uint64_t *cursor, unsigned types_mask, struct feed_event *out,
              uint64_t *missed)
{
    *missed = 0;
    int found = 0;
    pthread_mutex_lock(&f->mu);
    uint64_t head = atomic_load(&f->head);
    uint64_t oldest = head >= f->capacity ? head - f->capacity + 1 : 1;
    if (*cursor > head) /* a cursor from the future (a client's bad Last-Event-ID): now */
        *cursor = head;
    if (*cursor + 1 < oldest) {
        *missed = oldest - (*cursor + 1);
        *cursor = oldest - 1;
    }
    while (*cursor < head && !found) {
        const struct slot *s = &f->ring[(*cursor + 1) % f->capacity];
        *cursor = s->seq;
        if (s->type & types_mask) {
            out->seq = s->seq;
            out->type = s->type;
            out->len = s->len;
            out->json = xmalloc(s->len + 1);
            memcpy(out->json, s->json, s->len + 1);
            found = 1;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return found;
}

uint64_t feed_head(const struct feed *f)
{
    return atomic_load(&((struct feed *)f)->head);
}

const char *feed_type_name(enum feed_type t)
{
    return t == FEED_ANOMALY ? "anomaly" : "decision";
}

void feed_set_notify(struct feed *f, void (*fn)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&f->mu);
    f->notify = fn;
    f->notify_ctx = ctx;
    pthread_mutex_unlock(&f->mu);
}
