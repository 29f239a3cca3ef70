/* Per-client rate limit (DESIGN.md 4): a token bucket per API key (per client address when
 * auth is disabled) of rate_limit_burst tokens refilled at rate_limit_rps. The bucket lives in
 * Redis (hash <prefix>ratelimit:<bucket>), updated atomically by one Lua script that reads
 * Redis's own clock, so every daemon sharing the Redis enforces one limit. While Redis cannot
 * be asked, an in-process table of buckets (same parameters, this daemon only) takes over: the
 * limit never fails open and never refuses everything. rate_limit_rps = 0 disables limiting.
 * Thread-safe. */
#ifndef AETHERIS_RATELIMIT_H
#define AETHERIS_RATELIMIT_H
#include "fmacros.h"
#include <stdbool.h>
#include "config.h"
#include "rpool.h"

struct ratelimit;

struct ratelimit_result {
    bool allowed;
    long limit;         /* RateLimit-Limit: the burst */
    long remaining;     /* RateLimit-Remaining: whole tokens left */
    long reset_s;       /* RateLimit-Reset: seconds until the bucket is full again (refused:
                           until the next token) */
    long retry_after_s; /* Retry-After when refused, >= 1 */
    bool local;         /* decided by the in-process fallback */
};

/* redis (borrowed, must outlive it) may be NULL: local buckets only. */
struct ratelimit *ratelimit_new(const struct config *cfg, struct rpool *redis);
void ratelimit_free(struct ratelimit *rl); /* NULL is a no-op */
/* False when limiting is disabled (rate_limit_rps = 0). */
bool ratelimit_enabled(const struct ratelimit *rl);
/* Takes one token from `bucket` (a key name or "ip:<address>"). With limiting disabled it
 * allows everything and fills nothing else (no headers are due). */
void ratelimit_take(struct ratelimit *rl, const char *bucket, struct ratelimit_result *out);
/* False once Redis failed a decision (the local fallback is in use), true again after Redis
 * decides one; a busy pool (a request decided locally for want of a free connection) leaves it
 * unchanged. */
bool ratelimit_redis_in_use(const struct ratelimit *rl);

#endif
