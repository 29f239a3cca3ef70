/* Aborting allocation wrappers: see xmalloc.h. Out-of-memory is not a recoverable condition for a
 * daemon whose every input-controlled size is capped before allocation, so it ends the process
 * with one clear line instead of threading NULL checks through every caller. */
#include "xmalloc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_oom(size_t size)
{
    fprintf(stderr,
            "{\"level\":\"error\",\"event\":\"process.oom\",\"msg\":\"out of memory "
            "allocating %zu bytes\"}\n",
            size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        die_oom(size);
    return p;
}

void *xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        die_oom(nmemb * size);
    return p;
}

void *xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        die_oom(size);
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrdup_nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? xstrdup(s) : NULL;
}

char *xstrndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
