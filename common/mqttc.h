/* MQTT client of the daemon, tcp:// only (no TLS: docs/operations.md). Publishers use paho
 * MQTTClient (libpaho-mqtt3c) in asynchronous mode: one handle and a supervisor thread that
 * connects and reconnects with exponential backoff (100 ms doubling to 5 s) after a lost
 * connection or a broker restart. Subscribers use the native subscriber (mqttsub.h), which
 * reconnects the same way and re-subscribes; a QoS 1 message is acknowledged only after
 * on_message and on_batch_end returned 0. Thread-safe: publish/flush take
 * an internal mutex (paho's MQTTClient is not thread-safe). Incoming messages are handed to
 * on_message on the client's delivery thread; the callback must be quick and must not call into
 * this mqttc. */
#ifndef AETHERIS_MQTTC_H
#define AETHERIS_MQTTC_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include "config.h"

struct mqttc;

/* Called for each message (topic NUL-terminated; both borrowed for the call only); return 0
 * when handled (a QoS 1 message is then acknowledged to the broker), or < 0 to have it
 * delivered again a moment later (meanwhile nothing else is delivered and nothing is acked). */
typedef int (*mqttc_message_fn)(void *ctx, const char *topic, const void *payload, size_t len);
/* Called after the messages on_message took from one socket read, before their QoS 1 PUBACKs
 * go out: return 0 when they are durable (acknowledged then), or < 0 to have none of them
 * acknowledged; the subscriber then drops the connection (when any was QoS 1) and reconnects
 * with backoff, so a persistent session gets them again. */
typedef int (*mqttc_batch_fn)(void *ctx);

struct mqttc_options {
    const char *url;       /* tcp://host:port */
    const char *client_id; /* must be stable across restarts for a persistent session */
    const char *username;  /* NULL or "" = none */
    const char *password;  /* NULL or "" = none */
    bool clean_session;
    int keepalive_s;
    const char *subscribe_topic; /* NULL = publish-only client */
    int subscribe_qos;           /* 0 or 1 (2 is asked as 1) */
    mqttc_message_fn on_message;
    mqttc_batch_fn on_batch_end; /* NULL = taken messages are acknowledged at once */
    /* NULL, or asked (on the supervisor thread, with ctx) before every connection attempt: false
     * postpones the attempt. A partition's session is connected only while this instance holds
     * its lease, so a lost lease never turns into a reconnect that takes the session back. */
    bool (*may_connect)(void *ctx);
    void *ctx;
};

/* Creates the client and starts its supervisor or reader (which connects in the background).
 * The strings in opts are copied. NULL on a creation failure (logged), e.g. a URL that is not
 * tcp://. A subscriber is native (mqttsub.h): mqttc_publish/mqttc_flush on it return
 * ERR_INVAL. */
struct mqttc *mqttc_new(const struct mqttc_options *opts);
/* A publish-only client of this daemon: client id "<node_id>-<role>", clean session, the
 * configured broker, credentials and keep-alive. NULL as mqttc_new(). */
struct mqttc *mqttc_new_publisher(const struct config *cfg, const char *role);
/* Disconnects (waiting up to timeout_ms for in-flight QoS 1 publishes to complete) and frees.
 * No callback runs after it returns. NULL no-op. */
void mqttc_free(struct mqttc *m, int timeout_ms);
/* Waits until connected (and subscribed, for a subscriber): 0 or ERR_TIMEOUT. */
int mqttc_wait_connected(struct mqttc *m, int timeout_ms);
bool mqttc_is_connected(struct mqttc *m);
/* Publishes without waiting for the acknowledgement: 0, ERR_CONN when disconnected, ERR_IO. */
int mqttc_publish(struct mqttc *m, const char *topic, const void *payload, size_t len, int qos);
/* Waits until every QoS 1 publish made since the last flush is acknowledged by the broker.
 * 0, ERR_TIMEOUT, or ERR_CONN if the connection dropped (those publishes must be retried). */
int mqttc_flush(struct mqttc *m, int timeout_ms);

#endif
