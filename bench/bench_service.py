#!/usr/bin/python3
"""Service benchmarks against the real stack (mosquitto, redis-server, aetherisd on free loopback
ports under a temporary directory; every wait bounded). Prints one JSON object per benchmark:

  rss         idle RSS of the daemon, and RSS after ingesting --accounts distinct accounts
  freshness   publish one event, poll GET /v1/metrics (through the cache) until it is counted:
              p50/p99 over --samples events
  latency     event-to-decision per lane at fixed offered loads, open loop (bench/bench_latency:
              a fixed schedule, latency from each event's scheduled send time to its command
              arriving on MQTT, so a slow daemon can neither slow the load nor hide the wait);
              --latency-publisher paho sends with paho (Nagle on) instead of its own TCP_NODELAY
              socket, to compare with figures from before 2026-12-07
  rest        wrk on cached GET /v1/metrics, GET /v1/decisions?limit=50 and GET /v1/health, idle
              and under ingest, against the same load on bench/static_http (a minimal epoll server serving
              a fixed body of the same size) as the machine's HTTP ceiling
  webhooks    deliveries/s from the outbox to a loopback receiver (bench/static_http counting
              POSTs), and the count it received

Usage: bench/bench_service.py [--build DIR] [--only a,b,...]"""
import argparse
import builtins
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from procstat import busiest_threads, cpu_s, ctx_switches, rss_kb, thread_cpu_s  # noqa: E402

BASE_OPTS = {"snapshot_interval_ms": 5000, "reclaim_idle_ms": 30000, "log_level": "warn",
             "mqtt_clean_session": "true"}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def make_csv(path, first_id, n, accounts, seed=1):
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            acct = 100000 + (i if accounts >= n else rnd.randrange(accounts))
            f.write(f"{first_id + i},{acct},200000,2,{rnd.uniform(10, 500):.2f},"
                    "2023-04-20 02:00:00.000000,41,bench\n")


def replay(build, stack, path, *args, wait=True):
    argv = [os.path.join(build, "tools", "aetheris-replay"), "--url",
            f"tcp://127.0.0.1:{stack.mosq.port}", "--file", path, "--quiet", *args]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if wait:
        p.wait(timeout=900)
    return p


def wait_ingested(d, n, timeout=300):
    from conftest import wait_until
    wait_until(lambda: d.counters()["ingested"] >= n, timeout, f"{n} events ingested",
               interval=0.05)


def bench_rss(stack, build, tmp, accounts):
    d = stack.start_daemon(BASE_OPTS)
    time.sleep(2)
    idle = rss_kb(d.proc.pid)
    path = os.path.join(tmp, "accounts.csv")
    make_csv(path, 50_000_000, accounts, accounts)
    replay(build, stack, path, "--qos", "1", "--batch", "100")
    wait_ingested(d, accounts)
    busy = rss_kb(d.proc.pid)
    d.stop()
    stack.daemon = None
    return {"bench": "rss", "idle_mb": round(idle / 1024, 1), "accounts": accounts,
            "after_accounts_mb": round(busy / 1024, 1),
            "bytes_per_account": round((busy - idle) * 1024 / accounts)}


def bench_freshness(stack, samples):
    import paho.mqtt.client as mqtt
    d = stack.start_daemon(BASE_OPTS)
    cli = mqtt.Client(client_id="bench-fresh")
    cli.connect("127.0.0.1", stack.mosq.port)
    cli.loop_start()
    base = f"http://127.0.0.1:{d.http_port}"

    def cached():  # GET /v1/metrics, through the Redis response cache
        with urllib.request.urlopen(base + "/v1/metrics", timeout=5) as r:
            return json.load(r)["counters"]["ingested"]

    def uncached():  # GET /metrics, computed on every request
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            return int(re.search(rb"^aetheris_events_ingested_total (\d+)$", r.read(),
                                 re.M).group(1))
    result = {"bench": "freshness", "samples": samples, "cache_invalidate_ms": 3}
    n = 0
    for name, read in (("cached_v1_metrics", cached), ("uncached_prometheus", uncached)):
        lat = []
        for _ in range(samples):
            before = read()
            t0 = time.perf_counter()
            cli.publish(f"aetheris/transactions/F{n}/{70_000_000 + n}",
                        json.dumps({"transactionId": 70_000_000 + n, "accountOrigin": f"F{n}",
                                    "amount": 10}), qos=0)
            n += 1
            deadline = t0 + 5
            while read() == before:
                if time.perf_counter() > deadline:
                    raise RuntimeError("an event was not counted within 5 s")
            lat.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
        result[name] = {"p50_ms": round(pct(lat, 50), 2), "p99_ms": round(pct(lat, 99), 2),
                        "max_ms": round(max(lat), 2)}
    cli.loop_stop()
    d.stop()
    stack.daemon = None
    return result


def bench_latency(stack, build, tmp, rates, seconds, publisher):
    """Per offered rate: a fresh daemon (rule agents, default lane windows) and bench/bench_latency
    (open loop, fixed schedule, latency from each event's *scheduled* send time to its command
    arriving on MQTT, per lane); the daemon's own per-lane histograms (edge arrival to XACK, whole
    milliseconds) are reported beside it."""
    out = []
    for i, rate in enumerate(rates):
        stack.redis_cmd("FLUSHALL")
        d = stack.start_daemon(BASE_OPTS)
        argv = [os.path.join(build, "bench", "bench_latency"), f"tcp://127.0.0.1:{stack.mosq.port}",
                str(rate), str(seconds), str(80_000_000 + i * 10_000_000), "200", "3000",
                publisher]
        cpu0, threads0, cs0 = cpu_s(d.proc.pid), thread_cpu_s(d.proc.pid), ctx_switches(d.proc.pid)
        r = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True,
                                      timeout=seconds + 60).stdout)
        cpu, threads1 = cpu_s(d.proc.pid) - cpu0, thread_cpu_s(d.proc.pid)
        # the daemon's CPU over the run (the generator's send window and its 3 s drain), per
        # offered event, and its busiest threads' shares of it
        r["daemon_cpu_us_per_event"] = round(cpu * 1e6 / (rate * seconds), 2)
        r["daemon_context_switches_per_event"] = round(
            (ctx_switches(d.proc.pid) - cs0) / (rate * seconds), 3)
        r["daemon_thread_cpu_s"] = busiest_threads(threads0, threads1)
        lat = d.get("/v1/metrics")[1]["latency_seconds"]
        for lane in ("immediate", "batch"):
            h = lat.get(f"event_to_decision_{lane}")  # absent from builds before the lanes split
            if h:
                r[lane]["daemon_histogram_ms"] = {q: round(h[q] * 1000, 2) for q in ("p50", "p99")}
        # the decider's time per batch (both lanes), read to published: the mean from the
        # Prometheus sum and count (the buckets are too coarse for its quantiles)
        prom = d.get("/metrics")[1].decode()
        tot = {k: float(re.search(rf"^aetheris_agent_batch_seconds_{k} (\S+)$", prom, re.M)[1])
               for k in ("sum", "count")}
        r["daemon_agent_batch_mean_ms"] = round(tot["sum"] * 1000 / max(tot["count"], 1), 3)
        r["batch_max_wait_ms"] = 300
        r["command"] = " ".join(["bench/bench_latency"] + argv[1:])
        out.append(r)
        d.stop()
        stack.daemon = None
        subprocess.run(["rm", "-rf", os.path.join(tmp, "var")], check=True)
    return out


def wrk(url, seconds=5, conns=32, pid=None):
    """wrk's rate and latency; with pid, also the server's CPU per request (robust to the other
    load on a shared machine, unlike the rate)."""
    cpu0 = cpu_s(pid) if pid else 0
    out = subprocess.run(["wrk", "--latency", "-t2", f"-c{conns}", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = cpu_s(pid) - cpu0 if pid else 0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s|m)$", out, re.M)
        if m is None:  # no distribution: no request completed
            return None
        return round(float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1000, "m": 60000}[m.group(2)],
                     3)
    r = {"requests_per_s": round(rps), "p50_ms": ms(50), "p99_ms": ms(99)}
    if pid:
        r["server_cpu_us_per_request"] = round(cpu * 1e6 / max(total, 1), 1)
    return r


def bench_rest(stack, build, tmp):
    from conftest import free_port
    d = stack.start_daemon({**BASE_OPTS, "rate_limit_rps": 0})
    path = os.path.join(tmp, "rest.csv")
    make_csv(path, 90_000_000, 20000, 2000)
    replay(build, stack, path, "--qos", "1", "--batch", "100")
    wait_ingested(d, 20000)
    time.sleep(5)  # let the agents finish those batches: the idle figures are idle
    base = f"http://127.0.0.1:{d.http_port}"
    routes = {"metrics_cached": "/v1/metrics", "decisions_50": "/v1/decisions?limit=50",
              "health": "/v1/health"}
    results = []
    for name, route in routes.items():
        size = len(urllib.request.urlopen(base + route, timeout=5).read())
        port = free_port()
        static = subprocess.Popen([os.path.join(build, "bench", "static_http"), str(port),
                                   str(size), "2"], stdout=subprocess.PIPE, text=True)
        assert json.loads(static.stdout.readline())["ready"]
        # 32 connections as in the first sessions (throughput), 8 for latency: at 32 in flight
        # Little's law alone puts the mean above 1 ms at 25k requests/s
        ceiling = {c: wrk(f"http://127.0.0.1:{port}/", conns=c, pid=static.pid) for c in (32, 8)}
        static.terminate()
        static.wait(timeout=10)
        idle = {c: wrk(base + route, conns=c, pid=d.proc.pid) for c in (32, 8)}
        load_path = os.path.join(tmp, f"load-{name}.csv")
        make_csv(load_path, 91_000_000 + 1_000_000 * len(results), 150000, 5000, seed=len(results))
        load = replay(build, stack, load_path, "--qos", "0", "--rate", "10000", wait=False)
        time.sleep(0.5)
        busy = {c: wrk(base + route, conns=c) for c in (32, 8)}
        load.wait(timeout=60)
        results.append({"bench": "rest", "route": route, "body_bytes": size,
                        "idle_c32": idle[32], "idle_c8": idle[8],
                        "under_10k_events_per_s_c32": busy[32],
                        "under_10k_events_per_s_c8": busy[8],
                        "static_ceiling_c32": ceiling[32], "static_ceiling_c8": ceiling[8],
                        "idle_ratio_to_ceiling": {
                            c: round(idle[c]["requests_per_s"] / ceiling[c]["requests_per_s"], 3)
                            for c in (32, 8)},
                        "command": "wrk --latency -t2 -c{32,8} -d5s URL"})
    d.stop()
    stack.daemon = None
    return results


def bench_webhooks(stack, build, tmp, rows):
    """Dispatcher capacity: `rows` deliveries are put in the outbox while the daemon is stopped
    (straight into the SQLite table), then the time to drain them to the receiver is measured.
    Then decision-to-first-attempt latency: spikes published over MQTT, each decision's
    decided time against its delivery's first attempt."""
    import sqlite3
    from conftest import free_port, wait_until
    port = free_port()
    rx = subprocess.Popen([os.path.join(build, "bench", "static_http"), str(port), "0", "2"],
                          stdout=subprocess.PIPE, text=True)
    assert json.loads(rx.stdout.readline())["ready"]
    opts = {**BASE_OPTS, "webhook_allow_cidrs": "127.0.0.0/8", "rate_limit_rps": 0}
    d = stack.start_daemon(opts)
    status, _, hook = d.request("POST", "/v1/webhooks", {"url": f"http://127.0.0.1:{port}/h"})
    assert status == 201, hook
    d.stop()
    db = sqlite3.connect(d.opts["sqlite_path"])
    body = json.dumps({"type": "decision.created", "timestamp": "2026-01-01T00:00:00.000Z",
                       "data": {"pad": "x" * 900}})
    now = int(time.time() * 1000)
    db.executemany("INSERT INTO webhook_outbox (webhook_id, msg_id, event_type, payload,"
                   " created_ms, due_ms) VALUES (?, ?, 'decision.created', ?, ?, ?)",
                   [(hook["id"], f"msg_bench_{i}", body, now, now) for i in range(rows)])
    db.commit()
    db.close()
    def delivered():  # the uncached Prometheus page: what the dispatcher has counted by now
        with urllib.request.urlopen(f"http://127.0.0.1:{d.http_port}/metrics", timeout=5) as r:
            return int(re.search(rb'^aetheris_webhook_deliveries_total\{outcome="delivered"\} '
                                 rb'(\d+)$', r.read(), re.M).group(1))
    t0 = time.monotonic()
    d = stack.start_daemon(opts)
    samples = []  # (seconds since start, delivered): the rate is taken between 10% and 90%
    while not samples or samples[-1][1] < rows:
        if time.monotonic() - t0 > 600:
            raise RuntimeError("the outbox did not drain within 600 s")
        samples.append((time.monotonic() - t0, delivered()))
        time.sleep(0.01)
    secs = samples[-1][0]
    cpu = cpu_s(d.proc.pid)  # start-up included: an upper bound on the CPU per delivery
    lo = next(s for s in samples if s[1] >= rows // 10)
    hi = next(s for s in samples if s[1] >= rows * 9 // 10)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else 0
    from test_llm import publish_spikes
    ids = publish_spikes(stack.mosq.port, "W", 95_000_000, 20)
    for t in ids:
        wait_until(lambda: d.get(f"/v1/decisions/{t}")[0] == 200, 30, "decision")
    wait_until(lambda: d.counters()["webhook_delivered"] >= rows + 2 * len(ids), 30,
               "the spikes delivered")
    items = d.get(f"/v1/webhooks/{hook['id']}/deliveries?limit=200")[1]["items"]
    first = {}
    for r in items:
        first[r["msg_id"]] = min(first.get(r["msg_id"], r["ts_ms"]), r["ts_ms"])
    lags = [first[f"msg_decision_{t}"] - d.get(f"/v1/decisions/{t}")[1]["timestamp"]
            for t in ids]
    d.stop()
    stack.daemon = None
    rx.terminate()
    got = json.loads(rx.stdout.readlines()[-1])["posts"]
    return {"bench": "webhooks", "outbox_rows": rows, "received": got,
            "drain_seconds_incl_start": round(secs, 2), "deliveries_per_s": round(steady),
            "daemon_cpu_us_per_delivery": round(cpu * 1e6 / rows, 1),
            "decision_to_first_attempt_ms": {"p50": pct(lags, 50), "max": max(lags)},
            "note": "rate between 10% and 90% of the rows delivered, counted on the uncached "
                    "/metrics every 10 ms; payloads ~1 KiB"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--only", default="rss,freshness,latency,rest,webhooks")
    ap.add_argument("--accounts", type=int, default=100000)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--rates", default="1000,5000,20000")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--latency-publisher", choices=("raw", "paho"), default="raw",
                    help="bench_latency's event publisher: its own TCP_NODELAY socket (raw) or "
                         "paho, whose socket runs Nagle's algorithm (docs/benchmarks.md)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra daemon option for every benchmark (repeatable), e.g. "
                         "--set ingest_handoff_us=0 to compare a setting in the same sitting")
    args = ap.parse_args()
    for kv in args.set:
        key, sep, value = kv.partition("=")
        if not sep:
            ap.error(f"--set {kv}: expected KEY=VALUE")
        BASE_OPTS[key] = value
    os.environ["AETHERIS_BIN_DIR"] = os.path.abspath(args.build)
    from conftest import Stack
    only = args.only.split(",")
    def print(text, flush=True):  # every figure says how busy the shared machine was
        obj = json.loads(text)
        obj["loadavg_1m"] = round(os.getloadavg()[0], 2)
        builtins.print(json.dumps(obj), flush=flush)
    with tempfile.TemporaryDirectory(prefix="aetheris-bench-") as tmp:
        stack = Stack(tmp)
        try:
            if "rss" in only:
                print(json.dumps(bench_rss(stack, args.build, tmp, args.accounts)), flush=True)
                subprocess.run(["rm", "-rf", os.path.join(tmp, "var")], check=True)
            if "freshness" in only:
                print(json.dumps(bench_freshness(stack, args.samples)), flush=True)
            if "latency" in only:
                for r in bench_latency(stack, args.build, tmp,
                                       [int(x) for x in args.rates.split(",")], args.seconds,
                                       args.latency_publisher):
                    print(json.dumps(r), flush=True)
            if "rest" in only:
                for r in bench_rest(stack, args.build, tmp):
                    print(json.dumps(r), flush=True)
            if "webhooks" in only:
                subprocess.run(["rm", "-rf", os.path.join(tmp, "var")], check=True)
                print(json.dumps(bench_webhooks(stack, args.build, tmp, 20000)), flush=True)
        finally:
            stack.teardown()


if __name__ == "__main__":
    main()
