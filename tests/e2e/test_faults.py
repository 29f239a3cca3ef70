"""Fault scenarios, each run by the delivery checker (checker.py) under a steady load: a few
thousand events at a few hundred per second, the fault injected mid-stream, then every output
classified. Unless a test says otherwise the invariant is the checker's `valid`: every published
transaction stored once, every exception decided exactly once (one stored decision, every
command copy identical to it), every webhook event delivered at least once under one id, nothing
unexpected, and the per-run Prometheus counters agreeing with the store."""
import time

import pytest

from checker import Checker
from conftest import wait_until


@pytest.fixture
def check(stack, collector_factory):
    made = []

    def make(**kw):
        c = Checker(stack, collector_factory, **kw)
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def assert_valid(result):
    print("checker:", result.stats)
    assert result.valid, result.problems()
    assert result.stats["exceptions"] > 20, f"too few exceptions to prove anything: {result.stats}"


def test_baseline_no_fault(check):
    """Invariant: without a fault the checker finds exactly the expected outputs, every command
    once (no republish without a crash) and every counter relation exact."""
    c = check()
    c.exact_commands = True
    c.publish()
    r = c.settle()
    assert_valid(r)
    assert r.republished == 0, r.stats


def test_daemon_sigkill_mid_stream(check):
    """Invariant: SIGKILL mid-stream and a restart on the same data loses nothing (QoS 1 +
    persistent session + journal), decides nothing twice (a re-processed entry republishes the
    stored command, identical)."""
    c = check()
    c.publish()
    c.wait_sent(0.4)
    c.kill_daemon()
    time.sleep(0.5)
    c.start_daemon()
    assert_valid(c.settle())


def test_daemon_sigterm_mid_stream(check):
    """Invariant: a clean stop (SIGTERM: drain, snapshot, exit 0) mid-stream and a restart lose
    and duplicate nothing; the stop itself must exit 0 within the drain bound. Nothing is
    republished either: the decider settles before it exits (every published command's entry
    acknowledged by the broker and XACKed), so the restarted run finds no decided entry pending."""
    c = check()
    c.publish()
    c.wait_sent(0.4)
    c.stop_daemon()
    time.sleep(0.5)
    c.start_daemon()
    r = c.settle()
    assert_valid(r)
    assert r.republished == 0, r.stats


def test_redis_killed_and_restarted(check, stack):
    """Invariant (AOF on, appendfsync everysec): redis-server SIGKILLed mid-stream and started
    again on the same AOF loses nothing: every write Redis acknowledged reached the AOF file
    (written before the reply; a process crash keeps the page cache), the sink retries its XADDs
    and the decider its reads until Redis is back, and a stream entry added twice (a retried
    pipeline) is decided once."""
    c = check()
    c.publish()
    c.wait_sent(0.4)
    stack.redis.kill()
    time.sleep(1.5)
    stack.redis.start()
    assert_valid(c.settle())


def test_redis_paused(check, stack):
    """Invariant: redis-server frozen (SIGSTOP) for 3 s mid-stream, beyond nothing but the
    client timeouts, then resumed (SIGCONT): nothing lost or duplicated, the daemon ready
    again."""
    c = check()
    c.publish()
    c.wait_sent(0.4)
    stack.redis.pause()
    try:
        time.sleep(3)
    finally:
        stack.redis.resume()
    assert_valid(c.settle())
    wait_until(lambda: c.daemon.get("/readyz")[0] == 200, 20, "ready again")


def test_mosquitto_restarted(check, stack):
    """Invariant (persistent sessions, QoS 1, broker persistence): mosquitto restarted mid-stream
    loses nothing: the producer resends what was not acknowledged, the broker keeps what it
    queued for the daemon's session, the daemon's commands wait for the broker and go out after
    it returns."""
    c = check()
    c.publish()
    c.wait_sent(0.4)
    stack.mosq.restart()
    assert_valid(c.settle())
    assert c.daemon.counters()["mqtt_reconnects"] >= 1


@pytest.mark.parametrize("target", ["redis", "mqtt"])
def test_tcp_faults_between_daemon_and(target, check, stack):
    """Invariant: with a fault proxy between the daemon and Redis (or the broker) that first adds
    100 ms to every chunk, then black-holes the link for 3 s (accepts, reads, drops, and resets
    those connections when the link heals), then resets every connection, nothing is lost or
    duplicated, and the daemon is ready once the link is clean again."""
    from faultproxy import FaultProxy
    port = stack.redis.port if target == "redis" else stack.mosq.port
    proxy = FaultProxy(port)
    try:
        extra = {"mqtt_keepalive_s": 5, "redis_timeout_ms": 1000}
        c = check(daemon_extra=extra, **{f"{target}_port": proxy.port})
        c.publish()
        c.wait_sent(0.2)
        proxy.set_mode("latency", 0.1)
        c.wait_sent(0.4)
        proxy.set_mode("blackhole")
        time.sleep(3)
        proxy.set_mode("pass")
        c.wait_sent(0.7)
        proxy.set_mode("reset")
        time.sleep(0.5)
        proxy.set_mode("pass")
        assert_valid(c.settle())
        wait_until(lambda: c.daemon.get("/readyz")[0] == 200, 20, "ready again")
        assert proxy.accepted > 1, "the faults did not make the daemon reconnect"
    finally:
        proxy.close()


def test_llm_failing_then_slow(check):
    """Invariant: with the LLM backend, an endpoint that answers 500 for a while and then stalls
    past the call timeout never delays a decision past the batch deadline into a reclaim, and
    never loses or doubles one: the failing roles fall back to their rule votes
    (source "rules-fallback"), the model decides again once it answers."""
    from test_llm import FakeLLM, llm_config
    fake = FakeLLM()
    try:
        cfg = llm_config(fake, llm_timeout_ms=500, llm_batch_deadline_ms=1500,
                         llm_max_retries=1, llm_breaker_failures=1000, reclaim_idle_ms=5000)
        c = check(daemon_extra=cfg)
        c.publish()
        c.wait_sent(0.3)
        fake.default = 500
        c.wait_sent(0.55)
        fake.default = "stall"
        c.wait_sent(0.8)
        fake.default = "valid"
        assert_valid(c.settle())
        sources = {v["source"] for _, doc in c.decision_docs() for v in doc["votes"]}
        assert {"llm", "rules-fallback"} <= sources, sources
    finally:
        fake.close()


def test_webhook_receiver_down_for_a_while(check):
    """Invariant: a receiver that refuses connections for 4 s mid-stream gets every delivery
    once it is back (retries on the configured schedule), each under its original webhook-id
    with the same body."""
    from test_webhooks import Receiver
    c = check()
    c.publish()
    c.wait_sent(0.3)
    port = c.receiver.port
    old = c.receiver
    old.close()
    time.sleep(4)
    c.receiver = Receiver(port)
    # One record of everything received, before and after. The new receiver serves at once, so a
    # retry may already have landed in its own list: fold that in under its lock.
    with c.receiver.lock:
        old.requests.extend(c.receiver.requests)
        c.receiver.requests = old.requests
    assert_valid(c.settle())
    assert c.daemon.counters()["webhook_retry"] > 0, "the receiver's outage caused no retry"


def test_poison_entry_dead_lettered_without_blocking_its_lane(check):
    """Invariant: an exception whose decision can never be stored (a trigger in the store
    refuses that one row: a constraint failing every time) is retried, dead-lettered after
    max_deliveries with the reason, and blocks neither its lane nor its batch mates: every
    other exception is decided exactly once."""
    c = check(daemon_extra={"max_deliveries": 2, "reclaim_idle_ms": 1000})
    ref, borderline = c.workload.reference()
    poison = sorted(set(ref) - borderline)[10]
    c.sql(f"CREATE TRIGGER poison_decision BEFORE INSERT ON decisions WHEN NEW.txid = {poison} "
          "BEGIN SELECT RAISE(ABORT, 'poison decision refused by the test'); END")
    c.expected_deadletter = {poison}
    c.publish()
    assert_valid(c.settle())
    assert "max deliveries exceeded" in c.stack.redis_cmd(
        "XRANGE", "aetheris:stream:deadletter", "-", "+")


def test_store_refusing_the_deciders_writes_for_a_while(check):
    """Invariant: when the store takes none of the decider's writes for 4 s (a trigger refuses
    every tool-audit insert, which goes with every batch's decisions: what an outage looks like
    to it), the decider keeps its batch and retries with backoff instead of leaving the entries to
    be reclaimed: with reclaim_idle_ms 1 s and max_deliveries 2, counting the outage as
    deliveries would dead-letter them. Nothing is lost, nothing is dead-lettered."""
    c = check(daemon_extra={"reclaim_idle_ms": 1000, "max_deliveries": 2})
    c.publish()
    c.wait_sent(0.3)
    c.sql("CREATE TRIGGER refuse_audit BEFORE INSERT ON tool_audit "
          "BEGIN SELECT RAISE(ABORT, 'the test refuses every write'); END")
    time.sleep(4)
    c.sql("DROP TRIGGER refuse_audit")
    assert_valid(c.settle())
    log = open(c.daemon.log, errors="replace").read()
    assert "decide.store_failed" in log and "decide.store_recovered" in log


def test_disk_full_for_the_store(check):
    """Disk full, made real with RLIMIT_FSIZE set on the running daemon (prlimit): every write
    that would grow a file past the limit fails with EFBIG, the daemon's SIGXFSZ being ignored,
    so the store (and the journal, and the snapshot) meet exactly the failing write(2) of a full
    disk; no filesystem needs mounting. Invariant: while full, a clear error (store.sqlite_error
    and sink.store_failed in the log, /v1/health store down, aetheris_store_errors_total > 0)
    and the daemon stays up; when space returns, it recovers by itself and nothing is lost or
    duplicated. The disk stays full for 5 s with reclaim_idle_ms 1 s and max_deliveries 2, so a
    decider that let the outage count as deliveries would dead-letter good entries."""
    import resource
    c = check(daemon_extra={"reclaim_idle_ms": 1000, "max_deliveries": 2})
    c.publish()
    c.wait_sent(0.3)
    pid = c.daemon.proc.pid
    unlimited = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (64 * 1024, unlimited[1]))
    try:
        def full():
            status, body = c.daemon.get("/v1/health")
            return status == 200 and body["components"]["store"]["status"] == "down"
        wait_until(full, 30, "/v1/health reporting the store down")
        time.sleep(5)
        assert c.daemon.counters()["store_errors"] > 0
        assert c.daemon.running()
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, unlimited)
    log = open(c.daemon.log, errors="replace").read()
    assert "sink.store_failed" in log and "store.sqlite_error" in log, "no clear error logged"
    assert_valid(c.settle())
    wait_until(lambda: c.daemon.get("/v1/health")[1]["components"]["store"]["status"] == "up",
               20, "the store up again")
