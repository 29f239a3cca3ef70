/* POST /v1/events: one transaction object or an array of them, through exactly the ingest path
 * MQTT payloads take (validation, dedupe, journal, edge, dead letters).
 *
 * A request malformed as a whole is refused with a problem: a body that is not JSON (400
 * invalid-json, with the line and column), JSON that is neither an object nor an array of
 * objects (400), an array over mqtt_max_batch (413), or a single object that fails validation
 * (400 invalid-event naming the field). Inside a well-formed array each item is judged on its
 * own, as on MQTT: the answer is 202 with the accepted, duplicate and invalid counts and, for the
 * first SUBMIT_ERRORS_MAX refused items, their index and the field at fault. Every refused
 * payload or item is also dead-lettered, whatever the status. The route's body cap has already
 * answered 413 before this runs. */
#include "api.h"
#include <string.h>
#include "err.h"
#include "pipeline.h"

static json_t *errors_json(const struct submit_counts *c)
{
    json_t *errors = json_array();
    for (int i = 0; i < c->nerrors; i++)
        json_array_append_new(errors,
                              json_pack("{s:i, s:s, s:s}", "index", c->errors[i].index, "reason",
                                        c->errors[i].reason, "detail", c->errors[i].detail));
    return errors;
}

/* The body was a JSON array: its first byte that is not whitespace is '['. */
static bool body_is_array(const char *body, size_t len)
{
    size_t i = 0;
    while (i < len && strchr(" \t\r\n", body[i]) != NULL)
        i++;
    return i < len && body[i] == '[';
}

/* A problem for a payload refused as a whole; false when the counts are per item. */
static bool whole_payload_refused(const struct http_request *req, const struct submit_counts *c,
                                  struct http_response *resp)
{
    if (c->accepted + c->duplicates != 0 || c->invalid != 1 || c->nerrors != 1)
        return false;
    const struct submit_error *e = &c->errors[0];
    bool array = body_is_array(req->body, req->body_len);
    if (strcmp(e->reason, "bad_json") == 0)
        http_problem(resp, 400, PROBLEM_INVALID_JSON, e->detail, req->path);
    else if (strcmp(e->reason, "too_large") == 0)
        http_problem(resp, 413, PROBLEM_PAYLOAD_TOO_LARGE, e->detail, req->path);
    else if (strcmp(e->reason, "not_object") == 0 && !array)
        http_problem(resp, 400, PROBLEM_INVALID_JSON,
                     "the body must be a transaction object or an array of them", req->path);
    else if (!array)
        http_problem(resp, 400, PROBLEM_INVALID_EVENT, e->detail, req->path);
    else
        return false;
    return true;
}

void api_events_post(const struct http_request *req, struct http_response *resp)
{
    if (req->body == NULL || req->body_len == 0) {
        http_problem(resp, 400, PROBLEM_INVALID_JSON,
                     "the body must be a transaction object or an array of them", req->path);
        return;
    }
    struct submit_counts c;
    memset(&c, 0, sizeof c);
    int rv = pipeline_submit(req->app->pipeline, req->body, req->body_len, "http", &c);
    if (rv == ERR_CLOSED) {
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "the pipeline is shutting down", req->path);
        return;
    }
    if (rv == ERR_CONN) {
        http_problem(resp, 503, PROBLEM_UNAVAILABLE,
                     "events of partitions owned by other instances could not be forwarded to "
                     "the broker; submit them again",
                     req->path);
        return;
    }
    if (rv != 0) {
        http_problem(resp, 500, PROBLEM_INTERNAL, "the events could not be submitted", req->path);
        return;
    }
    if (whole_payload_refused(req, &c, resp))
        return;
    json_t *body = json_pack("{s:i, s:i, s:i}", "accepted", c.accepted, "duplicates", c.duplicates,
                             "invalid", c.invalid);
    if (c.nerrors > 0)
        json_object_set_new(body, "errors", errors_json(&c));
    http_json_response(resp, 202, body);
}
