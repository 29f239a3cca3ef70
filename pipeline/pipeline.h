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
    bool mqtt_up;              /* subscriber connected and subscribed */
    bool redis_up;             /* last Redis call of the sink/decider succeeded */
    bool store_up;             /* store answers and the pipeline's writes succeed */
    size_t queued;             /* batches (<= 32 events each) waiting between pipeline stages */
    size_t accounts;           /* accounts tracked by the edge */
    int llm;                   /* enum llm_state: disabled, up, or degraded (breaker open) */
    bool cluster;              /* cluster mode (cluster_partitions > 0) */
    uint32_t partitions_owned; /* cluster mode: partitions consumed here now */
};

#define SUBMIT_ERRORS_MAX 10 /* rejected items described per payload; the rest are counted */

struct submit_error { /* why one item of a payload was refused */
    int index;        /* position in the array (0 for a single object or an unparsed payload) */
    char reason[32];  /* event_invalid_name(): "bad_json", "amount", ... */
    char detail[128]; /* human text naming the field ("amount must be a finite number >= 0") */
};

struct submit_counts { /* outcome of one payload */
    int accepted;
    int duplicates;
    int invalid;
    int nerrors; /* errors[] filled, <= SUBMIT_ERRORS_MAX */
    struct submit_error errors[SUBMIT_ERRORS_MAX];
};

/* Builds every component (nothing is started; no network yet). The store is borrowed and must
 * outlive the pipeline. With cluster_partitions > 0 the pipeline consumes the partitions this
 * instance holds (cluster.h) instead of mqtt_topic. NULL on error with err filled. */
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
 * ("http"); fills counts. In cluster mode the events of partitions consumed by another instance
 * are republished on their partition's topic and awaited (counted as accepted). 0, ERR_CLOSED
 * when the pipeline is stopping, or ERR_CONN when forwarding failed (submit again: the owner
 * drops what it already has). */
int pipeline_submit(struct pipeline *p, const char *payload, size_t len, const char *source,
                    struct submit_counts *counts);
void pipeline_health(struct pipeline *p, struct pipeline_health *out);

struct pipeline_account { /* one account's window as the edge holds it now */
    uint32_t n;           /* amounts in the window */
    uint32_t window;      /* capacity W */
    double mean, std;     /* exact two-pass population statistics of the window */
    double last_z;        /* z of the account's latest scored amount */
};

/* Reads an account's window from its edge worker (under the worker's shard lock, which the
 * worker holds per batch: the view is consistent with a batch boundary). 0, ERR_NOTFOUND when
 * this node has not seen the account (in cluster mode also when its partition is consumed
 * elsewhere), ERR_INVAL for an empty or over-long account. */
int pipeline_account(struct pipeline *p, const char *account, struct pipeline_account *out);
/* The live feed of anomalies and decisions (feed.h); borrowed, lives as long as p. */
struct feed *pipeline_feed(struct pipeline *p);
/* The webhook fan-out (outbox.h) the sink and decider enqueue deliveries through; borrowed,
 * lives as long as p. */
struct outbox *pipeline_outbox(struct pipeline *p);

/* The cluster member (cluster.h) in cluster mode, NULL for a single instance; borrowed, lives as
 * long as p. */
struct cluster *pipeline_cluster(struct pipeline *p);

#endif
