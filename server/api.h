/* REST handlers (server/api_*.c), one file per resource, plus the shared parameter parsing in
 * api_params.c. Each handler fills the response; none blocks on anything but the store. */
#ifndef AETHERIS_API_H
#define AETHERIS_API_H
#include "fmacros.h"
#include <stdbool.h>
#include <stdint.h>
#include "http.h"
#include "store.h"

void api_healthz(const struct http_request *req, struct http_response *resp);
void api_readyz(const struct http_request *req, struct http_response *resp);
void api_health(const struct http_request *req, struct http_response *resp);
void api_anomalies_list(const struct http_request *req, struct http_response *resp);
void api_anomalies_get(const struct http_request *req, struct http_response *resp);
void api_decisions_list(const struct http_request *req, struct http_response *resp);
void api_decisions_get(const struct http_request *req, struct http_response *resp);
void api_deadletter_list(const struct http_request *req, struct http_response *resp);
void api_events_post(const struct http_request *req, struct http_response *resp);
void api_metrics_json(const struct http_request *req, struct http_response *resp);
void api_metrics_prometheus(const struct http_request *req, struct http_response *resp);

/* Parses a time bound: milliseconds since the epoch, or RFC 3339 UTC
 * "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (calendar-checked). 0 or ERR_INVAL. */
int api_parse_time(const char *s, int64_t *ms);
/* Parses a transactionId path segment (1..20 digits, fits uint64). 0 or ERR_INVAL. */
int api_parse_txid(const char *s, uint64_t *out);
/* Fills a store query from ?account, ?<kind_param>, ?since, ?until, ?limit, ?cursor; kind values
 * must be one of `kinds` ('|'-separated). On a bad parameter sets a 400 problem naming it and
 * returns false. */
bool api_parse_query(const struct http_request *req, struct http_response *resp,
                     const char *kind_param, const char *kinds, struct store_query *q);
/* Answers {items, next_cursor} from a store list result (rv, items stolen), or the error. */
void api_list_response(const struct http_request *req, struct http_response *resp, int rv,
                       json_t *items, const char *next_cursor);
/* Answers one stored document by the {transaction_id} path parameter through `get`. */
void api_get_by_txid(const struct http_request *req, struct http_response *resp,
                     int (*get)(struct store *, uint64_t, json_t **), const char *what);

#endif
