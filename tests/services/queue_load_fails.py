"""Fixture: on_worker_start raises, so no worker ever becomes ready."""

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")


@app.on_worker_start
def load() -> None:
    raise RuntimeError("model weights not found at /models/missing.bin")


@app.endpoint("/never")
def never() -> dict:
    return {}
