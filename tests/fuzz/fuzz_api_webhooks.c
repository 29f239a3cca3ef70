/* libFuzzer target: the JSON bodies of POST and PATCH /v1/webhooks (server/api_webhooks.c:
 * parse_body and apply_body, with the SSRF guard on the url member). The first input byte
 * chooses create (even) or patch (odd); the rest is the request body. Invariants: a body that
 * is not JSON is a 400 problem response; a refused body carries a 400/422 status, a problem slug
 * and a detail; an accepted one leaves a document whose url is a non-empty string (create),
 * whose event_types and actions are arrays, and whose public view shows no secret.
 * Includes api_webhooks.c to reach its static functions. Name resolution is replaced by a stub
 * that answers 127.0.0.1 for every host (no DNS query ever leaves the process), and the SSRF
 * allow-list by one that allows only loopback, so the address checks run on both outcomes. */
#include "fmacros.h" /* first: the feature macros must precede every system header */
#include <stdint.h>

/* Before netdb.h: it then declares the stubs under the replaced names. */
#define getaddrinfo fuzz_getaddrinfo
#define freeaddrinfo fuzz_freeaddrinfo
#define webhooks_allow fuzz_webhooks_allow
#include "../../server/api_webhooks.c"
#undef getaddrinfo
#undef freeaddrinfo
#undef webhooks_allow
#include <arpa/inet.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ssrf_allow *loopback_only;

const struct ssrf_allow *fuzz_webhooks_allow(const struct webhooks *w)
{
    (void)w;
    return loopback_only;
}

int fuzz_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                     struct addrinfo **res)
{
    (void)service;
    (void)hints;
    if (node == NULL || node[0] == '\0')
        return EAI_NONAME;
    struct addrinfo *ai = calloc(1, sizeof *ai + sizeof(struct sockaddr_in));
    struct sockaddr_in *sin = (struct sockaddr_in *)(ai + 1);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ai->ai_family = AF_INET;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_addr = (struct sockaddr *)sin;
    ai->ai_addrlen = sizeof *sin;
    *res = ai;
    return 0;
}

void fuzz_freeaddrinfo(struct addrinfo *res)
{
    free(res);
}

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_api_webhooks: %s: %s\n", what, detail);
    abort();
}

static json_t *template_doc(void)
{
    return json_pack("{s:s, s:s, s:s, s:[s,s], s:[], s:b, s:n, s:n, s:s, s:n, s:n, s:I, s:I}", "id",
                     "wh_0123456789abcdef", "url", "", "description", "", "event_types",
                     "anomaly.detected", "decision.created", "actions", "enabled", 1,
                     "disabled_reason", "failing_since_ms", "secret", "whsec_fuzz",
                     "previous_secret", "previous_secret_expires_ms", "created_ms", (json_int_t)1,
                     "updated_ms", (json_int_t)1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (loopback_only == NULL) {
        char err[128];
        loopback_only = ssrf_allow_parse("127.0.0.0/8,::1/128", err, sizeof err);
    }
    if (size == 0)
        return 0;
    bool create = (data[0] & 1) == 0;
    size_t len = size - 1;
    char *body = malloc(len + 1); /* NUL-terminated like the server's body buffer */
    memcpy(body, data + 1, len);
    body[len] = '\0';
    struct app app;
    memset(&app, 0, sizeof app);
    struct http_request req = {.app = &app,
                               .method = create ? "POST" : "PATCH",
                               .path = "/v1/webhooks",
                               .body = len ? body : NULL,
                               .body_len = len};
    struct http_response resp = {0};
    json_t *parsed = parse_body(&req, &resp);
    if (parsed == NULL) {
        if (resp.status != 400 || resp.body == NULL)
            fail("unparseable JSON without a 400 problem", body);
        free(resp.body);
        free(body);
        return 0;
    }
    json_t *doc = template_doc();
    struct field_error fe = {0, NULL, ""};
    if (apply_body(&req, parsed, doc, create, &fe) != 0) {
        if ((fe.status != 400 && fe.status != 422) || fe.slug == NULL || fe.detail[0] == '\0')
            fail("a refusal without status, slug or detail", body);
    } else {
        const json_t *url = json_object_get(doc, "url");
        if (create && (!json_is_string(url) || json_string_length(url) == 0))
            fail("an accepted create without a url", body);
        if (!json_is_array(json_object_get(doc, "event_types")) ||
            !json_is_array(json_object_get(doc, "actions")))
            fail("an accepted body that broke the document's arrays", body);
        json_t *view = webhooks_public_view(doc);
        if (json_object_get(view, "secret") != NULL ||
            json_object_get(view, "previous_secret") != NULL)
            fail("a public view with a secret", body);
        json_decref(view);
    }
    json_decref(doc);
    json_decref(parsed);
    free(body);
    return 0;
}
