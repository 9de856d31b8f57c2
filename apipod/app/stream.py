"""Server-Sent Events: ``GET /stream/{job_id}`` in queue mode, and the response of a
generator endpoint in synchronous mode.

``GET /stream/{job_id}`` works for every job. Named ``event: job`` records carry the
JobResult (plus ``attempt``) whenever status, progress, message or attempt change; the
last one is terminal and ends the response. Unnamed records carry the job's stored
chunks in order, each with ``id: <number>``; a client that reconnects with
``Last-Event-ID: n`` (or ``?last_event_id=n``) gets exactly the chunks after ``n``. A
retried job (its worker died) shows ``attempt`` going up, and its output starts again
from its first value, numbered after the chunks of the earlier attempt. A comment line
goes out at least every ``KEEPALIVE_S`` seconds so proxies keep the connection open.

Open streams are pushed: one thread per API process blocks on the store's stream
wake-up and wakes the streams of the jobs it names; a slow fallback poll covers lost
wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from typing import Any

import anyio
from fastapi import FastAPI, Header, Path, Query
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from apipod.app.numbers import query_int
from apipod.app.openapi import JOBS_TAG
from apipod.app.queue import JOB_ID_PATTERN, QueueFrontEnd, check_job_id
from apipod.endpoint import EndpointSpec
from apipod.errors import JobNotFound
from apipod.media.results import encode_result
from apipod.payload import RenderFile, decode
from apipod.progress import JobProgress
from apipod.store.records import Chunk, Job

logger = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
FALLBACK_POLL_S = 1.0
READ_BATCH = 1000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class EventStream(StreamingResponse):
    """``text/event-stream`` whose generator is always closed when the response ends,
    the client's disconnect included (so its ``finally`` runs at once)."""

    def __init__(self, records: AsyncGenerator[bytes, None]) -> None:
        super().__init__(records, media_type="text/event-stream", headers=SSE_HEADERS)
        self._records = records

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._records.aclose()


def output_record(seq: int, data: str) -> bytes:
    # ``data`` first: clients that sniff a buffered body (fastsdk) look for it.
    return f"data: {data}\nid: {seq}\n\n".encode()


def job_record(snapshot: dict[str, Any]) -> bytes:
    return f"event: job\ndata: {_ENCODE(snapshot)}\n\n".encode()


# --- synchronous mode ---------------------------------------------------------------------
def sync_stream_response(spec: EndpointSpec, kwargs: dict[str, Any]) -> EventStream:
    """Call the generator endpoint; one record per yielded value, then ``[DONE]``."""
    if spec.progress_param:
        kwargs[spec.progress_param] = JobProgress()
    return EventStream(_sync_records(spec.func(**kwargs)))


async def _sync_records(output: Generator | AsyncGenerator) -> AsyncGenerator[bytes, None]:
    seq = 0
    try:
        async for value in each_value(output):
            seq += 1
            yield output_record(seq, _ENCODE(await run_in_threadpool(encode_result, value)))
        yield b"data: [DONE]\n\n"
    except Exception as exc:
        logger.exception("streaming endpoint raised after %d values", seq)
        error = _ENCODE({"error": f"{type(exc).__name__}: {exc}"})
        yield f"event: error\ndata: {error}\n\n".encode()
    finally:
        await close_output(output)


async def close_output(output: Generator | AsyncGenerator) -> None:
    """Close a function's generator at its ``yield`` (``GeneratorExit`` there). Shielded:
    on a disconnect this runs in a cancelled task. A sync generator is never mid-step
    here (a thread step is not abandoned on cancel), so ``close()`` works."""
    with anyio.CancelScope(shield=True):
        if isinstance(output, Generator):
            await anyio.to_thread.run_sync(output.close)
        else:
            await output.aclose()


async def each_value(output: Generator | AsyncGenerator) -> AsyncIterator[Any]:
    """Each value a function's generator yields, sync (stepped in a thread) or async."""
    # A disconnect cancels this task. Each step of the function runs to its next
    # ``yield`` untouched (shielded, or in a thread that is not abandoned), so the
    # function sees GeneratorExit at that ``yield``, never a CancelledError mid-work.
    if not isinstance(output, Generator):
        while True:
            with anyio.CancelScope(shield=True):
                try:
                    value = await output.__anext__()
                except StopAsyncIteration:
                    return
            yield value
    done = object()
    while (value := await anyio.to_thread.run_sync(next, output, done)) is not done:
        yield value


# --- queue mode ---------------------------------------------------------------------------
class StreamHub:
    """Wakes the open streams of the jobs the store's stream wake-up names."""

    def __init__(self, queue: QueueFrontEnd) -> None:
        self._queue = queue
        self._streams: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Generator[asyncio.Event, None, None]:
        self._start(asyncio.get_running_loop())
        event = asyncio.Event()
        self._streams.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            events = self._streams.get(job_id, set())
            events.discard(event)
            if not events:
                self._streams.pop(job_id, None)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop and self._thread is not None and self._thread.is_alive():
            return
        self._loop = loop
        self._thread = threading.Thread(target=self._watch, args=(loop,), daemon=True)
        self._thread.name = "apipod-streams"
        self._thread.start()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._loop is loop and not loop.is_closed():
            try:
                job_ids = self._queue.store.wait_for_stream(FALLBACK_POLL_S)
            except RuntimeError:  # the queue stopped
                return
            except Exception:
                logger.warning("stream wake-ups failed; retrying", exc_info=True)
                time.sleep(FALLBACK_POLL_S)
                continue
            if job_ids:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._wake, job_ids)

    def _wake(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            for event in self._streams.get(job_id, ()):
                event.set()


class JobStream:
    """The records of one ``GET /stream/{job_id}`` response."""

    def __init__(
        self,
        queue: QueueFrontEnd,
        hub: StreamHub,
        job_id: str,
        after: int,
        render: Callable[[], RenderFile],
    ) -> None:
        self._queue = queue
        self._hub = hub
        self._job_id = job_id
        self._after = after
        self._render = render
        self._shown: tuple[Any, ...] | None = None

    async def records(self) -> AsyncGenerator[bytes, None]:
        records = self._records()
        try:
            async for record in records:
                yield record
        except (GeneratorExit, asyncio.CancelledError):
            logger.info("stream of job %s closed: the client went away", self._job_id)
            raise
        finally:
            await records.aclose()  # its subscription ends now, not when collected

    async def _records(self) -> AsyncGenerator[bytes, None]:
        with self._hub.subscribe(self._job_id) as changed:
            quiet_since = time.monotonic()
            while True:
                changed.clear()
                job, chunks = await self._read()
                if job is None:
                    return  # expired meanwhile
                for chunk in chunks:
                    yield output_record(chunk.seq, chunk.data)
                more = len(chunks) == READ_BATCH
                if more and job.is_terminal:
                    continue  # every chunk goes out before the terminal snapshot
                snapshot = await self._snapshot(job)
                if snapshot is not None:
                    yield snapshot
                if job.is_terminal:
                    return
                if chunks or snapshot is not None:
                    quiet_since = time.monotonic()
                if not more and not await self._wait(changed, quiet_since):
                    # A comment line alone, no blank line: some clients (httpx-sse)
                    # would dispatch an empty event at a blank line after an id.
                    yield b": keep-alive\n"
                    quiet_since = time.monotonic()

    async def _wait(self, changed: asyncio.Event, quiet_since: float) -> bool:
        """Wait for a wake-up; False when it is time for a keep-alive."""
        keepalive_in = quiet_since + KEEPALIVE_S - time.monotonic()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(changed.wait(), max(0.0, min(FALLBACK_POLL_S, keepalive_in)))
        return time.monotonic() - quiet_since < KEEPALIVE_S

    async def _read(self) -> tuple[Job | None, list[Chunk]]:
        """The job and its next chunks, in one hop to the store's thread pool (none when
        the store reads locally in microseconds)."""
        if self._queue.store.fast_local_reads:
            job, chunks = self._read_now()
        else:
            job, chunks = await self._queue.call(self._read_now)
        # Stored keys that start with "$" are file envelopes or escaped client data
        # (apipod.payload); a text search first, as most chunks have none.
        if any('"$' in c.data for c in chunks):
            chunks = await self._queue.call(self._resolve, chunks)
        return job, chunks

    def _read_now(self) -> tuple[Job | None, list[Chunk]]:
        # The job first, then its chunks: a terminal job has all of its chunks written
        # already, so this read sees every one of them.
        store = self._queue.store
        job = store.get_state(self._job_id, with_result=True)  # never the inputs
        chunks = [] if job is None else store.read_chunks(self._job_id, self._after, READ_BATCH)
        if chunks:
            self._after = chunks[-1].seq
        return job, chunks

    def _resolve(self, chunks: list[Chunk]) -> list[Chunk]:
        render = self._render()  # one inline budget for the chunks read together
        return [_resolve_chunk(chunk, render) for chunk in chunks]

    async def _snapshot(self, job: Job) -> bytes | None:
        shown = (job.status, job.progress, job.message, job.attempts)
        if shown == self._shown:
            return None
        self._shown = shown
        return job_record({**await self._queue.render(job), "attempt": job.attempts})


def _resolve_chunk(chunk: Chunk, render: RenderFile) -> Chunk:
    value = json.loads(chunk.data)
    return Chunk(chunk.seq, chunk.attempt, _ENCODE(decode(value, render)))


def resume_after(last_event_id: str | None) -> int:
    """The chunk number a client last saw (0: none); a malformed one is a 422."""
    if last_event_id is None or last_event_id.strip() == "":
        return 0
    message = "Last-Event-ID must be a chunk number"
    return query_int(last_event_id.strip(), "last-event-id", message, location="header")


def install_stream_route(app: FastAPI, queue: QueueFrontEnd) -> StreamHub:
    """Register ``GET /stream/{job_id}`` on ``app``; the hub that wakes its streams."""
    hub = StreamHub(queue)

    @app.router.get(
        "/stream/{job_id}",
        tags=[JOBS_TAG],
        summary="Server-Sent Events: job snapshots (event: job) and streamed output",
        response_class=StreamingResponse,
    )
    async def stream(
        request: Request,
        job_id: str = Path(pattern=JOB_ID_PATTERN),
        last_event_id: str | None = Header(None),
        resume: str | None = Query(None, alias="last_event_id", description="as Last-Event-ID"),
    ) -> StreamingResponse:
        check_job_id(job_id)
        after = resume_after(last_event_id if last_event_id is not None else resume)
        if await queue.get_job(job_id) is None:
            raise JobNotFound(job_id)
        render = functools.partial(queue.file_renderer, request, "auto")
        return EventStream(JobStream(queue, hub, job_id, after, render).records())

    return hub
