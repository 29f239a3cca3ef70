/* Redis connection wrapper (rconn.h).
 *
 * The redisContext is created lazily on the first call and thrown away on the first
 * connection-level error, because hiredis says an errored context "cannot be reused". Every
 * reconnect re-applies the command timeout, AUTH and SELECT: hiredis keeps none of them in the
 * context. While Redis stays down, calls fail fast: after a failure no connect is attempted
 * before a deadline that starts 50 ms out and doubles up to 2 s (reset by a successful connect),
 * so a worker loop does not pay the connect timeout on every call.
 *
 * Logging is per transition, not per call: one warn line when the connection goes down (or the
 * very first connect fails), one info line "redis.connected" when it comes back. "Back" means a
 * reply was read, not that TCP connected: a hung Redis (or anything that accepts and never
 * answers) must keep the backoff growing, not reset it on every handshake. Redis error
 * replies (-ERR ...) are not connection failures: they are returned to the caller as
 * REDIS_REPLY_ERROR and leave the connection up. */
#include "rconn.h"
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "xmalloc.h"

#define RCONN_BACKOFF_MIN_MS 50   /* short enough that a Redis restart costs little */
#define RCONN_BACKOFF_MAX_MS 2000 /* a dead Redis is probed at most every 2 s per connection */
#define RCONN_DEFAULT_TIMEOUT_MS 2000

enum rconn_state {
    RCONN_NEW, /* never connected or failed yet: the first failure is logged too */
    RCONN_UP,
    RCONN_DOWN
};

struct rconn {
    char host[256];
    int port;
    char user[128];     /* "" = AUTH with the password only */
    char password[256]; /* "" = no AUTH */
    int db;
    int timeout_ms;         /* connect and per-command socket timeout */
    redisContext *ctx;      /* NULL while disconnected */
    bool up;                /* last call succeeded at the connection level */
    enum rconn_state state; /* for logging transitions only */
    int64_t retry_at;       /* monotonic ms before which no connect is attempted */
    int backoff_ms;         /* delay applied after the next failure */
};

/* ---------------------------------------------------------------- URL parsing */

/* Parses s[0..n) as a decimal made of digits only (no sign, no blanks) within [min, max]. */
static bool parse_decimal(const char *s, size_t n, long min, long max, long *out)
{
    if (n == 0 || n > 10)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* Copies s[0..n) into dst (of size cap) as a C string; false if it does not fit. */
static bool copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return false;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return true;
}

/* Parses redis://[[user]:password@]host[:port][/db] (a bare "password@" is a password too). */
static int parse_url(struct rconn *rc, const char *url, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    const char *p = url;
    if (strncmp(p, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, errlen, "redis url '%s' must start with redis://", url);
        return ERR_INVAL;
    }
    p += sizeof scheme - 1;
    const char *at = strrchr(p, '@'); /* the last '@': a password may contain '@' */
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if ((colon && !copy_part(rc->user, sizeof rc->user, p, (size_t)(colon - p))) ||
            !copy_part(rc->password, sizeof rc->password, pw, (size_t)(at - pw))) {
            snprintf(err, errlen, "redis url has a user name or password that is too long");
            return ERR_INVAL;
        }
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || strcspn(p, " \t\r\n") < hlen ||
        !copy_part(rc->host, sizeof rc->host, p, hlen)) {
        snprintf(err, errlen, "redis url '%s' has no valid host", url);
        return ERR_INVAL;
    }
    p += hlen;
    rc->port = 6379;
    if (*p == ':') {
        size_t n = strcspn(p + 1, "/");
        long port = 0;
        if (!parse_decimal(p + 1, n, 1, 65535, &port)) {
            snprintf(err, errlen, "redis url '%s' has an invalid port", url);
            return ERR_INVAL;
        }
        rc->port = (int)port;
        p += 1 + n;
    }
    rc->db = 0;
    if (*p == '/' && p[1] != '\0') {
        long db = 0;
        if (!parse_decimal(p + 1, strlen(p + 1), 0, INT_MAX, &db)) {
            snprintf(err, errlen, "redis url '%s' has an invalid database number", url);
            return ERR_INVAL;
        }
        rc->db = (int)db;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        snprintf(err, errlen, "redis url '%s' is malformed", url);
        return ERR_INVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------- connection state */

/* Parses url and allocates the handle; no network I/O. timeout_ms <= 0 selects 2 s. Returns NULL
 * with a message in err when the URL is malformed. The caller owns the result (rconn_free). */
struct rconn *rconn_new(const char *url, int timeout_ms, char *err, size_t errlen)
{
    struct rconn *rc = xcalloc(1, sizeof *rc);
    if (url == NULL || parse_url(rc, url, err, errlen) != 0) {
        if (url == NULL)
            snprintf(err, errlen, "redis url is missing");
        free(rc);
        return NULL;
    }
    rc->timeout_ms = timeout_ms > 0 ? timeout_ms : RCONN_DEFAULT_TIMEOUT_MS;
    rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
    rc->state = RCONN_NEW;
    return rc;
}

/* Closes the connection (if any) and frees rc. NULL is a no-op. */
void rconn_free(struct rconn *rc)
{
    if (rc == NULL)
        return;
    if (rc->ctx)
        redisFree(rc->ctx);
    free(rc);
}

/* Drops the context after a connection-level failure and arms the backoff. `why` may point into
 * the context, so it is logged before the context is freed. */
static void mark_down(struct rconn *rc, const char *why)
{
    if (rc->state != RCONN_DOWN)
        log_warn("redis.down", "redis %s:%d unavailable: %s (retrying with backoff)", rc->host,
                 rc->port, why);
    rc->state = RCONN_DOWN;
    rc->up = false;
    if (rc->ctx) {
        redisFree(rc->ctx);
        rc->ctx = NULL;
    }
    rc->retry_at = clock_mono_ms() + rc->backoff_ms;
    rc->backoff_ms =
        rc->backoff_ms * 2 > RCONN_BACKOFF_MAX_MS ? RCONN_BACKOFF_MAX_MS : rc->backoff_ms * 2;
}

/* Runs one setup command (AUTH, SELECT) on a fresh context. 0, or ERR_CONN with a reason in why
 * (a transport error or the error reply text). */
static int setup_command(struct rconn *rc, int argc, const char **argv, char *why, size_t whylen)
{
    redisReply *r = redisCommandArgv(rc->ctx, argc, argv, NULL);
    int rv = 0;
    if (r == NULL) {
        snprintf(why, whylen, "%s: %s", argv[0], rc->ctx->errstr);
        rv = ERR_CONN;
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "%s rejected: %s", argv[0], r->str ? r->str : "error");
        rv = ERR_CONN;
    }
out:
    if (r)
        freeReplyObject(r);
    return rv;
}

/* Connects if there is no context and the backoff allows it; true when a context is ready (set
 * up, but not yet proven alive: see mark_up). */
static bool ensure_connected(struct rconn *rc)
{
    char why[512];
    if (rc->ctx)
        return true;
    if (rc->state == RCONN_DOWN && clock_mono_ms() < rc->retry_at)
        return false;
    struct timeval tv = {rc->timeout_ms / 1000, (rc->timeout_ms % 1000) * 1000};
    rc->ctx = redisConnectWithTimeout(rc->host, rc->port, tv);
    if (rc->ctx == NULL) {
        mark_down(rc, "cannot allocate a redis context");
        return false;
    }
    if (rc->ctx->err) {
        mark_down(rc, rc->ctx->errstr);
        return false;
    }
    if (redisSetTimeout(rc->ctx, tv) != REDIS_OK) {
        mark_down(rc, "cannot set the command timeout");
        return false;
    }
    if (rc->password[0]) {
        /* AUTH user password (Redis 6 ACL) when a user is given, else AUTH password. */
        const char *auth[3] = {"AUTH", rc->user, rc->password};
        if (!rc->user[0])
            auth[1] = rc->password;
        if (setup_command(rc, rc->user[0] ? 3 : 2, auth, why, sizeof why) != 0) {
            mark_down(rc, why);
            return false;
        }
    }
    if (rc->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", rc->db);
        const char *select[2] = {"SELECT", db};
        if (setup_command(rc, 2, select, why, sizeof why) != 0) {
            mark_down(rc, why);
            return false;
        }
    }
    return true;
}

/* Records a reply received on the connection. Only a reply proves Redis is alive (a hung server
 * still completes TCP handshakes in the kernel), so this, not the connect, ends the outage:
 * the "connected" line is logged and the backoff reset here. */
static void mark_up(struct rconn *rc)
{
    if (rc->state != RCONN_UP)
        log_info("redis.connected", "connected to redis %s:%d db %d", rc->host, rc->port, rc->db);
    rc->state = RCONN_UP;
    rc->up = true;
    rc->backoff_ms = RCONN_BACKOFF_MIN_MS;
}

/* ---------------------------------------------------------------- commands */

/* Sends argv (argc arguments, lens[i] bytes each; lens NULL = NUL-terminated) and returns the
 * reply, which the caller owns (freeReplyObject). NULL when the connection failed or is in
 * backoff; an error reply is returned as REDIS_REPLY_ERROR. */
redisReply *rconn_command(struct rconn *rc, int argc, const char **argv, const size_t *lens)
{
    if (!ensure_connected(rc))
        return NULL;
    redisReply *r = redisCommandArgv(rc->ctx, argc, argv, lens);
    if (r == NULL) {
        mark_down(rc, rc->ctx->errstr);
        return NULL;
    }
    mark_up(rc);
    return r;
}

/* rconn_command() with NUL-terminated arguments; the list ends with a NULL pointer. Aborts when
 * more than RCONN_MAX_ARGS arguments are given (a programming error). */
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

/* Buffers n commands and writes them all out without reading (redisBufferWrite until the output
 * buffer is empty, as redisGetReply would before its first read). 0, or ERR_CONN (connection
 * dropped and marked down). */
int rconn_send(struct rconn *rc, size_t n, const struct rcmd *cmds)
{
    if (!ensure_connected(rc))
        return ERR_CONN;
    for (size_t i = 0; i < n; i++) {
        /* hiredis wants `const char **`; cmds is const, so its arrays are `const char *const`. */
        const char *argv[RCONN_MAX_ARGS];
        memcpy(argv, cmds[i].argv, sizeof argv);
        if (redisAppendCommandArgv(rc->ctx, cmds[i].argc, argv, cmds[i].lens) != REDIS_OK)
            goto fail;
    }
    int done = 0;
    while (!done)
        if (redisBufferWrite(rc->ctx, &done) != REDIS_OK)
            goto fail;
    return 0;
fail:
    mark_down(rc, rc->ctx->err ? rc->ctx->errstr : "pipeline write failed");
    return ERR_CONN;
}

/* Reads the n replies of the commands rconn_send wrote, in order, into replies[] (caller frees
 * each). Returns 0, or ERR_CONN with every replies[i] NULL. */
int rconn_recv(struct rconn *rc, size_t n, redisReply **replies)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (rc->ctx == NULL) /* rconn_send failed: nothing is owed */
        return ERR_CONN;
    for (size_t i = 0; i < n; i++) {
        void *r = NULL;
        if (redisGetReply(rc->ctx, &r) != REDIS_OK || r == NULL)
            goto fail;
        replies[i] = r;
    }
    if (n > 0)
        mark_up(rc);
    return 0;
fail:
    for (size_t i = 0; i < n; i++) {
        if (replies[i])
            freeReplyObject(replies[i]);
        replies[i] = NULL;
    }
    mark_down(rc, rc->ctx->err ? rc->ctx->errstr : "pipeline failed");
    return ERR_CONN;
}

/* Pipelines n commands: all are written together, then n replies are read in order into
 * replies[] (caller frees each). Returns 0, or ERR_CONN with every replies[i] NULL. */
int rconn_pipeline(struct rconn *rc, size_t n, const struct rcmd *cmds, redisReply **replies)
{
    for (size_t i = 0; i < n; i++)
        replies[i] = NULL;
    if (rconn_send(rc, n, cmds) != 0)
        return ERR_CONN;
    return rconn_recv(rc, n, replies);
}

/* True when the last call succeeded at the connection level (false before the first call). */
bool rconn_is_up(const struct rconn *rc)
{
    return rc->up;
}

/* PING with the configured timeout: 0 on a normal reply; ERR_CONN when the connection failed, is
 * in backoff, or Redis answered with an error (NOAUTH, LOADING: not usable yet). */
bool rconn_tried(const struct rconn *rc)
{
    return rc->state != RCONN_NEW;
}

int rconn_ping(struct rconn *rc)
{
    redisReply *r = rconn_cmd(rc, "PING", (char *)NULL);
    int rv = r && r->type != REDIS_REPLY_ERROR ? 0 : ERR_CONN;
    if (r)
        freeReplyObject(r);
    return rv;
}

/* Appends the NUL-terminated s (borrowed: it must outlive the command). */
void rcmd_add(struct rcmd *c, const char *s)
{
    rcmd_addb(c, s, strlen(s));
}

/* Appends n bytes at p (borrowed). Aborts when the command already has RCONN_MAX_ARGS arguments:
 * callers build fixed-shape commands, so overflowing is a programming error. */
void rcmd_addb(struct rcmd *c, const void *p, size_t n)
{
    if (c->argc < 0 || c->argc >= RCONN_MAX_ARGS) {
        log_error("redis.args", "more than %d arguments for one command (programming error)",
                  RCONN_MAX_ARGS);
        abort();
    }
    c->argv[c->argc] = p;
    c->lens[c->argc] = n;
    c->argc++;
}
