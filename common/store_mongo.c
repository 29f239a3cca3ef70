/* MongoDB backend of the store (store_backend.h; the contract is store.h; the document layout is
 * in store_mongo.h).
 *
 * Connections: one mongoc client pool; every operation pops a client for its duration (so each
 * thread uses its own client) and pushes it back. Server selection waits at most
 * MONGO_SELECT_TIMEOUT_MS unless the URI says otherwise, so a Mongo outage fails a call quickly
 * and the pipeline's own retries (the sink retries store writes until they succeed; the decider
 * leaves its stream entries pending) do the buffering: bounded by the pipeline's queues and
 * counted by aetheris_store_errors_total.
 *
 * Writes: rows are upserts keyed by _id with $setOnInsert in one unordered bulk write, so a row
 * already present is left as it is and the reply's `upserted` list tells which rows were new
 * (first decision wins). Without multi-document transactions (they need a replica set), the
 * outbox rows of the new rows are written right after, in a second bulk: a crash between the two
 * writes can lose those webhook deliveries (the SQLite backend writes both atomically). A batch's
 * tool audit goes in before its decisions, so a failure between them leaves audit rows of calls
 * whose decisions are written on the retry (the audit is a log of calls: that is what happened).
 * Dead letters, outbox rows and attempt records get increasing integer ids from a counters
 * collection ($inc by the batch size, one round trip per batch), so cursors and claims work as
 * with SQLite.
 * Lists sort by (_aetheris.ms desc, _id desc) and continue after a position with an $or filter;
 * the indexes created at open serve those sorts and the account and kind filters. */
#include "store_mongo.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mongoc/mongoc.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "xmalloc.h"

#define MONGO_SELECT_TIMEOUT_MS 5000
#define MONGO_COUNTERS "aetheris_counters"
#define MS_PER_DAY 86400000LL

struct mongo_store {
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    char db[128];
    const char *coll[STORE_TABLE_COUNT];
    char names[STORE_TABLE_COUNT][128];
};

/* ------------------------------------------------------------------------------------------ */
/* Pure builders (store_mongo.h)                                                                */

void store_mongo_collection_names(const struct config *cfg, const char *names[STORE_TABLE_COUNT])
{
    names[STORE_TABLE_TRANSACTIONS] = cfg->mongodb_transactions_collection;
    names[STORE_TABLE_EXCEPTIONS] = cfg->mongodb_exceptions_collection;
    names[STORE_TABLE_DECISIONS] = cfg->mongodb_commands_collection;
    names[STORE_TABLE_TOOL_AUDIT] = cfg->mongodb_tool_audit_collection;
    names[STORE_TABLE_DEAD_LETTERS] = "dead_letters";
    names[STORE_TABLE_WEBHOOKS] = "webhooks";
    names[STORE_TABLE_WEBHOOK_OUTBOX] = "webhook_outbox";
    names[STORE_TABLE_WEBHOOK_DELIVERIES] = "webhook_deliveries";
}

int64_t store_mongo_key(uint64_t txid)
{
    if (txid <= (uint64_t)INT64_MAX)
        return (int64_t)txid;
    return -(int64_t)(UINT64_MAX - txid) - 1;
}

uint64_t store_mongo_txid(int64_t key)
{
    if (key >= 0)
        return (uint64_t)key;
    return UINT64_MAX - (uint64_t)(-(key + 1));
}

bson_t *store_mongo_row_doc(const char *json, const char *account, const char *kind, int64_t ms)
{
    const char *p = json + strspn(json, " \t\r\n");
    if (*p != '{') /* libbson would take an array as a document */
        return NULL;
    bson_error_t err;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &err);
    if (doc == NULL)
        return NULL;
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id") || bson_iter_init_find(&it, doc, MONGO_META)) {
        bson_destroy(doc); /* reserved names: never stored from a document */
        return NULL;
    }
    bson_t meta;
    BSON_APPEND_DOCUMENT_BEGIN(doc, MONGO_META, &meta);
    if (account)
        BSON_APPEND_UTF8(&meta, "account", account);
    if (kind)
        BSON_APPEND_UTF8(&meta, "kind", kind);
    BSON_APPEND_INT64(&meta, "ms", ms);
    BSON_APPEND_DATE_TIME(&meta, "at", ms);
    bson_append_document_end(doc, &meta);
    return doc;
}

void store_mongo_list_query(const struct store_query *q, const struct store_pos *after,
                            bson_t *filter, bson_t *opts)
{
    bson_init(filter);
    if (q->account)
        BSON_APPEND_UTF8(filter, MONGO_META ".account", q->account);
    if (q->kind)
        BSON_APPEND_UTF8(filter, MONGO_META ".kind", q->kind);
    if (q->since_ms != 0 || q->until_ms != 0) {
        bson_t range;
        BSON_APPEND_DOCUMENT_BEGIN(filter, MONGO_META ".ms", &range);
        if (q->since_ms != 0)
            BSON_APPEND_INT64(&range, "$gte", q->since_ms);
        if (q->until_ms != 0)
            BSON_APPEND_INT64(&range, "$lt", q->until_ms);
        bson_append_document_end(filter, &range);
    }
    if (after) { /* (ms, _id) < (after.time, after.key) */
        bson_t or, a, b, lt, lt2;
        BSON_APPEND_ARRAY_BEGIN(filter, "$or", & or);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &a);
        BSON_APPEND_DOCUMENT_BEGIN(&a, MONGO_META ".ms", &lt);
        BSON_APPEND_INT64(&lt, "$lt", after->time_ms);
        bson_append_document_end(&a, &lt);
        bson_append_document_end(& or, &a);
        BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &b);
        BSON_APPEND_INT64(&b, MONGO_META ".ms", after->time_ms);
        BSON_APPEND_DOCUMENT_BEGIN(&b, "_id", &lt2);
        BSON_APPEND_INT64(&lt2, "$lt", store_mongo_key(after->id));
        bson_append_document_end(&b, &lt2);
        bson_append_document_end(& or, &b);
        bson_append_array_end(filter, & or);
    }
    bson_init(opts);
    bson_t sort;
    BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, MONGO_META ".ms", -1);
    BSON_APPEND_INT32(&sort, "_id", -1);
    bson_append_document_end(opts, &sort);
    BSON_APPEND_INT64(opts, "limit", (int64_t)q->limit + 1);
}

/* Appends one index {key: {fields...}, name, [unique], [expireAfterSeconds]} to the array. */
static void index_spec(bson_t *arr, int i, const char *name, const char *f1, int d1, const char *f2,
                       int d2, bool unique, int64_t ttl_s)
{
    char k[8];
    snprintf(k, sizeof k, "%d", i);
    bson_t spec, key;
    BSON_APPEND_DOCUMENT_BEGIN(arr, k, &spec);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    BSON_APPEND_INT32(&key, f1, d1);
    if (f2)
        BSON_APPEND_INT32(&key, f2, d2);
    bson_append_document_end(&spec, &key);
    BSON_APPEND_UTF8(&spec, "name", name);
    if (unique)
        BSON_APPEND_BOOL(&spec, "unique", true);
    if (ttl_s > 0)
        BSON_APPEND_INT64(&spec, "expireAfterSeconds", ttl_s);
    bson_append_document_end(arr, &spec);
}

bson_t *store_mongo_index_command(const char *collection, enum store_table t, int audit_ttl_days)
{
    bson_t *cmd = bson_new();
    bson_t arr;
    int n = 0;
    BSON_APPEND_UTF8(cmd, "createIndexes", collection);
    BSON_APPEND_ARRAY_BEGIN(cmd, "indexes", &arr);
    switch (t) {
    case STORE_TABLE_TRANSACTIONS:
        index_spec(&arr, n++, "account_time", MONGO_META ".account", 1, MONGO_META ".ms", -1, false,
                   0);
        index_spec(&arr, n++, "accountOrigin", "accountOrigin", 1, NULL, 0, false, 0);
        break;
    case STORE_TABLE_EXCEPTIONS:
    case STORE_TABLE_DECISIONS:
        index_spec(&arr, n++, "time", MONGO_META ".ms", -1, "_id", -1, false, 0);
        index_spec(&arr, n++, "account_time", MONGO_META ".account", 1, MONGO_META ".ms", -1, false,
                   0);
        index_spec(&arr, n++, "kind_time", MONGO_META ".kind", 1, MONGO_META ".ms", -1, false, 0);
        break;
    case STORE_TABLE_TOOL_AUDIT:
        index_spec(&arr, n++, "ttl", MONGO_META ".at", 1, NULL, 0, false,
                   audit_ttl_days > 0 ? (int64_t)audit_ttl_days * 86400 : 0);
        break;
    case STORE_TABLE_WEBHOOK_OUTBOX:
        index_spec(&arr, n++, "due", "due_ms", 1, NULL, 0, false, 0);
        index_spec(&arr, n++, "message", "webhook_id", 1, "msg_id", 1, true, 0);
        break;
    case STORE_TABLE_WEBHOOK_DELIVERIES:
        index_spec(&arr, n++, "webhook", "webhook_id", 1, "_id", -1, false, 0);
        break;
    default:
        break;
    }
    bson_append_array_end(cmd, &arr);
    if (n == 0) {
        bson_destroy(cmd);
        return bson_new();
    }
    return cmd;
}

json_t *store_mongo_doc_json(const bson_t *row)
{
    bson_t clean;
    bson_init(&clean);
    bson_copy_to_excluding_noinit(row, &clean, "_id", MONGO_META, NULL);
    size_t len = 0;
    char *text = bson_as_relaxed_extended_json(&clean, &len);
    bson_destroy(&clean);
    json_t *doc = text ? json_loadb(text, len, 0, NULL) : NULL;
    bson_free(text);
    return doc;
}

/* ------------------------------------------------------------------------------------------ */
/* Connections                                                                                  */

struct session { /* one operation's client and collection */
    mongoc_client_t *client;
    mongoc_collection_t *coll;
};

static struct mongo_store *ms_of(struct store *s)
{
    return s->state;
}

static void session_open(struct mongo_store *m, enum store_table t, struct session *ss)
{
    ss->client = mongoc_client_pool_pop(m->pool);
    ss->coll = mongoc_client_get_collection(ss->client, m->db, m->coll[t]);
}

static void session_close(struct mongo_store *m, struct session *ss)
{
    mongoc_collection_destroy(ss->coll);
    mongoc_client_pool_push(m->pool, ss->client);
}

/* Logs a failed operation once; returns ERR_IO (ERR_CONN when no server could be selected). */
static int fail(const char *op, const bson_error_t *e)
{
    log_error("store.mongo_error", "%s: %s", op, e->message);
    return e->domain == MONGOC_ERROR_SERVER_SELECTION ? ERR_CONN : ERR_IO;
}

/* n new ids from the named counter: returns the first (ids first..first+n-1), or -1. */
static int64_t next_ids(struct mongo_store *m, const char *name, size_t n)
{
    mongoc_client_t *c = mongoc_client_pool_pop(m->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(c, m->db, MONGO_COUNTERS);
    bson_t *query = BCON_NEW("_id", BCON_UTF8(name));
    bson_t *update = BCON_NEW("$inc", "{", "n", BCON_INT64((int64_t)n), "}");
    bson_t reply;
    bson_error_t e;
    int64_t first = -1;
    if (mongoc_collection_find_and_modify(coll, query, NULL, update, NULL, false, true, true,
                                          &reply, &e)) {
        bson_iter_t it;
        if (bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, "value.n", &it))
            first = bson_iter_as_int64(&it) - (int64_t)n + 1;
    } else {
        fail("next id", &e);
    }
    bson_destroy(&reply);
    bson_destroy(query);
    bson_destroy(update);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(m->pool, c);
    return first;
}

static void mongo_close(struct store *s)
{
    struct mongo_store *m = ms_of(s);
    mongoc_client_pool_destroy(m->pool);
    mongoc_uri_destroy(m->uri);
    free(m);
    s->state = NULL;
    mongoc_cleanup();
}

static int mongo_ping(struct store *s)
{
    struct mongo_store *m = ms_of(s);
    mongoc_client_t *c = mongoc_client_pool_pop(m->pool);
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    bson_error_t e;
    bool ok = mongoc_client_command_simple(c, "admin", cmd, NULL, NULL, &e);
    bson_destroy(cmd);
    mongoc_client_pool_push(m->pool, c);
    return ok ? 0 : fail("ping", &e);
}

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                       */

struct row_spec { /* one row to upsert */
    uint64_t txid;
    const char *json, *account, *kind;
    int64_t ms;
};

/* Upserts rows with $setOnInsert in one unordered bulk; inserted[i] (may be NULL) tells which
 * were new. 0 or ERR_IO / ERR_CONN / ERR_INVAL (a document that is not a JSON object). */
static int upsert_rows(struct mongo_store *m, enum store_table t, const char *op,
                       const struct row_spec *rows, size_t n, bool *inserted)
{
    struct session ss;
    session_open(m, t, &ss);
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(ss.coll, bopts);
    bson_t *uopts = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t e = {0};
    int rv = 0;
    for (size_t i = 0; i < n && rv == 0; i++) {
        bson_t *doc = store_mongo_row_doc(rows[i].json, rows[i].account, rows[i].kind, rows[i].ms);
        if (doc == NULL) {
            rv = ERR_INVAL;
            break;
        }
        bson_t *sel = BCON_NEW("_id", BCON_INT64(store_mongo_key(rows[i].txid)));
        bson_t upd = BSON_INITIALIZER;
        BSON_APPEND_DOCUMENT(&upd, "$setOnInsert", doc);
        if (!mongoc_bulk_operation_update_one_with_opts(bulk, sel, &upd, uopts, &e))
            rv = fail(op, &e);
        bson_destroy(&upd);
        bson_destroy(sel);
        bson_destroy(doc);
    }
    bson_t reply;
    if (rv == 0 && !mongoc_bulk_operation_execute(bulk, &reply, &e))
        rv = fail(op, &e);
    if (rv == 0 && inserted) {
        bson_iter_t it, arr;
        if (bson_iter_init_find(&it, &reply, "upserted") && bson_iter_recurse(&it, &arr)) {
            while (bson_iter_next(&arr)) {
                bson_iter_t idx;
                if (bson_iter_recurse(&arr, &idx) && bson_iter_find(&idx, "index")) {
                    int64_t k = bson_iter_as_int64(&idx);
                    if (k >= 0 && (size_t)k < n)
                        inserted[k] = true;
                }
            }
        }
    }
    if (rv == 0 || bulk != NULL)
        bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(bopts);
    bson_destroy(uopts);
    session_close(m, &ss);
    return rv;
}

/* Inserts outbox rows with new ids; a (webhook_id, msg_id) already queued stays as it is. */
static int insert_outbox(struct mongo_store *m, const struct store_outbox *rows, size_t n)
{
    if (n == 0)
        return 0;
    int64_t first = next_ids(m, "webhook_outbox", n);
    if (first < 0)
        return ERR_IO;
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOK_OUTBOX, &ss);
    bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(false));
    bson_t *uopts = BCON_NEW("upsert", BCON_BOOL(true));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(ss.coll, bopts);
    bson_error_t e;
    int rv = 0;
    for (size_t i = 0; i < n; i++) {
        bson_t *sel = BCON_NEW("webhook_id", BCON_UTF8(rows[i].webhook_id), "msg_id",
                               BCON_UTF8(rows[i].msg_id));
        bson_t *upd =
            BCON_NEW("$setOnInsert", "{", "_id", BCON_INT64(first + (int64_t)i), "event_type",
                     BCON_UTF8(rows[i].event_type), "payload", BCON_UTF8(rows[i].payload),
                     "created_ms", BCON_INT64(rows[i].created_ms), "due_ms",
                     BCON_INT64(rows[i].created_ms), "attempts", BCON_INT32(0), "}");
        mongoc_bulk_operation_update_one_with_opts(bulk, sel, upd, uopts, NULL);
        bson_destroy(sel);
        bson_destroy(upd);
    }
    bson_t reply;
    if (!mongoc_bulk_operation_execute(bulk, &reply, &e))
        rv = fail("put webhook outbox", &e);
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(bopts);
    bson_destroy(uopts);
    session_close(m, &ss);
    return rv;
}

static int mongo_put_transactions(struct store *s, const struct store_txn *rows, size_t n)
{
    struct row_spec *r = xcalloc(n, sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = (struct row_spec){rows[i].txid, rows[i].json, rows[i].account, NULL,
                                 rows[i].ingested_ms};
    int rv = upsert_rows(ms_of(s), STORE_TABLE_TRANSACTIONS, "put transactions", r, n, NULL);
    free(r);
    return rv;
}

/* Upserts rows and then the outbox rows of the new ones (fn gives row i's). */
static int put_with_outbox(struct store *s, enum store_table t, const char *op,
                           const struct row_spec *r, size_t n, bool *inserted,
                           const struct store_outbox *(*fn)(const void *, size_t, size_t *),
                           const void *rows)
{
    bool *fresh = inserted ? inserted : xcalloc(n, sizeof *fresh);
    int rv = upsert_rows(ms_of(s), t, op, r, n, fresh);
    for (size_t i = 0; i < n && rv == 0; i++) {
        size_t nob = 0;
        const struct store_outbox *ob = fn(rows, i, &nob);
        if (fresh[i] && nob > 0)
            rv = insert_outbox(ms_of(s), ob, nob);
    }
    if (fresh != inserted)
        free(fresh);
    return rv;
}

static const struct store_outbox *exception_outbox(const void *rows, size_t i, size_t *n)
{
    const struct store_exception *r = (const struct store_exception *)rows + i;
    *n = r->noutbox;
    return r->outbox;
}

static const struct store_outbox *decision_outbox(const void *rows, size_t i, size_t *n)
{
    const struct store_decision *r = (const struct store_decision *)rows + i;
    *n = r->noutbox;
    return r->outbox;
}

static int mongo_put_exceptions(struct store *s, const struct store_exception *rows, size_t n)
{
    struct row_spec *r = xcalloc(n, sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = (struct row_spec){rows[i].txid, rows[i].json, rows[i].account, rows[i].priority,
                                 rows[i].detected_ms};
    int rv = put_with_outbox(s, STORE_TABLE_EXCEPTIONS, "put exceptions", r, n, NULL,
                             exception_outbox, rows);
    free(r);
    return rv;
}

/* Inserts documents with ids from `counter` (0 or ERR_*). make(i, id) builds document i. */
static int insert_numbered(struct mongo_store *m, enum store_table t, const char *op, size_t n,
                           bson_t *(*make)(const void *rows, size_t i, int64_t id),
                           const void *rows, int64_t *first_id)
{
    int64_t first = next_ids(m, m->coll[t], n);
    if (first < 0)
        return ERR_IO;
    if (first_id)
        *first_id = first;
    bson_t **docs = xcalloc(n, sizeof *docs);
    for (size_t i = 0; i < n; i++)
        docs[i] = make(rows, i, first + (int64_t)i);
    struct session ss;
    session_open(m, t, &ss);
    bson_error_t e;
    int rv = mongoc_collection_insert_many(ss.coll, (const bson_t **)docs, n, NULL, NULL, &e)
                 ? 0
                 : fail(op, &e);
    session_close(m, &ss);
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
    return rv;
}

static bson_t *audit_doc(const void *rows, size_t i, int64_t id)
{
    const struct store_audit *r = (const struct store_audit *)rows + i;
    bson_t *doc = store_mongo_row_doc(r->json, r->account, r->tool, r->ts_ms);
    if (doc == NULL)
        doc = bson_new();
    BSON_APPEND_INT64(doc, "_id", id);
    BSON_APPEND_INT64(doc, "transactionId", store_mongo_key(r->txid));
    return doc;
}

static int mongo_put_audit(struct store *s, const struct store_audit *rows, size_t n)
{
    return insert_numbered(ms_of(s), STORE_TABLE_TOOL_AUDIT, "put tool audit", n, audit_doc, rows,
                           NULL);
}

/* The audit insert, then the decisions' bulk (no multi-document transaction: see the top). */
static int mongo_put_decisions(struct store *s, const struct store_decision *rows, size_t n,
                               const struct store_audit *audit, size_t naudit, bool *inserted)
{
    if (naudit > 0 && mongo_put_audit(s, audit, naudit) != 0)
        return ERR_IO;
    struct row_spec *r = xcalloc(n, sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = (struct row_spec){rows[i].txid, rows[i].json, rows[i].account, rows[i].action,
                                 rows[i].decided_ms};
    int rv = put_with_outbox(s, STORE_TABLE_DECISIONS, "put decisions", r, n, inserted,
                             decision_outbox, rows);
    if (rv != 0 && inserted)
        memset(inserted, 0, n * sizeof *inserted);
    free(r);
    return rv;
}

static bson_t *deadletter_doc(const void *rows, size_t i, int64_t id)
{
    const struct store_deadletter *r = (const struct store_deadletter *)rows + i;
    bson_t *doc = BCON_NEW("_id", BCON_INT64(id), "source", BCON_UTF8(r->source), "reason",
                           BCON_UTF8(r->reason), "ts_ms", BCON_INT64(r->ts_ms));
    BSON_APPEND_BINARY(doc, "payload", BSON_SUBTYPE_BINARY,
                       (const uint8_t *)(r->payload ? r->payload : ""), (uint32_t)r->payload_len);
    return doc;
}

/* Deletes all but the newest `keep` documents of an id-ordered collection. */
static int trim_numbered(struct mongo_store *m, enum store_table t, const char *op, int keep)
{
    struct session ss;
    session_open(m, t, &ss);
    bson_t *filter = bson_new();
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "skip", BCON_INT64(keep),
                            "limit", BCON_INT64(1), "projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ss.coll, filter, opts, NULL);
    const bson_t *doc;
    int64_t cut = INT64_MIN;
    bson_iter_t it;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "_id"))
        cut = bson_iter_as_int64(&it);
    bson_error_t e;
    int rv = mongoc_cursor_error(cur, &e) ? fail(op, &e) : 0;
    mongoc_cursor_destroy(cur);
    if (rv == 0 && cut != INT64_MIN) {
        bson_t *del = BCON_NEW("_id", "{", "$lte", BCON_INT64(cut), "}");
        if (!mongoc_collection_delete_many(ss.coll, del, NULL, NULL, &e))
            rv = fail(op, &e);
        bson_destroy(del);
    }
    bson_destroy(filter);
    bson_destroy(opts);
    session_close(m, &ss);
    return rv;
}

static int mongo_put_deadletters(struct store *s, const struct store_deadletter *rows, size_t n,
                                 int keep)
{
    int rv = insert_numbered(ms_of(s), STORE_TABLE_DEAD_LETTERS, "put dead letters", n,
                             deadletter_doc, rows, NULL);
    return rv != 0 ? rv
                   : trim_numbered(ms_of(s), STORE_TABLE_DEAD_LETTERS, "trim dead letters", keep);
}

/* ------------------------------------------------------------------------------------------ */
/* Reads                                                                                        */

/* The first document matching filter in table t, as a copy (*out NULL when none). */
static int find_one(struct mongo_store *m, enum store_table t, const char *op, const bson_t *filter,
                    bson_t **out)
{
    struct session ss;
    session_open(m, t, &ss);
    bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ss.coll, filter, opts, NULL);
    const bson_t *doc;
    *out = mongoc_cursor_next(cur, &doc) ? bson_copy(doc) : NULL;
    bson_error_t e;
    int rv = mongoc_cursor_error(cur, &e) ? fail(op, &e) : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    session_close(m, &ss);
    if (rv != 0) {
        bson_destroy(*out);
        *out = NULL;
    }
    return rv;
}

static int get_row(struct store *s, enum store_table t, const char *op, uint64_t txid, json_t **doc)
{
    bson_t *filter = BCON_NEW("_id", BCON_INT64(store_mongo_key(txid)));
    bson_t *row = NULL;
    int rv = find_one(ms_of(s), t, op, filter, &row);
    bson_destroy(filter);
    if (rv == 0 && row == NULL)
        return ERR_NOTFOUND;
    if (rv == 0 && (*doc = store_mongo_doc_json(row)) == NULL) {
        log_error("store.mongo_error", "%s: a stored document cannot be read", op);
        rv = ERR_IO;
    }
    bson_destroy(row);
    return rv;
}

static int mongo_get_decision(struct store *s, uint64_t txid, json_t **doc)
{
    return get_row(s, STORE_TABLE_DECISIONS, "get decision", txid, doc);
}

static int mongo_get_exception(struct store *s, uint64_t txid, json_t **doc)
{
    return get_row(s, STORE_TABLE_EXCEPTIONS, "get exception", txid, doc);
}

static int list_rows(struct store *s, enum store_table t, const char *op,
                     const struct store_query *q, const struct store_pos *after,
                     struct store_page *page)
{
    struct mongo_store *m = ms_of(s);
    bson_t filter, opts;
    store_mongo_list_query(q, after, &filter, &opts);
    struct session ss;
    session_open(m, t, &ss);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ss.coll, &filter, &opts, NULL);
    const bson_t *row;
    int n = 0, rv = 0;
    while (rv == 0 && mongoc_cursor_next(cur, &row)) {
        if (n == q->limit) {
            page->more = true;
            break;
        }
        bson_iter_t it;
        json_t *doc = store_mongo_doc_json(row);
        if (doc == NULL || !bson_iter_init_find(&it, row, "_id")) {
            json_decref(doc);
            log_error("store.mongo_error", "%s: a stored document cannot be read", op);
            rv = ERR_IO;
            break;
        }
        page->last.id = store_mongo_txid(bson_iter_as_int64(&it));
        if (bson_iter_init(&it, row) && bson_iter_find_descendant(&it, MONGO_META ".ms", &it))
            page->last.time_ms = bson_iter_as_int64(&it);
        json_array_append_new(page->items, doc);
        n++;
    }
    bson_error_t e;
    if (rv == 0 && mongoc_cursor_error(cur, &e))
        rv = fail(op, &e);
    mongoc_cursor_destroy(cur);
    session_close(m, &ss);
    bson_destroy(&filter);
    bson_destroy(&opts);
    return rv;
}

static int mongo_list_decisions(struct store *s, const struct store_query *q,
                                const struct store_pos *after, struct store_page *page)
{
    return list_rows(s, STORE_TABLE_DECISIONS, "list decisions", q, after, page);
}

static int mongo_list_exceptions(struct store *s, const struct store_query *q,
                                 const struct store_pos *after, struct store_page *page)
{
    return list_rows(s, STORE_TABLE_EXCEPTIONS, "list exceptions", q, after, page);
}

/* Lists an id-ordered collection newest first (dead letters, attempt records): filter extra,
 * ids below after->id; each document through conv. */
static int list_numbered(struct store *s, enum store_table t, const char *op, bson_t *filter,
                         const struct store_query *q, const struct store_pos *after,
                         struct store_page *page, json_t *(*conv)(const bson_t *))
{
    struct mongo_store *m = ms_of(s);
    if (after)
        BCON_APPEND(filter, "_id", "{", "$lt",
                    BCON_INT64(after->id > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)after->id),
                    "}");
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "limit",
                            BCON_INT64((int64_t)q->limit + 1));
    struct session ss;
    session_open(m, t, &ss);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ss.coll, filter, opts, NULL);
    const bson_t *row;
    int n = 0, rv = 0;
    while (mongoc_cursor_next(cur, &row)) {
        if (n == q->limit) {
            page->more = true;
            break;
        }
        bson_iter_t it;
        if (bson_iter_init_find(&it, row, "_id"))
            page->last.id = (uint64_t)bson_iter_as_int64(&it);
        json_array_append_new(page->items, conv(row));
        n++;
    }
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e))
        rv = fail(op, &e);
    mongoc_cursor_destroy(cur);
    session_close(m, &ss);
    bson_destroy(opts);
    return rv;
}

static const char *iter_utf8(const bson_t *row, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, row, key) && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_iter_utf8(&it, NULL)
               : "";
}

static int64_t iter_int(const bson_t *row, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, row, key) ? bson_iter_as_int64(&it) : 0;
}

static json_t *deadletter_json(const bson_t *row)
{
    bson_iter_t it;
    const uint8_t *bin = NULL;
    uint32_t blen = 0;
    bson_subtype_t sub;
    if (bson_iter_init_find(&it, row, "payload") && BSON_ITER_HOLDS_BINARY(&it))
        bson_iter_binary(&it, &sub, &blen, &bin);
    /* payloads are arbitrary bytes: invalid UTF-8 is replaced, as the SQLite backend does */
    char *text = xmalloc(blen + 1);
    memcpy(text, bin ? (const char *)bin : "", blen);
    text[blen] = '\0';
    json_t *p = json_stringn(text, blen);
    if (p == NULL) {
        for (uint32_t i = 0; i < blen; i++)
            if ((unsigned char)text[i] >= 0x80 || text[i] == '\0')
                text[i] = '?';
        p = json_stringn(text, blen);
    }
    free(text);
    return json_pack("{s:I, s:s, s:s, s:I, s:o}", "id", (json_int_t)iter_int(row, "_id"), "source",
                     iter_utf8(row, "source"), "reason", iter_utf8(row, "reason"), "ts_ms",
                     (json_int_t)iter_int(row, "ts_ms"), "payload", p);
}

static int mongo_list_deadletters(struct store *s, const struct store_query *q,
                                  const struct store_pos *after, struct store_page *page)
{
    bson_t *filter = bson_new();
    int rv = list_numbered(s, STORE_TABLE_DEAD_LETTERS, "list dead letters", filter, q, after, page,
                           deadletter_json);
    bson_destroy(filter);
    return rv;
}

static int mongo_account_history(struct store *s, const char *account, const uint64_t *exclude_txid,
                                 int max_rows, struct store_history *out)
{
    struct mongo_store *m = ms_of(s);
    bson_t *match = BCON_NEW(MONGO_META ".account", BCON_UTF8(account));
    if (exclude_txid)
        BCON_APPEND(match, "_id", "{", "$ne", BCON_INT64(store_mongo_key(*exclude_txid)), "}");
    bson_t *pipeline =
        BCON_NEW("pipeline", "[", "{", "$match", BCON_DOCUMENT(match), "}", "{", "$sort", "{",
                 MONGO_META ".ms", BCON_INT32(-1), "_id", BCON_INT32(-1), "}", "}", "{", "$limit",
                 BCON_INT64(max_rows), "}", "{", "$group", "{", "_id", BCON_NULL, "count", "{",
                 "$sum", BCON_INT32(1), "}", "mean", "{", "$avg", BCON_UTF8("$amount"), "}", "max",
                 "{", "$max", BCON_UTF8("$amount"), "}", "}", "}", "]");
    struct session ss;
    session_open(m, STORE_TABLE_TRANSACTIONS, &ss);
    mongoc_cursor_t *cur =
        mongoc_collection_aggregate(ss.coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    const bson_t *row;
    if (mongoc_cursor_next(cur, &row)) {
        bson_iter_t it;
        out->count = iter_int(row, "count");
        if (bson_iter_init_find(&it, row, "mean") && BSON_ITER_HOLDS_NUMBER(&it))
            out->mean = bson_iter_as_double(&it);
        if (bson_iter_init_find(&it, row, "max") && BSON_ITER_HOLDS_NUMBER(&it))
            out->max = bson_iter_as_double(&it);
    }
    bson_error_t e;
    int rv = mongoc_cursor_error(cur, &e) ? fail("account history", &e) : 0;
    mongoc_cursor_destroy(cur);
    session_close(m, &ss);
    bson_destroy(pipeline);
    bson_destroy(match);
    return rv;
}

static int64_t count_filter(struct mongo_store *m, enum store_table t, const bson_t *filter)
{
    struct session ss;
    session_open(m, t, &ss);
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(ss.coll, filter, NULL, NULL, NULL, &e);
    session_close(m, &ss);
    return n >= 0 ? n : fail("count", &e);
}

static int64_t mongo_count(struct store *s, enum store_table table)
{
    bson_t empty = BSON_INITIALIZER;
    int64_t n = count_filter(ms_of(s), table, &empty);
    bson_destroy(&empty);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Webhooks                                                                                     */

/* The subscription document as stored: its JSON plus the id and enabled flag the queries use. */
static bson_t *hook_doc(const struct store_webhook *w)
{
    bson_error_t e;
    bson_t *doc = bson_new_from_json((const uint8_t *)w->json, -1, &e);
    if (doc == NULL)
        return NULL;
    bson_t *out = BCON_NEW("_id", BCON_UTF8(w->id), "enabled", BCON_BOOL(w->enabled), "created_ms",
                           BCON_INT64(w->created_ms));
    BSON_APPEND_DOCUMENT(out, "doc", doc);
    bson_destroy(doc);
    return out;
}

static int mongo_webhook_insert(struct store *s, const struct store_webhook *w, int max)
{
    struct mongo_store *m = ms_of(s);
    int64_t n = mongo_count(s, STORE_TABLE_WEBHOOKS);
    if (n < 0)
        return (int)n;
    if (n >= max)
        return ERR_FULL;
    bson_t *doc = hook_doc(w);
    if (doc == NULL)
        return ERR_INVAL;
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOKS, &ss);
    bson_error_t e;
    int rv = 0;
    if (!mongoc_collection_insert_one(ss.coll, doc, NULL, NULL, &e))
        rv = e.code == 11000 ? ERR_EXISTS : fail("insert webhook", &e);
    session_close(m, &ss);
    bson_destroy(doc);
    return rv;
}

/* Deletes the documents of table t whose webhook_id is id; *n receives how many. */
static int delete_of_hook(struct mongo_store *m, enum store_table t, const char *id, int64_t *n)
{
    struct session ss;
    session_open(m, t, &ss);
    bson_t *filter = BCON_NEW("webhook_id", BCON_UTF8(id));
    bson_t reply;
    bson_error_t e;
    int rv = mongoc_collection_delete_many(ss.coll, filter, NULL, &reply, &e)
                 ? 0
                 : fail("delete webhook rows", &e);
    if (rv == 0 && n)
        *n = iter_int(&reply, "deletedCount");
    bson_destroy(&reply);
    bson_destroy(filter);
    session_close(m, &ss);
    return rv;
}

static int mongo_webhook_update(struct store *s, const struct store_webhook *w, int64_t *dropped)
{
    struct mongo_store *m = ms_of(s);
    bson_t *doc = hook_doc(w);
    if (doc == NULL)
        return ERR_INVAL;
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOKS, &ss);
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(w->id));
    bson_t reply;
    bson_error_t e;
    int rv = mongoc_collection_replace_one(ss.coll, sel, doc, NULL, &reply, &e)
                 ? 0
                 : fail("update webhook", &e);
    if (rv == 0 && iter_int(&reply, "matchedCount") == 0)
        rv = ERR_NOTFOUND;
    bson_destroy(&reply);
    bson_destroy(sel);
    bson_destroy(doc);
    session_close(m, &ss);
    if (rv == 0 && !w->enabled)
        rv = delete_of_hook(m, STORE_TABLE_WEBHOOK_OUTBOX, w->id, dropped);
    return rv;
}

static int mongo_webhook_delete(struct store *s, const char *id, int64_t *dropped)
{
    struct mongo_store *m = ms_of(s);
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOKS, &ss);
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(id));
    bson_t reply;
    bson_error_t e;
    int rv = mongoc_collection_delete_one(ss.coll, sel, NULL, &reply, &e)
                 ? 0
                 : fail("delete webhook", &e);
    if (rv == 0 && iter_int(&reply, "deletedCount") == 0)
        rv = ERR_NOTFOUND;
    bson_destroy(&reply);
    bson_destroy(sel);
    session_close(m, &ss);
    if (rv == 0)
        rv = delete_of_hook(m, STORE_TABLE_WEBHOOK_OUTBOX, id, dropped);
    if (rv == 0)
        rv = delete_of_hook(m, STORE_TABLE_WEBHOOK_DELIVERIES, id, NULL);
    return rv;
}

/* The "doc" member of a subscription document as JSON. */
static json_t *hook_json(const bson_t *row)
{
    bson_iter_t it;
    const uint8_t *data = NULL;
    uint32_t len = 0;
    if (!bson_iter_init_find(&it, row, "doc") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return NULL;
    bson_iter_document(&it, &len, &data);
    bson_t sub;
    if (!bson_init_static(&sub, data, len))
        return NULL;
    return store_mongo_doc_json(&sub);
}

static int mongo_webhook_get(struct store *s, const char *id, json_t **doc)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    bson_t *row = NULL;
    int rv = find_one(ms_of(s), STORE_TABLE_WEBHOOKS, "get webhook", filter, &row);
    bson_destroy(filter);
    if (rv == 0 && row == NULL)
        return ERR_NOTFOUND;
    if (rv == 0 && (*doc = hook_json(row)) == NULL)
        rv = ERR_IO;
    bson_destroy(row);
    return rv;
}

static int mongo_webhook_list(struct store *s, json_t *items)
{
    struct mongo_store *m = ms_of(s);
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOKS, &ss);
    bson_t *filter = bson_new();
    bson_t *opts = BCON_NEW("sort", "{", "created_ms", BCON_INT32(1), "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ss.coll, filter, opts, NULL);
    const bson_t *row;
    while (mongoc_cursor_next(cur, &row)) {
        json_t *doc = hook_json(row);
        if (doc)
            json_array_append_new(items, doc);
    }
    bson_error_t e;
    int rv = mongoc_cursor_error(cur, &e) ? fail("list webhooks", &e) : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    session_close(m, &ss);
    return rv;
}

static int mongo_outbox_put(struct store *s, const struct store_outbox *rows, size_t n)
{
    return insert_outbox(ms_of(s), rows, n);
}

/* The ids of the enabled subscriptions as a {$in: [...]} value appended to filter under key. */
static int append_enabled(struct mongo_store *m, bson_t *filter, const char *key)
{
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOKS, &ss);
    bson_t *q = BCON_NEW("enabled", BCON_BOOL(true));
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ss.coll, q, opts, NULL);
    bson_t in, arr;
    BSON_APPEND_DOCUMENT_BEGIN(filter, key, &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    const bson_t *row;
    int i = 0;
    while (mongoc_cursor_next(cur, &row)) {
        char k[16];
        snprintf(k, sizeof k, "%d", i++);
        BSON_APPEND_UTF8(&arr, k, iter_utf8(row, "_id"));
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(filter, &in);
    bson_error_t e;
    int rv = mongoc_cursor_error(cur, &e) ? fail("enabled webhooks", &e) : 0;
    mongoc_cursor_destroy(cur);
    bson_destroy(q);
    bson_destroy(opts);
    session_close(m, &ss);
    return rv;
}

static int mongo_outbox_claim(struct store *s, int64_t now_ms, int64_t lease_until_ms, int max,
                              struct store_claim *out, int *n)
{
    struct mongo_store *m = ms_of(s);
    bson_t *filter = BCON_NEW("due_ms", "{", "$lte", BCON_INT64(now_ms), "}");
    int rv = append_enabled(m, filter, "webhook_id");
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOK_OUTBOX, &ss);
    bson_t *sort = BCON_NEW("due_ms", BCON_INT32(1), "_id", BCON_INT32(1));
    bson_t *update = BCON_NEW("$set", "{", "due_ms", BCON_INT64(lease_until_ms), "}", "$inc", "{",
                              "attempts", BCON_INT32(1), "}");
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(fam, sort);
    mongoc_find_and_modify_opts_set_update(fam, update);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    while (rv == 0 && *n < max) {
        bson_t reply;
        bson_error_t e;
        bson_iter_t it;
        if (!mongoc_collection_find_and_modify_with_opts(ss.coll, filter, fam, &reply, &e)) {
            rv = fail("claim webhook outbox", &e);
        } else if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_t row;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&row, data, len);
            struct store_claim *c = &out[(*n)++];
            c->id = iter_int(&row, "_id");
            snprintf(c->webhook_id, sizeof c->webhook_id, "%s", iter_utf8(&row, "webhook_id"));
            snprintf(c->msg_id, sizeof c->msg_id, "%s", iter_utf8(&row, "msg_id"));
            snprintf(c->event_type, sizeof c->event_type, "%s", iter_utf8(&row, "event_type"));
            c->payload = xstrdup(iter_utf8(&row, "payload"));
            c->payload_len = strlen(c->payload);
            c->attempt = (int)iter_int(&row, "attempts");
            c->created_ms = iter_int(&row, "created_ms");
        } else {
            bson_destroy(&reply);
            break; /* nothing more is due */
        }
        bson_destroy(&reply);
    }
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(sort);
    bson_destroy(update);
    bson_destroy(filter);
    session_close(m, &ss);
    return rv;
}

static int mongo_outbox_finish(struct store *s, const struct store_attempt *a, int keep)
{
    struct mongo_store *m = ms_of(s);
    bool retry = strcmp(a->outcome, "retry") == 0;
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOK_OUTBOX, &ss);
    bson_t *sel = BCON_NEW("_id", BCON_INT64(a->outbox_id));
    bson_t reply;
    bson_error_t e;
    bool ok;
    int64_t changed = 0;
    if (retry) {
        bson_t *upd = BCON_NEW("$set", "{", "due_ms", BCON_INT64(a->retry_at_ms), "}");
        ok = mongoc_collection_update_one(ss.coll, sel, upd, NULL, &reply, &e);
        changed = ok ? iter_int(&reply, "matchedCount") : 0;
        bson_destroy(upd);
    } else {
        ok = mongoc_collection_delete_one(ss.coll, sel, NULL, &reply, &e);
        changed = ok ? iter_int(&reply, "deletedCount") : 0;
    }
    bson_destroy(&reply);
    bson_destroy(sel);
    session_close(m, &ss);
    if (!ok)
        return fail("finish webhook attempt", &e);
    if (changed == 0)
        return ERR_NOTFOUND;
    int64_t id = next_ids(m, "webhook_deliveries", 1);
    if (id < 0)
        return ERR_IO;
    bson_t *doc =
        BCON_NEW("_id", BCON_INT64(id), "webhook_id", BCON_UTF8(a->webhook_id), "msg_id",
                 BCON_UTF8(a->msg_id), "event_type", BCON_UTF8(a->event_type), "attempt",
                 BCON_INT32(a->attempt), "ts_ms", BCON_INT64(a->ts_ms), "status_code",
                 BCON_INT32(a->status_code), "latency_ms", BCON_DOUBLE(a->latency_ms), "outcome",
                 BCON_UTF8(a->outcome), "error", BCON_UTF8(a->error ? a->error : ""));
    session_open(m, STORE_TABLE_WEBHOOK_DELIVERIES, &ss);
    int rv = mongoc_collection_insert_one(ss.coll, doc, NULL, NULL, &e)
                 ? 0
                 : fail("record webhook attempt", &e);
    session_close(m, &ss);
    bson_destroy(doc);
    return rv != 0
               ? rv
               : trim_numbered(m, STORE_TABLE_WEBHOOK_DELIVERIES, "trim webhook deliveries", keep);
}

static int mongo_outbox_release(struct store *s, int64_t outbox_id, int64_t due_ms)
{
    struct mongo_store *m = ms_of(s);
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOK_OUTBOX, &ss);
    bson_t *sel =
        BCON_NEW("_id", BCON_INT64(outbox_id), "attempts", "{", "$gt", BCON_INT32(0), "}");
    bson_t *upd = BCON_NEW("$set", "{", "due_ms", BCON_INT64(due_ms), "}", "$inc", "{", "attempts",
                           BCON_INT32(-1), "}");
    bson_error_t e;
    int rv = mongoc_collection_update_one(ss.coll, sel, upd, NULL, NULL, &e)
                 ? 0
                 : fail("release webhook outbox row", &e);
    bson_destroy(sel);
    bson_destroy(upd);
    session_close(m, &ss);
    return rv;
}

static int mongo_outbox_next_due(struct store *s, int64_t *due_ms)
{
    struct mongo_store *m = ms_of(s);
    bson_t *filter = bson_new();
    int rv = append_enabled(m, filter, "webhook_id");
    struct session ss;
    session_open(m, STORE_TABLE_WEBHOOK_OUTBOX, &ss);
    bson_t *opts = BCON_NEW("sort", "{", "due_ms", BCON_INT32(1), "}", "limit", BCON_INT64(1));
    mongoc_cursor_t *cur =
        rv == 0 ? mongoc_collection_find_with_opts(ss.coll, filter, opts, NULL) : NULL;
    const bson_t *row;
    if (rv == 0) {
        rv = mongoc_cursor_next(cur, &row) ? (*due_ms = iter_int(row, "due_ms"), 0) : ERR_NOTFOUND;
        bson_error_t e;
        if (mongoc_cursor_error(cur, &e))
            rv = fail("next webhook due time", &e);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    session_close(m, &ss);
    return rv;
}

static json_t *attempt_json(const bson_t *row)
{
    int status = (int)iter_int(row, "status_code");
    const char *err = iter_utf8(row, "error");
    bson_iter_t it;
    double latency = bson_iter_init_find(&it, row, "latency_ms") ? bson_iter_as_double(&it) : 0;
    return json_pack(
        "{s:I, s:s, s:s, s:i, s:I, s:o, s:f, s:s, s:o}", "id", (json_int_t)iter_int(row, "_id"),
        "msg_id", iter_utf8(row, "msg_id"), "event_type", iter_utf8(row, "event_type"), "attempt",
        (int)iter_int(row, "attempt"), "ts_ms", (json_int_t)iter_int(row, "ts_ms"), "status_code",
        status > 0 ? json_integer(status) : json_null(), "latency_ms", latency, "outcome",
        iter_utf8(row, "outcome"), "error", err[0] ? json_string(err) : json_null());
}

static int mongo_list_deliveries(struct store *s, const struct store_query *q,
                                 const struct store_pos *after, struct store_page *page)
{
    bson_t *filter = BCON_NEW("webhook_id", BCON_UTF8(q->webhook_id));
    int rv = list_numbered(s, STORE_TABLE_WEBHOOK_DELIVERIES, "list webhook deliveries", filter, q,
                           after, page, attempt_json);
    bson_destroy(filter);
    return rv;
}

static const struct store_ops mongo_ops = {
    .name = "mongodb",
    .close = mongo_close,
    .ping = mongo_ping,
    .put_transactions = mongo_put_transactions,
    .put_exceptions = mongo_put_exceptions,
    .put_decisions = mongo_put_decisions,
    .put_audit = mongo_put_audit,
    .put_deadletters = mongo_put_deadletters,
    .get_decision = mongo_get_decision,
    .get_exception = mongo_get_exception,
    .list_decisions = mongo_list_decisions,
    .list_exceptions = mongo_list_exceptions,
    .list_deadletters = mongo_list_deadletters,
    .account_history = mongo_account_history,
    .count = mongo_count,
    .webhook_insert = mongo_webhook_insert,
    .webhook_update = mongo_webhook_update,
    .webhook_delete = mongo_webhook_delete,
    .webhook_get = mongo_webhook_get,
    .webhook_list = mongo_webhook_list,
    .outbox_put = mongo_outbox_put,
    .outbox_claim = mongo_outbox_claim,
    .outbox_finish = mongo_outbox_finish,
    .outbox_release = mongo_outbox_release,
    .outbox_next_due = mongo_outbox_next_due,
    .list_deliveries = mongo_list_deliveries,
};

/* ------------------------------------------------------------------------------------------ */
/* Open                                                                                         */

/* libmongoc's own log lines: warnings and errors into ours, the chatter dropped. */
static void route_mongoc_log(mongoc_log_level_t level, const char *domain, const char *message,
                             void *arg)
{
    (void)arg;
    if (level <= MONGOC_LOG_LEVEL_CRITICAL)
        log_error("store.mongoc", "%s: %s", domain, message);
    else if (level == MONGOC_LOG_LEVEL_WARNING)
        log_warn("store.mongoc", "%s: %s", domain, message);
}

int store__mongo_open(struct store *s, const struct config *cfg, char *err, size_t errlen)
{
    mongoc_log_set_handler(route_mongoc_log, NULL);
    mongoc_init();
    bson_error_t e;
    struct mongo_store *m = xcalloc(1, sizeof *m);
    m->uri = mongoc_uri_new_with_error(cfg->mongodb_uri, &e);
    if (m->uri == NULL) {
        snprintf(err, errlen, "mongodb_uri: %s", e.message);
        goto fail;
    }
    if (!mongoc_uri_has_option(m->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
        mongoc_uri_set_option_as_int32(m->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                                       MONGO_SELECT_TIMEOUT_MS);
    m->pool = mongoc_client_pool_new_with_error(m->uri, &e);
    if (m->pool == NULL) {
        snprintf(err, errlen, "mongodb_uri: %s", e.message);
        goto fail;
    }
    mongoc_client_pool_set_error_api(m->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(m->pool, "aetherisd");
    snprintf(m->db, sizeof m->db, "%s", cfg->mongodb_database);
    const char *names[STORE_TABLE_COUNT];
    store_mongo_collection_names(cfg, names);
    for (int t = 0; t < STORE_TABLE_COUNT; t++) {
        snprintf(m->names[t], sizeof m->names[t], "%s", names[t]);
        m->coll[t] = m->names[t];
    }
    /* indexes: a server that cannot be reached fails the open, as a bad SQLite path does */
    mongoc_client_t *c = mongoc_client_pool_pop(m->pool);
    mongoc_database_t *db = mongoc_client_get_database(c, m->db);
    bool ok = true;
    for (int t = 0; t < STORE_TABLE_COUNT && ok; t++) {
        bson_t *cmd =
            store_mongo_index_command(m->coll[t], (enum store_table)t, cfg->audit_ttl_days);
        if (!bson_empty(cmd))
            ok = mongoc_database_write_command_with_opts(db, cmd, NULL, NULL, &e);
        bson_destroy(cmd);
    }
    mongoc_database_destroy(db);
    mongoc_client_pool_push(m->pool, c);
    if (!ok) {
        snprintf(err, errlen, "cannot create MongoDB indexes in %s: %s", m->db, e.message);
        goto fail;
    }
    s->ops = &mongo_ops;
    s->state = m;
    return 0;
fail:
    if (m->pool)
        mongoc_client_pool_destroy(m->pool);
    mongoc_uri_destroy(m->uri);
    free(m);
    mongoc_cleanup();
    return ERR_IO;
}
