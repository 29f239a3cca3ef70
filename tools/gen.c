/* aetheris-gen: a synthetic transactions CSV, seeded and reproducible (the same options give
 * byte-identical output), in the original Aetheris format, with labelled planted anomalies: the
 * input of the detection-quality report (make quality) and of the benchmarks.
 *
 * Normal traffic. Account k (ids 100000000 + k) draws its amounts from a log-normal of its own:
 * log-scale mu_k ~ N(4, 1) (medians from a few units to a few hundred) and spread sigma_k ~
 * U(0.25, 0.6), times a daily seasonality of the amounts (1 + 0.25 sin(2 pi (h - 8) / 24) at
 * hour h). Accounts are not equally busy: half the rows go to a uniformly drawn account, half to
 * floor(N u^3) (a heavy head). Time advances by exponential gaps whose mean (--mean-gap-s) is
 * divided by the daily activity 1 + 0.8 sin(2 pi (h - 9) / 24), so nights are quiet.
 *
 * Planted anomalies. A row of an account with at least GEN_WARM_ROWS rows and no episode under
 * way starts one with probability --anomaly-rate, of a kind drawn from --kinds:
 *   spike        this one amount times U(3, 10)
 *   level_shift  the account's next U{15..40} amounts times U(2, 4)
 *   drift        the next U{30..80} amounts times a factor rising linearly from 1 to U(2, 4)
 *   burst        U{8..20} small amounts (U(0.10, 2.00)) from the account, one after another
 *                1..10 s apart, nothing else in between (card testing)
 * Every row of an episode is labelled with its kind and the episode's id (1, 2, ...); other rows
 * are `none` with episode 0. The anomaly draws use a random stream of their own, so the normal
 * traffic of one seed is the same whatever the kinds (bursts aside, which take rows from it).
 *
 * Output streams as it is generated: memory is the account table (GEN_ACCOUNT_BYTES each, so
 * 1M accounts take ~32 MB) whatever the row count.
 * Exit: 0 done, 1 write error, 2 usage error. */
#include "fmacros.h"
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "xmalloc.h"

#define GEN_ACCOUNTS_MAX 1000000
#define GEN_ROWS_MAX 1000000000000ULL /* 10^12: far beyond any benchmark, keeps ids in range */
#define GEN_WARM_ROWS 30              /* a window this full scores meaningfully (window 100) */
#define GEN_ACCOUNT_BASE 100000000    /* account ids are this + index: 9 digits */
#define GEN_START_EPOCH 1704067200    /* 2024-01-01 00:00:00 UTC */
#define GEN_PI 3.14159265358979323846

enum kind { K_NONE = 0, K_SPIKE, K_LEVEL, K_DRIFT, K_BURST, K__COUNT };
static const char *const kind_names[K__COUNT] = {"none", "spike", "level_shift", "drift", "burst"};

struct account {
    float mu, sigma;  /* log-normal parameters */
    float factor;     /* level shift / drift target */
    uint32_t rows;    /* rows so far */
    uint32_t episode; /* id of the episode under way */
    uint16_t left;    /* rows of the episode still to come */
    uint16_t length;  /* rows of the episode */
    uint8_t kind;     /* enum kind under way, K_NONE when none */
};
#define GEN_ACCOUNT_BYTES sizeof(struct account)

struct rng {
    uint64_t s[4];
};

struct opts {
    uint64_t seed, first_id;
    long long rows;
    long accounts;
    double anomaly_rate, mean_gap_s;
    bool kinds[K__COUNT];
    const char *out, *labels;
};

/* ---------------------------------------------------------------- random numbers */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: fast, 2^256 - 1 period, passes BigCrush. */
static uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static double uniform(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double uniform_in(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * uniform(r);
}

/* Uniform integer in [lo, hi]. */
static long pick(struct rng *r, long lo, long hi)
{
    return lo + (long)(uniform(r) * (double)(hi - lo + 1));
}

/* Standard normal (Box-Muller, one value per call: simple and reproducible). */
static double normal(struct rng *r)
{
    double u = 1.0 - uniform(r); /* (0, 1]: log is finite */
    return sqrt(-2.0 * log(u)) * cos(2.0 * GEN_PI * uniform(r));
}

/* ---------------------------------------------------------------- options */

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: aetheris-gen [options]\n"
            "Writes a synthetic transactions CSV (the original Aetheris format) with labelled\n"
            "planted anomalies; the same options always give byte-identical output.\n\n"
            "  --seed N           random seed (default 1)\n"
            "  --rows N           data rows (default 100000)\n"
            "  --accounts N       accounts, 1..1000000 (default 1000)\n"
            "  --anomaly-rate P   probability that a row of a warm account (30+ rows, no\n"
            "                     episode under way) starts an anomaly episode (default 0.002)\n"
            "  --kinds LIST       kinds to plant: spike,level_shift,drift,burst (default all;\n"
            "                     'none' plants nothing)\n"
            "  --mean-gap-s S     mean time between rows at average activity (default 30)\n"
            "  --first-id N       first TransactionID (default 1; ids are consecutive)\n"
            "  --out FILE         the CSV (default '-' = stdout)\n"
            "  --labels FILE      labels: transaction_id,kind,episode for every row (kind none\n"
            "                     and episode 0 for normal rows)\n"
            "  --help             this help\n\n"
            "Amounts are log-normal per account (different scales), with a daily seasonality;\n"
            "episodes: spike (one amount x3..10), level_shift (15..40 amounts x2..4), drift\n"
            "(30..80 amounts rising to x2..4), burst (8..20 small amounts in a row).\n"
            "Exit status: 0 done, 1 write error, 2 usage error.\n");
}

static bool parse_u64(const char *name, const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long x = v[0] >= '0' && v[0] <= '9' ? strtoull(v, &end, 10) : 0;
    if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || x < lo || x > hi) {
        fprintf(stderr, "aetheris-gen: %s: '%s' is not an integer in %llu..%llu\n", name, v,
                (unsigned long long)lo, (unsigned long long)hi);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_real(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !(x >= lo && x <= hi)) {
        fprintf(stderr, "aetheris-gen: %s: '%s' is not a number in %g..%g\n", name, v, lo, hi);
        return false;
    }
    *out = x;
    return true;
}

static bool parse_kinds(const char *v, bool *kinds)
{
    memset(kinds, 0, K__COUNT * sizeof *kinds);
    if (strcmp(v, "none") == 0)
        return true;
    for (const char *p = v; *p;) {
        size_t n = strcspn(p, ",");
        int k = K_SPIKE;
        while (k < K__COUNT && !(strlen(kind_names[k]) == n && strncmp(p, kind_names[k], n) == 0))
            k++;
        if (k == K__COUNT || n == 0) {
            fprintf(stderr,
                    "aetheris-gen: --kinds: '%s' must list spike, level_shift, drift, burst "
                    "(or be none)\n",
                    v);
            return false;
        }
        kinds[k] = true;
        p += n;
        if (*p == ',' && *++p == '\0') {
            fprintf(stderr, "aetheris-gen: --kinds: '%s' ends with a comma\n", v);
            return false;
        }
    }
    return true;
}

static bool parse_args(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        char flag[32];
        if (strncmp(a, "--", 2) != 0 || n >= sizeof flag) {
            fprintf(stderr, "aetheris-gen: %s: unexpected argument (see --help)\n", a);
            return false;
        }
        memcpy(flag, a, n);
        flag[n] = '\0';
        if (eq)
            v = eq + 1;
        else if (i + 1 < argc)
            v = argv[++i];
        else {
            fprintf(stderr, "aetheris-gen: %s needs a value (see --help)\n", a);
            return false;
        }
        uint64_t rows = (uint64_t)o->rows, accounts = (uint64_t)o->accounts;
        bool good = true;
        if (strcmp(flag, "--seed") == 0)
            good = parse_u64(flag, v, 0, UINT64_MAX, &o->seed);
        else if (strcmp(flag, "--rows") == 0)
            good = parse_u64(flag, v, 0, GEN_ROWS_MAX, &rows);
        else if (strcmp(flag, "--accounts") == 0)
            good = parse_u64(flag, v, 1, GEN_ACCOUNTS_MAX, &accounts);
        else if (strcmp(flag, "--anomaly-rate") == 0)
            good = parse_real(flag, v, 0, 1, &o->anomaly_rate);
        else if (strcmp(flag, "--mean-gap-s") == 0)
            good = parse_real(flag, v, 0.001, 86400, &o->mean_gap_s);
        else if (strcmp(flag, "--first-id") == 0)
            good = parse_u64(flag, v, 0, UINT64_MAX / 2, &o->first_id);
        else if (strcmp(flag, "--kinds") == 0)
            good = parse_kinds(v, o->kinds);
        else if (strcmp(flag, "--out") == 0)
            o->out = v;
        else if (strcmp(flag, "--labels") == 0)
            o->labels = v;
        else {
            fprintf(stderr, "aetheris-gen: %s: unknown option (see --help)\n", flag);
            return false;
        }
        o->rows = (long long)rows;
        o->accounts = (long)accounts;
        if (!good)
            return false;
    }
    if (o->first_id > UINT64_MAX - (uint64_t)o->rows) {
        fprintf(stderr, "aetheris-gen: --first-id + --rows passes 2^64-1\n");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- generation */

struct gen {
    const struct opts *o;
    struct rng base, anom; /* normal traffic; anomaly draws */
    struct account *acct;
    enum kind enabled[K__COUNT];
    int nenabled;
    uint32_t episodes;
    long burst_account; /* -1 = no burst under way */
    double t;           /* seconds since GEN_START_EPOCH */
};

static double hour_of(double t)
{
    return fmod(t, 86400.0) / 3600.0;
}

static void accounts_init(struct gen *g)
{
    g->acct = xcalloc((size_t)g->o->accounts, sizeof *g->acct);
    for (long k = 0; k < g->o->accounts; k++) {
        g->acct[k].mu = (float)(4.0 + normal(&g->base));
        g->acct[k].sigma = (float)uniform_in(&g->base, 0.25, 0.6);
    }
}

static long pick_account(struct gen *g)
{
    double u = uniform(&g->base);
    long n = g->o->accounts;
    long k = uniform(&g->base) < 0.5 ? (long)(u * (double)n) : (long)(u * u * u * (double)n);
    return k < n ? k : n - 1;
}

/* Starts an episode on account a (no episode under way) when the dice say so. */
static void maybe_start(struct gen *g, struct account *a, long index)
{
    if (g->nenabled == 0 || a->rows < GEN_WARM_ROWS || uniform(&g->anom) >= g->o->anomaly_rate)
        return;
    enum kind k = g->enabled[pick(&g->anom, 0, g->nenabled - 1)];
    if (k == K_BURST && g->burst_account >= 0)
        return; /* one burst at a time: it owns the next rows */
    a->kind = (uint8_t)k;
    a->episode = ++g->episodes;
    switch (k) {
    case K_SPIKE:
        a->length = 1;
        a->factor = (float)uniform_in(&g->anom, 3, 10);
        break;
    case K_LEVEL:
        a->length = (uint16_t)pick(&g->anom, 15, 40);
        a->factor = (float)uniform_in(&g->anom, 2, 4);
        break;
    case K_DRIFT:
        a->length = (uint16_t)pick(&g->anom, 30, 80);
        a->factor = (float)uniform_in(&g->anom, 2, 4);
        break;
    default:
        a->length = (uint16_t)pick(&g->anom, 8, 20);
        a->factor = 0;
        g->burst_account = index;
        break;
    }
    a->left = a->length;
}

/* The amount of the next row of account a at time t, applying its episode. */
static double next_amount(struct gen *g, struct account *a)
{
    double h = hour_of(g->t);
    double season = 1.0 + 0.25 * sin(2.0 * GEN_PI * (h - 8.0) / 24.0);
    double amount = exp(a->mu + a->sigma * normal(&g->base)) * season;
    if (a->left == 0)
        return amount;
    uint16_t done = (uint16_t)(a->length - a->left); /* rows of the episode before this one */
    switch ((enum kind)a->kind) {
    case K_SPIKE:
    case K_LEVEL:
        amount *= a->factor;
        break;
    case K_DRIFT:
        amount *= 1.0 + (a->factor - 1.0) * (double)(done + 1) / (double)a->length;
        break;
    case K_BURST:
        amount = uniform_in(&g->anom, 0.10, 2.00);
        break;
    default:
        break;
    }
    return amount;
}

static void format_time(double t, char *out, size_t cap)
{
    time_t s = (time_t)GEN_START_EPOCH + (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(out, cap, "%Y-%m-%d %H:%M:%S.000000", &tm);
}

/* Writes every row; 0, or 1 on a write error. */
static int generate(struct gen *g, FILE *csv, FILE *labels)
{
    const struct opts *o = g->o;
    fputs("TransactionID,AccountOriginID,AccountDestinationID,TransactionTypeID,Amount,"
          "TransactionDate,BranchID,Description\n",
          csv);
    if (labels)
        fputs("transaction_id,kind,episode\n", labels);
    char when[40];
    for (long long i = 0; i < o->rows; i++) {
        long index;
        if (g->burst_account >= 0) {
            index = g->burst_account;
            g->t += uniform_in(&g->base, 1, 10);
        } else {
            double h = hour_of(g->t);
            double activity = 1.0 + 0.8 * sin(2.0 * GEN_PI * (h - 9.0) / 24.0);
            g->t += -log(1.0 - uniform(&g->base)) * o->mean_gap_s / activity;
            index = pick_account(g);
        }
        struct account *a = &g->acct[index];
        if (a->left == 0)
            maybe_start(g, a, index);
        double amount = next_amount(g, a);
        enum kind kind = a->left > 0 ? (enum kind)a->kind : K_NONE;
        uint32_t episode = a->left > 0 ? a->episode : 0;
        if (a->left > 0 && --a->left == 0) {
            a->kind = K_NONE;
            if (g->burst_account == index)
                g->burst_account = -1;
        }
        a->rows++;
        long dest = pick_account(g);
        if (dest == index)
            dest = (dest + 1) % o->accounts;
        format_time(g->t, when, sizeof when);
        uint64_t txid = o->first_id + (uint64_t)i;
        amount = amount < 0.01 ? 0.01 : amount;
        fprintf(csv, "%llu,%ld,%ld,%ld,%.2f,%s,%ld,Transaction %llu\n", (unsigned long long)txid,
                GEN_ACCOUNT_BASE + index, GEN_ACCOUNT_BASE + dest, pick(&g->base, 1, 4), amount,
                when, pick(&g->base, 1, 50), (unsigned long long)txid);
        if (labels)
            fprintf(labels, "%llu,%s,%u\n", (unsigned long long)txid, kind_names[kind], episode);
        if (ferror(csv) || (labels && ferror(labels)))
            return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    struct opts o = {.seed = 1,
                     .first_id = 1,
                     .rows = 100000,
                     .accounts = 1000,
                     .anomaly_rate = 0.002,
                     .mean_gap_s = 30,
                     .out = "-"};
    for (int k = K_SPIKE; k < K__COUNT; k++)
        o.kinds[k] = true;
    if (!parse_args(argc, argv, &o))
        return 2;
    struct gen g = {.o = &o, .burst_account = -1};
    rng_seed(&g.base, o.seed);
    rng_seed(&g.anom, o.seed ^ 0xA5A5A5A5DEADBEEFULL);
    for (int k = K_SPIKE; k < K__COUNT; k++)
        if (o.kinds[k])
            g.enabled[g.nenabled++] = (enum kind)k;
    FILE *csv = strcmp(o.out, "-") == 0 ? stdout : fopen(o.out, "w");
    FILE *labels = o.labels ? fopen(o.labels, "w") : NULL;
    if (csv == NULL || (o.labels && labels == NULL)) {
        fprintf(stderr, "aetheris-gen: cannot create %s: %s\n", csv ? o.labels : o.out,
                strerror(errno));
        if (csv && csv != stdout)
            fclose(csv);
        return 2;
    }
    accounts_init(&g);
    int rv = generate(&g, csv, labels);
    if (fflush(csv) != 0)
        rv = 1;
    if (csv != stdout && fclose(csv) != 0)
        rv = 1;
    if (labels && fclose(labels) != 0)
        rv = 1;
    if (rv != 0)
        fprintf(stderr, "aetheris-gen: write error: %s\n", strerror(errno));
    free(g.acct);
    return rv;
}
