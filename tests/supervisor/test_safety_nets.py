"""The supervisor's safety nets, each against a real service: a hung ``on_worker_start``
is killed after ``worker_start_timeout``; SIGHUP replaces every worker without losing the
running job; a slot whose ``on_worker_start`` keeps failing is given up; worker rows of a
box that went away are pruned; a starting box leaves other boxes' jobs alone; and a
long-poll never waits more than 60 s, whatever ``wait`` asked."""

from __future__ import annotations

import concurrent.futures
import signal
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import psutil
import pytest

from apipod.store import JobStatus, JobStore, WorkerInfo, WorkerState, open_store
from tests.helpers import ServiceProcess, http_client, running_service
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import (
    client_for,
    count_in_log,
    db_path,
    full_log,
    health,
    job_row,
    ready_workers,
    run_job,
    status,
    submit,
    wait_terminal,
    wait_until,
)

LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"  # asctime of the service's log lines
FOREIGN_WORKER = "elsewhere-0a1b2c/w0.abcdef"  # a worker of another box on the same store


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def attempt_times(service: ServiceProcess) -> list[float]:
    """When each worker start failed: the log line each worker writes, by its timestamp."""
    lines = [line for line in full_log(service).splitlines() if "failed to load" in line]
    return [datetime.strptime(line[:23], LOG_TIME).timestamp() for line in lines]


def failed_rows(client: httpx.Client) -> list[dict]:
    try:
        _, body = health(client)
    except httpx.TransportError:
        return []
    return [w for w in body.get("workers", []) if w["state"] == "failed"]


# --- on_worker_start that never returns ----------------------------------------------------
@pytest.mark.slow
def test_a_hung_worker_start_is_killed_after_worker_start_timeout(tmp_path: Path) -> None:
    with (
        running_service(
            tmp_path,
            "queue_load_hangs.py",
            wait_healthy=False,
            max_workers=1,
            gpus="none",
            worker_start_timeout=2,
        ) as service,
        client_for(service) as client,
    ):
        service.wait_until("/health", timeout=60)
        failed = wait_until(lambda: failed_rows(client), 20, "the hung start to be reported")[0]
        assert "on_worker_start did not finish within 2 s" in failed["error"], failed
        hung_pid = failed["pid"]
        wait_until(lambda: gone(hung_pid), 30, f"the hung worker pid {hung_pid} to be killed")
        code, body = health(client)
        assert code == 503 and "did not finish within 2 s" in body["reason"], body
        assert service.process.poll() is None, "the supervisor keeps running"


# --- SIGHUP ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sighup_replaces_every_worker_and_the_running_job_finishes(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ok.py", max_workers=2, gpus="none") as service,
        client_for(service) as client,
    ):
        before = {w["pid"] for w in ready_workers(client, 2)}
        job_id = submit(client, "/steps", {"count": 15, "delay": 0.1})
        wait_until(lambda: status(client, job_id).get("progress"), 10, "the job to run")
        service.signal(signal.SIGHUP)

        def all_new() -> set[int] | None:
            ready = {w["pid"] for w in ready_workers(client, 2)}
            return ready if len(ready) == 2 and not ready & before else None

        after = wait_until(all_new, 30, "two ready workers, none of them an old one")
        done = wait_terminal(client, job_id)
        assert done["status"] == "finished" and done["result"] == {"steps": 15}, done
        assert job_row(db_path(service), job_id)["attempts"] == 1  # let finish, not killed
        assert all(gone(pid) for pid in before)
        again = run_job(client, "/pin")
        assert again["status"] == "finished" and again["result"]["pid"] in after
        assert service.process.poll() is None, "SIGHUP must not stop the supervisor"


# --- a worker start that keeps failing ------------------------------------------------------------
@pytest.mark.slow
def test_a_slot_whose_start_keeps_failing_is_backed_off_then_given_up(tmp_path: Path) -> None:
    with running_service(
        tmp_path, "queue_load_fails.py", wait_healthy=False, max_workers=1, gpus="none"
    ) as service:
        service.wait_until("/health", timeout=60)
        wait_until(
            lambda: count_in_log(service, "not restarting it"), 60, "the slot to be given up"
        )
        attempts = attempt_times(service)
        time.sleep(4)
        assert len(attempt_times(service)) == len(attempts), full_log(service)[-3000:]
        assert len(attempts) >= 3
        # the back-off doubles from 1 s between attempts (plus each start's own time)
        gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
        assert all(gap >= 0.8 * 2**i for i, gap in enumerate(gaps)), f"gaps (s): {gaps}"
        # every slot gave up: the service cannot serve, so the supervisor halts (issue 9, 5)
        assert service.process.wait(timeout=30) == 1, full_log(service)[-3000:]
        assert "halting: on_worker_start failed" in full_log(service)


# --- rows of workers whose box is gone --------------------------------------------------------------
@pytest.mark.slow
def test_worker_rows_silent_for_long_are_pruned(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ok.py", max_workers=1, gpus="none", lease_s=1) as svc,
        client_for(svc) as client,
    ):
        [mine] = ready_workers(client, 1)
        store = open_store(f"sqlite:///{db_path(svc)}", tmp_path / "data")
        try:
            store.upsert_worker(WorkerInfo("gone-box/w0.a", "gone", 1, "0", WorkerState.BUSY))
            store.upsert_worker(
                WorkerInfo("gone-box/w1.b", "gone", 2, None, WorkerState.FAILED, error="oom")
            )
        finally:
            store.close()
        with sqlite3.connect(db_path(svc), timeout=10) as conn:
            conn.execute(
                "UPDATE workers SET heartbeat_at = '2000-01-01T00:00:00.000000Z'"
                " WHERE id LIKE 'gone-box/%'"
            )

        def listed() -> set[str]:
            return {w["id"] for w in health(client)[1]["workers"]}

        wait_until(lambda: "gone-box/w0.a" not in listed(), 10, "the silent row to be pruned")
        assert listed() == {mine["id"], "gone-box/w1.b"}  # failures stay as the record


# --- a box that starts leaves other boxes' jobs alone ---------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None: the box's own SQLite file; else a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield None
        return
    with fresh_database("apipod_boxes") as url:
        yield url


def foreign_job(store: JobStore) -> str:
    """A job another (live) box's worker is running, with a long lease."""
    store.migrate()
    job = store.enqueue("/noop", {}, queue_size=10, max_attempts=3)
    claimed = store.claim(FOREIGN_WORKER, 600)
    assert claimed is not None and claimed.id == job.id
    info = WorkerInfo(FOREIGN_WORKER, "elsewhere", 4242, "0", WorkerState.BUSY, job.id)
    store.upsert_worker(info)
    return job.id


@pytest.mark.slow
def test_a_starting_box_leaves_other_boxes_jobs_alone(
    tmp_path: Path, shared_store_url: str | None
) -> None:
    data_dir = tmp_path / "data"
    url = shared_store_url or f"sqlite:///{data_dir.resolve() / 'apipod.db'}"
    store = open_store(url, data_dir)
    try:
        job_id = foreign_job(store)
        settings = {"database_url": shared_store_url} if shared_store_url else {}
        with (
            running_service(tmp_path, "queue_ok.py", max_workers=1, gpus="none", **settings) as svc,
            client_for(svc) as client,
        ):
            ready_workers(client, 1)
            assert run_job(client, "/noop")["status"] == "finished"  # this box works
            listed = {w["id"] for w in health(client)[1]["workers"]}
            foreign = store.get(job_id)
        assert foreign is not None
        assert (foreign.status, foreign.worker, foreign.attempts) == (
            JobStatus.PROCESSING,
            FOREIGN_WORKER,
            1,
        ), foreign
        assert FOREIGN_WORKER in listed, "another box's live worker row was deleted"
    finally:
        store.close()


# --- the 60 s cap of a long-poll --------------------------------------------------------------------
@pytest.mark.slow
def test_every_long_poll_is_capped_at_60_s(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_ok.py", wait_healthy=False, role="api") as svc:
        svc.wait_until("/openapi.json", status=200)
        with http_client(svc.url, timeout=90) as client:
            job_id = submit(client, "/noop")  # no workers: it stays queued
            polls = {
                "GET /status": lambda: client.get(f"/status/{job_id}", params={"wait": 3600}),
                "POST /status": lambda: client.post(
                    "/status", params={"job_id": job_id, "wait": 3600}
                ),
                "POST /noop": lambda: client.post("/noop", params={"wait": 3600}),
            }
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(len(polls)) as pool:
                futures = {name: pool.submit(poll) for name, poll in polls.items()}
                answers = {
                    name: (f.result(), time.monotonic() - started) for name, f in futures.items()
                }
    for name, (response, took) in answers.items():
        assert response.status_code == 200, (name, response.text)
        assert response.json()["status"] == "queued", (name, response.json())
        assert 55 <= took < 80, f"{name} answered after {took:.1f} s, not at the 60 s cap"
