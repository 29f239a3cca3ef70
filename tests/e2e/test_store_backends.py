"""The store outside the SQLite default path: aetheris-seed loading the dataset as account history
(idempotent: the 500 repeated ids leave 49,500 rows; bad rows reported and skipped), and the
daemon on MongoDB. No MongoDB server can be installed on the CI machines: the MongoDB tests run
when AETHERIS_TEST_MONGODB_URI names one and are reported as skipped otherwise."""
import json
import os
import sqlite3
import subprocess
import uuid

import pytest

from conftest import BIN, DATASET, wait_until
from test_llm import decision, publish_spikes

MONGO_URI = os.environ.get("AETHERIS_TEST_MONGODB_URI", "")
needs_mongo = pytest.mark.skipif(not MONGO_URI, reason="AETHERIS_TEST_MONGODB_URI is not set: "
                                 "no MongoDB server to run against")


def seed(*args):
    out = subprocess.run([os.path.join(BIN, "tools", "aetheris-seed"), *args],
                         capture_output=True, text=True, timeout=120)
    return out.returncode, out.stdout, out.stderr


def test_seed_sqlite_is_idempotent(tmp_path):
    """Invariant: seeding the dataset stores each transactionId once, however often it runs; a
    bad row is reported with its line and skipped without stopping the load."""
    db = str(tmp_path / "seed.db")
    rc, out, err = seed("--file", DATASET, f"--sqlite-path={db}")
    assert rc == 0, err
    first = json.loads(out)
    assert first == {"rows": 50000, "stored_before": 0, "stored_after": 49500, "bad": 0,
                     "file": DATASET}
    rc, out, _ = seed(f"--file={DATASET}", f"--sqlite-path={db}")
    assert rc == 0 and json.loads(out)["stored_after"] == 49500
    con = sqlite3.connect(db)
    row = con.execute("SELECT account, amount, doc FROM transactions WHERE txid = 3022681").fetchone()
    con.close()
    assert row[0] == "201164" and row[1] == 855.17
    assert json.loads(row[2])["description"] == "Transaction 22681"

    bad = tmp_path / "bad.csv"
    bad.write_text("TransactionID,AccountOriginID,AccountDestinationID,TransactionTypeID,Amount,"
                   "TransactionDate,BranchID,Description\n"
                   "1,100,200,2,10.5,2023-01-01,4,ok\n"
                   "x,100,200,2,10.5,2023-01-01,4,bad id\n"
                   "2,100,200,2,-3,2023-01-01,4,negative\n"
                   "3,100,200,2,7,2023-01-01,4\n"
                   "4,100,,,8,,,\n")
    rc, out, err = seed("--file", str(bad), f"--sqlite-path={db}")
    assert rc == 0 and json.loads(out)["rows"] == 2 and json.loads(out)["bad"] == 3
    assert "line 3" in err and "line 4" in err and "line 5" in err
    rc, _, err = seed("--file", str(tmp_path / "missing.csv"), f"--sqlite-path={db}")
    assert rc == 2 and "cannot open" in err
    rc, _, err = seed("--file", DATASET, "--mongodb-uri=notmongo://x")
    assert rc == 1 and "mongodb_uri" in err


@needs_mongo
def test_daemon_on_mongodb(stack):
    """Invariant: on MongoDB the pipeline stores and serves the same decisions as on SQLite, and
    they survive a restart; /v1/health names the backend."""
    dbname = f"aetheris_e2e_{uuid.uuid4().hex[:12]}"
    opts = {"mongodb_uri": MONGO_URI, "mongodb_database": dbname}
    d = stack.start_daemon(opts)
    assert d.get("/v1/health")[1]["components"]["store"]["backend"] == "mongodb"
    ids = publish_spikes(stack.mosq.port, "M", 50000, 2)
    docs = [decision(d, t)[0] for t in ids]
    assert all(doc["action"] == "BLOCK" for doc in docs)
    status, page = d.get("/v1/decisions?limit=1")
    assert status == 200 and len(page["items"]) == 1 and page["next_cursor"]
    d.stop()
    d = stack.start_daemon(opts)
    assert [decision(d, t)[0] for t in ids] == docs
    wait_until(lambda: d.get("/readyz")[0] == 200, 5, "readiness with MongoDB")


@needs_mongo
def test_seed_mongodb_is_idempotent():
    """Invariant: seeding MongoDB twice leaves 49,500 transactions."""
    dbname = f"aetheris_e2e_{uuid.uuid4().hex[:12]}"
    args = ("--file", DATASET, f"--mongodb-uri={MONGO_URI}", f"--mongodb-database={dbname}")
    for _ in range(2):
        rc, out, err = seed(*args)
        assert rc == 0, err
        assert json.loads(out)["stored_after"] == 49500
