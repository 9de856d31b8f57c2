"""Queue-mode benchmark: one command, one run, every figure side by side.

    python benchmarks/queue_bench.py [--quick]

Starts the bench service (`apipod start`, 2 workers, SQLite in a temp dir) and a plain
FastAPI + uvicorn no-op app, then measures with the closed-loop client of loadgen.py:
  - no-op job, concurrency 1: end-to-end p50 / p99 (target p50 <= 10 ms);
  - no-op job, concurrency 32: jobs/s next to the plain app's requests/s at 32
    (target >= 0.4x), with two requests per job (submit, then long-poll the status) and
    with one (submit with ?wait=, which answers with the finished job);
  - 50 ms job, 2 workers, concurrency 8: jobs/s against 2 / 0.05 = 40/s (target >= 0.9x);
  - RSS of the API process and of each worker at the end;
  - server CPU seconds per no-op job (the whole apipod process tree).
Prints a table and writes benchmarks/results/queue.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import RunResult, closed_loop  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "queue.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url}{path} not ready")


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def tree_cpu_s(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def measure_plain(jobs: int) -> RunResult:
    port = free_port()
    env = {**os.environ}
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "plain_fastapi:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    with started(command, env, HERE / "services"):
        wait_ready(f"http://127.0.0.1:{port}", "/docs")
        asyncio.run(closed_loop(port, "/noop", 32, 500, plain=True))  # warm-up
        return asyncio.run(closed_loop(port, "/noop", 32, jobs, plain=True))


def measure_queue(jobs_c1: int, jobs_c32: int, jobs_50ms: int) -> dict:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="apipod-bench-"))
    env = {
        **os.environ,
        "APIPOD_PORT": str(port),
        "APIPOD_DATA_DIR": str(data / "data"),
        "APIPOD_MAX_WORKERS": "2",
        "APIPOD_LOG_LEVEL": "warning",
        "APIPOD_GPUS": "none",
    }
    command = [sys.executable, "-m", "apipod", "start", str(HERE / "services" / "bench_service.py")]
    out: dict = {}
    with started(command, env, HERE) as process:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, "/health")
        asyncio.run(closed_loop(port, "/noop", 8, 300))  # warm-up
        out["c1"] = asyncio.run(closed_loop(port, "/noop", 1, jobs_c1))
        cpu_before = tree_cpu_s(process.pid)
        out["c32"] = asyncio.run(closed_loop(port, "/noop", 32, jobs_c32))
        out["cpu_per_job_ms"] = (tree_cpu_s(process.pid) - cpu_before) / jobs_c32 * 1000
        out["c32_one"] = asyncio.run(closed_loop(port, "/noop?wait=30", 32, jobs_c32))
        out["sleep50"] = asyncio.run(closed_loop(port, "/sleep50", 8, jobs_50ms))
        health = httpx.get(url + "/health", timeout=10).json()
        out["rss_api_mb"] = health["api"]["rss_bytes"] / 1e6
        out["rss_workers_mb"] = [w["rss_bytes"] / 1e6 for w in health["workers"]]
    return out


def report(queue: dict, plain: RunResult) -> dict:
    c1, c32, s50 = queue["c1"], queue["c32"], queue["sleep50"]
    rows = [
        ("no-op, c=1, p50 latency", f"{c1.p50_ms:.1f} ms", "<= 10 ms", c1.p50_ms <= 10),
        ("no-op, c=1, p99 latency", f"{c1.percentile(0.99) * 1000:.1f} ms", "", None),
        ("no-op, c=32, jobs/s (submit + status)", f"{c32.rate:.0f}", "", None),
        ("no-op, c=32, jobs/s (submit?wait=)", f"{queue['c32_one'].rate:.0f}", "", None),
        ("plain FastAPI no-op, c=32, req/s", f"{plain.rate:.0f}", "", None),
        (
            "ratio jobs/s : plain req/s",
            f"{c32.rate / plain.rate:.2f}",
            ">= 0.40",
            c32.rate / plain.rate >= 0.4,
        ),
        ("50 ms job, 2 workers, jobs/s", f"{s50.rate:.1f}", ">= 36 (0.9 x 40)", s50.rate >= 36),
        ("server CPU per no-op job", f"{queue['cpu_per_job_ms']:.2f} ms", "", None),
        ("RSS API process", f"{queue['rss_api_mb']:.0f} MB", "< 150 MB", queue["rss_api_mb"] < 150),
        ("RSS workers", ", ".join(f"{r:.0f} MB" for r in queue["rss_workers_mb"]), "", None),
        ("errors", str(c1.errors + c32.errors + s50.errors + plain.errors), "0", None),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("  ok" if ok else "  MISSED")
        print(f"{name:<{width}}  {value:>14}  {target:<18}{mark}")  # noqa: T201
    return {name: {"value": value, "target": target, "met": ok} for name, value, target, ok in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description="APIPod queue-mode benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer jobs (a smoke run)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    queue = measure_queue(int(500 * scale), int(4000 * scale), int(400 * scale))
    plain = measure_plain(int(8000 * scale))
    table = report(queue, plain)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(table, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
