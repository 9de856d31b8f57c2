"""Fixture: on_worker_start never returns (worker_start_timeout must end it)."""

import time

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")


@app.on_worker_start
def load() -> None:
    time.sleep(3600)


@app.endpoint("/never")
def never() -> dict:
    return {}
