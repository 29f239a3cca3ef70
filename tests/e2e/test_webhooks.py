"""Webhook subscriptions against the real stack and a receiver on loopback. The receiver
verifies every Standard Webhooks signature itself (HMAC-SHA256 over id.timestamp.body, written
here from the specification, not with the daemon's code), counts requests per webhook-id, and
answers what each test scripts: 2xx, 500, 429 with Retry-After, 302, 410, or a stall past the
attempt timeout. Covered: signed anomaly and decision deliveries, type and action filters,
the retry schedule (shortened by configuration), Retry-After, redirects not followed, 410
disabling, timeouts, pending deliveries surviving a restart and delivered once each, secret
rotation with both signatures during the grace period, the connect-time SSRF check, and the
API's validation."""
import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.publish as publish

from conftest import free_port, wait_until

LOOPBACK = "127.0.0.0/8,::1/128"
FAST = {"webhook_allow_cidrs": LOOPBACK, "webhook_retry_jitter": 0}


def signature_ok(secret, msg_id, ts, body, header):
    """True when one of the space-separated v1 signatures in header is body's under secret."""
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    want = "v1," + base64.b64encode(mac).decode()
    return any(hmac.compare_digest(want, s) for s in header.split(" "))


class Receiver:
    """An HTTP receiver on 127.0.0.1 recording every POST: (path, headers, body, time)."""

    def __init__(self, port=None):
        self.lock = threading.Lock()
        self.requests = []
        self.script = {}  # path -> list of answers consumed in order; then default 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((self.path, dict(self.headers), body,
                                              time.monotonic()))
                    queue = receiver.script.get(self.path, [])
                    answer = queue.pop(0) if queue else 204
                if answer == "stall":
                    time.sleep(3)
                    answer = 204
                status, headers = (answer, {}) if isinstance(answer, int) else answer
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the daemon gave up on a stalled attempt

        self.port = port or free_port()  # a given port: a receiver coming back after a stop
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def got(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r[0] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def publish_case(port, account, first, amount):
    """Twelve ordinary amounts then `amount` for one account; returns the last id."""
    msgs = [(f"aetheris/transactions/{account}/{first + i}",
             json.dumps({"transactionId": first + i, "accountOrigin": account,
                         "amount": 100 + i}), 1, False) for i in range(12)]
    last = first + 12
    msgs.append((f"aetheris/transactions/{account}/{last}",
                 json.dumps({"transactionId": last, "accountOrigin": account,
                             "amount": amount}), 1, False))
    publish.multiple(msgs, hostname="127.0.0.1", port=port)
    return last


def create(d, url, **fields):
    status, hdrs, body = d.request("POST", "/v1/webhooks", {"url": url, **fields})
    assert status == 201, body
    assert body["secret"].startswith("whsec_") and hdrs["Location"] == f"/v1/webhooks/{body['id']}"
    return body


def attempts(d, hook_id):
    status, body = d.get(f"/v1/webhooks/{hook_id}/deliveries?limit=100")
    assert status == 200, body
    return list(reversed(body["items"]))  # oldest first


def test_signed_deliveries_and_filters(stack):
    """Invariant: an anomaly and its decision reach every subscription that wants them, signed
    with its secret, with webhook-id derived from the event; an action filter passes only its
    decisions and no anomalies to a decisions-only subscription; secrets are never listed."""
    rx = Receiver()
    try:
        d = stack.start_daemon(FAST)
        everything = create(d, rx.url("/all"), description="all events")
        blocks = create(d, rx.url("/blocks"), event_types=["decision.created"],
                        actions=["BLOCK"])
        status, listing = d.get("/v1/webhooks")
        assert status == 200 and len(listing["items"]) == 2
        assert all("secret" not in h and "previous_secret" not in h for h in listing["items"])
        assert "secret" not in d.get(f"/v1/webhooks/{blocks['id']}")[1]

        huge = publish_case(stack.mosq.port, "W1", 1000, 90000)   # BLOCK
        mild = publish_case(stack.mosq.port, "W2", 2000, 200)     # not BLOCK
        wait_until(lambda: len(rx.got("/all")) >= 4, 30, "four deliveries to /all")
        wait_until(lambda: d.get(f"/v1/decisions/{mild}")[0] == 200, 10, "the mild decision")
        mild_action = d.get(f"/v1/decisions/{mild}")[1]["action"]
        assert mild_action != "BLOCK", "the case meant to be milder was blocked"
        time.sleep(1)  # a delivery that should not happen would have happened by now

        seen = {}
        for path, hdrs, body, _ in rx.got("/all"):
            assert signature_ok(everything["secret"], hdrs["webhook-id"],
                                hdrs["webhook-timestamp"], body, hdrs["webhook-signature"])
            assert hdrs["Content-Type"] == "application/json"
            doc = json.loads(body)
            assert abs(int(hdrs["webhook-timestamp"]) - time.time()) < 60
            seen[hdrs["webhook-id"]] = doc
        assert set(seen) == {f"msg_anomaly_{huge}", f"msg_decision_{huge}",
                             f"msg_anomaly_{mild}", f"msg_decision_{mild}"}
        anomaly, decision = seen[f"msg_anomaly_{huge}"], seen[f"msg_decision_{huge}"]
        assert anomaly["type"] == "anomaly.detected" and anomaly["data"]["transactionId"] == huge
        assert decision["type"] == "decision.created" and decision["data"]["action"] == "BLOCK"
        assert decision["timestamp"].endswith("Z")

        only = rx.got("/blocks")
        assert [h["webhook-id"] for _, h, _, _ in only] == [f"msg_decision_{huge}"]
        assert signature_ok(blocks["secret"], only[0][1]["webhook-id"],
                            only[0][1]["webhook-timestamp"], only[0][2],
                            only[0][1]["webhook-signature"])
        assert not signature_ok(everything["secret"], only[0][1]["webhook-id"],
                                only[0][1]["webhook-timestamp"], only[0][2],
                                only[0][1]["webhook-signature"])

        rows = attempts(d, everything["id"])
        assert len(rows) == 4 and all(r["outcome"] == "delivered" and r["status_code"] == 204
                                      and r["attempt"] == 1 for r in rows)
        c = d.counters()
        assert c["webhook_delivered"] == 5
        wait_until(lambda: d.get("/v1/metrics")[1]["gauges"]["webhook_outbox_depth"] == 0, 5,
                   "an empty outbox")
        health = d.get("/v1/health")[1]["components"]["webhooks"]
        assert health["status"] == "up" and health["enabled"] == 2 and health["disabled"] == 0
    finally:
        rx.close()


def test_retry_schedule_retry_after_and_redirects(stack):
    """Invariant: a failing receiver is retried after each delay of the schedule with the same
    webhook-id and a fresh timestamp, then given up ("exhausted"); Retry-After on a 429 is
    honoured when longer than the schedule; a 302 is a failure and is not followed."""
    rx = Receiver()
    try:
        d = stack.start_daemon({**FAST, "webhook_retry_schedule": "1,2"})
        failing = create(d, rx.url("/fail"))
        rx.script["/fail"] = [500, 503, 500]
        status, _, body = d.request("POST", f"/v1/webhooks/{failing['id']}/test")
        assert status == 202 and body["msg_id"].startswith("msg_test_")
        wait_until(lambda: len(attempts(d, failing["id"])) == 3, 15, "three attempts")
        got = rx.got("/fail")
        assert len(got) == 3
        assert {h["webhook-id"] for _, h, _, _ in got} == {body["msg_id"]}
        gaps = [got[i + 1][3] - got[i][3] for i in range(2)]
        assert 0.9 <= gaps[0] < 2.5 and 1.9 <= gaps[1] < 3.5, gaps
        rows = attempts(d, failing["id"])
        assert [r["outcome"] for r in rows] == ["retry", "retry", "exhausted"]
        assert [r["status_code"] for r in rows] == [500, 503, 500]
        assert rows[0]["error"] == "HTTP 500" and [r["attempt"] for r in rows] == [1, 2, 3]
        time.sleep(2.5)
        assert len(rx.got("/fail")) == 3, "an exhausted delivery was attempted again"

        limited = create(d, rx.url("/limited"))
        rx.script["/limited"] = [(429, {"Retry-After": "3"})]
        d.request("POST", f"/v1/webhooks/{limited['id']}/test")
        wait_until(lambda: len(rx.got("/limited")) == 2, 15, "the retry after Retry-After")
        got = rx.got("/limited")
        assert got[1][3] - got[0][3] >= 2.9, "Retry-After: 3 was not honoured"
        assert [r["outcome"] for r in attempts(d, limited["id"])] == ["retry", "delivered"]

        moved = create(d, rx.url("/moved"))
        rx.script["/moved"] = [(302, {"Location": rx.url("/elsewhere")})]
        d.request("POST", f"/v1/webhooks/{moved['id']}/test")
        wait_until(lambda: len(attempts(d, moved["id"])) >= 1, 10, "the redirected attempt")
        first = attempts(d, moved["id"])[0]
        assert first["outcome"] == "retry" and first["status_code"] == 302
        assert "redirect" in first["error"]
        assert rx.got("/elsewhere") == []
        assert d.counters()["webhook_exhausted"] == 1
    finally:
        rx.close()


def test_gone_disables_and_timeouts_retry(stack):
    """Invariant: 410 disables the subscription at once (no further deliveries, reason shown,
    gauge and health count it) until it is re-enabled; an attempt that outlives
    webhook_timeout_ms fails with a timeout and is retried."""
    rx = Receiver()
    try:
        d = stack.start_daemon({**FAST, "webhook_retry_schedule": "1",
                                "webhook_timeout_ms": 500})
        gone = create(d, rx.url("/gone"))
        rx.script["/gone"] = [410]
        d.request("POST", f"/v1/webhooks/{gone['id']}/test")
        wait_until(lambda: d.get(f"/v1/webhooks/{gone['id']}")[1]["enabled"] is False, 10,
                   "the subscription disabled by 410")
        hook = d.get(f"/v1/webhooks/{gone['id']}")[1]
        assert "410" in hook["disabled_reason"]
        assert [r["outcome"] for r in attempts(d, gone["id"])] == ["gone"]
        status, _, body = d.request("POST", f"/v1/webhooks/{gone['id']}/test")
        assert status == 409 and "disabled" in body["detail"]
        publish_case(stack.mosq.port, "W3", 3000, 90000)
        wait_until(lambda: d.get("/v1/metrics")[1]["gauges"]["webhooks_disabled"] == 1, 5,
                   "the disabled gauge")
        assert d.get("/v1/health")[1]["components"]["webhooks"]["disabled"] == 1
        assert d.counters()["webhook_disabled"] == 1

        status, _, body = d.request("PATCH", f"/v1/webhooks/{gone['id']}", {"enabled": True})
        assert status == 200 and body["enabled"] and body["disabled_reason"] is None
        d.request("POST", f"/v1/webhooks/{gone['id']}/test")
        wait_until(lambda: len(rx.got("/gone")) == 2, 10, "delivery after re-enabling")
        assert len(rx.got("/gone")) == 2, "events of the disabled period were delivered"

        slow = create(d, rx.url("/slow"))
        rx.script["/slow"] = ["stall"]
        msg = d.request("POST", f"/v1/webhooks/{slow['id']}/test")[2]["msg_id"]

        def test_attempts():
            return [r for r in attempts(d, slow["id"]) if r["msg_id"] == msg]
        wait_until(lambda: [r["outcome"] for r in test_attempts()] == ["retry", "delivered"], 15,
                   "a timed-out attempt, then a delivered retry")
        first = test_attempts()[0]
        assert first["status_code"] is None and "timed out" in first["error"].lower()
        assert first["latency_ms"] < 2500
    finally:
        rx.close()


def test_continuous_failure_disables(stack):
    """Invariant: a subscription whose deliveries keep failing for webhook_disable_after_s is
    disabled with the streak's start as its reason, and its pending deliveries are dropped."""
    rx = Receiver()
    try:
        d = stack.start_daemon({**FAST, "webhook_retry_schedule": "1,1,1,1,1,1",
                                "webhook_disable_after_s": 2})
        hook = create(d, rx.url("/down"))
        rx.script["/down"] = [503] * 100
        d.request("POST", f"/v1/webhooks/{hook['id']}/test")
        wait_until(lambda: d.get(f"/v1/webhooks/{hook['id']}")[1]["failing_since_ms"], 10,
                   "the failure streak recorded")
        wait_until(lambda: d.get(f"/v1/webhooks/{hook['id']}")[1]["enabled"] is False, 15,
                   "the subscription disabled after 2 s of failure")
        view = d.get(f"/v1/webhooks/{hook['id']}")[1]
        assert "failed continuously since" in view["disabled_reason"]
        tried = len(rx.got("/down"))
        assert 3 <= tried <= 5, tried
        time.sleep(2)
        assert len(rx.got("/down")) == tried, "a disabled subscription was still called"
        assert d.counters()["webhook_dropped"] == 1, "the retry it was waiting for was dropped"
        wait_until(lambda: d.get("/v1/metrics")[1]["gauges"]["webhook_outbox_depth"] == 0, 5,
                   "its pending delivery dropped")
    finally:
        rx.close()


def test_restart_delivers_pending_once(stack):
    """Invariant: deliveries pending in the outbox when the daemon stops are delivered after it
    starts again, exactly once each, with their original webhook-id."""
    rx = Receiver()
    try:
        d = stack.start_daemon({**FAST, "webhook_retry_schedule": "2"})
        hook = create(d, rx.url("/r"))
        rx.script["/r"] = [500] * 100
        ids = [publish_case(stack.mosq.port, f"R{i}", 4000 + 100 * i, 90000) for i in range(3)]
        want = {f"msg_{kind}_{t}" for t in ids for kind in ("anomaly", "decision")}
        wait_until(lambda: {h["webhook-id"] for _, h, _, _ in rx.got("/r")} == want, 30,
                   "a first (failed) attempt of each of the six deliveries")
        d.stop()
        rx.script["/r"] = []
        assert stack.redis_cmd("PING") == "PONG"
        d = stack.start_daemon({**FAST, "webhook_retry_schedule": "2"})
        wait_until(lambda: sum(1 for r in attempts(d, hook["id"])
                               if r["outcome"] == "delivered") == 6, 20,
                   "every pending delivery delivered after the restart")
        time.sleep(3)  # room for a duplicate to show up
        ok = {}
        for _, h, _, _ in rx.got("/r")[6:]:
            ok[h["webhook-id"]] = ok.get(h["webhook-id"], 0) + 1
        assert ok == {m: 1 for m in want}, ok
        assert d.get("/v1/metrics")[1]["gauges"]["webhook_outbox_depth"] == 0
    finally:
        rx.close()


def test_secret_rotation(stack):
    """Invariant: after rotate-secret, deliveries carry the new and the old signature until the
    grace period ends; with grace_s=0 only the new secret signs."""
    rx = Receiver()
    try:
        d = stack.start_daemon(FAST)
        hook = create(d, rx.url("/rot"))
        old = hook["secret"]
        status, _, rot = d.request("POST", f"/v1/webhooks/{hook['id']}/rotate-secret")
        assert status == 200 and rot["secret"] != old and rot["previous_secret_expires_ms"]
        view = d.get(f"/v1/webhooks/{hook['id']}")[1]
        assert view["previous_secret_expires_ms"] == rot["previous_secret_expires_ms"]
        assert "secret" not in view and "previous_secret" not in view
        d.request("POST", f"/v1/webhooks/{hook['id']}/test")
        wait_until(lambda: len(rx.got("/rot")) == 1, 10, "a delivery during the grace period")
        _, h, body, _ = rx.got("/rot")[0]
        assert len(h["webhook-signature"].split(" ")) == 2
        for secret in (old, rot["secret"]):
            assert signature_ok(secret, h["webhook-id"], h["webhook-timestamp"], body,
                                h["webhook-signature"])

        status, _, rot2 = d.request("POST",
                                    f"/v1/webhooks/{hook['id']}/rotate-secret?grace_s=0")
        assert status == 200 and rot2["previous_secret_expires_ms"] is None
        d.request("POST", f"/v1/webhooks/{hook['id']}/test")
        wait_until(lambda: len(rx.got("/rot")) == 2, 10, "a delivery after a grace-less rotation")
        _, h, body, _ = rx.got("/rot")[1]
        assert len(h["webhook-signature"].split(" ")) == 1
        assert signature_ok(rot2["secret"], h["webhook-id"], h["webhook-timestamp"], body,
                            h["webhook-signature"])
        assert not signature_ok(rot["secret"], h["webhook-id"], h["webhook-timestamp"], body,
                                h["webhook-signature"])
        assert d.request("POST", "/v1/webhooks/wh_nope/rotate-secret?grace_s=-1")[0] == 400
    finally:
        rx.close()


def test_connect_time_ssrf_check(stack):
    """Invariant: the address libcurl connects to is checked, not only the URL: a host name
    registered while loopback was allowed is refused at connection time once the allow-list no
    longer covers it (the same check that stops DNS rebinding). Nothing leaves loopback."""
    rx = Receiver()
    try:
        d = stack.start_daemon({**FAST, "webhook_retry_schedule": "1"})
        hook = create(d, f"http://localhost:{rx.port}/named")
        d.stop()
        d = stack.start_daemon({"webhook_retry_jitter": 0, "webhook_retry_schedule": "1"})
        d.request("POST", f"/v1/webhooks/{hook['id']}/test")
        wait_until(lambda: len(attempts(d, hook["id"])) == 2, 10, "two refused attempts")
        rows = attempts(d, hook["id"])
        assert all("SSRF" in r["error"] and r["status_code"] is None for r in rows), rows
        assert rx.got() == [], "the receiver was reached despite the guard"
    finally:
        rx.close()


def test_api_validation(stack):
    """Invariant: bad subscriptions get precise errors and change nothing; the cap holds; the
    SSRF guard refuses every spelling of an address outside the allow-list at registration."""
    d = stack.start_daemon({"webhook_max_subscriptions": 2, "webhook_allow_cidrs": "127.0.0.1/32"})
    ok_url = "http://127.0.0.1:9/x"  # allowed; no event is ever sent to it in this test
    cases = [
        ({"url": "ftp://127.0.0.1/x"}, 400, "url"),
        ({"url": "http://user:pw@127.0.0.1/"}, 400, "url"),
        ({"url": "http://127.0.0.2:9/x"}, 422, "127.0.0.2"),
        ({"url": "http://2130706434/x"}, 422, "url"),
        ({"url": "http://0x7f.2/x"}, 422, "url"),
        ({"url": "http://[::ffff:127.0.0.2]/x"}, 422, "url"),
        ({"url": "http://[::1]:9/x"}, 422, "url"),
        ({"url": "http://0/x"}, 422, "url"),
        ({}, 400, "url"),
        ({"url": 5}, 400, "url"),
        ({"url": ok_url, "colour": "red"}, 400, "colour"),
        ({"url": ok_url, "event_types": []}, 400, "event_types"),
        ({"url": ok_url, "event_types": ["nope"]}, 400, "event_types"),
        ({"url": ok_url, "actions": ["BLOCK", "BLOCK"]}, 400, "twice"),
        ({"url": ok_url, "enabled": "yes"}, 400, "enabled"),
        ({"url": ok_url, "description": "x" * 300}, 400, "description"),
        ({"url": "http://127.0.0.2/x", "colour": "red"}, 400, "colour"),  # cheap checks first
    ]
    for body, want, word in cases:
        status, _, problem = d.request("POST", "/v1/webhooks", body)
        assert status == want and word in problem["detail"], (body, status, problem)
    status, _, problem = d.request("POST", "/v1/webhooks", b"{nope",
                                   {"Content-Type": "application/json"})
    assert status == 400 and problem["type"].endswith("/invalid-json")
    assert d.request("POST", "/v1/webhooks", b"x" * 20000)[0] == 413
    assert d.get("/v1/webhooks")[1]["items"] == []

    first = create(d, ok_url, enabled=False)
    second = create(d, ok_url, event_types=["anomaly.detected"])
    assert (first["enabled"], second["event_types"]) == (False, ["anomaly.detected"])
    status, _, problem = d.request("POST", "/v1/webhooks", {"url": ok_url})
    assert status == 409 and "webhook_max_subscriptions" in problem["detail"]
    status, _, body = d.request("PATCH", f"/v1/webhooks/{second['id']}",
                                {"url": "http://127.0.0.2/x"})
    assert status == 422
    assert d.get(f"/v1/webhooks/{second['id']}")[1]["url"] == ok_url, "a refused PATCH changed it"
    status, _, body = d.request("PATCH", f"/v1/webhooks/{second['id']}",
                                {"description": "renamed", "actions": ["REVIEW"]})
    assert status == 200 and body["description"] == "renamed" and body["actions"] == ["REVIEW"]
    assert body["updated_ms"] >= body["created_ms"]
    assert d.request("DELETE", f"/v1/webhooks/{first['id']}")[0] == 204
    for path in (f"/v1/webhooks/{first['id']}", f"/v1/webhooks/{first['id']}/deliveries",
                 "/v1/webhooks/wh_nope"):
        assert d.get(path)[0] == 404
    assert d.request("PATCH", "/v1/webhooks/wh_nope", {"enabled": False})[0] == 404
    assert d.request("DELETE", "/v1/webhooks/wh_nope")[0] == 404
    assert d.request("POST", "/v1/webhooks/wh_nope/test")[0] == 404
    assert d.get(f"/v1/webhooks/{second['id']}/deliveries?limit=0")[0] == 400
    assert d.get("/v1/health")[1]["components"]["webhooks"]["enabled"] == 1
