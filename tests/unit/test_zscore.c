/* Scoring against an independent two-pass reference (DESIGN.md 3.2): random and adversarial
 * windows (W = 2, 5, 100, 1000, wrapping around many times), constant windows and constant runs
 * broken by spikes, min_points and threshold boundaries, suspicion rounding (half away from zero)
 * and saturation, the immediate boundary, whole-cent windows (exact integer sums) and their turn
 * to doubles, and snapshot round trips (zwin_values/zwin_load)
 * continuing like a never-serialized twin. The edge shard has its own test (test_edge.c). */
#include "zscore.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "tap.h"

/* Reference: a plain array of the last W amounts, two-pass population mean/std. */
struct ref {
    double *v;
    uint32_t n, w;
};

static void ref_score(struct ref *r, const struct zscore_params *p, double amount, double *z,
                      double *mean, double *std)
{
    *z = *mean = *std = 0;
    if (r->n > 0) {
        double s = 0, lo = r->v[0], hi = r->v[0];
        for (uint32_t i = 0; i < r->n; i++) {
            s += r->v[i];
            lo = fmin(lo, r->v[i]);
            hi = fmax(hi, r->v[i]);
        }
        *mean = s / r->n;
        double acc = 0;
        for (uint32_t i = 0; i < r->n; i++)
            acc += (r->v[i] - *mean) * (r->v[i] - *mean);
        *std = lo == hi ? 0 : sqrt(acc / r->n);
    }
    if (r->n >= p->min_points && *std > 0)
        *z = (amount - *mean) / *std;
    if (r->n == r->w) {
        memmove(r->v, r->v + 1, (r->w - 1) * sizeof *r->v);
        r->n--;
    }
    r->v[r->n++] = amount;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* Feeds gen(i) through both implementations; returns the number of disagreements. */
static int run(uint32_t window, long steps, double (*gen)(long))
{
    struct zscore_params p = {window, 5, 2.5, 5000, 0.9};
    double *ring = calloc(window, sizeof *ring);
    struct ref r = {calloc(window, sizeof(double)), 0, window};
    struct zwin w;
    zwin_init(&w, ring);
    int bad = 0;
    for (long i = 0; i < steps; i++) {
        double x = gen(i), z, mean, std;
        struct zscore_result res;
        zscore_update(&w, &p, x, &res);
        ref_score(&r, &p, x, &z, &mean, &std);
        double zs = fmax(1, fabs(z)), ms = fmax(1, fabs(mean)), ss = fmax(1, fabs(std));
        if (fabs(res.z - z) > 1e-9 * zs || fabs(res.mean - mean) > 1e-9 * ms ||
            fabs(res.std - std) > 1e-9 * ss || res.history_len != r.n) {
            if (bad++ < 3)
                printf("# step %ld x=%.17g: z %.17g vs %.17g, mean %.17g vs %.17g, std %.17g vs "
                       "%.17g\n",
                       i, x, res.z, z, res.mean, mean, res.std, std);
        }
    }
    free(ring);
    free(r.v);
    return bad;
}

static double g_uniform(long i)
{
    (void)i;
    return uniform() * 5000;
}
static double g_lognormal(long i)
{
    (void)i;
    return exp(4 + 2 * (uniform() + uniform() + uniform() - 1.5));
}
static double g_huge(long i)
{
    (void)i;
    return 1e12 + uniform() * 1e-2;
}
static double g_tiny(long i)
{
    (void)i;
    return 1e-9 * uniform();
}
static double g_constant(long i)
{
    (void)i;
    return 855.17;
}
static double g_alternating(long i)
{
    return (i % 2) ? 1e9 : 1e-3;
}
static double g_spike(long i)
{
    return i % 97 == 0 ? 1e7 : 100.0 + (i % 3);
}
static double g_const_spike(long i)
{
    return i % 250 == 249 ? 1e6 : 855.17; /* constant runs: std exactly 0, then a spike */
}
static double g_levels(long i)
{
    return (double)((i / 500) % 4) * 1e6 + uniform(); /* level shifts: re-conditioning */
}

static double g_cents_then_wide(long i)
{
    /* whole cents (exact integer sums), then one amount that is not: the window turns wide */
    return i < 3333 ? (double)(long)(uniform() * 500000) / 100.0 : uniform() * 5000;
}
static double g_big_cents(long i)
{
    /* whole cents around the cents limit (~4.3e6 for W = 100): some windows turn wide */
    return (double)(430000000 + (i % 7) * 100 - 300) / 100.0;
}

int main(void)
{
    static const uint32_t windows[] = {2, 5, 100, 1000};
    for (size_t k = 0; k < 4; k++) {
        uint32_t W = windows[k];
        is_int(run(W, 200000, g_uniform), 0, "W=%u uniform amounts match two-pass", W);
        is_int(run(W, 50000, g_lognormal), 0, "W=%u log-normal amounts match two-pass", W);
        is_int(run(W, 50000, g_huge), 0, "W=%u huge magnitudes (1e12 + noise) match", W);
        is_int(run(W, 50000, g_tiny), 0, "W=%u tiny magnitudes match", W);
        is_int(run(W, 5000, g_constant), 0, "W=%u constant window (std 0) matches", W);
        is_int(run(W, 50000, g_alternating), 0, "W=%u alternating extremes match", W);
        is_int(run(W, 50000, g_spike), 0, "W=%u spikes after flat runs match", W);
        is_int(run(W, 50000, g_const_spike), 0, "W=%u constant runs broken by spikes match", W);
        is_int(run(W, 50000, g_levels), 0, "W=%u level shifts match", W);
        is_int(run(W, 20000, g_cents_then_wide), 0, "W=%u cents windows turning wide match", W);
        is_int(run(W, 20000, g_big_cents), 0, "W=%u cents near the cents limit match", W);
    }

    /* Constant window: std exactly 0 so z exactly 0, however the mean rounds. */
    struct zscore_params p = {100, 5, 2.5, 5000, 0.9};
    double ring[100];
    struct zwin w;
    struct zscore_result r;
    zwin_init(&w, ring);
    for (int i = 0; i < 10; i++)
        zscore_update(&w, &p, 0.1, &r);
    zscore_update(&w, &p, 5000, &r);
    ok(r.z == 0 && r.std == 0 && !r.exception, "constant window gives z = 0 (no exception)");
    ok(r.mean == 0.1, "a constant window's mean is the amount exactly (%.17g)", r.mean);
    zscore_update(&w, &p, 0.1, &r);
    ok(r.std > 0 && r.z < 0 && r.history_len == 12, "the spike makes the window vary (z %.3f)",
       r.z);
    /* A window that becomes constant when its last different amount is evicted: W = 3. */
    struct zscore_params p3 = {3, 2, 2.5, 5000, 0.9};
    double ring3[3];
    zwin_init(&w, ring3);
    static const double seq[] = {1, 2, 2, 2};
    for (int i = 0; i < 4; i++)
        zscore_update(&w, &p3, seq[i], &r);
    ok(r.std > 0, "window {1, 2, 2} varies");
    zscore_update(&w, &p3, 3, &r);
    ok(r.z == 0 && r.std == 0 && r.mean == 2, "after eviction {2, 2, 2} is constant: z = 0");
    zscore_update(&w, &p3, 2, &r);
    ok(r.std > 0 && r.z < 0, "{2, 2, 3} varies again (z %.3f)", r.z);

    /* min_points boundary: with 4 amounts z = 0; with 5 it is computed. */
    zwin_init(&w, ring);
    double first[5] = {10, 12, 10, 12, 10};
    for (int i = 0; i < 4; i++)
        zscore_update(&w, &p, first[i], &r);
    zscore_update(&w, &p, 1000, &r);
    ok(r.z == 0 && r.history_len == 5, "fewer than min_points amounts: z = 0");
    zwin_init(&w, ring);
    for (int i = 0; i < 5; i++)
        zscore_update(&w, &p, first[i], &r);
    zscore_update(&w, &p, 1000, &r);
    ok(r.z > 2.5 && r.exception, "min_points amounts: z computed (%.3f)", r.z);
    is_int(r.history_len, 6, "history length counts the new amount");

    /* Threshold equality is not an exception: window {0, 2} x 3: mean 1, std 1. */
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 2 : 0, &r);
    zscore_update(&w, &p, 3.5, &r);
    ok(r.z == 2.5 && !r.exception, "|z| exactly at the threshold is not an exception");
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 2 : 0, &r);
    zscore_update(&w, &p, 3.5000001, &r);
    ok(r.exception, "just above the threshold is an exception");
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 2 : 0, &r);
    zscore_update(&w, &p, -1.6, &r);
    ok(r.exception && r.z < 0, "a negative z beyond the threshold is an exception too");

    /* Suspicion: formula, rounding to 4 decimals, saturation, priority boundary. */
    is_near(zscore_suspicion(3, 2500, 5000), 0.5, 1e-15, "suspicion 0.7*0.5 + 0.3*0.5 = 0.5");
    is_near(zscore_suspicion(-12, 1e9, 5000), 1.0, 1e-15, "suspicion saturates at 1");
    is_near(zscore_suspicion(2.6, 1234.5678, 5000), 0.3774, 1e-15,
            "suspicion rounds to 4 decimals (0.37740741 -> 0.3774)");
    is_near(zscore_suspicion(6 * 0.5 / 0.7 * 0.12345, 0, 5000), 0.0617, 1e-15,
            "suspicion rounds to nearest at the 4th decimal (0.061725 -> 0.0617)");
    /* 0.3 * 7.5 / 5000 * 10000 is exactly 4.5 in binary: away from zero gives 5, even gives 4 */
    is_near(zscore_suspicion(0, 7.5, 5000), 0.0005, 1e-15, "half-way 4.5e-4 rounds up to 5e-4");
    is_near(zscore_suspicion(0, 17.5, 5000), 0.0011, 1e-15, "half-way 10.5e-4 rounds up to 11e-4");
    is_near(zscore_suspicion(-0.021, 0, 5000), 0.0025, 1e-15,
            "half-way 24.5e-4 from |z| rounds up");
    is_near(zscore_suspicion(6, 0, 5000), 0.7, 1e-15, "|z| = 6 saturates the z term");
    is_near(zscore_suspicion(600, 5000, 5000), 1.0, 1e-15, "amount = scale saturates its term");
    is_near(zscore_suspicion(0, 0, 5000), 0.0, 1e-15, "nothing suspicious: 0");
    /* Immediate: suspicion >= 0.9. z = 6 and amount 3333.33 -> 0.7 + 0.2 = 0.9. */
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 3333.33 - 5 : 3333.33 - 7, &r); /* mean m, std 1 */
    zscore_update(&w, &p, 3333.33 - 6 + 6, &r);
    ok(r.exception && r.suspicion >= 0.9 && r.immediate, "suspicion >= 0.9 is immediate (%.4f)",
       r.suspicion);
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 102 : 100, &r);
    zscore_update(&w, &p, 104, &r); /* z = 3, amount tiny: suspicion 0.35 */
    ok(r.exception && !r.immediate, "an exception below 0.9 is batch (%.4f)", r.suspicion);
    zscore_update(&w, &p, 101, &r); /* z well inside the threshold, amount 101 */
    ok(!r.exception && r.suspicion == 0 && zscore_suspicion(r.z, 101, 5000) > 0,
       "a score that is not an exception carries no suspicion (zscore_suspicion has it)");
    /* |z| saturated (mean 100, std 1): suspicion = 0.7 + 0.3 * amount / 5000, rounded. */
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 101 : 99, &r);
    zscore_update(&w, &p, 3333, &r); /* 0.89998 -> 0.9 */
    ok(r.exception && r.suspicion == 0.9 && r.immediate, "suspicion rounded to 0.9 is immediate");
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 101 : 99, &r);
    zscore_update(&w, &p, 3332, &r); /* 0.89992 -> 0.8999 */
    ok(r.exception && r.suspicion == 0.8999 && !r.immediate, "suspicion 0.8999 is batch");
    zwin_init(&w, ring);
    for (int i = 0; i < 6; i++)
        zscore_update(&w, &p, i % 2 ? 101 : 99, &r);
    zscore_update(&w, &p, 100, &r);
    ok(r.z == 0 && !r.exception && !r.immediate, "an amount at the mean: z = 0, no exception");

    /* Snapshot round trip: a restored window keeps scoring exactly like the original. */
    double ra[100], rb[100], vals[100];
    struct zwin a, b;
    zwin_init(&a, ra);
    zwin_init(&b, rb);
    for (int i = 0; i < 1234; i++)
        zscore_update(&a, &p, uniform() * 1000, &r);
    zwin_values(&a, 100, vals);
    zwin_load(&b, 100, vals, a.n, a.last_z);
    ok(b.n == a.n && b.last_z == a.last_z, "zwin_load restores the length and last z");
    int diff = 0;
    for (int i = 0; i < 5000; i++) {
        struct zscore_result x, y;
        double amt = i % 500 == 7 ? 1e6 : uniform() * 1000; /* spikes force re-summations */
        zscore_update(&a, &p, amt, &x);
        zscore_update(&b, &p, amt, &y);
        diff += fabs(x.z - y.z) > 1e-9 * fmax(1, fabs(x.z)) ||
                fabs(x.mean - y.mean) > 1e-9 * fmax(1, fabs(x.mean)) ||
                fabs(x.std - y.std) > 1e-9 * fmax(1, fabs(x.std)) || x.exception != y.exception ||
                x.immediate != y.immediate || fabs(x.suspicion - y.suspicion) > 1.5e-4 ||
                x.history_len != y.history_len;
    }
    is_int(diff, 0, "a window restored from its values scores like its never-serialized twin");
    zwin_init(&a, ra);
    double many[150];
    for (int i = 0; i < 150; i++)
        many[i] = i;
    zwin_load(&a, 100, many, 150, 0);
    zwin_values(&a, 100, vals);
    ok(a.n == 100 && vals[0] == 50 && vals[99] == 149, "zwin_load keeps the newest W amounts");

    /* A constant window survives the round trip as constant (exact mean, std 0). */
    struct zscore_result x0;
    zwin_init(&a, ra);
    for (int i = 0; i < 150; i++)
        zscore_update(&a, &p, 42.42, &r);
    zwin_values(&a, 100, vals);
    zwin_load(&b, 100, vals, a.n, a.last_z);
    zscore_update(&a, &p, 42.42, &x0);
    zscore_update(&b, &p, 42.42, &r);
    ok(r.std == 0 && r.mean == 42.42 && r.z == 0 && x0.std == 0,
       "a restored constant window is still constant");
    zwin_load(&b, 100, NULL, 0, 0);
    zscore_update(&b, &p, 7, &r);
    ok(r.mean == 0 && r.std == 0 && r.history_len == 1, "loading nothing empties the window");

    /* zwin_exact_stats is the two-pass reference, oldest first, after many wrap-arounds. */
    struct zwin e;
    double re[5];
    struct zscore_params p5 = {5, 5, 2.5, 5000, 0.9};
    struct ref rr = {calloc(5, sizeof(double)), 0, 5};
    zwin_init(&e, re);
    for (int i = 0; i < 1003; i++) {
        double amt = uniform() * 100, z, mean, std;
        zscore_update(&e, &p5, amt, &r);
        ref_score(&rr, &p5, amt, &z, &mean, &std);
    }
    double em, es, rm = 0, rs = 0;
    zwin_exact_stats(&e, 5, &em, &es);
    for (int i = 0; i < 5; i++)
        rm += rr.v[i];
    rm /= 5;
    for (int i = 0; i < 5; i++)
        rs += (rr.v[i] - rm) * (rr.v[i] - rm);
    rs = sqrt(rs / 5);
    ok(em == rm && es == rs, "zwin_exact_stats equals a two-pass over the values, oldest first");
    free(rr.v);

    /* zcents_finish_many (two scores per SIMD square root and division on x86-64) against
     * zcents_finish_many one score at a time (the scalar code) and against zcore_update on a twin
     * window: bit for bit, at every count around the pairs (an odd tail goes scalar), with empty
     * windows (0 / 0 masked), windows below min_points, constant windows (root 0), amounts at the
     * cents limit (n S2 - S1^2 above 2^64) and exceptions (mean and std filled). */
    enum { NWIN = 37 };
    struct zscore_params pm = {100, 5, 2.5, 5000, 0.9};
    uint64_t cmax = zscore_cents_max(pm.window);
    static uint32_t rings[NWIN][100], twin_rings[NWIN][200];
    struct zcore cores[NWIN], twins[NWIN];
    struct zcents_score sc[NWIN];
    struct zscore_result got[NWIN], one[NWIN], full[NWIN], *outs[NWIN];
    double zs[NWIN];
    int simd_bad = 0, pushed = 0, exceptions = 0;
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < NWIN; i++) {
            zcore_init(&cores[i]);
            zcore_init(&twins[i]);
            int fill = i % 7 == 0 ? 0 : (int)((uint64_t)(uniform() * 150)); /* some full */
            for (int k = 0; k <= fill; k++) {
                double amt = i % 11 == 3 ? 12.34 /* constant */
                             : i % 5 == 4
                                 ? (double)(k % 2 ? cmax : (uint64_t)(uniform() * 9)) / 100.0
                             : k == fill ? (double)(uint64_t)(uniform() * 9e6) / 100.0 /* spikes */
                                         : (double)(uint64_t)(uniform() * 1e5) / 100.0;
                if (k < fill) {
                    struct zcents_score skip;
                    pushed += zcore_push_cents(&cores[i], rings[i], 100, cmax, amt, &skip);
                    zcore_update(&twins[i], twin_rings[i], &pm, cmax, amt, &full[i]);
                } else {
                    pushed += zcore_push_cents(&cores[i], rings[i], 100, cmax, amt, &sc[i]);
                    zcore_update(&twins[i], twin_rings[i], &pm, cmax, amt, &full[i]);
                }
            }
            outs[i] = &got[i];
        }
        static const size_t counts[] = {0, 1, 2, 3, 4, 7, 31, 32, NWIN};
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            memset(got, 0xA5, sizeof got);
            zcents_finish_many(sc, counts[c], &pm, outs, zs);
            for (size_t i = 0; i < counts[c]; i++) {
                exceptions += got[i].exception;
                double z1;
                struct zscore_result *one_out = &one[i];
                zcents_finish_many(&sc[i], 1, &pm, &one_out, &z1);
                simd_bad +=
                    memcmp(&zs[i], &z1, sizeof z1) != 0 ||
                    memcmp(&got[i].z, &one[i].z, sizeof z1) != 0 ||
                    memcmp(&got[i].z, &full[i].z, sizeof z1) != 0 || got[i].mean != one[i].mean ||
                    got[i].std != one[i].std || got[i].suspicion != one[i].suspicion ||
                    got[i].history_len != one[i].history_len ||
                    got[i].exception != one[i].exception || got[i].immediate != one[i].immediate ||
                    (got[i].exception &&
                     (got[i].mean != full[i].mean || got[i].std != full[i].std));
            }
        }
    }
    ok(simd_bad == 0 && pushed > 0 && exceptions > 0,
       "zcents_finish_many is bit-identical one at a time and to zcore_update (%d bad, %d "
       "exceptions)",
       simd_bad, exceptions);
    return done_testing();
}
