"""aetheris-backtest and aetheris-gen: the backtest equals the live daemon on the bundled dataset
(and on a slice under each alternative detector), it takes the daemon's options, maps the
columns of other files, and measures sane precision and recall on seeded generated data; the
generator is reproducible and bounded in memory; make quality's script runs end to end."""
import csv
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess

import pytest

from conftest import BIN, DATASET, ROOT, reference_exceptions, suspicion_matches, wait_until

BACKTEST = os.path.join(BIN, "tools", "aetheris-backtest")
GEN = os.path.join(BIN, "tools", "aetheris-gen")


def run(argv, timeout=120, env=None, check=True):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def backtest(*args, timeout=120, env=None):
    """Runs the backtest with per-row NDJSON on stdout; returns (rows, summary)."""
    out = run([BACKTEST, "--out", "-", "--format", "ndjson", "--quiet", *args], timeout, env)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    return rows, json.loads(out.stderr.strip().splitlines()[-1])


def gen(workdir, name, *args):
    csv_path = os.path.join(workdir, f"{name}.csv")
    labels = os.path.join(workdir, f"{name}.labels")
    run([GEN, "--out", csv_path, "--labels", labels, *args])
    return csv_path, labels


def dataset_slice(workdir, rows):
    """The header and first `rows` data rows of the bundled dataset, as a file in workdir."""
    path = os.path.join(workdir, f"dataset{rows}.csv")
    with open(DATASET) as src, open(path, "w") as dst:
        dst.writelines(line for _, line in zip(range(rows + 1), src))
    return path


def spikes_csv(workdir, rows):
    """The first `rows` rows of test_gen_reproducible_and_well_formed's file `a`."""
    path = os.path.join(workdir, f"first{rows}.csv")
    run([GEN, "--seed", "7", "--rows", str(rows), "--accounts", "150", "--anomaly-rate", "0.02",
         "--out", path])
    return path


def exception_view(e):
    return (e["zScore"], e["mean"], e["std"], e["suspicion"], e["priority"],
            e["accountHistoryLength"], e["accountOrigin"])


@pytest.mark.parametrize("detector,limit", [("zscore", None), ("mad", 12000), ("ewma", 12000)])
def test_backtest_equals_live_daemon(stack, collector_factory, detector, limit):
    """Invariant: for the same rows and options, the daemon's exceptions (transaction ids, z,
    mean, std, suspicion, priority, history length) are exactly the backtest's: the whole
    bundled dataset under the default detector, its first 12,000 rows under mad and ewma."""
    extra = {} if detector == "zscore" else {"detector": detector}
    daemon = stack.start_daemon(extra)
    col = collector_factory(stack.mosq.port, topics=("aetheris/exceptions",))
    args = ["--batch", "100"] + (["--limit", str(limit)] if limit else [])
    summary = stack.replay(*args)
    rows_in = limit or 50000
    assert summary["published_events"] == rows_in, summary

    bt_file = dataset_slice(stack.workdir, limit) if limit else DATASET
    rows, bsum = backtest("--file", bt_file, "--exceptions-only", f"--detector={detector}")
    assert bsum["rows"] == rows_in and bsum["bad_rows"] == 0
    want = {r["transactionId"]: r for r in rows}
    assert len(want) == bsum["exceptions"]["total"] > 0
    assert all(r["anomaly"] for r in rows)

    wait_until(lambda: daemon.counters()["scored"] == bsum["scored"], 120, "all rows scored")
    wait_until(lambda: len(col.get("aetheris/exceptions")) >= len(want), 60, "all exceptions")
    c = daemon.counters()
    assert c["duplicates"] == bsum["duplicates"]
    assert c["anomalies_immediate"] == bsum["exceptions"]["immediate"]
    assert c["anomalies_batch"] == bsum["exceptions"]["batch"]
    got = {e["transactionId"]: e for e in col.get("aetheris/exceptions")}
    assert set(got) == set(want)
    for txid, e in got.items():
        assert exception_view(e) == exception_view(want[txid]), (e, want[txid])


def test_backtest_matches_reference_and_sweep(tmp_path):
    """Invariant: the backtest's exceptions on the dataset's first 15,000 rows are the
    independent two-pass reference's; every row is written once with its score; the sweep row at
    the configured threshold counts exactly the exceptions and the sweep is monotone. (The whole
    dataset is compared with the live daemon above, and the daemon with the reference in
    test_pipeline.py.)"""
    limit = 15000
    rows, summary = backtest("--file", dataset_slice(tmp_path, limit))
    ref, borderline = reference_exceptions(limit=limit)
    distinct = len(set(map(int, (l.split(",")[0] for l in open(dataset_slice(tmp_path, limit))
                                 if l[0].isdigit()))))
    assert summary["rows"] == limit and summary["scored"] == distinct
    assert summary["duplicates"] == limit - distinct and summary["accounts"] > 1000
    assert len(rows) == distinct and len({r["transactionId"] for r in rows}) == distinct
    flagged = {r["transactionId"]: r for r in rows if r["anomaly"]}
    assert set(flagged) - borderline == set(ref) - borderline and len(ref) > 50
    for txid, r in flagged.items():
        if txid in ref:
            assert abs(r["zScore"] - ref[txid]["z"]) <= 1e-9 * max(1, abs(ref[txid]["z"]))
            assert suspicion_matches(r["suspicion"], ref[txid])
            assert r["priority"] == ref[txid]["priority"]
    assert all(r["priority"] is None for r in rows if not r["anomaly"])
    sweep = {s["threshold"]: s for s in summary["sweep"]}
    assert sweep[2.5]["exceptions"] == summary["exceptions"]["total"] == len(flagged)
    counts = [s["exceptions"] for s in summary["sweep"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_backtest_takes_the_daemon_options(tmp_path):
    """Invariant: --z-threshold, --config files and AETHERIS_* variables mean what they mean to
    aetherisd; an invalid option is refused with the daemon's message and exit 2."""
    small = dataset_slice(tmp_path, 10000)
    _, at3 = backtest("--file", small, "--z-threshold=3")
    _, default = backtest("--file", small)
    assert at3["threshold"] == 3.0
    assert at3["exceptions"]["total"] == next(
        s["exceptions"] for s in default["sweep"] if s["threshold"] == 3.0)
    conf = tmp_path / "bt.conf"
    conf.write_text("window_size = 20\nmin_points = 3\n")
    _, from_file = backtest("--file", small, "--config", str(conf))
    env = dict(os.environ, AETHERIS_WINDOW_SIZE="20", AETHERIS_MIN_POINTS="3")
    _, from_env = backtest("--file", small, env=env)
    assert from_file["exceptions"] == from_env["exceptions"] != default["exceptions"]
    bad = run([BACKTEST, "--z-threshold=-1"], check=False)
    assert bad.returncode == 2 and "z_threshold" in bad.stderr
    bad = run([BACKTEST, "--detector=median"], check=False)
    assert bad.returncode == 2 and "detector" in bad.stderr
    bad = run([BACKTEST, "--no-such-option"], check=False)
    assert bad.returncode == 2 and "unknown option" in bad.stderr
    bad = run([BACKTEST, "--file", str(tmp_path / "missing.csv")], check=False)
    assert bad.returncode == 2 and "cannot open" in bad.stderr


def test_backtest_column_mapping(tmp_path):
    """Invariant: a file with other column names, another order and extra columns, read with
    --txid-col/--account-col/--amount-col/--time-col, scores exactly like the original; bad rows
    are reported and skipped; a missing column is a clear error."""
    limit = 5000
    with open(DATASET) as f:
        src = list(csv.DictReader(f))[:limit]
    mapped = tmp_path / "mapped.csv"
    with open(mapped, "w") as f:
        f.write("channel,when,value,acct,id\n")
        for r in src:
            f.write(f"web,{r['TransactionDate']},{r['Amount']},{r['AccountOriginID']},"
                    f"{r['TransactionID']}\n")
        f.write("web,x,-5,123,999999999\n")  # negative amount: a bad row
    original = tmp_path / "original.csv"
    with open(DATASET) as s, open(original, "w") as d:
        d.writelines(line for n, line in zip(range(limit + 1), s))
    want, wsum = backtest("--file", str(original))
    got, gsum = backtest("--file", str(mapped), "--txid-col", "id", "--account-col", "acct",
                         "--amount-col", "value", "--time-col", "when")
    assert gsum["bad_rows"] == 1 and gsum["rows"] == limit + 1
    assert got == want and gsum["exceptions"] == wsum["exceptions"]
    out = run([BACKTEST, "--file", str(mapped), "--txid-col", "id", "--account-col", "account",
               "--amount-col", "value"], check=False)
    assert out.returncode == 2 and "no column 'account'" in out.stderr


def test_backtest_csv_output(tmp_path):
    """Invariant: the CSV output has the documented header and one line per scored row, with
    the same scores as the NDJSON output."""
    out = tmp_path / "rows.csv"
    small = dataset_slice(tmp_path, 10000)
    summary = json.loads(run([BACKTEST, "--file", small, "--out", str(out), "--quiet"]).stdout)
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["transaction_id", "account", "time", "amount", "z", "mean", "std",
                             "history", "suspicion", "anomaly", "priority"]
    assert len(rows) == summary["scored"]
    nd, _ = backtest("--file", small)
    assert len(nd) == len(rows)
    for r, n in zip(rows[::97], nd[::97]):
        assert int(r["transaction_id"]) == n["transactionId"] and float(r["z"]) == n["zScore"]
        assert r["anomaly"] == ("1" if n["anomaly"] else "0")
        assert r["priority"] == (n["priority"] or "")


def test_gen_reproducible_and_well_formed(tmp_path):
    """Invariant: the same seed and options give byte-identical CSV and labels; another seed
    gives other data; every row is valid for the daemon's reader, ids are consecutive, labels
    name each row in order, and only the requested kinds are planted."""
    args = ["--seed", "7", "--rows", "15000", "--accounts", "150", "--anomaly-rate", "0.02"]
    a = gen(tmp_path, "a", *args)
    b = gen(tmp_path, "b", *args)
    c = gen(tmp_path, "c", *(args[:1] + ["8"] + args[2:]))
    digest = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()
    assert digest(a[0]) == digest(b[0]) and digest(a[1]) == digest(b[1])
    assert digest(a[0]) != digest(c[0])
    with open(a[0]) as f:
        rows = list(csv.DictReader(f))
    with open(a[1]) as f:
        labels = list(csv.DictReader(f))
    assert len(rows) == len(labels) == 15000
    assert [int(r["TransactionID"]) for r in rows] == list(range(1, 15001))
    assert [r["TransactionID"] for r in rows] == [l["transaction_id"] for l in labels]
    kinds = {l["kind"] for l in labels}
    assert kinds == {"none", "spike", "level_shift", "drift", "burst"}
    assert len({r["AccountOriginID"] for r in rows}) > 120
    assert all(float(r["Amount"]) >= 0.01 for r in rows)
    _, summary = backtest("--file", a[0], "--labels", a[1])
    assert summary["bad_rows"] == 0 and summary["duplicates"] == 0
    only = gen(tmp_path, "spikes", *args, "--kinds", "spike")
    with open(only[1]) as f:
        assert {l["kind"] for l in csv.DictReader(f)} == {"none", "spike"}
    with open(a[1]) as f, open(tmp_path / "short.labels", "w") as g:
        g.writelines(f.readlines()[:-1])
    out = run([BACKTEST, "--file", a[0], "--labels", str(tmp_path / "short.labels")],
              check=False)
    assert out.returncode == 2 and "labels line 15001" in out.stderr
    out = run([BACKTEST, "--file", spikes_csv(tmp_path, 100), "--labels", a[1]], check=False)
    assert out.returncode == 2 and "more labels" in out.stderr
    (tmp_path / "odd.labels").write_text('transaction_id,kind,episode\n1,"spike",1\n')
    out = run([BACKTEST, "--file", a[0], "--labels", str(tmp_path / "odd.labels")], check=False)
    assert out.returncode == 2 and "is not lower-case" in out.stderr
    bad = run([GEN, "--kinds", "spikes"], check=False)
    assert bad.returncode == 2 and "--kinds" in bad.stderr
    bad = run([GEN, "--accounts", "1000001"], check=False)
    assert bad.returncode == 2 and "--accounts" in bad.stderr


def peak_rss_kib(argv):
    """Peak resident set (KiB) of argv, run as the only child of a fresh Python process."""
    probe = ("import resource, subprocess, sys\n"
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    return int(run(["/usr/bin/python3", "-c", probe, *argv], timeout=120).stdout)


def test_gen_memory_is_bounded_by_accounts(tmp_path):
    """Invariant: a million accounts fit in the account table (~32 MB), and the output streams:
    300 times more rows take no more memory."""
    base = [GEN, "--accounts", "1000000", "--out", str(tmp_path / "big.csv")]
    small = peak_rss_kib(base + ["--rows", "1000"])
    big = peak_rss_kib(base + ["--rows", "300000"])
    assert big < 200 * 1024, f"aetheris-gen peaked at {big} KiB"
    assert big - small < 8 * 1024, (small, big)
    with open(tmp_path / "big.csv") as f:
        assert sum(1 for _ in f) == 300001


def test_quality_on_seeded_data(tmp_path):
    """Invariant (real outcomes on a small seeded file): the default z-score finds planted spikes
    with recall above 0.8 and far above its flag rate on normal rows; mad finds level shifts
    better than chance; recall falls as the threshold rises; the label bookkeeping adds up."""
    spikes = gen(tmp_path, "spikes", "--seed", "3", "--rows", "30000", "--accounts", "200",
                 "--anomaly-rate", "0.008", "--kinds", "spike")
    _, s = backtest("--file", spikes[0], "--labels", spikes[1])
    q = s["quality"]
    k = q["kinds"]["spike"]
    with open(spikes[1]) as f:
        planted = sum(1 for l in csv.DictReader(f) if l["kind"] == "spike")
    assert k["rows"] == planted == q["labelled_rows"] > 50
    assert k["episodes"] == k["rows"]  # a spike is one row
    assert q["labelled_flagged"] + q["normal_flagged"] == s["exceptions"]["total"]
    normal_rate = q["normal_flagged"] / q["normal_rows"]
    assert k["recall"] > 0.8, k
    assert normal_rate < 0.1 and k["recall"] > 8 * normal_rate, (k, normal_rate)
    recalls = [row["recall"] for row in s["sweep"]]
    assert recalls == sorted(recalls, reverse=True)
    level = gen(tmp_path, "level", "--seed", "3", "--rows", "30000", "--accounts", "200",
                "--anomaly-rate", "0.008", "--kinds", "level_shift")
    _, m = backtest("--file", level[0], "--labels", level[1], "--detector=mad")
    lk, lq = m["quality"]["kinds"]["level_shift"], m["quality"]
    assert lk["episode_recall"] > 0.8, lk
    assert lk["recall"] > 3 * lq["normal_flagged"] / lq["normal_rows"], lk


def test_quality_script_writes_the_report(tmp_path):
    """Invariant: scripts/quality.sh (make quality) runs gen and backtest for every kind and
    detector and writes the report between the markers of the document, leaving the rest."""
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nbefore\n<!-- quality:begin -->\nold\n<!-- quality:end -->\nafter\n")
    env = dict(os.environ, QUALITY_ROWS="6000", QUALITY_ACCOUNTS="100", QUALITY_RATE="0.01",
               QUALITY_OUT=str(tmp_path / "report.md"), QUALITY_DOC=str(doc))
    out = run([os.path.join(ROOT, "scripts", "quality.sh"), BIN], timeout=300, env=env)
    text = doc.read_text()
    assert text.startswith("# Title\n\nbefore\n<!-- quality:begin -->\n")
    assert "\nold\n" not in text
    assert text.endswith("<!-- quality:end -->\nafter\n")
    table = [l for l in text.splitlines() if l.startswith("| ") and "|---" not in l]
    for kind in ("spike", "level_shift", "drift", "burst"):
        for det in ("zscore", "mad", "ewma"):
            assert any(l.startswith(f"| {kind} | {det} |") for l in table), (kind, det)
    assert "--rows 6000 --accounts 100" in text
    assert (tmp_path / "report.md").read_text() in out.stdout


def test_help_is_truthful(tmp_path):
    """Invariant: every flag the tools' --help names is accepted (never 'unknown option')."""
    small = tmp_path / "small.csv"
    with open(DATASET) as src, open(small, "w") as dst:
        dst.writelines(line for _, line in zip(range(201), src))
    values = {"--file": str(small), "--txid-col": "TransactionID", "--account-col":
              "AccountOriginID", "--amount-col": "Amount", "--time-col": "TransactionDate",
              "--out": os.devnull, "--format": "ndjson", "--sweep": "2,3", "--seed": "1",
              "--rows": "10", "--accounts": "5", "--anomaly-rate": "0.1", "--kinds": "spike",
              "--mean-gap-s": "5", "--first-id": "9"}
    skip = ("--help", "--labels", "--config", "--detector", "--window-size", "--min-points",
            "--z-threshold", "--mad-threshold", "--ewma-alpha", "--ewma-threshold",
            "--amount-scale", "--immediate-threshold", "--dedupe-capacity")
    for tool, always in ((BACKTEST, ["--file", str(small)]),
                         (GEN, ["--rows", "10", "--out", os.devnull])):
        text = run([tool, "--help"]).stdout
        flags = sorted({w.rstrip(",.;:)`") for w in text.split()
                        if w.startswith("--") and w[2:3].isalpha() and "=" not in w})
        assert len(flags) >= 8, flags
        for flag in flags:
            if flag in skip:
                continue
            argv = [tool, *always, flag] + ([values[flag]] if flag in values else [])
            out = run(argv, check=False)
            assert "unknown option" not in out.stderr and out.returncode == 0, (flag, out.stderr)
    # the daemon options the backtest's help names are options of the daemon's table
    text = run([BACKTEST, "--help"]).stdout
    for flag in skip[3:]:
        assert flag in text
        out = run([BACKTEST, "--file", str(small), f"{flag}=1"], check=False)
        assert "unknown option" not in out.stderr, (flag, out.stderr)
