/* The decider: the agent tier. One thread reads the two priority streams as a member of the
 * consumer group (immediate lane first; each lane batched by size and max wait), has the three
 * agents vote on each exception, stores the decision (first decision wins), sets the kill-switch
 * lock on BLOCK, publishes the command (QoS 1, acknowledged) and only then XACKs. An entry whose
 * decision already exists is not decided again: the stored command is republished. Entries left
 * pending by a dead consumer (or by a failed attempt here) are reclaimed with XAUTOCLAIM, and
 * moved to the dead-letter stream after max_deliveries. Thread-safety: decider_redis_up() may be
 * called from any thread; the rest belongs to the pipeline's control thread. */
#ifndef AETHERIS_DECIDE_H
#define AETHERIS_DECIDE_H
#include "fmacros.h"
#include <stdbool.h>
#include "config.h"
#include "llm.h"
#include "store.h"

struct decider;
struct feed;
struct outbox;

/* The decider over store (borrowed); each new decision is announced on feed (borrowed; may be
 * NULL) once its command is published, and its webhook deliveries for the subscriptions of
 * outbox (borrowed; may be NULL) are stored with it. Replays of stored decisions are neither
 * announced nor enqueued again. */
struct decider *decider_new(const struct config *cfg, struct store *store, struct feed *feed,
                            struct outbox *outbox);
/* Starts the thread (it connects in the background): 0 or ERR_INTERNAL. */
int decider_start(struct decider *d);
/* Asks the thread to finish its current batch and exit, then waits for it. Idempotent. */
void decider_stop(struct decider *d);
void decider_free(struct decider *d); /* NULL no-op; stops first */
/* Whether the last Redis call succeeded. */
/* The LLM backend's state (LLM_DISABLED with agent_backend=rules); any thread. */
enum llm_state decider_llm_state(const struct decider *d);
bool decider_redis_up(const struct decider *d);
/* Whether the command publisher is connected to the broker. */
bool decider_mqtt_up(const struct decider *d);

#endif
