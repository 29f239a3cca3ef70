/* Metrics: counters under concurrent increments, quantile estimates (exact interpolation inside a
 * bucket, sanity against a known distribution, +Inf, empty), the JSON snapshot's numbers, and the
 * Prometheus text: a small exposition-format checker verifies one HELP and one TYPE per family
 * before its samples, contiguous families, valid names, labels and values, cumulative buckets with
 * increasing le ending in +Inf, and _count equal to the +Inf bucket. */
#include "metrics.h"
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "err.h"
#include "tap.h"

#define NTHREADS 8
#define PER_THREAD 100000
#define OBS_PER_THREAD 1000
#define MAX_FAMILIES 64

/* ------------------------------------------------------------------------------------------ */
/* Prometheus text checker                                                                     */

struct family {
    char name[128];
    char type[16];
    int helps, types, samples;
    int closed; /* another family's samples came after this one's */
    /* histogram state */
    double last_le;
    double last_cum;
    int saw_inf;
    double inf_value;
    double count;
    int has_count, has_sum;
    double sum;
    int series_ok; /* label sets whose buckets, _sum and _count were consistent */
};

struct checker {
    struct family fam[MAX_FAMILIES];
    int nfam;
    int current; /* family of the previous sample, -1 before the first */
    int errors;
    char first_error[256];
};

static void fail(struct checker *c, const char *what, const char *line)
{
    if (c->errors++ == 0)
        snprintf(c->first_error, sizeof c->first_error, "%s: %.200s", what, line);
}

static int find_family(struct checker *c, const char *name)
{
    for (int i = 0; i < c->nfam; i++)
        if (strcmp(c->fam[i].name, name) == 0)
            return i;
    return -1;
}

static int get_family(struct checker *c, const char *name)
{
    int i = find_family(c, name);
    if (i >= 0 || c->nfam == MAX_FAMILIES)
        return i;
    i = c->nfam++;
    memset(&c->fam[i], 0, sizeof c->fam[i]);
    snprintf(c->fam[i].name, sizeof c->fam[i].name, "%s", name);
    c->fam[i].last_le = -INFINITY;
    return i;
}

static int valid_name(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Parses `{k="v",...}`; returns the byte after '}' or NULL. Copies the value of `le` if present. */
static const char *parse_labels(const char *p, char *le, size_t lelen)
{
    le[0] = '\0';
    if (*p++ != '{')
        return NULL;
    while (*p != '}') {
        const char *k = p;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (p == k || !valid_name(k, (size_t)(p - k)) || p[0] != '=' || p[1] != '"')
            return NULL;
        int is_le = p - k == 2 && strncmp(k, "le", 2) == 0;
        p += 2;
        const char *v = p;
        while (*p && *p != '"') {
            if (*p == '\\' && p[1])
                p++;
            p++;
        }
        if (*p != '"')
            return NULL;
        if (is_le)
            snprintf(le, lelen, "%.*s", (int)(p - v), v);
        p++;
        if (*p == ',')
            p++;
        else if (*p != '}')
            return NULL;
    }
    return p + 1;
}

static void check_sample(struct checker *c, const char *line)
{
    const char *p = line;
    while (*p && *p != '{' && *p != ' ')
        p++;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(p - line), line);
    if (!valid_name(line, (size_t)(p - line))) {
        fail(c, "invalid metric name", line);
        return;
    }
    char le[32] = "";
    if (*p == '{') {
        p = parse_labels(p, le, sizeof le);
        if (p == NULL) {
            fail(c, "bad label set", line);
            return;
        }
    }
    if (*p != ' ') {
        fail(c, "no space before the value", line);
        return;
    }
    char *end;
    double value = strtod(p + 1, &end);
    if (end == p + 1 || *end != '\0' || !isfinite(value) || value < 0) {
        fail(c, "bad value", line);
        return;
    }

    /* Which family: the name itself, or a histogram base for _bucket/_sum/_count. */
    int f = find_family(c, name);
    const char *suffix = NULL;
    if (f < 0) {
        static const char *const sfx[] = {"_bucket", "_sum", "_count"};
        for (int k = 0; k < 3 && f < 0; k++) {
            if (!ends_with(name, sfx[k]))
                continue;
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(strlen(name) - strlen(sfx[k])), name);
            f = find_family(c, base);
            suffix = sfx[k];
            if (f >= 0 && strcmp(c->fam[f].type, "histogram") != 0)
                f = -1;
        }
    }
    if (f < 0 || c->fam[f].types == 0) {
        fail(c, "sample before its # TYPE", line);
        return;
    }
    struct family *fa = &c->fam[f];
    if (fa->closed)
        fail(c, "family samples are not contiguous", line);
    if (c->current >= 0 && c->current != f)
        c->fam[c->current].closed = 1;
    c->current = f;
    fa->samples++;

    if (strcmp(fa->type, "counter") == 0 && !ends_with(name, "_total"))
        fail(c, "counter name without _total", line);
    if (suffix == NULL)
        return;
    if (strcmp(suffix, "_bucket") == 0 && fa->has_count) { /* the next label set begins */
        fa->last_le = -INFINITY;
        fa->last_cum = 0;
        fa->saw_inf = fa->has_sum = fa->has_count = 0;
    }
    if (strcmp(suffix, "_bucket") == 0) {
        if (le[0] == '\0') {
            fail(c, "bucket without le", line);
            return;
        }
        double bound = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, &end);
        if (isfinite(bound) && *end != '\0')
            fail(c, "unparsable le", line);
        if (fa->saw_inf || !(bound > fa->last_le))
            fail(c, "le not increasing", line);
        if (value < fa->last_cum)
            fail(c, "buckets not cumulative", line);
        fa->last_le = bound;
        fa->last_cum = value;
        if (isinf(bound)) {
            fa->saw_inf = 1;
            fa->inf_value = value;
        }
    } else if (strcmp(suffix, "_sum") == 0) {
        fa->has_sum = 1;
        fa->sum = value;
    } else {
        fa->has_count = 1;
        fa->count = value;
        fa->series_ok += fa->saw_inf && fa->has_sum && value == fa->inf_value;
    }
}

static void check_comment(struct checker *c, const char *line)
{
    char kind[8], name[128];
    int off = 0;
    if (sscanf(line, "# %7s %127s %n", kind, name, &off) != 2 || off == 0) {
        fail(c, "malformed comment", line);
        return;
    }
    int f = get_family(c, name);
    if (f < 0) {
        fail(c, "too many families", line);
        return;
    }
    struct family *fa = &c->fam[f];
    if (fa->samples > 0)
        fail(c, "HELP/TYPE after samples", line);
    if (strcmp(kind, "HELP") == 0) {
        fa->helps++;
        if (line[off] == '\0')
            fail(c, "empty help", line);
    } else if (strcmp(kind, "TYPE") == 0) {
        fa->types++;
        snprintf(fa->type, sizeof fa->type, "%s", line + off);
        if (strcmp(fa->type, "counter") != 0 && strcmp(fa->type, "histogram") != 0 &&
            strcmp(fa->type, "gauge") != 0)
            fail(c, "unexpected type", line);
    } else {
        fail(c, "unknown comment kind", line);
    }
}

static void check_exposition(struct checker *c, const char *text)
{
    memset(c, 0, sizeof *c);
    c->current = -1;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (nl == NULL) {
            fail(c, "last line not newline-terminated", p);
            break;
        }
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
        if (line[0] == '#')
            check_comment(c, line);
        else if (line[0] == '\0')
            fail(c, "empty line", line);
        else
            check_sample(c, line);
        p = nl + 1;
    }
}

/* ------------------------------------------------------------------------------------------ */

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++)
        metrics_inc(M_AGENT_BATCHES);
    for (int i = 0; i < OBS_PER_THREAD; i++)
        metrics_observe(H_EVENT_TO_DECISION, 0.003);
    return NULL;
}

/* True when one line of text equals want exactly. */
static int has_line(const char *text, const char *want)
{
    size_t n = strlen(want);
    const char *p = text;
    while (p && *p) {
        if (strncmp(p, want, n) == 0 && p[n] == '\n')
            return 1;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return 0;
}

static double line_value(const char *text, const char *prefix)
{
    const char *p = strstr(text, prefix);
    return p ? strtod(p + strlen(prefix), NULL) : -1;
}

int main(void)
{
    alarm(60);

    /* counters */
    is_int(metrics_get(M_EVENTS_INGESTED), 0, "counters start at zero");
    metrics_add(M_EVENTS_INGESTED, 41);
    metrics_inc(M_EVENTS_INGESTED);
    is_int(metrics_get(M_EVENTS_INGESTED), 42, "add and inc");
    metrics_add(M_DECISIONS_BLOCK, 7);
    metrics_add(M_INVALID_AMOUNT, 3);

    /* quantiles */
    is_near(metrics_quantile(H_WEBHOOK_ATTEMPT, 0.5), 0.0, 1e-12, "empty histogram: quantile 0");
    for (int i = 0; i < 100; i++)
        metrics_observe(H_EVENT_TO_DECISION, 0.003);
    /* all 100 in (0.0025, 0.005]: rank q*100 is q of the way through that bucket */
    is_near(metrics_quantile(H_EVENT_TO_DECISION, 0.5), 0.00375, 1e-9, "p50 interpolates");
    is_near(metrics_quantile(H_EVENT_TO_DECISION, 0.99), 0.004975, 1e-9, "p99 interpolates");

    /* 10000 values spread evenly over [0, 2): each estimate lies in the true value's bucket */
    for (int i = 0; i < 10000; i++)
        metrics_observe(H_AGENT_BATCH, 2.0 * i / 10000.0);
    double p50 = metrics_quantile(H_AGENT_BATCH, 0.5), p95 = metrics_quantile(H_AGENT_BATCH, 0.95),
           p99 = metrics_quantile(H_AGENT_BATCH, 0.99);
    ok(p50 >= 0.5 && p50 <= 1.0, "uniform p50 %.4f in the bucket of 1.0 (0.5, 1]", p50);
    ok(p95 > 1.0 && p95 <= 2.5, "uniform p95 %.4f in the bucket of 1.9 (1, 2.5]", p95);
    ok(p99 > 1.0 && p99 <= 2.5, "uniform p99 %.4f in the bucket of 1.98 (1, 2.5]", p99);
    ok(p50 <= p95 && p95 <= p99, "quantiles are monotonic");
    double p10 = metrics_quantile(H_AGENT_BATCH, 0.10);
    ok(p10 > 0.1 && p10 <= 0.25, "uniform p10 %.4f in the bucket of 0.2 (0.1, 0.25]", p10);

    /* past the last finite bound, and junk observations */
    for (int i = 0; i < 10; i++)
        metrics_observe(H_WEBHOOK_ATTEMPT, 100.0);
    is_near(metrics_quantile(H_WEBHOOK_ATTEMPT, 0.5), 30.0, 1e-12, "+Inf bucket: largest bound 30");
    metrics_observe(H_WEBHOOK_ATTEMPT, -1.0);
    metrics_observe(H_WEBHOOK_ATTEMPT, NAN);
    metrics_observe(H_WEBHOOK_ATTEMPT, INFINITY);

    /* concurrency */
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        pthread_create(&t[i], NULL, hammer, NULL);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    is_int(metrics_get(M_AGENT_BATCHES), (long long)NTHREADS * PER_THREAD,
           "%d threads x %d increments: no update lost", NTHREADS, PER_THREAD);
    const long long e2d_count = 100 + (long long)NTHREADS * OBS_PER_THREAD;

    /* gauges: the last value set, negative values included */
    is_int(metrics_gauge(G_WEBHOOK_OUTBOX), 0, "gauges start at zero");
    metrics_set(G_WEBHOOK_OUTBOX, 12);
    metrics_set(G_WEBHOOK_OUTBOX, 5);
    metrics_set(G_WEBHOOKS_DISABLED, 3);
    metrics_set(G_LAST_INGEST_MS, 1700000000123);
    is_int(metrics_gauge(G_WEBHOOK_OUTBOX), 5, "a gauge reports the last value set");

    /* JSON snapshot */
    json_t *root = metrics_json();
    json_t *gauges = json_object_get(root, "gauges");
    is_int(json_object_size(gauges), G__COUNT, "one JSON key per gauge");
    is_int(json_integer_value(json_object_get(gauges, "webhook_outbox_depth")), 5, "gauge in JSON");
    is_int(json_integer_value(json_object_get(gauges, "webhooks_disabled")), 3,
           "second gauge in JSON");
    is_int(json_integer_value(json_object_get(gauges, "last_event_ingested_ms")), 1700000000123,
           "a timestamp gauge is milliseconds in JSON");
    json_t *counters = json_object_get(root, "counters");
    json_t *lat = json_object_get(root, "latency_seconds");
    ok(json_is_object(counters) && json_is_object(lat), "JSON has counters and latency_seconds");
    is_int(json_object_size(counters), M__COUNT, "one JSON key per counter");
    is_int(json_object_size(lat), H__COUNT, "one JSON key per histogram");
    is_int(json_integer_value(json_object_get(counters, "ingested")), 42, "ingested = 42");
    is_int(json_integer_value(json_object_get(counters, "decisions_block")), 7,
           "decisions_block = 7");
    is_int(json_integer_value(json_object_get(counters, "invalid_amount")), 3, "invalid_amount");
    is_int(json_integer_value(json_object_get(counters, "agent_batches")),
           (long long)NTHREADS * PER_THREAD, "agent_batches");
    is_int(json_integer_value(json_object_get(counters, "duplicates")), 0, "untouched counter 0");
    json_t *e2d = json_object_get(lat, "event_to_decision");
    is_int(json_integer_value(json_object_get(e2d, "count")), e2d_count, "event_to_decision count");
    is_near(json_number_value(json_object_get(e2d, "p50")), 0.00375, 1e-9, "JSON p50");
    is_near(json_number_value(json_object_get(e2d, "p95")), 0.004875, 1e-9, "JSON p95");
    is_near(json_number_value(json_object_get(e2d, "p99")), 0.004975, 1e-9, "JSON p99");
    json_t *http = json_object_get(lat, "webhook_attempt");
    is_int(json_integer_value(json_object_get(http, "count")), 13,
           "negative, NaN and infinite observations are still counted");
    json_decref(root);

    /* Prometheus text */
    struct buf b;
    buf_init(&b, 1 << 20);
    is_int(metrics_prometheus(&b), 0, "prometheus renders");
    struct checker c;
    check_exposition(&c, b.data);
    is_int(c.errors, 0, "exposition is well-formed%s%s", c.errors ? ": " : "", c.first_error);
    int once = 1;
    for (int i = 0; i < c.nfam; i++)
        once &= c.fam[i].helps == 1 && c.fam[i].types == 1 && c.fam[i].samples > 0;
    ok(once, "every family has exactly one HELP, one TYPE and samples");
    ok(strstr(b.data, "\naetheris_last_event_ingested_timestamp_seconds 1700000000.123\n") != NULL,
       "and seconds with milliseconds in Prometheus");
    ok(find_family(&c, "aetheris_decisions_total") >= 0 &&
           c.fam[find_family(&c, "aetheris_decisions_total")].samples == 3,
       "labelled counters share one family (3 decision actions)");
    int series_ok = 0, shaped = 1;
    for (int i = 0; i < c.nfam; i++) {
        struct family *fa = &c.fam[i];
        if (strcmp(fa->type, "histogram") != 0)
            continue;
        series_ok += fa->series_ok;
        shaped &= ends_with(fa->name, "_seconds") && fa->samples == fa->series_ok * (19 + 2);
    }
    is_int(series_ok, H__COUNT,
           "each histogram series: 19 buckets to +Inf, _sum, _count = +Inf bucket");
    ok(shaped, "histogram families are named _seconds and hold only whole series");
    int vote = find_family(&c, "aetheris_agent_vote_seconds");
    ok(vote >= 0 && c.fam[vote].series_ok == 3, "labelled histograms share one family (3 roles)");
    ok(has_line(b.data, "aetheris_decisions_total{action=\"BLOCK\"} 7"), "labelled sample value");
    ok(has_line(b.data, "aetheris_events_ingested_total 42"), "plain sample value");
    ok(has_line(b.data, "aetheris_webhook_outbox_depth 5"), "gauge sample value");
    ok(find_family(&c, "aetheris_webhook_outbox_depth") >= 0 &&
           strcmp(c.fam[find_family(&c, "aetheris_webhook_outbox_depth")].type, "gauge") == 0,
       "gauge family typed gauge");
    ok(has_line(b.data, "aetheris_event_to_decision_seconds_bucket{le=\"0.0025\"} 0"),
       "bucket below the observations is 0");
    char want[128];
    snprintf(want, sizeof want, "aetheris_event_to_decision_seconds_bucket{le=\"0.005\"} %lld",
             e2d_count);
    ok(has_line(b.data, want), "bucket holding the observations has all of them");
    is_near(line_value(b.data, "aetheris_event_to_decision_seconds_sum "), 0.003 * e2d_count, 1e-6,
            "histogram sum in seconds");
    is_near(line_value(b.data, "aetheris_webhook_attempt_seconds_sum "), 1000.0 + 3600.0, 1e-9,
            "sum: negative/NaN count as 0, infinity is clamped to an hour");
    ok(has_line(b.data, "aetheris_webhook_attempt_seconds_bucket{le=\"5e-05\"} 2"),
       "negative and NaN land in the first bucket");
    buf_cleanup(&b);

    buf_init(&b, 64);
    is_int(metrics_prometheus(&b), ERR_FULL, "a too-small buffer gives ERR_FULL");
    buf_cleanup(&b);
    return done_testing();
}
