/* GET /v1/deadletter: rejected inputs (with reason and truncated payload) and stream entries that
 * could not be decided, newest first. */
#include "api.h"

void api_deadletter_list(const struct http_request *req, struct http_response *resp)
{
    struct store_query q;
    if (!api_parse_query(req, resp, NULL, NULL, &q))
        return;
    json_t *items = NULL;
    char next[STORE_CURSOR_MAX];
    int rv = store_list_deadletters(req->app->store, &q, &items, next);
    api_list_response(req, resp, rv, items, next);
}
