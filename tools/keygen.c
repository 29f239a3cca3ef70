/* aetheris-keygen NAME SCOPE: makes a new API key for aetherisd. Prints the key (to give to the
 * client, once) and the configuration entry `NAME:SCOPE:sha256hex` (for api_keys or
 * api_keys_file); the daemon stores only the hash. The key is 32 bytes from OpenSSL's CSPRNG,
 * written as "ak_" + 64 hex digits. Output is two lines, `key=...` and `entry=...`, so scripts
 * can read them. Exit: 0, 2 on usage errors, 1 when no randomness is available. */
#include "fmacros.h"
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "auth.h"

static int usage(FILE *out, int code)
{
    fprintf(out, "usage: aetheris-keygen NAME SCOPE\n"
                 "  NAME   1-63 characters of A-Z a-z 0-9 _ . -\n"
                 "  SCOPE  read | write | admin (admin includes write, write includes read)\n"
                 "Prints key=<the key, give it to the client> and entry=<NAME:SCOPE:sha256> for\n"
                 "aetherisd's api_keys or api_keys_file.\n");
    return code;
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        return usage(stdout, 0);
    if (argc != 3)
        return usage(stderr, 2);
    const char *name = argv[1], *scope = argv[2];
    size_t n = strlen(name);
    bool name_ok = n > 0 && n < AUTH_NAME_MAX;
    for (size_t i = 0; name_ok && i < n; i++)
        name_ok = isalnum((unsigned char)name[i]) || strchr("_.-", name[i]);
    if (!name_ok || auth_scope_parse(scope) < 0)
        return usage(stderr, 2);
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) {
        fprintf(stderr, "aetheris-keygen: no randomness available\n");
        return 1;
    }
    char key[3 + 2 * sizeof raw + 1] = "ak_";
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(key + 3 + 2 * i, 3, "%02x", raw[i]);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, strlen(key), digest);
    printf("key=%s\nentry=%s:%s:", key, name, scope);
    for (size_t i = 0; i < sizeof digest; i++)
        printf("%02x", digest[i]);
    printf("\n");
    return 0;
}
