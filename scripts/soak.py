"""Soak run: steady load for a long time, with every process's RSS sampled each minute.

    python scripts/soak.py [--minutes 30] [--clients 8] [--sample-every 60]

Runs benchmarks/services/bench_service.py under `apipod start` (2 workers, SQLite) and a
closed loop of no-op jobs (benchmarks/loadgen.py). Every --sample-every seconds it prints
the RSS of the supervisor, the API process and each worker, and the size of the SQLite
WAL file. At the end it compares the last samples with the first ones after warm-up:
growth beyond noise (more than 20 MB or 20 % per process) or a WAL that keeps growing
fails the run (exit status 1). Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from loadgen import closed_loop  # noqa: E402

from tests.helpers import ServiceProcess, apipod_command, free_port, service_env  # noqa: E402

logger = logging.getLogger("soak")
GROWTH_MB = 20.0
GROWTH_FRACTION = 0.20


def sample(port: int, supervisor: psutil.Process, wal: Path) -> dict[str, float]:
    """RSS in MB of the supervisor, the API process and each worker (by slot), WAL size."""
    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    row = {"supervisor": supervisor.memory_info().rss / 1e6}
    row["api"] = health["api"]["rss_bytes"] / 1e6
    for worker in health["workers"]:
        slot = worker["id"].rsplit("/", 1)[-1].split(".")[0]  # "w0", "w1", ...
        row[slot] = (worker["rss_bytes"] or 0) / 1e6
    row["wal_mb"] = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    return row


def load_for(port: int, seconds: float, clients: int) -> int:
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done += asyncio.run(closed_loop(port, "/noop", clients, clients * 50)).completed
    return done


def grown(first: dict[str, float], last: dict[str, float]) -> list[str]:
    problems = []
    for key, start in first.items():
        end = last.get(key)
        if end is None or key == "wal_mb":
            continue
        if end - start > max(GROWTH_MB, start * GROWTH_FRACTION):
            problems.append(f"{key}: {start:.0f} MB -> {end:.0f} MB")
    return problems


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-every", type=float, default=60)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="apipod-soak-"))
    port = free_port()
    env = service_env(workdir / "data", port=port, max_workers=2, log_level="warning", job_ttl=120)
    args_ = apipod_command("start", str(REPO / "benchmarks" / "services" / "bench_service.py"))
    service = ServiceProcess(args_, env, port, workdir / "service.log").start()
    samples: list[dict[str, float]] = []
    try:
        service.wait_until("/health", status=200, timeout=60)
        assert service.process is not None
        supervisor = psutil.Process(service.process.pid)
        rounds = max(2, int(args.minutes * 60 / args.sample_every))
        for minute in range(rounds):
            jobs = load_for(port, args.sample_every, args.clients)
            samples.append(sample(port, supervisor, workdir / "data" / "apipod.db-wal"))
            logger.info(
                "round %d: %d jobs; %s",
                minute + 1,
                jobs,
                ", ".join(f"{k} {v:.0f}" for k, v in samples[-1].items()),
            )
    finally:
        service.stop(timeout=60)
    problems = grown(samples[1], samples[-1])  # the first round is warm-up
    wal = [s["wal_mb"] for s in samples]
    if wal[-1] > 4 * max(wal[1], 4.0):
        problems.append(f"WAL grew from {wal[1]:.1f} MB to {wal[-1]:.1f} MB")
    for problem in problems:
        logger.error("growth: %s", problem)
    logger.info("soak %s", "FAILED" if problems else "PASSED")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
