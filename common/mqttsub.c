/* Native MQTT 3.1.1 subscriber (mqttsub.h).
 *
 * Why not paho. paho's MQTTClient reads each packet with several recv() calls (type byte, length
 * bytes, body), allocates topic, payload and message per message, runs a select per cycle and
 * delivers every client of the process on one thread: ~30% of the daemon's samples at full QoS 0
 * load (docs/benchmarks.md, "Ingest: native subscriber"). Here one reader thread per subscriber
 * owns its socket and does, per read:
 *   recv(up to the free buffer, MQTTSUB_BUF_INITIAL at first) -> parse every complete packet in
 *   place -> on_message(topic, payload) pointing into the buffer -> on_batch_end once -> one
 *   write with the PUBACKs of the QoS 1 messages on_message took.
 * The topic is made NUL-terminated in place by moving it two bytes back over its length prefix
 * (already read). A partial packet at the end of the buffer is moved to its front; a packet
 * larger than the buffer grows it (up to MQTT's own limit, MQTTWIRE_MAX_PACKET), and the buffer
 * shrinks back once that packet is consumed. The socket is read with MSG_DONTWAIT and poll()ed
 * only when it is empty, so a busy subscriber makes one syscall per chunk.
 * Read coalescing. Under load a broker writes each message as it comes, and a reader that polls
 * as soon as the socket is empty wakes every few messages: at ~90,000 small messages/s that was
 * one wake-up (poll, context switch, recv, a hand-off downstream) per ~6 events, most of the
 * reader's time. After a read of MQTTSUB_COALESCE_BYTES or more the reader sleeps
 * MQTTSUB_COALESCE_US first, so the next read takes what arrived meanwhile (~20 events at that
 * rate, 250 us measured better than 100 us). A quiet stream (smaller reads: one event at 5,000
 * events/s) is never delayed; a busy one is delayed at most that long (docs/benchmarks.md, "Read
 * coalescing").
 *
 * Acknowledgement after the callbacks. paho acknowledged a QoS 1 message before handing it over
 * and kept it in a file until the callback took it. Here the PUBACK goes out only after
 * on_message returned 0 and then on_batch_end returned 0, i.e. after ingest wrote the read's
 * events to its journal with one write: a message that was not yet taken is still the broker's
 * (a persistent session redelivers it after a reconnect or a restart; the events are
 * deduplicated downstream by id), and nothing is kept on our disk. A callback that returns < 0
 * gets the same message again (5 ms, doubling to 200 ms) while the reader reads nothing else:
 * that is back-pressure on the broker, and PINGREQs keep going out; the messages taken before it
 * in the same read are completed (on_batch_end, PUBACKs) before the first retry waits. When
 * on_batch_end fails, the read's PUBACKs are dropped and, if there were any, the connection is
 * too (a 3.1.1 broker resends unacknowledged messages only on a new connection, and stops
 * sending once its in-flight window is full of them), with backoff: a persistent session gets
 * them again, and ingest drops the copies of events it had already taken.
 *
 * Liveness. A PINGREQ is sent when nothing was sent for keepalive_s; a connection on which
 * nothing at all arrived for 1.5 x keepalive_s is dead (a black-holing proxy or a dead broker
 * never closes the socket) and is dropped. Connecting (TCP, CONNACK, SUBACK) has
 * MQTTSUB_CONNECT_TIMEOUT_MS in total. Reconnects back off from 100 ms doubling to 5 s; after a
 * subscribed session was lost the first attempt is immediate. A session ended by a protocol
 * error (a malformed packet, which a broker would redeliver) does not reset the backoff, so a
 * poisoned message cannot make us reconnect in a tight loop.
 *
 * Not here: TLS (the daemon has none: config.c refuses ssl://, docs/operations.md) and QoS 2
 * (never requested: the subscription asks for at most QoS 1, and a QoS 2 PUBLISH is a protocol
 * error). */
#include "mqttsub.h"
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "mqttwire.h"
#include "thread.h"
#include "xmalloc.h"

#define MQTTSUB_BUF_INITIAL (256 * 1024) /* one read takes ~2,000 small messages at full load */
#define MQTTSUB_BACKOFF_MIN_MS 100
#define MQTTSUB_BACKOFF_MAX_MS 5000
/* TCP connect + CONNACK + SUBACK in all: paho's 2 s connect timeout plus the subscription */
#define MQTTSUB_CONNECT_TIMEOUT_MS 5000
#define MQTTSUB_RETRY_MIN_MS 5         /* a refused message is offered again after this, */
#define MQTTSUB_RETRY_MAX_MS 200       /* doubling up to this */
#define MQTTSUB_SUBSCRIBE_ID 1         /* the only packet identifier we ever send */
#define MQTTSUB_DEFAULT_KEEPALIVE_S 30 /* when the caller passes 0, as mqttc */
#define MQTTSUB_HOST_MAX 256           /* a DNS name is at most 253 bytes */
/* Read coalescing: after a read of at least this many bytes (a busy stream: ~8 small events),
 * the reader lets the socket fill for MQTTSUB_COALESCE_US before it looks again. */
#define MQTTSUB_COALESCE_BYTES 2048
#define MQTTSUB_COALESCE_US 250

enum session_state { SESSION_CONNACK, SESSION_SUBACK, SESSION_READY };

struct mqttsub {
    char *url, *client_id, *username, *password, *topic;
    char host[MQTTSUB_HOST_MAX];
    char port[8];
    bool clean_session;
    int keepalive_s;
    uint8_t qos; /* requested: 0 or 1 */
    mqttc_message_fn on_message;
    mqttc_batch_fn on_batch_end;
    bool (*may_connect)(void *ctx);
    void *ctx;
    int wake[2];      /* pipe: mqttsub_free wakes the reader out of poll() */
    atomic_bool stop; /* read by the reader between packets without the lock */
    pthread_t reader;
    pthread_mutex_t mu; /* connected, ever_connected */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC; signalled on connected, lost and stop */
    bool connected;     /* connected and subscribed */
    bool ever_connected;
    /* The reader thread's own: */
    int fd;
    enum session_state state;
    uint8_t *buf; /* received bytes: [rd, wr) not yet parsed */
    size_t cap, rd, wr;
    uint8_t *acks; /* PUBACKs of the current read, written at once after it */
    size_t nacks, capacks;
    bool taken; /* on_message took a message since the last on_batch_end */
    int64_t last_send_ms, last_recv_ms;
    bool logged_down; /* a failed attempt was logged; the next are not, until connected */
};

/* ---------------------------------------------------------------- helpers */

/* Splits tcp://host[:port] (host may be a bracketed IPv6 address); 0 or ERR_INVAL. */
static int parse_url(struct mqttsub *s, const char *url)
{
    if (strncmp(url, "tcp://", 6) != 0)
        return ERR_INVAL;
    const char *h = url + 6, *end, *colon;
    if (*h == '[') {
        end = strchr(h, ']');
        if (end == NULL)
            return ERR_INVAL;
        h++;
        colon = end[1] == ':' ? end + 1 : NULL;
    } else {
        colon = strrchr(h, ':');
        end = colon ? colon : h + strlen(h);
    }
    size_t hn = (size_t)(end - h);
    const char *port = colon ? colon + 1 : "1883";
    if (hn == 0 || hn >= sizeof s->host || strlen(port) == 0 || strlen(port) >= sizeof s->port ||
        strspn(port, "0123456789") != strlen(port))
        return ERR_INVAL;
    memcpy(s->host, h, hn);
    s->host[hn] = '\0';
    snprintf(s->port, sizeof s->port, "%s", port);
    return 0;
}

/* Sleeps up to ms, returning early when stop is set. */
static void sleep_unless_stopped(struct mqttsub *s, int64_t ms)
{
    struct timespec ts = clock_mono_deadline(ms);
    pthread_mutex_lock(&s->mu);
    while (!atomic_load(&s->stop) && pthread_cond_timedwait(&s->cv, &s->mu, &ts) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
}

static void set_connected(struct mqttsub *s, bool c)
{
    pthread_mutex_lock(&s->mu);
    s->connected = c;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* Logs a failed connection attempt, once per outage. */
static void log_down(struct mqttsub *s, const char *event, const char *why)
{
    if (s->logged_down)
        return;
    s->logged_down = true;
    log_warn(event, "%s cannot connect to %s: %s; retrying", s->client_id, s->url, why);
}

/* Writes all of data on the socket (blocking, bounded by SO_SNDTIMEO): 0 or ERR_IO. */
static int send_all(struct mqttsub *s, const uint8_t *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return ERR_IO;
        data += n;
        len -= (size_t)n;
    }
    s->last_send_ms = clock_mono_ms();
    return 0;
}

static int send_ping_if_due(struct mqttsub *s, int64_t now)
{
    if (now - s->last_send_ms < (int64_t)s->keepalive_s * 1000)
        return 0;
    uint8_t ping[MQTTWIRE_PINGREQ_LEN];
    mqttwire_pingreq(ping);
    return send_all(s, ping, sizeof ping);
}

/* Ends a batch of taken messages: on_batch_end, then one write with their PUBACKs. 0; ERR_IO
 * when the write failed; ERR_CONN (logged) when on_batch_end refused and PUBACKs were due, so
 * the session ends without them and backs off (a failing disk must not make us reconnect in a
 * tight loop). */
static int end_batch(struct mqttsub *s)
{
    bool taken = s->taken;
    s->taken = false;
    if (taken && s->on_batch_end != NULL && s->on_batch_end(s->ctx) != 0) {
        size_t dropped = s->nacks / MQTTWIRE_PUBACK_LEN;
        s->nacks = 0;
        if (dropped == 0)
            return 0;
        log_warn("mqtt.batch_refused",
                 "%s: %zu QoS 1 messages could not be made durable; not acknowledging them, "
                 "reconnecting to %s to get them again",
                 s->client_id, dropped, s->url);
        return ERR_CONN;
    }
    if (s->nacks == 0)
        return 0;
    int rv = send_all(s, s->acks, s->nacks);
    s->nacks = 0;
    return rv;
}

/* Opens a TCP connection to host:port within deadline_ms (monotonic): the socket or -1. */
static int tcp_connect(struct mqttsub *s, int64_t deadline_ms, char *why, size_t whylen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int gai = getaddrinfo(s->host, s->port, &hints, &res);
    if (gai != 0) {
        snprintf(why, whylen, "cannot resolve %s: %s", s->host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    snprintf(why, whylen, "no address for %s", s->host);
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        int err = 0;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            err = errno;
            if (err == EINPROGRESS) {
                int64_t left = deadline_ms - clock_mono_ms();
                struct pollfd pf[2] = {{.fd = fd, .events = POLLOUT},
                                       {.fd = s->wake[0], .events = POLLIN}};
                int pr = poll(pf, 2, left > 0 ? (int)left : 0);
                socklen_t el = sizeof err;
                if (pr <= 0 || (pf[0].revents == 0))
                    err = ETIMEDOUT;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
                    err = errno;
            }
        }
        if (err != 0) {
            snprintf(why, whylen, "%s", strerror(err));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* a send never blocks longer than a keepalive period, even towards a black hole */
    struct timeval tv = {.tv_sec = s->keepalive_s};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* ---------------------------------------------------------------- packets */

/* Offers one PUBLISH to on_message until it takes it (or stop), then queues its PUBACK.
 * 0, or ERR_CLOSED when stopping with the message not taken (it stays unacknowledged). */
static int handle_publish(struct mqttsub *s, const struct mqttwire_packet *pk)
{
    /* The topic is NUL-terminated in place: moved two bytes back, over its length prefix. */
    char *topic = (char *)s->buf + (pk->topic - s->buf) - 2;
    memmove(topic, pk->topic, pk->topic_len);
    topic[pk->topic_len] = '\0';
    int delay = MQTTSUB_RETRY_MIN_MS;
    while (s->on_message != NULL &&
           s->on_message(s->ctx, topic, pk->payload, pk->payload_len) != 0) {
        if (atomic_load(&s->stop))
            return ERR_CLOSED;
        int rv = end_batch(s); /* what this read took so far does not wait for the retries */
        if (rv != 0)
            return rv;
        if (send_ping_if_due(s, clock_mono_ms()) != 0)
            return ERR_IO;
        sleep_unless_stopped(s, delay);
        delay = delay * 2 > MQTTSUB_RETRY_MAX_MS ? MQTTSUB_RETRY_MAX_MS : delay * 2;
    }
    s->taken = true;
    if (pk->qos == 1) {
        if (s->nacks + MQTTWIRE_PUBACK_LEN > s->capacks) {
            s->capacks = s->capacks ? s->capacks * 2 : 1024;
            s->acks = xrealloc(s->acks, s->capacks);
        }
        mqttwire_puback(s->acks + s->nacks, pk->id);
        s->nacks += MQTTWIRE_PUBACK_LEN;
    }
    return 0;
}

static int send_subscribe(struct mqttsub *s)
{
    size_t cap = strlen(s->topic) + 16;
    uint8_t *pkt = xmalloc(cap);
    int n = mqttwire_subscribe(pkt, cap, MQTTSUB_SUBSCRIBE_ID, s->topic, s->qos);
    int rv = n > 0 ? send_all(s, pkt, (size_t)n) : n;
    free(pkt);
    return rv;
}

static int handle_suback(struct mqttsub *s, const struct mqttwire_packet *pk)
{
    if (s->state != SESSION_SUBACK || pk->id != MQTTSUB_SUBSCRIBE_ID) {
        log_warn("mqtt.protocol_error", "%s: unexpected SUBACK from %s; reconnecting", s->client_id,
                 s->url);
        return ERR_PROTO;
    }
    if (pk->code == 0x80) {
        log_down(s, "mqtt.subscribe_refused", "the broker refused the subscription (SUBACK 0x80)");
        return ERR_CONN;
    }
    if (pk->code < s->qos)
        log_warn("mqtt.subscribe_downgraded", "%s: %s granted QoS %u on %s instead of %u",
                 s->client_id, s->url, pk->code, s->topic, s->qos);
    s->state = SESSION_READY;
    pthread_mutex_lock(&s->mu);
    bool again = s->ever_connected;
    s->ever_connected = true;
    s->connected = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (again)
        metrics_inc(M_MQTT_RECONNECTS);
    s->logged_down = false;
    log_info("mqtt.connected", "%s connected to %s (native subscriber), subscribed to %s",
             s->client_id, s->url, s->topic);
    return 0;
}

/* One parsed packet: 0, or < 0 to end the session (logged here). */
static int handle_packet(struct mqttsub *s, const struct mqttwire_packet *pk)
{
    if (s->state == SESSION_CONNACK) {
        if (pk->type != MQTTWIRE_CONNACK) {
            log_down(s, "mqtt.connect_failed", "the broker's first packet is not a CONNACK");
            return ERR_PROTO;
        }
        if (pk->code != 0) {
            char why[96];
            snprintf(why, sizeof why, "CONNACK refused the connection: %s (code %u)",
                     mqttwire_connack_str(pk->code), pk->code);
            log_down(s, "mqtt.connect_refused", why);
            return ERR_CONN;
        }
        s->state = SESSION_SUBACK;
        return send_subscribe(s);
    }
    switch (pk->type) {
    case MQTTWIRE_PUBLISH:
        return handle_publish(s, pk);
    case MQTTWIRE_SUBACK:
        return handle_suback(s, pk);
    case MQTTWIRE_PINGRESP:
    case MQTTWIRE_PUBACK:
    case MQTTWIRE_UNSUBACK:
        return 0;
    default:
        log_warn("mqtt.protocol_error", "%s: unexpected packet type %u from %s; reconnecting",
                 s->client_id, pk->type, s->url);
        return ERR_PROTO;
    }
}

/* Parses and handles every complete packet in the buffer, writes the PUBACKs, then makes room
 * for the rest: 0, or < 0 to end the session. */
static int process_buffer(struct mqttsub *s)
{
    size_t need = 0;
    int rv = 0;
    while (s->rd < s->wr) {
        struct mqttwire_packet pk;
        int n = mqttwire_parse(s->buf + s->rd, s->wr - s->rd, MQTTWIRE_MAX_PACKET, &pk, &need);
        if (n == 0)
            break;
        if (n < 0) {
            log_warn("mqtt.protocol_error",
                     "%s: malformed packet from %s (first byte 0x%02x, %s); reconnecting",
                     s->client_id, s->url, s->buf[s->rd], err_str(n));
            rv = ERR_PROTO;
            break;
        }
        rv = handle_packet(s, &pk);
        if (rv != 0)
            break;
        s->rd += (size_t)n;
    }
    int arv = end_batch(s); /* what was taken before an error is acknowledged too */
    if (rv != 0 || arv != 0)
        return rv != 0 ? rv : arv;
    if (s->rd == s->wr) {
        s->rd = s->wr = 0;
        if (s->cap > MQTTSUB_BUF_INITIAL) { /* a large packet is gone: give the memory back */
            free(s->buf);
            s->cap = MQTTSUB_BUF_INITIAL;
            s->buf = xmalloc(s->cap);
        }
        return 0;
    }
    if (s->rd > 0) { /* a partial packet: to the front */
        memmove(s->buf, s->buf + s->rd, s->wr - s->rd);
        s->wr -= s->rd;
        s->rd = 0;
    }
    if (need > s->cap) {
        s->cap = need;
        s->buf = xrealloc(s->buf, s->cap);
    }
    return 0;
}

/* ---------------------------------------------------------------- session */

static int send_connect(struct mqttsub *s)
{
    struct mqttwire_connect c = {.client_id = s->client_id,
                                 .username = s->username,
                                 .password = s->password,
                                 .clean_session = s->clean_session,
                                 .keepalive_s = (uint16_t)s->keepalive_s};
    size_t cap = 64 + strlen(s->client_id) + (s->username ? strlen(s->username) : 0) +
                 (s->password ? strlen(s->password) : 0);
    uint8_t *pkt = xmalloc(cap);
    int n = mqttwire_connect(pkt, cap, &c);
    int rv = n > 0 ? send_all(s, pkt, (size_t)n) : n;
    free(pkt);
    return rv;
}

/* Waits until the socket is readable or a deadline passes: 1 readable, 0 timeout, < 0 stop. */
static int wait_readable(struct mqttsub *s, int64_t timeout_ms)
{
    struct pollfd pf[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = s->wake[0], .events = POLLIN}};
    int pr = poll(pf, 2, timeout_ms > 0 ? (int)timeout_ms : 0);
    if (atomic_load(&s->stop))
        return ERR_CLOSED;
    return pr > 0 && pf[0].revents != 0 ? 1 : 0;
}

/* The keepalive duties between reads: 0, or < 0 (logged) to end the session. */
static int check_timers(struct mqttsub *s, int64_t now, int64_t connect_deadline)
{
    if (s->state != SESSION_READY) {
        if (now < connect_deadline)
            return 0;
        log_down(s, "mqtt.connect_failed", "no CONNACK/SUBACK within the connect timeout");
        return ERR_TIMEOUT;
    }
    if (now - s->last_recv_ms >= (int64_t)s->keepalive_s * 1500) {
        log_warn("mqtt.connection_lost",
                 "%s: nothing from %s for %d ms (1.5 x keepalive): connection dead; reconnecting",
                 s->client_id, s->url, s->keepalive_s * 1500);
        return ERR_TIMEOUT;
    }
    return send_ping_if_due(s, now);
}

/* How long poll() may sleep before check_timers has something to do. */
static int64_t timer_wait_ms(const struct mqttsub *s, int64_t now, int64_t connect_deadline)
{
    if (s->state != SESSION_READY)
        return connect_deadline - now;
    int64_t ping = s->last_send_ms + (int64_t)s->keepalive_s * 1000 - now;
    int64_t dead = s->last_recv_ms + (int64_t)s->keepalive_s * 1500 - now;
    int64_t w = ping < dead ? ping : dead;
    return w > 0 ? w : 0;
}

/* One connection, from TCP connect to its end. Returns 1 when it ended after being subscribed
 * by a lost connection (reconnect at once), 0 otherwise (back off). */
static int run_session(struct mqttsub *s)
{
    char why[MQTTSUB_HOST_MAX + 160]; /* the host name and an error text */
    int64_t connect_deadline = clock_mono_ms() + MQTTSUB_CONNECT_TIMEOUT_MS;
    s->fd = tcp_connect(s, connect_deadline, why, sizeof why);
    if (s->fd < 0) {
        if (!atomic_load(&s->stop))
            log_down(s, "mqtt.connect_failed", why);
        return 0;
    }
    s->state = SESSION_CONNACK;
    s->rd = s->wr = 0;
    s->nacks = 0;
    s->taken = false;
    s->last_recv_ms = clock_mono_ms();
    int rv = send_connect(s);
    bool maybe_more = false; /* the last read filled the buffer: read again before polling */
    bool coalesce = false;   /* the last read was big: let the socket fill before polling */
    while (rv == 0 && !atomic_load(&s->stop)) {
        int64_t now = clock_mono_ms();
        if (!maybe_more) {
            if (coalesce)
                clock_sleep_us(MQTTSUB_COALESCE_US);
            coalesce = false;
            rv = check_timers(s, now, connect_deadline);
            int w = rv == 0 ? wait_readable(s, timer_wait_ms(s, now, connect_deadline)) : 0;
            if (w < 0)
                rv = ERR_CLOSED;
            if (w <= 0)
                continue;
        }
        size_t space = s->cap - s->wr;
        ssize_t n = recv(s->fd, s->buf + s->wr, space, MSG_DONTWAIT);
        if (n > 0) {
            s->wr += (size_t)n;
            s->last_recv_ms = clock_mono_ms();
            maybe_more = (size_t)n == space;
            coalesce = n >= MQTTSUB_COALESCE_BYTES;
            rv = process_buffer(s);
            if (rv == 0 && maybe_more) /* a steady stream never polls: pings still go out */
                rv = check_timers(s, s->last_recv_ms, connect_deadline);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            maybe_more = false;
            continue;
        }
        if (s->state == SESSION_READY)
            log_warn("mqtt.connection_lost", "%s lost its connection to %s: %s; reconnecting",
                     s->client_id, s->url, n == 0 ? "closed by the broker" : strerror(errno));
        else
            log_down(s, "mqtt.connect_failed",
                     n == 0 ? "the broker closed the connection" : strerror(errno));
        rv = ERR_IO;
    }
    bool ready = s->state == SESSION_READY;
    if (atomic_load(&s->stop) && s->state != SESSION_CONNACK) {
        uint8_t d[MQTTWIRE_DISCONNECT_LEN];
        mqttwire_disconnect(d);
        (void)send_all(s, d, sizeof d);
    }
    if (ready)
        set_connected(s, false);
    close(s->fd);
    s->fd = -1;
    return ready && (rv == ERR_IO || rv == ERR_TIMEOUT) ? 1 : 0;
}

static void *reader_main(void *arg)
{
    struct mqttsub *s = arg;
    thread_name("mqtt-sub");
    int backoff = MQTTSUB_BACKOFF_MIN_MS;
    while (!atomic_load(&s->stop)) {
        if (s->may_connect != NULL && !s->may_connect(s->ctx)) {
            sleep_unless_stopped(s, MQTTSUB_BACKOFF_MIN_MS);
            continue;
        }
        if (run_session(s) == 1) {
            backoff = MQTTSUB_BACKOFF_MIN_MS;
            continue;
        }
        sleep_unless_stopped(s, backoff);
        backoff = backoff * 2 > MQTTSUB_BACKOFF_MAX_MS ? MQTTSUB_BACKOFF_MAX_MS : backoff * 2;
    }
    return NULL;
}

/* ---------------------------------------------------------------- public API */

static void sub_free_fields(struct mqttsub *s)
{
    free(s->url);
    free(s->client_id);
    free(s->username);
    free(s->password);
    free(s->topic);
    free(s->buf);
    free(s->acks);
    free(s);
}

/* Copies opts, parses the URL and starts the reader thread, which connects in the background.
 * NULL (one log line) for a URL that is not tcp://host[:port] or when no thread can start. The
 * caller owns the result (mqttsub_free). */
struct mqttsub *mqttsub_new(const struct mqttc_options *o)
{
    struct mqttsub *s = xcalloc(1, sizeof *s);
    s->url = xstrdup(o->url);
    s->client_id = xstrdup(o->client_id);
    s->username = xstrdup_nonempty(o->username);
    s->password = xstrdup_nonempty(o->password);
    s->topic = xstrdup(o->subscribe_topic ? o->subscribe_topic : "");
    s->clean_session = o->clean_session;
    s->keepalive_s = o->keepalive_s > 0 && o->keepalive_s <= UINT16_MAX
                         ? o->keepalive_s
                         : MQTTSUB_DEFAULT_KEEPALIVE_S;
    s->qos = o->subscribe_qos > 0 ? 1 : 0; /* QoS 2 is never requested */
    s->on_message = o->on_message;
    s->on_batch_end = o->on_batch_end;
    s->may_connect = o->may_connect;
    s->ctx = o->ctx;
    s->fd = -1;
    atomic_init(&s->stop, false);
    if (parse_url(s, o->url) != 0 || s->topic[0] == '\0') {
        log_error("mqtt.create", "%s: cannot subscribe natively to '%s' on %s", s->client_id,
                  s->topic, s->url);
        sub_free_fields(s);
        return NULL;
    }
    s->cap = MQTTSUB_BUF_INITIAL;
    s->buf = xmalloc(s->cap);
    if (pipe(s->wake) != 0) {
        log_error("mqtt.create", "%s: cannot create a pipe: %s", s->client_id, strerror(errno));
        sub_free_fields(s);
        return NULL;
    }
    fcntl(s->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(s->wake[1], F_SETFD, FD_CLOEXEC);
    pthread_mutex_init(&s->mu, NULL);
    clock_cond_init(&s->cv);
    if (pthread_create(&s->reader, NULL, reader_main, s) != 0) {
        log_error("mqtt.create", "cannot start the reader thread for %s", s->client_id);
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        close(s->wake[0]);
        close(s->wake[1]);
        sub_free_fields(s);
        return NULL;
    }
    return s;
}

/* Sets stop, wakes the reader (out of poll, a backoff sleep or a refused message's retry),
 * joins it and frees s. A callback in progress is waited for. NULL is a no-op. */
void mqttsub_free(struct mqttsub *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->stop, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    ssize_t w = write(s->wake[1], "x", 1);
    (void)w; /* the pipe is empty and ours: this cannot block or fail */
    pthread_join(s->reader, NULL);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    sub_free_fields(s);
}

/* Blocks until subscribed: 0, or ERR_TIMEOUT after timeout_ms (or once stopping). */
int mqttsub_wait_connected(struct mqttsub *s, int timeout_ms)
{
    struct timespec ts = clock_mono_deadline(timeout_ms);
    pthread_mutex_lock(&s->mu);
    while (!s->connected && !atomic_load(&s->stop))
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0)
            break;
    bool ok = s->connected;
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : ERR_TIMEOUT;
}

/* True while connected and subscribed. */
bool mqttsub_is_connected(struct mqttsub *s)
{
    pthread_mutex_lock(&s->mu);
    bool c = s->connected;
    pthread_mutex_unlock(&s->mu);
    return c;
}
