/* libFuzzer target: the LLM-response parser (llm_parse_votes, pipeline/llm.c). The input is a
 * chat-completions response body, untrusted like everything a model says. For a batch of four
 * transactions (ids 1, 2, 42 and 2^64-1) the parser must either refuse the answer (ERR_PROTO,
 * nothing set) or fill only trusted votes: a decision in range, source "llm", the batch's role,
 * and a reason of at most VOTE_REASON_MAX bytes of valid UTF-8 without control characters.
 * Any violation aborts (a finding). */
#include "llm.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_BATCH 4

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_llm: %s\n", what);
    abort();
}

/* Length of the valid UTF-8 sequence at s, 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : 4;
    if (s[0] >= 0x80 && (s[0] < 0xC2 || s[0] > 0xF4))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

static void check_reason(const char *r)
{
    size_t len = strnlen(r, VOTE_REASON_MAX + 1);
    if (len == 0 || len > VOTE_REASON_MAX)
        fail("a reason that is empty or over the cap");
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)r[i];
        if (c < 0x20 || c == 0x7f)
            fail("a control character in a reason");
        size_t n = utf8_seq((const unsigned char *)r + i);
        if (n == 0 || i + n > len)
            fail("a reason that is not valid UTF-8");
        i += n;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t ids[FUZZ_BATCH] = {1, 2, 42, UINT64_MAX};
    struct agent_input in[FUZZ_BATCH];
    memset(in, 0, sizeof in);
    for (size_t i = 0; i < FUZZ_BATCH; i++) {
        in[i].txid = ids[i];
        in[i].account = "100";
    }
    struct vote out[FUZZ_BATCH];
    memset(out, 0, sizeof out);
    bool got[FUZZ_BATCH];
    struct llm_usage usage;
    char *body = malloc(size ? size : 1); /* exactly size bytes: over-reads are caught */
    memcpy(body, data, size);
    int rv = llm_parse_votes(body, size, ROLE_AUDITOR, in, FUZZ_BATCH, out, got, &usage);
    free(body);
    if (rv != 0 && rv != ERR_PROTO)
        fail("an unexpected return code");
    for (size_t i = 0; i < FUZZ_BATCH; i++) {
        if (!got[i])
            continue;
        if (rv != 0)
            fail("a vote set from a refused answer");
        if (out[i].role != ROLE_AUDITOR || out[i].source == NULL ||
            strcmp(out[i].source, "llm") != 0 || (int)out[i].decision < ACTION_APPROVE ||
            out[i].decision > ACTION_BLOCK)
            fail("a vote with a wrong role, source or decision");
        check_reason(out[i].reason);
    }
    return 0;
}
