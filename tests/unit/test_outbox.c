/* Webhook fan-out: which subscriptions an anomaly or decision goes to (event type and action
 * filters), the Standard Webhooks envelope built around the stored document, the message id
 * derived from the event, the waker, and replacement of the subscription set while other
 * threads match (run under TSan by `make tsan` with the other threaded tests). */
#include "outbox.h"
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <jansson.h>
#include <stdio.h>
#include "tap.h"

static struct outbox_sub sub(const char *id, unsigned events, unsigned actions)
{
    struct outbox_sub s = {.events = events, .actions = actions};
    snprintf(s.id, sizeof s.id, "%s", id);
    return s;
}

static int wakes;
static void count_wake(void *arg)
{
    (void)arg;
    wakes++;
}

static atomic_bool stop;
static struct outbox_sub subs[4];

/* Matches BLOCK decisions while the set changes; each result must be what some prefix of subs
 * gives (the set is always replaced by a prefix): returns how many were not. */
static void *matcher(void *arg)
{
    struct outbox *o = arg;
    long wrong = 0;
    while (!atomic_load(&stop)) {
        struct outbox_event ev;
        outbox_match(o, OUTBOX_DECISION, "BLOCK", 1, 0, "{}", 2, &ev);
        for (size_t i = 0; i < ev.nrows; i++)
            wrong += strcmp(ev.rows[i].webhook_id, subs[i].id) != 0;
        wrong += ev.nrows > 3;
        outbox_event_free(&ev);
    }
    return (void *)wrong;
}

int main(void)
{
    struct outbox *o = outbox_new();
    struct outbox_event ev;
    outbox_match(o, OUTBOX_ANOMALY, NULL, 7, 0, "{}", 2, &ev);
    ok(ev.nrows == 0 && ev.body == NULL && ev.rows == NULL, "no subscriptions: nothing built");
    outbox_event_free(&ev);

    subs[0] = sub("wh_all", OUTBOX_ANOMALY | OUTBOX_DECISION, 0);
    subs[1] = sub("wh_block", OUTBOX_DECISION, OUTBOX_BLOCK);
    subs[2] = sub("wh_review_block", OUTBOX_DECISION, OUTBOX_REVIEW | OUTBOX_BLOCK);
    subs[3] = sub("wh_anomalies", OUTBOX_ANOMALY, OUTBOX_BLOCK); /* no filter on anomalies */
    outbox_set(o, subs, 4);
    is_int(outbox_count(o), 4, "four subscriptions");

    const char *doc = "{\"transactionId\":42,\"zScore\":3.5}";
    outbox_match(o, OUTBOX_ANOMALY, NULL, 42, 1700000000123LL, doc, strlen(doc), &ev);
    ok(ev.nrows == 2 && strcmp(ev.rows[0].webhook_id, "wh_all") == 0 &&
           strcmp(ev.rows[1].webhook_id, "wh_anomalies") == 0,
       "an anomaly goes to the anomaly subscriptions, whatever their action filter");
    is_str(ev.msg_id, "msg_anomaly_42", "message id derived from the event");
    json_error_t jerr;
    json_t *body = json_loads(ev.body, 0, &jerr);
    ok(body != NULL, "the body is JSON (%s)", body ? "" : jerr.text);
    is_str(json_string_value(json_object_get(body, "type")), "anomaly.detected", "type");
    is_str(json_string_value(json_object_get(body, "timestamp")), "2023-11-14T22:13:20.123Z",
           "timestamp in RFC 3339 with milliseconds");
    ok(json_integer_value(json_object_get(json_object_get(body, "data"), "transactionId")) == 42,
       "data is the stored document");
    json_decref(body);
    ok(ev.rows[0].payload == ev.body && ev.rows[1].msg_id == ev.msg_id &&
           ev.rows[0].created_ms == 1700000000123LL &&
           strcmp(ev.rows[0].event_type, "anomaly.detected") == 0,
       "rows share the body and message id, due at the event time");
    outbox_event_free(&ev);
    outbox_event_free(&ev);
    ok(ev.body == NULL, "free twice is safe");

    static const struct {
        const char *action;
        size_t want;
    } by_action[] = {{"APPROVE", 1}, {"REVIEW", 2}, {"BLOCK", 3}, {"NOPE", 1}};
    for (size_t i = 0; i < sizeof by_action / sizeof by_action[0]; i++) {
        outbox_match(o, OUTBOX_DECISION, by_action[i].action, 9, 0, "{}", 2, &ev);
        is_int(ev.nrows, by_action[i].want, "a %s decision matches %zu subscriptions",
               by_action[i].action, by_action[i].want);
        if (ev.nrows > 0)
            is_str(ev.msg_id, "msg_decision_9", "decision message id");
        outbox_event_free(&ev);
    }
    char when[32];
    outbox_rfc3339(-1, when);
    is_str(when, "1969-12-31T23:59:59.999Z", "times before the epoch round down");

    outbox_wake(o); /* no waker: nothing happens */
    outbox_set_waker(o, count_wake, NULL);
    outbox_wake(o);
    outbox_wake(o);
    outbox_set_waker(o, NULL, NULL);
    outbox_wake(o);
    is_int(wakes, 2, "the waker runs while registered");

    /* the set replaced while two threads match */
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, matcher, o);
    for (int round = 0; round < 2000; round++)
        outbox_set(o, subs, (size_t)(round % 5));
    atomic_store(&stop, true);
    long wrong = 0;
    for (int i = 0; i < 2; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        wrong += (long)r;
    }
    is_int(wrong, 0, "matching during 2000 replacements always saw one whole set");
    outbox_set(o, NULL, 0);
    is_int(outbox_count(o), 0, "emptied");
    outbox_free(o);
    outbox_free(NULL);
    return done_testing();
}
