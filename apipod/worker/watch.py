"""The side thread of a running job: lease heartbeats, throttled progress writes, and
noticing that the job was cancelled (or is otherwise no longer ours)."""

from __future__ import annotations

import logging
import threading
import time

from apipod.errors import JobCancelled
from apipod.store.base import JobStore

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05
STATUS_CHECK_S = 0.25


class JobWatch:
    """Watches one claimed job from a daemon thread while the job runs in the main one.

    ``report`` (the ``JobProgress`` sink) only records the latest value; the thread
    writes it at most every ``PROGRESS_INTERVAL_S`` (bursts coalesce), and ``flush``
    writes what is left before the result. Once the store says the job is no longer
    ours, the next ``report`` raises :class:`JobCancelled` inside the job.
    """

    def __init__(self, store: JobStore, job_id: str, worker_id: str, lease_s: float) -> None:
        self._store = store
        self._job_id = job_id
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: tuple[float | None, str | None] | None = None
        self._wake = threading.Event()
        self._done = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{job_id}", daemon=True)

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def report(self, progress: float | None, message: str | None) -> None:
        if self.lost.is_set():
            raise JobCancelled(f"job {self._job_id} was cancelled")
        with self._lock:
            self._pending = (progress, message)
        self._wake.set()

    def flush(self) -> None:
        """Write the last reported progress now (before the result is stored)."""
        self._write_pending()

    def _write_pending(self) -> None:
        with self._write_lock:  # keeps progress writes in order across both threads
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is None or self.lost.is_set():
                return
            if not self._store.set_progress(self._job_id, self._worker_id, *pending):
                self._mark_lost("progress refused")

    def _run(self) -> None:
        next_heartbeat = time.monotonic() + self._lease_s / 3
        next_status_check = time.monotonic() + STATUS_CHECK_S
        while not self._done.is_set():
            self._wake.wait(STATUS_CHECK_S)
            self._wake.clear()
            try:
                self._write_pending()
                now = time.monotonic()
                if now >= next_status_check:
                    next_status_check = now + STATUS_CHECK_S
                    self._check_still_ours()
                if now >= next_heartbeat:
                    next_heartbeat = now + self._lease_s / 3
                    self._heartbeat()
            except Exception:
                logger.exception("job %s: watch thread error (will retry)", self._job_id)
            self._done.wait(PROGRESS_INTERVAL_S)  # throttle: bursts in between coalesce

    def _check_still_ours(self) -> None:
        job = self._store.get(self._job_id)
        if job is None or job.is_terminal or job.worker != self._worker_id:
            self._mark_lost(f"status is {job.status if job else 'gone'}")

    def _heartbeat(self) -> None:
        if not self._store.heartbeat(self._job_id, self._worker_id, self._lease_s):
            self._mark_lost("lease lost")

    def _mark_lost(self, why: str) -> None:
        if not self.lost.is_set():
            logger.info(
                "job %s is no longer ours (%s); it stops at its next report", self._job_id, why
            )
            self.lost.set()
