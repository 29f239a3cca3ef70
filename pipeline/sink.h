/* The sink: the one thread after the edge workers. For each scored batch it writes the
 * transactions and exceptions to the store, XADDs the exceptions to their priority streams, and
 * publishes them on the exceptions topic (QoS 1, not awaited: a notification, see sink.c); it
 * stores dead letters; and it completes
 * snapshots: when the marker of sequence S has arrived from every worker, everything before S is
 * durable, so it writes the snapshot (atomic rename) and deletes the journal segments before S.
 * The store and stream stages are retried until they succeed (a dead Redis stalls the sink, which
 * back-pressures ingest, instead of dropping anything); sink_abort() ends the retrying at shutdown
 * (the journal still holds whatever was not written). Thread-safety: the status getters may be
 * called from any thread; everything else belongs to the pipeline's control thread. */
#ifndef AETHERIS_SINK_H
#define AETHERIS_SINK_H
#include "fmacros.h"
#include <stdbool.h>
#include <stdint.h>
#include "batch.h"
#include "bqueue.h"
#include "config.h"
#include "store.h"

struct sink;
struct feed;
struct outbox;

/* Creates the sink reading `in` (borrowed), returning batches to `pool` (borrowed),
 * announcing each exception on `feed` (borrowed; may be NULL) once it is in its stream, and
 * enqueuing its webhook deliveries for the subscriptions of `outbox` (borrowed; may be NULL)
 * with its store row. */
struct sink *sink_new(const struct config *cfg, struct store *store, struct evbatch_pool *pool,
                      uint32_t nworkers, struct bqueue *in, struct feed *feed,
                      struct outbox *outbox);
/* Called on the sink thread after each local snapshot of sequence seq is committed and before
 * sink_snapshot_seq() reports it: parts[0..nparts) are the workers' encoded accounts
 * (snapshot_encode_account form) and ids[0..nids) the recent-id memory, all borrowed for the
 * call. The cluster saves each partition it owns through it. */
typedef void (*sink_snapshot_fn)(void *ctx, uint64_t seq, const struct buf *const *parts,
                                 uint32_t nparts, const uint64_t *ids, size_t nids);
/* Sets the hook (before sink_start); NULL = none. */
void sink_set_snapshot_hook(struct sink *s, sink_snapshot_fn fn, void *ctx);
/* Starts the thread: 0 or ERR_INTERNAL. */
int sink_start(struct sink *s);
/* Stops retrying failed stages: pending work is dropped (it is still in the journal). */
void sink_abort(struct sink *s);
/* Waits for the thread, which exits once `in` is closed and drained. */
void sink_join(struct sink *s);
void sink_free(struct sink *s); /* NULL no-op; the thread must be joined */
/* Sequence number of the last committed snapshot (0 = none yet this run). */
uint64_t sink_snapshot_seq(const struct sink *s);
/* Whether the last Redis call succeeded. */
bool sink_redis_up(const struct sink *s);
/* Whether the last store write succeeded (false while the disk is full, say, and the sink is
 * retrying). */
bool sink_store_writing(const struct sink *s);

#endif
