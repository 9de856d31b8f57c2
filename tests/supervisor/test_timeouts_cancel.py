"""Job timeouts, cancellation of running and queued jobs, and lease recovery."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.helpers import ServiceProcess, running_service, wait_for_status
from tests.supervisor.support import (
    client_for,
    db_path,
    full_log,
    health,
    job_row,
    ready_workers,
    run_job,
    seconds_between,
    status,
    submit,
    wait_terminal,
    wait_until,
    worker_running,
)

# Starts whole queue-mode services (supervisor, API, workers) per test: the full tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hangs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("hangs")
    with running_service(
        tmp, "queue_hangs.py", max_workers=1, gpus="none", job_timeout=1, cancel_grace_s=1
    ) as service:
        yield service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("ok")
    with running_service(
        tmp, "queue_ok.py", max_workers=2, gpus="none", lease_s=2, cancel_grace_s=1
    ) as service:
        yield service


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(service) as client:
        ready_workers(client, 2, timeout=60)  # earlier tests may have replaced a worker
        yield client


def pids(client: httpx.Client) -> set[int]:
    _, body = health(client)
    return {w["pid"] for w in body["workers"]}


def replaced(
    client: httpx.Client, before: set[int], old_pid: int, count: int, timeout: float
) -> set[int]:
    """Wait until ``count`` workers are ready again, ``old_pid`` not among them and a pid
    not in ``before`` (the pids when the test began) in its place; return the ready pids."""

    def check() -> set[int] | None:
        _, body = health(client)
        ready = {w["pid"] for w in body["workers"] if w["state"] == "ready"}
        now = {w["pid"] for w in body["workers"]}
        fresh = ready - before - {old_pid}
        return ready if old_pid not in now and len(ready) >= count and fresh else None

    return wait_until(check, timeout, f"worker pid {old_pid} replaced by a new one")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# --- hard timeouts ---------------------------------------------------------------------------
def test_job_timeout_kills_the_worker_and_a_new_one_takes_its_place(
    hangs: ServiceProcess,
) -> None:
    with client_for(hangs) as client:
        [worker] = ready_workers(client, 1)
        started = time.monotonic()
        done = run_job(client, "/hang", timeout=20)
        elapsed = time.monotonic() - started
        assert done["status"] == "timeout", done
        assert "timeout of 1 s" in done["error"], done["error"]
        assert "result" not in done
        assert 0.9 <= seconds_between(done, "started_at", "finished_at") < 4, done["metrics"]
        assert elapsed < 8
        wait_until(lambda: gone(worker["pid"]), 30, "the hung worker to be killed")
        replaced(client, {worker["pid"]}, worker["pid"], 1, timeout=30)
    assert f"timed out on worker {worker['id']}; worker killed" in full_log(hangs)


def test_per_endpoint_timeout_overrides_the_default(client: httpx.Client) -> None:
    before = pids(client)
    job_id = submit(client, "/short", {"seconds": 5})
    worker = worker_running(client, job_id)
    done = wait_terminal(client, job_id, timeout=20)
    assert done["status"] == "timeout", done
    assert "timeout of 1 s" in done["error"]
    assert seconds_between(done, "started_at", "finished_at") < 3.5  # not the 5 s sleep
    new = replaced(client, before, worker["pid"], 2, timeout=30)
    later = [submit(client, "/pin", {"delay": 0.5}) for _ in range(2)]
    served_by = {wait_terminal(client, j)["result"]["pid"] for j in later}
    assert served_by == new, "both workers, the new one included, serve jobs"


# --- cancelling a running job ----------------------------------------------------------------
def test_cancel_is_cooperative_when_the_job_reports_progress(client: httpx.Client) -> None:
    job_id = submit(client, "/steps", {"count": 100, "delay": 0.1})
    running = wait_until(
        lambda: (b := status(client, job_id)).get("progress") and b, 10, "progress reported"
    )
    assert running["status"] == "processing"
    worker = worker_running(client, job_id)

    response = client.post(f"/cancel/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    cancelled_at = time.monotonic()

    # The job notices at its next report and stops: the same worker process is idle again
    # long before the job would have ended (~10 s), and was not killed after the grace
    # (a job that kept running would be: its progress writes are refused by the store,
    # so the job's progress cannot tell whether it stopped).
    same = wait_until(
        lambda: next((w for w in ready_workers(client, 2) if w["pid"] == worker["pid"]), None),
        5,
        "the worker that ran the cancelled job to be ready again",
    )
    assert time.monotonic() - cancelled_at < 4
    assert same["current_job"] is None
    assert status(client, job_id)["status"] == "cancelled"
    assert not gone(worker["pid"])
    later = [submit(client, "/pin", {"delay": 0.5}) for _ in range(2)]
    results = [wait_terminal(client, j) for j in later]
    assert worker["pid"] in {r["result"]["pid"] for r in results}


def test_cancel_kills_a_job_that_never_reports_after_the_grace(client: httpx.Client) -> None:
    before = pids(client)
    job_id = submit(client, "/spin", {"seconds": 60})
    worker = worker_running(client, job_id)
    cancelled_at = time.monotonic()
    assert client.post(f"/cancel/{job_id}").json()["status"] == "cancelled"
    wait_until(lambda: gone(worker["pid"]), 10, "the spinning worker to be killed")
    killed_after = time.monotonic() - cancelled_at
    assert 0.8 <= killed_after < 5, f"killed {killed_after:.1f} s after the cancel (grace 1 s)"
    replaced(client, before, worker["pid"], 2, timeout=30)
    assert status(client, job_id)["status"] == "cancelled"


def test_a_cancelled_queued_job_never_runs(service: ServiceProcess, client: httpx.Client) -> None:
    # occupy both workers, so the next job has to wait in the queue
    busy = [submit(client, "/spin", {"seconds": 1.5}) for _ in range(2)]
    for job_id in busy:
        worker_running(client, job_id)
    queued = submit(client, "/noop")
    cancelled = client.post(f"/cancel/{queued}").json()
    assert cancelled["status"] == "cancelled"
    assert "started_at" not in cancelled["metrics"]
    after = submit(client, "/noop")  # queued behind the cancelled one

    for job_id in busy:
        assert wait_terminal(client, job_id)["status"] == "finished"
    assert wait_terminal(client, after)["status"] == "finished"
    final = status(client, queued)
    assert final["status"] == "cancelled"
    assert "started_at" not in final["metrics"]
    assert "result" not in final
    assert job_row(db_path(service), queued)["attempts"] == 0


# --- leases ----------------------------------------------------------------------------------
def test_a_hung_workers_lease_runs_out_and_another_worker_finishes_the_job(
    service: ServiceProcess, client: httpx.Client
) -> None:
    job_id = submit(client, "/steps", {"count": 20, "delay": 0.1})
    worker = worker_running(client, job_id)
    first = wait_for_status(client, job_id, {"processing"})
    os.kill(worker["pid"], signal.SIGSTOP)
    try:
        done = wait_terminal(client, job_id, timeout=30)
        assert done["status"] == "finished", done
        assert done["result"] == {"steps": 20}
        assert done["progress"] == 1.0
        row = job_row(db_path(service), job_id)
        assert row["attempts"] == 2
        assert row["worker"] != worker["id"], "the stopped worker cannot have finished it"
        assert done["metrics"]["started_at"] != first["metrics"]["started_at"]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker["pid"], signal.SIGCONT)

    time.sleep(1.5)  # the resumed (or killed) worker must not touch the finished job
    again = status(client, job_id)
    assert again == done, "a finished job changed after the hung worker resumed"
    row_after = job_row(db_path(service), job_id)
    assert (row_after["status"], row_after["attempts"], row_after["worker"]) == (
        "finished",
        2,
        row["worker"],
    )
    assert "recovered 1 job(s) with expired leases" in full_log(service)
