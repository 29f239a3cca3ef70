/* Store contract (store.h) on a fresh SQLite file: idempotent puts, first decision wins, gets,
 * stable newest-first paging while rows are inserted, filters, malformed cursors, dead-letter
 * trimming, history statistics, counts, extreme ids, and concurrent writers and readers. */
#include "store.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "err.h"
#include "tap.h"

static struct store *st;

static void put_decision(uint64_t txid, const char *acct, const char *action, int64_t ms,
                         bool *inserted)
{
    char doc[128];
    if (txid > INT64_MAX) /* JSON integers stop at int64: larger ids travel as digit strings */
        snprintf(doc, sizeof doc, "{\"transaction_id\":\"%llu\",\"action\":\"%s\"}",
                 (unsigned long long)txid, action);
    else
        snprintf(doc, sizeof doc, "{\"transaction_id\":%llu,\"action\":\"%s\"}",
                 (unsigned long long)txid, action);
    struct store_decision d = {txid, acct, action, ms, doc};
    store_put_decisions(st, &d, 1, inserted);
}

static void *writer(void *arg)
{
    uintptr_t base = (uintptr_t)arg * 1000000;
    for (uintptr_t i = 0; i < 500; i++) {
        struct store_txn t = {base + i, "W", 1.0, 1, "{}"};
        store_put_transactions(st, &t, 1);
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        struct store_history h;
        store_account_history(st, "W", 100, &h);
    }
    return NULL;
}

int main(void)
{
    char dir[] = "/tmp/aetheris-store-XXXXXX", err[256];
    if (mkdtemp(dir) == NULL)
        return 1;
    struct config cfg;
    config_defaults(&cfg);
    snprintf(cfg.sqlite_path, sizeof cfg.sqlite_path, "%s/sub/a.db", dir);
    st = store_open(&cfg, err, sizeof err);
    ok(st != NULL, "store opens, creating its directory (%s)", st ? "" : err);
    is_int(store_ping(st), 0, "ping");

    struct store_txn t[3] = {{1, "A", 10, 100, "{\"n\":1}"},
                             {2, "A", 20, 200, "{\"n\":2}"},
                             {3, "B", 99, 300, "{\"n\":3}"}};
    is_int(store_put_transactions(st, t, 3), 0, "put transactions");
    t[0].json = "{\"n\":\"changed\"}";
    is_int(store_put_transactions(st, t, 1), 0, "put again (idempotent)");
    is_int(store_count(st, "transactions"), 3, "no duplicate rows");
    struct store_history h;
    is_int(store_account_history(st, "A", 100, &h), 0, "history");
    ok(h.count == 2 && h.mean == 15 && h.max == 20, "history statistics exact");
    store_account_history(st, "A", 1, &h);
    ok(h.count == 1 && h.mean == 20, "history limited to the newest rows");
    store_account_history(st, "nobody", 100, &h);
    ok(h.count == 0 && h.mean == 0, "no history");

    bool ins = false;
    put_decision(7, "A", "BLOCK", 1000, &ins);
    ok(ins, "first decision inserted");
    put_decision(7, "A", "APPROVE", 2000, &ins);
    ok(!ins, "second decision for the same transaction refused");
    json_t *doc = NULL;
    is_int(store_get_decision(st, 7, &doc), 0, "get decision");
    ok(strcmp(json_string_value(json_object_get(doc, "action")), "BLOCK") == 0,
       "first decision wins");
    json_decref(doc);
    is_int(store_get_decision(st, 8, &doc), ERR_NOTFOUND, "absent decision is NOTFOUND");
    put_decision(UINT64_MAX, "Z", "REVIEW", 5, &ins);
    is_int(store_get_decision(st, UINT64_MAX, &doc), 0, "UINT64_MAX transaction id round-trips");
    json_decref(doc);

    for (uint64_t i = 100; i < 350; i++)
        put_decision(i, i % 2 ? "odd" : "even", i % 3 ? "APPROVE" : "BLOCK",
                     10000 + (int64_t)(i / 2), NULL);
    /* Page through, inserting newer rows between pages: every old row exactly once. */
    char next[STORE_CURSOR_MAX] = "";
    int seen[400] = {0}, pages = 0, total = 0;
    struct store_query q = {.limit = 100};
    do {
        json_t *items = NULL;
        q.cursor = next[0] ? next : NULL;
        char cur[STORE_CURSOR_MAX];
        snprintf(cur, sizeof cur, "%s", next);
        q.cursor = cur[0] ? cur : NULL;
        if (store_list_decisions(st, &q, &items, next) != 0)
            break;
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            json_int_t id = json_integer_value(json_object_get(it, "transaction_id"));
            if (id >= 100 && id < 350)
                seen[id]++;
            total++;
        }
        json_decref(items);
        put_decision(1000 + (uint64_t)pages, "late", "REVIEW", 99999, NULL);
        pages++;
    } while (next[0] && pages < 20);
    int once = 0;
    for (int i = 100; i < 350; i++)
        once += seen[i] == 1;
    is_int(once, 250, "paging while inserting: all 250 rows exactly once (%d pages)", pages);

    json_t *items = NULL;
    q = (struct store_query){.account = "odd", .kind = "BLOCK", .limit = 500};
    store_list_decisions(st, &q, &items, next);
    size_t i;
    json_t *it;
    int good = 1;
    json_array_foreach(items, i, it)
    {
        json_int_t id = json_integer_value(json_object_get(it, "transaction_id"));
        good &= id % 2 == 1 && id % 3 == 0;
    }
    ok(good && json_array_size(items) == 41 && next[0] == '\0',
       "account + action filters (%zu rows)", json_array_size(items));
    json_decref(items);
    q = (struct store_query){.since_ms = 10100, .until_ms = 10110, .limit = 500};
    store_list_decisions(st, &q, &items, next);
    is_int(json_array_size(items), 20, "since inclusive, until exclusive");
    json_decref(items);
    q = (struct store_query){.cursor = "12.x", .limit = 5};
    is_int(store_list_decisions(st, &q, &items, next), ERR_INVAL, "malformed cursor rejected");
    q.cursor = "12";
    is_int(store_list_decisions(st, &q, &items, next), ERR_INVAL, "cursor without txid rejected");

    struct store_deadletter dl = {"mqtt", "bad_json", 1, "\xff{x", 3};
    for (int k = 0; k < 30; k++)
        store_put_deadletters(st, &dl, 1, 10);
    is_int(store_count(st, "dead_letters"), 10, "dead letters trimmed to keep");
    q = (struct store_query){.limit = 100};
    store_list_deadletters(st, &q, &items, next);
    const char *payload = json_string_value(json_object_get(json_array_get(items, 0), "payload"));
    ok(payload && strcmp(payload, "\xEF\xBF\xBD{x") == 0, "invalid UTF-8 shown as U+FFFD");
    json_decref(items);
    is_int(store_count(st, "nope"), ERR_INVAL, "unknown table rejected");

    pthread_t th[6];
    for (uintptr_t k = 0; k < 4; k++)
        pthread_create(&th[k], NULL, writer, (void *)(k + 1));
    for (int k = 4; k < 6; k++)
        pthread_create(&th[k], NULL, reader, NULL);
    for (int k = 0; k < 6; k++)
        pthread_join(th[k], NULL);
    is_int(store_count(st, "transactions"), 3 + 2000, "4 concurrent writers: every row stored");
    store_free(st);

    cfg.mongodb_uri[0] = 'm';
    cfg.mongodb_uri[1] = '\0';
    ok(store_open(&cfg, err, sizeof err) == NULL && strstr(err, "MongoDB"),
       "a MongoDB URI is refused clearly for now");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return done_testing();
}
