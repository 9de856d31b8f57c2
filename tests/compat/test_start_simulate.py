"""How a service written for the original APIPod is started: ``app.start(port, host)``
(its argument order), its errors, ``apipod simulate [TARGET] SERVICE`` and
``APIPOD_SIMULATE`` (both through ``python -m apipod.cli``, as the original's tests run it).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from apipod import APIPod
from apipod.errors import ConfigError
from tests.helpers import (
    SERVICES,
    ServiceProcess,
    apipod_command,
    free_port,
    http_client,
    service_env,
    wait_for_status,
)

SERVICE = SERVICES / "sync_start.py"  # written as APIPod(): the mode comes from outside


def start_script(call: str) -> list[str]:
    """``python -c`` importing sync_start and running ``app.<call>``."""
    code = f"import sys; sys.path.insert(0, {str(SERVICES)!r}); import sync_start; "
    return [sys.executable, "-c", code + f"sync_start.app.{call}"]


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    services: list[ServiceProcess] = []
    yield services
    for service in services:
        service.stop()


def launch(tmp_path: Path, args: list[str], port: int, started: list) -> ServiceProcess:
    env = service_env(tmp_path / "data")
    service = ServiceProcess(args, env, port, tmp_path / f"service-{port}.log").start()
    started.append(service)
    service.wait_until("/health", status=200, timeout=60)
    return service


# --- 5. start(port, host) ------------------------------------------------------------------------
def test_start_takes_the_port_first_as_the_original(tmp_path: Path, started: list) -> None:
    port = free_port()
    service = launch(tmp_path, start_script(f"start({port})"), port, started)
    assert httpx.post(service.url + "/hello", json={"name": "pos"}).json() == {"hello": "pos"}
    port = free_port()
    service = launch(tmp_path, start_script(f"start({port}, '127.0.0.1')"), port, started)
    assert httpx.post(service.url + "/hello", json={"name": "two"}).json() == {"hello": "two"}
    port = free_port()
    old_order = start_script(f"start('127.0.0.1', {port})")  # this project's former order
    service = launch(tmp_path, old_order, port, started)
    assert httpx.post(service.url + "/hello", json={}).json() == {"hello": "world"}
    assert "start(port, host)" in service.log()  # the DeprecationWarning says so


# --- 23.7b: errors under app.start() -------------------------------------------------------------------
def run_script(call: str, tmp_path: Path) -> tuple[int, str]:
    env = service_env(tmp_path / "data")
    done = subprocess.run(start_script(call), env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


def test_start_errors_are_one_line_naming_its_arguments(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = run_script(f"start({port})", tmp_path)
    assert code == 2, output
    assert f"cannot serve on http://127.0.0.1:{port}: already in use" in output, output
    assert "choose another port: app.start(port=...)" in output, output
    assert "Traceback" not in output and "--port" not in output, output
    code, output = run_script(f"start({free_port()}, max_workers=0)", tmp_path)
    assert code == 2 and "max_workers must be at least 1" in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


# --- 6. apipod simulate and APIPOD_SIMULATE ------------------------------------------------------------
def simulate(tmp_path: Path, started: list, *words: str) -> ServiceProcess:
    port = free_port()
    args = apipod_command("simulate", *words, "--host", "127.0.0.1", "--port", str(port))
    return launch(tmp_path, args, port, started)


@pytest.mark.slow
def test_simulate_runs_an_apipod_service_with_the_queue(tmp_path: Path, started: list) -> None:
    service = simulate(tmp_path, started, str(SERVICE))  # the target defaults to serverless
    info = httpx.get(service.url + "/openapi.json").json()["info"]
    assert info["apipod"]["compute"] == "serverless"
    with http_client(service.url, timeout=30) as client:
        job = client.post("/hello", json={"name": "queued"}).json()
        assert job["status"] in ("queued", "processing", "finished") and "job_id" in job
        done = wait_for_status(client, job["job_id"], {"finished", "failed"})
    assert done["status"] == "finished" and done["result"] == {"hello": "queued"}


def test_simulate_dedicated_serves_synchronously(tmp_path: Path, started: list) -> None:
    service = simulate(tmp_path, started, "dedicated", str(SERVICE))
    assert httpx.post(service.url + "/hello", json={"name": "now"}).json() == {"hello": "now"}


def test_simulate_refuses_providers_it_does_not_run(tmp_path: Path) -> None:
    args = apipod_command("simulate", "serverless-runpod", str(SERVICE))
    env = service_env(tmp_path / "data")
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "provider 'runpod' is not supported here; use one of ('localhost',)" in output
    assert "serverless-localhost" in output and "Traceback" not in output


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_apipod_simulate_variable_means_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, store: str
) -> None:
    from tests.compat.test_testclient import store_env

    with store_env(store, tmp_path, APIPOD_SIMULATE="serverless"):
        app = APIPod()
        assert app.config.compute == "serverless"

        @app.endpoint("/twice")
        def twice(x: int) -> int:
            return 2 * x

        with TestClient(app.app) as client:
            body = client.post("/twice", json={"x": 21}, params={"wait": 30}).json()
        assert body["status"] == "finished" and body["result"] == 42
    with store_env(store, tmp_path, APIPOD_SIMULATE="dedicated"):
        assert not APIPod().config.queue_enabled
    with (
        store_env(store, tmp_path, APIPOD_SIMULATE="serverless-runpod"),
        pytest.raises(ConfigError, match="provider 'runpod' is not supported"),
    ):
        APIPod()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the variable is not deprecated, unlike simulate=
        with store_env(store, tmp_path, APIPOD_SIMULATE="serverless-localhost"):
            assert APIPod().config.queue_enabled
