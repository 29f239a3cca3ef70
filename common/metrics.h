/* Process-wide metrics registry: fixed counters, gauges and histograms declared once in the X-macro
 * tables below, so the enum, the names and the help text cannot drift apart. Counters only grow
 * while the daemon runs. Rendered as a JSON snapshot (/v1/metrics) and as Prometheus text
 * (/metrics). Thread-safe and lock-free: relaxed atomics; a render is a consistent-enough snapshot.
 */
#ifndef AETHERIS_METRICS_H
#define AETHERIS_METRICS_H
#include "fmacros.h"
#include <stdatomic.h>
#include <stdint.h>
#include <jansson.h>
#include "buf.h"

/* X(ENUM, prometheus name, label set without braces, json key, help) */
#define METRIC_COUNTERS(X)                                                                         \
    X(MQTT_MESSAGES, "aetheris_mqtt_messages_total", "", "mqtt_messages",                          \
      "MQTT messages received on the transactions topic")                                          \
    X(MQTT_RECONNECTS, "aetheris_mqtt_reconnects_total", "", "mqtt_reconnects",                    \
      "Successful MQTT reconnections")                                                             \
    X(EVENTS_INGESTED, "aetheris_events_ingested_total", "", "ingested",                           \
      "Valid, non-duplicate events accepted for scoring")                                          \
    X(EVENTS_DUPLICATE, "aetheris_events_duplicate_total", "", "duplicates",                       \
      "Events whose transactionId was already seen")                                               \
    X(INVALID_BAD_JSON, "aetheris_events_invalid_total", "reason=\"bad_json\"",                    \
      "invalid_bad_json", "Invalid event payloads by reason")                                      \
    X(INVALID_NOT_OBJECT, "aetheris_events_invalid_total", "reason=\"not_object\"",                \
      "invalid_not_object", "Invalid event payloads by reason")                                    \
    X(INVALID_TXID, "aetheris_events_invalid_total", "reason=\"transaction_id\"",                  \
      "invalid_transaction_id", "Invalid event payloads by reason")                                \
    X(INVALID_ACCOUNT, "aetheris_events_invalid_total", "reason=\"account_origin\"",               \
      "invalid_account_origin", "Invalid event payloads by reason")                                \
    X(INVALID_AMOUNT, "aetheris_events_invalid_total", "reason=\"amount\"", "invalid_amount",      \
      "Invalid event payloads by reason")                                                          \
    X(INVALID_FIELD, "aetheris_events_invalid_total", "reason=\"field_type\"",                     \
      "invalid_field_type", "Invalid event payloads by reason")                                    \
    X(INVALID_TOO_LARGE, "aetheris_events_invalid_total", "reason=\"too_large\"",                  \
      "invalid_too_large", "Invalid event payloads by reason")                                     \
    X(EVENTS_SCORED, "aetheris_events_scored_total", "", "scored",                                 \
      "Events scored by the edge workers")                                                         \
    X(ANOMALIES_IMMEDIATE, "aetheris_anomalies_total", "priority=\"immediate\"",                   \
      "anomalies_immediate", "Exceptions detected, by priority")                                   \
    X(ANOMALIES_BATCH, "aetheris_anomalies_total", "priority=\"batch\"", "anomalies_batch",        \
      "Exceptions detected, by priority")                                                          \
    X(EXCEPTIONS_PUBLISHED, "aetheris_exceptions_published_total", "", "exceptions_published",     \
      "Exceptions published on the exceptions topic")                                              \
    X(EXCEPTIONS_UNPUBLISHED, "aetheris_exceptions_unpublished_total", "",                         \
      "exceptions_unpublished",                                                                    \
      "Exceptions not published on the topic because the broker was unreachable")                  \
    X(SINK_FLUSHES, "aetheris_sink_flushes_total", "", "sink_flushes",                             \
      "Store transactions the sink wrote (events stored per transaction = scored / this)")         \
    X(STREAM_ADDED, "aetheris_stream_added_total", "", "stream_added",                             \
      "Exceptions appended to the Redis priority streams")                                         \
    X(STREAM_RECLAIMED, "aetheris_stream_reclaimed_total", "", "stream_reclaimed",                 \
      "Stream entries reclaimed from dead consumers (XAUTOCLAIM)")                                 \
    X(STREAM_DEADLETTERED, "aetheris_stream_deadlettered_total", "", "stream_deadlettered",        \
      "Stream entries moved to the dead-letter stream")                                            \
    X(DECISIONS_APPROVE, "aetheris_decisions_total", "action=\"APPROVE\"", "decisions_approve",    \
      "Decisions made, by action")                                                                 \
    X(DECISIONS_REVIEW, "aetheris_decisions_total", "action=\"REVIEW\"", "decisions_review",       \
      "Decisions made, by action")                                                                 \
    X(DECISIONS_BLOCK, "aetheris_decisions_total", "action=\"BLOCK\"", "decisions_block",          \
      "Decisions made, by action")                                                                 \
    X(DECISIONS_REPLAYED, "aetheris_decisions_replayed_total", "", "decisions_replayed",           \
      "Exceptions processed again whose stored decision was republished")                          \
    X(COMMANDS_PUBLISHED, "aetheris_commands_published_total", "", "commands_published",           \
      "Commands published on the commands topic")                                                  \
    X(ACCOUNT_LOCKS, "aetheris_account_locks_total", "", "account_locks",                          \
      "Kill-switch account locks set after a BLOCK consensus")                                     \
    X(STORE_ROWS, "aetheris_store_rows_total", "", "store_rows", "Rows written to the store")      \
    X(STORE_ERRORS, "aetheris_store_errors_total", "", "store_errors", "Store write errors")       \
    X(REDIS_ERRORS, "aetheris_redis_errors_total", "", "redis_errors",                             \
      "Redis command failures (each followed by a reconnect)")                                     \
    X(SNAPSHOTS, "aetheris_edge_snapshots_total", "", "snapshots", "Edge state snapshots written") \
    X(JOURNAL_REPLAYED, "aetheris_journal_replayed_total", "", "journal_replayed",                 \
      "Journal records replayed at startup")                                                       \
    X(VOTES_ANALYST_APPROVE, "aetheris_agent_votes_total",                                         \
      "role=\"Analyst\",decision=\"APPROVE\"", "votes_analyst_approve",                            \
      "Agent votes by role and decision")                                                          \
    X(VOTES_ANALYST_REVIEW, "aetheris_agent_votes_total", "role=\"Analyst\",decision=\"REVIEW\"",  \
      "votes_analyst_review", "Agent votes by role and decision")                                  \
    X(VOTES_ANALYST_BLOCK, "aetheris_agent_votes_total", "role=\"Analyst\",decision=\"BLOCK\"",    \
      "votes_analyst_block", "Agent votes by role and decision")                                   \
    X(VOTES_AUDITOR_APPROVE, "aetheris_agent_votes_total",                                         \
      "role=\"Auditor\",decision=\"APPROVE\"", "votes_auditor_approve",                            \
      "Agent votes by role and decision")                                                          \
    X(VOTES_AUDITOR_REVIEW, "aetheris_agent_votes_total", "role=\"Auditor\",decision=\"REVIEW\"",  \
      "votes_auditor_review", "Agent votes by role and decision")                                  \
    X(VOTES_AUDITOR_BLOCK, "aetheris_agent_votes_total", "role=\"Auditor\",decision=\"BLOCK\"",    \
      "votes_auditor_block", "Agent votes by role and decision")                                   \
    X(VOTES_STRATEGIST_APPROVE, "aetheris_agent_votes_total",                                      \
      "role=\"Strategist\",decision=\"APPROVE\"", "votes_strategist_approve",                      \
      "Agent votes by role and decision")                                                          \
    X(VOTES_STRATEGIST_REVIEW, "aetheris_agent_votes_total",                                       \
      "role=\"Strategist\",decision=\"REVIEW\"", "votes_strategist_review",                        \
      "Agent votes by role and decision")                                                          \
    X(VOTES_STRATEGIST_BLOCK, "aetheris_agent_votes_total",                                        \
      "role=\"Strategist\",decision=\"BLOCK\"", "votes_strategist_block",                          \
      "Agent votes by role and decision")                                                          \
    X(AGENT_BATCHES, "aetheris_agent_batches_total", "", "agent_batches",                          \
      "Batches the agents decided")                                                                \
    X(AGENT_BATCH_ITEMS, "aetheris_agent_batch_items_total", "", "agent_batch_items",              \
      "Exceptions in those batches (items / batches = mean batch size)")                           \
    X(CACHE_HIT, "aetheris_cache_requests_total", "result=\"hit\"", "cache_hit",                   \
      "Response cache lookups by result")                                                          \
    X(CACHE_MISS, "aetheris_cache_requests_total", "result=\"miss\"", "cache_miss",                \
      "Response cache lookups by result")                                                          \
    X(CACHE_BYPASS, "aetheris_cache_requests_total", "result=\"bypass\"", "cache_bypass",          \
      "Response cache lookups by result")                                                          \
    X(WEBHOOK_DELIVERED, "aetheris_webhook_deliveries_total", "outcome=\"delivered\"",             \
      "webhook_delivered", "Webhook delivery attempts, by outcome")                                \
    X(WEBHOOK_RETRY, "aetheris_webhook_deliveries_total", "outcome=\"retry\"", "webhook_retry",    \
      "Webhook delivery attempts, by outcome")                                                     \
    X(WEBHOOK_EXHAUSTED, "aetheris_webhook_deliveries_total", "outcome=\"exhausted\"",             \
      "webhook_exhausted", "Webhook delivery attempts, by outcome")                                \
    X(WEBHOOK_GONE, "aetheris_webhook_deliveries_total", "outcome=\"gone\"", "webhook_gone",       \
      "Webhook delivery attempts, by outcome")                                                     \
    X(WEBHOOK_DROPPED, "aetheris_webhook_dropped_total", "", "webhook_dropped",                    \
      "Pending webhook deliveries dropped because their subscription was disabled or deleted")     \
    X(WEBHOOK_AUTO_DISABLED, "aetheris_webhook_disabled_total", "", "webhook_disabled",            \
      "Webhook subscriptions disabled by the dispatcher (410 Gone or continuous failure)")         \
    X(LLM_ANALYST_OK, "aetheris_llm_calls_total", "role=\"Analyst\",outcome=\"ok\"",               \
      "llm_analyst_ok", "LLM calls by role and outcome (skipped: breaker open)")                   \
    X(LLM_ANALYST_INVALID, "aetheris_llm_calls_total", "role=\"Analyst\",outcome=\"invalid\"",     \
      "llm_analyst_invalid", "LLM calls by role and outcome (skipped: breaker open)")              \
    X(LLM_ANALYST_FAILED, "aetheris_llm_calls_total", "role=\"Analyst\",outcome=\"failed\"",       \
      "llm_analyst_failed", "LLM calls by role and outcome (skipped: breaker open)")               \
    X(LLM_ANALYST_SKIPPED, "aetheris_llm_calls_total", "role=\"Analyst\",outcome=\"skipped\"",     \
      "llm_analyst_skipped", "LLM calls by role and outcome (skipped: breaker open)")              \
    X(LLM_AUDITOR_OK, "aetheris_llm_calls_total", "role=\"Auditor\",outcome=\"ok\"",               \
      "llm_auditor_ok", "LLM calls by role and outcome (skipped: breaker open)")                   \
    X(LLM_AUDITOR_INVALID, "aetheris_llm_calls_total", "role=\"Auditor\",outcome=\"invalid\"",     \
      "llm_auditor_invalid", "LLM calls by role and outcome (skipped: breaker open)")              \
    X(LLM_AUDITOR_FAILED, "aetheris_llm_calls_total", "role=\"Auditor\",outcome=\"failed\"",       \
      "llm_auditor_failed", "LLM calls by role and outcome (skipped: breaker open)")               \
    X(LLM_AUDITOR_SKIPPED, "aetheris_llm_calls_total", "role=\"Auditor\",outcome=\"skipped\"",     \
      "llm_auditor_skipped", "LLM calls by role and outcome (skipped: breaker open)")              \
    X(LLM_STRATEGIST_OK, "aetheris_llm_calls_total", "role=\"Strategist\",outcome=\"ok\"",         \
      "llm_strategist_ok", "LLM calls by role and outcome (skipped: breaker open)")                \
    X(LLM_STRATEGIST_INVALID, "aetheris_llm_calls_total",                                          \
      "role=\"Strategist\",outcome=\"invalid\"", "llm_strategist_invalid",                         \
      "LLM calls by role and outcome (skipped: breaker open)")                                     \
    X(LLM_STRATEGIST_FAILED, "aetheris_llm_calls_total", "role=\"Strategist\",outcome=\"failed\"", \
      "llm_strategist_failed", "LLM calls by role and outcome (skipped: breaker open)")            \
    X(LLM_STRATEGIST_SKIPPED, "aetheris_llm_calls_total",                                          \
      "role=\"Strategist\",outcome=\"skipped\"", "llm_strategist_skipped",                         \
      "LLM calls by role and outcome (skipped: breaker open)")                                     \
    X(LLM_RETRIES, "aetheris_llm_retries_total", "", "llm_retries",                                \
      "LLM calls retried after 429, 5xx or a timeout")                                             \
    X(LLM_FALLBACK_VOTES, "aetheris_llm_fallback_votes_total", "", "llm_fallback_votes",           \
      "Votes of LLM roles decided by the rule agent instead (rules-fallback)")                     \
    X(LLM_CALLS_SAVED, "aetheris_llm_calls_saved_total", "", "llm_calls_saved",                    \
      "LLM calls saved by batching (one call per role per batch, not per transaction)")            \
    X(LLM_TOKENS_PROMPT, "aetheris_llm_tokens_total", "kind=\"prompt\"", "llm_tokens_prompt",      \
      "Tokens the LLM endpoint reported")                                                          \
    X(LLM_TOKENS_COMPLETION, "aetheris_llm_tokens_total", "kind=\"completion\"",                   \
      "llm_tokens_completion", "Tokens the LLM endpoint reported")                                 \
    X(CLUSTER_ACQUIRED, "aetheris_cluster_partition_changes_total", "change=\"acquired\"",         \
      "cluster_acquired", CLUSTER_CHANGES_HELP)                                                    \
    X(CLUSTER_RELEASED, "aetheris_cluster_partition_changes_total", "change=\"released\"",         \
      "cluster_released", CLUSTER_CHANGES_HELP)                                                    \
    X(CLUSTER_LOST, "aetheris_cluster_partition_changes_total", "change=\"lost\"", "cluster_lost", \
      CLUSTER_CHANGES_HELP)                                                                        \
    X(CLUSTER_FORWARDED, "aetheris_cluster_forwarded_total", "", "cluster_forwarded",              \
      "Events of partitions owned elsewhere, republished on their partition's topic")

/* X(ENUM, prometheus base name (no _seconds suffix), label set without braces, json key, help);
 * entries sharing a name are one family */
#define METRIC_HISTOGRAMS(X)                                                                       \
    X(EVENT_TO_DECISION, "aetheris_event_to_decision", "", "event_to_decision",                    \
      "Time from ingest to published decision")                                                    \
    X(EVENT_TO_DECISION_IMMEDIATE, "aetheris_lane_event_to_decision", "lane=\"immediate\"",        \
      "event_to_decision_immediate", "Time from ingest to published decision, by lane")            \
    X(EVENT_TO_DECISION_BATCH, "aetheris_lane_event_to_decision", "lane=\"batch\"",                \
      "event_to_decision_batch", "Time from ingest to published decision, by lane")                \
    X(AGENT_BATCH, "aetheris_agent_batch", "", "agent_batch", "Time to decide one agent batch")    \
    X(AGENT_VOTE_ANALYST, "aetheris_agent_vote", "role=\"Analyst\"", "agent_vote_analyst",         \
      "Time one role took to vote on a whole batch (rules, or the LLM call)")                      \
    X(AGENT_VOTE_AUDITOR, "aetheris_agent_vote", "role=\"Auditor\"", "agent_vote_auditor",         \
      "Time one role took to vote on a whole batch (rules, or the LLM call)")                      \
    X(AGENT_VOTE_STRATEGIST, "aetheris_agent_vote", "role=\"Strategist\"",                         \
      "agent_vote_strategist",                                                                     \
      "Time one role took to vote on a whole batch (rules, or the LLM call)")                      \
    X(WEBHOOK_ATTEMPT, "aetheris_webhook_attempt", "", "webhook_attempt",                          \
      "Duration of one webhook delivery attempt")                                                  \
    X(LLM_CALL, "aetheris_llm_call", "", "llm_call", "Duration of one LLM call")

/* X(ENUM, prometheus name, label set without braces, json key, help): values set by their owner
 * (or refreshed when /metrics is scraped), not accumulated. A gauge whose name ends in
 * "_timestamp_seconds" holds milliseconds since the epoch: Prometheus gets seconds with three
 * decimals, JSON the milliseconds. */
#define METRIC_GAUGES(X)                                                                           \
    X(WEBHOOK_OUTBOX, "aetheris_webhook_outbox_depth", "", "webhook_outbox_depth",                 \
      "Webhook deliveries waiting in the outbox (pending or retrying)")                            \
    X(WEBHOOKS_DISABLED, "aetheris_webhooks_disabled", "", "webhooks_disabled",                    \
      "Webhook subscriptions currently disabled")                                                  \
    X(EDGE_ACCOUNTS, "aetheris_edge_accounts", "", "edge_accounts",                                \
      "Accounts whose rolling window the edge holds")                                              \
    X(LAST_INGEST_MS, "aetheris_last_event_ingested_timestamp_seconds", "",                        \
      "last_event_ingested_ms",                                                                    \
      "Wall-clock time (since the epoch) the newest accepted event was ingested; 0 = none yet")    \
    X(PIPELINE_QUEUED, "aetheris_pipeline_queued_batches", "", "pipeline_queued_batches",          \
      "Batches (up to 32 events) waiting between pipeline stages")                                 \
    X(UP_MQTT, "aetheris_dependency_up", "dependency=\"mqtt\"", "up_mqtt", UP_HELP)                \
    X(UP_REDIS, "aetheris_dependency_up", "dependency=\"redis\"", "up_redis", UP_HELP)             \
    X(UP_STORE, "aetheris_dependency_up", "dependency=\"store\"", "up_store", UP_HELP)             \
    X(UP_LLM, "aetheris_dependency_up", "dependency=\"llm\"", "up_llm", UP_HELP)                   \
    X(STREAM_LENGTH_IMMEDIATE, "aetheris_stream_length", "lane=\"immediate\"",                     \
      "stream_length_immediate", LENGTH_HELP)                                                      \
    X(STREAM_LENGTH_BATCH, "aetheris_stream_length", "lane=\"batch\"", "stream_length_batch",      \
      LENGTH_HELP)                                                                                 \
    X(STREAM_LENGTH_DEADLETTER, "aetheris_stream_length", "lane=\"deadletter\"",                   \
      "stream_length_deadletter", LENGTH_HELP)                                                     \
    X(STREAM_PENDING_IMMEDIATE, "aetheris_stream_pending", "lane=\"immediate\"",                   \
      "stream_pending_immediate", PENDING_HELP)                                                    \
    X(STREAM_PENDING_BATCH, "aetheris_stream_pending", "lane=\"batch\"", "stream_pending_batch",   \
      PENDING_HELP)                                                                                \
    X(STREAM_LAG_IMMEDIATE, "aetheris_stream_lag", "lane=\"immediate\"", "stream_lag_immediate",   \
      LAG_HELP)                                                                                    \
    X(STREAM_LAG_BATCH, "aetheris_stream_lag", "lane=\"batch\"", "stream_lag_batch", LAG_HELP)     \
    X(CLUSTER_PARTITIONS_OWNED, "aetheris_cluster_partitions_owned", "",                           \
      "cluster_partitions_owned", "Partitions this instance consumes (cluster_partitions > 0)")

#define UP_HELP "1 when the dependency answers (llm: 0 while its breaker is open or when unused)"
#define LENGTH_HELP "Entries in a lane's Redis stream (decided ones stay until trimmed)"
#define PENDING_HELP "Entries delivered to an agent and not yet acknowledged"
#define LAG_HELP "Entries not yet delivered to any agent"
#define CLUSTER_CHANGES_HELP                                                                       \
    "Partitions taken (acquired), handed over (released) or given up without a hand-over (lost)"

#define METRIC_ENUM_C(e, n, l, j, h) M_##e,
enum metric_counter { METRIC_COUNTERS(METRIC_ENUM_C) M__COUNT };
#undef METRIC_ENUM_C
#define METRIC_ENUM_H(e, n, l, j, h) H_##e,
enum metric_histogram { METRIC_HISTOGRAMS(METRIC_ENUM_H) H__COUNT };
#undef METRIC_ENUM_H
#define METRIC_ENUM_G(e, n, l, j, h) G_##e,
enum metric_gauge { METRIC_GAUGES(METRIC_ENUM_G) G__COUNT };
#undef METRIC_ENUM_G

/* Adds n to a counter. */
void metrics_add(enum metric_counter c, uint64_t n);
#define metrics_inc(c) metrics_add((c), 1)
/* Current value of a counter. */
uint64_t metrics_get(enum metric_counter c);
/* Sets a gauge; the last value set is reported. */
void metrics_set(enum metric_gauge g, int64_t value);
int64_t metrics_gauge(enum metric_gauge g);
/* Records one observation, in seconds, into a histogram. */
void metrics_observe(enum metric_histogram h, double seconds);
/* Estimated quantile (0 < q < 1) in seconds from the histogram buckets; 0 when empty. */
double metrics_quantile(enum metric_histogram h, double q);
/* JSON snapshot: {"counters":{json key: n,...},"gauges":{json key: n,...},
 * "latency_seconds":{json key:{"count","p50","p95","p99"}}}.
 * Caller owns the returned reference. */
json_t *metrics_json(void);
/* Appends the Prometheus text exposition of every counter, gauge and histogram, then the
 * standard process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds, process_start_time_seconds,
 * read from /proc/self); 0 or ERR_FULL. */
int metrics_prometheus(struct buf *out);

/* A histogram outside the registry (per-route HTTP latency): same buckets and clamping. Zero it
 * with memset (all-zero is empty). */
#define METRICS_NBUCKETS 18
struct metrics_hist {
    _Atomic uint64_t buckets[METRICS_NBUCKETS + 1]; /* last = +Inf */
    _Atomic uint64_t sum_ns;
};
void metrics_hist_observe(struct metrics_hist *h, double seconds);
/* Its bucket lines `<name>_bucket{<labels>,le="..."}`, `<name>_sum{<labels>}` and
 * `<name>_count{<labels>}` (labels may be ""); the HELP/TYPE lines are the caller's. */
int metrics_hist_render(const struct metrics_hist *h, const char *name, const char *labels,
                        struct buf *out);
/* Adds h's bucket counts and sum into acc (aggregating several). */
void metrics_hist_add(struct metrics_hist *acc, const struct metrics_hist *h);
/* {"count","p50","p95","p99"} of h. New reference. */
json_t *metrics_hist_json(const struct metrics_hist *h);

#endif
