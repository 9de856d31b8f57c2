"""What a worker process tells its supervisor over their pipe, and how it exits."""

from __future__ import annotations

from dataclasses import dataclass

from apipod.config import Config

# Exit codes the supervisor reads from a worker that left on purpose.
EXIT_OK = 0
EXIT_LOAD_FAILED = 3
EXIT_RECYCLE = 4


def timeout_error(timeout_s: float) -> str:
    """The error of a job that ran past its timeout."""
    return f"job exceeded its timeout of {timeout_s:g} s"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs, pickled to the spawned child."""

    worker_id: str
    index: int
    gpu: str | None
    target: str
    config: Config
    host: str


@dataclass(frozen=True)
class Ready:
    """``on_worker_start`` finished; the worker claims jobs from now on."""


@dataclass(frozen=True)
class Busy:
    """The worker claimed ``job_id``; the supervisor enforces ``timeout_s`` from now.
    A batch names its other jobs (with their timeouts) in ``more``."""

    job_id: str
    timeout_s: float | None
    more: tuple[tuple[str, float | None], ...] = ()

    @property
    def all_jobs(self) -> tuple[tuple[str, float | None], ...]:
        return ((self.job_id, self.timeout_s), *self.more)


@dataclass(frozen=True)
class Idle:
    """The job the worker ran has ended (in whatever status)."""

    job_id: str
    jobs_done: int


@dataclass(frozen=True)
class LoadFailed:
    """``on_worker_start`` (or importing the service) raised; the worker exits next.
    ``error`` is one line; ``traceback`` the whole story, for the supervisor's log."""

    error: str
    traceback: str = ""


@dataclass(frozen=True)
class Recycle:
    """The worker leaves to be replaced (job count or memory cap reached)."""

    reason: str


WorkerMessage = Ready | Busy | Idle | LoadFailed | Recycle
