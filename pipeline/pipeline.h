/* The whole pipeline inside the daemon, as one object with a start/stop life cycle:
 *   MQTT subscriber -> router (validate, dedupe, journal, shard) -> edge workers (z-score)
 *   -> sink (exceptions to MQTT + Redis streams, rows to the store, snapshots)
 *   -> decider (stream consumer group, three agents, 2/3 vote, commands, XACK).
 * Threads talk only through bounded queues. Thread-safe: pipeline_submit, pipeline_health and
 * pipeline_account may be called from any thread (HTTP workers) while it runs. */
#ifndef AETHERIS_PIPELINE_H
#define AETHERIS_PIPELINE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "store.h"

struct pipeline;

struct pipeline_health {
    bool mqtt_up;    /* subscriber connected and subscribed */
    bool redis_up;   /* last Redis call of the sink/decider succeeded */
    bool store_up;   /* store answers */
    size_t queued;   /* batches (<= 32 events each) waiting between pipeline stages */
    size_t accounts; /* accounts tracked by the edge */
};

struct submit_counts { /* outcome of one payload */
    int accepted;
    int duplicates;
    int invalid;
};

/* Builds every component (nothing is started; no network yet). The store is borrowed and must
 * outlive the pipeline. NULL on error with err filled. */
struct pipeline *pipeline_new(const struct config *cfg, struct store *store, char *err,
                              size_t errlen);
/* Restores the edge snapshot, replays the journal, starts all threads and connects to the broker
 * and Redis in the background. 0 or a negative enum err (err filled). */
int pipeline_start(struct pipeline *p, char *err, size_t errlen);
/* Stops ingest, drains every queue (bounded by drain_timeout_ms), writes a final snapshot, joins
 * the threads. Idempotent. */
void pipeline_stop(struct pipeline *p);
void pipeline_free(struct pipeline *p); /* stops first if needed; NULL is a no-op */
/* Ingests one payload (object or array) exactly as if it came over MQTT from `source`
 * ("http"); fills counts. 0, or ERR_CLOSED when the pipeline is stopping. */
int pipeline_submit(struct pipeline *p, const char *payload, size_t len, const char *source,
                    struct submit_counts *counts);
void pipeline_health(struct pipeline *p, struct pipeline_health *out);

#endif
