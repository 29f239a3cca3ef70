/* The webhook dispatcher's pure parts: the retry delay after each failed attempt (the schedule,
 * jitter at both ends of its range, the end of the schedule) and the public view of a
 * subscription (secrets removed, everything else kept). The dispatcher itself runs against a
 * real receiver in tests/e2e/test_webhooks.py. */
#include "webhooks.h"
#include <string.h>
#include "tap.h"

int main(void)
{
    const int schedule[] = {5, 300, 1800};
    is_int(webhooks_retry_delay_ms(schedule, 3, 0, 1, 0.7), 5000, "no jitter: attempt 1 -> 5 s");
    is_int(webhooks_retry_delay_ms(schedule, 3, 0, 3, 0.1), 1800000, "attempt 3 -> 30 min");
    is_int(webhooks_retry_delay_ms(schedule, 3, 0, 4, 0.5), -1, "past the schedule: give up");
    is_int(webhooks_retry_delay_ms(schedule, 3, 0, 0, 0.5), -1, "attempt 0 is not an attempt");
    is_int(webhooks_retry_delay_ms(schedule, 0, 0.2, 1, 0.5), -1, "an empty schedule: no retry");
    is_int(webhooks_retry_delay_ms(schedule, 3, 0.2, 2, 0.0), 240000, "jitter low end: -20%%");
    is_int(webhooks_retry_delay_ms(schedule, 3, 0.2, 2, 0.5), 300000, "jitter middle: exact");
    int64_t hi = webhooks_retry_delay_ms(schedule, 3, 0.2, 2, 0.999999);
    ok(hi > 359990 && hi < 360000, "jitter high end: just under +20%% (%lld)", (long long)hi);
    is_int(webhooks_retry_delay_ms(schedule, 3, 1.0, 1, 0.0), 1, "full jitter never gives 0 ms");

    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:b}", "id", "wh_1", "url", "http://x/", "secret",
                            "whsec_a", "previous_secret", "whsec_b", "enabled", 1);
    json_t *view = webhooks_public_view(doc);
    ok(json_object_get(view, "secret") == NULL && json_object_get(view, "previous_secret") == NULL,
       "the public view has no secrets");
    ok(json_object_size(view) == 3 && json_is_true(json_object_get(view, "enabled")),
       "and everything else");
    ok(json_object_get(doc, "secret") != NULL, "the document itself is left alone");
    json_decref(view);
    json_decref(doc);
    return done_testing();
}
