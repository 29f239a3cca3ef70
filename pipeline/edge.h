/* One edge shard: the table of accounts an edge worker owns (open addressing on the account key,
 * each account a compact record holding its window, allocated once, when the account is first
 * seen: no allocation per event). Not thread-safe: a shard belongs to exactly one worker thread. */
#ifndef AETHERIS_EDGE_H
#define AETHERIS_EDGE_H
#include "fmacros.h"
#include <stddef.h>
#include "zscore.h"

struct edge_shard;
struct detector_params;

/* Creates an empty shard with its own copy of the scoring parameters. */
struct edge_shard *edge_shard_new(const struct zscore_params *params);
void edge_shard_free(struct edge_shard *s); /* NULL is a no-op */
/* Scores amount for account (NUL-terminated, <= EVENT_ACCOUNT_MAX bytes), creating the account on
 * first sight. */
void edge_shard_score(struct edge_shard *s, const char *account, double amount,
                      struct zscore_result *out);
/* Scores with the given detector from now on (detector.h; the default is zscore). */
void edge_shard_set_detector(struct edge_shard *s, const struct detector_params *dp);
/* One event of a batch: the account (as for edge_shard_score), the amount, where the result goes.
 */
struct edge_item {
    const char *account; /* NUL-terminated, with at least 8 bytes readable (struct event's is) */
    double amount;
    struct zscore_result *out;
};
/* Scores items[0..n) in order, as n calls of edge_shard_score would, overlapping the memory
 * accesses of nearby events (prefetching) and the arithmetic of their scores. Same windows and
 * results, except that mean and std may be 0 for an event that is not an exception: they are
 * worked out for exceptions only, the only events whose mean and std anything reads. */
void edge_shard_score_batch(struct edge_shard *s, struct edge_item *items, size_t n);
/* Number of accounts held. */
size_t edge_shard_accounts(const struct edge_shard *s);
/* Finds an account's window; NULL when unknown. A view borrowed until the next call on the shard
 * (read it with zwin_values / zwin_exact_stats and its n and last_z). */
const struct zwin *edge_shard_find(const struct edge_shard *s, const char *account);
/* Visits every account: vals is the window oldest first (borrowed for the call). */
typedef void (*edge_account_fn)(void *ctx, const char *account, const double *vals, uint32_t n,
                                double last_z);
void edge_shard_foreach(const struct edge_shard *s, edge_account_fn fn, void *ctx);
/* Installs a restored account window (replacing any existing one). */
void edge_shard_restore(struct edge_shard *s, const char *account, const double *vals, uint32_t n,
                        double last_z);

#endif
