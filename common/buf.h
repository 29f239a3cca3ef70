/* Bounded growable byte buffer (curl dynbuf idea): appends fail with ERR_FULL instead of growing
 * past `max`, so input-controlled sizes are always capped. The data is kept NUL-terminated.
 * Caller-allocated value type: buf_init()/buf_cleanup(). Not thread-safe. */
#ifndef AETHERIS_BUF_H
#define AETHERIS_BUF_H
#include "fmacros.h"
#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated contents, NULL until the first append */
    size_t len; /* bytes used, excluding the terminator */
    size_t cap; /* private: bytes allocated */
    size_t max; /* private: hard cap on len */
};

void buf_init(struct buf *b, size_t max);
/* Appends n bytes; returns 0 or ERR_FULL (buffer unchanged) when len + n would pass max. */
int buf_append(struct buf *b, const void *data, size_t n);
/* Appends formatted text; 0 or ERR_FULL (buffer unchanged). */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);
/* Hands the contents to the caller (free() it) and re-initializes the buffer empty. */
char *buf_take(struct buf *b);
void buf_cleanup(struct buf *b);

#endif
