/* API-key authentication and the failed-attempt throttle (auth.h).
 *
 * Keys: an array of {name, scope, SHA-256}. Verification hashes the presented key once and
 * compares it with every entry using CRYPTO_memcmp, remembering the match without leaving the
 * loop early, so the time taken does not depend on which key (if any) matched.
 * Throttle: a direct-mapped table of AUTH_THROTTLE_SLOTS entries keyed by the client address
 * (IPv4 or IPv6 bytes). An entry counts failures in a window that starts at its first failure;
 * a different address hashing to an occupied slot replaces it only when that entry's window is
 * over or it holds fewer failures, so memory stays fixed and an address near its limit is not
 * freed by one colliding stranger. The first refusal of an address in a window is logged with
 * the address (an operator may want to block it). */
#include "auth.h"
#include <ctype.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include "clock.h"
#include "log.h"
#include "shard.h"
#include "xmalloc.h"

#define AUTH_KEYS_MAX 1024
#define AUTH_THROTTLE_SLOTS 4096
#define AUTH_LINE_MAX 512

struct api_key {
    char name[AUTH_NAME_MAX];
    enum route_scope scope;
    uint8_t sha256[SHA256_DIGEST_LENGTH];
};

struct throttle_slot {
    uint8_t addr[17]; /* family byte + up to 16 address bytes; all zero = empty */
    int64_t window_end_ms;
    int failures;
    bool logged;
};

struct auth {
    bool enabled;
    int fail_limit;
    int64_t window_ms;
    size_t nkeys;
    struct api_key *keys;
    pthread_mutex_t mu;
    struct throttle_slot *slots;
};

int auth_scope_parse(const char *s)
{
    if (strcmp(s, "read") == 0)
        return ROUTE_SCOPE_READ;
    if (strcmp(s, "write") == 0)
        return ROUTE_SCOPE_WRITE;
    if (strcmp(s, "admin") == 0)
        return ROUTE_SCOPE_ADMIN;
    return -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses one "name:scope:sha256hex" entry (trimmed) into k; err names `where`. */
static bool parse_entry(const char *entry, struct api_key *k, const char *where, char *err,
                        size_t errlen)
{
    const char *c1 = strchr(entry, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (c1 == NULL || c2 == NULL) {
        snprintf(err, errlen, "%s: expected name:scope:sha256hex", where);
        return false;
    }
    size_t nlen = (size_t)(c1 - entry);
    if (nlen == 0 || nlen >= AUTH_NAME_MAX) {
        snprintf(err, errlen, "%s: the key name must be 1 to %d characters", where,
                 AUTH_NAME_MAX - 1);
        return false;
    }
    for (size_t i = 0; i < nlen; i++)
        if (!isalnum((unsigned char)entry[i]) && !strchr("_.-", entry[i])) {
            snprintf(err, errlen, "%s: the key name may hold only letters, digits, '_', '.', '-'",
                     where);
            return false;
        }
    memcpy(k->name, entry, nlen);
    k->name[nlen] = '\0';
    char scope[16];
    size_t slen = (size_t)(c2 - c1 - 1);
    snprintf(scope, sizeof scope, "%.*s", (int)(slen < sizeof scope ? slen : sizeof scope - 1),
             c1 + 1);
    int sc = slen < sizeof scope ? auth_scope_parse(scope) : -1;
    if (sc < 0) {
        snprintf(err, errlen, "%s (key '%s'): scope must be read, write or admin", where, k->name);
        return false;
    }
    k->scope = (enum route_scope)sc;
    const char *hex = c2 + 1;
    if (strlen(hex) != 2 * SHA256_DIGEST_LENGTH) {
        snprintf(err, errlen, "%s (key '%s'): the hash must be 64 hex digits (SHA-256 of the key)",
                 where, k->name);
        return false;
    }
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "%s (key '%s'): the hash must be 64 hex digits", where, k->name);
            return false;
        }
        k->sha256[i] = (uint8_t)(hi * 16 + lo);
    }
    return true;
}

/* Copies s[0..n) trimmed of blanks into out (outlen bytes); false when it does not fit. */
static bool trimmed(const char *s, size_t n, char *out, size_t outlen)
{
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    if (n >= outlen)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

static bool add_entry(struct auth *a, const char *entry, const char *where, char *err,
                      size_t errlen)
{
    if (a->nkeys == AUTH_KEYS_MAX) {
        snprintf(err, errlen, "%s: more than %d API keys", where, AUTH_KEYS_MAX);
        return false;
    }
    struct api_key *k = &a->keys[a->nkeys];
    if (!parse_entry(entry, k, where, err, errlen))
        return false;
    for (size_t i = 0; i < a->nkeys; i++)
        if (strcmp(a->keys[i].name, k->name) == 0) {
            snprintf(err, errlen, "%s: the key name '%s' is used twice", where, k->name);
            return false;
        }
    a->nkeys++;
    return true;
}

static bool load_inline(struct auth *a, const char *list, char *err, size_t errlen)
{
    int index = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        char entry[AUTH_LINE_MAX], where[48];
        index++;
        snprintf(where, sizeof where, "api_keys entry %d", index);
        if (!trimmed(p, n, entry, sizeof entry)) {
            snprintf(err, errlen, "%s: too long", where);
            return false;
        }
        if (entry[0] != '\0' && !add_entry(a, entry, where, err, errlen))
            return false;
        p += n;
        if (*p == ',')
            p++;
    }
    return true;
}

static bool load_file(struct auth *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "api_keys_file: cannot open %s", path);
        return false;
    }
    char line[AUTH_LINE_MAX], entry[AUTH_LINE_MAX], where[CONFIG_STR_MAX + 32];
    int lineno = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (strchr(line, '\n') == NULL && !feof(f)) {
            snprintf(err, errlen, "%s: line too long", where);
            ok = false;
        } else if (trimmed(line, strlen(line), entry, sizeof entry) && entry[0] != '\0' &&
                   entry[0] != '#') {
            ok = add_entry(a, entry, where, err, errlen);
        }
    }
    fclose(f);
    return ok;
}

struct auth *auth_new(const struct config *cfg, char *err, size_t errlen)
{
    struct auth *a = xcalloc(1, sizeof *a);
    a->enabled = !cfg->auth_disabled;
    a->fail_limit = cfg->auth_fail_limit;
    a->window_ms = (int64_t)cfg->auth_fail_window_s * 1000;
    a->keys = xcalloc(AUTH_KEYS_MAX, sizeof *a->keys);
    a->slots = xcalloc(AUTH_THROTTLE_SLOTS, sizeof *a->slots);
    pthread_mutex_init(&a->mu, NULL);
    bool ok = load_inline(a, cfg->api_keys, err, errlen) &&
              (cfg->api_keys_file[0] == '\0' || load_file(a, cfg->api_keys_file, err, errlen));
    if (ok && a->enabled && a->nkeys == 0) {
        snprintf(err, errlen,
                 "no API keys configured: set api_keys or api_keys_file (name:scope:sha256hex "
                 "entries; tools/aetheris-keygen makes one), or auth_disabled=true for local use");
        ok = false;
    }
    if (!ok) {
        auth_free(a);
        return NULL;
    }
    return a;
}

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    OPENSSL_cleanse(a->keys, AUTH_KEYS_MAX * sizeof *a->keys);
    free(a->keys);
    free(a->slots);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

bool auth_enabled(const struct auth *a)
{
    return a->enabled;
}

size_t auth_key_count(const struct auth *a)
{
    return a->nkeys;
}

/* The throttle-table key of an address: family byte, then its bytes. */
static void addr_key(const struct sockaddr *sa, uint8_t out[17])
{
    memset(out, 0, 17);
    if (sa == NULL)
        return;
    out[0] = (uint8_t)sa->sa_family;
    if (sa->sa_family == AF_INET)
        memcpy(out + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(out + 1, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
}

static struct throttle_slot *slot_of(struct auth *a, const uint8_t key[17])
{
    return &a->slots[shard_hash((const char *)key, 17) % AUTH_THROTTLE_SLOTS];
}

/* The address of a throttle-table key as text ("unknown" for a non-IP client). */
static void addr_text(const uint8_t key[17], char *out, size_t outlen)
{
    if (key[0] == AF_INET || key[0] == AF_INET6)
        inet_ntop(key[0], key + 1, out, (socklen_t)outlen);
    else
        snprintf(out, outlen, "unknown");
}

/* Counts one failure of the address in slot s (the caller holds the lock). */
static void count_failure_locked(struct auth *a, struct throttle_slot *s, const uint8_t key[17],
                                 int64_t now)
{
    bool mine = memcmp(s->addr, key, 17) == 0 && now < s->window_end_ms;
    if (!mine && (now >= s->window_end_ms || s->failures <= 1)) {
        memcpy(s->addr, key, 17);
        s->window_end_ms = now + a->window_ms;
        s->failures = 0;
        s->logged = false;
        mine = true;
    }
    if (mine)
        s->failures++;
}

/* One step of the throttle for an attempt whose outcome is known (failed: no or a wrong key):
 * seconds the address must still wait when it is at its limit (the attempt is refused and not
 * counted), else 0, after counting the attempt when it failed. Deciding and counting under one
 * lock is what keeps concurrent guesses from all passing the check before any is counted. */
static int throttle_step(struct auth *a, const uint8_t key[17], int64_t now, bool failed)
{
    int wait = 0, failures = 0;
    bool log = false;
    pthread_mutex_lock(&a->mu);
    struct throttle_slot *s = slot_of(a, key);
    if (memcmp(s->addr, key, 17) == 0 && now < s->window_end_ms && s->failures >= a->fail_limit) {
        wait = (int)((s->window_end_ms - now + 999) / 1000);
        log = !s->logged;
        s->logged = true;
        failures = s->failures;
    } else if (failed) {
        count_failure_locked(a, s, key, now);
    }
    pthread_mutex_unlock(&a->mu);
    if (log) { /* once per address and window, outside the lock */
        char addr[INET6_ADDRSTRLEN];
        addr_text(key, addr, sizeof addr);
        log_warn("auth.throttled", "%s made %d failed authentications; refused for %d s", addr,
                 failures, wait);
    }
    return wait;
}

const char *auth_presented_key(const char *x_api_key, const char *authorization)
{
    if (x_api_key && x_api_key[0])
        return x_api_key;
    if (authorization && strncasecmp(authorization, "Bearer ", 7) == 0) {
        const char *k = authorization + 7;
        while (*k == ' ')
            k++;
        return *k ? k : NULL;
    }
    return NULL;
}

enum auth_result auth_check(struct auth *a, const char *presented, enum route_scope need,
                            const struct sockaddr *client, struct auth_identity *who,
                            int *retry_after_s)
{
    if (!a->enabled) {
        snprintf(who->name, sizeof who->name, "anonymous");
        who->scope = ROUTE_SCOPE_ADMIN;
        return AUTH_OK;
    }
    uint8_t key[17];
    addr_key(client, key);
    size_t found = a->nkeys;
    if (presented != NULL) {
        uint8_t digest[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)presented, strlen(presented), digest);
        for (size_t i = 0; i < a->nkeys; i++) {
            int differs = CRYPTO_memcmp(digest, a->keys[i].sha256, sizeof digest);
            found = differs == 0 ? i : found;
        }
    }
    int wait = throttle_step(a, key, clock_mono_ms(), found == a->nkeys);
    if (wait > 0) {
        *retry_after_s = wait;
        return AUTH_THROTTLED;
    }
    if (presented == NULL)
        return AUTH_MISSING;
    if (found == a->nkeys)
        return AUTH_INVALID;
    snprintf(who->name, sizeof who->name, "%s", a->keys[found].name);
    who->scope = a->keys[found].scope;
    return who->scope >= need ? AUTH_OK : AUTH_FORBIDDEN;
}
