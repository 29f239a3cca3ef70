/* GET /v1/decisions (filtered, paged) and GET /v1/decisions/{transaction_id}: the stored decision
 * document is the command plus the exception it decided and its latency. */
#include "api.h"

void api_decisions_list(const struct http_request *req, struct http_response *resp)
{
    struct store_query q;
    if (!api_parse_query(req, resp, "action", "APPROVE|REVIEW|BLOCK", &q))
        return;
    json_t *items = NULL;
    char next[STORE_CURSOR_MAX];
    int rv = store_list_decisions(req->app->store, &q, &items, next);
    api_list_response(req, resp, rv, items, next);
}

void api_decisions_get(const struct http_request *req, struct http_response *resp)
{
    api_get_by_txid(req, resp, store_get_decision, "decision");
}
