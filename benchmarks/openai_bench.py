"""OpenAI-compatible streaming benchmark: one command, one run, three servers side by side.

    python benchmarks/openai_bench.py [--quick] [--tokens 2000] [--runs 30]

A stand-in model yields tokens at 1,000 per second; each token is the wall-clock time of
its ``yield`` (one clock: same box). Read with the official ``openai`` client
(``chat.completions.create(stream=True)``) from
  - APIPod in queue mode on SQLite (``apipod start``, 1 worker): every call a job, its
    chunks stored and re-encoded as ChatCompletionChunk SSE;
  - APIPod in synchronous mode (the same service under ``uvicorn``);
and, as the ceiling, a minimal FastAPI app streaming the same tokens as plain SSE (read
with httpx-sse). Measured per server:
  - TTFT overhead: arrival of the first token at the client minus its ``yield``, p50/p99
    over ``--runs`` short streams (target in queue mode: p50 <= 5 ms);
  - tokens/s through the client over a ``--tokens`` stream against the generator's own
    rate (target: >= 0.95).
Prints a table and writes benchmarks/results/openai.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
from httpx_sse import connect_sse

sys.path.insert(0, str(Path(__file__).parent))
from queue_bench import free_port, started, wait_ready  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "openai.json"
RATE = 1000.0


def openai_stamps(url: str, count: int) -> list[tuple[float, float]]:
    """(yield time, arrival time) of each token of one stream, read with the openai client."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="bench", max_retries=0, timeout=120)
    messages = [{"role": "user", "content": "go"}]
    stream = client.chat.completions.create(
        model="chat", messages=messages, stream=True, max_tokens=count, temperature=RATE / 1000
    )
    stamps = []
    for chunk in stream:
        now = time.time()
        text = chunk.choices[0].delta.content if chunk.choices else None
        if text:
            stamps.extend((float(t), now) for t in text.split())
    return stamps


def plain_stamps(url: str, count: int) -> list[tuple[float, float]]:
    stamps = []
    with httpx.Client(base_url=url, timeout=120) as client:
        body = {"count": count, "rate": RATE}
        with connect_sse(client, "POST", "/stream", json=body) as source:
            for sse in source.iter_sse():
                if sse.data == "[DONE]":
                    break
                stamps.append((float(json.loads(sse.data)), time.time()))
    return stamps


def measure(read, url: str, runs: int, tokens: int) -> dict[str, float]:
    read(url, 5)  # warm-up: connections, imports, the first job
    ttft = sorted((lambda s: s[0][1] - s[0][0])(read(url, 5)) * 1000 for _ in range(runs))
    long = read(url, tokens)
    assert len(long) == tokens, f"{len(long)} of {tokens} tokens arrived"
    made = (long[-1][0] - long[0][0]) or 1e-9
    arrived = (long[-1][1] - long[0][1]) or 1e-9
    return {
        "ttft_p50_ms": statistics.median(ttft),
        "ttft_p99_ms": ttft[min(len(ttft) - 1, int(len(ttft) * 0.99))],
        "generator_tok_s": (tokens - 1) / made,
        "client_tok_s": (tokens - 1) / arrived,
        "ratio": made / arrived,
    }


@contextlib.contextmanager
def apipod_server(data_dir: Path, queued: bool) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIPOD_")}
    env.update(APIPOD_DATA_DIR=str(data_dir), APIPOD_GPUS="none", APIPOD_LOG_LEVEL="warning")
    env["PYTHONPATH"] = str(ROOT)
    service = str(HERE / "services" / "openai_service.py")
    if queued:
        command = [sys.executable, "-m", "apipod.cli", "start", service, "--port", str(port)]
    else:
        env["APIPOD_COMPUTE"] = "dedicated"
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE / "services")]
        command += ["openai_service:app", "--port", str(port), "--log-level", "warning"]
    with started(command, env, ROOT):
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, "/health", timeout=120)
        if queued:
            _wait_worker(url)
        yield url


def _wait_worker(url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = httpx.get(url + "/health", timeout=5).json().get("workers", [])
        if any(w.get("state") == "ready" for w in workers):
            return
        time.sleep(0.2)
    raise TimeoutError("no ready worker")


@contextlib.contextmanager
def plain_server() -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE / "services")]
    command += ["plain_sse:app", "--port", str(port), "--log-level", "warning"]
    with started(command, dict(os.environ), ROOT):
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, "/docs", timeout=60)
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 short runs, 500 tokens")
    parser.add_argument("--runs", type=int, default=30, help="short streams for TTFT")
    parser.add_argument("--tokens", type=int, default=2000, help="tokens of the long stream")
    args = parser.parse_args()
    runs, tokens = (10, 500) if args.quick else (args.runs, args.tokens)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="openai-bench-") as tmp:
        with apipod_server(Path(tmp) / "queue", queued=True) as url:
            rows["APIPod queue (SQLite)"] = measure(openai_stamps, url, runs, tokens)
        with apipod_server(Path(tmp) / "sync", queued=False) as url:
            rows["APIPod synchronous"] = measure(openai_stamps, url, runs, tokens)
    with plain_server() as url:
        rows["plain FastAPI SSE"] = measure(plain_stamps, url, runs, tokens)
    print(f"{tokens} tokens at {RATE:.0f}/s; TTFT over {runs} streams")
    print("| server | TTFT p50 ms | TTFT p99 ms | generator tok/s | client tok/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['ttft_p50_ms']:.2f} | {row['ttft_p99_ms']:.2f} |"
            f" {row['generator_tok_s']:.0f} | {row['client_tok_s']:.0f} | {row['ratio']:.3f} |"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"runs": runs, "tokens": tokens, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
