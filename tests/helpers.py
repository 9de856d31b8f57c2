"""Shared test helpers: real servers on loopback, real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn

SERVICES = Path(__file__).parent / "services"
TERMINAL = {"finished", "failed", "timeout", "cancelled"}


#: The server closes a keep-alive connection after 5 s idle (apipod.app.server.KEEP_ALIVE_S),
#: httpx after 5 s by default: a request sent on a connection idle for just that long can
#: meet the server's close ("Server disconnected without sending a response"). Test
#: clients let go of idle connections well before the server does.
CLIENT_KEEPALIVE_S = 2.0


def http_client(base_url: str, **options: Any) -> httpx.Client:
    """An httpx client for a service under test (idle connections dropped after 2 s)."""
    limits = httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE_S)
    return httpx.Client(base_url=base_url, limits=limits, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """Run ``app`` on a real uvicorn server on an ephemeral loopback port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class ServiceProcess:
    """``apipod start`` (or another command) in a subprocess, with its own data dir."""

    def __init__(self, args: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.args = args
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def wait_until(
        self, path: str = "/health", status: int | None = None, timeout: float = 30
    ) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited ({self.process.returncode}):\n{self.log()}")
            try:
                response = httpx.get(self.url + path, timeout=5, headers=self.auth_headers())
                if status is None or response.status_code == status:
                    return response
            except httpx.TransportError as exc:
                last_error = exc
            time.sleep(0.05)
        raise TimeoutError(f"{path} not {status} after {timeout} s ({last_error}):\n{self.log()}")

    def auth_headers(self) -> dict[str, str]:
        key = self.env.get("APIPOD_API_KEY")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def kill_tree(self) -> None:
        """SIGKILL the whole process group (supervisor, API and workers)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill_tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode


def peak_rss_during(pid: int, work: Callable[[], object]) -> tuple[int, int]:
    """(RSS before, peak RSS while ``work`` runs) of process ``pid``, sampled every 10 ms."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        done.set()
        sampler.join()
    return before, peak[0]


def service_env(data_dir: Path, **settings: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APIPOD_")}
    env["APIPOD_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    for key, value in settings.items():
        env[f"APIPOD_{key.upper()}"] = str(value)
    return env


def apipod_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "apipod.cli", *args]


@contextlib.contextmanager
def running_service(
    tmp_path: Path, target: str, *, wait_healthy: bool = True, **settings: object
) -> Iterator[ServiceProcess]:
    """``apipod start`` a fixture service (by file name under tests/services) in its own
    process group and data dir; stopped (and, if need be, killed) afterwards."""
    port = free_port()
    data_dir = tmp_path / "data"
    env = service_env(data_dir, port=port, **settings)
    args = apipod_command("start", str(SERVICES / target))
    service = ServiceProcess(args, env, port, tmp_path / "service.log").start()
    try:
        if wait_healthy:
            service.wait_until("/health", status=200, timeout=60)
        yield service
    finally:
        service.stop()


def wait_for_status(
    client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 30
) -> dict:
    """Poll ``/status/{job_id}`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    body: dict = {}
    params = {"wait": 1} if statuses <= TERMINAL else {}
    while time.monotonic() < deadline:
        body = client.get(f"/status/{job_id}", params=params).json()
        if body.get("status") in statuses:
            return body
        time.sleep(0.02)
    raise TimeoutError(f"job {job_id} still {body.get('status')} after {timeout} s: {body}")


@contextlib.contextmanager
def migrated_store(backend: str, folder: Path) -> Iterator[Any]:
    """A migrated, empty JobStore: ``sqlite`` (a file in ``folder``) or ``postgresql`` (a
    throw-away database, see :mod:`tests.store.postgres_db`); closed afterwards."""
    from apipod.store import open_store
    from tests.store.postgres_db import fresh_database

    with contextlib.ExitStack() as stack:
        url = f"sqlite:///{folder / 'apipod.db'}"
        if backend == "postgresql":
            url = stack.enter_context(fresh_database("apipod_helper"))
        store = open_store(url, folder / "data")
        stack.callback(store.close)
        store.migrate()
        yield store


def rebind_dns(monkeypatch: Any, name: str, first: str, then: str) -> None:
    """DNS rebinding, at the resolver the code calls: ``name`` resolves to ``first`` once,
    then to ``then`` (every other name resolves as usual)."""
    real_getaddrinfo = socket.getaddrinfo
    answers = iter([first])

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            host = next(answers, then)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
