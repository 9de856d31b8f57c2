"""The JobResult JSON of DESIGN §4 (null fields omitted), built from a stored job."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apipod.payload import FILE_KEY
from apipod.store.base import Job


def job_result(job: Job, read_file: Callable[[str], bytes]) -> dict[str, Any]:
    """``{"job_id", "status", "result", "error", "progress", "message", "metrics",
    "links"}`` with null fields left out. Stored media become FileModel dicts."""
    out: dict[str, Any] = {"job_id": job.id, "status": job.status.value}
    if job.result is not None:
        out["result"] = resolve_files(job.result, read_file)
    for key in ("error", "progress", "message"):
        value = getattr(job, key)
        if value is not None:
            out[key] = value
    out["metrics"] = _metrics(job)
    out["links"] = {
        "status": f"/status/{job.id}",
        "cancel": f"/cancel/{job.id}",
        "stream": f"/stream/{job.id}",
    }
    return out


def not_found(job_id: str, error: str) -> dict[str, Any]:
    return {"job_id": job_id, "status": "not_found", "error": error}


def _metrics(job: Job) -> dict[str, Any]:
    metrics: dict[str, Any] = {}
    for key in ("created_at", "queued_at", "started_at", "finished_at"):
        value = getattr(job, key)
        if value is not None:
            metrics[key] = iso(value)
    if job.started_at is not None and job.finished_at is not None:
        seconds = (job.finished_at - job.started_at).total_seconds()
        metrics["execution_time_s"] = round(max(0.0, seconds), 6)
    if job.batch_id is not None:
        metrics["batch_id"] = job.batch_id  # the jobs with this id ran in one call
    return metrics


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def has_files(value: Any) -> bool:
    """Whether a stored result refers to stored files (reading them is blocking I/O)."""
    if isinstance(value, dict):
        return FILE_KEY in value or any(has_files(v) for v in value.values())
    if isinstance(value, list):
        return any(has_files(v) for v in value)
    return False


def resolve_files(value: Any, read_file: Callable[[str], bytes]) -> Any:
    """Replace stored-file references in a result with FileModel dicts."""
    if isinstance(value, dict):
        if FILE_KEY in value:
            return _file_model(value, read_file)
        return {k: resolve_files(v, read_file) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_files(v, read_file) for v in value]
    return value


def _file_model(ref: dict[str, Any], read_file: Callable[[str], bytes]) -> dict[str, Any]:
    try:
        content: str | None = base64.b64encode(read_file(ref[FILE_KEY])).decode("ascii")
    except FileNotFoundError:
        content = None
    return {
        "file_name": ref.get("file_name") or "file",
        "content_type": ref.get("content_type") or "application/octet-stream",
        "content": content,
    }
