/* Partition ownership for several aetherisd instances sharing one broker, Redis and store
 * (cluster_partitions > 0). The account space is cut into P partitions (shard.h partition_of);
 * each partition is owned by at most one live instance at a time through a lease in Redis
 * (SET PX, renewed every quarter lease by a compare-and-PEXPIRE script), and instances announce
 * themselves in a membership sorted set whose scores are expiry times on Redis's own clock.
 *
 * Every instance computes the same assignment from the same member list (cluster_assign: a
 * balanced rendezvous hash), gives back gracefully the partitions it should no longer own (the
 * release hook saves their state first, then the lease is deleted) and takes the partitions it
 * should own once their lease is free (the acquire hook restores their state, then consumes).
 * A lease that cannot be renewed is treated as lost three quarters of a lease after its last
 * renewal, a quarter lease before Redis expires it, so two instances never both believe they own
 * a partition while their clocks run at the same rate.
 *
 * Threads: two of its own (a keeper renewing leases, and the main thread running the hooks: an
 * acquire or a saving release runs on the main thread, a release after a lost lease on the
 * keeper, never two for one partition at once), each with its own Redis connection;
 * cluster_state, cluster_owns and cluster_token may be called from any thread. */
#ifndef AETHERIS_CLUSTER_H
#define AETHERIS_CLUSTER_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "config.h"
#include "rconn.h"

#define CLUSTER_MEMBERS_MAX 256 /* instances one cluster may have; more are ignored (logged) */

enum partition_state {
    PART_NONE = 0,  /* not ours */
    PART_ACQUIRING, /* lease taken, state being restored: not consumed yet */
    PART_ACTIVE,    /* ours: consumed and saved at every snapshot */
    PART_RELEASING  /* lease still held, consumption stopping, state being saved */
};

struct cluster;

struct cluster_hooks {
    void *ctx;
    /* Runs on the main cluster thread after the lease of partition k was taken: restore its state
     * and start consuming it. 0, or < 0 to give the lease back (retried at a later tick). */
    int (*acquire)(void *ctx, uint32_t k);
    /* Runs on a cluster thread when k stops being ours: stop consuming it and, when save is
     * true (a graceful hand-over, the lease still held), save its state before returning. */
    void (*release)(void *ctx, uint32_t k, bool save);
};

/* The cluster of cfg (borrowed, outlives it) with the given hooks (copied). NULL with err
 * filled on a malformed redis_url. Nothing runs until cluster_start. */
struct cluster *cluster_new(const struct config *cfg, const struct cluster_hooks *hooks, char *err,
                            size_t errlen);
/* Starts the thread: 0 or ERR_INTERNAL. */
int cluster_start(struct cluster *c);
/* Hands every partition back (release hooks with save = true, then the leases are deleted),
 * leaves the membership set and joins the thread. Idempotent. */
void cluster_stop(struct cluster *c);
void cluster_free(struct cluster *c); /* stops first; NULL is a no-op */

uint32_t cluster_partitions(const struct cluster *c);
/* The state of partition k (PART_NONE for k out of range). Lock-free. */
enum partition_state cluster_state(const struct cluster *c, uint32_t k);
/* True while k is PART_ACTIVE and its lease was renewed less than 3/4 lease ago. Lock-free. */
bool cluster_owns(const struct cluster *c, uint32_t k);
/* This run's lease value "<node_id>|<token>" (unique per process run). Borrowed. */
const char *cluster_token(const struct cluster *c);

/* Redis key of partition k's lease, saved state, or of a node's recent-id memory:
 * <redis_prefix>cluster:<cluster_name>:{lease|snap}:<k>, ...:ids:<node>. */
void cluster_key_lease(const struct config *cfg, uint32_t k, char *out, size_t len);
void cluster_key_snap(const struct config *cfg, uint32_t k, char *out, size_t len);
void cluster_key_ids(const struct config *cfg, const char *node, char *out, size_t len);

/* Saves partition k's state image (len bytes, borrowed) under its snap key, written by this
 * node at journal sequence seq, only if this run still holds k's lease (one script: check and
 * write are atomic). 1 written, 0 not ours, ERR_CONN when Redis did not answer. */
int cluster_save_partition(struct rconn *rc, const struct cluster *c, uint32_t k, uint64_t seq,
                           const void *image, size_t len);

/* The assignment every instance computes: members[0..n) are distinct node ids (any order);
 * owner[k] receives the index in members of partition k's owner, for k < npartitions. Each
 * member gets at most ceil(P/n) partitions; partition k goes to the member ranking highest for k
 * (a rendezvous hash of member and k) among those not yet full, so a member joining or leaving
 * moves few partitions. n == 0 sets every owner to -1. Pure. */
void cluster_assign(const char *const *members, size_t n, uint32_t npartitions, int32_t *owner);

/* The cluster as Redis knows it (GET /v1/cluster): {mode, node_id, partitions, lease_ms,
 * instances: [{node_id, http, started_ms, partitions, last_seen_ms}], assignments: [{partition,
 * owner, lease_age_ms, lease_ttl_ms}]}. With c NULL (single-instance mode) only this node.
 * New reference, or NULL with *redis_down set when Redis did not answer. */
json_t *cluster_describe(struct rconn *rc, const struct config *cfg, const struct cluster *c,
                         bool *redis_down);

#endif
