"""Jobs that raise, workers that die, and an on_worker_start that fails."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import ServiceProcess, running_service
from tests.supervisor.support import (
    client_for,
    count_in_log,
    db_path,
    full_log,
    health,
    job_row,
    ready_workers,
    run_job,
    submit,
    wait_terminal,
    wait_until,
)

# Starts whole queue-mode services (supervisor, API, workers) per test: the full tier.
pytestmark = pytest.mark.slow

LOAD_ERROR = "RuntimeError: model weights not found at /models/missing.bin"


@pytest.fixture(scope="module")
def raises(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("raises")
    with running_service(tmp, "queue_raises.py", max_workers=1, gpus="none") as service:
        yield service


@pytest.fixture(scope="module")
def crashes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("crashes")
    with running_service(
        tmp, "queue_exits.py", max_workers=2, gpus="none", max_attempts=2, lease_s=2
    ) as service:
        with client_for(service) as client:
            ready_workers(client, 2)
        yield service


@pytest.fixture(scope="module")
def load_fails(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("load-fails")
    with running_service(
        tmp, "queue_load_fails.py", wait_healthy=False, max_workers=1, gpus="none"
    ) as service:
        yield service


# --- an exception in the job ---------------------------------------------------------------
def test_exception_fails_the_job_with_message_and_traceback(raises: ServiceProcess) -> None:
    with client_for(raises) as client:
        [before] = ready_workers(client, 1)
        done = run_job(client, "/boom", {"message": "custom failure 42"})
        assert done["status"] == "failed", done
        assert "result" not in done
        # Clients read "Type: message"; the traceback is for operators, in the store.
        assert done["error"] == "ValueError: custom failure 42", done["error"]
        row = job_row(db_path(raises), done["job_id"])
        assert "Traceback (most recent call last)" in row["traceback"]
        assert "raise ValueError(message)" in row["traceback"]
        assert row["attempts"] == 1  # not retried

        # the worker survived and keeps serving
        again = run_job(client, "/boom", {})
        assert again["status"] == "failed"
        assert again["error"].startswith("ValueError: kaboom")
        # the worker's row is written asynchronously: wait for the count to show up
        after = wait_until(
            lambda: next(
                (w for w in ready_workers(client, 1) if w["jobs_done"] >= before["jobs_done"] + 2),
                None,
            ),
            5,
            "jobs_done to count both jobs",
        )
    assert after["pid"] == before["pid"]
    assert after["jobs_done"] == before["jobs_done"] + 2


# --- a worker that dies --------------------------------------------------------------------
def test_worker_exit_is_retried_then_fails_with_its_exit_code(crashes: ServiceProcess) -> None:
    with client_for(crashes) as client:
        done = run_job(client, "/exit", {"code": 7}, timeout=60)
    assert done["status"] == "failed", done
    assert done["error"] == "worker crashed (exit code 7)"
    row = job_row(db_path(crashes), done["job_id"])
    assert row["attempts"] == 2  # max_attempts
    assert "died with exit code 7" in full_log(crashes)


def test_segfault_is_retried_then_fails_with_signal_exit_code(crashes: ServiceProcess) -> None:
    with client_for(crashes) as client:
        ready_workers(client, 1, timeout=60)
        done = run_job(client, "/segfault", timeout=60)
    assert done["status"] == "failed", done
    assert done["error"] == "worker crashed (exit code -11)"
    assert job_row(db_path(crashes), done["job_id"])["attempts"] == 2


def test_job_that_crashes_once_finishes_on_its_second_attempt_on_a_new_worker(
    crashes: ServiceProcess,
) -> None:
    with client_for(crashes) as client:
        before = {w["pid"] for w in ready_workers(client, 2, timeout=60)}
        done = run_job(client, "/exit-once", {"marker": "second-try"}, timeout=60)
        assert done["status"] == "finished", done
        assert done["result"] == {"survived": True}
        assert "error" not in done
        assert job_row(db_path(crashes), done["job_id"])["attempts"] == 2

        # the crashed worker was respawned: two ready workers again, one of them new
        workers = ready_workers(client, 2, timeout=60)
        wait_until(
            lambda: {w["pid"] for w in ready_workers(client, 2)} - before,
            30,
            "a respawned worker with a new pid",
        )
        # and jobs succeed on the first try now (the marker remembers the crash)
        again = [submit(client, "/exit-once", {"marker": "second-try"}) for _ in range(2)]
        results = [wait_terminal(client, job_id) for job_id in again]
        workers = ready_workers(client, 2)
    assert [r["status"] for r in results] == ["finished", "finished"]
    assert [job_row(db_path(crashes), r["job_id"])["attempts"] for r in results] == [1, 1]
    pids = {w["pid"] for w in workers}
    assert len(pids) == 2 and pids != before, f"workers {pids}, before the crash {before}"
    assert count_in_log(crashes, "died with exit code 9; respawning in") == 1


# --- on_worker_start raises ------------------------------------------------------------------
def test_failed_worker_start_makes_health_503_with_the_reason(load_fails: ServiceProcess) -> None:
    with client_for(load_fails) as client:

        def failed() -> dict | None:
            try:
                code, body = health(client)
            except httpx.TransportError:
                return None
            failed = [w for w in body.get("workers", []) if w["state"] == "failed"]
            return body if code == 503 and failed else None

        body = wait_until(failed, 60, "/health 503 naming the failed worker")
        assert body["status"] == "unavailable"
        assert LOAD_ERROR in body["reason"], body
        # the failed worker's row stays (a retry may show up beside it, "starting")
        [worker] = [w for w in body["workers"] if w["state"] == "failed"]
        assert LOAD_ERROR in worker["error"]
        assert all(w["state"] in ("failed", "starting") for w in body["workers"]), body

        job_id = submit(client, "/never")
        time.sleep(0.5)
        assert client.get(f"/status/{job_id}").json()["status"] == "queued"
        code, _ = health(client)
        assert code == 503


def test_failed_worker_start_is_not_respawned_in_a_tight_loop(
    load_fails: ServiceProcess,
) -> None:
    wait_until(
        lambda: count_in_log(load_fails, "failed to start") >= 1,
        60,
        "a 'failed to start' line in the log",
    )
    first = count_in_log(load_fails, "failed to start")
    time.sleep(5)
    later = count_in_log(load_fails, "failed to start")
    assert later - first <= 3, f"{later - first} more start failures in 5 s"
    assert later <= 4, full_log(load_fails)
    assert LOAD_ERROR in full_log(load_fails)
    assert load_fails.process.poll() is None, "the supervisor itself keeps running"
