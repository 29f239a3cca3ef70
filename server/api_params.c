/* Shared request parsing and list/get responses for the API handlers (api.h). Every parameter is
 * validated strictly and a bad one is answered with a 400 problem that names it. */
#include "api.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "fsutil.h"

#define API_LIMIT_DEFAULT 50
#define API_ACCOUNT_MAX 64
#define API_CURSOR_MAX 63

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

int api_parse_time(const char *s, int64_t *ms)
{
    size_t len = strlen(s);
    if (all_digits(s, len)) {
        if (len > 15) /* beyond year 33658: not a timestamp */
            return ERR_INVAL;
        *ms = (int64_t)strtoll(s, NULL, 10);
        return 0;
    }
    /* YYYY-MM-DDTHH:MM:SS[.f+]Z */
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':' || !all_digits(s, 4) || !all_digits(s + 5, 2) || !all_digits(s + 8, 2) ||
        !all_digits(s + 11, 2) || !all_digits(s + 14, 2) || !all_digits(s + 17, 2))
        return ERR_INVAL;
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
    int h = num(s + 11, 2), mi = num(s + 14, 2), sec = num(s + 17, 2);
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 || mi > 59 ||
        sec > 59)
        return ERR_INVAL;
    size_t pos = 19;
    int frac_ms = 0;
    if (s[pos] == '.') {
        size_t start = ++pos;
        while (pos < len && s[pos] >= '0' && s[pos] <= '9')
            pos++;
        if (pos == start || pos - start > 9)
            return ERR_INVAL;
        for (size_t i = 0; i < 3; i++)
            frac_ms = frac_ms * 10 + (start + i < pos ? s[start + i] - '0' : 0);
    }
    if (pos + 1 != len || (s[pos] != 'Z' && s[pos] != 'z'))
        return ERR_INVAL;
    *ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000LL + sec * 1000LL + frac_ms;
    return 0;
}

int api_parse_txid(const char *s, uint64_t *out)
{
    size_t len = strlen(s);
    if (!all_digits(s, len) || len > 20)
        return ERR_INVAL;
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno != 0)
        return ERR_INVAL;
    *out = v;
    return 0;
}

static bool bad_param(struct http_response *resp, const struct http_request *req,
                      const char *detail)
{
    http_problem(resp, 400, "invalid-parameter", detail, req->path);
    return false;
}

bool api_parse_query(const struct http_request *req, struct http_response *resp,
                     const char *kind_param, const char *kinds, struct store_query *q)
{
    char detail[192];
    memset(q, 0, sizeof *q);
    q->limit = API_LIMIT_DEFAULT;
    const char *v = http_query(req, "limit");
    if (v) {
        char *end = NULL;
        long n = strtol(v, &end, 10);
        if (end == v || *end != '\0' || n < 1 || n > req->app->cfg->page_max) {
            snprintf(detail, sizeof detail, "limit must be an integer from 1 to %d",
                     req->app->cfg->page_max);
            return bad_param(resp, req, detail);
        }
        q->limit = (int)n;
    }
    q->account = http_query(req, "account");
    if (q->account && (q->account[0] == '\0' || strlen(q->account) > API_ACCOUNT_MAX))
        return bad_param(resp, req, "account must be 1 to 64 bytes");
    if (kind_param) {
        q->kind = http_query(req, kind_param);
        if (q->kind && !strlist_has(kinds, q->kind)) {
            snprintf(detail, sizeof detail, "%s must be one of %s", kind_param, kinds);
            return bad_param(resp, req, detail);
        }
    }
    v = http_query(req, "since");
    if (v && api_parse_time(v, &q->since_ms) != 0)
        return bad_param(resp, req, "since must be epoch milliseconds or RFC 3339 UTC");
    v = http_query(req, "until");
    if (v && api_parse_time(v, &q->until_ms) != 0)
        return bad_param(resp, req, "until must be epoch milliseconds or RFC 3339 UTC");
    q->cursor = http_query(req, "cursor");
    if (q->cursor && strlen(q->cursor) > API_CURSOR_MAX)
        return bad_param(resp, req, "cursor is malformed");
    return true;
}

void api_list_response(const struct http_request *req, struct http_response *resp, int rv,
                       json_t *items, const char *next_cursor)
{
    if (rv == ERR_INVAL) {
        http_problem(resp, 400, "invalid-parameter", "cursor is malformed", req->path);
        return;
    }
    if (rv != 0) {
        http_problem(resp, 503, "unavailable", "the store is unavailable", req->path);
        return;
    }
    http_json(resp, 200,
              json_pack("{s:o, s:o}", "items", items, "next_cursor",
                        next_cursor[0] ? json_string(next_cursor) : json_null()));
}

void api_get_by_txid(const struct http_request *req, struct http_response *resp,
                     int (*get)(struct store *, uint64_t, json_t **), const char *what)
{
    uint64_t txid;
    char detail[128];
    if (api_parse_txid(req->params->value[0], &txid) != 0) {
        http_problem(resp, 400, "invalid-parameter",
                     "transaction_id must be a non-negative integer below 2^64", req->path);
        return;
    }
    json_t *doc = NULL;
    int rv = get(req->app->store, txid, &doc);
    if (rv == ERR_NOTFOUND) {
        snprintf(detail, sizeof detail, "no %s for transaction %llu", what,
                 (unsigned long long)txid);
        http_problem(resp, 404, "not-found", detail, req->path);
    } else if (rv != 0) {
        http_problem(resp, 503, "unavailable", "the store is unavailable", req->path);
    } else {
        http_json(resp, 200, doc);
    }
}
