"""The job store on SQLite next to PostgreSQL: one command, one run, one table.

    python benchmarks/store_compare.py [--quick] [--postgres-url URL]

For each store and for 1, 2 and 4 worker processes, starts the bench service
(`apipod start`, APIPOD_DATABASE_URL set: a fresh SQLite file, or a fresh database on the
PostgreSQL server of --postgres-url, dropped afterwards) and measures with the closed-loop
client of loadgen.py:
  - no-op job, concurrency 16: jobs/s and p50 latency (PostgreSQL reported against SQLite);
  - 50 ms job, concurrency 2 x workers: jobs/s against the worker-bound limit
    workers / 0.05 s (target with 4 workers: >= 0.9 x 80 = 72 jobs/s on both stores).
Prints a table and writes benchmarks/results/store_compare.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import RunResult, closed_loop  # noqa: E402
from queue_bench import free_port, started, wait_ready  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "store_compare.json"
SERVICE = HERE / "services" / "bench_service.py"
WORKER_COUNTS = (1, 2, 4)
JOB_S = 0.05


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A fresh database on the admin URL's server; dropped afterwards."""
    name = f"apipod_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=2) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.partition("?")[0].rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(store: str, admin_url: str, data: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{data / 'apipod.db'}"
    else:
        with postgres_database(admin_url) as url:
            yield url


def measure(store: str, workers: int, admin_url: str, scale: float) -> dict[str, RunResult]:
    """Start the bench service on ``store`` with ``workers`` workers; run both loads."""
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix=f"apipod-cmp-{store}-"))
    with database(store, admin_url, data) as url:
        env = {
            **os.environ,
            "APIPOD_PORT": str(port),
            "APIPOD_DATA_DIR": str(data / "data"),
            "APIPOD_DATABASE_URL": url,
            "APIPOD_MAX_WORKERS": str(workers),
            "APIPOD_LOG_LEVEL": "warning",
            "APIPOD_GPUS": "none",
        }
        command = [sys.executable, "-m", "apipod", "start", str(SERVICE)]
        with started(command, env, HERE):
            wait_ready(f"http://127.0.0.1:{port}", "/health")
            asyncio.run(closed_loop(port, "/noop", 8, int(300 * scale)))  # warm-up
            # The 50 ms load first: it does not pay for the no-op burst's cleanup
            # (autovacuum on PostgreSQL, WAL checkpoints on SQLite).
            jobs_50ms = int(workers * 200 * scale)
            sleep50 = asyncio.run(closed_loop(port, "/sleep50", 2 * workers, jobs_50ms))
            noop = asyncio.run(closed_loop(port, "/noop", 16, int(2000 * scale)))
    return {"noop": noop, "sleep50": sleep50}


def report(runs: dict[tuple[str, int], dict[str, RunResult]]) -> list[dict]:
    header = (
        f"{'store':<11}{'workers':>8}{'no-op/s':>10}{'p50 ms':>8}{'vs SQLite':>11}"
        f"{'50ms/s':>9}{'limit':>7}{'ratio':>7}  target"
    )
    print(header)  # noqa: T201
    table = []
    for (store, workers), run in runs.items():
        noop, sleep50 = run["noop"], run["sleep50"]
        base = runs[("sqlite", workers)]["noop"].rate
        limit = workers / JOB_S
        ratio = sleep50.rate / limit
        met = None if workers != 4 else ratio >= 0.9
        mark = "" if met is None else (">= 0.90 ok" if met else ">= 0.90 MISSED")
        versus = f"{noop.rate / base:.2f}x" if store != "sqlite" else ""
        print(  # noqa: T201
            f"{store:<11}{workers:>8}{noop.rate:>10.0f}{noop.p50_ms:>8.1f}{versus:>11}"
            f"{sleep50.rate:>9.1f}{limit:>7.0f}{ratio:>7.2f}  {mark}"
        )
        errors = noop.errors + sleep50.errors
        table.append(
            {
                "store": store,
                "workers": workers,
                "noop_jobs_per_s": round(noop.rate, 1),
                "noop_p50_ms": round(noop.p50_ms, 2),
                "noop_vs_sqlite": round(noop.rate / base, 3),
                "job50ms_jobs_per_s": round(sleep50.rate, 1),
                "job50ms_limit": limit,
                "job50ms_ratio": round(ratio, 3),
                "target_met": met,
                "errors": errors,
            }
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description="SQLite vs PostgreSQL job store benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer jobs (a smoke run)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("APIPOD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test"),
        help="a database on the server to use; the benchmark creates and drops its own",
    )
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    runs: dict[tuple[str, int], dict[str, RunResult]] = {}
    for workers in WORKER_COUNTS:
        for store in ("sqlite", "postgresql"):
            runs[(store, workers)] = measure(store, workers, args.postgres_url, scale)
    runs = dict(sorted(runs.items(), key=lambda item: (item[0][0] != "sqlite", item[0][1])))
    table = report(runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
