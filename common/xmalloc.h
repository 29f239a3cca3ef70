/* Allocation wrappers that abort the process on out-of-memory (tmux xmalloc.c), so callers never
 * check for NULL. Every size that input controls must be capped by the caller before it reaches
 * these. Thread-safe. */
#ifndef AETHERIS_XMALLOC_H
#define AETHERIS_XMALLOC_H
#include "fmacros.h"
#include <stddef.h>

void *xmalloc(size_t size);               /* never NULL; aborts on OOM */
void *xcalloc(size_t nmemb, size_t size); /* zeroed; aborts on OOM or overflow */
void *xrealloc(void *ptr, size_t size);   /* never NULL; aborts on OOM */
char *xstrdup(const char *s);             /* caller owns the copy */
char *xstrndup(const char *s, size_t n);  /* copies at most n bytes, always NUL-terminated */
char *xstrdup_nonempty(const char *s);    /* a copy, or NULL when s is NULL or "" */

#endif
