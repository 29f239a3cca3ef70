/* Persistence interface (DESIGN.md 3.7): transactions (history for the Auditor), exceptions,
 * decisions (first decision wins), tool audit, dead letters, and the webhook tables:
 * subscriptions, the durable delivery outbox and the attempt records. Rows carry their key columns
 * plus the full JSON document, so a document store (MongoDB) and SQLite implement the same
 * contract. Backend: SQLite (store_sqlite.c, WAL mode) implements these functions; the MongoDB
 * backend of a later release will sit behind the same functions, selected by mongodb_uri.
 * Thread-safe: every function may be called from any thread (the backend serializes writes and
 * keeps per-thread or pooled read connections). Strings in rows are borrowed for the call. */
#ifndef AETHERIS_STORE_H
#define AETHERIS_STORE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "buf.h"
#include "config.h"

#define STORE_CURSOR_MAX 64

struct store;

struct store_txn { /* one transaction seen by the edge */
    uint64_t txid;
    const char *account;
    double amount;
    int64_t ingested_ms;
    const char *json; /* the event as JSON (original camelCase fields) */
};

struct store_outbox { /* one webhook delivery to make (DESIGN.md 5) */
    const char *webhook_id;
    const char *msg_id;     /* the webhook-id header: stable across retries */
    const char *event_type; /* "anomaly.detected" | "decision.created" | "webhook.test" */
    const char *payload;    /* the request body */
    int64_t created_ms;     /* also when the first attempt is due */
};

struct store_exception { /* one anomaly */
    uint64_t txid;
    const char *account;
    const char *priority; /* "immediate" | "batch" */
    double suspicion;
    double z;
    int64_t detected_ms;
    const char *json;                  /* the exception payload of DESIGN.md 3.3 */
    const struct store_outbox *outbox; /* webhook deliveries it causes (may be NULL) */
    size_t noutbox;
};

struct store_decision { /* one consensus decision */
    uint64_t txid;
    const char *account;
    const char *action; /* APPROVE | REVIEW | BLOCK */
    int64_t decided_ms;
    const char *json;                  /* the command payload of DESIGN.md 3.6 plus latencies */
    const struct store_outbox *outbox; /* webhook deliveries it causes (may be NULL) */
    size_t noutbox;
};

struct store_webhook { /* one webhook subscription */
    const char *id;
    int64_t created_ms;
    bool enabled;
    const char *json; /* the whole subscription document, secrets included */
};

#define STORE_ID_MAX 64         /* bytes of a webhook id or message id, NUL included */
#define STORE_EVENT_TYPE_MAX 32 /* bytes of an event type, NUL included */
#define STORE_ATTEMPT_ERROR_MAX 256

struct store_claim { /* one outbox row handed to the dispatcher for an attempt */
    int64_t id;
    char webhook_id[STORE_ID_MAX];
    char msg_id[STORE_ID_MAX];
    char event_type[STORE_EVENT_TYPE_MAX];
    char *payload; /* malloc'd, NUL-terminated; freed by store_claims_free */
    size_t payload_len;
    int attempt; /* 1 for the first attempt */
    int64_t created_ms;
};

struct store_attempt { /* the outcome of one delivery attempt */
    int64_t outbox_id;
    const char *webhook_id;
    const char *msg_id;
    const char *event_type;
    int attempt;
    int64_t ts_ms;   /* when the attempt started (wall clock) */
    int status_code; /* HTTP status, 0 when none came back */
    double latency_ms;
    const char *outcome; /* "delivered" | "retry" | "exhausted" | "gone" | "dropped" */
    const char *error;   /* "" when none */
    int64_t retry_at_ms; /* outcome "retry": when the next attempt is due; else the row goes */
};

struct store_audit { /* one agent tool call */
    uint64_t txid;
    const char *account;
    const char *tool; /* e.g. "history_lookup" */
    int64_t ts_ms;
    const char *json;
};

struct store_deadletter { /* one rejected input or failed decision */
    const char *source;   /* "mqtt" | "http" | "decision" */
    const char *reason;
    int64_t ts_ms;
    const char *payload; /* truncated by the caller; need not be NUL-terminated */
    size_t payload_len;
};

struct store_history { /* the Auditor's evidence: the account's stored transactions */
    int64_t count;     /* rows considered (the newest max_rows) */
    double mean;       /* mean amount of those rows; 0 when count is 0 */
    double max;        /* largest amount of those rows */
};

struct store_query { /* list filters; zero/NULL members are "no filter" */
    const char *account;
    const char *kind;       /* decisions: action; exceptions: priority */
    int64_t since_ms;       /* inclusive; 0 = none */
    int64_t until_ms;       /* exclusive; 0 = none */
    const char *cursor;     /* from a previous page's next_cursor; NULL = first page */
    int limit;              /* 1..page max, enforced by the caller */
    const char *webhook_id; /* deliveries: the subscription whose attempts are listed */
};

/* Opens the backend the config selects (SQLite path, or MongoDB when mongodb_uri is set),
 * creating tables and indexes. NULL on failure with err filled. */
struct store *store_open(const struct config *cfg, char *err, size_t errlen);
void store_free(struct store *s); /* NULL is a no-op */
/* "sqlite" or "mongodb". */
const char *store_backend_name(const struct store *s);
/* 0 when the store answers, else ERR_CONN / ERR_IO. */
int store_ping(struct store *s);

/* Writers: each call is one write transaction (one bulk write). Idempotent on transactionId
 * (a row already present is left as it is). The outbox rows of an exception or decision are
 * enqueued in the same transaction, and only when that row is new: a replayed event enqueues
 * nothing twice, and a crash cannot separate a row from its deliveries. 0 or ERR_IO. */
int store_put_transactions(struct store *s, const struct store_txn *rows, size_t n);
int store_put_exceptions(struct store *s, const struct store_exception *rows, size_t n);
struct store_ingest { /* what one flush of the ingest path writes */
    const struct store_txn *txn;
    size_t ntxn;
    const struct store_exception *exc;
    size_t nexc;
    const struct store_deadletter *dl;
    size_t ndl;
    int dl_keep; /* the dead-letter table is trimmed to its newest dl_keep rows */
};
/* The transactions, exceptions (with their outbox rows) and dead letters of one sink flush in
 * one write transaction (SQLite: one commit, all or none; MongoDB: the three bulk writes in
 * turn, each idempotent, so retrying the whole call after a failure completes it). Any count may
 * be 0. 0, ERR_INVAL or ERR_IO. */
int store_put_ingest(struct store *s, const struct store_ingest *in);
/* A batch's decisions and the tool audit rows of the calls that led to them (naudit may be 0)
 * in one write transaction: both or neither (MongoDB, without multi-document transactions: the
 * audit insert, then the decisions' bulk, so a failure can leave the audit rows alone). First
 * decision wins: inserted[i] is set true where row i was new, false where a decision for that
 * transactionId already existed (and is kept). inserted may be NULL. 0 or ERR_IO (every
 * inserted[i] false). */
int store_put_decisions(struct store *s, const struct store_decision *rows, size_t n,
                        const struct store_audit *audit, size_t naudit, bool *inserted);
int store_put_audit(struct store *s, const struct store_audit *rows, size_t n);
/* Appends dead letters and trims the table to the newest `keep` rows. */
int store_put_deadletters(struct store *s, const struct store_deadletter *rows, size_t n, int keep);

/* Readers. Documents are new references the caller owns. ERR_NOTFOUND when absent. */
int store_get_decision(struct store *s, uint64_t txid, json_t **doc);
int store_get_exception(struct store *s, uint64_t txid, json_t **doc);
/* Newest first, stable under concurrent inserts: *items is a new JSON array; next_cursor is
 * filled ("" when this is the last page). ERR_INVAL for a malformed cursor. */
int store_list_decisions(struct store *s, const struct store_query *q, json_t **items,
                         char next_cursor[STORE_CURSOR_MAX]);
int store_list_exceptions(struct store *s, const struct store_query *q, json_t **items,
                          char next_cursor[STORE_CURSOR_MAX]);
/* The same pages as text: the items as one JSON array appended to out, built from the stored
 * documents as they are (no parse and re-serialization where the backend keeps JSON text, as
 * SQLite does). Same errors; out holds nothing new on failure. */
int store_list_decisions_text(struct store *s, const struct store_query *q, struct buf *out,
                              char next_cursor[STORE_CURSOR_MAX]);
int store_list_exceptions_text(struct store *s, const struct store_query *q, struct buf *out,
                               char next_cursor[STORE_CURSOR_MAX]);
/* Dead letters, newest first; only q->limit and q->cursor apply. */
int store_list_deadletters(struct store *s, const struct store_query *q, json_t **items,
                           char next_cursor[STORE_CURSOR_MAX]);
/* Statistics over the account's newest max_rows stored transactions, without *exclude_txid when
 * it is not NULL (the transaction being judged must not count towards its own history). */
int store_account_history(struct store *s, const char *account, const uint64_t *exclude_txid,
                          int max_rows, struct store_history *out);
/* Row counts for tests, metrics and /v1/health: table is "transactions", "exceptions",
 * "decisions", "tool_audit", "dead_letters", "webhooks", "webhook_outbox" or
 * "webhook_deliveries". Returns the count (>= 0) or a negative enum err. */
int64_t store_count(struct store *s, const char *table);

/* Webhook subscriptions. Insert: ERR_FULL when `max` subscriptions exist already, ERR_EXISTS for
 * a taken id. Update replaces the document and enabled flag: ERR_NOTFOUND when absent; when
 * the subscription is (or stays) disabled its pending outbox rows are deleted in the same
 * transaction, *dropped (may be NULL) receiving how many. Delete removes the subscription, its
 * outbox rows and its attempt records (ERR_NOTFOUND when absent). */
int store_webhook_insert(struct store *s, const struct store_webhook *w, int max);
int store_webhook_update(struct store *s, const struct store_webhook *w, int64_t *dropped);
int store_webhook_delete(struct store *s, const char *id, int64_t *dropped);
int store_webhook_get(struct store *s, const char *id, json_t **doc);
/* Every subscription document, oldest first, as a new array. */
int store_webhook_list(struct store *s, json_t **items);

/* Enqueues deliveries on their own (test events); a (webhook_id, msg_id) pair already queued
 * is left as it is. 0 or ERR_IO. */
int store_outbox_put(struct store *s, const struct store_outbox *rows, size_t n);
/* Claims up to max (>= 1) due rows of enabled subscriptions, oldest due first: each gets its
 * attempt counted and is hidden from further claims until lease_until_ms (when a crash lost the
 * attempt, the row comes back then). Fills out[0..*n). Free with store_claims_free. */
int store_outbox_claim(struct store *s, int64_t now_ms, int64_t lease_until_ms, int max,
                       struct store_claim *out, int *n);
void store_claims_free(struct store_claim *c, int n);
/* Records an attempt and settles its outbox row in one transaction: outcome "retry" makes the
 * row due at retry_at_ms, any other outcome deletes it. Keeps the newest `keep` attempt
 * records (a backend may trim in steps, keeping up to a few hundred more meanwhile). ERR_NOTFOUND
 * (nothing recorded) when the row is gone (its subscription was deleted or disabled meanwhile). */
int store_outbox_finish(struct store *s, const struct store_attempt *a, int keep);
/* Gives a claimed row back uncounted, due at due_ms (an attempt abandoned at shutdown). */
int store_outbox_release(struct store *s, int64_t outbox_id, int64_t due_ms);
/* The earliest due time of a row of an enabled subscription; ERR_NOTFOUND when none. */
int store_outbox_next_due(struct store *s, int64_t *due_ms);
/* One subscription's attempt records, newest first (q->webhook_id required; q->limit and
 * q->cursor apply): {id, msg_id, event_type, attempt, ts_ms, status_code, latency_ms, outcome,
 * error}. */
int store_list_deliveries(struct store *s, const struct store_query *q, json_t **items,
                          char next_cursor[STORE_CURSOR_MAX]);

#endif
