"""Slow clients mixed with long-polls (issue 22, 6): three times the connection cap of
connections that send their head a byte at a time, beside long-polls holding slots, never
keep ``/health`` from answering within a second, and each slow connection is closed by
its head deadline (or earlier, to make room at the cap)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from apipod.app.server import SPARE_FDS
from tests.helpers import (
    SERVICES,
    ServiceProcess,
    apipod_command,
    free_port,
    running_service,
    service_env,
)

pytestmark = pytest.mark.slow

CAP = 100
SLOW = 3 * CAP
LONG_POLLS = 40
READ_TIMEOUT_S = 4.0


@pytest.fixture(scope="module", params=["max_connections", "open-file limit"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """A service whose connection cap is CAP: set, or imposed by a hard open-file limit
    (with which accepting failed once the slow connections held every descriptor, and
    new clients waited unaccepted in the kernel, where no deadline runs)."""
    settings: dict[str, object] = {"gpus": "none", "max_workers": 1, "shutdown_grace_s": 1}
    settings.update(cancel_grace_s=1, http_read_timeout_s=READ_TIMEOUT_S)
    tmp = tmp_path_factory.mktemp("slow-clients")
    if request.param == "max_connections":
        with running_service(tmp, "queue_ok.py", max_connections=CAP, **settings) as service:
            yield service
        return
    port = free_port()
    env = service_env(tmp / "data", port=port, **settings)
    limit = f"--nofile={CAP + SPARE_FDS}:{CAP + SPARE_FDS}"
    args = ["prlimit", limit, "--", *apipod_command("start", str(SERVICES / "queue_ok.py"))]
    service = ServiceProcess(args, env, port, tmp / "service.log").start()
    try:
        service.wait_until("/health", status=200, timeout=60)
        yield service
    finally:
        service.stop()


async def slow_client(port: int, opened: list[float], lifetimes: list[float]) -> None:
    """Sends a never-ending head a byte every 0.2 s until the server closes the
    connection; records when it opened and how long it lived."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened_at = time.monotonic()
    opened.append(opened_at)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100_000
    try:
        for byte in head:
            writer.write(bytes([byte]))
            try:
                if await asyncio.wait_for(reader.read(1000), 0.2) == b"":
                    break  # closed by the server
            except asyncio.TimeoutError:
                continue
    except OSError:
        pass  # reset by the server: closed as well
    finally:
        lifetimes.append(time.monotonic() - opened_at)
        writer.close()


async def long_poll(port: int, job_id: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /status/{job_id}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    try:
        await reader.read(100_000)
    finally:
        writer.close()


async def health_probe(port: int) -> tuple[float, bytes]:
    """One ``GET /health`` on a connection of its own: seconds taken, status line."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
    return time.monotonic() - start, status.strip()


async def attack(port: int, job_id: str) -> tuple[list[float], list[tuple[float, bytes]]]:
    polls = [asyncio.create_task(long_poll(port, job_id)) for _ in range(LONG_POLLS)]
    opened: list[float] = []
    lifetimes: list[float] = []
    slow = [asyncio.create_task(slow_client(port, opened, lifetimes)) for _ in range(SLOW)]
    while len(opened) + len(lifetimes) < SLOW:  # every slow connection is open
        await asyncio.sleep(0.05)
    probes = []
    deadline = time.monotonic() + READ_TIMEOUT_S + 3
    while time.monotonic() < deadline or len(lifetimes) < SLOW:
        probes.append(await health_probe(port))
        await asyncio.sleep(0.2)
        if time.monotonic() > deadline + 10:
            break  # the assertion below names the connections left open
    for task in [*polls, *slow]:
        task.cancel()
    await asyncio.gather(*polls, *slow, return_exceptions=True)
    return lifetimes, probes


def test_slow_heads_and_long_polls_never_starve_health(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        job_id = client.post("/spin", json={"seconds": 60}).json()["job_id"]
        try:
            lifetimes, probes = asyncio.run(attack(service.port, job_id))
        finally:
            client.post(f"/cancel/{job_id}")
    assert len(lifetimes) == SLOW, f"{SLOW - len(lifetimes)} slow connections still open"
    assert max(lifetimes) < READ_TIMEOUT_S + 1.5, sorted(lifetimes)[-5:]
    slowest = max(probes)
    assert slowest[0] < 1.0, f"/health took {slowest[0]:.2f} s"
    assert {status for _, status in probes} == {b"HTTP/1.1 200 OK"}, probes
