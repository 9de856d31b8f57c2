"""The ceiling: a minimal FastAPI app streaming the same paced tokens as plain SSE."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

app = FastAPI()


def paced(count: int, rate: float) -> Iterator[bytes]:
    start = time.monotonic()
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield b"data: " + json.dumps(f"{time.time():.6f} ").encode() + b"\n\n"
    yield b"data: [DONE]\n\n"


@app.post("/stream")
async def stream(request: Request) -> StreamingResponse:
    body = await request.json()
    return StreamingResponse(paced(body["count"], body["rate"]), media_type="text/event-stream")
