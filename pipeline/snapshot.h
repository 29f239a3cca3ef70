/* Edge snapshot file: the recent-id memory and every account window, consistent with one journal
 * sequence number. Format (little-endian): "AETHSNAP" | u32 version | u64 seq | u32 window |
 * sections... | u32 CRC-32 of everything before it. Section 'I': u64 count + ids; section 'A':
 * one account (u8 key length, key, u32 n, n x f64 bits, f64 last_z). Written to path.tmp, fsynced,
 * renamed over path, and the directory fsynced, so a reader sees the old or the new file, whole.
 * A writer is used by one thread at a time; snapshot_encode_account is pure (workers call it in
 * parallel on their own buffers). */
#ifndef AETHERIS_SNAPSHOT_H
#define AETHERIS_SNAPSHOT_H
#include "fmacros.h"
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

struct snapshot_writer;

/* Creates path.tmp and writes the header. NULL on error (err filled). */
struct snapshot_writer *snapshot_begin(const char *path, uint64_t seq, uint32_t window, char *err,
                                       size_t errlen);
/* Appends the recent-id memory, oldest first. 0 or ERR_IO. */
int snapshot_put_ids(struct snapshot_writer *w, const uint64_t *ids, size_t n);
/* Appends account records encoded by snapshot_encode_account. 0 or ERR_IO. */
int snapshot_put_encoded(struct snapshot_writer *w, const void *data, size_t len);
/* Encodes one account window (key <= 255 bytes, n amounts oldest first) onto out. 0, ERR_INVAL
 * for an over-long key, or ERR_FULL when out is at its cap. */
int snapshot_encode_account(struct buf *out, const char *account, const double *vals, uint32_t n,
                            double last_z);
/* Writes the checksum, fsyncs, renames over path, fsyncs the directory; frees w. 0 or ERR_IO. */
int snapshot_commit(struct snapshot_writer *w);
/* Removes the temporary file and frees w. NULL is a no-op. */
void snapshot_abort(struct snapshot_writer *w);

struct snapshot_visitor {
    void *ctx;
    int (*on_header)(void *ctx, uint64_t seq, uint32_t window);
    int (*on_ids)(void *ctx, const uint64_t *ids, size_t n);
    int (*on_account)(void *ctx, const char *account, const double *vals, uint32_t n,
                      double last_z);
};

/* Reads path and visits it. ERR_NOTFOUND if absent; ERR_INVAL if corrupt (the checksum and every
 * length are verified before any callback runs, so a bad file has no partial effect); non-zero
 * from a callback is returned; else 0. */
int snapshot_load(const char *path, const struct snapshot_visitor *v);

#endif
