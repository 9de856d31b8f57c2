"""The embedded worker: queue mode's jobs run in the API process itself, in one thread.

Used when the app's lifespan runs outside ``apipod start`` (a ``TestClient``, a plain
``uvicorn service:app``), as the original APIPod did: it runs ``on_worker_start`` and then
the real worker loop (:func:`apipod.worker.process.run_worker`: FIFO claims, progress,
cooperative cancel, streaming, batching) against the real store. What the supervisor does
for worker processes is done here by a small clock thread: a job past its timeout is
marked ``timeout`` (a thread cannot be killed: the function stops at its next progress
report, and its result is dropped), and expired leases are recovered.
It is for tests and quick runs, not for GPU serving: ``apipod start`` runs worker
processes with pinned GPUs that can be killed and replaced.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING

from apipod.config import Config
from apipod.errors import ServiceLoadError
from apipod.store.base import JobStore
from apipod.store.datalock import DataDirLock
from apipod.worker.messages import (
    Busy,
    Idle,
    LoadFailed,
    Ready,
    WorkerMessage,
    WorkerSpec,
    timeout_error,
)
from apipod.worker.process import run_worker

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)

CLOCK_TICK_S = 0.1
WARNING = (
    "queue mode without 'apipod start': jobs run in this API process, one at a time in a "
    "thread (an embedded worker, for tests and quick runs); a job past its timeout is "
    "marked 'timeout' but its thread cannot be stopped. For GPU serving with worker "
    "processes, run 'apipod start <service>'"
)


class EmbeddedWorker:
    """One worker thread in this process, plus the clock that enforces job timeouts."""

    def __init__(self, app: APIPod, store: JobStore, config: Config) -> None:
        self._app = app
        self._store = store  # the API's store: for the clock's writes
        # Recycling replaces a process; a thread has nothing to gain from it.
        self._config = config.replace(max_jobs_per_worker=0, worker_max_rss_mb=0.0)
        host = socket.gethostname()
        worker_id = f"{host}-embedded/{os.getpid()}.{secrets.token_hex(3)}"
        self.spec = WorkerSpec(worker_id, 0, None, "<embedded>", self._config, host)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._load_error: str | None = None
        self._lock = threading.Lock()
        self._deadlines: dict[str, tuple[float | None, float | None]] = {}
        self._thread = threading.Thread(target=self._run, name="apipod-embedded-worker")
        self._thread.daemon = True
        self._clock = threading.Thread(target=self._tick, name="apipod-embedded-clock")
        self._clock.daemon = True
        # SQLite: the data dir's one job runner, as a supervisor is (PostgreSQL is shared
        # by design). Without it a TestClient and an 'apipod start' of the same service
        # file, whose data dir sits beside it, would run each other's jobs.
        self._data_lock = None if config.database_url else DataDirLock(config.data_dir)

    @property
    def worker_id(self) -> str:
        return self.spec.worker_id

    def start(self) -> None:
        """Start the worker thread (it runs ``on_worker_start`` first) and the clock;
        :class:`~apipod.store.datalock.DataDirInUse` when another process runs this
        SQLite data dir's jobs."""
        if self._data_lock is not None:
            self._data_lock.acquire()
        logger.warning(WARNING)
        self._thread.start()
        self._clock.start()

    def wait_ready(self) -> None:
        """Block until ``on_worker_start`` finished; raise :class:`ServiceLoadError` when it
        failed (the app then does not start, as a worker that cannot load stops
        ``apipod start``)."""
        while not self._ready.wait(0.5):
            if not self._thread.is_alive():
                break
        if self._load_error is not None:
            raise ServiceLoadError(f"on_worker_start failed: {self._load_error}")

    def stop(self) -> None:
        """Stop claiming; wait ``shutdown_grace_s`` for the running job, then put it back
        in the queue (its thread, which cannot be stopped, finds the job no longer its
        own) and remove this worker's row."""
        self._stop.set()
        self._thread.join(self._config.shutdown_grace_s)
        if self._thread.is_alive():
            for job_id in self._running():
                logger.warning("job %s did not finish before shutdown; requeued", job_id)
                self._store.requeue(job_id, self.worker_id)
        self._clock.join(2)
        try:
            self._store.remove_worker(self.worker_id)
        except Exception:  # best effort: a stale row is pruned by the next supervisor
            logger.warning("could not remove the embedded worker's row", exc_info=True)
        finally:
            if self._data_lock is not None:
                self._data_lock.release()

    # --- the worker's reports (its MessageSink) ----------------------------------------------
    def send(self, message: WorkerMessage) -> None:
        now = time.monotonic()
        if isinstance(message, Ready):
            self._ready.set()
        elif isinstance(message, LoadFailed):
            self._load_error = message.error
            self._ready.set()
        elif isinstance(message, Busy):
            with self._lock:
                self._deadlines = {
                    job_id: (timeout_s, now + timeout_s if timeout_s else None)
                    for job_id, timeout_s in message.all_jobs
                }
        elif isinstance(message, Idle):
            with self._lock:
                self._deadlines = {}

    def _running(self) -> list[str]:
        with self._lock:
            return list(self._deadlines)

    # --- threads -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            run_worker(self.spec, self, self._stop, self._app)
        except Exception as exc:
            logger.exception("the embedded worker stopped")
            self._load_error = self._load_error or f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def _tick(self) -> None:
        next_sweep = 0.0
        while not self._stop.wait(CLOCK_TICK_S):
            now = time.monotonic()
            try:
                self._time_out_late_jobs(now)
                if now >= next_sweep:
                    next_sweep = now + max(0.5, self._config.lease_s / 3)
                    recovered = self._store.recover_expired_leases()
                    if recovered:
                        logger.warning("recovered job(s) with expired leases: %s", recovered)
            except Exception:  # the store may be briefly unavailable: the next tick retries
                logger.warning("embedded worker clock: store call failed", exc_info=True)

    def _time_out_late_jobs(self, now: float) -> None:
        with self._lock:
            late = [
                (job_id, timeout_s)
                for job_id, (timeout_s, deadline) in self._deadlines.items()
                if deadline is not None and now >= deadline
            ]
            for job_id, _ in late:
                del self._deadlines[job_id]
        for job_id, timeout_s in late:
            if self._store.time_out(job_id, self.worker_id, timeout_error(timeout_s or 0)):
                logger.warning(
                    "job %s exceeded its timeout of %g s: marked timeout; its thread runs "
                    "on until the function's next progress report or its end",
                    job_id,
                    timeout_s,
                )
