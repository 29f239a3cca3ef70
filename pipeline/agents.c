/* The deterministic rule agents (agents.h, DESIGN.md 3.5).
 *
 * Each role looks at its own slice of struct agent_input and nothing else, so the three votes are
 * independent opinions rather than one signal counted three times:
 *   Analyst    z (edge statistics): z >= block_z -> BLOCK; |z| >= review_z -> REVIEW (an amount
 *              far *below* the norm is unusual too, but never a BLOCK on its own); else APPROVE.
 *   Auditor    stored history: no history, too little history or no positive mean -> REVIEW
 *              (nothing to compare against); else amount / mean against the block and review
 *              ratios.
 *   Strategist kill-switch lock -> BLOCK; expected loss = suspicion * amount against the block and
 *              review losses.
 * Thresholds are inclusive ("at or above"), matching the option help in config.c. Every reason
 * states the numbers it was decided on so an operator can audit a decision without re-running it;
 * reasons are written with snprintf into the fixed VOTE_REASON_MAX buffer (truncated, never
 * overflowed). */
#include "agents.h"
#include <math.h>
#include <stdio.h>

#define RULES_SOURCE "rules"

/* Copies the seven agent thresholds out of cfg. */
void agents_thresholds_from_config(const struct config *cfg, struct agent_thresholds *out)
{
    out->analyst_block_z = cfg->analyst_block_z;
    out->analyst_review_z = cfg->analyst_review_z;
    out->auditor_block_ratio = cfg->auditor_block_ratio;
    out->auditor_review_ratio = cfg->auditor_review_ratio;
    out->auditor_min_history = cfg->auditor_min_history;
    out->strategist_block_loss = cfg->strategist_block_loss;
    out->strategist_review_loss = cfg->strategist_review_loss;
}

static void analyst_vote(const struct agent_thresholds *t, const struct agent_input *in,
                         struct vote *out)
{
    double z = in->z;
    double az = fabs(z);

    if (z >= t->analyst_block_z) {
        out->decision = ACTION_BLOCK;
        snprintf(out->reason, sizeof(out->reason),
                 "z-score %.2f is >= %.2f: extreme spike above the account's norm "
                 "(mean %.2f, std %.2f)",
                 z, t->analyst_block_z, in->mean, in->std);
    } else if (az >= t->analyst_review_z) {
        out->decision = ACTION_REVIEW;
        snprintf(out->reason, sizeof(out->reason),
                 "|z-score| %.2f is >= %.2f: amount %.2f is unusually %s the account's norm "
                 "(mean %.2f, std %.2f)",
                 az, t->analyst_review_z, in->amount, z < 0 ? "below" : "above", in->mean, in->std);
    } else if (z < 0) {
        out->decision = ACTION_APPROVE;
        snprintf(out->reason, sizeof(out->reason),
                 "z-score %.2f: amount %.2f is below norm (mean %.2f), |z| under %.2f", z,
                 in->amount, in->mean, t->analyst_review_z);
    } else {
        out->decision = ACTION_APPROVE;
        snprintf(out->reason, sizeof(out->reason),
                 "z-score %.2f is under the review level %.2f: within the account's pattern", z,
                 t->analyst_review_z);
    }
}

static void auditor_vote(const struct agent_thresholds *t, const struct agent_input *in,
                         struct vote *out)
{
    const struct store_history *h = &in->history;
    double ratio;

    if (!in->history_ok) {
        out->decision = ACTION_REVIEW;
        snprintf(out->reason, sizeof(out->reason),
                 "history unavailable: the store lookup failed, cannot verify the account");
        return;
    }
    if (h->count < (int64_t)t->auditor_min_history) {
        out->decision = ACTION_REVIEW;
        snprintf(out->reason, sizeof(out->reason),
                 "only %lld stored transactions (%d needed) to verify the account against",
                 (long long)h->count, t->auditor_min_history);
        return;
    }
    if (!isfinite(h->mean) || h->mean <= 0) {
        out->decision = ACTION_REVIEW;
        snprintf(out->reason, sizeof(out->reason),
                 "historical mean %.2f over %lld transactions gives no baseline to compare",
                 h->mean, (long long)h->count);
        return;
    }
    ratio = in->amount / h->mean;
    if (ratio >= t->auditor_block_ratio) {
        out->decision = ACTION_BLOCK;
        snprintf(out->reason, sizeof(out->reason),
                 "amount %.2f is %.2fx the historical mean %.2f over %lld transactions "
                 "(block at %.2fx)",
                 in->amount, ratio, h->mean, (long long)h->count, t->auditor_block_ratio);
    } else if (ratio >= t->auditor_review_ratio) {
        out->decision = ACTION_REVIEW;
        snprintf(out->reason, sizeof(out->reason),
                 "amount %.2f is %.2fx the historical mean %.2f over %lld transactions "
                 "(review at %.2fx)",
                 in->amount, ratio, h->mean, (long long)h->count, t->auditor_review_ratio);
    } else {
        out->decision = ACTION_APPROVE;
        snprintf(out->reason, sizeof(out->reason),
                 "amount %.2f is %.2fx the historical mean %.2f over %lld transactions, "
                 "under %.2fx",
                 in->amount, ratio, h->mean, (long long)h->count, t->auditor_review_ratio);
    }
}

static void strategist_vote(const struct agent_thresholds *t, const struct agent_input *in,
                            struct vote *out)
{
    double loss;

    if (in->account_locked) {
        out->decision = ACTION_BLOCK;
        snprintf(out->reason, sizeof(out->reason), "account is under a kill-switch lock");
        return;
    }
    loss = in->suspicion * in->amount;
    if (loss >= t->strategist_block_loss) {
        out->decision = ACTION_BLOCK;
        snprintf(out->reason, sizeof(out->reason),
                 "expected loss %.2f (suspicion %.4f x amount %.2f) is >= %.2f", loss,
                 in->suspicion, in->amount, t->strategist_block_loss);
    } else if (loss >= t->strategist_review_loss) {
        out->decision = ACTION_REVIEW;
        snprintf(out->reason, sizeof(out->reason),
                 "expected loss %.2f (suspicion %.4f x amount %.2f) is >= review level %.2f", loss,
                 in->suspicion, in->amount, t->strategist_review_loss);
    } else {
        out->decision = ACTION_APPROVE;
        snprintf(out->reason, sizeof(out->reason),
                 "expected loss %.2f (suspicion %.4f x amount %.2f) is under %.2f", loss,
                 in->suspicion, in->amount, t->strategist_review_loss);
    }
}

/* Fills *out with role's rule vote for in (source "rules"). An out-of-range role votes REVIEW,
 * so a programming error can never approve anything. */
void agents_rules_vote(enum agent_role role, const struct agent_thresholds *t,
                       const struct agent_input *in, struct vote *out)
{
    out->role = role;
    out->source = RULES_SOURCE;
    out->reason[0] = '\0';
    switch (role) {
    case ROLE_ANALYST:
        analyst_vote(t, in, out);
        return;
    case ROLE_AUDITOR:
        auditor_vote(t, in, out);
        return;
    case ROLE_STRATEGIST:
        strategist_vote(t, in, out);
        return;
    case ROLE__COUNT:
        break;
    }
    out->decision = ACTION_REVIEW;
    snprintf(out->reason, sizeof(out->reason), "unknown agent role %d", (int)role);
}
