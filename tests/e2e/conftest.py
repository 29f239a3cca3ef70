"""End-to-end harness: real redis-server, mosquitto and aetherisd on free loopback ports.

Every test gets its own temporary directory, ports, config file and processes (parallel-safe:
ports are never handed out twice by one test process, and each server is checked to be alive
and listening before a test uses it). Binaries come from $AETHERIS_BIN_DIR (default: build/).

Each server can be stopped (SIGTERM), killed (SIGKILL), paused (SIGSTOP) and resumed (SIGCONT),
and restarted on the same port with the same data directory. At teardown the daemon is stopped
with SIGTERM and must exit 0 within 15 s; the test fails if the daemon died on its own or if its
log (stdout and stderr) contains a sanitizer report.

Also here: an MQTT collector recording what the daemon publishes, and an independent reference
implementation of the edge scoring (DESIGN.md 3.2) over the CSV.
"""
import csv
import functools
import json
import math
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import re
import warnings

import jsonschema
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("AETHERIS_BIN_DIR", os.path.join(ROOT, "build"))
DATASET = os.path.join(ROOT, "data", "transactions.csv")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")
DAEMON_STOP_TIMEOUT = 15  # seconds a SIGTERMed daemon has to drain and exit 0
READY_TIMEOUT = 20        # seconds from start to GET /readyz == 200 (ASan start-up included)

SPEC_PATH = os.path.join(ROOT, "openapi", "openapi.yaml")


@functools.lru_cache(maxsize=1)
def openapi_spec():
    """The repository's OpenAPI spec, parsed once, with a compiled matcher per path."""
    with open(SPEC_PATH) as f:
        spec = yaml.safe_load(f)
    matchers = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p)
                for p in spec["paths"]]
    return spec, matchers


def _deref(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        node = _resolve_pointer(spec, node["$ref"])
    return node


def _resolve_pointer(spec, ref):
    node = spec
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def validate_against_spec(method, path, status, headers, body):
    """Checks one real response against openapi/openapi.yaml: the operation exists (or the
    status is a route-level 404/405), the status is documented for it (or falls under its
    `default`), the content type is a documented one, and a JSON body matches the schema.
    Raises AssertionError naming the mismatch."""
    spec, matchers = openapi_spec()
    bare = urllib.parse.urlsplit(path).path
    template = next((p for rx, p in matchers if rx.match(bare)), None)
    op = spec["paths"][template].get(method.lower() if method != "HEAD" else "get") \
        if template else None
    if op is None:
        assert status in (404, 405), f"{method} {bare} -> {status}: not an operation of the spec"
        assert headers.get("Content-Type", "").startswith("application/problem+json")
        return
    responses = op["responses"]
    resp = _deref(spec, responses.get(str(status)) or responses.get("default"))
    assert resp is not None, f"{method} {template}: status {status} is not documented"
    ctype = headers.get("Content-Type", "").split(";")[0].strip()
    content = resp.get("content")
    if content is None or method == "HEAD":
        return
    assert ctype in content, f"{method} {template} {status}: content type {ctype} not in spec"
    schema = content[ctype].get("schema")
    if schema is None or "json" not in ctype:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        resolver = jsonschema.RefResolver("", spec)
        validator = jsonschema.Draft202012Validator(schema, resolver=resolver)
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert not errors, (f"{method} {template} {status}: body does not match the spec: "
                        f"{errors[0].message} at {list(errors[0].path)}")


_ports_given = set()
_ports_lock = threading.Lock()


def free_port():
    """A loopback TCP port that is free now and was not handed out before by this process."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _ports_lock:
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise AssertionError("no free loopback port")


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a truthy value and returns that value; fails the test
    after timeout seconds. Connection errors inside predicate (a server restarting) count as
    'not yet'."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except (OSError, ConnectionError) as e:  # urllib.error.URLError is an OSError
            last = e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
    except OSError:
        return "(no log)"


class Server:
    """A child process with a fixed command line and port, logging stdout+stderr to a file in
    the test's directory, that can be stopped, killed, paused, resumed and restarted."""

    def __init__(self, name, argv, port, workdir):
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.proc = None
        self.logf = None
        self.paused = False
        self.stopped_by_test = False
        self.log = os.path.join(workdir, f"{name}.log")

    def start(self, timeout=10):
        if self.logf is not None:
            self.logf.close()
        self.logf = open(self.log, "ab")
        self.stopped_by_test = False
        self.paused = False
        self.proc = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT,
                                     cwd=self.workdir)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode} at start:\n"
                                     f"{tail(self.log)}")
            return port_open(self.port)
        wait_until(up, timeout, f"{self.name} listening on port {self.port}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig):
        assert self.running(), f"{self.name} is not running"
        self.proc.send_signal(sig)

    def pause(self):
        """SIGSTOP: the process keeps its sockets but answers nothing."""
        self.send(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.send(signal.SIGCONT)
        self.paused = False

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig (resuming a paused process first) and waits for the exit; returns the exit
        status (negative: killed by that signal), or None if it never ran. Fails the test if
        the process outlives timeout (it is then killed)."""
        if self.proc is None:
            return None
        self.stopped_by_test = True
        try:
            if self.proc.poll() is not None:
                return self.proc.returncode
            self.proc.send_signal(sig)
            if self.paused and sig != signal.SIGKILL:
                self.proc.send_signal(signal.SIGCONT)
            self.paused = False
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not exit within {timeout}s of signal "
                                     f"{sig}:\n{tail(self.log)}")
        finally:
            if self.logf is not None:
                self.logf.close()
                self.logf = None

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self, sig=signal.SIGTERM):
        """Stops with sig and starts again on the same port with the same files."""
        self.stop(sig)
        self.start()


def start_redis(workdir, port=None):
    d = os.path.join(workdir, "redis")
    os.makedirs(d, exist_ok=True)
    for attempt in range(3):
        p = port or free_port()
        srv = Server("redis", ["redis-server", "--port", str(p), "--bind", "127.0.0.1",
                               "--dir", d, "--appendonly", "yes", "--appendfsync", "everysec",
                               "--save", "", "--daemonize", "no"], p, workdir)
        try:
            srv.start()
            return srv
        except AssertionError:  # the port was taken meanwhile by someone else: another port
            srv.stop(signal.SIGKILL)
            if attempt == 2 or port:
                raise


def start_mosquitto(workdir):
    d = os.path.join(workdir, "mosquitto")
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, "mosquitto.conf")
    for attempt in range(3):
        port = free_port()
        with open(conf, "w") as f:
            # persistence: the daemon's persistent session (its subscription and the QoS 1
            # messages queued for it) survives a broker restart; mosquitto writes it at SIGTERM.
            # max_queued_messages 0 = unlimited: the default of 1000 would drop messages queued
            # while the daemon is down, which is exactly the loss the recovery tests look for.
            # max_inflight_messages stays at its default (20 per client): flow control per client
            # is not what these tests exercise.
            # user: started as root, mosquitto would switch to user "mosquitto", which cannot
            # write its database into the test's private directory; naming the invoking user
            # keeps it (ignored when not root).
            # set_tcp_nodelay: without it every QoS 1 acknowledgement waits ~40 ms (Nagle +
            # delayed ACK), which a real deployment must avoid too.
            user = "root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {d}/\nmax_queued_messages 0\nuser {user}\n"
                    f"set_tcp_nodelay true\n")
        srv = Server("mosquitto", ["mosquitto", "-c", conf], port, workdir)
        try:
            srv.start()
            return srv
        except AssertionError:
            srv.stop(signal.SIGKILL)
            if attempt == 2:
                raise


class Daemon(Server):
    """aetherisd with a per-test config file (`name = value`, names as in common/config.h)."""

    def __init__(self, workdir, redis, mosq, extra=None, bin_dir=None):
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
            "auth_disabled": "true",  # auth has its own tests (test_auth.py), with keys
            "rate_limit_rps": 0,  # so is the rate limit; other tests poll the API freely
        }
        opts.update(extra or {})
        with open(self.conf, "w") as f:
            for k, v in opts.items():
                f.write(f"{k} = {v}\n")
        self.opts = opts
        super().__init__("aetherisd", [os.path.join(bin_dir or BIN, "server", "aetherisd"), "--config",
                                       self.conf], self.http_port, workdir)

    def start(self, timeout=READY_TIMEOUT):
        t0 = time.monotonic()
        try:
            super().start(timeout=timeout)

            def ready():
                if self.proc.poll() is not None:
                    raise AssertionError(f"aetherisd exited {self.proc.returncode}")
                return self.get("/readyz")[0] == 200
            wait_until(ready, max(1.0, timeout - (time.monotonic() - t0)), "aetherisd /readyz")
        except AssertionError as e:
            raise AssertionError(f"daemon not ready ({e}); log tail:\n{self.log_tail()}")

    def log_tail(self, n=30):
        return tail(self.log, n)

    def sanitizer_reports(self):
        try:
            with open(self.log, "rb") as f:
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        return [m for m in SANITIZER_MARKS if m in text]

    def request(self, method, path, body=None, headers=None, timeout=10):
        """One HTTP request; returns (status, headers, body) with JSON bodies parsed."""
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
        validate_against_spec(method, path, status, hdrs, parsed)
        return status, hdrs, parsed

    def get(self, path):
        status, _, body = self.request("GET", path)
        return status, body

    def counters(self):
        status, body = self.get("/v1/metrics")
        assert status == 200, body
        return body["counters"]


class Stack:
    """One test's servers: redis-server and mosquitto at once, aetherisd on demand."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.redis = self.mosq = self.daemon = None
        self.redis = start_redis(workdir)
        self.mosq = start_mosquitto(workdir)

    def start_daemon(self, extra=None, bin_dir=None):
        """Starts aetherisd (a fresh config from the defaults above plus extra; the binary from
        bin_dir, default $AETHERIS_BIN_DIR) and waits for /readyz. A previous daemon must have
        been stopped; its data directory is reused."""
        assert self.daemon is None or not self.daemon.running(), "daemon already running"
        self.daemon = Daemon(self.workdir, self.redis, self.mosq, extra, bin_dir)
        self.daemon.start()
        return self.daemon

    def replay_argv(self, *args):
        return [os.path.join(BIN, "tools", "aetheris-replay"), "--url",
                f"tcp://127.0.0.1:{self.mosq.port}", "--file", DATASET, *args]

    def replay(self, *args, timeout=240, check=True):
        """Runs aetheris-replay to the end; returns its JSON summary."""
        out = subprocess.run(self.replay_argv(*args), capture_output=True, timeout=timeout,
                             text=True)
        if check:
            assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    def replay_async(self, *args):
        return subprocess.Popen(self.replay_argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def redis_cmd(self, *args):
        """One Redis command through redis-cli; its raw text output."""
        out = subprocess.run(["redis-cli", "-p", str(self.redis.port), *map(str, args)],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def teardown(self):
        """Stops everything; returns the list of problems found with the daemon."""
        errors = []
        d = self.daemon
        if d is not None and d.proc is not None:
            died = d.proc.poll() is not None and not d.stopped_by_test
            try:
                rc = d.stop(timeout=DAEMON_STOP_TIMEOUT)
            except AssertionError as e:
                rc, died = None, False
                errors.append(str(e))
            if died:
                errors.append(f"aetherisd died during the test (exit {rc}):\n{d.log_tail()}")
            elif rc not in (0, None) and not (rc == -signal.SIGKILL and d.stopped_by_test):
                errors.append(f"aetherisd exited {rc} on SIGTERM:\n{d.log_tail()}")
            reports = d.sanitizer_reports()
            if reports:
                errors.append(f"sanitizer reports {reports} in {d.log}")
        for srv in (self.mosq, self.redis):
            if srv is not None:
                try:
                    srv.kill()
                except AssertionError as e:
                    errors.append(str(e))
        return errors


@pytest.fixture
def stack(tmp_path):
    s = Stack(str(tmp_path))
    try:
        yield s
    finally:
        errors = s.teardown()
    assert not errors, "\n".join(errors)


class Collector:
    """A paho MQTT subscriber (its own thread, persistent session, QoS 1) recording every
    payload on the given topics. It reconnects and resubscribes by itself after a broker
    restart."""

    def __init__(self, port, topics, client_id):
        import paho.mqtt.client as mqtt
        self.raw = {t: [] for t in topics}
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(client_id=client_id, clean_session=False)

        def on_connect(client, userdata, flags, rc):
            if rc == 0:
                client.subscribe([(t, 1) for t in topics])

        def on_subscribe(client, userdata, mid, granted_qos):
            self.subscribed.set()

        def on_message(client, userdata, msg):
            with self.lock:  # parsing happens in get(): an exception here would kill the loop
                self.raw.setdefault(msg.topic, []).append(bytes(msg.payload))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        assert self.subscribed.wait(10), "collector could not subscribe"

    def get(self, topic):
        """Every payload received on topic so far, parsed as JSON (each must be JSON)."""
        with self.lock:
            raw = list(self.raw[topic])
        out = []
        for p in raw:
            try:
                out.append(json.loads(p))
            except ValueError:
                raise AssertionError(f"non-JSON payload on {topic}: {p[:200]!r}")
        return out

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def collector_factory():
    made = []

    def make(port, topics=("aetheris/commands", "aetheris/exceptions")):
        c = Collector(port, topics, f"e2e-collector-{os.getpid()}-{port}-{len(made)}")
        made.append(c)
        return c
    yield make
    for c in made:
        c.close()


def _round4_ambiguous(x):
    """True when x is within 1e-9 of a half-way point between two 4-decimal values, where two
    correct implementations may round differently."""
    frac = x * 1e4 - math.floor(x * 1e4)
    return abs(frac - 0.5) < 1e-5


@functools.lru_cache(maxsize=8)
def _reference(path, limit, window, min_points, threshold, scale, immediate):
    windows, seen, out, borderline = {}, set(), {}, set()
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f)):
            if limit is not None and n >= limit:
                break
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
                raw = 0.7 * min(abs(z) / 6, 1) + 0.3 * min(amount / scale, 1)
                sus = round(raw, 4)
                out[txid] = {"z": z, "abs_z": abs(z), "mean": mean, "std": std,
                             "suspicion": sus, "suspicion_ambiguous": _round4_ambiguous(raw),
                             "priority": "immediate" if sus >= immediate else "batch",
                             "account": row["AccountOriginID"], "amount": amount,
                             "history": min(len(w) + 1, window)}
            w.append(amount)
            if len(w) > window:
                w.pop(0)
    return out, frozenset(borderline)


def reference_exceptions(path=DATASET, window=100, min_points=5, threshold=2.5, scale=5000.0,
                         immediate=0.9, limit=None):
    """An independent two-pass implementation of DESIGN.md 3.2 over the CSV (its first `limit`
    data rows, all by default), in file order, skipping repeated transactionIds.

    Returns ({txid: {z, abs_z, mean, std, suspicion, suspicion_ambiguous, priority, account,
    amount, history}}, borderline) where borderline is the set of txids whose |z| is within 1e-9
    (relative) of the threshold: floating point cannot say on which side those fall, so tests
    leave them out of set comparisons. The result is cached; do not modify it."""
    return _reference(path, limit, window, min_points, threshold, scale, immediate)


def suspicion_matches(got, ref):
    """Suspicion is exact (4 decimals), except at a rounding half-way point where either
    neighbour is accepted."""
    if got == ref["suspicion"]:
        return True
    return ref["suspicion_ambiguous"] and abs(got - ref["suspicion"]) <= 1.0001e-4


def decisions_total(c):
    return c["decisions_approve"] + c["decisions_review"] + c["decisions_block"]


def dataset_ids(limit=None):
    """TransactionIDs of the CSV's first `limit` data rows (all by default), in file order."""
    with open(DATASET, newline="") as f:
        rows = csv.DictReader(f)
        return [int(r["TransactionID"]) for n, r in enumerate(rows)
                if limit is None or n < limit]
