/* MQTT 3.1.1 wire format (mqttwire.h).
 *
 * The parser reads one packet at the start of a buffer and never more than it holds: the
 * remaining length is checked against the buffer before anything inside the body is read, and
 * every field inside the body is checked against the remaining length. It accepts only what a
 * broker may send to a subscriber that publishes nothing, so a confused or hostile peer shows up
 * as ERR_PROTO and the caller drops the connection rather than guessing. tests/fuzz/fuzz_mqttwire
 * drives it with arbitrary bytes. */
#include "mqttwire.h"
#include <string.h>
#include "err.h"

#define MQTTWIRE_LEN_BYTES_MAX 4 /* 2.2.3: at most four bytes of remaining length */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

/* Checks the body of a packet of known type; fills the type-specific fields of out. */
static int parse_body(const uint8_t *b, size_t rl, struct mqttwire_packet *out)
{
    switch (out->type) {
    case MQTTWIRE_CONNACK:
        if (out->flags != 0 || rl != 2 || (b[0] & 0xfe) != 0)
            return ERR_PROTO;
        out->session_present = b[0] & 1;
        out->code = b[1];
        return 0;
    case MQTTWIRE_PUBLISH: {
        out->qos = (uint8_t)((out->flags >> 1) & 3);
        if (out->qos > 1 || rl < 2)
            return ERR_PROTO;
        size_t tl = be16(b);
        size_t head = 2 + tl + (out->qos ? 2u : 0u);
        if (rl < head || memchr(b + 2, 0, tl) != NULL)
            return ERR_PROTO;
        out->topic = b + 2;
        out->topic_len = tl;
        if (out->qos) {
            out->id = be16(b + 2 + tl);
            if (out->id == 0) /* 2.3.1: a non-zero packet identifier */
                return ERR_PROTO;
        }
        out->payload = b + head;
        out->payload_len = rl - head;
        return 0;
    }
    case MQTTWIRE_PUBACK:
    case MQTTWIRE_UNSUBACK:
        if (out->flags != 0 || rl != 2)
            return ERR_PROTO;
        out->id = be16(b);
        return 0;
    case MQTTWIRE_SUBACK:
        if (out->flags != 0 || rl < 3)
            return ERR_PROTO;
        out->id = be16(b);
        for (size_t i = 2; i < rl; i++)
            if (b[i] > 2 && b[i] != 0x80)
                return ERR_PROTO;
        out->code = b[2];
        return 0;
    case MQTTWIRE_PINGRESP:
        return out->flags == 0 && rl == 0 ? 0 : ERR_PROTO;
    default: /* CONNECT, PUBREC/REL/COMP, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT, 0, 15 */
        return ERR_PROTO;
    }
}

/* Parses the packet at the start of buf: its length, 0 (incomplete, *need set when known),
 * ERR_FULL (over cap) or ERR_PROTO (malformed). out borrows buf. */
int mqttwire_parse(const uint8_t *buf, size_t len, size_t cap, struct mqttwire_packet *out,
                   size_t *need)
{
    *need = 0;
    if (len < 2)
        return 0;
    size_t rl = 0, i = 1;
    for (;; i++) {
        if (i > MQTTWIRE_LEN_BYTES_MAX)
            return ERR_PROTO;
        if (i >= len)
            return 0;
        rl |= (size_t)(buf[i] & 0x7f) << (7 * (i - 1));
        if ((buf[i] & 0x80) == 0)
            break;
    }
    size_t total = i + 1 + rl;
    if (total > cap)
        return ERR_FULL;
    if (total > len) {
        *need = total;
        return 0;
    }
    memset(out, 0, sizeof *out);
    out->type = buf[0] >> 4;
    out->flags = buf[0] & 0x0f;
    int rv = parse_body(buf + i + 1, rl, out);
    return rv != 0 ? rv : (int)total;
}

/* Appends a remaining length; returns the bytes written (1..4). rl < 2^28 is checked by callers. */
static size_t put_len(uint8_t *out, size_t rl)
{
    size_t n = 0;
    do {
        uint8_t byte = rl & 0x7f;
        rl >>= 7;
        out[n++] = (uint8_t)(byte | (rl ? 0x80 : 0));
    } while (rl);
    return n;
}

static size_t put_str(uint8_t *out, const char *s, size_t n)
{
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
    memcpy(out + 2, s, n);
    return 2 + n;
}

/* Encodes CONNECT (protocol "MQTT" level 4): its length, ERR_FULL or ERR_INVAL. */
int mqttwire_connect(uint8_t *out, size_t cap, const struct mqttwire_connect *c)
{
    bool user = c->username && c->username[0];
    bool pass = c->password && c->password[0];
    size_t idn = strlen(c->client_id), un = user ? strlen(c->username) : 0;
    size_t pn = pass ? strlen(c->password) : 0;
    if (idn > UINT16_MAX || un > UINT16_MAX || pn > UINT16_MAX)
        return ERR_INVAL;
    size_t rl = 10 + 2 + idn + (user ? 2 + un : 0) + (pass ? 2 + pn : 0);
    if (1 + 4 + rl > cap)
        return ERR_FULL;
    size_t n = 0;
    out[n++] = 0x10;
    n += put_len(out + n, rl);
    n += put_str(out + n, "MQTT", 4);
    out[n++] = 4; /* protocol level 4 = 3.1.1 */
    out[n++] = (uint8_t)((user ? 0x80 : 0) | (pass ? 0x40 : 0) | (c->clean_session ? 0x02 : 0));
    out[n++] = (uint8_t)(c->keepalive_s >> 8);
    out[n++] = (uint8_t)c->keepalive_s;
    n += put_str(out + n, c->client_id, idn);
    if (user)
        n += put_str(out + n, c->username, un);
    if (pass)
        n += put_str(out + n, c->password, pn);
    return (int)n;
}

/* Encodes SUBSCRIBE for one filter at qos: its length, ERR_FULL or ERR_INVAL. */
int mqttwire_subscribe(uint8_t *out, size_t cap, uint16_t id, const char *filter, uint8_t qos)
{
    size_t fn = strlen(filter);
    if (fn > UINT16_MAX || fn == 0 || qos > 2)
        return ERR_INVAL;
    size_t rl = 2 + 2 + fn + 1;
    if (1 + 4 + rl > cap)
        return ERR_FULL;
    size_t n = 0;
    out[n++] = 0x82; /* 3.8.1: the reserved flags are 0010 */
    n += put_len(out + n, rl);
    out[n++] = (uint8_t)(id >> 8);
    out[n++] = (uint8_t)id;
    n += put_str(out + n, filter, fn);
    out[n++] = qos;
    return (int)n;
}

/* Writes PUBACK (3.4) for packet id into out. */
void mqttwire_puback(uint8_t out[MQTTWIRE_PUBACK_LEN], uint16_t id)
{
    out[0] = 0x40;
    out[1] = 2;
    out[2] = (uint8_t)(id >> 8);
    out[3] = (uint8_t)id;
}

/* Writes PINGREQ (3.12) into out. */
void mqttwire_pingreq(uint8_t out[MQTTWIRE_PINGREQ_LEN])
{
    out[0] = 0xc0;
    out[1] = 0;
}

/* Writes DISCONNECT (3.14) into out. */
void mqttwire_disconnect(uint8_t out[MQTTWIRE_DISCONNECT_LEN])
{
    out[0] = 0xe0;
    out[1] = 0;
}

/* The words of 3.2.2.3 for a CONNACK return code; a static string. */
const char *mqttwire_connack_str(uint8_t code)
{
    switch (code) {
    case 0:
        return "accepted";
    case 1:
        return "unacceptable protocol version";
    case 2:
        return "client identifier rejected";
    case 3:
        return "server unavailable";
    case 4:
        return "bad user name or password";
    case 5:
        return "not authorized";
    default:
        return "unknown return code";
    }
}
