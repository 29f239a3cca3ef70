/* Edge shard: scoring through the account table matches an independent per-account two-pass
 * reference over many interleaved accounts; account count and lookups (unknown keys, prefixes,
 * 64-byte keys); foreach + restore into a fresh shard scores identically afterwards; restore
 * replaces a window; the table keeps every account across many doubling rehashes; batches of
 * every size around the batch's stages, with accounts repeated within a stage and the table
 * growing within a stage, give bit for bit what one call per event gives. */
#include "edge.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "event.h"
#include "tap.h"

/* Reference window: the last w amounts in a plain array, oldest first. */
struct ref {
    double *v;
    uint32_t n, w;
    double last_z;
};

/* Two-pass population statistics of the reference window, then z, then the push. */
static void ref_score(struct ref *r, const struct zscore_params *p, double amount, double *z,
                      double *mean, double *std)
{
    *z = *mean = *std = 0;
    if (r->n > 0) {
        double s = 0;
        int constant = 1;
        for (uint32_t i = 0; i < r->n; i++) {
            s += r->v[i];
            constant &= r->v[i] == r->v[0];
        }
        *mean = s / r->n;
        double acc = 0;
        for (uint32_t i = 0; i < r->n; i++)
            acc += (r->v[i] - *mean) * (r->v[i] - *mean);
        *std = constant ? 0 : sqrt(acc / r->n);
    }
    if (r->n >= p->min_points && *std > 0)
        *z = (amount - *mean) / *std;
    if (r->n == r->w) {
        memmove(r->v, r->v + 1, (r->w - 1) * sizeof *r->v);
        r->n--;
    }
    r->v[r->n++] = amount;
    r->last_z = *z;
}

static int close_to(double got, double want)
{
    return fabs(got - want) <= 1e-9 * fmax(1, fabs(want));
}

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static double uniform(void)
{
    return (double)(next() >> 11) / 9007199254740992.0;
}

enum { ACCOUNTS = 5000, W = 100 };

/* Account key i: short digit strings for most, long hex keys for some (up to 64 bytes). */
static void key_of(int i, char *buf, size_t len)
{
    if (i % 7 == 3)
        snprintf(buf, len, "%016x-%016x-%016x-%013x", (unsigned)i, (unsigned)i * 31,
                 (unsigned)i * 977, (unsigned)i);
    else
        snprintf(buf, len, "%d", 200000 + i);
}

/* Amount for an event: mostly log-normal-ish, sometimes a spike or a repeated value. */
static double amount(int acct)
{
    double u = uniform();
    if (acct % 11 == 0)
        return 49.99; /* a recurring payment: constant window, z = 0 */
    if (u < 0.01)
        return 50000 * uniform();
    return exp(3 + 3 * uniform());
}

struct collect {
    struct edge_shard *dst;
    struct ref *refs;
    int visits;
    int mismatched;
};

/* foreach callback: compares the window with the reference and installs it into ctx->dst. */
static void on_account(void *ctx, const char *account, const double *vals, uint32_t n,
                       double last_z)
{
    struct collect *c = ctx;
    c->visits++;
    char *end = NULL;
    long id = strtol(account, &end, 10);
    int idx = -1;
    if (*end == '\0' && id >= 200000 && id < 200000 + ACCOUNTS)
        idx = (int)(id - 200000);
    else
        for (int i = 3; i < ACCOUNTS && idx < 0; i += 7) {
            char k[EVENT_ACCOUNT_MAX + 1];
            key_of(i, k, sizeof k);
            if (strcmp(k, account) == 0)
                idx = i;
        }
    if (idx < 0) {
        c->mismatched++;
        return;
    }
    const struct ref *r = &c->refs[idx];
    int same = r->n == n && close_to(last_z, r->last_z);
    for (uint32_t i = 0; same && i < n; i++)
        same = r->v[i] == vals[i];
    c->mismatched += !same;
    edge_shard_restore(c->dst, account, vals, n, last_z);
}

struct counter {
    size_t visits;
    size_t bad;
};

static void on_count(void *ctx, const char *account, const double *vals, uint32_t n, double last_z)
{
    struct counter *c = ctx;
    (void)account;
    (void)last_z;
    c->visits++;
    c->bad += n == 0 || vals[n - 1] != (double)(n - 1);
}

/* The same result, bit for bit, where the batch gives one (mean and std of exceptions only). */
static int same_result(const struct zscore_result *a, const struct zscore_result *b)
{
    return memcmp(&a->z, &b->z, sizeof a->z) == 0 && a->suspicion == b->suspicion &&
           a->history_len == b->history_len && a->exception == b->exception &&
           a->immediate == b->immediate &&
           (!b->exception || (a->mean == b->mean && a->std == b->std));
}

/* Scores `total` events, `per_batch` to a batch, in one shard one call per event and in another
 * through edge_shard_score_batch, with keys drawn from a growing set (new accounts all along, so
 * the table grows inside stages) and from a few hot accounts (repeated within a stage, up to
 * the same account for a whole stage); counts the results and final windows that differ. */
static int batch_vs_calls(size_t per_batch, long total)
{
    struct zscore_params p = {8, 3, 1.5, 5000, 0.9}; /* small W: windows wrap often */
    struct edge_shard *one = edge_shard_new(&p), *bat = edge_shard_new(&p);
    enum { MAXB = 100 };
    char keys[MAXB][EVENT_ACCOUNT_MAX + 1];
    struct edge_item items[MAXB];
    struct zscore_result ra[MAXB], rb[MAXB];
    int bad = 0, created = 0;
    for (long e = 0; e < total; e += (long)per_batch) {
        int burst = (e / (long)per_batch) % 9 == 4; /* one account for the whole batch */
        for (size_t j = 0; j < per_batch; j++) {
            int acct = burst ? 7 : next() % 3 == 0 ? created++ : (int)(next() % 6);
            if (acct % 5 == 2)
                snprintf(keys[j], sizeof keys[j], "k%d", acct);
            else
                snprintf(keys[j], sizeof keys[j], "%d", acct % 3 ? acct : 90000000 + acct);
            double x = (double)(next() % 100000) / 100.0;
            if (acct % 11 == 10 && next() % 4 == 0)
                x = uniform() * 100; /* turns the window wide */
            if (next() % 17 == 0)
                x *= 50; /* exceptions */
            items[j] = (struct edge_item){keys[j], x, &rb[j]};
            edge_shard_score(one, keys[j], x, &ra[j]);
        }
        edge_shard_score_batch(bat, items, per_batch);
        for (size_t j = 0; j < per_batch; j++) {
            const struct zwin *wa = edge_shard_find(one, keys[j]);
            double za = wa->last_z, na = wa->n;
            const struct zwin *wb = edge_shard_find(bat, keys[j]);
            bad += !same_result(&ra[j], &rb[j]) || memcmp(&za, &wb->last_z, sizeof za) != 0 ||
                   na != wb->n;
        }
    }
    bad += edge_shard_accounts(one) != edge_shard_accounts(bat);
    edge_shard_free(one);
    edge_shard_free(bat);
    return bad;
}

int main(void)
{
    struct zscore_params p = {W, 5, 2.5, 5000, 0.9};
    struct edge_shard *s = edge_shard_new(&p);
    struct ref *refs = calloc(ACCOUNTS, sizeof *refs);
    for (int i = 0; i < ACCOUNTS; i++)
        refs[i] = (struct ref){calloc(W, sizeof(double)), 0, W, 0};

    /* 100k interleaved events over 5000 accounts against per-account references. */
    int bad = 0, seen = 0, exceptions = 0;
    for (long e = 0; e < 100000; e++) {
        int acct = (int)(next() % ACCOUNTS);
        char key[EVENT_ACCOUNT_MAX + 1];
        key_of(acct, key, sizeof key);
        double x = amount(acct), z, mean, std;
        struct zscore_result r;
        seen += refs[acct].n == 0;
        edge_shard_score(s, key, x, &r);
        ref_score(&refs[acct], &p, x, &z, &mean, &std);
        exceptions += r.exception;
        if (!close_to(r.z, z) || !close_to(r.mean, mean) || !close_to(r.std, std) ||
            r.history_len != refs[acct].n || r.exception != (fabs(z) > p.z_threshold) ||
            !close_to(r.suspicion, r.exception ? zscore_suspicion(z, x, p.amount_scale) : 0)) {
            if (bad++ < 3)
                printf("# event %ld account %s: z %.17g vs %.17g\n", e, key, r.z, z);
        }
    }
    is_int(bad, 0, "100k events over 5000 accounts match per-account two-pass references");
    ok(exceptions > 100, "the stream produced exceptions (%d)", exceptions);
    is_int(edge_shard_accounts(s), seen, "one account per distinct key (%d)", seen);

    /* Lookups. */
    char key[EVENT_ACCOUNT_MAX + 1];
    int found_ok = 1;
    for (int i = 0; i < ACCOUNTS; i++) {
        key_of(i, key, sizeof key);
        const struct zwin *w = edge_shard_find(s, key);
        found_ok &= refs[i].n ? (w != NULL && w->n == refs[i].n) : w == NULL;
    }
    ok(found_ok, "edge_shard_find returns every scored account with its window length");
    key_of(3, key, sizeof key);
    is_int(strlen(key), EVENT_ACCOUNT_MAX, "long keys use the full EVENT_ACCOUNT_MAX bytes");
    ok(edge_shard_find(s, "20000") == NULL && edge_shard_find(s, "2000000") == NULL &&
           edge_shard_find(s, "nope") == NULL,
       "unknown keys, prefixes and extensions of known keys are not found");

    /* foreach + restore into a fresh shard: same windows, then the same scores. */
    struct edge_shard *copy = edge_shard_new(&p);
    struct collect c = {copy, refs, 0, 0};
    edge_shard_foreach(s, on_account, &c);
    is_int(c.visits, seen, "foreach visits every account once");
    is_int(c.mismatched, 0, "foreach passes each window oldest first with its last z");
    is_int(edge_shard_accounts(copy), seen, "the restored shard holds every account");
    int diverged = 0;
    for (long e = 0; e < 50000; e++) {
        int acct = (int)(next() % ACCOUNTS);
        key_of(acct, key, sizeof key);
        double x = amount(acct), z, mean, std;
        struct zscore_result a, b;
        edge_shard_score(s, key, x, &a);
        edge_shard_score(copy, key, x, &b);
        ref_score(&refs[acct], &p, x, &z, &mean, &std);
        diverged += !close_to(b.z, a.z) || !close_to(b.z, z) || !close_to(b.std, std) ||
                    a.exception != b.exception || a.history_len != b.history_len;
    }
    is_int(diverged, 0, "the restored shard keeps scoring like the original and the reference");

    /* restore replaces an existing window and keeps only the newest W amounts. */
    double many[W + 20];
    for (int i = 0; i < W + 20; i++)
        many[i] = i;
    edge_shard_restore(copy, "200001", many, 3, 1.5);
    const struct zwin *w1 = edge_shard_find(copy, "200001");
    ok(w1 != NULL && w1->n == 3 && w1->last_z == 1.5, "restore replaces an existing window");
    edge_shard_restore(copy, "200001", many, W + 20, 0);
    double vals[W];
    w1 = edge_shard_find(copy, "200001");
    zwin_values(w1, W, vals);
    ok(w1->n == W && vals[0] == 20 && vals[W - 1] == W + 19, "restore keeps the newest W amounts");
    is_int(edge_shard_accounts(copy), seen, "restore of a known account adds none");
    edge_shard_free(copy);
    edge_shard_free(s);
    for (int i = 0; i < ACCOUNTS; i++)
        free(refs[i].v);
    free(refs);

    /* Whole-cent amounts (the compact cents windows), accounts that turn wide mid-stream, and the
     * batch entry point: the same scores as one call per event and as the reference. */
    struct edge_shard *one = edge_shard_new(&p), *bat = edge_shard_new(&p);
    refs = calloc(ACCOUNTS, sizeof *refs);
    for (int i = 0; i < ACCOUNTS; i++)
        refs[i] = (struct ref){calloc(W, sizeof(double)), 0, W, 0};
    int cents_bad = 0;
    for (long e = 0; e < 60000; e += 20) {
        struct edge_item items[20];
        struct zscore_result ra[20], rb[20];
        char keys[20][EVENT_ACCOUNT_MAX + 1];
        for (int j = 0; j < 20; j++) {
            int acct = (int)(next() % 500);
            key_of(acct, keys[j], sizeof keys[j]);
            double x = (double)(next() % 1000000) / 100.0; /* whole cents */
            if (acct % 5 == 1 && e > 30000)
                x = exp(3 + 3 * uniform()); /* these accounts turn wide half way */
            if (acct % 13 == 2)
                x = 4242.42; /* constant cents window: std exactly 0 */
            items[j] = (struct edge_item){keys[j], x, &rb[j]};
            edge_shard_score(one, keys[j], x, &ra[j]);
            double z, mean, std;
            ref_score(&refs[acct], &p, x, &z, &mean, &std);
            cents_bad += !close_to(ra[j].z, z) || !close_to(ra[j].mean, mean) ||
                         !close_to(ra[j].std, std) || (acct % 13 == 2 && ra[j].std != 0);
        }
        edge_shard_score_batch(bat, items, 20);
        for (int j = 0; j < 20; j++)
            cents_bad +=
                ra[j].z != rb[j].z ||
                (rb[j].exception && (ra[j].mean != rb[j].mean || ra[j].std != rb[j].std)) ||
                ra[j].suspicion != rb[j].suspicion || ra[j].history_len != rb[j].history_len ||
                ra[j].exception != rb[j].exception || ra[j].immediate != rb[j].immediate;
    }
    is_int(cents_bad, 0, "cents windows, windows turning wide and batches match the reference");
    struct collect cc = {edge_shard_new(&p), refs, 0, 0};
    edge_shard_foreach(bat, on_account, &cc);
    ok(cc.visits == 500 && cc.mismatched == 0,
       "foreach gives cents and wide windows back as the amounts pushed (%d visits)", cc.visits);
    edge_shard_free(cc.dst);
    edge_shard_free(one);
    edge_shard_free(bat);
    for (int i = 0; i < ACCOUNTS; i++)
        free(refs[i].v);
    free(refs);

    /* Keys kept as numbers must not collide with their look-alikes kept as text. */
    static const char *const lookalikes[] = {
        "123", "0123", "0", "00", "123456789012345678", "1234567890123456789", "12a", "-1"};
    s = edge_shard_new(&p);
    struct zscore_result lr;
    for (int i = 0; i < 8; i++)
        for (int k = 0; k <= i; k++)
            edge_shard_score(s, lookalikes[i], 10.0 * (k + 1), &lr);
    int distinct = 1;
    for (int i = 0; i < 8; i++) {
        const struct zwin *w = edge_shard_find(s, lookalikes[i]);
        distinct &= w != NULL && w->n == (uint32_t)(i + 1);
    }
    ok(distinct && edge_shard_accounts(s) == 8,
       "\"123\", \"0123\", \"0\", \"00\", 18 and 19 digits, \"12a\", \"-1\" are 8 accounts");

    /* The batch reads numeric keys 8 bytes at a time: keys at every length around 7 digits,
     * leading zeros, digits followed by other bytes (also ':' and '/', next to the digits in
     * ASCII, and bytes >= 0x80) must land on the same accounts as one call per event does. */
    static const char *const tricky[] = {"1",        "9",        "0",         "07",       "1234567",
                                         "9999999",  "12345678", "123456789", "1234567:", "123/",
                                         "12\xff",   "\xb1",     "4",         "0000000",  "7654321",
                                         "10000000", "1000000",  "123",       "0123"};
    enum { NTRICKY = sizeof tricky / sizeof tricky[0] };
    edge_shard_free(s);
    s = edge_shard_new(&p);
    char bufs[NTRICKY][EVENT_ACCOUNT_MAX + 1];
    struct edge_item titems[2 * NTRICKY];
    struct zscore_result tres[2 * NTRICKY];
    memset(bufs, 'x', sizeof bufs); /* the bytes after each NUL are not zero */
    for (int i = 0; i < NTRICKY; i++) {
        memcpy(bufs[i], tricky[i], strlen(tricky[i]) + 1);
        titems[i] = (struct edge_item){bufs[i], 10.0, &tres[i]};
        titems[NTRICKY + i] = (struct edge_item){bufs[i], 20.0, &tres[NTRICKY + i]};
    }
    edge_shard_score_batch(s, titems, 2 * NTRICKY);
    int found = 0; /* edge_shard_find reads keys byte by byte */
    for (int i = 0; i < NTRICKY; i++) {
        const struct zwin *w = edge_shard_find(s, tricky[i]);
        found += w != NULL && w->n == 2;
    }
    ok(found == NTRICKY && edge_shard_accounts(s) == NTRICKY,
       "the batch's 8-byte key reading gives each of %d tricky keys one account (%d found)",
       NTRICKY, found);
    edge_shard_free(s);

    /* The batch's stages (EDGE_STAGE = 32 events) at and around their boundaries, repeated
     * accounts within a stage and table growth within a stage: the same as one call per event. */
    static const size_t sizes[] = {1, 2, 31, 32, 33, 64, 71, 100};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        is_int(batch_vs_calls(sizes[i], 30000), 0,
               "batches of %zu: results and windows bit-identical to one call per event", sizes[i]);

    /* Growth: 200k accounts through many doubling rehashes (small W keeps memory low). */
    struct zscore_params small = {4, 2, 2.5, 5000, 0.9};
    enum { MANY = 200000 };
    s = edge_shard_new(&small);
    struct zscore_result r;
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof key, "acct-%d", i);
        for (int k = 0; k <= i % 3; k++)
            edge_shard_score(s, key, (double)k, &r);
    }
    is_int(edge_shard_accounts(s), MANY, "200k accounts after many rehashes");
    int lost = 0;
    for (int i = 0; i < MANY; i++) {
        snprintf(key, sizeof key, "acct-%d", i);
        const struct zwin *w = edge_shard_find(s, key);
        lost += w == NULL || w->n != (uint32_t)(i % 3 + 1);
    }
    is_int(lost, 0, "every account keeps its own window across rehashes");
    struct counter cnt = {0, 0};
    edge_shard_foreach(s, on_count, &cnt);
    ok(cnt.visits == MANY && cnt.bad == 0, "foreach after growth visits all %zu accounts intact",
       cnt.visits);
    edge_shard_score(s, "acct-7", 100, &r);
    is_int(r.history_len, 3, "scoring after growth continues the account's own window");
    /* Every account once more through batches: with 200k accounts the slots' fingerprints (12
     * bits here) match a wrong record now and then, and the batch must then look further. */
    static char bkeys[32][EVENT_ACCOUNT_MAX + 1];
    struct edge_item bitems[32];
    struct zscore_result bres[32];
    int misplaced = 0;
    for (int i = 0; i < MANY; i += 32) {
        for (int j = 0; j < 32; j++) {
            snprintf(bkeys[j], sizeof bkeys[j], "acct-%d", i + j < MANY ? i + j : 8);
            bitems[j] = (struct edge_item){bkeys[j], 1, &bres[j]};
        }
        edge_shard_score_batch(s, bitems, 32);
        for (int j = 0; j < 32 && i + j < MANY; j++)
            misplaced +=
                i + j != 8 && i + j != 7 && bres[j].history_len != (uint32_t)((i + j) % 3 + 2);
    }
    is_int(misplaced, 0, "batches after growth find each of 200k accounts' own window");
    is_int(edge_shard_accounts(s), MANY, "and add none");
    edge_shard_free(s);
    edge_shard_free(NULL);
    return done_testing();
}
