"""Fixture for chaos runs: each job records its token in a side log when it does its work."""

import os
import time
from pathlib import Path

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")

SIDE_LOG = Path(os.environ.get("APIPOD_DATA_DIR", ".")) / "side.log"


@app.endpoint("/work", queue_size=100_000)
def work(token: str, ms: float = 20.0) -> dict:
    time.sleep(ms / 1000)
    # One short append per run: O_APPEND writes of a line are atomic between processes.
    with open(SIDE_LOG, "a") as log:
        log.write(token + "\n")
    return {"token": token}


@app.endpoint("/stream_work", queue_size=100_000)
def stream_work(token: str, chunks: int = 5, ms: float = 5.0):
    for i in range(chunks):
        time.sleep(ms / 1000)
        yield f"{token}:{i} "
    with open(SIDE_LOG, "a") as log:
        log.write(token + "\n")
