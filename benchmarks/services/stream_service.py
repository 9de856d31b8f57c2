"""The service the stream benchmark drives: generators that yield their wall-clock time."""

import time

from apipod import APIPod

app = APIPod(compute="serverless", provider="localhost", title="stream-bench")


@app.endpoint("/ticks", queue_size=100_000)
def ticks(count: int = 500, rate: float = 100.0):
    """``count`` values at ``rate`` per second; each is ``time.time()`` at its yield."""
    start = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        yield time.time()


@app.endpoint("/burst", queue_size=100_000)
def burst(count: int = 20_000):
    """As fast as the worker can: throughput of one stream."""
    for _ in range(count):
        yield time.time()
