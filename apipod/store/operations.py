"""The operators' verbs of the SQL stores: job pages without payloads, queue positions,
retry and purge (``apipod jobs``, ``GET /jobs``, the dashboard).

:class:`OperationsMixin` is part of :class:`~apipod.store.sqlstore.SqlJobStore`; it uses
the same primitives (``_read``, ``_write_rows``, ``_cached_sql``), so every dialect has it.
Reads here never select ``inputs`` or ``result``: a page of history stays small however
large the jobs' payloads are.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from apipod.store.records import TERMINAL_STATUSES, IdempotencyRecord, Job, JobMetrics, JobStatus
from apipod.store.sql import (
    STATE_COLS,
    format_ts,
    parse_ts,
    placeholders,
    row_to_job,
    ts_in,
    utcnow,
)

RETRYABLE_STATUSES = frozenset({JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED})
RETRIED_MESSAGE = "retried by operator"

_RETRY = (
    "UPDATE jobs SET status = 'queued', max_attempts = CASE WHEN attempts >= max_attempts"
    " THEN attempts + 1 ELSE max_attempts END, error = NULL,"
    " result = NULL, progress = NULL, message = ?, worker = NULL, lease_expires_at = NULL,"
    " started_at = NULL, finished_at = NULL, queued_at = ?"
    " WHERE id = ? AND status IN ('failed', 'timeout', 'cancelled')"
    f" RETURNING {STATE_COLS}"
)
#: Upper bounds (seconds) of the ``wait`` and ``run`` histogram buckets, ``+Inf`` after
#: them: the list the triggers of migration 0006 sort values by.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_COUNTS = "SELECT endpoint, event, count FROM job_counts"
_DURATIONS = "SELECT metric, endpoint, le, count, total FROM job_durations"
_ACTIVE = (
    "SELECT endpoint, status, count(*) FROM jobs WHERE status IN ('queued', 'processing')"
    " GROUP BY endpoint, status"
)
_RESERVE_KEY = (
    "INSERT INTO idempotency_keys (endpoint, key, request_hash, job_id, created_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (endpoint, key) DO NOTHING"
)
_READ_KEY = (
    "SELECT job_id, request_hash, created_at FROM idempotency_keys WHERE endpoint = ? AND key = ?"
)
_RELEASE_KEY = "DELETE FROM idempotency_keys WHERE endpoint = ? AND key = ? AND job_id = ?"
_ENDINGS = (
    "SELECT endpoint, status, started_at, finished_at FROM jobs"
    " WHERE finished_at IS NOT NULL AND finished_at >= ? ORDER BY finished_at LIMIT ?"
)
_QUEUED_SEQS = "SELECT seq FROM jobs WHERE status = 'queued' AND seq <= ? ORDER BY seq"


def summary_page_sql(by_status: int, by_endpoint: int, before: bool) -> str:
    """Jobs newest first, without payloads. Parameters: the ``by_status`` statuses, the
    ``by_endpoint`` endpoints, [the seq to start below], the limit."""
    conditions = []
    if by_status:
        conditions.append(f"status IN ({placeholders(by_status)})")
    if by_endpoint:
        conditions.append(f"endpoint IN ({placeholders(by_endpoint)})")
    if before:
        conditions.append("seq < ?")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT {STATE_COLS} FROM jobs{where} ORDER BY seq DESC LIMIT ?"


class OperationsMixin:
    """Operators' verbs for :class:`~apipod.store.sqlstore.SqlJobStore` (see the
    contract in :class:`~apipod.store.base.JobStore`)."""

    _read: Callable[..., list[tuple[Any, ...]]]
    _write: Callable[..., int]
    _write_rows: Callable[..., list[tuple[Any, ...]]]
    _cached_sql: Callable[..., str]
    _adapt: Callable[[str], str]
    #: SqlJobStore's: delete jobs with their files and chunks, as the TTL does.
    _delete_jobs: Callable[[list[str], int], int]

    def job_summaries(
        self,
        *,
        statuses: Sequence[str] = (),
        endpoints: Sequence[str] = (),
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[Job]:
        """See :meth:`JobStore.job_summaries`."""
        names = tuple(str(s) for s in statuses)
        paths = tuple(endpoints)
        key = ("summaries", len(names), len(paths), before_seq is not None)
        sql = self._cached_sql(key, lambda: summary_page_sql(*key[1:]))
        params: list[Any] = [*names, *paths]
        if before_seq is not None:
            params.append(int(before_seq))
        params.append(max(int(limit), 0))
        return [row_to_job(row) for row in self._read(sql, params)]

    def queue_positions(self, seqs: Sequence[int]) -> dict[int, int]:
        """See :meth:`JobStore.queue_positions`."""
        if not seqs:
            return {}
        queued = [row[0] for row in self._read(self._adapt(_QUEUED_SEQS), (max(seqs),))]
        positions = {}
        for seq in seqs:
            index = bisect.bisect_left(queued, seq)
            if index < len(queued) and queued[index] == seq:
                positions[seq] = index + 1
        return positions

    def job_metrics(self) -> JobMetrics:
        """See :meth:`JobStore.job_metrics`."""
        counts = {(e, event): int(n) for e, event, n in self._read(_COUNTS)}
        durations = [
            (metric, e, le, int(n), float(total))
            for metric, e, le, n, total in self._read(_DURATIONS)
        ]
        active = {(e, status): int(n) for e, status, n in self._read(_ACTIVE)}
        return JobMetrics(counts=counts, durations=durations, active=active)

    def job_endings(
        self, since_s: float, limit: int = 50_000
    ) -> list[tuple[str, str, datetime | None, datetime]]:
        """See :meth:`JobStore.job_endings`."""
        rows = self._read(self._adapt(_ENDINGS), (ts_in(-float(since_s)), int(limit)))
        return [(e, status, parse_ts(start), parse_ts(end)) for e, status, start, end in rows]

    def reserve_idempotency_key(
        self, endpoint: str, key: str, request_hash: str, job_id: str
    ) -> IdempotencyRecord:
        """See :meth:`JobStore.reserve_idempotency_key`."""
        # Insert, else read the binding that won; a binding released between the two
        # (its submit failed) lets us try again.
        while True:
            now = utcnow()
            params = (endpoint, key, request_hash, job_id, format_ts(now))
            if self._write(self._adapt(_RESERVE_KEY), params) == 1:
                return IdempotencyRecord(job_id, request_hash, now)
            rows = self._read(self._adapt(_READ_KEY), (endpoint, key))
            if rows:
                owner, digest, created = rows[0]
                return IdempotencyRecord(owner, digest, parse_ts(created))

    def release_idempotency_key(self, endpoint: str, key: str, job_id: str) -> None:
        """See :meth:`JobStore.release_idempotency_key`."""
        self._write(self._adapt(_RELEASE_KEY), (endpoint, key, job_id))

    def retry(self, job_id: str) -> Job | None:
        """See :meth:`JobStore.retry`."""
        params = (RETRIED_MESSAGE, format_ts(utcnow()), job_id)
        rows = self._write_rows(self._adapt(_RETRY), params)
        if not rows:
            return None
        self._work_notify()
        return row_to_job(rows[0])

    def purge(
        self, older_than_s: float, statuses: Sequence[str] = (), batch_size: int = 500
    ) -> int:
        """See :meth:`JobStore.purge`."""
        wanted = {JobStatus(s) for s in statuses} or set(TERMINAL_STATUSES)
        if not wanted <= TERMINAL_STATUSES:
            raise ValueError("only ended jobs can be purged (finished, failed, timeout, cancelled)")
        names = tuple(sorted(s.value for s in wanted))
        key = ("purge-ids", len(names))
        select = self._cached_sql(
            key,
            lambda: (
                "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?"
                f" AND status IN ({placeholders(len(names))}) ORDER BY finished_at LIMIT ?"
            ),
        )
        cutoff = ts_in(-float(older_than_s))
        deleted = 0
        while True:
            ids = [row[0] for row in self._read(select, (cutoff, *names, int(batch_size)))]
            if not ids:
                return deleted
            deleted += self._delete_jobs(ids, int(batch_size))

    def _work_notify(self) -> None:
        self._work.notify()  # type: ignore[attr-defined]
