"""Shutdown, restart after kill -9, worker recycling, /health, and where memory lives."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import ServiceProcess, running_service
from tests.supervisor.support import (
    client_for,
    count_in_log,
    db_path,
    full_log,
    health,
    job_row,
    new_service,
    ready_workers,
    run_job,
    status,
    submit,
    wait_terminal,
    wait_until,
)

# Starts whole queue-mode services (supervisor, API, workers) per test: the full tier.
pytestmark = pytest.mark.slow

MODEL_BYTES = 400 * 1024 * 1024


def terminate(service: ServiceProcess, timeout: float = 20) -> tuple[int, float]:
    """SIGTERM the supervisor; return its exit code and how long it took to exit."""
    assert service.process is not None
    started = time.monotonic()
    service.signal(signal.SIGTERM)
    code = service.process.wait(timeout=timeout)
    return code, time.monotonic() - started


def restart(service: ServiceProcess, log: Path, **settings: object) -> ServiceProcess:
    """Start the same service again on the same data dir (another port)."""
    data_dir = Path(service.env["APIPOD_DATA_DIR"])
    target = Path(service.args[-1]).name
    again = new_service(data_dir, target, log, **settings).start()
    again.wait_until("/health", status=200, timeout=60)
    return again


def processing(client: httpx.Client, job_id: str) -> dict:
    return wait_until(
        lambda: (b := status(client, job_id)).get("progress") and b, 15, f"{job_id} running"
    )


# --- shutdown ------------------------------------------------------------------------------
def test_sigterm_lets_a_running_short_job_finish(tmp_path: Path) -> None:
    with (
        running_service(
            tmp_path, "queue_ok.py", max_workers=1, gpus="none", shutdown_grace_s=5
        ) as service,
        client_for(service) as client,
    ):
        ready_workers(client, 1)
        job_id = submit(client, "/steps", {"count": 10, "delay": 0.1})
        processing(client, job_id)
        code, took = terminate(service)
        assert code == 0, service.log()
        assert took < 5, f"shutdown took {took:.1f} s (grace 5 s)"
        row = job_row(db_path(service), job_id)
        assert row["status"] == "finished", row
        assert row["attempts"] == 1
        assert row["progress"] == 1.0 and row["message"] == "step 10/10"
        assert "supervisor stopped" in full_log(service)


def test_sigterm_past_the_grace_requeues_the_job_and_a_restart_runs_it(
    tmp_path: Path,
) -> None:
    problems: list[str] = []  # shutdown faults are reported after the restart is checked too
    with (
        running_service(
            tmp_path, "queue_ok.py", max_workers=1, gpus="none", shutdown_grace_s=1
        ) as service,
        client_for(service) as client,
    ):
        ready_workers(client, 1)
        job_id = submit(client, "/steps", {"count": 30, "delay": 0.1})
        processing(client, job_id)
        code, took = terminate(service)
        if code != 0:
            problems.append(f"supervisor exited with {code}, not 0:\n{service.log()[-2500:]}")
        if took >= 1 + 3:
            problems.append(f"shutdown took {took:.1f} s (grace 1 s)")
        row = job_row(db_path(service), job_id)
        if (row["status"], row["attempts"]) != ("queued", 0):
            problems.append(
                f"job is {row['status']!r} with {row['attempts']} attempt(s) after shutdown,"
                " expected 'queued' with the interrupted attempt not counted (0)"
            )

    again = restart(service, tmp_path / "restart.log", max_workers=1, gpus="none")
    try:
        with client_for(again) as client:
            done = wait_terminal(client, job_id, timeout=30)
        assert done["status"] == "finished", done
        assert done["result"] == {"steps": 30}
        assert done["progress"] == 1.0 and done["message"] == "step 30/30"
        assert job_row(db_path(again), job_id)["attempts"] == 1  # the shutdown did not count
    finally:
        again.stop()
    assert not problems, "\n".join(problems)


def test_a_second_ctrl_c_stops_at_once_and_requeues_the_running_job(tmp_path: Path) -> None:
    """Issue 23, 6: the first SIGINT says what the shutdown waits for and that a second one
    stops now; the second kills the worker and requeues its job without counting it."""
    settings = {"max_workers": 1, "gpus": "none", "shutdown_grace_s": 60}
    with (
        running_service(tmp_path, "queue_ok.py", **settings) as service,
        client_for(service) as client,
    ):
        ready_workers(client, 1)
        job_id = submit(client, "/steps", {"count": 80, "delay": 0.1})
        processing(client, job_id)
        service.signal(signal.SIGINT)
        said = "waiting up to 60 s (shutdown_grace_s) for 1 running job(s)"
        wait_until(lambda: said in full_log(service), 15, "the first Ctrl-C's log line")
        assert "press Ctrl-C again to stop now" in full_log(service)
        assert service.process.poll() is None  # still waiting for the job
        started = time.monotonic()
        service.signal(signal.SIGINT)
        code = service.process.wait(timeout=30)
        took = time.monotonic() - started
        assert code == 0 and took < 5, f"exit {code} after {took:.1f} s:\n{service.log()}"
        row = job_row(db_path(service), job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0), row
    again = restart(service, tmp_path / "restart.log", max_workers=1, gpus="none")
    try:
        with client_for(again) as client:
            done = wait_terminal(client, job_id, timeout=60)
        assert done["status"] == "finished" and done["result"] == {"steps": 80}, done
    finally:
        again.stop()


def test_restart_after_kill_9_requeues_the_interrupted_job(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ok.py", max_workers=1, gpus="none") as service,
        client_for(service) as client,
    ):
        earlier = run_job(client, "/echo", {"text": "kept"})
        assert earlier["status"] == "finished"
        interrupted = submit(client, "/steps", {"count": 20, "delay": 0.1})
        processing(client, interrupted)
        waiting = submit(client, "/noop")
        tree = [service.process.pid] + [
            p.pid for p in psutil.Process(service.process.pid).children(recursive=True)
        ]
        service.kill_tree()
        wait_until(
            lambda: (
                not any(
                    psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                    for pid in tree
                )
            ),
            10,
            "every process of the killed service to be gone",
        )
        row = job_row(db_path(service), interrupted)
        assert (row["status"], row["attempts"]) == ("processing", 1)
        assert job_row(db_path(service), waiting)["status"] == "queued"

    again = restart(service, tmp_path / "restart.log", max_workers=1, gpus="none")
    try:
        with client_for(again) as client:
            done = wait_terminal(client, interrupted, timeout=30)
            assert done["status"] == "finished", done
            assert done["result"] == {"steps": 20}
            assert job_row(db_path(again), interrupted)["attempts"] == 2  # the lost run counts
            assert wait_terminal(client, waiting)["status"] == "finished"
            assert wait_terminal(client, waiting)["result"] == {"ok": True}
            still = status(client, earlier["job_id"])
            assert still == earlier, "a result finished before the crash changed"
        assert "requeued 1 job(s) interrupted by the previous run" in full_log(again)
    finally:
        again.stop()


# --- recycling and /health ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def recycling(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("recycle-jobs")
    with running_service(
        tmp, "queue_ok.py", max_workers=1, gpus="3", max_jobs_per_worker=2
    ) as service:
        yield service


def fresh_worker(client: httpx.Client) -> dict:
    return wait_until(
        lambda: next((w for w in ready_workers(client, 1) if w["jobs_done"] == 0), None),
        30,
        "a fresh ready worker",
    )


def test_worker_is_recycled_after_max_jobs_per_worker(recycling: ServiceProcess) -> None:
    with client_for(recycling) as client:
        fresh_worker(client)
        results = [run_job(client, "/echo", {"text": str(i)}) for i in range(4)]
        api_pid = client.get("/health").json()["api"]["pid"]
    assert [r["status"] for r in results] == ["finished"] * 4
    pids = [r["result"]["pid"] for r in results]
    # Under apipod start the API process never runs a job (no embedded worker there).
    assert api_pid not in pids, (api_pid, pids)
    assert "embedded worker" not in full_log(recycling)
    assert pids[0] == pids[1] and pids[2] == pids[3], pids
    assert pids[0] != pids[2], f"no new process after 2 jobs: {pids}"
    # the replacement ran on_worker_start before its jobs
    assert all(r["result"]["loaded_in_pid"] == r["result"]["pid"] for r in results)
    assert "recycles: ran 2 jobs (max_jobs_per_worker)" in full_log(recycling)


def test_health_reports_workers_and_queue_depth_per_endpoint(recycling: ServiceProcess) -> None:
    with client_for(recycling) as client:
        idle = fresh_worker(client)
        code, body = health(client)
        assert code == 200 and body["status"] == "ok"
        [worker] = body["workers"]
        assert worker["pid"] == idle["pid"] and psutil.pid_exists(worker["pid"])
        assert worker["gpu"] == "3"
        assert worker["state"] == "ready" and worker["current_job"] is None
        assert worker["jobs_done"] == 0
        assert worker["rss_bytes"] > 20_000_000
        assert worker["id"] and worker["host"]
        assert body["queue"] == {}

        running = submit(client, "/pin", {"delay": 2.0})
        queued = [
            submit(client, "/noop"),
            submit(client, "/noop"),
            submit(client, "/echo", {"text": "x"}),
        ]

        def busy() -> dict | None:
            code, body = health(client)
            [w] = body["workers"]
            return body if code == 200 and w["state"] == "busy" else None

        body = wait_until(busy, 10, "the worker to show as busy")
        [worker] = body["workers"]
        assert worker["current_job"] == running
        assert worker["pid"] == idle["pid"]
        assert body["queue"] == {"/noop": 2, "/echo": 1}

        for job_id in queued:
            assert client.post(f"/cancel/{job_id}").json()["status"] == "cancelled"
        _, body = health(client)
        assert body["queue"] == {}
        done = wait_terminal(client, running)
        assert done["result"]["pid"] == idle["pid"]
        after = wait_until(
            lambda: next((w for w in ready_workers(client, 1) if w["jobs_done"] == 1), None),
            5,
            "jobs_done to count the job",
        )
        assert after["pid"] == idle["pid"]


def test_worker_over_its_memory_cap_is_replaced_after_each_job(tmp_path: Path) -> None:
    with (
        running_service(
            tmp_path, "queue_ok.py", max_workers=1, gpus="none", worker_max_rss_mb=50
        ) as service,
        client_for(service) as client,
    ):
        [worker] = ready_workers(client, 1)
        assert worker["rss_bytes"] > 50_000_000  # the premise: a worker is bigger than 50 MB
        results = [run_job(client, "/echo", {"text": str(i)}) for i in range(3)]
        assert [r["status"] for r in results] == ["finished"] * 3
        pids = [r["result"]["pid"] for r in results]
        assert len(set(pids)) == 3, f"expected a new worker for every job: {pids}"
        assert count_in_log(service, "over worker_max_rss_mb 50") >= 2


# --- memory: the API process never loads the model -------------------------------------------
def test_api_process_stays_small_while_workers_hold_the_model(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_memory.py", max_workers=2, gpus="none") as service,
        client_for(service) as client,
    ):
        workers = ready_workers(client, 2, timeout=60)
        done = run_job(client, "/size")
        assert done["result"] == {"model_bytes": MODEL_BYTES}

        supervisor = psutil.Process(service.process.pid)
        children = {p.pid: p for p in supervisor.children()}
        worker_pids = {w["pid"] for w in workers}
        assert worker_pids <= set(children), "workers are the supervisor's children"
        match = re.search(r"API process pid (\d+)", full_log(service))
        assert match, full_log(service)
        api_pid = int(match.group(1))
        assert api_pid in children and api_pid not in worker_pids

        api_rss = children[api_pid].memory_info().rss
        assert api_rss < 150 * 1024 * 1024, f"API process RSS {api_rss / 2**20:.0f} MiB"
        for pid in worker_pids:
            rss = children[pid].memory_info().rss
            assert rss > MODEL_BYTES, f"worker {pid} RSS {rss / 2**20:.0f} MiB"
        for worker in workers:
            assert worker["rss_bytes"] > MODEL_BYTES  # /health reports it too
        _, body = health(client)
        if "api" in body:  # /health may describe the API process as well
            assert body["api"]["pid"] == api_pid
            assert body["api"]["rss_bytes"] < 150 * 1024 * 1024


def test_a_model_loaded_at_import_warns_once_and_stays_out_of_the_supervisor(
    tmp_path: Path,
) -> None:
    """Issue 23, 5: one warning naming on_worker_start (not one per process), and the
    supervisor runs without the service (it imported it only to read its settings)."""
    with (
        running_service(tmp_path, "queue_import_model.py", max_workers=1, gpus="none") as svc,
        client_for(svc) as client,
    ):
        [worker] = ready_workers(client, 1, timeout=60)
        assert run_job(client, "/size")["result"] == {"model_bytes": 256 * 1024 * 1024}
        log = full_log(svc)
        assert count_in_log(svc, "@app.on_worker_start") == 1, log
        assert "importing queue_import_model took" in log
        supervisor_rss = psutil.Process(svc.process.pid).memory_info().rss
        worker_rss = psutil.Process(worker["pid"]).memory_info().rss
        assert worker_rss > 256 * 1024 * 1024
        assert supervisor_rss < worker_rss - 200 * 1024 * 1024, (supervisor_rss, worker_rss)
