/* Store front end (store.h): selects a backend, checks arguments and dispatches through the
 * backend's struct store_ops (store_backend.h).
 *
 * What lives here rather than in a backend, so that every backend behaves the same:
 *   - argument checks: NULL strings in rows, limit < 1, keep < 0, max_rows < 1 and unknown
 *     table names are ERR_INVAL before any backend runs; n == 0 writes nothing and returns 0;
 *   - the list cursor. It is the sort key of the last row of a page, "<time_ms>.<txid>" for
 *     decisions and exceptions (e.g. "1700000000000.12345") and "<id>" for dead letters, in
 *     canonical decimal only: no spaces, no '+', no leading zeros, no "-0", in range. Anything
 *     else is ERR_INVAL, so a cursor can never silently mean a different page. NULL or "" is
 *     the first page. Because a cursor is a position and not an offset, rows inserted between
 *     two page requests never shift later pages: nothing is repeated or skipped;
 *   - the page rule: the backend reports whether a row follows the page, and next_cursor is
 *     "" exactly when none does.
 * Thread-safe as the backends are; this file holds no state of its own. */
#include "store.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "store_backend.h"
#include "xmalloc.h"

static const char *const table_names[STORE_TABLE_COUNT] = {
    [STORE_TABLE_TRANSACTIONS] = "transactions",
    [STORE_TABLE_EXCEPTIONS] = "exceptions",
    [STORE_TABLE_DECISIONS] = "decisions",
    [STORE_TABLE_TOOL_AUDIT] = "tool_audit",
    [STORE_TABLE_DEAD_LETTERS] = "dead_letters",
    [STORE_TABLE_WEBHOOKS] = "webhooks",
    [STORE_TABLE_WEBHOOK_OUTBOX] = "webhook_outbox",
    [STORE_TABLE_WEBHOOK_DELIVERIES] = "webhook_deliveries",
};

struct store *store_open(const struct config *cfg, char *err, size_t errlen)
{
    char dummy[1];
    if (err == NULL || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (cfg == NULL) {
        snprintf(err, errlen, "store: no configuration");
        return NULL;
    }
    struct store *s = xcalloc(1, sizeof *s);
    int rv = cfg->mongodb_uri[0] != '\0' ? store__mongo_open(s, cfg, err, errlen)
                                         : store__sqlite_open(s, cfg, err, errlen);
    if (rv != 0) {
        free(s);
        return NULL;
    }
    return s;
}

void store_free(struct store *s)
{
    if (s == NULL)
        return;
    s->ops->close(s);
    free(s);
}

const char *store_backend_name(const struct store *s)
{
    return s->ops->name;
}

int store_ping(struct store *s)
{
    return s->ops->ping(s);
}

/* ------------------------------------------------------------------------------------------ */
/* Writers                                                                                      */

/* True when n outbox rows at rows have every string (no rows: rows may be NULL). */
static bool outbox_valid(const struct store_outbox *rows, size_t n)
{
    if (n > 0 && rows == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rows[i].webhook_id == NULL || rows[i].msg_id == NULL || rows[i].event_type == NULL ||
            rows[i].payload == NULL)
            return false;
    return true;
}

static bool txn_valid(const struct store_txn *rows, size_t n)
{
    if (n > 0 && rows == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rows[i].account == NULL || rows[i].json == NULL)
            return false;
    return true;
}

static bool exceptions_valid(const struct store_exception *rows, size_t n)
{
    if (n > 0 && rows == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rows[i].account == NULL || rows[i].priority == NULL || rows[i].json == NULL ||
            !outbox_valid(rows[i].outbox, rows[i].noutbox))
            return false;
    return true;
}

static bool deadletters_valid(const struct store_deadletter *rows, size_t n)
{
    if (n > 0 && rows == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rows[i].source == NULL || rows[i].reason == NULL ||
            (rows[i].payload == NULL && rows[i].payload_len > 0))
            return false;
    return true;
}

int store_put_transactions(struct store *s, const struct store_txn *rows, size_t n)
{
    if (n == 0)
        return 0;
    if (!txn_valid(rows, n))
        return ERR_INVAL;
    return s->ops->put_transactions(s, rows, n);
}

int store_put_exceptions(struct store *s, const struct store_exception *rows, size_t n)
{
    if (n == 0)
        return 0;
    if (!exceptions_valid(rows, n))
        return ERR_INVAL;
    return s->ops->put_exceptions(s, rows, n);
}

int store_put_ingest(struct store *s, const struct store_ingest *in)
{
    if (in->dl_keep < 0 || !txn_valid(in->txn, in->ntxn) || !exceptions_valid(in->exc, in->nexc) ||
        !deadletters_valid(in->dl, in->ndl))
        return ERR_INVAL;
    if (in->ntxn + in->nexc + in->ndl == 0)
        return 0;
    if (s->ops->put_ingest)
        return s->ops->put_ingest(s, in);
    int rv = in->ntxn > 0 ? s->ops->put_transactions(s, in->txn, in->ntxn) : 0;
    if (rv == 0 && in->nexc > 0)
        rv = s->ops->put_exceptions(s, in->exc, in->nexc);
    if (rv == 0 && in->ndl > 0)
        rv = s->ops->put_deadletters(s, in->dl, in->ndl, in->dl_keep);
    return rv;
}

static bool audit_valid(const struct store_audit *rows, size_t n)
{
    if (n > 0 && rows == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (rows[i].account == NULL || rows[i].tool == NULL || rows[i].json == NULL)
            return false;
    return true;
}

int store_put_decisions(struct store *s, const struct store_decision *rows, size_t n,
                        const struct store_audit *audit, size_t naudit, bool *inserted)
{
    if (n == 0 && naudit == 0)
        return 0;
    if ((n > 0 && rows == NULL) || !audit_valid(audit, naudit))
        return ERR_INVAL;
    for (size_t i = 0; i < n; i++)
        if (rows[i].account == NULL || rows[i].action == NULL || rows[i].json == NULL ||
            !outbox_valid(rows[i].outbox, rows[i].noutbox))
            return ERR_INVAL;
    if (inserted)
        memset(inserted, 0, n * sizeof *inserted);
    if (n == 0)
        return s->ops->put_audit(s, audit, naudit);
    return s->ops->put_decisions(s, rows, n, audit, naudit, inserted);
}

int store_put_audit(struct store *s, const struct store_audit *rows, size_t n)
{
    if (n == 0)
        return 0;
    if (!audit_valid(rows, n))
        return ERR_INVAL;
    return s->ops->put_audit(s, rows, n);
}

int store_put_deadletters(struct store *s, const struct store_deadletter *rows, size_t n, int keep)
{
    if (keep < 0)
        return ERR_INVAL;
    if (n == 0)
        return 0;
    if (!deadletters_valid(rows, n))
        return ERR_INVAL;
    return s->ops->put_deadletters(s, rows, n, keep);
}

/* ------------------------------------------------------------------------------------------ */
/* Readers                                                                                      */

int store_get_decision(struct store *s, uint64_t txid, json_t **doc)
{
    if (doc == NULL)
        return ERR_INVAL;
    *doc = NULL;
    return s->ops->get_decision(s, txid, doc);
}

int store_get_exception(struct store *s, uint64_t txid, json_t **doc)
{
    if (doc == NULL)
        return ERR_INVAL;
    *doc = NULL;
    return s->ops->get_exception(s, txid, doc);
}

/* Parses canonical unsigned decimal digits at p (no sign, no leading zero unless the number is
 * 0, at most UINT64_MAX). Returns the end, or NULL. */
static const char *parse_u64(const char *p, uint64_t *out)
{
    if (*p < '0' || *p > '9')
        return NULL;
    if (p[0] == '0' && p[1] >= '0' && p[1] <= '9')
        return NULL;
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
    }
    *out = v;
    return p;
}

/* Like parse_u64 with an optional '-' ("-0" refused); range INT64_MIN..INT64_MAX. */
static const char *parse_i64(const char *p, int64_t *out)
{
    bool neg = *p == '-';
    uint64_t mag = 0;
    const char *end = parse_u64(neg ? p + 1 : p, &mag);
    if (end == NULL)
        return NULL;
    if (!neg) {
        if (mag > (uint64_t)INT64_MAX)
            return NULL;
        *out = (int64_t)mag;
    } else {
        if (mag == 0 || mag > (uint64_t)INT64_MAX + 1)
            return NULL;
        *out = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
    }
    return end;
}

/* Parses a cursor into *pos; *after is false for the first page. ERR_INVAL when malformed. */
static int cursor_parse(const char *cursor, bool with_time, struct store_pos *pos, bool *after)
{
    *after = false;
    if (cursor == NULL || cursor[0] == '\0')
        return 0;
    if (strnlen(cursor, STORE_CURSOR_MAX) >= STORE_CURSOR_MAX)
        return ERR_INVAL;
    const char *p = cursor;
    if (with_time) {
        p = parse_i64(p, &pos->time_ms);
        if (p == NULL || *p != '.')
            return ERR_INVAL;
        p++;
    }
    p = parse_u64(p, &pos->id);
    if (p == NULL || *p != '\0')
        return ERR_INVAL;
    *after = true;
    return 0;
}

typedef int (*list_fn)(struct store *s, const struct store_query *q, const struct store_pos *after,
                       struct store_page *page);

/* Closes the array of a text page: the backend appended `ntext` documents as text, or objects to
 * items (a backend without stored text), which are serialized here. 0 or ERR_FULL/ERR_INTERNAL. */
static int items_text(json_t *items, size_t ntext, struct buf *text)
{
    size_t i;
    json_t *doc;
    json_array_foreach(items, i, doc)
    {
        char *t = json_dumps(doc, JSON_COMPACT);
        if (t == NULL)
            return ERR_INTERNAL;
        int rv = (ntext + i > 0 ? buf_append(text, ",", 1) : 0);
        if (rv == 0)
            rv = buf_append(text, t, strlen(t));
        free(t);
        if (rv != 0)
            return rv;
    }
    return buf_append(text, "]", 1);
}

/* The one list path: checks, parses the cursor, lets the backend fill a page, makes the next
 * cursor. On failure *items is NULL and next_cursor "". */
static int list_page(struct store *s, list_fn fn, bool with_time, const struct store_query *q,
                     json_t **items, struct buf *text, char next_cursor[STORE_CURSOR_MAX])
{
    struct store_pos pos = {0, 0};
    bool after = false;
    struct store_page page = {NULL, false, {0, 0}, text, 0};
    int rv = ERR_INVAL;
    if ((items == NULL) == (text == NULL) || next_cursor == NULL)
        return ERR_INVAL;
    if (items)
        *items = NULL;
    next_cursor[0] = '\0';
    if (q == NULL || q->limit < 1)
        goto out;
    rv = cursor_parse(q->cursor, with_time, &pos, &after);
    if (rv != 0)
        goto out;
    page.items = json_array();
    size_t text_start = text ? text->len : 0;
    if (text)
        rv = buf_append(text, "[", 1);
    if (rv == 0)
        rv = fn(s, q, after ? &pos : NULL, &page);
    if (rv == 0 && text)
        rv = items_text(page.items, page.ntext, text);
    if (rv != 0) {
        if (text && text->len > text_start) { /* leave out as it was */
            text->len = text_start;
            text->data[text_start] = '\0';
        }
        goto out;
    }
    if (page.more && with_time)
        snprintf(next_cursor, STORE_CURSOR_MAX, "%" PRId64 ".%" PRIu64, page.last.time_ms,
                 page.last.id);
    else if (page.more)
        snprintf(next_cursor, STORE_CURSOR_MAX, "%" PRIu64, page.last.id);
    if (items) {
        *items = page.items;
        page.items = NULL;
    }
out:
    json_decref(page.items);
    return rv;
}

int store_list_decisions(struct store *s, const struct store_query *q, json_t **items,
                         char next_cursor[STORE_CURSOR_MAX])
{
    return list_page(s, s->ops->list_decisions, true, q, items, NULL, next_cursor);
}

int store_list_decisions_text(struct store *s, const struct store_query *q, struct buf *out,
                              char next_cursor[STORE_CURSOR_MAX])
{
    return list_page(s, s->ops->list_decisions, true, q, NULL, out, next_cursor);
}

int store_list_exceptions_text(struct store *s, const struct store_query *q, struct buf *out,
                               char next_cursor[STORE_CURSOR_MAX])
{
    return list_page(s, s->ops->list_exceptions, true, q, NULL, out, next_cursor);
}

int store_list_exceptions(struct store *s, const struct store_query *q, json_t **items,
                          char next_cursor[STORE_CURSOR_MAX])
{
    return list_page(s, s->ops->list_exceptions, true, q, items, NULL, next_cursor);
}

int store_list_deadletters(struct store *s, const struct store_query *q, json_t **items,
                           char next_cursor[STORE_CURSOR_MAX])
{
    return list_page(s, s->ops->list_deadletters, false, q, items, NULL, next_cursor);
}

int store_list_deliveries(struct store *s, const struct store_query *q, json_t **items,
                          char next_cursor[STORE_CURSOR_MAX])
{
    if (q != NULL && q->webhook_id == NULL) {
        if (items)
            *items = NULL;
        if (next_cursor)
            next_cursor[0] = '\0';
        return ERR_INVAL;
    }
    return list_page(s, s->ops->list_deliveries, false, q, items, NULL, next_cursor);
}

int store_account_history(struct store *s, const char *account, const uint64_t *exclude_txid,
                          int max_rows, struct store_history *out)
{
    if (out == NULL)
        return ERR_INVAL;
    memset(out, 0, sizeof *out);
    if (account == NULL || max_rows < 1)
        return ERR_INVAL;
    return s->ops->account_history(s, account, exclude_txid, max_rows, out);
}

int64_t store_count(struct store *s, const char *table)
{
    if (table == NULL)
        return ERR_INVAL;
    for (int t = 0; t < STORE_TABLE_COUNT; t++)
        if (strcmp(table, table_names[t]) == 0)
            return s->ops->count(s, (enum store_table)t);
    return ERR_INVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Webhooks                                                                                     */

int store_webhook_insert(struct store *s, const struct store_webhook *w, int max)
{
    if (w == NULL || w->id == NULL || w->json == NULL || max < 1)
        return ERR_INVAL;
    return s->ops->webhook_insert(s, w, max);
}

int store_webhook_update(struct store *s, const struct store_webhook *w, int64_t *dropped)
{
    int64_t ignored = 0;
    if (dropped == NULL)
        dropped = &ignored;
    *dropped = 0;
    if (w == NULL || w->id == NULL || w->json == NULL)
        return ERR_INVAL;
    return s->ops->webhook_update(s, w, dropped);
}

int store_webhook_delete(struct store *s, const char *id, int64_t *dropped)
{
    int64_t ignored = 0;
    if (dropped == NULL)
        dropped = &ignored;
    *dropped = 0;
    if (id == NULL)
        return ERR_INVAL;
    return s->ops->webhook_delete(s, id, dropped);
}

int store_webhook_get(struct store *s, const char *id, json_t **doc)
{
    if (doc == NULL)
        return ERR_INVAL;
    *doc = NULL;
    if (id == NULL)
        return ERR_INVAL;
    return s->ops->webhook_get(s, id, doc);
}

int store_webhook_list(struct store *s, json_t **items)
{
    if (items == NULL)
        return ERR_INVAL;
    json_t *a = json_array();
    int rv = s->ops->webhook_list(s, a);
    if (rv != 0) {
        json_decref(a);
        a = NULL;
    }
    *items = a;
    return rv;
}

int store_outbox_put(struct store *s, const struct store_outbox *rows, size_t n)
{
    if (n == 0)
        return 0;
    if (!outbox_valid(rows, n))
        return ERR_INVAL;
    return s->ops->outbox_put(s, rows, n);
}

int store_outbox_claim(struct store *s, int64_t now_ms, int64_t lease_until_ms, int max,
                       struct store_claim *out, int *n)
{
    if (n == NULL)
        return ERR_INVAL;
    *n = 0;
    if (out == NULL || max < 1)
        return ERR_INVAL;
    return s->ops->outbox_claim(s, now_ms, lease_until_ms, max, out, n);
}

void store_claims_free(struct store_claim *c, int n)
{
    for (int i = 0; c != NULL && i < n; i++) {
        free(c[i].payload);
        c[i].payload = NULL;
    }
}

int store_outbox_finish(struct store *s, const struct store_attempt *a, int keep)
{
    if (a == NULL || a->webhook_id == NULL || a->msg_id == NULL || a->event_type == NULL ||
        a->outcome == NULL || keep < 0)
        return ERR_INVAL;
    return s->ops->outbox_finish(s, a, keep);
}

int store_outbox_release(struct store *s, int64_t outbox_id, int64_t due_ms)
{
    return s->ops->outbox_release(s, outbox_id, due_ms);
}

int store_outbox_next_due(struct store *s, int64_t *due_ms)
{
    if (due_ms == NULL)
        return ERR_INVAL;
    return s->ops->outbox_next_due(s, due_ms);
}
