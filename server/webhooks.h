/* Webhook subscriptions and their dispatcher (DESIGN.md 5).
 *
 * Subscriptions live in the store as documents {id, url, description, event_types, actions,
 * enabled, disabled_reason, failing_since_ms, secret, previous_secret,
 * previous_secret_expires_ms, created_ms, updated_ms}. Every change goes through
 * webhooks_modify() (one mutex around get -> change -> put), so an API PATCH and the
 * dispatcher's own bookkeeping (failure streaks, disabling) never overwrite each other, and each
 * change reloads the in-memory view: the pipeline's fan-out (outbox.h) and the dispatcher's table
 * of URLs and signing keys.
 *
 * The dispatcher is one thread driving a libcurl multi handle. It claims due outbox rows (at
 * most webhook_max_inflight in flight: the memory bound however slow or dead the receivers
 * are), signs each attempt (webhook-id stable, webhook-timestamp per attempt, one signature per
 * valid secret), and settles it: 2xx delivered; 410 disables the subscription; anything else
 * (3xx included: redirects are never followed) is retried after the configured schedule with
 * jitter, or after Retry-After on 429/5xx when that is longer, until the schedule runs out
 * ("exhausted"). A subscription failing continuously for webhook_disable_after_s is disabled.
 * Only http and https are spoken, proxies from the environment are ignored, and the address
 * libcurl is about to connect to passes the SSRF guard (ssrf.h) first, so DNS rebinding gains
 * nothing. The pipeline's waker (outbox_wake) interrupts the poll, so a new delivery starts at
 * once; otherwise the thread sleeps until the next due row (at most a second).
 * Thread-safety: every function may be called from any thread. */
#ifndef AETHERIS_WEBHOOKS_H
#define AETHERIS_WEBHOOKS_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "config.h"
#include "ssrf.h"
#include "store.h"

#define WEBHOOK_ID_PREFIX "wh_"
#define WEBHOOK_EVENT_TEST "webhook.test"

struct webhooks;
struct outbox;

struct webhooks_health {
    bool running;   /* the dispatcher thread is alive */
    int inflight;   /* attempts in flight */
    int64_t outbox; /* rows waiting (last count; -1 when the store did not answer) */
    int enabled;    /* subscriptions */
    int disabled;
};

/* Parses the allow-list and retry schedule, loads the subscriptions into outbox (borrowed, as
 * are cfg and store; all outlive the result) and starts the dispatcher. NULL with err filled
 * when the configuration is unusable or the thread cannot start. */
struct webhooks *webhooks_new(const struct config *cfg, struct store *store, struct outbox *outbox,
                              char *err, size_t errlen);
/* Stops claiming, lets attempts in flight finish for up to min(drain_timeout_ms,
 * webhook_timeout_ms), gives the others back to the outbox uncounted, joins. NULL is a no-op. */
void webhooks_free(struct webhooks *w);

/* The SSRF allow-list of the configuration (borrowed). */
const struct ssrf_allow *webhooks_allow(const struct webhooks *w);

/* A change to one subscription document: edits doc in place; returns 0 to store it, or a
 * negative enum err to leave it as it was. */
typedef int (*webhooks_change_fn)(json_t *doc, void *arg);
/* Reads subscription id, applies change, writes it back and reloads, all under the
 * subscriptions mutex. 0, ERR_NOTFOUND, the change's error, or ERR_IO. */
int webhooks_modify(struct webhooks *w, const char *id, webhooks_change_fn change, void *arg);
/* Stores a new subscription document (its "id", "created_ms" and "enabled" members are used)
 * and reloads. 0, ERR_FULL at webhook_max_subscriptions, ERR_EXISTS, or ERR_IO. */
int webhooks_create(struct webhooks *w, json_t *doc);
/* Deletes a subscription with its pending deliveries and attempt records, and reloads. */
int webhooks_delete(struct webhooks *w, const char *id);
/* Rereads every subscription from the store into the fan-out and the dispatcher. */
int webhooks_reload(struct webhooks *w);
/* Enqueues a "webhook.test" delivery to subscription id; msg_id (STORE_ID_MAX) receives its
 * webhook-id. 0, ERR_NOTFOUND, ERR_CLOSED when the subscription is disabled, or ERR_IO. */
int webhooks_send_test(struct webhooks *w, const char *id, char msg_id[STORE_ID_MAX]);
void webhooks_health(struct webhooks *w, struct webhooks_health *out);

/* The subscription as the API shows it: the document without its secrets. New reference. */
json_t *webhooks_public_view(const json_t *doc);
/* The delay (ms) before the retry that follows failed attempt number `attempt` (1-based):
 * schedule[attempt - 1] scaled by a factor drawn from [1 - jitter, 1 + jitter] (u in [0, 1) is
 * the draw), or -1 when the schedule has no more retries. */
int64_t webhooks_retry_delay_ms(const int *schedule, int nschedule, double jitter, int attempt,
                                double u);

#endif
