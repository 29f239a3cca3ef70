/* Differential test of the event parser's fast path (event_parse_fast) against the jansson path
 * (event_parse_payload_jansson): 30,000 generated payloads (valid events, every field replaced by
 * tricky values of every JSON kind, missing, duplicate and unknown fields, whitespace, arrays of
 * 0-5 items under various batch caps, escapes, UTF-8, truncation and stray bytes). For each one
 * event_parse_payload must produce exactly the jansson path's callbacks (every event field, every
 * reason, detail and offending text, in order), and whenever the fast path accepts a payload it
 * must have delivered exactly what jansson delivers, with no invalid item. Then the direct JSON
 * text of 20,000 random events against jansson's dump of event_to_json. Fixed seed. */
#include "event.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "tap.h"

static uint64_t rng = 0x853C49E6748FEA9BULL;
static uint32_t pick(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)((rng >> 33) % n);
}

/* An amount that exercises the exact "%.17g" path of event_json_append: whole cents, any finite
 * double from a random bit pattern, an odd multiple of 2^-k (its decimal expansion can end
 * exactly half-way between two 17-digit results), a neighbour of a power of 2 or 10, a small
 * value. */
static double random_amount(void)
{
    uint64_t bits =
        ((uint64_t)pick(1u << 31) << 32 | pick(1u << 31) << 1 | pick(2)) & 0x7fefffffffffffffull;
    double power = ldexp(1.0, (int)pick(54));
    switch (pick(6)) {
    case 0:
        return (double)pick(100000000) / 100;
    case 1: {
        double d;
        memcpy(&d, &bits, sizeof d);
        return d;
    }
    case 2:
        return (double)(1 + pick(1000)) + ldexp((double)(2 * pick(1u << 20) + 1), -(int)pick(53));
    case 3:
        return nextafter(pick(2) ? power : pow(10, pick(16)), pick(2) ? 0 : INFINITY);
    case 4:
        return ldexp((double)pick(1u << 30), -(int)pick(80));
    default:
        return 9007199254740992.0 - (double)pick(3);
    }
}

/* A transcript of every callback, byte for byte comparable. */
static void on_valid(void *ctx, const struct event *ev)
{
    uint64_t bits;
    memcpy(&bits, &ev->amount, sizeof bits);
    buf_printf(ctx, "V|%llu|%016llx|%d:%lld|%d:%lld|%s|%s|%s|%s\n", (unsigned long long)ev->txid,
               (unsigned long long)bits, ev->has_type, (long long)ev->type, ev->has_branch,
               (long long)ev->branch, ev->account, ev->account_dest, ev->date, ev->description);
}

static void on_invalid(void *ctx, enum event_invalid reason, const char *detail, const char *text,
                       size_t text_len)
{
    buf_printf(ctx, "I|%s|%s|", event_invalid_name(reason), detail);
    buf_append(ctx, text, text_len);
    buf_append(ctx, "\n", 1);
}

static const char *const keys[] = {"transactionId", "accountOrigin", "accountDestination",
                                   "amount",        "type",          "branch",
                                   "date",          "description"};
static const char *const good[] = {"3022681",
                                   "\"201164\"",
                                   "\"200868\"",
                                   "855.17",
                                   "2",
                                   "41",
                                   "\"2023-04-20 02:00:00.000000\"",
                                   "\"Transaction 22681\""};
static const char *const values[] = {
    "0",
    "1",
    "42",
    "-1",
    "-0",
    "007",
    "123456789012345678",
    "1234567890123456789",
    "9223372036854775807",
    "18446744073709551615",
    "99999999999999999999",
    "1.5",
    "0.1",
    "855.17",
    "1e3",
    "1E-2",
    "2.",
    "-.5",
    ".5",
    "0.000",
    "123.456789012345678",
    "1234567890.123456",
    "3.0",
    "1e400",
    "100.10",
    "0.30000000000000004",
    "4503599627370497.5",
    "\"\"",
    "\"200001\"",
    "\"a\"",
    "\"12a\"",
    "\" 12\"",
    "\"-12\"",
    "\"2023-04-20\"",
    "\"0123456789012345678901234567890123456789012345678901234567890123\"",
    "\"01234567890123456789012345678901234567890123456789012345678901234\"",
    "\"01234567890123456789012345678901234567890\"",
    "\"a\\\"b\"",
    "\"\\u00e9\"",
    "\"caf\xc3\xa9\"",
    "\"\xff\"",
    "\"tab\there\"",
    "\"00000000000000000001\"",
    "\"0000000000000000001\"",
    "\"18446744073709551616\"",
    "\"9223372036854775807\"",
    "\"9223372036854775808\"",
    "\"123456789012345678\"",
    "null",
    "true",
    "false",
    "{}",
    "[]",
    "[1]",
    "{\"a\":1}",
    "\"x\x7fy\""};
static const char *const spaces[] = {"", "", "", " ", "\n", "\t ", "\r\n  "};

static void add_ws(struct buf *b)
{
    buf_printf(b, "%s", spaces[pick(7)]);
}

static void add_object(struct buf *b)
{
    buf_append(b, "{", 1);
    add_ws(b);
    int first = 1;
    for (int k = 0; k < 8; k++) {
        uint32_t r = pick(100);
        if (r < 6 || (k == 2 && r < 30))
            continue; /* missing field */
        int copies = r >= 98 ? 2 : 1;
        for (int c = 0; c < copies; c++) {
            if (!first)
                buf_append(b, ",", 1);
            add_ws(b);
            first = 0;
            const char *v = pick(100) < 8 ? values[pick(sizeof values / sizeof *values)] : good[k];
            if (k == 7 && pick(20) == 0) /* a description over the 200-byte cut */
                v = "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "aaa"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "a"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                    "a"
                    "\"";
            buf_printf(b, "\"%s\"", keys[k]);
            add_ws(b);
            buf_append(b, ":", 1);
            add_ws(b);
            buf_printf(b, "%s", v);
            add_ws(b);
        }
    }
    if (pick(30) == 0)
        buf_printf(b, "%s\"extra\":%s", first ? "" : ",",
                   values[pick(sizeof values / sizeof *values)]);
    buf_append(b, "}", 1);
}

static void make_payload(struct buf *b, size_t *max_batch)
{
    buf_reset(b);
    *max_batch = pick(4) == 0 ? pick(6) : 1000;
    add_ws(b);
    if (pick(3) == 0) {
        add_object(b);
    } else {
        uint32_t n = pick(6);
        buf_append(b, "[", 1);
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                buf_append(b, ",", 1);
            add_ws(b);
            add_object(b);
        }
        add_ws(b);
        buf_append(b, "]", 1);
    }
    add_ws(b);
    uint32_t m = pick(40);
    if (m == 0 && b->len > 1)
        b->len = pick((uint32_t)b->len); /* truncated */
    else if (m == 1 && b->len > 0)
        b->data[pick((uint32_t)b->len)] =
            (char)"x,]}:\"\\{[ 0-.e\x01\xc3"[pick(17)]; /* a stray byte */
    else if (m == 2)
        buf_append(b, pick(2) ? "x" : ",", 1);
}

/* A random event for the JSON text test: ASCII with every kind of character to escape, sometimes
 * UTF-8, invalid UTF-8, empty optionals, negative and huge numbers, amounts of every magnitude. */
static void random_event(struct event *ev)
{
    static const char *const strs[] = {"",
                                       "200001",
                                       "a\"b\\c",
                                       "tab\tnl\ncr\rff\fbs\b",
                                       "\x01\x1f\x7f",
                                       "caf\xc3\xa9",
                                       "\xff\xfe",
                                       "/slash/",
                                       "2023-04-20 02:00:00.000000",
                                       "\x0b vt"};
    static const double amounts[] = {0,
                                     1,
                                     855.17,
                                     0.1,
                                     1e20,
                                     1e-5,
                                     123456789012345678.0,
                                     5e-324,
                                     1.7976931348623157e308,
                                     100,
                                     4503599627370496.5};
    memset(ev, 0, sizeof *ev);
    ev->txid = pick(4) == 0 ? UINT64_MAX - pick(1000) : pick(1000000);
    snprintf(ev->account, sizeof ev->account, "%s", pick(5) ? "201164" : strs[1 + pick(9)]);
    snprintf(ev->account_dest, sizeof ev->account_dest, "%s", strs[pick(10)]);
    snprintf(ev->date, sizeof ev->date, "%s", strs[pick(10)]);
    snprintf(ev->description, sizeof ev->description, "%s", strs[pick(10)]);
    ev->amount = pick(3) ? amounts[pick(11)] : (double)pick(100000000) / (1 + pick(997));
    ev->has_type = pick(2);
    ev->type = pick(2) ? (int64_t)pick(100) : INT64_MIN + pick(5);
    ev->has_branch = pick(2);
    ev->branch = pick(2) ? -(int64_t)pick(100) : INT64_MAX - pick(5);
}

int main(void)
{
    struct buf payload, fast, full, ref;
    buf_init(&payload, 1 << 20);
    buf_init(&fast, 1 << 20);
    buf_init(&full, 1 << 20);
    buf_init(&ref, 1 << 20);
    int mismatched = 0, fast_wrong = 0, fast_taken = 0, invalid_seen = 0;
    for (int i = 0; i < 30000; i++) {
        size_t max_batch;
        make_payload(&payload, &max_batch);
        buf_reset(&fast);
        buf_reset(&full);
        buf_reset(&ref);
        event_parse_payload_jansson(payload.data, payload.len, max_batch, on_valid, on_invalid,
                                    &ref);
        event_parse_payload(payload.data, payload.len, max_batch, on_valid, on_invalid, &full);
        int n = event_parse_fast(payload.data, payload.len, max_batch, on_valid, &fast);
        int ref_invalid = ref.len > 0 && (ref.data[0] == 'I' || strstr(ref.data, "\nI|") != NULL);
        invalid_seen += ref_invalid;
        if (full.len != ref.len || memcmp(full.data, ref.data, ref.len) != 0) {
            if (mismatched++ < 3)
                printf("# payload %.*s\n#  jansson: %.*s#  payload: %.*s", (int)payload.len,
                       payload.data, (int)ref.len, ref.data, (int)full.len, full.data);
        }
        if (n >= 0) {
            fast_taken++;
            if (ref_invalid || fast.len != ref.len || memcmp(fast.data, ref.data, ref.len) != 0) {
                if (fast_wrong++ < 3)
                    printf("# fast accepted %.*s\n#  jansson: %.*s#  fast: %.*s", (int)payload.len,
                           payload.data, (int)ref.len, ref.data, (int)fast.len, fast.data);
            }
        } else if (fast.len != 0) {
            fast_wrong++;
        }
    }
    is_int(mismatched, 0, "event_parse_payload gives exactly the jansson path's callbacks");
    is_int(fast_wrong, 0, "the fast path delivers exactly what jansson does, or nothing");
    ok(fast_taken > 3000, "the fast path took %d of 30000 payloads", fast_taken);
    ok(invalid_seen > 3000, "jansson refused items in %d payloads", invalid_seen);

    /* The common shapes take the fast path. */
    static const char *const plain[] = {
        "{\"transactionId\":3022681,\"accountOrigin\":\"201164\",\"accountDestination\":"
        "\"200868\",\"amount\":855.17,\"type\":2,\"branch\":41,\"date\":\"2023-04-20 "
        "02:00:00.000000\",\"description\":\"Transaction 22681\"}",
        "[{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":10.5},"
        "{\"transactionId\":\"2\",\"accountOrigin\":7,\"amount\":0}]",
        " { \"amount\" : 1 , \"accountOrigin\" : \"x\" , \"transactionId\" : 0 } "};
    int taken = 0;
    for (int i = 0; i < 3; i++)
        taken += event_parse_fast(plain[i], strlen(plain[i]), 1000, NULL, NULL) > 0;
    is_int(taken, 3, "replay's shape, a mixed batch and spaced-out fields take the fast path");
    /* The stored document of a transaction: event_json_append against jansson's dump (each
     * document followed by its NUL, as the sink separates a flush's documents). */
    struct buf text;
    buf_init(&text, 1 << 16);
    int text_bad = 0;
    for (int i = 0; i < 20000; i++) {
        struct event ev;
        random_event(&ev);
        json_t *doc = event_to_json(&ev);
        char *want = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        buf_reset(&text);
        const char *got = event_json_append(&ev, &text) == 0 ? text.data : NULL;
        if ((want == NULL) != (got == NULL) || (want && strcmp(want, got) != 0) ||
            (got && text.len != strlen(got) + 1)) {
            if (text_bad++ < 3)
                printf("# jansson %s\n# direct  %s\n", want ? want : "NULL", got ? got : "NULL");
        }
        free(want);
    }
    is_int(text_bad, 0, "event_json_append is byte for byte jansson's compact dump (20000 events)");
    int amount_bad = 0;
    for (int i = 0; i < 300000; i++) {
        struct event ev = {.txid = 1, .account = "201164"};
        ev.amount = random_amount();
        json_t *doc = event_to_json(&ev);
        char *want = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        buf_reset(&text);
        event_json_append(&ev, &text);
        if ((text.data == NULL || strcmp(want, text.data) != 0) && amount_bad++ < 3)
            printf("# jansson %s\n# direct  %s\n", want, text.data ? text.data : "NULL");
        free(want);
    }
    is_int(amount_bad, 0, "amounts are written as jansson's %%.17g, byte for byte (300000 values)");
    buf_cleanup(&text);
    buf_cleanup(&payload);
    buf_cleanup(&fast);
    buf_cleanup(&full);
    buf_cleanup(&ref);
    return done_testing();
}
