"""API keys, scopes, the failed-authentication throttle and the per-key rate limit, against the
real daemon and Redis (stopped and restarted under it)."""
import hashlib
import os
import subprocess
import time

from conftest import BIN, Daemon, wait_until

KEYS = {"reader": ("read", "rk-" + "1" * 40), "writer": ("write", "wk-" + "2" * 40),
        "boss": ("admin", "ak-" + "3" * 40)}


def entries(keys=KEYS):
    return ",".join(f"{name}:{scope}:{hashlib.sha256(key.encode()).hexdigest()}"
                    for name, (scope, key) in keys.items())


def key(name):
    return {"X-API-Key": KEYS[name][1]}


def start(stack, extra=None):
    opts = {"auth_disabled": "false", "api_keys": entries(), "rate_limit_rps": 1000,
            "rate_limit_burst": 1000}
    opts.update(extra or {})
    return stack.start_daemon(opts)


def test_refuses_to_start_without_keys(stack):
    """Invariant: with auth on and no key configured the daemon exits 2 at once, naming what to
    set; a malformed entry is refused naming the entry."""
    for opts, needle in (({}, "no API keys configured"),
                         ({"api_keys": "a:read:abc"}, "api_keys entry 1"),
                         ({"api_keys": f"a:root:{'0' * 64}"}, "scope must be read, write or admin"),
                         ({"api_keys": f"a:read:{'0' * 64},a:write:{'1' * 64}"}, "used twice")):
        d = Daemon(stack.workdir, stack.redis, stack.mosq, {"auth_disabled": "false", **opts})
        out = subprocess.run(d.argv, capture_output=True, text=True, timeout=30, cwd=stack.workdir)
        assert out.returncode == 2, out
        assert needle in out.stderr, out.stderr


def test_keys_scopes_and_open_routes(stack):
    """Invariant: non-public routes need a valid key (X-API-Key or Bearer) with enough scope;
    health, readiness and /metrics stay open; the key file works like the inline list."""
    keyfile = os.path.join(stack.workdir, "keys")
    with open(keyfile, "w") as f:
        f.write("# operators\n\n" + "filekey:read:"
                + hashlib.sha256(b"from-the-file").hexdigest() + "\n")
    d = start(stack, {"api_keys_file": keyfile})
    for path in ("/healthz", "/readyz", "/v1/health", "/metrics"):
        assert d.request("GET", path)[0] == 200, path
    status, hdrs, body = d.request("GET", "/v1/decisions")
    assert status == 401 and body["type"].endswith("/unauthorized")
    assert hdrs["WWW-Authenticate"].startswith("Bearer")
    status, _, body = d.request("GET", "/v1/decisions", headers={"X-API-Key": "nope"})
    assert status == 401 and "not valid" in body["detail"]
    assert d.request("GET", "/v1/decisions", headers=key("reader"))[0] == 200
    assert d.request("GET", "/v1/decisions",
                     headers={"Authorization": "bearer " + KEYS["reader"][1]})[0] == 200
    assert d.request("GET", "/v1/decisions", headers={"X-API-Key": "from-the-file"})[0] == 200
    event = {"transactionId": 1, "accountOrigin": "Z", "amount": 1}
    status, _, body = d.request("POST", "/v1/events", event, key("reader"))
    assert status == 403 and body["type"].endswith("/forbidden") and "write" in body["detail"]
    assert d.request("POST", "/v1/events", event, key("writer"))[0] == 202
    assert d.request("POST", "/v1/events", event, key("boss"))[0] == 202  # admin includes write
    status, hdrs, _ = d.request("GET", "/v1/queues", headers=key("reader"))
    assert status == 200 and int(hdrs["RateLimit-Limit"]) == 1000
    assert d.get("/v1/health")[1]["components"]["auth"]["status"] == "enabled"


def test_metrics_can_require_a_key(stack):
    d = start(stack, {"metrics_public": "false"})
    assert d.request("GET", "/metrics")[0] == 401
    assert d.request("GET", "/metrics", headers=key("reader"))[0] == 200


def test_failed_authentications_throttled(stack):
    """Invariant: after auth_fail_limit failures in the window an address gets 429 with
    Retry-After, even with a valid key, until the window ends; then it may try again."""
    d = start(stack, {"auth_fail_limit": 3, "auth_fail_window_s": 2})
    for _ in range(3):
        assert d.request("GET", "/v1/decisions", headers={"X-API-Key": "guess"})[0] == 401
    status, hdrs, body = d.request("GET", "/v1/decisions", headers=key("reader"))
    assert status == 429 and body["type"].endswith("/rate-limited")
    assert 1 <= int(hdrs["Retry-After"]) <= 2
    wait_until(lambda: d.request("GET", "/v1/decisions", headers=key("reader"))[0] == 200, 5,
               "the throttle window to end")


def test_rate_limit_redis_and_fallback(stack):
    """Invariant: a key gets its burst, then 429 with Retry-After and RateLimit-* headers, and
    recovers at the refill rate; the bucket is in Redis (shared state); with Redis stopped the
    in-process limiter enforces the same limit and auth still holds; after Redis returns the
    Redis limiter is used again."""
    d = start(stack, {"rate_limit_rps": 2, "rate_limit_burst": 5})
    statuses = [d.request("GET", "/v1/decisions", headers=key("reader")) for _ in range(6)]
    assert [s for s, _, _ in statuses] == [200] * 5 + [429]
    assert [int(h["RateLimit-Remaining"]) for _, h, _ in statuses[:5]] == [4, 3, 2, 1, 0]
    _, hdrs, body = statuses[5]
    assert body["type"].endswith("/rate-limited") and int(hdrs["Retry-After"]) >= 1
    assert hdrs["RateLimit-Limit"] == "5" and hdrs["RateLimit-Remaining"] == "0"
    assert stack.redis_cmd("EXISTS", "aetheris:ratelimit:key:reader") == "1"
    assert d.request("GET", "/v1/decisions", headers=key("writer"))[0] == 200  # per key
    time.sleep(0.6)  # 2 tokens/s: one token back
    assert d.request("GET", "/v1/decisions", headers=key("reader"))[0] == 200
    assert d.get("/v1/health")[1]["components"]["ratelimit"]["status"] == "redis"

    stack.redis.stop()
    results = [d.request("GET", "/v1/anomalies", headers=key("boss"))[0] for _ in range(7)]
    assert results[:5] == [200] * 5 and 429 in results[5:], results
    assert d.request("GET", "/v1/anomalies")[0] == 401  # auth never fails open
    assert d.get("/v1/health")[1]["components"]["ratelimit"]["status"] == "local"

    stack.redis.start()
    wait_until(lambda: d.request("GET", "/v1/decisions", headers=key("writer"))[0] == 200
               and d.get("/v1/health")[1]["components"]["ratelimit"]["status"] == "redis", 15,
               "the Redis limiter back")


def test_keygen_tool(stack):
    """Invariant: aetheris-keygen prints a key and an entry the daemon accepts for that key."""
    out = subprocess.run([os.path.join(BIN, "tools", "aetheris-keygen"), "ci", "write"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0
    lines = dict(line.split("=", 1) for line in out.stdout.split())
    d = stack.start_daemon({"auth_disabled": "false", "api_keys": lines["entry"]})
    assert d.request("POST", "/v1/events", {"transactionId": 5, "accountOrigin": "K", "amount": 2},
                     {"X-API-Key": lines["key"]})[0] == 202
    bad = subprocess.run([os.path.join(BIN, "tools", "aetheris-keygen"), "ci", "root"],
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and "usage" in bad.stderr
