"""How the job commands show jobs and workers: flat rows (tables and ``--json``), a
detail view with short summaries of inputs and results, and the plain-text table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apipod.app.jobresult import iso as iso_text
from apipod.payload import FILE_KEY
from apipod.store.records import Job, WebhookDelivery, WorkerInfo

MAX_TEXT = 120
MAX_ITEMS = 20


def iso(moment: datetime | None) -> str | None:
    return iso_text(moment) if moment else None


def seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 3)


def job_row(job: Job, queue_position: int | None) -> dict[str, Any]:
    """One line of ``apipod jobs ls``."""
    return {
        "id": job.id,
        "endpoint": job.endpoint,
        "status": job.status.value,
        "queue_position": queue_position,
        "progress": job.progress,
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "worker": job.worker,
        "created_at": iso(job.created_at),
        "run_s": seconds(job.started_at, job.finished_at),
        "error": _short(job.error) if job.error else None,
    }


def job_detail(
    job: Job, queue_position: int | None, deliveries: list[WebhookDelivery] = ()
) -> dict[str, Any]:
    """``apipod jobs show``: everything an operator asks about one job."""
    detail: dict[str, Any] = {
        "id": job.id,
        "endpoint": job.endpoint,
        "status": job.status.value,
        "queue_position": queue_position,
        "progress": job.progress,
        "message": job.message,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "worker": job.worker,
        "timeout_s": job.timeout_s,
        "created_at": iso(job.created_at),
        "queued_at": iso(job.queued_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "wait_s": seconds(job.queued_at, job.started_at),
        "run_s": seconds(job.started_at, job.finished_at),
        "inputs": summarize(job.inputs),
        "result": summarize(job.result),
        "error": job.error,
        "traceback": getattr(job, "traceback", None),
        "webhook_deliveries": [delivery_row(d) for d in deliveries] or None,
    }
    return {k: v for k, v in detail.items() if v is not None}


def delivery_row(delivery: WebhookDelivery) -> dict[str, Any]:
    """One webhook delivery of a job, as ``apipod jobs show`` lists it."""
    row = {
        "event": delivery.event,
        "url": delivery.url,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "delivered_at": iso(delivery.delivered_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.state == "pending" else None,
    }
    return {k: v for k, v in row.items() if v is not None}


def summarize(value: Any) -> Any:
    """A short stand-in for a payload: stored files by name and type, long texts cut,
    long lists cut to their first items."""
    if isinstance(value, dict):
        if FILE_KEY in value:
            name = value.get("file_name") or "file"
            return f"<file {name} ({value.get('content_type') or 'unknown type'})>"
        return {k: summarize(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [summarize(v) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"... {len(value) - MAX_ITEMS} more")
        return items
    if isinstance(value, str):
        return _short(value)
    return value


def worker_row(worker: WorkerInfo) -> dict[str, Any]:
    """One line of ``apipod workers``."""
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "gpu": worker.gpu,
        "state": worker.state.value,
        "current_job": worker.current_job,
        "jobs_done": worker.jobs_done,
        "rss_mb": round(worker.rss_bytes / 1e6, 1) if worker.rss_bytes else None,
        "heartbeat_at": iso(worker.heartbeat_at),
        "error": _short(worker.error) if worker.error else None,
    }


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def format_table(rows: list[dict[str, Any]]) -> str:
    """Rows as aligned columns under upper-case headers; None shows as ``-``."""
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(line.rstrip() for line in lines)


def print_table(rows: list[dict[str, Any]], empty: str) -> None:
    print(format_table(rows) if rows else empty)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("\n", " ")
