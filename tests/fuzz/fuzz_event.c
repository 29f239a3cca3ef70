/* libFuzzer target: the event payload parser and the journal codec (pipeline/event.c).
 * The input is one MQTT/HTTP payload. Every valid event the parser delivers must survive the
 * journal round trip unchanged (event_encode -> event_decode gives the same bytes again), and
 * its JSON form must parse back to one valid event with the same id; every refusal must carry a
 * reason in range and text inside what was given. The same input, read as a journal record,
 * goes through event_decode, which must never read past it and, when it accepts, re-encode to
 * exactly those bytes. Any mismatch aborts (a finding). */
#include "event.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_BATCH 64 /* small, so the over-batch refusal is reachable */

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_event: %s\n", what);
    abort();
}

struct reparse {
    int valid;
    uint64_t txid;
};

static void on_reparsed(void *ctx, const struct event *ev)
{
    struct reparse *r = ctx;
    r->valid++;
    r->txid = ev->txid;
}

static void on_reparse_invalid(void *ctx, enum event_invalid reason, const char *detail,
                               const char *text, size_t text_len)
{
    (void)ctx;
    (void)text;
    (void)text_len;
    fprintf(stderr, "fuzz_event: reason %s: %s\n", event_invalid_name(reason), detail);
    fail("the JSON form of a valid event was refused");
}

static void on_valid(void *ctx, const struct event *ev)
{
    (void)ctx;
    uint8_t enc[EVENT_ENCODED_MAX], again[EVENT_ENCODED_MAX];
    int n = event_encode(ev, enc, sizeof enc);
    if (n <= 0)
        fail("a valid event did not encode");
    struct event back;
    if (event_decode(enc, (size_t)n, &back) != 0)
        fail("an encoded event did not decode");
    int m = event_encode(&back, again, sizeof again);
    if (m != n || memcmp(enc, again, (size_t)n) != 0)
        fail("the journal round trip changed the event");
    json_t *j = event_to_json(ev);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text == NULL)
        fail("a valid event has no JSON form");
    struct reparse r = {0, 0};
    event_parse_payload(text, strlen(text), 1, on_reparsed, on_reparse_invalid, &r);
    free(text);
    if (r.valid != 1 || r.txid != ev->txid)
        fail("the JSON form of a valid event is not that event");
}

static void on_invalid(void *ctx, enum event_invalid reason, const char *detail, const char *text,
                       size_t text_len)
{
    (void)ctx;
    if ((int)reason < 0 || reason >= EVI__COUNT || detail == NULL || detail[0] == '\0')
        fail("a refusal without a reason");
    if (text_len > 0 && text == NULL)
        fail("a refusal with a length but no text");
    volatile char last = text_len > 0 ? text[text_len - 1] : 0; /* ASan checks the bounds */
    (void)last;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy of exactly size bytes, so a read past the end is caught by ASan. */
    char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    int got = event_parse_payload(copy, size, FUZZ_MAX_BATCH, on_valid, on_invalid, NULL);
    if (got < 0 || got > FUZZ_MAX_BATCH)
        fail("more events than the batch cap");
    struct event ev;
    if (event_decode((const uint8_t *)copy, size, &ev) == 0) {
        uint8_t enc[EVENT_ENCODED_MAX];
        int n = event_encode(&ev, enc, sizeof enc);
        if (n < 0 || (size_t)n != size || memcmp(enc, copy, size) != 0)
            fail("an accepted journal record does not re-encode to itself");
    }
    free(copy);
    return 0;
}
