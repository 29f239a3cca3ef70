/* The route table and the embedded OpenAPI spec agree, both ways: every route (method and
 * pattern) is an operation of the spec and every operation is a route; an operation's declared
 * x-scope is the route's; non-public operations document 401, 403 and 429 and public ones
 * declare `security: []`; every path parameter of a pattern is declared. Also: the served YAML
 * and JSON are the embedded texts and the JSON is an OpenAPI 3.1 document. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <jansson.h>
#include "openapi_spec.h"
#include "route.h"
#include "tap.h"

static void lower(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outlen; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* The scope a route declares, as the spec names it. */
static const char *route_x_scope(const struct route *r)
{
    return route_scope_name(r->scope);
}

static bool param_declared(json_t *op, const char *name)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(op, "parameters"), i, p)
    {
        json_t *ref = json_object_get(p, "$ref");
        const char *pname = json_string_value(json_object_get(p, "name"));
        if ((pname && strcmp(pname, name) == 0) ||
            (ref && strstr(json_string_value(ref), name) != NULL))
            return true;
    }
    return false;
}

static void table_to_spec(json_t *paths)
{
    size_t n;
    const struct route *t = route_table(&n);
    for (size_t i = 0; i < n; i++) {
        char method[16];
        lower(route_method_name(t[i].method), method, sizeof method);
        json_t *op = json_object_get(json_object_get(paths, t[i].pattern), method);
        if (!ok(op != NULL, "route %s %s is in the spec", method, t[i].pattern))
            continue;
        const char *scope = json_string_value(json_object_get(op, "x-scope"));
        ok(scope && strcmp(scope, route_x_scope(&t[i])) == 0, "  with x-scope %s (spec: %s)",
           route_x_scope(&t[i]), scope ? scope : "none");
        json_t *responses = json_object_get(op, "responses");
        json_t *security = json_object_get(op, "security");
        if (t[i].scope == ROUTE_SCOPE_PUBLIC) {
            ok(json_is_array(security) && json_array_size(security) == 0,
               "  public: security is []");
        } else {
            ok(security == NULL, "  protected: the global security applies");
            ok(json_object_get(responses, "401") && json_object_get(responses, "403") &&
                   json_object_get(responses, "429"),
               "  protected: documents 401, 403 and 429");
        }
        for (const char *p = strchr(t[i].pattern, '{'); p; p = strchr(p + 1, '{')) {
            char name[64];
            size_t len = strcspn(p + 1, "}");
            snprintf(name, sizeof name, "%.*s", (int)len, p + 1);
            ok(param_declared(op, name), "  path parameter {%s} declared", name);
        }
        if ((t[i].flags & ROUTE_BODY_CONFIG) || t[i].body_max > 0)
            ok(json_object_get(op, "requestBody") && json_object_get(responses, "413"),
               "  takes a body: requestBody and 413 documented");
    }
}

static void spec_to_table(json_t *paths)
{
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            size_t n;
            const struct route *t = route_table(&n);
            bool found = false;
            for (size_t i = 0; i < n && !found; i++) {
                char m[16];
                lower(route_method_name(t[i].method), m, sizeof m);
                found = strcmp(t[i].pattern, path) == 0 && strcmp(m, method) == 0;
            }
            ok(found, "spec operation %s %s is a route", method, path);
            ok(json_object_get(json_object_get(op, "responses"), "default") != NULL,
               "  documents the generic error response");
        }
    }
}

int main(void)
{
    is_int(strlen((const char *)openapi_json), openapi_json_len, "JSON text is NUL-terminated");
    is_int(strlen((const char *)openapi_yaml), openapi_yaml_len, "YAML text is NUL-terminated");
    json_error_t e;
    json_t *spec = json_loads((const char *)openapi_json, 0, &e);
    if (!ok(spec != NULL, "embedded JSON parses (%s)", spec ? "" : e.text))
        return done_testing();
    const char *version = json_string_value(json_object_get(spec, "openapi"));
    ok(version && strncmp(version, "3.1", 3) == 0, "OpenAPI 3.1 (%s)", version ? version : "?");
    json_t *paths = json_object_get(spec, "paths");
    table_to_spec(paths);
    spec_to_table(paths);
    json_decref(spec);
    return done_testing();
}
