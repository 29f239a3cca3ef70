/* POST /v1/events: the same ingest path as MQTT (validation, dedupe, journal), answered with how
 * many events were accepted, duplicates and invalid. The route's body cap gives 413 before this
 * runs. */
#include "api.h"
#include "err.h"
#include "pipeline.h"

void api_events_post(const struct http_request *req, struct http_response *resp)
{
    if (req->body == NULL || req->body_len == 0) {
        http_problem(resp, 400, "invalid-json",
                     "the body must be a JSON object or array of "
                     "transaction events",
                     req->path);
        return;
    }
    struct submit_counts c = {0};
    int rv = pipeline_submit(req->app->pipeline, req->body, req->body_len, "http", &c);
    if (rv != 0) {
        http_problem(resp, 503, "unavailable", "the pipeline is shutting down", req->path);
        return;
    }
    http_json(resp, 202,
              json_pack("{s:i, s:i, s:i}", "accepted", c.accepted, "duplicates", c.duplicates,
                        "invalid", c.invalid));
}
