/* The daemon's shared context handed to every HTTP handler: configuration, store, pipeline and
 * start time. Everything here is borrowed by handlers and outlives the HTTP server. */
#ifndef AETHERIS_APP_H
#define AETHERIS_APP_H
#include "fmacros.h"
#include <stdint.h>
#include "config.h"
#include "pipeline.h"
#include "store.h"

struct app {
    const struct config *cfg;
    struct store *store;
    struct pipeline *pipeline;
    int64_t started_ms; /* wall clock at start, for uptime */
};

#endif
