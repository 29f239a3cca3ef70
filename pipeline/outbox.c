/* Webhook fan-out (outbox.h). The subscription set is a small array replaced wholesale under a
 * write lock; matching copies the matching ids under the read lock and builds the body outside
 * it. The body is assembled from the already serialized document (no second JSON pass). */
#include "outbox.h"
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "xmalloc.h"

struct outbox {
    pthread_rwlock_t lock; /* guards subs, nsubs */
    struct outbox_sub *subs;
    size_t nsubs;
    pthread_mutex_t wmu; /* guards wake, wake_arg */
    void (*wake)(void *arg);
    void *wake_arg;
};

struct outbox *outbox_new(void)
{
    struct outbox *o = xcalloc(1, sizeof *o);
    pthread_rwlock_init(&o->lock, NULL);
    pthread_mutex_init(&o->wmu, NULL);
    return o;
}

void outbox_free(struct outbox *o)
{
    if (o == NULL)
        return;
    free(o->subs);
    pthread_rwlock_destroy(&o->lock);
    pthread_mutex_destroy(&o->wmu);
    free(o);
}

void outbox_set(struct outbox *o, const struct outbox_sub *subs, size_t n)
{
    struct outbox_sub *copy = NULL;
    if (n > 0) {
        copy = xcalloc(n, sizeof *copy);
        memcpy(copy, subs, n * sizeof *copy);
    }
    pthread_rwlock_wrlock(&o->lock);
    struct outbox_sub *old = o->subs;
    o->subs = copy;
    o->nsubs = n;
    pthread_rwlock_unlock(&o->lock);
    free(old);
}

size_t outbox_count(struct outbox *o)
{
    pthread_rwlock_rdlock(&o->lock);
    size_t n = o->nsubs;
    pthread_rwlock_unlock(&o->lock);
    return n;
}

void outbox_set_waker(struct outbox *o, void (*wake)(void *arg), void *arg)
{
    pthread_mutex_lock(&o->wmu);
    o->wake = wake;
    o->wake_arg = arg;
    pthread_mutex_unlock(&o->wmu);
}

void outbox_wake(struct outbox *o)
{
    pthread_mutex_lock(&o->wmu);
    if (o->wake)
        o->wake(o->wake_arg);
    pthread_mutex_unlock(&o->wmu);
}

const char *outbox_type_name(enum outbox_event_type type)
{
    return type == OUTBOX_ANOMALY ? "anomaly.detected" : "decision.created";
}

unsigned outbox_action_bit(const char *action)
{
    if (action == NULL)
        return 0;
    if (strcmp(action, "APPROVE") == 0)
        return OUTBOX_APPROVE;
    if (strcmp(action, "REVIEW") == 0)
        return OUTBOX_REVIEW;
    if (strcmp(action, "BLOCK") == 0)
        return OUTBOX_BLOCK;
    return 0;
}

void outbox_rfc3339(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        secs--;
        frac += 1000;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", day, frac);
}

void outbox_match(struct outbox *o, enum outbox_event_type type, const char *action, uint64_t txid,
                  int64_t ts_ms, const char *doc, size_t doc_len, struct outbox_event *ev)
{
    memset(ev, 0, sizeof *ev);
    unsigned abit = outbox_action_bit(action);
    pthread_rwlock_rdlock(&o->lock);
    for (size_t i = 0; i < o->nsubs; i++) {
        const struct outbox_sub *sub = &o->subs[i];
        if (!(sub->events & (unsigned)type))
            continue;
        if (type == OUTBOX_DECISION && sub->actions != 0 && !(sub->actions & abit))
            continue;
        if (ev->ids == NULL)
            ev->ids = xcalloc(o->nsubs, sizeof *ev->ids);
        memcpy(ev->ids[ev->nrows++], sub->id, STORE_ID_MAX);
    }
    pthread_rwlock_unlock(&o->lock);
    if (ev->nrows == 0)
        return;

    const char *tname = outbox_type_name(type);
    snprintf(ev->msg_id, sizeof ev->msg_id, "msg_%s_%" PRIu64,
             type == OUTBOX_ANOMALY ? "anomaly" : "decision", txid);
    char when[32];
    outbox_rfc3339(ts_ms, when);
    static const char fmt[] = "{\"type\":\"%s\",\"timestamp\":\"%s\",\"data\":";
    size_t head = (size_t)snprintf(NULL, 0, fmt, tname, when);
    ev->body = xmalloc(head + doc_len + 2);
    snprintf(ev->body, head + 1, fmt, tname, when);
    memcpy(ev->body + head, doc, doc_len);
    memcpy(ev->body + head + doc_len, "}", 2);
    ev->rows = xcalloc(ev->nrows, sizeof *ev->rows);
    for (size_t i = 0; i < ev->nrows; i++)
        ev->rows[i] = (struct store_outbox){ev->ids[i], ev->msg_id, tname, ev->body, ts_ms};
}

void outbox_event_free(struct outbox_event *ev)
{
    free(ev->body);
    free(ev->rows);
    free(ev->ids);
    memset(ev, 0, sizeof *ev);
}
