/* Bounded memory of recent transactionIds: a ring of the last `capacity` ids (oldest evicted
 * first) indexed by an open-addressing hash set with backward-shift deletion, so lookups and
 * inserts are O(1) and memory is fixed at creation. Not thread-safe (the router serializes). */
#ifndef AETHERIS_DEDUPE_H
#define AETHERIS_DEDUPE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dedupe;

struct dedupe *dedupe_new(size_t capacity); /* capacity >= 1 */
void dedupe_free(struct dedupe *d);         /* NULL is a no-op */
/* True if id is remembered; otherwise remembers it (evicting the oldest at capacity), false. */
bool dedupe_check_insert(struct dedupe *d, uint64_t id);
/* True if id is remembered (no insert). */
bool dedupe_contains(const struct dedupe *d, uint64_t id);
size_t dedupe_count(const struct dedupe *d);
/* Copies the remembered ids, oldest first, into out (room for dedupe_count()); returns the count.
 */
size_t dedupe_export(const struct dedupe *d, uint64_t *out);

#endif
