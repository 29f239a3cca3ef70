"""Fault scenarios, each run by the delivery checker (checker.py) under a steady load: a few
thousand events at a few hundred per second, the fault injected mid-stream, then every output
classified. Unless a test says otherwise the invariant is the checker's `valid`: every published
transaction stored once, every exception decided exactly once (one stored decision, every
command copy identical to it), every webhook event delivered at least once under one id, nothing
unexpected, and the per-run Prometheus counters agreeing with the store."""
import signal
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
    assert result.valid, result.problems()
    assert result.stats["exceptions"] > 20, f"too few exceptions to prove anything: {result.stats}"


def test_baseline_no_fault(check):
    """Invariant: without a fault the checker finds exactly the expected outputs, every command
    once (no republish without a crash) and every counter relation exact."""
    c = check()
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
