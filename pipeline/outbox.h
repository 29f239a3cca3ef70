/* Webhook fan-out (DESIGN.md 5): the enabled subscriptions the pipeline matches each new anomaly
 * and decision against, and the outbox rows it builds for the matches. The rows go to the store
 * with the exception or decision that caused them, in the same transaction (store.h), so a
 * delivery is enqueued exactly when its row is new. The dispatcher (server/webhooks.c) loads the
 * subscriptions with outbox_set() and registers a waker the pipeline calls after a write that
 * enqueued something, so deliveries start without waiting for a poll.
 * A delivery's body is Standard Webhooks' envelope {"type","timestamp","data"}, and its
 * webhook-id is derived from the event ("msg_anomaly_<txid>", "msg_decision_<txid>"), so the
 * same event keeps the same id across replays and receivers can deduplicate on it.
 * Thread-safe: outbox_match runs on the sink and decider threads while outbox_set runs on HTTP
 * workers (a read-write lock; matching holds it for a copy of a few ids). */
#ifndef AETHERIS_OUTBOX_H
#define AETHERIS_OUTBOX_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>
#include "store.h"

struct outbox;

enum outbox_event_type { OUTBOX_ANOMALY = 1u << 0, OUTBOX_DECISION = 1u << 1 };
enum outbox_action { OUTBOX_APPROVE = 1u << 0, OUTBOX_REVIEW = 1u << 1, OUTBOX_BLOCK = 1u << 2 };

struct outbox_sub { /* one enabled subscription, as matching needs it */
    char id[STORE_ID_MAX];
    unsigned events;  /* OUTBOX_ANOMALY | OUTBOX_DECISION bits it wants */
    unsigned actions; /* OUTBOX_* action bits for decisions; 0 = every action */
};

struct outbox_event { /* the deliveries of one event; owned, freed with outbox_event_free */
    char msg_id[STORE_ID_MAX];
    char *body;                /* NULL when nothing matched */
    struct store_outbox *rows; /* nrows rows pointing into this struct */
    char (*ids)[STORE_ID_MAX]; /* the rows' webhook ids */
    size_t nrows;
};

struct outbox *outbox_new(void);
void outbox_free(struct outbox *o); /* NULL is a no-op */
/* Replaces the set of enabled subscriptions (copied). */
void outbox_set(struct outbox *o, const struct outbox_sub *subs, size_t n);
/* Subscriptions currently matched against. */
size_t outbox_count(struct outbox *o);
/* Registers the function outbox_wake calls (the dispatcher's wake-up); NULL unregisters. */
void outbox_set_waker(struct outbox *o, void (*wake)(void *arg), void *arg);
/* Tells the dispatcher that rows were enqueued. */
void outbox_wake(struct outbox *o);

/* Builds the deliveries of one event: type OUTBOX_ANOMALY (action NULL) or OUTBOX_DECISION
 * (action "APPROVE" | "REVIEW" | "BLOCK"), the transaction id, the event time, and its JSON
 * document (the exception or decision payload) of doc_len bytes. ev->nrows is 0 and nothing is
 * allocated when no subscription wants it. */
void outbox_match(struct outbox *o, enum outbox_event_type type, const char *action, uint64_t txid,
                  int64_t ts_ms, const char *doc, size_t doc_len, struct outbox_event *ev);
void outbox_event_free(struct outbox_event *ev); /* leaves ev empty; safe to call twice */

/* "anomaly.detected" / "decision.created". */
const char *outbox_type_name(enum outbox_event_type type);
/* The action bit of "APPROVE" | "REVIEW" | "BLOCK"; 0 for anything else. */
unsigned outbox_action_bit(const char *action);
/* Writes an RFC 3339 UTC time with milliseconds ("2026-11-22T18:37:32.123Z"). */
void outbox_rfc3339(int64_t ms, char out[32]);

#endif
