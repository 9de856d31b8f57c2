"""Fixture: a queue-mode service with generator endpoints (streamed output)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from apipod import APIPod, ImageFile, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="queue-stream")

DATA_DIR = Path(os.environ.get("APIPOD_DATA_DIR", "."))
DATA_DIR.mkdir(parents=True, exist_ok=True)  # a PostgreSQL store leaves it uncreated


def side_log(line: str) -> None:
    # One short append per line: O_APPEND writes of a line are atomic between processes.
    with open(DATA_DIR / "side.log", "a") as log:
        log.write(line + "\n")


@app.endpoint("/tokens")
def tokens(job_progress: JobProgress, count: int = 20, delay: float = 0.0):
    for i in range(count):
        time.sleep(delay)
        job_progress.set_status((i + 1) / count, f"token {i + 1}/{count}")
        yield f"tok{i} "


@app.endpoint("/atokens")
async def atokens(count: int = 5):
    for i in range(count):
        await asyncio.sleep(0)
        yield {"i": i, "square": i * i}


@app.endpoint("/frames")
def frames(count: int = 2):
    for i in range(count):
        yield ImageFile().from_np_array(_pixels(i))


@app.endpoint("/slow")
def slow(token: str, count: int = 1000, delay: float = 0.1):
    try:
        for i in range(count):
            time.sleep(delay)
            yield i
    except GeneratorExit:
        side_log(f"{token} GeneratorExit")
        raise


@app.endpoint("/crash_once")
def crash_once(token: str, count: int = 5, crash_after: int = 3, delay: float = 0.05):
    marker = DATA_DIR / f"crashed-{token}"
    for i in range(count):
        time.sleep(delay)
        if i == crash_after and not marker.exists():
            marker.write_text("1")
            os._exit(1)  # the worker dies mid-stream
        yield f"{token}-{i} "


@app.endpoint("/plain")
def plain(text: str = "hi") -> dict:
    return {"text": text}


def _pixels(i: int):
    import numpy as np

    return np.full((4, 4, 3), i * 10, dtype=np.uint8)
