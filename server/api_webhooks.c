/* /v1/webhooks: subscriptions to signed callbacks (DESIGN.md 5; the dispatcher is webhooks.h).
 *   GET    /v1/webhooks                      every subscription (secrets never shown)
 *   POST   /v1/webhooks                      201 with the secret, shown this once
 *   GET    /v1/webhooks/{id}                 one subscription
 *   PATCH  /v1/webhooks/{id}                 url, description, event_types, actions, enabled
 *   DELETE /v1/webhooks/{id}                 204; pending deliveries and attempt records go too
 *   POST   /v1/webhooks/{id}/test            202: a "webhook.test" delivery is enqueued
 *   POST   /v1/webhooks/{id}/rotate-secret   200 with the new secret; the old one keeps signing
 *                                            for webhook_rotation_grace_s (or ?grace_s=)
 *   GET    /v1/webhooks/{id}/deliveries      attempt records, newest first, paged
 * Bodies are strict: unknown members and wrong types are 400 invalid-parameter naming the
 * member. A URL must be http(s) without userinfo; one whose address (the literal, or every
 * address its host resolves to now) the SSRF guard refuses is 422 url-not-allowed, and the
 * guard runs again on every connection. Re-enabling a disabled subscription clears its failure
 * streak. */
#include "api.h"
#include <inttypes.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <openssl/rand.h>
#include "api_params.h"
#include "clock.h"
#include "err.h"
#include "outbox.h"
#include "ssrf.h"
#include "webhooks.h"
#include "whsign.h"

#define URL_MAX 2048
#define DESCRIPTION_MAX 256
#define SECRET_BYTES 32
#define GRACE_MAX_S 2592000 /* ?grace_s= bound: 30 days */

struct field_error { /* why a body was refused */
    int status;
    const char *slug;
    char detail[600];
};

static int refuse(struct field_error *fe, int status, const char *slug, const char *fmt,
                  const char *a, const char *b)
{
    fe->status = status;
    fe->slug = slug;
    snprintf(fe->detail, sizeof fe->detail, fmt, a, b);
    return ERR_INVAL;
}

static void answer_error(const struct http_request *req, struct http_response *resp,
                         const struct field_error *fe)
{
    http_problem(resp, fe->status, fe->slug, fe->detail, req->path);
}

/* Checks a URL as the SSRF guard sees it now: syntax, scheme, and the addresses of its host. */
static int check_url(const struct http_request *req, const char *url, struct field_error *fe)
{
    struct ssrf_target t;
    char why[200];
    const struct ssrf_allow *allow = webhooks_allow(req->app->webhooks);
    enum ssrf_verdict v = ssrf_check_url(url, allow, &t, why, sizeof why);
    if (v == SSRF_BAD_URL || v == SSRF_BAD_SCHEME)
        return refuse(fe, 400, PROBLEM_INVALID_PARAMETER, "url: %s%s", why, "");
    if (v == SSRF_BLOCKED)
        return refuse(fe, 422, PROBLEM_URL_NOT_ALLOWED, "url: %s%s", why, "");
    if (t.literal)
        return 0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(t.host, NULL, &hints, &res);
    if (rc != 0)
        return refuse(fe, 422, PROBLEM_URL_NOT_ALLOWED, "url: host %s does not resolve (%s)",
                      t.host, gai_strerror(rc));
    int verdict = 0;
    for (struct addrinfo *ai = res; ai && verdict == 0; ai = ai->ai_next)
        if (ssrf_check_addr(ai->ai_addr, allow, why, sizeof why) != SSRF_ALLOWED)
            verdict = refuse(fe, 422, PROBLEM_URL_NOT_ALLOWED, "url: host %s resolves to %s",
                             t.host, why);
    freeaddrinfo(res);
    return verdict;
}

/* A non-empty (unless may_be_empty) array of unique strings each in `allowed` ('|'-separated). */
static int check_names(const json_t *v, const char *member, const char *allowed, bool may_be_empty,
                       struct field_error *fe)
{
    if (!json_is_array(v) || (!may_be_empty && json_array_size(v) == 0))
        return refuse(fe, 400, PROBLEM_INVALID_PARAMETER, "%s: must be a%s array of strings",
                      member, may_be_empty ? "n" : " non-empty");
    size_t i, j;
    const json_t *x, *y;
    json_array_foreach(v, i, x)
    {
        if (!json_is_string(x) || !api_params_one_of(json_string_value(x), allowed))
            return refuse(fe, 400, PROBLEM_INVALID_PARAMETER, "%s: each entry must be one of %s",
                          member, allowed);
        json_array_foreach(v, j, y) if (j < i && json_equal(x, y)) return refuse(
            fe, 400, PROBLEM_INVALID_PARAMETER, "%s: %s is listed twice", member,
            json_string_value(x));
    }
    return 0;
}

/* Applies the members of body to doc, checking each (the URL's addresses last, since that may
 * resolve a name). create: url is required. On error doc may be partly changed: callers drop
 * it. */
static int apply_body(const struct http_request *req, const json_t *body, json_t *doc, bool create,
                      struct field_error *fe)
{
    if (!json_is_object(body))
        return refuse(fe, 400, PROBLEM_INVALID_JSON, "the body must be a JSON object%s%s", "", "");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        int rv = 0;
        if (strcmp(key, "url") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > URL_MAX)
                return refuse(fe, 400, PROBLEM_INVALID_PARAMETER,
                              "url: must be a string of 1 to %s bytes%s", "2048", "");
        } else if (strcmp(key, "description") == 0) {
            if (!json_is_string(v) || json_string_length(v) > DESCRIPTION_MAX)
                return refuse(fe, 400, PROBLEM_INVALID_PARAMETER,
                              "description: must be a string of at most %s bytes%s", "256", "");
        } else if (strcmp(key, "event_types") == 0) {
            rv = check_names(v, key, "anomaly.detected|decision.created", false, fe);
        } else if (strcmp(key, "actions") == 0) {
            rv = check_names(v, key, "APPROVE|REVIEW|BLOCK", true, fe);
        } else if (strcmp(key, "enabled") == 0) {
            if (!json_is_boolean(v))
                return refuse(fe, 400, PROBLEM_INVALID_PARAMETER, "enabled: must be %s%s",
                              "true or false", "");
            if (json_is_true(v) && !json_is_true(json_object_get(doc, "enabled"))) {
                json_object_set_new(doc, "disabled_reason", json_null());
                json_object_set_new(doc, "failing_since_ms", json_null());
            }
            if (json_is_false(v))
                json_object_set_new(doc, "disabled_reason",
                                    json_string("disabled through the API"));
        } else {
            return refuse(fe, 400, PROBLEM_INVALID_PARAMETER,
                          "%s: unknown member (url, description, event_types, actions, enabled)%s",
                          key, "");
        }
        if (rv != 0)
            return rv;
        json_object_set(doc, key, (json_t *)v);
    }
    const json_t *url = json_object_get(body, "url");
    if (create && url == NULL)
        return refuse(fe, 400, PROBLEM_INVALID_PARAMETER, "url: required%s%s", "", "");
    /* last: the address check may resolve the host name */
    return url ? check_url(req, json_string_value(url), fe) : 0;
}

/* The request body as JSON; NULL after answering 400 invalid-json. */
static json_t *parse_body(const struct http_request *req, struct http_response *resp)
{
    json_error_t jerr;
    json_t *body =
        req->body_len > 0 ? json_loadb(req->body, req->body_len, 0, &jerr) : json_object();
    if (body == NULL) {
        char detail[256];
        snprintf(detail, sizeof detail, "line %d, column %d: %s", jerr.line, jerr.column,
                 jerr.text);
        http_problem(resp, 400, PROBLEM_INVALID_JSON, detail, req->path);
    }
    return body;
}

static void answer_store_error(const struct http_request *req, struct http_response *resp, int rv)
{
    if (rv == ERR_NOTFOUND)
        http_problem(resp, 404, PROBLEM_NOT_FOUND, "no such webhook subscription", req->path);
    else
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "the store is unavailable", req->path);
}

/* The subscription of the {webhook_id} parameter as shown; NULL after answering 404/503. */
static json_t *load_public(const struct http_request *req, struct http_response *resp)
{
    json_t *doc = NULL;
    int rv = store_webhook_get(req->app->store, req->params[0], &doc);
    if (rv != 0) {
        answer_store_error(req, resp, rv);
        return NULL;
    }
    json_t *view = webhooks_public_view(doc);
    json_decref(doc);
    return view;
}

static int random_hex(char *out, size_t nbytes)
{
    unsigned char b[16];
    if (nbytes > sizeof b || RAND_bytes(b, (int)nbytes) != 1)
        return ERR_IO;
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

void api_webhooks_list(const struct http_request *req, struct http_response *resp)
{
    json_t *items = NULL;
    if (store_webhook_list(req->app->store, &items) != 0) {
        answer_store_error(req, resp, ERR_IO);
        return;
    }
    json_t *out = json_array();
    size_t i;
    json_t *doc;
    json_array_foreach(items, i, doc) json_array_append_new(out, webhooks_public_view(doc));
    json_decref(items);
    http_json_response(resp, 200, json_pack("{s:o}", "items", out));
}

void api_webhooks_create(const struct http_request *req, struct http_response *resp)
{
    json_t *body = parse_body(req, resp);
    if (body == NULL)
        return;
    char id[STORE_ID_MAX] = WEBHOOK_ID_PREFIX, secret[WHSIGN_SECRET_MAX];
    if (random_hex(id + strlen(id), 8) != 0 || whsign_new_secret(SECRET_BYTES, secret) != 0) {
        json_decref(body);
        http_problem(resp, 500, PROBLEM_INTERNAL, "no randomness for the id or secret", req->path);
        return;
    }
    int64_t now = clock_wall_ms();
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:[s,s], s:[], s:b, s:n, s:n, s:s, s:n, s:n, s:I, s:I}", "id", id, "url",
        "", "description", "", "event_types", outbox_type_name(OUTBOX_ANOMALY),
        outbox_type_name(OUTBOX_DECISION), "actions", "enabled", 1, "disabled_reason",
        "failing_since_ms", "secret", secret, "previous_secret", "previous_secret_expires_ms",
        "created_ms", (json_int_t)now, "updated_ms", (json_int_t)now);
    struct field_error fe;
    if (apply_body(req, body, doc, true, &fe) != 0) {
        json_decref(body);
        json_decref(doc);
        answer_error(req, resp, &fe);
        return;
    }
    json_decref(body);
    int rv = webhooks_create(req->app->webhooks, doc);
    if (rv == ERR_FULL) {
        char detail[96];
        snprintf(detail, sizeof detail, "webhook_max_subscriptions (%d) subscriptions exist",
                 req->app->cfg->webhook_max_subscriptions);
        http_problem(resp, 409, PROBLEM_CONFLICT, detail, req->path);
    } else if (rv != 0) {
        answer_store_error(req, resp, rv == ERR_NOTFOUND ? ERR_IO : rv);
    } else {
        json_t *view = webhooks_public_view(doc);
        json_object_set_new(view, "secret", json_string(secret));
        char location[STORE_ID_MAX + 16];
        snprintf(location, sizeof location, "/v1/webhooks/%s", id);
        http_json_response(resp, 201, view);
        http_add_header(resp, "Location", location);
    }
    json_decref(doc);
}

void api_webhooks_get(const struct http_request *req, struct http_response *resp)
{
    json_t *view = load_public(req, resp);
    if (view)
        http_json_response(resp, 200, view);
}

struct patch_ctx {
    const struct http_request *req;
    const json_t *body;
    struct field_error fe;
};

static int apply_patch(json_t *doc, void *arg)
{
    struct patch_ctx *c = arg;
    return apply_body(c->req, c->body, doc, false, &c->fe);
}

void api_webhooks_patch(const struct http_request *req, struct http_response *resp)
{
    json_t *body = parse_body(req, resp);
    if (body == NULL)
        return;
    struct patch_ctx c = {req, body, {0, NULL, ""}};
    int rv = webhooks_modify(req->app->webhooks, req->params[0], apply_patch, &c);
    json_decref(body);
    if (rv == ERR_INVAL)
        answer_error(req, resp, &c.fe);
    else if (rv != 0)
        answer_store_error(req, resp, rv);
    else
        api_webhooks_get(req, resp);
}

void api_webhooks_delete(const struct http_request *req, struct http_response *resp)
{
    int rv = webhooks_delete(req->app->webhooks, req->params[0]);
    if (rv != 0)
        answer_store_error(req, resp, rv);
    else
        http_json_response(resp, 204, NULL);
}

void api_webhooks_test(const struct http_request *req, struct http_response *resp)
{
    char msg_id[STORE_ID_MAX];
    int rv = webhooks_send_test(req->app->webhooks, req->params[0], msg_id);
    if (rv == ERR_CLOSED)
        http_problem(resp, 409, PROBLEM_CONFLICT,
                     "the subscription is disabled; enable it first (PATCH enabled: true)",
                     req->path);
    else if (rv != 0)
        answer_store_error(req, resp, rv);
    else
        http_json_response(
            resp, 202, json_pack("{s:s, s:s}", "msg_id", msg_id, "event_type", WEBHOOK_EVENT_TEST));
}

struct rotate_ctx {
    char secret[WHSIGN_SECRET_MAX];
    int64_t expires_ms;
};

static int apply_rotation(json_t *doc, void *arg)
{
    struct rotate_ctx *c = arg;
    json_t *old = json_object_get(doc, "secret");
    json_object_set(doc, "previous_secret", c->expires_ms > 0 ? old : json_null());
    json_object_set_new(doc, "previous_secret_expires_ms",
                        c->expires_ms > 0 ? json_integer(c->expires_ms) : json_null());
    json_object_set_new(doc, "secret", json_string(c->secret));
    return 0;
}

void api_webhooks_rotate(const struct http_request *req, struct http_response *resp)
{
    int grace = req->app->cfg->webhook_rotation_grace_s;
    const char *g = http_query(req, "grace_s");
    if (g != NULL) {
        char *end = NULL;
        long v = g[0] >= '0' && g[0] <= '9' ? strtol(g, &end, 10) : -1;
        if (v < 0 || v > GRACE_MAX_S || *end != '\0') {
            http_problem(resp, 400, PROBLEM_INVALID_PARAMETER,
                         "grace_s: must be whole seconds from 0 to 2592000", req->path);
            return;
        }
        grace = (int)v;
    }
    struct rotate_ctx c;
    if (whsign_new_secret(SECRET_BYTES, c.secret) != 0) {
        http_problem(resp, 500, PROBLEM_INTERNAL, "no randomness for the secret", req->path);
        return;
    }
    c.expires_ms = grace > 0 ? clock_wall_ms() + (int64_t)grace * 1000 : 0;
    int rv = webhooks_modify(req->app->webhooks, req->params[0], apply_rotation, &c);
    if (rv != 0) {
        answer_store_error(req, resp, rv);
        return;
    }
    http_json_response(resp, 200,
                       json_pack("{s:s, s:s, s:o}", "id", req->params[0], "secret", c.secret,
                                 "previous_secret_expires_ms",
                                 c.expires_ms > 0 ? json_integer(c.expires_ms) : json_null()));
}

static const char *lookup_query(const void *ctx, const char *name)
{
    return http_query(ctx, name);
}

void api_webhooks_deliveries(const struct http_request *req, struct http_response *resp)
{
    static const struct api_list_spec spec = {NULL, NULL, false};
    struct store_query q;
    char detail[160];
    if (api_params_query(lookup_query, req, &spec, req->app->cfg->page_max, &q, detail,
                         sizeof detail) != 0) {
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER, detail, req->path);
        return;
    }
    json_t *doc = NULL;
    int rv = store_webhook_get(req->app->store, req->params[0], &doc);
    json_decref(doc);
    if (rv != 0) {
        answer_store_error(req, resp, rv);
        return;
    }
    q.webhook_id = req->params[0];
    json_t *items = NULL;
    char next[STORE_CURSOR_MAX];
    rv = store_list_deliveries(req->app->store, &q, &items, next);
    if (rv == ERR_INVAL) {
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER,
                     "cursor is malformed (use a next_cursor value unchanged)", req->path);
        return;
    }
    if (rv != 0) {
        answer_store_error(req, resp, ERR_IO);
        return;
    }
    http_json_response(resp, 200,
                       json_pack("{s:o, s:o}", "items", items, "next_cursor",
                                 next[0] ? json_string(next) : json_null()));
}
