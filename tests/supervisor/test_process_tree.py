"""The process tree: no child outlives its supervisor, one supervisor per data dir, and
what the supervisor says at start and refuses before spawning anything."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import SERVICES, apipod_command, free_port, running_service, service_env
from tests.supervisor.support import (
    client_for,
    full_log,
    job_row,
    ready_workers,
    submit,
    wait_terminal,
    wait_until,
    worker_running,
)


def tree(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    living = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                living.append(process)
        except psutil.NoSuchProcess:
            pass
    return living


@pytest.mark.slow
def test_kill_9_of_the_supervisor_alone_takes_every_child_with_it(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=2, gpus="none") as service:
        with client_for(service) as client:
            ready_workers(client, 2)
            job_id = submit(client, "/work", {"delay": 30})
            worker_running(client, job_id)
        children = tree(service.process.pid)
        titles = sorted(" ".join(c.cmdline()).strip() for c in children)
        titles = [t for t in titles if "resource_tracker" not in t]  # multiprocessing's own
        assert titles == ["apipod: api", "apipod: worker 0 (cpu)", "apipod: worker 1 (cpu)"]
        os.kill(service.process.pid, signal.SIGKILL)  # the supervisor only, not its group
        service.process.wait(timeout=10)
        killed_at = time.monotonic()
        wait_until(lambda: not alive(children), 2.0, f"children of the supervisor gone: {children}")
        assert time.monotonic() - killed_at < 2.0


@pytest.mark.slow
def test_a_second_start_on_the_same_data_dir_is_refused_and_the_first_keeps_its_jobs(
    tmp_path: Path,
) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as first:
        with client_for(first) as client:
            ready_workers(client, 1)
            job_id = submit(client, "/work", {"n": 7, "delay": 3})
            worker = worker_running(client, job_id)
            env = service_env(Path(first.env["APIPOD_DATA_DIR"]), port=free_port())
            started = time.monotonic()
            second = subprocess.run(
                apipod_command("start", str(SERVICES / "queue_faults.py")),
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            took = time.monotonic() - started
            done = wait_terminal(client, job_id, timeout=30)
        output = second.stdout + second.stderr
        assert second.returncode != 0, output
        assert f"data dir {first.env['APIPOD_DATA_DIR']} is in use" in output, output
        assert f"(pid {first.process.pid})" in output, output
        assert took < 15, f"the refusal took {took:.1f} s"
        assert "worker" not in output.replace("apipod supervisor", ""), output
        assert done["status"] == "finished" and done["result"]["n"] == 7, done
        row = job_row(Path(first.env["APIPOD_DATA_DIR"]) / "apipod.db", job_id)
        assert row["attempts"] == 1 and row["worker"] == worker["id"]
        assert "interrupted by the previous run" not in full_log(first)


@pytest.mark.slow
def test_the_lock_dies_with_its_holder(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as first:
        first.kill_tree()
    with (
        running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as again,
        client_for(again) as client,
    ):
        assert wait_terminal(client, submit(client, "/work", {"n": 1}))["status"] == "finished"


@pytest.mark.slow
def test_the_start_banner_names_the_data_dir_endpoints_workers_and_docs(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=2, gpus="1,3") as service:
        log = full_log(service)
    data_dir = service.env["APIPOD_DATA_DIR"]
    assert f"data dir {data_dir}" in log, log
    assert f"job store: SQLite {data_dir}/apipod.db" in log
    assert "endpoints: POST /work, POST /hold-gil, POST /nul-error" in log
    assert "workers: 2 on GPU 1, 3" in log
    assert f"API: {service.url}  (docs {service.url}/docs)" in log


def start_and_wait(tmp_path: Path, *extra: str, **settings: object) -> tuple[int, str, float]:
    env = service_env(tmp_path / "data", gpus="none", **settings)
    args = apipod_command("start", str(SERVICES / "queue_faults.py"), *extra)
    started = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def test_a_port_in_use_is_reported_in_one_line_before_any_worker_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output, took = start_and_wait(tmp_path, "--port", str(port))
    assert code == 2, output
    assert f"cannot serve on http://127.0.0.1:{port}: already in use" in output, output
    assert "worker" not in output and "Traceback" not in output, output
    assert "Errno" not in output, output
    assert took < 20


def test_a_gpu_that_does_not_exist_is_an_error_at_start(tmp_path: Path) -> None:
    code, output, _ = start_and_wait(tmp_path, "--gpus", "7", "--port", str(free_port()))
    assert code == 2, output
    assert "GPU 7 does not exist (this box has GPU(s) 0, 1, 2, 3)" in output, output
    assert "worker" not in output.split("does not exist")[0], output
