#!/usr/bin/python3
"""Account-history layouts in SQLite, modelled outside the daemon: the cost per stored transaction
of three ways to keep "the newest amounts of an account" readable, with the daemon's settings
(WAL, synchronous=NORMAL, a 32 MiB page cache) and its write shape (a transaction of --commit
rows at a time, rows spread uniformly over --accounts accounts, a ~230-byte document each).

  index    the transactions table with an index on (account, ingested_ms, txid, amount): what
           schema 3 did; every row lands on a random leaf of the index
  none     the transactions table alone: the floor (no history lookup possible)
  staged   schema 4: the table, an append-only staging table, and per commit a merge of the
           staged rows of the next 1/64 of a bucket-keyed history table, in key order; a cycle
           of 64 commits ends with a range delete of what it merged (common/histstage.h)

Prints one JSON object per layout: microseconds per row (wall and this process's CPU), the
slowest commit, and the file size. The Python driver adds about a microsecond per row to every
layout alike; compare layouts with each other, not with the daemon's figures.

Usage: bench/history_layouts.py [--rows N] [--commit N] [--accounts N] [--layouts a,b,c]"""
import argparse
import json
import os
import random
import sqlite3
import tempfile
import time

CHUNKS = 64  # a cycle: the staged layout merges 1/64 of the buckets per commit


def bucket(account):
    """histstage_bucket: FNV-1a 32 folded to 16 bits."""
    h = 2166136261
    for c in account.encode():
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return (h ^ (h >> 16)) & 0xFFFF


def make_rows(n, accounts):
    rnd = random.Random(1)
    doc = ('{"transactionId":%d,"accountOrigin":"%s","accountDestination":"200000",'
           '"amount":%.2f,"type":"TRANSFER","timestamp":"2023-04-20T02:00:00Z",'
           '"channel":"bench","merchantCategory":"41"}')
    rows = []
    for i in range(n):
        a = str(100000 + rnd.randrange(accounts))
        amt = round(rnd.uniform(10, 500), 2)
        rows.append((10_000_000 + i, a, amt, 1_700_000_000_000 + i // 80,
                     doc % (10_000_000 + i, a, amt)))
    return rows


def run(layout, rows, commit, path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA cache_size=-32768")
    db.execute("CREATE TABLE transactions (txid INTEGER PRIMARY KEY, account TEXT NOT NULL,"
               " amount REAL, ingested_ms INTEGER NOT NULL, doc TEXT NOT NULL)")
    if layout == "index":
        db.execute("CREATE INDEX transactions_recent ON transactions(account, ingested_ms, txid,"
                   " amount)")
    if layout == "staged":
        db.execute("CREATE TABLE txn_history (bucket INTEGER NOT NULL, account TEXT NOT NULL,"
                   " ingested_ms INTEGER NOT NULL, txid INTEGER NOT NULL, amount REAL,"
                   " PRIMARY KEY (bucket, account, ingested_ms, txid)) WITHOUT ROWID")
        db.execute("CREATE TABLE txn_staged (id INTEGER PRIMARY KEY, bucket INTEGER NOT NULL,"
                   " account TEXT NOT NULL, ingested_ms INTEGER NOT NULL,"
                   " txid INTEGER NOT NULL, amount REAL)")
    staged = [[] for _ in range(CHUNKS)]  # per 1/64 of the buckets: rows not yet merged
    cycle_bound = 0    # staged ids <= this are merged when the cycle ends
    last_id = 0
    chunk = 0
    worst = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(0, len(rows), commit):
        t1 = time.perf_counter()
        part = rows[k:k + commit]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR IGNORE INTO transactions VALUES (?,?,?,?,?)", part)
        if layout == "staged":
            new = [(bucket(r[1]), r[1], r[3], r[0], r[2]) for r in part]
            cur = db.cursor()
            ids = []
            for r in new:
                cur.execute("INSERT INTO txn_staged (bucket, account, ingested_ms, txid, amount)"
                            " VALUES (?,?,?,?,?)", r)
                ids.append(cur.lastrowid)
            if chunk == 0:
                cycle_bound = last_id
            db.executemany("INSERT OR IGNORE INTO txn_history VALUES (?,?,?,?,?)",
                           sorted(staged[chunk]))
            if chunk == CHUNKS - 1 and cycle_bound:
                db.execute("DELETE FROM txn_staged WHERE id <= ?", (cycle_bound,))
            staged[chunk] = []
            for r in new:
                staged[r[0] * CHUNKS // 65536].append(r)
            last_id = ids[-1] if ids else last_id
            chunk = (chunk + 1) % CHUNKS
        db.execute("COMMIT")
        worst = max(worst, time.perf_counter() - t1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    db.close()
    size = sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))
    return {"layout": layout, "us_per_row_wall": round(wall * 1e6 / len(rows), 2),
            "us_per_row_cpu": round(cpu * 1e6 / len(rows), 2),
            "slowest_commit_ms": round(worst * 1000, 1), "file_mb": round(size / 1e6)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=400_000)
    ap.add_argument("--commit", type=int, default=2048)
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--layouts", default="index,none,staged")
    args = ap.parse_args()
    rows = make_rows(args.rows, args.accounts)
    with tempfile.TemporaryDirectory(prefix="aetheris-layouts-") as tmp:
        for layout in args.layouts.split(","):
            r = run(layout, rows, args.commit, os.path.join(tmp, f"{layout}.db"))
            r.update({"bench": "history_layouts", "rows": args.rows, "commit": args.commit,
                      "accounts": args.accounts})
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
