/* MQTT client (mqttc.h): a subscriber is a thin wrapper over the native subscriber (mqttsub.c,
 * which says why); a publisher is paho's MQTTClient in asynchronous mode (callbacks set), with
 * its persistence in memory. paho keeps the publishers (commands, exceptions, forwarding: its
 * per-message costs do not matter at their rates). Neither speaks TLS (the daemon links
 * libpaho-mqtt3c, paho's build without it), so config.c accepts tcp:// URLs only
 * (docs/operations.md: a TLS-terminating proxy).
 *
 * paho's MQTTClient is not thread-safe and forbids calling its API from its callbacks, so:
 *  - every MQTTClient_* call made by our threads (connect, publish, waitForCompletion,
 *    disconnect) runs under one mutex, `api`;
 *  - the callbacks never call paho: connectionLost only clears `connected`, sets `lost` and wakes
 *    the supervisor; deliveryComplete only drops the token from the pending list; messageArrived
 *    (a publisher subscribes to nothing) only frees what it is given;
 *  - a supervisor thread owns (re)connection: connect, mark connected, then sleep on a condition
 *    variable until the connection is lost or mqttc_free() asks it to stop. Failed attempts back
 *    off from 100 ms doubling to 5 s.
 *
 * Lock order: api -> state, and paho's internal lock -> state (deliveryComplete runs with it
 * held). Nobody calls paho or takes `api` while holding `state`, so there is no cycle.
 *
 * mqttc_flush() waits for acknowledgements with `api` held: while it waits, other publishers of
 * the same handle block, and so does a reconnect attempt. Each producing thread owns its publisher
 * handle (STYLE 3.3: separate subscriber and publisher handles), so nobody else waits in practice.
 *
 * A race handled explicitly: the connection can drop between MQTTClient_connect() returning and
 * the supervisor marking the client connected. connectionLost then sets `lost`, and the
 * supervisor treats that attempt as failed instead of believing a dead connection is up. */
#include "mqttc.h"
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <MQTTClient.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "mqttsub.h"
#include "thread.h"
#include "xmalloc.h"

#define MQTTC_BACKOFF_MIN_MS 100     /* a broker restart is noticed quickly */
#define MQTTC_BACKOFF_MAX_MS 5000    /* a dead broker is probed every 5 s at most */
#define MQTTC_FLUSH_RECHECK_MS 10    /* flush re-reads paho's in-flight list this often */
#define MQTTC_MAX_INFLIGHT 65535     /* MQTT packet ids are 16-bit; mqttc_flush bounds the window */
#define MQTTC_CONNECT_TIMEOUT_S 2    /* bounds how long the supervisor holds `api` per attempt */
#define MQTTC_DEFAULT_KEEPALIVE_S 30 /* when the caller passes 0: paho's own default is 60 */
#define MQTTC_PENDING_INITIAL 64     /* one flush batch of typical size; grows by doubling */

struct mqttc {
    struct mqttsub *native; /* a subscriber: everything below is unused */
    MQTTClient client;
    char *url, *client_id, *username, *password;
    bool clean_session;
    int keepalive_s;
    pthread_mutex_t api;   /* every MQTTClient_* call from our threads */
    pthread_mutex_t state; /* everything below */
    pthread_cond_t cv;     /* CLOCK_MONOTONIC; signalled on connected/lost/stop */
    bool connected;        /* connected to the broker */
    bool lost;             /* connectionLost fired since the last attempt began */
    uint64_t losses; /* connectionLost count: a flush spanning one cannot vouch for delivery */
    bool stop;
    bool ever_connected; /* reconnects after the first connect are counted */
    pthread_t supervisor;
    MQTTClient_deliveryToken *pending; /* QoS >= 1 publishes not yet known complete */
    size_t npending, cappending;
};

/* Removes one occurrence of token from the pending list. Caller holds m->state. */
static void pending_remove(struct mqttc *m, MQTTClient_deliveryToken token)
{
    for (size_t i = 0; i < m->npending; i++) {
        if (m->pending[i] == token) {
            m->pending[i] = m->pending[--m->npending];
            return;
        }
    }
}

/* Drops pending tokens paho no longer tracks: a PUBACK can be handled before mqttc_publish()
 * records the token, leaving a stale entry that only a flush would clear. Keeps the list bounded
 * for a publisher that rarely flushes. Caller holds m->api (this calls paho), not m->state. */
static int cmp_token(const void *a, const void *b)
{
    MQTTClient_deliveryToken x = *(const MQTTClient_deliveryToken *)a;
    MQTTClient_deliveryToken y = *(const MQTTClient_deliveryToken *)b;
    return (x > y) - (x < y);
}

static void pending_prune(struct mqttc *m)
{
    MQTTClient_deliveryToken *live = NULL;
    if (MQTTClient_getPendingDeliveryTokens(m->client, &live) != MQTTCLIENT_SUCCESS)
        return;
    size_t nlive = 0;
    while (live != NULL && live[nlive] != -1)
        nlive++;
    if (nlive > 1)
        qsort(live, nlive, sizeof *live, cmp_token);
    pthread_mutex_lock(&m->state);
    size_t kept = 0;
    for (size_t i = 0; i < m->npending; i++)
        if (nlive > 0 && bsearch(&m->pending[i], live, nlive, sizeof *live, cmp_token) != NULL)
            m->pending[kept++] = m->pending[i];
    m->npending = kept;
    pthread_mutex_unlock(&m->state);
    if (live)
        MQTTClient_free(live);
}

/* ---------------------------------------------------------------- paho callbacks */

/* paho: runs on a thread of its own while paho's lock is held elsewhere; must not call paho. */
static void on_connection_lost(void *context, char *cause)
{
    struct mqttc *m = context;
    pthread_mutex_lock(&m->state);
    bool was = m->connected;
    m->connected = false;
    m->lost = true;
    m->losses++;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->state);
    if (was)
        log_warn("mqtt.connection_lost", "%s lost its connection to %s%s%s", m->client_id, m->url,
                 cause ? ": " : "", cause ? cause : "");
}

/* paho: runs on paho's delivery thread. A publisher subscribes to nothing, so nothing should
 * arrive; whatever does is freed and reported handled (1). */
static int on_message_arrived(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    (void)context;
    (void)topic_len;
    MQTTClient_freeMessage(&msg);
    MQTTClient_free(topic);
    return 1;
}

/* paho: runs with paho's internal lock held when a QoS 1/2 publish is acknowledged. */
static void on_delivery_complete(void *context, MQTTClient_deliveryToken token)
{
    struct mqttc *m = context;
    pthread_mutex_lock(&m->state);
    pending_remove(m, token);
    if (m->npending == 0)
        pthread_cond_broadcast(&m->cv); /* wakes mqttc_flush */
    pthread_mutex_unlock(&m->state);
}

/* ---------------------------------------------------------------- supervisor */

/* One connection attempt: the paho return code (MQTTCLIENT_SUCCESS = 0). */
static int try_connect(struct mqttc *m)
{
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.keepAliveInterval = m->keepalive_s;
    opts.cleansession = m->clean_session;
    opts.username = m->username;
    opts.password = m->password;
    opts.connectTimeout = MQTTC_CONNECT_TIMEOUT_S;
    /* paho's default of 10 in-flight QoS 1 messages makes MQTTClient_publish wait inside
     * MQTTClient_yield, which competes with the background receive thread in asynchronous mode
     * and was seen to stall for good; mqttc_flush bounds what is in flight instead. */
    opts.maxInflightMessages = MQTTC_MAX_INFLIGHT;
    opts.retryInterval = 0; /* MQTT 3.1.1: resend unacknowledged publishes only on reconnect */
    pthread_mutex_lock(&m->api);
    int rc = MQTTClient_connect(m->client, &opts);
    pthread_mutex_unlock(&m->api);
    return rc;
}

static void *supervisor_main(void *arg)
{
    struct mqttc *m = arg;
    thread_name("mqtt-pub");
    int backoff = MQTTC_BACKOFF_MIN_MS;
    bool logged_down = false;
    pthread_mutex_lock(&m->state);
    while (!m->stop) {
        if (m->connected) {
            pthread_cond_wait(&m->cv, &m->state);
            continue;
        }
        m->lost = false;
        pthread_mutex_unlock(&m->state);
        int rc = try_connect(m);
        pthread_mutex_lock(&m->state);
        if (rc == MQTTCLIENT_SUCCESS && !m->lost) {
            m->connected = true;
            if (m->ever_connected)
                metrics_inc(M_MQTT_RECONNECTS);
            m->ever_connected = true;
            backoff = MQTTC_BACKOFF_MIN_MS;
            logged_down = false;
            pthread_cond_broadcast(&m->cv);
            log_info("mqtt.connected", "%s connected to %s", m->client_id, m->url);
            continue;
        }
        if (!logged_down)
            log_warn("mqtt.connect_failed", "%s cannot connect to %s (paho code %d); retrying",
                     m->client_id, m->url, rc);
        logged_down = true;
        struct timespec ts = clock_mono_deadline(backoff);
        while (!m->stop && pthread_cond_timedwait(&m->cv, &m->state, &ts) == 0)
            ;
        backoff = backoff * 2 > MQTTC_BACKOFF_MAX_MS ? MQTTC_BACKOFF_MAX_MS : backoff * 2;
    }
    pthread_mutex_unlock(&m->state);
    return NULL;
}

/* ---------------------------------------------------------------- public API */

static void free_strings(struct mqttc *m)
{
    free(m->url);
    free(m->client_id);
    free(m->username);
    free(m->password);
}

/* A subscriber (subscribe_topic set) gets the native subscriber, which takes tcp:// URLs only. A
 * publisher gets a paho handle (persistence in memory), its callbacks and the supervisor, which
 * connects in the background. Strings in opts are copied. Returns NULL (one log line) for a
 * subscriber URL that is not tcp://host[:port], or if paho or a thread cannot be created. The
 * caller owns the result (mqttc_free). */
struct mqttc *mqttc_new(const struct mqttc_options *o)
{
    struct mqttc *m = xcalloc(1, sizeof *m);
    if (o->subscribe_topic != NULL) {
        m->native = mqttsub_new(o);
        if (m->native == NULL) {
            free(m);
            return NULL;
        }
        return m;
    }
    m->url = xstrdup(o->url);
    m->client_id = xstrdup(o->client_id);
    m->username = xstrdup_nonempty(o->username);
    m->password = xstrdup_nonempty(o->password);
    m->clean_session = o->clean_session;
    m->keepalive_s = o->keepalive_s > 0 ? o->keepalive_s : MQTTC_DEFAULT_KEEPALIVE_S;
    pthread_mutex_init(&m->api, NULL);
    pthread_mutex_init(&m->state, NULL);
    clock_cond_init(&m->cv);
    int rc = MQTTClient_create(&m->client, m->url, m->client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL);
    if (rc == MQTTCLIENT_SUCCESS)
        rc = MQTTClient_setCallbacks(m->client, m, on_connection_lost, on_message_arrived,
                                     on_delivery_complete);
    if (rc != MQTTCLIENT_SUCCESS) {
        log_error("mqtt.create", "cannot create MQTT client %s for %s (paho code %d)", m->client_id,
                  m->url, rc);
        goto fail;
    }
    if (pthread_create(&m->supervisor, NULL, supervisor_main, m) != 0) {
        log_error("mqtt.create", "cannot start the supervisor thread for %s", m->client_id);
        goto fail;
    }
    return m;
fail:
    if (m->client)
        MQTTClient_destroy(&m->client);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->state);
    pthread_mutex_destroy(&m->api);
    free_strings(m);
    free(m);
    return NULL;
}

struct mqttc *mqttc_new_publisher(const struct config *cfg, const char *role)
{
    char client_id[160];
    snprintf(client_id, sizeof client_id, "%s-%s", cfg->node_id, role);
    struct mqttc_options mo = {.url = cfg->mqtt_url,
                               .client_id = client_id,
                               .username = cfg->mqtt_username,
                               .password = cfg->mqtt_password,
                               .clean_session = true,
                               .keepalive_s = cfg->mqtt_keepalive_s};
    return mqttc_new(&mo);
}

/* Stops the supervisor (waiting for an attempt in progress, at most the 2 s connect timeout),
 * disconnects giving in-flight QoS 1 flows up to timeout_ms to finish, destroys the paho handle
 * and frees m. No callback runs after it returns. NULL is a no-op. */
void mqttc_free(struct mqttc *m, int timeout_ms)
{
    if (m == NULL)
        return;
    if (m->native != NULL) {
        mqttsub_free(m->native);
        free(m);
        return;
    }
    pthread_mutex_lock(&m->state);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->state);
    pthread_join(m->supervisor, NULL);
    pthread_mutex_lock(&m->api);
    if (MQTTClient_isConnected(m->client))
        MQTTClient_disconnect(m->client, timeout_ms > 0 ? timeout_ms : 0);
    MQTTClient_destroy(&m->client);
    pthread_mutex_unlock(&m->api);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->state);
    pthread_mutex_destroy(&m->api);
    free(m->pending);
    free_strings(m);
    free(m);
}

/* Blocks until the supervisor reports connected (and subscribed): 0, or ERR_TIMEOUT after
 * timeout_ms (or once mqttc_free has begun). */
int mqttc_wait_connected(struct mqttc *m, int timeout_ms)
{
    if (m->native != NULL)
        return mqttsub_wait_connected(m->native, timeout_ms);
    struct timespec ts = clock_mono_deadline(timeout_ms);
    pthread_mutex_lock(&m->state);
    while (!m->connected && !m->stop)
        if (pthread_cond_timedwait(&m->cv, &m->state, &ts) != 0)
            break;
    bool ok = m->connected;
    pthread_mutex_unlock(&m->state);
    return ok ? 0 : ERR_TIMEOUT;
}

/* True while connected (and subscribed, for a subscriber). */
bool mqttc_is_connected(struct mqttc *m)
{
    if (m->native != NULL)
        return mqttsub_is_connected(m->native);
    pthread_mutex_lock(&m->state);
    bool c = m->connected;
    pthread_mutex_unlock(&m->state);
    return c;
}

/* Publishes len bytes of payload (borrowed; paho copies) on topic, not retained, without waiting
 * for the acknowledgement; QoS >= 1 tokens are remembered for mqttc_flush(). Returns 0, ERR_CONN
 * at once while disconnected, ERR_INVAL for a bad size or QoS, ERR_IO on another paho error. */
int mqttc_publish(struct mqttc *m, const char *topic, const void *payload, size_t len, int qos)
{
    if (m->native != NULL || len > (size_t)INT32_MAX || qos < 0 || qos > 2)
        return ERR_INVAL;
    if (!mqttc_is_connected(m))
        return ERR_CONN;
    MQTTClient_deliveryToken token = 0;
    pthread_mutex_lock(&m->api);
    int rc = MQTTClient_publish(m->client, topic, (int)len, payload, qos, 0, &token);
    /* paho answers MQTTCLIENT_FAILURE, not DISCONNECTED, when the link drops while publish waits
     * for the socket; either way the caller must retry after the reconnect. */
    if (rc != MQTTCLIENT_SUCCESS && !MQTTClient_isConnected(m->client))
        rc = MQTTCLIENT_DISCONNECTED;
    if (rc == MQTTCLIENT_SUCCESS && qos > 0) {
        pthread_mutex_lock(&m->state); /* deliveryComplete changes npending under `state` */
        bool full = m->npending == m->cappending && m->cappending >= MQTTC_PENDING_INITIAL;
        pthread_mutex_unlock(&m->state);
        if (full)
            pending_prune(m);
        pthread_mutex_lock(&m->state);
        if (m->npending == m->cappending) {
            m->cappending = m->cappending ? m->cappending * 2 : MQTTC_PENDING_INITIAL;
            m->pending = xrealloc(m->pending, m->cappending * sizeof *m->pending);
        }
        m->pending[m->npending++] = token;
        pthread_mutex_unlock(&m->state);
    }
    pthread_mutex_unlock(&m->api);
    if (rc == MQTTCLIENT_SUCCESS)
        return 0;
    if (rc == MQTTCLIENT_DISCONNECTED)
        return ERR_CONN;
    log_warn("mqtt.publish", "%s: publish on %s failed (paho code %d)", m->client_id, topic, rc);
    return ERR_IO;
}

/* Waits until every QoS >= 1 publish since the last flush is acknowledged, up to timeout_ms in
 * total, then forgets them all. 0, ERR_TIMEOUT, or ERR_CONN if the connection dropped (the caller
 * must publish those messages again). Holds the api mutex while waiting: other publishers on this
 * handle (and a reconnect attempt) wait meanwhile. */
int mqttc_flush(struct mqttc *m, int timeout_ms)
{
    /* Waits on our own condition variable, woken by deliveryComplete, rather than in
     * MQTTClient_waitForCompletion, whose polling added up to ~100 ms per flush. Every
     * MQTTC_FLUSH_RECHECK_MS the list is pruned against paho's own, which catches a PUBACK handled
     * before mqttc_publish() recorded its token. */
    if (m->native != NULL)
        return ERR_INVAL;
    int64_t deadline = clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int rv = 0;
    pthread_mutex_lock(&m->api);
    /* On loopback a PUBACK often beats mqttc_publish() to recording its token: prune once now,
     * or such a token would hold this flush until the first recheck (10 ms, not 0.2). */
    pending_prune(m);
    pthread_mutex_lock(&m->state);
    uint64_t losses = m->losses;
    while (m->npending > 0) {
        if (!m->connected) {
            rv = ERR_CONN;
            break;
        }
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0) {
            rv = ERR_TIMEOUT;
            break;
        }
        struct timespec ts =
            clock_mono_deadline(left < MQTTC_FLUSH_RECHECK_MS ? left : MQTTC_FLUSH_RECHECK_MS);
        if (pthread_cond_timedwait(&m->cv, &m->state, &ts) != 0) {
            pthread_mutex_unlock(&m->state);
            pending_prune(m);
            pthread_mutex_lock(&m->state);
        }
    }
    /* paho forgets a clean session's in-flight messages when the link drops, which pruning
     * would mistake for delivery: any loss during the flush means "not known delivered". */
    if (rv == 0 && m->losses != losses)
        rv = ERR_CONN;
    m->npending = 0;
    pthread_mutex_unlock(&m->state);
    if (rv == 0 && !MQTTClient_isConnected(m->client)) /* dropped, callback not yet run */
        rv = ERR_CONN;
    pthread_mutex_unlock(&m->api);
    return rv;
}
