/* Redis connection wrapper (rconn.h). The context is created lazily and thrown away on the first
 * connection-level error (hiredis: "the context cannot be reused"); reconnecting re-applies the
 * command timeout, AUTH and SELECT, which hiredis does not remember. While Redis stays down, calls
 * fail fast during a doubling backoff instead of each paying the connect timeout. */
#include "rconn.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "xmalloc.h"

#define RCONN_BACKOFF_MIN_MS 50
#define RCONN_BACKOFF_MAX_MS 2000

struct rconn {
    char host[256];
    int port;
    char password[256];
    int db;
    int timeout_ms;
    redisContext *ctx;
    bool up;           /* last call succeeded at the connection level */
    bool was_up;       /* for logging transitions only */
    int64_t retry_at;  /* monotonic ms before which no reconnect is tried */
    int backoff_ms;
};

/* Parses redis://[[user]:password@]host[:port][/db]. */
static int parse_url(struct rconn *rc, const char *url, char *err, size_t errlen)
{
    const char *p = url;
    if (strncmp(p, "redis://", 8) != 0) {
        snprintf(err, errlen, "redis_url '%s' must start with redis://", url);
        return ERR_INVAL;
    }
    p += 8;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        size_t len = (size_t)(at - pw);
        if (len >= sizeof rc->password) {
            snprintf(err, errlen, "redis_url password too long");
            return ERR_INVAL;
        }
        memcpy(rc->password, pw, len);
        rc->password[len] = '\0';
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || hlen >= sizeof rc->host) {
        snprintf(err, errlen, "redis_url '%s' has no valid host", url);
        return ERR_INVAL;
    }
    memcpy(rc->host, p, hlen);
    rc->host[hlen] = '\0';
    p += hlen;
    rc->port = 6379;
    if (*p == ':') {
        char *end = NULL;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535 || (*end != '\0' && *end != '/')) {
            snprintf(err, errlen, "redis_url '%s' has an invalid port", url);
            return ERR_INVAL;
        }
        rc->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        char *end = NULL;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0' || db < 0 || db > 1000000) {
            snprintf(err, errlen, "redis_url '%s' has an invalid database number", url);
            return ERR_INVAL;
        }
        rc->db = (int)db;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "redis_url '%s' is malformed", url);
        return ERR_INVAL;
    }
    return 0;
}

struct rconn *rconn_new(const char *url, int timeout_ms, char *err, size_t errlen)
{
    struct rconn *rc = xcalloc(1, sizeof *rc);
    if (parse_url(rc, url, err, errlen) != 0) {
        free(rc);
        return NULL;
    }
    rc->timeout_ms = timeout_ms > 0 ? timeout_ms : 2000;
    rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
    return rc;
}

void rconn_free(struct rconn *rc)
{
    if (rc == NULL)
        return;
    if (rc->ctx)
        redisFree(rc->ctx);
    free(rc);
}

static void mark_down(struct rconn *rc, const char *why)
{
    if (rc->ctx) {
        redisFree(rc->ctx);
        rc->ctx = NULL;
    }
    if (rc->was_up)
        log_warn("redis.down", "redis %s:%d: %s", rc->host, rc->port, why);
    rc->was_up = false;
    rc->up = false;
    rc->retry_at = clock_mono_ms() + rc->backoff_ms;
    rc->backoff_ms = rc->backoff_ms * 2 > RCONN_BACKOFF_MAX_MS ? RCONN_BACKOFF_MAX_MS
                                                              : rc->backoff_ms * 2;
}

/* A simple command on a fresh context during connect; false on any failure. */
static bool setup_command(struct rconn *rc, const char *a0, const char *a1)
{
    const char *argv[2] = {a0, a1};
    redisReply *r = redisCommandArgv(rc->ctx, 2, argv, NULL);
    bool ok = r != NULL && r->type != REDIS_REPLY_ERROR;
    if (r && r->type == REDIS_REPLY_ERROR)
        log_error("redis.setup", "%s failed: %s", a0, r->str);
    if (r)
        freeReplyObject(r);
    return ok;
}

static bool ensure_connected(struct rconn *rc)
{
    if (rc->ctx)
        return true;
    if (clock_mono_ms() < rc->retry_at)
        return false;
    struct timeval tv = {rc->timeout_ms / 1000, (rc->timeout_ms % 1000) * 1000};
    rc->ctx = redisConnectWithTimeout(rc->host, rc->port, tv);
    if (rc->ctx == NULL || rc->ctx->err) {
        mark_down(rc, rc->ctx ? rc->ctx->errstr : "cannot allocate context");
        return false;
    }
    char db[16];
    snprintf(db, sizeof db, "%d", rc->db);
    if (redisSetTimeout(rc->ctx, tv) != REDIS_OK ||
        (rc->password[0] && !setup_command(rc, "AUTH", rc->password)) ||
        (rc->db != 0 && !setup_command(rc, "SELECT", db))) {
        mark_down(rc, "connection setup (timeout, AUTH or SELECT) failed");
        return false;
    }
    rc->up = true;
    if (!rc->was_up)
        log_info("redis.connected", "connected to redis %s:%d", rc->host, rc->port);
    rc->was_up = true;
    rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
    return true;
}

redisReply *rconn_command(struct rconn *rc, int argc, const char **argv, const size_t *lens)
{
    if (!ensure_connected(rc))
        return NULL;
    redisReply *r = redisCommandArgv(rc->ctx, argc, argv, lens);
    if (r == NULL) {
        mark_down(rc, rc->ctx->errstr);
        return NULL;
    }
    rc->up = true;
    return r;
}

redisReply *rconn_cmd(struct rconn *rc, const char *arg0, ...)
{
    struct rcmd c = {0};
    va_list ap;
    va_start(ap, arg0);
    for (const char *a = arg0; a != NULL; a = va_arg(ap, const char *))
        rcmd_add(&c, a);
    va_end(ap);
    return rconn_command(rc, c.argc, c.argv, c.lens);
}

int rconn_pipeline(struct rconn *rc, size_t n, const struct rcmd *cmds, redisReply **replies)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (!ensure_connected(rc))
        return ERR_CONN;
    for (size_t i = 0; i < n; i++) {
        const char *argv[RCONN_MAX_ARGS]; /* hiredis 0.14 takes a non-const array */
        memcpy(argv, cmds[i].argv, sizeof argv);
        if (redisAppendCommandArgv(rc->ctx, cmds[i].argc, argv, cmds[i].lens) != REDIS_OK)
            goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(rc->ctx, &r) != REDIS_OK || r == NULL)
            goto fail;
        replies[i] = r;
    }
    rc->up = true;
    return 0;
fail:
    for (size_t i = 0; i < n; i++) {
        if (replies[i])
            freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    mark_down(rc, rc->ctx ? rc->ctx->errstr : "pipeline failed");
    return ERR_CONN;
}

bool rconn_is_up(const struct rconn *rc)
{
    return rc->up;
}

int rconn_ping(struct rconn *rc)
{
    redisReply *r = rconn_cmd(rc, "PING", (char *)NULL);
    int rv = r && r->type != REDIS_REPLY_ERROR ? 0 : ERR_CONN;
    if (r)
        freeReplyObject(r);
    return rv;
}

void rcmd_add(struct rcmd *c, const char *s)
{
    rcmd_addb(c, s, strlen(s));
}

void rcmd_addb(struct rcmd *c, const void *p, size_t n)
{
    if (c->argc >= RCONN_MAX_ARGS) {
        log_error("redis.args", "too many arguments for one command (programming error)");
        abort();
    }
    c->argv[c->argc] = p;
    c->lens[c->argc] = n;
    c->argc++;
}
