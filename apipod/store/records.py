"""What the store's verbs take and return (see :class:`~apipod.store.base.JobStore`): jobs,
their statuses, streamed chunks, stored files and worker rows; for operators, job metrics,
idempotency bindings and webhook deliveries."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    PROCESSING = "processing"
    FINISHED = "finished"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATUSES = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED}
)


class WorkerState(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    DEAD = "dead"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Job:
    """One row of the jobs table. ``inputs`` and ``result`` are decoded JSON."""

    id: str
    seq: int
    endpoint: str
    status: JobStatus
    inputs: dict[str, Any]
    result: Any = None
    error: str | None = None
    progress: float | None = None
    message: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    worker: str | None = None
    timeout_s: float | None = None
    created_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    #: The full traceback of a failure, for operators only (never sent over HTTP).
    traceback: str | None = None
    #: Why the stored row could not be decoded (then ``inputs`` is empty); None when fine.
    unreadable: str | None = None
    #: The batch the job was last claimed in (batched endpoints only; see ``claim_batch``).
    batch_id: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class Chunk:
    """One streamed output value of a job: ``data`` is its JSON text."""

    seq: int
    attempt: int
    data: str


@dataclass(frozen=True)
class StoredFile:
    """One stored file of a job: its reference, its name within the job, its size."""

    ref: str
    name: str
    size: int


@dataclass(frozen=True)
class WorkerInfo:
    """One row of the workers table: a worker process on some host."""

    id: str
    host: str
    pid: int
    gpu: str | None
    state: WorkerState
    current_job: str | None = None
    jobs_done: int = 0
    rss_bytes: int | None = None
    error: str | None = None
    started_at: datetime | None = None
    heartbeat_at: datetime | None = None
    #: The batch the worker runs (with ``current_job``, its first job); None when idle.
    current_batch: str | None = None


@dataclass(frozen=True)
class JobMetrics:
    """The job numbers behind ``/metrics``, read from the store (see migration 0006).

    ``counts``: ``(endpoint, event) -> n`` since the store was created, where event is
    ``submitted`` or a terminal status (the jobs that ended so). ``durations``: rows
    ``(metric, endpoint, le, count, total)`` of the ``wait`` and ``run`` histograms, one
    per bucket that holds values (not cumulative). ``active``: ``(endpoint, status) -> n``
    for the queued and processing jobs now."""

    counts: dict[tuple[str, str], int]
    durations: list[tuple[str, str, str, int, float]]
    active: dict[tuple[str, str], int]


@dataclass(frozen=True)
class IdempotencyRecord:
    """The job an ``Idempotency-Key`` of an endpoint stands for, and the digest of the
    request that created it."""

    job_id: str
    request_hash: str
    created_at: datetime


@dataclass(frozen=True)
class WebhookDelivery:
    """One row of the webhook outbox: an event of a job to POST to its webhook URL.
    ``state`` is pending (due at ``next_attempt_at``), delivered or failed (given up);
    ``body`` is set at the first attempt and sent unchanged by every retry."""

    seq: int
    job_id: str
    event: str
    url: str
    state: str
    attempts: int = 0
    body: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime | None = None
    delivered_at: datetime | None = None
