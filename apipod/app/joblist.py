"""``GET /jobs``: the job history, newest first, a page at a time.

Filters are checked (an unknown status is a 422, never an empty list), an endpoint is
matched with or without its leading slash, and pages follow each other by cursor: a
page that is full carries ``next_cursor``, which the next request passes as ``cursor``.
Rows are JobResults without ``result`` plus ``endpoint``, ``attempts``, ``max_attempts``
and, for queued jobs, ``queue_position`` (1 = claimed next); they are read without the
jobs' inputs and results, so a page stays cheap however large the payloads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException

from apipod.app.numbers import query_int
from apipod.endpoint import InputValidationError
from apipod.store.base import JobStore
from apipod.store.records import Job, JobStatus

if TYPE_CHECKING:
    from apipod.app.queue import QueueFrontEnd

STATUSES = tuple(s.value for s in JobStatus)


def parse_statuses(values: list[str]) -> tuple[str, ...]:
    """``?status=failed&status=timeout`` or ``?status=failed,timeout``; 422 on junk."""
    names = tuple(part.strip() for value in values for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in STATUSES]
    if unknown:
        message = f"unknown status {unknown[0]!r}; one of {', '.join(STATUSES)}"
        raise _invalid("status", message, unknown[0], "enum")
    return names


def parse_endpoints(values: list[str]) -> tuple[str, ...]:
    """Endpoints as stored (``/posterize``), whether given with the slash or without."""
    return tuple("/" + v.strip().lstrip("/") for v in values if v.strip())


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    return query_int(
        cursor, "cursor", "cursor must be a next_cursor from an earlier page", minimum=1
    )


def job_page(
    store: JobStore,
    statuses: tuple[str, ...],
    endpoints: tuple[str, ...],
    limit: int,
    before_seq: int | None,
) -> tuple[list[Job], dict[int, int]]:
    """One page of jobs and the queue positions of its queued jobs (blocking)."""
    jobs = store.job_summaries(
        statuses=statuses, endpoints=endpoints, limit=limit, before_seq=before_seq
    )
    positions = store.queue_positions([j.seq for j in jobs if j.status is JobStatus.QUEUED])
    return jobs, positions


def page_body(
    queue: QueueFrontEnd, jobs: list[Job], positions: dict[int, int], limit: int
) -> dict[str, Any]:
    rows = []
    for job in jobs:
        row = queue.summary(job)
        row.update(endpoint=job.endpoint, attempts=job.attempts, max_attempts=job.max_attempts)
        if job.seq in positions:
            row["queue_position"] = positions[job.seq]
        rows.append(row)
    next_cursor = str(jobs[-1].seq) if len(jobs) == limit else None
    return {"jobs": rows, "next_cursor": next_cursor}


def not_retryable(job: Job) -> HTTPException:
    """The 409 of ``POST /retry/{id}`` for a job that is not failed, timed out or
    cancelled (queued and running jobs run anyway; a finished one is done)."""
    return HTTPException(
        409, f"job {job.id} is {job.status.value}: only failed, timeout or cancelled jobs retry"
    )


def _invalid(field: str, message: str, value: str, kind: str = "value_error") -> Exception:
    error = {"type": kind, "loc": ["query", field], "msg": message, "input": value}
    return InputValidationError([error])
