"""GET /v1/stream (Server-Sent Events) against the real stack: an anomaly published on MQTT and
its decision arrive on the stream, keep-alives on an idle stream, the cap on streams and the
slot freed by a disconnect, Last-Event-ID resumption, type filters, and shutdown with open
streams."""
import json
import socket
import time

import paho.mqtt.publish as publish

from conftest import wait_until


class SSE:
    """A raw-socket SSE client: reads frames with a deadline, parses id/event/data."""

    def __init__(self, port, path="/v1/stream", headers=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n", 10)
        self.status = int(head.split(b" ", 2)[1])
        self.headers = head.decode()

    def _until(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {marker!r} within {timeout}s; got {self.buf[-300:]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"stream closed; got {self.buf[-300:]!r}")
            self.buf += chunk
        out, self.buf = self.buf.split(marker, 1)
        return out

    def frames(self, timeout):
        """Yields {'id','event','data','comment'} frames (chunked framing stripped)."""
        deadline = time.monotonic() + timeout
        while True:
            raw = self._until(b"\n\n", max(0.01, deadline - time.monotonic()))
            f = {}
            for line in raw.decode().split("\n"):
                if line.startswith(":"):
                    f["comment"] = line[1:].strip()
                elif ": " in line and line.split(": ", 1)[0] in ("id", "event", "data", "retry"):
                    k, v = line.split(": ", 1)
                    f[k] = v
            yield f

    def events(self, n, timeout=20, kinds=("anomaly", "decision")):
        got = []
        for f in self.frames(timeout):
            if f.get("event") in kinds:
                got.append((int(f["id"]), f["event"], json.loads(f["data"])))
                if len(got) == n:
                    return got

    def close(self):
        self.sock.close()


def publish_block(port, account, first):
    """Publishes a normal history then a huge amount on MQTT; returns the huge one's id."""
    msgs = [(f"aetheris/transactions/{account}/{first + i}",
             json.dumps({"transactionId": first + i, "accountOrigin": account, "amount": 100 + i}),
             1, False) for i in range(12)]
    huge = first + 12
    msgs.append((f"aetheris/transactions/{account}/{huge}",
                 json.dumps({"transactionId": huge, "accountOrigin": account, "amount": 90000}),
                 1, False))
    publish.multiple(msgs, hostname="127.0.0.1", port=port)
    return huge


def test_anomaly_and_decision_arrive(stack):
    """Invariant: a client on /v1/stream receives the anomaly published over MQTT and then its
    decision, in order, with increasing ids; a type filter gets only its type."""
    d = stack.start_daemon()
    s = SSE(d.http_port)
    only = SSE(d.http_port, "/v1/stream?types=decision")
    assert s.status == 200 and "text/event-stream" in s.headers
    huge = publish_block(stack.mosq.port, "S1", 100)
    (id1, ev1, a), (id2, ev2, dec) = s.events(2)
    assert (ev1, a["transactionId"], a["priority"]) == ("anomaly", huge, "immediate")
    assert (ev2, dec["transaction_id"], dec["action"]) == ("decision", huge, "BLOCK")
    assert id2 > id1
    (_, ev, dec2), = only.events(1)
    assert ev == "decision" and dec2 == dec
    assert d.get("/v1/health")[1]["components"]["stream"]["clients"] == 2
    s.close()
    only.close()
    status, body = d.get("/v1/stream?types=nope")
    assert status == 400 and "types" in body["detail"]


def test_keepalive_cap_and_disconnect(stack):
    """Invariant: an idle stream gets keep-alive comments; past sse_max_streams a new stream is
    refused with 503 problem + Retry-After; closing one frees its slot."""
    d = stack.start_daemon({"sse_keepalive_s": 1, "sse_max_streams": 2})
    a, b = SSE(d.http_port), SSE(d.http_port)
    t0 = time.monotonic()
    for f in a.frames(5):
        if f.get("comment") == "keep-alive":
            break
    assert time.monotonic() - t0 < 4
    c = SSE(d.http_port)
    assert c.status == 503 and "Retry-After: 5" in c.headers
    assert "too-many-streams" in c._until(b"}", 5).decode()
    c.close()
    a.close()
    # The departed client is noticed at its next keep-alive write, then its slot is free.
    wait_until(lambda: d.get("/v1/health")[1]["components"]["stream"]["clients"] == 1, 10,
               "the closed stream released")
    e = SSE(d.http_port)
    assert e.status == 200
    e.close()
    b.close()


def test_last_event_id_resumes(stack):
    """Invariant: reconnecting with Last-Event-ID delivers every event after it, once."""
    d = stack.start_daemon()
    s = SSE(d.http_port)
    huge = publish_block(stack.mosq.port, "S2", 200)
    (first_id, _, _), (second_id, _, _) = s.events(2)
    s.close()
    huge2 = publish_block(stack.mosq.port, "S3", 300)  # published while disconnected
    wait_until(lambda: d.get(f"/v1/decisions/{huge2}")[0] == 200, 20, "second decision")
    r = SSE(d.http_port, headers={"Last-Event-ID": str(first_id)})
    got = r.events(3)
    assert got[0][0] == second_id and got[0][1] == "decision"
    assert got[0][2]["transaction_id"] == huge
    assert [(e, x.get("transactionId", x.get("transaction_id"))) for _, e, x in got[1:]] == [
        ("anomaly", huge2), ("decision", huge2)]
    r.close()


def test_shutdown_with_open_streams(stack):
    """Invariant: SIGTERM with open (suspended) streams ends them and the daemon exits 0 quickly
    (the harness checks the exit code and the sanitizer log at teardown)."""
    d = stack.start_daemon({"sse_keepalive_s": 60})
    clients = [SSE(d.http_port) for _ in range(3)]
    for c in clients:
        next(c.frames(5))  # the retry frame: the stream is up and then suspended
    t0 = time.monotonic()
    assert d.stop(timeout=15) == 0
    assert time.monotonic() - t0 < 10
    for c in clients:
        c.close()
