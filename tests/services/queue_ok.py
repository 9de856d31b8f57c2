"""Fixture: a queue-mode service whose jobs succeed (and report progress)."""

from __future__ import annotations

import os
import time

from apipod import APIPod, ImageFile, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="queue-ok")

state = {"loaded_in_pid": None}


@app.on_worker_start
def load() -> None:
    state["loaded_in_pid"] = os.getpid()


@app.endpoint("/noop")
def noop() -> dict:
    return {"ok": True}


@app.endpoint("/echo")
def echo(text: str, times: int = 1) -> dict:
    return {"text": text * times, "loaded_in_pid": state["loaded_in_pid"], "pid": os.getpid()}


@app.endpoint("/pin")
def pin(delay: float = 0.0) -> dict:
    time.sleep(delay)
    return {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}


@app.endpoint("/steps")
def steps(job_progress: JobProgress, count: int = 10, delay: float = 0.05) -> dict:
    for i in range(count):
        time.sleep(delay)
        job_progress.set_status((i + 1) / count, f"step {i + 1}/{count}")
    return {"steps": count}


@app.endpoint("/spin")
def spin(seconds: float = 60.0) -> dict:
    """Busy without reporting progress: only killing the worker stops it early."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)
    return {"spun": seconds}


@app.endpoint("/short", job_timeout=1)
def short(seconds: float = 5.0) -> dict:
    time.sleep(seconds)
    return {"slept": seconds}


@app.endpoint("/invert")
def invert(image: ImageFile, job_progress: JobProgress, steps: int = 0) -> ImageFile:
    """With ``steps``, first ``steps`` steps of 0.05 s that report progress (cancellable)."""
    pixels = image.to_np_array()
    for i in range(steps):
        time.sleep(0.05)
        job_progress.set_status(0.5 * (i + 1) / steps, f"step {i + 1}/{steps}")
    job_progress.set_status(0.5, "inverting")
    return ImageFile(file_name="inverted.png").from_np_array(255 - pixels, img_type="png")


@app.endpoint("/bounded", queue_size=3)
def bounded() -> dict:
    """Its own queue bound, far below the global ``queue_size`` (500)."""
    return {"ok": True}


@app.endpoint("/where", use_queue=False)
def where() -> dict:
    return {"pid": os.getpid(), "loaded_in_pid": state["loaded_in_pid"]}
