/* The mad and ewma detectors (detector.h) against simple reference implementations: a table of
 * hand-computed windows (odd and even medians, the MAD = 0 fallback, constant windows, fewer
 * than min_points, alpha 0 = the population z-score), random and adversarial windows (sorted,
 * reversed, ties, organ pipe) for the selection, the thresholds and the suspicion/priority rule,
 * an edge shard fed a long stream (windows wrapping) against a plain-array reference, proof that
 * the default shard is bit-identical to zscore_update and that the stored window does not depend
 * on the detector, and detector_config from the option table. */
#include "detector.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "config.h"
#include "edge.h"
#include "tap.h"

/* ---------------------------------------------------------------- references */

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double ref_median(const double *v, uint32_t n)
{
    double *s = malloc(n * sizeof *s);
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp);
    double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    free(s);
    return m;
}

/* score, center, scale of amount against v[0..n) per the definitions in detector.h */
static void ref_mad(const double *v, uint32_t n, uint32_t min_points, double amount, double *score,
                    double *center, double *scale)
{
    *score = *center = *scale = 0;
    if (n == 0)
        return;
    double med = ref_median(v, n);
    double *d = malloc(n * sizeof *d);
    double mean_abs = 0;
    for (uint32_t i = 0; i < n; i++) {
        d[i] = fabs(v[i] - med);
        mean_abs += d[i];
    }
    mean_abs /= n;
    double mad = ref_median(d, n);
    free(d);
    *center = med;
    *scale = mad > 0 ? 1.4826 * mad : 1.2533 * mean_abs;
    if (n >= min_points && *scale > 0)
        *score = (amount - med) / *scale;
}

static void ref_ewma(const double *v, uint32_t n, uint32_t min_points, double alpha, double amount,
                     double *score, double *center, double *scale)
{
    *score = *center = *scale = 0;
    if (n == 0)
        return;
    double ws = 0, xs = 0, lo = v[0], hi = v[0];
    for (uint32_t i = 0; i < n; i++) {
        double w = pow(1 - alpha, n - 1 - i);
        ws += w;
        xs += w * v[i];
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    if (lo == hi) {
        *center = lo;
        return;
    }
    double mean = xs / ws, acc = 0;
    for (uint32_t i = 0; i < n; i++)
        acc += pow(1 - alpha, n - 1 - i) * (v[i] - mean) * (v[i] - mean);
    *center = mean;
    *scale = sqrt(acc / ws);
    if (n >= min_points && *scale > 0)
        *score = (amount - mean) / *scale;
}

static void ref_score(enum detector_kind kind, const double *v, uint32_t n, uint32_t min_points,
                      double alpha, double amount, double *score, double *center, double *scale)
{
    if (kind == DETECTOR_MAD)
        ref_mad(v, n, min_points, amount, score, center, scale);
    else
        ref_ewma(v, n, min_points, alpha, amount, score, center, scale);
}

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* ---------------------------------------------------------------- table */

struct tcase {
    const char *name;
    enum detector_kind kind;
    double alpha;
    uint32_t min_points;
    double vals[8];
    uint32_t n;
    double amount;
    double want_score, want_center, want_scale;
};

static const struct tcase cases[] = {
    {"mad odd", DETECTOR_MAD, 0, 5, {1, 2, 3, 4, 5}, 5, 10, 7 / 1.4826, 3, 1.4826},
    {"mad even", DETECTOR_MAD, 0, 4, {4, 1, 3, 2}, 4, 6, 3.5 / 1.4826, 2.5, 1.4826},
    {"mad below center", DETECTOR_MAD, 0, 5, {10, 12, 11, 13, 9}, 5, 1, -10 / 1.4826, 11, 1.4826},
    {"mad MAD=0 -> mean abs dev",
     DETECTOR_MAD,
     0,
     5,
     {5, 5, 5, 5, 9},
     5,
     9,
     4 / (1.2533 * 0.8),
     5,
     1.2533 * 0.8},
    {"mad constant window", DETECTOR_MAD, 0, 5, {7, 7, 7, 7, 7}, 5, 100, 0, 7, 0},
    {"mad below min_points", DETECTOR_MAD, 0, 5, {1, 2, 3, 4}, 4, 100, 0, 2.5, 1.4826},
    {"mad empty", DETECTOR_MAD, 0, 1, {0}, 0, 5, 0, 0, 0},
    {"ewma two values",
     DETECTOR_EWMA,
     0.5,
     2,
     {1, 2},
     2,
     3,
     2.8284271247461903,
     5.0 / 3,
     0.47140452079103168},
    {"ewma alpha 0 = z-score",
     DETECTOR_EWMA,
     0,
     4,
     {2, 4, 4, 6},
     4,
     8,
     4 / 1.4142135623730951,
     4,
     1.4142135623730951},
    {"ewma constant window", DETECTOR_EWMA, 0.2, 3, {3, 3, 3}, 3, 30, 0, 3, 0},
    {"ewma below min_points", DETECTOR_EWMA, 0.2, 5, {1, 2, 3}, 3, 30, 0, NAN, NAN},
};

static void table(void)
{
    struct zscore_params zp = {100, 0, 2.5, 5000, 0.9};
    double scratch[16];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct tcase *c = &cases[i];
        struct detector_params dp = {c->kind, 3.5, c->alpha, 3.0};
        zp.min_points = c->min_points;
        struct zscore_result r;
        detector_score(&dp, &zp, c->vals, c->n, c->amount, scratch, &r);
        is_near(r.z, c->want_score, 1e-12, "%s: score", c->name);
        if (!isnan(c->want_center)) {
            is_near(r.mean, c->want_center, 1e-12, "%s: center", c->name);
            is_near(r.std, c->want_scale, 1e-12, "%s: scale", c->name);
        }
        double thr = c->kind == DETECTOR_MAD ? 3.5 : 3.0;
        ok(r.exception == (fabs(c->want_score) > thr), "%s: exception flag", c->name);
        is_near(r.suspicion, r.exception ? zscore_suspicion(c->want_score, c->amount, 5000) : 0,
                1e-12, "%s: suspicion (exceptions only)", c->name);
        is_int(r.history_len, c->n + 1, "%s: history length", c->name);
    }
}

/* ---------------------------------------------------------------- random windows */

/* A window of n values in one of several shapes that stress the selection. */
static void fill(double *v, uint32_t n, int shape)
{
    for (uint32_t i = 0; i < n; i++) {
        switch (shape) {
        case 0:
            v[i] = 100 * exp(uniform());
            break;
        case 1:
            v[i] = i; /* sorted */
            break;
        case 2:
            v[i] = n - i; /* reversed */
            break;
        case 3:
            v[i] = floor(uniform() * 3); /* heavy ties */
            break;
        case 4:
            v[i] = i < n / 2 ? i : n - i; /* organ pipe */
            break;
        default:
            v[i] = uniform() < 0.6 ? 42 : 42 + uniform(); /* MAD = 0 most of the time */
            break;
        }
    }
}

static void random_windows(void)
{
    struct zscore_params zp = {400, 5, 2.5, 5000, 0.9};
    double v[400], scratch[800];
    int bad[2] = {0, 0}, runs = 0;
    for (int trial = 0; trial < 3000; trial++) {
        uint32_t n = 1 + (uint32_t)(uniform() * 399);
        fill(v, n, trial % 6);
        double amount = 100 * exp(2 * uniform());
        for (int k = 0; k < 2; k++) {
            struct detector_params dp = {k ? DETECTOR_EWMA : DETECTOR_MAD, 3.5, uniform() * 0.5,
                                         3.0};
            struct zscore_result r;
            double want, center, scale;
            detector_score(&dp, &zp, v, n, amount, scratch, &r);
            ref_score(dp.kind, v, n, zp.min_points, dp.ewma_alpha, amount, &want, &center, &scale);
            double tol = 1e-9 * fmax(1, fabs(want));
            if (fabs(r.z - want) > tol || fabs(r.mean - center) > 1e-9 * fmax(1, center) ||
                fabs(r.std - scale) > 1e-9 * fmax(1, scale)) {
                if (bad[k]++ < 3)
                    printf("# %s n=%u shape=%d: got %.17g/%.17g/%.17g want %.17g/%.17g/%.17g\n",
                           detector_name(dp.kind), n, trial % 6, r.z, r.mean, r.std, want, center,
                           scale);
            }
            runs++;
        }
    }
    is_int(bad[0], 0, "mad equals the reference on 3000 random and adversarial windows");
    is_int(bad[1], 0, "ewma equals the reference on 3000 random windows");
    ok(runs == 6000, "every window scored by both detectors");
}

/* ---------------------------------------------------------------- through the shard */

/* Feeds one stream to a shard with detector kind and to plain-array references; returns the
 * number of results that disagree. */
static int shard_stream(enum detector_kind kind, uint32_t window, long steps)
{
    struct zscore_params zp = {window, 5, 2.5, 5000, 0.9};
    struct detector_params dp = {kind, 3.5, 0.15, 3.0};
    struct edge_shard *s = edge_shard_new(&zp);
    edge_shard_set_detector(s, &dp);
    static const char *const accounts[3] = {"100", "200", "300"};
    double *ref[3];
    uint32_t n[3] = {0, 0, 0};
    for (int a = 0; a < 3; a++)
        ref[a] = calloc(window, sizeof(double));
    int bad = 0;
    for (long i = 0; i < steps; i++) {
        int a = (int)(uniform() * 3);
        double amount = i % 97 == 0 ? 5000 * uniform() : 50 + 10 * uniform();
        if (a == 2)
            amount = i % 5 ? 20 : 25; /* long runs of equal amounts */
        struct zscore_result r;
        edge_shard_score(s, accounts[a], amount, &r);
        double want, center, scale;
        ref_score(kind, ref[a], n[a], zp.min_points, dp.ewma_alpha, amount, &want, &center, &scale);
        bool want_exc = fabs(want) > (kind == DETECTOR_MAD ? 3.5 : 3.0);
        double want_sus = want_exc ? zscore_suspicion(want, amount, 5000) : 0;
        if (fabs(r.z - want) > 1e-9 * fmax(1, fabs(want)) || r.exception != want_exc ||
            fabs(r.suspicion - want_sus) > 1e-12 || r.immediate != (want_exc && want_sus >= 0.9) ||
            r.history_len != (n[a] < window ? n[a] + 1 : window))
            bad++;
        if (n[a] == window) {
            memmove(ref[a], ref[a] + 1, (window - 1) * sizeof(double));
            n[a]--;
        }
        ref[a][n[a]++] = amount;
        const struct zwin *w = edge_shard_find(s, accounts[a]);
        if (w == NULL || w->last_z != r.z)
            bad++;
    }
    for (int a = 0; a < 3; a++)
        free(ref[a]);
    edge_shard_free(s);
    return bad;
}

static void through_shard(void)
{
    is_int(shard_stream(DETECTOR_MAD, 10, 20000), 0, "mad shard, W=10, windows wrap");
    is_int(shard_stream(DETECTOR_MAD, 100, 20000), 0, "mad shard, W=100");
    is_int(shard_stream(DETECTOR_EWMA, 10, 20000), 0, "ewma shard, W=10");
    is_int(shard_stream(DETECTOR_EWMA, 100, 20000), 0, "ewma shard, W=100");
}

/* The default shard gives zscore_update's results bit for bit, and the windows a mad shard
 * stores are the same amounts (the storage is shared, whatever the detector). */
static void default_unchanged(void)
{
    struct zscore_params zp = {50, 5, 2.5, 5000, 0.9};
    struct detector_params mad = {DETECTOR_MAD, 3.5, 0.1, 3.0};
    struct edge_shard *def = edge_shard_new(&zp), *alt = edge_shard_new(&zp);
    edge_shard_set_detector(alt, &mad);
    double ring[50];
    struct zwin w;
    zwin_init(&w, ring);
    int diff = 0;
    for (int i = 0; i < 5000; i++) {
        double amount = i % 41 == 0 ? 9000 : 100 * exp(uniform());
        struct zscore_result a, b, c;
        edge_shard_score(def, "1", amount, &a);
        edge_shard_score(alt, "1", amount, &c);
        zscore_update(&w, &zp, amount, &b);
        diff += memcmp(&a.z, &b.z, sizeof a.z) != 0 || a.mean != b.mean || a.std != b.std ||
                a.suspicion != b.suspicion || a.exception != b.exception ||
                a.immediate != b.immediate || a.history_len != b.history_len;
    }
    is_int(diff, 0, "default shard == zscore_update, bit for bit");
    double v1[50], v2[50];
    const struct zwin *w1 = edge_shard_find(def, "1"), *w2 = edge_shard_find(alt, "1");
    zwin_values(w1, 50, v1);
    zwin_values(w2, 50, v2);
    ok(w1->n == w2->n && memcmp(v1, v2, sizeof v1) == 0, "the window is the same under mad");
    edge_shard_free(def);
    edge_shard_free(alt);
}

static void from_config(void)
{
    struct config cfg;
    char err[256];
    config_defaults(&cfg);
    struct zscore_params zp;
    struct detector_params dp;
    detector_config(&cfg, &zp, &dp);
    ok(dp.kind == DETECTOR_ZSCORE && zp.window == 100 && zp.min_points == 5 &&
           zp.z_threshold == 2.5 && zp.amount_scale == 5000 && zp.immediate_threshold == 0.9,
       "defaults: zscore with the contract's parameters");
    ok(detector_threshold(&dp, &zp) == 2.5, "zscore threshold is z_threshold");
    ok(config_set(&cfg, "detector", "mad", err, sizeof err) == 0 &&
           config_set(&cfg, "mad_threshold", "4.5", err, sizeof err) == 0,
       "detector=mad accepted");
    detector_config(&cfg, &zp, &dp);
    ok(dp.kind == DETECTOR_MAD && detector_threshold(&dp, &zp) == 4.5, "mad with its threshold");
    ok(config_set(&cfg, "detector", "ewma", err, sizeof err) == 0 &&
           config_set(&cfg, "ewma_alpha", "0.3", err, sizeof err) == 0,
       "detector=ewma accepted");
    detector_config(&cfg, &zp, &dp);
    ok(dp.kind == DETECTOR_EWMA && dp.ewma_alpha == 0.3 && detector_threshold(&dp, &zp) == 3.0,
       "ewma with its alpha and default threshold 3.0");
    ok(config_set(&cfg, "detector", "median", err, sizeof err) != 0 && strstr(err, "detector"),
       "an unknown detector is refused, naming the option: %s", err);
    ok(config_set(&cfg, "ewma_alpha", "1", err, sizeof err) != 0, "ewma_alpha 1 is refused");
    is_str(detector_name(DETECTOR_MAD), "mad", "names");
}

int main(void)
{
    table();
    random_windows();
    through_shard();
    default_unchanged();
    from_config();
    return done_testing();
}
