"""The service the queue benchmarks drive: a no-op job and a 50 ms job."""

import time

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost", title="bench")


@app.endpoint("/noop", queue_size=100_000)
def noop() -> dict:
    return {}


@app.endpoint("/sleep50", queue_size=100_000)
def sleep50() -> dict:
    time.sleep(0.05)
    return {}
