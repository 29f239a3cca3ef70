/* aetheris-replay: publishes a transactions CSV in the original format
 *   TransactionID,AccountOriginID,AccountDestinationID,TransactionTypeID,Amount,TransactionDate,
 *   BranchID,Description
 * to aetheris/transactions/{accountOrigin}/{transactionId} (or JSON arrays of N events to
 * aetheris/transactions/batch/{first id} with --batch N), at a fixed rate or as fast as possible.
 * Amounts are copied from the CSV text after validation, so values arrive exactly as written.
 * QoS 1 is at-least-once: every 256 messages the tool waits for the broker's acknowledgements, and
 * after a broker restart it republishes everything since the last acknowledged point (the daemon
 * drops the duplicates). Prints a progress line on stderr with --progress and one JSON summary
 * line on stdout. Exit: 0 done, 1 broker unreachable past --max-wait-s, 2 usage or input error. */
#include "fmacros.h"
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "mqttc.h"
#include "xmalloc.h"

#define REPLAY_LINE_MAX 4096   /* longer CSV lines are counted as bad rows */
#define REPLAY_FLUSH_EVERY 256 /* QoS 1: messages between acknowledgement checkpoints */
#define REPLAY_MESSAGE_MAX (2 << 20)

struct opts {
    const char *url, *file, *prefix, *client_id;
    double rate;
    int qos, batch, max_wait_s;
    long long limit;
    bool progress, quiet;
};

struct message {
    char topic[256];
    char *payload;
    size_t len;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: aetheris-replay [options]\n"
            "Publishes a transactions CSV (original Aetheris format) to MQTT.\n\n"
            "  --url URL          broker (default tcp://127.0.0.1:1883, env AETHERIS_MQTT_URL)\n"
            "  --file PATH        CSV file (default data/transactions.csv)\n"
            "  --rate N           events per second on a fixed schedule (default 0 = max)\n"
            "  --qos 0|1          publish QoS (default 1)\n"
            "  --batch N          events per message, 1..1000 (default 1)\n"
            "  --limit N          publish at most N rows\n"
            "  --topic-prefix P   topic prefix (default aetheris/transactions)\n"
            "  --client-id ID     MQTT client id (default aetheris-replay-<pid>)\n"
            "  --max-wait-s N     how long to wait for the broker (default 60)\n"
            "  --progress         a progress line on stderr every second\n"
            "  --quiet            no summary line\n"
            "  --help             this help\n");
}

static bool is_uint(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static bool is_decimal(const char *s)
{
    bool digits = false, dot = false;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9')
            digits = true;
        else if (*s == '.' && !dot)
            dot = true;
        else
            return false;
    }
    return digits;
}

/* Appends s JSON-escaped. */
static void json_escape(struct buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            buf_printf(b, "\\u%04x", c);
        else
            buf_append(b, s, 1);
    }
}

/* Splits a CSV line into exactly 8 fields in place; false otherwise. */
static bool split8(char *line, char **f)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p; p++) {
        if (*p != ',')
            continue;
        if (n == 8)
            return false;
        *p = '\0';
        f[n++] = p + 1;
    }
    return n == 8;
}

/* Appends one event as JSON; false for an invalid row. */
static bool row_json(char *line, struct buf *b, char *first_id, size_t idlen, char *acct,
                     size_t acctlen)
{
    char *f[8];
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if (!split8(line, f) || !is_uint(f[0]) || f[1][0] == '\0' || !is_decimal(f[4]) ||
        (f[3][0] && !is_uint(f[3])) || (f[6][0] && !is_uint(f[6])) || strlen(f[0]) > 20)
        return false;
    snprintf(first_id, idlen, "%s", f[0]);
    snprintf(acct, acctlen, "%s", f[1]);
    buf_printf(b, "{\"transactionId\":%s,\"accountOrigin\":\"", f[0]);
    json_escape(b, f[1]);
    buf_printf(b, "\",\"accountDestination\":\"");
    json_escape(b, f[2]);
    buf_printf(b, "\",\"amount\":%s", f[4]);
    if (f[3][0])
        buf_printf(b, ",\"type\":%s", f[3]);
    if (f[6][0])
        buf_printf(b, ",\"branch\":%s", f[6]);
    buf_printf(b, ",\"date\":\"");
    json_escape(b, f[5]);
    buf_printf(b, "\",\"description\":\"");
    json_escape(b, f[7]);
    buf_printf(b, "\"}");
    return true;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longs[] = {{"url", required_argument, NULL, 'u'},
                                          {"file", required_argument, NULL, 'f'},
                                          {"rate", required_argument, NULL, 'r'},
                                          {"qos", required_argument, NULL, 'q'},
                                          {"batch", required_argument, NULL, 'b'},
                                          {"limit", required_argument, NULL, 'l'},
                                          {"topic-prefix", required_argument, NULL, 'p'},
                                          {"client-id", required_argument, NULL, 'c'},
                                          {"max-wait-s", required_argument, NULL, 'w'},
                                          {"progress", no_argument, NULL, 'P'},
                                          {"quiet", no_argument, NULL, 'Q'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *env = getenv("AETHERIS_MQTT_URL");
    *o = (struct opts){env ? env : "tcp://127.0.0.1:1883",
                       "data/transactions.csv",
                       "aetheris/transactions",
                       NULL,
                       0,
                       1,
                       1,
                       60,
                       -1,
                       false,
                       false};
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (c) {
        case 'u':
            o->url = optarg;
            break;
        case 'f':
            o->file = optarg;
            break;
        case 'p':
            o->prefix = optarg;
            break;
        case 'c':
            o->client_id = optarg;
            break;
        case 'P':
            o->progress = true;
            break;
        case 'Q':
            o->quiet = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'r':
            o->rate = strtod(optarg, &end);
            if (*end || o->rate < 0) {
                fprintf(stderr, "aetheris-replay: --rate must be a number >= 0\n");
                return ERR_INVAL;
            }
            break;
        case 'q':
        case 'b':
        case 'l':
        case 'w': {
            long long v = strtoll(optarg, &end, 10);
            if (*end || optarg[0] == '\0' || v < 0) {
                fprintf(stderr, "aetheris-replay: bad number '%s'\n", optarg);
                return ERR_INVAL;
            }
            if (c == 'q')
                o->qos = (int)v;
            else if (c == 'b')
                o->batch = (int)v;
            else if (c == 'l')
                o->limit = v;
            else
                o->max_wait_s = (int)v;
            break;
        }
        default:
            usage(stderr);
            return ERR_INVAL;
        }
    }
    if (o->qos > 1 || o->batch < 1 || o->batch > 1000 || optind != argc) {
        fprintf(stderr, "aetheris-replay: --qos must be 0 or 1 and --batch 1..1000\n");
        return ERR_INVAL;
    }
    return 0;
}

/* Publishes messages[from..to) (QoS 1: then waits for their acknowledgements). On a broker outage
 * waits for the reconnection and starts over from `from`. Returns 0, or ERR_TIMEOUT after
 * max_wait_s without a broker. */
static int publish_span(struct mqttc *m, const struct opts *o, struct message *msgs, size_t from,
                        size_t to, long long *republished)
{
    for (int attempt = 0;; attempt++) {
        int rv = 0;
        if (mqttc_wait_connected(m, o->max_wait_s * 1000) != 0)
            return ERR_TIMEOUT;
        if (attempt > 0)
            *republished += (long long)(to - from);
        for (size_t i = from; i < to && rv == 0; i++)
            rv = mqttc_publish(m, msgs[i].topic, msgs[i].payload, msgs[i].len, o->qos);
        if (rv == 0 && o->qos > 0)
            rv = mqttc_flush(m, 10000);
        if (rv == 0)
            return 0;
        clock_sleep_ms(100);
    }
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    log_init(LOG_WARN, "aetheris-replay");
    FILE *in = fopen(o.file, "r");
    if (in == NULL) {
        fprintf(stderr, "aetheris-replay: cannot open %s\n", o.file);
        return 2;
    }
    char client_id[128];
    snprintf(client_id, sizeof client_id, "%s", o.client_id ? o.client_id : "aetheris-replay");
    if (o.client_id == NULL)
        snprintf(client_id, sizeof client_id, "aetheris-replay-%d", (int)getpid());
    struct mqttc_options mo = {
        .url = o.url, .client_id = client_id, .clean_session = true, .keepalive_s = 30};
    struct mqttc *m = mqttc_new(&mo);
    if (m == NULL || mqttc_wait_connected(m, o.max_wait_s * 1000) != 0) {
        fprintf(stderr, "aetheris-replay: broker %s unreachable\n", o.url);
        mqttc_free(m, 0);
        fclose(in);
        return 1;
    }
    struct message msgs[REPLAY_FLUSH_EVERY];
    size_t nmsg = 0;
    char line[REPLAY_LINE_MAX], first_id[32], acct[128];
    long long rows = 0, events = 0, messages = 0, bad = 0, republished = 0;
    int64_t t0 = clock_mono_ns(), last_progress = t0;
    struct buf b;
    buf_init(&b, REPLAY_MESSAGE_MAX);
    int in_batch = 0, rc = 0;
    bool header = true, eof = false;
    while (!eof) {
        eof = fgets(line, sizeof line, in) == NULL || (o.limit >= 0 && rows >= o.limit);
        if (!eof && header) {
            header = false;
            if (strncmp(line, "TransactionID,", 14) == 0)
                continue;
        }
        if (!eof) {
            rows++;
            if (strchr(line, '\n') == NULL && !feof(in)) { /* over-long line: skip the rest */
                int ch;
                while ((ch = fgetc(in)) != '\n' && ch != EOF)
                    ;
                bad++;
                continue;
            }
            size_t mark = b.len;
            if (o.batch > 1)
                buf_append(&b, in_batch == 0 ? "[" : ",", 1);
            char first[32], a[128];
            if (!row_json(line, &b, first, sizeof first, a, sizeof a)) {
                b.len = mark;
                bad++;
                continue;
            }
            if (in_batch == 0) {
                memcpy(first_id, first, sizeof first_id);
                memcpy(acct, a, sizeof acct);
            }
            in_batch++;
            events++;
            if (o.rate > 0) { /* fixed schedule: event k is due at t0 + k/rate */
                int64_t due = t0 + (int64_t)((double)(events - 1) * 1e9 / o.rate);
                int64_t now = clock_mono_ns();
                if (due > now)
                    clock_sleep_ms((due - now) / 1000000);
            }
        }
        if (in_batch > 0 && (in_batch == o.batch || eof)) {
            if (o.batch > 1) {
                buf_append(&b, "]", 1);
                snprintf(msgs[nmsg].topic, sizeof msgs[nmsg].topic, "%s/batch/%s", o.prefix,
                         first_id);
            } else {
                snprintf(msgs[nmsg].topic, sizeof msgs[nmsg].topic, "%s/%s/%s", o.prefix, acct,
                         first_id);
            }
            msgs[nmsg].len = b.len;
            msgs[nmsg].payload = buf_take(&b);
            nmsg++;
            messages++;
            in_batch = 0;
        }
        if (nmsg == REPLAY_FLUSH_EVERY || (eof && nmsg > 0)) {
            rc = publish_span(m, &o, msgs, 0, nmsg, &republished);
            for (size_t i = 0; i < nmsg; i++)
                free(msgs[i].payload);
            nmsg = 0;
            if (rc != 0)
                break;
        }
        int64_t now = clock_mono_ns();
        if (o.progress && now - last_progress >= 1000000000LL) {
            fprintf(stderr, "replay: %lld rows, %lld events, %.0f events/s\n", rows, events,
                    (double)events / ((double)(now - t0) / 1e9));
            last_progress = now;
        }
    }
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    if (!o.quiet)
        printf("{\"rows\":%lld,\"published_events\":%lld,\"messages\":%lld,\"republished\":%lld,"
               "\"bad_rows\":%lld,\"seconds\":%.3f,\"events_per_s\":%.1f}\n",
               rows, events, messages, republished, bad, secs, secs > 0 ? events / secs : 0);
    buf_cleanup(&b);
    mqttc_free(m, 5000);
    fclose(in);
    if (rc != 0) {
        fprintf(stderr, "aetheris-replay: broker unreachable for %d s; gave up\n", o.max_wait_s);
        return 1;
    }
    return 0;
}
