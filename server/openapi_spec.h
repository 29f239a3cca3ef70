/* The OpenAPI 3.1 specification of this API, embedded at build time from
 * openapi/openapi.yaml (scripts/embed_openapi.py): the YAML as written and its JSON conversion,
 * each NUL-terminated after _len bytes. Immutable data: thread-safe. */
#ifndef AETHERIS_OPENAPI_SPEC_H
#define AETHERIS_OPENAPI_SPEC_H
#include <stddef.h>

extern const unsigned char openapi_yaml[];
extern const size_t openapi_yaml_len;
extern const unsigned char openapi_json[];
extern const size_t openapi_json_len;

#endif
