"""The JobResult JSON of DESIGN §4 (null fields omitted), built from a stored job.

Stored files in a result become FileModel dicts through a ``render_file`` callback
(:class:`apipod.payload.FileRenderer`: inline base64, streamed base64, or the file's URL
made by :func:`file_url`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from apipod.app.signing import signed_query
from apipod.endpoint import InputValidationError
from apipod.payload import RenderFile, StoredMedia, decode, stored_files
from apipod.store.records import Job

INLINE_MODES = ("auto", "all", "none")


def job_result(
    job: Job, render_file: RenderFile | None = None, file_names: list[str] | None = None
) -> dict[str, Any]:
    """``{"job_id", "status", "result", "error", "progress", "message", "metrics",
    "links"}`` with null fields left out. Stored files become what ``render_file`` makes
    of them (by default a FileModel without content). ``links.files`` lists
    ``file_names`` when given (a status read loads no inputs), else the files the job's
    inputs and result refer to."""
    out: dict[str, Any] = {"job_id": job.id, "status": job.status.value}
    if job.result is not None:
        out["result"] = decode(job.result, render_file or _bare_file_model)
    for key in ("error", "progress", "message"):
        value = getattr(job, key)
        if value is not None:
            out[key] = value
    out["metrics"] = _metrics(job)
    out["links"] = _links(job, file_names)
    return out


def not_found(job_id: str, error: str) -> dict[str, Any]:
    return {"job_id": job_id, "status": "not_found", "error": error}


def file_path(job_id: str, name: str) -> str:
    """The route of a stored file: ``/files/<job_id>/<name>``."""
    return f"/files/{job_id}/{name}"


def _links(job: Job, file_names: list[str] | None) -> dict[str, Any]:
    links: dict[str, Any] = {
        "status": f"/status/{job.id}",
        "cancel": f"/cancel/{job.id}",
        "stream": f"/stream/{job.id}",
    }
    names = file_names
    if names is None:
        names = [m.name for m in stored_files(job.inputs) + stored_files(job.result)]
    if names:
        links["files"] = [file_path(job.id, name) for name in dict.fromkeys(names)]
    return links


def _bare_file_model(media: StoredMedia) -> dict[str, Any]:
    return {"file_name": media.file_name, "content_type": media.content_type, "content": None}


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


# --- file URLs in a JobResult ------------------------------------------------------------------
def file_url(base_url: str, api_key: str | None, ttl_s: float) -> Callable[[StoredMedia], str]:
    """The absolute URL of a stored file's route, signed and expiring when there is a key."""

    def url_of(media: StoredMedia) -> str:
        # Signed over the path as the server sees it (decoded); sent percent-encoded.
        path = file_path(media.job_id, media.name)
        query = f"?{signed_query(api_key, path, ttl_s)}" if api_key else ""
        return f"{base_url.rstrip('/')}{quote(path)}{query}"

    return url_of


def inline_mode(request: Request | None) -> str:
    """The ``inline`` query parameter: ``auto`` (the default), ``all`` or ``none``."""
    mode = request.query_params.get("inline", "auto") if request is not None else "auto"
    if mode not in INLINE_MODES:
        error = {"type": "literal_error", "loc": ["query", "inline"], "input": mode[:100]}
        raise InputValidationError([{**error, "msg": f"inline must be one of {INLINE_MODES}"}])
    return mode
