"""``GET /health``: 200 when the service can serve, 503 otherwise."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import psutil
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from apipod import __version__
from apipod.app.auth import has_valid_key
from apipod.app.http_errors import RETRY_AFTER_S
from apipod.app.jobresult import iso
from apipod.app.openapi import OPERATIONS_TAG
from apipod.errors import StoreUnavailable
from apipod.store.records import WorkerInfo, WorkerState

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

SERVING_STATES = frozenset({WorkerState.READY, WorkerState.BUSY})
_PROCESS = psutil.Process()


def install_health(app: APIPod) -> None:
    @app.router.get("/health", tags=[OPERATIONS_TAG], summary="Can the service serve?")
    async def health(request: Request) -> JSONResponse:
        if not app.config.queue_enabled:
            body = {"status": "ok", "compute": app.config.compute, "version": __version__}
            response = JSONResponse(body)
        else:
            response = await _queue_health(app)
        if has_valid_key(request.scope, app.config.api_key):
            return response
        # With a key set, anyone may ask whether the service serves, but only key
        # holders see its pids, workers and queue.
        status = "ok" if response.status_code == 200 else "unavailable"
        return JSONResponse({"status": status}, status_code=response.status_code)


async def _queue_health(app: APIPod) -> JSONResponse:
    store = app.queue.store
    try:
        workers, depths = await run_in_threadpool(
            lambda: (store.list_workers(), store.queue_depths())
        )
    except StoreUnavailable as exc:
        return _store_unavailable(app, exc)
    stale_after = 3 * app.config.lease_s
    rendered = [worker_view(w, stale_after) for w in workers]
    serving = [w for w in rendered if w["state"] in SERVING_STATES and not w["stale"]]
    # A worker slot retrying on_worker_start (its failed row is fresh) makes the service
    # unavailable until it loads: the operator must see it, even if others serve.
    retrying = [w for w in rendered if w["state"] == WorkerState.FAILED and not w["stale"]]
    healthy = bool(serving) and not retrying
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unavailable",
        "compute": app.config.compute,
        "version": __version__,
        "api": {"pid": os.getpid(), "rss_bytes": _PROCESS.memory_info().rss},
        "workers": rendered,
        "queue": depths,
    }
    if not healthy:
        body["reason"] = _why_unavailable(retrying or rendered)
    return JSONResponse(body, status_code=200 if healthy else 503)


def _store_unavailable(app: APIPod, exc: StoreUnavailable) -> JSONResponse:
    body = {
        "status": "unavailable",
        "compute": app.config.compute,
        "version": __version__,
        "reason": f"job store unavailable: {exc}",
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)})


def worker_view(info: WorkerInfo, stale_after: float) -> dict[str, Any]:
    """A worker row as /health and the dashboard show it (``stale``: no heartbeat
    for ``stale_after`` seconds)."""
    age = None
    if info.heartbeat_at is not None:
        age = (datetime.now(timezone.utc) - info.heartbeat_at).total_seconds()
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "gpu": info.gpu,
        "state": info.state.value,
        "current_job": info.current_job,
        "current_batch": info.current_batch,
        "jobs_done": info.jobs_done,
        "rss_bytes": info.rss_bytes,
        "error": info.error,
        "started_at": iso(info.started_at) if info.started_at else None,
        "heartbeat_at": iso(info.heartbeat_at) if info.heartbeat_at else None,
        "stale": age is not None and age > stale_after,
    }


def _why_unavailable(workers: list[dict[str, Any]]) -> str:
    failed = [w for w in workers if w["error"]]
    if failed:
        return f"worker {failed[0]['id']} failed: {failed[0]['error']}"
    if workers:
        return "no worker is ready yet"
    return "no worker process is running (start with 'apipod start', role 'all' or 'workers')"
