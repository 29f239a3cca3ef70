/* GET /openapi.json and GET /openapi.yaml: the specification embedded in the binary
 * (openapi_spec.h), so the daemon describes itself exactly as it was built. */
#include "api.h"
#include <string.h>
#include "openapi_spec.h"
#include "xmalloc.h"

static void serve(struct http_response *resp, const char *type, const unsigned char *text,
                  size_t len)
{
    char *body = xmalloc(len + 1);
    memcpy(body, text, len + 1);
    http_body_take(resp, 200, type, body, len);
}

void api_openapi_json(const struct http_request *req, struct http_response *resp)
{
    (void)req;
    serve(resp, "application/json", openapi_json, openapi_json_len);
}

void api_openapi_yaml(const struct http_request *req, struct http_response *resp)
{
    (void)req;
    serve(resp, "application/yaml", openapi_yaml, openapi_yaml_len);
}
