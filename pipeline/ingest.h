/* The ingest router: every payload, from MQTT or HTTP, goes through ingest_payload() or
 * ingest_payload_batched(), which under one lock validate it (event.h), drop duplicate
 * transactionIds (dedupe.h) and append each accepted event and each rejected item to the journal
 * (journal.h) with a sequence number. The journal is written with one write per flush (at the end
 * of ingest_payload, or by ingest_flush once per MQTT read), and only after that are the events
 * handed, in order, to the edge worker owning their account (shard.h). Because the MQTT
 * subscriber flushes before it acknowledges a QoS 1 message (mqttc.h on_batch_end), a crash
 * loses nothing acknowledged: start-up replays the journal after the last snapshot. Snapshot
 * markers are inserted here, under the same lock, so a marker splits the event stream at one
 * sequence number for every worker. Thread-safe: all functions may be called from any thread. */
#ifndef AETHERIS_INGEST_H
#define AETHERIS_INGEST_H
#include "fmacros.h"
#include <stdint.h>
#include "batch.h"
#include "bqueue.h"
#include "config.h"
#include "dedupe.h"
#include "pipeline.h"

enum ingest_record_type { INGEST_REC_EVENT = 1, INGEST_REC_DEADLETTER = 2 };

struct ingest;

/* Creates the router over the workers' input queues (borrowed) and the batch pool (borrowed).
 * Takes ownership of `dedupe`. The journal is not open yet. */
struct ingest *ingest_new(const struct config *cfg, struct bqueue **worker_queues,
                          uint32_t nworkers, struct evbatch_pool *pool, struct dedupe *dedupe);
void ingest_free(struct ingest *ing); /* NULL no-op */
/* Replays the journal records with seq >= from_seq into the workers (no re-journaling), then opens
 * a new journal segment after the last replayed sequence. Returns the number of records replayed
 * or a negative enum err (err filled). */
int64_t ingest_recover(struct ingest *ing, uint64_t from_seq, char *err, size_t errlen);
/* Ingests one payload from `source` ("mqtt" | "http"); counts may be NULL.
 * 0, or ERR_CLOSED after ingest_close(). */
int ingest_payload(struct ingest *ing, const char *data, size_t len, const char *source,
                   struct submit_counts *counts);
/* As ingest_payload without counts, but the journal records stay in memory and no hand-off
 * happens until the next ingest_flush (by this thread or any other). For a caller that flushes
 * once per batch of payloads and acknowledges them after that flush. 0, or ERR_CLOSED. */
int ingest_payload_batched(struct ingest *ing, const char *data, size_t len, const char *source);
/* Writes every journal record appended so far with one write(2), then hands off like the end of
 * ingest_payload. *fails_seen is the caller's own count of journal write failures (start at 0):
 * returns ERR_IO when a write failed since the caller's previous ingest_flush (this one, or one
 * made by another thread or a hand-off meanwhile, which may have held the caller's records; the
 * journal logs it), else 0, and updates *fails_seen. After ERR_IO some of the caller's records
 * may be missing from the file, though their events are processed either way: a caller that
 * acknowledges input must not acknowledge it. Works after ingest_close. */
int ingest_flush(struct ingest *ing, uint64_t *fails_seen);
/* Inserts a snapshot marker into every worker queue and starts a new journal segment; returns the
 * marker's sequence number (> 0) or a negative enum err. */
int64_t ingest_marker(struct ingest *ing);
/* Refuses further payloads (ERR_CLOSED) without waiting for the lock, so it works while a
 * payload is blocked on a full queue. Markers are still accepted. Idempotent. */
void ingest_close(struct ingest *ing);
/* Cluster hook, called for each valid event from a payload (not from the journal) under the
 * ingest lock, before duplicate detection: return true when the router took the event (it
 * belongs to a partition consumed elsewhere and was forwarded there; counted as accepted, not
 * journaled), false to process it here. It must not call into ingest. Set it before the first
 * payload; NULL (the default) processes everything here. */
typedef bool (*ingest_router_fn)(void *ctx, const char *source, const struct event *ev);
void ingest_set_router(struct ingest *ing, ingest_router_fn fn, void *ctx);
/* Adds ids (borrowed) to the recent-id memory under the ingest lock: a partition taken over from
 * another instance brings that instance's memory, so duplicates it saw are still dropped. */
void ingest_remember_ids(struct ingest *ing, const uint64_t *ids, size_t n);

#endif
