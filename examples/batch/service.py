"""A batched endpoint: several queued jobs run in one call, as a GPU model would.

Run:  apipod start examples/batch/service.py
Try:  for w in cat dog bird; do
        curl -s localhost:8000/embed -H 'content-type: application/json' -d "{\"text\": \"$w\"}" &
      done; wait
      # then GET /status/<job id>: the jobs submitted together share metrics.batch_id

The stand-in "model" costs 40 ms per call plus 5 ms per item, like a GPU that runs a
batch of 8 in about twice the time of one.
"""

from __future__ import annotations

import hashlib
import time

from apipod import APIPod, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="batch")


@app.on_worker_start
def load() -> None:
    """Load the model here (once per worker), never at import time."""


@app.endpoint("/embed", batch_size=8, batch_wait_ms=20)
def embed(text: list[str], job_progress: JobProgress, dims: list[int] = 4) -> list:  # type: ignore[assignment]
    """A vector per text. An empty text fails its own job only."""
    job_progress.set_status(0.1, f"embedding a batch of {len(text)}")
    time.sleep(0.040 + 0.005 * len(text))  # one "GPU" call for the whole batch
    return [
        ValueError("empty text") if not item else _vector(item, size)
        for item, size in zip(text, dims, strict=True)
    ]


def _vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(byte / 255, 3) for byte in digest[: max(1, min(dims, 32))]]
