/* API-key authentication (DESIGN.md 4): keys are configured as `name:scope:sha256hex` entries
 * (api_keys, comma-separated, and/or api_keys_file, one per line), so the daemon never holds a
 * key in clear. A presented key (`X-API-Key: <key>` or `Authorization: Bearer <key>`) is hashed
 * with SHA-256 and compared with every configured hash in constant time, without stopping at a
 * match. Scopes are ordered: admin includes write, write includes read.
 * Failed attempts are counted per client address in a fixed table; an address that fails
 * auth_fail_limit times within auth_fail_window_s is refused (429) until its window ends,
 * without its keys being checked. With no keys configured the daemon refuses to start unless
 * auth_disabled is set (local use); then every request is let through as "anonymous".
 * Thread-safe: the key list is immutable after auth_new; the failure table has its own lock. */
#ifndef AETHERIS_AUTH_H
#define AETHERIS_AUTH_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "config.h"
#include "route.h"

#define AUTH_NAME_MAX 64 /* key names: 1..63 of [A-Za-z0-9_.-] */

struct auth;

enum auth_result {
    AUTH_OK,        /* the key is valid and its scope suffices (or auth is disabled) */
    AUTH_MISSING,   /* no key presented: 401 */
    AUTH_INVALID,   /* unknown key: 401 */
    AUTH_FORBIDDEN, /* valid key, scope too small: 403 */
    AUTH_THROTTLED  /* too many failures from this address: 429 */
};

struct auth_identity {
    char name[AUTH_NAME_MAX]; /* the key's name, or "anonymous" with auth disabled */
    enum route_scope scope;   /* the key's scope */
};

/* Loads and validates the keys (api_keys, then api_keys_file). NULL with err naming the entry
 * when one is malformed or a name repeats, or when there is no key and auth is not disabled. */
struct auth *auth_new(const struct config *cfg, char *err, size_t errlen);
void auth_free(struct auth *a); /* NULL is a no-op */
/* False when auth_disabled is set. */
bool auth_enabled(const struct auth *a);
/* Number of configured keys. */
size_t auth_key_count(const struct auth *a);
/* Checks a presented key (NULL when none) for a route needing `need` (not PUBLIC), from client
 * address `client` (may be NULL). *who is filled on AUTH_OK and AUTH_FORBIDDEN; *retry_after_s
 * on AUTH_THROTTLED. Failures (missing, invalid) count towards the client's throttle. */
enum auth_result auth_check(struct auth *a, const char *presented, enum route_scope need,
                            const struct sockaddr *client, struct auth_identity *who,
                            int *retry_after_s);
/* The key from the request headers: X-API-Key, else "Authorization: Bearer <key>" (scheme
 * case-insensitive); NULL when neither is present. Borrowed from the arguments. */
const char *auth_presented_key(const char *x_api_key, const char *authorization);
/* "read", "write" or "admin" from text; -1 when unknown. */
int auth_scope_parse(const char *s);

#endif
