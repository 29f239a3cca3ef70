/* The hub of GET /v1/stream clients (api_stream.c): Server-Sent Events of the pipeline's live
 * feed (feed.h). An MHD worker thread never waits for events: a client with nothing to send is
 * suspended (MHD_suspend_connection) and resumed by the feed's publish notification or, when a
 * keep-alive is due, by the hub's ticker thread. A client that went away is noticed at its next
 * write (at the latest one keep-alive period later) and freed by MHD's response cleanup.
 * Thread-safe. */
#ifndef AETHERIS_STREAM_H
#define AETHERIS_STREAM_H
#include "fmacros.h"
#include <stddef.h>
#include "config.h"
#include "feed.h"

struct stream_hub;

/* A hub over feed (borrowed, must outlive it): registers the feed's notify callback and starts
 * the keep-alive ticker. NULL when the thread cannot start. */
struct stream_hub *stream_hub_new(const struct config *cfg, struct feed *feed);
/* Ends every stream (resuming the suspended ones so MHD can close them) and stops the ticker;
 * new streams are refused afterwards. Call before MHD_stop_daemon. Idempotent. */
void stream_hub_shutdown(struct stream_hub *hub);
/* Frees the hub after shutdown, once MHD has released every client. NULL is a no-op. */
void stream_hub_free(struct stream_hub *hub);
/* Streams open now. */
size_t stream_hub_clients(struct stream_hub *hub);

#endif
