/* Votes and the 2/3 consensus (vote.h, DESIGN.md 3.5).
 *
 * BLOCK is checked before APPROVE so that two BLOCK votes always win: with three voters two
 * BLOCKs and two APPROVEs cannot coexist, but the explicit order documents the safety bias.
 * Anything without two matching BLOCK or APPROVE votes (including two REVIEWs, or one of each
 * action) is REVIEW, i.e. a human looks at it. The reason text keeps the original service's
 * wording ("2/3 consensus reached for X") whenever at least two agents agreed, so downstream
 * consumers that match on it keep working. */
#include "vote.h"
#include <stdio.h>
#include <string.h>

/* "APPROVE" | "REVIEW" | "BLOCK"; "UNKNOWN" for a value outside the enum. */
const char *action_name(enum action a)
{
    switch (a) {
    case ACTION_APPROVE:
        return "APPROVE";
    case ACTION_REVIEW:
        return "REVIEW";
    case ACTION_BLOCK:
        return "BLOCK";
    }
    return "UNKNOWN";
}

/* Exact, case-sensitive match of an action name; -1 for NULL or anything else. */
int action_parse(const char *s)
{
    if (s == NULL)
        return -1;
    if (strcmp(s, "APPROVE") == 0)
        return ACTION_APPROVE;
    if (strcmp(s, "REVIEW") == 0)
        return ACTION_REVIEW;
    if (strcmp(s, "BLOCK") == 0)
        return ACTION_BLOCK;
    return -1;
}

/* "Analyst" | "Auditor" | "Strategist"; "Unknown" for a value outside the enum. */
const char *role_name(enum agent_role r)
{
    switch (r) {
    case ROLE_ANALYST:
        return "Analyst";
    case ROLE_AUDITOR:
        return "Auditor";
    case ROLE_STRATEGIST:
        return "Strategist";
    case ROLE__COUNT:
        break;
    }
    return "Unknown";
}

static int count_votes(const struct vote votes[ROLE__COUNT], enum action a)
{
    int n = 0;
    for (int i = 0; i < ROLE__COUNT; i++) {
        if (votes[i].decision == a)
            n++;
    }
    return n;
}

/* >= 2 BLOCK -> BLOCK; else >= 2 APPROVE -> APPROVE; else REVIEW. */
enum action vote_consensus(const struct vote votes[ROLE__COUNT])
{
    if (count_votes(votes, ACTION_BLOCK) >= 2)
        return ACTION_BLOCK;
    if (count_votes(votes, ACTION_APPROVE) >= 2)
        return ACTION_APPROVE;
    return ACTION_REVIEW;
}

/* "2/3 consensus reached for <consensus>" when at least two votes equal the consensus, else
 * "no 2/3 consensus: REVIEW". Always NUL-terminates when outlen > 0. */
void vote_reason(const struct vote votes[ROLE__COUNT], enum action consensus, char *out,
                 size_t outlen)
{
    if (outlen == 0)
        return;
    if (count_votes(votes, consensus) >= 2)
        snprintf(out, outlen, "2/3 consensus reached for %s", action_name(consensus));
    else
        snprintf(out, outlen, "no 2/3 consensus: REVIEW");
}
