"""The SDK examples (curl, Python standard library, Node fetch) against a live daemon with API
keys: posting events gives the accepted counts, listing returns exactly the decisions the
pipeline made (across pages), and the stream command receives an anomaly published over MQTT
and its decision."""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT, wait_until
from test_stream import publish_block

SDK = os.path.join(ROOT, "sdk-examples")
KEY = "sdk-test-key-" + "9" * 30
CLIENTS = {
    "curl": ["bash", os.path.join(SDK, "curl.sh")],
    "python": ["/usr/bin/python3", os.path.join(SDK, "python_client.py")],
    "node": ["node", os.path.join(SDK, "node_client.mjs")],
}


def run(client, *args, timeout=60):
    env = dict(os.environ, AETHERIS_URL=run.url, AETHERIS_API_KEY=KEY)
    out = subprocess.run(CLIENTS[client] + list(args), capture_output=True, text=True,
                         timeout=timeout, env=env)
    assert out.returncode == 0, f"{client} {args}: exit {out.returncode}\n{out.stderr}"
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("client", list(CLIENTS))
def test_sdk_example(stack, client):
    if client == "node" and shutil.which("node") is None:
        pytest.skip("node is not installed (scripts/deps.sh installs nodejs)")
    d = stack.start_daemon({"auth_disabled": "false", "page_max": 2,
                            "api_keys": f"sdk:write:{hashlib.sha256(KEY.encode()).hexdigest()}"})
    run.url = f"http://127.0.0.1:{d.http_port}"
    base = {"curl": 1000, "python": 2000, "node": 3000}[client]

    # post: an array and a single object, counted as the daemon counts them
    events = [{"transactionId": base + i, "accountOrigin": f"P{client}", "amount": 100 + i}
              for i in range(12)]
    (counts,) = run(client, "post", json.dumps(events))
    assert counts["accepted"] == 12 and counts["duplicates"] == 0
    (counts,) = run(client, "post", json.dumps(events[0]))
    assert counts["duplicates"] == 1

    # stream: started first, it must see an anomaly published on MQTT and its decision
    env = dict(os.environ, AETHERIS_URL=run.url, AETHERIS_API_KEY=KEY)
    stream_args = (["stream", "--max-events", "2", "--max-seconds", "30"] if client == "python"
                   else ["stream", "2", "30"])
    follower = subprocess.Popen(CLIENTS[client] + stream_args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    wait_until(lambda: d.get("/v1/health")[1]["components"]["stream"]["clients"] == 1, 15,
               "the example's stream to connect")
    huges = [publish_block(stack.mosq.port, f"Q{client}0", base + 100)]
    out, err = follower.communicate(timeout=60)
    huges += [publish_block(stack.mosq.port, f"Q{client}{k}", base + 100 * (k + 1))
              for k in (1, 2)]
    assert follower.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [g["event"] for g in got] == ["anomaly", "decision"], got
    assert got[0]["data"]["transactionId"] == huges[0]
    assert got[1]["data"]["transaction_id"] == huges[0]

    # decisions: every one the pipeline made, through pages of 2 (page_max)
    for h in huges:
        wait_until(lambda: d.request("GET", f"/v1/decisions/{h}",
                                     headers={"X-API-Key": KEY})[0] == 200, 20, "decisions")
    listed = run(client, "decisions")
    assert sorted(x["transaction_id"] for x in listed) == sorted(huges)
    blocked = run(client, "decisions", *(["--account", f"Q{client}1"] if client == "python"
                                          else [f"Q{client}1"]))
    assert [x["transaction_id"] for x in blocked] == [huges[1]]
