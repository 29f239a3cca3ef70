/* The Redis Streams priority buffer (DESIGN.md 3.4): two lanes, `<prefix>stream:immediate` and
 * `<prefix>stream:batch`, read by the consumer group through XREADGROUP, acknowledged with XACK,
 * recovered with XAUTOCLAIM when a consumer dies, and `<prefix>stream:deadletter` for entries that
 * failed too often or cannot be parsed. Entry fields: `payload` (exception JSON), `suspicion`.
 * Stateless helpers over a caller-owned rconn: thread-safety is the rconn's (one per thread). */
#ifndef AETHERIS_BUFFER_H
#define AETHERIS_BUFFER_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "rconn.h"

#define BUFFER_ID_MAX 48 /* "<ms>-<seq>" stream ids fit comfortably */

enum lane { LANE_IMMEDIATE = 0, LANE_BATCH = 1, LANE__COUNT = 2 };

struct buffer_keys {
    char stream[LANE__COUNT][192];
    char deadletter[192];
    char lock_prefix[192]; /* + account = kill-switch key */
    char group[128];
    char consumer[64];
    char deadletter_max[24]; /* MAXLEN ~ of the dead-letter stream (deadletter_keep) */
};

struct stream_entry {
    enum lane lane;
    char id[BUFFER_ID_MAX];
    char *payload; /* owned, NUL-terminated */
    size_t len;
    int64_t deliveries; /* from XPENDING where known (reclaimed entries), else 1 */
};

/* Lane name: "immediate" | "batch". */
const char *lane_name(enum lane lane);
/* Fills the key names from the configuration (prefix, group, node id as consumer name). */
void buffer_keys_init(const struct config *cfg, struct buffer_keys *k);
/* XGROUP CREATE <stream> <group> 0 MKSTREAM for both lanes; an existing group is fine.
 * 0 or ERR_CONN / ERR_PROTO. */
int buffer_ensure_groups(struct rconn *rc, const struct buffer_keys *k);
/* XADDs n exceptions, each to its lane, in one pipeline. 0 or ERR_CONN / ERR_PROTO. */
int buffer_add(struct rconn *rc, const struct buffer_keys *k, size_t n, const char *const *payloads,
               const size_t *lens, const enum lane *lanes, const double *suspicion);
/* XREADGROUP COUNT count [BLOCK block_ms] over the given lanes (">" = new entries, "0" = this
 * consumer's own pending ones). Appends up to max entries to out; returns the number read or a
 * negative enum err. ERR_NOTFOUND when a group is missing (call buffer_ensure_groups). */
int buffer_read(struct rconn *rc, const struct buffer_keys *k, const enum lane *lanes,
                size_t nlanes, const char *start_id, int count, int block_ms,
                struct stream_entry *out, size_t max);
/* XACKs ids of one lane. 0 or a negative enum err. */
int buffer_ack(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
               const char *const *ids, size_t n);
/* XAUTOCLAIMs up to max entries idle for >= min_idle_ms in a lane to this consumer, filling
 * deliveries from XPENDING. *cursor (BUFFER_ID_MAX bytes, start "0-0") advances between calls.
 * Returns the number claimed or a negative enum err. */
int buffer_autoclaim(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
                     int64_t min_idle_ms, char *cursor, struct stream_entry *out, size_t max);
/* Moves an entry to the dead-letter stream (XADD with lane, id, reason, payload) and XACKs it. */
int buffer_deadletter(struct rconn *rc, const struct buffer_keys *k, const struct stream_entry *e,
                      const char *reason);
struct lane_state {      /* one lane and its consumer group, as Redis reports them now */
    long long length;    /* XLEN: entries in the stream, acknowledged ones included */
    bool group;          /* the consumer group exists (the fields below are 0/"" if not) */
    long long consumers; /* consumers of the group */
    long long lag;       /* entries not yet delivered to the group; -1 when Redis cannot say */
    long long pending;   /* delivered, not yet acknowledged */
    char last_delivered[BUFFER_ID_MAX]; /* the group's last-delivered-id */
    char oldest_pending[BUFFER_ID_MAX]; /* the oldest pending id when pending > 0 */
};

/* XLEN, XINFO GROUPS and the XPENDING summary of a lane in one round trip. 0 or ERR_CONN. */
int buffer_lane_state(struct rconn *rc, const struct buffer_keys *k, enum lane lane,
                      struct lane_state *st);
/* The milliseconds part of a stream id ("1700000000000-3"); -1 when malformed. */
int64_t buffer_id_ms(const char *id);
/* Trims a lane's stream of entries that are both decided (older than every pending and every
 * undelivered entry of the group) and older than keep_ms: XTRIM MINID. Entries still to be
 * decided are never removed. Returns the number trimmed or a negative enum err (ERR_NOTFOUND
 * when the group does not exist). */
int buffer_trim(struct rconn *rc, const struct buffer_keys *k, enum lane lane, int64_t now_ms,
                int64_t keep_ms);
/* Frees the payloads of n entries. */
void stream_entries_cleanup(struct stream_entry *e, size_t n);

#endif
