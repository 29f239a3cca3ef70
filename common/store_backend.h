/* Private to store.c and the store_<backend>.c files: the dispatch table a backend fills and the
 * layout of struct store. Callers include store.h only.
 * store.c checks every argument, owns the list cursor text and the page-size rule, and hands a
 * backend parsed positions and valid arguments only; so a new backend (MongoDB) implements these
 * operations and nothing else changes for callers.
 * Thread-safety: every operation may run on any thread, concurrently with any other; a backend
 * does its own locking. close runs alone, after every other call has returned. */
#ifndef AETHERIS_STORE_BACKEND_H
#define AETHERIS_STORE_BACKEND_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "buf.h"
#include "config.h"
#include "store.h"

/* The tables (collections) store_count knows. */
enum store_table {
    STORE_TABLE_TRANSACTIONS,
    STORE_TABLE_EXCEPTIONS,
    STORE_TABLE_DECISIONS,
    STORE_TABLE_TOOL_AUDIT,
    STORE_TABLE_DEAD_LETTERS,
    STORE_TABLE_WEBHOOKS,
    STORE_TABLE_WEBHOOK_OUTBOX,
    STORE_TABLE_WEBHOOK_DELIVERIES,
    STORE_TABLE_COUNT
};

struct store_pos {   /* where a list page ends: the sort key of its last row */
    int64_t time_ms; /* decided_ms or detected_ms; unused for dead letters */
    uint64_t id;     /* transactionId, or the dead letter's id */
};

struct store_page {        /* a list page the backend fills */
    json_t *items;         /* borrowed: append at most `limit` objects, newest first */
    bool more;             /* set when at least one matching row follows the last appended */
    struct store_pos last; /* the position of the last appended row */
    /* Non-NULL when the caller wants text: a backend that keeps documents as JSON text may
     * append each one's stored text here instead (comma-separated, counted in ntext) and leave
     * items empty; one that does not simply fills items. */
    struct buf *text;
    size_t ntext;
};

struct store_ops {
    const char *name; /* store_backend_name() */
    /* Closes connections and frees s->state (not s itself). */
    void (*close)(struct store *s);
    int (*ping)(struct store *s);
    /* Writers: n >= 1, rows valid (no NULL strings). Same contracts as store.h. */
    int (*put_transactions)(struct store *s, const struct store_txn *rows, size_t n);
    int (*put_exceptions)(struct store *s, const struct store_exception *rows, size_t n);
    /* NULL: store_put_ingest calls the three writers above in turn. */
    int (*put_ingest)(struct store *s, const struct store_ingest *in);
    int (*put_decisions)(struct store *s, const struct store_decision *rows, size_t n,
                         const struct store_audit *audit, size_t naudit, bool *inserted);
    int (*put_audit)(struct store *s, const struct store_audit *rows, size_t n);
    int (*put_deadletters)(struct store *s, const struct store_deadletter *rows, size_t n,
                           int keep);
    /* *doc is NULL on entry; set it to a new reference, or return ERR_NOTFOUND. */
    int (*get_decision)(struct store *s, uint64_t txid, json_t **doc);
    int (*get_exception)(struct store *s, uint64_t txid, json_t **doc);
    /* Rows strictly after `after` (NULL: from the newest) in (time desc, txid desc) order,
     * filtered by q (q->limit >= 1; q->cursor already parsed into `after`, ignore it). */
    int (*list_decisions)(struct store *s, const struct store_query *q,
                          const struct store_pos *after, struct store_page *page);
    int (*list_exceptions)(struct store *s, const struct store_query *q,
                           const struct store_pos *after, struct store_page *page);
    /* Dead letters by id desc, ids below after->id; items {id, source, reason, ts_ms, payload}. */
    int (*list_deadletters)(struct store *s, const struct store_query *q,
                            const struct store_pos *after, struct store_page *page);
    /* account non-NULL, max_rows >= 1, *out zeroed on entry. */
    int (*account_history)(struct store *s, const char *account, const uint64_t *exclude_txid,
                           int max_rows, struct store_history *out);
    int64_t (*count)(struct store *s, enum store_table table);
    /* Webhooks: same contracts as store.h; rows valid, id non-NULL, max >= 1, *dropped (never
     * NULL here) zeroed on entry, *doc NULL on entry, items an empty array to append to. */
    int (*webhook_insert)(struct store *s, const struct store_webhook *w, int max);
    int (*webhook_update)(struct store *s, const struct store_webhook *w, int64_t *dropped);
    int (*webhook_delete)(struct store *s, const char *id, int64_t *dropped);
    int (*webhook_get)(struct store *s, const char *id, json_t **doc);
    int (*webhook_list)(struct store *s, json_t *items);
    int (*outbox_put)(struct store *s, const struct store_outbox *rows, size_t n);
    /* max >= 1; *n is 0 on entry. */
    int (*outbox_claim)(struct store *s, int64_t now_ms, int64_t lease_until_ms, int max,
                        struct store_claim *out, int *n);
    int (*outbox_finish)(struct store *s, const struct store_attempt *a, int keep);
    int (*outbox_release)(struct store *s, int64_t outbox_id, int64_t due_ms);
    int (*outbox_next_due)(struct store *s, int64_t *due_ms);
    /* Attempt records of q->webhook_id by id desc, ids below after->id. */
    int (*list_deliveries)(struct store *s, const struct store_query *q,
                           const struct store_pos *after, struct store_page *page);
};

struct store {
    const struct store_ops *ops;
    void *state; /* the backend's own state; freed by ops->close */
};

/* Opens the SQLite backend at cfg->sqlite_path: fills s->ops and s->state and returns 0, or
 * returns ERR_IO with err filled (nothing left to close). */
int store__sqlite_open(struct store *s, const struct config *cfg, char *err, size_t errlen);
/* Opens the MongoDB backend at cfg->mongodb_uri (client pool, indexes created): same contract. */
int store__mongo_open(struct store *s, const struct config *cfg, char *err, size_t errlen);

#endif
