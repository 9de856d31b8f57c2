"""Fixture: a synchronous service with generator endpoints; ``app.state.events`` records
what each generator did (values produced, GeneratorExit)."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from apipod import APIPod, ImageFile, JobProgress

app = APIPod(title="sync-stream")
app.state.events = []


@app.endpoint("/tokens")
def tokens(job_progress: JobProgress, count: int = 5):
    for i in range(count):
        job_progress.set_status((i + 1) / count)
        yield f"tok{i} "


@app.endpoint("/atokens")
async def atokens(count: int = 3):
    for i in range(count):
        await asyncio.sleep(0)
        yield {"i": i}


@app.endpoint("/frame")
def frame():
    yield "before"
    yield ImageFile().from_np_array(np.zeros((4, 4, 3), np.uint8))


@app.endpoint("/endless")
def endless(delay: float = 0.05):
    i = 0
    try:
        while True:
            time.sleep(delay)
            app.state.events.append(f"produced {i}")
            yield i
            i += 1
    except GeneratorExit:
        app.state.events.append("GeneratorExit")
        raise


@app.endpoint("/aendless")
async def aendless(delay: float = 0.05):
    i = 0
    try:
        while True:
            await asyncio.sleep(delay)
            app.state.events.append(f"aproduced {i}")
            yield i
            i += 1
    except GeneratorExit:
        app.state.events.append("aGeneratorExit")
        raise


@app.endpoint("/breaks")
def breaks():
    yield "one"
    raise ValueError("broken mid-stream")
