/* The MQTT ceiling of this machine for the ingest benchmark: a bare paho (MQTTClient, the library
 * aetherisd uses) subscriber that only counts what arrives, so the daemon's ingest rate can be
 * reported as a ratio of what paho + mosquitto can deliver at all under the same load.
 * It subscribes, prints {"ready":true} once subscribed (the harness starts publishing then), and
 * ends when `expected` messages have arrived or nothing arrived for idle_ms, printing one JSON
 * object: messages, and the monotonic nanoseconds of the first and last arrival.
 * Usage: bare_sub URL TOPIC QOS EXPECTED [IDLE_MS] */
#include "fmacros.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <MQTTClient.h>
#include "clock.h"
#include "bench_args.h"

static _Atomic long long received;
static _Atomic int64_t first_ns, last_ns;

static int arrived(void *ctx, char *topic, int topic_len, MQTTClient_message *m)
{
    (void)ctx;
    (void)topic_len;
    int64_t now = clock_mono_ns();
    if (atomic_fetch_add(&received, 1) == 0)
        atomic_store(&first_ns, now);
    atomic_store(&last_ns, now);
    MQTTClient_freeMessage(&m);
    MQTTClient_free(topic);
    return 1;
}

static void lost(void *ctx, char *cause)
{
    (void)ctx;
    fprintf(stderr, "bare_sub: connection lost: %s\n", cause ? cause : "?");
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: bare_sub URL TOPIC QOS EXPECTED [IDLE_MS]\n");
        return 2;
    }
    long long expected = bench_arg_num(argv[4]);
    int idle_ms = argc > 5 ? (int)bench_arg_num(argv[5]) : 3000;
    MQTTClient c;
    MQTTClient_connectOptions o = MQTTClient_connectOptions_initializer;
    o.cleansession = 1;
    o.keepAliveInterval = 30;
    if (MQTTClient_create(&c, argv[1], "bench-bare-sub", MQTTCLIENT_PERSISTENCE_NONE, NULL) !=
            MQTTCLIENT_SUCCESS ||
        MQTTClient_setCallbacks(c, NULL, lost, arrived, NULL) != MQTTCLIENT_SUCCESS ||
        MQTTClient_connect(c, &o) != MQTTCLIENT_SUCCESS ||
        MQTTClient_subscribe(c, argv[2], (int)bench_arg_num(argv[3])) != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "bare_sub: cannot connect or subscribe to %s\n", argv[1]);
        return 1;
    }
    printf("{\"ready\":true}\n");
    fflush(stdout);
    long long seen = -1;
    int64_t quiet_since = clock_mono_ms();
    while (atomic_load(&received) < expected) {
        clock_sleep_ms(10);
        long long now_seen = atomic_load(&received);
        if (now_seen != seen) {
            seen = now_seen;
            quiet_since = clock_mono_ms();
        } else if (clock_mono_ms() - quiet_since > idle_ms) {
            break;
        }
    }
    printf("{\"messages\":%lld,\"first_ns\":%lld,\"last_ns\":%lld}\n", atomic_load(&received),
           (long long)atomic_load(&first_ns), (long long)atomic_load(&last_ns));
    MQTTClient_disconnect(c, 1000);
    MQTTClient_destroy(&c);
    return 0;
}
