/* Agent votes and the 2/3 consensus (DESIGN.md 3.5): >= 2 BLOCK -> BLOCK; else >= 2 APPROVE ->
 * APPROVE; else REVIEW. Pure; thread-safe. */
#ifndef AETHERIS_VOTE_H
#define AETHERIS_VOTE_H
#include "fmacros.h"
#include <stddef.h>

#define VOTE_REASON_MAX 240 /* reasons are capped; LLM text is untrusted and can be long */

enum action { ACTION_APPROVE = 0, ACTION_REVIEW = 1, ACTION_BLOCK = 2 };
enum agent_role { ROLE_ANALYST = 0, ROLE_AUDITOR = 1, ROLE_STRATEGIST = 2, ROLE__COUNT = 3 };

struct vote {
    enum agent_role role;
    enum action decision;
    const char *source; /* static string: "rules", "llm" or "rules-fallback" */
    char reason[VOTE_REASON_MAX + 1];
};

const char *action_name(enum action a); /* "APPROVE" | "REVIEW" | "BLOCK" */
/* Parses an action name (exact, upper case); returns the action or -1. */
int action_parse(const char *s);
const char *role_name(enum agent_role r); /* "Analyst" | "Auditor" | "Strategist" */
/* The consensus of exactly ROLE__COUNT votes. */
enum action vote_consensus(const struct vote votes[ROLE__COUNT]);
/* The command's reason text for a consensus: "2/3 consensus reached for BLOCK", ... ;
 * "no 2/3 consensus: REVIEW" when no two agents agreed. */
void vote_reason(const struct vote votes[ROLE__COUNT], enum action consensus, char *out,
                 size_t outlen);

#endif
