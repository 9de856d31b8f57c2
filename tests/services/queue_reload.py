"""Fixture: a queue-mode service that tests copy and edit under ``apipod start --reload``."""

from __future__ import annotations

import time

from apipod import APIPod, JobProgress

app = APIPod(compute="serverless", provider="localhost", title="queue-reload")

ANSWER = "before the edit"


@app.endpoint("/answer")
def answer() -> dict:
    return {"answer": ANSWER}


@app.endpoint("/steps")
def steps(job_progress: JobProgress, count: int = 10, delay: float = 0.1) -> dict:
    for i in range(count):
        time.sleep(delay)
        job_progress.set_status((i + 1) / count, f"step {i + 1}/{count}")
    return {"steps": count}
