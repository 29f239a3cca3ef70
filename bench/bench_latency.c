/* Event-to-decision latency, open loop and coordinated-omission safe, per lane.
 *
 * One paho client publishes input events (QoS 0) on a fixed schedule: event k is due at
 * t0 + k / RATE on CLOCK_MONOTONIC, and a late send never moves the schedule (the next sends
 * catch up), so a slow daemon cannot slow the offered load down. A second client subscribes to
 * the exceptions topic (to learn each exception's lane from its priority) and to the commands
 * topic; a command's latency is its arrival time minus the *scheduled* send time of its event,
 * so time an event spent waiting to be sent counts against the system, not in its favour.
 *
 * Events: ACCOUNTS accounts in turn (account k % ACCOUNTS), amounts 10-500; once every account
 * has a history, one event in 100 at random is a spike, at random 9,000 (suspicion ~1: immediate
 * lane) or 1,500 (moderate: batch lane, when its z-score clears the threshold). Which lane an
 * exception took is read from the daemon's own exception message, not assumed.
 *
 * After the last send it waits until every exception seen has its command, or WAIT_MS passed,
 * then prints one JSON object: achieved send rate, the largest send lag behind the schedule,
 * and per lane the count, p50/p95/p99/max in milliseconds and the exceptions left without a
 * command.
 * Usage: bench_latency URL RATE SECONDS FIRST_TXID [ACCOUNTS] [WAIT_MS] */
#include "fmacros.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <MQTTClient.h>
#include "clock.h"
#include "bench_args.h"

#define SPIKE_EVERY 100
#define WARMUP_ROUNDS 10 /* events per account before the first spike */

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
        int64_t due = t0_ns + (int64_t)((double)k * 1e9 / rate);
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
        fprintf(stderr, "usage: bench_latency URL RATE SECONDS FIRST_TXID [ACCOUNTS] [WAIT_MS]\n");
        return 2;
    }
    rate = (double)bench_arg_num(argv[2]);
    nevents = (long long)rate * bench_arg_num(argv[3]);
    first_txid = bench_arg_num(argv[4]);
    long long accounts = argc > 5 ? bench_arg_num(argv[5]) : 200;
    int wait_ms = argc > 6 ? (int)bench_arg_num(argv[6]) : 3000;
    if (rate <= 0 || nevents <= 0 || accounts <= 0) {
        fprintf(stderr, "bench_latency: RATE, SECONDS and ACCOUNTS must be positive\n");
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
    MQTTClient pub = connect_client(argv[1], "bench-latency-pub");

    unsigned long long rng = 88172645463325252ULL;
    int64_t max_lag_ns = 0;
    t0_ns = clock_mono_ns();
    for (long long k = 0; k < nevents; k++) {
        int64_t due = t0_ns + (int64_t)((double)k * 1e9 / rate);
        int64_t now = clock_mono_ns();
        if (now < due) {
            struct timespec at = {(time_t)(due / 1000000000), (long)(due % 1000000000)};
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0)
                ;
            now = clock_mono_ns();
        }
        if (now - due > max_lag_ns)
            max_lag_ns = now - due;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        long long acct = k % accounts;
        double amount = 10.0 + (double)(rng % 49000) / 100.0;
        if (k >= accounts * WARMUP_ROUNDS && (rng >> 20) % SPIKE_EVERY == 0)
            amount = (rng >> 40) % 2 ? 9000.0 : 1500.0;
        char topic[96], payload[160];
        snprintf(topic, sizeof topic, "aetheris/transactions/L%lld/%lld", acct, first_txid + k);
        int len = snprintf(payload, sizeof payload,
                           "{\"transactionId\":%lld,\"accountOrigin\":\"L%lld\",\"amount\":%.2f}",
                           first_txid + k, acct, amount);
        if (MQTTClient_publish(pub, topic, len, payload, 0, 0, NULL) != MQTTCLIENT_SUCCESS) {
            fprintf(stderr, "bench_latency: publish failed at event %lld\n", k);
            return 1;
        }
    }
    double send_s = (double)(clock_mono_ns() - t0_ns) / 1e9;
    int64_t deadline = clock_mono_ms() + wait_ms;
    while (clock_mono_ms() < deadline &&
           (atomic_load(&commands_seen) < atomic_load(&exceptions_seen) ||
            atomic_load(&exceptions_seen) == 0))
        clock_sleep_ms(10);
    clock_sleep_ms(100); /* a late exception message for the last commands */
    printf("{\"bench\":\"latency\",\"offered_events_per_s\":%.0f,\"events\":%lld,"
           "\"achieved_events_per_s\":%.0f,\"max_send_lag_ms\":%.3f,\"exceptions\":%lld,"
           "\"commands\":%lld,\"stray_commands\":%lld,",
           rate, nevents, (double)nevents / send_s, (double)max_lag_ns / 1e6,
           atomic_load(&exceptions_seen), atomic_load(&commands_seen), atomic_load(&stray));
    print_lane("immediate", LANE_IMMEDIATE, false);
    print_lane("batch", LANE_BATCH, true);
    printf("}\n");
    MQTTClient_disconnect(pub, 1000);
    MQTTClient_disconnect(sub, 1000);
    MQTTClient_destroy(&pub);
    MQTTClient_destroy(&sub);
    free((void *)lane_of);
    free((void *)arrival_ns);
    return 0;
}
