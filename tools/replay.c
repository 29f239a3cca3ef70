/* aetheris-replay: publishes a transactions CSV in the original Aetheris format
 *   TransactionID,AccountOriginID,AccountDestinationID,TransactionTypeID,Amount,TransactionDate,
 *   BranchID,Description
 * (LF line ends, unquoted fields) to MQTT as the daemon's input events (DESIGN.md 3.1): one JSON
 * object per message on {prefix}/{accountOrigin}/{transactionId}, or with --batch N a JSON array
 * of up to N events on {prefix}/batch/{first transactionId}. With --partitions P (a cluster of
 * instances, README "Running several instances") the topics become
 * {prefix}/p/{partition}/{accountOrigin}/{transactionId} and {prefix}/p/{partition}/batch/{id},
 * the partition being partition_of(accountOrigin, P) (shard.h), and a batch holds consecutive
 * rows of one partition only (it closes early when the next row's partition differs).
 *
 * Rows are validated before anything is published: 8 fields, digit-only ids (accounts at most 64
 * characters, the daemon's limit), a plain decimal amount, a date of at most 40 bytes, valid
 * UTF-8 text. A bad row is counted, reported on stderr (the first few) and skipped. An empty
 * optional field (destination, type, branch) is left out of the event. Numbers are copied as text,
 * never through a double, so every amount arrives exactly as written; the only rewriting is
 * dropping redundant leading zeros (and completing "5." or ".5"), which JSON's number grammar
 * requires. A transactionId above INT64_MAX goes out as a digit string, which the daemon accepts.
 *
 * Pacing (--rate) follows a fixed schedule on CLOCK_MONOTONIC: event k is due at t0 + k/rate and
 * the tool sleeps until that absolute time, so per-message overheads never accumulate into drift
 * and a stall (a flush, a broker restart) is caught up afterwards.
 *
 * QoS 1 is at-least-once: messages are kept from one acknowledgement checkpoint to the next
 * (every REPLAY_FLUSH_EVERY messages and at the end, mqttc_flush). If a publish finds the broker
 * gone or a flush cannot vouch for delivery, the tool waits for the reconnection and republishes
 * every message since the last good checkpoint; the daemon drops the duplicates. It gives up when
 * no checkpoint succeeds for --max-wait-s.
 *
 * Output: one JSON summary line on stdout; --progress adds a line per second on stderr.
 * Exit: 0 done, 1 broker unreachable or unacknowledging past --max-wait-s, 2 usage or input
 * error. */
#include "fmacros.h"
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "clock.h"
#include "csvrow.h"
#include "err.h"
#include "log.h"
#include "mqttc.h"
#include "shard.h"
#include "xmalloc.h"

/* QoS 1: messages between acknowledgement checkpoints. */
#define REPLAY_FLUSH_EVERY 256
/* The daemon's default mqtt_max_batch. */
#define REPLAY_BATCH_MAX 1000
/* A batch closes early past this size: half the daemon's default 1 MiB payload cap. */
#define REPLAY_SOFT_PAYLOAD 524288
/* The soft size plus one row escaped at its worst (6 bytes per control character). */
#define REPLAY_PAYLOAD_MAX (REPLAY_SOFT_PAYLOAD + 8 * CSV_LINE_MAX)
/* Keeps every topic inside struct message's buffer. */
#define REPLAY_PREFIX_MAX 128
/* One checkpoint; a broker that does not acknowledge is retried until --max-wait-s. */
#define REPLAY_FLUSH_TIMEOUT_MS 10000
/* Bad rows described on stderr; the rest are only counted. */
#define REPLAY_BAD_REPORTED 10
/* Between a failed checkpoint and the next attempt. */
#define REPLAY_RETRY_PAUSE_MS 100

struct opts {
    const char *url, *file, *prefix, *client_id;
    double rate;
    int qos, batch, max_wait_s;
    int partitions;  /* 0 = the un-partitioned topics */
    long long limit; /* -1 = all rows */
    bool progress, quiet;
};

struct message {
    char topic[REPLAY_PREFIX_MAX + 3 * 32 + CSV_ACCOUNT_MAX];
    char *payload;
    size_t len;
    int events; /* events in the payload */
};

struct stats {
    long long rows, events, messages, republished, bad;
    long long acked; /* events in messages published (and, for QoS 1, acknowledged) */
};

/* ---------------------------------------------------------------- options */

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: aetheris-replay [options]\n"
        "Publishes a transactions CSV (original Aetheris format, with or without its header\n"
        "line) to MQTT as aetherisd input events.\n\n"
        "  --url URL          broker (default tcp://127.0.0.1:1883, env AETHERIS_MQTT_URL)\n"
        "  --file PATH        CSV file (default data/transactions.csv)\n"
        "  --rate N           events per second on a fixed schedule (default 0 = as fast as\n"
        "                     possible)\n"
        "  --qos 0|1          publish QoS (default 1: at-least-once, republishing after a\n"
        "                     broker restart everything not yet acknowledged)\n"
        "  --batch N          events per message as a JSON array on <prefix>/batch/<first id>,\n"
        "                     1..1000 (default 1: one object per message on\n"
        "                     <prefix>/<accountOrigin>/<transactionId>)\n"
        "  --limit N          read at most N data rows (default all)\n"
        "  --topic-prefix P   topic prefix (default aetheris/transactions)\n"
        "  --partitions N     publish for a cluster of N partitions (the daemons'\n"
        "                     cluster_partitions): topics <prefix>/p/<partition>/..., a batch\n"
        "                     holds one partition's rows (default 0: un-partitioned topics)\n"
        "  --client-id ID     MQTT client id (default aetheris-replay-<pid>)\n"
        "  --max-wait-s N     give up after N s without the broker or its acknowledgements\n"
        "                     (default 60)\n"
        "  --progress         a progress line on stderr every second\n"
        "  --quiet            no bad-row reports and no summary line\n"
        "  --help             this help\n\n"
        "Prints one JSON summary line on stdout: rows, published_events, messages,\n"
        "republished, bad_rows, seconds, events_per_s.\n"
        "Exit status: 0 done, 1 broker unreachable past --max-wait-s, 2 usage or input error.\n");
}

/* Parses a whole decimal integer in [min, max] from optarg; false (message printed) otherwise. */
static bool opt_int(const char *name, const char *arg, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(arg, &end, 10);
    if (arg[0] == '\0' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "aetheris-replay: --%s must be an integer in %lld..%lld (got '%s')\n", name,
                min, max, arg);
        return false;
    }
    *out = v;
    return true;
}

/* Fills o from argv and the environment. 0, or ERR_INVAL after printing why (caller exits 2).
 * --help prints the usage and exits 0. */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option longs[] = {{"url", required_argument, NULL, 'u'},
                                          {"file", required_argument, NULL, 'f'},
                                          {"rate", required_argument, NULL, 'r'},
                                          {"qos", required_argument, NULL, 'q'},
                                          {"batch", required_argument, NULL, 'b'},
                                          {"limit", required_argument, NULL, 'l'},
                                          {"topic-prefix", required_argument, NULL, 'p'},
                                          {"partitions", required_argument, NULL, 'n'},
                                          {"client-id", required_argument, NULL, 'c'},
                                          {"max-wait-s", required_argument, NULL, 'w'},
                                          {"progress", no_argument, NULL, 'P'},
                                          {"quiet", no_argument, NULL, 'Q'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    const char *env = getenv("AETHERIS_MQTT_URL");
    memset(o, 0, sizeof *o);
    o->url = env && env[0] ? env : "tcp://127.0.0.1:1883";
    o->file = "data/transactions.csv";
    o->prefix = "aetheris/transactions";
    o->qos = 1;
    o->batch = 1;
    o->max_wait_s = 60;
    o->limit = -1;
    int c;
    long long v;
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
            errno = 0;
            o->rate = strtod(optarg, &end);
            if (optarg[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(o->rate) ||
                o->rate < 0) {
                fprintf(stderr, "aetheris-replay: --rate must be a number >= 0 (got '%s')\n",
                        optarg);
                return ERR_INVAL;
            }
            break;
        case 'q':
            if (!opt_int("qos", optarg, 0, 1, &v))
                return ERR_INVAL;
            o->qos = (int)v;
            break;
        case 'b':
            if (!opt_int("batch", optarg, 1, REPLAY_BATCH_MAX, &v))
                return ERR_INVAL;
            o->batch = (int)v;
            break;
        case 'l':
            if (!opt_int("limit", optarg, 0, LLONG_MAX, &v))
                return ERR_INVAL;
            o->limit = v;
            break;
        case 'n':
            if (!opt_int("partitions", optarg, 0, 4096, &v))
                return ERR_INVAL;
            o->partitions = (int)v;
            break;
        case 'w':
            if (!opt_int("max-wait-s", optarg, 1, 86400, &v))
                return ERR_INVAL;
            o->max_wait_s = (int)v;
            break;
        default:
            usage(stderr);
            return ERR_INVAL;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "aetheris-replay: unexpected argument '%s' (see --help)\n", argv[optind]);
        return ERR_INVAL;
    }
    size_t plen = strlen(o->prefix);
    if (plen == 0 || plen > REPLAY_PREFIX_MAX || strpbrk(o->prefix, "+#") != NULL ||
        o->prefix[plen - 1] == '/') {
        fprintf(stderr,
                "aetheris-replay: --topic-prefix must be 1..%d characters without '+', "
                "'#' or a trailing '/'\n",
                REPLAY_PREFIX_MAX);
        return ERR_INVAL;
    }
    return 0;
}

/* ---------------------------------------------------------------- publishing */

/* Publishes msgs[0..n) and, for QoS 1, waits for their acknowledgements. When the broker is gone
 * or a checkpoint cannot vouch for delivery, waits for the reconnection and publishes them all
 * again. Returns 0, or ERR_TIMEOUT when max_wait_s pass without a successful checkpoint. */
static int publish_span(struct mqttc *m, const struct opts *o, const struct message *msgs, size_t n,
                        struct stats *st)
{
    int64_t give_up = clock_mono_ms() + (int64_t)o->max_wait_s * 1000;
    for (int attempt = 0;; attempt++) {
        int64_t left = give_up - clock_mono_ms();
        if (left <= 0 || mqttc_wait_connected(m, (int)left) != 0)
            return ERR_TIMEOUT;
        if (attempt > 0)
            st->republished += (long long)n;
        int rv = 0;
        for (size_t i = 0; i < n && rv == 0; i++)
            rv = mqttc_publish(m, msgs[i].topic, msgs[i].payload, msgs[i].len, o->qos);
        if (rv == 0 && o->qos > 0)
            rv = mqttc_flush(m, REPLAY_FLUSH_TIMEOUT_MS);
        if (rv == 0) {
            for (size_t i = 0; i < n; i++)
                st->acked += msgs[i].events;
            return 0;
        }
        if (attempt == 0)
            log_warn("replay.retry",
                     "checkpoint failed (%s); republishing %zu messages after the "
                     "broker is back",
                     err_str(rv), n);
        clock_sleep_ms(REPLAY_RETRY_PAUSE_MS);
    }
}

/* Sleeps until CLOCK_MONOTONIC reaches due_ns (no-op when it already has). */
static void sleep_until_ns(int64_t due_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(due_ns / 1000000000LL),
                          .tv_nsec = (long)(due_ns % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void report_bad(const struct opts *o, const struct stats *st, long long lineno,
                       const char *why)
{
    if (o->quiet || st->bad > REPLAY_BAD_REPORTED)
        return;
    fprintf(stderr, "aetheris-replay: %s:%lld: bad row (%s), skipped\n", o->file, lineno, why);
    if (st->bad == REPLAY_BAD_REPORTED)
        fprintf(stderr, "aetheris-replay: further bad rows are only counted\n");
}

/* The message being filled: its first row's id and account, its partition, its events. */
struct pending {
    char first_id[32];
    char acct[CSV_ACCOUNT_MAX + 1];
    uint32_t part;
    int events;
};

/* Turns the pending rows in b into msg (topic by the options), and empties cur and b. */
static void close_message(const struct opts *o, struct pending *cur, struct buf *b,
                          struct message *msg, struct stats *st)
{
    char base[REPLAY_PREFIX_MAX + 48];
    if (o->partitions > 0)
        snprintf(base, sizeof base, "%s/p/%u", o->prefix, cur->part);
    else
        snprintf(base, sizeof base, "%s", o->prefix);
    if (o->batch > 1) {
        buf_append(b, "]", 1);
        snprintf(msg->topic, sizeof msg->topic, "%s/batch/%s", base, cur->first_id);
    } else {
        snprintf(msg->topic, sizeof msg->topic, "%s/%s/%s", base, cur->acct, cur->first_id);
    }
    msg->len = b->len;
    msg->payload = buf_take(b);
    msg->events = cur->events;
    st->messages++;
    cur->events = 0;
}

/* Publishes msgs[0..*n) (publish_span) and frees them; 0 or ERR_TIMEOUT. */
static int flush_messages(struct mqttc *m, const struct opts *o, struct message *msgs, size_t *n,
                          struct stats *st)
{
    int rc = publish_span(m, o, msgs, *n, st);
    for (size_t i = 0; i < *n; i++)
        free(msgs[i].payload);
    *n = 0;
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return 2;
    log_init(LOG_WARN, "aetheris-replay");
    FILE *in = fopen(o.file, "r");
    if (in == NULL) {
        fprintf(stderr, "aetheris-replay: cannot open %s: %s\n", o.file, strerror(errno));
        return 2;
    }
    char client_id[128];
    if (o.client_id != NULL)
        snprintf(client_id, sizeof client_id, "%s", o.client_id);
    else
        snprintf(client_id, sizeof client_id, "aetheris-replay-%ld", (long)getpid());
    struct mqttc_options mo = {
        .url = o.url, .client_id = client_id, .clean_session = true, .keepalive_s = 30};
    struct mqttc *m = mqttc_new(&mo);
    if (m == NULL || mqttc_wait_connected(m, o.max_wait_s * 1000) != 0) {
        fprintf(stderr, "aetheris-replay: broker %s unreachable for %d s\n", o.url, o.max_wait_s);
        mqttc_free(m, 0);
        fclose(in);
        return 1;
    }

    struct message *msgs = xcalloc(REPLAY_FLUSH_EVERY, sizeof *msgs);
    size_t nmsg = 0;
    char *line = xmalloc(CSV_LINE_MAX);
    struct pending cur = {.first_id = "", .acct = "", .part = 0, .events = 0};
    struct stats st = {0};
    long long lineno = 0, last_events = 0;
    int64_t t0 = clock_mono_ns(), last_progress = t0;
    struct buf b;
    buf_init(&b, REPLAY_PAYLOAD_MAX);
    int rc = 0;
    bool eof = false;
    while (!eof) {
        int got = (o.limit >= 0 && st.rows >= o.limit) ? 0 : csv_read_line(in, line, CSV_LINE_MAX);
        eof = got == 0;
        if (!eof) {
            lineno++;
            if (lineno == 1 && strncmp(line, "TransactionID,", 14) == 0)
                continue;
            if (line[0] == '\n' || (line[0] == '\r' && line[1] == '\n'))
                continue; /* blank lines are not rows */
            st.rows++;
            struct csv_row r;
            const char *why = got < 0 ? "line too long" : csv_parse_row(line, &r);
            if (why != NULL) {
                st.bad++;
                report_bad(&o, &st, lineno, why);
                continue;
            }
            uint32_t part = partition_of(r.origin, (uint32_t)o.partitions);
            if (cur.events > 0 && part != cur.part) /* a batch holds one partition's rows */
                close_message(&o, &cur, &b, &msgs[nmsg++], &st);
            if (nmsg == REPLAY_FLUSH_EVERY && (rc = flush_messages(m, &o, msgs, &nmsg, &st)) != 0)
                break;
            if (cur.events == 0) {
                snprintf(cur.first_id, sizeof cur.first_id, "%s", r.txid);
                snprintf(cur.acct, sizeof cur.acct, "%s", r.origin);
                cur.part = part;
            }
            if (o.batch > 1)
                buf_append(&b, cur.events == 0 ? "[" : ",", 1);
            csv_row_json(&r, &b);
            cur.events++;
            st.events++;
            if (o.rate > 0) /* fixed schedule: event k is due at t0 + k/rate */
                sleep_until_ns(t0 + (int64_t)((double)(st.events - 1) * 1e9 / o.rate));
        }
        bool full = cur.events == o.batch || b.len >= REPLAY_SOFT_PAYLOAD;
        if (cur.events > 0 && (full || eof))
            close_message(&o, &cur, &b, &msgs[nmsg++], &st);
        if ((nmsg == REPLAY_FLUSH_EVERY || (eof && nmsg > 0)) &&
            (rc = flush_messages(m, &o, msgs, &nmsg, &st)) != 0)
            break;
        int64_t now = clock_mono_ns();
        if (o.progress && (now - last_progress >= 1000000000LL || eof)) {
            double dt = (double)(now - last_progress) / 1e9;
            fprintf(stderr,
                    "replay: %lld rows, %lld events, %lld bad, %.0f events/s now, "
                    "%.0f events/s overall\n",
                    st.rows, st.events, st.bad, dt > 0 ? (double)(st.events - last_events) / dt : 0,
                    now > t0 ? (double)st.events / ((double)(now - t0) / 1e9) : 0);
            last_progress = now;
            last_events = st.events;
        }
    }
    double secs = (double)(clock_mono_ns() - t0) / 1e9;
    if (!o.quiet)
        printf("{\"rows\":%lld,\"published_events\":%lld,\"messages\":%lld,\"republished\":%lld,"
               "\"bad_rows\":%lld,\"seconds\":%.3f,\"events_per_s\":%.1f}\n",
               st.rows, st.acked, st.messages, st.republished, st.bad, secs,
               secs > 0 ? (double)st.events / secs : 0);
    fflush(stdout);
    for (size_t i = 0; i < nmsg; i++)
        free(msgs[i].payload);
    free(msgs);
    free(line);
    buf_cleanup(&b);
    mqttc_free(m, 5000);
    fclose(in);
    if (rc != 0) {
        fprintf(stderr, "aetheris-replay: no acknowledgement from %s for %d s; gave up\n", o.url,
                o.max_wait_s);
        return 1;
    }
    return 0;
}
