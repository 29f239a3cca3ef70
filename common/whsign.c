/* Standard Webhooks signing (whsign.h). The signed content is built incrementally into the HMAC
 * (id, ".", timestamp, ".", body), never concatenated into a copy of the body. Base64 is the
 * standard alphabet with padding, as the specification's examples use; decoding goes through
 * EVP_DecodeBlock, whose output length counts padding bytes, so the real length is corrected
 * from the number of '=' characters. */
#include "whsign.h"
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include "err.h"
#include "log.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_PREFIX_LEN (sizeof SECRET_PREFIX - 1)

int whsign_parse_secret(const char *secret, struct whsign_key *key)
{
    if (strncmp(secret, SECRET_PREFIX, SECRET_PREFIX_LEN) != 0)
        return ERR_INVAL;
    const char *b64 = secret + SECRET_PREFIX_LEN;
    size_t n = strlen(b64);
    /* base64 of 24..64 bytes is 32..88 characters, always a multiple of 4 */
    if (n < 32 || n > 88 || n % 4 != 0)
        return ERR_INVAL;
    uint8_t buf[WHSIGN_KEY_MAX + 3];
    int got = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
    if (got < 0)
        return ERR_INVAL;
    size_t pad = (b64[n - 1] == '=') + (b64[n - 2] == '=');
    size_t len = (size_t)got - pad;
    if (len < WHSIGN_KEY_MIN || len > WHSIGN_KEY_MAX)
        return ERR_INVAL;
    memcpy(key->bytes, buf, len);
    key->len = len;
    OPENSSL_cleanse(buf, sizeof buf);
    return 0;
}

int whsign_new_secret(size_t nbytes, char out[WHSIGN_SECRET_MAX])
{
    if (nbytes < WHSIGN_KEY_MIN || nbytes > WHSIGN_KEY_MAX)
        return ERR_INVAL;
    uint8_t raw[WHSIGN_KEY_MAX];
    if (RAND_bytes(raw, (int)nbytes) != 1)
        return ERR_IO;
    memcpy(out, SECRET_PREFIX, SECRET_PREFIX_LEN);
    EVP_EncodeBlock((unsigned char *)out + SECRET_PREFIX_LEN, raw, (int)nbytes);
    OPENSSL_cleanse(raw, sizeof raw);
    return 0;
}

/* HMAC-SHA256 of "<id>.<timestamp>.<body>" into mac (32 bytes), through the OpenSSL 3 EVP_MAC
 * interface. */
static void mac_of(const struct whsign_key *key, const char *msg_id, int64_t timestamp,
                   const char *body, size_t body_len, unsigned char mac[32])
{
    char ts[24];
    int tslen = snprintf(ts, sizeof ts, "%lld", (long long)timestamp);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
    size_t maclen = 0;
    if (ctx == NULL || !EVP_MAC_init(ctx, key->bytes, key->len, params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, (size_t)tslen) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)body, body_len) ||
        !EVP_MAC_final(ctx, mac, &maclen, 32)) {
        memset(mac, 0, 32); /* a signature nobody can verify, never a guessable one */
        log_error("whsign.hmac", "OpenSSL could not compute HMAC-SHA256");
    }
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(hmac);
}

void whsign_sign(const struct whsign_key *key, const char *msg_id, int64_t timestamp,
                 const char *body, size_t body_len, char out[WHSIGN_SIG_MAX])
{
    unsigned char mac[32];
    mac_of(key, msg_id, timestamp, body, body_len, mac);
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, sizeof mac);
}

bool whsign_verify(const struct whsign_key *key, const char *msg_id, int64_t timestamp,
                   const char *body, size_t body_len, const char *header)
{
    char want[WHSIGN_SIG_MAX];
    whsign_sign(key, msg_id, timestamp, body, body_len, want);
    size_t wlen = strlen(want);
    bool match = false;
    for (const char *p = header; *p;) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == wlen && CRYPTO_memcmp(p, want, wlen) == 0)
            match = true;
        p += n;
    }
    return match;
}
