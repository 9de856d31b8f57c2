"""``GET /dashboard``: the operator's page, and ``GET /dashboard/data``, what it shows.

The page is plain HTML, CSS and JavaScript shipped in the package (``static/``), inlined
into one response: no CDN and no build step, so it works on an offline box. It holds no
data, so it is served without the API key; the page asks for the key (kept in the
browser's session storage) and sends it with every call. It polls ``/dashboard/data``
once a second and cancels and retries jobs through ``/cancel/{id}`` and ``/retry/{id}``.

``/dashboard/data`` reads only the columns it shows (never inputs or results): the queue
per endpoint, running jobs with progress, recent jobs, workers, and per-minute
throughput and run-time percentiles of the last hour.
"""

from __future__ import annotations

import functools
import statistics
import threading
import time
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.responses import HTMLResponse, JSONResponse

from apipod.app.health import worker_view
from apipod.app.jobresult import iso
from apipod.app.openapi import OPERATIONS_TAG
from apipod.store.base import JobStore
from apipod.store.records import Job, JobStatus

if TYPE_CHECKING:
    from fastapi import FastAPI

    from apipod.app.queue import QueueFrontEnd

PAGE_PATH = "/dashboard"
CHART_MINUTES = 60
#: The charts read every job of the last hour: at most once per this many seconds per
#: process, however many pages poll.
CHART_REFRESH_S = 5.0
RECENT_JOBS = 50
RUNNING_JOBS = 200


def install_dashboard(app: FastAPI, queue: QueueFrontEnd) -> None:
    """Register ``/dashboard`` and ``/dashboard/data``."""

    @app.router.get(PAGE_PATH, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.router.get(f"{PAGE_PATH}/data", tags=[OPERATIONS_TAG], summary="What the dashboard shows")
    async def data() -> JSONResponse:
        stale_after = 3 * queue.config.lease_s
        snapshot = await queue.call(dashboard_snapshot, queue.store, stale_after)
        return JSONResponse(snapshot)


@functools.lru_cache(maxsize=1)
def _page() -> str:
    static = resources.files("apipod.app") / "static"
    html = (static / "dashboard.html").read_text(encoding="utf-8")
    css = (static / "dashboard.css").read_text(encoding="utf-8")
    script = (static / "dashboard.js").read_text(encoding="utf-8")
    return html.replace("/*STYLE*/", css).replace("/*SCRIPT*/", script)


def dashboard_snapshot(store: JobStore, stale_after_s: float) -> dict[str, Any]:
    """Everything the page shows, from one pass over the store (blocking)."""
    now = datetime.now(timezone.utc)
    running = store.job_summaries(statuses=[JobStatus.PROCESSING.value], limit=RUNNING_JOBS)
    recent = store.job_summaries(limit=RECENT_JOBS)
    positions = store.queue_positions([j.seq for j in recent if j.status is JobStatus.QUEUED])
    return {
        "now": iso(now),
        "queue": store.queue_depths(),
        "running": [_job(job, None) for job in running],
        "recent": [_job(job, positions.get(job.seq)) for job in recent],
        "workers": [worker_view(w, stale_after_s) for w in store.list_workers()],
        "charts": _charts(store, now),
    }


_chart_cache: dict[int, tuple[float, dict[str, list[Any]]]] = {}
_chart_lock = threading.Lock()


def _charts(store: JobStore, now: datetime) -> dict[str, list[Any]]:
    with _chart_lock:
        cached = _chart_cache.get(id(store))
        if cached is not None and time.monotonic() - cached[0] < CHART_REFRESH_S:
            return cached[1]
        charts = minute_charts(store.job_endings(CHART_MINUTES * 60), now)
        _chart_cache.clear()  # one store per process: keep the newest only
        _chart_cache[id(store)] = (time.monotonic(), charts)
        return charts


def _job(job: Job, queue_position: int | None) -> dict[str, Any]:
    run_s = None
    if job.started_at is not None:
        run_s = ((job.finished_at or datetime.now(timezone.utc)) - job.started_at).total_seconds()
    return {
        "job_id": job.id,
        "endpoint": job.endpoint,
        "status": job.status.value,
        "progress": job.progress,
        "message": job.message,
        "attempts": job.attempts,
        "worker": job.worker,
        "queue_position": queue_position,
        "created_at": iso(job.created_at) if job.created_at else None,
        "run_s": round(max(0.0, run_s), 3) if run_s is not None else None,
        "error": _first_line(job.error),
    }


def _first_line(error: str | None) -> str | None:
    """The headline of an error (the whole text is in ``apipod jobs show``)."""
    if not error:
        return None
    line = error.strip().splitlines()[0] if error.strip() else error
    return line if len(line) <= 300 else line[:297] + "..."


def minute_charts(
    endings: list[tuple[str, str, datetime | None, datetime]], now: datetime
) -> dict[str, list[Any]]:
    """Per minute of the last hour (oldest first): jobs finished, jobs that ended
    otherwise, and the median and 95th percentile run time of the finished ones."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)
    finished = [0] * CHART_MINUTES
    other = [0] * CHART_MINUTES
    runs: list[list[float]] = [[] for _ in range(CHART_MINUTES)]
    for _endpoint, status, started, ended in endings:
        index = int((ended - start).total_seconds() // 60)
        if not 0 <= index < CHART_MINUTES:
            continue
        if status == JobStatus.FINISHED.value:
            finished[index] += 1
            if started is not None:
                runs[index].append(max(0.0, (ended - started).total_seconds()))
        else:
            other[index] += 1
    return {
        "minutes": [iso(start + timedelta(minutes=i)) for i in range(CHART_MINUTES)],
        "finished": finished,
        "failed": other,
        "p50_s": [_percentile(values, 50) for values in runs],
        "p95_s": [_percentile(values, 95) for values in runs],
    }


def _percentile(values: list[float], percent: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    return round(statistics.quantiles(values, n=100, method="inclusive")[percent - 1], 4)
