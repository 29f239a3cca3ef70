/* API-key authentication (auth.c): entry parsing and the errors that name the bad entry, the key
 * file (comments, blank lines, line numbers), refusal without keys unless auth is disabled, the
 * scope order admin > write > read, verification of every configured key (first, middle, last,
 * one-bit-off, upper-case hashes), the presented-key headers, and the failure throttle: limit,
 * window end, per-address accounting, IPv4 vs IPv6, bounded table with colliding strangers, and
 * the limit holding when many threads guess at once (the check and the count are one step). */
#include "auth.h"
#include <netinet/in.h>
#include <arpa/inet.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "servers.h"
#include "tap.h"

/* The config entry for `key`: name:scope:sha256hex (upper-case hex when `upper`). */
static void entry_for(const char *name, const char *scope, const char *key, bool upper, char *out,
                      size_t outlen)
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, strlen(key), d);
    int n = snprintf(out, outlen, "%s:%s:", name, scope);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        n += snprintf(out + n, outlen - (size_t)n, upper ? "%02X" : "%02x", d[i]);
}

static struct sockaddr_in v4(const char *text)
{
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    inet_pton(AF_INET, text, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 v6(const char *text)
{
    struct sockaddr_in6 a = {0};
    a.sin6_family = AF_INET6;
    inet_pton(AF_INET6, text, &a.sin6_addr);
    return a;
}

/* auth_new on api_keys = `keys`; expects a refusal whose message contains `needle`. */
static void refused(const char *keys, const char *needle)
{
    struct config cfg;
    config_defaults(&cfg);
    snprintf(cfg.api_keys, sizeof cfg.api_keys, "%s", keys);
    char err[512] = "";
    struct auth *a = auth_new(&cfg, err, sizeof err);
    if (!ok(a == NULL && strstr(err, needle) != NULL, "refused with '%s'", needle))
        printf("#   keys '%.60s...' gave '%s'\n", keys, err);
    auth_free(a);
}

static void test_parsing(void)
{
    char good[256], bad[640];
    entry_for("ok", "read", "k", false, good, sizeof good);
    refused("", "no API keys configured");
    refused(" , ,", "auth_disabled=true");
    refused("justaname", "api_keys entry 1: expected name:scope:sha256hex");
    snprintf(bad, sizeof bad, "%s,x:read:abc", good);
    refused(bad, "api_keys entry 2 (key 'x'): the hash must be 64 hex digits");
    snprintf(bad, sizeof bad, "%s,y:read:%063dg", good, 0);
    refused(bad, "api_keys entry 2 (key 'y'): the hash must be 64 hex digits");
    snprintf(bad, sizeof bad, "z:root:%064d", 0);
    refused(bad, "api_keys entry 1 (key 'z'): scope must be read, write or admin");
    snprintf(bad, sizeof bad, "z:readwrite:%064d", 0);
    refused(bad, "scope must be read, write or admin");
    snprintf(bad, sizeof bad, ":read:%064d", 0);
    refused(bad, "the key name must be 1 to 63 characters");
    snprintf(bad, sizeof bad, "a b:read:%064d", 0);
    refused(bad, "the key name may hold only");
    snprintf(bad, sizeof bad, "%s,ok:write:%064d", good, 1);
    refused(bad, "api_keys entry 2: the key name 'ok' is used twice");

    struct config cfg;
    config_defaults(&cfg);
    char err[512] = "";
    cfg.auth_disabled = true;
    struct auth *a = auth_new(&cfg, err, sizeof err);
    ok(a != NULL && !auth_enabled(a) && auth_key_count(a) == 0, "no keys with auth disabled");
    struct auth_identity who;
    int wait = 0;
    is_int(auth_check(a, NULL, ROUTE_SCOPE_ADMIN, NULL, &who, &wait), AUTH_OK,
           "auth disabled: everything is let through");
    ok(strcmp(who.name, "anonymous") == 0, "as 'anonymous'");
    auth_free(a);

    snprintf(cfg.api_keys, sizeof cfg.api_keys, "x:read:%064d", 0);
    a = auth_new(&cfg, err, sizeof err);
    ok(a != NULL && !auth_enabled(a), "auth disabled still validates but ignores keys");
    auth_free(a);
    snprintf(cfg.api_keys, sizeof cfg.api_keys, "x:read:%063d", 0);
    ok(auth_new(&cfg, err, sizeof err) == NULL, "a malformed entry is refused even then");
}

static void test_file(const char *dir)
{
    char path[512], e1[256], e2[256];
    snprintf(path, sizeof path, "%s/keys", dir);
    entry_for("file-reader", "read", "from-the-file", false, e1, sizeof e1);
    entry_for("file.admin", "admin", "boss-key", true, e2, sizeof e2);
    FILE *f = fopen(path, "w");
    fprintf(f, "# operators' keys\n\n  %s  \n# old: removed\n%s", e1, e2); /* no final newline */
    fclose(f);
    struct config cfg;
    config_defaults(&cfg);
    char err[512] = "", inline_entry[256];
    entry_for("inline", "write", "inline-key", false, inline_entry, sizeof inline_entry);
    snprintf(cfg.api_keys, sizeof cfg.api_keys, "%s", inline_entry);
    snprintf(cfg.api_keys_file, sizeof cfg.api_keys_file, "%s", path);
    struct auth *a = auth_new(&cfg, err, sizeof err);
    ok(a != NULL && auth_key_count(a) == 3, "inline + file: 3 keys (%s)", err);
    struct auth_identity who;
    int wait = 0;
    is_int(auth_check(a, "boss-key", ROUTE_SCOPE_ADMIN, NULL, &who, &wait), AUTH_OK,
           "the file's last line (no newline, upper-case hash) is a key");
    ok(strcmp(who.name, "file.admin") == 0, "named from the file");
    auth_free(a);

    f = fopen(path, "a");
    fprintf(f, "\n\nbroken:read:00\n");
    fclose(f);
    char want[600];
    snprintf(want, sizeof want, "%s:7 (key 'broken')", path);
    ok(auth_new(&cfg, err, sizeof err) == NULL && strstr(err, want) != NULL,
       "a bad file line is named by path:line (%s)", err);

    f = fopen(path, "w");
    entry_for("inline", "read", "other", false, e1, sizeof e1);
    fprintf(f, "%s\n", e1);
    fclose(f);
    ok(auth_new(&cfg, err, sizeof err) == NULL && strstr(err, "'inline' is used twice"),
       "a name in both the list and the file is refused");
    snprintf(cfg.api_keys_file, sizeof cfg.api_keys_file, "%s/absent", dir);
    ok(auth_new(&cfg, err, sizeof err) == NULL && strstr(err, "cannot open"),
       "a missing key file is refused");
    unlink(path);
}

static void test_verify(void)
{
    static const char *const names[] = {"r0", "w1", "a2", "r3", "w4", "a5"};
    static const char *const scopes[] = {"read", "write", "admin", "read", "write", "admin"};
    struct config cfg;
    config_defaults(&cfg);
    size_t n = 0;
    for (int i = 0; i < 6; i++) {
        char key[32], e[256];
        snprintf(key, sizeof key, "secret-%d", i);
        entry_for(names[i], scopes[i], key, false, e, sizeof e);
        n += (size_t)snprintf(cfg.api_keys + n, sizeof cfg.api_keys - n, "%s%s", i ? " , " : "", e);
    }
    char err[512] = "";
    struct auth *a = auth_new(&cfg, err, sizeof err);
    ok(a != NULL && auth_key_count(a) == 6, "6 keys loaded (%s)", err);
    struct auth_identity who;
    int wait = 0;
    for (int i = 0; i < 6; i++) {
        char key[32];
        snprintf(key, sizeof key, "secret-%d", i);
        int scope = auth_scope_parse(scopes[i]);
        for (int need = ROUTE_SCOPE_READ; need <= ROUTE_SCOPE_ADMIN; need++) {
            memset(&who, 0, sizeof who);
            enum auth_result r = auth_check(a, key, (enum route_scope)need, NULL, &who, &wait);
            is_int(r, scope >= need ? AUTH_OK : AUTH_FORBIDDEN, "key %d (%s) for scope %d", i,
                   scopes[i], need);
            ok(strcmp(who.name, names[i]) == 0 && (int)who.scope == scope,
               "identified as %s with its scope", names[i]);
        }
    }
    struct sockaddr_in c = v4("192.0.2.1");
    const struct sockaddr *sa = (const struct sockaddr *)&c;
    is_int(auth_check(a, "secret-6", ROUTE_SCOPE_READ, sa, &who, &wait), AUTH_INVALID,
           "an unknown key is invalid");
    is_int(auth_check(a, "secret-", ROUTE_SCOPE_READ, sa, &who, &wait), AUTH_INVALID,
           "a prefix of a key is invalid");
    is_int(auth_check(a, "secret-00", ROUTE_SCOPE_READ, sa, &who, &wait), AUTH_INVALID,
           "a key with a suffix is invalid");
    is_int(auth_check(a, "Secret-0", ROUTE_SCOPE_READ, sa, &who, &wait), AUTH_INVALID,
           "keys are case-sensitive");
    is_int(auth_check(a, NULL, ROUTE_SCOPE_READ, sa, &who, &wait), AUTH_MISSING,
           "no key is missing");
    auth_free(a);

    is_int(auth_scope_parse("read"), ROUTE_SCOPE_READ, "scope read");
    is_int(auth_scope_parse("Admin"), -1, "scopes are lower-case");
    is_int(auth_scope_parse(""), -1, "empty scope");
}

static void test_presented(void)
{
    ok(strcmp(auth_presented_key("k1", NULL), "k1") == 0, "X-API-Key");
    ok(strcmp(auth_presented_key(NULL, "Bearer k2"), "k2") == 0, "Bearer");
    ok(strcmp(auth_presented_key(NULL, "bEaReR   k3"), "k3") == 0, "Bearer, any case and spaces");
    ok(strcmp(auth_presented_key("k1", "Bearer k2"), "k1") == 0, "X-API-Key wins over Bearer");
    ok(strcmp(auth_presented_key("", "Bearer k2"), "k2") == 0, "an empty X-API-Key is absent");
    ok(auth_presented_key(NULL, "Basic dTpw") == NULL, "Basic is not a key");
    ok(auth_presented_key(NULL, "Bearer ") == NULL, "an empty Bearer is absent");
    ok(auth_presented_key(NULL, "Bearerk") == NULL, "Bearer needs its space");
    ok(auth_presented_key(NULL, NULL) == NULL, "nothing presented");
}

static struct auth *throttle_auth(int limit, int window_s)
{
    struct config cfg;
    config_defaults(&cfg);
    entry_for("good", "read", "good-key", false, cfg.api_keys, sizeof cfg.api_keys);
    cfg.auth_fail_limit = limit;
    cfg.auth_fail_window_s = window_s;
    char err[512];
    return auth_new(&cfg, err, sizeof err);
}

static enum auth_result try_key(struct auth *a, const char *key, const void *addr, int *wait)
{
    struct auth_identity who;
    return auth_check(a, key, ROUTE_SCOPE_READ, (const struct sockaddr *)addr, &who, wait);
}

static void test_throttle(void)
{
    struct auth *a = throttle_auth(3, 1);
    struct sockaddr_in x = v4("198.51.100.7"), y = v4("198.51.100.8");
    struct sockaddr_in6 x6 = v6("2001:db8::7");
    int wait = 0;
    is_int(try_key(a, "bad", &x, &wait), AUTH_INVALID, "failure 1");
    is_int(try_key(a, NULL, &x, &wait), AUTH_MISSING, "failure 2 (no key counts too)");
    is_int(try_key(a, "good-key", &x, &wait), AUTH_OK, "a good key still passes below the limit");
    is_int(try_key(a, "bad", &x, &wait), AUTH_INVALID, "failure 3 reaches the limit");
    wait = 0;
    is_int(try_key(a, "good-key", &x, &wait), AUTH_THROTTLED, "then even a good key is refused");
    is_int(wait, 1, "retry after the rest of the 1 s window");
    is_int(try_key(a, "good-key", &y, &wait), AUTH_OK, "another IPv4 address is not throttled");
    is_int(try_key(a, "good-key", &x6, &wait), AUTH_OK, "nor an IPv6 one");
    long long t0 = srv_now_ms();
    while (try_key(a, "good-key", &x, &wait) == AUTH_THROTTLED && srv_now_ms() - t0 < 3000)
        srv_sleep_ms(20);
    long long waited = srv_now_ms() - t0;
    ok(waited >= 500 && waited < 1500, "the throttle ends with the window (%lld ms)", waited);
    is_int(try_key(a, "bad", &x, &wait), AUTH_INVALID, "a new window counts from zero: 1");
    is_int(try_key(a, "bad", &x, &wait), AUTH_INVALID, "2");
    is_int(try_key(a, "good-key", &x, &wait), AUTH_OK, "not yet throttled");
    auth_free(a);

    /* Bounded table: 100000 strangers failing once each collide with every slot many times;
     * an address already at limit - 1 failures keeps its count, and a fresh stranger is still
     * counted. */
    a = throttle_auth(3, 60);
    struct sockaddr_in p = v4("203.0.113.9");
    try_key(a, NULL, &p, &wait);
    try_key(a, NULL, &p, &wait);
    for (unsigned i = 0; i < 100000; i++) {
        struct sockaddr_in s = {0};
        s.sin_family = AF_INET;
        s.sin_addr.s_addr = htonl(0x0a000000u + i); /* 10.0.0.0/8 */
        try_key(a, NULL, &s, &wait);
    }
    try_key(a, NULL, &p, &wait);
    is_int(try_key(a, "good-key", &p, &wait), AUTH_THROTTLED,
           "colliding strangers do not free an address close to its limit");
    struct sockaddr_in6 s6 = v6("2001:db8:1::1");
    for (int i = 0; i < 3; i++)
        try_key(a, "bad", &s6, &wait);
    is_int(try_key(a, "good-key", &s6, &wait), AUTH_THROTTLED,
           "an address after the flood is still throttled at its limit");
    struct sockaddr_in6 same6 = v6("2001:db8:1::1");
    same6.sin6_port = htons(40123);
    is_int(try_key(a, "good-key", &same6, &wait), AUTH_THROTTLED,
           "by its address, whatever the client port");
    auth_free(a);
}

#define GUESS_THREADS 8
#define GUESSES_EACH 4 /* 32 guesses a round against a limit of 5 */
#define GUESS_ROUNDS 300

struct guesser {
    struct auth *a;
    pthread_barrier_t *start; /* every thread guesses at the same moment */
    atomic_int *checked;      /* attempts answered AUTH_INVALID (the key was really compared) */
};

static void *guess_keys(void *arg)
{
    struct guesser *g = arg;
    struct sockaddr_in x = v4("198.51.100.77");
    pthread_barrier_wait(g->start);
    for (int i = 0; i < GUESSES_EACH; i++) {
        int wait = 0;
        if (try_key(g->a, "bad", &x, &wait) == AUTH_INVALID)
            atomic_fetch_add(g->checked, 1);
    }
    return NULL;
}

/* Brute force from many threads at once, round after round: in no round are more than
 * fail_limit wrong keys compared; every other attempt is throttled. */
static void test_throttle_concurrent(void)
{
    int worst = 0, best = GUESS_THREADS * GUESSES_EACH;
    for (int round = 0; round < GUESS_ROUNDS; round++) {
        struct auth *a = throttle_auth(5, 60);
        atomic_int checked = 0;
        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, GUESS_THREADS);
        struct guesser g = {a, &start, &checked};
        pthread_t t[GUESS_THREADS];
        for (int i = 0; i < GUESS_THREADS; i++)
            pthread_create(&t[i], NULL, guess_keys, &g);
        for (int i = 0; i < GUESS_THREADS; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&start);
        int n = atomic_load(&checked);
        worst = n > worst ? n : worst;
        best = n < best ? n : best;
        auth_free(a);
    }
    ok(worst == 5 && best == 5,
       "concurrent guesses: exactly the limit checked in each of %d rounds "
       "(fewest %d, most %d)",
       GUESS_ROUNDS, best, worst);
}

int main(void)
{
    alarm(60);
    char dir[256];
    if (!srv_tempdir("auth", dir, sizeof dir)) {
        ok(0, "temporary directory");
        return done_testing();
    }
    test_parsing();
    test_file(dir);
    test_verify();
    test_presented();
    test_throttle();
    test_throttle_concurrent();
    rmdir(dir);
    return done_testing();
}
