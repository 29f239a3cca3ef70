/* Route table and matcher: every route reaches itself (and HEAD reaches GET), path parameters are
 * captured whole, and the failure cases (unknown path, trailing slash, empty, over-long or
 * NUL-escaped parameter, wrong or unknown method with the right Allow set) come out as 404/405.
 * Also checks the table's own invariants, which the OpenAPI test builds on. */
#include "route.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "tap.h"

/* The route's pattern with each {param} replaced by "123". */
static void concrete_path(const char *pattern, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = pattern; *p && o + 4 < outlen;) {
        if (*p == '{') {
            memcpy(out + o, "123", 3);
            o += 3;
            p = strchr(p, '}') + 1;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
}

static void test_every_route(void)
{
    size_t n;
    const struct route *t = route_table(&n);
    ok(n >= 11, "the table has every route (%zu)", n);
    for (size_t i = 0; i < n; i++) {
        char path[256];
        const struct route *r = NULL;
        struct route_params p;
        unsigned allowed = 99;
        concrete_path(t[i].pattern, path, sizeof path);
        enum route_result m = route_match(route_method_name(t[i].method), path, &r, &p, &allowed);
        ok(m == ROUTE_MATCH && r == &t[i] && allowed == 0, "%s %s reaches %s",
           route_method_name(t[i].method), path, t[i].name);
        size_t braces = 0;
        for (const char *c = t[i].pattern; *c; c++)
            braces += *c == '{';
        ok(p.n == braces && (p.n == 0 || strcmp(p.value[0], "123") == 0),
           "%s captures %zu parameter(s)", t[i].name, braces);
        if (t[i].method == ROUTE_GET)
            ok(route_match("HEAD", path, &r, &p, &allowed) == ROUTE_MATCH && r == &t[i],
               "HEAD %s is served as GET", path);
    }
}

static void test_table_invariants(void)
{
    size_t n;
    const struct route *t = route_table(&n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        bad += t[i].pattern[0] != '/' || t[i].handler == NULL || t[i].name == NULL;
        bad += route_method_name(t[i].method)[0] == '\0';
        bad += (t[i].body_max > 0 || (t[i].flags & ROUTE_BODY_CONFIG)) && t[i].method == ROUTE_GET;
        for (size_t j = 0; j < i; j++) {
            bad += strcmp(t[i].name, t[j].name) == 0;
            bad += t[i].method == t[j].method && strcmp(t[i].pattern, t[j].pattern) == 0;
        }
    }
    is_int(bad, 0,
           "patterns rooted, handlers set, names and (method, pattern) unique, "
           "no GET takes a body");
}

static void test_cases(void)
{
    static char long_ok[200], long_bad[200];
    snprintf(long_ok, sizeof long_ok, "/v1/decisions/%0128d", 7);
    snprintf(long_bad, sizeof long_bad, "/v1/decisions/%0129d", 7);
    const struct {
        const char *method, *path;
        enum route_result want;
        const char *name;   /* route reached, for ROUTE_MATCH */
        const char *param0; /* first captured parameter, or NULL */
        unsigned allowed;   /* for ROUTE_METHOD_NOT_ALLOWED */
    } cases[] = {
        {"GET", "/v1/decisions/3022681", ROUTE_MATCH, "decisions_get", "3022681", 0},
        {"GET", "/v1/anomalies/18446744073709551615", ROUTE_MATCH, "anomalies_get",
         "18446744073709551615", 0},
        {"GET", "/v1/decisions/abc", ROUTE_MATCH, "decisions_get", "abc", 0},
        {"GET", "/v1/decisions", ROUTE_MATCH, "decisions_list", NULL, 0},
        {"POST", "/v1/events", ROUTE_MATCH, "events_post", NULL, 0},
        {"GET", "/metrics", ROUTE_MATCH, "metrics_prometheus", NULL, 0},
        {"GET", long_ok, ROUTE_MATCH, "decisions_get", NULL, 0},
        {"GET", long_bad, ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/nothing", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "v1/health", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/health/", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1//health", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/healthz", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/V1/health", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/1/", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/1/2", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/12%00", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/%00", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/1\t2", ROUTE_NOT_FOUND, NULL, NULL, 0},
        {"GET", "/v1/decisions/%20", ROUTE_MATCH, "decisions_get", "%20", 0},
        {"DELETE", "/v1/events", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_POST},
        {"GET", "/v1/events", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_POST},
        {"HEAD", "/v1/events", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_POST},
        {"PUT", "/v1/decisions", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_GET},
        {"POST", "/v1/decisions/7", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_GET},
        {"BREW", "/healthz", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_GET},
        {"get", "/healthz", ROUTE_METHOD_NOT_ALLOWED, NULL, NULL, ROUTE_GET},
        {"BREW", "/nowhere", ROUTE_NOT_FOUND, NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct route *r = NULL;
        struct route_params p = {0};
        unsigned allowed = 99;
        enum route_result m = route_match(cases[i].method, cases[i].path, &r, &p, &allowed);
        bool good = m == cases[i].want;
        if (good && m == ROUTE_MATCH)
            good = strcmp(r->name, cases[i].name) == 0 &&
                   (cases[i].param0 == NULL || strcmp(p.value[0], cases[i].param0) == 0);
        if (good)
            good = allowed == cases[i].allowed;
        ok(good, "%s %.40s -> %d (got %d, allowed %#x)", cases[i].method, cases[i].path,
           (int)cases[i].want, (int)m, allowed);
    }
}

static void test_helpers(void)
{
    char allow[64];
    ok(strcmp(route_allow_format(ROUTE_GET, allow, sizeof allow), "GET") == 0, "Allow: GET");
    ok(strcmp(route_allow_format(ROUTE_DELETE | ROUTE_GET | ROUTE_POST, allow, sizeof allow),
              "GET, POST, DELETE") == 0,
       "Allow lists methods in a fixed order (%s)", allow);
    ok(strcmp(route_allow_format(0, allow, sizeof allow), "") == 0, "empty mask, empty Allow");
    ok(strcmp(route_allow_format(ROUTE_GET | ROUTE_POST, allow, 6), "GET") == 0,
       "a short buffer keeps whole methods only (%s)", allow);
    is_int(route_method_parse("HEAD"), ROUTE_GET, "HEAD parses as GET");
    is_int(route_method_parse("PATCH"), ROUTE_PATCH, "PATCH parses");
    is_int(route_method_parse("OPTIONS"), 0, "unsupported methods parse as 0");
    ok(strcmp(route_scope_name(ROUTE_SCOPE_WRITE), "write") == 0 &&
           strcmp(route_scope_name(ROUTE_SCOPE_PUBLIC), "public") == 0,
       "scope names");

    const struct route *r = NULL;
    struct route_params p;
    unsigned allowed;
    route_match("POST", "/v1/events", &r, &p, &allowed);
    is_int(route_body_cap(r, 4096), 4096, "POST /v1/events takes the configured body cap");
    ok(r->scope == ROUTE_SCOPE_WRITE, "POST /v1/events needs the write scope");
    route_match("GET", "/v1/decisions", &r, &p, &allowed);
    is_int(route_body_cap(r, 4096), 0, "GET routes take no body");
    ok(r->scope == ROUTE_SCOPE_READ, "listing decisions needs the read scope");
    route_match("GET", "/healthz", &r, &p, &allowed);
    ok(r->scope == ROUTE_SCOPE_PUBLIC, "liveness is public");
}

int main(void)
{
    test_every_route();
    test_table_invariants();
    test_cases();
    test_helpers();
    return done_testing();
}
