"""Queue mode in the API process: the store handle, long-poll waiting, TTL cleanup, and
the job routes (``/status``, ``/cancel``, ``/jobs``)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Path, Query
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from apipod.app import joblist
from apipod.app.budget import InflightBudget
from apipod.app.dashboard import install_dashboard
from apipod.app.jobresult import file_url, inline_mode, job_result
from apipod.app.metrics import install_metrics
from apipod.app.openapi import JOBS_TAG, OPERATIONS_TAG
from apipod.config import Config
from apipod.endpoint import InputValidationError
from apipod.errors import JobNotFound, StorageFull
from apipod.payload import FileRenderer, has_files, has_streamed, stream_json
from apipod.store import open_store
from apipod.store.base import JobStore
from apipod.store.records import Job

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_WAIT_S = 60.0
_FALLBACK_POLL_S = 0.5
FALLBACK_READS_PER_S = 400
DISK_CHECK_S = 10.0
ORPHAN_SWEEP_S = 600.0
#: A submit stores its media, then its row: younger files without a row are in progress.
ORPHAN_GRACE_S = 900.0
JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_JOB_ID = re.compile(JOB_ID_PATTERN)
WAIT_DOC = "long-poll: answer once the job ended, or after this many seconds (at most 60)"
INLINE_DOC = (
    "how result files appear: auto (base64 up to inline_result_max_mb per answer, then"
    " the file's URL),"
    " all (base64 whatever the size, streamed), none (always the URL)"
)
INLINE_PATTERN = "^(auto|all|none)$"


class QueueFrontEnd:
    """Owns the API process's store connection and the waiters for job results."""

    def __init__(self, config: Config) -> None:
        self.config = config
        #: The API's in-flight memory budget (set by the app); inline results take from it.
        self.inflight: InflightBudget | None = None
        self._store: JobStore | None = None
        self._stop = threading.Event()
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._waiting = 0
        self._stored_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._watcher: threading.Thread | None = None
        # Store calls go to a small pool of our own: a hop through anyio's pool (capacity
        # limiter, backend lookup) cost more than a SQLite write itself under load.
        self._pool: ThreadPoolExecutor | None = None

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call on the store's thread pool."""
        if self._pool is None:
            raise RuntimeError("the queue is not started (the app's lifespan did not run)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args))

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise RuntimeError("the queue is not started (the app's lifespan did not run)")
        return self._store

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="apipod-store")
        self._store = await self.call(self._open_store)
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._watcher = threading.Thread(
            target=self._watch_results, name="apipod-results", daemon=True
        )
        self._watcher.start()
        self._tasks.append(asyncio.create_task(self._sweep_expired()))
        self._tasks.append(asyncio.create_task(self._watch_disk()))

    def _open_store(self) -> JobStore:
        store = open_store(self.config.resolved_database_url, self.config.data_dir)
        applied = store.migrate()
        if applied:
            logger.info("applied migrations %s", ", ".join(applied))
        return store

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        if self._watcher is not None:
            await self.call(self._watcher.join, 2.0)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._store is not None:
            self._store.close()
            self._store = None

    # --- waiting for results ---------------------------------------------------------------
    def _watch_results(self) -> None:
        # One thread blocks on the store's result wake-up, which names the jobs that
        # ended, and wakes exactly the requests waiting for those jobs.
        while not self._stop.is_set():
            try:
                ended = self.store.wait_for_results(_FALLBACK_POLL_S)
            except Exception:  # the store went away during shutdown
                time.sleep(_FALLBACK_POLL_S)
                continue
            if ended and self._loop is not None and not self._stop.is_set():
                self._loop.call_soon_threadsafe(self._wake_waiters, ended)

    def _wake_waiters(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            for event in self._waiters.get(job_id, ()):
                event.set()

    async def get_job(self, job_id: str) -> Job | None:
        """The job as a status read shows it: with its result, never its inputs."""
        # A local SQLite read takes microseconds: cheaper than a hop to a thread.
        if self.store.fast_local_reads:
            return self.store.get_state(job_id, with_result=True)
        return await self.call(functools.partial(self.store.get_state, job_id, with_result=True))

    async def wait_terminal(
        self, job_id: str, timeout: float, receive: Receive | None = None
    ) -> Job | None:
        """The job once terminal, or as it is after ``timeout`` seconds, or as it is when
        the client went away (``receive`` said ``http.disconnect``). Past ``max_waiters``
        long-polls in this process, the job as it is now (a long-poll may always return
        early; the client polls again)."""
        job = await self.get_job(job_id)
        if job is None or job.is_terminal or self._waiting >= self.config.max_waiters:
            return job
        deadline = time.monotonic() + min(timeout, MAX_WAIT_S)
        event = asyncio.Event()
        gone = asyncio.create_task(until_disconnect(receive, event.set)) if receive else None
        waiters = self._waiters.setdefault(job_id, set())
        waiters.add(event)
        self._waiting += 1
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return job
                # The fallback poll covers wake-ups that were lost or went elsewhere.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, self._fallback_s()))
                event.clear()
                if gone is not None and gone.done():
                    return job  # nobody reads the answer: stop at once
                job = await self.get_job(job_id)
                if job is None or job.is_terminal:
                    return job
        finally:
            self._waiting -= 1
            if gone is not None:
                gone.cancel()
            waiters.discard(event)
            if not waiters:
                self._waiters.pop(job_id, None)

    def _fallback_s(self) -> float:
        # Many waiters poll less often each, so the fallback reads stay near
        # FALLBACK_READS_PER_S in all, however many clients wait.
        return max(_FALLBACK_POLL_S, self._waiting / FALLBACK_READS_PER_S)

    # --- TTL -------------------------------------------------------------------------------
    async def _sweep_expired(self) -> None:
        interval = max(1.0, min(60.0, self.config.job_ttl / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._expire_all()
            except Exception:
                logger.exception("TTL cleanup failed; retrying in %.0f s", interval)

    async def _expire_all(self) -> None:
        # Small batches, each its own short transaction, so submits never wait long.
        while True:
            deleted = await self.call(self.store.expire, self.config.job_ttl, 200)
            if deleted:
                logger.info("expired %d jobs older than %.0f s", deleted, self.config.job_ttl)
            if deleted < 200:
                return
            await asyncio.sleep(0)

    # --- disk ----------------------------------------------------------------------------
    def check_room(self) -> None:
        """Raise StorageFull (507) once the store holds ``max_stored_mb``."""
        limit = self.config.max_stored_mb * 1e6
        if self._stored_bytes >= limit:
            raise StorageFull(
                f"the job store is full ({self._stored_bytes / 1e6:.0f} MB of "
                f"max_stored_mb={self.config.max_stored_mb:g}); retry once jobs expire"
            )

    def stored(self, count: int) -> None:
        """Count a submit's bytes until the next measurement."""
        self._stored_bytes += count

    async def _watch_disk(self) -> None:
        # Media of jobs without a row (a killed API) are swept at start and periodically;
        # the stored bytes are measured every DISK_CHECK_S in between.
        next_sweep = 0.0
        while True:
            try:
                if time.monotonic() >= next_sweep:
                    swept = await self.call(self.store.sweep_orphan_files, ORPHAN_GRACE_S)
                    if swept:
                        logger.info("deleted the media of %d jobs that have no row", swept)
                    next_sweep = time.monotonic() + ORPHAN_SWEEP_S
                self._stored_bytes = await self.call(self.store.stored_bytes)
            except Exception:
                logger.exception("disk check failed; retrying in %.0f s", DISK_CHECK_S)
            await asyncio.sleep(DISK_CHECK_S)

    # --- reading ---------------------------------------------------------------------------
    async def status_response(
        self, job_id: str, wait: float | None, request: Request | None = None
    ) -> Response:
        check_job_id(job_id)
        if wait:
            receive = request.receive if request is not None else None
            job = await self.wait_terminal(job_id, wait, receive)
        else:
            job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return await self.respond(job, request)

    async def status_handler(self, request: Request) -> Response:
        """``GET /status/{job_id}?wait=S`` for the fast path (see apipod.app.fastpath)."""
        job_id = request.url.path[len("/status/") :]
        return await self.status_response(job_id, wait_seconds(request), request)

    # --- rendering -------------------------------------------------------------------------
    async def respond(self, job: Job, request: Request | None = None) -> Response:
        """The JobResult answer; streamed when it carries files as base64 (``?inline=all``).
        Inline files hold memory from the in-flight budget until the answer is sent, so
        many readers of large results at once get URLs rather than exhaust memory."""
        memory = self.inflight.open() if self.inflight is not None else None
        try:
            document = await self.render(job, request, memory.take if memory else None)
        except BaseException:
            if memory is not None:
                memory.close()
            raise
        if has_streamed(document.get("result")):
            response: Response = StreamingResponse(
                stream_json(document), media_type="application/json"
            )
        else:
            response = JSONResponse(document)
        if memory is not None:
            response.background = BackgroundTask(memory.close)  # runs once it was sent
        return response

    async def render(
        self,
        job: Job,
        request: Request | None = None,
        reserve: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        mode = inline_mode(request)  # checked even when there is no file to apply it to
        names = None
        if not job.inputs and job.is_terminal:  # a status read: its files from the store
            names = await self._file_names(job.id)
        if not has_files(job.result):
            return job_result(job, None, names)
        render = self.file_renderer(request, mode, reserve)
        return await self.call(job_result, job, render, names)

    async def _file_names(self, job_id: str) -> list[str]:
        if self.store.fast_local_reads:  # a directory listing, like the SQLite read itself
            files = self.store.list_files(job_id)
        else:
            files = await self.call(self.store.list_files, job_id)
        return [f.name for f in files]

    def file_renderer(
        self,
        request: Request | None,
        mode: str,
        reserve: Callable[[int], None] | None = None,
    ) -> FileRenderer:
        """How stored result files appear in answers to ``request`` (see FileRenderer)."""
        # The request's host passed the allowed_hosts check (apipod.app.hosts).
        base_url = self.config.public_url or (str(request.base_url) if request else "")
        return FileRenderer(
            store=self.store,
            mode=mode,
            inline_max_bytes=int(self.config.inline_result_max_mb * 1_000_000),
            url_of=file_url(base_url, self.config.api_key, self.config.job_ttl),
            reserve=reserve,
        )

    def summary(self, job: Job) -> dict[str, Any]:
        """The JobResult without ``result`` (history lists stay small; media stay put)."""
        return job_result(replace(job, result=None))


def wait_seconds(request: Request) -> float:
    """The ``wait`` query parameter: seconds >= 0, capped at ``MAX_WAIT_S``; 0 if absent."""
    text = request.query_params.get("wait")
    if not text:
        return 0.0
    try:  # float() alone takes other scripts' digits ('٣' is 3.0): ASCII only
        wait = float(text) if text.isascii() else -1.0
    except ValueError:
        wait = -1.0
    if not 0 <= wait < float("inf"):
        error = {"type": "float_parsing", "loc": ["query", "wait"], "input": text}
        raise InputValidationError([{**error, "msg": "wait must be a number of seconds >= 0"}])
    return min(wait, MAX_WAIT_S)


def check_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        message = "malformed job id (expected 1-64 letters, digits, '-' or '_')"
        error = {"type": "string_pattern_mismatch", "loc": ["path", "job_id"], "msg": message}
        raise InputValidationError([{**error, "input": job_id[:100]}])
    return job_id


def install_job_routes(app: FastAPI, queue: QueueFrontEnd) -> None:
    """Register ``/status``, ``/cancel``, ``/retry``, ``/jobs``, ``/metrics`` and
    ``/dashboard`` on ``app``."""
    install_metrics(app, queue)
    install_dashboard(app, queue)
    read_status = queue.status_response

    @app.router.get("/status/{job_id}", tags=[JOBS_TAG], summary="Status and result of a job")
    async def get_status(
        request: Request,
        job_id: str = Path(pattern=JOB_ID_PATTERN),
        wait: float | None = Query(None, ge=0, description=WAIT_DOC),
        inline: str = Query("auto", pattern=INLINE_PATTERN, description=INLINE_DOC),
    ) -> Response:
        return await read_status(job_id, wait, request)

    @app.router.post("/status", tags=[JOBS_TAG], summary="Status and result of a job")
    async def post_status(
        request: Request,
        job_id: str = Query(pattern=JOB_ID_PATTERN),
        wait: float | None = Query(None, ge=0, description=WAIT_DOC),
        inline: str = Query("auto", pattern=INLINE_PATTERN, description=INLINE_DOC),
    ) -> Response:
        await request.body()  # so that receive() next reports only the disconnect
        return await read_status(job_id, wait, request)

    @app.router.post("/cancel/{job_id}", tags=[JOBS_TAG], summary="Cancel a queued or running job")
    async def cancel(request: Request, job_id: str = Path(pattern=JOB_ID_PATTERN)) -> Response:
        check_job_id(job_id)
        job = await queue.call(queue.store.cancel, job_id)
        if job is None:
            raise JobNotFound(job_id)
        logger.info(
            "job %s cancelled by client (now %s)", job_id, job.status, extra={"job_id": job_id}
        )
        return await queue.respond(job, request)

    @app.router.post(
        "/retry/{job_id}",
        tags=[OPERATIONS_TAG],
        summary="Queue a failed, timed-out or cancelled job again, as a new attempt",
    )
    async def retry(job_id: str = Path(pattern=JOB_ID_PATTERN)) -> JSONResponse:
        job = await queue.call(queue.store.retry, check_job_id(job_id))
        if job is None:
            now = await queue.call(queue.store.get_state, job_id)
            raise JobNotFound(job_id) if now is None else joblist.not_retryable(now)
        logger.info("job %s queued again by an operator", job_id, extra={"job_id": job_id})
        return JSONResponse(queue.summary(job))

    @app.router.get(
        "/jobs",
        tags=[OPERATIONS_TAG],
        summary="Job history, newest first (without results: read those from /status/{id})",
    )
    async def list_jobs(
        status: Annotated[list[str] | None, Query(description="queued, processing, ...")] = None,
        endpoint: Annotated[
            list[str] | None, Query(description="e.g. /generate or generate")
        ] = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None, description="next_cursor of the previous page"),
    ) -> JSONResponse:
        filters = (joblist.parse_statuses(status or []), joblist.parse_endpoints(endpoint or []))
        before = joblist.parse_cursor(cursor)
        jobs, positions = await queue.call(joblist.job_page, queue.store, *filters, limit, before)
        return JSONResponse(joblist.page_body(queue, jobs, positions, limit))


async def until_disconnect(receive: Receive, gone: Callable[[], object]) -> None:
    """Return (and call ``gone``) once the client has closed its connection. The request
    body was read before, so the server sends nothing else but the disconnect."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone()
