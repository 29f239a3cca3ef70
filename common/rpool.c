/* Redis connection pool and Lua script runner (rpool.h). The pool is an array of rconns and a
 * free-list stack under one mutex: a borrow or a return is a few instructions under the lock,
 * never a Redis round trip. `up` is a relaxed atomic updated by rpool_put from the connection's
 * own state, so /v1/health can read it without taking a connection. */
#include "rpool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <openssl/sha.h>
#include "clock.h"
#include "xmalloc.h"

struct rpool {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    int size;
    int nfree;
    struct rconn **all;  /* size connections, for rpool_free */
    struct rconn **free; /* stack of nfree idle connections */
    atomic_bool up;
};

struct rpool *rpool_new(const char *url, int timeout_ms, int size, char *err, size_t errlen)
{
    struct rpool *p = xcalloc(1, sizeof *p);
    p->size = size > 0 ? size : 1;
    p->all = xcalloc((size_t)p->size, sizeof *p->all);
    p->free = xcalloc((size_t)p->size, sizeof *p->free);
    pthread_mutex_init(&p->mu, NULL);
    clock_cond_init(&p->freed);
    atomic_init(&p->up, true);
    for (int i = 0; i < p->size; i++) {
        p->all[i] = rconn_new(url, timeout_ms, err, errlen);
        if (p->all[i] == NULL) {
            p->size = i;
            rpool_free(p);
            return NULL;
        }
        p->free[p->nfree++] = p->all[i];
    }
    return p;
}

void rpool_free(struct rpool *p)
{
    if (p == NULL)
        return;
    for (int i = 0; i < p->size; i++)
        rconn_free(p->all[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->freed);
    free(p->all);
    free(p->free);
    free(p);
}

struct rconn *rpool_get(struct rpool *p, int wait_ms)
{
    struct timespec deadline = clock_mono_deadline(wait_ms);
    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0)
        if (pthread_cond_timedwait(&p->freed, &p->mu, &deadline) != 0 && p->nfree == 0) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
    struct rconn *rc = p->free[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return rc;
}

void rpool_put(struct rpool *p, struct rconn *rc)
{
    if (rconn_tried(rc)) /* a connection borrowed and returned unused says nothing */
        atomic_store_explicit(&p->up, rconn_is_up(rc), memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    p->free[p->nfree++] = rc;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}

bool rpool_is_up(const struct rpool *p)
{
    return atomic_load_explicit(&p->up, memory_order_relaxed);
}

void rscript_init(struct rscript *s, const char *src)
{
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)src, strlen(src), md);
    s->src = src;
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(s->sha1 + 2 * i, 3, "%02x", md[i]);
}

/* One EVAL/EVALSHA call: verb, body (sha1 or source), nkeys, then the arguments. */
static redisReply *eval_call(struct rconn *rc, const char *verb, const char *body, int nkeys,
                             int nargs, const char *const *args, const size_t *lens)
{
    const char *argv[RCONN_MAX_ARGS];
    size_t argl[RCONN_MAX_ARGS];
    char nk[16];
    snprintf(nk, sizeof nk, "%d", nkeys);
    argv[0] = verb;
    argv[1] = body;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        argl[i] = strlen(argv[i]);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argl[3 + i] = lens ? lens[i] : strlen(args[i]);
    }
    return rconn_command(rc, 3 + nargs, argv, argl);
}

redisReply *rscript_run(struct rconn *rc, const struct rscript *s, int nkeys, int nargs,
                        const char *const *args, const size_t *lens)
{
    if (nargs < 0 || nargs > RCONN_MAX_ARGS - 3)
        return NULL;
    redisReply *r = eval_call(rc, "EVALSHA", s->sha1, nkeys, nargs, args, lens);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        r = eval_call(rc, "EVAL", s->src, nkeys, nargs, args, lens);
    }
    return r;
}
