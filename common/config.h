/* Configuration: one declarative option table (config.c) gives every option its name, flag,
 * environment variables (AETHERIS_* plus the original Aetheris names), type, default, bounds and
 * help. Load order: defaults -> file (--config FILE, `name = value` lines) -> environment ->
 * command line. Everything is validated, and the first error names the option.
 * The loaded struct config is immutable afterwards and may be read from any thread.
 * getenv() appears only in config.c. */
#ifndef AETHERIS_CONFIG_H
#define AETHERIS_CONFIG_H
#include "fmacros.h"
#include <stdbool.h>
#include <stdio.h>

#define CONFIG_STR_MAX 512 /* longest string option value, URLs and paths included */

struct config {
    /* process */
    char node_id[64];              /* identifies this daemon in payloads and logs */
    char log_level[16];            /* debug|info|warn|error */
    char data_dir[CONFIG_STR_MAX]; /* var/: journal, snapshot, MQTT persistence */
    bool fail_fast_healthcheck;    /* exit at start if a dependency is unreachable */
    int startup_timeout_ms;        /* how long fail-fast start-up checks wait */
    int drain_timeout_ms;          /* upper bound for draining on SIGTERM */

    /* HTTP API */
    char http_host[CONFIG_STR_MAX];
    int http_port;
    int http_threads;
    int http_max_connections;
    int http_max_connections_per_ip; /* 0 = no per-address limit */
    int http_timeout_s;
    int http_max_body;
    int page_max;        /* cap on ?limit= */
    bool auth_disabled;  /* serve without API keys (local use; make run) */
    char api_keys[4096]; /* "name:scope:sha256hex" entries, comma-separated (secret) */
    char api_keys_file[CONFIG_STR_MAX]; /* one such entry per line; '#' comments */
    bool metrics_public;                /* GET /metrics without a key */
    double rate_limit_rps;              /* per-key sustained requests per second; 0 = no limit */
    int rate_limit_burst;               /* per-key bucket size */
    int auth_fail_limit;                /* failed authentications per address per window */
    int auth_fail_window_s;             /* throttle window (s) */
    int api_redis_connections;          /* Redis connections shared by the HTTP workers */
    int cache_ttl_s;                    /* lifetime of a cached response in Redis */
    int cache_invalidate_ms;            /* coalescing period of cache invalidation */
    int sse_max_streams;                /* concurrent GET /v1/stream clients */
    int sse_keepalive_s;                /* comment line sent on an idle stream */
    int sse_backlog;                    /* recent stream events kept for Last-Event-ID resumption */

    /* MQTT */
    char mqtt_url[CONFIG_STR_MAX]; /* tcp://host:port */
    char mqtt_username[CONFIG_STR_MAX];
    char mqtt_password[CONFIG_STR_MAX]; /* secret */
    char mqtt_topic[CONFIG_STR_MAX];    /* subscription filter for transactions */
    char exceptions_topic[CONFIG_STR_MAX];
    char commands_topic[CONFIG_STR_MAX];
    int mqtt_qos;            /* 0 or 1 for the subscription */
    bool mqtt_clean_session; /* false = persistent session (no loss while we are away) */
    int mqtt_keepalive_s;
    int mqtt_max_payload; /* bytes; larger messages are dead-lettered */
    int mqtt_max_batch;   /* events in one JSON array payload */

    /* Redis */
    char redis_url[CONFIG_STR_MAX]; /* redis://[:password@]host:port[/db] (secret part) */
    char redis_prefix[128];         /* key prefix, default "aetheris:" */
    char consumer_group[128];
    int redis_timeout_ms;
    int stream_retention_s; /* decided entries stay readable in the lane streams this long */

    /* store */
    char sqlite_path[CONFIG_STR_MAX];
    int sqlite_cache_mib;             /* page cache of the SQLite write connection */
    int sqlite_history_staged;        /* account-history rows staged before merging (histstage) */
    char mongodb_uri[CONFIG_STR_MAX]; /* secret; empty = SQLite */
    char mongodb_database[128];
    char mongodb_transactions_collection[128];
    char mongodb_exceptions_collection[128];
    char mongodb_commands_collection[128];
    char mongodb_tool_audit_collection[128];
    int audit_ttl_days;
    int store_batch_max; /* rows per write transaction */
    int deadletter_keep; /* newest invalid inputs kept */

    /* edge */
    int edge_workers;
    int window_size;
    int min_points;
    double z_threshold;
    double amount_scale;
    double immediate_threshold; /* suspicion >= this -> immediate lane */
    char detector[16];          /* zscore | mad | ewma (pipeline/detector.h) */
    double mad_threshold;       /* mad: exception when |robust score| is above this */
    double ewma_alpha;          /* ewma: weight decay per step */
    double ewma_threshold;      /* ewma: exception when |score| is above this */
    int dedupe_capacity;        /* recent transactionIds remembered */
    int snapshot_interval_ms;
    int queue_capacity;    /* items per inter-thread queue */
    int sink_linger_ms;    /* longest wait of staged transactions without an exception */
    int ingest_handoff_us; /* longest wait of an accepted event before its batch goes to a worker */

    /* cluster (several instances sharing the broker, Redis and the store) */
    int cluster_partitions;                    /* 0 = single instance on mqtt_topic */
    int cluster_lease_ms;                      /* partition and membership lease */
    char cluster_name[64];                     /* partition session client ids <name>-p<k> */
    char cluster_topic_prefix[CONFIG_STR_MAX]; /* partition k: <prefix>/<k>/# */

    /* agents and decisions */
    char agent_backend[16]; /* rules | llm */
    char llm_roles[64];     /* "Analyst,Auditor,Strategist": roles the model plays */
    char llm_base_url[CONFIG_STR_MAX];
    char llm_api_key[CONFIG_STR_MAX]; /* secret */
    char llm_model[128];
    int llm_timeout_ms;         /* one call */
    int llm_batch_deadline_ms;  /* all of a batch's calls, retries included */
    int llm_max_retries;        /* per call, on 429/5xx/timeouts */
    int llm_breaker_failures;   /* consecutive failed calls that open the breaker */
    int llm_breaker_cooldown_s; /* open breaker's wait before a trial batch */
    int llm_max_tokens;
    int immediate_batch_size;
    int batch_size;
    int immediate_batch_max_wait_ms;
    int batch_max_wait_ms;
    int reclaim_idle_ms; /* pending entries idle this long are reclaimed */
    int max_deliveries;  /* deliveries after which an entry is dead-lettered */
    int lock_ttl_s;      /* kill-switch lock lifetime after BLOCK */
    double analyst_block_z;
    double analyst_review_z;
    double auditor_block_ratio; /* amount / account history mean */
    double auditor_review_ratio;
    int auditor_min_history;      /* fewer stored transactions -> REVIEW */
    double strategist_block_loss; /* expected loss = suspicion * amount */
    double strategist_review_loss;

    /* webhooks */
    char webhook_allow_cidrs[CONFIG_STR_MAX];    /* SSRF allow-list, e.g. "127.0.0.0/8,::1/128" */
    char webhook_retry_schedule[CONFIG_STR_MAX]; /* "5,300,...": delays (s) before each retry */
    double webhook_retry_jitter;                 /* delays scaled by U[1 - j, 1 + j] */
    int webhook_retry_after_max_s;               /* cap on an honoured Retry-After */
    int webhook_timeout_ms;                      /* one attempt, connection included */
    int webhook_max_inflight;                    /* concurrent attempts */
    int webhook_disable_after_s;   /* continuous failure after which a subscription is disabled */
    int webhook_rotation_grace_s;  /* the old secret keeps signing this long after a rotation */
    int webhook_max_subscriptions; /* subscriptions that may exist */
    int webhook_deliveries_keep;   /* newest delivery-attempt records kept */
};

#define CONFIG_RETRIES_MAX 20           /* entries of webhook_retry_schedule */
#define CONFIG_RETRY_DELAY_MAX_S 604800 /* one week: the longest single retry delay */

enum config_result {
    CONFIG_OK = 0,     /* loaded and valid: run */
    CONFIG_EXIT_0 = 1, /* --help or --version printed: exit 0 */
    CONFIG_ERROR = -1  /* invalid: err holds "option: problem"; exit 2 */
};

/* Fills cfg from defaults, the optional --config file, the environment and argv.
 * `--check-config` is reported through *check_only (may be NULL). On error, err (errlen bytes)
 * names the option and the problem. */
enum config_result config_load(struct config *cfg, int argc, char **argv, bool *check_only,
                               char *err, size_t errlen);
/* Fills cfg with the defaults only (for tests and tools). */
void config_defaults(struct config *cfg);
/* Sets one option by its name (e.g. "window_size") from text, with full validation.
 * Returns 0 or ERR_INVAL / ERR_RANGE with err filled. */
int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen);
/* Parses a webhook retry schedule: comma-separated delays of 1..CONFIG_RETRY_DELAY_MAX_S
 * seconds, at most CONFIG_RETRIES_MAX of them ("" means no retries). Writes them to out (when
 * not NULL, CONFIG_RETRIES_MAX ints) and returns how many, or ERR_INVAL with err filled. */
int config_retry_schedule(const char *text, int *out, char *err, size_t errlen);
/* The roles of an llm_roles list as bits (1 << ROLE_ANALYST ...; case-insensitive names
 * Analyst, Auditor, Strategist); 0 when the list is empty or names anything else. */
unsigned config_llm_roles(const char *list);
/* Prints --help: every option with flag, env vars, default, bounds and help. */
void config_print_help(FILE *out, const char *argv0);
/* JSON text of every option with secrets (passwords, URIs with credentials) redacted.
 * Caller frees. */
char *config_dump_redacted(const struct config *cfg);

#endif
