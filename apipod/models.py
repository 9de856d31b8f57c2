"""Pydantic models of what the API returns, for clients and for type hints in services.

``FileModel`` is how a file travels as JSON (results, and an input a client may send);
``JobResult`` is the answer of a queued call and of ``GET /status/{job_id}``. A parameter
annotated ``FileModel`` receives a media object (see the README's "Coming from the
original APIPod").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class FileModel(BaseModel):
    """A file as JSON: ``content`` is base64 (or a data: / http(s) URL in inputs)."""

    file_name: str = "file"
    content_type: str = "application/octet-stream"
    content: str


class JobLinks(BaseModel):
    """Where to read the job's status, cancel it, follow its stream, and fetch its files."""

    status: str | None = None
    cancel: str | None = None
    stream: str | None = None
    files: list[str] | None = None


class JobMetrics(BaseModel):
    """When the job was created, queued, started and finished (UTC)."""

    created_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    execution_time_s: float | None = None


class JobResult(BaseModel):
    """A job as the API shows it; fields that are null are left out of the JSON."""

    job_id: str
    status: str
    result: Any = None
    error: str | None = None
    progress: float | None = None
    message: str | None = None
    metrics: JobMetrics | None = None
    links: JobLinks | None = None
