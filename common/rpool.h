/* A fixed pool of Redis connections (rconn.h) shared by threads that each need Redis for a
 * moment: the HTTP workers (response cache, rate limiter, queue views). A thread borrows one
 * connection, uses it alone, and gives it back; the pool never grows, so the API holds at most
 * `size` Redis connections however many requests are in flight. Also here: Lua scripts run by
 * their SHA1 (EVALSHA) with a transparent EVAL when Redis does not know the script yet.
 * Thread-safe: rpool_get/rpool_put/rpool_is_up from any thread; a borrowed rconn is the
 * borrower's alone until it is put back. */
#ifndef AETHERIS_RPOOL_H
#define AETHERIS_RPOOL_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include "rconn.h"

struct rpool;

/* A Lua script and its SHA1 (hex), filled once by rscript_init. Immutable afterwards. */
struct rscript {
    const char *src; /* static text */
    char sha1[41];
};

/* size connections to url (lazily connected, see rconn.h). NULL on a malformed URL (err
 * filled). */
struct rpool *rpool_new(const char *url, int timeout_ms, int size, char *err, size_t errlen);
void rpool_free(struct rpool *p); /* every connection must have been put back; NULL no-op */
/* Borrows a connection, waiting up to wait_ms for one to come free; NULL when none did. */
struct rconn *rpool_get(struct rpool *p, int wait_ms);
/* Returns a borrowed connection to the pool. */
void rpool_put(struct rpool *p, struct rconn *rc);
/* False when the last command any pooled connection sent failed at the connection level
 * (Redis down or unreachable); true after a success. Lock-free. */
bool rpool_is_up(const struct rpool *p);

/* Computes the SHA1 of src (static text) into s. */
void rscript_init(struct rscript *s, const char *src);
/* EVALSHA sha1 nkeys args... and, when Redis answers NOSCRIPT, EVAL src with the same arguments
 * (args holds the keys first, then the script's ARGV; nargs <= RCONN_MAX_ARGS - 3). Returns the
 * reply (caller frees; a script error is a REDIS_REPLY_ERROR reply) or NULL when the connection
 * failed. */
redisReply *rscript_run(struct rconn *rc, const struct rscript *s, int nkeys, int nargs,
                        const char *const *args, const size_t *lens);

#endif
