"""REST surface: health shapes, errors as problem+json, events over HTTP, body limits."""
from conftest import wait_until


def test_health_and_errors(stack):
    """Invariant: health endpoints answer with their documented shapes; unknown routes are 404
    and wrong methods 405 with Allow, both as RFC 9457 problems; bad parameters are 400."""
    d = stack.start_daemon()
    assert d.get("/healthz") == (200, {"status": "ok"})
    assert d.get("/readyz")[0] == 200
    status, h = d.get("/v1/health")
    assert status == 200 and h["status"] == "ok" and h["node_id"] == "e2e-node"
    assert set(h["components"]) == {"mqtt", "redis", "store", "cache", "ratelimit", "auth", "stream",
                                    "llm",
                                    "webhooks"}
    assert h["components"]["store"]["backend"] == "sqlite"

    status, hdrs, body = d.request("GET", "/v1/nope")
    assert status == 404 and hdrs["Content-Type"] == "application/problem+json"
    assert body["type"].endswith("/not-found") and body["status"] == 404
    status, hdrs, body = d.request("DELETE", "/v1/decisions")
    assert status == 405 and hdrs["Allow"] == "GET" and body["type"].endswith("method-not-allowed")
    for path, name in (("/v1/decisions?limit=0", "limit"), ("/v1/decisions?action=NOPE", "action"),
                       ("/v1/anomalies?since=2026-02-30T00:00:00Z", "since"),
                       ("/v1/decisions?cursor=zz", "cursor"), ("/v1/decisions/12x", "transaction_id")):
        status, body = d.get(path)
        assert status == 400 and name in body["detail"], (path, body)
    assert d.get("/v1/decisions/999999")[0] == 404
    status, hdrs, text = d.request("GET", "/metrics")
    assert status == 200 and b"aetheris_events_scored_total" in text


def test_post_events_and_limits(stack):
    """Invariant: POST /v1/events takes an object or an array through the same validation and
    dedupe as MQTT, answering 202 with the counts; an oversized body is refused with 413."""
    d = stack.start_daemon({"http_max_body": 4096})
    status, _, body = d.request("POST", "/v1/events",
                                {"transactionId": 10, "accountOrigin": "H1", "amount": 5},
                                {"Content-Type": "application/json"})
    assert status == 202 and body == {"accepted": 1, "duplicates": 0, "invalid": 0}
    batch = [{"transactionId": 10, "accountOrigin": "H1", "amount": 5},
             {"transactionId": 11, "accountOrigin": "H1", "amount": 6},
             {"transactionId": 12, "accountOrigin": "H1"}]
    status, _, body = d.request("POST", "/v1/events", batch)
    assert status == 202 and body == {"accepted": 1, "duplicates": 1, "invalid": 1, "errors": [
        {"index": 2, "reason": "amount", "detail": "amount is required"}]}
    status, _, body = d.request("POST", "/v1/events", b"{broken")
    assert status == 400 and body["type"].endswith("/invalid-json")
    status, _, body = d.request("POST", "/v1/events", b"x" * 5000)
    assert status == 413 and body["type"].endswith("payload-too-large")
    wait_until(lambda: d.counters()["scored"] == 2, 10, "HTTP events scored")
    status, body = d.get("/v1/deadletter")
    assert {i["source"] for i in body["items"]} == {"http"}
    assert d.get("/readyz")[0] == 200
