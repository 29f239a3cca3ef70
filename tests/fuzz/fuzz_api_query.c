/* libFuzzer target: the API's request targets (server/route.c, server/api_params.c and the
 * store's list path with its cursor parser, common/store.c). The input is a request target
 * "PATH?QUERY". The path, decoded by the server's own unescaper (http.c, included here to reach
 * it: every %HH but "%00", which stays text), is resolved against the route table for each
 * method; the query is split and decoded the same way ('+' as a space first, as libmicrohttpd
 * does), then every list endpoint's parameter parser builds a store query from it and, when
 * the parameters are valid, runs that query against a real (empty) SQLite store. Invariants: a
 * matched route's captured parameters are NUL-terminated and within their cap; a refused query
 * names the parameter at fault; a valid query has a limit within the page maximum, and a store
 * answer is either a JSON array or an error with no items. */
#include "../../server/http.c"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "api_params.h"
#include "config.h"
#include "route.h"
#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_TARGET_MAX 8192 /* MHD's per-connection pool bounds a real request line below this */
#define FUZZ_PARAMS_MAX 32
#define FUZZ_PAGE_MAX 200

static struct store *store;
static char store_dir[] = "/tmp/aetheris-fuzz-XXXXXX";

static void fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_api_query: %s: %s\n", what, detail);
    abort();
}

struct query {
    size_t n;
    char *name[FUZZ_PARAMS_MAX];
    char *value[FUZZ_PARAMS_MAX]; /* NULL for a valueless "?x" */
};

/* Decodes a query name or value as MHD does: '+' as a space, then the server's own unescaper
 * (every %HH but %00). */
static void unescape_query(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '+')
            *p = ' ';
    on_unescape(NULL, NULL, s);
}

static void split_query(char *qs, struct query *q)
{
    q->n = 0;
    for (char *p = qs; p != NULL && q->n < FUZZ_PARAMS_MAX;) {
        char *amp = strchr(p, '&');
        if (amp != NULL)
            *amp = '\0';
        char *eq = strchr(p, '=');
        if (eq != NULL)
            *eq++ = '\0';
        unescape_query(p);
        if (eq != NULL)
            unescape_query(eq);
        q->name[q->n] = p;
        q->value[q->n] = eq;
        q->n++;
        p = amp ? amp + 1 : NULL;
    }
}

/* First value of a parameter, as MHD's lookup returns it (NULL when absent or valueless). */
static const char *lookup(const void *ctx, const char *name)
{
    const struct query *q = ctx;
    for (size_t i = 0; i < q->n; i++)
        if (strcmp(q->name[i], name) == 0)
            return q->value[i];
    return NULL;
}

/* At exit: the store and its files go (SQLite may leave -wal and -shm beside the database). */
static void remove_store(void)
{
    store_free(store);
    static const char *const files[] = {"store.db", "store.db-wal", "store.db-shm"};
    char path[64];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", store_dir, files[i]);
        unlink(path);
    }
    rmdir(store_dir);
}

static void open_store(void)
{
    if (mkdtemp(store_dir) == NULL)
        fail("mkdtemp", store_dir);
    struct config cfg;
    config_defaults(&cfg);
    char path[64], err[256];
    snprintf(path, sizeof path, "%s/store.db", store_dir);
    if (config_set(&cfg, "sqlite_path", path, err, sizeof err) != 0)
        fail("config", err);
    store = store_open(&cfg, err, sizeof err);
    if (store == NULL)
        fail("store_open", err);
    atexit(remove_store);
}

static void check_route(const char *path)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PATCH", "DELETE", "PUT"};
    for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
        const struct route *r = NULL;
        struct route_params params;
        unsigned allowed = 0;
        if (route_match(methods[m], path, &r, &params, &allowed) != ROUTE_MATCH)
            continue;
        if (r == NULL || params.n > ROUTE_MAX_PARAMS)
            fail("a match without a route or with too many parameters", path);
        for (size_t i = 0; i < params.n; i++)
            if (memchr(params.value[i], '\0', ROUTE_PARAM_MAX + 1) == NULL)
                fail("a captured parameter over its cap", path);
    }
}

typedef int (*list_fn)(struct store *, const struct store_query *, json_t **,
                       char[STORE_CURSOR_MAX]);

static void check_list(const struct query *qs, const struct api_list_spec *spec, list_fn list,
                       const char *target)
{
    struct store_query q;
    memset(&q, 0, sizeof q);
    char detail[256] = "";
    if (api_params_query(lookup, qs, spec, FUZZ_PAGE_MAX, &q, detail, sizeof detail) != 0) {
        if (detail[0] == '\0')
            fail("a refused query without a detail", target);
        return;
    }
    if (q.limit < 1 || q.limit > FUZZ_PAGE_MAX)
        fail("a valid query with a limit out of range", target);
    json_t *items = NULL;
    char next[STORE_CURSOR_MAX];
    int rv = list(store, &q, &items, next);
    if ((rv == 0) != json_is_array(items) || memchr(next, '\0', sizeof next) == NULL)
        fail("a store answer that is neither a page nor an error", target);
    json_decref(items);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (store == NULL)
        open_store();
    if (size > FUZZ_TARGET_MAX || memchr(data, '\0', size) != NULL) /* MHD never passes a NUL */
        return 0;
    char *target = malloc(size + 1);
    memcpy(target, data, size);
    target[size] = '\0';
    char *copy = strdup(target);
    char *qs = strchr(copy, '?');
    if (qs != NULL)
        *qs++ = '\0';
    on_unescape(NULL, NULL, copy); /* MHD decodes the path with the same callback, no '+' rule */
    check_route(copy);
    struct query q;
    split_query(qs, &q);
    static const struct api_list_spec decisions = {"action", "APPROVE|REVIEW|BLOCK", true};
    static const struct api_list_spec anomalies = {"priority", "immediate|batch", true};
    static const struct api_list_spec deadletters = {NULL, NULL, false};
    check_list(&q, &decisions, store_list_decisions, target);
    check_list(&q, &anomalies, store_list_exceptions, target);
    check_list(&q, &deadletters, store_list_deadletters, target);
    free(copy);
    free(target);
    return 0;
}
