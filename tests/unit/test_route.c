/* Route table matching (404/405/Allow/params) and the API's parameter parsers (time bounds in
 * epoch ms and RFC 3339 with calendar checks, transaction ids). */
#include "route.h"
#include <string.h>
#include "api.h"
#include "err.h"
#include "tap.h"

int main(void)
{
    const struct route *r = NULL;
    struct route_params p;
    char allow[64];
    size_t n;
    const struct route *table = route_table(&n);
    int matched = 0;
    for (size_t i = 0; i < n; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s", table[i].pattern);
        char *brace = strchr(path, '{');
        if (brace)
            snprintf(brace, sizeof path - (size_t)(brace - path), "123");
        matched += route_match(table[i].method, path, &r, &p, allow, sizeof allow) == ROUTE_MATCH &&
                   r == &table[i];
    }
    is_int(matched, (long long)n, "every route in the table matches its own path");

    is_int(route_match("GET", "/v1/decisions/3022681", &r, &p, allow, sizeof allow), ROUTE_MATCH,
           "decision by id");
    ok(p.n == 1 && strcmp(p.value[0], "3022681") == 0, "path parameter captured");
    is_int(route_match("HEAD", "/v1/health", &r, &p, allow, sizeof allow), ROUTE_MATCH,
           "HEAD matches GET");
    is_int(route_match("GET", "/v1/nothing", &r, &p, allow, sizeof allow), ROUTE_NOT_FOUND, "404");
    is_int(route_match("GET", "/v1/decisions/", &r, &p, allow, sizeof allow), ROUTE_NOT_FOUND,
           "an empty parameter does not match");
    is_int(route_match("GET", "/v1/decisions/1/2", &r, &p, allow, sizeof allow), ROUTE_NOT_FOUND,
           "a parameter never spans segments");
    is_int(route_match("GET", "/v1/health/", &r, &p, allow, sizeof allow), ROUTE_NOT_FOUND,
           "trailing slash is a different path");
    char longp[300] = "/v1/decisions/";
    memset(longp + 14, '7', 200);
    longp[214] = '\0';
    is_int(route_match("GET", longp, &r, &p, allow, sizeof allow), ROUTE_NOT_FOUND,
           "an over-long segment does not match");
    is_int(route_match("DELETE", "/v1/events", &r, &p, allow, sizeof allow),
           ROUTE_METHOD_NOT_ALLOWED, "405");
    ok(strcmp(allow, "POST") == 0, "Allow lists POST (%s)", allow);
    route_match("PUT", "/v1/decisions", &r, &p, allow, sizeof allow);
    ok(strcmp(allow, "GET") == 0, "Allow lists GET (%s)", allow);

    struct {
        const char *in;
        long long want; /* -1: must be rejected */
    } times[] = {
        {"0", 0},
        {"1732270000000", 1732270000000LL},
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-22T10:00:00Z", 1795341600000LL},
        {"2026-11-22T10:00:00.123Z", 1795341600123LL},
        {"2026-11-22T10:00:00.1Z", 1795341600100LL},
        {"2024-02-29T00:00:00Z", 1709164800000LL},
        {"2000-02-29T12:00:00z", 951825600000LL},
        {"2026-02-29T00:00:00Z", -1},
        {"1900-02-29T00:00:00Z", -1},
        {"2026-02-30T00:00:00Z", -1},
        {"2026-13-01T00:00:00Z", -1},
        {"2026-04-31T00:00:00Z", -1},
        {"2026-11-22T24:00:00Z", -1},
        {"2026-11-22T10:60:00Z", -1},
        {"2026-11-22T10:00:00", -1},
        {"2026-11-22T10:00:00+01:00", -1},
        {"2026-11-22T10:00:00.Z", -1},
        {"2026-11-22 10:00:00Z", -1},
        {"-5", -1},
        {"", -1},
        {"12ab", -1},
        {"9999999999999999", -1},
    };
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        int64_t ms = -7;
        int rv = api_parse_time(times[i].in, &ms);
        if (times[i].want < 0)
            ok(rv == ERR_INVAL, "time '%s' rejected", times[i].in);
        else
            ok(rv == 0 && ms == times[i].want, "time '%s' = %lld (got %lld)", times[i].in,
               times[i].want, (long long)ms);
    }
    uint64_t id;
    ok(api_parse_txid("18446744073709551615", &id) == 0 && id == UINT64_MAX, "max txid");
    ok(api_parse_txid("18446744073709551616", &id) == ERR_INVAL, "txid overflow rejected");
    ok(api_parse_txid("12x", &id) == ERR_INVAL && api_parse_txid("", &id) == ERR_INVAL &&
           api_parse_txid("-1", &id) == ERR_INVAL,
       "non-digit txids rejected");
    return done_testing();
}
