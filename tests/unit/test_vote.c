/* Unit tests for pipeline/vote.c and pipeline/agents.c: names and parsing, the full 27-case
 * consensus truth table against an independent count-based reference, the reason texts, and for
 * each rule agent its thresholds (at and just below), reason texts, and independence from the
 * evidence of the other roles. */
#include "vote.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "agents.h"
#include "config.h"
#include "tap.h"

/* ---------------------------------------------------------------------------------------------
 * vote.c
 * ------------------------------------------------------------------------------------------- */

static void test_names(void)
{
    ok(strcmp(action_name(ACTION_APPROVE), "APPROVE") == 0, "action_name APPROVE");
    ok(strcmp(action_name(ACTION_REVIEW), "REVIEW") == 0, "action_name REVIEW");
    ok(strcmp(action_name(ACTION_BLOCK), "BLOCK") == 0, "action_name BLOCK");
    ok(strcmp(role_name(ROLE_ANALYST), "Analyst") == 0, "role_name Analyst");
    ok(strcmp(role_name(ROLE_AUDITOR), "Auditor") == 0, "role_name Auditor");
    ok(strcmp(role_name(ROLE_STRATEGIST), "Strategist") == 0, "role_name Strategist");
    is_int(action_parse("APPROVE"), ACTION_APPROVE, "parse APPROVE");
    is_int(action_parse("REVIEW"), ACTION_REVIEW, "parse REVIEW");
    is_int(action_parse("BLOCK"), ACTION_BLOCK, "parse BLOCK");
    is_int(action_parse("block"), -1, "parse is case-sensitive");
    is_int(action_parse("Block"), -1, "parse refuses mixed case");
    is_int(action_parse("BLOCK "), -1, "parse refuses trailing space");
    is_int(action_parse(" BLOCK"), -1, "parse refuses leading space");
    is_int(action_parse("BLOCKED"), -1, "parse refuses a longer word");
    is_int(action_parse("BLO"), -1, "parse refuses a prefix");
    is_int(action_parse(""), -1, "parse refuses empty");
    is_int(action_parse(NULL), -1, "parse refuses NULL");
}

/* Reference consensus written independently: tally all three actions, then apply the rule. */
static enum action reference_consensus(const int d[3])
{
    int tally[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++)
        tally[d[i]]++;
    if (tally[ACTION_BLOCK] > 1)
        return ACTION_BLOCK;
    if (tally[ACTION_APPROVE] > 1)
        return ACTION_APPROVE;
    return ACTION_REVIEW;
}

static void test_truth_table(void)
{
    int mismatches = 0;
    int reason_bad = 0;
    int cases = 0;
    int seen[3] = {0, 0, 0};

    for (int i = 0; i < 27; i++) {
        int d[3] = {i % 3, (i / 3) % 3, i / 9};
        struct vote v[ROLE__COUNT];
        enum action got;
        enum action want = reference_consensus(d);
        char reason[128];
        char expect[128];
        int agree = 0;

        memset(v, 0, sizeof(v));
        for (int r = 0; r < 3; r++) {
            v[r].role = (enum agent_role)r;
            v[r].decision = (enum action)d[r];
            v[r].source = "rules";
            agree += d[r] == (int)want;
        }
        got = vote_consensus(v);
        if (got != want) {
            mismatches++;
            printf("#   votes %d%d%d: got %d want %d\n", d[0], d[1], d[2], got, want);
        }
        vote_reason(v, got, reason, sizeof(reason));
        if (agree >= 2)
            snprintf(expect, sizeof(expect), "2/3 consensus reached for %s",
                     want == ACTION_BLOCK     ? "BLOCK"
                     : want == ACTION_APPROVE ? "APPROVE"
                                              : "REVIEW");
        else
            snprintf(expect, sizeof(expect), "no 2/3 consensus: REVIEW");
        if (strcmp(reason, expect) != 0) {
            reason_bad++;
            printf("#   votes %d%d%d: reason \"%s\" want \"%s\"\n", d[0], d[1], d[2], reason,
                   expect);
        }
        seen[want]++;
        cases++;
    }
    is_int(cases, 27, "all 27 vote combinations visited");
    is_int(mismatches, 0, "vote_consensus matches the count-based reference on all 27");
    is_int(reason_bad, 0, "vote_reason text matches on all 27");
    /* BLOCK: 7 combos with >= 2 BLOCK; APPROVE: 7 with >= 2 APPROVE; REVIEW: the other 13 */
    ok(seen[ACTION_BLOCK] == 7 && seen[ACTION_APPROVE] == 7 && seen[ACTION_REVIEW] == 13,
       "outcome counts 7 BLOCK / 7 APPROVE / 13 REVIEW (%d/%d/%d)", seen[ACTION_BLOCK],
       seen[ACTION_APPROVE], seen[ACTION_REVIEW]);
}

static void set_votes(struct vote v[ROLE__COUNT], enum action a, enum action b, enum action c)
{
    memset(v, 0, sizeof(struct vote) * ROLE__COUNT);
    v[0].decision = a;
    v[1].decision = b;
    v[2].decision = c;
}

static void test_reasons(void)
{
    struct vote v[ROLE__COUNT];
    char out[64];

    set_votes(v, ACTION_BLOCK, ACTION_BLOCK, ACTION_APPROVE);
    vote_reason(v, vote_consensus(v), out, sizeof(out));
    ok(strcmp(out, "2/3 consensus reached for BLOCK") == 0, "BLOCK,BLOCK,APPROVE: %s", out);
    set_votes(v, ACTION_BLOCK, ACTION_BLOCK, ACTION_BLOCK);
    vote_reason(v, vote_consensus(v), out, sizeof(out));
    ok(strcmp(out, "2/3 consensus reached for BLOCK") == 0, "unanimous keeps the 2/3 text");
    set_votes(v, ACTION_APPROVE, ACTION_REVIEW, ACTION_APPROVE);
    vote_reason(v, vote_consensus(v), out, sizeof(out));
    ok(strcmp(out, "2/3 consensus reached for APPROVE") == 0, "APPROVE,REVIEW,APPROVE: %s", out);
    set_votes(v, ACTION_REVIEW, ACTION_BLOCK, ACTION_REVIEW);
    vote_reason(v, vote_consensus(v), out, sizeof(out));
    ok(strcmp(out, "2/3 consensus reached for REVIEW") == 0, "two REVIEWs: %s", out);
    set_votes(v, ACTION_APPROVE, ACTION_REVIEW, ACTION_BLOCK);
    is_int(vote_consensus(v), ACTION_REVIEW, "one of each -> REVIEW");
    vote_reason(v, vote_consensus(v), out, sizeof(out));
    ok(strcmp(out, "no 2/3 consensus: REVIEW") == 0, "one of each: %s", out);
    set_votes(v, ACTION_BLOCK, ACTION_BLOCK, ACTION_APPROVE);
    vote_reason(v, ACTION_BLOCK, out, 10);
    ok(strcmp(out, "2/3 conse") == 0, "reason truncated to its buffer");
    out[0] = 'x';
    vote_reason(v, ACTION_BLOCK, out, 0);
    ok(out[0] == 'x', "outlen 0 writes nothing");
}

/* ---------------------------------------------------------------------------------------------
 * agents.c
 * ------------------------------------------------------------------------------------------- */

static const struct agent_thresholds T = {
    .analyst_block_z = 4.0,
    .analyst_review_z = 3.0,
    .auditor_block_ratio = 5.0,
    .auditor_review_ratio = 2.0,
    .auditor_min_history = 10,
    .strategist_block_loss = 2000.0,
    .strategist_review_loss = 500.0,
};

static struct agent_input base_input(void)
{
    struct agent_input in;
    memset(&in, 0, sizeof(in));
    in.txid = 3029455;
    in.account = "200430";
    in.amount = 100.0;
    in.z = 1.0;
    in.mean = 90.0;
    in.std = 10.0;
    in.suspicion = 0.5;
    in.history_ok = true;
    in.history.count = 50;
    in.history.mean = 100.0;
    in.history.max = 150.0;
    return in;
}

static enum action run(enum agent_role role, const struct agent_input *in, struct vote *v)
{
    memset(v, 0x55, sizeof(*v)); /* garbage: the agent must fill everything it owns */
    agents_rules_vote(role, &T, in, v);
    return v->decision;
}

static int reason_ok(const struct vote *v)
{
    size_t n = strnlen(v->reason, sizeof(v->reason));
    return n > 0 && n <= VOTE_REASON_MAX && v->source != NULL && strcmp(v->source, "rules") == 0;
}

static void check(enum agent_role role, const struct agent_input *in, enum action want,
                  const char *needle, const char *what)
{
    struct vote v;
    enum action got = run(role, in, &v);

    ok(got == want && reason_ok(&v) && v.role == role &&
           (needle == NULL || strstr(v.reason, needle) != NULL),
       "%s %s: %s (want %s) \"%s\"", role_name(role), what, action_name(got), action_name(want),
       v.reason);
}

static void test_analyst(void)
{
    struct agent_input in = base_input();
    struct vote v;

    in.z = 4.0;
    check(ROLE_ANALYST, &in, ACTION_BLOCK, "is >= 4.00", "z exactly at block");
    in.z = 4.31;
    check(ROLE_ANALYST, &in, ACTION_BLOCK, "z-score 4.31 is >= 4.00", "z 4.31");
    in.z = nextafter(4.0, 0);
    check(ROLE_ANALYST, &in, ACTION_REVIEW, NULL, "z just below block");
    in.z = 3.0;
    check(ROLE_ANALYST, &in, ACTION_REVIEW, "3.00", "z exactly at review");
    in.z = nextafter(3.0, 0);
    check(ROLE_ANALYST, &in, ACTION_APPROVE, NULL, "z just below review");
    in.z = 0;
    check(ROLE_ANALYST, &in, ACTION_APPROVE, NULL, "z 0");
    in.z = -3.0;
    check(ROLE_ANALYST, &in, ACTION_REVIEW, "below", "z -3 (|z| at review)");
    in.z = -9.0;
    check(ROLE_ANALYST, &in, ACTION_REVIEW, "below", "z -9 never blocks (below the norm)");
    in.z = -2.99;
    check(ROLE_ANALYST, &in, ACTION_APPROVE, "below norm", "z -2.99");

    /* independence: history, lock, suspicion and amount do not move the Analyst */
    in = base_input();
    in.z = 3.5;
    run(ROLE_ANALYST, &in, &v);
    {
        struct vote w;
        struct agent_input o = in;
        o.history_ok = false;
        o.history.count = 0;
        o.history.mean = 0;
        o.account_locked = true;
        o.suspicion = 1.0;
        o.immediate = true;
        o.amount = 1e9;
        run(ROLE_ANALYST, &o, &w);
        ok(w.decision == v.decision && w.decision == ACTION_REVIEW,
           "Analyst ignores history, lock, suspicion and amount");
    }
}

static void test_auditor(void)
{
    struct agent_input in = base_input();
    struct vote v;

    in.history_ok = false;
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, "history unavailable", "store lookup failed");
    in = base_input();
    in.history.count = 9;
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, "only 9 stored transactions", "count just below min");
    in.history.count = 10;
    in.amount = 100.0;
    check(ROLE_AUDITOR, &in, ACTION_APPROVE, NULL, "count exactly at min, ratio 1");
    in.history.count = 0;
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, "only 0", "no history");
    in = base_input();
    in.history.mean = 0;
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, NULL, "history mean 0");
    in.history.mean = -5;
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, NULL, "history mean negative");
    in.history.mean = NAN;
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, NULL, "history mean NaN");

    in = base_input();
    in.amount = 500.0; /* ratio exactly 5 */
    check(ROLE_AUDITOR, &in, ACTION_BLOCK, "5.00x", "ratio exactly at block");
    in.amount = nextafter(500.0, 0);
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, NULL, "ratio just below block");
    in.amount = 200.0; /* ratio exactly 2 */
    check(ROLE_AUDITOR, &in, ACTION_REVIEW, "2.00x", "ratio exactly at review");
    in.amount = nextafter(200.0, 0);
    check(ROLE_AUDITOR, &in, ACTION_APPROVE, NULL, "ratio just below review");
    in.amount = 0;
    check(ROLE_AUDITOR, &in, ACTION_APPROVE, NULL, "amount 0");

    /* independence: z, stats, suspicion and lock do not move the Auditor */
    in = base_input();
    in.amount = 300.0;
    run(ROLE_AUDITOR, &in, &v);
    {
        struct vote w;
        struct agent_input o = in;
        o.z = 50;
        o.mean = 1;
        o.std = 0.1;
        o.suspicion = 1.0;
        o.account_locked = true;
        o.immediate = true;
        run(ROLE_AUDITOR, &o, &w);
        ok(w.decision == v.decision && w.decision == ACTION_REVIEW &&
               strcmp(w.reason, v.reason) == 0,
           "Auditor ignores z, window stats, suspicion and lock");
    }
}

static void test_strategist(void)
{
    struct agent_input in = base_input();
    struct vote v;

    in.account_locked = true;
    in.suspicion = 0;
    in.amount = 0;
    check(ROLE_STRATEGIST, &in, ACTION_BLOCK, "kill-switch lock", "locked account");
    in = base_input();
    in.suspicion = 0.5;
    in.amount = 4000.0; /* loss exactly 2000 */
    check(ROLE_STRATEGIST, &in, ACTION_BLOCK, "2000.00", "loss exactly at block");
    in.amount = nextafter(4000.0, 0);
    check(ROLE_STRATEGIST, &in, ACTION_REVIEW, NULL, "loss just below block");
    in.amount = 1000.0; /* loss exactly 500 */
    check(ROLE_STRATEGIST, &in, ACTION_REVIEW, "500.00", "loss exactly at review");
    in.amount = nextafter(1000.0, 0);
    check(ROLE_STRATEGIST, &in, ACTION_APPROVE, NULL, "loss just below review");
    in.suspicion = 0;
    in.amount = 1e9;
    check(ROLE_STRATEGIST, &in, ACTION_APPROVE, NULL, "zero suspicion, huge amount");

    /* independence: z and history do not move the Strategist */
    in = base_input();
    in.suspicion = 0.9;
    in.amount = 1000.0; /* loss 900 */
    run(ROLE_STRATEGIST, &in, &v);
    {
        struct vote w;
        struct agent_input o = in;
        o.z = -40;
        o.history_ok = false;
        o.history.count = 100000;
        o.history.mean = 1e-3;
        run(ROLE_STRATEGIST, &o, &w);
        ok(w.decision == v.decision && w.decision == ACTION_REVIEW &&
               strcmp(w.reason, v.reason) == 0,
           "Strategist ignores z and history");
    }
}

static void test_agents_misc(void)
{
    struct agent_input in = base_input();
    struct vote v;
    struct config cfg;
    struct agent_thresholds t;
    int capped = 1;

    /* huge numbers: reasons stay within the cap and NUL-terminated */
    in.z = 1e300;
    in.amount = 1e300;
    in.mean = -1e300;
    in.std = 1e300;
    in.suspicion = 1;
    in.history.mean = 1e-300;
    for (int r = 0; r < ROLE__COUNT; r++) {
        run((enum agent_role)r, &in, &v);
        if (!reason_ok(&v))
            capped = 0;
    }
    ok(capped, "reasons with extreme numbers stay within VOTE_REASON_MAX");
    is_int(run((enum agent_role)7, &in, &v), ACTION_REVIEW, "unknown role votes REVIEW");
    ok(reason_ok(&v), "unknown role still has a reason");

    /* determinism */
    in = base_input();
    in.z = 3.7;
    {
        struct vote a;
        struct vote b;
        run(ROLE_ANALYST, &in, &a);
        run(ROLE_ANALYST, &in, &b);
        ok(a.decision == b.decision && strcmp(a.reason, b.reason) == 0, "votes are deterministic");
    }

    memset(&cfg, 0, sizeof(cfg));
    cfg.analyst_block_z = 4.5;
    cfg.analyst_review_z = 3.25;
    cfg.auditor_block_ratio = 6;
    cfg.auditor_review_ratio = 2.5;
    cfg.auditor_min_history = 12;
    cfg.strategist_block_loss = 3000;
    cfg.strategist_review_loss = 750;
    memset(&t, 0, sizeof(t));
    agents_thresholds_from_config(&cfg, &t);
    ok(t.analyst_block_z == 4.5 && t.analyst_review_z == 3.25 && t.auditor_block_ratio == 6 &&
           t.auditor_review_ratio == 2.5 && t.auditor_min_history == 12 &&
           t.strategist_block_loss == 3000 && t.strategist_review_loss == 750,
       "thresholds copied from the config");
}

int main(void)
{
    test_names();
    test_truth_table();
    test_reasons();
    test_analyst();
    test_auditor();
    test_strategist();
    test_agents_misc();
    return done_testing();
}
