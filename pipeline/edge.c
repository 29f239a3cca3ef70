/* Edge shard (edge.h).
 *
 * Accounts are fixed-size records in chunks (no allocation per account beyond its chunk, no
 * allocator overhead): the window state (struct zcore), the key, and the ring of W amounts as
 * uint32 cents (zscore.h), 48 + 4 W bytes, 448 for W = 100. An account whose window turns wide
 * (an amount that is not whole cents) gets a separate ring of W doubles, whose address is kept in
 * the first 8 bytes of its now unused cents ring.
 *
 * Keys. A key of 1 to 18 decimal digits without a leading zero (the usual account id) is stored
 * as its value with the top bit set, in the record's 8-byte key field; any other key is copied to
 * the heap and the field holds its address (top bit clear: user-space addresses are below 2^63).
 * Comparing a numeric key is one 64-bit compare.
 *
 * Table. Open addressing (linear probing, load <= 0.7, doubling) over 4-byte slots: 16 slots per
 * cache line, ~8 bytes per account at 1M accounts. A slot holds the record's handle + 1 in its
 * low bits (0 = empty) and, in the bits above, a fingerprint: the top bits of the key's hash.
 * The key's 64-bit hash is shard_mix (fmix64) of a numeric key, or of the FNV-1a of another one;
 * its low bits pick the home slot, its top 32 bits give the fingerprint. A probe reads a record
 * only when the fingerprint matches, so a key that is not in its home slot (a fifth to a quarter
 * of them at loads of 0.38-0.49, about two slots away on average) costs no read of another
 * account's record: with a million accounts each such read was a cache miss the batch had not
 * prefetched (0.46 per lookup before, 0.0004 with fingerprints; docs/benchmarks.md). The bits
 * below the fingerprint hold the handle + 1 of as many records as the table has slots
 * (handle_mask, set when the table is made; there are always fewer records than slots), so the
 * fingerprint has the rest: 20 bits at 1,000 accounts, 10 at a million (a wrong record is read
 * for one probe in 1,024), none from about a billion accounts per shard on.
 *
 * Records come in chunks of one 2 MiB page, 2 MiB aligned, with transparent huge pages asked for
 * after the first chunk (and for tables from 2 MiB on): at a million accounts every event lands
 * on a random record, and with 4 KiB pages nearly each of them would also miss the TLB. A chunk
 * holds floor(2 MiB / stride) records (4,681 at W = 100, 64 bytes left over), so a record's
 * handle is its chunk number shifted left past its position in the chunk, and finding it takes
 * a shift and a mask, no division. Handles fit the 4-byte slots up to about 2 billion accounts
 * per shard.
 *
 * Batches. edge_shard_score_batch works through EDGE_STAGE events at a time in passes: hash
 * every key and prefetch its table slot; probe the slots for the first whose fingerprint matches
 * (the candidate) and prefetch its record's header; read the headers and prefetch the ring slots
 * the pushes will write; then, in order, take the candidate when its key is the event's (else
 * look up, or add), push and record each cents score (zcore_push_cents); then compute the scores
 * (zcents_finish_many). With many accounts (tables and records far bigger than the caches) the
 * memory latency of a stage's events overlaps instead of adding up, each pass only touching
 * lines the previous one asked for; the last pass is a loop of independent square roots and
 * divisions, two events to an SSE2 instruction, that the CPU pipelines, where scoring event by
 * event would wait on each chain in turn. The first three passes only read (a slot or header
 * read early may be stale by the time its event is scored: that costs a wasted prefetch, never
 * a wrong answer). An event that is not a plain cents score (a wide window, another detector)
 * finishes the recorded scores before its own, so every account's last_z ends with its latest
 * event. */
#include "edge.h"
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "detector.h"
#include "event.h"
#include "shard.h"
#include "xmalloc.h"

#define EDGE_INITIAL_SLOTS 1024     /* power of two; grows by doubling */
#define EDGE_CHUNK_BYTES (2u << 20) /* records come in chunks of one 2 MiB (huge) page */
#define KEY_NUMERIC (1ULL << 63)    /* key field: numeric key (value in the low bits) */
#define KEY_DIGITS_MAX 18           /* 10^18 - 1 < 2^63 */
#define EDGE_STAGE 32               /* events a batch scores per stage */

struct record {
    struct zcore core;
    uint64_t key;     /* KEY_NUMERIC | value, or the address of a struct long_key */
    uint32_t cents[]; /* W cents; once wide, the address of the ring of W doubles */
};

struct long_key {
    uint8_t len;
    char s[]; /* len bytes + NUL */
};

struct edge_shard {
    struct zscore_params params;
    struct detector detector; /* zscore unless edge_shard_set_detector chose another */
    uint64_t cents_max;
    size_t stride;        /* bytes per record, a multiple of 8 */
    size_t per_chunk;     /* records per chunk */
    unsigned chunk_shift; /* a record's handle: chunk << chunk_shift | position in its chunk */
    char **chunks;
    size_t nchunks;
    uint32_t *slots;      /* fingerprint | record handle + 1; 0 = empty */
    size_t mask;          /* slots - 1 */
    uint32_t handle_mask; /* the slot bits holding the handle + 1 (the others: fingerprint) */
    size_t count;
    struct zwin *view; /* edge_shard_find's answer */
};

/* A key as looked up: numeric form (0 when the key is not numeric), text and table hash. */
struct key_ref {
    uint64_t k;
    const char *s;
    size_t len;
    uint64_t hash;
};

static inline void key_make(const char *account, struct key_ref *kr)
{
    uint64_t v = 0;
    size_t len = 0;
    for (unsigned d; len <= KEY_DIGITS_MAX && (d = (unsigned char)account[len] - '0') <= 9; len++)
        v = v * 10 + d;
    kr->s = account;
    if (account[len] == '\0' && len >= 1 && len <= KEY_DIGITS_MAX &&
        (account[0] != '0' || len == 1)) {
        kr->len = len;
        kr->k = KEY_NUMERIC | v;
        kr->hash = shard_mix(v);
    } else {
        kr->len = strnlen(account, EVENT_ACCOUNT_MAX);
        kr->k = 0;
        kr->hash = shard_mix(shard_hash(account, kr->len)); /* FNV-1a's top bits barely move */
    }
}

/* key_make for a key whose first 8 bytes are readable (struct edge_item's contract). A numeric
 * key of 1 to 7 digits, the usual account id, is recognized and converted 8 bytes at a time (a
 * byte is a digit when it xors '0' into 0..9; the first byte that does not ends the digits, and
 * must be the NUL; the digits, moved to the top of the word, are combined in pairs, quads and
 * octets by three multiplications); anything else goes through key_make. */
static inline void key_make_readable8(const char *account, struct key_ref *kr)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t x;
    memcpy(&x, account, sizeof x);
    uint64_t a = x ^ 0x3030303030303030ULL; /* a digit's byte is now its value */
    uint64_t stops = (a | (a + 0x7676767676767676ULL)) & 0x8080808080808080ULL;
    unsigned len = stops ? (unsigned)__builtin_ctzll(stops) >> 3 : 8;
    if (len >= 1 && len <= 7 && ((x >> (8 * len)) & 0xFF) == 0 && ((a & 0xFF) != 0 || len == 1)) {
        uint64_t v = a << (8 * (8 - len)); /* leading zero digits fill the low bytes */
        v = (v * (10 * 256 + 1)) >> 8 & 0x00FF00FF00FF00FFULL;
        v = (v * (100 * 65536 + 1)) >> 16 & 0x0000FFFF0000FFFFULL;
        v = (v * (10000 * 4294967296ULL + 1)) >> 32;
        kr->s = account;
        kr->len = len;
        kr->k = KEY_NUMERIC | v;
        kr->hash = shard_mix(v);
        return;
    }
#endif
    key_make(account, kr);
}

/* The record of a handle (what the table's slots hold, minus one). */
static inline struct record *record_at(const struct edge_shard *s, size_t handle)
{
    size_t position = handle & (((size_t)1 << s->chunk_shift) - 1);
    return (struct record *)(void *)(s->chunks[handle >> s->chunk_shift] + position * s->stride);
}

/* The handle of the index-th record created. */
static inline size_t handle_of(const struct edge_shard *s, size_t index)
{
    return (index / s->per_chunk) << s->chunk_shift | index % s->per_chunk;
}

static inline bool key_equal(uint64_t stored, const struct key_ref *kr)
{
    if (kr->k != 0)
        return stored == kr->k;
    if (stored & KEY_NUMERIC)
        return false;
    const struct long_key *lk = (const struct long_key *)(uintptr_t)stored;
    return lk->len == kr->len && memcmp(lk->s, kr->s, kr->len) == 0;
}

/* The table hash of a stored key. */
static uint64_t stored_hash(uint64_t stored)
{
    if (stored & KEY_NUMERIC)
        return shard_mix(stored & ~KEY_NUMERIC);
    const struct long_key *lk = (const struct long_key *)(uintptr_t)stored;
    return shard_mix(shard_hash(lk->s, lk->len));
}

/* The stored key as text into buf (room for EVENT_ACCOUNT_MAX + 1). */
static const char *stored_text(uint64_t stored, char *buf)
{
    if (!(stored & KEY_NUMERIC))
        return ((const struct long_key *)(uintptr_t)stored)->s;
    snprintf(buf, EVENT_ACCOUNT_MAX + 1, "%llu", (unsigned long long)(stored & ~KEY_NUMERIC));
    return buf;
}

static inline void *ring_of(struct record *r)
{
    void *ring = r->cents;
    if (r->core.wide)
        memcpy(&ring, r->cents, sizeof ring);
    return ring;
}

/* `bytes` aligned to 2 MiB, with transparent huge pages asked for when
 * `huge`: with a million accounts, 4 KiB pages would cost a TLB miss on nearly every access. */
static void *huge_new(size_t bytes, bool huge)
{
    void *p = NULL;
    if (posix_memalign(&p, EDGE_CHUNK_BYTES, bytes) != 0)
        return xmalloc(bytes);
    if (huge)
        (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: refused where THP is off */
    return p;
}

/* Installs an empty table of `size` slots (a power of two; from 2 MiB on, in huge pages), with
 * the handle bits for up to `size` records (see the file comment). */
static void table_new(struct edge_shard *s, size_t size)
{
    size_t bytes = size * sizeof(uint32_t);
    if (bytes < EDGE_CHUNK_BYTES) {
        s->slots = xcalloc(size, sizeof(uint32_t));
    } else {
        s->slots = huge_new(bytes, true);
        memset(s->slots, 0, bytes);
    }
    s->mask = size - 1;
    uint64_t top = (uint64_t)handle_of(s, size - 1) + 1;
    unsigned bits = 64 - (unsigned)__builtin_clzll(top);
    s->handle_mask = bits >= 32 ? UINT32_MAX : ((uint32_t)1 << bits) - 1;
}

/* The slot value of a record: the key's fingerprint and the record's handle + 1. */
static inline uint32_t slot_value(const struct edge_shard *s, uint64_t hash, size_t handle)
{
    return ((uint32_t)(hash >> 32) & ~s->handle_mask) | (uint32_t)(handle + 1);
}

/* True when the occupied slot value v may be the key's (its fingerprint matches). */
static inline bool slot_matches(const struct edge_shard *s, uint32_t v, uint64_t hash)
{
    return ((v ^ (uint32_t)(hash >> 32)) & ~s->handle_mask) == 0;
}

/* The record an occupied slot value names. */
static inline struct record *slot_record(const struct edge_shard *s, uint32_t v)
{
    return record_at(s, (v & s->handle_mask) - 1);
}

/* Empty shard with a copy of *params; caller owns it (edge_shard_free). */
struct edge_shard *edge_shard_new(const struct zscore_params *params)
{
    struct edge_shard *s = xcalloc(1, sizeof *s);
    s->params = *params;
    s->cents_max = zscore_cents_max(params->window);
    size_t ring = (size_t)params->window * sizeof(uint32_t);
    s->stride = (sizeof(struct record) + ring + 7) & ~(size_t)7;
    s->per_chunk = s->stride <= EDGE_CHUNK_BYTES ? EDGE_CHUNK_BYTES / s->stride : 1;
    while (((size_t)1 << s->chunk_shift) < s->per_chunk)
        s->chunk_shift++;
    table_new(s, EDGE_INITIAL_SLOTS);
    detector_init(&s->detector, &(struct detector_params){.kind = DETECTOR_ZSCORE}, params);
    s->view = xcalloc(1, sizeof *s->view);
    return s;
}

/* Frees the shard, every record's heap parts and the chunks; NULL is a no-op. */
void edge_shard_free(struct edge_shard *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++) {
        struct record *r = record_at(s, handle_of(s, i));
        if (r->core.wide)
            free(ring_of(r));
        if (!(r->key & KEY_NUMERIC))
            free((void *)(uintptr_t)r->key);
    }
    for (size_t i = 0; i < s->nchunks; i++)
        free(s->chunks[i]);
    free(s->chunks);
    free(s->slots);
    detector_cleanup(&s->detector);
    free(s->view);
    free(s);
}

/* The key's record; NULL when absent, with *empty set to the slot where it would go. */
static inline struct record *find_record(const struct edge_shard *s, const struct key_ref *kr,
                                         size_t *empty)
{
    for (size_t i = (size_t)kr->hash & s->mask;; i = (i + 1) & s->mask) {
        uint32_t v = s->slots[i];
        if (v == 0) {
            *empty = i;
            return NULL;
        }
        if (slot_matches(s, v, kr->hash)) {
            struct record *r = slot_record(s, v);
            if (key_equal(r->key, kr))
                return r;
        }
    }
}

static void grow(struct edge_shard *s)
{
    size_t size = (s->mask + 1) * 2;
    free(s->slots);
    table_new(s, size);
    for (size_t idx = 0; idx < s->count; idx++) {
        size_t handle = handle_of(s, idx);
        uint64_t hash = stored_hash(record_at(s, handle)->key);
        size_t j = (size_t)hash & s->mask;
        while (s->slots[j] != 0)
            j = (j + 1) & s->mask;
        s->slots[j] = slot_value(s, hash, handle);
    }
}

/* A new record for the key at the end of the last chunk. */
static struct record *record_new(struct edge_shard *s, const struct key_ref *kr)
{
    if (s->count == s->nchunks * s->per_chunk) {
        /* The first chunk stays in small pages: a shard with few accounts is not charged a
         * whole huge page. */
        size_t bytes = s->stride <= EDGE_CHUNK_BYTES ? EDGE_CHUNK_BYTES : s->stride;
        s->chunks = xrealloc(s->chunks, (s->nchunks + 1) * sizeof *s->chunks);
        s->chunks[s->nchunks] = huge_new(bytes, s->nchunks > 0);
        s->nchunks++;
    }
    struct record *r = record_at(s, handle_of(s, s->count));
    zcore_init(&r->core);
    if (kr->k != 0) {
        r->key = kr->k;
    } else {
        struct long_key *lk = xmalloc(sizeof *lk + kr->len + 1);
        lk->len = (uint8_t)kr->len;
        memcpy(lk->s, kr->s, kr->len);
        lk->s[kr->len] = '\0';
        r->key = (uint64_t)(uintptr_t)lk;
    }
    return r;
}

/* A new record for a key that is not in the table, at the empty slot `i` (found again when the
 * table has to grow first). Out of line: it runs once per account, the lookup that calls it once
 * per event. */
static __attribute__((noinline)) struct record *add_record(struct edge_shard *s,
                                                           const struct key_ref *kr, size_t i)
{
    if ((s->count + 1) * 10 > (s->mask + 1) * 7) {
        grow(s);
        (void)find_record(s, kr, &i); /* absent: its new home slot */
    }
    struct record *r = record_new(s, kr);
    s->slots[i] = slot_value(s, kr->hash, handle_of(s, s->count));
    s->count++;
    return r;
}

/* The record for the key, created if absent. */
static inline struct record *lookup_or_add(struct edge_shard *s, const struct key_ref *kr)
{
    size_t empty;
    struct record *r = find_record(s, kr, &empty);
    return r != NULL ? r : add_record(s, kr, empty);
}

/* Gives the record a ring of W doubles holding its amounts. */
static void widen(struct edge_shard *s, struct record *r)
{
    double *ring = xmalloc((size_t)s->params.window * sizeof *ring);
    zcore_widen(&r->core, s->params.window, r->cents, ring);
    memcpy(r->cents, &ring, sizeof ring);
}

static inline void score_record(struct edge_shard *s, struct record *r, double amount,
                                struct zscore_result *out)
{
    /* Another detector scores the window before the push; the push itself (and so the stored
     * window) is always the Z-score's, whose own result is then only bookkeeping. */
    bool other = s->detector.params.kind != DETECTOR_ZSCORE;
    struct zscore_result pushed;
    struct zscore_result *res = other ? &pushed : out;
    if (other)
        detector_prescore(&s->detector, &r->core, ring_of(r), &s->params, amount, out);
    if (!zcore_update(&r->core, ring_of(r), &s->params, s->cents_max, amount, res)) {
        widen(s, r);
        zcore_update(&r->core, ring_of(r), &s->params, s->cents_max, amount, res);
    }
    if (other)
        r->core.last_z = out->z;
}

/* Scores amount in the account's window (created on first sight). */
void edge_shard_score(struct edge_shard *s, const char *account, double amount,
                      struct zscore_result *out)
{
    struct key_ref kr;
    key_make(account, &kr);
    score_record(s, lookup_or_add(s, &kr), amount, out);
}

/* The record of the first slot from the key's home slot on whose fingerprint matches (the key's
 * record, but for one probe in 2^fingerprint bits); NULL when an empty slot comes first. */
static inline struct record *probe_candidate(const struct edge_shard *s, const struct key_ref *kr)
{
    for (size_t i = (size_t)kr->hash & s->mask;; i = (i + 1) & s->mask) {
        uint32_t v = s->slots[i];
        if (v == 0)
            return NULL;
        if (slot_matches(s, v, kr->hash))
            return slot_record(s, v);
    }
}

/* Prefetches the ring slot the next push of the candidate record writes (its header having been
 * prefetched by the previous pass). */
static inline void prefetch_ring(const struct edge_shard *s, const struct record *r)
{
    if (!r->core.wide)
        __builtin_prefetch(&r->cents[r->core.n < s->params.window ? r->core.n : r->core.head], 1);
}

/* The cents scores pushed in a stage's scoring pass, finished by its floating-point pass. */
struct deferred {
    struct zcents_score sc[EDGE_STAGE];
    struct zscore_result *out[EDGE_STAGE];
    struct zcore *core[EDGE_STAGE];
    size_t n;
};

/* Finishes the deferred scores, then sets each window's last_z in order (a later score of the
 * same account sets it last). */
static void finish_deferred(const struct edge_shard *s, struct deferred *d)
{
    double z[EDGE_STAGE];
    zcents_finish_many(d->sc, d->n, &s->params, d->out, z);
    for (size_t i = 0; i < d->n; i++)
        d->core[i]->last_z = z[i];
    d->n = 0;
}

/* Scores items[0..n) (n <= EDGE_STAGE) in order, in stages (see the file comment). */
static void score_stage(struct edge_shard *s, struct edge_item *items, size_t n)
{
    struct key_ref kr[EDGE_STAGE];
    struct record *cand[EDGE_STAGE]; /* probe_candidate's */
    struct deferred d;
    d.n = 0;
    for (size_t i = 0; i < n; i++) {
        key_make_readable8(items[i].account, &kr[i]);
        __builtin_prefetch(&s->slots[(size_t)kr[i].hash & s->mask]);
    }
    for (size_t i = 0; i < n; i++) {
        cand[i] = probe_candidate(s, &kr[i]);
        if (cand[i] != NULL)
            __builtin_prefetch(cand[i], 1);
    }
    for (size_t i = 0; i < n; i++)
        if (cand[i] != NULL)
            prefetch_ring(s, cand[i]);
    bool plain = s->detector.params.kind == DETECTOR_ZSCORE;
    for (size_t i = 0; i < n; i++) {
        /* Records never move, so a candidate whose key is the event's is its record even after
         * an earlier event of the stage grew the table. */
        struct record *r = cand[i];
        if (r == NULL || !key_equal(r->key, &kr[i]))
            r = lookup_or_add(s, &kr[i]);
        if (plain && zcore_push_cents(&r->core, r->cents, s->params.window, s->cents_max,
                                      items[i].amount, &d.sc[d.n])) {
            d.core[d.n] = &r->core;
            d.out[d.n++] = items[i].out;
            continue;
        }
        finish_deferred(s, &d); /* this account's last_z may be among them */
        score_record(s, r, items[i].amount, items[i].out);
    }
    finish_deferred(s, &d);
}

/* Scores items[0..n) in order, EDGE_STAGE at a time (see the file comment). */
void edge_shard_score_batch(struct edge_shard *s, struct edge_item *items, size_t n)
{
    for (size_t i = 0; i < n; i += EDGE_STAGE)
        score_stage(s, items + i, n - i < EDGE_STAGE ? n - i : EDGE_STAGE);
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

/* The account's window as a view into its record, borrowed until the next call on the shard;
 * NULL when unknown. */
const struct zwin *edge_shard_find(const struct edge_shard *s, const char *account)
{
    struct key_ref kr;
    key_make(account, &kr);
    size_t empty;
    struct record *r = find_record(s, &kr, &empty);
    if (r == NULL)
        return NULL;
    s->view->core = r->core;
    s->view->ring = ring_of(r);
    return s->view;
}

/* Calls fn once per account, in creation order, with its window oldest first (a scratch copy,
 * valid for the call). fn must not modify the shard. */
void edge_shard_foreach(const struct edge_shard *s, edge_account_fn fn, void *ctx)
{
    double *vals = xmalloc((size_t)s->params.window * sizeof *vals);
    char key[EVENT_ACCOUNT_MAX + 1];
    for (size_t i = 0; i < s->count; i++) {
        struct record *r = record_at(s, handle_of(s, i));
        zcore_values(&r->core, ring_of(r), s->params.window, vals);
        fn(ctx, stored_text(r->key, key), vals, r->core.n, r->core.last_z);
    }
    free(vals);
}

/* Creates the account if needed and replaces its window by the newest W of vals (oldest first),
 * with exact statistics: in cents when every kept value is whole cents, else wide. */
void edge_shard_restore(struct edge_shard *s, const char *account, const double *vals, uint32_t n,
                        double last_z)
{
    struct key_ref kr;
    key_make(account, &kr);
    struct record *r = lookup_or_add(s, &kr);
    uint32_t window = s->params.window;
    uint32_t skip = n > window ? n - window : 0;
    bool wide = n > skip && !zcore_all_cents(vals + skip, n - skip, s->cents_max);
    void *ring = r->cents;
    if (wide && r->core.wide)
        ring = ring_of(r);
    else if (wide)
        ring = xmalloc((size_t)window * sizeof(double));
    else if (r->core.wide)
        free(ring_of(r));
    zcore_load(&r->core, ring, wide, window, vals, n, last_z);
    if (wide)
        memcpy(r->cents, &ring, sizeof ring);
}
