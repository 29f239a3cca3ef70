/* Metrics registry (metrics.h). Counters and gauges are relaxed atomics; a histogram keeps one
 * atomic count per fixed bucket plus the sum in nanoseconds (an atomic integer, since C11 has no
 * atomic double add); its count is the sum of its buckets, so a render never shows a count that
 * disagrees with the +Inf bucket. Quantiles are estimated by linear interpolation inside the
 * bucket that holds the rank, the way Prometheus's histogram_quantile does, so /v1/metrics and
 * Grafana agree. Entries of the tables that share a Prometheus name are one family: HELP and
 * TYPE once, then one sample (or bucket set) per label set. Process metrics are read from
 * /proc/self at render time. */
#include "metrics.h"
#include <dirent.h>
#include <stdbool.h>
#include <stdlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "err.h"

/* Latency buckets in seconds: 50 us (an in-process stage) to 30 s (a stalled dependency). */
static const double bucket_bounds[METRICS_NBUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30};
/* Observations are clamped to an hour so the nanosecond sum stays far from overflow (2^64 ns is
 * five million hour-long observations); anything past 30 s lands in +Inf either way. */
#define MAX_OBSERVATION_S 3600.0

struct metric_def {
    const char *name, *labels, *json, *help;
};

#define METRIC_DEF(e, n, l, j, h) {n, l, j, h},
static const struct metric_def counter_defs[M__COUNT] = {METRIC_COUNTERS(METRIC_DEF)};
static const struct metric_def histogram_defs[H__COUNT] = {METRIC_HISTOGRAMS(METRIC_DEF)};
static const struct metric_def gauge_defs[G__COUNT] = {METRIC_GAUGES(METRIC_DEF)};
#undef METRIC_DEF

static _Atomic uint64_t counters[M__COUNT];
static _Atomic int64_t gauges[G__COUNT];
static struct metrics_hist histograms[H__COUNT];

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

/* ------------------------------------------------------------------------------------------ */
/* Histograms                                                                                   */

void metrics_hist_observe(struct metrics_hist *h, double seconds)
{
    if (!(seconds >= 0)) /* negative or NaN: a clock step, counted as instant */
        seconds = 0;
    if (seconds > MAX_OBSERVATION_S)
        seconds = MAX_OBSERVATION_S;
    size_t b = 0;
    while (b < METRICS_NBUCKETS && seconds > bucket_bounds[b])
        b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, (uint64_t)llround(seconds * 1e9), memory_order_relaxed);
}

void metrics_hist_add(struct metrics_hist *acc, const struct metrics_hist *h)
{
    for (size_t b = 0; b <= METRICS_NBUCKETS; b++)
        atomic_fetch_add_explicit(&acc->buckets[b],
                                  atomic_load_explicit(&h->buckets[b], memory_order_relaxed),
                                  memory_order_relaxed);
    atomic_fetch_add_explicit(&acc->sum_ns, atomic_load_explicit(&h->sum_ns, memory_order_relaxed),
                              memory_order_relaxed);
}

/* A consistent-enough copy of the bucket counts; returns their total. */
static uint64_t hist_snapshot(const struct metrics_hist *h, uint64_t counts[METRICS_NBUCKETS + 1])
{
    uint64_t total = 0;
    for (size_t b = 0; b <= METRICS_NBUCKETS; b++) {
        counts[b] = atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
        total += counts[b];
    }
    return total;
}

static double hist_quantile(const struct metrics_hist *h, double q)
{
    uint64_t counts[METRICS_NBUCKETS + 1];
    uint64_t total = hist_snapshot(h, counts);
    if (total == 0)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (size_t b = 0; b <= METRICS_NBUCKETS; b++) {
        if (seen + (double)counts[b] >= rank && counts[b] > 0) {
            if (b == METRICS_NBUCKETS) /* +Inf bucket: report the largest finite bound */
                return bucket_bounds[METRICS_NBUCKETS - 1];
            double lo = b == 0 ? 0 : bucket_bounds[b - 1];
            return lo + (bucket_bounds[b] - lo) * ((rank - seen) / (double)counts[b]);
        }
        seen += (double)counts[b];
    }
    return bucket_bounds[METRICS_NBUCKETS - 1];
}

json_t *metrics_hist_json(const struct metrics_hist *h)
{
    uint64_t counts[METRICS_NBUCKETS + 1];
    uint64_t n = hist_snapshot(h, counts);
    return json_pack("{s:I, s:f, s:f, s:f}", "count", (json_int_t)n, "p50", hist_quantile(h, 0.50),
                     "p95", hist_quantile(h, 0.95), "p99", hist_quantile(h, 0.99));
}

int metrics_hist_render(const struct metrics_hist *h, const char *name, const char *labels,
                        struct buf *out)
{
    uint64_t counts[METRICS_NBUCKETS + 1];
    hist_snapshot(h, counts);
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;
    int rv = 0;
    for (size_t b = 0; b <= METRICS_NBUCKETS && rv == 0; b++) {
        cumulative += counts[b];
        if (b < METRICS_NBUCKETS)
            rv = buf_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
                            bucket_bounds[b], (unsigned long long)cumulative);
        else
            rv = buf_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
                            (unsigned long long)cumulative);
    }
    const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
    if (rv == 0)
        rv = buf_printf(out, "%s_sum%s%s%s %.9f\n%s_count%s%s%s %llu\n", name, open, labels, close,
                        (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9, name,
                        open, labels, close, (unsigned long long)cumulative);
    return rv;
}

void metrics_observe(enum metric_histogram h, double seconds)
{
    metrics_hist_observe(&histograms[h], seconds);
}

double metrics_quantile(enum metric_histogram h, double q)
{
    return hist_quantile(&histograms[h], q);
}

/* ------------------------------------------------------------------------------------------ */
/* Rendering                                                                                    */

json_t *metrics_json(void)
{
    json_t *c = json_object();
    for (int i = 0; i < M__COUNT; i++)
        json_object_set_new(c, counter_defs[i].json, json_integer((json_int_t)metrics_get(i)));
    json_t *g = json_object();
    for (int i = 0; i < G__COUNT; i++)
        json_object_set_new(g, gauge_defs[i].json, json_integer((json_int_t)metrics_gauge(i)));
    json_t *lat = json_object();
    for (int i = 0; i < H__COUNT; i++)
        json_object_set_new(lat, histogram_defs[i].json, metrics_hist_json(&histograms[i]));
    return json_pack("{s:o, s:o, s:o}", "counters", c, "gauges", g, "latency_seconds", lat);
}

/* HELP and TYPE for entry i of a table when it opens a family (its name differs from the
 * previous entry's). suffix: "_seconds" for histograms. */
static int family_head(const struct metric_def *defs, int i, const char *type, const char *suffix,
                       struct buf *out)
{
    if (i > 0 && strcmp(defs[i - 1].name, defs[i].name) == 0)
        return 0;
    return buf_printf(out, "# HELP %s%s %s\n# TYPE %s%s %s\n", defs[i].name, suffix, defs[i].help,
                      defs[i].name, suffix, type);
}

/* A gauge holding milliseconds since the epoch, rendered in seconds (metrics.h). */
static bool is_timestamp(const struct metric_def *d)
{
    static const char suffix[] = "_timestamp_seconds";
    size_t n = strlen(d->name);
    return n >= sizeof suffix - 1 && strcmp(d->name + n - (sizeof suffix - 1), suffix) == 0;
}

/* One sample line: name{labels} value. */
static int sample(struct buf *out, const struct metric_def *d, long long value)
{
    return buf_printf(out, "%s%s%s%s %lld\n", d->name, d->labels[0] ? "{" : "", d->labels,
                      d->labels[0] ? "}" : "", value);
}

/* The fields of /proc/self/stat after the command name: utime (14), stime (15), starttime (22),
 * vsize (23) and rss pages (24), counted from 1. false when unreadable. */
static bool proc_stat(double *cpu_s, double *start_s, double *vsize, double *rss)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long utime, stime, start, vs;
    long long rs;
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d "
                            "%*d %*d %*d %llu %llu %lld",
                            &utime, &stime, &start, &vs, &rs) != 5)
        return false;
    double hz = (double)sysconf(_SC_CLK_TCK);
    double boot = 0;
    f = fopen("/proc/stat", "r");
    while (f && fgets(buf, sizeof buf, f))
        if (strncmp(buf, "btime ", 6) == 0)
            boot = strtod(buf + 6, NULL);
    if (f)
        fclose(f);
    *cpu_s = (double)(utime + stime) / hz;
    *start_s = boot + (double)start / hz;
    *vsize = (double)vs;
    *rss = (double)rs * (double)sysconf(_SC_PAGESIZE);
    return true;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static int process_metrics(struct buf *out)
{
    double cpu, start, vsize, rss;
    if (!proc_stat(&cpu, &start, &vsize, &rss))
        return 0; /* not Linux: no process metrics */
    struct rlimit rl;
    double max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (double)rl.rlim_cur : -1;
    return buf_printf(
        out,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %.0f\n"
        "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
        "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %.0f\n"
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\nprocess_open_fds %d\n"
        "# HELP process_max_fds Maximum number of open file descriptors.\n"
        "# TYPE process_max_fds gauge\nprocess_max_fds %.0f\n"
        "# HELP process_start_time_seconds Start time of the process since unix epoch in "
        "seconds.\n"
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n",
        cpu, rss, vsize, open_fds(), max_fds, start);
}

int metrics_prometheus(struct buf *out)
{
    int rv = 0;
    for (int i = 0; i < M__COUNT && rv == 0; i++) {
        rv = family_head(counter_defs, i, "counter", "", out);
        if (rv == 0)
            rv = sample(out, &counter_defs[i], (long long)metrics_get(i));
    }
    for (int i = 0; i < G__COUNT && rv == 0; i++) {
        rv = family_head(gauge_defs, i, "gauge", "", out);
        if (rv == 0 && is_timestamp(&gauge_defs[i]))
            rv = buf_printf(out, "%s %.3f\n", gauge_defs[i].name, (double)metrics_gauge(i) / 1000);
        else if (rv == 0)
            rv = sample(out, &gauge_defs[i], (long long)metrics_gauge(i));
    }
    for (int i = 0; i < H__COUNT && rv == 0; i++) {
        char name[128];
        snprintf(name, sizeof name, "%s_seconds", histogram_defs[i].name);
        rv = family_head(histogram_defs, i, "histogram", "_seconds", out);
        if (rv == 0)
            rv = metrics_hist_render(&histograms[i], name, histogram_defs[i].labels, out);
    }
    return rv == 0 ? process_metrics(out) : rv;
}
