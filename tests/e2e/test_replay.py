"""aetheris-replay against the real broker and daemon: row validation, exact amounts, batching,
waiting for a late broker, and giving up on a missing one."""
import json
import os
import subprocess
import threading
import time

from conftest import BIN, free_port, wait_until

HEADER = ("TransactionID,AccountOriginID,AccountDestinationID,TransactionTypeID,Amount,"
          "TransactionDate,BranchID,Description\n")


def write_csv(path, rows, header=True):
    with open(path, "wb") as f:
        if header:
            f.write(HEADER.encode())
        for r in rows:
            f.write(r if isinstance(r, bytes) else r.encode())
    return path


def run_replay(argv, timeout=60):
    out = subprocess.run([os.path.join(BIN, "tools", "aetheris-replay"), *argv],
                         capture_output=True, text=True, timeout=timeout)
    summary = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else None
    return out.returncode, summary, out.stderr


def test_bad_rows_skipped_and_amounts_exact(stack):
    """Invariant: rows that are not 8 well-formed fields are counted as bad and never published;
    the good rows reach the daemon with the exact amounts, ids and text of the CSV (JSON
    escaping included), and the summary counts agree with what the daemon scored."""
    daemon = stack.start_daemon()
    path = write_csv(os.path.join(stack.workdir, "mixed.csv"), [
        "101,900001,900002,2,855.17,2023-04-20 02:00:00.000000,41,Transaction \"quoted\" \\\n",
        "102,900001,,,0010.50,d,,\n",               # leading zeros, empty optionals
        "103,900001,900002,1,.25,d,7,tab\there\n",   # ".25" and a control character
        "104,900001,900002,1,12.5\n",               # 5 fields
        "105,900001,900002,1,-3,d,1,x\n",           # negative amount
        "106,900001,900002,1,1e3,d,1,x\n",          # exponent
        "10x,900001,900002,1,3,d,1,x\n",            # id not numeric
        "107,9000A1,900002,1,3,d,1,x\n",            # account not numeric
        "108,900001,900002,1,3,d,1,x,extra\n",      # 9 fields
        "109," + "9" * 65 + ",1,1,3,d,1,x\n",       # account too long
        "110,900001,900002,1,3,d,1," + "y" * 5000 + "\n",  # line too long
        b"111,900001,900002,1,3,d,1,\xff\xfe\n",     # not UTF-8
        "\n",                                       # blank: not a row
        "112,900002,900003,3,99999999.99,d,1,last\n",
    ])
    rc, summary, err = run_replay(["--url", f"tcp://127.0.0.1:{stack.mosq.port}", "--file", path])
    assert rc == 0, err
    assert summary["rows"] == 13 and summary["bad_rows"] == 9, summary
    assert summary["published_events"] == 4 and summary["messages"] == 4, summary
    assert err.count("bad row") == 9
    wait_until(lambda: daemon.counters()["scored"] == 4, 20, "good rows scored")
    c = daemon.counters()
    assert sum(v for k, v in c.items() if k.startswith("invalid_")) == 0, c
    import sqlite3
    wait_until(lambda: sqlite3.connect(daemon.opts["sqlite_path"]).execute(
        "SELECT COUNT(*) FROM transactions").fetchone()[0] == 4, 20, "good rows stored")
    db = sqlite3.connect(daemon.opts["sqlite_path"])
    rows = {t: json.loads(doc) for t, doc in db.execute("SELECT txid, doc FROM transactions")}
    db.close()
    assert sorted(rows) == [101, 102, 103, 112]
    assert rows[101]["amount"] == 855.17 and rows[101]["description"] == 'Transaction "quoted" \\'
    assert rows[101]["accountOrigin"] == "900001" and rows[101]["accountDestination"] == "900002"
    assert rows[101]["type"] == 2 and rows[101]["branch"] == 41
    assert rows[101]["date"] == "2023-04-20 02:00:00.000000"
    assert rows[102]["amount"] == 10.5 and "type" not in rows[102] and "branch" not in rows[102]
    assert rows[103]["amount"] == 0.25 and rows[103]["description"] == "tab\there"
    assert rows[112]["amount"] == 99999999.99


def test_batches_and_limit(stack):
    """Invariant: --batch N publishes ceil(rows/N) JSON arrays on the batch topic and every
    event inside is scored once; --limit stops after N rows."""
    daemon = stack.start_daemon()
    rows = [f"{2000 + i},800{i % 7},1,1,{10 + i % 13}.5,d,1,x\n" for i in range(1000)]
    path = write_csv(os.path.join(stack.workdir, "batch.csv"), rows)
    got = []
    import paho.mqtt.client as mqtt
    sub = mqtt.Client(client_id=f"e2e-batch-{os.getpid()}")
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append((m.topic, len(json.loads(m.payload))))
    sub.on_connect = lambda c, u, f, rc: c.subscribe("aetheris/transactions/batch/#", 1)
    sub.connect("127.0.0.1", stack.mosq.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        rc, summary, err = run_replay(["--url", f"tcp://127.0.0.1:{stack.mosq.port}",
                                       "--file", path, "--batch", "64", "--limit", "700"])
        assert rc == 0, err
        assert summary["rows"] == 700 and summary["messages"] == 11, summary
        wait_until(lambda: len(got) == 11, 10, "11 batch messages")
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got[0] == ("aetheris/transactions/batch/2000", 64)
    assert got[-1] == ("aetheris/transactions/batch/2640", 700 - 640)
    wait_until(lambda: daemon.counters()["scored"] == 700, 20, "700 scored")
    assert daemon.counters()["mqtt_messages"] == 11


def test_waits_for_a_late_broker_and_gives_up_on_a_missing_one(stack):
    """Invariant: a replay started while the broker is down waits (up to --max-wait-s) and
    delivers everything once it appears; with no broker at all it exits 1 after --max-wait-s,
    and usage errors exit 2."""
    path = write_csv(os.path.join(stack.workdir, "few.csv"),
                     [f"{3000 + i},700{i % 3},1,1,{5 + i}.25,d,1,x\n" for i in range(50)])
    stack.mosq.stop()
    proc = subprocess.Popen([os.path.join(BIN, "tools", "aetheris-replay"), "--url",
                             f"tcp://127.0.0.1:{stack.mosq.port}", "--file", path,
                             "--max-wait-s", "30"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert proc.poll() is None, "replay gave up before --max-wait-s"
        stack.mosq.start()
        daemon = stack.start_daemon()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["published_events"] == 50
    # Published before the daemon's first subscription: the broker had no session to queue them
    # for, so they are gone; publishing again now reaches the daemon.
    rc, summary, err = run_replay(["--url", f"tcp://127.0.0.1:{stack.mosq.port}", "--file", path])
    assert rc == 0 and summary["published_events"] == 50, err
    wait_until(lambda: daemon.counters()["scored"] == 50, 20, "50 scored")

    t0 = time.monotonic()
    rc, summary, err = run_replay(["--url", f"tcp://127.0.0.1:{free_port()}", "--file", path,
                                   "--max-wait-s", "2"])
    assert rc == 1 and "unreachable" in err
    assert 1.5 < time.monotonic() - t0 < 15
    for bad in (["--qos", "2"], ["--batch", "0"], ["--batch", "1001"], ["--rate", "-1"],
                ["--rate", "nan"], ["--limit", "x"], ["--nope"], ["stray"],
                ["--file", os.path.join(stack.workdir, "missing.csv")]):
        rc, _, err = run_replay(["--url", f"tcp://127.0.0.1:{stack.mosq.port}", *bad])
        assert rc == 2, (bad, err)
