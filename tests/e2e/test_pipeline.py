"""The pipeline end to end: MQTT in, scoring, Redis streams, agents, commands out, store, API."""
import json
import os
import sqlite3
import time

import paho.mqtt.publish as mqtt_publish

from conftest import decisions_total, reference_exceptions, wait_until

TOTAL_DISTINCT = 49500


def store_counts(daemon):
    db = sqlite3.connect(daemon.opts["sqlite_path"], timeout=10)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("transactions", "exceptions", "decisions")}
    finally:
        db.close()


def store_rows(daemon, sql):
    db = sqlite3.connect(daemon.opts["sqlite_path"], timeout=10)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def page_all(daemon, path):
    """Follows next_cursor through a list endpoint; returns every item."""
    items, cursor = [], None
    for _ in range(1000):
        sep = "&" if "?" in path else "?"
        status, body = daemon.get(path + (f"{sep}cursor={cursor}" if cursor else ""))
        assert status == 200, body
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("paging did not end")


def rel_close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(b))


def test_full_dataset_scored_once_decided_once(stack, collector_factory):
    """Invariant: every distinct transaction is scored exactly once; the exceptions equal an
    independent two-pass reference (values to 1e-9); each exception yields exactly one command on
    aetheris/commands and one stored decision; the API returns them all; BLOCK sets the lock."""
    daemon = stack.start_daemon()
    col = collector_factory(stack.mosq.port)
    ref, borderline = reference_exceptions()
    summary = stack.replay()
    assert summary["published_events"] == 50000

    wait_until(lambda: daemon.counters()["scored"] == TOTAL_DISTINCT, 120, "all events scored")
    c = daemon.counters()
    assert c["duplicates"] == 500
    wait_until(lambda: decisions_total(daemon.counters()) == len(ref), 120, "all decisions")
    wait_until(lambda: len(col.get("aetheris/commands")) >= len(ref), 30, "all commands")
    time.sleep(0.5)  # anything extra would arrive now

    exceptions = {e["transactionId"]: e for e in col.get("aetheris/exceptions")}
    assert set(exceptions) - borderline == set(ref) - borderline
    for txid, e in exceptions.items():
        r = ref[txid]
        assert rel_close(e["zScore"], r["z"]) and rel_close(e["mean"], r["mean"])
        assert rel_close(e["std"], r["std"]), (txid, e, r)
        assert e["suspicion"] == r["suspicion"] and e["priority"] == r["priority"]
        assert e["detectedBy"] == "e2e-node" and e["accountHistoryLength"] >= 5

    commands = col.get("aetheris/commands")
    per_tx = {}
    for cmd in commands:
        per_tx.setdefault(cmd["transaction_id"], []).append(cmd)
        assert cmd["action"] in ("APPROVE", "REVIEW", "BLOCK")
        assert [v["agent"] for v in cmd["votes"]] == ["Analyst", "Auditor", "Strategist"]
        blocks = sum(v["decision"] == "BLOCK" for v in cmd["votes"])
        approves = sum(v["decision"] == "APPROVE" for v in cmd["votes"])
        expected = "BLOCK" if blocks >= 2 else "APPROVE" if approves >= 2 else "REVIEW"
        assert cmd["action"] == expected
    assert set(per_tx) == set(ref)
    assert all(len(v) == 1 for v in per_tx.values()), "a transaction got two commands"

    counts = store_counts(daemon)
    assert counts == {"transactions": TOTAL_DISTINCT, "exceptions": len(ref),
                      "decisions": len(ref)}

    decisions = page_all(daemon, "/v1/decisions?limit=100")
    assert sorted(d["transaction_id"] for d in decisions) == sorted(ref)
    one = decisions[len(decisions) // 2]
    status, got = daemon.get(f"/v1/decisions/{one['transaction_id']}")
    assert status == 200 and got["action"] == one["action"]
    assert got["exception"]["transactionId"] == one["transaction_id"]
    anomalies = page_all(daemon, "/v1/anomalies?limit=250")
    assert sorted(a["transactionId"] for a in anomalies) == sorted(ref)
    immediate = page_all(daemon, "/v1/anomalies?priority=immediate")
    assert sorted(a["transactionId"] for a in immediate) == sorted(
        t for t, r in ref.items() if r["priority"] == "immediate")

    blocked = [cmd for cmd in commands if cmd["action"] == "BLOCK"]
    assert c["account_locks"] == 0 or blocked
    for cmd in blocked:
        ttl = int(stack.redis_cmd("TTL", f"aetheris:account:lock:{cmd['account_origin']}"))
        assert 0 < ttl <= 3600
    assert stack.redis_cmd("XLEN", "aetheris:stream:immediate") != ""
    pending = stack.redis_cmd("XPENDING", "aetheris:stream:batch", "aetheris-agents")
    assert pending.splitlines()[0] == "0", "entries left unacknowledged"


def test_malformed_and_duplicate_messages(stack):
    """Invariant: bad payloads are counted by reason and kept in the dead-letter list, the good
    items of a mixed batch are still scored, duplicates are counted and not scored again, and the
    daemon stays ready."""
    daemon = stack.start_daemon()
    good = {"transactionId": 1, "accountOrigin": "A1", "amount": 10.5}
    msgs = [
        b"{not json",                                                     # bad_json
        b"42",                                                            # not_object
        json.dumps([good, {"transactionId": 2, "accountOrigin": "A1", "amount": 11},
                    {"transactionId": 3, "accountOrigin": "A1"}]).encode(),  # 2 good + amount
        json.dumps({"transactionId": 4, "accountOrigin": "A1"}).encode(),  # amount missing
        json.dumps({"transactionId": 5, "accountOrigin": "A1", "amount": -1}).encode(),
        json.dumps({"transactionId": 6, "accountOrigin": "A1", "amount": "12"}).encode(),
        json.dumps({"transactionId": 7, "accountOrigin": "x" * 65, "amount": 1}).encode(),
        json.dumps({"transactionId": "12a", "accountOrigin": "A1", "amount": 1}).encode(),
        json.dumps(good).encode(),                                        # duplicate of 1
        json.dumps({"transactionId": 2, "accountOrigin": "A1", "amount": 11}).encode(),  # dup
    ]
    mqtt_publish.multiple([("aetheris/transactions/A1/x", m, 1, False) for m in msgs],
                          hostname="127.0.0.1", port=stack.mosq.port)
    wait_until(lambda: daemon.counters()["duplicates"] == 2, 20, "duplicates counted")
    c = daemon.counters()
    assert c["invalid_bad_json"] == 1
    assert c["invalid_not_object"] == 1
    assert c["invalid_amount"] == 4  # missing x2, negative, string
    assert c["invalid_account_origin"] == 1
    assert c["invalid_transaction_id"] == 1
    assert c["ingested"] == 2
    wait_until(lambda: daemon.counters()["scored"] == 2, 10, "good items scored")

    def dead():
        status, body = daemon.get("/v1/deadletter?limit=100")
        return body["items"] if status == 200 and len(body["items"]) == 8 else None
    items = wait_until(dead, 10, "8 dead letters")
    reasons = sorted(i["reason"] for i in items)
    assert reasons == sorted(["bad_json", "not_object", "amount", "amount", "amount", "amount",
                              "account_origin", "transaction_id"])
    assert all(i["source"] == "mqtt" for i in items)
    assert any(i["payload"] == "{not json" for i in items)
    assert daemon.get("/readyz")[0] == 200


def test_broker_restart_mid_stream_loses_nothing(stack):
    """Invariant (QoS 1, persistent session, broker persistence): a mosquitto restart in the
    middle of a replay loses no event: every distinct transaction is stored once and every
    exception has exactly one decision."""
    daemon = stack.start_daemon()
    replay = stack.replay_async("--rate", "8000", "--max-wait-s", "60")
    wait_until(lambda: daemon.counters()["scored"] > 5000, 30, "replay under way")
    stack.mosq.restart()
    out, err = replay.communicate(timeout=180)
    assert replay.returncode == 0, err
    wait_until(lambda: store_counts(daemon)["transactions"] == TOTAL_DISTINCT, 120,
               "every transaction stored")
    assert daemon.counters()["mqtt_reconnects"] >= 1

    def all_decided():
        n = store_counts(daemon)
        return n["exceptions"] > 0 and n["decisions"] == n["exceptions"]
    wait_until(all_decided, 60, "every exception decided")
    assert store_rows(daemon, "SELECT COUNT(*) FROM exceptions e LEFT JOIN decisions d "
                              "USING (txid) WHERE d.txid IS NULL")[0][0] == 0


def test_sigkill_mid_stream_then_restart(stack, collector_factory):
    """Invariant (QoS 1): after SIGKILL mid-stream and a restart on the same data directory, no
    acknowledged event is lost (all 49,500 stored), the journal replay makes the windows exact
    (the exception set equals the reference), and no transaction is decided twice (one stored
    decision per exception; any republished command is identical)."""
    daemon = stack.start_daemon()
    col = collector_factory(stack.mosq.port, ("aetheris/commands",))
    ref, borderline = reference_exceptions()
    replay = stack.replay_async("--rate", "6000")
    wait_until(lambda: daemon.counters()["scored"] > 12000, 30, "replay under way")
    daemon.kill()
    time.sleep(1)
    stack.start_daemon()
    daemon = stack.daemon
    out, err = replay.communicate(timeout=180)
    assert replay.returncode == 0, err
    wait_until(lambda: store_counts(daemon)["transactions"] == TOTAL_DISTINCT, 120,
               "every transaction stored")
    wait_until(lambda: store_counts(daemon)["decisions"] == len(ref), 90, "all decided")
    exc = {r[0] for r in store_rows(daemon, "SELECT txid FROM exceptions")}
    assert exc - borderline == set(ref) - borderline
    dup = store_rows(daemon, "SELECT txid, COUNT(*) FROM decisions GROUP BY txid HAVING "
                             "COUNT(*) > 1")
    assert dup == []
    wait_until(lambda: {c["transaction_id"] for c in col.get("aetheris/commands")} >= set(ref),
               60, "a command for every exception")
    actions = {}
    for cmd in col.get("aetheris/commands"):
        actions.setdefault(cmd["transaction_id"], set()).add(cmd["action"])
    assert all(len(a) == 1 for a in actions.values()), "a transaction got two different actions"
    stored = dict(store_rows(daemon, "SELECT txid, action FROM decisions"))
    assert all(stored[t] == next(iter(a)) for t, a in actions.items())


def test_sigterm_restart_keeps_windows(stack):
    """Invariant: a clean restart (SIGTERM, snapshot) between two halves of the dataset gives
    exactly the exceptions of an uninterrupted run."""
    daemon = stack.start_daemon()
    ref, borderline = reference_exceptions()
    stack.replay("--limit", "25000")
    wait_until(lambda: daemon.counters()["scored"] + daemon.counters()["duplicates"] >= 25000,
               60, "first half scored")
    assert daemon.stop() == 0
    assert os.path.exists(os.path.join(daemon.opts["data_dir"], "edge.snap"))
    stack.start_daemon()
    daemon = stack.daemon
    stack.replay()  # the whole file: the first half is all duplicates now
    wait_until(lambda: store_counts(daemon)["transactions"] == TOTAL_DISTINCT, 120, "all stored")
    wait_until(lambda: daemon.counters()["duplicates"] >= 25000, 60, "first half deduplicated")
    exc = {r[0] for r in store_rows(daemon, "SELECT txid FROM exceptions")}
    assert exc - borderline == set(ref) - borderline


def test_qos0_and_batched_payloads(stack):
    """Invariant: with the subscription at QoS 0 and the replay batching 100 events per JSON
    array, every event of the first 5,000 rows is still scored once (duplicates counted)."""
    import csv
    from conftest import DATASET
    with open(DATASET, newline="") as f:
        ids = [row["TransactionID"] for _, row in zip(range(5000), csv.DictReader(f))]
    daemon = stack.start_daemon({"mqtt_qos": 0})
    summary = stack.replay("--qos", "0", "--batch", "100", "--limit", "5000", "--rate", "20000")
    assert summary["messages"] == 50 and summary["published_events"] == 5000
    wait_until(lambda: daemon.counters()["scored"] == len(set(ids)), 60, "all scored")
    assert daemon.counters()["duplicates"] == len(ids) - len(set(ids))
    assert daemon.counters()["mqtt_messages"] == 50
