/* The decider thread (decide.h).
 *
 * Loop: reclaim idle pending entries now and then; top up each lane's accumulator without
 * blocking; decide the immediate lane when it is full or its oldest entry has waited its max
 * wait, then the batch lane likewise; when there is nothing to decide, block in XREADGROUP on both
 * lanes until the nearest lane deadline (at most DECIDE_IDLE_BLOCK_MS).
 *
 * A lane waits to fill a batch only to save model calls (one LLM call per role per batch). With
 * rule agents only (no role played by the model) the immediate lane's wait is 0: it decides
 * whatever has arrived as soon as it arrives, and under load the batches fill by themselves while
 * the previous one is being decided. The batch lane keeps its configured window either way: its
 * entries are the ones that can wait, and a fuller batch costs fewer store and Redis round trips.
 *
 * Exactly-once decisions rest on the store: the decision row is written (INSERT OR IGNORE) before
 * the command is published and before XACK. A crash anywhere leaves the entry pending; whoever
 * processes it again finds the stored decision and republishes that same command.
 *
 * Kill-switch locks follow the commands. What must precede a command is only its stored decision
 * (exactly-once); the lock is a consequence of that decision, not of the command, so a batch
 * publishes first and then sets its BLOCKs' locks in one pipeline, and the lock's round trip is
 * off the event-to-command path (it used to sit between the store and the publish). An entry is
 * acknowledged only when both went through: when either fails it stays pending, and whoever
 * processes it again republishes the stored command and sets what is left of its lock (counted
 * from the decision's timestamp, so a replay never extends a lock, nor revives an expired one).
 *
 * Settling. A batch's entries are XACKed only after the broker has acknowledged (PUBACK) every
 * command published so far, but the decider does not wait for that before the next batch: a
 * batch's entries join the unsettled list, and settle() (mqttc_flush, then XACK of the list)
 * runs when the decider has nothing else ready, when DECIDE_SETTLE_MAX entries are unsettled or
 * the oldest has waited DECIDE_SETTLE_MS, and before it stops. So under load the PUBACK and XACK
 * round trips of one batch overlap the next batch instead of delaying it, while the order per
 * entry (stored, published, acknowledged by the broker, XACKed) is unchanged. A flush that fails
 * leaves the whole list pending: its entries come back through XAUTOCLAIM and republish their
 * stored commands.
 *
 * Store failures. When a batch's decisions cannot be stored, each row is tried alone, so one
 * entry that can never be stored (a poison) stays pending by itself, comes back through
 * XAUTOCLAIM and is dead-lettered after max_deliveries, while its batch mates are decided. When
 * the store takes no write at all (a full disk, a store outage), the batch is kept and retried
 * with backoff, and nothing is read or reclaimed meanwhile: an outage must not count as
 * deliveries and dead-letter good entries.
 *
 * The batch's tool audit and its decisions (with their webhook outbox rows) are one store
 * transaction, one wait for SQLite's single writer, which the sink holds for its own batches.
 * When that fails, the audit alone is the probe that tells an outage (it fails too) from a
 * poison row (it goes in; the decisions are then tried one by one). During an outage the probe
 * goes first, before any agent is asked, so a store that takes nothing costs no model calls
 * beyond the batch that met the outage. */
#include "decide.h"
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include "agents.h"
#include "buffer.h"
#include "clock.h"
#include "err.h"
#include "feed.h"
#include "llm.h"
#include "log.h"
#include "metrics.h"
#include "mqttc.h"
#include "outbox.h"
#include "rconn.h"
#include "thread.h"
#include "vote.h"
#include "xmalloc.h"

#define DECIDE_ACC_MAX 1024      /* entries held per lane before deciding */
#define DECIDE_IDLE_BLOCK_MS 100 /* longest XREADGROUP block: bounds stop latency */
#define DECIDE_HISTORY_ROWS 100  /* the Auditor looks at the newest 100 stored transactions */
#define DECIDE_MQTT_FLUSH_MS 5000
#define DECIDE_BACKOFF_MAX_MS 1000
#define DECIDE_STORE_RETRY_MS 50 /* first wait after a store outage; doubles to the max */
#define DECIDE_SETTLE_MAX 256    /* unsettled entries that force a settle: bounds the list */
/* The oldest unsettled entry waits at most this long: far below reclaim_idle_ms (at least
 * 100 ms), so nobody reclaims it meanwhile. */
#define DECIDE_SETTLE_MS 10

struct lane_acc {
    struct stream_entry e[DECIDE_ACC_MAX];
    size_t n;
    int64_t first_ms; /* monotonic arrival of the oldest entry */
};

struct decider {
    const struct config *cfg;
    struct store *store;
    struct feed *feed;     /* new decisions are announced here (GET /v1/stream) */
    struct outbox *outbox; /* and matched against webhook subscriptions */
    struct llm *llm;       /* the model's votes (agent_backend=llm), else NULL */
    struct agent_thresholds thresholds;
    struct buffer_keys keys;
    struct rconn *rc;
    struct mqttc *pub;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool redis_up;
    struct lane_acc acc[LANE__COUNT];
    int batch_size[LANE__COUNT];
    int max_wait_ms[LANE__COUNT];
    char reclaim_cursor[LANE__COUNT][BUFFER_ID_MAX];
    int64_t next_reclaim_ms;
    int store_backoff_ms;   /* > 0 while the store takes no write (an outage) */
    int64_t store_retry_ms; /* monotonic time of the next attempt during an outage */
    char (*unsettled[LANE__COUNT])[BUFFER_ID_MAX]; /* published, not yet XACKed, per lane */
    size_t nunsettled[LANE__COUNT], capunsettled[LANE__COUNT];
    size_t unsettled_commands;  /* commands published since the last settle */
    int64_t unsettled_since_ms; /* monotonic time the oldest unsettled batch was published */
};

/* One exception being decided. */
struct item {
    struct stream_entry *entry;
    json_t *exc; /* parsed payload */
    uint64_t txid;
    const char *account; /* borrowed from exc */
    double amount, z, mean, std, suspicion;
    int64_t detected_ms;
    bool immediate;
    json_t *stored; /* existing decision doc, if any */
    json_t *doc;    /* new decision doc */
    char *doc_text;
    char *cmd_text; /* the command part of doc, as published */
    enum action action;
    bool inserted;
    bool unstored; /* its decision could not be stored: stays pending, not published */
};

struct decider *decider_new(const struct config *cfg, struct store *store, struct feed *feed,
                            struct outbox *outbox)
{
    struct decider *d = xcalloc(1, sizeof *d);
    d->cfg = cfg;
    d->store = store;
    d->feed = feed;
    d->outbox = outbox;
    d->llm = llm_new(cfg);
    agents_thresholds_from_config(cfg, &d->thresholds);
    buffer_keys_init(cfg, &d->keys);
    atomic_init(&d->stop, false);
    atomic_init(&d->redis_up, false);
    d->batch_size[LANE_IMMEDIATE] = cfg->immediate_batch_size;
    d->batch_size[LANE_BATCH] = cfg->batch_size;
    d->max_wait_ms[LANE_IMMEDIATE] = llm_roles(d->llm) ? cfg->immediate_batch_max_wait_ms : 0;
    d->max_wait_ms[LANE_BATCH] = cfg->batch_max_wait_ms;
    for (int l = 0; l < LANE__COUNT; l++)
        snprintf(d->reclaim_cursor[l], BUFFER_ID_MAX, "0-0");
    return d;
}

static void set_redis(struct decider *d, int rv)
{
    atomic_store(&d->redis_up, rv != ERR_CONN);
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing and voting                                                                           */

static bool num_field(json_t *o, const char *name, double *out)
{
    json_t *v = json_object_get(o, name);
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

/* Parses an entry's exception payload; false for a poison entry. */
static bool item_parse(struct item *it)
{
    json_error_t jerr;
    it->exc = json_loadb(it->entry->payload, it->entry->len, 0, &jerr);
    if (!json_is_object(it->exc))
        return false;
    json_t *txid = json_object_get(it->exc, "transactionId");
    json_t *acct = json_object_get(it->exc, "accountOrigin");
    json_t *ts = json_object_get(it->exc, "timestamp");
    if (!json_is_string(acct) || !json_is_integer(ts))
        return false;
    if (json_is_integer(txid) && json_integer_value(txid) >= 0) {
        it->txid = (uint64_t)json_integer_value(txid);
    } else if (json_is_string(txid)) { /* ids above 2^63 travel as digit strings */
        char *end = NULL;
        const char *t = json_string_value(txid);
        errno = 0;
        it->txid = strtoull(t, &end, 10);
        if (t[0] < '0' || t[0] > '9' || *end != '\0' || errno != 0)
            return false;
    } else {
        return false;
    }
    it->account = json_string_value(acct);
    it->detected_ms = json_integer_value(ts);
    const char *prio = json_string_value(json_object_get(it->exc, "priority"));
    it->immediate = prio && strcmp(prio, "immediate") == 0;
    return num_field(it->exc, "amount", &it->amount) && num_field(it->exc, "zScore", &it->z) &&
           num_field(it->exc, "mean", &it->mean) && num_field(it->exc, "std", &it->std) &&
           num_field(it->exc, "suspicion", &it->suspicion);
}

/* The seed-compatible command (DESIGN.md 3.6) as a new JSON object. */
static json_t *command_json(const struct item *it, const struct vote votes[ROLE__COUNT],
                            enum action action, int64_t now_ms)
{
    char reason[128];
    json_t *jv = json_array();
    for (int r = 0; r < ROLE__COUNT; r++)
        json_array_append_new(jv,
                              json_pack("{s:s, s:s, s:s, s:s}", "agent", role_name(votes[r].role),
                                        "decision", action_name(votes[r].decision), "reason",
                                        votes[r].reason, "source", votes[r].source));
    vote_reason(votes, action, reason, sizeof reason);
    char digits[24];
    snprintf(digits, sizeof digits, "%llu", (unsigned long long)it->txid);
    json_t *id = it->txid > INT64_MAX ? json_string(digits) : json_integer((json_int_t)it->txid);
    return json_pack("{s:s, s:o, s:s, s:o, s:s, s:I}", "account_origin", it->account,
                     "transaction_id", id, "action", action_name(action), "votes", jv, "reason",
                     reason, "timestamp", (json_int_t)now_ms);
}

/* The command part of a stored decision doc, as text to publish. Caller frees. */
static char *command_text(json_t *doc)
{
    json_t *cmd = json_deep_copy(doc);
    json_object_del(cmd, "exception");
    json_object_del(cmd, "latency_ms");
    char *text = json_dumps(cmd, JSON_COMPACT);
    json_decref(cmd);
    return text;
}

static int publish_text(struct decider *d, const char *text)
{
    return mqttc_publish(d->pub, d->cfg->commands_topic, text, strlen(text), 1);
}

static int publish_command(struct decider *d, json_t *doc)
{
    char *text = command_text(doc);
    int rv = publish_text(d, text);
    free(text);
    return rv;
}

/* The agents' evidence for one item but its kill-switch lock, and the history lookup it needed
 * (the Auditor's tool, written to the tool audit). */
static void item_inputs(struct decider *d, struct item *it, struct agent_input *in,
                        struct store_audit *audit, char **audit_text)
{
    *in = (struct agent_input){.txid = it->txid,
                               .account = it->account,
                               .amount = it->amount,
                               .z = it->z,
                               .mean = it->mean,
                               .std = it->std,
                               .suspicion = it->suspicion,
                               .immediate = it->immediate};
    in->history_ok = store_account_history(d->store, it->account, &it->txid, DECIDE_HISTORY_ROWS,
                                           &in->history) == 0;
    json_t *aj = json_pack("{s:s, s:s, s:b, s:I, s:f, s:f}", "agent", "Auditor", "account",
                           it->account, "ok", in->history_ok, "rows", (json_int_t)in->history.count,
                           "mean", in->history.mean, "max", in->history.max);
    *audit_text = json_dumps(aj, JSON_COMPACT);
    json_decref(aj);
    *audit =
        (struct store_audit){it->txid, it->account, "history_lookup", clock_wall_ms(), *audit_text};
}

/* Every role's votes on the batch: the rule agents, then the model for the roles it plays.
 * Each role's time until its votes were in goes to its aetheris_agent_vote_seconds series. */
static void batch_votes(struct decider *d, const struct agent_input *in, size_t n,
                        struct vote (*votes)[ROLE__COUNT])
{
    static const enum metric_histogram hist[ROLE__COUNT] = {
        [ROLE_ANALYST] = H_AGENT_VOTE_ANALYST,
        [ROLE_AUDITOR] = H_AGENT_VOTE_AUDITOR,
        [ROLE_STRATEGIST] = H_AGENT_VOTE_STRATEGIST,
    };
    int64_t took_ns[ROLE__COUNT];
    for (int r = 0; r < ROLE__COUNT; r++) {
        int64_t t0 = clock_mono_ns();
        for (size_t i = 0; i < n; i++)
            agents_rules_vote((enum agent_role)r, &d->thresholds, &in[i], &votes[i][r]);
        took_ns[r] = clock_mono_ns() - t0;
    }
    int64_t t0 = clock_mono_ns();
    llm_vote_batch(d->llm, in, n, votes); /* no-op with the rule backend */
    int64_t llm_ns = clock_mono_ns() - t0;
    for (int r = 0; r < ROLE__COUNT; r++) {
        if (llm_roles(d->llm) & (1u << r))
            took_ns[r] += llm_ns;
        metrics_observe(hist[r], (double)took_ns[r] / 1e9);
        for (size_t i = 0; i < n; i++)
            metrics_inc(
                (enum metric_counter)(M_VOTES_ANALYST_APPROVE + r * 3 + (int)votes[i][r].decision));
    }
    metrics_inc(M_AGENT_BATCHES);
    metrics_add(M_AGENT_BATCH_ITEMS, n);
}

/* The consensus of the votes, the command (as text to publish) and the decision document: the
 * command plus the exception and the latency, what command_text() strips again. */
static void item_finish(struct item *it, const struct vote votes[ROLE__COUNT])
{
    int64_t now = clock_wall_ms();
    it->action = vote_consensus(votes);
    it->doc = command_json(it, votes, it->action, now);
    it->cmd_text = json_dumps(it->doc, JSON_COMPACT);
    json_object_set(it->doc, "exception", it->exc);
    json_object_set_new(
        it->doc, "latency_ms",
        json_pack("{s:I}", "detect_to_decision", (json_int_t)(now - it->detected_ms)));
    it->doc_text = json_dumps(it->doc, JSON_COMPACT);
}

/* ------------------------------------------------------------------------------------------ */
/* Batch processing                                                                             */

/* Writes an EXISTS of the kill-switch key of every item's account, in one pipeline whose
 * replies recv_locks reads: the store is read meanwhile. ERR_CONN when Redis is down. */
static int send_locks(struct decider *d, const struct item *items, size_t n)
{
    struct rcmd *cmds = xcalloc(n, sizeof *cmds);
    char(*keys)[256] = xcalloc(n, sizeof *keys);
    for (size_t i = 0; i < n; i++) {
        snprintf(keys[i], sizeof keys[i], "%s%s", d->keys.lock_prefix, items[i].account);
        rcmd_add(&cmds[i], "EXISTS");
        rcmd_add(&cmds[i], keys[i]);
    }
    int rv = rconn_send(d->rc, n, cmds); /* hiredis has copied the commands out */
    free(cmds);
    free(keys);
    set_redis(d, rv);
    return rv;
}

/* Reads the n replies of send_locks: locked[i] tells whether items[i]'s account is locked. */
static int recv_locks(struct decider *d, size_t n, bool *locked)
{
    redisReply **rep = xcalloc(n, sizeof *rep);
    int rv = rconn_recv(d->rc, n, rep);
    for (size_t i = 0; i < n && rv == 0; i++) {
        locked[i] = rep[i]->type == REDIS_REPLY_INTEGER && rep[i]->integer > 0;
        freeReplyObject(rep[i]);
    }
    free(rep);
    set_redis(d, rv);
    return rv;
}

/* Seconds left of the kill-switch lock of the command just published for it, 0 for none: the whole
 * lock_ttl_s for a BLOCK decided in this batch; for a stored BLOCK being republished (a replay),
 * what is left of the lock its decision set, counted from the decision's timestamp, so that a lock
 * whose setting failed is set after all and a replay never extends one. */
static int64_t lock_seconds(const struct decider *d, const struct item *it, int64_t now_ms)
{
    int64_t ttl_ms = (int64_t)d->cfg->lock_ttl_s * 1000;
    if (it->stored == NULL)
        return it->inserted && it->action == ACTION_BLOCK ? d->cfg->lock_ttl_s : 0;
    const char *action = json_string_value(json_object_get(it->stored, "action"));
    json_t *ts = json_object_get(it->stored, "timestamp");
    if (action == NULL || strcmp(action, "BLOCK") != 0 || !json_is_integer(ts))
        return 0;
    int64_t left_ms = json_integer_value(ts) + ttl_ms - now_ms;
    if (left_ms > ttl_ms)
        left_ms = ttl_ms; /* a decision stamped by a clock ahead of ours */
    return left_ms > 0 ? (left_ms + 999) / 1000 : 0;
}

/* Sets the kill-switch lock of every BLOCK command just published (lock_seconds) with SET ... EX,
 * in one pipeline; the locks of new decisions (no stored one) are counted in
 * aetheris_account_locks_total once Redis has answered. 0, or ERR_CONN when Redis is down. */
static int set_locks(struct decider *d, struct item *const *cmd_items, size_t n)
{
    struct rcmd *cmds = xcalloc(n, sizeof *cmds);
    redisReply **rep = xcalloc(n, sizeof *rep);
    char(*keys)[256] = xcalloc(n, sizeof *keys);
    char(*vals)[24] = xcalloc(n, sizeof *vals);
    char(*ttls)[24] = xcalloc(n, sizeof *ttls);
    int64_t now = clock_wall_ms();
    size_t k = 0, nnew = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t secs = lock_seconds(d, cmd_items[i], now);
        if (secs == 0)
            continue;
        nnew += cmd_items[i]->stored == NULL;
        snprintf(keys[k], sizeof keys[k], "%s%s", d->keys.lock_prefix, cmd_items[i]->account);
        snprintf(vals[k], sizeof vals[k], "%llu", (unsigned long long)cmd_items[i]->txid);
        snprintf(ttls[k], sizeof ttls[k], "%lld", (long long)secs);
        rcmd_add(&cmds[k], "SET");
        rcmd_add(&cmds[k], keys[k]);
        rcmd_add(&cmds[k], vals[k]);
        rcmd_add(&cmds[k], "EX");
        rcmd_add(&cmds[k], ttls[k]);
        k++;
    }
    int rv = k ? rconn_pipeline(d->rc, k, cmds, rep) : 0;
    for (size_t i = 0; i < k && rv == 0; i++)
        freeReplyObject(rep[i]);
    if (rv == 0)
        metrics_add(M_ACCOUNT_LOCKS, nnew);
    free(cmds);
    free(rep);
    free(keys);
    free(vals);
    free(ttls);
    set_redis(d, rv);
    return rv;
}

static void items_cleanup(struct item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(items[i].exc);
        json_decref(items[i].stored);
        json_decref(items[i].doc);
        free(items[i].doc_text);
        free(items[i].cmd_text);
    }
}

/* Moves an unparseable entry to the dead letters (stream and store). */
static void poison(struct decider *d, struct stream_entry *e)
{
    log_warn("decide.poison", "stream entry %s in lane %s is not a valid exception: dead-lettered",
             e->id, lane_name(e->lane));
    struct store_deadletter dl = {"decision", "unparseable_exception", clock_wall_ms(), e->payload,
                                  e->len < 1024 ? e->len : 1024};
    store_put_deadletters(d->store, &dl, 1, d->cfg->deadletter_keep);
    set_redis(d, buffer_deadletter(d->rc, &d->keys, e, "unparseable exception payload"));
}

/* The batch cannot be stored: logged at the outage's first failure. ERR_IO. */
static int store_outage(struct decider *d, size_t n)
{
    if (d->store_backoff_ms == 0)
        log_error("decide.store_failed",
                  "the store takes no write; %zu decisions wait and are retried", n);
    return ERR_IO;
}

/* Stores each decision alone after its batch failed to store. A row that fails by itself is
 * marked unstored, in fresh[] and in items[] (via idx), and logged. */
static void store_each(struct decider *d, struct item *fresh, const size_t *idx, size_t nfresh,
                       const struct store_decision *rows, bool *inserted, struct item *items)
{
    for (size_t i = 0; i < nfresh; i++) {
        if (store_put_decisions(d->store, &rows[i], 1, NULL, 0, &inserted[i]) == 0)
            continue;
        log_error("decide.store_failed",
                  "the decision of transaction %llu (entry %s) cannot be stored; it stays "
                  "pending and is dead-lettered after %d deliveries",
                  (unsigned long long)fresh[i].txid, fresh[i].entry->id, d->cfg->max_deliveries);
        inserted[i] = false;
        fresh[i].unstored = items[idx[i]].unstored = true;
    }
}

/* Adds a published batch's entries to the unsettled list. */
static void unsettled_add(struct decider *d, enum lane lane, const struct item *items, size_t n,
                          size_t published)
{
    if (d->nunsettled[LANE_IMMEDIATE] + d->nunsettled[LANE_BATCH] == 0)
        d->unsettled_since_ms = clock_mono_ms();
    for (size_t i = 0; i < n; i++) {
        if (items[i].unstored)
            continue;
        if (d->nunsettled[lane] == d->capunsettled[lane]) {
            d->capunsettled[lane] = d->capunsettled[lane] ? d->capunsettled[lane] * 2 : 64;
            d->unsettled[lane] =
                xrealloc(d->unsettled[lane], d->capunsettled[lane] * sizeof d->unsettled[lane][0]);
        }
        snprintf(d->unsettled[lane][d->nunsettled[lane]++], BUFFER_ID_MAX, "%s",
                 items[i].entry->id);
    }
    d->unsettled_commands += published;
}

/* Waits for the broker's acknowledgement of every command published since the last settle, then
 * XACKs the unsettled entries; when that wait fails they stay pending (retried through
 * XAUTOCLAIM). The list is empty afterwards either way. */
static void settle(struct decider *d)
{
    if (d->unsettled_commands == 0 &&
        d->nunsettled[LANE_IMMEDIATE] + d->nunsettled[LANE_BATCH] == 0)
        return;
    int rv = d->unsettled_commands > 0 ? mqttc_flush(d->pub, DECIDE_MQTT_FLUSH_MS) : 0;
    if (rv != 0) {
        log_warn("decide.publish_failed",
                 "the broker did not acknowledge %zu commands (%s); their entries stay pending "
                 "and will be retried",
                 d->unsettled_commands, err_str(rv));
    } else {
        metrics_add(M_COMMANDS_PUBLISHED, d->unsettled_commands);
    }
    for (int l = 0; l < LANE__COUNT && rv == 0; l++) {
        size_t n = d->nunsettled[l];
        if (n == 0)
            continue;
        const char **ids = xcalloc(n, sizeof *ids);
        for (size_t i = 0; i < n; i++)
            ids[i] = d->unsettled[l][i];
        set_redis(d, buffer_ack(d->rc, &d->keys, (enum lane)l, ids, n));
        free(ids);
    }
    for (int l = 0; l < LANE__COUNT; l++)
        d->nunsettled[l] = 0;
    d->unsettled_commands = 0;
}

/* True when the unsettled list must be settled now rather than after the next batch. */
static bool settle_due(const struct decider *d, int64_t now)
{
    size_t n = d->nunsettled[LANE_IMMEDIATE] + d->nunsettled[LANE_BATCH];
    return n >= DECIDE_SETTLE_MAX || (n > 0 && now - d->unsettled_since_ms >= DECIDE_SETTLE_MS);
}

/* Decides, stores, publishes and acknowledges a batch of one lane. Entries whose processing
 * fails stay pending in Redis and come back through XAUTOCLAIM. Returns ERR_IO when the store
 * took no write (the batch was not processed and should be retried as it is), else 0. */
static int decide_batch(struct decider *d, enum lane lane, struct stream_entry *entries, size_t n)
{
    int64_t t0 = clock_mono_ns();
    struct item *items = xcalloc(n, sizeof *items);
    struct item *fresh = xcalloc(n, sizeof *fresh);
    struct store_decision *rows = xcalloc(n, sizeof *rows);
    struct outbox_event *outbox = xcalloc(n, sizeof *outbox);
    struct agent_input *inputs = xcalloc(n, sizeof *inputs);
    struct vote(*votes)[ROLE__COUNT] = xcalloc(n, sizeof *votes);
    struct store_audit *audit = xcalloc(n, sizeof *audit);
    char **audit_text = xcalloc(n, sizeof *audit_text);
    bool *locked = xcalloc(n, sizeof *locked);
    bool *inserted = xcalloc(n, sizeof *inserted);
    size_t *fresh_idx = xcalloc(n, sizeof *fresh_idx); /* fresh[i] is items[fresh_idx[i]] */
    size_t nitems = 0, nfresh = 0;
    int result = 0;

    for (size_t i = 0; i < n; i++) {
        struct item it = {.entry = &entries[i]};
        if (!item_parse(&it)) {
            json_decref(it.exc);
            poison(d, &entries[i]);
            continue;
        }
        items[nitems++] = it;
    }
    /* The kill-switch lookups go out first, and Redis answers while the store is read. */
    if (nitems > 0 && send_locks(d, items, nitems) != 0)
        goto out;
    for (size_t i = 0; i < nitems; i++) {
        if (store_get_decision(d->store, items[i].txid, &items[i].stored) != 0)
            items[i].stored = NULL;
        if (items[i].stored == NULL) {
            fresh_idx[nfresh] = i;
            fresh[nfresh++] = items[i];
        }
    }
    size_t noutbox = 0;
    for (size_t i = 0; i < nfresh; i++)
        item_inputs(d, &fresh[i], &inputs[i], &audit[i], &audit_text[i]);
    if (nitems > 0 && recv_locks(d, nitems, locked) != 0)
        goto out;
    for (size_t i = 0; i < nfresh; i++)
        inputs[i].account_locked = locked[fresh_idx[i]];
    bool probe = d->store_backoff_ms > 0; /* retrying after an outage: the audit goes first */
    if (nfresh > 0 && probe && store_put_audit(d->store, audit, nfresh) != 0) {
        result = store_outage(d, nfresh);
        goto out;
    }
    if (nfresh > 0)
        batch_votes(d, inputs, nfresh, votes);
    for (size_t i = 0; i < nfresh; i++) {
        item_finish(&fresh[i], votes[i]);
        const char *action = action_name(fresh[i].action);
        int64_t now = clock_wall_ms();
        if (d->outbox)
            outbox_match(d->outbox, OUTBOX_DECISION, action, fresh[i].txid, now, fresh[i].doc_text,
                         strlen(fresh[i].doc_text), &outbox[i]);
        noutbox += outbox[i].nrows;
        rows[i] = (struct store_decision){.txid = fresh[i].txid,
                                          .account = fresh[i].account,
                                          .action = action,
                                          .decided_ms = now,
                                          .json = fresh[i].doc_text,
                                          .outbox = outbox[i].rows,
                                          .noutbox = outbox[i].nrows};
    }
    if (nfresh > 0 && store_put_decisions(d->store, rows, nfresh, probe ? NULL : audit,
                                          probe ? 0 : nfresh, inserted) != 0) {
        if (!probe && store_put_audit(d->store, audit, nfresh) != 0) {
            result = store_outage(d, nfresh);
            goto out;
        }
        store_each(d, fresh, fresh_idx, nfresh, rows, inserted, items);
    }
    if (noutbox > 0)
        outbox_wake(d->outbox);
    int64_t stored_ms = clock_wall_ms();
    for (size_t i = 0; i < nfresh; i++) {
        fresh[i].inserted = inserted[i];
        if (inserted[i]) { /* counted when stored: a later failure republishes it as a replay */
            metrics_inc(fresh[i].action == ACTION_BLOCK    ? M_DECISIONS_BLOCK
                        : fresh[i].action == ACTION_REVIEW ? M_DECISIONS_REVIEW
                                                           : M_DECISIONS_APPROVE);
            double took_s = (double)(stored_ms - fresh[i].detected_ms) / 1000.0;
            metrics_observe(H_EVENT_TO_DECISION, took_s);
            metrics_observe(lane == LANE_IMMEDIATE ? H_EVENT_TO_DECISION_IMMEDIATE
                                                   : H_EVENT_TO_DECISION_BATCH,
                            took_s);
        }
        if (!inserted[i] && !fresh[i].unstored &&
            store_get_decision(d->store, fresh[i].txid, &fresh[i].stored) != 0)
            goto out;
    }

    /* Publish: the stored command where one existed (replays, races), the new one otherwise;
     * then the BLOCKs' kill-switch locks, whether or not every publish went through (the
     * decisions are stored: their locks hold either way). */
    struct item **cmd_items = xcalloc(nitems, sizeof *cmd_items);
    size_t ncmd = 0;
    for (size_t i = 0; i < nitems; i++)
        if (items[i].stored != NULL)
            cmd_items[ncmd++] = &items[i];
    for (size_t i = 0; i < nfresh; i++) {
        if (fresh[i].unstored)
            continue;
        cmd_items[ncmd++] = &fresh[i];
    }
    int rv = 0;
    size_t published = 0;
    for (size_t i = 0; i < ncmd && rv == 0; i++, published++)
        rv = cmd_items[i]->stored ? publish_command(d, cmd_items[i]->stored)
                                  : publish_text(d, cmd_items[i]->cmd_text);
    int lock_rv = set_locks(d, cmd_items, ncmd);
    free(cmd_items);
    if (rv != 0 || lock_rv != 0) {
        log_warn("decide.publish_failed",
                 "%s of %zu commands failed (%s); entries stay pending and will be retried",
                 rv != 0 ? "publishing" : "setting the kill-switch locks", published,
                 err_str(rv != 0 ? rv : lock_rv));
        settle(d); /* the batches before this one: acknowledged by the broker or retried too */
        goto out;
    }
    for (size_t i = 0; d->feed && i < nfresh; i++) {
        if (fresh[i].inserted && fresh[i].doc_text) /* the text just stored as the row */
            feed_publish(d->feed, FEED_DECISION, fresh[i].doc_text, strlen(fresh[i].doc_text));
    }
    unsettled_add(d, lane, items, nitems, published);

    for (size_t i = 0; i < nitems; i++)
        if (items[i].stored && items[i].doc == NULL)
            metrics_inc(M_DECISIONS_REPLAYED);
    for (size_t i = 0; i < nfresh; i++) /* a copy of the entry (a journal replay) stored first */
        if (!fresh[i].inserted && !fresh[i].unstored)
            metrics_inc(M_DECISIONS_REPLAYED);
    metrics_observe(H_AGENT_BATCH, (double)(clock_mono_ns() - t0) / 1e9);
out:
    /* fresh[] holds copies of items[] members: free each owned pointer exactly once. */
    for (size_t i = 0, f = 0; i < nitems; i++) {
        if (items[i].stored == NULL && f < nfresh) {
            items[i].stored = fresh[f].stored;
            items[i].doc = fresh[f].doc;
            items[i].doc_text = fresh[f].doc_text;
            items[i].cmd_text = fresh[f].cmd_text;
            f++;
        }
    }
    items_cleanup(items, nitems);
    for (size_t i = 0; i < n; i++)
        free(audit_text[i]);
    free(items);
    free(fresh);
    free(rows);
    for (size_t i = 0; i < n; i++)
        outbox_event_free(&outbox[i]);
    free(outbox);
    free(inputs);
    free(votes);
    free(audit);
    free(audit_text);
    free(locked);
    free(inserted);
    free(fresh_idx);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Lanes                                                                                        */

static void acc_add(struct decider *d, struct stream_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct lane_acc *a = &d->acc[e[i].lane];
        if (a->n == DECIDE_ACC_MAX) { /* full: leave it pending; reclaim brings it back */
            free(e[i].payload);
            continue;
        }
        if (a->n == 0)
            a->first_ms = clock_mono_ms();
        a->e[a->n++] = e[i];
    }
}

/* Decides the first `count` entries of a lane and shifts the rest down; during a store outage
 * keeps them and schedules the next attempt instead. */
static void acc_decide(struct decider *d, enum lane lane, size_t count)
{
    struct lane_acc *a = &d->acc[lane];
    if (decide_batch(d, lane, a->e, count) == ERR_IO) {
        int b = d->store_backoff_ms ? d->store_backoff_ms * 2 : DECIDE_STORE_RETRY_MS;
        d->store_backoff_ms = b > DECIDE_BACKOFF_MAX_MS ? DECIDE_BACKOFF_MAX_MS : b;
        d->store_retry_ms = clock_mono_ms() + d->store_backoff_ms;
        return;
    }
    if (d->store_backoff_ms > 0)
        log_info("decide.store_recovered", "decisions are stored again");
    d->store_backoff_ms = 0;
    stream_entries_cleanup(a->e, count);
    memmove(a->e, a->e + count, (a->n - count) * sizeof a->e[0]);
    a->n -= count;
    a->first_ms = clock_mono_ms();
}

static bool lane_ready(struct decider *d, enum lane lane, int64_t now)
{
    struct lane_acc *a = &d->acc[lane];
    return a->n >= (size_t)d->batch_size[lane] ||
           (a->n > 0 && now - a->first_ms >= d->max_wait_ms[lane]);
}

/* Reclaims entries idle past reclaim_idle_ms; dead-letters those delivered too often. */
static void reclaim(struct decider *d)
{
    struct stream_entry got[64];
    for (int l = 0; l < LANE__COUNT; l++) {
        int n = buffer_autoclaim(d->rc, &d->keys, (enum lane)l, d->cfg->reclaim_idle_ms,
                                 d->reclaim_cursor[l], got, 64);
        set_redis(d, n < 0 ? n : 0);
        if (n == ERR_NOTFOUND)
            set_redis(d, buffer_ensure_groups(d->rc, &d->keys));
        for (int i = 0; i < n; i++) {
            if (got[i].deliveries > d->cfg->max_deliveries) {
                log_warn("decide.deadletter", "entry %s delivered %lld times: dead-lettered",
                         got[i].id, (long long)got[i].deliveries);
                buffer_deadletter(d->rc, &d->keys, &got[i], "max deliveries exceeded");
                free(got[i].payload);
            } else {
                acc_add(d, &got[i], 1);
            }
        }
    }
}

/* Trims decided entries older than stream_retention_s from both lanes (bounded Redis memory). */
static void trim(struct decider *d)
{
    int64_t now = clock_wall_ms();
    for (int l = 0; l < LANE__COUNT; l++) {
        int n = buffer_trim(d->rc, &d->keys, (enum lane)l, now,
                            (int64_t)d->cfg->stream_retention_s * 1000);
        if (n > 0)
            log_debug("decide.trim", "%d decided entries trimmed from the %s lane", n,
                      lane_name((enum lane)l));
    }
}

/* Reads new entries: without blocking when block_ms is 0. Returns how many arrived. */
static int top_up(struct decider *d, int block_ms)
{
    static const enum lane both[LANE__COUNT] = {LANE_IMMEDIATE, LANE_BATCH};
    struct stream_entry got[256];
    int want = d->batch_size[LANE_BATCH] > d->batch_size[LANE_IMMEDIATE]
                   ? d->batch_size[LANE_BATCH]
                   : d->batch_size[LANE_IMMEDIATE];
    int n = buffer_read(d->rc, &d->keys, both, LANE__COUNT, ">", want, block_ms, got, 256);
    set_redis(d, n < 0 ? n : 0);
    if (n == ERR_NOTFOUND) {
        set_redis(d, buffer_ensure_groups(d->rc, &d->keys));
        return 0;
    }
    if (n == ERR_CONN)
        clock_sleep_ms(DECIDE_IDLE_BLOCK_MS); /* Redis down: rconn backs off; do not spin */
    if (n <= 0)
        return 0;
    acc_add(d, got, (size_t)n);
    return n;
}

static int block_time(struct decider *d, int64_t now)
{
    int64_t t = DECIDE_IDLE_BLOCK_MS;
    for (int l = 0; l < LANE__COUNT; l++) {
        if (d->acc[l].n == 0)
            continue;
        int64_t left = d->acc[l].first_ms + d->max_wait_ms[l] - now;
        if (left < t)
            t = left;
    }
    return t < 1 ? 1 : (int)t;
}

static void *decider_main(void *arg)
{
    struct decider *d = arg;
    thread_name("decider");
    static const enum lane both[LANE__COUNT] = {LANE_IMMEDIATE, LANE_BATCH};
    int backoff = 50;
    while (!atomic_load(&d->stop) && buffer_ensure_groups(d->rc, &d->keys) != 0) {
        clock_sleep_ms(backoff);
        backoff = backoff * 2 > DECIDE_BACKOFF_MAX_MS ? DECIDE_BACKOFF_MAX_MS : backoff * 2;
    }
    atomic_store(&d->redis_up, true);
    /* Our own pending entries from a previous run of this node come first. */
    struct stream_entry own[256];
    int n = buffer_read(d->rc, &d->keys, both, LANE__COUNT, "0", 256, 0, own, 256);
    if (n > 0)
        acc_add(d, own, (size_t)n);

    bool just_read = false; /* a blocking read just returned entries: no need to read again */
    while (!atomic_load(&d->stop)) {
        if (!mqttc_is_connected(d->pub)) { /* commands could not go out: leave entries unread */
            settle(d);
            mqttc_wait_connected(d->pub, DECIDE_IDLE_BLOCK_MS);
            continue;
        }
        int64_t now = clock_mono_ms();
        if (d->store_backoff_ms > 0 && now < d->store_retry_ms) { /* outage: read nothing */
            settle(d);
            clock_sleep_ms(d->store_retry_ms - now);
            continue;
        }
        if (d->store_backoff_ms == 0 && now >= d->next_reclaim_ms) {
            reclaim(d);
            trim(d);
            int64_t every = d->cfg->reclaim_idle_ms / 2;
            d->next_reclaim_ms = now + (every < 1000 ? 1000 : every);
        }
        if (!just_read && d->store_backoff_ms == 0)
            top_up(d, 0);
        just_read = false;
        now = clock_mono_ms();
        bool worked = false;
        for (int l = 0; l < LANE__COUNT && !worked; l++) {
            if (lane_ready(d, (enum lane)l, now)) {
                size_t count =
                    d->acc[l].n < (size_t)d->batch_size[l] ? d->acc[l].n : (size_t)d->batch_size[l];
                acc_decide(d, (enum lane)l, count);
                worked = true; /* re-check the immediate lane before the next batch */
            }
        }
        if (!worked || settle_due(d, clock_mono_ms()))
            settle(d);
        if (!worked && d->store_backoff_ms == 0)
            just_read = top_up(d, block_time(d, now)) > 0;
        else if (!worked) /* outage with no lane due: do not spin */
            clock_sleep_ms(DECIDE_IDLE_BLOCK_MS);
    }
    settle(d);
    return NULL;
}

int decider_start(struct decider *d)
{
    char err[256];
    d->rc = rconn_new(d->cfg->redis_url, d->cfg->redis_timeout_ms, err, sizeof err);
    if (d->rc == NULL) {
        log_error("decide.redis_url", "%s", err);
        return ERR_INVAL;
    }
    d->pub = mqttc_new_publisher(d->cfg, "commands");
    if (d->pub == NULL)
        return ERR_INTERNAL;
    if (pthread_create(&d->thread, NULL, decider_main, d) != 0)
        return ERR_INTERNAL;
    d->started = true;
    return 0;
}

void decider_stop(struct decider *d)
{
    atomic_store(&d->stop, true);
    if (d->started)
        pthread_join(d->thread, NULL);
    d->started = false;
}

void decider_free(struct decider *d)
{
    if (d == NULL)
        return;
    decider_stop(d);
    for (int l = 0; l < LANE__COUNT; l++) {
        stream_entries_cleanup(d->acc[l].e, d->acc[l].n);
        free(d->unsettled[l]);
    }
    mqttc_free(d->pub, 2000);
    rconn_free(d->rc);
    llm_free(d->llm);
    free(d);
}

enum llm_state decider_llm_state(const struct decider *d)
{
    return llm_state(d->llm);
}

bool decider_redis_up(const struct decider *d)
{
    return atomic_load(&((struct decider *)d)->redis_up);
}

bool decider_mqtt_up(const struct decider *d)
{
    return d->pub != NULL && mqttc_is_connected(d->pub);
}
