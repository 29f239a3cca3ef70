/* Shared request parsing and replies for the API handlers (api_params.c): one strict parser per
 * parameter kind, the query-string -> store_query builder used by every list endpoint, and the
 * list/get replies, so the anomalies, decisions and dead-letter handlers are one call each.
 * Every bad parameter becomes a 400 invalid-parameter problem whose detail names it.
 * Pure (the parsers) or stateless (the replies): thread-safe. */
#ifndef AETHERIS_API_PARAMS_H
#define AETHERIS_API_PARAMS_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "http.h"
#include "store.h"

#define API_LIMIT_DEFAULT 50 /* page size without ?limit= (capped by page_max) */
#define API_ACCOUNT_MAX 64   /* bytes of ?account= */
#define API_CURSOR_MAX (STORE_CURSOR_MAX - 1)

/* ?limit=: decimal digits only, 1..page_max; NULL gives min(API_LIMIT_DEFAULT, page_max).
 * 0 or ERR_INVAL. */
int api_params_limit(const char *s, int page_max, int *out);
/* A time bound: milliseconds since the epoch (1..15 digits), or RFC 3339 UTC
 * "YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z" from 1970 on, calendar-checked (leap years; no leap second);
 * the fraction is truncated to milliseconds. 0 or ERR_INVAL. */
int api_params_time(const char *s, int64_t *ms);
/* A transaction id: 1..20 decimal digits that fit uint64. 0 or ERR_INVAL. */
int api_params_txid(const char *s, uint64_t *out);
/* True when s is one of the '|'-separated values of `allowed` (exact, case-sensitive). */
bool api_params_one_of(const char *s, const char *allowed);

struct api_list_spec {      /* which filters a list endpoint takes */
    const char *kind_param; /* "priority", "action", or NULL for none */
    const char *kinds;      /* its '|'-separated values */
    bool filters;           /* true: account, since and until apply */
};

/* Looks up one query parameter by name (NULL when absent). */
typedef const char *(*api_lookup_fn)(const void *ctx, const char *name);

/* Builds a store query from the query string (limit, cursor, and per spec kind, account, since,
 * until). Strings in q are borrowed from the lookup. 0, or ERR_INVAL with a detail naming the
 * parameter written to detail. */
int api_params_query(api_lookup_fn lookup, const void *ctx, const struct api_list_spec *spec,
                     int page_max, struct store_query *q, char *detail, size_t detaillen);

/* Lists one store collection: parses the query per spec, calls list, and answers
 * {"items":[...],"next_cursor":"..."|null}; 400 for a bad parameter or cursor, 503 when the
 * store fails. */
void api_params_serve_list(const struct http_request *req, struct http_response *resp,
                           const struct api_list_spec *spec,
                           int (*list)(struct store *, const struct store_query *, json_t **,
                                       char[STORE_CURSOR_MAX]));
/* The same answer from a text lister (store_list_*_text): the page is spliced in as the store
 * returns it, without building JSON objects. */
void api_params_serve_list_text(const struct http_request *req, struct http_response *resp,
                                const struct api_list_spec *spec,
                                int (*list)(struct store *, const struct store_query *,
                                            struct buf *, char[STORE_CURSOR_MAX]));
/* Answers one stored document by the {transaction_id} path parameter: 400 when it is not a
 * uint64, 404 (naming `what`) when absent, 503 when the store fails. */
void api_params_serve_get(const struct http_request *req, struct http_response *resp,
                          int (*get)(struct store *, uint64_t, json_t **), const char *what);

/* ?limit= of a request that is not a store list: when_absent when the parameter is missing (0:
 * the list default), else api_params_limit(). 0, or ERR_INVAL after answering the same 400 the
 * list endpoints give. */
int api_params_serve_limit(const struct http_request *req, struct http_response *resp,
                           int when_absent, int *out);

/* Borrows a Redis connection of the API's pool (app->redis) for the rest of the handler, to be
 * returned with rpool_put(req->app->redis, rc). When none comes free within
 * API_REDIS_WAIT_MS, answers 503 and returns NULL. */
#define API_REDIS_WAIT_MS 250
struct rconn;
struct rconn *api_redis_borrow(const struct http_request *req, struct http_response *resp);

#endif
