/* Persistence interface (DESIGN.md 3.7): transactions (history for the Auditor), exceptions,
 * decisions (first decision wins), tool audit, dead letters. Rows carry their key columns plus the
 * full JSON document, so a document store (MongoDB) and SQLite implement the same contract.
 * Backend: SQLite (store_sqlite.c, WAL mode) implements these functions; the MongoDB backend of a
 * later release will sit behind the same functions, selected by mongodb_uri.
 * Thread-safe: every function may be called from any thread (the backend serializes writes and
 * keeps per-thread or pooled read connections). Strings in rows are borrowed for the call. */
#ifndef AETHERIS_STORE_H
#define AETHERIS_STORE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
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

struct store_exception { /* one anomaly */
    uint64_t txid;
    const char *account;
    const char *priority; /* "immediate" | "batch" */
    double suspicion;
    double z;
    int64_t detected_ms;
    const char *json; /* the exception payload of DESIGN.md 3.3 */
};

struct store_decision { /* one consensus decision */
    uint64_t txid;
    const char *account;
    const char *action; /* APPROVE | REVIEW | BLOCK */
    int64_t decided_ms;
    const char *json; /* the command payload of DESIGN.md 3.6 plus latencies */
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
    const char *kind;   /* decisions: action; exceptions: priority */
    int64_t since_ms;   /* inclusive; 0 = none */
    int64_t until_ms;   /* exclusive; 0 = none */
    const char *cursor; /* from a previous page's next_cursor; NULL = first page */
    int limit;          /* 1..page max, enforced by the caller */
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
 * (a row already present is left as it is). 0 or ERR_IO. */
int store_put_transactions(struct store *s, const struct store_txn *rows, size_t n);
int store_put_exceptions(struct store *s, const struct store_exception *rows, size_t n);
/* First decision wins: inserted[i] is set true where row i was new, false where a decision for
 * that transactionId already existed (and is kept). inserted may be NULL. 0 or ERR_IO. */
int store_put_decisions(struct store *s, const struct store_decision *rows, size_t n,
                        bool *inserted);
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
/* Dead letters, newest first; only q->limit and q->cursor apply. */
int store_list_deadletters(struct store *s, const struct store_query *q, json_t **items,
                           char next_cursor[STORE_CURSOR_MAX]);
/* Statistics over the account's newest max_rows stored transactions, without *exclude_txid when
 * it is not NULL (the transaction being judged must not count towards its own history). */
int store_account_history(struct store *s, const char *account, const uint64_t *exclude_txid,
                          int max_rows, struct store_history *out);
/* Row counts for tests and /v1/health: table is "transactions", "exceptions", "decisions",
 * "tool_audit" or "dead_letters". Returns the count (>= 0) or a negative enum err. */
int64_t store_count(struct store *s, const char *table);

#endif
