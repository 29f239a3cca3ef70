/* Unit tests for pipeline/event.c: every class of malformed payload (table-driven), the accepted
 * forms of each field, batch handling, the depth guard, UTF-8-safe truncation, the JSON form and
 * the binary journal codec (random round trips with a fixed seed, every truncation refused). */
#include "event.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "tap.h"

#define MAX_SEEN 16

struct seen_invalid {
    enum event_invalid reason;
    char detail[256];
    char text[512];
    size_t text_len;
};

struct collector {
    int nvalid;
    struct event valid[MAX_SEEN];
    int ninvalid;
    struct seen_invalid invalid[MAX_SEEN];
    char order[2 * MAX_SEEN + 1]; /* 'v' or the reason letter per callback, in call order */
};

static char reason_letter(enum event_invalid r)
{
    static const char letters[EVI__COUNT] = {'J', 'O', 'T', 'A', 'M', 'F', 'L'};
    return (int)r >= 0 && r < EVI__COUNT ? letters[r] : '?';
}

static void on_valid(void *ctx, const struct event *ev)
{
    struct collector *c = ctx;
    if (c->nvalid < MAX_SEEN)
        c->valid[c->nvalid] = *ev;
    c->nvalid++;
    if (strlen(c->order) < sizeof(c->order) - 1)
        c->order[strlen(c->order)] = 'v';
}

static void on_invalid(void *ctx, enum event_invalid reason, const char *detail, const char *text,
                       size_t text_len)
{
    struct collector *c = ctx;
    if (c->ninvalid < MAX_SEEN) {
        struct seen_invalid *s = &c->invalid[c->ninvalid];
        size_t n = text_len < sizeof(s->text) - 1 ? text_len : sizeof(s->text) - 1;
        s->reason = reason;
        snprintf(s->detail, sizeof(s->detail), "%s", detail);
        memcpy(s->text, text, n);
        s->text[n] = '\0';
        s->text_len = text_len;
    }
    c->ninvalid++;
    if (strlen(c->order) < sizeof(c->order) - 1)
        c->order[strlen(c->order)] = reason_letter(reason);
}

static int parse(struct collector *c, const char *payload, size_t max_batch)
{
    memset(c, 0, sizeof(*c));
    return event_parse_payload(payload, strlen(payload), max_batch, on_valid, on_invalid, c);
}

/* ---------------------------------------------------------------------------------------------
 * Table of payloads: expected callback order ('v' valid, letters = reasons) and the word the
 * first invalid detail must contain (NULL: not checked).
 * ------------------------------------------------------------------------------------------- */

#define GOOD "{\"transactionId\":1,\"accountOrigin\":\"200001\",\"amount\":10.5}"

struct pcase {
    const char *name;
    const char *payload;
    size_t max_batch;
    const char *order;
    const char *detail_has;
};

static const struct pcase cases[] = {
    /* not JSON at all, or truncated */
    {"empty payload", "", 10, "J", "invalid JSON"},
    {"whitespace only", "   ", 10, "J", "invalid JSON"},
    {"truncated object", "{\"transactionId\":1,", 10, "J", "invalid JSON"},
    {"truncated string", "{\"transactionId\":\"12", 10, "J", NULL},
    {"truncated array", "[" GOOD ",", 10, "J", NULL},
    {"single quotes", "{'transactionId':1}", 10, "J", NULL},
    {"trailing garbage", GOOD "x", 10, "J", NULL},
    {"two documents", GOOD GOOD, 10, "J", NULL},
    {"bare word", "nul", 10, "J", NULL},
    {"invalid utf-8", "{\"transactionId\":1,\"accountOrigin\":\"\xff\",\"amount\":1}", 10, "J",
     NULL},
    {"escaped NUL in string", "{\"transactionId\":1,\"accountOrigin\":\"a\\u0000b\",\"amount\":1}",
     10, "J", NULL},
    {"duplicate key refused",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"amount\":99999}", 10, "J",
     "duplicate"},
    {"amount 1e400 overflows a double",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1e400}", 10, "J", NULL},
    {"amount -1e400", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":-1e400}", 10, "J",
     NULL},
    {"NaN literal", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":NaN}", 10, "J", NULL},
    {"Infinity literal", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":Infinity}", 10,
     "J", NULL},
    {"txid integer beyond int64",
     "{\"transactionId\":18446744073709551616,\"accountOrigin\":\"a\",\"amount\":1}", 10, "J",
     NULL},

    /* top level of the wrong kind */
    {"top-level number", "42", 10, "O", "object"},
    {"top-level string", "\"hello\"", 10, "O", "object"},
    {"top-level null", "null", 10, "O", "object"},
    {"top-level true", "true", 10, "O", "object"},
    {"array of number", "[1]", 10, "O", "object"},
    {"array of array", "[[]]", 10, "O", "object"},

    /* batches */
    {"empty array", "[]", 10, "", NULL},
    {"empty array with batch cap 0", "[]", 0, "", NULL},
    {"one good object", GOOD, 10, "v", NULL},
    {"array of one", "[" GOOD "]", 1, "v", NULL},
    {"mixed good and bad items",
     "[" GOOD ",null,{\"transactionId\":2,\"accountOrigin\":\"a\",\"amount\":-1}," GOOD ",7]", 10,
     "vOMvO", "object"},
    {"batch over the cap", "[" GOOD "," GOOD "," GOOD "]", 2, "L", "limit"},
    {"batch exactly at the cap", "[" GOOD "," GOOD "]", 2, "vv", NULL},

    /* transactionId */
    {"txid missing", "{\"accountOrigin\":\"a\",\"amount\":1}", 10, "T", "transactionId"},
    {"txid null", "{\"transactionId\":null,\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid negative", "{\"transactionId\":-1,\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid real", "{\"transactionId\":1.5,\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid integral real", "{\"transactionId\":3.0,\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid exponent", "{\"transactionId\":1e3,\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid bool", "{\"transactionId\":true,\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid object", "{\"transactionId\":{},\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid empty string", "{\"transactionId\":\"\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid 12a", "{\"transactionId\":\"12a\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid leading space", "{\"transactionId\":\" 12\",\"accountOrigin\":\"a\",\"amount\":1}", 10,
     "T", "transactionId"},
    {"txid trailing space", "{\"transactionId\":\"12 \",\"accountOrigin\":\"a\",\"amount\":1}", 10,
     "T", "transactionId"},
    {"txid plus sign", "{\"transactionId\":\"+12\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid minus sign", "{\"transactionId\":\"-12\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid decimal string", "{\"transactionId\":\"1.0\",\"accountOrigin\":\"a\",\"amount\":1}", 10,
     "T", "transactionId"},
    {"txid string 2^64",
     "{\"transactionId\":\"18446744073709551616\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "18446744073709551615"},
    {"txid string 21 digits",
     "{\"transactionId\":\"100000000000000000000\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid 21 chars with leading zeros",
     "{\"transactionId\":\"000000000000000000001\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "T",
     "transactionId"},
    {"txid 20 chars with leading zeros accepted",
     "{\"transactionId\":\"00000000000000000001\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "v",
     NULL},
    {"txid string 2^64-1 accepted",
     "{\"transactionId\":\"18446744073709551615\",\"accountOrigin\":\"a\",\"amount\":1}", 10, "v",
     NULL},

    /* accountOrigin */
    {"account missing", "{\"transactionId\":1,\"amount\":1}", 10, "A", "accountOrigin"},
    {"account null", "{\"transactionId\":1,\"accountOrigin\":null,\"amount\":1}", 10, "A",
     "accountOrigin"},
    {"account empty", "{\"transactionId\":1,\"accountOrigin\":\"\",\"amount\":1}", 10, "A",
     "accountOrigin"},
    {"account negative integer", "{\"transactionId\":1,\"accountOrigin\":-5,\"amount\":1}", 10, "A",
     "accountOrigin"},
    {"account real", "{\"transactionId\":1,\"accountOrigin\":2001.5,\"amount\":1}", 10, "A",
     "accountOrigin"},
    {"account bool", "{\"transactionId\":1,\"accountOrigin\":false,\"amount\":1}", 10, "A",
     "accountOrigin"},
    {"account array", "{\"transactionId\":1,\"accountOrigin\":[\"a\"],\"amount\":1}", 10, "A",
     "accountOrigin"},
    {"account 65 bytes",
     "{\"transactionId\":1,\"accountOrigin\":"
     "\"12345678901234567890123456789012345678901234567890123456789012345\",\"amount\":1}",
     10, "A", "64"},
    {"account 64 bytes accepted",
     "{\"transactionId\":1,\"accountOrigin\":"
     "\"1234567890123456789012345678901234567890123456789012345678901234\",\"amount\":1}",
     10, "v", NULL},
    {"account control char", "{\"transactionId\":1,\"accountOrigin\":\"20\\u00010\",\"amount\":1}",
     10, "A", "control"},
    {"account tab", "{\"transactionId\":1,\"accountOrigin\":\"20\\t0\",\"amount\":1}", 10, "A",
     "control"},
    {"account DEL", "{\"transactionId\":1,\"accountOrigin\":\"20\\u007f\",\"amount\":1}", 10, "A",
     "control"},

    /* amount */
    {"amount missing", "{\"transactionId\":1,\"accountOrigin\":\"a\"}", 10, "M", "amount"},
    {"amount null", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":null}", 10, "M",
     "finite number >= 0"},
    {"amount string", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":\"12\"}", 10, "M",
     "finite number >= 0"},
    {"amount bool", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":true}", 10, "M",
     "amount"},
    {"amount object", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":{}}", 10, "M",
     "amount"},
    {"amount negative", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":-0.01}", 10, "M",
     "amount"},
    {"amount negative integer", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":-3}", 10,
     "M", "amount"},
    {"amount zero accepted", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":0}", 10, "v",
     NULL},

    /* optional fields of the wrong type */
    {"destination real",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"accountDestination\":1.5}", 10,
     "F", "accountDestination"},
    {"destination array",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"accountDestination\":[]}", 10,
     "F", "accountDestination"},
    {"destination empty",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"accountDestination\":\"\"}", 10,
     "F", "accountDestination"},
    {"type real", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"type\":2.5}", 10,
     "F", "type"},
    {"type word", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"type\":\"x\"}", 10,
     "F", "type"},
    {"type bool", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"type\":true}", 10,
     "F", "type"},
    {"branch object", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"branch\":{}}",
     10, "F", "branch"},
    {"branch digit string over int64",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"branch\":"
     "\"9223372036854775808\"}",
     10, "F", "branch"},
    {"date number", "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"date\":5}", 10,
     "F", "date"},
    {"date 41 bytes",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,"
     "\"date\":\"12345678901234567890123456789012345678901\"}",
     10, "F", "date"},
    {"description number",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"description\":5}", 10, "F",
     "description"},
    {"null optionals are absent",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"accountDestination\":null,"
     "\"type\":null,\"branch\":null,\"date\":null,\"description\":null}",
     10, "v", NULL},
    {"unknown fields ignored",
     "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"extra\":{\"x\":[1,2]},"
     "\"zzz\":null}",
     10, "v", NULL},
    {"first error wins: txid before amount",
     "{\"transactionId\":-1,\"accountOrigin\":\"a\",\"amount\":-1}", 10, "T", NULL},
};

static void test_table(void)
{
    struct collector c;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *k = &cases[i];
        int n = parse(&c, k->payload, k->max_batch);
        int want_valid = 0;
        for (const char *p = k->order; *p; p++)
            want_valid += *p == 'v';
        ok(strcmp(c.order, k->order) == 0 && n == want_valid && c.nvalid == want_valid,
           "%s: callbacks \"%s\" (want \"%s\"), returned %d", k->name, c.order, k->order, n);
        if (k->detail_has != NULL)
            ok(c.ninvalid > 0 && strstr(c.invalid[0].detail, k->detail_has) != NULL,
               "%s: detail \"%s\" mentions \"%s\"", k->name,
               c.ninvalid > 0 ? c.invalid[0].detail : "", k->detail_has);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Offending text, callbacks, accepted forms
 * ------------------------------------------------------------------------------------------- */

static void test_invalid_text(void)
{
    struct collector c;
    const char *bad = "{\"transactionId\":1,";
    const char *big = "[" GOOD "," GOOD "]";

    parse(&c, bad, 10);
    ok(c.ninvalid == 1 && c.invalid[0].text_len == strlen(bad) &&
           strcmp(c.invalid[0].text, bad) == 0,
       "bad JSON: text is the raw payload");
    parse(&c, big, 1);
    ok(c.ninvalid == 1 && strcmp(c.invalid[0].text, big) == 0,
       "too large: text is the raw payload");
    parse(&c, "[ {\"transactionId\" : -1 , \"amount\" : 1} , 5 ]", 10);
    ok(c.ninvalid == 2 && strcmp(c.invalid[0].text, "{\"transactionId\":-1,\"amount\":1}") == 0,
       "invalid item: text is the item re-serialized compactly (%s)", c.invalid[0].text);
    ok(c.ninvalid == 2 && strcmp(c.invalid[1].text, "5") == 0 && c.invalid[1].text_len == 1,
       "scalar item: text is its JSON");
    parse(&c, "\"str\"", 10);
    ok(c.ninvalid == 1 && strcmp(c.invalid[0].text, "\"str\"") == 0, "top-level scalar text");

    /* callbacks are optional */
    is_int(event_parse_payload("[" GOOD ",1]", strlen("[" GOOD ",1]"), 10, NULL, NULL, NULL), 1,
           "NULL callbacks: still counts the valid event");
    /* the payload need not be NUL-terminated: only len bytes are read */
    {
        char buf[sizeof(GOOD) + 8];
        memcpy(buf, GOOD, strlen(GOOD));
        memcpy(buf + strlen(GOOD), "garbage!", 8);
        memset(&c, 0, sizeof(c));
        is_int(event_parse_payload(buf, strlen(GOOD), 10, on_valid, on_invalid, &c), 1,
               "payload bounded by len, not by a terminator");
    }
}

static void test_forms(void)
{
    struct collector c;
    const struct event *e = &c.valid[0];

    parse(&c,
          "{\"transactionId\":3022681,\"accountOrigin\":\"201164\",\"accountDestination\":"
          "\"200868\",\"amount\":855.17,\"type\":2,\"branch\":41,\"date\":\"2023-04-20 "
          "02:00:00.000000\",\"description\":\"Transaction 22681\"}",
          10);
    ok(c.nvalid == 1, "seed example accepted");
    ok(e->txid == 3022681 && strcmp(e->account, "201164") == 0 &&
           strcmp(e->account_dest, "200868") == 0 && e->amount == 855.17 && e->has_type &&
           e->type == 2 && e->has_branch && e->branch == 41 &&
           strcmp(e->date, "2023-04-20 02:00:00.000000") == 0 &&
           strcmp(e->description, "Transaction 22681") == 0 && e->ingested_ms == 0,
       "seed example: every field");

    parse(&c,
          "{\"transactionId\":\"0042\",\"accountOrigin\":200430,\"accountDestination\":7,"
          "\"amount\":12,\"type\":\"3\",\"branch\":\"0\"}",
          10);
    ok(c.nvalid == 1 && e->txid == 42 && strcmp(e->account, "200430") == 0 &&
           strcmp(e->account_dest, "7") == 0 && e->amount == 12.0 && e->has_type && e->type == 3 &&
           e->has_branch && e->branch == 0,
       "digit-string txid, integer accounts, integer amount, digit-string type/branch");

    parse(&c, "{\"transactionId\":\"18446744073709551615\",\"accountOrigin\":0,\"amount\":-0.0}",
          10);
    ok(c.nvalid == 1 && e->txid == UINT64_MAX && strcmp(e->account, "0") == 0 && e->amount == 0 &&
           !signbit(e->amount) && !e->has_type && !e->has_branch && e->account_dest[0] == '\0' &&
           e->date[0] == '\0' && e->description[0] == '\0',
       "max txid, account 0, -0.0 amount folded to +0, absent optionals empty");

    parse(&c,
          "{\"transactionId\":9223372036854775807,\"accountOrigin\":\"x\",\"amount\":1e300,"
          "\"type\":-4}",
          10);
    ok(c.nvalid == 1 && e->txid == 9223372036854775807ULL && e->amount == 1e300 && e->type == -4,
       "largest integer txid, huge finite amount, negative integer type");
}

static void test_description_truncation(void)
{
    struct collector c;
    char payload[2048];
    char desc[600];
    size_t n = 0;

    /* 300 ASCII bytes -> first 200 */
    memset(desc, 'x', 300);
    desc[300] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"description\":\"%s\"}",
             desc);
    parse(&c, payload, 10);
    ok(c.nvalid == 1 && strlen(c.valid[0].description) == EVENT_DESC_MAX &&
           strspn(c.valid[0].description, "x") == EVENT_DESC_MAX,
       "300-byte description truncated to %d bytes", EVENT_DESC_MAX);

    /* 199 ASCII bytes then a 2-byte character that would straddle the limit */
    memset(desc, 'y', 199);
    memcpy(desc + 199, "\xc3\xa9zz", 4);
    desc[203] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"description\":\"%s\"}",
             desc);
    parse(&c, payload, 10);
    ok(c.nvalid == 1 && strlen(c.valid[0].description) == 199,
       "2-byte character straddling the limit dropped whole (len %zu)",
       strlen(c.valid[0].description));

    /* 4-byte characters: 50 of them are exactly 200 bytes, 51 are cut back to 200 */
    for (int i = 0; i < 60; i++) {
        memcpy(desc + n, "\xf0\x9f\x92\xb3", 4);
        n += 4;
    }
    desc[n] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"description\":\"%s\"}",
             desc);
    parse(&c, payload, 10);
    ok(c.nvalid == 1 && strlen(c.valid[0].description) == 200 &&
           memcmp(c.valid[0].description, desc, 200) == 0,
       "4-byte characters truncated on a boundary");
    /* 1 ASCII byte then 4-byte characters: the cut falls inside one, so 197 bytes remain */
    desc[0] = 'a';
    n = 1;
    for (int i = 0; i < 60; i++) {
        memcpy(desc + n, "\xf0\x9f\x92\xb3", 4);
        n += 4;
    }
    desc[n] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,\"description\":\"%s\"}",
             desc);
    parse(&c, payload, 10);
    ok(c.nvalid == 1 && strlen(c.valid[0].description) == 197,
       "cut inside a 4-byte character backs up to its start (len %zu)",
       strlen(c.valid[0].description));

    /* a 100 kB description is still accepted */
    {
        size_t big = 100000;
        size_t plen = big + 128;
        char *p = malloc(plen);
        int off = snprintf(p, plen,
                           "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,"
                           "\"description\":\"");
        memset(p + off, 'z', big);
        memcpy(p + off + big, "\"}", 3);
        parse(&c, p, 10);
        ok(c.nvalid == 1 && strlen(c.valid[0].description) == EVENT_DESC_MAX,
           "100 kB description accepted and truncated");
        free(p);
    }
}

static void test_depth(void)
{
    struct collector c;
    size_t depth = 10000;
    char *p = malloc(2 * depth + 1);
    char buf[1024];
    int off;

    memset(p, '[', depth);
    memset(p + depth, ']', depth);
    p[2 * depth] = '\0';
    parse(&c, p, 10);
    ok(strcmp(c.order, "J") == 0 && strstr(c.invalid[0].detail, "nesting") != NULL,
       "10000 nested arrays refused as bad JSON before parsing");
    memset(p, '{', depth); /* unbalanced and deep: refused, never recursed */
    p[depth] = '\0';
    parse(&c, p, 10);
    ok(strcmp(c.order, "J") == 0, "10000 open braces refused");
    free(p);

    /* object (1) + 31 arrays = 32 levels: accepted; one more is refused */
    off = snprintf(buf, sizeof(buf),
                   "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,"
                   "\"x\":");
    for (int i = 0; i < 31; i++)
        buf[off++] = '[';
    for (int i = 0; i < 31; i++)
        buf[off++] = ']';
    buf[off++] = '}';
    buf[off] = '\0';
    parse(&c, buf, 10);
    ok(strcmp(c.order, "v") == 0, "depth 32 accepted");
    memmove(buf + 1, buf, strlen(buf) + 1);
    buf[0] = '[';
    memcpy(buf + strlen(buf), "]", 2);
    parse(&c, buf, 10);
    ok(strcmp(c.order, "J") == 0, "depth 33 refused");

    /* brackets inside strings (with escaped quotes) do not count */
    off = snprintf(buf, sizeof(buf),
                   "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,"
                   "\"description\":\"\\\"");
    for (int i = 0; i < 100; i++)
        buf[off++] = '[';
    buf[off] = '\0';
    snprintf(buf + off, sizeof(buf) - (size_t)off, "\"}");
    parse(&c, buf, 10);
    ok(strcmp(c.order, "v") == 0 && strlen(c.valid[0].description) == 101,
       "brackets inside strings ignored by the depth guard");
}

/* Appends n copies of item, comma-separated, to p at off; returns the new offset. */
static size_t repeat_items(char *p, size_t off, const char *item, size_t n)
{
    size_t len = strlen(item);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            p[off++] = ',';
        memcpy(p + off, item, len);
        off += len;
    }
    p[off] = '\0';
    return off;
}

/* The value budget: 64 values per event of the batch limit, counted before parsing (commas
 * inside strings do not count), wherever the values sit. */
static void test_value_budget(void)
{
    struct collector c;
    const char *ev = "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1}";
    char *p = malloc(2000000);
    /* 10 events of 3 members: 29 commas, well inside 10 * 64 */
    p[0] = '[';
    size_t off = repeat_items(p, 1, ev, 10);
    memcpy(p + off, "]", 2);
    parse(&c, p, 10);
    ok(c.nvalid == 10 && c.ninvalid == 0, "a full batch is inside the budget");
    /* one item holding 640 values (640 commas): over the budget of a batch of 10 */
    off = (size_t)snprintf(p, 200,
                           "[{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,"
                           "\"x\":[");
    off = repeat_items(p, off, "0", 640);
    memcpy(p + off, "]}]", 4);
    parse(&c, p, 10);
    ok(strcmp(c.order, "L") == 0 && strstr(c.invalid[0].detail, "JSON values") != NULL,
       "640 values in one item of a batch of 10: too large, before parsing (%s)",
       c.ninvalid ? c.invalid[0].detail : "");
    /* half a million values at the top level: refused the same way */
    p[0] = '[';
    off = repeat_items(p, 1, "0", 500000);
    memcpy(p + off, "]", 2);
    parse(&c, p, 1000);
    ok(strcmp(c.order, "L") == 0, "500000 tiny values refused as too large");
    /* commas inside a string are text */
    off = (size_t)snprintf(p, 200,
                           "{\"transactionId\":1,\"accountOrigin\":\"a\",\"amount\":1,"
                           "\"description\":\"");
    memset(p + off, ',', 5000);
    memcpy(p + off + 5000, "\"}", 3);
    parse(&c, p, 1);
    ok(c.nvalid == 1, "commas inside strings do not count");
    free(p);
}

static void test_from_json_direct(void)
{
    struct event ev;
    enum event_invalid r = EVI__COUNT;
    char detail[64];
    json_t *arr = json_array();
    json_t *obj = json_pack("{s:I,s:s,s:f}", "transactionId", (json_int_t)5, "accountOrigin", "acc",
                            "amount", 2.5);

    is_int(event_from_json(arr, &ev, &r, detail, sizeof(detail)), ERR_INVAL,
           "from_json: array refused");
    is_int(r, EVI_NOT_OBJECT, "from_json: reason not_object");
    is_int(event_from_json(obj, &ev, &r, detail, sizeof(detail)), 0, "from_json: valid object");
    ok(ev.txid == 5 && strcmp(ev.account, "acc") == 0 && ev.amount == 2.5, "from_json: fields");
    json_object_set_new(obj, "amount", json_string("x"));
    is_int(event_from_json(obj, &ev, NULL, NULL, 0), ERR_INVAL,
           "from_json: NULL reason and detail allowed");
    is_int(event_from_json(obj, &ev, &r, detail, 8), ERR_INVAL, "from_json: short detail buffer");
    ok(r == EVI_AMOUNT && strlen(detail) == 7, "from_json: detail truncated to its buffer");
    json_decref(obj);
    json_decref(arr);
}

static void test_names(void)
{
    static const char *names[EVI__COUNT] = {"bad_json",       "not_object", "transaction_id",
                                            "account_origin", "amount",     "field_type",
                                            "too_large"};
    static const enum metric_counter metrics[EVI__COUNT] = {
        M_INVALID_BAD_JSON, M_INVALID_NOT_OBJECT, M_INVALID_TXID,     M_INVALID_ACCOUNT,
        M_INVALID_AMOUNT,   M_INVALID_FIELD,      M_INVALID_TOO_LARGE};

    for (int i = 0; i < EVI__COUNT; i++) {
        ok(strcmp(event_invalid_name((enum event_invalid)i), names[i]) == 0, "name of reason %d",
           i);
        is_int(event_invalid_metric((enum event_invalid)i), metrics[i], "metric of reason %d", i);
    }
    ok(strcmp(event_invalid_name(EVI__COUNT), "unknown") == 0, "name out of range");
}

/* ---------------------------------------------------------------------------------------------
 * JSON form
 * ------------------------------------------------------------------------------------------- */

static void test_to_json(void)
{
    struct event ev;
    struct event back;
    json_t *j;
    enum event_invalid r;

    memset(&ev, 0, sizeof(ev));
    ev.txid = 3029455;
    ev.amount = 100.0;
    snprintf(ev.account, sizeof(ev.account), "200430");
    j = event_to_json(&ev);
    ok(json_is_integer(json_object_get(j, "transactionId")) &&
           json_integer_value(json_object_get(j, "transactionId")) == 3029455,
       "to_json: transactionId integer");
    ok(json_is_string(json_object_get(j, "accountOrigin")) &&
           strcmp(json_string_value(json_object_get(j, "accountOrigin")), "200430") == 0,
       "to_json: accountOrigin string");
    ok(json_is_real(json_object_get(j, "amount")) &&
           json_real_value(json_object_get(j, "amount")) == 100.0,
       "to_json: integral amount is still a real");
    ok(json_object_size(j) == 3, "to_json: absent optionals omitted (%zu keys)",
       json_object_size(j));
    json_decref(j);

    ev.has_type = true;
    ev.type = 2;
    ev.has_branch = true;
    ev.branch = 41;
    snprintf(ev.account_dest, sizeof(ev.account_dest), "200868");
    snprintf(ev.date, sizeof(ev.date), "2023-04-20 02:00:00.000000");
    snprintf(ev.description, sizeof(ev.description), "Transaction \"22681\"");
    ev.amount = 855.17;
    j = event_to_json(&ev);
    ok(json_object_size(j) == 8 && json_is_integer(json_object_get(j, "type")) &&
           json_is_integer(json_object_get(j, "branch")) &&
           json_integer_value(json_object_get(j, "branch")) == 41 &&
           json_is_string(json_object_get(j, "accountDestination")) &&
           json_is_string(json_object_get(j, "date")) &&
           json_is_string(json_object_get(j, "description")),
       "to_json: all eight camelCase fields");
    is_int(event_from_json(j, &back, &r, NULL, 0), 0, "to_json output parses back");
    ok(back.txid == ev.txid && back.amount == ev.amount && back.type == 2 && back.branch == 41 &&
           strcmp(back.description, ev.description) == 0 &&
           strcmp(back.account_dest, "200868") == 0 && strcmp(back.date, ev.date) == 0,
       "to_json -> from_json round trip");
    json_decref(j);

    ev.txid = UINT64_MAX - 1;
    j = event_to_json(&ev);
    ok(json_is_string(json_object_get(j, "transactionId")) &&
           strcmp(json_string_value(json_object_get(j, "transactionId")), "18446744073709551614") ==
               0,
       "to_json: txid above int64 as a digit string");
    ok(event_from_json(j, &back, &r, NULL, 0) == 0 && back.txid == UINT64_MAX - 1,
       "big txid round trips through JSON");
    json_decref(j);
}

/* ---------------------------------------------------------------------------------------------
 * Binary codec
 * ------------------------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL; /* fixed seed: reproducible runs */

static uint64_t rng(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void rand_str(char *out, size_t max, bool nonempty)
{
    size_t n = (size_t)(rng() % (max + 1));
    if (nonempty && n == 0)
        n = 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(1 + rng() % 255); /* any byte but NUL */
    out[n] = '\0';
}

static void rand_event(struct event *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->txid = rng();
    switch (rng() % 4) {
    case 0:
        ev->amount = 0;
        break;
    case 1:
        ev->amount = (double)(rng() % 1000000) / 100.0;
        break;
    case 2:
        ev->amount = ldexp((double)(rng() >> 11), (int)(rng() % 200) - 100);
        break;
    default:
        ev->amount = 5e-324; /* smallest subnormal */
        break;
    }
    ev->ingested_ms = (int64_t)rng();
    ev->has_type = rng() & 1;
    ev->has_branch = rng() & 1;
    ev->type = (int64_t)rng();
    ev->branch = (int64_t)rng();
    rand_str(ev->account, EVENT_ACCOUNT_MAX, true);
    rand_str(ev->account_dest, EVENT_ACCOUNT_MAX, false);
    rand_str(ev->date, EVENT_DATE_MAX, false);
    rand_str(ev->description, EVENT_DESC_MAX, false);
}

static bool events_equal(const struct event *a, const struct event *b)
{
    return a->txid == b->txid && memcmp(&a->amount, &b->amount, sizeof(double)) == 0 &&
           a->ingested_ms == b->ingested_ms && a->has_type == b->has_type &&
           a->has_branch == b->has_branch && a->type == b->type && a->branch == b->branch &&
           strcmp(a->account, b->account) == 0 && strcmp(a->account_dest, b->account_dest) == 0 &&
           strcmp(a->date, b->date) == 0 && strcmp(a->description, b->description) == 0;
}

static void test_codec_roundtrip(void)
{
    uint8_t buf[EVENT_ENCODED_MAX];
    struct event ev;
    struct event back;
    int bad_rt = 0;
    int bad_len = 0;
    int max_seen = 0;

    for (int i = 0; i < 2000; i++) {
        int n;
        rand_event(&ev);
        n = event_encode(&ev, buf, sizeof(buf));
        if (n <= 0 || n > EVENT_ENCODED_MAX) {
            bad_len++;
            continue;
        }
        if (n > max_seen)
            max_seen = n;
        memset(&back, 0xA5, sizeof(back));
        if (event_decode(buf, (size_t)n, &back) != 0 || !events_equal(&ev, &back))
            bad_rt++;
    }
    is_int(bad_len, 0, "encode: 2000 random events fit EVENT_ENCODED_MAX");
    is_int(bad_rt, 0, "encode/decode: 2000 random events round-trip exactly");

    /* the largest possible event */
    memset(&ev, 0, sizeof(ev));
    ev.amount = 1.0;
    memset(ev.account, 'a', EVENT_ACCOUNT_MAX);
    memset(ev.account_dest, 'b', EVENT_ACCOUNT_MAX);
    memset(ev.date, 'c', EVENT_DATE_MAX);
    memset(ev.description, 'd', EVENT_DESC_MAX);
    {
        int n = event_encode(&ev, buf, sizeof(buf));
        ok(n > 0 && n <= EVENT_ENCODED_MAX && event_decode(buf, (size_t)n, &back) == 0 &&
               events_equal(&ev, &back),
           "largest event round-trips (%d bytes)", n);
    }
}

/* Builds a record by hand: the fixed part of a valid event, then four strings of the given
 * lengths filled with 'a'. Returns the byte count. */
static size_t craft(uint8_t *out, const size_t lens[4])
{
    struct event ev;
    size_t pos;

    memset(&ev, 0, sizeof(ev));
    ev.amount = 1;
    ev.account[0] = 'a';
    pos = (size_t)event_encode(&ev, out, EVENT_ENCODED_MAX);
    pos -= 1 + 1 + 1 + 1 + 1; /* back to the end of the fixed part */
    for (int i = 0; i < 4; i++) {
        out[pos++] = (uint8_t)lens[i];
        memset(out + pos, 'a', lens[i]);
        pos += lens[i];
    }
    return pos;
}

static void test_codec_limits(void)
{
    uint8_t buf[1024];
    struct event ev;
    static const struct {
        size_t lens[4];
        int want;
        const char *name;
    } k[] = {
        {{64, 64, 40, 200}, 0, "every string at its limit"},
        {{65, 0, 0, 0}, ERR_INVAL, "account of 65 bytes with input to spare"},
        {{1, 65, 0, 0}, ERR_INVAL, "destination of 65 bytes"},
        {{1, 0, 41, 0}, ERR_INVAL, "date of 41 bytes"},
        {{1, 0, 0, 201}, ERR_INVAL, "description of 201 bytes"},
        {{1, 0, 0, 255}, ERR_INVAL, "description of 255 bytes"},
    };

    for (size_t i = 0; i < sizeof(k) / sizeof(k[0]); i++) {
        size_t n = craft(buf, k[i].lens);
        is_int(event_decode(buf, n, &ev), k[i].want, "decode crafted record: %s", k[i].name);
    }
    ok(strlen(ev.account) == 64 && strlen(ev.description) == 200,
       "failed decodes left the first (successful) result in place");
}

static void test_codec_rejects(void)
{
    uint8_t buf[EVENT_ENCODED_MAX + 1];
    uint8_t copy[EVENT_ENCODED_MAX + 1];
    struct event ev;
    struct event back;
    int n;
    int accepted = 0;
    int full_ok = 1;

    rand_event(&ev);
    snprintf(ev.account, sizeof(ev.account), "200430");
    snprintf(ev.description, sizeof(ev.description), "some description");
    ev.account_dest[0] = '\0';
    ev.date[0] = '\0';
    ev.amount = 855.17; /* non-zero, so flipping the sign bit makes it negative */
    n = event_encode(&ev, buf, sizeof(buf));
    ok(n > 0, "encode sample (%d bytes)", n);

    for (int k = 0; k < n; k++) {
        /* decode from a heap copy of exactly k bytes so ASan catches any over-read */
        uint8_t *t = malloc(k > 0 ? (size_t)k : 1);
        memcpy(t, buf, (size_t)k);
        if (event_decode(t, (size_t)k, &back) != ERR_INVAL)
            accepted++;
        free(t);
    }
    is_int(accepted, 0, "decode refuses every one of the %d truncations", n);

    for (int cap = 0; cap < n; cap++) {
        if (event_encode(&ev, copy, (size_t)cap) != ERR_FULL)
            full_ok = 0;
    }
    ok(full_ok, "encode reports ERR_FULL for every cap below %d", n);
    is_int(event_encode(&ev, copy, (size_t)n), n, "encode fits an exact cap");

    buf[n] = 0;
    is_int(event_decode(buf, (size_t)n + 1, &back), ERR_INVAL, "decode refuses a trailing byte");

    memcpy(copy, buf, (size_t)n);
    copy[0] = 2;
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses an unknown version");

    memcpy(copy, buf, (size_t)n);
    copy[25] |= 0x80; /* flags byte */
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses unknown flag bits");

    memcpy(copy, buf, (size_t)n);
    memset(copy + 9, 0xff, 8); /* amount bits = NaN */
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses a NaN amount");

    memcpy(copy, buf, (size_t)n);
    copy[16] |= 0x80; /* amount sign bit */
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses a negative amount");

    memcpy(copy, buf, (size_t)n);
    copy[43] = 'x'; /* 42 fixed bytes, then the account: [42] its length (6), [43..48] "200430" */
    ok(copy[42] == 6 && event_decode(copy, (size_t)n, &back) == 0 &&
           strcmp(back.account, "x00430") == 0,
       "account bytes at the documented offset");
    copy[44] = '\0';
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses a NUL inside a string");

    memcpy(copy, buf, (size_t)n);
    copy[42] = EVENT_ACCOUNT_MAX + 1;
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses an over-long account");
    copy[42] = 0;
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL, "decode refuses an empty account");

    /* [49] empty destination, [50] empty date, [51] description length 16, [52..67] its bytes */
    memcpy(copy, buf, (size_t)n);
    ok(n == 68 && copy[51] == 16, "description length at the documented offset");
    copy[51] = 17; /* within the description limit but one byte past the input */
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL,
           "decode refuses a length past the input");
    copy[51] = 15; /* leaves one trailing byte */
    is_int(event_decode(copy, (size_t)n, &back), ERR_INVAL,
           "decode refuses a length that leaves bytes over");

    memset(&back, 0x5a, sizeof(back));
    memcpy(copy, &back, sizeof(copy) < sizeof(back) ? sizeof(copy) : sizeof(back));
    ok(event_decode(buf, 0, &back) == ERR_INVAL &&
           memcmp(&back, copy, sizeof(copy) < sizeof(back) ? sizeof(copy) : sizeof(back)) == 0,
       "decode leaves *out untouched on error");

    memset(&ev, 0, sizeof(ev));
    ev.amount = 1;
    is_int(event_encode(&ev, buf, sizeof(buf)), ERR_INVAL, "encode refuses an empty account");
    ev.account[0] = 'a';
    ev.amount = NAN;
    is_int(event_encode(&ev, buf, sizeof(buf)), ERR_INVAL, "encode refuses a NaN amount");
    ev.amount = 1;
    memset(ev.date, 'x', sizeof(ev.date)); /* no terminator within the field */
    is_int(event_encode(&ev, buf, sizeof(buf)), ERR_INVAL, "encode refuses an unterminated date");
}

int main(void)
{
    test_table();
    test_invalid_text();
    test_forms();
    test_description_truncation();
    test_depth();
    test_value_budget();
    test_from_json_direct();
    test_names();
    test_to_json();
    test_codec_roundtrip();
    test_codec_rejects();
    test_codec_limits();
    return done_testing();
}
