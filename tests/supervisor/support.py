"""Small helpers shared by the supervisor tests (real services, real SQLite)."""

from __future__ import annotations

import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.helpers import (
    SERVICES,
    TERMINAL,
    ServiceProcess,
    apipod_command,
    free_port,
    http_client,
    service_env,
)

T = TypeVar("T")


def client_for(service: ServiceProcess) -> httpx.Client:
    return http_client(service.url, timeout=30)


def submit(client: httpx.Client, path: str, body: dict[str, Any] | None = None) -> str:
    response = client.post(path, json=body or {})
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "queued", job
    return job["job_id"]


def status(client: httpx.Client, job_id: str, wait: float | None = None) -> dict[str, Any]:
    params = {"wait": wait} if wait else {}
    response = client.get(f"/status/{job_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def run_job(
    client: httpx.Client, path: str, body: dict[str, Any] | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Submit and wait until the job is terminal; return its JobResult."""
    job_id = submit(client, path, body)
    return wait_terminal(client, job_id, timeout)


def wait_terminal(client: httpx.Client, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = status(client, job_id, wait=min(5.0, max(0.1, deadline - time.monotonic())))
        if body["status"] in TERMINAL:
            return body
    raise TimeoutError(f"job {job_id} not terminal after {timeout} s: {body}")


def health(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/health")
    return response.status_code, response.json()


def wait_until(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Call ``predicate`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(every)


def ready_workers(client: httpx.Client, count: int = 1, timeout: float = 30) -> list[dict]:
    """Wait until ``count`` workers are ready (idle, not stale); return them."""

    def check() -> list[dict] | None:
        code, body = health(client)
        ready = [w for w in body.get("workers", []) if w["state"] == "ready" and not w["stale"]]
        return ready if code == 200 and len(ready) >= count else None

    return wait_until(check, timeout, f"{count} ready worker(s)")


def worker_running(client: httpx.Client, job_id: str, timeout: float = 10) -> dict:
    """The /health entry of the worker whose current_job is ``job_id``."""

    def check() -> dict | None:
        _, body = health(client)
        return next((w for w in body.get("workers", []) if w["current_job"] == job_id), None)

    return wait_until(check, timeout, f"a worker running job {job_id}")


def timestamp(body: dict[str, Any], key: str) -> datetime:
    return datetime.fromisoformat(body["metrics"][key].replace("Z", "+00:00"))


def seconds_between(body: dict[str, Any], start: str, end: str) -> float:
    return (timestamp(body, end) - timestamp(body, start)).total_seconds()


def median(values: list[float]) -> float:
    return statistics.median(values)


def db_path(service: ServiceProcess) -> Path:
    return Path(service.env["APIPOD_DATA_DIR"]) / "apipod.db"


def job_row(database: Path, job_id: str) -> dict[str, Any]:
    """The job's row, read with the stdlib sqlite3 module as an operator would."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"job {job_id} not in {database}"
    return dict(row)


def new_service(data_dir: Path, target: str, log: Path, **settings: object) -> ServiceProcess:
    """An ``apipod start`` on an existing data dir (a restart), on a fresh port."""
    port = free_port()
    env = service_env(data_dir, port=port, **settings)
    args = apipod_command("start", str(SERVICES / target))
    return ServiceProcess(args, env, port, log)


def count_in_log(service: ServiceProcess, text: str) -> int:
    return service.log_path.read_text(errors="replace").count(text)


def full_log(service: ServiceProcess) -> str:
    return service.log_path.read_text(errors="replace")
