/* Configuration (config.h): one declarative table drives defaults, the file, the environment, the
 * command line, --help, validation and the redacted dump, so an option cannot exist in one place
 * and be missing in another. Each entry names its struct field by offset; strings are bounded by
 * their field size; numbers by min/max. The loader core takes the environment as a function so
 * tests can inject one; getenv() appears only here. */
#include "config.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>
#include "err.h"
#include "fsutil.h"
#include "ssrf.h"
#include "xmalloc.h"

enum opt_type { OPT_STR, OPT_SECRET, OPT_URL_SECRET, OPT_INT, OPT_DOUBLE, OPT_BOOL, OPT_ENUM };

struct option_def {
    const char *name; /* also the file key; flag is --name with '_' -> '-' */
    const char *section;
    enum opt_type type;
    size_t offset;
    size_t size;         /* string fields: buffer size */
    const char *def;     /* default, as text */
    double min, max;     /* numbers */
    const char *choices; /* OPT_ENUM: '|'-separated */
    const char *env2;    /* original Aetheris variable name, or NULL */
    const char *env3;
    const char *help;
};

/* clang-format off */
#define F(field) offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define STR(name, sec, def, env2, help) {#name, sec, OPT_STR, F(name), def, 0, 0, NULL, env2, NULL, help}
#define INT(name, sec, def, lo, hi, env2, help)                                                    \
    {#name, sec, OPT_INT, F(name), def, lo, hi, NULL, env2, NULL, help}
#define DBL(name, sec, def, lo, hi, env2, help)                                                    \
    {#name, sec, OPT_DOUBLE, F(name), def, lo, hi, NULL, env2, NULL, help}
#define BOOL(name, sec, def, env2, help)                                                           \
    {#name, sec, OPT_BOOL, F(name), def, 0, 1, NULL, env2, NULL, help}
/* clang-format on */

static const struct option_def options[] = {
    STR(node_id, "process", "aetheris-1", NULL,
        "this daemon's id: MQTT client id, consumer name, detectedBy"),
    {"log_level", "process", OPT_ENUM, F(log_level), "info", 0, 0, "debug|info|warn|error", NULL,
     NULL, "minimum log level"},
    STR(data_dir, "process", "var", NULL, "directory for the journal and the edge snapshot"),
    BOOL(fail_fast_healthcheck, "process", "false", "FAIL_FAST_HEALTHCHECK",
         "exit at start-up if the broker, Redis or the store is unreachable"),
    INT(startup_timeout_ms, "process", "10000", 100, 600000, NULL,
        "how long start-up checks wait for each dependency (ms)"),
    INT(drain_timeout_ms, "process", "10000", 100, 600000, NULL,
        "upper bound on draining the pipeline at shutdown (ms)"),

    STR(http_host, "http", "127.0.0.1", NULL, "address the REST API listens on"),
    INT(http_port, "http", "8080", 0, 65535, NULL, "REST API port (0 = any free port)"),
    INT(http_threads, "http", "4", 1, 256, NULL, "HTTP worker threads"),
    INT(http_max_connections, "http", "1024", 1, 1000000, NULL, "concurrent HTTP connections"),
    INT(http_max_connections_per_ip, "http", "256", 0, 1000000, NULL,
        "concurrent HTTP connections from one client address (0 = no limit)"),
    INT(http_timeout_s, "http", "30", 1, 3600, NULL, "idle HTTP connection timeout (s)"),
    INT(http_max_body, "http", "1048576", 1024, 67108864, NULL, "largest request body (bytes)"),
    INT(page_max, "http", "500", 1, 10000, NULL, "largest ?limit= for list endpoints"),
    BOOL(auth_disabled, "http", "false", NULL,
         "serve the API without API keys (local use only; `make run` sets it)"),
    {"api_keys", "http", OPT_SECRET, F(api_keys), "", 0, 0, NULL, NULL, NULL,
     "API keys as name:scope:sha256hex entries, comma-separated (scope read|write|admin)"},
    STR(api_keys_file, "http", "", NULL,
        "file of API key entries, one name:scope:sha256hex a line"),
    BOOL(metrics_public, "http", "true", NULL, "serve GET /metrics without an API key"),
    DBL(rate_limit_rps, "http", "50", 0, 1e6, NULL,
        "requests per second one API key may sustain (0 = unlimited)"),
    INT(rate_limit_burst, "http", "100", 1, 1000000, NULL,
        "requests one API key may send at once above its rate"),
    INT(auth_fail_limit, "http", "10", 1, 1000000, NULL,
        "failed authentications one address may make per window before it is throttled"),
    INT(auth_fail_window_s, "http", "60", 1, 86400, NULL,
        "window of the failed-authentication throttle (s)"),
    INT(api_redis_connections, "http", "4", 1, 256, NULL,
        "Redis connections shared by the HTTP workers (cache, rate limit, queues)"),
    INT(cache_ttl_s, "http", "30", 1, 86400, NULL, "lifetime of a cached API response (s)"),
    INT(cache_invalidate_ms, "http", "3", 1, 60000, NULL,
        "new events invalidate cached responses at most this often (ms): the freshness bound"),
    INT(sse_max_streams, "http", "64", 1, 100000, NULL, "concurrent GET /v1/stream clients"),
    INT(sse_keepalive_s, "http", "15", 1, 3600, NULL,
        "an idle event stream gets a keep-alive comment this often (s)"),
    INT(sse_backlog, "http", "1024", 16, 1000000, NULL,
        "recent stream events kept so a reconnecting client resumes by Last-Event-ID"),

    STR(mqtt_url, "mqtt", "tcp://127.0.0.1:1883", NULL,
        "broker URL, tcp://host:port (MQTT_BROKER + MQTT_PORT also accepted)"),
    STR(mqtt_username, "mqtt", "", NULL, "broker user name"),
    {"mqtt_password", "mqtt", OPT_SECRET, F(mqtt_password), "", 0, 0, NULL, NULL, NULL,
     "broker password"},
    STR(mqtt_topic, "mqtt", "aetheris/transactions/#", NULL, "subscription for transactions"),
    STR(exceptions_topic, "mqtt", "aetheris/exceptions", "EXCEPTIONS_TOPIC",
        "topic exceptions are published on"),
    STR(commands_topic, "mqtt", "aetheris/commands", "COMMANDS_TOPIC",
        "topic commands are published on"),
    INT(mqtt_qos, "mqtt", "1", 0, 1, NULL, "subscription QoS (0 or 1)"),
    BOOL(mqtt_clean_session, "mqtt", "false", NULL,
         "start a clean session (false keeps messages queued while the daemon is away)"),
    INT(mqtt_keepalive_s, "mqtt", "30", 5, 3600, NULL, "MQTT keep-alive (s)"),
    INT(mqtt_max_payload, "mqtt", "1048576", 256, 67108864, NULL,
        "largest accepted payload (bytes); larger ones are dead-lettered"),
    INT(mqtt_max_batch, "mqtt", "1000", 1, 100000, NULL, "most events in one JSON array payload"),

    {"redis_url", "redis", OPT_URL_SECRET, F(redis_url), "redis://127.0.0.1:6379/0", 0, 0, NULL,
     "REDIS_URL", NULL, "Redis URL redis://[:password@]host:port[/db]"},
    STR(redis_prefix, "redis", "aetheris:", NULL, "prefix of every Redis key"),
    STR(consumer_group, "redis", "aetheris-agents", "REDIS_CONSUMER_GROUP",
        "stream consumer group"),
    INT(redis_timeout_ms, "redis", "2000", 10, 60000, NULL, "Redis connect/command timeout (ms)"),
    INT(stream_retention_s, "redis", "3600", 0, 2592000, NULL,
        "decided (acknowledged) stream entries are trimmed after this long (s)"),

    STR(sqlite_path, "store", "var/aetheris.db", NULL, "SQLite database file"),
    INT(sqlite_cache_mib, "store", "32", 1, 4096, NULL,
        "page cache of the SQLite write connection (MiB), filled as pages are used"),
    INT(sqlite_history_staged, "store", "131072", 0, 16777216, NULL,
        "account-history rows staged in memory (~64 bytes each) before they are merged in bulk"),
    {"mongodb_uri", "store", OPT_URL_SECRET, F(mongodb_uri), "", 0, 0, NULL, "MONGODB_URI", NULL,
     "MongoDB URI (mongodb://...); empty = the SQLite file at sqlite_path"},
    STR(mongodb_database, "store", "aetheris", "MONGODB_DATABASE", "MongoDB database"),
    STR(mongodb_transactions_collection, "store", "transactions", "MONGODB_TRANSACTIONS_COLLECTION",
        "MongoDB transactions collection"),
    STR(mongodb_exceptions_collection, "store", "exceptions", "MONGODB_EXCEPTIONS_COLLECTION",
        "MongoDB exceptions collection"),
    STR(mongodb_commands_collection, "store", "commands", "MONGODB_COMMANDS_COLLECTION",
        "MongoDB commands (decisions) collection"),
    STR(mongodb_tool_audit_collection, "store", "tool_audit", "MONGODB_TOOL_AUDIT_COLLECTION",
        "MongoDB tool audit collection"),
    {"audit_ttl_days", "store", OPT_INT, F(audit_ttl_days), "30", 1, 3650, NULL,
     "MONGODB_AUDIT_TTL_DAYS", NULL, "days tool-audit rows are kept"},
    INT(store_batch_max, "store", "1000", 1, 100000, NULL, "rows per store write transaction"),
    INT(deadletter_keep, "store", "10000", 10, 10000000, NULL,
        "newest dead letters kept (store table and Redis dead-letter stream)"),

    STR(webhook_allow_cidrs, "webhooks", "", NULL,
        "CIDRs webhook targets may use despite the SSRF guard (\"127.0.0.0/8,::1/128\")"),
    STR(webhook_retry_schedule, "webhooks", "5,300,1800,7200,18000,36000,36000", NULL,
        "delays (s) before each retry of a failed delivery; its length is the retry count"),
    DBL(webhook_retry_jitter, "webhooks", "0.2", 0, 1, NULL,
        "each retry delay is scaled by a random factor in [1 - this, 1 + this]"),
    INT(webhook_retry_after_max_s, "webhooks", "36000", 1, 604800, NULL,
        "longest Retry-After (s) of a 429/5xx answer that is honoured"),
    INT(webhook_timeout_ms, "webhooks", "10000", 100, 300000, NULL,
        "time limit of one delivery attempt, connection included (ms)"),
    INT(webhook_max_inflight, "webhooks", "32", 1, 1024, NULL,
        "delivery attempts in flight at once (bounds the dispatcher's memory)"),
    INT(webhook_disable_after_s, "webhooks", "432000", 1, 31536000, NULL,
        "a subscription whose deliveries fail continuously this long (s) is disabled"),
    INT(webhook_rotation_grace_s, "webhooks", "86400", 0, 2592000, NULL,
        "after rotate-secret, the old secret also signs deliveries this long (s)"),
    INT(webhook_max_subscriptions, "webhooks", "100", 1, 10000, NULL,
        "webhook subscriptions that may exist at once"),
    INT(webhook_deliveries_keep, "webhooks", "100000", 100, 100000000, NULL,
        "newest delivery-attempt records kept"),

    /* One by default: scoring costs ~40-400 ns an event, so one thread scores millions a second,
     * and each extra worker costs a wake-up (futex, two context switches) per hand-off, which
     * on a 2-core box running the broker too was ~18% of the daemon's CPU per QoS 0 event
     * (docs/benchmarks.md). More help a detector that costs microseconds (mad) at high rates. */
    INT(edge_workers, "edge", "1", 1, 64, NULL, "edge worker threads (accounts are sharded)"),
    INT(window_size, "edge", "100", 2, 100000, NULL, "amounts per account window (W)"),
    INT(min_points, "edge", "5", 1, 100000, NULL, "amounts needed before z is computed"),
    DBL(z_threshold, "edge", "2.5", 0, 1000, NULL, "exception when |z| is above this"),
    DBL(amount_scale, "edge", "5000", 1e-9, 1e15, NULL, "amount at which suspicion saturates"),
    DBL(immediate_threshold, "edge", "0.9", 0, 1, "IMMEDIATE_SCORE_THRESHOLD",
        "suspicion at or above this goes to the immediate lane"),
    {"detector", "edge", OPT_ENUM, F(detector), "zscore", 0, 0, "zscore|mad|ewma", NULL, NULL,
     "edge score: zscore (exact rolling Z-score), mad (median/MAD), ewma (weighted window)"},
    DBL(mad_threshold, "edge", "3.5", 0, 1000, NULL,
        "detector=mad: exception when |robust score| is above this"),
    DBL(ewma_alpha, "edge", "0.1", 0, 0.99, NULL,
        "detector=ewma: the k-th newest amount weighs (1 - this)^k"),
    DBL(ewma_threshold, "edge", "3.0", 0, 1000, NULL,
        "detector=ewma: exception when |score| is above this"),
    INT(dedupe_capacity, "edge", "1000000", 1, 100000000, NULL,
        "recent transactionIds remembered for duplicate detection"),
    INT(snapshot_interval_ms, "edge", "5000", 100, 3600000, NULL, "edge snapshot period (ms)"),
    INT(queue_capacity, "edge", "4096", 16, 1000000, NULL, "batches queued into the sink"),
    INT(sink_linger_ms, "edge", "1", 0, 100, NULL,
        "longest wait (ms) of staged transactions without an exception for more to share their "
        "store transaction; a staged exception flushes at once (0: flush whenever the queue is "
        "empty)"),
    INT(ingest_handoff_us, "edge", "100", 0, 100000, NULL,
        "least spacing (us) of hand-offs to the edge workers: an event arriving later than this "
        "after the last one goes at once, a sooner one waits at most this long in a batch (0: one "
        "hand-off per payload)"),

    INT(cluster_partitions, "cluster", "0", 0, 4096, NULL,
        "partitions of the account space shared by several instances through Redis leases; "
        "0 = one instance on mqtt_topic"),
    INT(cluster_lease_ms, "cluster", "10000", 1000, 600000, NULL,
        "partition and membership lease (ms); renewed every third of it, so a dead instance's "
        "partitions move within about this long"),
    STR(cluster_name, "cluster", "aetheris", NULL,
        "names the partitions' MQTT sessions (client id <cluster_name>-p<k>); the same on "
        "every instance of one cluster"),
    STR(cluster_topic_prefix, "cluster", "aetheris/transactions/p", NULL,
        "partitioned topics: instances subscribe <prefix>/<k>/# for each partition k they own"),

    {"agent_backend", "agents", OPT_ENUM, F(agent_backend), "rules", 0, 0, "rules|llm", NULL, NULL,
     "agent implementation: rules, or llm (an OpenAI-compatible model; rules as the fallback)"},
    STR(llm_roles, "agents", "Analyst,Auditor,Strategist", NULL,
        "with agent_backend=llm: the roles the model plays (the others stay rule agents)"),
    STR(llm_base_url, "agents", "https://api.groq.com/openai/v1", NULL,
        "OpenAI-compatible API base URL (POST <base>/chat/completions)"),
    {"llm_api_key", "agents", OPT_SECRET, F(llm_api_key), "", 0, 0, NULL, "GROQ_API_KEY", NULL,
     "bearer token for the LLM endpoint (empty: no Authorization header)"},
    STR(llm_model, "agents", "llama-3.1-8b-instant", "GROQ_MODEL",
        "model name sent with each call"),
    INT(llm_timeout_ms, "agents", "8000", 100, 600000, NULL, "time limit of one LLM call (ms)"),
    INT(llm_batch_deadline_ms, "agents", "15000", 100, 3600000, NULL,
        "a batch's LLM votes, retries included, are abandoned for rule votes after this (ms)"),
    INT(llm_max_retries, "agents", "2", 0, 10, NULL,
        "retries of a call after 429, 5xx, a timeout or a connection failure"),
    INT(llm_breaker_failures, "agents", "5", 1, 1000, NULL,
        "consecutive failed calls that open the circuit breaker (rule agents decide meanwhile)"),
    INT(llm_breaker_cooldown_s, "agents", "30", 1, 86400, NULL,
        "how long the open breaker waits before letting one batch try the model again (s)"),
    INT(llm_max_tokens, "agents", "1024", 16, 100000, NULL, "max_tokens of each LLM call"),
    INT(immediate_batch_size, "agents", "5", 1, 1000, "IMMEDIATE_BATCH_SIZE",
        "exceptions per immediate-lane batch"),
    INT(batch_size, "agents", "10", 1, 1000, "BATCH_SIZE", "exceptions per batch-lane batch"),
    INT(immediate_batch_max_wait_ms, "agents", "150", 0, 60000, "IMMEDIATE_BATCH_MAX_WAIT_MS",
        "longest wait to fill an immediate batch for the LLM (ms); rule agents never wait"),
    INT(batch_max_wait_ms, "agents", "300", 0, 600000, "BATCH_MAX_WAIT_MS",
        "longest wait to fill a batch-lane batch (ms)"),
    INT(reclaim_idle_ms, "agents", "30000", 100, 86400000, NULL,
        "pending stream entries idle this long are reclaimed (ms)"),
    INT(max_deliveries, "agents", "5", 1, 1000, NULL,
        "deliveries after which a stream entry is dead-lettered"),
    INT(lock_ttl_s, "agents", "3600", 1, 31536000, NULL,
        "kill-switch lock lifetime after BLOCK (s)"),
    DBL(analyst_block_z, "agents", "4.0", 0, 1000, NULL, "Analyst: BLOCK when z >= this"),
    DBL(analyst_review_z, "agents", "3.0", 0, 1000, NULL, "Analyst: REVIEW when |z| >= this"),
    DBL(auditor_block_ratio, "agents", "3.0", 0, 1e9, NULL,
        "Auditor: BLOCK when amount / history mean >= this"),
    DBL(auditor_review_ratio, "agents", "1.5", 0, 1e9, NULL,
        "Auditor: REVIEW when amount / history mean >= this"),
    INT(auditor_min_history, "agents", "10", 0, 100000, NULL,
        "Auditor: REVIEW with fewer stored transactions than this"),
    DBL(strategist_block_loss, "agents", "2500", 0, 1e15, NULL,
        "Strategist: BLOCK when suspicion x amount >= this"),
    DBL(strategist_review_loss, "agents", "1000", 0, 1e15, NULL,
        "Strategist: REVIEW when suspicion x amount >= this"),
};
#define NOPTIONS (sizeof options / sizeof options[0])

typedef const char *(*env_fn)(const char *name);

static const struct option_def *find_option(const char *name)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

/* AETHERIS_<NAME> for an option. */
static void env_name(const struct option_def *o, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "AETHERIS_");
    for (const char *p = o->name; *p && (size_t)n + 1 < outlen; p++)
        out[n++] = (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return ERR_INVAL;
}

/* Parses value into the option's field; err names the option and `origin`. */
static int set_option(struct config *cfg, const struct option_def *o, const char *value,
                      const char *origin, char *err, size_t errlen)
{
    char *field = (char *)cfg + o->offset;
    char *end = NULL;
    switch (o->type) {
    case OPT_STR:
    case OPT_SECRET:
    case OPT_URL_SECRET:
    case OPT_ENUM:
        if (strlen(value) >= o->size) {
            snprintf(err, errlen, "%s: value is longer than %zu bytes (%s)", o->name, o->size - 1,
                     origin);
            return ERR_RANGE;
        }
        if (o->type == OPT_ENUM && !strlist_has(o->choices, value)) {
            snprintf(err, errlen, "%s: '%s' is not one of %s (%s)", o->name, value, o->choices,
                     origin);
            return ERR_INVAL;
        }
        memcpy(field, value, strlen(value) + 1);
        return 0;
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (value[0] == '\0' || *end != '\0' || errno != 0) {
            snprintf(err, errlen, "%s: '%s' is not an integer (%s)", o->name, value, origin);
            return ERR_INVAL;
        }
        if ((double)v < o->min) {
            snprintf(err, errlen, "%s: %lld is below the minimum %.0f (%s)", o->name, v, o->min,
                     origin);
            return ERR_RANGE;
        }
        if ((double)v > o->max) {
            snprintf(err, errlen, "%s: %lld is above the maximum %.0f (%s)", o->name, v, o->max,
                     origin);
            return ERR_RANGE;
        }
        *(int *)(void *)field = (int)v;
        return 0;
    }
    case OPT_DOUBLE: {
        errno = 0;
        double v = strtod(value, &end);
        if (value[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v)) {
            snprintf(err, errlen, "%s: '%s' is not a finite number (%s)", o->name, value, origin);
            return ERR_INVAL;
        }
        if (v < o->min) {
            snprintf(err, errlen, "%s: %g is below the minimum %g (%s)", o->name, v, o->min,
                     origin);
            return ERR_RANGE;
        }
        if (v > o->max) {
            snprintf(err, errlen, "%s: %g is above the maximum %g (%s)", o->name, v, o->max,
                     origin);
            return ERR_RANGE;
        }
        *(double *)(void *)field = v;
        return 0;
    }
    case OPT_BOOL:
        if (parse_bool(value, (bool *)(void *)field) != 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (true/false/1/0/yes/no/on/off) (%s)",
                     o->name, value, origin);
            return ERR_INVAL;
        }
        return 0;
    }
    return ERR_INTERNAL;
}

void config_defaults(struct config *cfg)
{
    char err[256];
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NOPTIONS; i++)
        set_option(cfg, &options[i], options[i].def, "default", err, sizeof err);
}

int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
    const struct option_def *o = find_option(name);
    if (o == NULL) {
        snprintf(err, errlen, "%s: unknown option", name);
        return ERR_INVAL;
    }
    return set_option(cfg, o, value, "set", err, errlen);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Reads `name = value` lines from f (path names it in errors); stops at the first error. */
static int load_stream(struct config *cfg, FILE *f, const char *path, char *err, size_t errlen)
{
    char line[8192], origin[1100];
    int lineno = 0, rv = 0;
    while (rv == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        snprintf(origin, sizeof origin, "%s:%d", path, lineno);
        size_t n = strlen(line);
        if (n < sizeof line - 1 && (n == 0 || line[n - 1] != '\n') && !feof(f)) {
            /* fgets stopped at a newline it stored after a NUL byte: strlen ends early */
            snprintf(err, errlen, "%s: NUL byte in the line", origin);
            rv = ERR_INVAL;
            break;
        }
        if (strchr(line, '\n') == NULL && !feof(f)) { /* never read one line as two */
            snprintf(err, errlen, "%s: line longer than %zu bytes", origin, sizeof line - 2);
            rv = ERR_INVAL;
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            snprintf(err, errlen, "%s: expected 'name = value'", origin);
            rv = ERR_INVAL;
            break;
        }
        *eq = '\0';
        const char *name = trim(s);
        const struct option_def *o = find_option(name);
        if (o == NULL) {
            snprintf(err, errlen, "%s: unknown option '%s'", origin, name);
            rv = ERR_INVAL;
            break;
        }
        rv = set_option(cfg, o, trim(eq + 1), origin, err, errlen);
    }
    return rv;
}

static int load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "--config: cannot open %s: %s", path, strerror(errno));
        return ERR_IO;
    }
    int rv = load_stream(cfg, f, path, err, errlen);
    fclose(f);
    return rv;
}

static int load_env(struct config *cfg, env_fn getenv_fn, char *err, size_t errlen)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option_def *o = &options[i];
        char name[128];
        env_name(o, name, sizeof name);
        const char *names[3] = {o->env2, o->env3, name}; /* the AETHERIS_ name wins */
        for (int k = 0; k < 3; k++) {
            const char *v = names[k] ? getenv_fn(names[k]) : NULL;
            char origin[160];
            snprintf(origin, sizeof origin, "env %s", names[k] ? names[k] : "");
            if (v && set_option(cfg, o, v, origin, err, errlen) != 0)
                return ERR_INVAL;
        }
    }
    /* The original services named the broker by host and port. */
    const char *host = getenv_fn("MQTT_BROKER"), *port = getenv_fn("MQTT_PORT");
    if ((host || port) && getenv_fn("AETHERIS_MQTT_URL") == NULL) {
        char url[CONFIG_STR_MAX], *end = NULL;
        if (port) {
            errno = 0;
            long p = strtol(port, &end, 10);
            if (port[0] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535) {
                snprintf(err, errlen, "mqtt_url: '%s' is not a port 1..65535 (env MQTT_PORT)",
                         port);
                return ERR_INVAL;
            }
        }
        if (host && (host[0] == '\0' || strpbrk(host, "/@ ") != NULL)) {
            snprintf(err, errlen, "mqtt_url: '%s' is not a host name (env MQTT_BROKER)", host);
            return ERR_INVAL;
        }
        int n = snprintf(url, sizeof url, "tcp://%s:%s", host ? host : "127.0.0.1",
                         port ? port : "1883");
        if (n < 0 || (size_t)n >= sizeof url) {
            snprintf(err, errlen, "mqtt_url: MQTT_BROKER is too long (env MQTT_BROKER)");
            return ERR_RANGE;
        }
        memcpy(cfg->mqtt_url, url, (size_t)n + 1);
    }
    return 0;
}

int config_retry_schedule(const char *text, int *out, char *err, size_t errlen)
{
    int n = 0;
    const char *p = text;
    while (*p != '\0') {
        char *end = NULL;
        errno = 0;
        long v = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : -1;
        if (v < 1 || v > CONFIG_RETRY_DELAY_MAX_S || errno != 0 || (*end != ',' && *end != '\0')) {
            snprintf(err, errlen,
                     "webhook_retry_schedule: '%s' must be comma-separated delays of 1..%d "
                     "seconds",
                     text, CONFIG_RETRY_DELAY_MAX_S);
            return ERR_INVAL;
        }
        if (n == CONFIG_RETRIES_MAX) {
            snprintf(err, errlen, "webhook_retry_schedule: more than %d retries",
                     CONFIG_RETRIES_MAX);
            return ERR_INVAL;
        }
        if (out)
            out[n] = (int)v;
        n++;
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            snprintf(err, errlen, "webhook_retry_schedule: '%s' ends with a comma", text);
            return ERR_INVAL;
        }
    }
    return n;
}

/* True when the SSRF allow-list parses; else err names the bad entry. */
static bool allow_list_valid(const char *list, char *err, size_t errlen)
{
    char why[256];
    struct ssrf_allow *a = ssrf_allow_parse(list, why, sizeof why);
    if (a == NULL) {
        snprintf(err, errlen, "webhook_allow_cidrs: %s", why);
        return false;
    }
    ssrf_allow_free(a);
    return true;
}

unsigned config_llm_roles(const char *list)
{
    static const char *const names[3] = {"analyst", "auditor", "strategist"};
    unsigned mask = 0;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        size_t k = 0;
        while (k < 3 && !(strlen(names[k]) == n && strncasecmp(p, names[k], n) == 0))
            k++;
        if (k == 3)
            return 0;
        mask |= 1u << k;
        p += n;
        if (*p == ',' && *++p == '\0')
            return 0;
    }
    return mask;
}

/* agent_backend=llm needs a model, an http(s) base URL and at least one role, and its batch
 * deadline must end before the stream entry could be reclaimed by another consumer. */
static bool llm_settings_valid(const struct config *cfg, char *err, size_t errlen)
{
    if (strncmp(cfg->llm_base_url, "http://", 7) != 0 &&
        strncmp(cfg->llm_base_url, "https://", 8) != 0)
        snprintf(err, errlen, "llm_base_url: '%s' must start with http:// or https://",
                 cfg->llm_base_url);
    else if (cfg->llm_model[0] == '\0')
        snprintf(err, errlen, "llm_model: must not be empty with agent_backend=llm");
    else if (config_llm_roles(cfg->llm_roles) == 0)
        snprintf(err, errlen,
                 "llm_roles: '%s' must be a comma-separated list of Analyst, Auditor, Strategist",
                 cfg->llm_roles);
    else if (cfg->llm_batch_deadline_ms >= cfg->reclaim_idle_ms)
        snprintf(err, errlen, "llm_batch_deadline_ms: %d must be below reclaim_idle_ms %d",
                 cfg->llm_batch_deadline_ms, cfg->reclaim_idle_ms);
    else
        return true;
    return false;
}

static int validate(const struct config *cfg, char *err, size_t errlen)
{
    if (cfg->min_points > cfg->window_size)
        snprintf(err, errlen, "min_points: %d is larger than window_size %d", cfg->min_points,
                 cfg->window_size);
    else if (cfg->analyst_review_z > cfg->analyst_block_z)
        snprintf(err, errlen, "analyst_review_z: must not exceed analyst_block_z");
    else if (cfg->auditor_review_ratio > cfg->auditor_block_ratio)
        snprintf(err, errlen, "auditor_review_ratio: must not exceed auditor_block_ratio");
    else if (cfg->strategist_review_loss > cfg->strategist_block_loss)
        snprintf(err, errlen, "strategist_review_loss: must not exceed strategist_block_loss");
    else if (strncmp(cfg->mqtt_url, "ssl://", 6) == 0)
        snprintf(err, errlen,
                 "mqtt_url: '%s': this build has no MQTT over TLS; use tcp:// to a "
                 "TLS-terminating proxy (docs/operations.md)",
                 cfg->mqtt_url);
    else if (strncmp(cfg->mqtt_url, "tcp://", 6) != 0)
        snprintf(err, errlen, "mqtt_url: '%s' must start with tcp://", cfg->mqtt_url);
    else if (strncmp(cfg->redis_url, "redis://", 8) != 0)
        snprintf(err, errlen, "redis_url: must start with redis://");
    else if (config_retry_schedule(cfg->webhook_retry_schedule, NULL, err, errlen) < 0 ||
             !allow_list_valid(cfg->webhook_allow_cidrs, err, errlen))
        return ERR_INVAL;
    else if (strcmp(cfg->agent_backend, "llm") == 0 && !llm_settings_valid(cfg, err, errlen))
        return ERR_INVAL;
    else if (cfg->node_id[0] == '\0')
        snprintf(err, errlen, "node_id: must not be empty");
    else if (cfg->cluster_partitions > 0 && (cfg->mqtt_qos != 1 || cfg->mqtt_clean_session))
        snprintf(err, errlen,
                 "cluster_partitions: needs mqtt_qos=1 and mqtt_clean_session=false (the "
                 "partitions' persistent sessions hold messages across a handover)");
    else if (cfg->cluster_partitions > 0 &&
             (cfg->cluster_topic_prefix[0] == '\0' ||
              strpbrk(cfg->cluster_topic_prefix, "+#") != NULL ||
              cfg->cluster_topic_prefix[strlen(cfg->cluster_topic_prefix) - 1] == '/'))
        snprintf(err, errlen,
                 "cluster_topic_prefix: must be a topic without '+', '#' or a "
                 "trailing '/'");
    else if (cfg->cluster_partitions > 0 && cfg->cluster_name[0] == '\0')
        snprintf(err, errlen, "cluster_name: must not be empty");
    else
        return 0;
    return ERR_INVAL;
}

static const char *real_getenv(const char *name)
{
    return getenv(name);
}

/* The loader with an injectable environment (tests include this file to reach it). */
static enum config_result config_load_env(struct config *cfg, int argc, char **argv,
                                          env_fn getenv_fn, bool *check_only, char *err,
                                          size_t errlen)
{
    config_defaults(cfg);
    if (check_only)
        *check_only = false;
    for (int i = 1; i < argc; i++) { /* --help/--version first, whatever else is wrong */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            config_print_help(stdout, argv[0]);
            return CONFIG_EXIT_0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("aetherisd %s\n", AETHERIS_VERSION);
            return CONFIG_EXIT_0;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *file = NULL;
        if (strcmp(argv[i], "--config") == 0 && i + 1 >= argc) {
            snprintf(err, errlen, "--config: missing FILE");
            return CONFIG_ERROR;
        }
        if (strcmp(argv[i], "--config") == 0)
            file = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            file = argv[i] + 9;
        if (file && load_file(cfg, file, err, errlen) != 0)
            return CONFIG_ERROR;
    }
    if (load_env(cfg, getenv_fn, err, errlen) != 0)
        return CONFIG_ERROR;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--check-config") == 0) {
            if (check_only)
                *check_only = true;
            continue;
        }
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--config=", 9) == 0)
            continue;
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "%s: unexpected argument", arg);
            return CONFIG_ERROR;
        }
        char name[128];
        const char *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (n >= sizeof name) {
            snprintf(err, errlen, "%s: unknown option", arg);
            return CONFIG_ERROR;
        }
        for (size_t k = 0; k < n; k++)
            name[k] = arg[2 + k] == '-' ? '_' : arg[2 + k];
        name[n] = '\0';
        const struct option_def *o = find_option(name);
        if (o == NULL) {
            snprintf(err, errlen, "%s: unknown option (see --help)", arg);
            return CONFIG_ERROR;
        }
        const char *value = eq ? eq + 1 : NULL;
        bool flag_value;
        if (value == NULL && o->type == OPT_BOOL) {
            /* A bare boolean flag means true; "--flag false" (a boolean word next) also works. */
            value = "true";
            if (i + 1 < argc && parse_bool(argv[i + 1], &flag_value) == 0)
                value = argv[++i];
        }
        if (value == NULL) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "%s: missing value for --%.*s", o->name, (int)n, arg + 2);
                return CONFIG_ERROR;
            }
            value = argv[++i];
        }
        char origin[160];
        snprintf(origin, sizeof origin, "command line --%.*s", (int)n, arg + 2);
        if (set_option(cfg, o, value, origin, err, errlen) != 0)
            return CONFIG_ERROR;
    }
    return validate(cfg, err, errlen) == 0 ? CONFIG_OK : CONFIG_ERROR;
}

enum config_result config_load(struct config *cfg, int argc, char **argv, bool *check_only,
                               char *err, size_t errlen)
{
    return config_load_env(cfg, argc, argv, real_getenv, check_only, err, errlen);
}

void config_print_help(FILE *out, const char *argv0)
{
    fprintf(out,
            "Usage: %s [--config FILE] [--check-config] [--OPTION=VALUE ...]\n\n"
            "aetherisd: real-time anomaly detection and decisions for payment streams.\n"
            "Options are read from defaults, then --config FILE (lines 'name = value'), then the\n"
            "environment, then the command line. Flags: --name-with-dashes=VALUE.\n\n"
            "  --config FILE     read options from FILE\n"
            "  --check-config    validate the configuration, print it (secrets redacted), exit\n"
            "  --help, -h        this help\n"
            "  --version         print the version\n\n"
            "SIGTERM or SIGINT drains the pipeline, writes a final snapshot and exits.\n"
            "Exit status: 0 clean stop, 1 start-up failure, 2 configuration error.\n",
            argv0);
    const char *section = "";
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option_def *o = &options[i];
        if (strcmp(section, o->section) != 0) {
            section = o->section;
            fprintf(out, "\n[%s]\n", section);
        }
        char flag[128], env[128];
        snprintf(flag, sizeof flag, "--%s", o->name);
        for (char *p = flag; *p; p++)
            *p = *p == '_' ? '-' : *p;
        env_name(o, env, sizeof env);
        fprintf(out, "  %s\n      %s\n      env %s%s%s%s%s; default '%s'", flag, o->help, env,
                o->env2 ? ", " : "", o->env2 ? o->env2 : "", o->env3 ? ", " : "",
                o->env3 ? o->env3 : "", o->def);
        if (o->type == OPT_INT)
            fprintf(out, "; %.0f..%.0f", o->min, o->max);
        else if (o->type == OPT_DOUBLE)
            fprintf(out, "; %g..%g", o->min, o->max);
        else if (o->type == OPT_ENUM)
            fprintf(out, "; one of %s", o->choices);
        fprintf(out, "\n");
    }
}

/* url with its password replaced by "***": "scheme://user:***@host...". A user-info part without
 * ':' is a user name, except for redis:// where rconn reads a bare "secret@" as the password. A
 * string with no "://" cannot be parsed safely, so all of it is hidden. */
static void redact_url(const char *url, char *out, size_t outlen)
{
    const char *scheme = strstr(url, "://");
    if (scheme == NULL) {
        snprintf(out, outlen, "%s", url[0] ? "***" : "");
        return;
    }
    const char *info = scheme + 3;
    const char *at = strrchr(info, '@'); /* the last '@': a password may contain '@' */
    if (at == NULL) {
        snprintf(out, outlen, "%s", url);
        return;
    }
    const char *colon = memchr(info, ':', (size_t)(at - info));
    if (colon != NULL)
        snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - url), url, at);
    else if (strncmp(url, "redis://", 8) == 0)
        snprintf(out, outlen, "%.*s***%s", (int)(info - url), url, at);
    else
        snprintf(out, outlen, "%s", url);
}

char *config_dump_redacted(const struct config *cfg)
{
    json_t *o = json_object();
    for (size_t i = 0; i < NOPTIONS; i++) {
        const struct option_def *d = &options[i];
        const char *field = (const char *)cfg + d->offset;
        char red[CONFIG_STR_MAX + 8];
        json_t *v = NULL;
        switch (d->type) {
        case OPT_STR:
        case OPT_ENUM:
            v = json_string(field);
            break;
        case OPT_SECRET:
            v = json_string(field[0] ? "***" : "");
            break;
        case OPT_URL_SECRET:
            redact_url(field, red, sizeof red);
            v = json_string(red);
            break;
        case OPT_INT:
            v = json_integer(*(const int *)(const void *)field);
            break;
        case OPT_DOUBLE:
            v = json_real(*(const double *)(const void *)field);
            break;
        case OPT_BOOL:
            v = json_boolean(*(const bool *)(const void *)field);
            break;
        }
        json_object_set_new(o, d->name, v ? v : json_null());
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}
