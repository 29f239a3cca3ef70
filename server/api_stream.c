/* GET /v1/stream: Server-Sent Events of new anomalies and decisions, and the hub that drives
 * the open streams (stream.h).
 *
 * Wire format (text/event-stream): first `retry: 3000`, then per event
 *   id: <feed sequence>\nevent: anomaly|decision\ndata: <one-line JSON>\n\n
 * `: keep-alive` comment lines when idle for sse_keepalive_s, and `event: lag` with
 * {"missed": n} when the client fell out of the feed's ring (sse_backlog events). A client
 * resumes with Last-Event-ID (header, or ?last_event_id=) and gets every event after it that is
 * still in the ring; without one it starts with the next event. ?types=anomaly,decision filters.
 *
 * Life of a stream: the handler registers a client (refused with 503 past sse_max_streams) and
 * hands MHD a content reader. The reader fills the client's pending frame from the feed and
 * copies it out; with nothing to send it suspends the connection under the hub lock, after
 * checking the feed head under that same lock, so a publish either is seen or resumes it. The
 * ticker resumes suspended clients whose keep-alive is due, and resumes everyone at shutdown,
 * when readers end their streams. MHD calls the free callback when the connection is done (a
 * write to a departed client fails at the next event or keep-alive), which unlinks the client. */
#include "api.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <microhttpd.h>
#include "api_params.h"
#include "clock.h"
#include "pipeline.h"
#include "stream.h"
#include "thread.h"
#include "xmalloc.h"

#define STREAM_RETRY_MS 3000
#define STREAM_TICK_MS 250 /* keep-alive resolution */

struct sse_client {
    struct stream_hub *hub;
    struct MHD_Connection *conn;
    uint64_t cursor;
    unsigned types;
    int64_t last_send_ms;
    bool started;
    bool suspended; /* guarded by hub->mu */
    char *pending;  /* the frame being sent */
    size_t plen, poff;
    struct sse_client *prev, *next; /* guarded by hub->mu */
};

struct stream_hub {
    const struct config *cfg;
    struct feed *feed;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sse_client *clients;
    size_t count;
    bool stopping;
    bool ticker_started;
    pthread_t ticker;
};

/* Resumes suspended clients: all of them, or those whose keep-alive is due. Lock held. */
static void resume_locked(struct stream_hub *hub, bool only_due)
{
    int64_t now = clock_mono_ms(), keepalive = (int64_t)hub->cfg->sse_keepalive_s * 1000;
    for (struct sse_client *c = hub->clients; c; c = c->next) {
        if (!c->suspended || (only_due && now - c->last_send_ms < keepalive))
            continue;
        c->suspended = false;
        MHD_resume_connection(c->conn);
    }
}

static void on_publish(void *ctx)
{
    struct stream_hub *hub = ctx;
    pthread_mutex_lock(&hub->mu);
    resume_locked(hub, false);
    pthread_mutex_unlock(&hub->mu);
}

static void *ticker_main(void *arg)
{
    struct stream_hub *hub = arg;
    thread_name("stream-ticker");
    pthread_mutex_lock(&hub->mu);
    while (!hub->stopping) {
        struct timespec until = clock_mono_deadline(STREAM_TICK_MS);
        pthread_cond_timedwait(&hub->cv, &hub->mu, &until);
        if (!hub->stopping)
            resume_locked(hub, true);
    }
    pthread_mutex_unlock(&hub->mu);
    return NULL;
}

struct stream_hub *stream_hub_new(const struct config *cfg, struct feed *feed)
{
    struct stream_hub *hub = xcalloc(1, sizeof *hub);
    hub->cfg = cfg;
    hub->feed = feed;
    pthread_mutex_init(&hub->mu, NULL);
    clock_cond_init(&hub->cv);
    if (pthread_create(&hub->ticker, NULL, ticker_main, hub) != 0) {
        stream_hub_free(hub);
        return NULL;
    }
    hub->ticker_started = true;
    feed_set_notify(feed, on_publish, hub);
    return hub;
}

void stream_hub_shutdown(struct stream_hub *hub)
{
    feed_set_notify(hub->feed, NULL, NULL);
    pthread_mutex_lock(&hub->mu);
    bool join = hub->ticker_started;
    hub->ticker_started = false;
    hub->stopping = true;
    resume_locked(hub, false);
    pthread_cond_signal(&hub->cv);
    pthread_mutex_unlock(&hub->mu);
    if (join)
        pthread_join(hub->ticker, NULL);
}

void stream_hub_free(struct stream_hub *hub)
{
    if (hub == NULL)
        return;
    stream_hub_shutdown(hub);
    pthread_mutex_destroy(&hub->mu);
    pthread_cond_destroy(&hub->cv);
    free(hub);
}

size_t stream_hub_clients(struct stream_hub *hub)
{
    pthread_mutex_lock(&hub->mu);
    size_t n = hub->count;
    pthread_mutex_unlock(&hub->mu);
    return n;
}

/* Replaces the pending frame with a formatted one. */
__attribute__((format(printf, 2, 3))) static void frame(struct sse_client *c, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    free(c->pending);
    c->pending = NULL;
    c->plen = c->poff = 0;
    if (n > 0) {
        c->pending = xmalloc((size_t)n + 1);
        vsnprintf(c->pending, (size_t)n + 1, fmt, again);
        c->plen = (size_t)n;
    }
    va_end(again);
}

/* Fills the next frame; false when there is nothing to send now. */
static bool next_frame(struct sse_client *c)
{
    if (!c->started) {
        c->started = true;
        frame(c, "retry: %d\n\n", STREAM_RETRY_MS);
        return true;
    }
    struct feed_event ev;
    uint64_t missed = 0;
    int got = feed_next(c->hub->feed, &c->cursor, c->types, &ev, &missed);
    if (got && missed)
        frame(c, "event: lag\ndata: {\"missed\":%llu}\n\nid: %llu\nevent: %s\ndata: %s\n\n",
              (unsigned long long)missed, (unsigned long long)ev.seq, feed_type_name(ev.type),
              ev.json);
    else if (got)
        frame(c, "id: %llu\nevent: %s\ndata: %s\n\n", (unsigned long long)ev.seq,
              feed_type_name(ev.type), ev.json);
    else if (missed)
        frame(c, "event: lag\ndata: {\"missed\":%llu}\n\n", (unsigned long long)missed);
    if (got)
        free(ev.json);
    if (got || missed)
        return true;
    if (clock_mono_ms() - c->last_send_ms >= (int64_t)c->hub->cfg->sse_keepalive_s * 1000) {
        frame(c, ": keep-alive\n\n");
        return true;
    }
    return false;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sse_client *c = cls;
    struct stream_hub *hub = c->hub;
    (void)pos;
    for (;;) {
        if (c->pending && c->poff < c->plen) {
            size_t n = c->plen - c->poff < max ? c->plen - c->poff : max;
            memcpy(buf, c->pending + c->poff, n);
            c->poff += n;
            c->last_send_ms = clock_mono_ms();
            return (ssize_t)n;
        }
        pthread_mutex_lock(&hub->mu);
        bool stopping = hub->stopping;
        pthread_mutex_unlock(&hub->mu);
        if (stopping)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (next_frame(c))
            continue;
        pthread_mutex_lock(&hub->mu);
        if (hub->stopping || feed_head(hub->feed) > c->cursor) {
            pthread_mutex_unlock(&hub->mu);
            continue; /* something arrived (or we are stopping) since next_frame looked */
        }
        c->suspended = true;
        MHD_suspend_connection(c->conn);
        pthread_mutex_unlock(&hub->mu);
        return 0;
    }
}

static void stream_free(void *cls)
{
    struct sse_client *c = cls;
    struct stream_hub *hub = c->hub;
    pthread_mutex_lock(&hub->mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        hub->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    hub->count--;
    pthread_mutex_unlock(&hub->mu);
    free(c->pending);
    free(c);
}

/* ?types=: comma-separated anomaly|decision; all when absent. 0 for a bad value. */
static unsigned parse_types(const char *s)
{
    if (s == NULL)
        return FEED_ANOMALY | FEED_DECISION;
    unsigned mask = 0;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n == 7 && strncmp(s, "anomaly", 7) == 0)
            mask |= FEED_ANOMALY;
        else if (n == 8 && strncmp(s, "decision", 8) == 0)
            mask |= FEED_DECISION;
        else
            return 0;
        s += n;
        if (*s == ',' && *++s == '\0')
            return 0;
    }
    return mask;
}

void api_stream(const struct http_request *req, struct http_response *resp)
{
    struct stream_hub *hub = req->app->streams;
    unsigned types = parse_types(http_query(req, "types"));
    if (types == 0) {
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER,
                     "types must be anomaly, decision or both, comma-separated", req->path);
        return;
    }
    const char *last = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (last == NULL)
        last = http_query(req, "last_event_id");
    uint64_t cursor = feed_head(hub->feed);
    if (last && api_params_txid(last, &cursor) != 0) {
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER,
                     "Last-Event-ID (or last_event_id) must be an event id from this stream",
                     req->path);
        return;
    }
    pthread_mutex_lock(&hub->mu);
    if (hub->stopping || hub->count >= (size_t)req->app->cfg->sse_max_streams) {
        pthread_mutex_unlock(&hub->mu);
        http_problem(resp, 503, PROBLEM_TOO_MANY_STREAMS,
                     hub->stopping ? "the server is shutting down"
                                   : "too many event streams are open; retry later",
                     req->path);
        http_add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "5");
        return;
    }
    struct sse_client *c = xcalloc(1, sizeof *c);
    c->hub = hub;
    c->conn = req->conn;
    c->cursor = cursor;
    c->types = types;
    c->last_send_ms = clock_mono_ms();
    c->next = hub->clients;
    if (hub->clients)
        hub->clients->prev = c;
    hub->clients = c;
    hub->count++;
    pthread_mutex_unlock(&hub->mu);
    resp->status = 200;
    resp->content_type = "text/event-stream";
    resp->stream_read = stream_read;
    resp->stream_free = stream_free;
    resp->stream_ctx = c;
    http_add_header(resp, "X-Accel-Buffering", "no");
}
