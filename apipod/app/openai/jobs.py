"""Queue mode: every OpenAI call is a job. The HTTP call waits for it; a chat stream is
the job's durable stream; a client that goes away cancels it (``cancel_on_disconnect``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.types import Receive

from apipod.app.queue import MAX_WAIT_S, until_disconnect
from apipod.app.stream import FALLBACK_POLL_S, READ_BATCH, StreamHub
from apipod.payload import StoredMedia, decode
from apipod.store.records import Chunk, Job

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)

JOB_HEADER = "X-APIPod-Job-Id"
#: A long-poll that answered early without an end (past max_waiters): wait a moment.
_BUSY_PAUSE_S = 0.05


async def wait_for_job(app: APIPod, job: Job, receive: Receive) -> Job | None:
    """The job once it ended; None when the client went away first (then the job is
    cancelled, unless ``cancel_on_disconnect`` is off)."""
    gone = asyncio.create_task(until_disconnect(receive, lambda: None))
    try:
        while True:
            began = time.monotonic()
            waiter = asyncio.create_task(app.queue.wait_terminal(job.id, MAX_WAIT_S))
            done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
            if waiter not in done:
                waiter.cancel()
                await cancel_abandoned(app, job.id)
                return None
            current = waiter.result()
            if current is None or current.is_terminal:
                return current
            if time.monotonic() - began < _BUSY_PAUSE_S:
                await asyncio.sleep(_BUSY_PAUSE_S)
    finally:
        gone.cancel()


async def cancel_abandoned(app: APIPod, job_id: str) -> None:
    """Cancel the job of a client that went away (when the setting says so)."""
    if not app.config.cancel_on_disconnect:
        return
    with anyio.CancelScope(shield=True):  # runs in a task the disconnect cancelled
        job = await app.queue.call(app.queue.store.cancel, job_id)
    logger.info(
        "job %s cancelled: its OpenAI client went away (now %s)",
        job_id,
        job.status if job else "gone",
        extra={"job_id": job_id},
    )


async def follow(
    app: APIPod, hub: StreamHub, job_id: str
) -> AsyncGenerator[tuple[Job, list[Any]], None]:
    """``(job, new output values)`` whenever the job's stream moves; ends after the job
    ended and every value of it was given."""
    after = 0
    queue = app.queue
    with hub.subscribe(job_id) as changed:
        while True:
            changed.clear()
            if queue.store.fast_local_reads:
                job, chunks = _read(app, job_id, after)
            else:
                job, chunks = await queue.call(_read, app, job_id, after)
            if job is None:
                return
            if chunks:
                after = chunks[-1].seq
            yield job, [decode(json.loads(c.data), lambda media: None) for c in chunks]
            if len(chunks) == READ_BATCH:
                continue
            if job.is_terminal:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), FALLBACK_POLL_S)


def _read(app: APIPod, job_id: str, after: int) -> tuple[Job | None, list[Chunk]]:
    # The job first: once it is terminal, every one of its chunks is already written.
    store = app.queue.store
    job = store.get_state(job_id)
    chunks = [] if job is None else store.read_chunks(job_id, after, READ_BATCH)
    return job, chunks


async def job_value(app: APIPod, job: Job, request: Request) -> Any:
    """The job's result as the function's encoded value: result files as FileModel
    dicts with base64 ``content`` and, in ``url``, the file's (signed) address."""
    full = await app.queue.get_job(job.id)
    result = full.result if full is not None else None
    renderer = app.queue.file_renderer(request, "none")

    def on_file(media: StoredMedia) -> dict[str, Any]:
        data = app.queue.store.read_file(media.ref)
        content = base64.b64encode(data).decode("ascii")
        return {**renderer(media), "content": content, "url": renderer(media)["content"]}

    return await app.queue.call(decode, result, on_file)
