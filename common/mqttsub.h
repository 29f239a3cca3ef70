/* Native MQTT 3.1.1 subscriber over plain TCP: the ingest path's receive side without paho. One
 * reader thread per subscriber owns the socket, connects (and reconnects with backoff), reads
 * large chunks, parses every complete packet in place and calls on_message with topic and
 * payload pointing into its buffer, then on_batch_end once per read. A QoS 1 message is
 * acknowledged only after on_message and then on_batch_end returned 0, the PUBACKs of one read
 * coalesced into one write. mqttc uses it for subscribers on tcp:// URLs (mqttc.h states the
 * options' meaning). Thread-safe: wait_connected and is_connected from any thread; the callbacks
 * run on the reader thread and must not call in. */
#ifndef AETHERIS_MQTTSUB_H
#define AETHERIS_MQTTSUB_H
#include "fmacros.h"
#include <stdbool.h>
#include "mqttc.h"

struct mqttsub;

/* Starts a subscriber for opts (url tcp://host[:port], subscribe_topic set; strings copied).
 * NULL, with one log line, when the URL cannot be parsed or the thread cannot start. */
struct mqttsub *mqttsub_new(const struct mqttc_options *opts);
/* Stops the reader (DISCONNECT when connected; a refused message stays unacknowledged) and
 * frees. No callback runs after it returns. NULL is a no-op. */
void mqttsub_free(struct mqttsub *s);
/* Waits until connected and subscribed: 0, or ERR_TIMEOUT. */
int mqttsub_wait_connected(struct mqttsub *s, int timeout_ms);
/* True while connected and subscribed. */
bool mqttsub_is_connected(struct mqttsub *s);

#endif
