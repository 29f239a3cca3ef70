/* mqttc against a real mosquitto on a free loopback port (started by the test): QoS 0 and 1
 * delivery between two clients, redelivery when on_message refuses a message, a persistent
 * session that keeps 100 messages for an absent subscriber, recovery after a broker restart
 * (reconnect and resubscribe without help), fast ERR_CONN while the broker is down, flush
 * reporting ERR_TIMEOUT (broker frozen) and ERR_CONN (broker killed), and ssl:// refused at
 * creation. Subscribers here are native (mqttsub, tcp://), publishers paho. */
#include "mqttc.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "clock.h"
#include "err.h"
#include "metrics.h"
#include "servers.h"
#include "tap.h"

#define MAXMSG 512
#define WAIT_MS 10000 /* upper bound for anything that should take milliseconds */

/* What one subscriber has received. */
struct rx {
    pthread_mutex_t mu;
    int count;     /* accepted messages */
    int calls;     /* on_message calls, including refused ones */
    int refuse;    /* refuse (return -1) this many more messages */
    int binary_ok; /* messages whose payload matched the binary pattern */
    char topic[MAXMSG][64];
    char payload[MAXMSG][64];
};

static const unsigned char binary_payload[] = {'b', 0, 1, 0xff, 0, 'z'};

static int on_message(void *ctx, const char *topic, const void *payload, size_t len)
{
    struct rx *rx = ctx;
    pthread_mutex_lock(&rx->mu);
    rx->calls++;
    if (rx->refuse > 0) {
        rx->refuse--;
        pthread_mutex_unlock(&rx->mu);
        return -1;
    }
    if (len == sizeof binary_payload && memcmp(payload, binary_payload, len) == 0)
        rx->binary_ok++;
    if (rx->count < MAXMSG) {
        snprintf(rx->topic[rx->count], sizeof rx->topic[0], "%s", topic);
        size_t n = len < sizeof rx->payload[0] - 1 ? len : sizeof rx->payload[0] - 1;
        memcpy(rx->payload[rx->count], payload, n);
        rx->payload[rx->count][n] = '\0';
    }
    rx->count++;
    pthread_mutex_unlock(&rx->mu);
    return 0;
}

static void rx_init(struct rx *rx)
{
    memset(rx, 0, sizeof *rx);
    pthread_mutex_init(&rx->mu, NULL);
}

static void rx_reset(struct rx *rx)
{
    pthread_mutex_lock(&rx->mu);
    rx->count = rx->calls = rx->refuse = rx->binary_ok = 0;
    pthread_mutex_unlock(&rx->mu);
}

static int rx_count(struct rx *rx)
{
    pthread_mutex_lock(&rx->mu);
    int n = rx->count;
    pthread_mutex_unlock(&rx->mu);
    return n;
}

/* Waits (bounded) until rx has at least n messages; returns the count reached. */
static int rx_wait(struct rx *rx, int n, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (rx_count(rx) < n && clock_mono_ms() < deadline)
        clock_sleep_ms(10);
    clock_sleep_ms(50); /* catch duplicates or extras arriving right behind */
    return rx_count(rx);
}

/* How many of prefix0..prefix(n-1) on topic were received exactly once. */
static int rx_exactly_once(struct rx *rx, const char *topic, const char *prefix, int n)
{
    int good = 0;
    pthread_mutex_lock(&rx->mu);
    for (int i = 0; i < n; i++) {
        char want[64];
        snprintf(want, sizeof want, "%s%d", prefix, i);
        int seen = 0;
        for (int j = 0; j < rx->count && j < MAXMSG; j++)
            if (strcmp(rx->payload[j], want) == 0 && strcmp(rx->topic[j], topic) == 0)
                seen++;
        if (seen == 1)
            good++;
    }
    pthread_mutex_unlock(&rx->mu);
    return good;
}

static bool wait_disconnected(struct mqttc *m, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (mqttc_is_connected(m) && clock_mono_ms() < deadline)
        clock_sleep_ms(10);
    return !mqttc_is_connected(m);
}

static char url[64];

static struct mqttc *client(const char *id, const char *topic, bool clean, struct rx *rx,
                            int keepalive_s)
{
    struct mqttc_options o = {.url = url,
                              .client_id = id,
                              .clean_session = clean,
                              .keepalive_s = keepalive_s,
                              .subscribe_topic = topic,
                              .subscribe_qos = 1,
                              .on_message = rx ? on_message : NULL,
                              .ctx = rx};
    return mqttc_new(&o);
}

/* Publishes n messages "<prefix><i>"; returns how many publishes returned 0. */
static int publish_n(struct mqttc *m, const char *topic, const char *prefix, int n, int qos)
{
    int okn = 0;
    for (int i = 0; i < n; i++) {
        char p[64];
        int len = snprintf(p, sizeof p, "%s%d", prefix, i);
        if (mqttc_publish(m, topic, p, (size_t)len, qos) == 0)
            okn++;
    }
    return okn;
}

int main(void)
{
    alarm(60);
    signal(SIGPIPE, SIG_IGN);
    struct test_server broker;
    srv_start_or_exit(&broker, SRV_MOSQUITTO, NULL);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", broker.port);

    /* ---- QoS 0 and 1 between two clients */
    static struct rx live, durable;
    rx_init(&live);
    rx_init(&durable);
    struct mqttc *sub = client("t-sub-live", "t/live/#", true, &live, 10);
    struct mqttc *pub = client("t-pub", NULL, true, NULL, 10);
    ok(sub && pub, "mqttc_new for a subscriber and a publisher");
    is_int(mqttc_wait_connected(sub, WAIT_MS), 0, "subscriber connected and subscribed");
    is_int(mqttc_wait_connected(pub, WAIT_MS), 0, "publisher connected");
    is_int(publish_n(pub, "t/live/q0", "zero-", 50, 0), 50, "50 QoS 0 publishes accepted");
    is_int(publish_n(pub, "t/live/q1", "one-", 50, 1), 50, "50 QoS 1 publishes accepted");
    is_int(mqttc_publish(pub, "t/live/bin", binary_payload, sizeof binary_payload, 1), 0,
           "binary QoS 1 publish accepted");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "flush: every QoS 1 publish acknowledged");
    is_int(mqttc_flush(pub, 10), 0, "a second flush with nothing pending returns 0 at once");
    is_int(rx_wait(&live, 101, WAIT_MS), 101, "subscriber got all 101 messages, no extras");
    is_int(rx_exactly_once(&live, "t/live/q0", "zero-", 50), 50, "QoS 0 content, each once");
    is_int(rx_exactly_once(&live, "t/live/q1", "one-", 50), 50, "QoS 1 content, each once");
    pthread_mutex_lock(&live.mu);
    is_int(live.binary_ok, 1, "binary payload with NUL bytes intact");
    pthread_mutex_unlock(&live.mu);
    is_int(mqttc_publish(pub, "t/live/x", "x", 1, 3), ERR_INVAL, "QoS 3 rejected");

    /* ---- on_message refusing once -> redelivery (the native subscriber offers it again after
     * a few milliseconds; test_mqttsub covers the details). */
    static struct rx again;
    rx_init(&again);
    pthread_mutex_lock(&again.mu);
    again.refuse = 1;
    pthread_mutex_unlock(&again.mu);
    struct mqttc *rsub = client("t-redeliver", "t/redeliver", true, &again, 1);
    is_int(mqttc_wait_connected(rsub, WAIT_MS), 0, "redelivery subscriber connected");
    int64_t t0 = clock_mono_ms();
    is_int(mqttc_publish(pub, "t/redeliver", "again", 5, 1), 0, "publish for redelivery");
    is_int(rx_wait(&again, 1, WAIT_MS), 1, "the refused message is delivered again, once");
    int64_t dt = clock_mono_ms() - t0;
    pthread_mutex_lock(&again.mu);
    ok(again.calls == 2 && strcmp(again.payload[0], "again") == 0,
       "on_message called twice (refused, then accepted) with the same payload (%d calls)",
       again.calls);
    pthread_mutex_unlock(&again.mu);
    ok(dt < 4000, "redelivered within a few keepalive periods (%lld ms)", (long long)dt);
    mqttc_free(rsub, 0);

    /* ---- persistent session: 100 messages kept for an absent subscriber */
    struct mqttc *dsub = client("t-durable", "t/durable", false, &durable, 10);
    is_int(mqttc_wait_connected(dsub, WAIT_MS), 0, "persistent subscriber connected");
    mqttc_free(dsub, 1000);
    is_int(publish_n(pub, "t/durable", "kept-", 100, 1), 100, "100 QoS 1 while it is away");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "all 100 acknowledged by the broker");
    ok(rx_count(&durable) == 0, "nothing delivered to the freed subscriber");
    dsub = client("t-durable", "t/durable", false, &durable, 10);
    is_int(rx_wait(&durable, 100, WAIT_MS), 100, "recreated subscriber got the 100 queued");
    is_int(rx_exactly_once(&durable, "t/durable", "kept-", 100), 100, "each exactly once");

    /* ---- broker restart: everyone reconnects and resubscribes on their own */
    uint64_t reconnects0 = metrics_get(M_MQTT_RECONNECTS);
    rx_reset(&live);
    rx_reset(&durable);
    srv_stop(&broker);
    ok(wait_disconnected(sub, WAIT_MS) && wait_disconnected(pub, WAIT_MS) &&
           wait_disconnected(dsub, WAIT_MS),
       "all three clients notice the broker went away");
    t0 = clock_mono_ms();
    int rv0 = mqttc_publish(pub, "t/live/down", "x", 1, 0);
    int rv1 = mqttc_publish(pub, "t/live/down", "x", 1, 1);
    dt = clock_mono_ms() - t0;
    ok(rv0 == ERR_CONN && rv1 == ERR_CONN, "publish while the broker is down returns ERR_CONN");
    ok(dt < 100, "and returns at once (%lld ms for two calls)", (long long)dt);
    is_int(mqttc_wait_connected(pub, 300), ERR_TIMEOUT, "wait_connected times out while down");
    clock_sleep_ms(300); /* let the backoff grow a little */
    ok(srv_restart(&broker), "mosquitto restarted on port %d", broker.port);
    t0 = clock_mono_ms();
    ok(mqttc_wait_connected(sub, WAIT_MS) == 0 && mqttc_wait_connected(pub, WAIT_MS) == 0 &&
           mqttc_wait_connected(dsub, WAIT_MS) == 0,
       "all three reconnected (%lld ms)", (long long)(clock_mono_ms() - t0));
    ok(metrics_get(M_MQTT_RECONNECTS) >= reconnects0 + 3, "reconnects counted in metrics");
    is_int(publish_n(pub, "t/live/after", "new-", 10, 1), 10, "publishing works again");
    is_int(publish_n(pub, "t/durable", "late-", 10, 1), 10, "also to the persistent topic");
    is_int(mqttc_flush(pub, WAIT_MS), 0, "and is acknowledged");
    is_int(rx_wait(&live, 10, WAIT_MS), 10, "clean-session subscriber resubscribed by itself");
    is_int(rx_exactly_once(&live, "t/live/after", "new-", 10), 10, "with the right content");
    is_int(rx_wait(&durable, 10, WAIT_MS), 10, "persistent subscriber receives new messages");
    is_int(rx_exactly_once(&durable, "t/durable", "late-", 10), 10, "with the right content");

    /* ---- flush outcomes: broker frozen -> ERR_TIMEOUT; broker killed -> ERR_CONN */
    kill(broker.pid, SIGSTOP);
    is_int(mqttc_publish(pub, "t/live/frozen", "f", 1, 1), 0, "publish to a frozen broker");
    t0 = clock_mono_ms();
    int frv = mqttc_flush(pub, 300);
    dt = clock_mono_ms() - t0;
    is_int(frv, ERR_TIMEOUT, "flush without an acknowledgement: ERR_TIMEOUT");
    ok(dt >= 250 && dt < 2000, "after about its timeout (%lld ms)", (long long)dt);
    is_int(mqttc_publish(pub, "t/live/frozen", "g", 1, 1), 0, "another publish, still frozen");
    srv_kill(&broker, SIGKILL);
    is_int(mqttc_flush(pub, WAIT_MS), ERR_CONN, "flush after the broker died: ERR_CONN");
    ok(srv_restart(&broker), "mosquitto restarted again");
    is_int(mqttc_wait_connected(pub, WAIT_MS), 0, "publisher back");

    t0 = clock_mono_ms();
    mqttc_free(sub, 1000);
    mqttc_free(dsub, 1000);
    mqttc_free(pub, 1000);
    ok(clock_mono_ms() - t0 < 8000, "mqttc_free is bounded");
    mqttc_free(NULL, 0);

    /* ---- a subscriber takes tcp:// only (config.c refuses ssl:// before this is reached) */
    char ssl_url[64];
    snprintf(ssl_url, sizeof ssl_url, "ssl://127.0.0.1:%d", broker.port);
    struct mqttc_options so = {.url = ssl_url,
                               .client_id = "t-ssl",
                               .clean_session = true,
                               .subscribe_topic = "t/#",
                               .subscribe_qos = 1,
                               .on_message = on_message,
                               .ctx = &live};
    ok(mqttc_new(&so) == NULL, "an ssl:// subscriber is refused at creation (no TLS)");
    so.url = "tcp://";
    ok(mqttc_new(&so) == NULL, "a tcp:// URL without a host is refused at creation");
    srv_cleanup(&broker);
    return done_testing();
}
