"""Streaming benchmark: one command, one run, SQLite and PostgreSQL side by side.

    python benchmarks/stream_bench.py [--quick] [--postgres-url postgresql://postgres@127.0.0.1/test]

For each store it starts `apipod start benchmarks/services/stream_service.py` (1 worker)
and measures, with httpx-sse clients on `GET /stream/{id}`:
  - 1 stream: a job yields `time.time()` 100 times a second; latency = arrival at the
    client minus the yield in the worker (same clock), p50 / p99 (target p50 < 5 ms);
  - 1 stream, burst: a job yields as fast as it can; chunks/s arriving at the client;
  - 100 streams × 50 chunks/s: 100 concurrent jobs each yielding 50 times a second,
    latency p50 / p99, chunks/s in total, and loss (every stream must receive 1..N
    exactly once, in order: target 0 lost). 100 worker processes do not fit on 2 cores,
    so the 100 producers are the worker's own `ChunkWriter` (the code a worker streams
    with), one per claimed job, in one producer process; API, store and clients are real.
Prints a table and writes benchmarks/results/stream.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from httpx_sse import aconnect_sse

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from queue_bench import free_port, started, wait_ready  # noqa: E402

from apipod.store import open_store  # noqa: E402
from apipod.store.postgres import PostgresStore  # noqa: E402
from apipod.worker.stream import ChunkWriter  # noqa: E402

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "stream.json"
PRODUCER_CONNECTIONS = 32
EXTERNAL = "/external"  # an endpoint no worker serves: the producer process claims its jobs


async def read_stream(client: httpx.AsyncClient, job_id: str) -> tuple[list[float], list[int]]:
    """Latencies (s) and chunk ids of one whole stream."""
    latencies: list[float] = []
    ids: list[int] = []
    async with aconnect_sse(client, "GET", f"/stream/{job_id}") as source:
        async for sse in source.aiter_sse():
            if sse.event == "message":
                latencies.append(time.time() - float(sse.data))
                ids.append(int(sse.id))
    return latencies, ids


async def one_stream(url: str, path: str, body: dict) -> tuple[list[float], list[int], float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        job_id = (await client.post(path, json=body)).json()["job_id"]
        start = time.monotonic()
        latencies, ids = await read_stream(client, job_id)
        return latencies, ids, time.monotonic() - start


async def many_streams(url: str, job_ids: list[str], go: threading.Event) -> list:
    limits = httpx.Limits(max_connections=len(job_ids) + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        tasks = [asyncio.create_task(read_stream(client, job_id)) for job_id in job_ids]
        await asyncio.sleep(1.0)  # every stream is open before the producers start
        go.set()
        return await asyncio.gather(*tasks)


def producer(database_url: str, data_dir: str, streams: int, count: int, rate: float, conn):
    """Claim ``streams`` jobs and stream ``count`` stamps into each through ChunkWriter."""
    if database_url.startswith("postgresql"):
        # Many connections, as many worker processes would have (within max_connections).
        store = PostgresStore(database_url, data_dir, pool_size=PRODUCER_CONNECTIONS)
    else:
        store = open_store(database_url, data_dir)
    jobs = []
    for i in range(streams):
        store.enqueue(EXTERNAL, {}, queue_size=100_000, max_attempts=1)
        jobs.append(store.claim(f"producer-{i}", 600.0, [EXTERNAL]))
    conn.send([job.id for job in jobs])
    conn.recv()  # go

    def run(index: int, job_id: str) -> None:
        worker = f"producer-{index}"
        writer = ChunkWriter(store, job_id, worker, threading.Event())
        start = time.monotonic()
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            writer.add(time.time())
        writer.close()
        store.finish(job_id, worker, "done")

    threads = [threading.Thread(target=run, args=(i, j.id)) for i, j in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    conn.send("done")
    conn.recv()  # the parent read this process's CPU time
    store.close()


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def measure(store_name: str, database_url: str | None, scale: float) -> dict:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="apipod-stream-bench-")) / "data"
    env = {
        **os.environ,
        "APIPOD_PORT": str(port),
        "APIPOD_DATA_DIR": str(data),
        "APIPOD_MAX_WORKERS": "1",
        "APIPOD_LOG_LEVEL": "warning",
        "APIPOD_GPUS": "none",
        "PYTHONPATH": str(HERE.parent),
    }
    if database_url:
        env["APIPOD_DATABASE_URL"] = database_url
    command = [
        sys.executable,
        "-m",
        "apipod",
        "start",
        str(HERE / "services" / "stream_service.py"),
    ]
    url = f"http://127.0.0.1:{port}"
    out: dict = {"store": store_name}
    with started(command, env, HERE):
        wait_ready(url, "/health")
        asyncio.run(one_stream(url, "/ticks", {"count": 50, "rate": 100}))  # warm-up
        lat, ids, _ = asyncio.run(
            one_stream(url, "/ticks", {"count": int(1000 * scale), "rate": 100})
        )
        out["one_p50_ms"], out["one_p99_ms"] = percentiles(lat)
        burst = int(20_000 * scale)
        _, ids, seconds = asyncio.run(one_stream(url, "/burst", {"count": burst}))
        out["burst_chunks_per_s"] = len(ids) / seconds
        out["burst_lost"] = burst - len(set(ids))
        out.update(
            measure_many(url, database_url or f"sqlite:///{data / 'apipod.db'}", data, scale)
        )
    return out


def measure_many(url: str, database_url: str, data: Path, scale: float) -> dict:
    streams, rate = 100, 50.0
    count = int(500 * scale)
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    process = ctx.Process(
        target=producer, args=(database_url, str(data), streams, count, rate, theirs)
    )
    process.start()
    job_ids = ours.recv()
    go = threading.Event()
    threading.Thread(target=lambda: (go.wait(), ours.send("go")), daemon=True).start()
    api = psutil.Process(httpx.get(url + "/health", timeout=10).json()["api"]["pid"])
    cpu = {"api": cpu_s(api), "producer": cpu_s(psutil.Process(process.pid)), "clients": cpu_s()}
    start = time.monotonic()
    results = asyncio.run(many_streams(url, job_ids, go))
    seconds = time.monotonic() - start - 1.0
    assert ours.recv() == "done"
    used = {
        "api": cpu_s(api) - cpu["api"],
        "producer": cpu_s(psutil.Process(process.pid)) - cpu["producer"],
        "clients": cpu_s() - cpu["clients"],
    }
    ours.send("bye")
    process.join(timeout=60)
    latencies = [x for lat, _ in results for x in lat]
    lost = sum(count - len(ids) for _, ids in results)
    disorder = sum(ids != list(range(1, count + 1)) for _, ids in results)
    p50, p99 = percentiles(latencies)
    return {
        "many_p50_ms": p50,
        "many_p99_ms": p99,
        "many_chunks_per_s": len(latencies) / seconds,
        "many_target_per_s": streams * rate,
        "many_lost": lost,
        "many_streams_out_of_order": disorder,
        "many_cpu_per_s": {name: value / seconds for name, value in used.items()},
    }


def cpu_s(process: psutil.Process | None = None) -> float:
    times = (process or psutil.Process()).cpu_times()
    return times.user + times.system


def postgres_database(admin_url: str) -> tuple[str, callable]:
    import secrets

    import psycopg

    name = f"apipod_stream_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return admin_url.rsplit("/", 1)[0] + f"/{name}", drop


def report(rows: list[dict]) -> None:
    header = (
        "| store | 1 stream p50 ms | p99 ms | burst chunks/s | 100×50/s p50 ms | p99 ms"
        " | chunks/s (target) | lost | out of order |"
    )
    print(header)  # noqa: T201
    print("|" + "---|" * 9)  # noqa: T201
    for r in rows:
        print(  # noqa: T201
            f"| {r['store']} | {r['one_p50_ms']:.2f} | {r['one_p99_ms']:.2f}"
            f" | {r['burst_chunks_per_s']:,.0f} | {r['many_p50_ms']:.2f} | {r['many_p99_ms']:.2f}"
            f" | {r['many_chunks_per_s']:,.0f} ({r['many_target_per_s']:,.0f})"
            f" | {r['many_lost'] + r['burst_lost']} | {r['many_streams_out_of_order']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="APIPod streaming benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer chunks (a smoke run)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    rows = [measure("SQLite", None, scale)]
    pg_url, drop = postgres_database(args.postgres_url)
    try:
        rows.append(measure("PostgreSQL", pg_url, scale))
    finally:
        drop()
    report(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
