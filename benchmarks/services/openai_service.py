"""Benchmark service: an OpenAI chat endpoint whose stand-in model yields tokens at a
fixed rate; each token is the wall-clock time of its ``yield`` (so the client can tell
how long it took to arrive). Queue mode unless APIPOD_COMPUTE says otherwise."""

from __future__ import annotations

import time
from collections.abc import Iterator

from apipod import APIPod
from apipod.common.schemas import ChatCompletionRequest

app = APIPod(compute="serverless", provider="localhost", title="openai-bench")


def paced_tokens(count: int, rate: float) -> Iterator[str]:
    """``count`` tokens, ``rate`` per second on an absolute schedule (no drift)."""
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield f"{time.time():.6f} "


@app.endpoint("/chat")
def chat(request: ChatCompletionRequest) -> Iterator[str]:
    count = request.max_tokens or 100
    rate = request.temperature * 1000  # tokens/s, carried in temperature (1.0: 1,000/s)
    yield from paced_tokens(count, rate)
