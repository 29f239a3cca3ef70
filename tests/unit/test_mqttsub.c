/* The native subscriber (mqttsub) and its wire format (mqttwire).
 * - mqttwire_parse, table-driven: complete, partial and oversized packets, every malformation.
 * - Against a fake broker in this process (a thread on a free loopback port that plays a
 *   script): a packet dribbled over three reads and a header split across two, a QoS 1 message
 *   refused by the callback three times and acknowledged only after it is taken, the PUBACKs
 *   of a batch in one write after one on_batch_end call (and none before it returned), a failing
 *   on_batch_end (no PUBACK, the connection dropped, the message taken again on the next one and
 *   acknowledged there), a refused CONNACK and a refused SUBACK (retried with backoff, never
 *   connected), malformed input (bad remaining length, unknown type, QoS 2, a truncated packet:
 *   each drops the connection, the next one works), a peer that goes silent (PINGREQ after the
 *   keepalive, dropped after 1.5 x keepalive, reconnected at once).
 * - Against a real mosquitto on a free loopback port: QoS 0 and 1 delivery, 2,000 small
 *   messages, a 1 MiB message (larger than the initial buffer), a persistent session whose
 *   unacknowledged message comes back after a broker restart, and a clean session that
 *   reconnects and resubscribes after one. Every wait is bounded. */
#include "mqttsub.h"
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "clock.h"
#include "err.h"
#include "mqttc.h"
#include "mqttwire.h"
#include "servers.h"
#include "tap.h"

#define WAIT_MS 10000 /* upper bound for anything that should take milliseconds */
#define MAXMSG 4096
#define BIG_LEN (1024 * 1024)

/* ------------------------------------------------------------------ parser table */

struct parse_case {
    const char *name;
    const char *bytes;
    size_t len;
    size_t cap;
    int want; /* return value */
    size_t want_need;
};

static void test_parse(void)
{
    static const struct parse_case cases[] = {
        {"empty", "", 0, 100, 0, 0},
        {"one byte", "\x30", 1, 100, 0, 0},
        {"length continues", "\x30\x80", 2, 100, 0, 0},
        {"body missing: need known", "\x30\x05\x00", 3, 100, 0, 7},
        {"CONNACK", "\x20\x02\x00\x00", 4, 100, 4, 0},
        {"CONNACK bad flags", "\x21\x02\x00\x00", 4, 100, ERR_PROTO, 0},
        {"CONNACK bad length", "\x20\x03\x00\x00\x00", 5, 100, ERR_PROTO, 0},
        {"CONNACK reserved bits", "\x20\x02\x02\x00", 4, 100, ERR_PROTO, 0},
        {"PUBLISH QoS 0", "\x30\x05\x00\x01t\x41\x42", 7, 100, 7, 0},
        {"PUBLISH QoS 1", "\x32\x07\x00\x01t\x00\x09pq", 9, 100, 9, 0},
        {"PUBLISH QoS 1 id 0", "\x32\x05\x00\x01t\x00\x00", 7, 100, ERR_PROTO, 0},
        {"PUBLISH QoS 2", "\x34\x05\x00\x01t\x00\x09", 7, 100, ERR_PROTO, 0},
        {"PUBLISH QoS 3", "\x36\x05\x00\x01t\x00\x09", 7, 100, ERR_PROTO, 0},
        {"PUBLISH topic past body", "\x30\x03\x00\x05t", 5, 100, ERR_PROTO, 0},
        {"PUBLISH no topic length", "\x30\x01\x00", 3, 100, ERR_PROTO, 0},
        {"PUBLISH NUL in topic", "\x30\x04\x00\x02t\x00", 6, 100, ERR_PROTO, 0},
        {"PUBLISH QoS 1 without id", "\x32\x04\x00\x01tx", 6, 100, ERR_PROTO, 0},
        {"over cap", "\x30\x7f", 2, 100, ERR_FULL, 0},
        {"five length bytes", "\x30\xff\xff\xff\xff\x01", 6, MQTTWIRE_MAX_PACKET, ERR_PROTO, 0},
        {"largest length: need", "\x30\xff\xff\xff\x7f", 5, MQTTWIRE_MAX_PACKET, 0,
         MQTTWIRE_MAX_PACKET},
        {"SUBACK granted 1", "\x90\x03\x00\x01\x01", 5, 100, 5, 0},
        {"SUBACK refused", "\x90\x03\x00\x01\x80", 5, 100, 5, 0},
        {"SUBACK bad code", "\x90\x03\x00\x01\x05", 5, 100, ERR_PROTO, 0},
        {"SUBACK no code", "\x90\x02\x00\x01", 4, 100, ERR_PROTO, 0},
        {"PINGRESP", "\xd0\x00", 2, 100, 2, 0},
        {"PINGRESP with body", "\xd0\x01\x00", 3, 100, ERR_PROTO, 0},
        {"PUBACK", "\x40\x02\x00\x01", 4, 100, 4, 0},
        {"UNSUBACK", "\xb0\x02\x00\x01", 4, 100, 4, 0},
        {"CONNECT from a broker", "\x10\x00", 2, 100, ERR_PROTO, 0},
        {"PUBREL", "\x62\x02\x00\x01", 4, 100, ERR_PROTO, 0},
        {"type 0", "\x00\x00", 2, 100, ERR_PROTO, 0},
        {"type 15", "\xf0\x00", 2, 100, ERR_PROTO, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct parse_case *c = &cases[i];
        struct mqttwire_packet pk;
        size_t need = 12345;
        int rv = mqttwire_parse((const uint8_t *)c->bytes, c->len, c->cap, &pk, &need);
        ok(rv == c->want && (rv != 0 || need == c->want_need), "parse: %s (rv %d, need %zu)",
           c->name, rv, need);
    }
    struct mqttwire_packet pk;
    size_t need;
    const char *q1 = "\x3a\x07\x00\x01t\x00\x09pq"; /* DUP, QoS 1 */
    is_int(mqttwire_parse((const uint8_t *)q1, 9, 100, &pk, &need), 9, "QoS 1 DUP publish");
    ok(pk.qos == 1 && pk.id == 9 && pk.topic_len == 1 && pk.topic[0] == 't' &&
           pk.payload_len == 2 && memcmp(pk.payload, "pq", 2) == 0,
       "its fields: qos 1, id 9, topic t, payload pq");
    uint8_t out[64];
    struct mqttwire_connect c = {.client_id = "id",
                                 .username = "u",
                                 .password = "pw",
                                 .clean_session = true,
                                 .keepalive_s = 30};
    int n = mqttwire_connect(out, sizeof out, &c);
    static const uint8_t want_connect[] = {0x10, 21, 0,   4,   'M', 'Q', 'T', 'T', 4, 0xc2, 0,  30,
                                           0,    2,  'i', 'd', 0,   1,   'u', 0,   2, 'p',  'w'};
    ok(n == (int)sizeof want_connect && memcmp(out, want_connect, sizeof want_connect) == 0,
       "CONNECT bytes (3.1.1, user+password+clean, keepalive 30)");
    is_int(mqttwire_connect(out, 10, &c), ERR_FULL, "CONNECT into a short buffer: ERR_FULL");
    n = mqttwire_subscribe(out, sizeof out, 1, "a/#", 1);
    static const uint8_t want_sub[] = {0x82, 8, 0, 1, 0, 3, 'a', '/', '#', 1};
    ok(n == (int)sizeof want_sub && memcmp(out, want_sub, sizeof want_sub) == 0, "SUBSCRIBE bytes");
    is_int(mqttwire_subscribe(out, sizeof out, 1, "", 1), ERR_INVAL, "empty filter refused");
}

/* ------------------------------------------------------------------ fake broker */

enum fake_mode {
    FAKE_SCRIPT,         /* split packets, a held QoS 1 message, a batch */
    FAKE_REFUSE_CONNACK, /* CONNACK 5 (not authorized) */
    FAKE_REFUSE_SUBACK,  /* SUBACK 0x80 */
    FAKE_GARBAGE,        /* connection n (1..4) gets malformed input n; later ones a message */
    FAKE_SILENT,         /* CONNACK, SUBACK, then reads and never answers */
    FAKE_REDELIVER       /* a QoS 1 message on every connection until it is acknowledged */
};

struct fake {
    enum fake_mode mode;
    int lfd, port;
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    int conns;
    int64_t conn_ms[64];
    int pings;       /* PINGREQs received */
    int disconnects; /* DISCONNECTs received */
    uint16_t acks[64];
    int nacks;
    int ack_reads;     /* reads that delivered PUBACK bytes */
    int conn_acks[64]; /* REDELIVER: PUBACKs counted when connection n+1 ended */
};

static int fake_conns(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->conns;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static int fake_nacks(struct fake *f)
{
    pthread_mutex_lock(&f->mu);
    int n = f->nacks;
    pthread_mutex_unlock(&f->mu);
    return n;
}

static bool write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Reads one whole client packet within 2 s: its first byte, or -1. body gets up to cap bytes. */
static int read_packet(int fd, uint8_t *body, size_t cap, size_t *len)
{
    uint8_t b[5];
    size_t have = 0, rl = 0;
    int shift = 0;
    for (;;) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 2000) <= 0 || recv(fd, b + have, 1, 0) != 1)
            return -1;
        have++;
        if (have == 1)
            continue;
        rl |= (size_t)(b[have - 1] & 0x7f) << shift;
        shift += 7;
        if ((b[have - 1] & 0x80) == 0 || have == 5)
            break;
    }
    if (rl > cap)
        return -1;
    size_t got = 0;
    while (got < rl) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        ssize_t n = poll(&pf, 1, 2000) > 0 ? recv(fd, body + got, rl - got, 0) : -1;
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    *len = rl;
    return b[0];
}

/* A PUBLISH packet into out: its length. */
static size_t publish_bytes(uint8_t *out, const char *topic, const char *payload, int qos,
                            uint16_t id)
{
    size_t tl = strlen(topic), pl = strlen(payload);
    size_t rl = 2 + tl + (qos ? 2 : 0) + pl, n = 0;
    out[n++] = (uint8_t)(0x30 | qos << 1);
    do {
        out[n++] = (uint8_t)((rl & 0x7f) | (rl > 0x7f ? 0x80 : 0));
        rl >>= 7;
    } while (rl);
    out[n++] = (uint8_t)(tl >> 8);
    out[n++] = (uint8_t)tl;
    memcpy(out + n, topic, tl);
    n += tl;
    if (qos) {
        out[n++] = (uint8_t)(id >> 8);
        out[n++] = (uint8_t)id;
    }
    memcpy(out + n, payload, pl);
    return n + pl;
}

/* Reads what the client sends, recording PINGREQs, PUBACKs and DISCONNECTs, until stop, a
 * new connection waits on the listening socket, the client closes, or until_acks are counted. */
static void fake_read(struct fake *f, int fd, int until_acks, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    uint8_t buf[4096];
    while (!atomic_load(&f->stop) && clock_mono_ms() < deadline) {
        if (until_acks > 0 && fake_nacks(f) >= until_acks)
            return;
        struct pollfd pf[2] = {{.fd = fd, .events = POLLIN}, {.fd = f->lfd, .events = POLLIN}};
        if (poll(pf, 2, 20) <= 0)
            continue;
        if (pf[1].revents)
            return;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0)
            return;
        bool acked = false;
        pthread_mutex_lock(&f->mu);
        for (ssize_t i = 0; i + 1 < n;) { /* the client writes whole packets */
            if (buf[i] == 0x40 && i + 3 < n) {
                if (f->nacks < 64)
                    f->acks[f->nacks++] = (uint16_t)(buf[i + 2] << 8 | buf[i + 3]);
                acked = true;
                i += 4;
                continue;
            }
            f->pings += buf[i] == 0xc0;
            f->disconnects += buf[i] == 0xe0;
            i += 2 + buf[i + 1];
        }
        f->ack_reads += acked;
        pthread_mutex_unlock(&f->mu);
    }
}

static void script(struct fake *f, int fd)
{
    uint8_t a[128], b[128], all[2048];
    size_t na = publish_bytes(a, "t/split", "split-payload-0123456789", 0, 0);
    /* one packet over three reads */
    write_all(fd, a, 1);
    clock_sleep_ms(30);
    write_all(fd, a + 1, 3);
    clock_sleep_ms(30);
    write_all(fd, a + 3 + 1, na - 4);
    clock_sleep_ms(30);
    /* two packets; the read boundary inside the second one's fixed header */
    na = publish_bytes(a, "t/p", "p1", 0, 0);
    size_t nb = publish_bytes(b, "t/p", "p2", 1, 3);
    memcpy(all, a, na);
    memcpy(all + na, b, 1);
    write_all(fd, all, na + 1);
    clock_sleep_ms(30);
    write_all(fd, b + 1, nb - 1);
    fake_read(f, fd, 1, 2000);
    /* a QoS 1 message the callback refuses three times */
    na = publish_bytes(a, "t/hold", "hold", 1, 7);
    write_all(fd, a, na);
    fake_read(f, fd, 2, 3000);
    /* ten QoS 1 messages in one write: their PUBACKs in one write */
    size_t n = 0;
    for (int i = 0; i < 10; i++) {
        char p[8];
        snprintf(p, sizeof p, "b%d", i);
        n += publish_bytes(all + n, "t/batch", p, 1, (uint16_t)(100 + i));
    }
    write_all(fd, all, n);
    fake_read(f, fd, 0, 60000);
}

static void garbage(struct fake *f, int fd, int conn)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\x30\xff\xff\xff\xff\x7f", 6},  /* five remaining-length bytes */
        {"\xf0\x00", 2},                  /* type 15 */
        {"\x34\x05\x00\x01t\x00\x09", 7}, /* QoS 2 */
        {"\x30\x10\x00\x01t", 5},         /* truncated: closed before the rest */
    };
    if (conn <= 4) {
        write_all(fd, bad[conn - 1].bytes, bad[conn - 1].len);
        if (conn == 4)
            return; /* the caller closes */
        fake_read(f, fd, 0, 3000);
        return;
    }
    uint8_t a[64];
    size_t na = publish_bytes(a, "t/after", "after-garbage", 0, 0);
    write_all(fd, a, na);
    fake_read(f, fd, 0, 60000);
}

static void fake_serve(struct fake *f, int fd, int conn)
{
    uint8_t body[512];
    size_t len;
    if (read_packet(fd, body, sizeof body, &len) != 0x10)
        return;
    static const uint8_t connack_ok[] = {0x20, 2, 0, 0}, connack_no[] = {0x20, 2, 0, 5};
    if (f->mode == FAKE_REFUSE_CONNACK) {
        write_all(fd, connack_no, sizeof connack_no);
        fake_read(f, fd, 0, 3000);
        return;
    }
    write_all(fd, connack_ok, sizeof connack_ok);
    if (read_packet(fd, body, sizeof body, &len) != 0x82 || len < 2)
        return;
    uint8_t suback[] = {0x90, 3, body[0], body[1], f->mode == FAKE_REFUSE_SUBACK ? 0x80 : 1};
    write_all(fd, suback, sizeof suback);
    if (f->mode == FAKE_REDELIVER) {
        uint8_t a[64];
        size_t na = publish_bytes(a, "t/again", "again", 1, 5);
        if (conn > 1)
            a[0] |= 0x08; /* DUP: a redelivery */
        write_all(fd, a, na);
        fake_read(f, fd, 1, 3000);
        pthread_mutex_lock(&f->mu);
        if (conn <= 64)
            f->conn_acks[conn - 1] = f->nacks;
        pthread_mutex_unlock(&f->mu);
        if (fake_nacks(f) > 0)
            fake_read(f, fd, 0, 60000);
    } else if (f->mode == FAKE_SCRIPT)
        script(f, fd);
    else if (f->mode == FAKE_GARBAGE)
        garbage(f, fd, conn);
    else
        fake_read(f, fd, 0, 60000);
}

static void *fake_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pf = {.fd = f->lfd, .events = POLLIN};
        if (poll(&pf, 1, 20) <= 0)
            continue;
        int fd = accept(f->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&f->mu);
        int conn = ++f->conns;
        if (conn <= 64)
            f->conn_ms[conn - 1] = clock_mono_ms();
        pthread_mutex_unlock(&f->mu);
        fake_serve(f, fd, conn);
        close(fd);
    }
    return NULL;
}

static void fake_start(struct fake *f, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    pthread_mutex_init(&f->mu, NULL);
    atomic_init(&f->stop, false);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(f->lfd, 8) != 0 ||
        getsockname(f->lfd, (struct sockaddr *)&sa, &sl) != 0) {
        perror("fake broker");
        exit(1);
    }
    f->port = ntohs(sa.sin_port);
    pthread_create(&f->thread, NULL, fake_main, f);
}

static void fake_stop(struct fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    pthread_mutex_destroy(&f->mu);
}

/* ------------------------------------------------------------------ receiver */

struct rx {
    pthread_mutex_t mu;
    struct fake *fake; /* for the ack-after-callback check */
    int count;
    int calls;
    int refuse_hold;         /* t/hold: refuse this many times */
    int acked_while_refused; /* refusals that found the message already acknowledged */
    bool hold;               /* refuse everything while set */
    int fail_batches;        /* on_batch_end: fail this many times */
    int batches;             /* on_batch_end calls */
    int q1_taken;            /* QoS 1 messages taken (script: all but t/split and p1) */
    int q1_ended;            /* ... of which a batch ended (on_batch_end returned 0) */
    int acked_before_end;    /* on_batch_end calls that found their batch already acknowledged */
    int batch_of[MAXMSG];    /* per taken message: on_batch_end calls before it */
    size_t big_len;
    bool big_ok;
    char payload[MAXMSG][32];
};

static int on_message(void *ctx, const char *topic, const void *payload, size_t len)
{
    struct rx *rx = ctx;
    pthread_mutex_lock(&rx->mu);
    rx->calls++;
    if (rx->hold) {
        pthread_mutex_unlock(&rx->mu);
        return -1;
    }
    if (strcmp(topic, "t/hold") == 0 && rx->refuse_hold > 0) {
        rx->refuse_hold--;
        if (rx->fake && fake_nacks(rx->fake) > 1) /* the first ack is p2's */
            rx->acked_while_refused++;
        pthread_mutex_unlock(&rx->mu);
        return -1;
    }
    if (len == BIG_LEN) {
        const unsigned char *p = payload;
        bool good = true;
        for (size_t i = 0; i < len && good; i++)
            good = p[i] == (unsigned char)('a' + i % 23);
        rx->big_len = len;
        rx->big_ok = good;
    } else if (rx->count < MAXMSG) {
        size_t n = len < sizeof rx->payload[0] - 1 ? len : sizeof rx->payload[0] - 1;
        memcpy(rx->payload[rx->count], payload, n);
        rx->payload[rx->count][n] = '\0';
        rx->batch_of[rx->count] = rx->batches;
    }
    rx->q1_taken += strcmp(topic, "t/split") != 0 && (len != 2 || memcmp(payload, "p1", 2) != 0);
    rx->count++;
    pthread_mutex_unlock(&rx->mu);
    return 0;
}

/* With a fake broker: waits 20 ms, long enough for PUBACKs written before this call to be read
 * by the fake, and counts a batch whose PUBACKs came before it. */
static int on_batch_end(void *ctx)
{
    struct rx *rx = ctx;
    if (rx->fake != NULL)
        clock_sleep_ms(20);
    pthread_mutex_lock(&rx->mu);
    rx->batches++;
    if (rx->fake != NULL && fake_nacks(rx->fake) > rx->q1_ended)
        rx->acked_before_end++;
    int rv = 0;
    if (rx->fail_batches > 0) {
        rx->fail_batches--;
        rv = -1;
    } else {
        rx->q1_ended = rx->q1_taken;
    }
    pthread_mutex_unlock(&rx->mu);
    return rv;
}

static void rx_init(struct rx *rx)
{
    memset(rx, 0, sizeof *rx);
    pthread_mutex_init(&rx->mu, NULL);
}

static int rx_count(struct rx *rx)
{
    pthread_mutex_lock(&rx->mu);
    int n = rx->count;
    pthread_mutex_unlock(&rx->mu);
    return n;
}

static int rx_wait(struct rx *rx, int n, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (rx_count(rx) < n && clock_mono_ms() < deadline)
        clock_sleep_ms(5);
    clock_sleep_ms(50); /* extras arriving right behind */
    return rx_count(rx);
}

static struct mqttsub *sub_new(int port, const char *id, const char *topic, bool clean,
                               int keepalive_s, struct rx *rx)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    struct mqttc_options o = {.url = url,
                              .client_id = id,
                              .clean_session = clean,
                              .keepalive_s = keepalive_s,
                              .subscribe_topic = topic,
                              .subscribe_qos = 1,
                              .on_message = on_message,
                              .on_batch_end = on_batch_end,
                              .ctx = rx};
    return mqttsub_new(&o);
}

/* Waits up to timeout_ms until count(f) (connections, PUBACKs) reaches n; whether it did. */
static bool wait_count(int (*count)(struct fake *), struct fake *f, int n, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (count(f) < n && clock_mono_ms() < deadline)
        clock_sleep_ms(5);
    return count(f) >= n;
}

/* ------------------------------------------------------------------ fake broker cases */

static void test_script(void)
{
    static struct fake f;
    static struct rx rx;
    fake_start(&f, FAKE_SCRIPT);
    rx_init(&rx);
    rx.fake = &f;
    rx.refuse_hold = 3;
    struct mqttsub *s = sub_new(f.port, "t-script", "t/#", true, 10, &rx);
    ok(s != NULL, "subscriber for the fake broker");
    is_int(mqttsub_wait_connected(s, WAIT_MS), 0, "connected and subscribed (fake)");
    is_int(rx_wait(&rx, 14, WAIT_MS), 14, "14 messages: split, p1, p2, hold, 10 of the batch");
    pthread_mutex_lock(&rx.mu);
    is_str(rx.payload[0], "split-payload-0123456789", "a packet over three reads, intact");
    ok(strcmp(rx.payload[1], "p1") == 0 && strcmp(rx.payload[2], "p2") == 0,
       "two packets, the second's header split across reads");
    is_str(rx.payload[3], "hold", "the refused message after three refusals");
    is_int(rx.calls, 17, "on_message calls: 14 taken + 3 refused");
    is_int(rx.acked_while_refused, 0, "no PUBACK while the callback refused the message");
    is_str(rx.payload[13], "b9", "the batch in order");
    ok(rx.batch_of[4] == rx.batch_of[13] && rx.batch_of[3] < rx.batch_of[4],
       "the ten of one read: one on_batch_end after them (%d, %d)", rx.batch_of[4],
       rx.batch_of[13]);
    is_int(rx.acked_before_end, 0, "no PUBACK before on_batch_end returned");
    pthread_mutex_unlock(&rx.mu);
    wait_count(fake_nacks, &f, 12, WAIT_MS);
    pthread_mutex_lock(&f.mu);
    ok(f.nacks == 12 && f.acks[0] == 3 && f.acks[1] == 7 && f.acks[2] == 100 && f.acks[11] == 109,
       "PUBACKs: 3, 7, then 100..109 (%d acks)", f.nacks);
    is_int(f.ack_reads, 3, "the batch's ten PUBACKs arrived in one write");
    pthread_mutex_unlock(&f.mu);
    mqttsub_free(s);
    int disconnects = 0;
    for (int64_t deadline = clock_mono_ms() + WAIT_MS;
         disconnects == 0 && clock_mono_ms() < deadline;) {
        clock_sleep_ms(5);
        pthread_mutex_lock(&f.mu);
        disconnects = f.disconnects;
        pthread_mutex_unlock(&f.mu);
    }
    is_int(disconnects, 1, "DISCONNECT sent on mqttsub_free");
    fake_stop(&f);
}

static void test_batch_refused(void)
{
    static struct fake f;
    static struct rx rx;
    fake_start(&f, FAKE_REDELIVER);
    rx_init(&rx);
    rx.fake = &f;
    rx.fail_batches = 1;
    struct mqttsub *s = sub_new(f.port, "t-batchfail", "t/#", false, 10, &rx);
    is_int(rx_wait(&rx, 2, WAIT_MS), 2, "on_batch_end failed: the message is taken again");
    wait_count(fake_nacks, &f, 1, WAIT_MS);
    pthread_mutex_lock(&f.mu);
    is_int(f.conn_acks[0], 0, "no PUBACK on the connection whose batch failed");
    ok(f.conns == 2 && f.nacks == 1 && f.acks[0] == 5,
       "the connection was dropped; acknowledged once, on the next one (%d conns, %d acks)",
       f.conns, f.nacks);
    int64_t gap = f.conn_ms[1] - f.conn_ms[0];
    pthread_mutex_unlock(&f.mu);
    ok(gap >= 100, "reconnected after a backoff, not at once (%lld ms)", (long long)gap);
    pthread_mutex_lock(&rx.mu);
    ok(strcmp(rx.payload[0], "again") == 0 && strcmp(rx.payload[1], "again") == 0,
       "the same message both times");
    is_int(rx.batches, 2, "on_batch_end: failed once, then succeeded");
    pthread_mutex_unlock(&rx.mu);
    mqttsub_free(s);
    fake_stop(&f);
}

static void test_refusals(void)
{
    static struct fake f;
    static struct rx rx;
    rx_init(&rx);
    fake_start(&f, FAKE_REFUSE_CONNACK);
    struct mqttsub *s = sub_new(f.port, "t-refused", "t/#", true, 10, &rx);
    is_int(mqttsub_wait_connected(s, 1000), ERR_TIMEOUT, "CONNACK 5: never connected");
    int n = fake_conns(&f);
    ok(n >= 3 && n <= 6, "retried with backoff (100, 200, 400 ms...): %d attempts in 1 s", n);
    mqttsub_free(s);
    fake_stop(&f);

    fake_start(&f, FAKE_REFUSE_SUBACK);
    s = sub_new(f.port, "t-subrefused", "t/#", true, 10, &rx);
    is_int(mqttsub_wait_connected(s, 1000), ERR_TIMEOUT, "SUBACK 0x80: never connected");
    n = fake_conns(&f);
    ok(n >= 3 && n <= 6, "retried with backoff: %d attempts in 1 s", n);
    ok(!mqttsub_is_connected(s), "is_connected false");
    mqttsub_free(s);
    fake_stop(&f);
}

static void test_garbage(void)
{
    static struct fake f;
    static struct rx rx;
    rx_init(&rx);
    fake_start(&f, FAKE_GARBAGE);
    struct mqttsub *s = sub_new(f.port, "t-garbage", "t/#", true, 10, &rx);
    ok(s != NULL, "subscriber for malformed input");
    is_int(rx_wait(&rx, 1, WAIT_MS), 1, "after four malformed connections, the fifth delivers");
    is_int(fake_conns(&f), 5, "each malformed input cost exactly one connection");
    pthread_mutex_lock(&rx.mu);
    is_str(rx.payload[0], "after-garbage", "and nothing malformed reached on_message");
    pthread_mutex_unlock(&rx.mu);
    mqttsub_free(s);
    fake_stop(&f);
}

static void test_silent_peer(void)
{
    static struct fake f;
    static struct rx rx;
    rx_init(&rx);
    fake_start(&f, FAKE_SILENT);
    struct mqttsub *s = sub_new(f.port, "t-silent", "t/#", true, 1, &rx);
    is_int(mqttsub_wait_connected(s, WAIT_MS), 0, "connected to a peer that then goes silent");
    int64_t t0 = clock_mono_ms(); /* about the SUBACK: the last thing the peer sent */
    /* the reconnect follows the drop at once: the second connection dates the drop */
    ok(wait_count(fake_conns, &f, 2, WAIT_MS),
       "the silent connection is dropped and a new one opened");
    pthread_mutex_lock(&f.mu);
    int64_t dt = f.conn_ms[1] - t0;
    ok(f.pings >= 1, "a PINGREQ went out after the keepalive (%d)", f.pings);
    pthread_mutex_unlock(&f.mu);
    ok(dt >= 1300 && dt < 3000, "after 1.5 x keepalive (%lld ms)", (long long)dt);
    is_int(mqttsub_wait_connected(s, WAIT_MS), 0, "subscribed again");
    mqttsub_free(s);
    fake_stop(&f);
}

/* ------------------------------------------------------------------ real mosquitto */

static int publish_n(struct mqttc *pub, const char *topic, const char *prefix, int n, int qos)
{
    int okn = 0;
    for (int i = 0; i < n; i++) {
        char p[32];
        int len = snprintf(p, sizeof p, "%s%d", prefix, i);
        okn += mqttc_publish(pub, topic, p, (size_t)len, qos) == 0;
    }
    return okn;
}

static int count_prefix(struct rx *rx, const char *prefix)
{
    int n = 0;
    pthread_mutex_lock(&rx->mu);
    for (int i = 0; i < rx->count && i < MAXMSG; i++)
        n += strncmp(rx->payload[i], prefix, strlen(prefix)) == 0;
    pthread_mutex_unlock(&rx->mu);
    return n;
}

static void test_mosquitto(void)
{
    struct test_server broker;
    srv_start_or_exit(&broker, SRV_MOSQUITTO, NULL);
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", broker.port);
    struct mqttc_options po = {
        .url = url, .client_id = "t-pub", .clean_session = true, .keepalive_s = 10};
    struct mqttc *pub = mqttc_new(&po);
    is_int(mqttc_wait_connected(pub, WAIT_MS), 0, "paho publisher connected");

    static struct rx live;
    rx_init(&live);
    struct mqttsub *s = sub_new(broker.port, "t-live", "m/#", true, 10, &live);
    is_int(mqttsub_wait_connected(s, WAIT_MS), 0, "native subscriber connected to mosquitto");
    is_int(publish_n(pub, "m/q0", "zero-", 100, 0), 100, "100 QoS 0 published");
    is_int(publish_n(pub, "m/q1", "one-", 100, 1), 100, "100 QoS 1 published");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "acknowledged by the broker");
    is_int(rx_wait(&live, 200, WAIT_MS), 200, "all 200 received, no extras");
    ok(count_prefix(&live, "zero-") == 100 && count_prefix(&live, "one-") == 100,
       "100 of each QoS");
    is_int(publish_n(pub, "m/many", "s-", 2000, 1), 2000, "2,000 small QoS 1 messages");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "acknowledged");
    is_int(rx_wait(&live, 2200, WAIT_MS), 2200, "all 2,000 received");
    ok(count_prefix(&live, "s-") == 2000, "with their content");
    char *big = malloc(BIG_LEN);
    for (size_t i = 0; i < BIG_LEN; i++)
        big[i] = (char)('a' + i % 23);
    is_int(mqttc_publish(pub, "m/big", big, BIG_LEN, 1), 0, "a 1 MiB message published");
    free(big);
    is_int(mqttc_flush(pub, WAIT_MS), 0, "acknowledged");
    is_int(rx_wait(&live, 2201, WAIT_MS), 2201, "received (4 x the initial buffer)");
    pthread_mutex_lock(&live.mu);
    ok(live.big_len == BIG_LEN && live.big_ok, "every byte intact (%zu)", live.big_len);
    pthread_mutex_unlock(&live.mu);
    is_int(publish_n(pub, "m/after", "after-", 5, 0), 5, "small messages after the big one");
    is_int(rx_wait(&live, 2206, WAIT_MS), 2206, "still delivered (buffer shrunk back)");

    /* a persistent session's unacknowledged message survives a broker restart */
    static struct rx durable;
    rx_init(&durable);
    struct mqttsub *d = sub_new(broker.port, "t-durable", "d/#", false, 2, &durable);
    is_int(mqttsub_wait_connected(d, WAIT_MS), 0, "persistent subscriber connected");
    pthread_mutex_lock(&durable.mu);
    durable.hold = true;
    pthread_mutex_unlock(&durable.mu);
    is_int(mqttc_publish(pub, "d/x", "kept-0", 6, 1), 0, "a QoS 1 message for it");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "acknowledged by the broker");
    int64_t deadline = clock_mono_ms() + WAIT_MS;
    int calls = 0;
    while (calls == 0 && clock_mono_ms() < deadline) {
        clock_sleep_ms(5);
        pthread_mutex_lock(&durable.mu);
        calls = durable.calls;
        pthread_mutex_unlock(&durable.mu);
    }
    ok(calls > 0, "offered to on_message, which refuses it for now");
    srv_stop(&broker); /* SIGTERM: mosquitto saves its sessions */
    ok(srv_restart(&broker), "mosquitto restarted");
    pthread_mutex_lock(&durable.mu);
    durable.hold = false; /* taken now: its PUBACK goes to the dead connection */
    pthread_mutex_unlock(&durable.mu);
    is_int(rx_wait(&durable, 2, WAIT_MS), 2, "redelivered by the restarted broker and taken");
    pthread_mutex_lock(&durable.mu);
    ok(strcmp(durable.payload[0], "kept-0") == 0 && strcmp(durable.payload[1], "kept-0") == 0,
       "the same message twice (downstream dedupe handles it)");
    pthread_mutex_unlock(&durable.mu);

    /* clean session: reconnect and resubscribe after the restart */
    is_int(mqttsub_wait_connected(s, WAIT_MS), 0, "clean-session subscriber reconnected");
    is_int(mqttc_wait_connected(pub, WAIT_MS), 0, "publisher reconnected");
    is_int(publish_n(pub, "m/back", "back-", 10, 1), 10, "publishing after the restart");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "acknowledged");
    is_int(rx_wait(&live, 2216, WAIT_MS), 2216, "received: resubscribed on its own");
    ok(count_prefix(&live, "back-") == 10, "with their content");

    mqttsub_free(d);
    mqttsub_free(s);
    mqttc_free(pub, 1000);
    mqttsub_free(NULL);
    srv_cleanup(&broker);
}

int main(void)
{
    alarm(100);
    signal(SIGPIPE, SIG_IGN);
    test_parse();
    test_script();
    test_batch_refused();
    test_refusals();
    test_garbage();
    test_silent_peer();
    test_mosquitto();
    return done_testing();
}
