"""Fixture: batched endpoints (partial failures, a failing batch, a crash, slow batches)."""

from __future__ import annotations

import os
import time

import numpy as np
from media_toolkit import ImageFile

from apipod import APIPod, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="queue-batch")


@app.endpoint("/echo", batch_size=4, batch_wait_ms=1500)
def echo(
    text: list[str],
    job_progress: list[JobProgress],
    pause: list[float] = 0.0,  # type: ignore[assignment]  # each job's default
) -> list:
    """Each job's text back, with the texts of its whole batch. ``fail`` fails its own
    job, ``boom`` the call (each job then runs alone), ``crash`` kills the worker;
    ``pause`` sleeps."""
    for progress in job_progress:
        progress.set_status(0.5, f"batch of {len(text)}")
    if "crash" in text:
        os._exit(17)
    if "boom" in text:
        raise RuntimeError("the whole batch failed")
    time.sleep(max(pause))
    for progress in job_progress:
        progress.set_status(0.9, "almost")
    return [
        ValueError(f"cannot echo {t}") if t == "fail" else {"text": t, "batch": text} for t in text
    ]


# The cancel tests need a batch that is certain to wait for its second job: /echo's
# adaptive fill-wait (see apipod.worker.batch.PROBE_EVERY) skips the wait after an earlier
# test's wait brought nothing, and batches of two start as soon as the second job joins.
app.endpoint("/pair", batch_size=2, batch_wait_ms=10_000)(echo)


@app.endpoint("/hang", batch_size=2, batch_wait_ms=1500, job_timeout=1)
def hang(n: list[int]) -> list:
    time.sleep(600)
    return n


@app.endpoint("/single")
def single(n: int = 0) -> dict:
    return {"n": n, "pid": os.getpid()}


@app.endpoint("/squares", batch_size=4, batch_wait_ms=1500)
def squares(side: list[int]) -> list[ImageFile]:
    """One black square per job, as an array: the annotation makes each one a PNG."""
    return [np.zeros((n, n, 3), np.uint8) for n in side]


@app.endpoint("/shapes", batch_size=4, batch_wait_ms=1500)
def shapes(image: list[ImageFile]) -> list:
    """Media arrive as a list of media objects, one per job; each result is an image."""
    return [
        {"shape": list(img.to_np_array().shape), "batch": len(image), "same": img} for img in image
    ]


@app.endpoint("/parse", batch_size=8, batch_wait_ms=10_000)
def parse(text: list[str], job_progress: list[JobProgress]) -> list:
    """A model whose call raises on one bad input, quoting it (``float('SECRET')``)."""
    for progress, item in zip(job_progress, text, strict=True):
        progress.set_status(0.5, f"parsing {item}")
    return [{"text": item, "value": float(item), "batch": len(text)} for item in text]


@app.endpoint("/parse_shared", batch_size=8, batch_wait_ms=10_000)
def parse_shared(text: list[str], job_progress: JobProgress) -> list:
    """The same with one shared reporter, whose message names one job's input."""
    for item in text:
        job_progress.set_status(0.5, f"parsing {item}")
    return [{"text": item, "value": float(item), "batch": len(text)} for item in text]
