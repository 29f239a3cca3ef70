/* MQTT client (mqttc.h) over paho's MQTTClient in asynchronous mode.
 *
 * Two locks: `api` serializes every call into the MQTTClient handle made by our threads (paho's
 * MQTTClient is not thread-safe); `state` guards the connection flags the callbacks update. paho
 * forbids calling its API from its callbacks, so connectionLost only flips a flag and wakes the
 * supervisor thread, which reconnects with a doubling backoff and subscribes again. */
#include "mqttc.h"
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <MQTTClient.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "xmalloc.h"

#define MQTTC_BACKOFF_MIN_MS 100
#define MQTTC_BACKOFF_MAX_MS 5000
#define MQTTC_CONNECT_TIMEOUT_S 2

struct mqttc {
    MQTTClient client;
    char *url, *client_id, *username, *password, *topic;
    bool clean_session;
    int keepalive_s;
    int qos;
    mqttc_message_fn on_message;
    void *ctx;
    pthread_mutex_t api;   /* every MQTTClient_* call from our threads */
    pthread_mutex_t state; /* the fields below */
    pthread_cond_t cv;
    bool connected;
    bool stop;
    bool ever_connected;
    pthread_t supervisor;
    MQTTClient_deliveryToken *pending; /* QoS 1 publishes since the last flush (under api) */
    size_t npending, cappending;
};

static char *dup_or_null(const char *s)
{
    return s && s[0] ? xstrdup(s) : NULL;
}

static int mkdirs(const char *path)
{
    char tmp[1024];
    size_t len = strlen(path);
    if (len >= sizeof tmp)
        return ERR_INVAL;
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char saved = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST)
            return ERR_IO;
        tmp[i] = saved;
    }
    return 0;
}

static void on_connection_lost(void *context, char *cause)
{
    struct mqttc *m = context;
    pthread_mutex_lock(&m->state);
    m->connected = false;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->state);
    log_warn("mqtt.connection_lost", "%s lost its broker connection%s%s", m->client_id,
             cause ? ": " : "", cause ? cause : "");
}

static int on_message_arrived(void *context, char *topic, int topic_len, MQTTClient_message *msg)
{
    struct mqttc *m = context;
    (void)topic_len;
    if (m->on_message &&
        m->on_message(m->ctx, topic, msg->payload, (size_t)msg->payloadlen) != 0)
        return 0; /* paho keeps the message and delivers it again */
    MQTTClient_freeMessage(&msg);
    MQTTClient_free(topic);
    return 1;
}

/* One connection attempt (with subscription): true on success. */
static bool try_connect(struct mqttc *m)
{
    MQTTClient_connectOptions opts = MQTTClient_connectOptions_initializer;
    opts.keepAliveInterval = m->keepalive_s;
    opts.cleansession = m->clean_session;
    opts.username = m->username;
    opts.password = m->password;
    opts.connectTimeout = MQTTC_CONNECT_TIMEOUT_S;
    pthread_mutex_lock(&m->api);
    int rc = MQTTClient_connect(m->client, &opts);
    if (rc == MQTTCLIENT_SUCCESS && m->topic) {
        rc = MQTTClient_subscribe(m->client, m->topic, m->qos);
        if (rc != MQTTCLIENT_SUCCESS)
            MQTTClient_disconnect(m->client, 0);
    }
    pthread_mutex_unlock(&m->api);
    return rc == MQTTCLIENT_SUCCESS;
}

static void *supervisor_main(void *arg)
{
    struct mqttc *m = arg;
    int backoff = MQTTC_BACKOFF_MIN_MS;
    bool logged_down = false;
    pthread_mutex_lock(&m->state);
    while (!m->stop) {
        if (m->connected) {
            pthread_cond_wait(&m->cv, &m->state);
            continue;
        }
        pthread_mutex_unlock(&m->state);
        bool ok = try_connect(m);
        pthread_mutex_lock(&m->state);
        if (ok) {
            m->connected = true;
            if (m->ever_connected)
                metrics_inc(M_MQTT_RECONNECTS);
            m->ever_connected = true;
            backoff = MQTTC_BACKOFF_MIN_MS;
            logged_down = false;
            pthread_cond_broadcast(&m->cv);
            log_info("mqtt.connected", "%s connected to %s%s%s", m->client_id, m->url,
                     m->topic ? ", subscribed to " : "", m->topic ? m->topic : "");
            continue;
        }
        if (!logged_down)
            log_warn("mqtt.connect_failed", "%s cannot reach %s; retrying with backoff",
                     m->client_id, m->url);
        logged_down = true;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)backoff * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (!m->stop)
            pthread_cond_timedwait(&m->cv, &m->state, &ts);
        backoff = backoff * 2 > MQTTC_BACKOFF_MAX_MS ? MQTTC_BACKOFF_MAX_MS : backoff * 2;
    }
    pthread_mutex_unlock(&m->state);
    return NULL;
}

struct mqttc *mqttc_new(const struct mqttc_options *o)
{
    struct mqttc *m = xcalloc(1, sizeof *m);
    m->url = xstrdup(o->url);
    m->client_id = xstrdup(o->client_id);
    m->username = dup_or_null(o->username);
    m->password = dup_or_null(o->password);
    m->topic = dup_or_null(o->subscribe_topic);
    m->clean_session = o->clean_session;
    m->keepalive_s = o->keepalive_s > 0 ? o->keepalive_s : 30;
    m->qos = o->subscribe_qos;
    m->on_message = o->on_message;
    m->ctx = o->ctx;
    pthread_mutex_init(&m->api, NULL);
    pthread_mutex_init(&m->state, NULL);
    pthread_cond_init(&m->cv, NULL);
    int ptype = MQTTCLIENT_PERSISTENCE_NONE;
    if (o->persist_dir && o->persist_dir[0]) {
        if (mkdirs(o->persist_dir) != 0)
            log_warn("mqtt.persistence", "cannot create %s", o->persist_dir);
        ptype = MQTTCLIENT_PERSISTENCE_DEFAULT;
    }
    int rc = MQTTClient_create(&m->client, m->url, m->client_id, ptype,
                               ptype == MQTTCLIENT_PERSISTENCE_DEFAULT ? (void *)o->persist_dir
                                                                       : NULL);
    if (rc == MQTTCLIENT_SUCCESS)
        rc = MQTTClient_setCallbacks(m->client, m, on_connection_lost, on_message_arrived, NULL);
    if (rc != MQTTCLIENT_SUCCESS) {
        log_error("mqtt.create", "cannot create MQTT client %s for %s (paho code %d)",
                  m->client_id, m->url, rc);
        goto fail;
    }
    if (pthread_create(&m->supervisor, NULL, supervisor_main, m) != 0)
        goto fail;
    return m;
fail:
    if (m->client)
        MQTTClient_destroy(&m->client);
    free(m->url);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->topic);
    free(m);
    return NULL;
}

void mqttc_free(struct mqttc *m, int timeout_ms)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->state);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->state);
    pthread_join(m->supervisor, NULL);
    pthread_mutex_lock(&m->api);
    if (MQTTClient_isConnected(m->client))
        MQTTClient_disconnect(m->client, timeout_ms);
    MQTTClient_destroy(&m->client);
    pthread_mutex_unlock(&m->api);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->state);
    pthread_mutex_destroy(&m->api);
    free(m->pending);
    free(m->url);
    free(m->client_id);
    free(m->username);
    free(m->password);
    free(m->topic);
    free(m);
}

int mqttc_wait_connected(struct mqttc *m, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&m->state);
    while (!m->connected && !m->stop)
        if (pthread_cond_timedwait(&m->cv, &m->state, &ts) != 0)
            break;
    bool ok = m->connected;
    pthread_mutex_unlock(&m->state);
    return ok ? 0 : ERR_TIMEOUT;
}

bool mqttc_is_connected(struct mqttc *m)
{
    pthread_mutex_lock(&m->state);
    bool c = m->connected;
    pthread_mutex_unlock(&m->state);
    return c;
}

int mqttc_publish(struct mqttc *m, const char *topic, const void *payload, size_t len, int qos)
{
    if (!mqttc_is_connected(m))
        return ERR_CONN;
    if (len > (size_t)0x7fffffff)
        return ERR_INVAL;
    MQTTClient_deliveryToken token = 0;
    pthread_mutex_lock(&m->api);
    int rc = MQTTClient_publish(m->client, topic, (int)len, payload, qos, 0, &token);
    if (rc == MQTTCLIENT_SUCCESS && qos > 0) {
        if (m->npending == m->cappending) {
            m->cappending = m->cappending ? m->cappending * 2 : 64;
            m->pending = xrealloc(m->pending, m->cappending * sizeof *m->pending);
        }
        m->pending[m->npending++] = token;
    }
    pthread_mutex_unlock(&m->api);
    if (rc == MQTTCLIENT_SUCCESS)
        return 0;
    return rc == MQTTCLIENT_DISCONNECTED ? ERR_CONN : ERR_IO;
}

int mqttc_flush(struct mqttc *m, int timeout_ms)
{
    int64_t deadline = clock_mono_ms() + timeout_ms;
    int rv = 0;
    pthread_mutex_lock(&m->api);
    for (size_t i = 0; i < m->npending && rv == 0; i++) {
        int64_t left = deadline - clock_mono_ms();
        if (left < 1)
            left = 1;
        int rc = MQTTClient_waitForCompletion(m->client, m->pending[i], (unsigned long)left);
        if (rc != MQTTCLIENT_SUCCESS)
            rv = MQTTClient_isConnected(m->client) ? ERR_TIMEOUT : ERR_CONN;
    }
    m->npending = 0;
    pthread_mutex_unlock(&m->api);
    return rv;
}
