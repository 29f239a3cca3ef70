/* What the MongoDB backend sends, checked without a server: collection names from the MONGODB_*
 * options, the row documents ($setOnInsert: the JSON document flat plus the _aetheris metadata),
 * refused documents, list filters and options for every filter combination and a continuation
 * position, the index specifications (keys, order, uniqueness, the tool-audit TTL), reading a
 * stored row back, and the transactionId key cast at both ends of the range. The same store
 * contract as SQLite runs against a real server in test_store_mongo when
 * AETHERIS_TEST_MONGODB_URI is set. */
#include "store_mongo.h"
#include <string.h>
#include "tap.h"

/* The bson as relaxed extended JSON, parsed. */
static json_t *as_json(const bson_t *b)
{
    char *text = bson_as_relaxed_extended_json(b, NULL);
    json_t *j = json_loads(text, 0, NULL);
    bson_free(text);
    return j;
}

static int same(const bson_t *b, const char *want_json)
{
    json_t *got = as_json(b), *want = json_loads(want_json, 0, NULL);
    int eq = got && want && json_equal(got, want);
    if (!eq) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("#   got  %s\n#   want %s\n", g ? g : "(null)", want_json);
        free(g);
    }
    json_decref(got);
    json_decref(want);
    return eq;
}

/* Key order matters in sort and index keys: compares the top-level key sequence of sub. */
static int keys_in_order(const bson_t *b, const char *path, const char *k1, const char *k2)
{
    bson_iter_t it, child;
    if (!bson_iter_init(&it, b) || !bson_iter_find_descendant(&it, path, &it) ||
        !bson_iter_recurse(&it, &child))
        return 0;
    return bson_iter_next(&child) && strcmp(bson_iter_key(&child), k1) == 0 &&
           bson_iter_next(&child) && strcmp(bson_iter_key(&child), k2) == 0;
}

int main(void)
{
    struct config cfg;
    config_defaults(&cfg);
    snprintf(cfg.mongodb_commands_collection, sizeof cfg.mongodb_commands_collection, "cmds");
    const char *names[STORE_TABLE_COUNT];
    store_mongo_collection_names(&cfg, names);
    ok(strcmp(names[STORE_TABLE_TRANSACTIONS], "transactions") == 0 &&
           strcmp(names[STORE_TABLE_DECISIONS], "cmds") == 0 &&
           strcmp(names[STORE_TABLE_TOOL_AUDIT], "tool_audit") == 0 &&
           strcmp(names[STORE_TABLE_WEBHOOK_OUTBOX], "webhook_outbox") == 0,
       "collection names follow the MONGODB_* options");

    bson_t *doc =
        store_mongo_row_doc("{\"transactionId\":5,\"accountOrigin\":\"A\",\"amount\":1.5}", "A",
                            "BLOCK", 1700000000000LL);
    ok(doc && same(doc, "{\"transactionId\":5,\"accountOrigin\":\"A\",\"amount\":1.5,"
                        "\"_aetheris\":{\"account\":\"A\",\"kind\":\"BLOCK\",\"ms\":1700000000000,"
                        "\"at\":{\"$date\":\"2023-11-14T22:13:20Z\"}}}"),
       "a row: its document flat, plus account, kind, time and the TTL date");
    json_t *back = doc ? store_mongo_doc_json(doc) : NULL;
    json_t *want =
        json_loads("{\"transactionId\":5,\"accountOrigin\":\"A\",\"amount\":1.5}", 0, NULL);
    ok(back && json_equal(back, want), "read back: exactly the stored document");
    json_decref(back);
    json_decref(want);
    bson_destroy(doc);
    doc = store_mongo_row_doc("{\"transactionId\":5}", "A", NULL, 7);
    ok(doc && same(doc, "{\"transactionId\":5,\"_aetheris\":{\"account\":\"A\",\"ms\":7,"
                        "\"at\":{\"$date\":\"1970-01-01T00:00:00.007Z\"}}}"),
       "no kind: no kind member");
    bson_destroy(doc);
    ok(store_mongo_row_doc("{\"_id\":1}", "A", NULL, 1) == NULL &&
           store_mongo_row_doc("{\"_aetheris\":1}", "A", NULL, 1) == NULL,
       "documents with the reserved members are refused");
    ok(store_mongo_row_doc("[1,2]", "A", NULL, 1) == NULL &&
           store_mongo_row_doc("{nope", "A", NULL, 1) == NULL,
       "non-objects and malformed JSON are refused");

    bson_t filter, opts;
    struct store_query q = {.limit = 10};
    store_mongo_list_query(&q, NULL, &filter, &opts);
    ok(same(&filter, "{}"), "no filters: an empty filter");
    ok(same(&opts, "{\"sort\":{\"_aetheris.ms\":-1,\"_id\":-1},\"limit\":11}"),
       "newest first, one row more than the page");
    ok(keys_in_order(&opts, "sort", "_aetheris.ms", "_id"), "sort keys in order: time, then id");
    bson_destroy(&filter);
    bson_destroy(&opts);
    q = (struct store_query){
        .account = "A1", .kind = "BLOCK", .since_ms = 100, .until_ms = 200, .limit = 5};
    struct store_pos after = {150, 18446744073709551615ULL};
    store_mongo_list_query(&q, &after, &filter, &opts);
    ok(same(&filter, "{\"_aetheris.account\":\"A1\",\"_aetheris.kind\":\"BLOCK\","
                     "\"_aetheris.ms\":{\"$gte\":100,\"$lt\":200},"
                     "\"$or\":[{\"_aetheris.ms\":{\"$lt\":150}},"
                     "{\"_aetheris.ms\":150,\"_id\":{\"$lt\":-1}}]}"),
       "every filter and the continuation (the key of 2^64-1 is -1)");
    bson_destroy(&filter);
    bson_destroy(&opts);
    q = (struct store_query){.until_ms = 9, .limit = 1};
    store_mongo_list_query(&q, NULL, &filter, &opts);
    ok(same(&filter, "{\"_aetheris.ms\":{\"$lt\":9}}"), "until alone");
    bson_destroy(&filter);
    bson_destroy(&opts);

    bson_t *cmd = store_mongo_index_command("commands", STORE_TABLE_DECISIONS, 30);
    ok(same(cmd,
            "{\"createIndexes\":\"commands\",\"indexes\":["
            "{\"key\":{\"_aetheris.ms\":-1,\"_id\":-1},\"name\":\"time\"},"
            "{\"key\":{\"_aetheris.account\":1,\"_aetheris.ms\":-1},\"name\":\"account_time\"},"
            "{\"key\":{\"_aetheris.kind\":1,\"_aetheris.ms\":-1},\"name\":\"kind_time\"}]}"),
       "decisions: time, account and action indexes");
    ok(keys_in_order(cmd, "indexes.1.key", "_aetheris.account", "_aetheris.ms"),
       "compound index keys in order");
    bson_destroy(cmd);
    cmd = store_mongo_index_command("transactions", STORE_TABLE_TRANSACTIONS, 30);
    ok(same(cmd,
            "{\"createIndexes\":\"transactions\",\"indexes\":["
            "{\"key\":{\"_aetheris.account\":1,\"_aetheris.ms\":-1},\"name\":\"account_time\"},"
            "{\"key\":{\"accountOrigin\":1},\"name\":\"accountOrigin\"}]}"),
       "transactions: history and accountOrigin indexes (transactionId is the unique _id)");
    bson_destroy(cmd);
    cmd = store_mongo_index_command("tool_audit", STORE_TABLE_TOOL_AUDIT, 30);
    ok(same(cmd,
            "{\"createIndexes\":\"tool_audit\",\"indexes\":["
            "{\"key\":{\"_aetheris.at\":1},\"name\":\"ttl\",\"expireAfterSeconds\":2592000}]}"),
       "tool audit: a TTL index of audit_ttl_days");
    bson_destroy(cmd);
    cmd = store_mongo_index_command("webhook_outbox", STORE_TABLE_WEBHOOK_OUTBOX, 30);
    ok(same(cmd,
            "{\"createIndexes\":\"webhook_outbox\",\"indexes\":["
            "{\"key\":{\"due_ms\":1},\"name\":\"due\"},"
            "{\"key\":{\"webhook_id\":1,\"msg_id\":1},\"name\":\"message\",\"unique\":true}]}"),
       "outbox: due time, and one row per (subscription, message)");
    bson_destroy(cmd);
    cmd = store_mongo_index_command("dead_letters", STORE_TABLE_DEAD_LETTERS, 30);
    ok(bson_empty(cmd), "dead letters need only _id");
    bson_destroy(cmd);

    static const uint64_t ids[] = {0, 1, 9223372036854775807ULL, 9223372036854775808ULL,
                                   18446744073709551615ULL};
    int round = 0;
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        round += store_mongo_txid(store_mongo_key(ids[i])) == ids[i];
    is_int(round, 5, "transactionId keys round-trip at both ends of the range");
    ok(store_mongo_key(5) == 5 && store_mongo_key(18446744073709551615ULL) == -1,
       "ids below 2^63 are themselves; 2^64-1 is -1");
    return done_testing();
}
