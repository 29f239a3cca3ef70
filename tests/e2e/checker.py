"""The delivery checker of the fault tests (the idea of Jepsen's queue checker, written here):
publish a known set of transactions on a fixed schedule, record everything that comes out, and
classify each output as expected, lost, duplicated or unexpected.

Input. `Workload` generates n transactions over a few accounts (deterministic for a seed):
ordinary amounts within +-10 % of the account's base, so their |z| stays below sqrt(3), and
about one in `spike_every` a spike of 8-14x the base, which is an exception. The rows are
written as a CSV in the dataset's format, so conftest's two-pass reference scorer says which
transactions are exceptions. `Publisher` sends event k at t0 + k/rate (a fixed schedule that a
stall does not shift: late events go out at once afterwards) with QoS 1 from a persistent
session, and an event counts as published once the broker acknowledged it; unacknowledged
messages are sent again after a reconnection, as a real producer does.

Outputs recorded: the stored transactions, exceptions and decisions (SQLite), the commands and
exception notifications on MQTT (conftest's Collector), the webhook deliveries (test_webhooks'
signature-verifying Receiver, one subscription to both event types), the dead-letter stream, and
the Prometheus counters of each daemon run (`/metrics`).

Expected, from the published set P and the reference's exceptions E (borderline |z| left out):
  transactions  every id of P stored once
  exceptions    E stored; notifications on aetheris/exceptions are best effort (skipped while
                the broker is unreachable) so only unexpected or conflicting ones count there
  decisions     one stored decision per id of E (minus the ids a scenario expects in the dead
                letter); the store's primary key makes a second row impossible, so a duplicate
                decision shows as a command that disagrees with the stored one
  commands      each decision at least once; a second copy equal to the stored command is
                "republished identical" (DESIGN.md 3.1 allows it after a crash), anything else
                is "conflicting"
  webhooks      anomaly.detected per id of E and decision.created per stored decision, at least
                once, each with a valid signature; a repeat must carry the same webhook-id and
                the same body ("redelivered"), a different body under one id is "conflicting"
  dead letter   exactly the ids the scenario expects (a poison entry), nothing else
Valid = nothing lost, nothing unexpected, nothing conflicting.

Counter cross-check. Counters start at zero in each daemon run, so the relations are stated per
run; the checker records the wall time at which each run was started (before its process) and
scrapes /metrics at the end of the final run, once every output has settled:
  1. sum(aetheris_decisions_total) == stored decisions with decided_ms >= the run's start
     (a decision row is written by the run that decided it; earlier runs ended before);
  2. aetheris_events_ingested_total == stored transactions with ingested_ms >= the run's start
     (an event replayed from the journal keeps the time it was first accepted and is not
     counted again);
  3. aetheris_decisions_replayed_total <= aetheris_commands_published_total <=
     sum(aetheris_decisions_total) + aetheris_decisions_replayed_total: each published command
     is a new decision or a stored one republished; a decision stored in a batch whose publish
     then failed is published later as a replay (so equality holds when no publish failed, and
     `exact_commands` asks for it);
  4. with a single run: aetheris_events_ingested_total == |P|, aetheris_anomalies_total ==
     stored exceptions, aetheris_stream_deadlettered_total == dead-letter stream length;
  5. over all runs, the last scrape of every earlier run (taken just before it was stopped or
     killed, so a lower bound of what it did) plus the final run's decisions <= stored
     decisions."""
import csv
import json
import os
import random
import sqlite3
import threading
import time
import urllib.request

from conftest import reference_exceptions, wait_until
from test_webhooks import Receiver, create as create_webhook, signature_ok

CSV_HEADER = ["TransactionID", "AccountOriginID", "AccountDestinationID", "TransactionTypeID",
              "Amount", "TransactionDate", "BranchID", "Description"]
# Webhook retries in seconds: short, so a receiver that was down is caught up within a test.
# A short attempt timeout: an attempt cut off by a SIGKILL comes back after its lease (the
# attempt timeout + 60 s), and the checker waits for it.
FAST_WEBHOOKS = {"webhook_allow_cidrs": "127.0.0.0/8", "webhook_retry_jitter": 0,
                 "webhook_retry_schedule": "1,1,1,2,2,2,2,2,2,2", "webhook_timeout_ms": 2000}


class Workload:
    """n transactions over `accounts` accounts with txids first_txid.., written to csv_path."""

    def __init__(self, csv_path, n, first_txid=1_000_000, accounts=40, spike_every=20, seed=7):
        rng = random.Random(seed)
        bases = [round(rng.uniform(50, 800), 2) for _ in range(accounts)]
        self.events = []
        for i in range(n):
            a = rng.randrange(accounts)
            warm = i >= accounts * 8  # the windows have history before the first spike
            factor = rng.uniform(8, 14) if warm and rng.random() < 1 / spike_every \
                else rng.uniform(0.9, 1.1)
            self.events.append({"transactionId": first_txid + i,
                                "accountOrigin": str(700000 + a),
                                "accountDestination": str(800000 + (a * 7 + i) % 97),
                                "amount": round(bases[a] * factor, 2), "type": 1, "branch": 1,
                                "date": "2026-12-02 10:00:00.000000",
                                "description": f"fault test {i}"})
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(CSV_HEADER)
            for e in self.events:
                w.writerow([e["transactionId"], e["accountOrigin"], e["accountDestination"],
                            e["type"], repr(e["amount"]), e["date"], e["branch"],
                            e["description"]])
        self.csv_path = csv_path
        self.ids = [e["transactionId"] for e in self.events]

    def reference(self):
        """({txid: reference exception}, borderline) over every event of the workload."""
        return reference_exceptions(path=self.csv_path)


class Publisher:
    """Publishes a list of events at `rate` per second on its own thread (QoS 1, persistent
    session, reconnecting by itself)."""

    def __init__(self, port, events, rate, client_id):
        import paho.mqtt.client as mqtt
        self.events, self.rate = events, rate
        self.infos = []  # (index, MQTTMessageInfo)
        self.sent = 0
        self.lag_s = 0.0  # how far behind its schedule the publisher fell at worst
        self.elapsed_s = None  # the schedule's length once every event went out
        self.done = threading.Event()
        self.no_conn = mqtt.MQTT_ERR_NO_CONN
        self.client = mqtt.Client(client_id=client_id, clean_session=False)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)  # unlimited: keep everything while disconnected
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def _run(self):
        t0 = time.monotonic()
        for k, ev in enumerate(self.events):
            delay = t0 + k / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                self.lag_s = max(self.lag_s, -delay)
            info = self.client.publish(
                f"aetheris/transactions/{ev['accountOrigin']}/{ev['transactionId']}",
                json.dumps(ev), qos=1)
            if info.rc == self.no_conn:  # queued while disconnected: sent after reconnecting
                info.rc = 0
            self.infos.append((k, info))
            self.sent = k + 1
        self.elapsed_s = time.monotonic() - t0
        self.done.set()

    def acked(self):
        """Indexes of the events the broker acknowledged."""
        return [k for k, info in list(self.infos) if info.is_published()]

    def wait_all_acked(self, timeout):
        """Waits for the schedule to end and every event to be acknowledged; returns the set of
        acknowledged indexes (all of them unless the timeout passed)."""
        deadline = time.monotonic() + timeout
        self.done.wait(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            if self.done.is_set() and all(i.is_published() for _, i in self.infos):
                break
            time.sleep(0.05)
        return set(self.acked())

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def scrape(daemon):
    """{series: value} of the daemon's /metrics (series = name plus its labels as written)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def counter_sum(m, name):
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def command_of(doc):
    """The command published for a stored decision doc (DESIGN.md 3.6)."""
    return {k: v for k, v in doc.items() if k not in ("exception", "latency_ms")}


class Result:
    """The classification; `valid` and `problems()` say whether the guarantees held."""

    def __init__(self):
        self.lost, self.unexpected, self.conflicting = {}, {}, {}
        self.republished = 0    # identical extra copies of commands
        self.redelivered = 0    # extra webhook deliveries with the same id and body
        self.counter_errors = []
        self.stats = {}

    def note(self, kind, what, ids):
        if ids:
            getattr(self, kind)[what] = sorted(ids)

    @property
    def valid(self):
        return not (self.lost or self.unexpected or self.conflicting or self.counter_errors)

    def problems(self):
        parts = []
        for kind in ("lost", "unexpected", "conflicting"):
            for what, ids in getattr(self, kind).items():
                parts.append(f"{kind} {what}: {len(ids)} {ids[:10]}")
        parts += self.counter_errors
        return "; ".join(parts) + f" (stats {self.stats})"


class Checker:
    """One scenario's workload, outputs and verdict over a conftest Stack.

    daemon_extra: config for every daemon run; redis_port/mqtt_port: where the daemon connects
    (a fault proxy's port) when not the servers themselves."""

    def __init__(self, stack, collector_factory, n=2000, rate=400, daemon_extra=None,
                 redis_port=None, mqtt_port=None, webhooks=True, seed=7, first_txid=1_000_000,
                 accounts=40, spike_every=20, bin_dir=None):
        self.stack = stack
        self.bin_dir = bin_dir
        self.workload = Workload(os.path.join(stack.workdir, "workload.csv"), n,
                                 first_txid=first_txid, seed=seed, accounts=accounts,
                                 spike_every=spike_every)
        self.rate = rate
        self.extra = dict(FAST_WEBHOOKS)
        if redis_port:
            self.extra["redis_url"] = f"redis://127.0.0.1:{redis_port}/0"
        if mqtt_port:
            self.extra["mqtt_url"] = f"tcp://127.0.0.1:{mqtt_port}"
        self.extra.update(daemon_extra or {})
        self.runs = []  # [start wall ms, last scrape or None]
        self.expected_deadletter = set()
        self.settle_timed_out = []
        self.timings = {}
        self.exact_commands = False  # set by scenarios where no command publish can fail
        self.daemon = self.start_daemon()
        self.collector = collector_factory(stack.mosq.port)
        self.receiver = self.hook = None
        if webhooks:
            self.receiver = Receiver()
            self.hook = create_webhook(self.daemon, self.receiver.url("/hook"))
        self.publisher = None

    # -- the daemon's life ----------------------------------------------------------------------

    def start_daemon(self):
        self.runs.append([int(time.time() * 1000), None])
        self.daemon = self.stack.start_daemon(self.extra, self.bin_dir)
        return self.daemon

    def _last_scrape(self):
        try:
            self.runs[-1][1] = scrape(self.daemon)
        except OSError:
            pass  # paused or unreachable: the previous scrape stands

    def kill_daemon(self):
        self._last_scrape()
        self.daemon.kill()

    def stop_daemon(self):
        self._last_scrape()
        rc = self.daemon.stop()
        assert rc == 0, f"SIGTERM: the daemon exited {rc}:\n{self.daemon.log_tail()}"

    # -- input --------------------------------------------------------------------------------

    def publish(self):
        """Starts the schedule (non-blocking)."""
        self.publisher = Publisher(self.stack.mosq.port, self.workload.events, self.rate,
                                   f"fault-publisher-{os.getpid()}-{self.stack.mosq.port}")
        self.publisher.start()
        return self.publisher

    @property
    def publisher_lag_s(self):
        return self.publisher.lag_s

    def wait_sent(self, fraction, timeout=60):
        """Waits until `fraction` of the events went out (for a fault 'mid-stream')."""
        want = int(len(self.workload.events) * fraction)
        wait_until(lambda: self.publisher.sent >= want, timeout, f"{want} events published")

    # -- observation ---------------------------------------------------------------------------

    def sql(self, statement):
        """Runs one statement on the store (a test's fault injection) and commits it."""
        db = sqlite3.connect(self.daemon.opts["sqlite_path"], timeout=10)
        try:
            db.execute(statement)
            db.commit()
        finally:
            db.close()

    def decision_docs(self):
        return [(t, json.loads(doc)) for t, doc in self._db("SELECT txid, doc FROM decisions")]

    def _db(self, sql):
        db = sqlite3.connect(self.daemon.opts["sqlite_path"], timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def _deadletter_ids(self):
        ids = set()
        raw = self.stack.redis_cmd("XRANGE", "aetheris:stream:deadletter", "-", "+")
        for line in raw.splitlines():  # redis-cli prints one field per line
            if line.startswith("{") and "transactionId" in line:
                try:
                    ids.add(int(json.loads(line)["transactionId"]))
                except (ValueError, KeyError, TypeError):
                    pass
        return ids

    def _pending(self):
        total = 0
        for lane in ("immediate", "batch"):
            out = self.stack.redis_cmd("XPENDING", f"aetheris:stream:{lane}", "aetheris-agents")
            total += int(out.splitlines()[0]) if out and out.splitlines()[0].isdigit() else 0
        return total

    def _hook_ids(self):
        return {h["webhook-id"] for _, h, _, _ in self.receiver.got()} if self.receiver else set()

    def settle(self, publish_timeout=120, settle_timeout=90):
        """Waits (bounded) for the publisher to be acknowledged and every expected output to
        appear, then a quiet second for anything extra; returns the Result."""
        t0 = time.monotonic()
        acked = self.publisher.wait_all_acked(publish_timeout)
        self.publisher.close()
        self.timings = {"publish_s": round(time.monotonic() - t0, 1)}
        t0 = time.monotonic()
        published = {self.workload.ids[k] for k in acked}
        ref, borderline = self.workload.reference()
        expected_exc = {t for t in ref if t in published} - borderline
        to_decide = expected_exc - self.expected_deadletter

        waiting = []

        def done():
            waiting.clear()
            if self._db("SELECT COUNT(*) FROM transactions")[0][0] < len(published):
                waiting.append("transactions")
            if not to_decide <= {r[0] for r in self._db("SELECT txid FROM decisions")}:
                waiting.append("decisions")
            if not to_decide <= {c["transaction_id"]
                                 for c in self.collector.get("aetheris/commands")}:
                waiting.append("commands")
            if self.receiver and not {f"msg_decision_{t}" for t in to_decide} | {
                    f"msg_anomaly_{t}" for t in expected_exc} <= self._hook_ids():
                waiting.append("webhooks")
            if not self.expected_deadletter <= self._deadletter_ids():
                waiting.append("dead letters")
            if self._pending() != 0:
                waiting.append("pending stream entries")
            return not waiting
        try:
            wait_until(done, settle_timeout, "every expected output", interval=0.25)
        except AssertionError:
            self.settle_timed_out = list(waiting)  # the verdict says what is missing
        self.timings["settle_s"] = round(time.monotonic() - t0, 1)
        time.sleep(1.0)
        return self.classify(published, ref, borderline, expected_exc)

    def classify(self, published, ref, borderline, expected_exc):
        r = Result()
        stored_tx = {row[0] for row in self._db("SELECT txid FROM transactions")}
        stored_exc = {row[0] for row in self._db("SELECT txid FROM exceptions")}
        rows = self._db("SELECT txid, doc, decided_ms FROM decisions")
        decisions = {t: json.loads(doc) for t, doc, _ in rows}
        decided_ms = {t: ms for t, _, ms in rows}
        want_decided = expected_exc - self.expected_deadletter
        r.note("lost", "transactions", published - stored_tx)
        r.note("unexpected", "transactions", stored_tx - set(self.workload.ids))
        r.note("lost", "exceptions", expected_exc - stored_exc)
        r.note("unexpected", "exceptions", stored_exc - expected_exc - borderline)
        r.note("lost", "decisions", want_decided - set(decisions))
        r.note("unexpected", "decisions",
               set(decisions) - want_decided - borderline)
        for t, doc in decisions.items():
            if doc.get("exception", {}).get("transactionId") != t:
                r.note("conflicting", "decision docs", {t})

        # Commands: at least once, every copy equal to the stored command.
        per_tx = {}
        for cmd in self.collector.get("aetheris/commands"):
            per_tx.setdefault(cmd["transaction_id"], []).append(cmd)
        r.note("lost", "commands", set(decisions) - set(per_tx))
        r.note("unexpected", "commands", set(per_tx) - set(decisions))
        bad = set()
        for t, cmds in per_tx.items():
            if t in decisions:
                want = command_of(decisions[t])
                bad |= {t for c in cmds if c != want}
                r.republished += len(cmds) - 1
        r.note("conflicting", "commands", bad)
        notes = self.collector.get("aetheris/exceptions")
        r.note("unexpected", "exception notifications",
               {n["transactionId"] for n in notes} - expected_exc - borderline)

        # Webhooks: anomaly + decision per event, same id and body on every redelivery.
        if self.receiver:
            bodies, badsig = {}, set()
            for _, h, body, _ in self.receiver.got("/hook"):
                mid = h["webhook-id"]
                if not signature_ok(self.hook["secret"], mid, h["webhook-timestamp"], body,
                                    h["webhook-signature"]):
                    badsig.add(mid)
                bodies.setdefault(mid, []).append(body)
            want = {f"msg_anomaly_{t}" for t in stored_exc} | {
                f"msg_decision_{t}" for t in decisions}
            r.note("lost", "webhook deliveries", want - set(bodies))
            r.note("unexpected", "webhook deliveries", set(bodies) - want)
            r.note("conflicting", "webhook signatures", badsig)
            r.note("conflicting", "webhook bodies",
                   {m for m, b in bodies.items() if len(set(b)) > 1})
            r.redelivered = sum(len(b) - 1 for b in bodies.values())

        dead = self._deadletter_ids()
        r.note("lost", "dead letters", self.expected_deadletter - dead)
        r.note("unexpected", "dead letters", dead - self.expected_deadletter)
        self._cross_check(r, published, stored_exc, decided_ms, dead)
        r.stats = {"published": len(published), "exceptions": len(expected_exc),
                   "decisions": len(decisions), "republished": r.republished,
                   "redelivered": r.redelivered, "runs": len(self.runs),
                   "settle_timed_out": self.settle_timed_out, **self.timings}
        return r

    def _cross_check(self, r, published, stored_exc, decided_ms, dead):
        m = scrape(self.daemon)
        self.runs[-1][1] = m
        with open(os.path.join(self.stack.workdir, "final-metrics.json"), "w") as f:
            json.dump(m, f, indent=1)
        start = self.runs[-1][0]
        dec = counter_sum(m, "aetheris_decisions_total")
        own = sum(1 for ms in decided_ms.values() if ms >= start)
        checks = [
            ("decisions_total == decisions stored by this run", dec, own),
            ("events_ingested_total == transactions first accepted by this run",
             counter_sum(m, "aetheris_events_ingested_total"),
             self._db(f"SELECT COUNT(*) FROM transactions WHERE ingested_ms >= {start}")[0][0]),
        ]
        published_cmds = counter_sum(m, "aetheris_commands_published_total")
        replayed = counter_sum(m, "aetheris_decisions_replayed_total")
        if not replayed <= published_cmds <= dec + replayed or (
                self.exact_commands and published_cmds != dec + replayed):
            r.counter_errors.append(
                f"counter check failed: commands_published_total {published_cmds:g} against "
                f"decisions_total {dec:g} + decisions_replayed_total {replayed:g}")
        if len(self.runs) == 1:
            checks += [
                ("events_ingested_total == published", counter_sum(
                    m, "aetheris_events_ingested_total"), len(published)),
                ("anomalies_total == stored exceptions",
                 counter_sum(m, "aetheris_anomalies_total"), len(stored_exc)),
                ("stream_deadlettered_total == dead letters",
                 counter_sum(m, "aetheris_stream_deadlettered_total"), len(dead)),
            ]
        earlier = sum(counter_sum(s, "aetheris_decisions_total") for _, s in self.runs[:-1] if s)
        if earlier + dec > len(decided_ms):
            r.counter_errors.append(f"decisions counted over all runs {earlier + dec} > stored "
                                    f"{len(decided_ms)}")
        for what, got, want in checks:
            if got != want:
                r.counter_errors.append(f"counter check failed: {what}: {got} != {want}")

    def close(self):
        if self.publisher:
            self.publisher.close()
        if self.receiver:
            self.receiver.close()
