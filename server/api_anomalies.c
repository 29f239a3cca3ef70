/* GET /v1/anomalies (filtered by account, priority and time, paged newest first) and
 * GET /v1/anomalies/{transaction_id}: the exceptions the edge detected (DESIGN.md 3.3). */
#include "api.h"
#include "api_params.h"

static const struct api_list_spec anomalies_spec = {"priority", "immediate|batch", true};

void api_anomalies_list(const struct http_request *req, struct http_response *resp)
{
    api_params_serve_list_text(req, resp, &anomalies_spec, store_list_exceptions_text);
}

void api_anomalies_get(const struct http_request *req, struct http_response *resp)
{
    api_params_serve_get(req, resp, store_get_exception, "anomaly");
}
