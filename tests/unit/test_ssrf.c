/* The SSRF decision function over a table of URLs and address spellings: every refused range in
 * IPv4 and IPv6, IPv4 written in decimal, octal, hex and short forms, IPv4-mapped and other
 * IPv4-embedding IPv6 forms, `0`, `[::]`, userinfo and backslash tricks, zone ids, ports and
 * schemes, and the allow-list (CIDR and bare address, mapped IPv6 against IPv4 entries). Nothing
 * here resolves a name or opens a socket. */
#include "ssrf.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include "tap.h"

struct url_case {
    const char *url;
    enum ssrf_verdict want;
};

static const struct url_case no_allow[] = {
    /* public addresses and names pass */
    {"https://93.184.216.34/hook", SSRF_ALLOWED},
    {"http://8.8.8.8:8080/x?y=1", SSRF_ALLOWED},
    {"https://[2606:4700:4700::1111]/hook", SSRF_ALLOWED},
    {"https://hooks.example.com/path", SSRF_ALLOWED},
    {"HTTPS://Hooks.Example.COM.", SSRF_ALLOWED},
    /* IPv4 ranges */
    {"http://127.0.0.1/", SSRF_BLOCKED},
    {"http://127.255.255.254:9/", SSRF_BLOCKED},
    {"http://10.1.2.3/", SSRF_BLOCKED},
    {"http://172.16.0.1/", SSRF_BLOCKED},
    {"http://172.31.255.255/", SSRF_BLOCKED},
    {"http://172.32.0.1/", SSRF_ALLOWED}, /* just outside 172.16/12 */
    {"http://192.168.1.1/", SSRF_BLOCKED},
    {"http://169.254.169.254/latest/meta-data", SSRF_BLOCKED},
    {"http://100.64.0.1/", SSRF_BLOCKED},
    {"http://100.128.0.1/", SSRF_ALLOWED}, /* just outside CGNAT */
    {"http://0.0.0.0/", SSRF_BLOCKED},
    {"http://0/", SSRF_BLOCKED},
    {"http://224.0.0.1/", SSRF_BLOCKED},
    {"http://239.255.255.250/", SSRF_BLOCKED},
    {"http://255.255.255.255/", SSRF_BLOCKED},
    {"http://240.0.0.1/", SSRF_BLOCKED},
    {"http://192.0.2.10/", SSRF_BLOCKED},
    {"http://198.18.0.1/", SSRF_BLOCKED},
    /* IPv4 spellings */
    {"http://2130706433/", SSRF_BLOCKED},   /* decimal 127.0.0.1 */
    {"http://0177.0.0.1/", SSRF_BLOCKED},   /* octal */
    {"http://017700000001/", SSRF_BLOCKED}, /* octal, one part */
    {"http://0x7f.0.0.1/", SSRF_BLOCKED},   /* hex */
    {"http://0x7f000001/", SSRF_BLOCKED},   /* hex, one part */
    {"http://127.1/", SSRF_BLOCKED},        /* short form */
    {"http://10.1/", SSRF_BLOCKED},
    {"http://0xa9.0xfe.0xa9.0xfe/", SSRF_BLOCKED}, /* 169.254.169.254 */
    {"http://127.0.0.1./", SSRF_BLOCKED},          /* trailing dot */
    {"http://1.2.3.4.5/", SSRF_BAD_URL},           /* ends in a number, not IPv4 */
    {"http://0x1g/", SSRF_ALLOWED},                /* a legal name, not a number */
    {"http://256.1.1.1/", SSRF_BAD_URL},
    /* IPv6 ranges and IPv4-embedding forms */
    {"http://[::1]/", SSRF_BLOCKED},
    {"http://[::]/", SSRF_BLOCKED},
    {"http://[::ffff:127.0.0.1]/", SSRF_BLOCKED},
    {"http://[::ffff:7f00:1]/", SSRF_BLOCKED},
    {"http://[::ffff:8.8.8.8]/", SSRF_BLOCKED}, /* mapped: refused whatever it maps */
    {"http://[::127.0.0.1]/", SSRF_BLOCKED},    /* IPv4-compatible */
    {"http://[64:ff9b::7f00:1]/", SSRF_BLOCKED},
    {"http://[2002:7f00:1::]/", SSRF_BLOCKED},
    {"http://[2001:0:4136:e378::1]/", SSRF_BLOCKED}, /* Teredo */
    {"http://[fc00::1]/", SSRF_BLOCKED},
    {"http://[fd12:3456::1]/", SSRF_BLOCKED},
    {"http://[fe80::1]/", SSRF_BLOCKED},
    {"http://[ff02::1]/", SSRF_BLOCKED},
    {"http://[2001:db8::1]/", SSRF_BLOCKED},
    {"http://[fe80::1%25eth0]/", SSRF_BAD_URL}, /* zone id */
    {"http://[::1/", SSRF_BAD_URL},
    {"http://[::1]x/", SSRF_BAD_URL},
    {"http://[not-v6]/", SSRF_BAD_URL},
    /* names that always mean this machine */
    {"http://localhost/", SSRF_BLOCKED},
    {"http://LOCALHOST.:8080/", SSRF_BLOCKED},
    {"http://api.localhost/", SSRF_BLOCKED},
    /* userinfo, backslash and parser-differential tricks */
    {"http://example.com@127.0.0.1/", SSRF_BAD_URL},
    {"http://127.0.0.1@example.com/", SSRF_BAD_URL},
    {"http://user:pw@example.com/", SSRF_BAD_URL},
    {"http://example.com\\@127.0.0.1/", SSRF_BAD_URL},
    {"http://exa mple.com/", SSRF_BAD_URL},
    {"http://exa\tmple.com/", SSRF_BAD_URL},
    {"http://ex_ample.com/", SSRF_BAD_URL},
    {"http:///path", SSRF_BAD_URL},
    {"http://:80/", SSRF_BAD_URL},
    /* ports and schemes */
    {"http://example.com:0/", SSRF_BAD_URL},
    {"http://example.com:65536/", SSRF_BAD_URL},
    {"http://example.com:8o/", SSRF_BAD_URL},
    {"http://example.com:/", SSRF_BAD_URL},
    {"ftp://example.com/", SSRF_BAD_SCHEME},
    {"file:///etc/passwd", SSRF_BAD_SCHEME},
    {"gopher://127.0.0.1:6379/_INFO", SSRF_BAD_SCHEME},
    {"//example.com/", SSRF_BAD_URL},
    {"example.com", SSRF_BAD_URL},
    {"", SSRF_BAD_URL},
};

static void test_urls(void)
{
    char why[160];
    for (size_t i = 0; i < sizeof no_allow / sizeof no_allow[0]; i++) {
        why[0] = '\0';
        enum ssrf_verdict v = ssrf_check_url(no_allow[i].url, NULL, NULL, why, sizeof why);
        ok(v == no_allow[i].want, "'%s' -> %d (%s)", no_allow[i].url, v, why);
        if (v != SSRF_ALLOWED)
            ok(why[0] != '\0', "  and says why");
    }
}

static void test_parse_target(void)
{
    struct ssrf_target t;
    char why[160];
    is_int(ssrf_check_url("https://hooks.example.com/a", NULL, &t, why, sizeof why), SSRF_ALLOWED,
           "a name passes the URL check");
    ok(t.https && !t.literal && t.port == 443 && strcmp(t.host, "hooks.example.com") == 0,
       "parsed: https, name, default port 443");
    is_int(ssrf_check_url("http://[2606:4700::1]:8443", NULL, &t, why, sizeof why), SSRF_ALLOWED,
           "IPv6 literal with a port and no path");
    ok(!t.https && t.literal && t.port == 8443 && t.addr.ss_family == AF_INET6,
       "parsed: http, IPv6 literal, port 8443");
}

static void test_allow_list(void)
{
    char err[160], why[160];
    ok(ssrf_allow_parse("127.0.0.0/8, nope", err, sizeof err) == NULL, "bad entry refused: %s",
       err);
    ok(ssrf_allow_parse("10.0.0.0/33", err, sizeof err) == NULL, "bad prefix length refused");
    ok(ssrf_allow_parse("::1/129", err, sizeof err) == NULL, "bad IPv6 prefix length refused");
    struct ssrf_allow *empty = ssrf_allow_parse("", err, sizeof err);
    ok(empty != NULL, "empty list parses");
    is_int(ssrf_check_url("http://127.0.0.1/", empty, NULL, why, sizeof why), SSRF_BLOCKED,
           "empty list allows nothing extra");
    ssrf_allow_free(empty);

    struct ssrf_allow *a = ssrf_allow_parse("127.0.0.0/8,::1,10.9.0.0/16", err, sizeof err);
    ok(a != NULL, "allow-list parses");
    is_int(ssrf_check_url("http://127.0.0.1:9999/hook", a, NULL, why, sizeof why), SSRF_ALLOWED,
           "loopback allowed when listed");
    is_int(ssrf_check_url("http://localhost:9999/hook", a, NULL, why, sizeof why), SSRF_ALLOWED,
           "localhost allowed with loopback listed");
    is_int(ssrf_check_url("http://[::1]:9999/", a, NULL, why, sizeof why), SSRF_ALLOWED,
           "::1 allowed when listed");
    is_int(ssrf_check_url("http://[::ffff:127.0.0.1]/", a, NULL, why, sizeof why), SSRF_ALLOWED,
           "mapped IPv6 of a listed IPv4 address allowed");
    is_int(ssrf_check_url("http://10.9.3.4/", a, NULL, why, sizeof why), SSRF_ALLOWED,
           "inside a listed private range");
    is_int(ssrf_check_url("http://10.8.3.4/", a, NULL, why, sizeof why), SSRF_BLOCKED,
           "outside it still refused");
    is_int(ssrf_check_url("http://[fe80::1]/", a, NULL, why, sizeof why), SSRF_BLOCKED,
           "unlisted link-local still refused");
    is_int(ssrf_check_url("ftp://127.0.0.1/", a, NULL, why, sizeof why), SSRF_BAD_SCHEME,
           "the allow-list never admits another scheme");

    /* connect-time decision on socket addresses (what libcurl reports it connected to) */
    struct sockaddr_in s4 = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.168.0.7", &s4.sin_addr);
    is_int(ssrf_check_addr((struct sockaddr *)&s4, a, why, sizeof why), SSRF_BLOCKED,
           "connect to 192.168.0.7 refused (%s)", why);
    inet_pton(AF_INET, "127.0.0.1", &s4.sin_addr);
    is_int(ssrf_check_addr((struct sockaddr *)&s4, a, why, sizeof why), SSRF_ALLOWED,
           "connect to allow-listed loopback passes");
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "fd00::5", &s6.sin6_addr);
    is_int(ssrf_check_addr((struct sockaddr *)&s6, a, why, sizeof why), SSRF_BLOCKED,
           "connect to a ULA refused");
    struct sockaddr un = {.sa_family = AF_UNIX};
    is_int(ssrf_check_addr(&un, a, why, sizeof why), SSRF_BLOCKED, "non-IP family refused");
    ssrf_allow_free(a);
}

int main(void)
{
    test_urls();
    test_parse_target();
    test_allow_list();
    return done_testing();
}
