/* API parameter parsing: ?limit= bounds, the time-bound parser (epoch milliseconds and strict
 * RFC 3339 UTC with calendar checks: month lengths, leap years, fractions, garbage), transaction
 * ids up to UINT64_MAX, action/priority sets, and the query -> store_query builder, whose every
 * refusal must name the offending parameter. */
#include "api_params.h"
#include <stdio.h>
#include <string.h>
#include "err.h"
#include "tap.h"

#define REJECT (-1LL) /* expected value meaning "must be refused" */

static void test_limit(void)
{
    const struct {
        const char *in;
        int page_max;
        long long want;
    } cases[] = {
        {NULL, 500, 50},
        {NULL, 10, 10},
        {"1", 500, 1},
        {"500", 500, 500},
        {"050", 500, 50},
        {"0", 500, REJECT},
        {"501", 500, REJECT},
        {"-1", 500, REJECT},
        {"+5", 500, REJECT},
        {" 5", 500, REJECT},
        {"5 ", 500, REJECT},
        {"", 500, REJECT},
        {"1e2", 500, REJECT},
        {"0x10", 500, REJECT},
        {"99999999999999999999", 500, REJECT},
        {"2147483648", 10000, REJECT},
        {"5.0", 500, REJECT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int got = -7;
        int rv = api_params_limit(cases[i].in, cases[i].page_max, &got);
        const char *shown = cases[i].in ? cases[i].in : "(absent)";
        if (cases[i].want == REJECT)
            ok(rv == ERR_INVAL && got == -7, "limit '%s' (max %d) refused", shown,
               cases[i].page_max);
        else
            ok(rv == 0 && got == cases[i].want, "limit '%s' (max %d) = %lld (got %d)", shown,
               cases[i].page_max, cases[i].want, got);
    }
}

static void test_time(void)
{
    const struct {
        const char *in;
        long long want;
    } cases[] = {
        /* epoch milliseconds */
        {"0", 0},
        {"1732270000000", 1732270000000LL},
        {"000000000000123", 123},
        {"999999999999999", 999999999999999LL},
        {"1000000000000000", REJECT},
        {"-5", REJECT},
        {"+5", REJECT},
        {"12ab", REJECT},
        {"1.5", REJECT},
        /* RFC 3339 UTC */
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-22T10:00:00Z", 1795341600000LL},
        {"2026-11-22t10:00:00z", 1795341600000LL},
        {"2026-12-31T23:59:59Z", 1798761599000LL},
        {"2025-01-01T00:00:00Z", 1735689600000LL},
        {"9999-12-31T23:59:59Z", 253402300799000LL},
        /* fractions: 1..9 digits, truncated to milliseconds */
        {"2026-11-22T10:00:00.123Z", 1795341600123LL},
        {"2026-11-22T10:00:00.1Z", 1795341600100LL},
        {"2026-11-22T10:00:00.05Z", 1795341600050LL},
        {"2026-11-22T10:00:00.999999999Z", 1795341600999LL},
        {"2026-11-22T10:00:00.1234567890Z", REJECT},
        {"2026-11-22T10:00:00.Z", REJECT},
        {"2026-11-22T10:00:00.12aZ", REJECT},
        {"2026-11-22T10:00:00,5Z", REJECT},
        /* leap years: divisible by 4, except centuries, except every 400 years */
        {"2024-02-29T00:00:00Z", 1709164800000LL},
        {"2000-02-29T12:00:00Z", 951825600000LL},
        {"2100-03-01T00:00:00Z", 4107542400000LL},
        {"2026-02-29T00:00:00Z", REJECT},
        {"2100-02-29T00:00:00Z", REJECT},
        {"2026-02-30T00:00:00Z", REJECT},
        {"2024-02-30T00:00:00Z", REJECT},
        /* other calendar and clock bounds */
        {"2026-04-31T00:00:00Z", REJECT},
        {"2026-06-31T00:00:00Z", REJECT},
        {"2026-01-32T00:00:00Z", REJECT},
        {"2026-13-01T00:00:00Z", REJECT},
        {"2026-00-10T00:00:00Z", REJECT},
        {"2026-11-00T00:00:00Z", REJECT},
        {"2026-11-22T24:00:00Z", REJECT},
        {"2026-11-22T10:60:00Z", REJECT},
        {"2026-12-31T23:59:60Z", REJECT},
        {"1969-12-31T23:59:59Z", REJECT},
        /* shape and garbage */
        {"2026-11-22T10:00:00", REJECT},
        {"2026-11-22T10:00:00+00:00", REJECT},
        {"2026-11-22T10:00:00+01:00", REJECT},
        {"2026-11-22 10:00:00Z", REJECT},
        {"2026-11-22", REJECT},
        {"2026-1-22T10:00:00Z", REJECT},
        {"20261122T100000Z", REJECT},
        {"2026-11-22T10:00:00ZZ", REJECT},
        {"2026-11-22T10:00:00Z ", REJECT},
        {" 2026-11-22T10:00:00Z", REJECT},
        {"+026-11-22T10:00:00Z", REJECT},
        {"2026-11-22T1a:00:00Z", REJECT},
        {"yesterday", REJECT},
        {"", REJECT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t ms = -7;
        int rv = api_params_time(cases[i].in, &ms);
        if (cases[i].want == REJECT)
            ok(rv == ERR_INVAL && ms == -7, "time '%s' refused", cases[i].in);
        else
            ok(rv == 0 && ms == cases[i].want, "time '%s' = %lld (got %lld)", cases[i].in,
               cases[i].want, (long long)ms);
    }
}

static void test_txid_and_sets(void)
{
    uint64_t id = 0;
    ok(api_params_txid("18446744073709551615", &id) == 0 && id == UINT64_MAX, "UINT64_MAX txid");
    ok(api_params_txid("0", &id) == 0 && id == 0, "txid 0");
    ok(api_params_txid("3022681", &id) == 0 && id == 3022681, "txid 3022681");
    ok(api_params_txid("18446744073709551616", &id) == ERR_INVAL, "txid overflow refused");
    ok(api_params_txid("000000000000000000001", &id) == ERR_INVAL, "21 digits refused");
    const char *bad[] = {"", "12x", "-1", "+1", " 1", "1 ", "0x1f", "%00", "1.0"};
    int refused = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        refused += api_params_txid(bad[i], &id) == ERR_INVAL;
    is_int(refused, (long long)(sizeof bad / sizeof bad[0]), "non-digit txids refused");

    const char *actions = "APPROVE|REVIEW|BLOCK", *priorities = "immediate|batch";
    ok(api_params_one_of("APPROVE", actions) && api_params_one_of("REVIEW", actions) &&
           api_params_one_of("BLOCK", actions),
       "every action accepted");
    ok(!api_params_one_of("approve", actions) && !api_params_one_of("BLOCKED", actions) &&
           !api_params_one_of("BLOC", actions) && !api_params_one_of("", actions) &&
           !api_params_one_of("APPROVE|REVIEW", actions),
       "case, prefixes, empty and lists refused for action");
    ok(api_params_one_of("immediate", priorities) && api_params_one_of("batch", priorities) &&
           !api_params_one_of("urgent", priorities) && !api_params_one_of("Batch", priorities),
       "priority set");
}

/* A query string as name=value pairs, for the builder's lookup callback. */
struct fake_query {
    const char *pairs[8][2];
};

static const char *fake_lookup(const void *ctx, const char *name)
{
    const struct fake_query *q = ctx;
    for (size_t i = 0; i < 8 && q->pairs[i][0]; i++)
        if (strcmp(q->pairs[i][0], name) == 0)
            return q->pairs[i][1];
    return NULL;
}

static void test_query_builder(void)
{
    const struct api_list_spec decisions = {"action", "APPROVE|REVIEW|BLOCK", true};
    const struct api_list_spec anomalies = {"priority", "immediate|batch", true};
    const struct api_list_spec deadletter = {NULL, NULL, false};
    static char account65[66], cursor64[65];
    memset(account65, 'a', 65);
    memset(cursor64, 'c', 64);

    struct store_query q;
    char detail[160];
    struct fake_query all = {{{"account", "201164"},
                              {"action", "BLOCK"},
                              {"since", "2026-11-22T10:00:00Z"},
                              {"until", "1795341600500"},
                              {"limit", "20"},
                              {"cursor", "abc"}}};
    ok(api_params_query(fake_lookup, &all, &decisions, 500, &q, detail, sizeof detail) == 0 &&
           strcmp(q.account, "201164") == 0 && strcmp(q.kind, "BLOCK") == 0 &&
           q.since_ms == 1795341600000LL && q.until_ms == 1795341600500LL && q.limit == 20 &&
           strcmp(q.cursor, "abc") == 0,
       "every filter lands in the store query");
    struct fake_query none = {{{NULL, NULL}}};
    ok(api_params_query(fake_lookup, &none, &anomalies, 500, &q, detail, sizeof detail) == 0 &&
           q.account == NULL && q.kind == NULL && q.since_ms == 0 && q.until_ms == 0 &&
           q.cursor == NULL && q.limit == 50,
       "no parameters: no filters, default limit");
    ok(api_params_query(fake_lookup, &all, &deadletter, 500, &q, detail, sizeof detail) == 0 &&
           q.account == NULL && q.kind == NULL && q.since_ms == 0 && q.limit == 20 &&
           strcmp(q.cursor, "abc") == 0,
       "dead letters take only limit and cursor");

    const struct {
        const struct api_list_spec *spec;
        const char *name, *value;
    } bad[] = {
        {&decisions, "limit", "0"},
        {&decisions, "limit", "501"},
        {&decisions, "limit", "ten"},
        {&decisions, "action", "NOPE"},
        {&decisions, "action", ""},
        {&anomalies, "priority", "BLOCK"},
        {&anomalies, "since", "2026-02-30T00:00:00Z"},
        {&anomalies, "until", "tomorrow"},
        {&decisions, "account", ""},
        {&decisions, "account", account65},
        {&decisions, "cursor", ""},
        {&deadletter, "cursor", cursor64},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fake_query one = {{{bad[i].name, bad[i].value}}};
        detail[0] = '\0';
        int rv = api_params_query(fake_lookup, &one, bad[i].spec, 500, &q, detail, sizeof detail);
        ok(rv == ERR_INVAL && strncmp(detail, bad[i].name, strlen(bad[i].name)) == 0,
           "%s='%.20s' refused, detail names it (%s)", bad[i].name, bad[i].value, detail);
    }
    struct fake_query edge = {{{"account", account65 + 1}, {"cursor", cursor64 + 1}}};
    ok(api_params_query(fake_lookup, &edge, &decisions, 500, &q, detail, sizeof detail) == 0,
       "64-byte account and 63-byte cursor accepted");
    struct fake_query ignored = {{{"priority", "whatever"}, {"color", "red"}}};
    ok(api_params_query(fake_lookup, &ignored, &decisions, 500, &q, detail, sizeof detail) == 0,
       "parameters a route does not take are ignored");
}

int main(void)
{
    test_limit();
    test_time();
    test_txid_and_sets();
    test_query_builder();
    return done_testing();
}
