/* Redis connection wrapper over hiredis 0.14 (h2o redis.h shape). One rconn per thread: it is
 * NOT thread-safe, like the redisContext inside it. Connects lazily; on any connection error the
 * context is dropped, one log line is written, and the next call reconnects (after a backoff that
 * doubles from 50 ms to 2 s while Redis stays down), re-applying the timeout and AUTH/SELECT from
 * the URL. Commands are always sent in argv form: binary-safe, never a format string. */
#ifndef AETHERIS_RCONN_H
#define AETHERIS_RCONN_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <hiredis/hiredis.h>

#define RCONN_MAX_ARGS 24 /* XADD with a few fields, EVALSHA with keys: well under this */

struct rconn;

/* One command for rconn_pipeline(): argv[i] has lens[i] bytes. */
struct rcmd {
    int argc;
    const char *argv[RCONN_MAX_ARGS];
    size_t lens[RCONN_MAX_ARGS];
};

/* Parses url (redis://[:password@]host[:port][/db]); does not connect. NULL on a malformed URL
 * (with err filled). */
struct rconn *rconn_new(const char *url, int timeout_ms, char *err, size_t errlen);
void rconn_free(struct rconn *rc); /* NULL is a no-op */
/* Sends one command; returns the reply (caller frees with freeReplyObject()) or NULL when the
 * connection failed or is in backoff. A Redis error reply is returned as a REDIS_REPLY_ERROR reply,
 * not NULL. */
redisReply *rconn_command(struct rconn *rc, int argc, const char **argv, const size_t *lens);
/* Same with NUL-terminated string arguments, terminated by a NULL pointer. */
redisReply *rconn_cmd(struct rconn *rc, const char *arg0, ...) __attribute__((sentinel));
/* Sends n commands in one write and reads n replies into replies[] (caller frees each).
 * Returns 0, or ERR_CONN with every replies[i] NULL (nothing partial is kept). */
int rconn_pipeline(struct rconn *rc, size_t n, const struct rcmd *cmds, redisReply **replies);
/* rconn_pipeline in two halves, so the caller can work while Redis answers: rconn_send writes the
 * n commands (0 or ERR_CONN), rconn_recv reads their n replies (as rconn_pipeline). No other
 * call on rc may come between the two; after a failed send, recv fails without reading. */
int rconn_send(struct rconn *rc, size_t n, const struct rcmd *cmds);
int rconn_recv(struct rconn *rc, size_t n, redisReply **replies);
/* True after the last call succeeded at the connection level. */
bool rconn_is_up(const struct rconn *rc);
/* True once a call has tried to reach Redis (so rconn_is_up() tells something). */
bool rconn_tried(const struct rconn *rc);
/* PING with the configured timeout: 0 or ERR_CONN. */
int rconn_ping(struct rconn *rc);
/* Appends a NUL-terminated argument to a struct rcmd (argc must stay < RCONN_MAX_ARGS). */
void rcmd_add(struct rcmd *c, const char *s);
/* Appends a binary argument of n bytes. */
void rcmd_addb(struct rcmd *c, const void *p, size_t n);

#endif
