"""Job lifecycles per second: SqliteStore next to a raw sqlite3 loop.

One lifecycle is enqueue + claim + finish, each its own transaction, on one thread. The
raw loop runs the same statements with the same pragmas (WAL, synchronous=NORMAL,
BEGIN IMMEDIATE for the count-then-insert) on its own fresh file, so the ratio shows what
the store's own work (locks, Job objects, JSON, wake-ups) costs.

    python benchmarks/store_lifecycle.py [--jobs N] [--rounds R]

Prints a table and writes ``benchmarks/results/store_lifecycle.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apipod.store.sql import build_statements
from apipod.store.sqlite import SqliteStore

RESULTS = Path(__file__).resolve().parent / "results" / "store_lifecycle.json"
INPUTS = {"prompt": "a cat in a hat", "steps": 30, "seed": 1234}
SQL = build_statements()


def _stamp(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def store_loop(folder: Path, jobs: int) -> float:
    """Seconds for ``jobs`` lifecycles through SqliteStore."""
    store = SqliteStore(folder / "store.db", folder / "data")
    store.migrate()
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            store.enqueue("/gen", INPUTS, queue_size=1000, max_attempts=3)
            job = store.claim("w1", 30.0)
            store.finish(job.id, "w1", {"image": "files/x/out.png"})
        return time.perf_counter() - start
    finally:
        store.close()


def raw_loop(folder: Path, jobs: int) -> float:
    """Seconds for ``jobs`` lifecycles as plain sqlite3 calls with the same statements."""
    path = folder / "raw.db"
    SqliteStore(path, folder / "raw-data").migrate()  # the same schema, nothing else
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        start = time.perf_counter()
        for _ in range(jobs):
            now = datetime.now(timezone.utc)
            stamp = _stamp(now)
            job_id = uuid.uuid4().hex
            conn.execute("BEGIN IMMEDIATE")
            (queued,) = conn.execute(SQL.count_queued, ("/gen",)).fetchone()
            assert queued < 1000
            params = (job_id, "/gen", json.dumps(INPUTS), 3, None, stamp, stamp)
            conn.execute(SQL.insert_job, params).fetchall()
            conn.execute("COMMIT")
            now = datetime.now(timezone.utc)
            lease = _stamp(now + timedelta(seconds=30))
            row = conn.execute(SQL.claim_any, ("w1", _stamp(now), lease)).fetchall()[0]
            result = json.dumps({"image": "files/x/out.png"})
            finished = _stamp(datetime.now(timezone.utc))
            conn.execute(SQL.finish, (result, finished, row[1], "w1"))
        return time.perf_counter() - start
    finally:
        conn.close()


def best_of(loop: Callable[[Path, int], float], jobs: int, rounds: int) -> float:
    """The fastest of ``rounds`` runs, each on a fresh file (after a short warm-up)."""
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            loop(Path(folder) / "warm", min(jobs, 200))
            times.append(loop(Path(folder) / "run", jobs))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000, help="lifecycles per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per loop; best counts")
    args = parser.parse_args()
    seconds = {
        "raw sqlite3": best_of(raw_loop, args.jobs, args.rounds),
        "SqliteStore": best_of(store_loop, args.jobs, args.rounds),
    }
    rates = {name: args.jobs / s for name, s in seconds.items()}
    ratio = rates["SqliteStore"] / rates["raw sqlite3"]
    print(f"{'loop':<14}{'jobs':>8}{'seconds':>10}{'lifecycles/s':>15}{'us/lifecycle':>15}")
    for name, s in seconds.items():
        print(
            f"{name:<14}{args.jobs:>8}{s:>10.3f}{rates[name]:>15,.0f}{s / args.jobs * 1e6:>15.1f}"
        )
    print(f"ratio SqliteStore / raw: {ratio:.2f} (target >= 0.5)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "jobs": args.jobs,
        "rounds": args.rounds,
        "seconds": seconds,
        "lifecycles_per_s": rates,
        "ratio": ratio,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
