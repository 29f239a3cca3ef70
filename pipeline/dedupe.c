/* Bounded recent-id memory (dedupe.h). A ring holds the ids in arrival order; an open-addressing
 * table (linear probing, power-of-two size >= 2 x capacity, so the load factor stays <= 0.5)
 * indexes them. Evicting the oldest id deletes it from the table with backward-shift deletion, so
 * there are no tombstones and probe lengths never degrade however long the daemon runs.
 * Slot value 0 means empty, so id 0 is never put in the table: a counter records whether it is in
 * the ring. The table key is the id itself; only the home slot comes from shard_mix (fmix64). */
#include "dedupe.h"
#include <stdlib.h>
#include "shard.h"
#include "xmalloc.h"

struct dedupe {
    uint64_t *ring; /* capacity ids, oldest at head once full */
    size_t capacity;
    size_t head;
    size_t count;
    uint64_t *table; /* 0 = empty slot; id 0 is tracked by zero_count */
    size_t mask;
    size_t zero_count; /* how many times id 0 is in the ring (0 or 1) */
};

/* Empty memory of the last `capacity` ids (0 is treated as 1); caller owns it (dedupe_free). */
struct dedupe *dedupe_new(size_t capacity)
{
    struct dedupe *d = xcalloc(1, sizeof *d);
    d->capacity = capacity ? capacity : 1;
    d->ring = xcalloc(d->capacity, sizeof *d->ring);
    size_t size = 16; /* floor: tiny memories still get a table with room between clusters */
    while (size < 2 * d->capacity)
        size *= 2;
    d->table = xcalloc(size, sizeof *d->table);
    d->mask = size - 1;
    return d;
}

/* Frees d; NULL is a no-op. */
void dedupe_free(struct dedupe *d)
{
    if (d == NULL)
        return;
    free(d->ring);
    free(d->table);
    free(d);
}

/* Slot holding id, or the empty slot where it would go. id != 0. */
static size_t find_slot(const struct dedupe *d, uint64_t id)
{
    size_t i = (size_t)shard_mix(id) & d->mask;
    while (d->table[i] != 0 && d->table[i] != id)
        i = (i + 1) & d->mask;
    return i;
}

static void table_remove(struct dedupe *d, uint64_t id)
{
    size_t i = find_slot(d, id);
    if (d->table[i] == 0)
        return;
    /* Backward-shift: pull later members of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, j]. */
    size_t hole = i;
    size_t j = i;
    for (;;) {
        j = (j + 1) & d->mask;
        if (d->table[j] == 0)
            break;
        size_t home = (size_t)shard_mix(d->table[j]) & d->mask;
        bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
        if (movable) {
            d->table[hole] = d->table[j];
            hole = j;
        }
    }
    d->table[hole] = 0;
}

/* True if id is among the remembered ids; never inserts. */
bool dedupe_contains(const struct dedupe *d, uint64_t id)
{
    if (id == 0)
        return d->zero_count > 0;
    return d->table[find_slot(d, id)] == id;
}

/* True for a remembered id (nothing changes); else remembers it, evicting the oldest id when
 * full, and returns false. */
bool dedupe_check_insert(struct dedupe *d, uint64_t id)
{
    if (dedupe_contains(d, id))
        return true;
    if (d->count == d->capacity) { /* evict the oldest */
        uint64_t old = d->ring[d->head];
        if (old == 0)
            d->zero_count--;
        else
            table_remove(d, old);
        d->ring[d->head] = id;
        d->head = (d->head + 1) % d->capacity;
    } else {
        d->ring[(d->head + d->count) % d->capacity] = id;
        d->count++;
    }
    if (id == 0)
        d->zero_count++;
    else
        d->table[find_slot(d, id)] = id;
    return false;
}

/* Ids remembered, <= capacity. */
size_t dedupe_count(const struct dedupe *d)
{
    return d->count;
}

/* Writes the remembered ids oldest first to out (room for dedupe_count()); returns the count. */
size_t dedupe_export(const struct dedupe *d, uint64_t *out)
{
    for (size_t i = 0; i < d->count; i++)
        out[i] = d->ring[(d->head + i) % d->capacity];
    return d->count;
}
