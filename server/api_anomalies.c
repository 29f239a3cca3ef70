/* GET /v1/anomalies (filtered, paged) and GET /v1/anomalies/{transaction_id}. */
#include "api.h"

void api_anomalies_list(const struct http_request *req, struct http_response *resp)
{
    struct store_query q;
    if (!api_parse_query(req, resp, "priority", "immediate|batch", &q))
        return;
    json_t *items = NULL;
    char next[STORE_CURSOR_MAX];
    int rv = store_list_exceptions(req->app->store, &q, &items, next);
    api_list_response(req, resp, rv, items, next);
}

void api_anomalies_get(const struct http_request *req, struct http_response *resp)
{
    api_get_by_txid(req, resp, store_get_exception, "anomaly");
}
