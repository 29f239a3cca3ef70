/* Webhook subscriptions and the dispatcher (webhooks.h).
 *
 * Two locks. change_mu serializes every read-modify-write of a subscription document (API
 * handlers and the dispatcher's bookkeeping) and the reload that follows it; mu guards only the
 * in-memory table of hooks, swapped whole by a reload and read by the dispatcher for a copy of
 * one entry. Neither is held across network I/O.
 *
 * The dispatcher's loop: claim due rows while there is room (the claim leases them for the
 * attempt timeout plus LEASE_MARGIN_MS, so a crash mid-attempt brings them back), run the multi
 * handle, settle finished attempts, refresh the outbox-depth gauge once a second, and sleep in
 * curl_multi_poll until a socket is ready, the next row is due, or the pipeline's waker calls
 * curl_multi_wakeup. Due times are wall-clock milliseconds because they outlive the process. */
#include "thread.h"
#include "webhooks.h"
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <openssl/rand.h>
#include "clock.h"
#include "err.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "whsign.h"
#include "xmalloc.h"

#define WEBHOOK_URL_MAX 2048  /* bytes of a subscription URL */
#define LEASE_MARGIN_MS 60000 /* a claimed row stays hidden this long past the attempt timeout */
#define POLL_MAX_MS 1000      /* longest sleep between looks at the outbox */
#define GAUGE_PERIOD_MS 1000  /* outbox depth refresh */
#define RETRY_STORE_MS 1000   /* next claim after a store failure */

struct hook { /* one subscription as the dispatcher needs it */
    char id[STORE_ID_MAX];
    char url[WEBHOOK_URL_MAX + 1];
    bool enabled;
    struct whsign_key key;
    bool has_prev; /* a rotated-out secret that still signs until prev_expires_ms */
    struct whsign_key prev;
    int64_t prev_expires_ms;
    int64_t failing_since_ms; /* first failure of the current streak; 0 = not failing */
};

struct attempt { /* one delivery attempt in flight */
    struct webhooks *w;
    struct store_claim claim;
    CURL *easy;
    struct curl_slist *headers;
    int64_t started_ns; /* monotonic */
    int64_t ts_ms;      /* wall clock, also webhook-timestamp * 1000 */
    char errbuf[CURL_ERROR_SIZE];
    char blocked[224];           /* why the SSRF guard refused the address, when it did */
    struct attempt *prev, *next; /* the dispatcher's list of attempts in flight */
};

struct webhooks {
    const struct config *cfg;
    struct store *store;
    struct outbox *outbox;
    struct ssrf_allow *allow;
    int schedule[CONFIG_RETRIES_MAX];
    int nschedule;
    pthread_mutex_t change_mu; /* serializes document changes and reloads */
    pthread_mutex_t mu;        /* guards hooks, nhooks, nenabled, ndisabled */
    struct hook *hooks;
    size_t nhooks;
    int nenabled, ndisabled;
    CURLM *multi;
    pthread_t thread;
    bool started;
    atomic_bool stop;
    atomic_bool running;
    atomic_bool kicked;
    atomic_bool loaded; /* the subscriptions were read at least once */
    atomic_int inflight;
    _Atomic int64_t outbox_depth;
    uint64_t rng;           /* jitter draws; dispatcher thread only */
    struct attempt *active; /* attempts in flight; dispatcher thread only */
};

/* ------------------------------------------------------------------------------------------ */
/* Subscription documents and the in-memory view                                               */

static int64_t doc_int(const json_t *doc, const char *key)
{
    const json_t *v = json_object_get(doc, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* Bits of the strings of array `key` looked up by fn; 0 when absent or empty. */
static unsigned doc_bits(const json_t *doc, const char *key, unsigned (*fn)(const char *))
{
    unsigned bits = 0;
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(doc, key), i, v) bits |= fn(json_string_value(v));
    return bits;
}

static unsigned event_bit(const char *name)
{
    if (name == NULL)
        return 0;
    if (strcmp(name, outbox_type_name(OUTBOX_ANOMALY)) == 0)
        return OUTBOX_ANOMALY;
    if (strcmp(name, outbox_type_name(OUTBOX_DECISION)) == 0)
        return OUTBOX_DECISION;
    return 0;
}

/* Fills h from a stored document; false (logged) when it is unusable. */
static bool hook_from_doc(const json_t *doc, struct hook *h)
{
    memset(h, 0, sizeof *h);
    const char *id = json_string_value(json_object_get(doc, "id"));
    const char *url = json_string_value(json_object_get(doc, "url"));
    const char *secret = json_string_value(json_object_get(doc, "secret"));
    if (id == NULL || url == NULL || secret == NULL || strlen(id) >= sizeof h->id ||
        strlen(url) >= sizeof h->url || whsign_parse_secret(secret, &h->key) != 0) {
        log_error("webhooks.bad_document", "stored subscription %s is unusable; skipped",
                  id ? id : "(no id)");
        return false;
    }
    snprintf(h->id, sizeof h->id, "%s", id);
    snprintf(h->url, sizeof h->url, "%s", url);
    h->enabled = json_is_true(json_object_get(doc, "enabled"));
    const char *prev = json_string_value(json_object_get(doc, "previous_secret"));
    h->prev_expires_ms = doc_int(doc, "previous_secret_expires_ms");
    h->has_prev = prev != NULL && whsign_parse_secret(prev, &h->prev) == 0;
    h->failing_since_ms = doc_int(doc, "failing_since_ms");
    return true;
}

/* Rereads every subscription; change_mu held. */
static int reload_locked(struct webhooks *w)
{
    json_t *items = NULL;
    int rv = store_webhook_list(w->store, &items);
    if (rv != 0)
        return rv;
    size_t n = json_array_size(items), nh = 0, nsubs = 0;
    struct hook *hooks = xcalloc(n ? n : 1, sizeof *hooks);
    struct outbox_sub *subs = xcalloc(n ? n : 1, sizeof *subs);
    int disabled = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *doc = json_array_get(items, i);
        if (!hook_from_doc(doc, &hooks[nh]))
            continue;
        if (!hooks[nh].enabled) {
            disabled++;
        } else {
            struct outbox_sub *s = &subs[nsubs++];
            memcpy(s->id, hooks[nh].id, sizeof s->id);
            s->events = doc_bits(doc, "event_types", event_bit);
            s->actions = doc_bits(doc, "actions", outbox_action_bit);
        }
        nh++;
    }
    json_decref(items);
    outbox_set(w->outbox, subs, nsubs);
    free(subs);
    pthread_mutex_lock(&w->mu);
    struct hook *old = w->hooks;
    w->hooks = hooks;
    w->nhooks = nh;
    w->nenabled = (int)nsubs;
    w->ndisabled = disabled;
    pthread_mutex_unlock(&w->mu);
    free(old);
    metrics_set(G_WEBHOOKS_DISABLED, disabled);
    if (!atomic_exchange(&w->loaded, true))
        log_info("webhooks.loaded", "%zu webhook subscriptions (%d disabled)", nh, disabled);
    return 0;
}

int webhooks_reload(struct webhooks *w)
{
    pthread_mutex_lock(&w->change_mu);
    int rv = reload_locked(w);
    pthread_mutex_unlock(&w->change_mu);
    return rv;
}

/* Writes doc back as subscription id; change_mu held. */
static int put_locked(struct webhooks *w, const char *id, json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT);
    if (text == NULL)
        return ERR_INTERNAL;
    struct store_webhook row = {id, doc_int(doc, "created_ms"),
                                json_is_true(json_object_get(doc, "enabled")), text};
    int64_t dropped = 0;
    int rv = store_webhook_update(w->store, &row, &dropped);
    free(text);
    if (dropped > 0) {
        metrics_add(M_WEBHOOK_DROPPED, (uint64_t)dropped);
        log_info("webhooks.dropped",
                 "%" PRId64 " pending deliveries of disabled subscription %s "
                 "dropped",
                 dropped, id);
    }
    return rv;
}

int webhooks_modify(struct webhooks *w, const char *id, webhooks_change_fn change, void *arg)
{
    pthread_mutex_lock(&w->change_mu);
    json_t *doc = NULL;
    int rv = store_webhook_get(w->store, id, &doc);
    if (rv == 0)
        rv = change(doc, arg);
    if (rv == 0) {
        json_object_set_new(doc, "updated_ms", json_integer(clock_wall_ms()));
        rv = put_locked(w, id, doc);
    }
    if (rv == 0)
        reload_locked(w);
    pthread_mutex_unlock(&w->change_mu);
    json_decref(doc);
    return rv;
}

int webhooks_create(struct webhooks *w, json_t *doc)
{
    const char *id = json_string_value(json_object_get(doc, "id"));
    char *text = json_dumps(doc, JSON_COMPACT);
    if (id == NULL || text == NULL) {
        free(text);
        return ERR_INVAL;
    }
    struct store_webhook row = {id, doc_int(doc, "created_ms"),
                                json_is_true(json_object_get(doc, "enabled")), text};
    pthread_mutex_lock(&w->change_mu);
    int rv = store_webhook_insert(w->store, &row, w->cfg->webhook_max_subscriptions);
    if (rv == 0)
        reload_locked(w);
    pthread_mutex_unlock(&w->change_mu);
    free(text);
    return rv;
}

int webhooks_delete(struct webhooks *w, const char *id)
{
    int64_t dropped = 0;
    pthread_mutex_lock(&w->change_mu);
    int rv = store_webhook_delete(w->store, id, &dropped);
    if (rv == 0)
        reload_locked(w);
    pthread_mutex_unlock(&w->change_mu);
    if (dropped > 0)
        metrics_add(M_WEBHOOK_DROPPED, (uint64_t)dropped);
    return rv;
}

json_t *webhooks_public_view(const json_t *doc)
{
    json_t *v = json_deep_copy(doc);
    json_object_del(v, "secret");
    json_object_del(v, "previous_secret");
    return v;
}

static void kick(struct webhooks *w)
{
    atomic_store(&w->kicked, true);
    curl_multi_wakeup(w->multi);
}

/* The pipeline's waker (outbox_set_waker). */
static void kick_cb(void *arg)
{
    kick(arg);
}

int webhooks_send_test(struct webhooks *w, const char *id, char msg_id[STORE_ID_MAX])
{
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return ERR_IO;
    snprintf(msg_id, STORE_ID_MAX, "msg_test_%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    int64_t now = clock_wall_ms();
    char when[32];
    outbox_rfc3339(now, when);
    json_t *body =
        json_pack("{s:s, s:s, s:{s:s, s:s}}", "type", WEBHOOK_EVENT_TEST, "timestamp", when, "data",
                  "webhook_id", id, "message", "a test delivery requested through the API");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    pthread_mutex_lock(&w->change_mu);
    json_t *doc = NULL;
    int rv = store_webhook_get(w->store, id, &doc);
    if (rv == 0 && !json_is_true(json_object_get(doc, "enabled")))
        rv = ERR_CLOSED;
    if (rv == 0) {
        struct store_outbox row = {id, msg_id, WEBHOOK_EVENT_TEST, text, now};
        rv = store_outbox_put(w->store, &row, 1);
    }
    pthread_mutex_unlock(&w->change_mu);
    json_decref(doc);
    free(text);
    if (rv == 0)
        kick(w);
    return rv;
}

/* ------------------------------------------------------------------------------------------ */
/* Retry policy and failure bookkeeping                                                         */

int64_t webhooks_retry_delay_ms(const int *schedule, int nschedule, double jitter, int attempt,
                                double u)
{
    if (attempt < 1 || attempt > nschedule)
        return -1;
    double factor = 1.0 + jitter * (2.0 * u - 1.0);
    double ms = (double)schedule[attempt - 1] * 1000.0 * factor;
    return ms < 1.0 ? 1 : (int64_t)ms;
}

/* A uniform draw in [0, 1) (xorshift64*; jitter needs spread, not secrecy). */
static double draw(struct webhooks *w)
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return (double)((w->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

struct streak_change {
    int64_t failing_since_ms; /* new value; 0 clears it */
    const char *disable;      /* non-NULL: disable with this reason */
};

static int apply_streak(json_t *doc, void *arg)
{
    const struct streak_change *c = arg;
    if (c->disable) {
        if (!json_is_true(json_object_get(doc, "enabled")))
            return ERR_EXISTS; /* already disabled: nothing to write */
        json_object_set_new(doc, "enabled", json_false());
        json_object_set_new(doc, "disabled_reason", json_string(c->disable));
    }
    json_object_set_new(doc, "failing_since_ms",
                        c->failing_since_ms ? json_integer(c->failing_since_ms) : json_null());
    return 0;
}

/* Updates the subscription after an attempt: a success ends a failure streak, a failure starts
 * one or, once it has lasted webhook_disable_after_s, disables the subscription; 410 disables it
 * at once. Writes only on those transitions. */
static void track_outcome(struct webhooks *w, const struct hook *h, const char *outcome,
                          int64_t now)
{
    struct streak_change c = {0, NULL};
    char reason[128];
    if (strcmp(outcome, "delivered") == 0) {
        if (h->failing_since_ms == 0)
            return;
    } else if (strcmp(outcome, "gone") == 0) {
        c.failing_since_ms = h->failing_since_ms ? h->failing_since_ms : now;
        c.disable = "the endpoint answered 410 Gone";
    } else if (h->failing_since_ms == 0) {
        c.failing_since_ms = now;
    } else if (now - h->failing_since_ms >= (int64_t)w->cfg->webhook_disable_after_s * 1000) {
        char since[32];
        outbox_rfc3339(h->failing_since_ms, since);
        snprintf(reason, sizeof reason, "deliveries failed continuously since %s", since);
        c.failing_since_ms = h->failing_since_ms;
        c.disable = reason;
    } else {
        return;
    }
    int rv = webhooks_modify(w, h->id, apply_streak, &c);
    if (rv == 0 && c.disable) {
        metrics_inc(M_WEBHOOK_AUTO_DISABLED);
        log_warn("webhooks.disabled", "subscription %s disabled: %s", h->id, c.disable);
    } else if (rv != 0 && rv != ERR_EXISTS && rv != ERR_NOTFOUND) {
        log_error("webhooks.track_failed", "cannot update subscription %s: %s", h->id, err_str(rv));
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Attempts                                                                                     */

/* A copy of subscription id from the table; false when it is not there. */
static bool hook_get(struct webhooks *w, const char *id, struct hook *out)
{
    bool found = false;
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->nhooks && !found; i++) {
        if (strcmp(w->hooks[i].id, id) == 0) {
            *out = w->hooks[i];
            found = true;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return found;
}

/* libcurl's socket opener: the SSRF check on the address it is about to connect to. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    struct attempt *a = clientp;
    char why[160];
    (void)purpose;
    if (ssrf_check_addr(&addr->addr, a->w->allow, why, sizeof why) != SSRF_ALLOWED) {
        snprintf(a->blocked, sizeof a->blocked, "connection refused by the SSRF guard: %s", why);
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype, addr->protocol);
}

/* Response bodies are not kept: only counted past. */
static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    (void)ptr;
    (void)userdata;
    return size * nmemb;
}

static void attempt_free(struct attempt *a)
{
    if (a == NULL)
        return;
    if (a->easy) {
        curl_multi_remove_handle(a->w->multi, a->easy);
        curl_easy_cleanup(a->easy);
    }
    if (a->prev)
        a->prev->next = a->next;
    else if (a->w->active == a)
        a->w->active = a->next;
    if (a->next)
        a->next->prev = a->prev;
    curl_slist_free_all(a->headers);
    store_claims_free(&a->claim, 1);
    free(a);
}

static void add_header(struct attempt *a, const char *fmt, const char *value)
{
    char line[WHSIGN_SIG_MAX * 2 + 64];
    snprintf(line, sizeof line, fmt, value);
    a->headers = curl_slist_append(a->headers, line);
}

/* The signature header: one entry per secret that is valid now. */
static void sign(const struct hook *h, const struct attempt *a, int64_t now, char *out,
                 size_t outlen)
{
    char sig[WHSIGN_SIG_MAX], prev[WHSIGN_SIG_MAX];
    int64_t ts = a->ts_ms / 1000;
    whsign_sign(&h->key, a->claim.msg_id, ts, a->claim.payload, a->claim.payload_len, sig);
    if (h->has_prev && h->prev_expires_ms > now) {
        whsign_sign(&h->prev, a->claim.msg_id, ts, a->claim.payload, a->claim.payload_len, prev);
        snprintf(out, outlen, "%s %s", sig, prev);
    } else {
        snprintf(out, outlen, "%s", sig);
    }
}

/* Records the attempt's outcome, settles its row, counts it, and tracks the subscription. */
static void settle(struct webhooks *w, struct attempt *a, const struct hook *h, int status,
                   const char *error, int retry_after_s)
{
    int64_t now = clock_wall_ms();
    double latency_ms = (double)(clock_mono_ns() - a->started_ns) / 1e6;
    const char *outcome;
    int64_t retry_at = 0;
    if (error == NULL && status >= 200 && status < 300) {
        outcome = "delivered";
    } else if (error == NULL && status == 410) {
        outcome = "gone";
    } else {
        int64_t delay = webhooks_retry_delay_ms(
            w->schedule, w->nschedule, w->cfg->webhook_retry_jitter, a->claim.attempt, draw(w));
        if (delay >= 0 && retry_after_s > 0 && (status == 429 || status >= 500)) {
            int64_t ra = retry_after_s > w->cfg->webhook_retry_after_max_s
                             ? w->cfg->webhook_retry_after_max_s
                             : retry_after_s;
            if (ra * 1000 > delay)
                delay = ra * 1000;
        }
        outcome = delay >= 0 ? "retry" : "exhausted";
        retry_at = delay >= 0 ? now + delay : 0;
    }
    char http_error[64] = "";
    if (error == NULL && strcmp(outcome, "delivered") != 0) {
        snprintf(http_error, sizeof http_error, "HTTP %d%s", status,
                 status >= 300 && status < 400 ? " (redirects are not followed)" : "");
        error = http_error;
    }
    struct store_attempt rec = {.outbox_id = a->claim.id,
                                .webhook_id = a->claim.webhook_id,
                                .msg_id = a->claim.msg_id,
                                .event_type = a->claim.event_type,
                                .attempt = a->claim.attempt,
                                .ts_ms = a->ts_ms,
                                .status_code = status,
                                .latency_ms = latency_ms,
                                .outcome = outcome,
                                .error = error ? error : "",
                                .retry_at_ms = retry_at};
    int rv = store_outbox_finish(w->store, &rec, w->cfg->webhook_deliveries_keep);
    if (rv == ERR_NOTFOUND)
        return; /* the subscription was deleted or disabled meanwhile */
    if (rv != 0)
        log_error("webhooks.finish_failed",
                  "cannot record attempt %d of %s to %s (%s); it will be retried after its lease",
                  a->claim.attempt, a->claim.msg_id, a->claim.webhook_id, err_str(rv));
    metrics_observe(H_WEBHOOK_ATTEMPT, latency_ms / 1000.0);
    metrics_inc(strcmp(outcome, "delivered") == 0   ? M_WEBHOOK_DELIVERED
                : strcmp(outcome, "gone") == 0      ? M_WEBHOOK_GONE
                : strcmp(outcome, "exhausted") == 0 ? M_WEBHOOK_EXHAUSTED
                                                    : M_WEBHOOK_RETRY);
    if (strcmp(outcome, "delivered") != 0)
        log_info("webhooks.attempt_failed", "%s attempt %d to %s: %s (%s)", a->claim.msg_id,
                 a->claim.attempt, a->claim.webhook_id, error, outcome);
    if (h)
        track_outcome(w, h, outcome, now);
}

/* Starts one attempt for a claimed row (the claim moves into the attempt). */
static void attempt_start(struct webhooks *w, struct store_claim *claim)
{
    struct attempt *a = xcalloc(1, sizeof *a);
    a->w = w;
    a->claim = *claim;
    claim->payload = NULL;
    a->started_ns = clock_mono_ns();
    a->ts_ms = clock_wall_ms();
    struct hook h;
    char why[160];
    if (!hook_get(w, a->claim.webhook_id, &h)) {
        webhooks_reload(w);
        if (!hook_get(w, a->claim.webhook_id, &h)) {
            /* deleted between the claim and now: its row went with it */
            attempt_free(a);
            return;
        }
    }
    if (ssrf_check_url(h.url, w->allow, NULL, why, sizeof why) != SSRF_ALLOWED) {
        char error[200];
        snprintf(error, sizeof error, "URL refused by the SSRF guard: %s", why);
        settle(w, a, &h, 0, error, 0);
        attempt_free(a);
        return;
    }
    char sig[WHSIGN_SIG_MAX * 2 + 2], ts[24];
    sign(&h, a, a->ts_ms, sig, sizeof sig);
    snprintf(ts, sizeof ts, "%" PRId64, a->ts_ms / 1000);
    add_header(a, "%s", "Content-Type: application/json");
    add_header(a, "webhook-id: %s", a->claim.msg_id);
    add_header(a, "webhook-timestamp: %s", ts);
    add_header(a, "webhook-signature: %s", sig);
    add_header(a, "User-Agent: aetherisd/%s", AETHERIS_VERSION);
    add_header(a, "%s", "Expect:");

    CURL *e = curl_easy_init();
    if (e == NULL || a->headers == NULL) {
        if (e)
            curl_easy_cleanup(e);
        settle(w, a, &h, 0, "out of memory starting the attempt", 0);
        attempt_free(a);
        return;
    }
    a->easy = e;
    curl_easy_setopt(e, CURLOPT_URL, h.url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, a->claim.payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)a->claim.payload_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)w->cfg->webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, a);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, a->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, a);
    if (curl_multi_add_handle(w->multi, e) != CURLM_OK) {
        settle(w, a, &h, 0, "cannot start the transfer", 0);
        attempt_free(a);
        return;
    }
    a->next = w->active;
    if (w->active)
        w->active->prev = a;
    w->active = a;
    atomic_fetch_add(&w->inflight, 1);
}

/* Settles a finished transfer. */
static void attempt_done(struct webhooks *w, CURL *e, CURLcode res)
{
    struct attempt *a = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&a);
    long status = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after);
    const char *error = NULL;
    if (res != CURLE_OK)
        error = a->blocked[0] ? a->blocked : a->errbuf[0] ? a->errbuf : curl_easy_strerror(res);
    struct hook h;
    bool known = hook_get(w, a->claim.webhook_id, &h);
    settle(w, a, known ? &h : NULL, res == CURLE_OK ? (int)status : 0, error,
           retry_after > 0 && retry_after < INT32_MAX ? (int)retry_after : 0);
    attempt_free(a);
    atomic_fetch_sub(&w->inflight, 1);
}

static void reap(struct webhooks *w)
{
    CURLMsg *m;
    int left = 0;
    while ((m = curl_multi_info_read(w->multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE)
            attempt_done(w, m->easy_handle, m->data.result);
}

/* Claims due rows into free slots and starts them; returns when the next claim should be. */
static int64_t claim_and_start(struct webhooks *w, int64_t now)
{
    int room = w->cfg->webhook_max_inflight - atomic_load(&w->inflight);
    if (room <= 0)
        return now + POLL_MAX_MS; /* a finishing attempt asks again */
    struct store_claim *c = xcalloc((size_t)room, sizeof *c);
    int n = 0;
    int64_t lease = now + w->cfg->webhook_timeout_ms + LEASE_MARGIN_MS;
    int rv = store_outbox_claim(w->store, now, lease, room, c, &n);
    for (int i = 0; i < n; i++)
        attempt_start(w, &c[i]);
    store_claims_free(c, n);
    free(c);
    if (rv != 0)
        return now + RETRY_STORE_MS;
    if (n == room)
        return now; /* there may be more due rows */
    int64_t due = 0;
    rv = store_outbox_next_due(w->store, &due);
    if (rv != 0 || due > now + POLL_MAX_MS)
        return now + POLL_MAX_MS;
    return due;
}

static void refresh_gauge(struct webhooks *w)
{
    int64_t n = store_count(w->store, "webhook_outbox");
    atomic_store(&w->outbox_depth, n);
    if (n >= 0)
        metrics_set(G_WEBHOOK_OUTBOX, n);
}

/* Shutdown: lets attempts in flight finish within the bound, then gives the rest back. */
static void drain(struct webhooks *w)
{
    int bound = w->cfg->drain_timeout_ms < w->cfg->webhook_timeout_ms ? w->cfg->drain_timeout_ms
                                                                      : w->cfg->webhook_timeout_ms;
    int64_t deadline = clock_mono_ms() + bound;
    while (atomic_load(&w->inflight) > 0 && clock_mono_ms() < deadline) {
        int running = 0;
        curl_multi_perform(w->multi, &running);
        reap(w);
        curl_multi_poll(w->multi, NULL, 0, 100, NULL);
    }
    int nleft = 0;
    while (w->active != NULL) {
        struct attempt *a = w->active;
        store_outbox_release(w->store, a->claim.id, clock_wall_ms());
        attempt_free(a);
        atomic_fetch_sub(&w->inflight, 1);
        nleft++;
    }
    if (nleft > 0)
        log_info("webhooks.released",
                 "%d attempts still in flight at shutdown given back to "
                 "the outbox",
                 nleft);
}

static void *dispatcher_run(void *arg)
{
    struct webhooks *w = arg;
    thread_name("webhooks");
    int64_t next_claim = 0, next_gauge = 0;
    while (!atomic_load(&w->stop)) {
        int64_t now = clock_wall_ms();
        if (atomic_exchange(&w->kicked, false))
            next_claim = now;
        if (now >= next_claim)
            next_claim = claim_and_start(w, now);
        int running = 0;
        int before = atomic_load(&w->inflight);
        curl_multi_perform(w->multi, &running);
        reap(w);
        if (atomic_load(&w->inflight) < before && next_claim > now)
            next_claim = now; /* a slot came free: rows may be waiting for it */
        if (clock_mono_ms() >= next_gauge) {
            if (!atomic_load(&w->loaded))
                webhooks_reload(w); /* the store was down at start */
            refresh_gauge(w);
            next_gauge = clock_mono_ms() + GAUGE_PERIOD_MS;
        }
        now = clock_wall_ms();
        int64_t wait = next_claim - now;
        if (wait > POLL_MAX_MS)
            wait = POLL_MAX_MS;
        if (wait > 0)
            curl_multi_poll(w->multi, NULL, 0, (int)wait, NULL);
    }
    drain(w);
    refresh_gauge(w);
    atomic_store(&w->running, false);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Life cycle                                                                                   */

struct webhooks *webhooks_new(const struct config *cfg, struct store *store, struct outbox *outbox,
                              char *err, size_t errlen)
{
    struct webhooks *w = xcalloc(1, sizeof *w);
    w->cfg = cfg;
    w->store = store;
    w->outbox = outbox;
    pthread_mutex_init(&w->change_mu, NULL);
    pthread_mutex_init(&w->mu, NULL);
    atomic_init(&w->stop, false);
    atomic_init(&w->running, false);
    atomic_init(&w->kicked, false);
    atomic_init(&w->loaded, false);
    atomic_init(&w->inflight, 0);
    atomic_init(&w->outbox_depth, 0);
    w->rng = (uint64_t)clock_mono_ns() | 1;
    char why[256];
    w->nschedule = config_retry_schedule(cfg->webhook_retry_schedule, w->schedule, why, sizeof why);
    w->allow = ssrf_allow_parse(cfg->webhook_allow_cidrs, why, sizeof why);
    if (w->nschedule < 0 || w->allow == NULL) {
        snprintf(err, errlen, "%s", why);
        webhooks_free(w);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
        (w->multi = curl_multi_init()) == NULL) {
        snprintf(err, errlen, "cannot initialize libcurl for webhook deliveries");
        webhooks_free(w);
        return NULL;
    }
    int rv = webhooks_reload(w);
    if (rv != 0)
        log_warn("webhooks.load_failed",
                 "cannot load webhook subscriptions (%s); retrying every second until the "
                 "store answers (events meanwhile reach no subscription)",
                 err_str(rv));
    outbox_set_waker(outbox, kick_cb, w);
    atomic_store(&w->running, true);
    if (pthread_create(&w->thread, NULL, dispatcher_run, w) != 0) {
        atomic_store(&w->running, false);
        snprintf(err, errlen, "cannot start the webhook dispatcher thread");
        webhooks_free(w);
        return NULL;
    }
    w->started = true;
    return w;
}

void webhooks_free(struct webhooks *w)
{
    if (w == NULL)
        return;
    if (w->outbox)
        outbox_set_waker(w->outbox, NULL, NULL);
    if (w->started) {
        atomic_store(&w->stop, true);
        curl_multi_wakeup(w->multi);
        pthread_join(w->thread, NULL);
    }
    if (w->multi) {
        curl_multi_cleanup(w->multi);
        curl_global_cleanup();
    }
    ssrf_allow_free(w->allow);
    free(w->hooks);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->change_mu);
    free(w);
}

const struct ssrf_allow *webhooks_allow(const struct webhooks *w)
{
    return w->allow;
}

void webhooks_health(struct webhooks *w, struct webhooks_health *out)
{
    out->running = atomic_load(&w->running);
    out->inflight = atomic_load(&w->inflight);
    out->outbox = atomic_load(&w->outbox_depth);
    pthread_mutex_lock(&w->mu);
    out->enabled = w->nenabled;
    out->disabled = w->ndisabled;
    pthread_mutex_unlock(&w->mu);
}
