"""Where a model loaded at import time lives: RSS per process under ``apipod start``.

    python benchmarks/import_memory.py [--service benchmarks/services/heavy_import_service.py]

Starts the service (queue mode, 1 worker, SQLite in a temp dir), waits until its worker is
ready, then prints the RSS of the supervisor, the API process and the worker, the time
from the command to the first answered job, and whether the start-up warning naming
``on_worker_start`` was logged (and how often). Writes benchmarks/results/import_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "import_memory.json"
MB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready_health(url: str, timeout: float = 120) -> dict:
    """/health once the API answers 200 and a worker is ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            body = httpx.get(url + "/health", timeout=2).json()
            if any(w.get("state") == "ready" for w in body.get("workers", [])):
                return body
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError("no ready worker")


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def measure(service: Path) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("APIPOD_")}
        env.update(APIPOD_DATA_DIR=data, APIPOD_PORT=str(port), APIPOD_GPUS="none")
        log_path = Path(data) / "service.log"
        command = [sys.executable, "-m", "apipod.cli", "start", str(service)]
        started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            health = ready_health(url)
            answer = httpx.post(url + "/size", params={"wait": 60}, json={}, timeout=90).json()
            first_job_s = time.monotonic() - started
            assert answer["status"] == "finished", answer
            worker_pid = next(w["pid"] for w in health["workers"] if w["state"] == "ready")
            figures = {
                "supervisor_mb": rss_mb(process.pid),
                "api_mb": rss_mb(health["api"]["pid"]),
                "worker_mb": rss_mb(worker_pid),
                "first_job_s": first_job_s,
            }
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        text = log_path.read_text(errors="replace")
        figures["warnings"] = text.count("on_worker_start") - text.count("on_worker_start failed")
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = HERE / "services" / "heavy_import_service.py"
    parser.add_argument("--service", type=Path, default=default)
    args = parser.parse_args()
    figures = measure(args.service.resolve())
    print("| process    | RSS (MB) |")
    print("|------------|---------:|")
    for name in ("supervisor", "api", "worker"):
        print(f"| {name:<10} | {figures[name + '_mb']:8.0f} |")
    print(f"start to first finished job: {figures['first_job_s']:.1f} s")
    print(f"log lines naming on_worker_start: {figures['warnings']}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
