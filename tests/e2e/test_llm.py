"""LLM-backed agents against a scripted OpenAI-compatible fake server on loopback. The fake
answers per role (it reads the role from the system prompt and the batch from the JSON block of
the user message) with what each test scripts: valid votes, malformed JSON, a missing item,
429 with Retry-After, 500, or a stall. Checked through the pipeline's real decisions: the
model's votes decide (source "llm"), one call per role per batch covering the whole batch,
every failure mode falls back to the role's rule vote (source "rules-fallback") without
delaying the decision past the batch deadline, Retry-After is honoured, and the circuit breaker
opens (health shows the LLM degraded, rules decide without calls) and closes again."""
import json
import re
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.publish as publish

from conftest import free_port, wait_until

ROLES = ("Analyst", "Auditor", "Strategist")


class FakeLLM:
    """POST /v1/chat/completions. script[role] is a list of behaviours consumed in order, then
    `default`; a behaviour is "valid", "malformed", "missing", "stall", an int status, or
    (status, {headers}). `decide(role, item)` gives a valid answer's decision."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []  # (role, [transactionId...], monotonic time, path, auth header)
        self.script = {r: [] for r in ROLES}
        self.default = "valid"
        self.decide = lambda role, item: "APPROVE"
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                system, user = (m["content"] for m in req["messages"])
                role = next(r for r in ROLES if f"You are the {r}" in system)
                items = json.loads(re.search(r"```json\n(.*)\n```", user, re.S).group(1))
                with fake.lock:
                    fake.calls.append((role, [str(i["transactionId"]) for i in items],
                                       time.monotonic(), self.path,
                                       self.headers.get("Authorization")))
                    queue = fake.script[role]
                    how = queue.pop(0) if queue else fake.default
                if how == "stall":
                    time.sleep(3)
                    how = "valid"
                if isinstance(how, (int, tuple)):
                    status, headers = (how, {}) if isinstance(how, int) else how
                    return self.reply(status, b'{"error":"scripted"}', headers)
                if how == "malformed":
                    content = "I cannot comply with a JSON format today."
                else:
                    votes = [{"transactionId": i["transactionId"],
                              "decision": fake.decide(role, i),
                              "reason": f"fake {role} judged it"} for i in items]
                    if how == "missing":
                        votes = votes[1:]
                    content = "```json\n" + json.dumps(votes) + "\n```"
                body = {"choices": [{"message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": 20}}
                self.reply(200, json.dumps(body).encode())

            def reply(self, status, body, headers=None):
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the daemon gave up on a stalled call

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def got(self, role=None):
        with self.lock:
            return [c for c in self.calls if role is None or c[0] == role]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def llm_config(fake, **extra):
    return {"agent_backend": "llm", "llm_base_url": f"http://127.0.0.1:{fake.port}/v1",
            "llm_api_key": "sk-test-key", "llm_model": "fake-1",
            "reclaim_idle_ms": 30000,  # above the batch deadline, as the daemon requires
            **extra}


def publish_spikes(port, prefix, first, count):
    """For each of `count` accounts: twelve ordinary amounts then a huge one (rules: BLOCK).
    Returns the huge ones' ids."""
    msgs, ids = [], []
    for a in range(count):
        base = first + 100 * a
        for i in range(12):
            msgs.append((f"aetheris/transactions/{prefix}{a}/{base + i}",
                         json.dumps({"transactionId": base + i, "accountOrigin": f"{prefix}{a}",
                                     "amount": 100 + i}), 1, False))
        ids.append(base + 12)
    for a, t in enumerate(ids):  # the spikes last, together, so they can share a batch
        msgs.append((f"aetheris/transactions/{prefix}{a}/{t}",
                     json.dumps({"transactionId": t, "accountOrigin": f"{prefix}{a}",
                                 "amount": 90000}), 1, False))
    publish.multiple(msgs, hostname="127.0.0.1", port=port)
    return ids


def decision(d, txid, timeout=20):
    wait_until(lambda: d.get(f"/v1/decisions/{txid}")[0] == 200, timeout, f"decision {txid}")
    doc = d.get(f"/v1/decisions/{txid}")[1]
    return doc, {v["agent"]: v for v in doc["votes"]}


def test_model_votes_decide_in_batches(stack):
    """Invariant: with agent_backend=llm the model's votes decide (here APPROVE for spikes the
    rules would BLOCK), each role is asked once per batch about the whole batch, and every
    Auditor history lookup is audited."""
    fake = FakeLLM()
    try:
        d = stack.start_daemon(llm_config(fake, immediate_batch_size=5,
                                          immediate_batch_max_wait_ms=500))
        ids = publish_spikes(stack.mosq.port, "L", 10000, 4)
        docs = [decision(d, t) for t in ids]
        for doc, votes in docs:
            assert doc["action"] == "APPROVE", doc
            assert all(votes[r]["source"] == "llm" and votes[r]["decision"] == "APPROVE"
                       and votes[r]["reason"] == f"fake {r} judged it" for r in ROLES), votes
        calls = fake.got()
        assert all(c[3] == "/v1/chat/completions" and c[4] == "Bearer sk-test-key"
                   for c in calls)
        for role in ROLES:
            batches = [c[1] for c in fake.got(role)]
            seen = [t for b in batches for t in b]
            assert sorted(seen) == sorted(map(str, ids)), (role, batches)
        assert sorted(map(sorted, (c[1] for c in fake.got("Analyst")))) == \
            sorted(map(sorted, (c[1] for c in fake.got("Auditor"))))
        assert len(calls) == 3 * len(fake.got("Analyst"))
        c = d.counters()
        assert c["llm_analyst_ok"] == len(fake.got("Analyst"))
        assert c["llm_calls_saved"] == 3 * (len(ids) - len(fake.got("Analyst")))
        assert c["llm_tokens_prompt"] == 100 * len(calls) and c["llm_fallback_votes"] == 0
        db = sqlite3.connect(d.opts["sqlite_path"])
        audited = db.execute("SELECT COUNT(*) FROM tool_audit WHERE tool = 'history_lookup'"
                             " AND txid IN (%s)" % ",".join(map(str, ids))).fetchone()[0]
        db.close()
        assert audited == len(ids)
        assert d.get("/v1/health")[1]["components"]["llm"]["status"] == "up"
    finally:
        fake.close()


def test_untrusted_answers_fall_back_per_role(stack):
    """Invariant: a malformed answer, a missing item and a failing endpoint each cost only the
    affected votes, which become the role's rule vote with source "rules-fallback"; the
    decision is still made."""
    fake = FakeLLM()
    try:
        fake.decide = lambda role, item: "REVIEW"
        fake.script["Analyst"] = ["malformed"]
        fake.script["Auditor"] = ["missing"]
        fake.script["Strategist"] = [500, 500, 500]
        d = stack.start_daemon(llm_config(fake, llm_max_retries=1,
                                          immediate_batch_max_wait_ms=500))
        ids = publish_spikes(stack.mosq.port, "F", 20000, 2)
        docs = [decision(d, t) for t in ids]
        analyst = [v["Analyst"] for _, v in docs]
        auditor = [v["Auditor"] for _, v in docs]
        strategist = [v["Strategist"] for _, v in docs]
        first_batch = fake.got("Analyst")[0][1]
        for txid, (doc, votes) in zip(ids, docs):
            if str(txid) not in first_batch:
                continue  # a later batch got valid answers
            assert votes["Analyst"]["source"] == "rules-fallback"
            assert votes["Analyst"]["decision"] == "BLOCK"  # the rule vote for a spike
            assert votes["Strategist"]["source"] == "rules-fallback"
        dropped = fake.got("Auditor")[0][1][0]  # "missing" leaves out the batch's first item
        by_id = dict(zip(map(str, ids), auditor))
        assert by_id[dropped]["source"] == "rules-fallback"
        assert all(v["source"] == "llm" and v["decision"] == "REVIEW"
                   for t, v in by_id.items() if t != dropped and t in fake.got("Auditor")[0][1])
        assert len(fake.got("Strategist")) >= 2  # retried once
        c = d.counters()
        assert c["llm_analyst_invalid"] >= 1 and c["llm_strategist_failed"] >= 1
        assert c["llm_auditor_ok"] >= 1 and c["llm_retries"] >= 1
        assert c["llm_fallback_votes"] >= 1 + 2 * len(first_batch)
        assert len(analyst) == len(strategist) == len(ids)
    finally:
        fake.close()


def test_retry_after_is_honoured(stack):
    """Invariant: a 429 with Retry-After is retried no sooner than asked, and the retry's answer
    is used."""
    fake = FakeLLM()
    try:
        fake.script["Analyst"] = [(429, {"Retry-After": "1"})]
        fake.decide = lambda role, item: "BLOCK"
        d = stack.start_daemon(llm_config(fake))
        (txid,) = publish_spikes(stack.mosq.port, "R", 30000, 1)
        doc, votes = decision(d, txid)
        calls = fake.got("Analyst")
        assert len(calls) == 2 and calls[1][2] - calls[0][2] >= 0.95, calls
        assert votes["Analyst"]["source"] == "llm" and doc["action"] == "BLOCK"
        assert d.counters()["llm_retries"] == 1
    finally:
        fake.close()


def test_deadline_and_circuit_breaker(stack):
    """Invariant: a stalled endpoint costs a batch at most llm_batch_deadline_ms; after
    llm_breaker_failures failed calls the breaker opens, health shows the LLM degraded and the
    rule agents decide without calling; after the cool-down one batch tries again and a good
    answer closes the breaker."""
    fake = FakeLLM()
    try:
        fake.default = "stall"
        d = stack.start_daemon(llm_config(fake, llm_timeout_ms=400, llm_batch_deadline_ms=1000,
                                          llm_max_retries=0, llm_breaker_failures=3,
                                          llm_breaker_cooldown_s=3))
        t0 = time.monotonic()
        (first,) = publish_spikes(stack.mosq.port, "B", 40000, 1)
        doc, votes = decision(d, first)
        assert time.monotonic() - t0 < 8
        assert all(v["source"] == "rules-fallback" for v in votes.values())
        assert doc["action"] == "BLOCK"  # the rules' verdict on a spike
        wait_until(lambda: d.get("/v1/health")[1]["components"]["llm"]["status"] == "degraded",
                   5, "the LLM shown degraded")
        assert d.get("/v1/health")[1]["status"] == "degraded"
        calls_before = len(fake.got())
        (second,) = publish_spikes(stack.mosq.port, "B", 41000, 1)
        doc, votes = decision(d, second)
        assert all(v["source"] == "rules-fallback" for v in votes.values())
        assert len(fake.got()) == calls_before, "the open breaker still called the model"
        assert d.counters()["llm_analyst_skipped"] >= 1

        fake.default = "valid"
        time.sleep(3.2)
        (third,) = publish_spikes(stack.mosq.port, "B", 42000, 1)
        doc, votes = decision(d, third)
        assert all(v["source"] == "llm" for v in votes.values()), votes
        assert d.get("/v1/health")[1]["components"]["llm"]["status"] == "up"
    finally:
        fake.close()
