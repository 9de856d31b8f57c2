"""Dynamic batching benchmark: what ``batch_size`` buys on a model whose cost is a + b·n.

    python benchmarks/batch_bench.py [--quick] [--clients 64]

Starts ``benchmarks/services/batch_service.py`` (``apipod start``, 2 workers, SQLite in a
temp dir): a stand-in model that sleeps A + B·n for a call of n jobs (A = 40 ms,
B = 5 ms), behind endpoints that differ only in ``batch_size`` (1, 4, 8, 16;
``batch_wait_ms`` 20). For each, in one run, with the closed-loop client of loadgen.py
(submit, then long-poll the status):
  - heavy load (``--clients``, default 64): jobs/s and p50/p99 latency, next to the
    model-bound limit 2 workers × n / (A + B·n);
  - light load (1 client): p50/p99 latency.
Targets: batch_size 8 reaches >= 0.9 × its limit and >= 3 × the unbatched jobs/s; the
p50 at 1 client stays <= batch_wait_ms + one model call (A + B).
Prints a table and writes benchmarks/results/batch.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "services"))
from batch_service import A_S, B_S, SIZES, WAIT_MS  # noqa: E402
from loadgen import RunResult, closed_loop  # noqa: E402
from queue_bench import free_port, started, wait_ready  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "batch.json"
WORKERS = 2


def limit(size: int) -> float:
    """Jobs/s when the model is the only cost: every worker always runs full batches."""
    return WORKERS * size / (A_S + B_S * size)


def measure(clients: int, heavy_jobs: int, light_jobs: int) -> dict[int, dict[str, RunResult]]:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="apipod-batch-bench-"))
    env = {
        **os.environ,
        "APIPOD_PORT": str(port),
        "APIPOD_DATA_DIR": str(data / "data"),
        "APIPOD_MAX_WORKERS": str(WORKERS),
        "APIPOD_LOG_LEVEL": "warning",
        "APIPOD_GPUS": "none",
    }
    service = HERE / "services" / "batch_service.py"
    out: dict[int, dict[str, RunResult]] = {}
    with started([sys.executable, "-m", "apipod", "start", str(service)], env, HERE):
        wait_ready(f"http://127.0.0.1:{port}", "/health")
        for size in SIZES:
            path = f"/b{size}"
            asyncio.run(closed_loop(port, path, clients, clients * 2))  # warm-up
            jobs = heavy_jobs if size > 1 else heavy_jobs // 4
            heavy = asyncio.run(closed_loop(port, path, clients, jobs))
            light = asyncio.run(closed_loop(port, path, 1, light_jobs))
            out[size] = {"heavy": heavy, "light": light}
    return out


def report(runs: dict[int, dict[str, RunResult]], clients: int) -> list[dict]:
    unbatched = runs[1]["heavy"].rate
    light_target_ms = WAIT_MS + (A_S + B_S) * 1000
    rows = []
    print(  # noqa: T201
        f"{'batch_size':>10} {'jobs/s':>8} {'limit':>7} {'ratio':>6} {'x unbatched':>11}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'c=1 p50':>8} {'c=1 p99':>8} {'errors':>6}"
    )
    for size, run in runs.items():
        heavy, light = run["heavy"], run["light"]
        row = {
            "batch_size": size,
            "clients": clients,
            "jobs_per_s": round(heavy.rate, 1),
            "limit": round(limit(size), 1),
            "ratio": round(heavy.rate / limit(size), 3),
            "x_unbatched": round(heavy.rate / unbatched, 2),
            "p50_ms": round(heavy.p50_ms, 1),
            "p99_ms": round(heavy.percentile(0.99) * 1000, 1),
            "c1_p50_ms": round(light.p50_ms, 1),
            "c1_p99_ms": round(light.percentile(0.99) * 1000, 1),
            "errors": heavy.errors + light.errors,
        }
        rows.append(row)
        print(  # noqa: T201
            f"{size:>10} {row['jobs_per_s']:>8} {row['limit']:>7} {row['ratio']:>6}"
            f" {row['x_unbatched']:>11} {row['p50_ms']:>7} {row['p99_ms']:>7}"
            f" {row['c1_p50_ms']:>8} {row['c1_p99_ms']:>8} {row['errors']:>6}"
        )
    eight = next(r for r in rows if r["batch_size"] == 8)
    checks = {
        "batch_size 8 >= 0.9 x limit": eight["ratio"] >= 0.9,
        "batch_size 8 >= 3 x unbatched": eight["x_unbatched"] >= 3,
        f"c=1 p50 <= {light_target_ms:.0f} ms (every batch size)": all(
            r["c1_p50_ms"] <= light_target_ms for r in rows
        ),
    }
    for name, met in checks.items():
        print(f"{name}: {'ok' if met else 'MISSED'}")  # noqa: T201
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="APIPod dynamic batching benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer jobs (a smoke run)")
    parser.add_argument("--clients", type=int, default=64, help="clients of the heavy load")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    runs = measure(args.clients, int(2000 * scale), int(60 * scale))
    rows = report(runs, args.clients)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
