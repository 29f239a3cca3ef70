/* HTTP server (http.h) on libmicrohttpd 0.9.75.
 *
 * Each request gets a context on the first access-handler call: the route is resolved there, so
 * unknown routes, wrong methods and a Content-Length over the route's cap are answered at once
 * (MHD then discards the body and closes). The body is accumulated in a bounded buf; overflow
 * sets a flag and the rest is discarded, and the final call answers 413. The handler runs on the
 * final call; its response body is handed to MHD, which frees it. The context is freed in the
 * request-completed callback, which MHD calls for every request it started. */
#include "http.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

#define HTTP_CONN_MEMORY (64 * 1024) /* per-connection MHD pool: headers and small bodies */
#define HTTP_PER_IP_LIMIT 256        /* one client cannot take every connection */
#define PROBLEM_BASE "https://aetheris.dev/problems/"

struct http_server {
    struct MHD_Daemon *daemon;
    struct app *app;
    int port;
};

struct req_ctx {
    const struct route *route;
    enum route_match_result match;
    struct route_params params;
    char allow[64];
    struct buf body;
    bool too_large;
    int64_t t0;
};

static atomic_uint_fast64_t request_counter;

const char *http_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_json(struct http_response *resp, int status, json_t *body)
{
    resp->status = status;
    resp->body = json_dumps(body, JSON_COMPACT);
    resp->len = resp->body ? strlen(resp->body) : 0;
    resp->content_type = "application/json";
    json_decref(body);
}

static const char *problem_title(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Content Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Internal Server Error" : "Error";
    }
}

void http_problem(struct http_response *resp, int status, const char *slug, const char *detail,
                  const char *instance)
{
    char type[128];
    snprintf(type, sizeof type, PROBLEM_BASE "%s", slug);
    http_json(resp, status,
              json_pack("{s:s, s:s, s:i, s:s, s:s}", "type", type, "title", problem_title(status),
                        "status", status, "detail", detail, "instance", instance));
    resp->content_type = "application/problem+json";
}

static enum MHD_Result send_response(struct MHD_Connection *conn, struct http_response *resp,
                                     const char *allow)
{
    if (resp->body == NULL) {
        resp->body = xstrdup("");
        resp->len = 0;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
    char rid[32];
    snprintf(rid, sizeof rid, "%llx",
             (unsigned long long)atomic_fetch_add(&request_counter, 1) + 1);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Request-Id", rid);
    if (allow && allow[0])
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);
    return ok;
}

/* Answers a request that fails before its handler (404, 405, 413). */
static enum MHD_Result refuse(struct MHD_Connection *conn, struct req_ctx *rc, const char *url)
{
    struct http_response resp = {0};
    if (rc->match == ROUTE_NOT_FOUND)
        http_problem(&resp, 404, "not-found", "no such route", url);
    else if (rc->match == ROUTE_METHOD_NOT_ALLOWED)
        http_problem(&resp, 405, "method-not-allowed", "method not allowed on this route", url);
    else
        http_problem(&resp, 413, "payload-too-large", "request body exceeds the limit", url);
    metrics_inc(M_HTTP_REQUESTS);
    return send_response(conn, &resp, rc->match == ROUTE_METHOD_NOT_ALLOWED ? rc->allow : NULL);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *h = cls;
    struct req_ctx *rc = *req_cls;
    (void)version;
    if (rc == NULL) {
        rc = xcalloc(1, sizeof *rc);
        rc->t0 = clock_mono_ns();
        rc->match = route_match(method, url, &rc->route, &rc->params, rc->allow, sizeof rc->allow);
        size_t cap = rc->match == ROUTE_MATCH && rc->route->has_body
                         ? (size_t)h->app->cfg->http_max_body
                         : 0;
        buf_init(&rc->body, cap);
        *req_cls = rc;
        if (rc->match != ROUTE_MATCH)
            return refuse(conn, rc, url);
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > cap) {
            rc->too_large = true;
            return refuse(conn, rc, url);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rc->too_large && buf_append(&rc->body, upload_data, *upload_data_size) != 0) {
            rc->too_large = true;
            buf_cleanup(&rc->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rc->too_large)
        return refuse(conn, rc, url);
    struct http_request req = {h->app, method, url, &rc->params, rc->body.data, rc->body.len, conn};
    struct http_response resp = {.status = 500, .content_type = "application/json"};
    rc->route->handler(&req, &resp);
    metrics_inc(M_HTTP_REQUESTS);
    metrics_observe(H_HTTP_REQUEST, (double)(clock_mono_ns() - rc->t0) / 1e9);
    return send_response(conn, &resp, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req_ctx *rc = *req_cls;
    if (rc == NULL)
        return;
    buf_cleanup(&rc->body);
    free(rc);
    *req_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    log_warn("http.mhd", "%s", msg);
}

struct http_server *http_start(struct app *app, char *err, size_t errlen)
{
    const struct config *cfg = app->cfg;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)cfg->http_port);
    if (inet_pton(AF_INET, cfg->http_host, &addr.sin_addr) != 1) {
        snprintf(err, errlen, "http_host '%s' is not an IPv4 address", cfg->http_host);
        return NULL;
    }
    struct http_server *h = xcalloc(1, sizeof *h);
    h->app = app;
    unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->http_port, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)cfg->http_threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)cfg->http_max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)cfg->http_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)HTTP_CONN_MEMORY, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        (unsigned int)HTTP_PER_IP_LIMIT, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%d (port in use?)", cfg->http_host,
                 cfg->http_port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->http_port;
    return h;
}

int http_port(const struct http_server *h)
{
    return h->port;
}

void http_stop(struct http_server *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}
