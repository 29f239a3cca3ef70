"""The pipeline end to end: MQTT in, scoring, Redis streams, agents, commands out, store, API,
and a clean restart between two halves of the dataset. Broker, daemon and Redis failures in
the middle of a stream are in test_faults.py, under the delivery checker."""
import json
import os
import sqlite3
import time

import paho.mqtt.publish as mqtt_publish

from conftest import (dataset_ids, decisions_total, reference_exceptions, suspicion_matches,
                      wait_until)

TOTAL_ROWS = 50000
TOTAL_DISTINCT = 49500
ACTIONS = ("APPROVE", "REVIEW", "BLOCK")
ROLES = ["Analyst", "Auditor", "Strategist"]


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


def undecided_exceptions(daemon):
    return store_rows(daemon, "SELECT COUNT(*) FROM exceptions e LEFT JOIN decisions d "
                              "USING (txid) WHERE d.txid IS NULL")[0][0]


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


def check_command_shape(cmd):
    assert cmd["action"] in ACTIONS, cmd
    assert [v["agent"] for v in cmd["votes"]] == ROLES, cmd
    assert all(v["decision"] in ACTIONS and v["reason"] for v in cmd["votes"]), cmd
    blocks = sum(v["decision"] == "BLOCK" for v in cmd["votes"])
    approves = sum(v["decision"] == "APPROVE" for v in cmd["votes"])
    expected = "BLOCK" if blocks >= 2 else "APPROVE" if approves >= 2 else "REVIEW"
    assert cmd["action"] == expected, cmd


def test_full_dataset_scored_once_decided_once(stack, collector_factory):
    """Invariant: every distinct transaction is scored exactly once (500 repeats counted as
    duplicates); the exceptions equal an independent two-pass reference (values to 1e-9,
    suspicion exact), one notification each; each exception yields exactly one well-formed
    2/3-consensus command on aetheris/commands and one stored decision; the API pages through
    all of them exactly once and serves each by id as published; BLOCK sets the lock key."""
    daemon = stack.start_daemon()
    col = collector_factory(stack.mosq.port)
    ref, borderline = reference_exceptions()
    summary = stack.replay()
    assert summary["published_events"] == TOTAL_ROWS and summary["bad_rows"] == 0

    wait_until(lambda: daemon.counters()["scored"] == TOTAL_DISTINCT, 120, "all events scored")
    wait_until(lambda: daemon.counters()["duplicates"] == TOTAL_ROWS - TOTAL_DISTINCT, 10,
               "duplicates counted")

    def decided():
        c = daemon.counters()
        n = c["anomalies_immediate"] + c["anomalies_batch"]
        return n > 0 and decisions_total(c) == n
    wait_until(decided, 120, "decisions == exceptions")
    wait_until(lambda: len(col.get("aetheris/commands")) >= len(ref) - len(borderline), 30,
               "all commands")
    time.sleep(0.5)  # anything extra (a second command, say) would arrive now
    c = daemon.counters()
    assert c["scored"] == TOTAL_DISTINCT and c["duplicates"] == TOTAL_ROWS - TOTAL_DISTINCT

    notes = col.get("aetheris/exceptions")
    exceptions = {e["transactionId"]: e for e in notes}
    assert len(exceptions) == len(notes), "an exception was published twice"
    assert set(exceptions) - borderline == set(ref) - borderline
    for txid, e in exceptions.items():
        r = ref.get(txid)
        if r is None:
            continue  # borderline, outside the reference by a rounding error
        assert rel_close(e["zScore"], r["z"]) and rel_close(e["mean"], r["mean"]), (e, r)
        assert rel_close(e["std"], r["std"]), (txid, e, r)
        assert suspicion_matches(e["suspicion"], r), (e, r)
        assert e["priority"] == ("immediate" if e["suspicion"] >= 0.9 else "batch"), e
        assert e["accountOrigin"] == r["account"] and e["amount"] == r["amount"], (e, r)
        assert e["accountHistoryLength"] == r["history"], (e, r)
        assert e["detectedBy"] == "e2e-node" and isinstance(e["timestamp"], int)
    assert c["anomalies_immediate"] + c["anomalies_batch"] == len(exceptions)
    assert c["anomalies_immediate"] == sum(e["priority"] == "immediate" for e in notes)

    commands = col.get("aetheris/commands")
    per_tx = {}
    for cmd in commands:
        check_command_shape(cmd)
        per_tx.setdefault(cmd["transaction_id"], []).append(cmd)
    assert set(per_tx) == set(exceptions)
    assert all(len(v) == 1 for v in per_tx.values()), "a transaction got two commands"
    for txid, (cmd,) in per_tx.items():
        assert cmd["account_origin"] == exceptions[txid]["accountOrigin"]
    by_action = {a: sum(cmd["action"] == a for cmd in commands) for a in ACTIONS}
    assert (c["decisions_approve"], c["decisions_review"], c["decisions_block"]) == (
        by_action["APPROVE"], by_action["REVIEW"], by_action["BLOCK"])

    counts = store_counts(daemon)
    assert counts == {"transactions": TOTAL_DISTINCT, "exceptions": len(exceptions),
                      "decisions": len(exceptions)}
    assert undecided_exceptions(daemon) == 0
    stored = dict(store_rows(daemon, "SELECT txid, action FROM decisions"))
    assert stored == {t: v[0]["action"] for t, v in per_tx.items()}

    decisions = page_all(daemon, "/v1/decisions?limit=500")
    assert len(decisions) == len(exceptions), "paging repeated or skipped decisions"
    assert {d["transaction_id"] for d in decisions} == set(exceptions)
    for d in decisions:
        status, got = daemon.get(f"/v1/decisions/{d['transaction_id']}")
        assert status == 200 and got == d, (d, got)
        cmd = {k: v for k, v in got.items() if k not in ("exception", "latency_ms")}
        assert cmd == per_tx[d["transaction_id"]][0], "the API and MQTT disagree"
        assert got["exception"]["transactionId"] == d["transaction_id"]
        assert got["latency_ms"]["detect_to_decision"] >= 0
    blocked = [d for d in decisions if d["action"] == "BLOCK"]
    assert page_all(daemon, "/v1/decisions?action=BLOCK&limit=50") == blocked

    anomalies = page_all(daemon, "/v1/anomalies?limit=500")
    assert len(anomalies) == len(exceptions)
    assert {a["transactionId"] for a in anomalies} == set(exceptions)
    for a in anomalies[:: max(1, len(anomalies) // 50)]:
        status, got = daemon.get(f"/v1/anomalies/{a['transactionId']}")
        assert status == 200 and got == a
        assert got["zScore"] == exceptions[a["transactionId"]]["zScore"]
    immediate = page_all(daemon, "/v1/anomalies?priority=immediate")
    assert sorted(a["transactionId"] for a in immediate) == sorted(
        t for t, e in exceptions.items() if e["priority"] == "immediate")

    assert by_action["BLOCK"] > 0, "the dataset has BLOCK decisions; none were made"
    for d in blocked:
        ttl = int(stack.redis_cmd("TTL", f"aetheris:account:lock:{d['account_origin']}"))
        assert 0 < ttl <= 3600, (d["account_origin"], ttl)
    for lane in ("immediate", "batch"):
        pending = stack.redis_cmd("XPENDING", f"aetheris:stream:{lane}", "aetheris-agents")
        assert pending.splitlines()[0] == "0", f"entries left unacknowledged on {lane}"


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
    wait_until(lambda: store_counts(daemon)["transactions"] == 2, 10, "good items stored")
    assert sorted(r[0] for r in store_rows(daemon, "SELECT txid FROM transactions")) == [1, 2]
    time.sleep(0.5)
    c = daemon.counters()
    assert c["scored"] == 2 and c["duplicates"] == 2, "a duplicate was scored"
    assert daemon.get("/readyz")[0] == 200


def test_sigterm_restart_keeps_windows(stack):
    """Invariant: a clean restart (SIGTERM, snapshot) between two halves of the dataset gives
    exactly the exceptions of an uninterrupted run, with the accounts sharded over several edge
    workers (a snapshot of one part per worker) before the restart and another count after."""
    daemon = stack.start_daemon({"edge_workers": 3})
    ref, borderline = reference_exceptions()
    stack.replay("--limit", "25000")
    wait_until(lambda: daemon.counters()["scored"] + daemon.counters()["duplicates"] >= 25000,
               60, "first half scored")
    assert daemon.stop() == 0
    assert os.path.exists(os.path.join(daemon.opts["data_dir"], "edge.snap"))
    stack.start_daemon({"edge_workers": 2})
    daemon = stack.daemon
    stack.replay()  # the whole file: the first half is all duplicates now
    wait_until(lambda: store_counts(daemon)["transactions"] == TOTAL_DISTINCT, 120, "all stored")
    wait_until(lambda: daemon.counters()["duplicates"] >= 25000, 60, "first half deduplicated")
    exc = {r[0] for r in store_rows(daemon, "SELECT txid FROM exceptions")}
    assert exc - borderline == set(ref) - borderline


def test_qos0_and_batched_payloads(stack):
    """Invariant: with the subscription at QoS 0 and the replay batching 100 events per JSON
    array, every event of the first 5,000 rows is still scored once (duplicates counted)."""
    ids = dataset_ids(5000)
    daemon = stack.start_daemon({"mqtt_qos": 0})
    summary = stack.replay("--qos", "0", "--batch", "100", "--limit", "5000", "--rate", "20000")
    assert summary["messages"] == 50 and summary["published_events"] == 5000
    wait_until(lambda: daemon.counters()["scored"] == len(set(ids)), 60, "all scored")
    assert daemon.counters()["duplicates"] == len(ids) - len(set(ids))
    assert daemon.counters()["mqtt_messages"] == 50


def test_rule_agents_do_not_wait_for_the_immediate_window(stack):
    """Invariant: with rule agents only, an immediate exception is decided as soon as it
    arrives, not after immediate_batch_max_wait_ms (its window is for LLM batching), and is
    counted in the immediate lane's histogram; the batch lane still waits for its window."""
    d = stack.start_daemon({"immediate_batch_size": 50, "immediate_batch_max_wait_ms": 8000,
                            "batch_size": 50, "batch_max_wait_ms": 3000})

    def spike(account, first, amount):
        msgs = [(f"aetheris/transactions/{account}/{first + i}",
                 json.dumps({"transactionId": first + i, "accountOrigin": account,
                             "amount": 100 + i}), 1, False) for i in range(12)]
        msgs.append((f"aetheris/transactions/{account}/{first + 12}",
                     json.dumps({"transactionId": first + 12, "accountOrigin": account,
                                 "amount": amount}), 1, False))
        mqtt_publish.multiple(msgs, hostname="127.0.0.1", port=stack.mosq.port)
        return first + 12, time.monotonic()

    def decided(txid):
        return d.get(f"/v1/decisions/{txid}")[0] == 200

    hot, t0 = spike("IMM1", 61_000, 90000)  # suspicion ~1: the immediate lane
    wait_until(lambda: decided(hot), 20, "the immediate decision")
    took = time.monotonic() - t0
    assert took < 4.0, f"{took:.2f} s: the immediate lane waited for its 8 s window"
    assert d.get(f"/v1/anomalies/{hot}")[1]["priority"] == "immediate"
    lat = d.get("/v1/metrics")[1]["latency_seconds"]
    assert lat["event_to_decision_immediate"]["count"] == 1
    assert lat["event_to_decision_batch"]["count"] == 0

    mild, t0 = spike("BAT1", 62_000, 200)  # |z| far above 2.5, suspicion ~0.71: the batch lane
    wait_until(lambda: decided(mild), 20, "the batch decision", interval=0.05)
    took = time.monotonic() - t0
    assert d.get(f"/v1/anomalies/{mild}")[1]["priority"] == "batch"
    assert took >= 2.5, f"{took:.2f} s: the batch lane did not wait for its 3 s window"
    assert d.get("/v1/metrics")[1]["latency_seconds"]["event_to_decision_batch"]["count"] == 1


def test_sink_linger_groups_transactions_without_exceptions(stack):
    """Invariant: transactions without an exception wait up to sink_linger_ms for company and
    share store transactions (60 one-event hand-offs arriving within far less than 30 lingers
    take far fewer than 60 flushes), every one of them is stored, and an exception staged with
    them is still decided."""
    d = stack.start_daemon({"sink_linger_ms": 100, "ingest_handoff_us": 0})
    msgs = [(f"aetheris/transactions/Q{i % 6}/{80_000 + i}",
             json.dumps({"transactionId": 80_000 + i, "accountOrigin": f"Q{i % 6}",
                         "amount": 100 + (i // 6) % 2}), 1, False) for i in range(60)]
    t0 = time.monotonic()
    mqtt_publish.multiple(msgs, hostname="127.0.0.1", port=stack.mosq.port)
    wait_until(lambda: store_counts(d)["transactions"] == 60, 20, "60 transactions stored")
    span = time.monotonic() - t0
    flushes = d.counters()["sink_flushes"]
    assert 1 <= flushes <= span / 0.1 + 2, (flushes, span)
    assert flushes <= 30, f"{flushes} flushes for 60 hand-offs in {span:.2f} s: no lingering"
    spike = {"transactionId": 80_100, "accountOrigin": "Q0", "amount": 90000}
    mqtt_publish.single("aetheris/transactions/Q0/80100", json.dumps(spike), qos=1,
                        hostname="127.0.0.1", port=stack.mosq.port)
    wait_until(lambda: d.get("/v1/decisions/80100")[0] == 200, 20, "the spike's decision")
