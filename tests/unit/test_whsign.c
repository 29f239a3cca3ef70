/* Standard Webhooks signing: the specification's published test vector, secret parsing (prefix,
 * base64, 24..64 bytes), generated secrets round-trip, verification of one or several
 * signatures (rotation), and that any change to id, timestamp or body breaks the signature. */
#include "whsign.h"
#include <string.h>
#include "err.h"
#include "tap.h"

/* From the Standard Webhooks specification and its reference libraries. */
#define VEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define VEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define VEC_TS 1614265330
#define VEC_BODY "{\"test\": 2432232314}"
#define VEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static void test_vector(void)
{
    struct whsign_key key;
    is_int(whsign_parse_secret(VEC_SECRET, &key), 0, "the test vector's secret parses");
    is_int(key.len, 24, "to 24 bytes");
    char sig[WHSIGN_SIG_MAX];
    whsign_sign(&key, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), sig);
    ok(strcmp(sig, VEC_SIG) == 0, "signature matches the published vector (%s)", sig);
    ok(whsign_verify(&key, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), VEC_SIG), "verifies");
    ok(!whsign_verify(&key, VEC_ID, VEC_TS + 1, VEC_BODY, strlen(VEC_BODY), VEC_SIG),
       "another timestamp fails");
    ok(!whsign_verify(&key, "msg_other", VEC_TS, VEC_BODY, strlen(VEC_BODY), VEC_SIG),
       "another id fails");
    ok(!whsign_verify(&key, VEC_ID, VEC_TS, "{\"test\": 2432232315}", strlen(VEC_BODY), VEC_SIG),
       "another body fails");
    ok(whsign_verify(&key, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY),
                     "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= " VEC_SIG),
       "a rotation header with the right signature second verifies");
    ok(!whsign_verify(&key, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY), ""), "empty header fails");
    ok(!whsign_verify(&key, VEC_ID, VEC_TS, VEC_BODY, strlen(VEC_BODY),
                      "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"),
       "a truncated signature fails");
}

static void test_secrets(void)
{
    static const char *const bad[] = {
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",       /* no prefix */
        "whsec_",                                 /* empty */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZI",         /* 16 bytes: too short */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",  /* not a multiple of 4 */
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLa!w", /* not base64 */
        "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", /* prefix is case-sensitive */
    };
    struct whsign_key key;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        is_int(whsign_parse_secret(bad[i], &key), ERR_INVAL, "bad secret %zu refused", i);
    char secret[WHSIGN_SECRET_MAX];
    static const size_t sizes[] = {24, 32, 50, 64};
    for (size_t i = 0; i < 4; i++) {
        is_int(whsign_new_secret(sizes[i], secret), 0, "a %zu-byte secret is made", sizes[i]);
        ok(whsign_parse_secret(secret, &key) == 0 && key.len == sizes[i],
           "and parses back to %zu bytes (%s)", sizes[i], secret);
    }
    char other[WHSIGN_SECRET_MAX];
    whsign_new_secret(32, other);
    whsign_new_secret(32, secret);
    ok(strcmp(secret, other) != 0, "two new secrets differ");
    is_int(whsign_new_secret(23, secret), ERR_INVAL, "23 bytes refused");
    is_int(whsign_new_secret(65, secret), ERR_INVAL, "65 bytes refused");
}

int main(void)
{
    test_vector();
    test_secrets();
    return done_testing();
}
