/* Private to store_mongo.c and its unit test: the pure builders of what the MongoDB backend
 * sends (documents, list filters and options, index specifications) and the reader of what it
 * gets back, so tests can check every byte without a server.
 *
 * Document layout. A row is its JSON document stored flat (the fields the original Aetheris
 * services wrote: transactionId, accountOrigin, ... for transactions and exceptions; the command
 * payload for decisions), with `_id` the transactionId as a signed 64-bit key (the same
 * two's-complement cast the SQLite backend uses: every id below 2^63 reads as itself) and one
 * metadata member `_aetheris: {account, kind, ms, at}` (kind: priority or action; ms: the list
 * time; at: the same time as a BSON date for the tool-audit TTL index). Reading strips `_id` and
 * `_aetheris`, giving back exactly the stored JSON document. */
#ifndef AETHERIS_STORE_MONGO_H
#define AETHERIS_STORE_MONGO_H
#include "fmacros.h"
#include <stdint.h>
#include <bson/bson.h>
#include <jansson.h>
#include "config.h"
#include "store_backend.h"

#define MONGO_META "_aetheris"

/* The collection names in the order of enum store_table (the first four from the MONGODB_*
 * options, the others fixed). names[i] points into cfg or static text. */
void store_mongo_collection_names(const struct config *cfg, const char *names[STORE_TABLE_COUNT]);
/* The $setOnInsert document of one row: json's members plus _aetheris {account, kind, ms, at}.
 * kind may be NULL (transactions, tool audit). NULL when json is not a JSON object. */
bson_t *store_mongo_row_doc(const char *json, const char *account, const char *kind, int64_t ms);
/* A list query: the filter for q and the position after which to continue (NULL: first page),
 * and the options {sort: {_aetheris.ms: -1, _id: -1}, limit: q->limit + 1}. Caller destroys. */
void store_mongo_list_query(const struct store_query *q, const struct store_pos *after,
                            bson_t *filter, bson_t *opts);
/* The createIndexes command of table t (an empty bson when it needs no index but _id's).
 * audit_ttl_days sets the TTL index of the tool audit. Caller destroys. */
bson_t *store_mongo_index_command(const char *collection, enum store_table t, int audit_ttl_days);
/* A stored row as its JSON document (without _id and _aetheris); NULL when it cannot be read. */
json_t *store_mongo_doc_json(const bson_t *row);
/* The signed key of a transactionId, and back (exact both ways). */
int64_t store_mongo_key(uint64_t txid);
uint64_t store_mongo_txid(int64_t key);

#endif
