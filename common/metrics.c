/* Metrics registry (metrics.h). Counters are relaxed atomics; histograms keep one atomic count per
 * fixed bucket plus the sum in nanoseconds (an atomic integer, since C11 has no atomic double
 * add). Quantiles are estimated by linear interpolation inside the bucket that holds the rank, the
 * way Prometheus's histogram_quantile does, so /v1/metrics and Grafana agree. */
#include "metrics.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include "err.h"

/* Latency buckets in seconds: 50 us (an in-process stage) to 30 s (a stalled dependency). */
static const double bucket_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                       0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                       0.5,     1,      2.5,     5,      10,    30};
#define NBUCKETS (sizeof bucket_bounds / sizeof bucket_bounds[0])
/* Observations are clamped to an hour so the nanosecond sum stays far from overflow (2^64 ns is
 * five million hour-long observations); anything past 30 s lands in +Inf either way. */
#define MAX_OBSERVATION_S 3600.0

struct counter_def {
    const char *name, *labels, *json, *help;
};
struct histogram_def {
    const char *name, *json, *help;
};

#define METRIC_DEF_C(e, n, l, j, h) {n, l, j, h},
static const struct counter_def counter_defs[M__COUNT] = {METRIC_COUNTERS(METRIC_DEF_C)};
#undef METRIC_DEF_C
#define METRIC_DEF_H(e, n, j, h) {n, j, h},
static const struct histogram_def histogram_defs[H__COUNT] = {METRIC_HISTOGRAMS(METRIC_DEF_H)};
static const struct histogram_def gauge_defs[G__COUNT] = {METRIC_GAUGES(METRIC_DEF_H)};
#undef METRIC_DEF_H

static _Atomic uint64_t counters[M__COUNT];
static _Atomic int64_t gauges[G__COUNT];

struct histogram {
    _Atomic uint64_t buckets[NBUCKETS + 1]; /* last = +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
};
static struct histogram histograms[H__COUNT];

void metrics_add(enum metric_counter c, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[c], n, memory_order_relaxed);
}

uint64_t metrics_get(enum metric_counter c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

void metrics_set(enum metric_gauge g, int64_t value)
{
    atomic_store_explicit(&gauges[g], value, memory_order_relaxed);
}

int64_t metrics_gauge(enum metric_gauge g)
{
    return atomic_load_explicit(&gauges[g], memory_order_relaxed);
}

void metrics_observe(enum metric_histogram h, double seconds)
{
    if (!(seconds >= 0)) /* negative or NaN: a clock step, counted as instant */
        seconds = 0;
    if (seconds > MAX_OBSERVATION_S)
        seconds = MAX_OBSERVATION_S;
    size_t b = 0;
    while (b < NBUCKETS && seconds > bucket_bounds[b])
        b++;
    struct histogram *hg = &histograms[h];
    atomic_fetch_add_explicit(&hg->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hg->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&hg->sum_ns, (uint64_t)llround(seconds * 1e9), memory_order_relaxed);
}

double metrics_quantile(enum metric_histogram h, double q)
{
    uint64_t counts[NBUCKETS + 1], total = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        counts[b] = atomic_load_explicit(&histograms[h].buckets[b], memory_order_relaxed);
        total += counts[b];
    }
    if (total == 0)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (size_t b = 0; b <= NBUCKETS; b++) {
        if (seen + (double)counts[b] >= rank && counts[b] > 0) {
            if (b == NBUCKETS) /* +Inf bucket: report the largest finite bound */
                return bucket_bounds[NBUCKETS - 1];
            double lo = b == 0 ? 0 : bucket_bounds[b - 1];
            return lo + (bucket_bounds[b] - lo) * ((rank - seen) / (double)counts[b]);
        }
        seen += (double)counts[b];
    }
    return bucket_bounds[NBUCKETS - 1];
}

json_t *metrics_json(void)
{
    json_t *c = json_object();
    for (int i = 0; i < M__COUNT; i++)
        json_object_set_new(c, counter_defs[i].json, json_integer((json_int_t)metrics_get(i)));
    json_t *lat = json_object();
    for (int i = 0; i < H__COUNT; i++) {
        uint64_t n = atomic_load_explicit(&histograms[i].count, memory_order_relaxed);
        json_object_set_new(lat, histogram_defs[i].json,
                            json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)n, "p50",
                                      metrics_quantile(i, 0.50), "p95", metrics_quantile(i, 0.95),
                                      "p99", metrics_quantile(i, 0.99)));
    }
    json_t *g = json_object();
    for (int i = 0; i < G__COUNT; i++)
        json_object_set_new(g, gauge_defs[i].json, json_integer((json_int_t)metrics_gauge(i)));
    return json_pack("{s:o, s:o, s:o}", "counters", c, "gauges", g, "latency_seconds", lat);
}

int metrics_prometheus(struct buf *out)
{
    int rv = 0;
    for (int i = 0; i < M__COUNT && rv == 0; i++) {
        const struct counter_def *d = &counter_defs[i];
        if (i == 0 || strcmp(counter_defs[i - 1].name, d->name) != 0)
            rv = buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", d->name, d->help, d->name);
        if (rv == 0)
            rv = buf_printf(out, "%s%s%s%s %llu\n", d->name, d->labels[0] ? "{" : "", d->labels,
                            d->labels[0] ? "}" : "", (unsigned long long)metrics_get(i));
    }
    for (int i = 0; i < G__COUNT && rv == 0; i++)
        rv = buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", gauge_defs[i].name,
                        gauge_defs[i].help, gauge_defs[i].name, gauge_defs[i].name,
                        (long long)metrics_gauge(i));
    for (int i = 0; i < H__COUNT && rv == 0; i++) {
        const struct histogram_def *d = &histogram_defs[i];
        const struct histogram *hg = &histograms[i];
        rv = buf_printf(out, "# HELP %s_seconds %s\n# TYPE %s_seconds histogram\n", d->name,
                        d->help, d->name);
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= NBUCKETS && rv == 0; b++) {
            cumulative += atomic_load_explicit(&hg->buckets[b], memory_order_relaxed);
            if (b < NBUCKETS)
                rv = buf_printf(out, "%s_seconds_bucket{le=\"%g\"} %llu\n", d->name,
                                bucket_bounds[b], (unsigned long long)cumulative);
            else
                rv = buf_printf(out, "%s_seconds_bucket{le=\"+Inf\"} %llu\n", d->name,
                                (unsigned long long)cumulative);
        }
        if (rv == 0)
            rv = buf_printf(out, "%s_seconds_sum %.9f\n%s_seconds_count %llu\n", d->name,
                            (double)atomic_load_explicit(&hg->sum_ns, memory_order_relaxed) / 1e9,
                            d->name, (unsigned long long)cumulative);
    }
    return rv;
}
