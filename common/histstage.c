/* Staged account history (histstage.h). Each bucket is a singly linked list of entries, newest
 * first; an entry holds its account inline. The bucket heads are one calloc'd array, so an idle
 * daemon has only the pages of the buckets it has used. */
#include "histstage.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "xmalloc.h"

struct entry {
    struct entry *next;
    int64_t ingested_ms, key;
    double amount;
    bool has_amount;
    char account[];
};

struct histstage {
    pthread_mutex_t mu; /* guards heads and count */
    struct entry **heads;
    size_t count;
    size_t target;       /* rows to keep staged */
    uint32_t cursor;     /* the next bucket to merge (writer only, like the two below) */
    int64_t last_id;     /* the last staged id added */
    int64_t cycle_bound; /* the current cycle's delete bound */
};

uint32_t histstage_bucket(const char *account)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)account; *p; p++)
        h = (h ^ *p) * 16777619u;
    return (h ^ (h >> 16)) & (HISTSTAGE_BUCKETS - 1);
}

struct histstage *histstage_new(size_t target)
{
    struct histstage *hs = xcalloc(1, sizeof *hs);
    hs->target = target;
    pthread_mutex_init(&hs->mu, NULL);
    hs->heads = xcalloc(HISTSTAGE_BUCKETS, sizeof *hs->heads);
    return hs;
}

static void free_list(struct entry *e)
{
    while (e) {
        struct entry *next = e->next;
        free(e);
        e = next;
    }
}

void histstage_free(struct histstage *hs)
{
    if (hs == NULL)
        return;
    for (uint32_t b = 0; b < HISTSTAGE_BUCKETS; b++)
        free_list(hs->heads[b]);
    free(hs->heads);
    pthread_mutex_destroy(&hs->mu);
    free(hs);
}

void histstage_add(struct histstage *hs, const struct histstage_row *row, int64_t staged_id)
{
    size_t len = strlen(row->account);
    struct entry *e = xmalloc(sizeof *e + len + 1);
    e->ingested_ms = row->ingested_ms;
    e->key = row->key;
    e->has_amount = row->has_amount;
    e->amount = row->has_amount ? row->amount : 0;
    memcpy(e->account, row->account, len + 1);
    uint32_t b = histstage_bucket(row->account);
    pthread_mutex_lock(&hs->mu);
    e->next = hs->heads[b];
    hs->heads[b] = e;
    hs->count++;
    pthread_mutex_unlock(&hs->mu);
    hs->last_id = staged_id;
}

size_t histstage_count(struct histstage *hs)
{
    pthread_mutex_lock(&hs->mu);
    size_t n = hs->count;
    pthread_mutex_unlock(&hs->mu);
    return n;
}

void histstage_plan(struct histstage *hs, size_t adding, struct histstage_plan *plan)
{
    size_t count = histstage_count(hs) + adding;
    uint64_t n = HISTSTAGE_BUCKETS; /* target 0: everything */
    if (hs->target > 0) {
        n = count < hs->target
                ? 0
                : ((uint64_t)adding * HISTSTAGE_BUCKETS + hs->target - 1) / hs->target;
        if (count >= 2 * hs->target)
            n *= 2;
    }
    if (n > HISTSTAGE_BUCKETS)
        n = HISTSTAGE_BUCKETS;
    plan->first = hs->cursor;
    plan->n = (uint32_t)(n < HISTSTAGE_BUCKETS - hs->cursor ? n : HISTSTAGE_BUCKETS - hs->cursor);
    plan->ends_cycle = plan->n > 0 && plan->first + plan->n == HISTSTAGE_BUCKETS;
    plan->cycle_bound = plan->first == 0 ? hs->last_id : hs->cycle_bound;
    plan->delete_upto_id = plan->ends_cycle ? plan->cycle_bound : 0;
}

static struct histstage_row row_of(const struct entry *e, uint32_t bucket, bool with_account)
{
    return (struct histstage_row){.account = with_account ? e->account : NULL,
                                  .bucket = bucket,
                                  .ingested_ms = e->ingested_ms,
                                  .key = e->key,
                                  .has_amount = e->has_amount,
                                  .amount = e->amount};
}

static int cmp_int64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

/* The history table's key order: bucket, account (bytes), ingested_ms, key. */
static int cmp_key_order(const void *pa, const void *pb)
{
    const struct histstage_row *a = pa, *b = pb;
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket ? -1 : 1;
    int c = strcmp(a->account, b->account);
    if (c != 0)
        return c;
    c = cmp_int64(a->ingested_ms, b->ingested_ms);
    return c != 0 ? c : cmp_int64(a->key, b->key);
}

/* Newest first: ingested_ms, then key, descending. */
static int cmp_newest_first(const void *pa, const void *pb)
{
    const struct histstage_row *a = pa, *b = pb;
    int c = cmp_int64(b->ingested_ms, a->ingested_ms);
    return c != 0 ? c : cmp_int64(b->key, a->key);
}

/* Appends a row to a growing array. */
static void push_row(struct histstage_row **rows, size_t *n, size_t *cap, struct histstage_row r)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        *rows = xrealloc(*rows, *cap * sizeof **rows);
    }
    (*rows)[(*n)++] = r;
}

size_t histstage_collect(struct histstage *hs, const struct histstage_plan *plan,
                         struct histstage_row **rows)
{
    size_t n = 0, cap = 0;
    *rows = NULL;
    pthread_mutex_lock(&hs->mu);
    for (uint32_t b = plan->first; b < plan->first + plan->n; b++)
        for (const struct entry *e = hs->heads[b]; e; e = e->next)
            push_row(rows, &n, &cap, row_of(e, b, true));
    pthread_mutex_unlock(&hs->mu);
    if (n > 1)
        qsort(*rows, n, sizeof **rows, cmp_key_order);
    return n;
}

void histstage_done(struct histstage *hs, const struct histstage_plan *plan)
{
    pthread_mutex_lock(&hs->mu);
    for (uint32_t b = plan->first; b < plan->first + plan->n; b++) {
        for (const struct entry *e = hs->heads[b]; e; e = e->next)
            hs->count--;
        free_list(hs->heads[b]);
        hs->heads[b] = NULL;
    }
    pthread_mutex_unlock(&hs->mu);
    hs->cycle_bound = plan->cycle_bound;
    hs->cursor = plan->ends_cycle ? 0 : plan->first + plan->n;
}

size_t histstage_find(struct histstage *hs, const char *account, bool exclude, int64_t key,
                      size_t max, struct histstage_row **rows)
{
    size_t n = 0, cap = 0;
    uint32_t b = histstage_bucket(account);
    *rows = NULL;
    pthread_mutex_lock(&hs->mu);
    for (const struct entry *e = hs->heads[b]; e; e = e->next)
        if (strcmp(e->account, account) == 0 && !(exclude && e->key == key))
            push_row(rows, &n, &cap, row_of(e, b, false));
    pthread_mutex_unlock(&hs->mu);
    if (n > 1)
        qsort(*rows, n, sizeof **rows, cmp_newest_first);
    return n < max ? n : max;
}
