#!/usr/bin/python3
"""Ingest benchmark: events/s through a real mosquitto into aetherisd with zero loss, for QoS 0,
QoS 1 and batched payloads (10 and 100 events per message), against the ceiling of the same load
delivered to a bare paho subscriber (bench/bare_sub) in the same run. Prints one JSON object per
case: the case, the MQTT connections used, events, seconds, events/s, lost events, and the ratio
to the ceiling; with the daemon's CPU per event, context switches per event and busiest threads
(by name), and the bare subscriber's CPU per event (bench/procstat.py).

The load is aetheris-replay (fixed-rate-free, as fast as the broker takes it) over a synthetic CSV
of unique transactions spread over many accounts, one replay process per connection, each on its
own slice. The daemon's rate is events / (time from the first publish to the ingest of the
last event: the daemon's aetheris_last_event_ingested_timestamp_seconds, from the uncached GET
/metrics every 200 ms once it counts every event; builds without that gauge: the moment a 20 ms
poll first counts every event); the ceiling's is messages / (first publish to last arrival, as
the bare subscriber records it). Servers are started on free loopback ports under a temporary directory (the e2e
harness's code) and stopped at the end; every wait is bounded.

With --partitions P the publishers use the partitioned topics (aetheris-replay --partitions P)
and the daemon runs in cluster mode with P partitions, all owned by this one instance: P MQTT
subscriber sessions instead of one (QoS 1 cases only; a fresh cluster_name per case, so no
session queues another run's messages).

Usage: bench/bench_ingest.py [--build DIR] [--events N] [--connections K] [--cases a,b,...]
                             [--partitions P] [--daemon-option NAME=VALUE ...]"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from procstat import busiest_threads, cpu_s, ctx_switches, thread_cpu_s  # noqa: E402


def make_csv(path, first_id, n, accounts):
    rnd = random.Random(first_id)
    with open(path, "w") as f:
        for i in range(n):
            f.write(f"{first_id + i},{100000 + rnd.randrange(accounts)},200000,2,"
                    f"{rnd.uniform(10, 500):.2f},2023-04-20 02:00:00.000000,41,bench\n")


def replay_procs(build, url, files, qos, batch, partitions=0):
    extra = ["--partitions", str(partitions)] if partitions else []
    return [subprocess.Popen([os.path.join(build, "tools", "aetheris-replay"), "--url", url,
                              "--file", f, "--qos", str(qos), "--batch", str(batch),
                              "--client-id", f"bench-{os.getpid()}-{i}", "--quiet"] + extra,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i, f in enumerate(files)]


def wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    for p in procs:
        p.wait(timeout=max(1, deadline - time.monotonic()))
        if p.returncode != 0:
            raise RuntimeError(f"replay failed: {p.stderr.read().decode()[-300:]}")


def ceiling(build, url, files, qos, batch, events, partitions):
    messages = events // batch
    sub = subprocess.Popen([os.path.join(build, "bench", "bare_sub"), url,
                            "aetheris/transactions/#", str(qos), str(messages), "3000"],
                           stdout=subprocess.PIPE, text=True)
    assert json.loads(sub.stdout.readline())["ready"]
    cpu0 = cpu_s(sub.pid)
    t0 = time.monotonic_ns()
    wait_all(replay_procs(build, url, files, qos, batch, partitions), 600)
    out = json.loads(sub.stdout.readline())
    cpu = cpu_s(sub.pid) - cpu0
    sub.wait(timeout=30)
    secs = (out["last_ns"] - t0) / 1e9
    return {"events": out["messages"] * batch, "seconds": round(secs, 3),
            "events_per_s": round(out["messages"] * batch / secs), "lost": events -
            out["messages"] * batch,
            "subscriber_cpu_us_per_event": round(cpu * 1e6 / max(out["messages"] * batch, 1), 2)}


def counters(d):
    """ingested and duplicates from the uncached GET /metrics (the cached /v1/metrics may lag),
    and the wall-clock ms of the newest ingested event (None from builds without that gauge)."""
    _, body = d.get("/metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    found = dict(re.findall(r"^aetheris_events_(ingested|duplicate)_total (\d+)$", text, re.M))
    last = re.search(r"^aetheris_last_event_ingested_timestamp_seconds (\S+)$", text, re.M)
    return {"ingested": int(found.get("ingested", 0)), "duplicates": int(found.get("duplicate", 0)),
            "last_ms": round(float(last[1]) * 1000) if last else None}


def through_daemon(stack, build, files, qos, batch, events, extra, partitions, case):
    from conftest import wait_until
    # a clean session: the broker must not queue the ceiling run's messages for this client
    opts = {"mqtt_qos": qos, "mqtt_clean_session": "true", "snapshot_interval_ms": 5000,
            "reclaim_idle_ms": 30000, "log_level": "warn",
            "dedupe_capacity": max(1000000, 2 * events)}
    if partitions:
        opts.update({"cluster_partitions": partitions, "mqtt_clean_session": "false",
                     "cluster_name": f"bench-{os.getpid()}-{case}"})
    opts.update(extra)
    d = stack.start_daemon(opts)
    if partitions:  # the partitions' sessions must exist before the publishers start
        wait_until(lambda: len(d.get("/v1/cluster")[1].get("owned_here", [])) == partitions, 60,
                   "every partition owned", interval=0.1)
    url = f"tcp://127.0.0.1:{stack.mosq.port}"
    pid = d.proc.pid
    # A build that reports when it ingested its newest event is timed by that (and polled
    # every 200 ms: the poll's own CPU, ~0.5 us per event at 20 ms, is not the daemon's work);
    # an older build by the moment a 20 ms poll first sees every event.
    stamped = counters(d)["last_ms"] is not None
    cpu0, threads0, cs0 = cpu_s(pid), thread_cpu_s(pid), ctx_switches(pid)
    t0, t0_wall = time.monotonic(), time.time()
    procs = replay_procs(build, url, files, qos, batch, partitions)
    last = [0, time.monotonic(), None]

    def done():
        c = counters(d)
        n = c["ingested"] + c["duplicates"]
        if n != last[0]:
            last[:] = [n, time.monotonic(), c["last_ms"]]
        return n >= events or time.monotonic() - last[1] > 5
    wait_until(done, 600, "every event ingested", interval=0.2 if stamped else 0.02)
    secs = last[2] / 1000 - t0_wall if stamped and last[2] else last[1] - t0
    wait_all(procs, 60)
    # the daemon's CPU from the first publish to the end of ingest plus the few checks after it
    cpu, threads1, cs = cpu_s(pid) - cpu0, thread_cpu_s(pid), ctx_switches(pid) - cs0
    c = counters(d)
    d.stop()
    stack.daemon = None
    return {"events": c["ingested"], "seconds": round(secs, 3),
            "events_per_s": round(c["ingested"] / secs), "lost": events - c["ingested"],
            "duplicates": c["duplicates"],
            "timed_by": "last-ingest gauge" if stamped else "20 ms poll",
            "cpu_us_per_event": round(cpu * 1e6 / max(c["ingested"], 1), 2),
            "context_switches_per_event": round(cs / max(c["ingested"], 1), 3),
            "thread_cpu_s": busiest_threads(threads0, threads1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--cases", default="qos0,qos1,batch10,batch100")
    ap.add_argument("--partitions", type=int, default=0,
                    help="partitioned topics and cluster mode with this many partitions")
    ap.add_argument("--daemon-option", action="append", default=[], metavar="NAME=VALUE",
                    help="extra aetherisd option for the daemon runs (repeatable)")
    args = ap.parse_args()
    extra = dict(o.split("=", 1) for o in args.daemon_option)
    os.environ["AETHERIS_BIN_DIR"] = os.path.abspath(args.build)
    from conftest import Stack
    cases = {"qos0": (0, 1), "qos1": (1, 1), "batch10": (1, 10), "batch100": (1, 100)}
    with tempfile.TemporaryDirectory(prefix="aetheris-bench-") as tmp:
        k = args.connections
        per = args.events // k
        files = []
        for i in range(k):
            files.append(os.path.join(tmp, f"slice{i}.csv"))
            make_csv(files[-1], 10_000_000 + i * per, per, 20000)
        events = per * k
        stack = Stack(tmp)
        try:
            url = f"tcp://127.0.0.1:{stack.mosq.port}"
            for name in args.cases.split(","):
                qos, batch = cases[name]
                if args.partitions and qos != 1:
                    continue  # cluster mode takes QoS 1 only
                top = ceiling(args.build, url, files, qos, batch, events, args.partitions)
                ours = through_daemon(stack, args.build, files, qos, batch, events, extra,
                                      args.partitions, name)
                # a fresh data directory per case: the dedupe set would drop a replay
                subprocess.run(["rm", "-rf", os.path.join(tmp, "var")], check=True)
                print(json.dumps({"bench": "ingest", "case": name, "qos": qos, "batch": batch,
                                  "connections": k, "partitions": args.partitions,
                                  "daemon_options": extra, "daemon": ours, "bare_paho_ceiling": top,
                                  "ratio_to_ceiling": round(ours["events_per_s"] /
                                                            top["events_per_s"], 3)}),
                      flush=True)
        finally:
            stack.teardown()


if __name__ == "__main__":
    main()
