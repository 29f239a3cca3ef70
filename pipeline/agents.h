/* The three deterministic rule agents (DESIGN.md 3.5), each judging from different evidence:
 *   Analyst    - the edge statistics: |z| and its direction (pattern / fraud signal).
 *   Auditor    - the account's stored history (the history-lookup tool): amount against the
 *                historical mean, and whether there is enough history to judge at all.
 *   Strategist - loss prevention: expected loss = suspicion * amount, and the account lock.
 * Thresholds come from the configuration (documented in README). Pure; thread-safe. */
#ifndef AETHERIS_AGENTS_H
#define AETHERIS_AGENTS_H
#include "fmacros.h"
#include <stdbool.h>
#include <stdint.h>
#include "config.h"
#include "store.h"
#include "vote.h"

struct agent_thresholds {
    double analyst_block_z;        /* |z| >= this (amount above the norm) -> BLOCK */
    double analyst_review_z;       /* |z| >= this -> REVIEW */
    double auditor_block_ratio;    /* amount / history mean >= this -> BLOCK */
    double auditor_review_ratio;   /* >= this -> REVIEW */
    int auditor_min_history;       /* fewer stored transactions -> REVIEW */
    double strategist_block_loss;  /* expected loss >= this -> BLOCK */
    double strategist_review_loss; /* >= this -> REVIEW */
};

struct agent_input { /* everything the agents may look at for one exception */
    uint64_t txid;
    const char *account;
    double amount;
    double z;
    double mean;
    double std;
    double suspicion;
    bool immediate;
    bool history_ok;              /* false when the store lookup failed */
    struct store_history history; /* Auditor evidence */
    bool account_locked;          /* Strategist evidence (kill-switch key present) */
};

/* Copies the agent thresholds out of the configuration. */
void agents_thresholds_from_config(const struct config *cfg, struct agent_thresholds *out);
/* The rule vote of one role for one exception (source "rules"). */
void agents_rules_vote(enum agent_role role, const struct agent_thresholds *t,
                       const struct agent_input *in, struct vote *out);

#endif
