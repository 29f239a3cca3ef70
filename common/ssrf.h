/* SSRF guard for webhook targets (DESIGN.md 5): which URLs and which addresses the dispatcher
 * may call. Only http and https; no userinfo, no backslashes, no IPv6 zone ids; and the address
 * must be public unicast: loopback, private (RFC 1918, ULA), link-local, CGNAT, multicast,
 * unspecified, broadcast, documentation, benchmarking and reserved ranges are refused, as are
 * IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo), unless the
 * address is inside a configured allow-list of CIDRs (tests and `make run` allow loopback).
 * IPv4 literals are recognized in every spelling inet_aton() and URL parsers accept (decimal
 * "2130706433", octal "0177.0.0.1", hex "0x7f.1", short forms "127.1").
 * The URL check happens at registration; ssrf_addr_allowed() is called again on the address
 * libcurl actually connects to, so a name that later resolves elsewhere (DNS rebinding) is
 * refused at that moment. Pure functions over an immutable allow-list: thread-safe. */
#ifndef AETHERIS_SSRF_H
#define AETHERIS_SSRF_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define SSRF_HOST_MAX 256

struct ssrf_allow;

enum ssrf_verdict {
    SSRF_ALLOWED = 0,
    SSRF_BAD_URL,    /* not a URL we accept (syntax, userinfo, zone id, port) */
    SSRF_BAD_SCHEME, /* not http or https */
    SSRF_BLOCKED     /* the address is in a refused range and not allow-listed */
};

struct ssrf_target { /* what ssrf_check_url parsed */
    bool https;
    bool literal; /* the host is an IP address (then addr holds it) */
    int port;     /* explicit or the scheme's default */
    char host[SSRF_HOST_MAX];
    struct sockaddr_storage addr;
};

/* Parses a comma-separated CIDR list ("127.0.0.0/8,::1/128"; a bare address is a /32 or /128).
 * "" gives an empty list. NULL on a malformed entry, with err naming it. */
struct ssrf_allow *ssrf_allow_parse(const char *list, char *err, size_t errlen);
void ssrf_allow_free(struct ssrf_allow *a); /* NULL is a no-op */

/* Decides on an address: SSRF_ALLOWED or SSRF_BLOCKED (why names the range). allow may be NULL. */
enum ssrf_verdict ssrf_check_addr(const struct sockaddr *sa, const struct ssrf_allow *allow,
                                  char *why, size_t whylen);
/* Decides on a URL without resolving or connecting: syntax and scheme, and when the host is an
 * IP literal (any spelling), the address. A host name passes here; its addresses are checked by
 * ssrf_check_addr when resolved. out (may be NULL) receives the parsed target. */
enum ssrf_verdict ssrf_check_url(const char *url, const struct ssrf_allow *allow,
                                 struct ssrf_target *out, char *why, size_t whylen);

#endif
