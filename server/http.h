/* HTTP server over libmicrohttpd (http.c): epoll thread pool, connection limit and timeout,
 * per-connection memory limit, route-driven body caps (413), RFC 9457 errors, and helpers for
 * handlers to build JSON and problem responses. Handlers run on MHD worker threads: they may read
 * the store and call pipeline_submit/pipeline_health, never anything slow. */
#ifndef AETHERIS_HTTP_H
#define AETHERIS_HTTP_H
#include "fmacros.h"
#include <stddef.h>
#include <jansson.h>
#include "app.h"
#include "route.h"

struct http_server;

struct http_request { /* borrowed by the handler for the call */
    struct app *app;
    const char *method;
    const char *path;
    const struct route_params *params;
    const char *body; /* NULL when there is none; not NUL-terminated by contract */
    size_t body_len;
    void *conn; /* the MHD connection, for http_query() */
};

struct http_response { /* filled by the handler */
    int status;
    char *body; /* malloc'd; ownership passes to the server */
    size_t len;
    const char *content_type; /* static string */
};

/* Starts listening on http_host:http_port. NULL on error (err filled). */
struct http_server *http_start(struct app *app, char *err, size_t errlen);
/* The bound port (useful when http_port is 0). */
int http_port(const struct http_server *h);
/* Stops accepting, finishes in-flight requests, frees. NULL is a no-op. */
void http_stop(struct http_server *h);

/* Query-string parameter value, or NULL. Borrowed for the request. */
const char *http_query(const struct http_request *req, const char *name);
/* Sets a JSON response; takes ownership of (steals) body. */
void http_json(struct http_response *resp, int status, json_t *body);
/* Sets an RFC 9457 problem response: type https://aetheris.dev/problems/<slug>. */
void http_problem(struct http_response *resp, int status, const char *slug, const char *detail,
                  const char *instance);

#endif
