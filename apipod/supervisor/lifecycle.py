"""One worker slot's lifecycle: the single owner of everything known about one worker.

A :class:`WorkerSlot` is a small state machine. The supervisor feeds it events (a message
from the worker, the worker's exit, the clock, the job's row) and gets back *decisions*
(kill the process, write something to the store, halt the service), which the supervisor
applies. Nothing here talks to a process or the store, so every rule is in one place.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from apipod.store.records import Job, WorkerInfo, WorkerState
from apipod.supervisor.children import WorkerProcess, backoff_s
from apipod.worker.messages import (
    EXIT_LOAD_FAILED,
    EXIT_OK,
    EXIT_RECYCLE,
    Busy,
    Idle,
    LoadFailed,
    Ready,
    Recycle,
    timeout_error,
)

logger = logging.getLogger(__name__)

#: Failed ``on_worker_start`` runs in a row after which a slot stops retrying.
MAX_LOAD_FAILURES = 5


class Phase(str, enum.Enum):
    EMPTY = "empty"  # no process; one starts at ``next_start_at``
    STARTING = "starting"  # running on_worker_start
    IDLE = "idle"  # ready, claiming
    BUSY = "busy"  # running ``job_id``
    GIVEN_UP = "given up"  # on_worker_start failed MAX_LOAD_FAILURES times in a row


# --- decisions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kill:
    """Kill the slot's process now (SIGKILL)."""

    why: str


@dataclass(frozen=True)
class StoreCall:
    """Call ``store.<method>(*args)``; must happen, so the supervisor retries it while the
    store is unavailable, in order. ``done`` gets the result (for a log line)."""

    method: str
    args: tuple[Any, ...]
    done: Any = None  # Callable[[Any], None] | None


Decision = Kill | StoreCall


@dataclass(frozen=True)
class RunningJob:
    """A job the slot's worker runs (alone, or as one job of a batch)."""

    timeout_s: float | None
    deadline: float | None


@dataclass
class WorkerSlot:
    """One of ``max_workers`` places, pinned to ``gpu``, and the worker that fills it."""

    index: int
    gpu: str | None
    phase: Phase = Phase.EMPTY
    worker: WorkerProcess | None = None
    #: The jobs the worker runs now, in queue order: one, or the jobs of a batch.
    jobs: dict[str, RunningJob] = field(default_factory=dict)
    lost_since: float | None = None
    load_error: str | None = None
    load_traceback: str | None = None
    recycling: bool = False
    load_failures: int = 0
    crashes: int = 0
    next_start_at: float = 0.0
    failed_worker_id: str | None = None

    # --- queries -------------------------------------------------------------------------
    @property
    def job_id(self) -> str | None:
        """The (first) job the worker runs; None when idle."""
        return next(iter(self.jobs), None)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def due_to_start(self, now: float) -> bool:
        return self.phase is Phase.EMPTY and now >= self.next_start_at

    @property
    def retrying_start(self) -> bool:
        """The last start failed and another is coming (health reports it)."""
        return self.load_failures > 0 and self.phase is not Phase.GIVEN_UP

    # --- events ----------------------------------------------------------------------------
    def started(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.phase = Phase.STARTING
        self.recycling = False
        self.load_error = self.load_traceback = None
        self._clear_job()

    def on_message(self, message: object, now: float) -> list[Decision]:
        assert self.worker is not None
        if isinstance(message, Ready):
            self.phase = Phase.IDLE
            self.load_failures = 0
            logger.info("worker %s (pid %s) is ready", self.worker.worker_id, self.worker.pid)
            if self.failed_worker_id:  # the slot works again: its old failure is history
                failed, self.failed_worker_id = self.failed_worker_id, None
                return [StoreCall("remove_worker", (failed,))]
        elif isinstance(message, Busy):
            self.phase = Phase.BUSY
            self.jobs = {
                job_id: RunningJob(timeout_s, now + timeout_s if timeout_s else None)
                for job_id, timeout_s in message.all_jobs
            }
            self.lost_since = None
        elif isinstance(message, Idle):
            self.phase = Phase.IDLE
            self._clear_job()
            self.crashes = 0
        elif isinstance(message, LoadFailed):
            self.load_error, self.load_traceback = message.error, message.traceback
        elif isinstance(message, Recycle):
            self.recycling = True
        return []

    def on_exit(self, exitcode: int | None, now: float) -> list[Decision]:
        """The process is gone (reaped); decide about its job, its row and the restart."""
        worker = self.worker
        assert worker is not None
        decisions: list[Decision] = []
        error = f"worker crashed (exit code {exitcode})"
        for job_id in self.jobs:  # each job of a batch is retried (or failed) on its own
            done = _log_release(job_id, error)
            decisions.append(StoreCall("release", (job_id, worker.worker_id, error), done))
        starting = self.phase is Phase.STARTING
        self.worker = None
        self.phase = Phase.EMPTY
        self._clear_job()
        if exitcode == EXIT_LOAD_FAILED or (starting and self.load_error):
            return decisions + self._load_failed(worker, exitcode, now)
        decisions.append(StoreCall("remove_worker", (worker.worker_id,)))
        if exitcode in (EXIT_OK, EXIT_RECYCLE) or self.recycling:
            logger.info(
                "worker %s (pid %s) exited (code %s)", worker.worker_id, worker.pid, exitcode
            )
            self.next_start_at = now
            return decisions
        self.crashes += 1
        delay = backoff_s(self.crashes)
        self.next_start_at = now + delay
        logger.error(
            "worker %s (pid %s) died with exit code %s; respawning in %.1f s",
            worker.worker_id,
            worker.pid,
            exitcode,
            delay,
        )
        return decisions

    def _load_failed(
        self, worker: WorkerProcess, exitcode: int | None, now: float
    ) -> list[Decision]:
        self.load_failures += 1
        decisions: list[Decision] = []
        if self.failed_worker_id:
            decisions.append(StoreCall("remove_worker", (self.failed_worker_id,)))
        self.failed_worker_id = worker.worker_id
        error = self.load_error or f"exited with code {exitcode} while starting"
        self.load_error = error
        decisions.append(StoreCall("upsert_worker", (self._failed_row(worker, error),)))
        if self.load_failures >= MAX_LOAD_FAILURES:
            self.phase = Phase.GIVEN_UP
            logger.error(
                "worker slot %d: on_worker_start failed %d times in a row (%s); not restarting it",
                self.index,
                self.load_failures,
                error,
            )
            return decisions
        delay = backoff_s(self.load_failures, base=1.0, cap=60.0)
        self.next_start_at = now + delay
        logger.error(
            "worker %s failed to start (%s); retrying in %.0f s", worker.worker_id, error, delay
        )
        return decisions

    def check_clock(self, now: float, start_timeout_s: float) -> list[Decision]:
        """Start-up and job deadlines."""
        worker = self.worker
        if worker is None:
            return []
        if self.phase is Phase.STARTING and now - worker.started_at > start_timeout_s:
            self.load_error = f"on_worker_start did not finish within {start_timeout_s:g} s"
            logger.error("worker %s: %s; killing it", worker.worker_id, self.load_error)
            return [Kill(self.load_error)]
        late = [job_id for job_id, job in self.jobs.items() if job.deadline and now > job.deadline]
        if not late:
            return []
        killing = len(late) == len(self.jobs)  # else a batch goes on for its other jobs
        outcome = "worker killed" if killing else "its batch goes on"
        decisions: list[Decision] = []
        for job_id in late:  # the time-out settles the job: no release
            error = timeout_error(self.jobs.pop(job_id).timeout_s or 0)
            done = _log_if(f"job {job_id} timed out on worker {worker.worker_id}; {outcome}")
            decisions.append(StoreCall("time_out", (job_id, worker.worker_id, error), done))
        if not killing:
            return decisions
        self.recycling = True  # killed on purpose: replaced at once, not backed off
        return [Kill(error), *decisions]

    def check_jobs(self, rows: Sequence[Job | None], now: float, grace_s: float) -> list[Decision]:
        """The rows of the slot's jobs, as just read: a worker still running when it owns
        none of them any more (cancelled, taken over after its lease) is killed after
        ``grace_s``. A batch with one job still owned runs on (the others' results are
        dropped by the store)."""
        worker = self.worker
        if worker is None or self.job_id is None:
            return []
        owned = any(
            job is not None and not job.is_terminal and job.worker == worker.worker_id
            for job in rows
        )
        if owned:
            self.lost_since = None
            return []
        if self.lost_since is None:
            self.lost_since = now
            return []
        if now - self.lost_since <= grace_s:
            return []
        logger.warning(
            "worker %s still runs job %s (now %s) after %.0f s grace; killing it",
            worker.worker_id,
            ", ".join(self.jobs),
            ", ".join(str(job.status) if job else "gone" for job in rows),
            grace_s,
        )
        self._clear_job()
        self.recycling = True
        return [Kill("job no longer owned")]

    def recycle(self) -> None:
        """SIGHUP: the worker is replaced at once when it exits, not backed off."""
        self.recycling = True

    def at_shutdown(self) -> list[Decision]:
        """The process was stopped (or killed) for the shutdown of the whole service."""
        worker = self.worker
        if worker is None:
            return []
        decisions: list[Decision] = []
        for job_id in self.jobs:
            done = _log_if(f"job {job_id} requeued at shutdown")
            decisions.append(StoreCall("requeue", (job_id, worker.worker_id), done))
        decisions.append(StoreCall("remove_worker", (worker.worker_id,)))
        self.worker = None
        self.phase = Phase.EMPTY
        self._clear_job()
        return decisions

    # --- helpers -----------------------------------------------------------------------------
    def _clear_job(self) -> None:
        self.jobs = {}
        self.lost_since = None

    def _failed_row(self, worker: WorkerProcess, error: str) -> WorkerInfo:
        return WorkerInfo(
            id=worker.worker_id,
            host=worker.spec.host,
            pid=worker.pid or 0,
            gpu=self.gpu,
            state=WorkerState.FAILED,
            error=error,
        )


def _log_release(job_id: str, error: str) -> Any:
    def done(status: object) -> None:
        if status is not None:
            logger.warning("job %s: %s; now %s", job_id, error, status, extra={"job_id": job_id})

    return done


def _log_if(message: str) -> Any:
    def done(result: object) -> None:
        if result:
            logger.info("%s", message)

    return done
