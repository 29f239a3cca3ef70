/* Bounded byte buffer (buf.h). Grows geometrically up to `max`; an append that would pass `max`
 * fails whole and leaves the contents untouched, so callers can report "too large" cleanly. */
#include "buf.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"
#include "xmalloc.h"

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static void buf_reserve(struct buf *b, size_t need)
{
    if (need + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256; /* small first step: most buffers hold one short line */
    while (cap < need + 1)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

int buf_append(struct buf *b, const void *data, size_t n)
{
    if (n > b->max - b->len)
        return ERR_FULL;
    buf_reserve(b, b->len + n);
    if (n > 0)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return ERR_INVAL;
    if ((size_t)n > b->max - b->len)
        return ERR_FULL;
    buf_reserve(b, b->len + (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_take(struct buf *b)
{
    char *p = b->data ? b->data : xstrdup("");
    buf_init(b, b->max);
    return p;
}

void buf_cleanup(struct buf *b)
{
    free(b->data);
    buf_init(b, b->max);
}
