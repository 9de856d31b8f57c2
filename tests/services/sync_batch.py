"""Fixture: a batched endpoint with a media parameter, served synchronously (a batch of
one per request) or from the queue."""

from __future__ import annotations

import numpy as np
from media_toolkit import ImageFile

from apipod import APIPod, JobProgress

app = APIPod(title="sync-batch")


@app.endpoint("/measure", batch_size=8, batch_wait_ms=50)
def measure(image: list[ImageFile], label: list[str]) -> list:
    """Each image's shape with its label; the label ``bad`` fails its own job."""
    return [
        ValueError("bad label")
        if text == "bad"
        else {"label": text, "shape": list(img.to_np_array().shape), "batch": len(label)}
        for img, text in zip(image, label, strict=True)
    ]


@app.endpoint("/squares", batch_size=8, batch_wait_ms=50)
def squares(side: list[int]) -> list[ImageFile]:
    """One black square per job, as an array: the annotation makes each one a PNG."""
    return [np.zeros((n, n, 3), np.uint8) for n in side]


@app.endpoint("/tagged", batch_size=4)
def tagged(text: list[str], job_progress: list[JobProgress]) -> list:
    """One progress reporter per job (a batch of one here)."""
    for progress, item in zip(job_progress, text, strict=True):
        progress.set_status(1.0, f"tagged {item}")
    return [{"text": item, "reporters": len(job_progress)} for item in text]
