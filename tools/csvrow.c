/* The original Aetheris transactions CSV (csvrow.h): row validation and the event JSON of a
 * row, shared by aetheris-replay (which publishes rows), aetheris-seed (which stores them) and
 * aetheris-backtest (which scores them, from the original file or, with a column mapping, from
 * another CSV). Numbers are copied as text, never through a double. */
#include "csvrow.h"
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "err.h"

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* A non-empty digit string without redundant leading zeros ("0" stays "0"). Borrowed from s. */
static const char *skip_zeros(const char *s)
{
    while (s[0] == '0' && s[1] != '\0')
        s++;
    return s;
}

/* Compares two canonical digit strings as numbers: <0, 0, >0. */
static int digits_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/* Canonical digits of a non-empty unsigned integer field not above max (canonical digits), or
 * NULL. */
static const char *uint_field(const char *s, const char *max)
{
    if (s[0] == '\0' || !all_digits(s))
        return NULL;
    const char *c = skip_zeros(s);
    return digits_cmp(c, max) <= 0 ? c : NULL;
}

/* True for a plain decimal "123", "123.45", "5." or ".5" (no sign, no exponent). */
static bool is_decimal(const char *s)
{
    bool digits = false, dot = false;
    for (; *s; s++) {
        if (*s >= '0' && *s <= '9')
            digits = true;
        else if (*s == '.' && !dot)
            dot = true;
        else
            return false;
    }
    return digits;
}

/* True when s is well-formed UTF-8 without NUL (shortest forms, no surrogates, <= U+10FFFF). */
static bool is_utf8(const unsigned char *s)
{
    while (*s) {
        unsigned char c = *s;
        int n;
        unsigned int cp;
        if (c < 0x80) {
            s++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1Fu;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0Fu;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07u;
        } else {
            return false;
        }
        for (int i = 1; i <= n; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i] & 0x3Fu);
        }
        if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        s += n + 1;
    }
    return true;
}

/* Splits a CSV line into exactly 8 fields in place; false otherwise. */
static bool split8(char *line, char **f)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p; p++) {
        if (*p != ',')
            continue;
        if (n == 8)
            return false;
        *p = '\0';
        f[n++] = p + 1;
    }
    return n == 8;
}

/* Appends s JSON-escaped (s is valid UTF-8, passed through as is). */
static void json_escape(struct buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20)
            buf_printf(b, "\\u%04x", c);
        else
            buf_append(b, s, 1);
    }
}

/* Appends a decimal (is_decimal) as a JSON number with the same value: redundant leading zeros
 * dropped, "5." written as "5" and ".5" as "0.5", and an integer too long for int64 written as
 * a real ("...0"), which the daemon's parser reads as a double instead of refusing. */
#define CSV_INT_DIGITS_MAX 18 /* every 18-digit integer fits int64 */
static void json_decimal(struct buf *b, const char *s)
{
    const char *dot = strchr(s, '.');
    size_t ilen = dot ? (size_t)(dot - s) : strlen(s);
    size_t skip = 0;
    while (skip + 1 < ilen && s[skip] == '0')
        skip++;
    if (ilen == 0)
        buf_append(b, "0", 1);
    else
        buf_append(b, s + skip, ilen - skip);
    if (dot && dot[1] != '\0')
        buf_printf(b, "%s", dot);
    else if (ilen - skip > CSV_INT_DIGITS_MAX) /* a JSON integer that big is refused: a real */
        buf_append(b, ".0", 2);
}

/* Removes the trailing LF/CR of a line in place. */
static void chomp(char *line)
{
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
}

/* A validated row: pointers into the line buffer, canonical where numeric. */
#define CSV_INT64_MAX "9223372036854775807"
#define CSV_UINT64_MAX "18446744073709551615"

const char *csv_parse_row(char *line, struct csv_row *r)
{
    char *f[8];
    chomp(line);
    if (!is_utf8((const unsigned char *)line))
        return "not valid UTF-8";
    if (!split8(line, f))
        return "not 8 comma-separated fields";
    r->txid = uint_field(f[0], CSV_UINT64_MAX);
    if (r->txid == NULL)
        return "TransactionID is not an integer in 0..2^64-1";
    if (f[1][0] == '\0' || !all_digits(f[1]) || strlen(f[1]) > CSV_ACCOUNT_MAX)
        return "AccountOriginID is not 1..64 digits";
    if (!all_digits(f[2]) || strlen(f[2]) > CSV_ACCOUNT_MAX)
        return "AccountDestinationID is not 0..64 digits";
    r->type = f[3][0] ? uint_field(f[3], CSV_INT64_MAX) : "";
    if (r->type == NULL)
        return "TransactionTypeID is not an integer";
    if (!is_decimal(f[4]))
        return "Amount is not a decimal number >= 0";
    if (!isfinite(strtod(f[4], NULL))) /* the daemon refuses what a double cannot hold */
        return "Amount is too large";
    if (strlen(f[5]) > CSV_DATE_MAX)
        return "TransactionDate longer than 40 bytes";
    r->branch = f[6][0] ? uint_field(f[6], CSV_INT64_MAX) : "";
    if (r->branch == NULL)
        return "BranchID is not an integer";
    r->origin = f[1];
    r->dest = f[2];
    r->amount = f[4];
    r->date = f[5];
    r->description = f[7];
    return NULL;
}

/* An account id a mapped file may use: 1..CSV_ACCOUNT_MAX bytes (or 0.. when optional), no
 * control characters, '"' or '\\' (so the event JSON needs no escaping for it). */
static bool account_field(const char *s, bool optional)
{
    size_t n = strlen(s);
    if ((n == 0 && !optional) || n > CSV_ACCOUNT_MAX)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == '"' || *s == '\\' || *s == 0x7f)
            return false;
    return true;
}

/* Splits line in place at commas into at most max fields; returns the count, or -1 when there
 * are more. */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p; p++) {
        if (*p != ',')
            continue;
        if (n == max)
            return -1;
        *p = '\0';
        f[n++] = p + 1;
    }
    return n;
}

int csv_map_header(char *header, const struct csv_names *names, struct csv_columns *cols, char *err,
                   size_t errlen)
{
    static const char *const originals[8] = {
        "TransactionID",   "AccountOriginID", "AccountDestinationID", "TransactionTypeID", "Amount",
        "TransactionDate", "BranchID",        "Description"};
    const char *want[8] = {names->txid,   names->origin, names->dest,   names->type,
                           names->amount, names->date,   names->branch, names->description};
    int *slot[8] = {&cols->txid,   &cols->origin, &cols->dest,   &cols->type,
                    &cols->amount, &cols->date,   &cols->branch, &cols->description};
    char *f[CSV_FIELDS_MAX];
    chomp(header);
    int n = split_fields(header, f, CSV_FIELDS_MAX);
    if (n < 0) {
        snprintf(err, errlen, "the header has more than %d columns", CSV_FIELDS_MAX);
        return -1;
    }
    cols->nfields = n;
    for (int k = 0; k < 8; k++) {
        const char *name = want[k] ? want[k] : originals[k];
        *slot[k] = -1;
        for (int i = 0; i < n; i++) {
            if (strcmp(f[i], name) != 0)
                continue;
            if (*slot[k] >= 0) {
                snprintf(err, errlen, "column '%s' appears twice in the header", name);
                return -1;
            }
            *slot[k] = i;
        }
        /* transactionId, account and amount are required; so is any column named explicitly */
        if (*slot[k] < 0 && (k == 0 || k == 1 || k == 4 || want[k] != NULL)) {
            snprintf(err, errlen, "no column '%s' in the header", name);
            return -1;
        }
    }
    return 0;
}

/* Field i of f, or "" for an absent column. */
static const char *field_at(char **f, int i)
{
    return i >= 0 ? f[i] : "";
}

const char *csv_parse_mapped(char *line, const struct csv_columns *cols, struct csv_row *r)
{
    char *f[CSV_FIELDS_MAX];
    chomp(line);
    if (!is_utf8((const unsigned char *)line))
        return "not valid UTF-8";
    if (split_fields(line, f, CSV_FIELDS_MAX) != cols->nfields)
        return "not as many fields as the header";
    r->txid = uint_field(f[cols->txid], CSV_UINT64_MAX);
    if (r->txid == NULL)
        return "transaction id is not an integer in 0..2^64-1";
    r->origin = f[cols->origin];
    if (!account_field(r->origin, false))
        return "account is not 1..64 bytes of printable text without '\"' or '\\'";
    r->dest = field_at(f, cols->dest);
    if (!account_field(r->dest, true))
        return "destination account is not 0..64 bytes of printable text";
    r->type = field_at(f, cols->type);
    r->type = r->type[0] ? uint_field(r->type, CSV_INT64_MAX) : "";
    if (r->type == NULL)
        return "type is not an integer";
    r->amount = f[cols->amount];
    if (!is_decimal(r->amount))
        return "amount is not a decimal number >= 0";
    r->date = field_at(f, cols->date);
    if (strlen(r->date) > CSV_DATE_MAX)
        return "time longer than 40 bytes";
    r->branch = field_at(f, cols->branch);
    r->branch = r->branch[0] ? uint_field(r->branch, CSV_INT64_MAX) : "";
    if (r->branch == NULL)
        return "branch is not an integer";
    r->description = field_at(f, cols->description);
    return NULL;
}

void csv_row_json(const struct csv_row *r, struct buf *b)
{
    if (digits_cmp(r->txid, CSV_INT64_MAX) <= 0)
        buf_printf(b, "{\"transactionId\":%s", r->txid);
    else /* beyond jansson's integers: the digit-string form of DESIGN.md 3.1 */
        buf_printf(b, "{\"transactionId\":\"%s\"", r->txid);
    buf_printf(b, ",\"accountOrigin\":\"%s\"", r->origin);
    if (r->dest[0]) /* optional, and when present a non-empty account id */
        buf_printf(b, ",\"accountDestination\":\"%s\"", r->dest);
    buf_printf(b, ",\"amount\":");
    json_decimal(b, r->amount);
    if (r->type[0])
        buf_printf(b, ",\"type\":%s", r->type);
    if (r->branch[0])
        buf_printf(b, ",\"branch\":%s", r->branch);
    buf_printf(b, ",\"date\":\"");
    json_escape(b, r->date);
    buf_printf(b, "\",\"description\":\"");
    json_escape(b, r->description);
    buf_printf(b, "\"}");
}

const char *csv_row_event(const struct csv_row *r, struct buf *scratch, struct event *ev,
                          char *detail, size_t detail_len)
{
    enum event_invalid reason;
    buf_reset(scratch);
    csv_row_json(r, scratch);
    detail[0] = '\0';
    json_t *obj = json_loadb(scratch->data, scratch->len, 0, NULL);
    int rv = obj ? event_from_json(obj, ev, &reason, detail, detail_len) : ERR_INVAL;
    json_decref(obj);
    if (rv == 0)
        return NULL;
    return detail[0] ? detail : "not an event";
}

int csv_read_line(FILE *in, char *line, size_t cap)
{
    if (fgets(line, (int)cap, in) == NULL)
        return 0;
    if (strchr(line, '\n') != NULL || feof(in))
        return 1;
    int ch;
    do
        ch = fgetc(in);
    while (ch != '\n' && ch != EOF);
    return -1;
}
