/* Parameter parsing and list/get replies (api_params.h).
 *
 * Every parser is strict: the whole string must match, no sign, no whitespace, no silent
 * truncation. RFC 3339 is parsed by position rather than with strptime(), which is
 * locale-dependent, accepts out-of-range fields and normalizes 2026-02-30 into March; here the
 * calendar is checked explicitly. The query builder reads parameters through a lookup callback
 * so the unit test drives it without an HTTP connection. */
#include "api_params.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "fsutil.h"
#include "rpool.h"

#define EPOCH_DIGITS_MAX 15 /* 10^15 ms is year 33658: anything longer is not a timestamp */
#define TXID_DIGITS_MAX 20  /* UINT64_MAX has 20 digits */
#define FRACTION_DIGITS_MAX 9

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* Value of n digits already checked with digits(). */
static int digits_value(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

static bool leap_year(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Leap years in 1..y. */
static int64_t leaps_through(int64_t y)
{
    return y / 4 - y / 100 + y / 400;
}

/* Days from 1970-01-01 to y-m-d, for a valid date with y >= 1970. */
static int64_t days_since_epoch(int y, int m, int d)
{
    static const int before_month[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    int64_t days = (int64_t)(y - 1970) * 365 + leaps_through(y - 1) - leaps_through(1969);
    days += before_month[m - 1] + (m > 2 && leap_year(y)) + d - 1;
    return days;
}

int api_params_limit(const char *s, int page_max, int *out)
{
    if (s == NULL) {
        *out = page_max < API_LIMIT_DEFAULT ? page_max : API_LIMIT_DEFAULT;
        return 0;
    }
    size_t len = strlen(s);
    if (!digits(s, len) || len > 9) /* 9 digits fit an int; page_max is far smaller */
        return ERR_INVAL;
    int v = digits_value(s, len);
    if (v < 1 || v > page_max)
        return ERR_INVAL;
    *out = v;
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SS[.f]Z" (T and Z may be lower case, RFC 3339 5.6 note). */
static int parse_rfc3339(const char *s, size_t len, int64_t *ms)
{
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return ERR_INVAL;
    if (!digits(s, 4) || !digits(s + 5, 2) || !digits(s + 8, 2) || !digits(s + 11, 2) ||
        !digits(s + 14, 2) || !digits(s + 17, 2))
        return ERR_INVAL;
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y = digits_value(s, 4), mo = digits_value(s + 5, 2), d = digits_value(s + 8, 2);
    int h = digits_value(s + 11, 2), mi = digits_value(s + 14, 2), sec = digits_value(s + 17, 2);
    if (y < 1970 || mo < 1 || mo > 12 || d < 1)
        return ERR_INVAL;
    if (d > month_days[mo - 1] + (mo == 2 && leap_year(y)) || h > 23 || mi > 59 || sec > 59)
        return ERR_INVAL;
    size_t pos = 19;
    int frac_ms = 0;
    if (s[pos] == '.') {
        size_t start = ++pos;
        while (pos < len && s[pos] >= '0' && s[pos] <= '9')
            pos++;
        size_t n = pos - start;
        if (n == 0 || n > FRACTION_DIGITS_MAX)
            return ERR_INVAL;
        for (size_t i = 0; i < 3; i++)
            frac_ms = frac_ms * 10 + (i < n ? s[start + i] - '0' : 0);
    }
    if (pos + 1 != len || (s[pos] != 'Z' && s[pos] != 'z'))
        return ERR_INVAL;
    int64_t secs = ((days_since_epoch(y, mo, d) * 24 + h) * 60 + mi) * 60 + sec;
    *ms = secs * 1000 + frac_ms;
    return 0;
}

int api_params_time(const char *s, int64_t *ms)
{
    size_t len = strlen(s);
    if (digits(s, len)) {
        if (len > EPOCH_DIGITS_MAX)
            return ERR_INVAL;
        *ms = (int64_t)strtoll(s, NULL, 10);
        return 0;
    }
    return parse_rfc3339(s, len, ms);
}

int api_params_txid(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    if (!digits(s, len) || len > TXID_DIGITS_MAX)
        return ERR_INVAL;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE)
        return ERR_INVAL;
    *out = (uint64_t)v;
    return 0;
}

bool api_params_one_of(const char *s, const char *allowed)
{
    return s[0] != '\0' && strlist_has(allowed, s);
}

/* The one wording of a bad ?limit=. */
static void limit_detail(int page_max, char *detail, size_t detaillen)
{
    snprintf(detail, detaillen, "limit must be an integer from 1 to %d", page_max);
}

int api_params_query(api_lookup_fn lookup, const void *ctx, const struct api_list_spec *spec,
                     int page_max, struct store_query *q, char *detail, size_t detaillen)
{
    memset(q, 0, sizeof *q);
    if (api_params_limit(lookup(ctx, "limit"), page_max, &q->limit) != 0) {
        limit_detail(page_max, detail, detaillen);
        return ERR_INVAL;
    }
    q->cursor = lookup(ctx, "cursor");
    if (q->cursor && (q->cursor[0] == '\0' || strlen(q->cursor) > API_CURSOR_MAX)) {
        snprintf(detail, detaillen, "cursor must be a next_cursor value (1 to %d bytes)",
                 API_CURSOR_MAX);
        return ERR_INVAL;
    }
    if (spec->kind_param) {
        q->kind = lookup(ctx, spec->kind_param);
        if (q->kind && !api_params_one_of(q->kind, spec->kinds)) {
            snprintf(detail, detaillen, "%s must be one of %s", spec->kind_param, spec->kinds);
            return ERR_INVAL;
        }
    }
    if (!spec->filters)
        return 0;
    q->account = lookup(ctx, "account");
    if (q->account && (q->account[0] == '\0' || strlen(q->account) > API_ACCOUNT_MAX)) {
        snprintf(detail, detaillen, "account must be 1 to %d bytes", API_ACCOUNT_MAX);
        return ERR_INVAL;
    }
    static const char *const bounds[] = {"since", "until"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = lookup(ctx, bounds[i]);
        int64_t *dst = i == 0 ? &q->since_ms : &q->until_ms;
        if (v && api_params_time(v, dst) != 0) {
            snprintf(detail, detaillen,
                     "%s must be milliseconds since the epoch or RFC 3339 UTC "
                     "(2026-11-22T10:00:00Z)",
                     bounds[i]);
            return ERR_INVAL;
        }
    }
    return 0;
}

static const char *query_lookup(const void *ctx, const char *name)
{
    return http_query(ctx, name);
}

/* Reads a list route's query into *q; on a bad parameter answers 400 naming it and returns
 * false. */
static bool list_query(const struct http_request *req, struct http_response *resp,
                       const struct api_list_spec *spec, struct store_query *q)
{
    char detail[160];
    if (api_params_query(query_lookup, req, spec, req->app->cfg->page_max, q, detail,
                         sizeof detail) == 0)
        return true;
    http_problem(resp, 400, PROBLEM_INVALID_PARAMETER, detail, req->path);
    return false;
}

/* The answer to a failed page read: 400 for a malformed cursor, else 503. */
static void list_failed(const struct http_request *req, struct http_response *resp, int rv)
{
    if (rv == ERR_INVAL)
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER,
                     "cursor is malformed (use a next_cursor value unchanged)", req->path);
    else
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "the store is unavailable", req->path);
}

void api_params_serve_list(const struct http_request *req, struct http_response *resp,
                           const struct api_list_spec *spec,
                           int (*list)(struct store *, const struct store_query *, json_t **,
                                       char[STORE_CURSOR_MAX]))
{
    struct store_query q;
    if (!list_query(req, resp, spec, &q))
        return;
    json_t *items = NULL;
    char next[STORE_CURSOR_MAX] = "";
    int rv = list(req->app->store, &q, &items, next);
    if (rv != 0) {
        list_failed(req, resp, rv);
    } else {
        json_t *body = json_object();
        json_object_set_new(body, "items", items ? items : json_array());
        json_object_set_new(body, "next_cursor", next[0] ? json_string(next) : json_null());
        http_json_response(resp, 200, body);
        items = NULL;
    }
    json_decref(items);
}

#define LIST_TEXT_MAX ((size_t)256 << 20) /* a page's body: far above page_max large documents */

void api_params_serve_list_text(const struct http_request *req, struct http_response *resp,
                                const struct api_list_spec *spec,
                                int (*list)(struct store *, const struct store_query *,
                                            struct buf *, char[STORE_CURSOR_MAX]))
{
    struct store_query q;
    if (!list_query(req, resp, spec, &q))
        return;
    struct buf body;
    buf_init(&body, LIST_TEXT_MAX);
    char next[STORE_CURSOR_MAX] = "";
    int rv = buf_append(&body, "{\"items\":", 9);
    if (rv == 0)
        rv = list(req->app->store, &q, &body, next);
    if (rv == 0) /* a cursor is digits and a dot: nothing to escape */
        rv = next[0] ? buf_printf(&body, ",\"next_cursor\":\"%s\"}", next)
                     : buf_append(&body, ",\"next_cursor\":null}", 20);
    if (rv != 0) {
        list_failed(req, resp, rv);
    } else {
        size_t len = body.len;
        http_body_take(resp, 200, "application/json", buf_take(&body), len);
    }
    buf_cleanup(&body);
}

void api_params_serve_get(const struct http_request *req, struct http_response *resp,
                          int (*get)(struct store *, uint64_t, json_t **), const char *what)
{
    uint64_t txid;
    char detail[128];
    if (req->params[0] == NULL || api_params_txid(req->params[0], &txid) != 0) {
        http_problem(resp, 400, PROBLEM_INVALID_PARAMETER,
                     "transaction_id must be an integer from 0 to 18446744073709551615", req->path);
        return;
    }
    json_t *doc = NULL;
    int rv = get(req->app->store, txid, &doc);
    if (rv == ERR_NOTFOUND) {
        snprintf(detail, sizeof detail, "no %s for transaction_id %llu", what,
                 (unsigned long long)txid);
        http_problem(resp, 404, PROBLEM_NOT_FOUND, detail, req->path);
    } else if (rv != 0) {
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "the store is unavailable", req->path);
    } else {
        http_json_response(resp, 200, doc);
        doc = NULL;
    }
    json_decref(doc);
}

int api_params_serve_limit(const struct http_request *req, struct http_response *resp,
                           int when_absent, int *out)
{
    const char *text = http_query(req, "limit");
    if (text == NULL && when_absent > 0) {
        *out = when_absent;
        return 0;
    }
    if (api_params_limit(text, req->app->cfg->page_max, out) == 0)
        return 0;
    char detail[96];
    limit_detail(req->app->cfg->page_max, detail, sizeof detail);
    http_problem(resp, 400, PROBLEM_INVALID_PARAMETER, detail, req->path);
    return ERR_INVAL;
}

struct rconn *api_redis_borrow(const struct http_request *req, struct http_response *resp)
{
    struct rconn *rc = rpool_get(req->app->redis, API_REDIS_WAIT_MS);
    if (rc == NULL)
        http_problem(resp, 503, PROBLEM_UNAVAILABLE, "no Redis connection is free; retry",
                     req->path);
    return rc;
}
