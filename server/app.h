/* The daemon's shared context handed to every HTTP handler: configuration, store, pipeline, the
 * API's Redis pool, cache, auth and rate limiter, and start time. Everything here is borrowed by
 * handlers and outlives the HTTP server. */
#ifndef AETHERIS_APP_H
#define AETHERIS_APP_H
#include "fmacros.h"
#include <stdint.h>
#include "config.h"
#include "pipeline.h"
#include "store.h"

struct rpool;
struct api_cache;
struct auth;
struct ratelimit;
struct stream_hub;
struct webhooks;

struct app {
    const struct config *cfg;
    struct store *store;
    struct pipeline *pipeline;
    struct rpool *redis;        /* Redis connections of the HTTP workers (rpool.h) */
    struct api_cache *cache;    /* response cache (api_cache.h) */
    struct auth *auth;          /* API keys and the failure throttle (auth.h) */
    struct ratelimit *limiter;  /* per-key rate limit (ratelimit.h) */
    struct stream_hub *streams; /* GET /v1/stream clients (stream.h) */
    struct webhooks *webhooks;  /* subscriptions and their dispatcher (webhooks.h) */
    int64_t started_ms;         /* wall clock at start, for uptime */
};

#endif
