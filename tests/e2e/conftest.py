"""End-to-end harness: real redis-server, mosquitto and aetherisd on free loopback ports.

Every test gets its own temporary directory, ports, config file and processes (parallel-safe).
Binaries come from $AETHERIS_BIN_DIR (default: build/). At teardown the daemon is stopped with
SIGTERM and must exit 0 in time; its stderr must not contain sanitizer reports.
"""
import csv
import json
import math
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("AETHERIS_BIN_DIR", os.path.join(ROOT, "build"))
DATASET = os.path.join(ROOT, "data", "transactions.csv")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a truthy value; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def wait_port(port, timeout=10):
    def up():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    wait_until(up, timeout, f"port {port}")


class Server:
    """A child process with a fixed command line that can be stopped, killed, paused, restarted."""

    def __init__(self, name, argv, port, workdir):
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.proc = None
        self.log = os.path.join(workdir, f"{name}.log")

    def start(self):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)
        wait_port(self.port)

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout}s")
        finally:
            self.logf.close()

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        self.start()


def start_redis(workdir):
    port = free_port()
    d = os.path.join(workdir, "redis")
    os.makedirs(d, exist_ok=True)
    srv = Server("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                           "--dir", d, "--appendonly", "yes", "--appendfsync", "everysec",
                           "--save", ""], port, workdir)
    srv.start()
    return srv


def start_mosquitto(workdir):
    port = free_port()
    d = os.path.join(workdir, "mosquitto")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "mosquitto.conf")
    with open(conf, "w") as f:
        # Persistence keeps the daemon's persistent-session queue across a broker restart;
        # max_queued_messages 0 (unlimited) lets that queue hold a whole replay while the daemon
        # is down (the default of 1000 would drop messages, which is what the tests must not see).
        # Started as root, mosquitto would switch to user "mosquitto", which cannot write its
        # database into the test's private directory; `user` keeps the invoking user (ignored
        # when not root). set_tcp_nodelay: without it every QoS 1 acknowledgement from the broker
        # waits ~40 ms (Nagle + delayed ACK), which is what a real deployment must avoid too.
        user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                f"persistence_location {d}/\nmax_queued_messages 0\nuser {user}\n"
                f"set_tcp_nodelay true\n")
    srv = Server("mosquitto", ["mosquitto", "-c", conf], port, workdir)
    srv.start()
    return srv


class Daemon(Server):
    def __init__(self, workdir, redis, mosq, extra=None):
        self.http_port = free_port()
        self.conf = os.path.join(workdir, "aetherisd.conf")
        opts = {
            "http_port": self.http_port,
            "mqtt_url": f"tcp://127.0.0.1:{mosq.port}",
            "redis_url": f"redis://127.0.0.1:{redis.port}/0",
            "data_dir": os.path.join(workdir, "var"),
            "sqlite_path": os.path.join(workdir, "var", "aetheris.db"),
            "node_id": "e2e-node",
            "snapshot_interval_ms": 500,
            "reclaim_idle_ms": 2000,
            "drain_timeout_ms": 10000,
            "log_level": "info",
        }
        opts.update(extra or {})
        with open(self.conf, "w") as f:
            for k, v in opts.items():
                f.write(f"{k} = {v}\n")
        self.opts = opts
        super().__init__("aetherisd", [os.path.join(BIN, "server", "aetherisd"), "--config",
                                       self.conf], self.http_port, workdir)

    def start(self):
        super().start()
        try:
            wait_until(lambda: self.get("/readyz")[0] == 200, 20, "aetherisd /readyz")
        except AssertionError:
            raise AssertionError("daemon not ready; log tail:\n" + self.log_tail())

    def log_tail(self, n=30):
        with open(self.log, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")

    def sanitizer_reports(self):
        with open(self.log, "rb") as f:
            text = f.read().decode(errors="replace")
        return [m for m in SANITIZER_MARKS if m in text]

    def request(self, method, path, body=None, headers=None, timeout=10):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status, hdrs = r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw, status, hdrs = e.read(), e.code, dict(e.headers)
        ctype = hdrs.get("Content-Type", "")
        parsed = json.loads(raw) if raw and "json" in ctype else raw
        return status, hdrs, parsed

    def get(self, path):
        status, _, body = self.request("GET", path)
        return status, body

    def counters(self):
        status, body = self.get("/v1/metrics")
        assert status == 200, body
        return body["counters"]


class Stack:
    def __init__(self, workdir):
        self.workdir = workdir
        self.redis = start_redis(workdir)
        self.mosq = start_mosquitto(workdir)
        self.daemon = None

    def start_daemon(self, extra=None):
        self.daemon = Daemon(self.workdir, self.redis, self.mosq, extra)
        self.daemon.start()
        return self.daemon

    def replay(self, *args, timeout=240, check=True):
        argv = [os.path.join(BIN, "tools", "aetheris-replay"), "--url",
                f"tcp://127.0.0.1:{self.mosq.port}", "--file", DATASET, *args]
        out = subprocess.run(argv, capture_output=True, timeout=timeout, text=True)
        if check:
            assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def replay_async(self, *args):
        argv = [os.path.join(BIN, "tools", "aetheris-replay"), "--url",
                f"tcp://127.0.0.1:{self.mosq.port}", "--file", DATASET, *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def redis_cmd(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.redis.port), *map(str, args)],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()


@pytest.fixture
def stack(tmp_path):
    s = Stack(str(tmp_path))
    yield s
    errors = []
    if s.daemon is not None:
        rc = s.daemon.stop()
        if rc not in (0, None, -9):
            errors.append(f"aetherisd exited {rc} on SIGTERM:\n{s.daemon.log_tail()}")
        reports = s.daemon.sanitizer_reports()
        if reports:
            errors.append(f"sanitizer reports {reports} in {s.daemon.log}")
    for srv in (s.mosq, s.redis):
        try:
            srv.kill()
        except AssertionError:
            pass
    assert not errors, "\n".join(errors)


class Collector:
    """A paho MQTT subscriber recording every payload on the given topics (QoS 1)."""

    def __init__(self, port, topics, client_id):
        import paho.mqtt.client as mqtt
        self.messages = {t: [] for t in topics}
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(client_id=client_id, clean_session=False)

        def on_connect(client, userdata, flags, rc):
            for t in topics:
                client.subscribe(t, qos=1)
            self.ready.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.messages[msg.topic].append(json.loads(msg.payload))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.ready.wait(10), "collector could not connect"
        time.sleep(0.2)  # the SUBACK

    def get(self, topic):
        with self.lock:
            return list(self.messages[topic])

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector_factory():
    made = []

    def make(port, topics=("aetheris/commands", "aetheris/exceptions")):
        c = Collector(port, topics, f"e2e-collector-{port}-{len(made)}")
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def reference_exceptions(path=DATASET, window=100, min_points=5, threshold=2.5, scale=5000.0,
                         immediate=0.9):
    """An independent two-pass implementation of DESIGN.md 3.2 over the CSV, in file order,
    skipping repeated transactionIds. Returns {txid: dict(z, mean, std, suspicion, priority)}
    plus the set of txids whose |z| is within 1e-9 of the threshold (ambiguous in floating
    point, excluded from set comparisons)."""
    windows, seen, out, borderline = {}, set(), {}, set()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            txid = int(row["TransactionID"])
            if txid in seen:
                continue
            seen.add(txid)
            amount = float(row["Amount"])
            w = windows.setdefault(row["AccountOriginID"], [])
            z, mean, std = 0.0, 0.0, 0.0
            if w:
                mean = sum(w) / len(w)
                std = math.sqrt(sum((x - mean) ** 2 for x in w) / len(w))
                if min(w) == max(w):
                    mean, std = w[0], 0.0
            if len(w) >= min_points and std > 0:
                z = (amount - mean) / std
            if abs(abs(z) - threshold) <= 1e-9 * threshold:
                borderline.add(txid)
            if abs(z) > threshold:
                sus = round(0.7 * min(abs(z) / 6, 1) + 0.3 * min(amount / scale, 1), 4)
                out[txid] = {"z": z, "mean": mean, "std": std, "suspicion": sus,
                             "priority": "immediate" if sus >= immediate else "batch",
                             "account": row["AccountOriginID"]}
            w.append(amount)
            if len(w) > window:
                w.pop(0)
    return out, borderline


def decisions_total(c):
    return c["decisions_approve"] + c["decisions_review"] + c["decisions_block"]
