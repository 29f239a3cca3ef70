/* Append-only write-ahead journal of accepted inputs, in segment files named by the sequence
 * number of their first record ("%020llu.jnl"). Record: u32 payload length | u8 type | u64 seq |
 * payload | u32 CRC-32 over type, seq and payload (all little-endian). Appends are batched in
 * memory and written with one write(2) per flush, without fsync: the journal survives a crash of
 * the process (like paho's own persistence), not of the machine. Replay stops a segment at the
 * first torn or corrupt record. A journal object is not thread-safe (the ingest lock serializes
 * it); the directory functions are safe to call while it is open. */
#ifndef AETHERIS_JOURNAL_H
#define AETHERIS_JOURNAL_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_RECORD_MAX (64 * 1024) /* larger payloads are refused (ERR_RANGE) */

struct journal;

/* Creates dir if needed and starts a new segment whose first record will have seq next_seq.
 * NULL on error (err filled). */
struct journal *journal_open(const char *dir, uint64_t next_seq, char *err, size_t errlen);
/* Flushes and closes. NULL is a no-op. */
void journal_close(struct journal *j);
/* Appends a record to the in-memory batch: 0, or ERR_RANGE when len > JOURNAL_RECORD_MAX. */
int journal_append(struct journal *j, uint64_t seq, uint8_t type, const void *data, size_t len);
/* Writes the batch with one write(2): 0, or ERR_IO (the batch is dropped; logged once per
 * outage). */
int journal_flush(struct journal *j);
/* Flushes, then starts a new segment whose first record will have seq `seq`. 0 or ERR_IO. */
int journal_rotate(struct journal *j, uint64_t seq);
/* Deletes the segments all of whose records are < seq (those whose successor starts at or before
 * seq). Returns how many were deleted, or ERR_IO. */
int journal_truncate_before(const char *dir, uint64_t seq);

typedef int (*journal_record_fn)(void *ctx, uint64_t seq, uint8_t type, const void *data,
                                 size_t len);
/* Calls fn for every record with seq >= from_seq, in segment order. A torn or corrupt record ends
 * its segment (one warn line) and replay goes on with the next. Non-zero from fn stops and is
 * returned. Otherwise returns the number of records delivered, with *next_seq = 1 + the highest
 * seq seen (from_seq if none). A missing dir is an empty journal. */
int64_t journal_replay(const char *dir, uint64_t from_seq, journal_record_fn fn, void *ctx,
                       uint64_t *next_seq);
/* Total bytes of the segment files, or a negative enum err. */
int64_t journal_size(const char *dir);

#endif
