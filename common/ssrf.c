/* SSRF guard (ssrf.h). Ranges are tables of (prefix, length, reason) per family, checked in
 * order; the allow-list is checked first and wins. URL parsing is deliberately narrower than
 * RFC 3986: anything a parser could read two ways (userinfo, backslashes, zone ids, spaces,
 * a host that ends in a number but is not a valid IPv4 address) is refused, so the host we judge
 * is the host libcurl will resolve. */
#include "ssrf.h"
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "xmalloc.h"

#define SSRF_ALLOW_MAX 64

struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
};

struct ssrf_allow {
    size_t n;
    struct cidr e[SSRF_ALLOW_MAX];
};

struct range {
    const char *prefix;
    int bits;
    const char *reason;
};

static const struct range v4_refused[] = {
    {"0.0.0.0", 8, "unspecified ('this network')"},
    {"10.0.0.0", 8, "private (RFC 1918)"},
    {"100.64.0.0", 10, "carrier-grade NAT"},
    {"127.0.0.0", 8, "loopback"},
    {"169.254.0.0", 16, "link-local"},
    {"172.16.0.0", 12, "private (RFC 1918)"},
    {"192.0.0.0", 24, "IETF protocol assignments"},
    {"192.0.2.0", 24, "documentation"},
    {"192.88.99.0", 24, "6to4 relay anycast"},
    {"192.168.0.0", 16, "private (RFC 1918)"},
    {"198.18.0.0", 15, "benchmarking"},
    {"198.51.100.0", 24, "documentation"},
    {"203.0.113.0", 24, "documentation"},
    {"224.0.0.0", 4, "multicast"},
    {"240.0.0.0", 4, "reserved or broadcast"},
};

static const struct range v6_refused[] = {
    {"::ffff:0:0", 96, "IPv4-mapped"},
    {"::", 96, "unspecified, loopback or IPv4-compatible"},
    {"64:ff9b::", 96, "NAT64 (embeds IPv4)"},
    {"64:ff9b:1::", 48, "local NAT64 (embeds IPv4)"},
    {"100::", 64, "discard-only"},
    {"2001::", 23, "IETF protocol assignments (Teredo embeds IPv4)"},
    {"2001:db8::", 32, "documentation"},
    {"2002::", 16, "6to4 (embeds IPv4)"},
    {"fc00::", 7, "unique local (private)"},
    {"fe80::", 10, "link-local"},
    {"fec0::", 10, "site-local"},
    {"ff00::", 8, "multicast"},
};

static bool prefix_match(const uint8_t *a, const uint8_t *p, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, p, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (p[whole] & mask);
}

static const char *refused_reason(int family, const uint8_t *a)
{
    const struct range *t = family == AF_INET ? v4_refused : v6_refused;
    size_t n = family == AF_INET ? sizeof v4_refused / sizeof v4_refused[0]
                                 : sizeof v6_refused / sizeof v6_refused[0];
    for (size_t i = 0; i < n; i++) {
        uint8_t p[16];
        inet_pton(family, t[i].prefix, p);
        if (prefix_match(a, p, t[i].bits))
            return t[i].reason;
    }
    return NULL;
}

static bool allowed_by(const struct ssrf_allow *allow, int family, const uint8_t *a)
{
    for (size_t i = 0; allow && i < allow->n; i++)
        if (allow->e[i].family == family && prefix_match(a, allow->e[i].addr, allow->e[i].bits))
            return true;
    return false;
}

enum ssrf_verdict ssrf_check_addr(const struct sockaddr *sa, const struct ssrf_allow *allow,
                                  char *why, size_t whylen)
{
    const uint8_t *a;
    int family = sa->sa_family;
    if (family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (family == AF_INET6) {
        a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0 && allowed_by(allow, AF_INET, a + 12))
            return SSRF_ALLOWED; /* ::ffff:a.b.c.d is a.b.c.d for the allow-list */
    } else {
        snprintf(why, whylen, "address family %d is not IP", family);
        return SSRF_BLOCKED;
    }
    if (allowed_by(allow, family, a))
        return SSRF_ALLOWED;
    const char *reason = refused_reason(family, a);
    if (reason == NULL)
        return SSRF_ALLOWED;
    char text[INET6_ADDRSTRLEN];
    inet_ntop(family, a, text, sizeof text);
    snprintf(why, whylen, "%s is %s and not in webhook_allow_cidrs", text, reason);
    return SSRF_BLOCKED;
}

/* Parses "addr[/bits]" of at most 63 bytes into c. */
static bool parse_cidr(const char *s, size_t n, struct cidr *c)
{
    char text[64];
    if (n == 0 || n >= sizeof text)
        return false;
    memcpy(text, s, n);
    text[n] = '\0';
    char *slash = strchr(text, '/');
    if (slash)
        *slash = '\0';
    c->family = strchr(text, ':') ? AF_INET6 : AF_INET;
    int max = c->family == AF_INET ? 32 : 128;
    memset(c->addr, 0, sizeof c->addr);
    if (inet_pton(c->family, text, c->addr) != 1)
        return false;
    c->bits = max;
    if (slash) {
        char *end = NULL;
        long bits = strtol(slash + 1, &end, 10);
        if (end == slash + 1 || *end != '\0' || bits < 0 || bits > max)
            return false;
        c->bits = (int)bits;
    }
    return true;
}

struct ssrf_allow *ssrf_allow_parse(const char *list, char *err, size_t errlen)
{
    struct ssrf_allow *a = xcalloc(1, sizeof *a);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        if (a->n == SSRF_ALLOW_MAX || !parse_cidr(p, n, &a->e[a->n])) {
            snprintf(err, errlen, "'%.*s' is %s", (int)(n > 64 ? 64 : n), p,
                     a->n == SSRF_ALLOW_MAX ? "one entry too many (64 at most)"
                                            : "not an address or CIDR");
            free(a);
            return NULL;
        }
        a->n++;
        p += n;
    }
    return a;
}

void ssrf_allow_free(struct ssrf_allow *a)
{
    free(a);
}

/* The WHATWG "ends in a number" test: the last label (a trailing dot ignored) is decimal digits
 * or 0x-hex, so the host must be an IPv4 address. */
static bool ends_in_number(const char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    size_t start = n;
    while (start > 0 && host[start - 1] != '.')
        start--;
    const char *l = host + start;
    size_t len = n - start;
    if (len == 0)
        return false;
    size_t i = 0;
    bool hex = len >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X');
    if (hex)
        i = 2;
    for (; i < len; i++)
        if (hex ? !isxdigit((unsigned char)l[i]) : !isdigit((unsigned char)l[i]))
            return false;
    return true;
}

static bool name_chars_ok(const char *host)
{
    for (const char *p = host; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
            return false;
    return host[0] != '.' && host[0] != '-';
}

/* Host names that always mean this machine. */
static bool is_localhost_name(const char *host)
{
    size_t n = strlen(host);
    if (n > 0 && host[n - 1] == '.')
        n--;
    static const char suffix[] = ".localhost";
    size_t sl = sizeof suffix - 1;
    return (n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
           (n > sl && strncasecmp(host + n - sl, suffix, sl) == 0);
}

static enum ssrf_verdict bad(char *why, size_t whylen, enum ssrf_verdict v, const char *text)
{
    snprintf(why, whylen, "%s", text);
    return v;
}

enum ssrf_verdict ssrf_check_url(const char *url, const struct ssrf_allow *allow,
                                 struct ssrf_target *out, char *why, size_t whylen)
{
    struct ssrf_target t;
    memset(&t, 0, sizeof t);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '\\')
            return bad(why, whylen, SSRF_BAD_URL,
                       "spaces, control bytes and backslashes are "
                       "not allowed in a webhook URL");
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        t.https = true;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else {
        return bad(why, whylen, strstr(url, "://") ? SSRF_BAD_SCHEME : SSRF_BAD_URL,
                   "the URL must start with http:// or https://");
    }
    size_t alen = strcspn(rest, "/?#");
    if (memchr(rest, '@', alen))
        return bad(why, whylen, SSRF_BAD_URL, "credentials (user@host) are not allowed in the URL");
    const char *host = rest, *port = NULL;
    size_t hlen;
    bool bracketed = rest[0] == '[';
    if (bracketed) {
        const char *close = memchr(rest, ']', alen);
        if (close == NULL)
            return bad(why, whylen, SSRF_BAD_URL, "unterminated [IPv6] host");
        host = rest + 1;
        hlen = (size_t)(close - host);
        if (close + 1 < rest + alen) {
            if (close[1] != ':')
                return bad(why, whylen, SSRF_BAD_URL, "garbage after the [IPv6] host");
            port = close + 2;
        }
    } else {
        const char *colon = memchr(rest, ':', alen);
        hlen = colon ? (size_t)(colon - rest) : alen;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen == 0 || hlen >= sizeof t.host)
        return bad(why, whylen, SSRF_BAD_URL, "the host is empty or too long");
    memcpy(t.host, host, hlen);
    t.host[hlen] = '\0';
    t.port = t.https ? 443 : 80;
    if (port) {
        size_t plen = (size_t)(rest + alen - port);
        long v = 0;
        if (plen == 0 || plen > 5)
            return bad(why, whylen, SSRF_BAD_URL, "the port must be 1 to 65535");
        for (size_t i = 0; i < plen; i++) {
            if (!isdigit((unsigned char)port[i]))
                return bad(why, whylen, SSRF_BAD_URL, "the port must be 1 to 65535");
            v = v * 10 + (port[i] - '0');
        }
        if (v < 1 || v > 65535)
            return bad(why, whylen, SSRF_BAD_URL, "the port must be 1 to 65535");
        t.port = (int)v;
    }

    if (bracketed) {
        if (strchr(t.host, '%'))
            return bad(why, whylen, SSRF_BAD_URL, "IPv6 zone ids are not allowed");
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&t.addr;
        if (inet_pton(AF_INET6, t.host, &s6->sin6_addr) != 1)
            return bad(why, whylen, SSRF_BAD_URL, "not a valid IPv6 address");
        s6->sin6_family = AF_INET6;
        t.literal = true;
    } else if (ends_in_number(t.host)) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&t.addr;
        char v4[SSRF_HOST_MAX];
        snprintf(v4, sizeof v4, "%s", t.host);
        size_t n = strlen(v4);
        if (v4[n - 1] == '.') /* "127.0.0.1." is still 127.0.0.1 to a resolver */
            v4[n - 1] = '\0';
        if (inet_aton(v4, &s4->sin_addr) == 0)
            return bad(why, whylen, SSRF_BAD_URL, "the host ends in a number but is not IPv4");
        s4->sin_family = AF_INET;
        t.literal = true;
    } else if (!name_chars_ok(t.host)) {
        return bad(why, whylen, SSRF_BAD_URL, "the host name has characters outside a-z 0-9 - .");
    }
    if (out)
        *out = t;
    if (t.literal)
        return ssrf_check_addr((const struct sockaddr *)&t.addr, allow, why, whylen);
    if (is_localhost_name(t.host)) {
        struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        return ssrf_check_addr((const struct sockaddr *)&lo, allow, why, whylen);
    }
    return SSRF_ALLOWED;
}
