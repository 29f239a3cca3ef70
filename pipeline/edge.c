/* Edge shard (edge.h): accounts in an open-addressing table (linear probing, load <= 0.7,
 * doubling). Each account is ONE allocation holding its zwin, its key and its ring of W amounts,
 * made when the account is first seen; scoring an event touches that block and one table slot and
 * allocates nothing. Slots keep the key's 64-bit hash so probes compare keys only on a hash match.
 */
#include "edge.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "detector.h"
#include "event.h"
#include "shard.h"
#include "xmalloc.h"

#define EDGE_INITIAL_SLOTS 1024 /* power of two; grows by doubling */

struct account {
    struct zwin win;
    uint8_t keylen; /* <= EVENT_ACCOUNT_MAX */
    char key[];     /* keylen + 1 bytes, then padding, then the ring of W doubles */
};

struct slot {
    uint64_t hash;
    struct account *acct; /* NULL = empty */
};

struct edge_shard {
    struct zscore_params params;
    struct detector detector; /* zscore unless edge_shard_set_detector chose another */
    struct slot *slots;
    size_t mask;
    size_t count;
};

/* Empty shard with a copy of *params; caller owns it (edge_shard_free). */
struct edge_shard *edge_shard_new(const struct zscore_params *params)
{
    struct edge_shard *s = xcalloc(1, sizeof *s);
    s->params = *params;
    s->slots = xcalloc(EDGE_INITIAL_SLOTS, sizeof *s->slots);
    s->mask = EDGE_INITIAL_SLOTS - 1;
    detector_init(&s->detector, &(struct detector_params){.kind = DETECTOR_ZSCORE}, params);
    return s;
}

/* Frees the shard and every account block; NULL is a no-op. */
void edge_shard_free(struct edge_shard *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i <= s->mask; i++)
        free(s->slots[i].acct);
    free(s->slots);
    detector_cleanup(&s->detector);
    free(s);
}

static struct account *account_new(const char *key, size_t keylen, uint32_t window)
{
    size_t head = offsetof(struct account, key) + keylen + 1;
    size_t ring_off = (head + 7) & ~(size_t)7; /* doubles are 8-byte aligned */
    struct account *a = xmalloc(ring_off + (size_t)window * sizeof(double));
    zwin_init(&a->win, (double *)(void *)((char *)a + ring_off));
    a->keylen = (uint8_t)keylen;
    memcpy(a->key, key, keylen);
    a->key[keylen] = '\0';
    return a;
}

/* Slot of key, or the empty slot where it would go. */
static size_t find(const struct edge_shard *s, const char *key, size_t keylen, uint64_t hash)
{
    size_t i = (size_t)hash & s->mask;
    while (s->slots[i].acct != NULL) {
        const struct account *a = s->slots[i].acct;
        if (s->slots[i].hash == hash && a->keylen == keylen && memcmp(a->key, key, keylen) == 0)
            break;
        i = (i + 1) & s->mask;
    }
    return i;
}

static void grow(struct edge_shard *s)
{
    size_t old_size = s->mask + 1;
    struct slot *old = s->slots;
    s->slots = xcalloc(old_size * 2, sizeof *s->slots);
    s->mask = old_size * 2 - 1;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i].acct == NULL)
            continue;
        size_t j = (size_t)old[i].hash & s->mask;
        while (s->slots[j].acct != NULL)
            j = (j + 1) & s->mask;
        s->slots[j] = old[i];
    }
    free(old);
}

/* The account for key, created if absent. */
static struct account *lookup_or_add(struct edge_shard *s, const char *key)
{
    size_t keylen = strnlen(key, EVENT_ACCOUNT_MAX);
    uint64_t hash = shard_hash(key, keylen);
    size_t i = find(s, key, keylen, hash);
    if (s->slots[i].acct != NULL)
        return s->slots[i].acct;
    if ((s->count + 1) * 10 > (s->mask + 1) * 7) {
        grow(s);
        i = find(s, key, keylen, hash);
    }
    s->slots[i].hash = hash;
    s->slots[i].acct = account_new(key, keylen, s->params.window);
    s->count++;
    return s->slots[i].acct;
}

/* Scores amount in the account's window (created on first sight); allocates only then. */
void edge_shard_score(struct edge_shard *s, const char *account, double amount,
                      struct zscore_result *out)
{
    struct account *a = lookup_or_add(s, account);
    detector_update(&s->detector, &a->win, &s->params, amount, out);
}

/* Replaces the shard's detector (the default is zscore). */
void edge_shard_set_detector(struct edge_shard *s, const struct detector_params *dp)
{
    detector_cleanup(&s->detector);
    detector_init(&s->detector, dp, &s->params);
}

/* Number of accounts in the table. */
size_t edge_shard_accounts(const struct edge_shard *s)
{
    return s->count;
}

/* The account's window, borrowed until the next call on the shard; NULL when unknown. */
const struct zwin *edge_shard_find(const struct edge_shard *s, const char *account)
{
    size_t keylen = strnlen(account, EVENT_ACCOUNT_MAX);
    size_t i = find(s, account, keylen, shard_hash(account, keylen));
    return s->slots[i].acct ? &s->slots[i].acct->win : NULL;
}

/* Calls fn once per account, in table order, with its window oldest first (a scratch copy,
 * valid for the call). fn must not modify the shard. */
void edge_shard_foreach(const struct edge_shard *s, edge_account_fn fn, void *ctx)
{
    double *vals = xmalloc((size_t)s->params.window * sizeof *vals);
    for (size_t i = 0; i <= s->mask; i++) {
        const struct account *a = s->slots[i].acct;
        if (a == NULL)
            continue;
        zwin_values(&a->win, s->params.window, vals);
        fn(ctx, a->key, vals, a->win.n, a->win.last_z);
    }
    free(vals);
}

/* Creates the account if needed and replaces its window by the newest W of vals (oldest first),
 * with exact statistics. */
void edge_shard_restore(struct edge_shard *s, const char *account, const double *vals, uint32_t n,
                        double last_z)
{
    struct account *a = lookup_or_add(s, account);
    zwin_load(&a->win, s->params.window, vals, n, last_z);
}
