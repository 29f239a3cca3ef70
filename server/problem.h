/* RFC 9457 problem details (problem.c): the error body every API failure carries, as
 * application/problem+json. Each error kind has a stable slug, and its `type` URI is
 * https://aetheris.dev/problems/<slug>, so clients branch on `type`, never on `detail` text.
 * The PROBLEM_* slugs below are the whole vocabulary; the title comes from the slug.
 * Pure functions over immutable data: thread-safe. */
#ifndef AETHERIS_PROBLEM_H
#define AETHERIS_PROBLEM_H
#include "fmacros.h"
#include <jansson.h>

#define PROBLEM_TYPE_BASE "https://aetheris.dev/problems/"
#define PROBLEM_CONTENT_TYPE "application/problem+json"

#define PROBLEM_NOT_FOUND "not-found"
#define PROBLEM_METHOD_NOT_ALLOWED "method-not-allowed"
#define PROBLEM_PAYLOAD_TOO_LARGE "payload-too-large"
#define PROBLEM_INVALID_JSON "invalid-json"
#define PROBLEM_INVALID_PARAMETER "invalid-parameter"
#define PROBLEM_INVALID_EVENT "invalid-event"
#define PROBLEM_UNAUTHORIZED "unauthorized"
#define PROBLEM_FORBIDDEN "forbidden"
#define PROBLEM_RATE_LIMITED "rate-limited"
#define PROBLEM_TOO_MANY_STREAMS "too-many-streams"
#define PROBLEM_UNAVAILABLE "unavailable"
#define PROBLEM_URL_NOT_ALLOWED "url-not-allowed"
#define PROBLEM_CONFLICT "conflict"
#define PROBLEM_INTERNAL "internal"

/* Short human title of a slug ("Not Found"); "Error" for a slug outside the vocabulary. */
const char *problem_title(const char *slug);
/* Builds {"type","title","status","detail","instance"}. detail and instance may be NULL (then
 * omitted). Returns a new reference the caller owns. */
json_t *problem_new(int status, const char *slug, const char *detail, const char *instance);

#endif
