/* HTTP server over libmicrohttpd (http.c) and the handler API. One epoll thread pool serves
 * every connection, with a connection limit, per-IP limit, idle timeout and per-connection
 * memory limit; each request is resolved through the route table (route.h), its body capped by
 * the route (413), and its handler called once with the whole body. Every response carries
 * Content-Type, Cache-Control: no-store and X-Request-Id; errors are RFC 9457 problems.
 * Threads: handlers run on MHD worker threads, concurrently. They may read the store and call
 * pipeline_submit/pipeline_health, never anything slow (no LLM, no webhooks).
 * Ownership: struct app is borrowed and must outlive the server; a request is borrowed by the
 * handler for the call; a response body is handed to the server, which frees it. */
#ifndef AETHERIS_HTTP_H
#define AETHERIS_HTTP_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>
#include "app.h"
#include "problem.h"
#include "route.h"

#define HTTP_MAX_HEADERS 8        /* extra headers of one response (Allow, RateLimit-*, ...) */
#define HTTP_HEADER_VALUE_MAX 128 /* bytes of one extra header value, NUL included */
#define HTTP_REQUEST_ID_MAX 17    /* 16 hex digits and the NUL */

struct http_server;

struct http_request { /* borrowed by the handler for the call */
    struct app *app;
    const char *method;                   /* as sent ("HEAD" is routed as GET) */
    const char *path;                     /* decoded path, no query string */
    const char *params[ROUTE_MAX_PARAMS]; /* the route's {name} segments; NULL past them */
    const char *body;                     /* NULL when empty; NUL-terminated, may hold NULs */
    size_t body_len;                      /* bytes of body, at most the route's cap */
    void *conn;                           /* the MHD connection, for http_query() */
    const struct route *route;            /* the matched table entry */
    const char *request_id;               /* also sent as X-Request-Id */
    const char *principal;                /* the API key's name, "anonymous", or NULL (public) */
};

struct http_header {
    const char *name; /* static string */
    char value[HTTP_HEADER_VALUE_MAX];
};

/* A streamed body (MHD content-reader contract): returns bytes written to buf, 0 after
 * suspending the connection, or MHD_CONTENT_READER_END_OF_STREAM. */
typedef ssize_t (*http_stream_read_fn)(void *ctx, uint64_t pos, char *buf, size_t max);

struct http_response { /* filled by the handler; zero-initialized by the server */
    int status;
    char *body;               /* malloc'd; ownership passes to the server */
    size_t len;               /* bytes of body */
    const char *content_type; /* static string */
    size_t nheaders;          /* extra headers set with http_add_header() */
    struct http_header headers[HTTP_MAX_HEADERS];
    http_stream_read_fn stream_read; /* set for a streamed body (body then unused) */
    void (*stream_free)(void *ctx);  /* called once when the stream ends, however it ends */
    void *stream_ctx;
};

/* Starts listening on cfg->http_host:http_port (port 0 picks a free port) with cfg->http_threads
 * workers. Returns the server, or NULL with err filled (MHD's own reason is logged as
 * http.mhd). */
struct http_server *http_start(struct app *app, char *err, size_t errlen);
/* The port actually bound (useful when http_port is 0). */
int http_port(const struct http_server *h);
/* Stops accepting, closes connections after in-flight handlers return, frees. NULL is a no-op. */
void http_stop(struct http_server *h);

/* The decoded value of query parameter `name`, or NULL when absent or valueless ("?x").
 * Borrowed until the handler returns. */
const char *http_query(const struct http_request *req, const char *name);
/* Sets a JSON response (application/json); steals `body` (a new reference, NULL allowed only
 * for a body-less response). An unserializable value becomes a 500 problem. */
void http_json_response(struct http_response *resp, int status, json_t *body);
/* Sets an RFC 9457 problem response: type https://aetheris.dev/problems/<slug> (PROBLEM_*),
 * title from the slug, the given detail, and the request path as instance. */
void http_problem(struct http_response *resp, int status, const char *slug, const char *detail,
                  const char *instance);
/* Sets a response from a malloc'd body; takes ownership of body. content_type is static. */
void http_body_take(struct http_response *resp, int status, const char *content_type, char *body,
                    size_t len);
/* Adds a response header (name static; value copied, truncated to HTTP_HEADER_VALUE_MAX - 1).
 * 0, or ERR_FULL when HTTP_MAX_HEADERS are already set. */
int http_add_header(struct http_response *resp, const char *name, const char *value);

#endif
