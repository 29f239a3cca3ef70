/* LLM-backed agents (DESIGN.md 3.5): the votes of the roles listed in llm_roles come from an
 * OpenAI-compatible chat-completions endpoint, one call per role per batch, the roles' calls in
 * parallel over a libcurl multi handle on the decider's thread (never an HTTP worker).
 *
 * What the model sees: per role, a system prompt naming its evidence, and the batch as a JSON
 * block of numbers only (transactionId and that role's figures; never an account name,
 * description or any other text taken from an event), so no event field can carry instructions.
 * What comes back is untrusted: the message content must be a JSON array (code fences
 * tolerated) of {"transactionId", "decision", "reason"}; a transaction whose entry is missing,
 * repeated, or has a decision outside APPROVE|REVIEW|BLOCK gets that role's rule vote with source
 * "rules-fallback"; reasons are capped and control characters removed.
 *
 * Resilience: each call has llm_timeout_ms, the whole batch llm_batch_deadline_ms; 429, 5xx,
 * timeouts and connection failures are retried with exponential backoff and jitter (at least
 * Retry-After) while the deadline allows; llm_breaker_failures consecutive failed calls open a
 * circuit breaker for llm_breaker_cooldown_s, during which the rule agents decide without
 * calling; then one batch tries again (half-open). A batch therefore never waits longer than
 * its deadline.
 * Thread-safety: llm_vote_batch belongs to one thread (the decider); llm_state may be read from
 * any thread. The parsing and prompt functions are pure. */
#ifndef AETHERIS_LLM_H
#define AETHERIS_LLM_H
#include "fmacros.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "agents.h"
#include "config.h"
#include "vote.h"

struct llm;

enum llm_state { LLM_DISABLED, LLM_UP, LLM_DEGRADED /* breaker open */ };

struct llm_usage { /* token counts an answer reported (0 when it did not) */
    int64_t prompt_tokens;
    int64_t completion_tokens;
};

/* The client for cfg's endpoint and roles, or NULL when agent_backend is not "llm". */
struct llm *llm_new(const struct config *cfg);
void llm_free(struct llm *l); /* NULL is a no-op */
/* LLM_DISABLED for NULL. */
enum llm_state llm_state(const struct llm *l);
/* Bits (1 << role) of the roles the model plays. */
unsigned llm_roles(const struct llm *l);

/* Replaces votes[i][role] of every role the model plays for the n inputs: the model's vote
 * (source "llm") where its answer holds a valid entry for that transaction, the rule vote with
 * source "rules-fallback" otherwise. votes[i] must hold the rule votes on entry. Returns within
 * llm_batch_deadline_ms (plus the time to parse). */
void llm_vote_batch(struct llm *l, const struct agent_input *in, size_t n,
                    struct vote (*votes)[ROLE__COUNT]);

/* The chat-completions request body for one role and batch (caller frees). */
char *llm_request_body(const char *model, int max_tokens, enum agent_role role,
                       const struct agent_input *in, size_t n);
/* Reads a chat-completions response: for each input i whose transaction has exactly one valid
 * entry, fills out[i] (decision, reason, source "llm", role) and sets got[i]. usage (may be
 * NULL) receives the reported token counts. 0 when the response and its content parse (even
 * with entries missing), ERR_PROTO when they do not (nothing set). */
int llm_parse_votes(const char *body, size_t len, enum agent_role role,
                    const struct agent_input *in, size_t n, struct vote *out, bool *got,
                    struct llm_usage *usage);

#endif
