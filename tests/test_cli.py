"""The three ways to serve a synchronous APIPod app, the ``apipod`` command's flags and
errors, and ``@app.on_worker_start`` in a fresh server process."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import apipod
from tests.helpers import SERVICES, ServiceProcess, apipod_command, free_port, service_env

START_FLAGS = [
    "--host",
    "--port",
    "--compute",
    "--max-workers",
    "--gpus",
    "--data-dir",
    "--database-url",
    "--role",
    "--log-level",
    "--log-format",
]


class Service(ServiceProcess):
    """A ServiceProcess that runs in a chosen working directory."""

    def __init__(
        self, args: list[str], env: dict[str, str], port: int, log: Path, cwd: Path
    ) -> None:
        super().__init__(args, env, port, log)
        self.cwd = cwd

    def start(self) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


def serve(tmp_path: Path, args: list[str], url_port: int, cwd: Path, **settings: object) -> Service:
    """Start ``args`` in ``cwd`` with APIPOD_* ``settings``; it should listen on ``url_port``."""
    env = service_env(tmp_path / "data", **settings)
    return Service(args, env, url_port, tmp_path / "service.log", cwd).start()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Service]]:
    """Services a test starts; all stopped at the end."""
    services: list[Service] = []
    yield services
    for service in services:
        service.stop()


def check_sync_basic(url: str) -> None:
    info = httpx.get(url + "/openapi.json").json()["info"]
    assert info["title"] == "sync-basic"
    assert info["apipod"] == {"compute": "dedicated", "version": apipod.__version__}
    response = httpx.post(url + "/scalars", json={"name": "cli", "count": 2})
    assert response.json() == {"name": "cli", "count": 2, "ratio": 0.5, "flag": False}
    # on_worker_start ran exactly once in this fresh server process, before serving.
    assert httpx.get(url + "/info").json() == {"verbose": False, "on_worker_start_calls": 1}
    assert httpx.get(url + "/health").json() == {
        "status": "ok",
        "compute": "dedicated",
        "version": apipod.__version__,
    }


def run_to_exit(
    args: list[str], tmp_path: Path, cwd: Path | None = None, **settings: object
) -> subprocess.CompletedProcess[str]:
    env = service_env(tmp_path / "data", **settings)
    return subprocess.run(
        args, env=env, cwd=cwd or tmp_path, capture_output=True, text=True, timeout=60
    )


# --- help --------------------------------------------------------------------------------------


def test_apipod_help_lists_the_commands() -> None:
    result = subprocess.run(apipod_command("--help"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "start" in result.stdout
    assert "usage: apipod" in result.stdout


def test_apipod_start_help_lists_every_flag() -> None:
    result = subprocess.run(
        apipod_command("start", "--help"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    missing = [flag for flag in START_FLAGS if flag not in result.stdout]
    assert missing == []
    assert "target" in result.stdout


def test_apipod_version() -> None:
    result = subprocess.run(apipod_command("--version"), capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout.strip()) == (0, f"apipod {apipod.__version__}")


# --- the three ways to serve -----------------------------------------------------------------


def test_uvicorn_module_app(tmp_path: Path, running: list[Service]) -> None:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "sync_basic:app", "--port", str(port)]
    service = serve(tmp_path, args, port, cwd=SERVICES)
    running.append(service)
    service.wait_until("/health", status=200)
    check_sync_basic(service.url)


def test_apipod_start_file(tmp_path: Path, running: list[Service]) -> None:
    port = free_port()
    args = apipod_command("start", str(SERVICES / "sync_basic.py"), "--port", str(port))
    service = serve(tmp_path, args, port, cwd=tmp_path)
    running.append(service)
    service.wait_until("/health", status=200)
    check_sync_basic(service.url)
    assert f"http://127.0.0.1:{port}" in service.log()


def test_apipod_start_module_attribute(tmp_path: Path, running: list[Service]) -> None:
    port = free_port()
    args = apipod_command("start", "sync_basic:app", "--port", str(port), "--host", "127.0.0.1")
    service = serve(tmp_path, args, port, cwd=SERVICES)
    running.append(service)
    service.wait_until("/health", status=200)
    check_sync_basic(service.url)


def test_app_start_from_a_script(tmp_path: Path, running: list[Service]) -> None:
    port = free_port()
    args = [sys.executable, str(SERVICES / "sync_start.py"), str(port)]
    service = serve(tmp_path, args, port, cwd=tmp_path)
    running.append(service)
    service.wait_until("/health", status=200)
    assert httpx.post(service.url + "/hello", json={"name": "script"}).json() == {"hello": "script"}
    info = httpx.get(service.url + "/openapi.json").json()["info"]
    assert (info["title"], info["apipod"]["compute"]) == ("sync-start", "dedicated")


def test_the_port_flag_beats_the_environment(tmp_path: Path, running: list[Service]) -> None:
    env_port, flag_port = free_port(), free_port()
    args = apipod_command("start", str(SERVICES / "sync_basic.py"), "--port", str(flag_port))
    service = serve(tmp_path, args, flag_port, cwd=tmp_path, port=env_port)
    running.append(service)
    service.wait_until("/health", status=200)
    check_sync_basic(service.url)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{env_port}/health", timeout=2)


def test_log_level_flag_is_applied(tmp_path: Path, running: list[Service]) -> None:
    port = free_port()
    args = apipod_command("start", str(SERVICES / "sync_basic.py"), "--port", str(port))
    service = serve(tmp_path, args + ["--log-level", "warning"], port, cwd=tmp_path)
    running.append(service)
    service.wait_until("/health", status=200)
    httpx.post(service.url + "/scalars", json={"name": "quiet"})
    time.sleep(0.2)
    log = service.log()
    # --log-level warning: no INFO lines from apipod or uvicorn (startup, access log).
    assert "INFO" not in log, log


# --- errors that stop `apipod start` ---------------------------------------------------------


def test_unknown_key_in_apipod_json_stops_start(tmp_path: Path) -> None:
    deploy = tmp_path / "apipod-deploy"
    deploy.mkdir()
    (deploy / "apipod.json").write_text(json.dumps({"queue": {"max_workers": 1, "max_wrokers": 2}}))
    result = run_to_exit(
        apipod_command("start", str(SERVICES / "sync_basic.py"), "--port", str(free_port())),
        tmp_path,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "unknown setting(s): max_wrokers" in output
    assert "max_workers" in output


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"max_workers": "abc"}, ["max_workers", "'abc'"]),
        ({"provider": "runpod"}, ["provider 'runpod' is not supported", "localhost"]),
        ({"port": "99999"}, ["port must be in 1..65535"]),
    ],
    ids=["bad-max-workers", "bad-provider", "bad-port"],
)
def test_bad_environment_stops_start(
    tmp_path: Path, settings: dict[str, str], words: list[str]
) -> None:
    result = run_to_exit(
        apipod_command("start", str(SERVICES / "sync_basic.py")), tmp_path, **settings
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for word in words:
        assert word in output, output


def test_unsupported_provider_argument_stops_start(tmp_path: Path) -> None:
    script = tmp_path / "runpod_service.py"
    script.write_text(
        "from apipod import APIPod\n"
        'app = APIPod(compute="serverless", provider="runpod")\n'
        '@app.endpoint("/x")\n'
        "def x() -> int:\n"
        "    return 1\n"
    )
    result = run_to_exit(apipod_command("start", str(script), "--port", str(free_port())), tmp_path)
    assert result.returncode != 0
    assert "provider 'runpod' is not supported" in result.stdout + result.stderr


def test_bad_flag_value_stops_start(tmp_path: Path) -> None:
    args = apipod_command(
        "start", str(SERVICES / "sync_basic.py"), "--gpus", "first", "--port", "1"
    )
    result = run_to_exit(args, tmp_path)
    assert result.returncode != 0
    assert "gpus must be 'auto', 'none' or a list like '0,1'" in result.stdout + result.stderr


def test_missing_service_file_stops_start(tmp_path: Path) -> None:
    result = run_to_exit(apipod_command("start", str(tmp_path / "nope.py")), tmp_path)
    assert result.returncode != 0
    assert "nope.py does not exist" in result.stdout + result.stderr


def test_bad_choice_is_an_argparse_error(tmp_path: Path) -> None:
    result = run_to_exit(apipod_command("start", "x.py", "--compute", "cloud"), tmp_path)
    assert result.returncode == 2
    assert "--compute" in result.stderr and "cloud" in result.stderr


# --- on_worker_start -------------------------------------------------------------------------


def test_on_worker_start_hooks_run_once_before_the_first_request(
    tmp_path: Path, running: list[Service]
) -> None:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "sync_hooks:app", "--port", str(port)]
    service = serve(tmp_path, args, port, cwd=SERVICES)
    running.append(service)
    # Ask as early as possible: the very first answer must already see both hooks done.
    first = None
    deadline = time.monotonic() + 30
    while first is None:
        assert service.process is not None and service.process.poll() is None, service.log()
        assert time.monotonic() < deadline, service.log()
        try:
            first = httpx.post(service.url + "/events", timeout=10)
        except httpx.TransportError:
            time.sleep(0.01)
    assert first.status_code == 200
    bodies = [first.json()] + [httpx.post(service.url + "/events").json() for _ in range(2)]
    events = bodies[0]["events"]
    assert [e["hook"] for e in events] == ["sync", "async"]
    assert all(body["events"] == events for body in bodies)
    assert max(e["done_at"] for e in events) <= bodies[0]["now"]
