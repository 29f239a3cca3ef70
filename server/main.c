/* aetherisd: the Aetheris daemon. Loads the configuration, opens the store, runs the start-up
 * checks, starts the pipeline and the HTTP API, then waits for SIGTERM/SIGINT and shuts down in
 * pipeline order (API first, then the pipeline drains, then the store closes).
 * Signals are blocked in every thread and taken synchronously here with sigwait(), so no handler
 * ever runs inside library code. */
#include "fmacros.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <jansson.h>
#include "app.h"
#include "clock.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "pipeline.h"
#include "api_cache.h"
#include "auth.h"
#include "preflight.h"
#include "ratelimit.h"
#include "stream.h"
#include "rpool.h"
#include "store.h"
#include "webhooks.h"

/* Blocks the signals we wait for (inherited by every thread created later); ignores SIGPIPE,
 * and SIGXFSZ: a write past the file-size limit (RLIMIT_FSIZE) must fail with EFBIG, which the
 * journal, the snapshot and the store handle like a full disk, instead of killing the daemon. */
static void setup_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
}

static void log_config(const struct config *cfg)
{
    char *dump = config_dump_redacted(cfg);
    log_json(LOG_INFO, "config.loaded", dump);
    free(dump);
}

int main(int argc, char **argv)
{
    struct config cfg;
    bool check_only = false;
    char err[512];
    enum config_result cr = config_load(&cfg, argc, argv, &check_only, err, sizeof err);
    if (cr == CONFIG_EXIT_0)
        return 0;
    if (cr == CONFIG_ERROR) {
        fprintf(stderr, "aetherisd: configuration error: %s\n(see aetherisd --help)\n", err);
        return 2;
    }
    log_init((enum log_level)log_level_parse(cfg.log_level), cfg.node_id);
    if (check_only) {
        char *dump = config_dump_redacted(&cfg);
        printf("configuration OK\n%s\n", dump);
        free(dump);
        return 0;
    }
    /* Keys are configuration: a bad or missing one is refused before anything starts. */
    struct auth *auth = auth_new(&cfg, err, sizeof err);
    if (auth == NULL) {
        fprintf(stderr, "aetherisd: configuration error: %s\n", err);
        return 2;
    }
    sigset_t sigs;
    setup_signals(&sigs);
    json_object_seed(0);
    log_info("aetherisd.starting", "aetherisd %s starting", AETHERIS_VERSION);
    log_config(&cfg);
    if (auth_enabled(auth))
        log_info("auth.keys", "%zu API key(s) loaded", auth_key_count(auth));
    else
        log_warn("auth.disabled",
                 "auth_disabled is set: the API is open to anyone who can reach "
                 "%s:%d (local use only)",
                 cfg.http_host, cfg.http_port);

    int rc = 1;
    struct store *store = NULL;
    struct pipeline *pipeline = NULL;
    struct http_server *http = NULL;
    struct rpool *redis = NULL;
    struct api_cache *cache = NULL;
    struct ratelimit *limiter = NULL;
    struct stream_hub *streams = NULL;
    struct webhooks *webhooks = NULL;
    if (preflight_mkdirs(cfg.data_dir, err, sizeof err) != 0)
        goto out;
    store = store_open(&cfg, err, sizeof err);
    if (store == NULL)
        goto out;
    if (preflight_check(&cfg, store, err, sizeof err) != 0) {
        if (cfg.fail_fast_healthcheck)
            goto out;
        log_warn("aetherisd.degraded", "starting degraded: %s (retrying in the background)", err);
    }
    pipeline = pipeline_new(&cfg, store, err, sizeof err);
    if (pipeline == NULL)
        goto out;
    /* The webhook subscriptions are loaded into the pipeline's outbox before it starts: the
     * journal replay and the messages the broker kept for the session (delivered the moment the
     * subscriber connects) would otherwise be matched against no subscription. */
    webhooks = webhooks_new(&cfg, store, pipeline_outbox(pipeline), err, sizeof err);
    if (webhooks == NULL || pipeline_start(pipeline, err, sizeof err) != 0)
        goto out;
    redis =
        rpool_new(cfg.redis_url, cfg.redis_timeout_ms, cfg.api_redis_connections, err, sizeof err);
    if (redis == NULL)
        goto out;
    cache = api_cache_new(&cfg, redis);
    if (cache == NULL) {
        snprintf(err, sizeof err, "cannot start the response cache thread");
        goto out;
    }
    limiter = ratelimit_new(&cfg, redis);
    streams = stream_hub_new(&cfg, pipeline_feed(pipeline));
    if (streams == NULL) {
        snprintf(err, sizeof err, "cannot start the event-stream thread");
        goto out;
    }
    struct app app = {
        .cfg = &cfg,
        .store = store,
        .pipeline = pipeline,
        .redis = redis,
        .cache = cache,
        .auth = auth,
        .limiter = limiter,
        .streams = streams,
        .webhooks = webhooks,
        .started_ms = clock_wall_ms(),
    };
    http = http_start(&app, err, sizeof err);
    if (http == NULL)
        goto out;
    log_info("aetherisd.started", "serving the API on http://%s:%d", cfg.http_host,
             http_port(http));

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("aetherisd.stopping", "signal %d: draining", sig);
    rc = 0;
out:
    if (rc != 0) {
        log_error("aetherisd.start_failed", "%s", err);
        fprintf(stderr, "aetherisd: %s\n", err);
    }
    http_stop(http);
    stream_hub_free(streams); /* after the HTTP server released every stream */
    webhooks_free(webhooks);  /* before the pipeline frees the fan-out it wakes us through */
    pipeline_free(pipeline);
    api_cache_free(cache);
    ratelimit_free(limiter);
    auth_free(auth);
    rpool_free(redis);
    store_free(store);
    if (rc == 0)
        log_info("aetherisd.stopped", "clean shutdown");
    return rc;
}
