/* MQTT 3.1.1 wire format for the native subscriber (mqttsub): a parser for the packets a broker
 * sends to a subscriber (CONNACK, PUBLISH, SUBACK, PINGRESP, ...) that works in place on a
 * receive buffer, and encoders for the packets the subscriber sends (CONNECT, SUBSCRIBE, PUBACK,
 * PINGREQ, DISCONNECT). Pure functions, no allocation, no I/O: thread-safe. Parsed pointers
 * borrow the caller's buffer. */
#ifndef AETHERIS_MQTTWIRE_H
#define AETHERIS_MQTTWIRE_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MQTTWIRE_CONNACK 2
#define MQTTWIRE_PUBLISH 3
#define MQTTWIRE_PUBACK 4
#define MQTTWIRE_SUBACK 9
#define MQTTWIRE_UNSUBACK 11
#define MQTTWIRE_PINGRESP 13
/* MQTT 3.1.1 2.2.3: four length bytes of 7 bits each, plus the fixed header's first byte. */
#define MQTTWIRE_MAX_PACKET (268435455u + 5u)
#define MQTTWIRE_PUBACK_LEN 4
#define MQTTWIRE_PINGREQ_LEN 2
#define MQTTWIRE_DISCONNECT_LEN 2

/* One packet parsed from a buffer; pointers borrow that buffer. */
struct mqttwire_packet {
    uint8_t type;           /* MQTTWIRE_* (the first byte's high nibble) */
    uint8_t flags;          /* the first byte's low nibble */
    const uint8_t *topic;   /* PUBLISH: not NUL-terminated, topic_len bytes, no NUL inside */
    size_t topic_len;       /* PUBLISH */
    const uint8_t *payload; /* PUBLISH */
    size_t payload_len;     /* PUBLISH */
    uint8_t qos;            /* PUBLISH: 0 or 1 (QoS 2 is never requested, so refused) */
    uint16_t id;            /* PUBLISH QoS 1, PUBACK, SUBACK, UNSUBACK: the packet identifier */
    uint8_t code;           /* CONNACK: return code; SUBACK: the first granted QoS or 0x80 */
    bool session_present;   /* CONNACK */
};

/* Parses the packet at the start of buf[0..len). Returns its total length (> 0) and fills *out;
 * 0 when the buffer holds only part of it (*need is then its total length once the fixed header
 * is complete, else 0); ERR_FULL when it is longer than cap bytes; ERR_PROTO when it is malformed
 * (a bad remaining length, an unknown or client-only packet type, bad flags, a short body, a
 * topic holding NUL, QoS 2 or 3). */
int mqttwire_parse(const uint8_t *buf, size_t len, size_t cap, struct mqttwire_packet *out,
                   size_t *need);

/* The fields of a CONNECT packet; strings borrowed, NULL or "" = absent (except client_id). */
struct mqttwire_connect {
    const char *client_id;
    const char *username;
    const char *password;
    bool clean_session;
    uint16_t keepalive_s;
};

/* Encodes CONNECT into out[0..cap): its length, or ERR_FULL when it does not fit, ERR_INVAL
 * when a string is longer than 65535 bytes. */
int mqttwire_connect(uint8_t *out, size_t cap, const struct mqttwire_connect *c);
/* Encodes SUBSCRIBE (one filter): its length, ERR_FULL or ERR_INVAL as mqttwire_connect. */
int mqttwire_subscribe(uint8_t *out, size_t cap, uint16_t id, const char *filter, uint8_t qos);
/* Writes the 4 bytes of a PUBACK for packet id. */
void mqttwire_puback(uint8_t out[MQTTWIRE_PUBACK_LEN], uint16_t id);
/* Writes the 2 bytes of a PINGREQ. */
void mqttwire_pingreq(uint8_t out[MQTTWIRE_PINGREQ_LEN]);
/* Writes the 2 bytes of a DISCONNECT. */
void mqttwire_disconnect(uint8_t out[MQTTWIRE_DISCONNECT_LEN]);
/* A CONNACK return code in words ("bad user name or password", ...). */
const char *mqttwire_connack_str(uint8_t code);

#endif
