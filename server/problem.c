/* Problem details (problem.h). The slug table is the single list of error kinds: adding a kind
 * means adding a row here and a PROBLEM_* slug in the header, and the type URI follows from the
 * slug. Titles are fixed per kind (RFC 9457 3.1.3: the title does not change between
 * occurrences); everything occurrence-specific goes into `detail`. */
#include "problem.h"
#include <stdio.h>
#include <string.h>

static const struct {
    const char *slug;
    const char *title;
} kinds[] = {
    {PROBLEM_NOT_FOUND, "Not Found"},
    {PROBLEM_METHOD_NOT_ALLOWED, "Method Not Allowed"},
    {PROBLEM_PAYLOAD_TOO_LARGE, "Content Too Large"},
    {PROBLEM_INVALID_JSON, "Invalid JSON Body"},
    {PROBLEM_INVALID_PARAMETER, "Invalid Parameter"},
    {PROBLEM_INVALID_EVENT, "Invalid Event"},
    {PROBLEM_UNAUTHORIZED, "Unauthorized"},
    {PROBLEM_FORBIDDEN, "Forbidden"},
    {PROBLEM_RATE_LIMITED, "Too Many Requests"},
    {PROBLEM_TOO_MANY_STREAMS, "Too Many Streams"},
    {PROBLEM_UNAVAILABLE, "Service Unavailable"},
    {PROBLEM_URL_NOT_ALLOWED, "URL Not Allowed"},
    {PROBLEM_CONFLICT, "Conflict"},
    {PROBLEM_INTERNAL, "Internal Error"},
};

const char *problem_title(const char *slug)
{
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].slug, slug) == 0)
            return kinds[i].title;
    return "Error";
}

json_t *problem_new(int status, const char *slug, const char *detail, const char *instance)
{
    char type[160];
    snprintf(type, sizeof type, PROBLEM_TYPE_BASE "%s", slug);
    json_t *p = json_object();
    json_object_set_new(p, "type", json_string(type));
    json_object_set_new(p, "title", json_string(problem_title(slug)));
    json_object_set_new(p, "status", json_integer(status));
    /* json_string() refuses invalid UTF-8 (a raw request path may hold any bytes): the member is
     * then dropped rather than failing the whole error response. */
    if (detail)
        json_object_set_new(p, "detail", json_string(detail));
    if (instance)
        json_object_set_new(p, "instance", json_string(instance));
    return p;
}
