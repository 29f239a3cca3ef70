/* Staged account history: the SQLite backend's memory of the history rows (account, ingested_ms,
 * txid, amount) it has written to its append-only staging table but not yet merged into the
 * account-ordered history table, so that the Auditor's history lookup sees them at once.
 *
 * Why. An index ordered by account takes one random leaf page per new row: with more accounts
 * than rows per commit, every row costs a 4 KiB page written to the WAL and checkpointed back,
 * most of the ingest path's cost (docs/benchmarks.md, "Account history in sorted bulk"). Staged
 * rows are instead merged one slice of the key space at a time: the history table's key starts
 * with a bucket (a fixed hash of the account, histstage_bucket), and a write merges every staged
 * row of the next few buckets, a contiguous key range. How many rows a leaf of the history table
 * takes per merge is the number of rows staged over the number of leaves, whatever the range, so
 * the staging is kept near a target (sqlite_history_staged rows): below it a write only stages;
 * at it, a write merges a share of the buckets equal to its rows' share of the target, so as
 * many rows leave as arrive. A full pass over the buckets is a cycle; rows staged before a cycle
 * began are all merged when it ends.
 *
 * Threads: the backend's writer (one thread at a time, under its write lock) adds, collects and
 * drops; any thread may look up. One mutex guards the lists; collected rows stay valid until the
 * writer drops them, as only the writer frees. */
#ifndef AETHERIS_HISTSTAGE_H
#define AETHERIS_HISTSTAGE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HISTSTAGE_BUCKETS 65536u /* part of the stored schema: never change */

struct histstage;

struct histstage_row {   /* one history row */
    const char *account; /* collect: points into the staged entry; find: NULL */
    uint32_t bucket;
    int64_t ingested_ms;
    int64_t key; /* the stored txid key */
    bool has_amount;
    double amount;
};

struct histstage_plan {     /* what one write merges */
    uint32_t first, n;      /* buckets [first, first + n) */
    bool ends_cycle;        /* the range reaches the last bucket */
    int64_t delete_upto_id; /* when ends_cycle: staged ids <= this are merged (0 = none) */
    int64_t cycle_bound;    /* when first is 0: the largest staged id so far */
};

/* The bucket of an account: FNV-1a over its bytes, folded to HISTSTAGE_BUCKETS. Stored in the
 * history table's key, so it must never change. */
uint32_t histstage_bucket(const char *account);

/* A new, empty staging that keeps about target rows (0: every write merges all it can, which is
 * what an index would cost); free with histstage_free. */
struct histstage *histstage_new(size_t target);
void histstage_free(struct histstage *hs);

/* Adds one staged row (the account is copied); staged_id is its id in the staging table. Ids
 * are added in increasing order (SQLite's rowids of an append-only table, restarting at 1 only
 * when the table has been emptied, when nothing staged remains here either). Writer only. */
void histstage_add(struct histstage *hs, const struct histstage_row *row, int64_t staged_id);

/* Rows staged now. */
size_t histstage_count(struct histstage *hs);

/* The range the next write merges, given that it stages `adding` new rows (none while the
 * staging is below its target; a share of the buckets equal to adding / target at it, twice that
 * from twice the target on) and, when it ends a cycle, the staged ids it may delete. */
void histstage_plan(struct histstage *hs, size_t adding, struct histstage_plan *plan);

/* The staged rows of the plan's buckets, ordered as the history table's key (bucket, account,
 * ingested_ms, key), into *rows (free() it; NULL when there are none). Returns their number.
 * Writer only; the accounts stay valid until histstage_done. */
size_t histstage_collect(struct histstage *hs, const struct histstage_plan *plan,
                         struct histstage_row **rows);

/* After the write that merged the plan's range committed: frees that range's rows and moves the
 * cursor past it; a plan that began a cycle fixes that cycle's delete bound (the largest staged id
 * added before it: those rows are all merged when the cycle ends). Writer only. */
void histstage_done(struct histstage *hs, const struct histstage_plan *plan);

/* The staged rows of an account other than the excluded key (when exclude), newest first by
 * (ingested_ms, key), at most max, into *rows (free() it; NULL when none). Returns their number.
 * Any thread. */
size_t histstage_find(struct histstage *hs, const char *account, bool exclude, int64_t key,
                      size_t max, struct histstage_row **rows);

#endif
