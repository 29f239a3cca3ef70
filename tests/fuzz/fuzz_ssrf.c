/* libFuzzer target: the webhook URL guard (common/ssrf.c). The input is split at its first
 * newline: the first part is an allow-list (ssrf_allow_parse), the rest a URL (ssrf_check_url).
 * Beyond not crashing: a URL is judged the same with and without the parsed target; a verdict
 * is one of the four; an allowed URL has an http(s) port in 1..65535 and a NUL-terminated host;
 * a literal that an empty allow-list passes is public, so the allow-list can only widen what is
 * allowed (never turn an allowed URL into a refused one). Nothing is resolved or connected. */
#include "ssrf.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TEXT_MAX 4096 /* a webhook URL is capped at 2048 bytes by the API */

static void fail(const char *what, const char *url)
{
    fprintf(stderr, "fuzz_ssrf: %s: %s\n", what, url);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_TEXT_MAX)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *url = strchr(text, '\n');
    const char *list = "";
    if (url != NULL) {
        *url++ = '\0';
        list = text;
    } else {
        url = text;
    }
    char err[256], why[256], why2[256];
    struct ssrf_allow *allow = ssrf_allow_parse(list, err, sizeof err);
    struct ssrf_target t;
    memset(&t, 0xA5, sizeof t); /* garbage in, so unset members would show */
    enum ssrf_verdict v = ssrf_check_url(url, allow, &t, why, sizeof why);
    if (v != ssrf_check_url(url, allow, NULL, why2, sizeof why2))
        fail("the verdict depends on the out parameter", url);
    if (v != SSRF_ALLOWED && v != SSRF_BAD_URL && v != SSRF_BAD_SCHEME && v != SSRF_BLOCKED)
        fail("a verdict out of range", url);
    if (v == SSRF_ALLOWED) {
        if (t.port < 1 || t.port > 65535 || memchr(t.host, '\0', sizeof t.host) == NULL)
            fail("an allowed target with a bad port or host", url);
        if (t.literal && ssrf_check_addr((const struct sockaddr *)&t.addr, allow, why2,
                                         sizeof why2) != SSRF_ALLOWED)
            fail("an allowed literal whose address is refused", url);
    }
    enum ssrf_verdict bare = ssrf_check_url(url, NULL, NULL, why2, sizeof why2);
    if (bare == SSRF_ALLOWED && v != SSRF_ALLOWED)
        fail("an allow-list refused a URL that passes without one", url);
    if (bare != SSRF_ALLOWED && bare != SSRF_BLOCKED && bare != v)
        fail("the allow-list changed a syntax verdict", url);
    ssrf_allow_free(allow);
    free(text);
    return 0;
}
