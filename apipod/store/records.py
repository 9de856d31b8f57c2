"""What the operators' verbs of the store return (see :class:`~apipod.store.base.JobStore`):
job metrics, idempotency bindings, webhook deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
