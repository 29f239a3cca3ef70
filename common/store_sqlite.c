/* SQLite store backend: implements store.h.
 *
 * Concurrency: one write connection behind a mutex (SQLite allows one writer anyway; each put is
 * one BEGIN IMMEDIATE..COMMIT) and a pool of up to STORE_READERS read connections, taken and
 * returned around each read, so API reads run in parallel with pipeline writes (WAL mode).
 * synchronous=NORMAL in WAL mode: a commit survives a process crash; a power loss may drop the
 * last commits, which the journal and stream redelivery make good.
 *
 * Keys: transactionIds are stored as SQLite INTEGER (signed 64-bit) by a plain cast, so the usual
 * ids read naturally in SQL; ids >= 2^63 are stored as negative numbers and map back exactly.
 * Lists are ordered newest first by (time, txid) with a cursor "<time>.<txid>", compared as a row
 * value, so pages stay stable while rows are inserted. */
#include "store.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>
#include <sqlite3.h>
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "log.h"
#include "xmalloc.h"

#define STORE_READERS 8 /* read connections: one per HTTP thread is plenty */
#define STORE_BUSY_TIMEOUT_MS 5000
#define AUDIT_GC_INTERVAL_MS 60000 /* expired tool-audit rows are deleted at most once a minute */
#define STORE_PATH_MAX 1024

struct store {
    char path[STORE_PATH_MAX];
    int audit_ttl_days;
    sqlite3 *writer;
    pthread_mutex_t wmu;
    int64_t last_audit_gc_ms;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
    sqlite3 *idle[STORE_READERS];
    int nidle;
    int nopen;
};

static const char *const schema =
    "CREATE TABLE IF NOT EXISTS transactions (txid INTEGER PRIMARY KEY, account TEXT NOT NULL,"
    " amount REAL NOT NULL, ingested_ms INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS transactions_account ON transactions(account, ingested_ms);"
    "CREATE TABLE IF NOT EXISTS exceptions (txid INTEGER PRIMARY KEY, account TEXT NOT NULL,"
    " priority TEXT NOT NULL, suspicion REAL, z REAL, detected_ms INTEGER NOT NULL,"
    " doc TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS exceptions_time ON exceptions(detected_ms, txid);"
    "CREATE INDEX IF NOT EXISTS exceptions_account ON exceptions(account, detected_ms);"
    "CREATE INDEX IF NOT EXISTS exceptions_priority ON exceptions(priority, detected_ms);"
    "CREATE TABLE IF NOT EXISTS decisions (txid INTEGER PRIMARY KEY, account TEXT NOT NULL,"
    " action TEXT NOT NULL, decided_ms INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS decisions_time ON decisions(decided_ms, txid);"
    "CREATE INDEX IF NOT EXISTS decisions_account ON decisions(account, decided_ms);"
    "CREATE INDEX IF NOT EXISTS decisions_action ON decisions(action, decided_ms);"
    "CREATE TABLE IF NOT EXISTS tool_audit (id INTEGER PRIMARY KEY AUTOINCREMENT, txid INTEGER,"
    " account TEXT, tool TEXT NOT NULL, ts_ms INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS tool_audit_time ON tool_audit(ts_ms);"
    "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " source TEXT NOT NULL, reason TEXT NOT NULL, ts_ms INTEGER NOT NULL, payload BLOB);"
    "PRAGMA user_version = 1;";

/* Logs one line for a SQLite failure at this boundary and maps it to an enum err. */
static int fail(sqlite3 *db, const char *what)
{
    log_error("store.sqlite", "%s: %s", what, sqlite3_errmsg(db));
    return ERR_IO;
}

static sqlite3 *open_conn(const char *path, bool readonly, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open SQLite database %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    return db;
}

struct store *store_open(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->mongodb_uri[0] != '\0') {
        snprintf(err, errlen,
                 "mongodb_uri is set, but the MongoDB backend is not built into this "
                 "release; unset it to use SQLite (%s)",
                 cfg->sqlite_path);
        return NULL;
    }
    if (strlen(cfg->sqlite_path) >= STORE_PATH_MAX || fs_mkdirs_parent(cfg->sqlite_path) != 0) {
        snprintf(err, errlen, "cannot create the directory of %s", cfg->sqlite_path);
        return NULL;
    }
    struct store *s = xcalloc(1, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", cfg->sqlite_path);
    s->audit_ttl_days = cfg->audit_ttl_days;
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcv, NULL);
    s->writer = open_conn(s->path, false, err, errlen);
    if (s->writer == NULL)
        goto fail;
    char *msg = NULL;
    if (sqlite3_exec(s->writer, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &msg) != SQLITE_OK ||
        sqlite3_exec(s->writer, schema, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "cannot initialize %s: %s", s->path, msg ? msg : "unknown error");
        sqlite3_free(msg);
        goto fail;
    }
    return s;
fail:
    store_free(s);
    return NULL;
}

void store_free(struct store *s)
{
    if (s == NULL)
        return;
    for (int i = 0; i < s->nidle; i++)
        sqlite3_close(s->idle[i]);
    sqlite3_close(s->writer);
    pthread_cond_destroy(&s->rcv);
    pthread_mutex_destroy(&s->rmu);
    pthread_mutex_destroy(&s->wmu);
    free(s);
}

const char *store_backend_name(const struct store *s)
{
    (void)s;
    return "sqlite";
}

/* A read connection (waits while all STORE_READERS are busy); NULL if none can be opened. */
static sqlite3 *reader_take(struct store *s)
{
    pthread_mutex_lock(&s->rmu);
    while (s->nidle == 0 && s->nopen == STORE_READERS)
        pthread_cond_wait(&s->rcv, &s->rmu);
    sqlite3 *db = NULL;
    if (s->nidle > 0) {
        db = s->idle[--s->nidle];
    } else {
        char err[256];
        db = open_conn(s->path, true, err, sizeof err);
        if (db)
            s->nopen++;
        else
            log_error("store.sqlite", "%s", err);
    }
    pthread_mutex_unlock(&s->rmu);
    return db;
}

static void reader_give(struct store *s, sqlite3 *db)
{
    pthread_mutex_lock(&s->rmu);
    s->idle[s->nidle++] = db;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
}

int store_ping(struct store *s)
{
    sqlite3 *db = reader_take(s);
    if (db == NULL)
        return ERR_IO;
    int rv = sqlite3_exec(db, "SELECT 1", NULL, NULL, NULL) == SQLITE_OK ? 0 : ERR_IO;
    reader_give(s, db);
    return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                       */

static int begin(struct store *s)
{
    pthread_mutex_lock(&s->wmu);
    if (sqlite3_exec(s->writer, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        int rv = fail(s->writer, "BEGIN");
        pthread_mutex_unlock(&s->wmu);
        return rv;
    }
    return 0;
}

/* Commits (rv == 0) or rolls back, and releases the writer. */
static int finish(struct store *s, sqlite3_stmt *st, int rv)
{
    sqlite3_finalize(st);
    if (rv == 0 && sqlite3_exec(s->writer, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rv = fail(s->writer, "COMMIT");
    if (rv != 0)
        sqlite3_exec(s->writer, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->wmu);
    return rv;
}

static int prepare(struct store *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(s->writer, sql, -1, st, NULL) != SQLITE_OK)
        return fail(s->writer, sql);
    return 0;
}

static int step_done(struct store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : fail(s->writer, what);
}

/* Binds row i of rows to the statement's parameters. */
typedef void (*bind_row_fn)(sqlite3_stmt *st, const void *rows, size_t i);
/* Extra work inside the same write transaction after the inserts (trimming, expiry). */
typedef int (*after_fn)(struct store *s, int keep);

/* The one write path: BEGIN IMMEDIATE, the statement once per row, optional `after`, COMMIT (or
 * ROLLBACK on any failure). inserted[i], when given, tells whether row i was new. */
static int put_rows(struct store *s, const char *sql, const void *rows, size_t n, bind_row_fn bind,
                    bool *inserted, after_fn after, int keep)
{
    if (n == 0)
        return 0;
    sqlite3_stmt *st = NULL;
    int rv = begin(s);
    if (rv != 0)
        return rv;
    rv = prepare(s, sql, &st);
    for (size_t i = 0; i < n && rv == 0; i++) {
        bind(st, rows, i);
        rv = step_done(s, st, sql);
        if (rv == 0 && inserted)
            inserted[i] = sqlite3_changes(s->writer) > 0;
    }
    if (rv == 0 && after)
        rv = after(s, keep);
    return finish(s, st, rv);
}

static void bind_txn(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_txn *r = (const struct store_txn *)rows + i;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->txid);
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, r->amount);
    sqlite3_bind_int64(st, 4, r->ingested_ms);
    sqlite3_bind_text(st, 5, r->json, -1, SQLITE_STATIC);
}

static void bind_exception(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_exception *r = (const struct store_exception *)rows + i;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->txid);
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->priority, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 4, r->suspicion);
    sqlite3_bind_double(st, 5, r->z);
    sqlite3_bind_int64(st, 6, r->detected_ms);
    sqlite3_bind_text(st, 7, r->json, -1, SQLITE_STATIC);
}

static void bind_decision(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_decision *r = (const struct store_decision *)rows + i;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->txid);
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->action, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r->decided_ms);
    sqlite3_bind_text(st, 5, r->json, -1, SQLITE_STATIC);
}

static void bind_audit(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_audit *r = (const struct store_audit *)rows + i;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)r->txid);
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->tool, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r->ts_ms);
    sqlite3_bind_text(st, 5, r->json, -1, SQLITE_STATIC);
}

static void bind_deadletter(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_deadletter *r = (const struct store_deadletter *)rows + i;
    sqlite3_bind_text(st, 1, r->source, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->ts_ms);
    sqlite3_bind_blob(st, 4, r->payload, (int)r->payload_len, SQLITE_STATIC);
}

/* Deletes tool-audit rows past audit_ttl_days, at most once per AUDIT_GC_INTERVAL_MS. */
static int expire_audit(struct store *s, int unused)
{
    (void)unused;
    int64_t now = clock_wall_ms();
    if (now - s->last_audit_gc_ms < AUDIT_GC_INTERVAL_MS)
        return 0;
    s->last_audit_gc_ms = now;
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM tool_audit WHERE ts_ms < %lld",
             (long long)(now - (int64_t)s->audit_ttl_days * 86400000LL));
    return sqlite3_exec(s->writer, sql, NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : fail(s->writer, "expire tool audit");
}

/* Keeps only the newest `keep` dead letters. */
static int trim_deadletters(struct store *s, int keep)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "DELETE FROM dead_letters WHERE id <= (SELECT id FROM dead_letters ORDER BY id "
             "DESC LIMIT 1 OFFSET %d)",
             keep);
    return sqlite3_exec(s->writer, sql, NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : fail(s->writer, "trim dead letters");
}

int store_put_transactions(struct store *s, const struct store_txn *rows, size_t n)
{
    return put_rows(s, "INSERT OR IGNORE INTO transactions VALUES (?,?,?,?,?)", rows, n, bind_txn,
                    NULL, NULL, 0);
}

int store_put_exceptions(struct store *s, const struct store_exception *rows, size_t n)
{
    return put_rows(s, "INSERT OR IGNORE INTO exceptions VALUES (?,?,?,?,?,?,?)", rows, n,
                    bind_exception, NULL, NULL, 0);
}

int store_put_decisions(struct store *s, const struct store_decision *rows, size_t n,
                        bool *inserted)
{
    return put_rows(s, "INSERT OR IGNORE INTO decisions VALUES (?,?,?,?,?)", rows, n, bind_decision,
                    inserted, NULL, 0);
}

int store_put_audit(struct store *s, const struct store_audit *rows, size_t n)
{
    return put_rows(s,
                    "INSERT INTO tool_audit (txid, account, tool, ts_ms, doc) VALUES (?,?,?,?,?)",
                    rows, n, bind_audit, NULL, expire_audit, 0);
}

int store_put_deadletters(struct store *s, const struct store_deadletter *rows, size_t n, int keep)
{
    return put_rows(s, "INSERT INTO dead_letters (source, reason, ts_ms, payload) VALUES (?,?,?,?)",
                    rows, n, bind_deadletter, NULL, trim_deadletters, keep);
}

/* ------------------------------------------------------------------------------------------ */
/* Reads                                                                                        */

static int get_doc(struct store *s, const char *sql, uint64_t txid, json_t **doc)
{
    *doc = NULL;
    sqlite3 *db = reader_take(s);
    if (db == NULL)
        return ERR_IO;
    sqlite3_stmt *st = NULL;
    int rv = ERR_NOTFOUND;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        rv = fail(db, sql);
        goto out;
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)txid);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *doc = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        rv = *doc ? 0 : ERR_IO;
    } else if (rc != SQLITE_DONE) {
        rv = fail(db, sql);
    }
out:
    sqlite3_finalize(st);
    reader_give(s, db);
    return rv;
}

int store_get_decision(struct store *s, uint64_t txid, json_t **doc)
{
    return get_doc(s, "SELECT doc FROM decisions WHERE txid = ?", txid, doc);
}

int store_get_exception(struct store *s, uint64_t txid, json_t **doc)
{
    return get_doc(s, "SELECT doc FROM exceptions WHERE txid = ?", txid, doc);
}

/* Parses "<int64>.<int64>" (or "<int64>" when want_two is false). */
static int parse_cursor(const char *c, bool want_two, long long *a, long long *b)
{
    char *end = NULL;
    errno = 0;
    *a = strtoll(c, &end, 10);
    if (end == c || errno != 0)
        return ERR_INVAL;
    if (!want_two)
        return *end == '\0' ? 0 : ERR_INVAL;
    if (*end != '.')
        return ERR_INVAL;
    const char *p = end + 1;
    *b = strtoll(p, &end, 10);
    return (end == p || *end != '\0' || errno != 0) ? ERR_INVAL : 0;
}

/* Lists docs of `table` newest first by (time_col, txid), filtered by account and kind_col. */
static int list_docs(struct store *s, const char *table, const char *time_col, const char *kind_col,
                     const struct store_query *q, json_t **items,
                     char next_cursor[STORE_CURSOR_MAX])
{
    long long ct = 0, cx = 0;
    *items = NULL;
    next_cursor[0] = '\0';
    if (q->cursor && q->cursor[0] && parse_cursor(q->cursor, true, &ct, &cx) != 0)
        return ERR_INVAL;
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT %s, txid, doc FROM %s WHERE (?1 IS NULL OR account = ?1) AND "
             "(?2 IS NULL OR %s = ?2) AND %s >= ?3 AND %s < ?4 AND "
             "(?5 IS NULL OR (%s, txid) < (?5, ?6)) ORDER BY %s DESC, txid DESC LIMIT ?7",
             time_col, table, kind_col, time_col, time_col, time_col, time_col);
    sqlite3 *db = reader_take(s);
    if (db == NULL)
        return ERR_IO;
    sqlite3_stmt *st = NULL;
    int rv = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        rv = fail(db, "list");
        goto out;
    }
    if (q->account)
        sqlite3_bind_text(st, 1, q->account, -1, SQLITE_STATIC);
    if (q->kind)
        sqlite3_bind_text(st, 2, q->kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, q->since_ms > 0 ? q->since_ms : INT64_MIN);
    sqlite3_bind_int64(st, 4, q->until_ms > 0 ? q->until_ms : INT64_MAX);
    if (q->cursor && q->cursor[0]) {
        sqlite3_bind_int64(st, 5, ct);
        sqlite3_bind_int64(st, 6, cx);
    }
    sqlite3_bind_int(st, 7, q->limit + 1);
    *items = json_array();
    int rc, n = 0;
    long long last_t = 0, last_x = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == q->limit) {
            snprintf(next_cursor, STORE_CURSOR_MAX, "%lld.%lld", last_t, last_x);
            break;
        }
        last_t = sqlite3_column_int64(st, 0);
        last_x = sqlite3_column_int64(st, 1);
        json_t *doc = json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL);
        json_array_append_new(*items, doc ? doc : json_null());
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = fail(db, "list step");
out:
    sqlite3_finalize(st);
    reader_give(s, db);
    if (rv != 0) {
        json_decref(*items);
        *items = NULL;
    }
    return rv;
}

int store_list_decisions(struct store *s, const struct store_query *q, json_t **items,
                         char next_cursor[STORE_CURSOR_MAX])
{
    return list_docs(s, "decisions", "decided_ms", "action", q, items, next_cursor);
}

int store_list_exceptions(struct store *s, const struct store_query *q, json_t **items,
                          char next_cursor[STORE_CURSOR_MAX])
{
    return list_docs(s, "exceptions", "detected_ms", "priority", q, items, next_cursor);
}

/* The payload as a JSON string: invalid UTF-8 bytes become U+FFFD. */
static json_t *payload_string(const unsigned char *p, size_t n)
{
    char *out = xmalloc(n * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[i + k] & 0xC0) == 0x80;
        if (ok && c != 0) {
            memcpy(out + o, p + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *s = json_stringn(out, o);
    free(out);
    return s ? s : json_string("");
}

int store_list_deadletters(struct store *s, const struct store_query *q, json_t **items,
                           char next_cursor[STORE_CURSOR_MAX])
{
    long long cid = 0, unused = 0;
    *items = NULL;
    next_cursor[0] = '\0';
    if (q->cursor && q->cursor[0] && parse_cursor(q->cursor, false, &cid, &unused) != 0)
        return ERR_INVAL;
    sqlite3 *db = reader_take(s);
    if (db == NULL)
        return ERR_IO;
    sqlite3_stmt *st = NULL;
    int rv = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, source, reason, ts_ms, payload FROM dead_letters WHERE "
                           "(?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = fail(db, "list dead letters");
        goto out;
    }
    if (q->cursor && q->cursor[0])
        sqlite3_bind_int64(st, 1, cid);
    sqlite3_bind_int(st, 2, q->limit + 1);
    *items = json_array();
    int rc, n = 0;
    long long last = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == q->limit) {
            snprintf(next_cursor, STORE_CURSOR_MAX, "%lld", last);
            break;
        }
        last = sqlite3_column_int64(st, 0);
        json_t *payload =
            payload_string(sqlite3_column_blob(st, 4), (size_t)sqlite3_column_bytes(st, 4));
        json_array_append_new(*items, json_pack("{s:I, s:s, s:s, s:I, s:o}", "id", (json_int_t)last,
                                                "source", (const char *)sqlite3_column_text(st, 1),
                                                "reason", (const char *)sqlite3_column_text(st, 2),
                                                "ts_ms", (json_int_t)sqlite3_column_int64(st, 3),
                                                "payload", payload));
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = fail(db, "list dead letters step");
out:
    sqlite3_finalize(st);
    reader_give(s, db);
    if (rv != 0) {
        json_decref(*items);
        *items = NULL;
    }
    return rv;
}

int store_account_history(struct store *s, const char *account, int max_rows,
                          struct store_history *out)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db = reader_take(s);
    if (db == NULL)
        return ERR_IO;
    sqlite3_stmt *st = NULL;
    int rv = 0;
    if (sqlite3_prepare_v2(db,
                           "SELECT COUNT(*), COALESCE(AVG(amount), 0), COALESCE(MAX(amount), 0) "
                           "FROM (SELECT amount FROM transactions WHERE account = ? "
                           "ORDER BY ingested_ms DESC, txid DESC LIMIT ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rv = fail(db, "history");
        goto out;
    }
    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, max_rows);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->count = sqlite3_column_int64(st, 0);
        out->mean = sqlite3_column_double(st, 1);
        out->max = sqlite3_column_double(st, 2);
    } else {
        rv = fail(db, "history step");
    }
out:
    sqlite3_finalize(st);
    reader_give(s, db);
    return rv;
}

int64_t store_count(struct store *s, const char *table)
{
    static const char *const tables[] = {"transactions", "exceptions", "decisions", "tool_audit",
                                         "dead_letters"};
    bool known = false;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        known = known || strcmp(table, tables[i]) == 0;
    if (!known)
        return ERR_INVAL;
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
    sqlite3 *db = reader_take(s);
    if (db == NULL)
        return ERR_IO;
    sqlite3_stmt *st = NULL;
    int64_t n = ERR_IO;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        fail(db, sql);
    sqlite3_finalize(st);
    reader_give(s, db);
    return n;
}
