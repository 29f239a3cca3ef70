/* The one static route table of the REST API (route.c): method, path pattern ("{name}" matches
 * one non-empty path segment), handler, auth scope, whether a body is accepted, and a metrics
 * name. route_match() resolves a request to a route (404 and 405 with the allowed methods come
 * from the same table). Pure, immutable data: thread-safe. */
#ifndef AETHERIS_ROUTE_H
#define AETHERIS_ROUTE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>

#define ROUTE_MAX_PARAMS 2
#define ROUTE_PARAM_MAX 128 /* bytes of one captured path segment */

struct http_request;
struct http_response;
typedef void (*route_handler_fn)(const struct http_request *req, struct http_response *resp);

enum route_scope { SCOPE_PUBLIC, SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN };

struct route {
    const char *method;
    const char *pattern;
    route_handler_fn handler;
    enum route_scope scope;
    bool has_body; /* true: the body is capped by http_max_body; false: no body accepted */
    const char *name;
};

enum route_match_result { ROUTE_MATCH, ROUTE_NOT_FOUND, ROUTE_METHOD_NOT_ALLOWED };

struct route_params {
    size_t n;
    char value[ROUTE_MAX_PARAMS][ROUTE_PARAM_MAX + 1];
};

/* Resolves method + path (no query string). On ROUTE_MATCH *out and params are set; on
 * ROUTE_METHOD_NOT_ALLOWED `allow` receives the allowed methods ("GET, POST"). HEAD matches GET. */
enum route_match_result route_match(const char *method, const char *path, const struct route **out,
                                    struct route_params *params, char *allow, size_t allowlen);
/* The whole table (for the OpenAPI consistency test): *n receives its length. */
const struct route *route_table(size_t *n);

#endif
