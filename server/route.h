/* The one static route table of the REST API (route.c; STYLE.md 10): method, path pattern,
 * handler, auth scope, body cap and a metrics name per route. Patterns are literal segments and
 * whole-segment parameters ("/v1/decisions/{transaction_id}"). route_match() resolves a request
 * and yields 404 and 405 (with the Allow set) from the same table, so they cannot drift apart.
 * Immutable data and pure functions: thread-safe. */
#ifndef AETHERIS_ROUTE_H
#define AETHERIS_ROUTE_H
#include "fmacros.h"
#include <stddef.h>

#define ROUTE_MAX_PARAMS 2  /* the deepest pattern has one; room for a nested resource */
#define ROUTE_PARAM_MAX 128 /* bytes of one captured segment: ids are 20 digits at most */

struct http_request;
struct http_response;
typedef void (*route_handler_fn)(const struct http_request *req, struct http_response *resp);

enum route_method {                      /* bits, so a set of methods is a mask */
                    ROUTE_GET = 1u << 0, /* HEAD is served as GET */
                    ROUTE_POST = 1u << 1,
                    ROUTE_PUT = 1u << 2,
                    ROUTE_PATCH = 1u << 3,
                    ROUTE_DELETE = 1u << 4,
};

enum route_scope { ROUTE_SCOPE_PUBLIC, ROUTE_SCOPE_READ, ROUTE_SCOPE_WRITE, ROUTE_SCOPE_ADMIN };

#define ROUTE_BODY_CONFIG 0x1u   /* flag: the body cap is the configured http_max_body */
#define ROUTE_METRICS_SCOPE 0x2u /* flag: public when metrics_public, else scope read */

struct route {
    enum route_method method;
    const char *pattern;
    route_handler_fn handler;
    enum route_scope scope;
    size_t body_max;  /* bytes of body accepted; 0 = no body (unless ROUTE_BODY_CONFIG) */
    unsigned flags;   /* ROUTE_BODY_* */
    const char *name; /* stable snake_case name for metrics and logs */
};

enum route_result { ROUTE_MATCH, ROUTE_NOT_FOUND, ROUTE_METHOD_NOT_ALLOWED };

struct route_params { /* captured {name} segments, in pattern order, NUL-terminated */
    size_t n;
    char value[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX + 1];
};

/* Resolves a request method ("GET", "HEAD", ...) and path (no query string). ROUTE_MATCH sets
 * *out and params. ROUTE_METHOD_NOT_ALLOWED when the path exists under other methods: *allowed
 * receives their mask (0 otherwise). A parameter is one non-empty segment of at most
 * ROUTE_PARAM_MAX bytes without "%00"; anything else, a trailing slash included, is not found. */
enum route_result route_match(const char *method, const char *path, const struct route **out,
                              struct route_params *params, unsigned *allowed);
/* The method bit of a request method name (HEAD maps to ROUTE_GET); 0 when unsupported. */
unsigned route_method_parse(const char *method);
/* "GET", "POST", ... for one bit; "" for anything else. */
const char *route_method_name(enum route_method m);
/* Writes an Allow header value for a mask ("GET, POST"), truncated to fit. Returns out. */
char *route_allow_format(unsigned mask, char *out, size_t outlen);
/* "public", "read", "write" or "admin". */
const char *route_scope_name(enum route_scope s);
/* Body bytes the route accepts, given the configured http_max_body. */
size_t route_body_cap(const struct route *r, size_t configured_max);
/* The whole table, in declaration order, for iteration (OpenAPI consistency test); *n receives
 * its length. Borrowed, static. */
const struct route *route_table(size_t *n);

#endif
