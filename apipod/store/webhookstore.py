"""The webhook outbox verbs of the SQL stores (tables and triggers: migration 0007).

:class:`WebhookOutboxMixin` is part of :class:`~apipod.store.sqlstore.SqlJobStore`.
Deliveries are claimed like jobs: one ``UPDATE ... WHERE <due> RETURNING``, locked with
the dialect's claim suffix (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so the supervisors
of several boxes never send one delivery at once; a job's deliveries go out in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from apipod.store.records import WebhookDelivery
from apipod.store.sql import format_ts, parse_ts, ts_in, utcnow

DELIVERY_COLUMNS = (
    "seq",
    "job_id",
    "event",
    "url",
    "state",
    "attempts",
    "body",
    "last_status",
    "last_error",
    "next_attempt_at",
    "created_at",
    "delivered_at",
)
_COLS = ", ".join(DELIVERY_COLUMNS)
_ADD = "INSERT INTO webhooks (job_id, url, events, created_at) VALUES (?, ?, ?, ?)"
_REMOVE = "DELETE FROM webhooks WHERE job_id = ?"
_EARLIER_OPEN = (
    "NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.job_id = d.job_id"
    " AND e.seq < d.seq AND e.state = 'pending')"
)
_RECORD = (
    "UPDATE webhook_deliveries SET state = ?, body = ?, last_status = ?, last_error = ?,"
    " next_attempt_at = ?, delivered_at = ? WHERE seq = ? AND state = 'pending'"
)
_OF_JOB = f"SELECT {_COLS} FROM webhook_deliveries WHERE job_id = ? ORDER BY seq"
_COUNTS = "SELECT state, count(*) FROM webhook_deliveries GROUP BY state"
_SWEEP_DELIVERIES = (
    "DELETE FROM webhook_deliveries WHERE state <> 'pending'"
    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = webhook_deliveries.job_id)"
)
_SWEEP_WEBHOOKS = (
    "DELETE FROM webhooks WHERE created_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = webhooks.job_id)"
)


def claim_deliveries_sql(lock_suffix: str) -> str:
    """Take up to ``limit`` due deliveries, each the oldest open one of its job.
    Parameters: now, the limit, the new ``next_attempt_at`` (the claim's lease)."""
    # ``picked`` is a CTE, run once: as an IN-subquery PostgreSQL may rescan it per
    # candidate row, and each rescan skips the rows the statement just claimed, so the
    # limit held per rescan instead of for the statement (see claim_batch_sql).
    return (
        "WITH picked AS (SELECT d.seq FROM webhook_deliveries d WHERE d.state = 'pending'"
        f" AND d.next_attempt_at <= ? AND {_EARLIER_OPEN} ORDER BY d.seq LIMIT ?{lock_suffix})"
        " UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?"
        f" WHERE seq IN (SELECT seq FROM picked) AND state = 'pending' RETURNING {_COLS}"
    )


def row_to_delivery(row: Sequence[Any]) -> WebhookDelivery:
    values = dict(zip(DELIVERY_COLUMNS, row, strict=True))
    for name in ("next_attempt_at", "created_at", "delivered_at"):
        values[name] = parse_ts(values[name])
    return WebhookDelivery(**values)


class WebhookOutboxMixin:
    """Webhook verbs for :class:`~apipod.store.sqlstore.SqlJobStore` (see the contract in
    :class:`~apipod.store.base.JobStore`)."""

    _read: Callable[..., list[tuple[Any, ...]]]
    _write: Callable[..., int]
    _write_rows: Callable[..., list[tuple[Any, ...]]]
    _cached_sql: Callable[..., str]
    _adapt: Callable[[str], str]
    claim_lock_suffix: str

    def add_webhook(self, job_id: str, url: str, events: Sequence[str]) -> None:
        """See :meth:`JobStore.add_webhook`."""
        params = (job_id, url, ",".join(events), format_ts(utcnow()))
        self._write(self._adapt(_ADD), params)

    def remove_webhook(self, job_id: str) -> None:
        """See :meth:`JobStore.remove_webhook`."""
        self._write(self._adapt(_REMOVE), (job_id,))

    def claim_webhook_deliveries(self, limit: int, lease_s: float) -> list[WebhookDelivery]:
        """See :meth:`JobStore.claim_webhook_deliveries`."""
        suffix = self.claim_lock_suffix
        sql = self._cached_sql(("webhook-claim",), lambda: claim_deliveries_sql(suffix))
        now = utcnow()
        rows = self._write_rows(sql, (format_ts(now), int(limit), ts_in(lease_s, now)))
        return sorted((row_to_delivery(row) for row in rows), key=lambda d: d.seq)

    def record_webhook_attempt(
        self,
        seq: int,
        *,
        body: str,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        """See :meth:`JobStore.record_webhook_attempt`."""
        delivered = error is None
        state = "delivered" if delivered else ("pending" if retry_at else "failed")
        now = format_ts(utcnow())
        next_at = format_ts(retry_at) if retry_at else now
        params = (state, body, status_code, error, next_at, now if delivered else None, seq)
        self._write(self._adapt(_RECORD), params)

    def webhook_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        """See :meth:`JobStore.webhook_deliveries`."""
        return [row_to_delivery(row) for row in self._read(self._adapt(_OF_JOB), (job_id,))]

    def webhook_delivery_counts(self) -> dict[str, int]:
        """See :meth:`JobStore.webhook_delivery_counts`."""
        return {state: int(count) for state, count in self._read(_COUNTS)}

    def sweep_webhooks(self, orphan_after_s: float) -> int:
        """See :meth:`JobStore.sweep_webhooks`."""
        swept = self._write(_SWEEP_DELIVERIES)
        return swept + self._write(self._adapt(_SWEEP_WEBHOOKS), (ts_in(-orphan_after_s),))
