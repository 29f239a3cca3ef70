"""Observability against the real stack: the /metrics exposition passes `promtool check metrics`
and covers every stage (ingest, edge, buffer, agents, decisions, HTTP by route and code, cache,
webhooks, store, dependencies, process); a real Prometheus server (Debian's) scrapes the daemon
and answers a query for one of its metrics; every metric the Grafana dashboard and the alert
rules use exists in the daemon's output, and the rules pass `promtool check rules`."""
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

from conftest import ROOT, Server, free_port, wait_until
from test_llm import decision, publish_spikes

DASHBOARD = os.path.join(ROOT, "dashboards", "aetheris.json")
RULES = os.path.join(ROOT, "dashboards", "alerts.yml")


def exposition(d):
    status, hdrs, text = d.request("GET", "/metrics")
    assert status == 200 and hdrs["Content-Type"].startswith("text/plain; version=0.0.4")
    return text.decode()


def families(text):
    """Family name -> type, from the # TYPE lines."""
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))


def value(text, series):
    m = re.search(r"^" + re.escape(series) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def busy_daemon(stack):
    """A daemon that has ingested, decided, served API calls and looked at its cache."""
    d = stack.start_daemon()
    ids = publish_spikes(stack.mosq.port, "O", 60000, 2)
    for t in ids:
        decision(d, t)
    d.get("/v1/decisions?limit=1")
    d.get("/v1/nope")
    d.get("/v1/metrics")
    d.get("/v1/metrics")
    return d


def test_exposition_passes_promtool_and_covers_every_stage(stack):
    """Invariant: the exposition is valid for promtool and names every stage's metrics with
    values that match what happened."""
    d = busy_daemon(stack)
    text = exposition(d)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    fams = families(text)
    for name, kind in {
        "aetheris_mqtt_messages_total": "counter", "aetheris_events_ingested_total": "counter",
        "aetheris_events_invalid_total": "counter", "aetheris_events_duplicate_total": "counter",
        "aetheris_events_scored_total": "counter", "aetheris_anomalies_total": "counter",
        "aetheris_edge_accounts": "gauge", "aetheris_stream_length": "gauge",
        "aetheris_stream_pending": "gauge", "aetheris_stream_lag": "gauge",
        "aetheris_stream_reclaimed_total": "counter",
        "aetheris_stream_deadlettered_total": "counter",
        "aetheris_agent_votes_total": "counter", "aetheris_agent_batches_total": "counter",
        "aetheris_agent_vote_seconds": "histogram", "aetheris_decisions_total": "counter",
        "aetheris_event_to_decision_seconds": "histogram",
        "aetheris_lane_event_to_decision_seconds": "histogram",
        "aetheris_http_requests_total": "counter",
        "aetheris_http_request_duration_seconds": "histogram",
        "aetheris_cache_requests_total": "counter",
        "aetheris_webhook_deliveries_total": "counter", "aetheris_webhook_outbox_depth": "gauge",
        "aetheris_store_rows_total": "counter", "aetheris_store_errors_total": "counter",
        "aetheris_dependency_up": "gauge", "process_resident_memory_bytes": "gauge",
        "process_cpu_seconds_total": "counter", "process_open_fds": "gauge",
        "process_start_time_seconds": "gauge",
    }.items():
        assert fams.get(name) == kind, (name, fams.get(name))
    assert value(text, 'aetheris_decisions_total{action="BLOCK"}') == 2
    assert value(text, 'aetheris_agent_votes_total{role="Analyst",decision="BLOCK"}') == 2
    assert value(text, "aetheris_edge_accounts") == 2
    assert value(text, 'aetheris_stream_length{lane="immediate"}') >= 2
    for dep in ("mqtt", "redis", "store"):
        assert value(text, f'aetheris_dependency_up{{dependency="{dep}"}}') == 1
    assert value(text, 'aetheris_dependency_up{dependency="llm"}') == 0  # rules backend
    assert value(text, 'aetheris_http_requests_total{route="decisions_list",code="200"}') == 1
    assert value(text, 'aetheris_http_requests_total{route="unmatched",code="404"}') == 1
    assert value(text, 'aetheris_http_request_duration_seconds_count{route="decisions_get"}') >= 2
    assert value(text, 'aetheris_cache_requests_total{result="hit"}') >= 1
    assert value(text, 'aetheris_cache_requests_total{result="miss"}') >= 1
    rss = value(text, "process_resident_memory_bytes")
    assert 1e6 < rss < 4e9 and value(text, "process_open_fds") > 3
    start = value(text, "process_start_time_seconds")
    status, body = d.get("/v1/health")
    assert status == 200 and abs(start - (time.time() - body["uptime_s"])) < 30


def test_prometheus_scrapes_the_daemon(stack, tmp_path):
    """Invariant: a real Prometheus scrapes /metrics and its query API returns the daemon's
    counter with the value the daemon reports."""
    d = busy_daemon(stack)
    port = free_port()
    conf = tmp_path / "prometheus.yml"
    conf.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: aetheris\n"
                    f"    static_configs: [{{targets: ['127.0.0.1:{d.http_port}']}}]\n")
    prom = Server("prometheus", ["prometheus", f"--config.file={conf}",
                                 f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], port, str(tmp_path))
    prom.start(timeout=30)
    try:
        def query(q):
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            with urllib.request.urlopen(url, timeout=5) as r:
                res = json.load(r)["data"]["result"]
            return res

        got = wait_until(lambda: query('aetheris_decisions_total{action="BLOCK"}'), 30,
                         "Prometheus to have scraped the daemon")
        assert got[0]["metric"]["job"] == "aetheris" and float(got[0]["value"][1]) == 2
        up = query('up{job="aetheris"}')
        assert float(up[0]["value"][1]) == 1
    finally:
        prom.kill()


def metric_names(expr):
    """The metric names an expression reads (identifiers that are not functions, keywords or
    label names)."""
    expr = re.sub(r'"[^"]*"', "", expr)           # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)         # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)        # ranges
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {n for n in names if n.startswith(("aetheris_", "process_"))}


def test_dashboard_and_rules_use_real_metrics(stack):
    """Invariant: every metric the dashboard and the alert rules query is in /metrics (a
    histogram through its _bucket/_sum/_count series); the rules pass promtool."""
    check = subprocess.run(["promtool", "check", "rules", RULES], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    d = busy_daemon(stack)
    fams = families(exposition(d))
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    with open(RULES) as f:
        exprs += re.findall(r"^\s+expr: (.+)$", f.read(), re.M)
    assert len(exprs) > 20
    used = set().union(*(metric_names(e) for e in exprs))
    missing = []
    for name in sorted(used):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in fams and fams.get(base) != "histogram":
            missing.append(name)
    assert not missing, f"queried but not exported: {missing}"
    assert {"aetheris_events_ingested_total", "aetheris_event_to_decision_seconds_bucket",
            "aetheris_dependency_up", "aetheris_webhook_deliveries_total"} <= used
    assert dash["uid"] and all(p["datasource"]["uid"] == "prometheus"
                               for p in dash["panels"] if p["type"] != "row")
