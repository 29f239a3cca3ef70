/* Edge detectors (detector.h).
 *
 * The alternatives to the Z-score are computed from scratch over the window for every event
 * (O(W) each, no running state), so they are exact by construction, need nothing beyond the
 * window itself, and a detector can be changed across a restart without invalidating the
 * snapshot. The medians of `mad` use selection (quickselect with a median-of-three pivot, and a
 * sort once it has taken more rounds than a balanced run would: worst case O(W log W) even for
 * adversarial amounts), not a full sort. `ewma` sums from the newest amount to the oldest so the
 * weights are successive products (no pow() per amount).
 *
 * The window is always advanced by zcore_update, whatever the detector, so the stored amounts
 * and the Z-score's own bookkeeping stay identical to the default path. */
#include "detector.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "xmalloc.h"

void detector_config(const struct config *cfg, struct zscore_params *zp, struct detector_params *dp)
{
    *zp = (struct zscore_params){(uint32_t)cfg->window_size, (uint32_t)cfg->min_points,
                                 cfg->z_threshold, cfg->amount_scale, cfg->immediate_threshold};
    dp->kind = DETECTOR_ZSCORE;
    if (strcmp(cfg->detector, "mad") == 0)
        dp->kind = DETECTOR_MAD;
    else if (strcmp(cfg->detector, "ewma") == 0)
        dp->kind = DETECTOR_EWMA;
    dp->mad_threshold = cfg->mad_threshold;
    dp->ewma_alpha = cfg->ewma_alpha;
    dp->ewma_threshold = cfg->ewma_threshold;
}

const char *detector_name(enum detector_kind kind)
{
    switch (kind) {
    case DETECTOR_MAD:
        return "mad";
    case DETECTOR_EWMA:
        return "ewma";
    case DETECTOR_ZSCORE:
        break;
    }
    return "zscore";
}

double detector_threshold(const struct detector_params *dp, const struct zscore_params *zp)
{
    switch (dp->kind) {
    case DETECTOR_MAD:
        return dp->mad_threshold;
    case DETECTOR_EWMA:
        return dp->ewma_threshold;
    case DETECTOR_ZSCORE:
        break;
    }
    return zp->z_threshold;
}

void detector_init(struct detector *d, const struct detector_params *dp,
                   const struct zscore_params *zp)
{
    d->params = *dp;
    d->window = zp->window;
    d->scratch =
        dp->kind == DETECTOR_ZSCORE ? NULL : xmalloc(2 * (size_t)zp->window * sizeof(double));
}

void detector_cleanup(struct detector *d)
{
    free(d->scratch);
    d->scratch = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Selection                                                                                    */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void swap(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges a[0..n) so a[k] is the value a sorted copy has at k, nothing greater before it and
 * nothing smaller after it; returns a[k]. */
static double select_kth(double *a, uint32_t n, uint32_t k)
{
    uint32_t lo = 0, hi = n - 1, rounds = 0, limit = 8;
    for (uint32_t m = n; m > 1; m >>= 1)
        limit += 2; /* ~2 log2(n) + 8: far above what a balanced run needs */
    while (hi > lo) {
        if (++rounds > limit) { /* adversarial input: finish with a sort */
            qsort(a + lo, hi - lo + 1, sizeof *a, cmp_double);
            break;
        }
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid] < a[lo])
            swap(&a[mid], &a[lo]);
        if (a[hi] < a[lo])
            swap(&a[hi], &a[lo]);
        if (a[hi] < a[mid])
            swap(&a[hi], &a[mid]);
        double pivot = a[mid];
        uint32_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                swap(&a[i], &a[j]);
                i++;
                if (j == 0)
                    break;
                j--;
            }
        }
        /* Now a[lo..j] <= pivot <= a[i..hi], and a[j+1..i-1] == pivot. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break;
    }
    return a[k];
}

/* Median of a[0..n) (n >= 1; a is reordered): the middle value, or the mean of the two middle
 * values when n is even. */
static double median(double *a, uint32_t n)
{
    uint32_t k = n / 2;
    double upper = select_kth(a, n, k);
    if (n % 2 == 1)
        return upper;
    double lower = a[0]; /* the largest of a[0..k), all <= upper */
    for (uint32_t i = 1; i < k; i++)
        lower = a[i] > lower ? a[i] : lower;
    return (lower + upper) / 2;
}

/* ------------------------------------------------------------------------------------------ */
/* Scores                                                                                       */

/* Robust center and scale of vals[0..n) (n >= 1). */
static void mad_stats(const double *vals, uint32_t n, double *scratch, double *center,
                      double *scale)
{
    memcpy(scratch, vals, (size_t)n * sizeof *vals);
    double med = median(scratch, n);
    double sum_abs = 0;
    for (uint32_t i = 0; i < n; i++) {
        scratch[i] = fabs(vals[i] - med);
        sum_abs += scratch[i];
    }
    double mad = median(scratch, n);
    *center = med;
    *scale = mad > 0 ? DETECTOR_MAD_SCALE * mad : DETECTOR_MEANAD_SCALE * (sum_abs / n);
}

/* Exponentially weighted center and scale of vals[0..n) (n >= 1), newest weight 1. */
static void ewma_stats(const double *vals, uint32_t n, double alpha, double *center, double *scale)
{
    double keep = 1 - alpha, w = 1, wsum = 0, xsum = 0;
    double lo = vals[n - 1], hi = lo;
    for (uint32_t i = n; i-- > 0;) {
        wsum += w;
        xsum += w * vals[i];
        lo = vals[i] < lo ? vals[i] : lo;
        hi = vals[i] > hi ? vals[i] : hi;
        w *= keep;
    }
    if (lo == hi) { /* constant window: exact center, no spread */
        *center = lo;
        *scale = 0;
        return;
    }
    double mean = xsum / wsum, acc = 0;
    w = 1;
    for (uint32_t i = n; i-- > 0;) {
        double dev = vals[i] - mean;
        acc += w * dev * dev;
        w *= keep;
    }
    *center = mean;
    *scale = sqrt(acc / wsum);
}

void detector_score(const struct detector_params *dp, const struct zscore_params *zp,
                    const double *vals, uint32_t n, double amount, double *scratch,
                    struct zscore_result *out)
{
    double center = 0, scale = 0;
    if (n > 0 && dp->kind == DETECTOR_MAD)
        mad_stats(vals, n, scratch, &center, &scale);
    else if (n > 0)
        ewma_stats(vals, n, dp->ewma_alpha, &center, &scale);
    double score = (n < zp->min_points || scale == 0) ? 0 : (amount - center) / scale;
    out->z = score;
    out->mean = center;
    out->std = scale;
    out->exception = fabs(score) > detector_threshold(dp, zp);
    out->suspicion = out->exception ? zscore_suspicion(score, amount, zp->amount_scale) : 0;
    out->immediate = out->exception && out->suspicion >= zp->immediate_threshold;
    out->history_len = n < zp->window ? n + 1 : zp->window;
}

void detector_prescore(struct detector *d, const struct zcore *c, const void *ring,
                       const struct zscore_params *zp, double amount, struct zscore_result *out)
{
    zcore_values(c, ring, zp->window, d->scratch);
    detector_score(&d->params, zp, d->scratch, c->n, amount, d->scratch + d->window, out);
}
