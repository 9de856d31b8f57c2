"""Media benchmark: a large file's round trip through APIPod next to a plain app.

    python benchmarks/media_bench.py [--mb 100] [--runs 3]

In one run, side by side:
  - APIPod (queue mode, SQLite, one worker): multipart upload with ``?wait=`` -> a job that
    reads every byte and answers a result of the same size (built in memory, as a model's
    output is) -> download of the raw result from ``/files/...`` (the JobResult gives its
    URL: the file is above the inline limit);
  - the same bytes through a plain FastAPI app on uvicorn that streams the upload to disk,
    reads every byte into the same result, writes it to disk and streams it back
    (FileResponse).
  Each round trip starts after ``os.sync()`` (no dirty pages left by the other), in
  alternating order. The median round trip of each and their ratio (target: within 2x).
  - The API process's peak RSS while 4 uploads and 8 downloads of that size run at once
    (target: under 250 MB).
Prints a table and writes benchmarks/results/media.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HERE = Path(__file__).parent
REPO = HERE.parent
RESULTS = HERE / "results" / "media.json"
BLOCK = 1 << 20

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from queue_bench import free_port, started, wait_ready  # noqa: E402

from tests.helpers import peak_rss_during  # noqa: E402


def make_input(path: Path, megabytes: int) -> str:
    sha = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(megabytes):
            block = os.urandom(BLOCK)
            sha.update(block)
            out.write(block)
    return sha.hexdigest()


def download(client: httpx.Client, url: str, target: Path) -> str:
    sha = hashlib.sha256()
    with client.stream("GET", url) as response, open(target, "wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(BLOCK):
            sha.update(chunk)
            out.write(chunk)
    return sha.hexdigest()


def apipod_job(client: httpx.Client, source: Path) -> dict:
    """Upload ``source`` and wait for the finished job (its JobResult)."""
    with open(source, "rb") as upload:
        files = {"file": ("input.bin", upload, "application/octet-stream")}
        response = client.post("/roundtrip", params={"wait": 60}, files=files)
    body = response.json()
    if body.get("status") != "finished":
        raise RuntimeError(f"job did not finish: {body}")
    return body


def apipod_round_trip(client: httpx.Client, source: Path, target: Path) -> str:
    return download(client, apipod_job(client, source)["result"]["content"], target)


def plain_round_trip(client: httpx.Client, source: Path, target: Path) -> str:
    with open(source, "rb") as upload:
        chunks = iter(lambda: upload.read(BLOCK), b"")
        response = client.post("/roundtrip", content=chunks)
    job = response.json()["job"]
    return download(client, f"/files/{job}", target)


def timed(run: Callable[[], str], expected: str) -> float:
    start = time.perf_counter()
    digest = run()
    elapsed = time.perf_counter() - start
    if digest != expected:
        raise RuntimeError("the round trip changed the bytes")
    return elapsed


def concurrent_load(url: str, source: Path, result_url: str, scratch: Path) -> None:
    """4 uploads (submitted, not awaited) and 8 downloads of the result, all at once."""
    errors: list[BaseException] = []

    def upload() -> None:
        with httpx.Client(base_url=url, timeout=300) as client, open(source, "rb") as data:
            files = {"file": ("input.bin", data, "application/octet-stream")}
            response = client.post("/roundtrip", files=files)
            if response.status_code != 200:
                raise RuntimeError(response.text)

    def fetch(index: int) -> None:
        with httpx.Client(timeout=300) as client:
            download(client, result_url, scratch / f"download-{index}.bin")

    def guarded(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(upload)) for _ in range(4)]
    threads += [threading.Thread(target=guarded(lambda i=i: fetch(i))) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="file size in MiB (default 100)")
    parser.add_argument("--runs", type=int, default=3, help="round trips of each (default 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="media-bench-") as tmp:
        scratch = Path(tmp)
        source = scratch / "input.bin"
        expected = make_input(source, args.mb)
        apipod_port, plain_port = free_port(), free_port()
        apipod_url, plain_url = f"http://127.0.0.1:{apipod_port}", f"http://127.0.0.1:{plain_port}"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        apipod_env = {
            **env,
            "APIPOD_PORT": str(apipod_port),
            "APIPOD_DATA_DIR": str(scratch / "apipod-data"),
            "APIPOD_MAX_UPLOAD_FILE_SIZE_MB": str(4 * args.mb + 100),
            "APIPOD_LOG_LEVEL": "warning",
            "APIPOD_INLINE_RESULT_MAX_MB": "0",  # by reference at any --mb, as large files go
        }
        plain_env = {**env, "PLAIN_MEDIA_DIR": str(scratch)}
        service = str(HERE / "services" / "media_service.py")
        apipod_cmd = [sys.executable, "-m", "apipod.cli", "start", service]
        plain_cmd = [sys.executable, "-m", "uvicorn", "plain_media:app", "--port", str(plain_port)]
        plain_cmd += ["--log-level", "warning"]
        with (
            started(apipod_cmd, apipod_env, REPO),
            started(plain_cmd, plain_env, HERE / "services"),
        ):
            wait_ready(apipod_url, "/health", timeout=90)
            wait_ready(plain_url, "/docs", timeout=90)
            apipod_s: list[float] = []
            plain_s: list[float] = []
            with (
                httpx.Client(base_url=apipod_url, timeout=300) as apipod,
                httpx.Client(base_url=plain_url, timeout=300) as plain,
            ):
                target = scratch / "output.bin"
                legs = [
                    (plain_s, lambda: plain_round_trip(plain, source, target)),
                    (apipod_s, lambda: apipod_round_trip(apipod, source, target)),
                ]
                for run in range(args.runs):
                    for times, leg in legs if run % 2 == 0 else legs[::-1]:
                        os.sync()  # the writes of the previous leg must not slow this one
                        times.append(timed(leg, expected))
                result_url = apipod_job(apipod, source)["result"]["content"]
                api_pid = apipod.get("/health").json()["api"]["pid"]
            before, peak = peak_rss_during(
                api_pid, lambda: concurrent_load(apipod_url, source, result_url, scratch)
            )
    report(args, apipod_s, plain_s, before, peak)


def report(
    args: argparse.Namespace, apipod_s: list[float], plain_s: list[float], before: int, peak: int
) -> None:
    apipod_median, plain_median = statistics.median(apipod_s), statistics.median(plain_s)
    figures = {
        "file_mib": args.mb,
        "runs": args.runs,
        "apipod_round_trip_s": [round(s, 3) for s in apipod_s],
        "plain_round_trip_s": [round(s, 3) for s in plain_s],
        "apipod_median_s": round(apipod_median, 3),
        "plain_median_s": round(plain_median, 3),
        "ratio": round(apipod_median / plain_median, 2),
        "api_rss_before_mb": round(before / 1e6, 1),
        "api_rss_peak_mb_4_uploads_8_downloads": round(peak / 1e6, 1),
    }
    rows = [
        (f"{args.mb} MiB round trip, plain uvicorn app (median)", f"{plain_median:.2f} s"),
        (f"{args.mb} MiB round trip, APIPod (median)", f"{apipod_median:.2f} s"),
        ("ratio APIPod / plain (target <= 2x)", f"{figures['ratio']:.2f}x"),
        ("API RSS before the load", f"{figures['api_rss_before_mb']} MB"),
        (
            "API RSS peak, 4 uploads + 8 downloads at once (target < 250 MB)",
            f"{figures['api_rss_peak_mb_4_uploads_8_downloads']} MB",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
