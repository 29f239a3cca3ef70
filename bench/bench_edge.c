/* Edge scoring benchmark: ns per event through edge_shard_score() for a given number of accounts,
 * after a warm-up that fills every account's window, and the heap bytes per account measured as
 * the RSS growth while the accounts are created. Prints one JSON object. The load generator costs
 * a few instructions per event (xorshift, a multiply-shift to pick the account, a table of 4096
 * amounts in whole cents), so the figure is the scoring, not the generator.
 * Usage: bench_edge [accounts (default 1000)] [events (default 5000000)] [window (default 100)] */
#include "fmacros.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "clock.h"
#include "edge.h"

/* Resident set size in bytes from /proc/self/statm (0 if unavailable). */
static long long rss_bytes(void)
{
    long long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%lld %lld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * 4096;
}

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static long long parse_arg(int argc, char **argv, int i, long long def)
{
    if (argc <= i)
        return def;
    char *end = NULL;
    long long v = strtoll(argv[i], &end, 10);
    if (end == argv[i] || *end != '\0' || v <= 0) {
        fprintf(stderr, "bench_edge: argument %d must be a positive integer\n", i);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long long accounts = parse_arg(argc, argv, 1, 1000);
    long long events = parse_arg(argc, argv, 2, 5000000);
    long long window = parse_arg(argc, argv, 3, 100);
    struct zscore_params p = {(uint32_t)window, 5, 2.5, 5000.0, 0.9};
    struct edge_shard *s = edge_shard_new(&p);
    char(*keys)[24] = malloc((size_t)accounts * sizeof *keys);
    for (long long a = 0; a < accounts; a++)
        snprintf(keys[a], sizeof keys[a], "%lld", 200000 + a);
    uint64_t rng = 88172645463325252ULL;
    double amounts[4096];
    for (size_t i = 0; i < 4096; i++)
        amounts[i] = (double)(xorshift(&rng) % 500000) / 100.0;
    struct zscore_result r;
    long long rss0 = rss_bytes();
    for (long long i = 0; i < accounts * window; i++) /* fill every window */
        edge_shard_score(s, keys[i % accounts], (double)(xorshift(&rng) % 500000) / 100.0, &r);
    long long rss1 = rss_bytes();
    long long exceptions = 0;
    int64_t t0 = clock_mono_ns();
    for (long long i = 0; i < events; i++) {
        uint64_t x = xorshift(&rng);
        uint64_t a = ((x >> 32) * (uint64_t)accounts) >> 32; /* uniform in [0, accounts) */
        edge_shard_score(s, keys[a], amounts[x & 4095], &r);
        exceptions += r.exception;
    }
    int64_t t1 = clock_mono_ns();
    /* The same through edge_shard_score_batch, in batches of 32 (the pipeline's batch size). In
     * the daemon an event's account text is in cache (the parser has just written it into the
     * batch); here the keys live in an array of 24 bytes per account, so each batch's items are
     * made (and their keys prefetched) while the previous batch is scored. */
    struct edge_item items[2][32];
    struct zscore_result rs[2][32];
    int64_t t2 = clock_mono_ns();
    for (long long i = 0, cur = 0; i < events + 32; i += 32, cur ^= 1) {
        if (i < events) {
            for (size_t j = 0; j < 32; j++) {
                uint64_t x = xorshift(&rng);
                uint64_t a = ((x >> 32) * (uint64_t)accounts) >> 32;
                __builtin_prefetch(keys[a]);
                items[cur][j] = (struct edge_item){keys[a], amounts[x & 4095], &rs[cur][j]};
            }
        }
        if (i == 0)
            continue;
        edge_shard_score_batch(s, items[cur ^ 1], 32);
        for (size_t j = 0; j < 32; j++)
            exceptions += rs[cur ^ 1][j].exception;
    }
    int64_t t3 = clock_mono_ns();
    long long batched = (events + 31) / 32 * 32;
    printf("{\"benchmark\":\"edge_scoring\",\"accounts\":%lld,\"window\":%lld,\"events\":%lld,"
           "\"ns_per_event\":%.2f,\"ns_per_event_batch32\":%.2f,\"bytes_per_account\":%.1f,"
           "\"exceptions\":%lld}\n",
           accounts, window, events, (double)(t1 - t0) / (double)events,
           (double)(t3 - t2) / (double)batched, (double)(rss1 - rss0) / (double)accounts,
           exceptions);
    edge_shard_free(s);
    free(keys);
    return 0;
}
