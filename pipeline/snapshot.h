/* Edge snapshot file: the recent-id memory and every account window, consistent with one journal
 * sequence number S (load it, then replay the journal from S).
 *
 * Format, all little-endian, no struct dumps:
 *   "AETHSNAP" | u32 version (1) | u64 seq | u32 window | sections... | u32 CRC-32 of all before
 *   section 'I': u8 'I' | u64 count | count x u64 id             (recent ids, oldest first)
 *   section 'A': u8 'A' | u8 key length (1..64) | key | u32 n | n x f64 | f64 last_z
 * Doubles are stored as their IEEE-754 bit patterns, so windows restore bit for bit. Sections may
 * repeat and come in any order; an 'A' section is what snapshot_encode_account produces, so edge
 * workers encode their own shard in parallel and the writer only copies bytes.
 *
 * The writer fills path.tmp, then on commit fsyncs it, renames it over path and fsyncs the
 * directory: a reader sees the old file or the new one, whole. The reader loads the whole file
 * (capped at 8 GiB) and checks magic, version, checksum and every length before the first
 * callback, so a corrupt file has no partial effect.
 *
 * Threads: a writer is used by one thread at a time, and one writer per path at a time.
 * snapshot_encode_account and snapshot_load keep no shared state. */
#ifndef AETHERIS_SNAPSHOT_H
#define AETHERIS_SNAPSHOT_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define SNAPSHOT_ACCOUNT_MAX 64 /* key bytes; the same bound as EVENT_ACCOUNT_MAX */

struct snapshot_writer;

/* Creates (truncating) path.tmp and writes the header. Returns the writer (caller owns; end it
 * with snapshot_commit or snapshot_abort), or NULL with err filled. */
struct snapshot_writer *snapshot_begin(const char *path, uint64_t seq, uint32_t window, char *err,
                                       size_t errlen);
/* Appends the recent-id memory, oldest first (ids borrowed). 0 or ERR_IO (logged; sticky). */
int snapshot_put_ids(struct snapshot_writer *w, const uint64_t *ids, size_t n);
/* Appends bytes made only of snapshot_encode_account output (borrowed). 0 or ERR_IO (sticky). */
int snapshot_put_encoded(struct snapshot_writer *w, const void *data, size_t len);
/* Appends one account window (account NUL-terminated, 1..SNAPSHOT_ACCOUNT_MAX bytes; n amounts,
 * oldest first; last_z) to out. Returns 0, ERR_INVAL for an empty or over-long account, or
 * ERR_FULL when out is at its cap (out unchanged). Pure: safe in parallel on distinct bufs. */
int snapshot_encode_account(struct buf *out, const char *account, const double *vals, uint32_t n,
                            double last_z);
/* Writes the checksum, fsyncs, renames path.tmp over path and fsyncs the directory. Returns 0, or
 * ERR_IO (logged): path then still holds the old snapshot, unless only the directory fsync
 * failed, when the new one is in place but may not survive a power cut. Frees w either way. */
int snapshot_commit(struct snapshot_writer *w);
/* Removes path.tmp and frees w; path is untouched. NULL is a no-op. */
void snapshot_abort(struct snapshot_writer *w);

/* Callbacks for snapshot_load; any may be NULL. Arrays and strings are borrowed until the
 * callback returns. Return 0 to go on, or a negative enum err to stop. */
struct snapshot_visitor {
    void *ctx;
    int (*on_header)(void *ctx, uint64_t seq, uint32_t window);
    int (*on_ids)(void *ctx, const uint64_t *ids, size_t n);
    int (*on_account)(void *ctx, const char *account, const double *vals, uint32_t n,
                      double last_z);
};

/* Reads path and visits it in file order: on_header once, then each section. Returns 0 after
 * visiting everything; ERR_NOTFOUND if path is absent; ERR_INVAL if it is corrupt (bad magic,
 * version, checksum or lengths, or over 8 GiB; logged, and no callback has run); ERR_IO if it
 * cannot be read; or the first non-zero callback return. v may be NULL to only validate. */
int snapshot_load(const char *path, const struct snapshot_visitor *v);

/* snapshot_load over an image in memory (data borrowed; `what` names it in log lines). The same
 * checks and callbacks; ERR_INVAL for a corrupt image. */
int snapshot_parse(const void *data, size_t len, const char *what,
                   const struct snapshot_visitor *v);
/* Appends a whole snapshot image to out: header (seq, window), the ids section when ids is not
 * NULL (nids ids, oldest first), `accounts` (len bytes of snapshot_encode_account output) and the
 * checksum. 0, or ERR_FULL when out reaches its cap (out unchanged). Pure. */
int snapshot_format(struct buf *out, uint64_t seq, uint32_t window, const uint64_t *ids,
                    size_t nids, const void *accounts, size_t len);

#endif
