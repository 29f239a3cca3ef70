"""Start-up checks, degraded start, stream recovery (XAUTOCLAIM) and dead-lettering."""
import json
import os
import re
import subprocess
import time

from conftest import Daemon, free_port, wait_until


def test_fail_fast_names_the_missing_dependency(stack):
    """Invariant: with fail_fast_healthcheck on and Redis unreachable, the daemon exits 1 at once
    with a message naming Redis (nothing half-started keeps running)."""
    d = Daemon(stack.workdir, stack.redis, stack.mosq,
               {"fail_fast_healthcheck": "true", "startup_timeout_ms": 500,
                "redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    out = subprocess.run(d.argv, capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "Redis is not reachable" in out.stderr


def test_degraded_start_recovers_when_redis_appears(stack):
    """Invariant: without fail-fast, the daemon starts with Redis down, says so in /readyz and
    /v1/health, and becomes ready by itself once Redis is back; events sent meanwhile are decided."""
    stack.redis.stop()
    d = Daemon(stack.workdir, stack.redis, stack.mosq)
    d.proc = subprocess.Popen(d.argv, stdout=open(d.log, "ab"), stderr=subprocess.STDOUT)
    d.logf = open(os.devnull, "wb")
    stack.daemon = d
    wait_until(lambda: d.get("/v1/health")[0] == 200 if _listening(d) else False, 20, "HTTP up")
    status, body = d.get("/readyz")
    assert status == 503 and "redis" in body["detail"]
    assert d.get("/v1/health")[1]["components"]["redis"]["status"] == "down"
    stack.redis.start()
    wait_until(lambda: d.get("/readyz")[0] == 200, 30, "ready after Redis returns")
    events = [{"transactionId": i, "accountOrigin": "R1", "amount": 100 + i % 3}
              for i in range(1, 30)] + [{"transactionId": 99, "accountOrigin": "R1",
                                         "amount": 5000}]
    assert d.request("POST", "/v1/events", events)[0] == 202
    wait_until(lambda: d.get("/v1/decisions/99")[0] == 200, 30, "spike decided")


def _listening(d):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", d.http_port), timeout=0.2):
            return True
    except OSError:
        return False


def test_dead_consumer_entries_reclaimed_and_poison_dead_lettered(stack):
    """Invariant: an entry left pending by a dead consumer is reclaimed and decided once; an
    entry delivered more than max_deliveries times, and an unparseable one, go to the
    dead-letter stream and are acknowledged, without blocking their lane."""
    r = stack.redis_cmd
    good = {"transactionId": 555, "accountOrigin": "D1", "amount": 4000.0, "zScore": 5.0,
            "mean": 100.0, "std": 10.0, "accountHistoryLength": 10, "suspicion": 0.82,
            "priority": "batch", "timestamp": int(time.time() * 1000), "detectedBy": "other"}
    tired = dict(good, transactionId=556)
    # Before the daemon runs, a dead consumer takes two entries and never acknowledges them.
    for lane in ("immediate", "batch"):
        r("XGROUP", "CREATE", f"aetheris:stream:{lane}", "aetheris-agents", "0", "MKSTREAM")
    r("XADD", "aetheris:stream:batch", "*", "payload", json.dumps(good), "suspicion", "0.82")
    tired_id = r("XADD", "aetheris:stream:batch", "*", "payload", json.dumps(tired),
                 "suspicion", "0.82")
    got = r("XREADGROUP", "GROUP", "aetheris-agents", "dead-consumer", "COUNT", "2",
            "STREAMS", "aetheris:stream:batch", ">")
    assert "555" in got and "556" in got, got
    r("XCLAIM", "aetheris:stream:batch", "aetheris-agents", "dead-consumer", "0", tired_id,
      "RETRYCOUNT", "10")
    # And a poison entry waits on the immediate lane.
    r("XADD", "aetheris:stream:immediate", "*", "payload", "{not an exception", "suspicion", "1")
    d = stack.start_daemon({"reclaim_idle_ms": 500, "max_deliveries": 3})

    wait_until(lambda: d.get("/v1/decisions/555")[0] == 200, 30, "reclaimed entry decided")
    wait_until(lambda: int(r("XLEN", "aetheris:stream:deadletter") or 0) >= 2, 30,
               "two dead letters")
    dead = r("XRANGE", "aetheris:stream:deadletter", "-", "+")
    assert "max deliveries exceeded" in dead and "unparseable exception payload" in dead
    assert d.get("/v1/decisions/556")[0] == 404
    c = d.counters()
    assert c["stream_reclaimed"] >= 1 and c["stream_deadlettered"] == 2
    pending = r("XPENDING", "aetheris:stream:batch", "aetheris-agents").splitlines()[0]
    assert pending == "0"
    status, body = d.get("/v1/deadletter")
    assert any(i["reason"] == "unparseable_exception" for i in body["items"])


def test_replayed_block_sets_what_is_left_of_its_lock(stack):
    """Invariant: every published BLOCK command has its kill-switch lock set for what is left of
    the lock's lifetime, counted from the decision: a replayed BLOCK (its entry processed again
    after its decision was stored, e.g. when setting the lock failed) sets a lock that is
    missing, never for longer than the rest of lock_ttl_s, and not at all once that has passed;
    only the first decision counts in aetheris_account_locks_total."""
    r = stack.redis_cmd
    d = stack.start_daemon({"lock_ttl_s": 3})
    exc = {"transactionId": 777, "accountOrigin": "K1", "amount": 9000.0, "zScore": 20.0,
           "mean": 100.0, "std": 10.0, "accountHistoryLength": 50, "suspicion": 1.0,
           "priority": "immediate", "timestamp": int(time.time() * 1000), "detectedBy": "other"}
    lock = "aetheris:account:lock:K1"

    def counter(name):  # the uncached Prometheus page: no event invalidates the JSON's cache
        text = d.get("/metrics")[1].decode()
        return int(float(re.search(rf"^aetheris_{name}_total (\S+)$", text, re.M)[1]))

    def replay():
        before = counter("decisions_replayed")
        r("XADD", "aetheris:stream:immediate", "*", "payload", json.dumps(exc), "suspicion", "1")
        wait_until(lambda: counter("decisions_replayed") > before, 20, "the replay")

    r("XADD", "aetheris:stream:immediate", "*", "payload", json.dumps(exc), "suspicion", "1")
    wait_until(lambda: d.get("/v1/decisions/777")[0] == 200, 20, "the BLOCK decision")
    assert d.get("/v1/decisions/777")[1]["action"] == "BLOCK"
    assert r("GET", lock) == "777" and 0 < int(r("TTL", lock)) <= 3
    r("DEL", lock)  # as if the SET had failed after the decision was stored
    replay()
    assert r("GET", lock) == "777", "the replayed BLOCK did not set its missing lock"
    assert 0 < int(r("TTL", lock)) <= 3, r("TTL", lock)
    assert counter("account_locks") == 1
    wait_until(lambda: r("EXISTS", lock) == "0", 10, "the lock's expiry")
    replay()  # the decision is older than lock_ttl_s: its lock has run its course
    assert r("EXISTS", lock) == "0", "a replay extended a lock past its lifetime"
