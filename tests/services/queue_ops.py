"""Fixture: a queue-mode service for the operators' tools (CLI, metrics, dashboard,
webhooks): jobs that take a while with progress, and a job that fails until told not to."""

from __future__ import annotations

import time
from pathlib import Path

from apipod import APIPod, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="queue-ops")


@app.endpoint("/work")
def work(job_progress: JobProgress, steps: int = 5, delay: float = 0.05) -> dict:
    """``steps`` steps of ``delay`` seconds, each reported as progress."""
    for step in range(steps):
        time.sleep(delay)
        job_progress.set_status((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"steps": steps}


@app.endpoint("/flaky")
def flaky(marker: str) -> dict:
    """Fails while the file ``marker`` does not exist."""
    if not Path(marker).exists():
        raise RuntimeError(f"{marker} is missing")
    return {"marker": marker}
