/* libFuzzer target: the MQTT packet parser of the native subscriber (common/mqttwire.c). The
 * input is a byte stream as a broker would send it. It is parsed twice the way the subscriber's
 * reader does (every complete packet, then wait for more): once whole, and once arriving in
 * chunks whose sizes come from the input, with a small cap so the over-cap refusal is reachable.
 * Beyond not crashing or reading outside the input: a packet's length is within what was given,
 * its topic and payload lie inside it and the topic holds no NUL, "incomplete" names a length
 * beyond what was given (and within the cap), and both runs see the same packets and the same
 * verdict. Any mismatch aborts (a finding). */
#include "mqttwire.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CAP 1024   /* small, so ERR_FULL is reachable */
#define FUZZ_MAX 65536  /* inputs larger than this add nothing */
#define FUZZ_PACKETS 64 /* packets compared between the two runs */

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_mqttwire: %s\n", what);
    abort();
}

struct run {
    int lens[FUZZ_PACKETS];
    uint8_t types[FUZZ_PACKETS];
    size_t n;
    int verdict; /* 0: ran out of input; else the error */
};

static void check(const uint8_t *buf, size_t len, int rv, size_t need,
                  const struct mqttwire_packet *pk)
{
    if (rv == 0) {
        if (need != 0 && (need <= len || need > FUZZ_CAP))
            fail("need not beyond the buffer or over the cap");
        return;
    }
    if (rv < 0)
        return;
    if ((size_t)rv > len || rv < 2)
        fail("packet length outside the buffer");
    if (pk->type != MQTTWIRE_PUBLISH)
        return;
    const uint8_t *end = buf + rv;
    if (pk->topic < buf || pk->topic + pk->topic_len > end || pk->payload < pk->topic ||
        pk->payload + pk->payload_len != end)
        fail("topic or payload outside the packet");
    if (memchr(pk->topic, 0, pk->topic_len) != NULL)
        fail("NUL inside a topic");
    if (pk->qos > 1 || (pk->qos == 1 && pk->id == 0))
        fail("QoS or packet id out of range");
}

/* Parses buf as the reader does, with data arriving in chunks (chunk 0 = all at once). */
static void parse_stream(const uint8_t *data, size_t size, const uint8_t *chunks, size_t nchunks,
                         struct run *r)
{
    memset(r, 0, sizeof *r);
    size_t avail = nchunks ? 0 : size, ci = 0, rd = 0;
    for (;;) {
        struct mqttwire_packet pk;
        size_t need = 0;
        int rv = mqttwire_parse(data + rd, avail - rd, FUZZ_CAP, &pk, &need);
        check(data + rd, avail - rd, rv, need, &pk);
        if (rv < 0) {
            r->verdict = rv;
            return;
        }
        if (rv > 0) {
            if (r->n < FUZZ_PACKETS) {
                r->lens[r->n] = rv;
                r->types[r->n] = pk.type;
            }
            r->n++;
            rd += (size_t)rv;
            continue;
        }
        if (avail == size)
            return;
        size_t step = 1 + chunks[ci++ % nchunks] % 64;
        avail = avail + step > size ? size : avail + step;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > FUZZ_MAX)
        return 0;
    size_t nchunks = data[0] % 8 + 1; /* the first bytes pick the chunk sizes */
    if (size <= nchunks)
        return 0;
    const uint8_t *chunks = data;
    data += nchunks;
    size -= nchunks;
    struct run whole, split;
    parse_stream(data, size, chunks, 0, &whole);
    parse_stream(data, size, chunks, nchunks, &split);
    size_t n = whole.n < FUZZ_PACKETS ? whole.n : FUZZ_PACKETS;
    if (whole.n != split.n || whole.verdict != split.verdict ||
        memcmp(whole.lens, split.lens, n * sizeof whole.lens[0]) != 0 ||
        memcmp(whole.types, split.types, n) != 0)
        fail("chunked parsing disagrees with whole parsing");
    return 0;
}
