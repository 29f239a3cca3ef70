/* GET /v1/deadletter: rejected inputs (source, reason, truncated payload) and stream entries that
 * could not be decided, newest first; only ?limit= and ?cursor= apply. */
#include "api.h"
#include "api_params.h"

static const struct api_list_spec deadletter_spec = {NULL, NULL, false};

void api_deadletter_list(const struct http_request *req, struct http_response *resp)
{
    api_params_serve_list(req, resp, &deadletter_spec, store_list_deadletters);
}
