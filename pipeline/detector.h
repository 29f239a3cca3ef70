/* Edge detectors: the scoring rule applied to an account's window. `zscore` (the default) is the
 * exact rolling Z-score of zscore.h, untouched. `mad` and `ewma` score the same window (the last
 * W amounts, before the current one is added), read through zcore_values, so they share the
 * window storage, the snapshots and the restart path with the default:
 *
 *   mad   robust score: center = median of the window, scale = 1.4826 * MAD (MAD = median of
 *         |x - median|); when MAD is 0 (more than half the window equal), scale = 1.2533 * mean
 *         of |x - median|; score = (amount - center) / scale. 1.4826 and 1.2533 make the scale
 *         a consistent estimate of the std for normal data. Exception when |score| >
 *         mad_threshold (default 3.5).
 *   ewma  exponentially weighted score over the window: the k-th newest amount (k = 0 the
 *         newest) has weight (1 - ewma_alpha)^k; center = weighted mean, scale = sqrt(weighted
 *         mean of squared deviations from it); score = (amount - center) / scale. Recent amounts
 *         count most, so the score adapts faster to a new level than the flat window.
 *         Exception when |score| > ewma_threshold (default 3.0).
 *
 * For every detector the score is 0 when the window holds fewer than min_points amounts or its
 * scale is 0 (a constant window); the result carries the score as z, the center as mean and the
 * scale as std; suspicion = zscore_suspicion(score, amount, amount_scale) and the priority rule
 * (suspicion >= immediate_threshold -> immediate) are the Z-score's. Pure functions apart from
 * struct detector's scratch buffer, which belongs to one thread (the edge worker's shard). */
#ifndef AETHERIS_DETECTOR_H
#define AETHERIS_DETECTOR_H
#include "fmacros.h"
#include <stdint.h>
#include "config.h"
#include "zscore.h"

enum detector_kind { DETECTOR_ZSCORE = 0, DETECTOR_MAD, DETECTOR_EWMA };

#define DETECTOR_MAD_SCALE 1.4826    /* 1 / Phi^-1(3/4): MAD -> std for normal data */
#define DETECTOR_MEANAD_SCALE 1.2533 /* sqrt(pi / 2): mean absolute deviation -> std */

struct detector_params {
    enum detector_kind kind;
    double mad_threshold;  /* mad: exception when |score| > this */
    double ewma_alpha;     /* ewma: weight decay per step, 0 <= alpha < 1 */
    double ewma_threshold; /* ewma: exception when |score| > this */
};

struct detector {
    struct detector_params params;
    uint32_t window;
    double *scratch; /* private: 2 * window doubles (mad, ewma), owned */
};

/* The scoring and detector parameters the daemon derives from its configuration (the one place
 * that does it: the daemon and aetheris-backtest both call this). */
void detector_config(const struct config *cfg, struct zscore_params *zp,
                     struct detector_params *dp);
/* "zscore", "mad" or "ewma". */
const char *detector_name(enum detector_kind kind);
/* The threshold |score| is compared with for this detector (z_threshold for zscore). */
double detector_threshold(const struct detector_params *dp, const struct zscore_params *zp);

/* Initializes d for windows of zp->window amounts; detector_cleanup frees it. */
void detector_init(struct detector *d, const struct detector_params *dp,
                   const struct zscore_params *zp);
void detector_cleanup(struct detector *d);
/* Scores amount with the configured mad or ewma detector against the window held by c and ring
 * (zscore.h's zcore, before the push). The caller then pushes amount with zcore_update (the
 * window update is always the Z-score's, so the stored amounts do not depend on the detector)
 * and sets c->last_z to out->z. Not used for zscore, whose score is zcore_update's own. */
void detector_prescore(struct detector *d, const struct zcore *c, const void *ring,
                       const struct zscore_params *zp, double amount, struct zscore_result *out);
/* The mad or ewma score of amount against vals[0..n) (the window, oldest first), as the file
 * comment defines it; scratch has room for n doubles. out->history_len = min(n + 1, window). */
void detector_score(const struct detector_params *dp, const struct zscore_params *zp,
                    const double *vals, uint32_t n, double amount, double *scratch,
                    struct zscore_result *out);

#endif
