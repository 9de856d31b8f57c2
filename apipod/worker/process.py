"""The worker process: import the service, run ``on_worker_start``, then claim and run
jobs until told to stop. Started by the supervisor with the ``spawn`` method, with
``CUDA_VISIBLE_DEVICES`` already set in its environment."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Protocol

import psutil

from apipod.child import crash_logged, enter_child
from apipod.errors import StoreUnavailable
from apipod.logs import job_context
from apipod.store import open_store
from apipod.store.base import JobStore
from apipod.store.records import WorkerInfo, WorkerState
from apipod.store.retry import Outage, RetryingStore, call_with_retry
from apipod.worker.batch import Batcher
from apipod.worker.messages import (
    EXIT_LOAD_FAILED,
    EXIT_OK,
    EXIT_RECYCLE,
    Busy,
    Idle,
    LoadFailed,
    Ready,
    Recycle,
    WorkerMessage,
    WorkerSpec,
)
from apipod.worker.runner import JobRunner

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)

IDLE_POLL_S = 1.0
ROW_REFRESH_S = 5.0
ROW_MIN_INTERVAL_S = 0.2


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of a spawned worker process."""
    # The supervisor decides when workers stop; a terminal's Ctrl-C reaches the whole
    # process group, so workers ignore SIGINT and act on the supervisor's SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    gpu = f"gpu {spec.gpu}" if spec.gpu is not None else "cpu"
    enter_child(
        f"worker {spec.index} ({gpu})", spec.config, "worker", worker=spec.worker_id, gpu=spec.gpu
    )
    with crash_logged(f"worker {spec.worker_id}"):
        code = run_worker(spec, conn, stop)
    sys.exit(code)


class MessageSink(Protocol):
    """Where a worker reports to: its pipe to the supervisor, or the embedded worker's
    own bookkeeping (:mod:`apipod.worker.embedded`)."""

    def send(self, message: WorkerMessage) -> None: ...


def run_worker(
    spec: WorkerSpec, conn: MessageSink, stop: threading.Event, app: APIPod | None = None
) -> int:
    """Open the store and run the claim → run loop until ``stop`` is set; the exit code.
    With ``app`` (already loaded and configured) the service is not imported again."""
    outage = Outage(f"worker {spec.worker_id}")
    config = spec.config
    opened = call_with_retry(
        lambda: open_store(config.resolved_database_url, config.data_dir), outage, stop.is_set
    )
    store = RetryingStore(opened, outage, give_up=stop.is_set)
    worker = Worker(spec, store, conn, stop, app)  # type: ignore[arg-type]
    try:
        return worker.run()
    finally:
        worker.row.stop()
        opened.close()


class WorkerRow:
    """This worker's row in the workers table.

    Changes are written by a daemon thread, coalesced, so the claim → run loop never
    waits on them; the thread also refreshes ``heartbeat_at`` and RSS while idle or busy.
    ``info`` is changed under a lock by both threads: a write that measured the RSS must
    not put back the state it read before a change the main thread made meanwhile (the
    row then showed ``busy`` or ``starting`` for good, and /health no ready worker).
    """

    def __init__(self, spec: WorkerSpec, store: JobStore) -> None:
        self._store = store
        self._process = psutil.Process()
        self._outage = Outage(f"worker {spec.worker_id} row")
        self._stopped = threading.Event()
        self._changed = threading.Event()
        self._info_lock = threading.Lock()
        self.info = WorkerInfo(
            id=spec.worker_id,
            host=spec.host,
            pid=os.getpid(),
            gpu=spec.gpu,
            state=WorkerState.STARTING,
        )
        self._thread = threading.Thread(target=self._refresh, name="worker-row", daemon=True)

    def start(self) -> None:
        self.write()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()
        self._thread.join(timeout=2)
        self.write()

    def update(self, **changes: object) -> None:
        with self._info_lock:
            self.info = replace(self.info, **changes)
        self._changed.set()

    def rss_bytes(self) -> int:
        return self._process.memory_info().rss

    def write(self) -> None:
        rss = self.rss_bytes()
        with self._info_lock:
            self.info = info = replace(self.info, rss_bytes=rss)
        try:
            self._store.upsert_worker(info)
        except StoreUnavailable as exc:
            self._outage.failed(exc)  # one line per outage; the next refresh retries
            return
        except Exception:  # a row refused for good must not end the refresh thread
            logger.warning("worker %s: could not update its row", self.info.id, exc_info=True)
            return
        self._outage.succeeded()

    def _refresh(self) -> None:
        while not self._stopped.is_set():
            self._changed.wait(ROW_REFRESH_S)
            self._changed.clear()
            self.write()
            self._stopped.wait(ROW_MIN_INTERVAL_S)


class Worker:
    """The claim → run → report loop of one worker process."""

    def __init__(
        self,
        spec: WorkerSpec,
        store: JobStore,
        conn: MessageSink,
        stop: threading.Event,
        app: APIPod | None = None,
    ):
        self.spec = spec
        self.app = app
        self.store = store
        self.conn = conn
        self.stop = stop
        # The row's writes are best effort (refreshed every few seconds): they use the
        # store without retries, so a shutdown never waits on an unavailable store.
        self.row = WorkerRow(spec, getattr(store, "inner", store))
        self.jobs_done = 0

    def run(self) -> int:
        self.row.start()
        logger.info(
            "worker %s started: pid %d, GPU %s (CUDA_VISIBLE_DEVICES=%r)",
            self.spec.worker_id,
            os.getpid(),
            self.spec.gpu or "none",
            os.environ.get("CUDA_VISIBLE_DEVICES"),
        )
        app = self._load()
        if app is None:
            return EXIT_LOAD_FAILED
        self.row.update(state=WorkerState.READY)
        self.conn.send(Ready())
        return self._loop(app)

    def _load(self) -> APIPod | None:
        from apipod.loader import load_app

        try:
            app = self.app
            if app is None:
                app = load_app(self.spec.target)
                app.apply_config(self.spec.config)
            _run_hooks(app)
            return app
        except BaseException as exc:
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            trace = "".join(traceback.format_exception(exc))
            logger.error("worker %s failed to load: %s\n%s", self.spec.worker_id, error, trace)
            self.row.update(state=WorkerState.FAILED, error=error)
            self.conn.send(LoadFailed(error, trace))
            return None

    def _loop(self, app: APIPod) -> int:
        worker_id, lease_s = self.spec.worker_id, self.spec.config.lease_s
        runner = JobRunner(app, self.store, worker_id, lease_s)
        try:
            return self._claim_and_run(app, runner)
        finally:
            runner.close()

    def _claim_and_run(self, app: APIPod, runner: JobRunner) -> int:
        worker_id, lease_s = self.spec.worker_id, self.spec.config.lease_s
        endpoints = app.queued_routes()
        batcher = None
        if Batcher.wanted(app):
            batcher = Batcher(app, self.store, runner, worker_id, lease_s, self.stop)
        while not self.stop.is_set():
            try:
                if batcher is not None:
                    jobs = batcher.claim()
                else:
                    jobs = [job] if (job := self.store.claim(worker_id, lease_s, endpoints)) else []
                if not jobs:
                    self.store.wait_for_work(IDLE_POLL_S)
                    continue
            except StoreUnavailable:
                break  # told to stop while the store was unavailable
            job = jobs[0]
            # A batch's records name its batch; each of its jobs is named where it settles.
            with job_context(job.id if len(jobs) == 1 else None, job.endpoint, job.batch_id):
                logger.info(
                    "worker %s runs job %s (%s, attempt %d)%s",
                    worker_id,
                    job.id,
                    job.endpoint,
                    job.attempts,
                    f" and {len(jobs) - 1} more in batch {job.batch_id}" if len(jobs) > 1 else "",
                )
                more = tuple((other.id, other.timeout_s) for other in jobs[1:])
                self.conn.send(Busy(job.id, job.timeout_s, more))
                self.row.update(
                    state=WorkerState.BUSY, current_job=job.id, current_batch=job.batch_id
                )
                if batcher is not None:
                    batcher.run(jobs)
                else:
                    runner.run(job)
            self.jobs_done += len(jobs)
            self.row.update(
                state=WorkerState.READY,
                current_job=None,
                current_batch=None,
                jobs_done=self.jobs_done,
            )
            self.conn.send(Idle(job.id, self.jobs_done))
            reason = self._recycle_reason()
            if reason:
                logger.info("worker %s recycles: %s", self.spec.worker_id, reason)
                self.conn.send(Recycle(reason))
                return EXIT_RECYCLE
        self.row.update(state=WorkerState.STOPPING)
        return EXIT_OK

    def _recycle_reason(self) -> str | None:
        config = self.spec.config
        if config.max_jobs_per_worker and self.jobs_done >= config.max_jobs_per_worker:
            return f"ran {self.jobs_done} jobs (max_jobs_per_worker)"
        rss_mb = self.row.rss_bytes() / 1e6 if config.worker_max_rss_mb else 0.0
        if config.worker_max_rss_mb and rss_mb > config.worker_max_rss_mb:
            return f"RSS {rss_mb:.0f} MB over worker_max_rss_mb {config.worker_max_rss_mb:g}"
        return None


def _run_hooks(app: APIPod) -> None:
    for hook in app.worker_start_hooks:
        logger.info("running on_worker_start hook %s", hook.__name__)
        if inspect.iscoroutinefunction(hook):
            asyncio.run(hook())
        else:
            hook()
