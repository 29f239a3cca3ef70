/* Response cache for aggregate reads (GET /v1/metrics), kept in Redis and invalidated by new
 * events through a generation counter (api_cache.c has the design).
 *   api_cache_lookup  -> HIT (body filled), MISS (compute, then api_cache_store), or BYPASS
 *                        (Redis unavailable: compute and answer uncached)
 * Freshness bound: a cached response never hides an event for longer than cache_invalidate_ms
 * (plus one Redis round trip); with no new events an entry lives cache_ttl_s.
 * Thread-safe: lookups and stores from any HTTP worker; one background thread invalidates. */
#ifndef AETHERIS_API_CACHE_H
#define AETHERIS_API_CACHE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include "config.h"
#include "rpool.h"

#define API_CACHE_KEY_MAX 512

struct api_cache;

enum api_cache_result { API_CACHE_HIT, API_CACHE_MISS, API_CACHE_BYPASS };

struct api_cache_ticket { /* from a MISS: where api_cache_store puts the computed body */
    char key[API_CACHE_KEY_MAX];
    char local[API_CACHE_KEY_MAX];  /* the in-process copy's name: route and variant */
    unsigned long long invalidated; /* invalidations seen before the lookup */
};

/* Creates the cache over the API's Redis pool (borrowed, must outlive it) and starts the
 * invalidation thread; NULL when the thread cannot be created. */
struct api_cache *api_cache_new(const struct config *cfg, struct rpool *redis);
/* Stops the thread and frees. NULL is a no-op. */
void api_cache_free(struct api_cache *c);
/* Looks up the response of `name` (a route name) for `variant` (its canonical query string, ""
 * for none). HIT: *body (malloc'd, caller frees) and *len are set. MISS: *ticket says where to
 * store the fresh response. BYPASS: Redis could not be asked. */
enum api_cache_result api_cache_lookup(struct api_cache *c, const char *name, const char *variant,
                                       char **body, size_t *len, struct api_cache_ticket *ticket);
/* Stores a computed response under a MISS ticket, for cache_ttl_s; failures are ignored (the
 * next lookup misses again). */
void api_cache_store(struct api_cache *c, const struct api_cache_ticket *ticket, const char *body,
                     size_t len);
/* "HIT", "MISS" or "BYPASS": the X-Cache header value. */
const char *api_cache_result_name(enum api_cache_result r);
/* False when the last lookup, store or invalidation could not reach Redis, or an invalidation
 * is still owed to it (lookups BYPASS meanwhile). */
bool api_cache_up(const struct api_cache *c);
/* Invalidations sent to Redis since start (each one INCR of the generation). */
unsigned long long api_cache_invalidations(const struct api_cache *c);

#endif
