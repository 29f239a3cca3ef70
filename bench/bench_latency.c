/* Event-to-decision latency, open loop and coordinated-omission safe, per lane.
 *
 * A publisher sends input events (QoS 0) on a fixed schedule: event k is due at t0 + k / RATE on
 * CLOCK_MONOTONIC, and a late send never moves the schedule (the next sends catch up), so a slow
 * daemon cannot slow the offered load down. A paho client subscribes to the exceptions topic (to
 * learn each exception's lane from its priority) and to the commands topic; a command's latency
 * is its arrival time minus the *scheduled* send time of its event, so time an event spent
 * waiting to be sent counts against the system, not in its favour.
 *
 * The publisher, PUBLISHER in the usage line:
 *  - "raw" (the default): a TCP socket of our own with TCP_NODELAY, CONNECT through mqttwire and
 *    hand-encoded PUBLISH packets. Each wake-up writes every event due by then in one send() and
 *    none that is not yet due: a batch only forms when the sender is already behind, so no event
 *    is ever held back. A latency-sensitive producer disables Nagle's algorithm; paho C 1.3.11
 *    sets no socket option, and at 20,000 events/s its socket held events back 15 ms at the
 *    median and 26 ms at p99 (docs/benchmarks.md, "the generator's Nagle").
 *  - "paho": paho's MQTTClient_publish, as before 2026-12-07, to compare with older figures.
 *
 * Events: ACCOUNTS accounts in turn (account k % ACCOUNTS), amounts 10-500; once every account
 * has a history, one event in 100 at random is a spike, at random 9,000 (suspicion ~1: immediate
 * lane) or 1,500 (moderate: batch lane, when its z-score clears the threshold). Which lane an
 * exception took is read from the daemon's own exception message, not assumed.
 *
 * After the last send it waits until every exception seen has its command, or WAIT_MS passed,
 * then prints one JSON object: the publisher, achieved send rate, the largest send lag behind
 * the schedule, and per lane the count, p50/p95/p99/max in milliseconds and the exceptions left
 * without a command.
 * Usage: bench_latency URL RATE SECONDS FIRST_TXID [ACCOUNTS] [WAIT_MS] [raw|paho] */
#include "fmacros.h"
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <MQTTClient.h>
#include "clock.h"
#include "mqttwire.h"
#include "bench_args.h"

#define SPIKE_EVERY 100
#define WARMUP_ROUNDS 10 /* events per account before the first spike */
#define TOPIC_CAP 96
#define PAYLOAD_CAP 160
/* One encoded PUBLISH at most: fixed header byte, 2 remaining-length bytes (the body is under
 * 16,384 bytes), the topic's length prefix, topic and payload. */
#define RAW_EVENT_MAX (1 + 2 + 2 + TOPIC_CAP + PAYLOAD_CAP)
#define RAW_BATCH_CAP 65536     /* one send(): ~250 events, far more than a wake-up ever owes */
#define RAW_CONNACK_TIMEOUT_S 5 /* a broker that does not answer CONNECT fails the run */

enum { LANE_NONE = 0, LANE_IMMEDIATE = 1, LANE_BATCH = 2 };

static long long nevents, first_txid;
static double rate;
static int64_t t0_ns;
static _Atomic unsigned char *lane_of; /* per event: the lane its exception took */
static _Atomic int64_t *arrival_ns;    /* per event: first command arrival, 0 = none yet */
static _Atomic long long exceptions_seen, commands_seen, stray;

/* The integer after `"key":` in a NUL-terminated JSON text (no full parse: the daemon's output
 * is compact); -1 when absent. Digit strings (ids above 2^63) never occur in this benchmark. */
static long long json_int_after(const char *text, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(text, pat);
    if (p == NULL)
        return -1;
    p += strlen(pat);
    char *end = NULL;
    long long v = strtoll(p, &end, 10);
    return end == p ? -1 : v;
}

/* The event index of a transaction id, or -1 when it is not one of ours. */
static long long index_of(long long txid)
{
    return txid >= first_txid && txid < first_txid + nevents ? txid - first_txid : -1;
}

static int arrived(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    (void)ctx;
    (void)topic_len;
    int64_t now = clock_mono_ns();
    char text[4096]; /* the members looked at come first in both messages */
    size_t len = m->payloadlen < (int)sizeof text ? (size_t)m->payloadlen : sizeof text - 1;
    memcpy(text, m->payload, len);
    text[len] = '\0';
    if (strstr(topic, "commands") != NULL) {
        long long k = index_of(json_int_after(text, "transaction_id"));
        int64_t none = 0;
        if (k < 0)
            atomic_fetch_add(&stray, 1);
        else if (atomic_compare_exchange_strong(&arrival_ns[k], &none, now))
            atomic_fetch_add(&commands_seen, 1);
    } else {
        long long k = index_of(json_int_after(text, "transactionId"));
        bool immediate = strstr(text, "\"priority\":\"immediate\"") != NULL;
        unsigned char none = LANE_NONE;
        if (k >= 0 && atomic_compare_exchange_strong(&lane_of[k], &none,
                                                     immediate ? LANE_IMMEDIATE : LANE_BATCH))
            atomic_fetch_add(&exceptions_seen, 1);
    }
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

static void lost(void *ctx, char *cause)
{
    (void)ctx;
    fprintf(stderr, "bench_latency: connection lost: %s\n", cause ? cause : "?");
}

static MQTTClient connect_client(const char *url, const char *id)
{
    MQTTClient c;
    MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
    o.cleansession = 1;
    o.keepAliveInterval = 30;
    if (MQTTClient_create(&c, url, id, MQTTCLIENT_PERSISTENCE_NONE, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_setCallbacks(c, NULL, lost, arrived, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(c, &o) != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "bench_latency: cannot connect to %s\n", url);
        exit(1);
    }
    return c;
}

/* One input event, encoded as text. */
struct event {
    char topic[TOPIC_CAP];
    char payload[PAYLOAD_CAP];
    size_t topic_len, payload_len;
};

/* Fills ev with event k. Call it for k = 0, 1, 2, ... in order: the spike draw advances one
 * generator, so both publishers send the same events. */
static void make_event(long long k, long long accounts, struct event *ev)
{
    static unsigned long long rng = 88172645463325252ULL;
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    long long acct = k % accounts;
    double amount = 10.0 + (double)(rng % 49000) / 100.0;
    if (k >= accounts * WARMUP_ROUNDS && (rng >> 20) % SPIKE_EVERY == 0)
        amount = (rng >> 40) % 2 ? 9000.0 : 1500.0;
    ev->topic_len = (size_t)snprintf(ev->topic, sizeof ev->topic,
                                     "aetheris/transactions/L%lld/%lld", acct, first_txid + k);
    ev->payload_len =
        (size_t)snprintf(ev->payload, sizeof ev->payload,
                         "{\"transactionId\":%lld,\"accountOrigin\":\"L%lld\",\"amount\":%.2f}",
                         first_txid + k, acct, amount);
}

/* Writes all of buf[0..len) to fd or exits: a lost broker ends the run. */
static void raw_send_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "bench_latency: send: %s\n", strerror(errno));
            exit(1);
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* A TCP socket with TCP_NODELAY to URL (tcp://host:port) that has completed an MQTT CONNECT
 * (clean session, keepalive off: the run sends without pause and ends with DISCONNECT), or exits
 * when the broker cannot be reached or refuses. */
static int raw_connect(const char *url, const char *id)
{
    const char *hp = strncmp(url, "tcp://", 6) == 0 ? url + 6 : url;
    const char *colon = strrchr(hp, ':');
    char host[256];
    if (colon == NULL || colon - hp >= (long)sizeof host) {
        fprintf(stderr, "bench_latency: the raw publisher needs tcp://host:port, not %s\n", url);
        exit(2);
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
        fprintf(stderr, "bench_latency: cannot resolve %s\n", url);
        exit(1);
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "bench_latency: cannot connect to %s\n", url);
        exit(1);
    }
    int one = 1;
    struct timeval tv = {.tv_sec = RAW_CONNACK_TIMEOUT_S};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    uint8_t buf[512];
    struct mqttwire_connect c = {.client_id = id, .clean_session = true, .keepalive_s = 0};
    int n = mqttwire_connect(buf, sizeof buf, &c);
    if (n < 0) {
        fprintf(stderr, "bench_latency: cannot encode CONNECT\n");
        exit(1);
    }
    raw_send_all(fd, buf, (size_t)n);
    size_t have = 0, need = 0;
    struct mqttwire_packet pkt;
    int got = 0;
    while (got == 0 && have < sizeof buf) {
        ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
        if (r <= 0)
            break;
        have += (size_t)r;
        got = mqttwire_parse(buf, have, sizeof buf, &pkt, &need);
    }
    if (got <= 0 || pkt.type != MQTTWIRE_CONNACK || pkt.code != 0) {
        fprintf(stderr, "bench_latency: no CONNACK from %s (%s)\n", url,
                got > 0 && pkt.type == MQTTWIRE_CONNACK ? mqttwire_connack_str(pkt.code)
                                                        : "no answer");
        exit(1);
    }
    return fd;
}

/* Appends ev as a QoS 0 PUBLISH (MQTT 3.1.1 3.3: no packet identifier) to out at *n; out has
 * at least RAW_EVENT_MAX bytes free. */
static void raw_put_publish(uint8_t *out, size_t *n, const struct event *ev)
{
    size_t rl = 2 + ev->topic_len + ev->payload_len;
    out[(*n)++] = MQTTWIRE_PUBLISH << 4;
    do { /* 2.2.3: 7 bits a byte, the high bit says another follows */
        uint8_t b = (uint8_t)(rl & 0x7f);
        rl >>= 7;
        out[(*n)++] = (uint8_t)(b | (rl ? 0x80 : 0));
    } while (rl > 0);
    out[(*n)++] = (uint8_t)(ev->topic_len >> 8);
    out[(*n)++] = (uint8_t)ev->topic_len;
    memcpy(out + *n, ev->topic, ev->topic_len);
    *n += ev->topic_len;
    memcpy(out + *n, ev->payload, ev->payload_len);
    *n += ev->payload_len;
}

/* The scheduled send time of event k. */
static int64_t due_ns(long long k)
{
    return t0_ns + (int64_t)((double)k * 1e9 / rate);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)n);
    return sorted[i < n ? i : n - 1];
}

/* Prints one lane's figures as a JSON member. */
static void print_lane(const char *name, int lane, bool last)
{
    double *ms = malloc(((size_t)nevents + 1) * sizeof *ms);
    size_t n = 0;
    long long missing = 0;
    for (long long k = 0; k < nevents; k++) {
        if (atomic_load(&lane_of[k]) != lane)
            continue;
        int64_t at = atomic_load(&arrival_ns[k]);
        if (at == 0) {
            missing++;
            continue;
        }
        int64_t due = due_ns(k);
        ms[n++] = (double)(at - due) / 1e6;
    }
    qsort(ms, n, sizeof *ms, cmp_double);
    printf("\"%s\":{\"decisions\":%zu,\"missing\":%lld,\"p50_ms\":%.3f,\"p95_ms\":%.3f,"
           "\"p99_ms\":%.3f,\"max_ms\":%.3f}%s",
           name, n, missing, pct(ms, n, 50), pct(ms, n, 95), pct(ms, n, 99), n ? ms[n - 1] : 0.0,
           last ? "" : ",");
    free(ms);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bench_latency URL RATE SECONDS FIRST_TXID [ACCOUNTS] [WAIT_MS] "
                        "[raw|paho]\n");
        return 2;
    }
    rate = (double)bench_arg_num(argv[2]);
    nevents = (long long)rate * bench_arg_num(argv[3]);
    first_txid = bench_arg_num(argv[4]);
    long long accounts = argc > 5 ? bench_arg_num(argv[5]) : 200;
    int wait_ms = argc > 6 ? (int)bench_arg_num(argv[6]) : 3000;
    const char *publisher = argc > 7 ? argv[7] : "raw";
    bool raw = strcmp(publisher, "raw") == 0;
    if (rate <= 0 || nevents <= 0 || accounts <= 0) {
        fprintf(stderr, "bench_latency: RATE, SECONDS and ACCOUNTS must be positive\n");
        return 2;
    }
    if (!raw && strcmp(publisher, "paho") != 0) {
        fprintf(stderr, "bench_latency: PUBLISHER is raw or paho, not %s\n", publisher);
        return 2;
    }
    lane_of = calloc((size_t)nevents, sizeof *lane_of);
    arrival_ns = calloc((size_t)nevents, sizeof *arrival_ns);
    MQTTClient sub = connect_client(argv[1], "bench-latency-sub");
    if (MQTTClient_subscribe(sub, "aetheris/commands", 0) != MQTTCLIENT_SUCCESS ||
        MQTTClient_subscribe(sub, "aetheris/exceptions", 0) != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "bench_latency: cannot subscribe\n");
        return 1;
    }
    MQTTClient pub = NULL;
    int fd = -1;
    if (raw)
        fd = raw_connect(argv[1], "bench-latency-pub");
    else
        pub = connect_client(argv[1], "bench-latency-pub");

    static uint8_t batch[RAW_BATCH_CAP];
    struct event ev;
    int64_t max_lag_ns = 0;
    t0_ns = clock_mono_ns();
    for (long long k = 0; k < nevents;) {
        int64_t due = due_ns(k);
        int64_t now = clock_mono_ns();
        if (now < due) {
            struct timespec at = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0)
                ;
            now = clock_mono_ns();
        }
        if (now - due > max_lag_ns) /* the first event sent at a wake-up is the furthest behind */
            max_lag_ns = now - due;
        if (!raw) {
            make_event(k, accounts, &ev);
            if (MQTTClient_publish(pub, ev.topic, (int)ev.payload_len, ev.payload, 0, 0, NULL) !=
                MQTTCLIENT_SUCCESS) {
                fprintf(stderr, "bench_latency: publish failed at event %lld\n", k);
                return 1;
            }
            k++;
            continue;
        }
        size_t n = 0;
        do { /* every event already due, and none that is not */
            make_event(k, accounts, &ev);
            raw_put_publish(batch, &n, &ev);
            k++;
        } while (k < nevents && due_ns(k) <= now && n + RAW_EVENT_MAX <= sizeof batch);
        raw_send_all(fd, batch, n);
    }
    double send_s = (double)(clock_mono_ns() - t0_ns) / 1e9;
    int64_t deadline = clock_mono_ms() + wait_ms;
    while (clock_mono_ms() < deadline &&
           (atomic_load(&commands_seen) < atomic_load(&exceptions_seen) ||
            atomic_load(&exceptions_seen) == 0))
        clock_sleep_ms(10);
    clock_sleep_ms(100); /* a late exception message for the last commands */
    printf("{\"bench\":\"latency\",\"publisher\":\"%s\",\"publisher_tcp_nodelay\":%s,"
           "\"offered_events_per_s\":%.0f,\"events\":%lld,"
           "\"achieved_events_per_s\":%.0f,\"max_send_lag_ms\":%.3f,\"exceptions\":%lld,"
           "\"commands\":%lld,\"stray_commands\":%lld,",
           publisher, raw ? "true" : "false", rate, nevents, (double)nevents / send_s,
           (double)max_lag_ns / 1e6, atomic_load(&exceptions_seen), atomic_load(&commands_seen),
           atomic_load(&stray));
    print_lane("immediate", LANE_IMMEDIATE, false);
    print_lane("batch", LANE_BATCH, true);
    printf("}\n");
    if (raw) {
        uint8_t bye[MQTTWIRE_DISCONNECT_LEN];
        mqttwire_disconnect(bye);
        raw_send_all(fd, bye, sizeof bye);
        close(fd);
    } else {
        MQTTClient_disconnect(pub, 1000);
        MQTTClient_destroy(&pub);
    }
    MQTTClient_disconnect(sub, 1000);
    MQTTClient_destroy(&sub);
    free((void *)lane_of);
    free((void *)arrival_ns);
    return 0;
}
