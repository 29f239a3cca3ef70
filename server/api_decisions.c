/* GET /v1/decisions (filtered by account, action and time, paged newest first) and
 * GET /v1/decisions/{transaction_id}: the stored document is the command (DESIGN.md 3.6) with the
 * votes, plus the exception it decided and its latency. */
#include "api.h"
#include "api_params.h"

static const struct api_list_spec decisions_spec = {"action", "APPROVE|REVIEW|BLOCK", true};

void api_decisions_list(const struct http_request *req, struct http_response *resp)
{
    api_params_serve_list_text(req, resp, &decisions_spec, store_list_decisions_text);
}

void api_decisions_get(const struct http_request *req, struct http_response *resp)
{
    api_params_serve_get(req, resp, store_get_decision, "decision");
}
