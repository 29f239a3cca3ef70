/* POST /v1/events: one transaction object or an array of them, through exactly the ingest path
 * MQTT payloads take (validation, dedupe, journal, edge), answered 202 with how many were
 * accepted, duplicates and invalid. Invalid events inside a payload are counted and
 * dead-lettered, not refused, as on MQTT; only an empty body is a 400. The route's body cap has
 * already answered 413 before this runs. */
#include "api.h"
#include "err.h"
#include "pipeline.h"

void api_events_post(const struct http_request *req, struct http_response *resp)
{
    if (req->body == NULL || req->body_len == 0) {
        http_problem(resp, 400, PROBLEM_INVALID_JSON,
                     "the body must be a transaction object or an array of them", req->path);
        return;
    }
    struct submit_counts c = {0};
    int rv = pipeline_submit(req->app->pipeline, req->body, req->body_len, "http", &c);
    if (rv == ERR_CLOSED) {
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "the pipeline is shutting down", req->path);
        return;
    }
    if (rv != 0) {
        http_problem(resp, 500, PROBLEM_INTERNAL, "the events could not be submitted", req->path);
        return;
    }
    http_json_response(resp, 202,
                       json_pack("{s:i, s:i, s:i}", "accepted", c.accepted, "duplicates",
                                 c.duplicates, "invalid", c.invalid));
}
