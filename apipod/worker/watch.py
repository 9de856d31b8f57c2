"""The side work of a running job: lease heartbeats, throttled progress writes, and
noticing that the job was cancelled (or is otherwise no longer ours).

One daemon thread per process serves every open :class:`JobWatch` (a worker has one at a
time): starting a thread per job cost more than the rest of a no-op job's overhead.
"""

from __future__ import annotations

import logging
import threading
import time

from apipod.errors import JobCancelled
from apipod.store.base import JobStore
from apipod.store.records import JobStatus

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.05
STATUS_CHECK_S = 0.25


class JobWatch:
    """Watches one claimed job while the job runs in the main thread.

    ``report`` (the ``JobProgress`` sink) only records the latest value; the watch
    thread writes it at most every ``PROGRESS_INTERVAL_S`` (bursts coalesce), and
    ``flush`` writes what is left before the result. Once the store says the job is no
    longer ours, the next ``report`` raises :class:`JobCancelled` inside the job.
    """

    def __init__(self, store: JobStore, job_id: str, worker_id: str, lease_s: float) -> None:
        self._store = store
        self._job_id = job_id
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: tuple[float | None, str | None] | None = None
        self._closed = False
        self.lost = threading.Event()
        now = time.monotonic()
        self._next_heartbeat = now + lease_s / 3
        self._next_status_check = now + STATUS_CHECK_S

    def __enter__(self) -> JobWatch:
        _WatchThread.shared().add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _WatchThread.shared().remove(self)
        with self._write_lock:  # waits for a write in flight; none starts afterwards
            self._closed = True

    def report(self, progress: float | None, message: str | None) -> None:
        if self.lost.is_set():
            raise JobCancelled(f"job {self._job_id} was cancelled")
        with self._lock:
            self._pending = (progress, message)
        _WatchThread.shared().wake()

    def flush(self) -> None:
        """Write the last reported progress now (before the result is stored)."""
        self._write_pending()

    def tick(self, now: float) -> None:
        """One round of the watch thread's work for this job."""
        self._write_pending()
        if now >= self._next_status_check:
            self._next_status_check = now + STATUS_CHECK_S
            self._check_still_ours()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._lease_s / 3
            self._heartbeat()

    def _write_pending(self) -> None:
        with self._write_lock:  # keeps progress writes in order across both threads
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is None or self.lost.is_set() or self._closed:
                return
            if not self._store.set_progress(self._job_id, self._worker_id, *pending):
                self._mark_lost("progress refused")

    def _check_still_ours(self) -> None:
        if self._closed:
            return
        job = self._store.get_state(self._job_id)
        if job is None or job.worker != self._worker_id or job.status is JobStatus.CANCELLED:
            self._mark_lost(f"status is {job.status if job else 'gone'}")
        elif job.is_terminal or job.status is JobStatus.QUEUED:
            # Ended by this worker a moment ago (the result is being written), or settled
            # by the supervisor (time-out): not worth a line at INFO.
            self._mark_lost(f"status is {job.status}", level=logging.DEBUG)

    def _heartbeat(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            if not self._store.heartbeat(self._job_id, self._worker_id, self._lease_s):
                self._mark_lost("lease lost")

    def _mark_lost(self, why: str, level: int = logging.INFO) -> None:
        if not self.lost.is_set():
            logger.log(
                level,
                "job %s is no longer ours (%s); it stops at its next report",
                self._job_id,
                why,
                extra={"job_id": self._job_id},
            )
            self.lost.set()


class _WatchThread:
    """The one daemon thread that ticks every open JobWatch of this process."""

    _instance: _WatchThread | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._watches: set[JobWatch] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        thread = threading.Thread(target=self._run, name="apipod-job-watch", daemon=True)
        thread.start()

    @classmethod
    def shared(cls) -> _WatchThread:
        if cls._instance is None:
            with cls._instance_lock:
                if cls._instance is None:
                    cls._instance = cls()
        return cls._instance

    def add(self, watch: JobWatch) -> None:
        with self._lock:
            self._watches.add(watch)

    def remove(self, watch: JobWatch) -> None:
        with self._lock:
            self._watches.discard(watch)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(STATUS_CHECK_S)
            self._wake.clear()
            with self._lock:
                watches = list(self._watches)
            now = time.monotonic()
            for watch in watches:
                try:
                    watch.tick(now)
                except Exception:
                    logger.exception("job watch error (will retry)")
            time.sleep(PROGRESS_INTERVAL_S)  # throttle: reports in between coalesce
