"""``apipod jobs`` and ``apipod workers`` on the store of a running server: the commands
are separate processes that open the same SQLite file as the service, as an operator's
shell would."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    SERVICES,
    TERMINAL,
    ServiceProcess,
    apipod_command,
    free_port,
    http_client,
    running_service,
    service_env,
    wait_for_status,
)
from tests.supervisor.support import ready_workers, submit
from tests.test_cli import Service

pytestmark = pytest.mark.slow


def apipod(service: ServiceProcess, *args: str, expect: int = 0) -> str:
    """Run ``apipod <args> --data-dir <the service's>``; its stdout."""
    data_dir = service.env["APIPOD_DATA_DIR"]
    command = apipod_command(*args, "--data-dir", data_dir)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=service.env)
    assert done.returncode == expect, done.stdout + done.stderr
    return done.stdout


def apipod_json(service: ServiceProcess, *args: str, expect: int = 0) -> Any:
    return json.loads(apipod(service, *args, "--json", expect=expect))


def test_jobs_commands_on_a_running_service(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ops.py") as service,
        http_client(service.url, timeout=30) as client,
    ):
        ready_workers(client)
        marker = tmp_path / "marker"
        done = submit(client, "/work", {"steps": 1, "delay": 0})
        failing = submit(client, "/flaky", {"marker": str(marker)})
        wait_for_status(client, done, {"finished"})
        wait_for_status(client, failing, {"failed"})

        # ls: a table for people, JSON for scripts, with filters
        table = apipod(service, "jobs", "ls")
        assert table.splitlines()[0].split()[:3] == ["ID", "ENDPOINT", "STATUS"]
        assert done in table and failing in table
        rows = apipod_json(service, "jobs", "ls", "--status", "failed")
        assert [r["id"] for r in rows] == [failing]
        assert rows[0]["endpoint"] == "/flaky" and rows[0]["attempts"] == "1/3"
        by_endpoint = apipod_json(service, "jobs", "ls", "--endpoint", "work")  # no slash
        assert [r["id"] for r in by_endpoint] == [done]

        # show: inputs, error, attempts, worker, timings
        shown = apipod_json(service, "jobs", "show", failing)
        assert shown["inputs"] == {"marker": str(marker)}
        assert "is missing" in shown["error"] and shown["attempts"] == 1
        assert shown["worker"] and shown["run_s"] >= 0 and shown["finished_at"].endswith("Z")
        assert "steps" in apipod(service, "jobs", "show", done)

        # retry: the failed job goes back to the queue and, now that it can, finishes
        marker.write_text("present")
        retried = apipod_json(service, "jobs", "retry", failing)
        assert retried["status"] == "queued"
        body = wait_for_status(client, failing, {"finished", "failed"})
        assert body["status"] == "finished" and body["result"] == {"marker": str(marker)}
        assert apipod_json(service, "jobs", "show", failing)["attempts"] == 2
        refused = apipod_json(service, "jobs", "retry", failing, expect=1)
        assert "finished" in refused["error"]

        # cancel a running job from the shell: the supervisor stops it
        running = submit(client, "/work", {"steps": 400, "delay": 0.05})
        wait_for_status(client, running, {"processing"})
        waiting = submit(client, "/work", {"steps": 2, "delay": 0})
        assert apipod_json(service, "jobs", "cancel", waiting)["status"] == "cancelled"
        assert apipod_json(service, "jobs", "cancel", running)["status"] == "cancelled"
        assert client.get(f"/status/{running}").json()["status"] == "cancelled"
        ready_workers(client)  # the worker stopped the job and serves again
        # a cancelled job keeps its inputs: retried, it runs with them (issue 23)
        assert apipod_json(service, "jobs", "retry", waiting)["status"] == "queued"
        assert wait_for_status(client, waiting, TERMINAL)["result"] == {"steps": 2}

        # workers
        workers = apipod_json(service, "workers")
        assert len(workers) == 1 and workers[0]["state"] in ("ready", "busy")
        assert workers[0]["jobs_done"] >= 2
        assert "JOBS_DONE" in apipod(service, "workers")

        # purge: only ended jobs, by status and age
        assert apipod_json(service, "jobs", "purge", "--older-than", "1h") == {"deleted": 0}
        queued = submit(client, "/work", {"steps": 1, "delay": 0})
        wait_for_status(client, queued, {"finished"})
        purged = apipod_json(service, "jobs", "purge", "--status", "cancelled")
        assert purged == {"deleted": 1}
        left = {r["id"] for r in apipod_json(service, "jobs", "ls")}
        assert left == {done, failing, queued, waiting}
        assert client.get(f"/status/{running}").status_code == 404
        apipod(service, "jobs", "show", running, expect=1)


def test_job_commands_refuse_a_missing_store(tmp_path: Path) -> None:
    command = apipod_command("jobs", "ls", "--data-dir", str(tmp_path / "nowhere"))
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no job store" in done.stderr and not (tmp_path / "nowhere").exists()
    assert f"{tmp_path / 'nowhere' / 'apipod.db'} (the data dir from --data-dir)" in done.stderr


def test_one_service_file_finds_the_same_jobs_from_any_folder(tmp_path: Path) -> None:
    """Issue 23, 4: the default data dir sits beside the service file, not in the folder
    ``apipod start`` ran from; the job commands find it from that file's folder or with
    ``--service``, and elsewhere say where they looked."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    shutil.copy(SERVICES / "queue_ok.py", project / "service.py")
    env = {k: v for k, v in service_env(tmp_path / "unused").items() if k != "APIPOD_DATA_DIR"}
    port = free_port()
    env.update(APIPOD_PORT=str(port), APIPOD_MAX_WORKERS="1", APIPOD_GPUS="none")
    args = apipod_command("start", str(project / "service.py"))
    service = Service(args, env, port, tmp_path / "service.log", cwd=elsewhere).start()
    try:
        service.wait_until("/health", status=200, timeout=60)
        assert f"data dir {project / 'apipod-data'}" in service.log()
        with http_client(service.url, timeout=30) as client:
            job = submit(client, "/noop")
            wait_for_status(client, job, {"finished"})

        def ls(cwd: Path, *flags: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
            command = apipod_command("jobs", "ls", "--json", *flags)
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
            assert done.returncode == expect, done.stdout + done.stderr
            return done

        assert [r["id"] for r in json.loads(ls(project).stdout)] == [job]
        beside = ls(elsewhere, "--service", str(project / "service.py"))
        assert [r["id"] for r in json.loads(beside.stdout)] == [job]
        lost = ls(elsewhere, expect=2).stderr
        assert f"{elsewhere / 'apipod-data' / 'apipod.db'} (the data dir in the current" in lost
        assert "--service" in lost and not (elsewhere / "apipod-data").exists()
    finally:
        service.stop()


def test_purge_refuses_bad_durations(tmp_path: Path) -> None:
    command = apipod_command("jobs", "purge", "--older-than", "soon")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a duration" in done.stderr
