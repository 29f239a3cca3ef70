/* Transaction events (DESIGN.md 3.1): parsing and validation of MQTT/HTTP payloads (one JSON
 * object or an array of them), the fixed-size in-memory form that flows through the pipeline
 * without per-event allocation, its JSON form, and a compact binary encoding for the journal.
 * Pure functions; thread-safe. */
#ifndef AETHERIS_EVENT_H
#define AETHERIS_EVENT_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "metrics.h"

struct buf;

#define EVENT_ACCOUNT_MAX 64  /* account ids are short digit strings; 64 leaves room for UUIDs */
#define EVENT_DATE_MAX 40     /* "2023-04-20 02:00:00.000000" is 26 */
#define EVENT_DESC_MAX 200    /* longer descriptions are truncated, not rejected */
#define EVENT_ENCODED_MAX 512 /* upper bound of event_encode() output */

struct event {
    uint64_t txid;       /* transactionId: integer or digit string, 0..2^64-1 */
    double amount;       /* finite, >= 0 */
    int64_t ingested_ms; /* wall clock when accepted (set by the ingest path, not the parser) */
    int64_t type;        /* valid when has_type */
    int64_t branch;      /* valid when has_branch */
    bool has_type;
    bool has_branch;
    char account[EVENT_ACCOUNT_MAX + 1];      /* accountOrigin, non-empty */
    char account_dest[EVENT_ACCOUNT_MAX + 1]; /* accountDestination, may be empty */
    char date[EVENT_DATE_MAX + 1];            /* may be empty */
    char description[EVENT_DESC_MAX + 1];     /* may be empty */
};

enum event_invalid {
    EVI_BAD_JSON = 0, /* not parseable JSON */
    EVI_NOT_OBJECT,   /* not an object (or array of objects) */
    EVI_TXID,         /* transactionId missing, wrong type, negative, not digits, out of range */
    EVI_ACCOUNT,      /* accountOrigin missing, empty, wrong type or too long */
    EVI_AMOUNT,       /* amount missing, not a number, negative or not finite */
    EVI_FIELD,        /* an optional known field has the wrong type */
    EVI_TOO_LARGE,    /* payload over the size cap, array over the batch cap, or more JSON
                         values than 64 per event of the batch cap */
    EVI__COUNT
};

/* Stable snake_case name of a reason ("bad_json", "transaction_id", ...). */
const char *event_invalid_name(enum event_invalid reason);
/* The metrics counter for a reason. */
enum metric_counter event_invalid_metric(enum event_invalid reason);

/* Receives each valid event; `ev` is borrowed for the call. */
typedef void (*event_valid_fn)(void *ctx, const struct event *ev);
/* Receives each rejected payload or array item: the reason, a human detail ("amount must be a
 * finite number >= 0"), and the offending text (the item re-serialized, or the raw payload for
 * EVI_BAD_JSON / EVI_TOO_LARGE) which the callee truncates as it likes. */
typedef void (*event_invalid_fn)(void *ctx, enum event_invalid reason, const char *detail,
                                 const char *text, size_t text_len);

/* Parses a payload of len bytes (not necessarily NUL-terminated). An array over max_batch items,
 * or a payload of more than 64 * max_batch JSON values anywhere, is rejected whole
 * (EVI_TOO_LARGE); otherwise each item is validated on its own and the rest of a
 * batch is still processed. Returns the number of valid events delivered. */
int event_parse_payload(const char *data, size_t len, size_t max_batch, event_valid_fn on_valid,
                        event_invalid_fn on_invalid, void *ctx);
/* The fast path of event_parse_payload: a payload of the plain shape (one object or a non-empty
 * array of at most max_batch objects with only the known fields, strings of printable ASCII
 * without escapes, numbers without exponent, no duplicate field, every event valid) is parsed
 * without building a JSON tree and each event delivered, returning the count; for anything else
 * nothing is delivered and -1 is returned. Whenever it returns >= 0 it delivers exactly what
 * event_parse_payload_jansson would (tested against it). */
int event_parse_fast(const char *data, size_t len, size_t max_batch, event_valid_fn on_valid,
                     void *ctx);
/* event_parse_payload through jansson alone: the general path, and the reference the fast path
 * is tested against. */
int event_parse_payload_jansson(const char *data, size_t len, size_t max_batch,
                                event_valid_fn on_valid, event_invalid_fn on_invalid, void *ctx);
/* Validates one JSON object into *out (ingested_ms set to 0). 0, or ERR_INVAL with *reason and
 * detail (detail_len bytes) filled. */
int event_from_json(const json_t *obj, struct event *out, enum event_invalid *reason, char *detail,
                    size_t detail_len);
/* The event as a JSON object with the original camelCase names (transactionId, accountOrigin,
 * accountDestination, amount, type, branch, date, description); absent optionals are omitted.
 * Caller owns the reference. */
json_t *event_to_json(const struct event *ev);
/* Appends json_dumps(event_to_json(ev), JSON_COMPACT), byte for byte, and a NUL byte to out,
 * without building the JSON tree when every string is ASCII (the sink's stored document of each
 * transaction, a flush's documents one after the other in one buffer). 0, ERR_FULL (out
 * unchanged) when out's cap is reached, ERR_INTERNAL where jansson gives no text. */
int event_json_append(const struct event *ev, struct buf *out);
/* Compact binary form for the journal: returns the byte count (<= EVENT_ENCODED_MAX) or ERR_FULL
 * if cap is too small. */
int event_encode(const struct event *ev, uint8_t *out, size_t cap);
/* Inverse of event_encode: 0, or ERR_INVAL for truncated or malformed input (never reads past
 * len). */
int event_decode(const uint8_t *in, size_t len, struct event *out);

#endif
