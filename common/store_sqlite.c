/* SQLite backend of the store (store_backend.h; the contract is store.h).
 *
 * Connections. One write connection behind a mutex: SQLite has one writer per database anyway,
 * and each put is one BEGIN IMMEDIATE..COMMIT, so a batch is atomic and the lock is taken up
 * front instead of failing half-way. Reads take a read-only connection from a small pool (opened
 * on demand, at most SQL_READERS; further readers wait for one to come back), so API reads run
 * in parallel with pipeline writes (WAL mode). Every connection caches its prepared statements,
 * prepared on first use, and resets them before it is given back, so no read transaction stays
 * open between calls (it would hold back WAL checkpoints).
 * Durability: synchronous=NORMAL in WAL mode; a commit survives a process crash, a power loss may
 * drop the last commits, which the pipeline's journal and Redis redelivery make good.
 *
 * Keys. SQLite integers are signed 64-bit, transactionIds are unsigned. A txid is stored by a
 * two's-complement cast (key_of/txid_of): exact both ways, and every id below 2^63 (all real
 * ones) reads as itself in SQL, which the e2e suite and operators with the sqlite3 shell rely
 * on; ids from 2^63 up are stored as negative numbers. So SQL orders keys as signed numbers:
 * among rows of the same millisecond, ids >= 2^63 come after the smaller ones. That is still
 * one total order, which is all paging needs. (The other choice, txid XOR 2^63, orders as
 * unsigned but shifts every id seen in SQL; a tie-break within one millisecond is not worth it.)
 *
 * Lists are newest first by (time desc, key desc), with the position after which to continue
 * compared as a row value, so pages stay stable while rows are inserted. Each combination of
 * filters has its own cached statement (LF_* bits), which keeps every statement indexable rather
 * than one statement full of "?1 IS NULL OR ..." terms.
 * Account history orders by (ingested_ms desc, txid desc): "newest" means newest ingested.
 *
 * Dead letters are returned as {"id","source","reason","ts_ms","payload"}, every text member a
 * JSON string: each byte that does not start a well-formed UTF-8 sequence (Unicode 15 table 3-7),
 * and each NUL byte, is replaced by U+FFFD, so C consumers never see a truncated string.
 *
 * Webhooks: subscriptions are documents keyed by id with an `enabled` column the outbox queries
 * join on. The outbox is a table of due times: a claim (UPDATE .. RETURNING, SQLite >= 3.35)
 * counts the attempt and pushes due_ms out to a lease, so a claimed row is invisible to the next
 * claim and reappears by itself if the daemon dies mid-attempt; finishing an attempt writes its
 * record and deletes or reschedules the row in one transaction. Attempt records are trimmed to
 * the newest `keep` like dead letters, but only on every TRIM_EVERY-th insert (a trim scans up to
 * `keep` index entries), so up to TRIM_EVERY - 1 more may be kept for a while.
 *
 * Errors: every SQLite failure becomes ERR_IO (ERR_CONN when no connection can be opened) plus
 * one log line "store.sqlite_error" naming the operation, at the operation's boundary.
 * Expired tool-audit rows (older than audit_ttl_days; never when it is <= 0) are deleted inside
 * a transaction that writes audit rows, at most once per AUDIT_GC_INTERVAL_MS. */
#include "store_backend.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include "clock.h"
#include "err.h"
#include "fsutil.h"
#include "histstage.h"
#include "log.h"
#include "xmalloc.h"

#define SQL_READERS 8              /* read connections: one per HTTP worker thread is plenty */
#define SQL_BUSY_TIMEOUT_MS 5000   /* wait for a lock this long before failing the call */
#define AUDIT_GC_INTERVAL_MS 60000 /* expired tool-audit rows are deleted at most once a minute */
#define MS_PER_DAY 86400000LL
#define SCHEMA_VERSION 4 /* PRAGMA user_version of the tables below */
#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)
#define ERRMSG_MAX 256
#define TRIM_EVERY 256 /* webhook attempt records are trimmed on every 256th insert */

/* Which filters a list statement has: one cached statement per combination. */
enum list_filter {
    LF_ACCOUNT = 1,
    LF_KIND = 2,
    LF_SINCE = 4,
    LF_UNTIL = 8,
    LF_AFTER = 16,
    LF_VARIANTS = 32
};

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PUT_TXN,
    ST_PUT_STAGED,
    ST_PUT_HISTORY,
    ST_DELETE_STAGED,
    ST_PUT_EXC,
    ST_PUT_DEC,
    ST_PUT_AUDIT,
    ST_PUT_DL,
    ST_TRIM_DL,
    ST_EXPIRE_AUDIT,
    ST_PING,
    ST_GET_DEC,
    ST_GET_EXC,
    ST_HISTORY,
    ST_LIST_DL,
    ST_LIST_DL_AFTER,
    ST_PUT_OUTBOX,
    ST_WH_INSERT,
    ST_WH_UPDATE,
    ST_WH_DELETE,
    ST_WH_GET,
    ST_WH_LIST,
    ST_OUTBOX_DROP,
    ST_OUTBOX_CLAIM,
    ST_OUTBOX_DONE,
    ST_OUTBOX_RETRY,
    ST_OUTBOX_RELEASE,
    ST_OUTBOX_NEXT_DUE,
    ST_DELIV_PUT,
    ST_DELIV_TRIM,
    ST_DELIV_DROP,
    ST_DELIV_LIST,
    ST_DELIV_LIST_AFTER,
    ST_FIXED, /* statements below are built: counts per table, then list variants */
    ST_COUNT_FIRST = ST_FIXED,
    ST_LIST_DEC_FIRST = ST_COUNT_FIRST + STORE_TABLE_COUNT,
    ST_LIST_EXC_FIRST = ST_LIST_DEC_FIRST + LF_VARIANTS,
    ST_N = ST_LIST_EXC_FIRST + LF_VARIANTS
};

static const char *const fixed_sql[ST_FIXED] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PUT_TXN] = "INSERT OR IGNORE INTO transactions (txid, account, amount, ingested_ms, doc)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PUT_STAGED] = "INSERT INTO txn_staged (bucket, account, ingested_ms, txid, amount)"
                      " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PUT_HISTORY] = "INSERT OR IGNORE INTO txn_history (bucket, account, ingested_ms, txid,"
                       " amount) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_DELETE_STAGED] = "DELETE FROM txn_staged WHERE id <= ?1",
    [ST_PUT_EXC] = "INSERT OR IGNORE INTO exceptions (txid, account, priority, suspicion, z,"
                   " detected_ms, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_PUT_DEC] = "INSERT OR IGNORE INTO decisions (txid, account, action, decided_ms, doc)"
                   " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PUT_AUDIT] = "INSERT INTO tool_audit (txid, account, tool, ts_ms, doc)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_PUT_DL] =
        "INSERT INTO dead_letters (source, reason, ts_ms, payload) VALUES (?1, ?2, ?3, ?4)",
    [ST_TRIM_DL] = "DELETE FROM dead_letters WHERE id <= (SELECT id FROM dead_letters"
                   " ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    [ST_EXPIRE_AUDIT] = "DELETE FROM tool_audit WHERE ts_ms < ?1",
    [ST_PING] = "SELECT 1",
    [ST_GET_DEC] = "SELECT doc FROM decisions WHERE txid = ?1",
    [ST_GET_EXC] = "SELECT doc FROM exceptions WHERE txid = ?1",
    [ST_HISTORY] = "SELECT amount, ingested_ms, txid FROM txn_history WHERE bucket = ?1"
                   " AND account = ?2 AND txid IS NOT ?3 ORDER BY ingested_ms DESC, txid DESC"
                   " LIMIT ?4",
    [ST_LIST_DL] = "SELECT id, source, reason, ts_ms, payload FROM dead_letters"
                   " ORDER BY id DESC LIMIT ?2",
    [ST_LIST_DL_AFTER] = "SELECT id, source, reason, ts_ms, payload FROM dead_letters"
                         " WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    [ST_PUT_OUTBOX] = "INSERT OR IGNORE INTO webhook_outbox (webhook_id, msg_id, event_type,"
                      " payload, created_ms, due_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    [ST_WH_INSERT] = "INSERT INTO webhooks (id, created_ms, enabled, doc) VALUES (?1, ?2, ?3, ?4)",
    [ST_WH_UPDATE] = "UPDATE webhooks SET enabled = ?2, doc = ?3 WHERE id = ?1",
    [ST_WH_DELETE] = "DELETE FROM webhooks WHERE id = ?1",
    [ST_WH_GET] = "SELECT doc FROM webhooks WHERE id = ?1",
    [ST_WH_LIST] = "SELECT doc FROM webhooks ORDER BY created_ms, id",
    [ST_OUTBOX_DROP] = "DELETE FROM webhook_outbox WHERE webhook_id = ?1",
    [ST_OUTBOX_CLAIM] =
        "UPDATE webhook_outbox SET due_ms = ?2, attempts = attempts + 1 WHERE id IN"
        " (SELECT o.id FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id"
        " WHERE o.due_ms <= ?1 AND w.enabled = 1 ORDER BY o.due_ms, o.id LIMIT ?3)"
        " RETURNING id, webhook_id, msg_id, event_type, payload, attempts, created_ms",
    [ST_OUTBOX_DONE] = "DELETE FROM webhook_outbox WHERE id = ?1",
    [ST_OUTBOX_RETRY] = "UPDATE webhook_outbox SET due_ms = ?2 WHERE id = ?1",
    [ST_OUTBOX_RELEASE] = "UPDATE webhook_outbox SET due_ms = ?2,"
                          " attempts = MAX(attempts - 1, 0) WHERE id = ?1",
    [ST_OUTBOX_NEXT_DUE] = "SELECT MIN(o.due_ms) FROM webhook_outbox o JOIN webhooks w"
                           " ON w.id = o.webhook_id WHERE w.enabled = 1",
    [ST_DELIV_PUT] = "INSERT INTO webhook_deliveries (webhook_id, msg_id, event_type, attempt,"
                     " ts_ms, status_code, latency_ms, outcome, error)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_DELIV_TRIM] = "DELETE FROM webhook_deliveries WHERE id <= (SELECT id FROM"
                      " webhook_deliveries ORDER BY id DESC LIMIT 1 OFFSET ?1)",
    [ST_DELIV_DROP] = "DELETE FROM webhook_deliveries WHERE webhook_id = ?1",
    [ST_DELIV_LIST] = "SELECT id, msg_id, event_type, attempt, ts_ms, status_code, latency_ms,"
                      " outcome, error FROM webhook_deliveries WHERE webhook_id = ?3"
                      " ORDER BY id DESC LIMIT ?2",
    [ST_DELIV_LIST_AFTER] = "SELECT id, msg_id, event_type, attempt, ts_ms, status_code,"
                            " latency_ms, outcome, error FROM webhook_deliveries"
                            " WHERE webhook_id = ?3 AND id < ?1 ORDER BY id DESC LIMIT ?2",
};

static const char *const table_sql_name[STORE_TABLE_COUNT] = {
    [STORE_TABLE_TRANSACTIONS] = "transactions",
    [STORE_TABLE_EXCEPTIONS] = "exceptions",
    [STORE_TABLE_DECISIONS] = "decisions",
    [STORE_TABLE_TOOL_AUDIT] = "tool_audit",
    [STORE_TABLE_DEAD_LETTERS] = "dead_letters",
    [STORE_TABLE_WEBHOOKS] = "webhooks",
    [STORE_TABLE_WEBHOOK_OUTBOX] = "webhook_outbox",
    [STORE_TABLE_WEBHOOK_DELIVERIES] = "webhook_deliveries",
};

/* Schema version 4 (version 1 lacked the three webhook tables; opening a version-1 file adds
 * them). Indexes on (x, time) end in the rowid (= txid), so they also serve the
 * (time desc, txid desc) order.
 * The Auditor's history (the newest 100 amounts of an account, on every decision) is
 * txn_history, keyed by (bucket, account, ingested_ms, txid) with the amount, so a lookup reads
 * one key range; bucket is histstage_bucket(account). New rows reach it in sorted bulk: each
 * transaction is also appended to txn_staged, kept in memory (histstage.h), and merged one range
 * of buckets per write; the lookup reads both. Versions 2 and 3 had an account index on
 * transactions instead, which cost every new row a random leaf page (docs/benchmarks.md,
 * "Account history in sorted bulk"); opening such a file copies the history over and drops the
 * index, once, in the schema transaction. */
static const char *const schema_sql =
    "CREATE TABLE IF NOT EXISTS transactions (txid INTEGER PRIMARY KEY, account TEXT NOT NULL,"
    " amount REAL, ingested_ms INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS txn_history (bucket INTEGER NOT NULL, account TEXT NOT NULL,"
    " ingested_ms INTEGER NOT NULL, txid INTEGER NOT NULL, amount REAL,"
    " PRIMARY KEY (bucket, account, ingested_ms, txid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS txn_staged (id INTEGER PRIMARY KEY, bucket INTEGER NOT NULL,"
    " account TEXT NOT NULL, ingested_ms INTEGER NOT NULL, txid INTEGER NOT NULL, amount REAL);"
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
    "CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,"
    " enabled INTEGER NOT NULL, doc TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS webhook_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " webhook_id TEXT NOT NULL, msg_id TEXT NOT NULL, event_type TEXT NOT NULL,"
    " payload TEXT NOT NULL, created_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, UNIQUE (webhook_id, msg_id));"
    "CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox(due_ms);"
    "CREATE TABLE IF NOT EXISTS webhook_deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " webhook_id TEXT NOT NULL, msg_id TEXT NOT NULL, event_type TEXT NOT NULL,"
    " attempt INTEGER NOT NULL, ts_ms INTEGER NOT NULL, status_code INTEGER, latency_ms REAL,"
    " outcome TEXT NOT NULL, error TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);";

struct conn {
    sqlite3 *db;
    char errmsg[ERRMSG_MAX]; /* text of the last failure, for the one log line */
    sqlite3_stmt *st[ST_N];  /* prepared on first use */
};

struct sql_store {
    char *path;
    int audit_ttl_days;
    pthread_mutex_t wmu; /* guards writer and last_gc_ms */
    struct conn *writer;
    int64_t last_gc_ms;     /* monotonic time of the last tool-audit expiry; 0 = never */
    struct histstage *hist; /* txn_staged's rows, not yet all merged into txn_history */
    pthread_mutex_t rmu;    /* guards everything below */
    pthread_cond_t rcv;     /* signalled when a reader comes back or a slot frees */
    struct conn *idle[SQL_READERS];
    int nidle;
    struct conn *all[SQL_READERS]; /* every open reader, for close */
    int nall;
    int nreserved; /* open readers plus readers being opened */
};

/* ------------------------------------------------------------------------------------------ */
/* Keys, connections and statements                                                             */

/* The two's-complement cast uint64 -> int64, without implementation-defined conversions. */
static int64_t key_of(uint64_t txid)
{
    if (txid <= (uint64_t)INT64_MAX)
        return (int64_t)txid;
    return -(int64_t)(UINT64_MAX - txid) - 1;
}

static uint64_t txid_of(int64_t key)
{
    if (key >= 0)
        return (uint64_t)key;
    return UINT64_MAX - (uint64_t)(-(key + 1));
}

/* Logs the connection's last failure once, at the operation boundary. Returns ERR_IO. */
static int fail(const struct conn *c, const char *op)
{
    log_error("store.sqlite_error", "%s: %s", op, c->errmsg[0] ? c->errmsg : "unknown error");
    return ERR_IO;
}

static void note_error(struct conn *c)
{
    snprintf(c->errmsg, sizeof c->errmsg, "%s", sqlite3_errmsg(c->db));
}

static struct conn *conn_open(const char *path, bool readonly, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX; /* one thread at a time uses a connection */
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open SQLite database %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, SQL_BUSY_TIMEOUT_MS);
    struct conn *c = xcalloc(1, sizeof *c);
    c->db = db;
    return c;
}

static void conn_close(struct conn *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < ST_N; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db);
    free(c);
}

/* The SQL of a list statement: table, time column and kind column, with the filters in mask. */
static char *list_sql(sqlite3 *db, const char *table, const char *tcol, const char *kcol,
                      unsigned mask)
{
    sqlite3_str *q = sqlite3_str_new(db);
    sqlite3_str_appendf(q, "SELECT %s, txid, doc FROM %s WHERE 1", tcol, table);
    if (mask & LF_ACCOUNT)
        sqlite3_str_appendf(q, " AND account = ?1");
    if (mask & LF_KIND)
        sqlite3_str_appendf(q, " AND %s = ?2", kcol);
    if (mask & LF_SINCE)
        sqlite3_str_appendf(q, " AND %s >= ?3", tcol);
    if (mask & LF_UNTIL)
        sqlite3_str_appendf(q, " AND %s < ?4", tcol);
    if (mask & LF_AFTER)
        sqlite3_str_appendf(q, " AND (%s, txid) < (?5, ?6)", tcol);
    sqlite3_str_appendf(q, " ORDER BY %s DESC, txid DESC LIMIT ?7", tcol);
    return sqlite3_str_finish(q);
}

/* The SQL of statement id; free it with sqlite3_free. NULL when out of memory. */
static char *stmt_sql(sqlite3 *db, enum stmt_id id)
{
    if (id < ST_FIXED)
        return sqlite3_mprintf("%s", fixed_sql[id]);
    if (id < ST_LIST_DEC_FIRST)
        return sqlite3_mprintf("SELECT COUNT(*) FROM %s", table_sql_name[id - ST_COUNT_FIRST]);
    if (id < ST_LIST_EXC_FIRST)
        return list_sql(db, "decisions", "decided_ms", "action",
                        (unsigned)(id - ST_LIST_DEC_FIRST));
    return list_sql(db, "exceptions", "detected_ms", "priority",
                    (unsigned)(id - ST_LIST_EXC_FIRST));
}

/* The connection's cached statement id, prepared on first use; NULL (errmsg noted) on failure. */
static sqlite3_stmt *stmt_get(struct conn *c, enum stmt_id id)
{
    if (c->st[id] != NULL)
        return c->st[id];
    char *sql = stmt_sql(c->db, id);
    if (sql == NULL) {
        snprintf(c->errmsg, sizeof c->errmsg, "out of memory building a statement");
        return NULL;
    }
    if (sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL) !=
        SQLITE_OK) {
        note_error(c);
        c->st[id] = NULL;
    }
    sqlite3_free(sql);
    return c->st[id];
}

/* One step; notes the error text when the step fails. */
static int step(struct conn *c, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        note_error(c);
    return rc;
}

/* Makes a statement ready for its next use (ends its read, drops its bindings). */
static void stmt_done(sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs a statement without parameters or rows. SQLITE_DONE on success. */
static int exec_stmt(struct conn *c, enum stmt_id id)
{
    sqlite3_stmt *st = stmt_get(c, id);
    if (st == NULL)
        return SQLITE_ERROR;
    int rc = step(c, st);
    stmt_done(st);
    return rc;
}

/* A read connection: an idle one, a new one while fewer than SQL_READERS exist, else waits for
 * one to come back. NULL (logged) when a new one cannot be opened. */
static struct conn *reader_take(struct sql_store *ss)
{
    struct conn *c = NULL;
    pthread_mutex_lock(&ss->rmu);
    while (ss->nidle == 0 && ss->nreserved == SQL_READERS)
        pthread_cond_wait(&ss->rcv, &ss->rmu);
    if (ss->nidle > 0) {
        c = ss->idle[--ss->nidle];
        pthread_mutex_unlock(&ss->rmu);
        return c;
    }
    ss->nreserved++; /* open outside the lock; the slot is held meanwhile */
    pthread_mutex_unlock(&ss->rmu);
    char err[ERRMSG_MAX + 64];
    c = conn_open(ss->path, true, err, sizeof err);
    pthread_mutex_lock(&ss->rmu);
    if (c != NULL) {
        ss->all[ss->nall++] = c;
    } else {
        ss->nreserved--;
        pthread_cond_signal(&ss->rcv);
    }
    pthread_mutex_unlock(&ss->rmu);
    if (c == NULL)
        log_error("store.sqlite_error", "%s", err);
    return c;
}

static void reader_give(struct sql_store *ss, struct conn *c)
{
    pthread_mutex_lock(&ss->rmu);
    ss->idle[ss->nidle++] = c;
    pthread_cond_signal(&ss->rcv);
    pthread_mutex_unlock(&ss->rmu);
}

/* ------------------------------------------------------------------------------------------ */
/* Open and close                                                                               */

static void state_free(struct sql_store *ss)
{
    if (ss == NULL)
        return;
    for (int i = 0; i < ss->nall; i++)
        conn_close(ss->all[i]);
    conn_close(ss->writer);
    histstage_free(ss->hist);
    pthread_cond_destroy(&ss->rcv);
    pthread_mutex_destroy(&ss->rmu);
    pthread_mutex_destroy(&ss->wmu);
    free(ss->path);
    free(ss);
}

static void sql_close(struct store *s)
{
    state_free(s->state);
    s->state = NULL;
}

/* The first column of the first row of sql as an integer (pragmas, counts); -1 on failure. */
static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The writer's settings, and its page cache: sqlite_cache_mib (32 MiB by default; SQLite's own
 * default is 2 MiB), which SQLite allocates page by page as pages are used, so an idle daemon does
 * not hold it; it keeps the upper levels and the recently touched leaves of the transactions
 * table and its account index, which every insert walks, instead of reading them back with
 * pread. SQLite's automatic checkpoint stays at its default (every 1000 WAL pages, run by the
 * committing thread): a tenfold interval copied far fewer pages per row but stalled the sink, and
 * the anomalies behind it, for tens of milliseconds per checkpoint (immediate-lane p99 at 5,000
 * events/s 42 ms instead of 8), and a checkpoint on a thread of its own stalled it longer
 * (docs/benchmarks.md). */
static int writer_settings(sqlite3 *db, int cache_mib, char **msg)
{
    char sql[160];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-%d; "
             "BEGIN IMMEDIATE",
             cache_mib * 1024);
    return sqlite3_exec(db, sql, NULL, NULL, msg);
}

/* SQL function aetheris_bucket(account): histstage_bucket, for the migration below. */
static void sql_bucket_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *account = sqlite3_value_text(argv[0]);
    sqlite3_result_int64(ctx, account ? histstage_bucket((const char *)account) : 0);
}

/* Version 4's history table from an older file's transactions (empty for a new file), and the
 * old account index dropped. Inside the schema transaction. */
static int migrate_history(sqlite3 *db, const char *path, char **msg)
{
    int rc = sqlite3_create_function(db, "aetheris_bucket", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                     NULL, sql_bucket_fn, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db,
                          "INSERT OR IGNORE INTO txn_history (bucket, account, ingested_ms, txid,"
                          " amount) SELECT aetheris_bucket(account), account, ingested_ms, txid,"
                          " amount FROM transactions ORDER BY 1, 2, 3, 4;"
                          "DROP INDEX IF EXISTS transactions_recent;"
                          "DROP INDEX IF EXISTS transactions_account;",
                          NULL, NULL, msg);
    int64_t copied = rc == SQLITE_OK ? query_int(db, "SELECT COUNT(*) FROM txn_history") : 0;
    if (copied > 0)
        log_info("store.migrated", "%s: %lld transactions copied into the account history table",
                 path, (long long)copied);
    return rc;
}

/* WAL, pragmas, and the schema at SCHEMA_VERSION, in one transaction. A file from a newer
 * release (higher user_version) is refused rather than misread. */
static int schema_setup(sqlite3 *db, const char *path, int cache_mib, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    char *msg = NULL;
    int64_t version = -1;
    bool wal = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
               sqlite3_step(st) == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        snprintf(err, errlen, "cannot put %s in WAL mode: %s", path, sqlite3_errmsg(db));
        return ERR_IO;
    }
    if (writer_settings(db, cache_mib, &msg) != SQLITE_OK)
        goto out;
    version = query_int(db, "PRAGMA user_version");
    if (version < 0 || version > SCHEMA_VERSION) {
        snprintf(err, errlen, "%s has schema version %lld; this release knows up to %d", path,
                 (long long)version, SCHEMA_VERSION);
        goto out_rollback;
    }
    if (sqlite3_exec(db, schema_sql, NULL, NULL, &msg) != SQLITE_OK ||
        (version < 4 && migrate_history(db, path, &msg) != SQLITE_OK) ||
        sqlite3_exec(db, "PRAGMA user_version = " STRINGIFY(SCHEMA_VERSION) "; COMMIT", NULL, NULL,
                     &msg) != SQLITE_OK)
        goto out;
    return 0;
out:
    snprintf(err, errlen, "cannot initialize %s: %s", path, msg ? msg : sqlite3_errmsg(db));
out_rollback:
    sqlite3_free(msg);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return ERR_IO;
}

/* The staged history rows back into memory (those of a daemon that stopped before merging them;
 * some may be merged already, which the lookup and the merge both tolerate). */
static int load_staged(struct sql_store *ss, size_t target, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    ss->hist = histstage_new(target);
    int rc = sqlite3_prepare_v2(ss->writer->db,
                                "SELECT id, account, ingested_ms, txid, amount FROM txn_staged"
                                " ORDER BY id",
                                -1, &st, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct histstage_row r = {
            .account = (const char *)sqlite3_column_text(st, 1),
            .ingested_ms = sqlite3_column_int64(st, 2),
            .key = sqlite3_column_int64(st, 3),
            .has_amount = sqlite3_column_type(st, 4) != SQLITE_NULL,
            .amount = sqlite3_column_double(st, 4),
        };
        if (r.account)
            histstage_add(ss->hist, &r, sqlite3_column_int64(st, 0));
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "cannot read the staged account history of %s: %s", ss->path,
                 sqlite3_errmsg(ss->writer->db));
        return ERR_IO;
    }
    return 0;
}

static const struct store_ops sqlite_ops;

int store__sqlite_open(struct store *s, const struct config *cfg, char *err, size_t errlen)
{
    const char *path = cfg->sqlite_path;
    if (path[0] == '\0') {
        snprintf(err, errlen, "sqlite_path is empty");
        return ERR_INVAL;
    }
    int rv = fs_mkdirs_parent(path);
    if (rv != 0) {
        snprintf(err, errlen, "cannot create the directory of %s: %s", path,
                 rv == ERR_IO ? strerror(errno) : "path too long");
        return rv;
    }
    struct sql_store *ss = xcalloc(1, sizeof *ss);
    pthread_mutex_init(&ss->wmu, NULL);
    pthread_mutex_init(&ss->rmu, NULL);
    pthread_cond_init(&ss->rcv, NULL);
    ss->path = xstrdup(path);
    ss->audit_ttl_days = cfg->audit_ttl_days;
    ss->writer = conn_open(path, false, err, errlen);
    rv = ss->writer ? schema_setup(ss->writer->db, path, cfg->sqlite_cache_mib, err, errlen)
                    : ERR_IO;
    if (rv == 0)
        rv = load_staged(ss, (size_t)cfg->sqlite_history_staged, err, errlen);
    if (rv != 0) {
        state_free(ss);
        return rv;
    }
    s->ops = &sqlite_ops;
    s->state = ss;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Writes                                                                                       */

typedef void (*bind_fn)(sqlite3_stmt *st, const void *rows, size_t i);

enum after_write { AFTER_NONE, AFTER_EXPIRE_AUDIT, AFTER_TRIM_DEADLETTERS };

/* Deletes expired tool-audit rows when the last expiry is AUDIT_GC_INTERVAL_MS old. Writer
 * locked. SQLITE_DONE on success. */
static int expire_audit(struct sql_store *ss)
{
    int64_t now = clock_mono_ms();
    if (ss->audit_ttl_days <= 0 ||
        (ss->last_gc_ms != 0 && now - ss->last_gc_ms < AUDIT_GC_INTERVAL_MS))
        return SQLITE_DONE;
    sqlite3_stmt *st = stmt_get(ss->writer, ST_EXPIRE_AUDIT);
    if (st == NULL)
        return SQLITE_ERROR;
    sqlite3_bind_int64(st, 1, clock_wall_ms() - (int64_t)ss->audit_ttl_days * MS_PER_DAY);
    int rc = step(ss->writer, st);
    stmt_done(st);
    if (rc == SQLITE_DONE)
        ss->last_gc_ms = now;
    return rc;
}

/* Runs a writer statement whose one parameter is an integer: a trim keeping the newest `keep`
 * rows of an id-ordered table (dead letters, webhook attempt records), or the staged-history
 * delete up to an id. Writer locked. SQLITE_DONE on success. */
static int exec_int(struct conn *c, enum stmt_id id, int64_t v)
{
    sqlite3_stmt *st = stmt_get(c, id);
    if (st == NULL)
        return SQLITE_ERROR;
    sqlite3_bind_int64(st, 1, v);
    int rc = step(c, st);
    stmt_done(st);
    return rc;
}

/* Takes the writer and opens a write transaction. Returns SQLITE_DONE when it is open; the
 * writer is held either way until writer_end. */
static int writer_begin(struct sql_store *ss)
{
    pthread_mutex_lock(&ss->wmu);
    return exec_stmt(ss->writer, ST_BEGIN);
}

/* Commits when rc is SQLITE_DONE, else rolls back and logs op once; the writer stays held.
 * 0 or ERR_IO. */
static int writer_commit(struct sql_store *ss, int rc, const char *op)
{
    struct conn *c = ss->writer;
    if (rc == SQLITE_DONE)
        rc = exec_stmt(c, ST_COMMIT);
    if (rc == SQLITE_DONE)
        return 0;
    int rv = fail(c, op);
    if (!sqlite3_get_autocommit(c->db))
        exec_stmt(c, ST_ROLLBACK);
    return rv;
}

/* writer_commit, then releases the writer. */
static int writer_end(struct sql_store *ss, int rc, const char *op)
{
    int rv = writer_commit(ss, rc, op);
    pthread_mutex_unlock(&ss->wmu);
    return rv;
}

/* Runs the writer's statement id with one text parameter (an id); *changes receives the rows it
 * changed. Writer locked. SQLITE_DONE on success. */
static int exec_id(struct conn *c, enum stmt_id id, const char *text, int64_t *changes)
{
    sqlite3_stmt *st = stmt_get(c, id);
    if (st == NULL)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
    int rc = step(c, st);
    if (changes)
        *changes = rc == SQLITE_DONE ? sqlite3_changes64(c->db) : 0;
    stmt_done(st);
    return rc;
}

/* Inserts outbox rows (a (webhook_id, msg_id) pair already queued stays). Writer locked.
 * SQLITE_DONE on success. */
static int insert_outbox(struct conn *c, const struct store_outbox *rows, size_t n)
{
    if (n == 0)
        return SQLITE_DONE;
    sqlite3_stmt *st = stmt_get(c, ST_PUT_OUTBOX);
    if (st == NULL)
        return SQLITE_ERROR;
    int rc = SQLITE_DONE;
    for (size_t i = 0; i < n && rc == SQLITE_DONE; i++) {
        sqlite3_bind_text(st, 1, rows[i].webhook_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, rows[i].msg_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, rows[i].event_type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, rows[i].payload, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, rows[i].created_ms);
        rc = step(c, st);
        stmt_done(st);
    }
    return rc;
}

/* The outbox rows that go with row i when it is new. */
typedef const struct store_outbox *(*outbox_fn)(const void *rows, size_t i, size_t *n);

/* Runs the insert once per row (and, when the row is new, its outbox rows); inserted[i], when
 * given, tells whether row i was new. Writer locked, transaction open. SQLITE_DONE on success. */
static int insert_rows(struct conn *c, enum stmt_id id, bind_fn bind, outbox_fn outbox,
                       const void *rows, size_t n, bool *inserted)
{
    sqlite3_stmt *st = stmt_get(c, id);
    int rc = st ? SQLITE_DONE : SQLITE_ERROR;
    for (size_t i = 0; i < n && rc == SQLITE_DONE; i++) {
        bind(st, rows, i);
        rc = step(c, st);
        bool fresh = rc == SQLITE_DONE && sqlite3_changes(c->db) > 0;
        if (inserted)
            inserted[i] = fresh;
        stmt_done(st);
        size_t nob = 0;
        const struct store_outbox *ob = fresh && outbox ? outbox(rows, i, &nob) : NULL;
        if (rc == SQLITE_DONE)
            rc = insert_outbox(c, ob, nob);
    }
    return rc;
}

/* The one write path: BEGIN IMMEDIATE, insert_rows, the `after` step, COMMIT; on any failure
 * ROLLBACK, one log line and ERR_IO. */
static int put_rows(struct store *s, const char *op, enum stmt_id id, bind_fn bind,
                    outbox_fn outbox, const void *rows, size_t n, bool *inserted,
                    enum after_write after, int keep)
{
    struct sql_store *ss = s->state;
    int rc = writer_begin(ss);
    if (rc == SQLITE_DONE)
        rc = insert_rows(ss->writer, id, bind, outbox, rows, n, inserted);
    if (rc == SQLITE_DONE && after == AFTER_EXPIRE_AUDIT)
        rc = expire_audit(ss);
    if (rc == SQLITE_DONE && after == AFTER_TRIM_DEADLETTERS)
        rc = exec_int(ss->writer, ST_TRIM_DL, keep);
    int rv = writer_end(ss, rc, op);
    if (rv != 0 && inserted)
        memset(inserted, 0, n * sizeof *inserted);
    return rv;
}

static void bind_txn(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_txn *r = (const struct store_txn *)rows + i;
    sqlite3_bind_int64(st, 1, key_of(r->txid));
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 3, r->amount);
    sqlite3_bind_int64(st, 4, r->ingested_ms);
    sqlite3_bind_text(st, 5, r->json, -1, SQLITE_STATIC);
}

static void bind_exception(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_exception *r = (const struct store_exception *)rows + i;
    sqlite3_bind_int64(st, 1, key_of(r->txid));
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
    sqlite3_bind_int64(st, 1, key_of(r->txid));
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->action, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, r->decided_ms);
    sqlite3_bind_text(st, 5, r->json, -1, SQLITE_STATIC);
}

static void bind_audit(sqlite3_stmt *st, const void *rows, size_t i)
{
    const struct store_audit *r = (const struct store_audit *)rows + i;
    sqlite3_bind_int64(st, 1, key_of(r->txid));
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
    sqlite3_bind_blob64(st, 4, r->payload ? r->payload : "", r->payload_len, SQLITE_STATIC);
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

/* A write of transactions: the staged ids of its new rows, and the history range it merges. */
struct txn_write {
    int64_t *staged_id; /* per row: its txn_staged id, 0 when the row was there already */
    struct histstage_plan plan;
};

static void bind_history(sqlite3_stmt *st, const struct histstage_row *r)
{
    sqlite3_bind_int64(st, 1, r->bucket);
    sqlite3_bind_text(st, 2, r->account, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->ingested_ms);
    sqlite3_bind_int64(st, 4, r->key);
    if (r->has_amount)
        sqlite3_bind_double(st, 5, r->amount);
    else
        sqlite3_bind_null(st, 5);
}

/* The history row of a stored transaction. */
static struct histstage_row txn_history_row(const struct store_txn *r)
{
    return (struct histstage_row){.account = r->account,
                                  .bucket = histstage_bucket(r->account),
                                  .ingested_ms = r->ingested_ms,
                                  .key = key_of(r->txid),
                                  .has_amount = true,
                                  .amount = r->amount};
}

/* Inserts the transactions, appends each new one to txn_staged, then merges the range of staged
 * history the plan picks (histstage.h) into txn_history, deleting what a finished cycle merged.
 * Writer
 * locked, transaction open; txns_written completes it. SQLITE_DONE on success. */
static int write_txns(struct sql_store *ss, const struct store_txn *rows, size_t n,
                      struct txn_write *w)
{
    struct conn *c = ss->writer;
    sqlite3_stmt *ins = stmt_get(c, ST_PUT_TXN), *stg = stmt_get(c, ST_PUT_STAGED);
    int rc = ins && stg ? SQLITE_DONE : SQLITE_ERROR;
    size_t fresh_rows = 0;
    w->staged_id = xcalloc(n ? n : 1, sizeof *w->staged_id);
    for (size_t i = 0; i < n && rc == SQLITE_DONE; i++) {
        bind_txn(ins, rows, i);
        rc = step(c, ins);
        bool fresh = rc == SQLITE_DONE && sqlite3_changes(c->db) > 0;
        stmt_done(ins);
        if (!fresh)
            continue;
        struct histstage_row h = txn_history_row(&rows[i]);
        bind_history(stg, &h);
        rc = step(c, stg);
        w->staged_id[i] = sqlite3_last_insert_rowid(c->db);
        fresh_rows++;
        stmt_done(stg);
    }
    if (rc != SQLITE_DONE)
        return rc;
    struct histstage_row *merge;
    histstage_plan(ss->hist, fresh_rows, &w->plan);
    size_t nmerge = histstage_collect(ss->hist, &w->plan, &merge);
    sqlite3_stmt *st = stmt_get(c, ST_PUT_HISTORY);
    rc = st ? SQLITE_DONE : SQLITE_ERROR;
    for (size_t i = 0; i < nmerge && rc == SQLITE_DONE; i++) {
        bind_history(st, &merge[i]);
        rc = step(c, st);
        stmt_done(st);
    }
    free(merge);
    if (rc == SQLITE_DONE && w->plan.delete_upto_id > 0)
        rc = exec_int(c, ST_DELETE_STAGED, w->plan.delete_upto_id);
    return rc;
}

/* After write_txns' transaction ended (committed or not), writer still locked: when committed,
 * the merged range leaves memory and the new rows join it. */
static void txns_written(struct sql_store *ss, const struct store_txn *rows, size_t n,
                         struct txn_write *w, bool committed)
{
    if (w->staged_id == NULL)
        return;
    if (committed) {
        histstage_done(ss->hist, &w->plan);
        for (size_t i = 0; i < n; i++)
            if (w->staged_id[i] > 0) {
                struct histstage_row h = txn_history_row(&rows[i]);
                histstage_add(ss->hist, &h, w->staged_id[i]);
            }
    }
    free(w->staged_id);
}

static int sql_put_transactions(struct store *s, const struct store_txn *rows, size_t n)
{
    struct sql_store *ss = s->state;
    struct txn_write w = {0};
    int rc = writer_begin(ss);
    if (rc == SQLITE_DONE)
        rc = write_txns(ss, rows, n, &w);
    int rv = writer_commit(ss, rc, "put transactions");
    txns_written(ss, rows, n, &w, rv == 0);
    pthread_mutex_unlock(&ss->wmu);
    return rv;
}

static int sql_put_exceptions(struct store *s, const struct store_exception *rows, size_t n)
{
    return put_rows(s, "put exceptions", ST_PUT_EXC, bind_exception, exception_outbox, rows, n,
                    NULL, AFTER_NONE, 0);
}

/* A sink flush: the transactions, the exceptions with their outbox rows, the dead letters and
 * their trim, one transaction and one commit (a commit is most of a small flush's cost). */
static int sql_put_ingest(struct store *s, const struct store_ingest *in)
{
    struct sql_store *ss = s->state;
    struct txn_write w = {0};
    int rc = writer_begin(ss);
    if (rc == SQLITE_DONE && in->ntxn > 0)
        rc = write_txns(ss, in->txn, in->ntxn, &w);
    if (rc == SQLITE_DONE && in->nexc > 0)
        rc = insert_rows(ss->writer, ST_PUT_EXC, bind_exception, exception_outbox, in->exc,
                         in->nexc, NULL);
    if (rc == SQLITE_DONE && in->ndl > 0) {
        rc = insert_rows(ss->writer, ST_PUT_DL, bind_deadletter, NULL, in->dl, in->ndl, NULL);
        if (rc == SQLITE_DONE)
            rc = exec_int(ss->writer, ST_TRIM_DL, in->dl_keep);
    }
    int rv = writer_commit(ss, rc, "put ingest rows");
    txns_written(ss, in->txn, in->ntxn, &w, rv == 0);
    pthread_mutex_unlock(&ss->wmu);
    return rv;
}

/* The tool audit, its expiry, then the decisions with their outbox rows: one transaction. */
static int sql_put_decisions(struct store *s, const struct store_decision *rows, size_t n,
                             const struct store_audit *audit, size_t naudit, bool *inserted)
{
    struct sql_store *ss = s->state;
    int rc = writer_begin(ss);
    if (rc == SQLITE_DONE && naudit > 0)
        rc = insert_rows(ss->writer, ST_PUT_AUDIT, bind_audit, NULL, audit, naudit, NULL);
    if (rc == SQLITE_DONE && naudit > 0)
        rc = expire_audit(ss);
    if (rc == SQLITE_DONE)
        rc = insert_rows(ss->writer, ST_PUT_DEC, bind_decision, decision_outbox, rows, n, inserted);
    int rv = writer_end(ss, rc, "put decisions");
    if (rv != 0 && inserted)
        memset(inserted, 0, n * sizeof *inserted);
    return rv;
}

static int sql_put_audit(struct store *s, const struct store_audit *rows, size_t n)
{
    return put_rows(s, "put tool audit", ST_PUT_AUDIT, bind_audit, NULL, rows, n, NULL,
                    AFTER_EXPIRE_AUDIT, 0);
}

static int sql_put_deadletters(struct store *s, const struct store_deadletter *rows, size_t n,
                               int keep)
{
    return put_rows(s, "put dead letters", ST_PUT_DL, bind_deadletter, NULL, rows, n, NULL,
                    AFTER_TRIM_DEADLETTERS, keep);
}

/* ------------------------------------------------------------------------------------------ */
/* Reads                                                                                        */

/* Parses the stored document in column col; ERR_IO (logged) when it is not JSON. */
static int column_doc(sqlite3_stmt *st, int col, const char *op, json_t **doc)
{
    json_error_t jerr;
    const char *text = (const char *)sqlite3_column_text(st, col);
    size_t len = (size_t)sqlite3_column_bytes(st, col);
    *doc = text ? json_loadb(text, len, 0, &jerr) : NULL;
    if (*doc == NULL) {
        log_error("store.sqlite_error", "%s: a stored document is not JSON: %s", op,
                  text ? jerr.text : "NULL");
        return ERR_IO;
    }
    return 0;
}

static int sql_ping(struct store *s)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    sqlite3_stmt *st = stmt_get(c, ST_PING);
    int rv = st && step(c, st) == SQLITE_ROW ? 0 : fail(c, "ping");
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static int get_doc(struct store *s, enum stmt_id id, const char *op, uint64_t txid, json_t **doc)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = ERR_NOTFOUND;
    sqlite3_stmt *st = stmt_get(c, id);
    if (st == NULL) {
        rv = fail(c, op);
        goto out;
    }
    sqlite3_bind_int64(st, 1, key_of(txid));
    int rc = step(c, st);
    if (rc == SQLITE_ROW)
        rv = column_doc(st, 0, op, doc);
    else if (rc != SQLITE_DONE)
        rv = fail(c, op);
out:
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static int sql_get_decision(struct store *s, uint64_t txid, json_t **doc)
{
    return get_doc(s, ST_GET_DEC, "get decision", txid, doc);
}

static int sql_get_exception(struct store *s, uint64_t txid, json_t **doc)
{
    return get_doc(s, ST_GET_EXC, "get exception", txid, doc);
}

/* Binds the filters of q (as the mask chose them) and the position and limit. */
static void bind_list(sqlite3_stmt *st, unsigned mask, const struct store_query *q,
                      const struct store_pos *after)
{
    if (mask & LF_ACCOUNT)
        sqlite3_bind_text(st, 1, q->account, -1, SQLITE_STATIC);
    if (mask & LF_KIND)
        sqlite3_bind_text(st, 2, q->kind, -1, SQLITE_STATIC);
    if (mask & LF_SINCE)
        sqlite3_bind_int64(st, 3, q->since_ms);
    if (mask & LF_UNTIL)
        sqlite3_bind_int64(st, 4, q->until_ms);
    if (mask & LF_AFTER) {
        sqlite3_bind_int64(st, 5, after->time_ms);
        sqlite3_bind_int64(st, 6, key_of(after->id));
    }
    sqlite3_bind_int64(st, 7, (sqlite3_int64)q->limit + 1); /* one more tells if a page follows */
}

/* Decisions or exceptions (first: the statement block) after `after`, one page. */
static int list_docs(struct store *s, enum stmt_id first, const char *op,
                     const struct store_query *q, const struct store_pos *after,
                     struct store_page *page)
{
    unsigned mask = (q->account ? LF_ACCOUNT : 0) | (q->kind ? LF_KIND : 0) |
                    (q->since_ms != 0 ? LF_SINCE : 0) | (q->until_ms != 0 ? LF_UNTIL : 0) |
                    (after ? LF_AFTER : 0);
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = 0, rc, n = 0;
    sqlite3_stmt *st = stmt_get(c, (enum stmt_id)(first + (int)mask));
    if (st == NULL) {
        rv = fail(c, op);
        goto out;
    }
    bind_list(st, mask, q, after);
    while ((rc = step(c, st)) == SQLITE_ROW) {
        if (n == q->limit) {
            page->more = true;
            break;
        }
        if (page->text) { /* the stored text as it is: it was written by json_dumps */
            const char *text = (const char *)sqlite3_column_text(st, 2);
            if (text == NULL) {
                log_error("store.sqlite_error", "%s: a stored document is NULL", op);
                rv = ERR_IO;
                goto out;
            }
            rv = page->ntext > 0 ? buf_append(page->text, ",", 1) : 0;
            if (rv == 0)
                rv = buf_append(page->text, text, (size_t)sqlite3_column_bytes(st, 2));
            if (rv != 0)
                goto out;
            page->ntext++;
        } else {
            json_t *doc = NULL;
            rv = column_doc(st, 2, op, &doc);
            if (rv != 0)
                goto out;
            json_array_append_new(page->items, doc);
        }
        page->last.time_ms = sqlite3_column_int64(st, 0);
        page->last.id = txid_of(sqlite3_column_int64(st, 1));
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = fail(c, op);
out:
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static int sql_list_decisions(struct store *s, const struct store_query *q,
                              const struct store_pos *after, struct store_page *page)
{
    return list_docs(s, ST_LIST_DEC_FIRST, "list decisions", q, after, page);
}

static int sql_list_exceptions(struct store *s, const struct store_query *q,
                               const struct store_pos *after, struct store_page *page)
{
    return list_docs(s, ST_LIST_EXC_FIRST, "list exceptions", q, after, page);
}

/* Length of the well-formed UTF-8 sequence at p (n bytes left), 0 when there is none or it is
 * NUL. Unicode table 3-7: no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (c >= 0x01 && c <= 0x7F)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80;
        hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (len > n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (p[k] < 0x80 || p[k] > 0xBF)
            return 0;
    return len;
}

/* Bytes as a JSON string, each byte that starts no well-formed sequence (and NUL) -> U+FFFD. */
static json_t *text_json(const void *bytes, size_t n)
{
    const unsigned char *p = bytes;
    char *out = xmalloc(n * 3 + 1); /* U+FFFD is 3 bytes: the worst case */
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t len = utf8_seq(p + i, n - i);
        if (len > 0) {
            memcpy(out + o, p + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *v = json_stringn_nocheck(out, o);
    free(out);
    return v;
}

static json_t *column_text_json(sqlite3_stmt *st, int col)
{
    const void *p = sqlite3_column_blob(st, col);
    return text_json(p, p ? (size_t)sqlite3_column_bytes(st, col) : 0);
}

static int sql_list_deadletters(struct store *s, const struct store_query *q,
                                const struct store_pos *after, struct store_page *page)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = 0, rc, n = 0;
    sqlite3_stmt *st = stmt_get(c, after ? ST_LIST_DL_AFTER : ST_LIST_DL);
    if (st == NULL) {
        rv = fail(c, "list dead letters");
        goto out;
    }
    if (after)
        sqlite3_bind_int64(st, 1, after->id > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)after->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)q->limit + 1);
    while ((rc = step(c, st)) == SQLITE_ROW) {
        if (n == q->limit) {
            page->more = true;
            break;
        }
        int64_t id = sqlite3_column_int64(st, 0);
        json_t *item = json_object();
        json_object_set_new(item, "id", json_integer(id));
        json_object_set_new(item, "source", column_text_json(st, 1));
        json_object_set_new(item, "reason", column_text_json(st, 2));
        json_object_set_new(item, "ts_ms", json_integer(sqlite3_column_int64(st, 3)));
        json_object_set_new(item, "payload", column_text_json(st, 4));
        json_array_append_new(page->items, item);
        page->last.id = (uint64_t)id;
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = fail(c, "list dead letters");
out:
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

/* Newest first: ingested_ms, then key, descending. */
static bool newer(int64_t ms_a, int64_t key_a, int64_t ms_b, int64_t key_b)
{
    return ms_a != ms_b ? ms_a > ms_b : key_a > key_b;
}

/* The newest max_rows history rows of an account other than the excluded one: the staged rows in
 * memory merged with txn_history's, a row in both (merged, not yet dropped) taken once. Memory
 * is read first: a staged row dropped after that read was merged in a commit that precedes the
 * table read's snapshot. The aggregates skip NULL amounts, as SQL's COUNT/AVG/MAX would. */
static int sql_account_history(struct store *s, const char *account, const uint64_t *exclude_txid,
                               int max_rows, struct store_history *out)
{
    struct sql_store *ss = s->state;
    int64_t exclude = exclude_txid ? key_of(*exclude_txid) : 0;
    struct histstage_row *staged;
    size_t nstaged =
        histstage_find(ss->hist, account, exclude_txid != NULL, exclude, (size_t)max_rows, &staged);
    struct conn *c = reader_take(ss);
    if (c == NULL) {
        free(staged);
        return ERR_CONN;
    }
    sqlite3_stmt *st = stmt_get(c, ST_HISTORY);
    int rc = SQLITE_ERROR;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, histstage_bucket(account));
        sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
        if (exclude_txid) /* unbound ?3 is NULL, and "txid IS NOT NULL" holds for every row */
            sqlite3_bind_int64(st, 3, exclude);
        sqlite3_bind_int(st, 4, max_rows);
        rc = step(c, st);
    }
    int64_t count = 0;
    double sum = 0, max = 0;
    size_t next = 0;
    for (int taken = 0; taken < max_rows && (rc == SQLITE_ROW || next < nstaged); taken++) {
        struct histstage_row row;
        bool from_table = rc == SQLITE_ROW;
        if (from_table) {
            row = (struct histstage_row){.ingested_ms = sqlite3_column_int64(st, 1),
                                         .key = sqlite3_column_int64(st, 2),
                                         .has_amount = sqlite3_column_type(st, 0) != SQLITE_NULL,
                                         .amount = sqlite3_column_double(st, 0)};
            if (next < nstaged &&
                newer(staged[next].ingested_ms, staged[next].key, row.ingested_ms, row.key)) {
                row = staged[next++];
                from_table = false;
            } else if (next < nstaged && staged[next].key == row.key) {
                next++; /* the same row, merged and still staged */
            }
        } else {
            row = staged[next++];
        }
        if (from_table)
            rc = step(c, st);
        if (row.has_amount) {
            max = count == 0 || row.amount > max ? row.amount : max;
            sum += row.amount;
            count++;
        }
    }
    int rv = 0;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = fail(c, "account history");
    else
        *out = (struct store_history){.count = count, .mean = count ? sum / count : 0, .max = max};
    stmt_done(st);
    reader_give(ss, c);
    free(staged);
    return rv;
}

static int64_t sql_count(struct store *s, enum store_table table)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int64_t n;
    sqlite3_stmt *st = stmt_get(c, (enum stmt_id)(ST_COUNT_FIRST + (int)table));
    if (st != NULL && step(c, st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    else
        n = fail(c, "count");
    stmt_done(st);
    reader_give(ss, c);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Webhooks                                                                                     */

static void bind_webhook(sqlite3_stmt *st, const struct store_webhook *w)
{
    sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, w->enabled ? 1 : 0);
    sqlite3_bind_text(st, 3, w->json, -1, SQLITE_STATIC);
}

static int sql_webhook_insert(struct store *s, const struct store_webhook *w, int max)
{
    struct sql_store *ss = s->state;
    struct conn *c = ss->writer;
    int rv = 0;
    int rc = writer_begin(ss);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_DONE) {
        st = stmt_get(c, (enum stmt_id)(ST_COUNT_FIRST + STORE_TABLE_WEBHOOKS));
        rc = st && step(c, st) == SQLITE_ROW ? SQLITE_DONE : SQLITE_ERROR;
        if (rc == SQLITE_DONE && sqlite3_column_int64(st, 0) >= max)
            rv = ERR_FULL;
        stmt_done(st);
    }
    if (rc == SQLITE_DONE && rv == 0) {
        st = stmt_get(c, ST_WH_INSERT);
        if (st == NULL) {
            rc = SQLITE_ERROR;
        } else {
            sqlite3_bind_text(st, 1, w->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, w->created_ms);
            sqlite3_bind_int(st, 3, w->enabled ? 1 : 0);
            sqlite3_bind_text(st, 4, w->json, -1, SQLITE_STATIC);
            rc = step(c, st);
            if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_PRIMARYKEY) {
                rc = SQLITE_DONE; /* nothing was written: commit the empty transaction */
                rv = ERR_EXISTS;
            }
            stmt_done(st);
        }
    }
    int wrv = writer_end(ss, rc, "insert webhook");
    return wrv != 0 ? wrv : rv;
}

static int sql_webhook_update(struct store *s, const struct store_webhook *w, int64_t *dropped)
{
    struct sql_store *ss = s->state;
    struct conn *c = ss->writer;
    int64_t changed = 0;
    int rc = writer_begin(ss);
    sqlite3_stmt *st = rc == SQLITE_DONE ? stmt_get(c, ST_WH_UPDATE) : NULL;
    if (rc == SQLITE_DONE && st == NULL)
        rc = SQLITE_ERROR;
    if (st != NULL) {
        bind_webhook(st, w);
        rc = step(c, st);
        changed = rc == SQLITE_DONE ? sqlite3_changes64(c->db) : 0;
        stmt_done(st);
    }
    if (rc == SQLITE_DONE && changed > 0 && !w->enabled)
        rc = exec_id(c, ST_OUTBOX_DROP, w->id, dropped);
    int rv = writer_end(ss, rc, "update webhook");
    return rv != 0 ? rv : changed > 0 ? 0 : ERR_NOTFOUND;
}

static int sql_webhook_delete(struct store *s, const char *id, int64_t *dropped)
{
    struct sql_store *ss = s->state;
    struct conn *c = ss->writer;
    int64_t changed = 0;
    int rc = writer_begin(ss);
    if (rc == SQLITE_DONE)
        rc = exec_id(c, ST_WH_DELETE, id, &changed);
    if (rc == SQLITE_DONE)
        rc = exec_id(c, ST_OUTBOX_DROP, id, dropped);
    if (rc == SQLITE_DONE)
        rc = exec_id(c, ST_DELIV_DROP, id, NULL);
    int rv = writer_end(ss, rc, "delete webhook");
    return rv != 0 ? rv : changed > 0 ? 0 : ERR_NOTFOUND;
}

static int sql_webhook_get(struct store *s, const char *id, json_t **doc)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = ERR_NOTFOUND;
    sqlite3_stmt *st = stmt_get(c, ST_WH_GET);
    if (st == NULL) {
        rv = fail(c, "get webhook");
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = step(c, st);
    if (rc == SQLITE_ROW)
        rv = column_doc(st, 0, "get webhook", doc);
    else if (rc != SQLITE_DONE)
        rv = fail(c, "get webhook");
out:
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static int sql_webhook_list(struct store *s, json_t *items)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = 0, rc;
    sqlite3_stmt *st = stmt_get(c, ST_WH_LIST);
    if (st == NULL) {
        rv = fail(c, "list webhooks");
        goto out;
    }
    while ((rc = step(c, st)) == SQLITE_ROW) {
        json_t *doc = NULL;
        rv = column_doc(st, 0, "list webhooks", &doc);
        if (rv != 0)
            goto out;
        json_array_append_new(items, doc);
    }
    if (rc != SQLITE_DONE)
        rv = fail(c, "list webhooks");
out:
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static int sql_outbox_put(struct store *s, const struct store_outbox *rows, size_t n)
{
    struct sql_store *ss = s->state;
    int rc = writer_begin(ss);
    if (rc == SQLITE_DONE)
        rc = insert_outbox(ss->writer, rows, n);
    return writer_end(ss, rc, "put webhook outbox");
}

/* Copies at most cap - 1 bytes of text column col into out, NUL-terminated. */
static void column_copy(sqlite3_stmt *st, int col, char *out, size_t cap)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    snprintf(out, cap, "%s", t ? t : "");
}

static int sql_outbox_claim(struct store *s, int64_t now_ms, int64_t lease_until_ms, int max,
                            struct store_claim *out, int *n)
{
    struct sql_store *ss = s->state;
    struct conn *c = ss->writer;
    int rc = writer_begin(ss);
    sqlite3_stmt *st = rc == SQLITE_DONE ? stmt_get(c, ST_OUTBOX_CLAIM) : NULL;
    if (rc == SQLITE_DONE && st == NULL)
        rc = SQLITE_ERROR;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, now_ms);
        sqlite3_bind_int64(st, 2, lease_until_ms);
        sqlite3_bind_int(st, 3, max);
        while ((rc = step(c, st)) == SQLITE_ROW) {
            if (*n == max)
                continue; /* cannot happen (LIMIT); RETURNING must still be stepped to the end */
            struct store_claim *cl = &out[(*n)++];
            cl->id = sqlite3_column_int64(st, 0);
            column_copy(st, 1, cl->webhook_id, sizeof cl->webhook_id);
            column_copy(st, 2, cl->msg_id, sizeof cl->msg_id);
            column_copy(st, 3, cl->event_type, sizeof cl->event_type);
            const char *p = (const char *)sqlite3_column_text(st, 4);
            cl->payload_len = p ? (size_t)sqlite3_column_bytes(st, 4) : 0;
            cl->payload = xmalloc(cl->payload_len + 1);
            memcpy(cl->payload, p ? p : "", cl->payload_len);
            cl->payload[cl->payload_len] = '\0';
            cl->attempt = sqlite3_column_int(st, 5);
            cl->created_ms = sqlite3_column_int64(st, 6);
        }
        stmt_done(st);
    }
    int rv = writer_end(ss, rc, "claim webhook outbox");
    if (rv != 0) {
        store_claims_free(out, *n);
        *n = 0;
    }
    return rv;
}

static int sql_outbox_finish(struct store *s, const struct store_attempt *a, int keep)
{
    struct sql_store *ss = s->state;
    struct conn *c = ss->writer;
    bool retry = strcmp(a->outcome, "retry") == 0;
    int64_t changed = 0;
    int rc = writer_begin(ss);
    sqlite3_stmt *st =
        rc == SQLITE_DONE ? stmt_get(c, retry ? ST_OUTBOX_RETRY : ST_OUTBOX_DONE) : NULL;
    if (rc == SQLITE_DONE && st == NULL)
        rc = SQLITE_ERROR;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, a->outbox_id);
        if (retry)
            sqlite3_bind_int64(st, 2, a->retry_at_ms);
        rc = step(c, st);
        changed = rc == SQLITE_DONE ? sqlite3_changes64(c->db) : 0;
        stmt_done(st);
    }
    if (rc == SQLITE_DONE && changed > 0) {
        st = stmt_get(c, ST_DELIV_PUT);
        if (st == NULL) {
            rc = SQLITE_ERROR;
        } else {
            sqlite3_bind_text(st, 1, a->webhook_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, a->msg_id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, a->event_type, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 4, a->attempt);
            sqlite3_bind_int64(st, 5, a->ts_ms);
            sqlite3_bind_int(st, 6, a->status_code);
            sqlite3_bind_double(st, 7, a->latency_ms);
            sqlite3_bind_text(st, 8, a->outcome, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 9, a->error ? a->error : "", -1, SQLITE_STATIC);
            rc = step(c, st);
            stmt_done(st);
        }
        /* trimming scans up to `keep` index entries: done once per TRIM_EVERY records */
        if (rc == SQLITE_DONE && sqlite3_last_insert_rowid(c->db) % TRIM_EVERY == 0)
            rc = exec_int(c, ST_DELIV_TRIM, keep);
    }
    int rv = writer_end(ss, rc, "finish webhook attempt");
    return rv != 0 ? rv : changed > 0 ? 0 : ERR_NOTFOUND;
}

static int sql_outbox_release(struct store *s, int64_t outbox_id, int64_t due_ms)
{
    struct sql_store *ss = s->state;
    struct conn *c = ss->writer;
    int rc = writer_begin(ss);
    sqlite3_stmt *st = rc == SQLITE_DONE ? stmt_get(c, ST_OUTBOX_RELEASE) : NULL;
    if (rc == SQLITE_DONE && st == NULL)
        rc = SQLITE_ERROR;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, outbox_id);
        sqlite3_bind_int64(st, 2, due_ms);
        rc = step(c, st);
        stmt_done(st);
    }
    return writer_end(ss, rc, "release webhook outbox row");
}

static int sql_outbox_next_due(struct store *s, int64_t *due_ms)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = ERR_NOTFOUND;
    sqlite3_stmt *st = stmt_get(c, ST_OUTBOX_NEXT_DUE);
    if (st != NULL && step(c, st) == SQLITE_ROW) {
        if (sqlite3_column_type(st, 0) != SQLITE_NULL) {
            *due_ms = sqlite3_column_int64(st, 0);
            rv = 0;
        }
    } else {
        rv = fail(c, "next webhook due time");
    }
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static int sql_list_deliveries(struct store *s, const struct store_query *q,
                               const struct store_pos *after, struct store_page *page)
{
    struct sql_store *ss = s->state;
    struct conn *c = reader_take(ss);
    if (c == NULL)
        return ERR_CONN;
    int rv = 0, rc, n = 0;
    sqlite3_stmt *st = stmt_get(c, after ? ST_DELIV_LIST_AFTER : ST_DELIV_LIST);
    if (st == NULL) {
        rv = fail(c, "list webhook deliveries");
        goto out;
    }
    if (after)
        sqlite3_bind_int64(st, 1, after->id > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)after->id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)q->limit + 1);
    sqlite3_bind_text(st, 3, q->webhook_id, -1, SQLITE_STATIC);
    while ((rc = step(c, st)) == SQLITE_ROW) {
        if (n == q->limit) {
            page->more = true;
            break;
        }
        int64_t id = sqlite3_column_int64(st, 0);
        int status = sqlite3_column_int(st, 5);
        json_t *item = json_object();
        json_object_set_new(item, "id", json_integer(id));
        json_object_set_new(item, "msg_id", column_text_json(st, 1));
        json_object_set_new(item, "event_type", column_text_json(st, 2));
        json_object_set_new(item, "attempt", json_integer(sqlite3_column_int(st, 3)));
        json_object_set_new(item, "ts_ms", json_integer(sqlite3_column_int64(st, 4)));
        json_object_set_new(item, "status_code", status > 0 ? json_integer(status) : json_null());
        json_object_set_new(item, "latency_ms", json_real(sqlite3_column_double(st, 6)));
        json_object_set_new(item, "outcome", column_text_json(st, 7));
        json_t *e = column_text_json(st, 8);
        if (json_string_length(e) == 0) {
            json_decref(e);
            e = json_null();
        }
        json_object_set_new(item, "error", e);
        json_array_append_new(page->items, item);
        page->last.id = (uint64_t)id;
        n++;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        rv = fail(c, "list webhook deliveries");
out:
    stmt_done(st);
    reader_give(ss, c);
    return rv;
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .close = sql_close,
    .ping = sql_ping,
    .put_transactions = sql_put_transactions,
    .put_exceptions = sql_put_exceptions,
    .put_ingest = sql_put_ingest,
    .put_decisions = sql_put_decisions,
    .put_audit = sql_put_audit,
    .put_deadletters = sql_put_deadletters,
    .get_decision = sql_get_decision,
    .get_exception = sql_get_exception,
    .list_decisions = sql_list_decisions,
    .list_exceptions = sql_list_exceptions,
    .list_deadletters = sql_list_deadletters,
    .account_history = sql_account_history,
    .count = sql_count,
    .webhook_insert = sql_webhook_insert,
    .webhook_update = sql_webhook_update,
    .webhook_delete = sql_webhook_delete,
    .webhook_get = sql_webhook_get,
    .webhook_list = sql_webhook_list,
    .outbox_put = sql_outbox_put,
    .outbox_claim = sql_outbox_claim,
    .outbox_finish = sql_outbox_finish,
    .outbox_release = sql_outbox_release,
    .outbox_next_due = sql_outbox_next_due,
    .list_deliveries = sql_list_deliveries,
};
