#!/usr/bin/env python3
"""Aetheris API from Python, standard library only.

  AETHERIS_URL      base URL (default http://127.0.0.1:8080)
  AETHERIS_API_KEY  sent as X-API-Key when set

  python_client.py post '<json object or array>'
  python_client.py decisions [--account A] [--action BLOCK]
  python_client.py stream [--max-events N] [--max-seconds S]

Errors are RFC 9457 problems; they are printed to stderr and the exit status is 1. The stream
reconnects after a dropped connection with Last-Event-ID, so no event is lost or repeated.
"""
import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

URL = os.environ.get("AETHERIS_URL", "http://127.0.0.1:8080").rstrip("/")
KEY = os.environ.get("AETHERIS_API_KEY")


def call(method, path, body=None, timeout=30):
    headers = {"Content-Type": "application/json"}
    if KEY:
        headers["X-API-Key"] = KEY
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        problem = json.load(e)
        sys.exit(f"{e.code} {problem.get('title')}: {problem.get('detail')} ({problem.get('type')})")


def decisions(account=None, action=None):
    """Yields every decision, newest first, following next_cursor."""
    params = {}  # the server's default page size
    if account:
        params["account"] = account
    if action:
        params["action"] = action
    while True:
        page = call("GET", "/v1/decisions?" + urllib.parse.urlencode(params))
        yield from page["items"]
        if not page["next_cursor"]:
            return
        params["cursor"] = page["next_cursor"]


def stream(max_events=0, max_seconds=0.0):
    """Yields (event, data) from /v1/stream; reconnects with Last-Event-ID."""
    deadline = time.monotonic() + max_seconds if max_seconds else None
    last_id, count = None, 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if KEY:
            headers["X-API-Key"] = KEY
        if last_id:
            headers["Last-Event-ID"] = last_id
        req = urllib.request.Request(URL + "/v1/stream", headers=headers)
        # Keep-alives arrive every sse_keepalive_s (15 s): 30 s of silence means a dead link.
        wait = 30.0 if deadline is None else max(0.1, min(30.0, deadline - time.monotonic()))
        try:
            with urllib.request.urlopen(req, timeout=wait) as r:
                event, data, ident = None, None, None
                while True:
                    if deadline and time.monotonic() > deadline:
                        return
                    line = r.readline()
                    if not line:
                        break  # server closed: reconnect
                    line = line.decode().rstrip("\r\n")
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = line[6:]
                    elif line.startswith("id: "):
                        ident = line[4:]
                    elif line == "" and event:
                        if ident:
                            last_id = ident
                        if event in ("anomaly", "decision"):
                            yield event, json.loads(data)
                            count += 1
                            if max_events and count >= max_events:
                                return
                        event, data, ident = None, None, None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if deadline and time.monotonic() > deadline:
            return
        time.sleep(1)


def main():
    p = argparse.ArgumentParser(description="Aetheris API client (standard library only)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("post")
    sp.add_argument("body")
    sd = sub.add_parser("decisions")
    sd.add_argument("--account")
    sd.add_argument("--action", choices=["APPROVE", "REVIEW", "BLOCK"])
    ss = sub.add_parser("stream")
    ss.add_argument("--max-events", type=int, default=0)
    ss.add_argument("--max-seconds", type=float, default=0)
    a = p.parse_args()
    if a.cmd == "post":
        print(json.dumps(call("POST", "/v1/events", json.loads(a.body))))
    elif a.cmd == "decisions":
        for d in decisions(a.account, a.action):
            print(json.dumps(d))
    else:
        for event, data in stream(a.max_events, a.max_seconds):
            print(json.dumps({"event": event, "data": data}), flush=True)


if __name__ == "__main__":
    main()
