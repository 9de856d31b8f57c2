"""Workers that are alive but silent, workers that can never start, and poison jobs."""

from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import running_service
from tests.supervisor.support import (
    client_for,
    db_path,
    full_log,
    job_row,
    ready_workers,
    run_job,
    submit,
    wait_terminal,
    wait_until,
)


@pytest.mark.slow
def test_a_job_holding_the_gil_longer_than_the_lease_finishes(tmp_path: Path) -> None:
    with running_service(
        tmp_path, "queue_faults.py", max_workers=1, gpus="none", lease_s=2, cancel_grace_s=1
    ) as service:
        with client_for(service) as client:
            [worker] = ready_workers(client, 1)
            done = run_job(client, "/hold-gil", {"seconds": 8}, timeout=60)
            assert done["status"] == "finished", done
            assert done["result"] == {"held": 8, "pid": worker["pid"]}
            row = job_row(db_path(service), done["job_id"])
            assert row["attempts"] == 1, row
            assert [w["pid"] for w in ready_workers(client, 1)] == [worker["pid"]]
        log = full_log(service)
        assert "lease expired" not in log and "expired leases" not in log, log[-3000:]


@pytest.mark.slow
def test_a_model_that_never_loads_stops_the_service_and_keeps_the_queue(tmp_path: Path) -> None:
    with running_service(
        tmp_path, "queue_load_fails.py", wait_healthy=False, max_workers=2, gpus="none"
    ) as service:

        def failing() -> bool:
            response = httpx.get(service.url + "/health", timeout=5)
            return response.status_code == 503 and "model weights" in response.json()["reason"]

        service.wait_until("/health", timeout=60)
        wait_until(failing, 60, "/health 503 naming the load error")
        job_id = httpx.post(service.url + "/never", json={}, timeout=10).json()["job_id"]
        code = service.process.wait(timeout=120)
        log = full_log(service)
    assert code == 1, log[-3000:]
    halt = log[log.index("halting: on_worker_start failed 5 times") :]
    assert "RuntimeError: model weights not found at /models/missing.bin" in halt
    assert "Traceback (most recent call last)" in halt and "queue_load_fails.py" in halt
    assert "queued jobs stay in the store" in halt
    assert job_row(db_path(service), job_id)["status"] == "queued"
    assert "supervisor failed" not in log  # a decision, not a crash


def insert_raw_job(database: Path, inputs_text: str) -> str:
    """A job row written by something other than APIPod (a hand edit, a broken tool)."""
    job_id = uuid.uuid4().hex
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    conn = sqlite3.connect(database, timeout=10)
    try:
        conn.execute(
            "INSERT INTO jobs (id, endpoint, status, inputs, attempts, max_attempts,"
            " created_at, queued_at) VALUES (?, '/work', 'queued', ?, 0, 3, ?, ?)",
            (job_id, inputs_text, stamp, stamp),
        )
        conn.commit()
    finally:
        conn.close()
    return job_id


@pytest.mark.slow
def test_poison_fails_alone_on_its_first_attempt_and_the_worker_survives(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as service:
        with client_for(service) as client:
            [worker] = ready_workers(client, 1)
            poison = insert_raw_job(db_path(service), '{"n": 1,')
            unreadable = wait_terminal(client, poison, timeout=30)
            nul = run_job(client, "/nul-error", timeout=30)
            after = run_job(client, "/work", {"n": 3}, timeout=30)
            [same] = ready_workers(client, 1)
        log = full_log(service)
    assert unreadable["status"] == "failed", unreadable
    assert unreadable["error"].startswith("the stored job cannot be read: stored inputs")
    assert job_row(db_path(service), poison)["attempts"] == 1
    assert nul["status"] == "failed", nul
    assert nul["error"].startswith("ValueError: a NUL \\u0000 and a lone \\udc80 in the error")
    assert job_row(db_path(service), nul["job_id"])["attempts"] == 1
    assert after["status"] == "finished" and after["result"]["pid"] == worker["pid"]
    assert same["pid"] == worker["pid"]
    assert "died with exit code" not in log


@pytest.mark.slow
def test_status_polls_are_not_logged_at_info(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as service:
        with client_for(service) as client:
            job_id = submit(client, "/work", {"n": 1})
            for _ in range(5):
                client.get(f"/status/{job_id}")
            wait_terminal(client, job_id)
        log = full_log(service)
    assert '"POST /work HTTP/1.1" 200' in log  # the access log is on
    assert f"GET /status/{job_id}" not in log and "GET /health" not in log
    assert "no longer ours" not in log, log


@pytest.mark.slow
def test_ps_shows_each_process_role(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as service:
        ps = subprocess.run(
            ["ps", "-o", "args=", "--ppid", str(service.process.pid)],
            text=True,
            capture_output=True,
        )
        own = subprocess.run(
            ["ps", "-o", "args=", "-p", str(service.process.pid)], text=True, capture_output=True
        )
    titles = {line.strip() for line in ps.stdout.splitlines() if line.startswith("apipod")}
    assert titles == {"apipod: api", "apipod: worker 0 (cpu)"}, ps.stdout
    assert own.stdout.strip() == "apipod: supervisor"


@pytest.mark.slow
def test_health_is_503_while_a_worker_slot_retries_its_start(tmp_path: Path) -> None:
    with running_service(
        tmp_path, "queue_gpu1_fails.py", wait_healthy=False, max_workers=2, gpus="0,1"
    ) as service:

        def degraded() -> dict | None:
            response = httpx.get(service.url + "/health", timeout=5)
            body = response.json()
            ready = [w for w in body.get("workers", []) if w["state"] == "ready"]
            return body if response.status_code == 503 and ready else None

        service.wait_until("/health", timeout=60)
        body = wait_until(degraded, 60, "503 with one worker ready and one retrying")
        assert body["status"] == "unavailable"
        assert "uncorrectable ECC error on GPU 1" in body["reason"], body
        # the healthy worker still serves jobs meanwhile
        with client_for(service) as client:
            assert run_job(client, "/work")["result"] == {"gpu": "0"}
