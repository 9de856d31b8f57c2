"""A real model served three ways: the OCR example (PP-OCRv4 on onnxruntime) on the same
rendered images, in one run.

    python -m pip install -r examples/ocr/requirements.txt -r benchmarks/requirements.txt
    python benchmarks/real_model_bench.py [--workers W] [--images 120] [--rounds 2]

  (a) direct:   the example's function (decode, detect, recognise, draw, PNG) called in
                W processes, fed by as many closed-loop callers as the HTTP runs have
                clients: the model-bound limit, no HTTP, no queue;
  (b) apipod:   ``apipod start examples/ocr/service.py`` in queue mode with W workers;
                each client sends ``POST /read?wait=60`` (base64 JSON) and gets the result
                in the same answer;
  (c) litserve: LitServe 0.2.19 serving the same function with W inference processes
                (benchmarks/services/litserve_ocr.py), ``POST /predict``.

Every worker gets ``cores // W`` native threads (at least 1), the example's own rule.
Clients: 2 × W closed-loop HTTP/1.1 connections (loadgen.Connection). Each round runs
(a), (b), (c) in turn; the table gives, per mode, the median over rounds of images/s and
the latencies (p50, p99) of all rounds, and the peak RSS and the CPU per image of the
serving processes, all but the model workers (APIPod: supervisor and API process;
LitServe: its main process and its forks, the queue manager and the API server). Goal: (b) >= 0.95 x (a) and (b) >= (c).
Writes benchmarks/results/real_model.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import json
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import Connection, RunResult  # noqa: E402
from ocr_common import SERVICE, load_ocr_example  # noqa: E402
from queue_bench import free_port, started, wait_ready  # noqa: E402

logger = logging.getLogger("real_model_bench")
HERE = Path(__file__).parent
RESULTS = HERE / "results" / "real_model.json"
TEXTS = [
    "queue mode works",
    "the quick brown fox",
    "OCR 4321 queue",
    "jobs survive restarts",
    "workers per core",
    "HELLO WORLD 42",
]


def rendered_images(count: int) -> list[bytes]:
    """``count`` PNGs of one line of text each (the TEXTS in turn), as the tests render."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    images = []
    for i in range(count):
        text = TEXTS[i % len(TEXTS)]
        pixels = np.full((120, 40 + 30 * len(text), 3), 255, np.uint8)
        cv2.putText(pixels, text, (20, 82), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3, 16)
        images.append(cv2.imencode(".png", pixels)[1].tobytes())
    return images


# --- (a) direct ---------------------------------------------------------------------------------
_OCR = None


def _direct_init(workers: int) -> None:
    global _OCR
    os.environ["APIPOD_MAX_WORKERS"] = str(workers)
    _OCR = load_ocr_example()
    _OCR.load()


def _direct_read(data: bytes) -> int:
    return len(_OCR.read_bytes(data)["lines"])  # type: ignore[union-attr]


def measure_direct(
    images: list[bytes], workers: int, clients: int
) -> tuple[RunResult, list[float]]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_direct_init, initargs=(workers,)) as pool:
        pool.map(_direct_read, images[: workers * 2])  # warm up every process

        def call(data: bytes) -> bool:
            return pool.apply(_direct_read, (data,)) > 0

        with serving_cost([], [p.pid for p in pool._pool]) as cost:  # type: ignore[attr-defined]
            result = closed_loop_threads(images, clients, call)
        return result, cost


def closed_loop_threads(
    images: list[bytes], clients: int, call: Callable[[bytes], bool]
) -> RunResult:
    result = RunResult()
    queue = list(reversed(images))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                data = queue.pop()
            started_at = time.perf_counter()
            ok = call(data)
            with lock:
                result.latencies_s.append(time.perf_counter() - started_at)
                result.completed += ok
                result.errors += not ok

    started_at = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: client(), range(clients)))
    result.elapsed_s = time.perf_counter() - started_at
    return result


# --- (b) and (c): HTTP --------------------------------------------------------------------------
async def closed_loop_http(port: int, path: str, images: list[bytes], clients: int) -> RunResult:
    """``clients`` keep-alive connections send the images in turn, one request each."""
    result = RunResult()
    bodies = [json.dumps({"image": base64.b64encode(d).decode()}).encode() for d in images]
    bodies.reverse()

    async def client() -> None:
        conn = Connection("127.0.0.1", port)
        try:
            while bodies:
                body = bodies.pop()
                started_at = time.perf_counter()
                status, answer = await conn.request("POST", path, body)
                result.latencies_s.append(time.perf_counter() - started_at)
                ok = status == 200 and _has_lines(json.loads(answer))
                result.completed += ok
                result.errors += not ok
        finally:
            await conn.close()

    started_at = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    result.elapsed_s = time.perf_counter() - started_at
    return result


def _has_lines(answer: dict) -> bool:
    answer = answer.get("result", answer) if answer.get("status") == "finished" else answer
    return bool(answer.get("lines")) and bool(answer.get("annotated", {}).get("content"))


def serving_pids(root: int, workers: set[int]) -> list[int]:
    """The processes that serve HTTP and manage workers: ``root`` and its descendants but
    the model workers (``workers``, or LitServe's spawned inference processes) and
    multiprocessing's resource tracker."""
    pids = []
    for process in [psutil.Process(root), *psutil.Process(root).children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.cmdline())
            if process.pid in workers or "spawn_main" in command or "resource_tracker" in command:
                continue
            pids.append(process.pid)
    return pids


def inference_pids(root: int) -> list[int]:
    """LitServe's inference workers: the processes it started with multiprocessing spawn."""
    return [
        p.pid
        for p in psutil.Process(root).children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline())
    ]


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss
    return total


@contextlib.contextmanager
def serving_cost(pids: list[int], workers: list[int]) -> Iterator[list[float]]:
    """``[largest RSS, CPU seconds]`` of the serving ``pids`` together while the block
    runs (RSS sampled every 20 ms), then the CPU seconds of the model ``workers``."""
    cost = [0.0, _cpu_s(pids), _cpu_s(workers)]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            cost[0] = max(cost[0], _rss(pids))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield cost
    finally:
        done.set()
        sampler.join()
        cost[1] = _cpu_s(pids) - cost[1]
        cost[2] = _cpu_s(workers) - cost[2]


def measure_apipod(
    images: list[bytes], workers: int, clients: int
) -> tuple[RunResult, list[float]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="apipod-ocr-bench-") as tmp:
        env = {
            **os.environ,
            "APIPOD_PORT": str(port),
            "APIPOD_MAX_WORKERS": str(workers),
            "APIPOD_GPUS": "none",
            "APIPOD_DATA_DIR": str(Path(tmp) / "data"),
            "APIPOD_LOG_LEVEL": "warning",
        }
        command = [sys.executable, "-m", "apipod.cli", "start", str(SERVICE)]
        with started(command, env, HERE.parent) as process:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, "/health", timeout=120)
            worker_pids = _apipod_worker_pids(url, workers)
            path = "/read?wait=60"
            asyncio.run(closed_loop_http(port, path, images[: workers * 2], clients))
            serving = serving_pids(process.pid, worker_pids)
            with serving_cost(serving, sorted(worker_pids)) as cost:
                result = asyncio.run(closed_loop_http(port, path, images, clients))
            return result, cost


def _apipod_worker_pids(url: str, workers: int) -> set[int]:
    import httpx  # noqa: PLC0415

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        health = httpx.get(url + "/health", timeout=5).json()
        if sum(w["state"] == "ready" for w in health["workers"]) == workers:
            return {w["pid"] for w in health["workers"]}
        time.sleep(0.2)
    raise TimeoutError("the OCR workers did not all get ready")


def measure_litserve(
    images: list[bytes], workers: int, clients: int
) -> tuple[RunResult, list[float]]:
    port = free_port()
    env = {**os.environ, "APIPOD_MAX_WORKERS": str(workers)}
    command = [sys.executable, str(HERE / "services" / "litserve_ocr.py"), str(port), str(workers)]
    with started(command, env, HERE) as process:
        wait_ready(f"http://127.0.0.1:{port}", "/health", timeout=120)
        asyncio.run(closed_loop_http(port, "/predict", images[: workers * 2], clients))
        serving = serving_pids(process.pid, set())
        with serving_cost(serving, inference_pids(process.pid)) as cost:
            result = asyncio.run(closed_loop_http(port, "/predict", images, clients))
        return result, cost


# --- report -------------------------------------------------------------------------------------
MODES: dict[str, Callable[[list[bytes], int, int], tuple[RunResult, list[float]]]] = {
    "(a) direct, W processes": measure_direct,
    "(b) APIPod queue mode": measure_apipod,
    "(c) LitServe 0.2.19": measure_litserve,
}


def summarise(runs: list[tuple[RunResult, list[float]]]) -> dict:
    latencies = sorted(lat for run, _ in runs for lat in run.latencies_s)
    merged = RunResult(latencies_s=latencies)
    return {
        "images_per_s": round(statistics.median(run.rate for run, _ in runs), 2),
        "rounds_images_per_s": [round(run.rate, 2) for run, _ in runs],
        "p50_ms": round(merged.percentile(0.5) * 1000, 1),
        "p99_ms": round(merged.percentile(0.99) * 1000, 1),
        "errors": sum(run.errors for run, _ in runs),
        "serving_rss_mb": round(max(m[0] for _, m in runs) / 2**20, 1) if runs[0][1][0] else None,
        "worker_cpu_ms_per_image": round(
            1000 * sum(m[2] for _, m in runs) / max(1, sum(r.completed for r, _ in runs)), 1
        ),
        "serving_cpu_ms_per_image": round(
            1000 * sum(m[1] for _, m in runs) / max(1, sum(r.completed for r, _ in runs)), 1
        ),
    }


def print_table(table: dict[str, dict], workers: int, threads: int) -> None:
    direct = table["(a) direct, W processes"]["images_per_s"]
    logger.info("W=%d workers, %d native thread(s) each", workers, threads)
    logger.info(
        "| mode | images/s | × (a) | p50 ms | p99 ms | serving RSS MB | serving CPU ms/image | worker CPU ms/image | errors |"
    )
    logger.info("|---|---|---|---|---|---|---|---|---|")
    for mode, row in table.items():
        logger.info(
            "| %s | %.1f | %.2f | %.0f | %.0f | %s | %.1f | %.0f | %d |",
            mode,
            row["images_per_s"],
            row["images_per_s"] / direct,
            row["p50_ms"],
            row["p99_ms"],
            row["serving_rss_mb"] if row["serving_rss_mb"] is not None else "–",
            row["serving_cpu_ms_per_image"],
            row["worker_cpu_ms_per_image"],
            row["errors"],
        )


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    cores = len(os.sched_getaffinity(0))
    parser.add_argument("--workers", type=int, default=min(2, cores))
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    threads = max(1, cores // args.workers)
    clients = 2 * args.workers
    images = rendered_images(args.images)
    runs: dict[str, list[tuple[RunResult, list[float]]]] = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        for mode, measure in MODES.items():
            run = measure(images, args.workers, clients)
            logger.info("round %d %s: %.2f images/s", round_index + 1, mode, run[0].rate)
            runs[mode].append(run)
    table = {mode: summarise(mode_runs) for mode, mode_runs in runs.items()}
    print_table(table, args.workers, threads)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"workers": args.workers, "threads": threads, **table}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
