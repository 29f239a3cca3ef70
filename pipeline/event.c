/* Transaction events (event.h, DESIGN.md 3.1): payload parsing, validation, JSON and binary forms.
 *
 * Parsing. A payload is untrusted bytes off MQTT or HTTP. Before jansson sees it, one linear scan
 * counts the nesting of '[' and '{' outside strings and rejects anything deeper than
 * EVENT_DEPTH_MAX, so a payload like 10000 '[' can never exhaust the stack or cost a large tree,
 * and counts the ',' separators, refusing (as too large) more than EVENT_VALUES_PER_ITEM per
 * event of the batch limit, so the tree jansson builds stays small however the bytes are spent.
 * jansson then parses with JSON_DECODE_ANY (so a top-level number or string is reported as
 * "not an object" rather than "bad JSON") and JSON_REJECT_DUPLICATES: a transaction with two
 * "amount" keys is ambiguous (which one did the publisher mean, which one would another consumer
 * read?), so the whole payload is refused as bad JSON instead of silently picking one. jansson
 * also refuses invalid UTF-8, "\u0000" inside strings, integers outside int64 and reals that
 * overflow a double (1e400), so those arrive here as EVI_BAD_JSON.
 *
 * Validation is per item: one bad object in an array is reported and the others are still
 * delivered. JSON null for an optional field means "absent". Numbers keep their JSON type:
 * transactionId, type and branch must be JSON integers (3.0 is refused) or digit strings, while
 * amount may be integer or real. Limits are in bytes and never depend on the input size except
 * description, which is cut at a UTF-8 character boundary rather than refused.
 *
 * Binary form (journal), little-endian, version EVENT_CODEC_VERSION:
 *   u8 version | u64 txid | u64 amount IEEE-754 bits | i64 ingested_ms | u8 flags (bit0 has_type,
 *   bit1 has_branch, other bits 0) | i64 type | i64 branch | then account, account_dest, date,
 *   description, each as u8 length + bytes (every limit is < 256).
 * Decoding checks each length against the remaining input and the field's limit, refuses NUL
 * bytes inside strings, an empty account, a non-finite or negative amount and trailing bytes, so
 * a torn or corrupted journal record is rejected instead of poisoning a window. */
#include "event.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "buf.h"
#include "err.h"
#include "xmalloc.h"

/* An event needs 2 levels (array, object); 32 leaves room for nested unknown fields while
 * bounding jansson's recursion far below any stack limit. */
#define EVENT_DEPTH_MAX 32
/* JSON values an event may average (it has 8 fields; the rest is room for unknown members):
 * with the batch limit this bounds what jansson builds from one payload (~50 bytes a value),
 * whatever the payload size, so half a million tiny values in 1 MiB cost no 30 MB tree. */
#define EVENT_VALUES_PER_ITEM 64
#define EVENT_DETAIL_MAX 256  /* longest human detail text handed to on_invalid */
#define EVENT_CODEC_VERSION 1 /* first byte of event_encode() output */
#define EVENT_FLAG_TYPE 0x01u
#define EVENT_FLAG_BRANCH 0x02u
#define EVENT_FIXED_BYTES (1 + 8 + 8 + 8 + 1 + 8 + 8) /* everything before the strings */
/* event_json_append: the longest direct form (every string escaped as \u00XX) fits */
#define EVENT_JSON_TEXT_MAX (256 + 6 * (2 * EVENT_ACCOUNT_MAX + EVENT_DATE_MAX + EVENT_DESC_MAX))

_Static_assert(EVENT_ACCOUNT_MAX <= 255 && EVENT_DATE_MAX <= 255 && EVENT_DESC_MAX <= 255,
               "string lengths are encoded as one byte");
_Static_assert(EVENT_FIXED_BYTES + 4 + 2 * EVENT_ACCOUNT_MAX + EVENT_DATE_MAX + EVENT_DESC_MAX <=
                   EVENT_ENCODED_MAX,
               "EVENT_ENCODED_MAX bounds the encoding");

/* ---------------------------------------------------------------------------------------------
 * Reason names
 * ------------------------------------------------------------------------------------------- */

/* Stable snake_case name of a reason, equal to the metrics label; "unknown" outside the enum. */
const char *event_invalid_name(enum event_invalid reason)
{
    switch (reason) {
    case EVI_BAD_JSON:
        return "bad_json";
    case EVI_NOT_OBJECT:
        return "not_object";
    case EVI_TXID:
        return "transaction_id";
    case EVI_ACCOUNT:
        return "account_origin";
    case EVI_AMOUNT:
        return "amount";
    case EVI_FIELD:
        return "field_type";
    case EVI_TOO_LARGE:
        return "too_large";
    case EVI__COUNT:
        break;
    }
    return "unknown";
}

/* The M_INVALID_* counter of a reason; M_INVALID_BAD_JSON for a value outside the enum. */
enum metric_counter event_invalid_metric(enum event_invalid reason)
{
    switch (reason) {
    case EVI_BAD_JSON:
        return M_INVALID_BAD_JSON;
    case EVI_NOT_OBJECT:
        return M_INVALID_NOT_OBJECT;
    case EVI_TXID:
        return M_INVALID_TXID;
    case EVI_ACCOUNT:
        return M_INVALID_ACCOUNT;
    case EVI_AMOUNT:
        return M_INVALID_AMOUNT;
    case EVI_FIELD:
        return M_INVALID_FIELD;
    case EVI_TOO_LARGE:
        return M_INVALID_TOO_LARGE;
    case EVI__COUNT:
        break;
    }
    return M_INVALID_BAD_JSON;
}

/* ---------------------------------------------------------------------------------------------
 * Field validation
 * ------------------------------------------------------------------------------------------- */

/* Parses 1..20 ASCII digits (nothing else: no sign, space or dot) into *out when the value is
 * <= max. Returns 0, ERR_INVAL for a non-digit form, ERR_RANGE for overflow. */
static int parse_digits(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0)
        return ERR_INVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ERR_INVAL;
    }
    if (len > 20) /* 2^64-1 has 20 digits; longer is out of range even with leading zeros */
        return ERR_RANGE;
    for (size_t i = 0; i < len; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (max - d) / 10)
            return ERR_RANGE;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static bool has_control_char(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

static int get_txid(const json_t *v, uint64_t *out, char *detail, size_t dlen)
{
    int rc;

    if (v == NULL) {
        snprintf(detail, dlen, "transactionId is required");
        return ERR_INVAL;
    }
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0) {
            snprintf(detail, dlen, "transactionId must be >= 0");
            return ERR_INVAL;
        }
        *out = (uint64_t)i;
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(detail, dlen, "transactionId must be an integer >= 0 or a string of digits");
        return ERR_INVAL;
    }
    rc = parse_digits(json_string_value(v), json_string_length(v), UINT64_MAX, out);
    if (rc == ERR_RANGE)
        snprintf(detail, dlen, "transactionId must be <= 18446744073709551615");
    else if (rc < 0)
        snprintf(detail, dlen, "transactionId string must be 1-20 ASCII digits");
    return rc;
}

/* Shared by accountOrigin and accountDestination: a non-empty string of at most
 * EVENT_ACCOUNT_MAX bytes without control characters, or an integer >= 0 as decimal text. */
static int get_account(const json_t *v, const char *name, char out[EVENT_ACCOUNT_MAX + 1],
                       char *detail, size_t dlen)
{
    const char *s;
    size_t len;

    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);
        if (i < 0) {
            snprintf(detail, dlen, "%s must be >= 0 when given as an integer", name);
            return ERR_INVAL;
        }
        snprintf(out, EVENT_ACCOUNT_MAX + 1, "%lld", (long long)i);
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(detail, dlen, "%s must be a non-empty string or an integer >= 0", name);
        return ERR_INVAL;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    if (len == 0) {
        snprintf(detail, dlen, "%s must not be empty", name);
        return ERR_INVAL;
    }
    if (len > EVENT_ACCOUNT_MAX) {
        snprintf(detail, dlen, "%s must be at most %d bytes", name, EVENT_ACCOUNT_MAX);
        return ERR_INVAL;
    }
    if (has_control_char(s, len)) {
        snprintf(detail, dlen, "%s must not contain control characters", name);
        return ERR_INVAL;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return 0;
}

static int get_amount(const json_t *v, double *out, char *detail, size_t dlen)
{
    double a;

    if (v == NULL) {
        snprintf(detail, dlen, "amount is required");
        return ERR_INVAL;
    }
    if (!json_is_number(v)) {
        snprintf(detail, dlen, "amount must be a finite number >= 0");
        return ERR_INVAL;
    }
    a = json_number_value(v);
    if (!isfinite(a) || a < 0) {
        snprintf(detail, dlen, "amount must be a finite number >= 0");
        return ERR_INVAL;
    }
    *out = a == 0 ? 0.0 : a; /* folds -0.0 into 0.0 */
    return 0;
}

/* Optional integer field (type, branch): a JSON integer, or a string of digits <= INT64_MAX. */
static int get_opt_int(const json_t *v, const char *name, int64_t *out, bool *has, char *detail,
                       size_t dlen)
{
    uint64_t u;

    *has = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        *has = true;
        return 0;
    }
    if (json_is_string(v) &&
        parse_digits(json_string_value(v), json_string_length(v), (uint64_t)INT64_MAX, &u) == 0) {
        *out = (int64_t)u;
        *has = true;
        return 0;
    }
    snprintf(detail, dlen, "%s must be an integer or a string of digits", name);
    return ERR_INVAL;
}

/* Copies at most max bytes of the valid UTF-8 string s[0..len), never splitting a character. */
static void copy_utf8_truncated(char *out, size_t max, const char *s, size_t len)
{
    size_t n = len;

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) /* s[n] continues a character */
            n--;
    }
    memcpy(out, s, n);
    out[n] = '\0';
}

static void set_reason(enum event_invalid *reason, enum event_invalid r)
{
    if (reason != NULL)
        *reason = r;
}

/* Validates one JSON object into *out. Returns 0, or ERR_INVAL with *reason (may be NULL) and
 * detail (detail_len bytes, may be 0) describing the first problem found. *out is fully
 * overwritten on success and unspecified on error. */
int event_from_json(const json_t *obj, struct event *out, enum event_invalid *reason, char *detail,
                    size_t detail_len)
{
    char scratch[EVENT_DETAIL_MAX];
    const json_t *v;

    /* detail may be absent; write into scratch then so every path can snprintf freely */
    if (detail == NULL || detail_len == 0) {
        detail = scratch;
        detail_len = sizeof(scratch);
    }
    detail[0] = '\0';
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj)) {
        set_reason(reason, EVI_NOT_OBJECT);
        snprintf(detail, detail_len, "event must be a JSON object");
        return ERR_INVAL;
    }
    if (get_txid(json_object_get(obj, "transactionId"), &out->txid, detail, detail_len) < 0) {
        set_reason(reason, EVI_TXID);
        return ERR_INVAL;
    }
    v = json_object_get(obj, "accountOrigin");
    if (v == NULL) {
        set_reason(reason, EVI_ACCOUNT);
        snprintf(detail, detail_len, "accountOrigin is required");
        return ERR_INVAL;
    }
    if (get_account(v, "accountOrigin", out->account, detail, detail_len) < 0) {
        set_reason(reason, EVI_ACCOUNT);
        return ERR_INVAL;
    }
    if (get_amount(json_object_get(obj, "amount"), &out->amount, detail, detail_len) < 0) {
        set_reason(reason, EVI_AMOUNT);
        return ERR_INVAL;
    }

    v = json_object_get(obj, "accountDestination");
    if (v != NULL && !json_is_null(v) &&
        get_account(v, "accountDestination", out->account_dest, detail, detail_len) < 0)
        goto field;
    if (get_opt_int(json_object_get(obj, "type"), "type", &out->type, &out->has_type, detail,
                    detail_len) < 0)
        goto field;
    if (get_opt_int(json_object_get(obj, "branch"), "branch", &out->branch, &out->has_branch,
                    detail, detail_len) < 0)
        goto field;
    v = json_object_get(obj, "date");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || json_string_length(v) > EVENT_DATE_MAX) {
            snprintf(detail, detail_len, "date must be a string of at most %d bytes",
                     EVENT_DATE_MAX);
            goto field;
        }
        memcpy(out->date, json_string_value(v), json_string_length(v) + 1);
    }
    v = json_object_get(obj, "description");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)) {
            snprintf(detail, detail_len, "description must be a string");
            goto field;
        }
        copy_utf8_truncated(out->description, EVENT_DESC_MAX, json_string_value(v),
                            json_string_length(v));
    }
    return 0;

field:
    set_reason(reason, EVI_FIELD);
    return ERR_INVAL;
}

/* ---------------------------------------------------------------------------------------------
 * Fast path for the plain shape
 * ------------------------------------------------------------------------------------------- */

/* A cursor over the payload; every reader returns false (bail out) on anything outside the plain
 * shape, and the caller then parses the payload again with jansson. */
struct cursor {
    const char *p, *end;
};

/* A string or number token: its bytes (without the quotes for a string). */
struct token {
    const char *s;
    size_t len;
    bool is_string;
    bool is_null;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static bool take(struct cursor *c, char ch)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch)
        return false;
    c->p++;
    return true;
}

/* A string of printable ASCII without escapes: no UTF-8 to validate, no control characters. */
static bool plain_string(struct cursor *c, struct token *t)
{
    const char *start = ++c->p; /* past the opening quote */
    while (c->p < c->end && *c->p != '"') {
        unsigned char ch = (unsigned char)*c->p;
        if (ch < 0x20 || ch > 0x7e || ch == '\\')
            return false;
        c->p++;
    }
    if (c->p >= c->end)
        return false;
    t->s = start;
    t->len = (size_t)(c->p - start);
    t->is_string = true;
    c->p++;
    return true;
}

/* A number in JSON's grammar (jansson would accept it), or null; the byte after it must end the
 * value, which the caller checks. */
static bool plain_value(struct cursor *c, struct token *t)
{
    skip_ws(c);
    memset(t, 0, sizeof *t);
    if (c->p >= c->end)
        return false;
    if (*c->p == '"')
        return plain_string(c, t);
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        t->is_null = true;
        return true;
    }
    const char *start = c->p;
    if (c->p < c->end && *c->p == '-')
        c->p++;
    const char *digits = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    size_t nd = (size_t)(c->p - digits);
    if (nd == 0 || (nd > 1 && digits[0] == '0'))
        return false;
    if (c->p < c->end && *c->p == '.') {
        const char *frac = ++c->p;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
            c->p++;
        if (c->p == frac)
            return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E'))
        return false; /* exponents: left to jansson */
    t->s = start;
    t->len = (size_t)(c->p - start);
    return true;
}

/* Digits only, 1..18 of them, optionally after '-' when allow_minus: a JSON integer jansson
 * holds in an int64. */
static bool small_integer(const struct token *t, bool allow_minus, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (t->is_string || t->is_null)
        return false;
    if (allow_minus && t->len > 0 && t->s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (t->len - i == 0 || t->len - i > 18)
        return false;
    int64_t v = 0;
    for (; i < t->len; i++) {
        if (t->s[i] < '0' || t->s[i] > '9')
            return false;
        v = v * 10 + (t->s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

/* The double value of a non-negative JSON number without exponent, exactly as strtod gives it:
 * with at most 15 significant digits and 22 decimals, digits / 10^decimals is one correctly
 * rounded division of two exact doubles (the classic fast path); otherwise strtod itself. */
static bool plain_amount(const struct token *t, double *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (t->is_string || t->is_null || t->len == 0 || t->s[0] == '-')
        return false;
    if (memchr(t->s, '.', t->len) == NULL && t->len > 18)
        return false; /* an integer jansson may not hold in an int64: its error, not ours */
    uint64_t m = 0;
    size_t digits = 0, decimals = 0;
    bool dot = false;
    for (size_t i = 0; i < t->len; i++) {
        if (t->s[i] == '.') {
            dot = true;
            continue;
        }
        m = m * 10 + (uint64_t)(t->s[i] - '0');
        digits += m != 0 || digits != 0; /* significant digits (leading zeros do not count) */
        decimals += dot;
        if (digits > 15)
            break;
    }
    if (digits <= 15 && decimals <= 22) {
        *out = (double)m / pow10[decimals];
        return true;
    }
    char buf[64];
    if (t->len >= sizeof buf)
        return false;
    memcpy(buf, t->s, t->len);
    buf[t->len] = '\0';
    *out = strtod(buf, NULL); /* what jansson does with a real */
    return true;
}

/* accountOrigin / accountDestination: a plain string of 1..EVENT_ACCOUNT_MAX bytes, or a JSON
 * integer >= 0 (its digits are its decimal text). */
static bool plain_account(const struct token *t, char out[EVENT_ACCOUNT_MAX + 1])
{
    int64_t v;
    if (t->is_null || t->len == 0 || t->len > EVENT_ACCOUNT_MAX)
        return false;
    if (!t->is_string && (!small_integer(t, false, &v)))
        return false;
    memcpy(out, t->s, t->len);
    out[t->len] = '\0';
    return true;
}

enum plain_key {
    K_TXID = 0,
    K_ORIGIN,
    K_DEST,
    K_AMOUNT,
    K_TYPE,
    K_BRANCH,
    K_DATE,
    K_DESC,
    K__COUNT
};

static int key_index(const char *s, size_t len)
{
    static const char *const names[K__COUNT] = {
        "transactionId", "accountOrigin", "accountDestination", "amount", "type",
        "branch",        "date",          "description"};
    for (int i = 0; i < K__COUNT; i++)
        if (strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return i;
    return -1;
}

/* One member's value into ev; false outside the plain shape or when the value would be refused
 * (jansson then produces the error). */
static bool plain_member(int key, const struct token *t, struct event *ev)
{
    int64_t v;
    uint64_t u;
    switch (key) {
    case K_TXID:
        if (t->is_string) /* 1..19 digits: always <= 2^64 - 1 */
            return t->len <= 19 && parse_digits(t->s, t->len, UINT64_MAX, &u) == 0 &&
                   (ev->txid = u, true);
        return small_integer(t, false, &v) && (ev->txid = (uint64_t)v, true);
    case K_ORIGIN:
        return plain_account(t, ev->account);
    case K_DEST:
        return t->is_null || plain_account(t, ev->account_dest);
    case K_AMOUNT:
        return plain_amount(t, &ev->amount);
    case K_TYPE:
    case K_BRANCH: {
        bool *has = key == K_TYPE ? &ev->has_type : &ev->has_branch;
        int64_t *dst = key == K_TYPE ? &ev->type : &ev->branch;
        if (t->is_null)
            return true;
        if (t->is_string) {
            if (t->len > 18 || parse_digits(t->s, t->len, (uint64_t)INT64_MAX, &u) != 0)
                return false;
            v = (int64_t)u;
        } else if (!small_integer(t, true, &v)) {
            return false;
        }
        *dst = v;
        *has = true;
        return true;
    }
    case K_DATE:
        if (t->is_null)
            return true;
        if (!t->is_string || t->len > EVENT_DATE_MAX)
            return false;
        memcpy(ev->date, t->s, t->len);
        ev->date[t->len] = '\0';
        return true;
    case K_DESC:
        if (t->is_null)
            return true;
        if (!t->is_string)
            return false;
        copy_utf8_truncated(ev->description, EVENT_DESC_MAX, t->s, t->len);
        return true;
    default:
        return false;
    }
}

/* One object of the plain shape into *ev. */
static bool plain_object(struct cursor *c, struct event *ev)
{
    unsigned seen = 0;
    memset(ev, 0, sizeof *ev);
    if (!take(c, '{'))
        return false;
    do {
        struct token key, val;
        skip_ws(c);
        if (c->p >= c->end || *c->p != '"' || !plain_string(c, &key) || !take(c, ':'))
            return false;
        int k = key_index(key.s, key.len);
        if (k < 0 || (seen & (1u << k)) || !plain_value(c, &val) || !plain_member(k, &val, ev))
            return false;
        seen |= 1u << k;
        skip_ws(c);
    } while (c->p < c->end && *c->p == ',' && c->p++);
    const unsigned required = (1u << K_TXID) | (1u << K_ORIGIN) | (1u << K_AMOUNT);
    return (seen & required) == required && take(c, '}');
}

/* Parses a payload of the plain shape: one object, or a non-empty array of at most max_batch
 * objects, each with only the known fields, plain strings (printable ASCII, no escapes), numbers
 * without exponent, no duplicate field, and every value one that event_from_json accepts. Then
 * every event is delivered and the count returned; otherwise nothing is delivered and -1 is
 * returned (the payload then goes through jansson, which accepts or refuses it with its reason). */
int event_parse_fast(const char *data, size_t len, size_t max_batch, event_valid_fn on_valid,
                     void *ctx)
{
    struct cursor c = {data, data + len};
    struct event one, *evs = &one;
    size_t n = 0, cap = 1;
    bool ok;
    if (data == NULL)
        return -1;
    skip_ws(&c);
    if (c.p < c.end && *c.p == '[') {
        c.p++;
        ok = true;
        do {
            if (n == max_batch) {
                ok = false;
                break;
            }
            if (n == cap) {
                cap *= 8;
                struct event *grown = xmalloc(cap * sizeof *grown);
                memcpy(grown, evs, n * sizeof *evs);
                if (evs != &one)
                    free(evs);
                evs = grown;
            }
            ok = plain_object(&c, &evs[n]);
            n += ok;
        } while (ok && take(&c, ','));
        ok = ok && take(&c, ']');
    } else {
        ok = plain_object(&c, &one);
        n = 1;
    }
    skip_ws(&c);
    ok = ok && c.p == c.end;
    for (size_t i = 0; ok && on_valid != NULL && i < n; i++)
        on_valid(ctx, &evs[i]);
    if (evs != &one)
        free(evs);
    return ok ? (int)n : -1;
}

/* ---------------------------------------------------------------------------------------------
 * Payloads
 * ------------------------------------------------------------------------------------------- */

/* One linear scan before jansson: the bracket nesting and the number of ',' outside strings
 * (one less than the values of an array or members of an object, summed over the payload).
 * Returns EVI_BAD_JSON for nesting over EVENT_DEPTH_MAX, EVI_TOO_LARGE for more separators than
 * max_values, or EVI__COUNT when the payload may be parsed, with detail filled on a refusal.
 * Malformed input (an unterminated string, unbalanced brackets) passes here and is refused by
 * jansson. */
static enum event_invalid scan_shape(const char *data, size_t len, size_t max_values, char *detail,
                                     size_t detail_len)
{
    size_t depth = 0, separators = 0;
    bool in_string = false;

    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (in_string) {
            if (c == '\\')
                i++; /* the escaped byte cannot end the string */
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            depth++;
            if (depth > EVENT_DEPTH_MAX) {
                snprintf(detail, detail_len, "invalid JSON: nesting deeper than %d levels",
                         EVENT_DEPTH_MAX);
                return EVI_BAD_JSON;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        } else if (c == ',' && ++separators > max_values) {
            snprintf(detail, detail_len,
                     "payload of more than %zu JSON values (%d per event of the batch limit)",
                     max_values, EVENT_VALUES_PER_ITEM);
            return EVI_TOO_LARGE;
        }
    }
    return EVI__COUNT;
}

static void report(event_invalid_fn on_invalid, void *ctx, enum event_invalid reason,
                   const char *detail, const char *text, size_t text_len)
{
    if (on_invalid != NULL)
        on_invalid(ctx, reason, detail, text, text_len);
}

/* Reports one invalid JSON value, re-serialized compactly as the offending text. */
static void report_item(event_invalid_fn on_invalid, void *ctx, enum event_invalid reason,
                        const char *detail, const json_t *item)
{
    char *text;

    if (on_invalid == NULL)
        return;
    text = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL) { /* only on allocation failure inside jansson */
        on_invalid(ctx, reason, detail, "", 0);
        return;
    }
    on_invalid(ctx, reason, detail, text, strlen(text));
    free(text);
}

/* Validates one item and hands it to the right callback; returns 1 if it was valid. */
static int deliver_item(const json_t *item, event_valid_fn on_valid, event_invalid_fn on_invalid,
                        void *ctx)
{
    struct event ev;
    enum event_invalid reason = EVI_BAD_JSON;
    char detail[EVENT_DETAIL_MAX];

    if (event_from_json(item, &ev, &reason, detail, sizeof(detail)) < 0) {
        report_item(on_invalid, ctx, reason, detail, item);
        return 0;
    }
    if (on_valid != NULL)
        on_valid(ctx, &ev);
    return 1;
}

/* Parses and validates a payload of len bytes (see event.h): the plain shape through
 * event_parse_fast, anything else through jansson. */
int event_parse_payload(const char *data, size_t len, size_t max_batch, event_valid_fn on_valid,
                        event_invalid_fn on_invalid, void *ctx)
{
    int n = event_parse_fast(data, len, max_batch, on_valid, ctx);
    return n >= 0 ? n
                  : event_parse_payload_jansson(data, len, max_batch, on_valid, on_invalid, ctx);
}

/* The jansson path (see event.h). Either callback may be NULL. The detail and text passed to
 * on_invalid are borrowed for the call. Returns the number of valid events delivered (>= 0). */
int event_parse_payload_jansson(const char *data, size_t len, size_t max_batch,
                                event_valid_fn on_valid, event_invalid_fn on_invalid, void *ctx)
{
    char detail[EVENT_DETAIL_MAX];
    json_error_t jerr;
    json_t *root = NULL;
    int delivered = 0;

    if (data == NULL) {
        snprintf(detail, sizeof(detail), "invalid JSON: empty payload");
        report(on_invalid, ctx, EVI_BAD_JSON, detail, "", 0);
        goto out;
    }
    size_t max_values = (max_batch > 0 ? max_batch : 1) * EVENT_VALUES_PER_ITEM;
    enum event_invalid shape = scan_shape(data, len, max_values, detail, sizeof(detail));
    if (shape != EVI__COUNT) {
        report(on_invalid, ctx, shape, detail, data, len);
        goto out;
    }
    root = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(detail, sizeof(detail), "invalid JSON at line %d column %d: %s", jerr.line,
                 jerr.column, jerr.text);
        report(on_invalid, ctx, EVI_BAD_JSON, detail, data, len);
        goto out;
    }
    if (json_is_object(root)) {
        delivered = deliver_item(root, on_valid, on_invalid, ctx);
        goto out;
    }
    if (!json_is_array(root)) {
        report_item(on_invalid, ctx, EVI_NOT_OBJECT,
                    "payload must be a JSON object or an array of objects", root);
        goto out;
    }
    if (json_array_size(root) > max_batch) {
        snprintf(detail, sizeof(detail), "batch of %zu events is over the limit of %zu",
                 json_array_size(root), max_batch);
        report(on_invalid, ctx, EVI_TOO_LARGE, detail, data, len);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(root); i++)
        delivered += deliver_item(json_array_get(root, i), on_valid, on_invalid, ctx);

out:
    json_decref(root);
    return delivered;
}

/* ---------------------------------------------------------------------------------------------
 * JSON form
 * ------------------------------------------------------------------------------------------- */

/* The event with its original camelCase field names. transactionId is a JSON integer, or a digit
 * string above INT64_MAX (which jansson integers cannot hold; event_from_json accepts both).
 * amount is always a JSON real. Caller owns the reference. */
json_t *event_to_json(const struct event *ev)
{
    json_t *o = json_object();
    char txt[24];

    if (ev->txid > (uint64_t)INT64_MAX) {
        snprintf(txt, sizeof(txt), "%llu", (unsigned long long)ev->txid);
        json_object_set_new(o, "transactionId", json_string(txt));
    } else {
        json_object_set_new(o, "transactionId", json_integer((json_int_t)ev->txid));
    }
    json_object_set_new(o, "accountOrigin", json_string(ev->account));
    if (ev->account_dest[0] != '\0')
        json_object_set_new(o, "accountDestination", json_string(ev->account_dest));
    json_object_set_new(o, "amount", json_real(ev->amount));
    if (ev->has_type)
        json_object_set_new(o, "type", json_integer((json_int_t)ev->type));
    if (ev->has_branch)
        json_object_set_new(o, "branch", json_integer((json_int_t)ev->branch));
    if (ev->date[0] != '\0')
        json_object_set_new(o, "date", json_string(ev->date));
    if (ev->description[0] != '\0')
        json_object_set_new(o, "description", json_string(ev->description));
    return o;
}

/* Appends s as jansson's compact dump writes a string: quoted, with \" \\ \b \f \n \r \t and
 * \u00hh (upper-case hex digits) for the other control characters; false (nothing to rely on) when
 * s is not ASCII, where jansson's UTF-8 checks decide. */
static bool json_put_ascii(char *out, size_t cap, size_t *pos, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    if (cap - *pos < 1)
        return false;
    out[(*pos)++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x80 || cap - *pos < 8)
            return false;
        if (c == '"' || c == '\\') {
            out[(*pos)++] = '\\';
            out[(*pos)++] = (char)c;
        } else if (c < 0x20) {
            static const char shortform[] = "btnvfr"; /* \b \t \n (\v has none) \f \r */
            out[(*pos)++] = '\\';
            if (c >= 0x08 && c <= 0x0d && c != 0x0b) {
                out[(*pos)++] = shortform[c - 0x08];
            } else {
                out[(*pos)++] = 'u';
                out[(*pos)++] = '0';
                out[(*pos)++] = '0';
                out[(*pos)++] = hex[c >> 4];
                out[(*pos)++] = hex[c & 15];
            }
        } else {
            out[(*pos)++] = (char)c;
        }
    }
    if (cap - *pos < 1)
        return false;
    out[(*pos)++] = '"';
    return true;
}

/* Appends n bytes; false when they do not fit. */
static bool json_put(char *out, size_t cap, size_t *pos, const char *text, size_t n)
{
    if (cap - *pos < n)
        return false;
    memcpy(out + *pos, text, n);
    *pos += n;
    return true;
}

#define JSON_PUT_LIT(out, cap, pos, lit) json_put((out), (cap), (pos), (lit), sizeof(lit) - 1)

/* The decimal digits of v, written backwards from end; returns where they start. */
static char *u64_digits(uint64_t v, char *end)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return end;
}

/* Appends v in decimal, with '-' when negative is set (v is then the magnitude). */
static bool json_put_u64(char *out, size_t cap, size_t *pos, uint64_t v, bool negative)
{
    char num[24]; /* 20 digits and a sign */
    char *start = u64_digits(v, num + sizeof num);
    if (negative)
        *--start = '-';
    return json_put(out, cap, pos, start, (size_t)(num + sizeof num - start));
}

/* Appends v in decimal, as jansson writes a json_integer ("%" JSON_INTEGER_FORMAT). */
static bool json_put_i64(char *out, size_t cap, size_t *pos, int64_t v)
{
    uint64_t magnitude = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN too */
    return json_put_u64(out, cap, pos, magnitude, v < 0);
}

/* 10^0 .. 10^16 */
static const uint64_t pow10_u64[17] = {1ull,
                                       10ull,
                                       100ull,
                                       1000ull,
                                       10000ull,
                                       100000ull,
                                       1000000ull,
                                       10000000ull,
                                       100000000ull,
                                       1000000000ull,
                                       10000000000ull,
                                       100000000000ull,
                                       1000000000000ull,
                                       10000000000000ull,
                                       100000000000000ull,
                                       1000000000000000ull,
                                       10000000000000000ull};

/* What snprintf "%.17g" writes for v in [1, 2^53), computed exactly without stdio: v is m / 2^s
 * (m the 53-bit significand), its integer part has d <= 16 digits, so %g writes fixed notation
 * with 17 - d fraction digits: floor(frac(v) * 10^(17-d)), rounded half to even on the exact
 * remainder (as glibc rounds in the default mode), trailing zeros and a bare '.' dropped. The
 * product frac(v) * 10^(17-d) * 2^s is below 2^52 * 10^16 < 2^106, so 128-bit integers hold it.
 * Returns the length written to out (at least 40 bytes), or 0 when v is outside the range or
 * the rounding carries into the integer part (which no double does; snprintf decides then). */
static size_t real_g17_fixed(double v, char *out)
{
    if (!(v >= 1.0 && v < 9007199254740992.0)) /* 2^53 */
        return 0;
    int exp2;
    double fraction = frexp(v, &exp2);          /* v = fraction * 2^exp2, exp2 in 1..53 */
    uint64_t m = (uint64_t)ldexp(fraction, 53); /* exact: the significand */
    unsigned shift = (unsigned)(53 - exp2);     /* v = m / 2^shift, shift in 0..52 */
    uint64_t int_part = m >> shift;
    uint64_t frac_bits = shift ? m & ((1ull << shift) - 1) : 0;
    int int_digits = 1;
    while (int_digits < 17 && int_part >= pow10_u64[int_digits])
        int_digits++;
    int frac_digits = 17 - int_digits;
    uint64_t digits = 0;
    if (frac_bits != 0) {
        unsigned __int128 scaled = (unsigned __int128)frac_bits * pow10_u64[frac_digits];
        digits = (uint64_t)(scaled >> shift);
        unsigned __int128 rest = scaled - ((unsigned __int128)digits << shift);
        unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
        if (rest > half || (rest == half && (digits & 1)))
            digits++;
        if (digits == pow10_u64[frac_digits])
            return 0;
    }
    char *start = u64_digits(int_part, out + 20);
    size_t len = (size_t)(out + 20 - start);
    memmove(out, start, len);
    if (digits == 0)
        return len;
    while (digits % 10 == 0) { /* %g drops trailing zeros */
        digits /= 10;
        frac_digits--;
    }
    out[len++] = '.';
    char *end = out + len + (size_t)frac_digits;
    start = u64_digits(digits, end);
    memset(out + len, '0', (size_t)(start - (out + len))); /* leading zeros of the fraction */
    return len + (size_t)frac_digits;
}

/* A double as jansson dumps a real: "%.17g", ".0" appended when that reads as an integer, the
 * exponent without '+' or leading zeros. Amounts of 1 and more (nearly all) take the exact
 * integer path above; the rest go through snprintf. */
static bool json_put_real(char *out, size_t cap, size_t *pos, double v)
{
    char num[40];
    size_t n = real_g17_fixed(v, num);
    if (n == 0) {
        int printed = snprintf(num, sizeof num, "%.17g", v);
        if (printed < 0 || (size_t)printed >= sizeof num - 2)
            return false;
        n = (size_t)printed;
        char *e = memchr(num, 'e', n);
        if (e != NULL) {
            char *start = e + 1, *end = e + 2;
            if (*start == '-')
                start++;
            while (*end == '0')
                end++;
            memmove(start, end, strlen(end) + 1);
            n = strlen(num);
        }
    }
    if (memchr(num, '.', n) == NULL && memchr(num, 'e', n) == NULL) {
        memcpy(num + n, ".0", 2);
        n += 2;
    }
    return json_put(out, cap, pos, num, n);
}

/* event_to_json dumped compactly, written directly into out (EVENT_JSON_TEXT_MAX bytes) and
 * NUL-terminated; returns its length, 0 when jansson must do it (a non-ASCII string or a
 * non-finite amount). */
static size_t event_json_direct(const struct event *ev, char *out)
{
    size_t pos = 0, cap = EVENT_JSON_TEXT_MAX - 1; /* room for the NUL */
    if (!isfinite(ev->amount))
        return 0;
    bool ok = JSON_PUT_LIT(out, cap, &pos, "{\"transactionId\":");
    if (ev->txid > (uint64_t)INT64_MAX) /* jansson integers are int64: a string, as parsed */
        ok = ok && JSON_PUT_LIT(out, cap, &pos, "\"") &&
             json_put_u64(out, cap, &pos, ev->txid, false) && JSON_PUT_LIT(out, cap, &pos, "\"");
    else
        ok = ok && json_put_u64(out, cap, &pos, ev->txid, false);
    ok = ok && JSON_PUT_LIT(out, cap, &pos, ",\"accountOrigin\":") &&
         json_put_ascii(out, cap, &pos, ev->account);
    if (ok && ev->account_dest[0] != '\0')
        ok = JSON_PUT_LIT(out, cap, &pos, ",\"accountDestination\":") &&
             json_put_ascii(out, cap, &pos, ev->account_dest);
    ok = ok && JSON_PUT_LIT(out, cap, &pos, ",\"amount\":") &&
         json_put_real(out, cap, &pos, ev->amount);
    if (ok && ev->has_type)
        ok = JSON_PUT_LIT(out, cap, &pos, ",\"type\":") && json_put_i64(out, cap, &pos, ev->type);
    if (ok && ev->has_branch)
        ok = JSON_PUT_LIT(out, cap, &pos, ",\"branch\":") &&
             json_put_i64(out, cap, &pos, ev->branch);
    if (ok && ev->date[0] != '\0')
        ok = JSON_PUT_LIT(out, cap, &pos, ",\"date\":") && json_put_ascii(out, cap, &pos, ev->date);
    if (ok && ev->description[0] != '\0')
        ok = JSON_PUT_LIT(out, cap, &pos, ",\"description\":") &&
             json_put_ascii(out, cap, &pos, ev->description);
    ok = ok && JSON_PUT_LIT(out, cap, &pos, "}");
    if (!ok)
        return 0;
    out[pos] = '\0';
    return pos;
}

/* json_dumps(event_to_json(ev), JSON_COMPACT) and its NUL appended to out, byte for byte:
 * written directly for ASCII events, through jansson otherwise. 0, ERR_FULL (out unchanged) when
 * out's cap is reached, ERR_INTERNAL where jansson gives no text. */
int event_json_append(const struct event *ev, struct buf *out)
{
    char direct[EVENT_JSON_TEXT_MAX];
    size_t n = event_json_direct(ev, direct);
    if (n > 0)
        return buf_append(out, direct, n + 1);
    json_t *doc = event_to_json(ev);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (text == NULL)
        return ERR_INTERNAL;
    int rv = buf_append(out, text, strlen(text) + 1);
    free(text);
    return rv;
}

/* ---------------------------------------------------------------------------------------------
 * Binary form
 * ------------------------------------------------------------------------------------------- */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* Appends a u8 length and the bytes of s (at most max bytes, NUL-terminated within max + 1). */
static int put_str(uint8_t *out, size_t cap, size_t *pos, const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);

    if (n > max)
        return ERR_INVAL;
    if (cap - *pos < 1 + n)
        return ERR_FULL;
    out[(*pos)++] = (uint8_t)n;
    memcpy(out + *pos, s, n);
    *pos += n;
    return 0;
}

/* Encodes ev into out (cap bytes). Returns the byte count (<= EVENT_ENCODED_MAX), ERR_FULL when
 * cap is too small, or ERR_INVAL for an event that violates its own invariants (empty account,
 * an unterminated string, amount not finite and >= 0), which event_decode would refuse. */
int event_encode(const struct event *ev, uint8_t *out, size_t cap)
{
    size_t pos = 0;
    int rc;

    if (ev->account[0] == '\0' || !isfinite(ev->amount) || ev->amount < 0)
        return ERR_INVAL;
    if (cap < EVENT_FIXED_BYTES)
        return ERR_FULL;
    out[pos++] = EVENT_CODEC_VERSION;
    put_u64(out + pos, ev->txid);
    pos += 8;
    put_u64(out + pos, double_bits(ev->amount));
    pos += 8;
    put_u64(out + pos, (uint64_t)ev->ingested_ms);
    pos += 8;
    out[pos++] =
        (uint8_t)((ev->has_type ? EVENT_FLAG_TYPE : 0) | (ev->has_branch ? EVENT_FLAG_BRANCH : 0));
    put_u64(out + pos, (uint64_t)ev->type);
    pos += 8;
    put_u64(out + pos, (uint64_t)ev->branch);
    pos += 8;
    rc = put_str(out, cap, &pos, ev->account, EVENT_ACCOUNT_MAX);
    if (rc == 0)
        rc = put_str(out, cap, &pos, ev->account_dest, EVENT_ACCOUNT_MAX);
    if (rc == 0)
        rc = put_str(out, cap, &pos, ev->date, EVENT_DATE_MAX);
    if (rc == 0)
        rc = put_str(out, cap, &pos, ev->description, EVENT_DESC_MAX);
    return rc < 0 ? rc : (int)pos;
}

/* Reads a u8 length and that many bytes into dst (room for max + 1), NUL-terminated. */
static int get_str(const uint8_t *in, size_t len, size_t *pos, char *dst, size_t max)
{
    size_t n;

    if (len - *pos < 1)
        return ERR_INVAL;
    n = in[(*pos)++];
    if (n > max || len - *pos < n || memchr(in + *pos, '\0', n) != NULL)
        return ERR_INVAL;
    memcpy(dst, in + *pos, n);
    dst[n] = '\0';
    *pos += n;
    return 0;
}

/* Decodes exactly len bytes produced by event_encode into *out. Returns 0, or ERR_INVAL for a
 * truncated, over-long or malformed record (never reads past len; *out untouched then). */
int event_decode(const uint8_t *in, size_t len, struct event *out)
{
    struct event ev;
    size_t pos = 0;
    uint8_t flags;

    memset(&ev, 0, sizeof(ev));
    if (len < EVENT_FIXED_BYTES || in[0] != EVENT_CODEC_VERSION)
        return ERR_INVAL;
    pos = 1;
    ev.txid = get_u64(in + pos);
    pos += 8;
    ev.amount = bits_double(get_u64(in + pos));
    pos += 8;
    ev.ingested_ms = (int64_t)get_u64(in + pos);
    pos += 8;
    flags = in[pos++];
    ev.type = (int64_t)get_u64(in + pos);
    pos += 8;
    ev.branch = (int64_t)get_u64(in + pos);
    pos += 8;
    if ((flags & ~(EVENT_FLAG_TYPE | EVENT_FLAG_BRANCH)) != 0 || !isfinite(ev.amount) ||
        ev.amount < 0)
        return ERR_INVAL;
    ev.has_type = (flags & EVENT_FLAG_TYPE) != 0;
    ev.has_branch = (flags & EVENT_FLAG_BRANCH) != 0;
    if (get_str(in, len, &pos, ev.account, EVENT_ACCOUNT_MAX) < 0 ||
        get_str(in, len, &pos, ev.account_dest, EVENT_ACCOUNT_MAX) < 0 ||
        get_str(in, len, &pos, ev.date, EVENT_DATE_MAX) < 0 ||
        get_str(in, len, &pos, ev.description, EVENT_DESC_MAX) < 0)
        return ERR_INVAL;
    if (pos != len || ev.account[0] == '\0')
        return ERR_INVAL;
    *out = ev;
    return 0;
}
