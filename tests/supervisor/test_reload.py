"""``apipod start --reload``: an edit of the service file restarts the API and the
workers; a job running during the edit goes back to the queue (its attempt not counted)
and finishes on the new workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import SERVICES, apipod_command, free_port, service_env
from tests.supervisor.support import (
    client_for,
    db_path,
    full_log,
    job_row,
    ready_workers,
    status,
    submit,
    wait_terminal,
    wait_until,
)
from tests.test_cli import Service

# Starts a whole queue-mode service: the full tier.
pytestmark = pytest.mark.slow


def test_an_edit_restarts_the_api_and_workers_and_requeues_the_running_job(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    service_file = project / "service.py"
    shutil.copy(SERVICES / "queue_reload.py", service_file)
    port = free_port()
    env = service_env(tmp_path / "data", port=port, max_workers=1, gpus="none")
    args = apipod_command("start", str(service_file), "--reload")
    service = Service(args, env, port, tmp_path / "service.log", cwd=tmp_path).start()
    try:
        service.wait_until("/health", status=200, timeout=60)
        with client_for(service) as client:
            ready_workers(client, 1, timeout=60)
            first = client.post("/answer", params={"wait": 30}, json={}).json()
            assert first["result"] == {"answer": "before the edit"}, first
            running = submit(client, "/steps", {"count": 40, "delay": 0.1})
            wait_until(lambda: status(client, running).get("progress"), 30, "job running")
            text = service_file.read_text().replace('"before the edit"', '"after the edit"')
            service_file.write_text(text)

            def new_answer() -> bool:
                try:
                    body = client.post("/answer", params={"wait": 5}, json={}).json()
                except Exception:  # the API restarts: refused or cut connections meanwhile
                    return False
                return body.get("result") == {"answer": "after the edit"}

            wait_until(new_answer, 60, "the edited answer", every=0.2)
            assert "--reload: service.py changed" in full_log(service)
            assert f"job {running} requeued" in full_log(service)  # it ran during the edit
            done = wait_terminal(client, running, timeout=60)
            assert done["status"] == "finished" and done["result"] == {"steps": 40}, done
        assert job_row(db_path(service), running)["attempts"] == 1  # the reload did not count
    finally:
        service.stop()
