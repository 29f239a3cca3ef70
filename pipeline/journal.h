/* Append-only write-ahead journal of accepted inputs. Ingest appends every accepted record here and
 * flushes before the broker sees our acknowledgement; a snapshot consistent with sequence number S
 * plus a replay of the records >= S rebuilds the edge state after a crash.
 *
 * Layout: a directory of segment files named "%020" PRIu64 ".jnl" by the seq their first record
 * will have (a lower bound of every seq inside; every record of a segment is below the name of the
 * next one). Record, little-endian: u32 payload length | u8 type | u64 seq | payload | u32 CRC-32
 * over type, seq and payload. Appends go to an in-memory batch; journal_flush writes it with one
 * write(2) and no fsync, so the journal survives a crash of the process (like paho's own
 * persistence), not a power cut. A failed write is cut back off the segment, so later records
 * still replay. Replay stops a segment at its first torn or corrupt record and goes on with the
 * next segment.
 *
 * Threads: a struct journal is used by one thread at a time (ingest's lock). The directory
 * functions (replay, truncate_before, size) keep no state and may run while a journal is open;
 * truncate_before never deletes the newest segment, which is the one being written. */
#ifndef AETHERIS_JOURNAL_H
#define AETHERIS_JOURNAL_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>

#define JOURNAL_RECORD_MAX (64 * 1024) /* payload cap: an event or dead letter is far smaller */

struct journal;

/* Creates dir (and parents) if needed and starts a new segment whose first record will have seq
 * next_seq (reusing an empty file of that name). Segments named >= next_seq whose first record is
 * torn or corrupt are renamed "*.jnl.corrupt", empty ones are removed, and if one holds a valid
 * record opening fails (replay first, then open at the next_seq replay returned).
 * Returns the journal (caller owns; journal_close), or NULL with err filled. */
struct journal *journal_open(const char *dir, uint64_t next_seq, char *err, size_t errlen);
/* Flushes and closes the journal. NULL is a no-op. */
void journal_close(struct journal *j);
/* Appends one record to the in-memory batch; data is copied. No syscall unless the batch is at
 * its 64 MiB cap, when it is flushed first. Returns 0; ERR_RANGE when len > JOURNAL_RECORD_MAX;
 * ERR_INVAL when seq is below the current segment's first seq or not above the last appended
 * one (seqs strictly increase); ERR_IO when the forced flush failed (record not added). */
int journal_append(struct journal *j, uint64_t seq, uint8_t type, const void *data, size_t len);
/* Writes the pending batch with one write(2) (looping on short writes and EINTR), no fsync.
 * Returns 0, or ERR_IO: the batch is then dropped, any partial write is truncated away (or, if
 * that fails, the next flush starts a new segment), and the failure is logged once per outage. */
int journal_flush(struct journal *j);
/* Flushes, closes the current segment and starts a new one whose first record will have seq
 * `seq` (a no-op besides the flush when the current segment already starts at seq). seq must be
 * >= the current segment's first seq and above every appended seq, else ERR_INVAL. Returns 0 or
 * ERR_IO (flush or open failed; a segment that could not be opened is retried at the next flush,
 * named by the first pending record). */
int journal_rotate(struct journal *j, uint64_t seq);
/* Deletes the segment files of dir all of whose records are < seq, i.e. every segment whose
 * successor starts at or before seq; the newest segment is never deleted. Returns the number
 * deleted (0 for a missing dir), or ERR_IO (logged). */
int journal_truncate_before(const char *dir, uint64_t seq);

/* Replay callback: data is borrowed until the callback returns. Return 0 to go on, or a negative
 * enum err to stop the replay. */
typedef int (*journal_record_fn)(void *ctx, uint64_t seq, uint8_t type, const void *data,
                                 size_t len);
/* Calls fn for every valid record with seq >= from_seq, segment by segment in seq order. A torn or
 * corrupt record (short, bad length, bad checksum, seq out of order) ends that segment with one
 * warn log line, and replay continues with the next segment. A missing dir is an empty journal.
 * Non-zero from fn stops the replay and is returned. Otherwise returns the number of records
 * delivered (>= 0) and sets *next_seq = max(from_seq, 1 + the highest valid seq in any segment),
 * the seq to pass to journal_open. ERR_IO when a segment cannot be listed, opened or read. */
int64_t journal_replay(const char *dir, uint64_t from_seq, journal_record_fn fn, void *ctx,
                       uint64_t *next_seq);
/* Total bytes of the segment files in dir (0 for a missing dir), or ERR_IO. */
int64_t journal_size(const char *dir);

#endif
