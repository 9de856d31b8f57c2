"""Fixture: a job that never returns (hard timeout and lease recovery)."""

import time

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost")


@app.endpoint("/hang")
def hang() -> dict:
    time.sleep(3600)
    return {}
