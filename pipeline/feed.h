/* The live feed behind GET /v1/stream: a bounded ring of the newest anomalies and decisions,
 * each with a sequence number (1, 2, ...), published by the sink (after an exception reaches
 * its Redis stream) and the decider (after a new decision is stored and its command is out).
 * Readers keep their own cursor (the last sequence they saw), so any number of them read
 * without being waited for; one that falls more than `capacity` events behind is told how many
 * it missed and continues from the oldest event kept. A notify callback runs after each publish
 * (the HTTP layer wakes its suspended streams with it).
 * Thread-safe: publish and read from any thread. */
#ifndef AETHERIS_FEED_H
#define AETHERIS_FEED_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>

enum feed_type { FEED_ANOMALY = 1u << 0, FEED_DECISION = 1u << 1 };

struct feed;

struct feed_event {
    uint64_t seq;
    enum feed_type type;
    char *json; /* malloc'd copy, NUL-terminated; the reader frees it */
    size_t len;
};

/* A ring of `capacity` events (>= 1). */
struct feed *feed_new(size_t capacity);
void feed_free(struct feed *f); /* NULL is a no-op */
/* Appends a copy of json (len bytes), evicting the oldest event when full, then calls the
 * notify callback (outside the feed's lock). */
void feed_publish(struct feed *f, enum feed_type type, const char *json, size_t len);
/* The next event after *cursor whose type is in types_mask: 1 with *out filled and *cursor
 * moved to it, or 0 when there is none yet (*cursor moves past skipped types). *missed receives
 * the number of events that left the ring unread since *cursor (0 normally). */
int feed_next(struct feed *f, uint64_t *cursor, unsigned types_mask, struct feed_event *out,
              uint64_t *missed);
/* The newest sequence number published (0 before the first). Lock-free. */
uint64_t feed_head(const struct feed *f);
/* "anomaly" or "decision". */
const char *feed_type_name(enum feed_type t);
/* Sets the callback run after every publish (NULL to remove); ctx is passed to it. */
void feed_set_notify(struct feed *f, void (*fn)(void *ctx), void *ctx);

#endif
