/* HTTP server (http.h) on libmicrohttpd 0.9.75 (STYLE.md 3.1).
 *
 * Mode: MHD_USE_EPOLL_INTERNAL_THREAD with a thread pool of cfg->http_threads workers. The
 * connection limit is counted here and enforced by the accept-policy callback (on_accept: over
 * it a connection is closed at once); MHD's own, split across workers, is set above it as a
 * backstop. Slow clients are bounded by the idle timeout, one client by the per-IP limit,
 * header bloat by the per-connection memory pool, and the log lines MHD writes for each refused
 * connection by a per-second budget.
 *
 * Request life cycle (MHD access-handler contract):
 *   first call   allocate a request context, resolve the route; a Content-Length over the
 *                route's cap (413), and an unknown path (404) or wrong method (405 + Allow) of a
 *                request that carries a body, are answered at once, which MHD allows because no
 *                body has been handed over yet (it then closes the connection unread);
 *   body calls   append to a bounded buf; on overflow set too_large and discard the rest;
 *   final call   a pending 404/405, 413 if too_large, else the handler's response.
 * The context is freed in the request-completed callback, which MHD calls for every request the
 * access handler saw. Every response goes through send_response(), so headers, metrics and the
 * error log line are the same for handler responses and refusals.
 *
 * Escapes: MHD's default unescaper decodes "%00" to a NUL byte, which would silently cut a path
 * or query value short ("12%00x" read as "12"). Our unescaper decodes every other %HH and leaves
 * "%00" as text, so route.c refuses it in a path segment and a parameter parser refuses it in a
 * value. */
#include "http.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <microhttpd.h>
#include "auth.h"
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "http_metrics.h"
#include "metrics.h"
#include "ratelimit.h"
#include "stream.h"
#include "xmalloc.h"

#define HTTP_CONN_MEMORY (64 * 1024) /* MHD pool per connection: request line, headers, reads */
#define HTTP_JSON_TYPE "application/json"
#define HTTP_STREAM_BLOCK 4096 /* bytes MHD asks a stream for at a time */
/* libmicrohttpd logs one line per refused or broken connection; an attacker opening thousands a
 * second must not turn that into a disk-filling log, so past this many a second lines are only
 * counted, and the next line written says how many were dropped. */
#define HTTP_MHD_LOG_PER_S 10
/* MHD's own connection limit, a backstop at twice ours (on_accept): only a worker holding over
 * twice its even share of our limit reaches its share of MHD's, and then it alone stops
 * accepting while the other workers go on. */
#define HTTP_MHD_LIMIT(ours) ((unsigned int)(ours)*2u)

struct http_server {
    struct MHD_Daemon *daemon;
    struct app *app;
    int port;
    atomic_uint_fast64_t next_id;   /* request ids: unique for this server's life */
    atomic_int_fast64_t log_second; /* libmicrohttpd log budget: the current second, */
    atomic_int log_used;            /* lines written in it, */
    atomic_int log_suppressed;      /* and lines dropped since the last one written */
    atomic_int open_connections;    /* between MHD's STARTED and CLOSED notifications */
    int max_connections;            /* cfg->http_max_connections, enforced by on_accept */
};

struct req_ctx {
    const struct route *route; /* NULL until matched */
    struct route_params params;
    struct buf body;         /* capped at the route's body limit */
    enum route_result match; /* a 404/405 waiting for the end of a body-less request */
    unsigned allowed;        /* the Allow mask for a 405 */
    bool too_large;          /* the body passed the cap: answer 413 at the end */
    bool answered;           /* a response was queued on the first call */
    bool has_early;          /* auth or rate limit refused: `early` waits for the final call */
    struct http_response early;
    bool limited; /* rl holds this request's rate-limit state (for the headers) */
    struct ratelimit_result rl;
    char principal[AUTH_NAME_MAX];
    int64_t t0_ns; /* monotonic start, for the latency histogram */
    char id[HTTP_REQUEST_ID_MAX];
};

/* ------------------------------------------------------------------------------------------ */
/* Handler helpers                                                                             */

const char *http_query(const struct http_request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

void http_body_take(struct http_response *resp, int status, const char *content_type, char *body,
                    size_t len)
{
    free(resp->body);
    resp->status = status;
    resp->body = body;
    resp->len = body ? len : 0;
    resp->content_type = content_type;
}

void http_json_response(struct http_response *resp, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (body && text == NULL) {
        http_problem(resp, 500, PROBLEM_INTERNAL, "the response could not be serialized", NULL);
        return;
    }
    http_body_take(resp, status, HTTP_JSON_TYPE, text, text ? strlen(text) : 0);
}

void http_problem(struct http_response *resp, int status, const char *slug, const char *detail,
                  const char *instance)
{
    json_t *p = problem_new(status, slug, detail, instance);
    char *text = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    http_body_take(resp, status, PROBLEM_CONTENT_TYPE, text, text ? strlen(text) : 0);
}

int http_add_header(struct http_response *resp, const char *name, const char *value)
{
    if (resp->nheaders == HTTP_MAX_HEADERS)
        return ERR_FULL;
    struct http_header *hd = &resp->headers[resp->nheaders++];
    hd->name = name;
    snprintf(hd->value, sizeof hd->value, "%s", value);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Request handling                                                                            */

/* Queues resp (its body passes to MHD) and accounts for the request. */
static enum MHD_Result send_response(struct MHD_Connection *conn, struct req_ctx *rc,
                                     const char *method, const char *url,
                                     struct http_response *resp)
{
    if (resp->content_type == NULL)
        resp->content_type = HTTP_JSON_TYPE;
    struct MHD_Response *r;
    if (resp->stream_read) {
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, HTTP_STREAM_BLOCK,
                                              resp->stream_read, resp->stream_ctx,
                                              resp->stream_free);
        if (r == NULL) {
            resp->stream_free(resp->stream_ctx);
            return MHD_NO;
        }
    } else {
        if (resp->body == NULL)
            resp->body = xstrdup("");
        r = MHD_create_response_from_buffer_with_free_callback(resp->len, resp->body, free);
        if (r == NULL) {
            free(resp->body);
            return MHD_NO;
        }
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Request-Id", rc->id);
    for (size_t i = 0; i < resp->nheaders; i++)
        MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned int)resp->status, r);
    MHD_destroy_response(r);

    double seconds = (double)(clock_mono_ns() - rc->t0_ns) / 1e9;
    http_metrics_observe(rc->route, resp->status, seconds);
    /* 503 is a dependency outage, which the component itself logs; any other 5xx is ours. */
    if (resp->status >= 500 && resp->status != 503)
        log_warn("http.error", "%s %s -> %d in %.1f ms (request %s)", method, url, resp->status,
                 seconds * 1e3, rc->id);
    else
        log_debug("http.request", "%s %s -> %d in %.1f ms (request %s)", method, url, resp->status,
                  seconds * 1e3, rc->id);
    return ok;
}

/* Answers a request refused before its handler: 404, 405 (+ Allow) or 413. */
static enum MHD_Result refuse(struct MHD_Connection *conn, struct req_ctx *rc, const char *method,
                              const char *url, enum route_result match, unsigned allowed)
{
    struct http_response resp = {0};
    char allow[64];
    if (match == ROUTE_NOT_FOUND) {
        http_problem(&resp, 404, PROBLEM_NOT_FOUND, "no such resource", url);
    } else if (match == ROUTE_METHOD_NOT_ALLOWED) {
        char detail[96];
        route_allow_format(allowed, allow, sizeof allow);
        snprintf(detail, sizeof detail, "%s is not allowed here; allowed: %s", method, allow);
        http_problem(&resp, 405, PROBLEM_METHOD_NOT_ALLOWED, detail, url);
        http_add_header(&resp, MHD_HTTP_HEADER_ALLOW, allow);
    } else {
        http_problem(&resp, 413, PROBLEM_PAYLOAD_TOO_LARGE,
                     "the request body exceeds this route's limit", url);
    }
    rc->answered = true;
    return send_response(conn, rc, method, url, &resp);
}

/* True when the request announces a body (Content-Length above 0, or chunked). */
static bool announces_body(struct MHD_Connection *conn, uint64_t declared, bool has_length)
{
    if (has_length)
        return declared > 0;
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING) !=
           NULL;
}

/* Content-Length as a number; false when absent or not a plain decimal. */
static bool content_length(struct MHD_Connection *conn, uint64_t *out)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (v == NULL || *v < '0' || *v > '9')
        return false;
    char *end = NULL;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end != '\0')
        return false;
    *out = n;
    return true;
}

/* Adds RateLimit-Limit/Remaining/Reset (and Retry-After when refused). */
static void add_ratelimit_headers(struct http_response *resp, const struct ratelimit_result *rl)
{
    char v[32];
    snprintf(v, sizeof v, "%ld", rl->limit);
    http_add_header(resp, "RateLimit-Limit", v);
    snprintf(v, sizeof v, "%ld", rl->remaining);
    http_add_header(resp, "RateLimit-Remaining", v);
    snprintf(v, sizeof v, "%ld", rl->reset_s);
    http_add_header(resp, "RateLimit-Reset", v);
    if (!rl->allowed) {
        snprintf(v, sizeof v, "%ld", rl->retry_after_s);
        http_add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
}

/* The client address as text, for the per-address bucket with auth disabled. */
static void client_text(const struct sockaddr *sa, char *out, size_t outlen)
{
    snprintf(out, outlen, "unknown");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)outlen);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)outlen);
}

/* Auth, the failure throttle and the rate limit for a matched route, before any body is read.
 * True to proceed; false with *resp set to the refusal (401, 403 or 429). */
static bool gate(struct http_server *h, struct MHD_Connection *conn, struct req_ctx *rc,
                 const char *url, struct http_response *resp)
{
    const struct app *app = h->app;
    enum route_scope need = rc->route->scope;
    if ((rc->route->flags & ROUTE_METRICS_SCOPE) && !app->cfg->metrics_public)
        need = ROUTE_SCOPE_READ;
    if (need == ROUTE_SCOPE_PUBLIC)
        return true;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *client = ci ? ci->client_addr : NULL;
    char detail[160], retry[16];
    if (app->auth) {
        const char *key = auth_presented_key(
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-API-Key"),
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
        struct auth_identity who;
        int wait = 0;
        switch (auth_check(app->auth, key, need, client, &who, &wait)) {
        case AUTH_OK:
            snprintf(rc->principal, sizeof rc->principal, "%s", who.name);
            break;
        case AUTH_MISSING:
        case AUTH_INVALID:
            http_problem(resp, 401, PROBLEM_UNAUTHORIZED,
                         key ? "the API key is not valid"
                             : "an API key is required (X-API-Key or Authorization: Bearer)",
                         url);
            http_add_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"aetheris\"");
            return false;
        case AUTH_FORBIDDEN:
            snprintf(detail, sizeof detail, "this route needs scope %s; key '%s' has scope %s",
                     route_scope_name(need), who.name, route_scope_name(who.scope));
            http_problem(resp, 403, PROBLEM_FORBIDDEN, detail, url);
            return false;
        case AUTH_THROTTLED:
            snprintf(detail, sizeof detail,
                     "too many failed authentications from this address; retry in %d s", wait);
            http_problem(resp, 429, PROBLEM_RATE_LIMITED, detail, url);
            snprintf(retry, sizeof retry, "%d", wait);
            http_add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
            return false;
        }
    }
    if (app->limiter && ratelimit_enabled(app->limiter)) {
        char bucket[AUTH_NAME_MAX + 64], addr[INET6_ADDRSTRLEN];
        if (app->auth && auth_enabled(app->auth)) {
            snprintf(bucket, sizeof bucket, "key:%s", rc->principal);
        } else {
            client_text(client, addr, sizeof addr);
            snprintf(bucket, sizeof bucket, "ip:%s", addr);
        }
        ratelimit_take(app->limiter, bucket, &rc->rl);
        rc->limited = true;
        if (!rc->rl.allowed) {
            snprintf(detail, sizeof detail, "rate limit of %ld requests exceeded; retry in %ld s",
                     rc->rl.limit, rc->rl.retry_after_s);
            http_problem(resp, 429, PROBLEM_RATE_LIMITED, detail, url);
            add_ratelimit_headers(resp, &rc->rl);
            return false;
        }
    }
    return true;
}

/* First call: context, route resolution and the early refusals. */
static enum MHD_Result on_headers(struct http_server *h, struct MHD_Connection *conn,
                                  const char *url, const char *method, void **req_cls)
{
    struct req_ctx *rc = xcalloc(1, sizeof *rc);
    rc->t0_ns = clock_mono_ns();
    snprintf(rc->id, sizeof rc->id, "%016llx",
             (unsigned long long)atomic_fetch_add(&h->next_id, 1));
    *req_cls = rc;
    uint64_t declared = 0;
    bool has_length = content_length(conn, &declared);
    rc->match = route_match(method, url, &rc->route, &rc->params, &rc->allowed);
    if (rc->match != ROUTE_MATCH) {
        /* With a body on the way, refuse now (MHD then closes instead of reading it); without
         * one, answer on the final call so the connection stays usable for keep-alive. */
        rc->route = NULL;
        buf_init(&rc->body, 0);
        if (announces_body(conn, declared, has_length))
            return refuse(conn, rc, method, url, rc->match, rc->allowed);
        return MHD_YES;
    }
    size_t cap = route_body_cap(rc->route, (size_t)h->app->cfg->http_max_body);
    buf_init(&rc->body, cap);
    if (!gate(h, conn, rc, url, &rc->early)) {
        /* As for 404/405: at once when a body is coming (MHD then closes without reading it),
         * else on the final call so the connection stays usable. */
        if (announces_body(conn, declared, has_length)) {
            rc->answered = true;
            return send_response(conn, rc, method, url, &rc->early);
        }
        rc->has_early = true;
        return MHD_YES;
    }
    if (has_length && declared > cap)
        return refuse(conn, rc, method, url, ROUTE_MATCH, 0);
    return MHD_YES;
}

/* Final call: the handler, with the whole body. */
static enum MHD_Result on_complete_request(struct http_server *h, struct MHD_Connection *conn,
                                           struct req_ctx *rc, const char *url, const char *method)
{
    if (rc->match != ROUTE_MATCH)
        return refuse(conn, rc, method, url, rc->match, rc->allowed);
    if (rc->has_early) {
        rc->answered = true;
        rc->has_early = false;
        return send_response(conn, rc, method, url, &rc->early);
    }
    if (rc->too_large)
        return refuse(conn, rc, method, url, ROUTE_MATCH, 0);
    struct http_request req = {
        .app = h->app,
        .method = method,
        .path = url,
        .body = rc->body.len ? rc->body.data : NULL,
        .body_len = rc->body.len,
        .conn = conn,
        .route = rc->route,
        .request_id = rc->id,
        .principal = rc->principal[0] ? rc->principal : NULL,
    };
    for (size_t i = 0; i < rc->params.n; i++)
        req.params[i] = rc->params.value[i];
    struct http_response resp = {0};
    rc->route->handler(&req, &resp);
    if (resp.status < 100 || resp.status > 599) {
        log_error("http.handler", "handler %s set no valid status (%d)", rc->route->name,
                  resp.status);
        http_problem(&resp, 500, PROBLEM_INTERNAL, "the handler gave no response", url);
    }
    if (rc->limited)
        add_ratelimit_headers(&resp, &rc->rl);
    rc->answered = true;
    return send_response(conn, rc, method, url, &resp);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    struct http_server *h = cls;
    struct req_ctx *rc = *req_cls;
    (void)version;
    if (rc == NULL)
        return on_headers(h, conn, url, method, req_cls);
    if (*upload_data_size > 0) {
        if (!rc->answered && !rc->too_large && !rc->has_early &&
            buf_append(&rc->body, upload_data, *upload_data_size) != 0) {
            rc->too_large = true;
            buf_cleanup(&rc->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rc->answered)
        return MHD_YES;
    return on_complete_request(h, conn, rc, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req_ctx *rc = *req_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (rc == NULL)
        return;
    buf_cleanup(&rc->body);
    if (rc->has_early) /* refused, and the client left before the final call */
        free(rc->early.body);
    free(rc);
    *req_cls = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* MHD callbacks and life cycle                                                                */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes %HH in place except %00 (kept as text, see the file comment); returns the length. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *w = s;
    for (const char *r = s; *r;) {
        int hi = r[0] == '%' ? hex_digit(r[1]) : -1;
        int lo = hi >= 0 ? hex_digit(r[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* The connection limit, ours rather than MHD's: MHD 0.9.75 at its own limit stops accepting, and
 * once connections close it resumes only at its next timeout wake-up (http_timeout_s later),
 * so queued clients stalled that long after a flood of slow connections ended. Refusing here
 * closes an over-limit connection at once instead, and MHD's own limit (set higher) is never
 * reached. Concurrent accepts on several workers may overshoot by at most one per worker. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    struct http_server *h = cls;
    (void)addr;
    (void)addrlen;
    return atomic_load(&h->open_connections) < h->max_connections ? MHD_YES : MHD_NO;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *h = cls;
    (void)conn;
    (void)socket_ctx;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&h->open_connections, 1);
    else if (code == MHD_CONNECTION_NOTIFY_CLOSED)
        atomic_fetch_sub(&h->open_connections, 1);
}

/* MHD's error log (its messages end with a newline we drop), at most HTTP_MHD_LOG_PER_S lines a
 * second (called from every worker; the budget is approximate at a second's boundary, which is
 * all it needs to be). */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct http_server *h = cls;
    int_fast64_t now_s = clock_mono_ms() / 1000;
    int_fast64_t seen = atomic_load(&h->log_second);
    if (seen != now_s && atomic_compare_exchange_strong(&h->log_second, &seen, now_s))
        atomic_store(&h->log_used, 0);
    if (atomic_fetch_add(&h->log_used, 1) >= HTTP_MHD_LOG_PER_S) {
        atomic_fetch_add(&h->log_suppressed, 1);
        return;
    }
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    int dropped = atomic_exchange(&h->log_suppressed, 0);
    if (dropped > 0)
        log_warn("http.mhd", "%s (%d more libmicrohttpd lines were dropped, over %d a second)", msg,
                 dropped, HTTP_MHD_LOG_PER_S);
    else
        log_warn("http.mhd", "%s", msg);
}

/* Resolves host (numeric or a name) to a passive address; 0 or ERR_INVAL (err filled). */
static int resolve_host(const char *host, int port, struct sockaddr_storage *ss, char *err,
                        size_t errlen)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rv = getaddrinfo(host, NULL, &hints, &ai);
    if (rv != 0 || ai == NULL) {
        snprintf(err, errlen, "http_host '%s' cannot be resolved: %s", host, gai_strerror(rv));
        return ERR_INVAL;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    freeaddrinfo(ai);
    return 0;
}

struct http_server *http_start(struct app *app, char *err, size_t errlen)
{
    const struct config *cfg = app->cfg;
    struct sockaddr_storage addr;
    if (resolve_host(cfg->http_host, cfg->http_port, &addr, err, errlen) != 0)
        return NULL;
    /* MHD gives each pool worker limit/threads connections: never fewer than one each. */
    unsigned int threads = (unsigned int)cfg->http_threads;
    if (threads > (unsigned int)cfg->http_max_connections)
        threads = (unsigned int)cfg->http_max_connections;
    /* Suspend/resume (which brings MHD's inter-thread channel) lets a stream wait for events
     * without holding a worker thread (stream.h). */
    unsigned int flags =
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;

    struct http_server *h = xcalloc(1, sizeof *h);
    h->app = app;
    atomic_init(&h->next_id, 1);
    atomic_init(&h->log_second, 0);
    atomic_init(&h->log_used, 0);
    atomic_init(&h->log_suppressed, 0);
    atomic_init(&h->open_connections, 0);
    h->max_connections = cfg->http_max_connections;
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->http_port, on_accept, h, on_request, h, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_LIMIT, HTTP_MHD_LIMIT(cfg->http_max_connections),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)cfg->http_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)cfg->http_max_connections_per_ip,
        MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, h, MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, h, MHD_OPTION_END);
    if (h->daemon == NULL) {
        snprintf(err, errlen, "cannot serve HTTP on %s:%d (the http.mhd log line has the reason)",
                 cfg->http_host, cfg->http_port);
        free(h);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info && info->port ? info->port : cfg->http_port;
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
    if (h->app->streams) /* MHD must not be stopped with suspended connections */
        stream_hub_shutdown(h->app->streams);
    MHD_stop_daemon(h->daemon);
    free(h);
}
