/* Standard Webhooks 1.0 signing (DESIGN.md 5): secrets are "whsec_" + base64 of 24..64 random
 * bytes; a delivery carries `webhook-id`, `webhook-timestamp` (seconds) and
 * `webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, several
 * space-separated signatures during a secret rotation. OpenSSL does the HMAC, the randomness and
 * the base64. Pure functions (whsign_new_secret reads the OpenSSL CSPRNG): thread-safe. */
#ifndef AETHERIS_WHSIGN_H
#define AETHERIS_WHSIGN_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WHSIGN_KEY_MIN 24
#define WHSIGN_KEY_MAX 64
#define WHSIGN_SECRET_MAX 96 /* "whsec_" + base64(64 bytes) = 6 + 88, and the NUL */
#define WHSIGN_SIG_MAX 52    /* "v1," + base64(32 bytes) = 3 + 44, and the NUL */

struct whsign_key {
    uint8_t bytes[WHSIGN_KEY_MAX];
    size_t len;
};

/* Decodes "whsec_<base64>" into key. 0, or ERR_INVAL when the prefix, the base64 or the length
 * (24..64 bytes) is wrong. */
int whsign_parse_secret(const char *secret, struct whsign_key *key);
/* Writes a new secret of nbytes (24..64) random bytes, "whsec_..." NUL-terminated, into out
 * (WHSIGN_SECRET_MAX bytes). 0, ERR_INVAL for a bad size, or ERR_IO when the CSPRNG fails. */
int whsign_new_secret(size_t nbytes, char out[WHSIGN_SECRET_MAX]);
/* The signature "v1,<base64>" of body under key for message id and timestamp (seconds). */
void whsign_sign(const struct whsign_key *key, const char *msg_id, int64_t timestamp,
                 const char *body, size_t body_len, char out[WHSIGN_SIG_MAX]);
/* True when any space-separated "v1,..." entry of header is the signature of the message under
 * key (constant-time comparison of each candidate). */
bool whsign_verify(const struct whsign_key *key, const char *msg_id, int64_t timestamp,
                   const char *body, size_t body_len, const char *header);

#endif
