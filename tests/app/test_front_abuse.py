"""The queue front end under abuse, on a real ``apipod start`` on 127.0.0.1: abandoned and
excess long-polls, slow and idle connections, oversized heads, many open connections."""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.helpers import ServiceProcess, http_client, running_service

pytestmark = pytest.mark.slow


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Default settings: what an unconfigured deployment gets."""
    tmp = tmp_path_factory.mktemp("front-plain")
    with running_service(tmp, "queue_front.py", max_workers=1, gpus="none") as service:
        yield service


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Small limits, so the tests reach them quickly."""
    tmp = tmp_path_factory.mktemp("front-tight")
    settings = {"max_waiters": 3, "http_read_timeout_s": 2, "max_workers": 1, "gpus": "none"}
    with running_service(tmp, "queue_front.py", **settings) as service:
        yield service


def held_job(service: ServiceProcess, seconds: float = 30) -> str:
    response = httpx.post(f"{service.url}/hold", json={"seconds": seconds}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def api_process(service: ServiceProcess) -> psutil.Process:
    body = httpx.get(f"{service.url}/health", timeout=10).json()
    return psutil.Process(body["api"]["pid"])


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def connect(service: ServiceProcess, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=timeout)


def seconds_until_closed(sock: socket.socket, limit: float) -> float:
    """Read (and drop) what the server sends until it closes the connection."""
    start = time.monotonic()
    sock.settimeout(limit)
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass
    return time.monotonic() - start


# --- long-polls --------------------------------------------------------------------------------
def test_abandoned_long_polls_leave_the_api_idle_within_a_second(plain: ServiceProcess) -> None:
    raise_file_limit(6000)
    job_id = held_job(plain)
    api = api_process(plain)
    request = f"GET /status/{job_id}?wait=20 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    sockets = []
    try:
        for _ in range(2000):
            sock = connect(plain)
            sock.sendall(request)
            sockets.append(sock)
        time.sleep(1.0)  # every request is read and waiting (or answered at the cap)
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(1.0)
    before = cpu_seconds(api)
    time.sleep(1.0)
    used = cpu_seconds(api) - before
    print(f"API CPU after abandoned long-polls: {used:.3f} s in 1 s")
    assert used < 0.05, f"API used {used:.2f} s of CPU in 1 s after the clients left"
    start = time.monotonic()
    jobs = httpx.get(f"{plain.url}/jobs", timeout=10)
    assert jobs.status_code == 200 and time.monotonic() - start < 0.5
    httpx.post(f"{plain.url}/cancel/{job_id}", timeout=10)


def test_long_polls_past_max_waiters_are_answered_at_once(tight: ServiceProcess) -> None:
    job_id = held_job(tight)
    results: list[tuple[float, int, str]] = []

    def poll() -> None:
        start = time.monotonic()
        response = httpx.get(f"{tight.url}/status/{job_id}", params={"wait": 3}, timeout=10)
        results.append((time.monotonic() - start, response.status_code, response.json()["status"]))

    waiting = [threading.Thread(target=poll) for _ in range(3)]
    for thread in waiting:
        thread.start()
    time.sleep(0.7)  # the three waiters hold the cap
    poll()
    late = results[-1]
    assert late[0] < 1.0 and late[1] == 200 and late[2] in ("queued", "processing"), late
    for thread in waiting:
        thread.join(timeout=10)
    assert sorted(r[0] for r in results)[-1] >= 2.5  # the first three really waited
    httpx.post(f"{tight.url}/cancel/{job_id}", timeout=10)


def test_a_long_poll_ends_when_its_client_goes_away(tight: ServiceProcess) -> None:
    """Three abandoned long-polls free their places at once: a fourth one waits."""
    job_id = held_job(tight)
    request = f"GET /status/{job_id}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(3):
        with connect(tight) as sock:
            sock.sendall(request)
            time.sleep(0.3)
    time.sleep(0.5)
    start = time.monotonic()
    response = httpx.get(f"{tight.url}/status/{job_id}", params={"wait": 1.5}, timeout=10)
    assert response.status_code == 200
    assert time.monotonic() - start >= 1.4, "answered at once: the abandoned polls still wait"
    httpx.post(f"{tight.url}/cancel/{job_id}", timeout=10)


# --- slow, idle and oversized requests -----------------------------------------------------------
def test_idle_connection_is_closed(tight: ServiceProcess) -> None:
    with connect(tight) as sock:
        assert seconds_until_closed(sock, 15) < 5


def test_slow_headers_are_closed(tight: ServiceProcess) -> None:
    with connect(tight) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        start = time.monotonic()
        for _ in range(10):  # one header line a second: never done within the deadline
            time.sleep(1)
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        assert seconds_until_closed(sock, 15) + time.monotonic() - start < 6


def test_slow_body_is_closed(tight: ServiceProcess) -> None:
    head = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with connect(tight) as sock:
        sock.sendall(head + b"Content-Length: 100000\r\n\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < 15 and not closed:
            time.sleep(0.2)
            try:
                sock.sendall(b"          ")  # 50 bytes a second
            except OSError:
                closed = True
        if not closed:
            seconds_until_closed(sock, 15)
        assert time.monotonic() - start < 8


def test_oversized_head_gets_431(tight: ServiceProcess) -> None:
    with connect(tight) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def health_p90(service: ServiceProcess) -> float:
    """The 90th percentile of 20 ``/health`` round trips, in seconds."""
    timings = []
    with http_client(service.url, timeout=10) as client:
        for _ in range(20):
            start = time.monotonic()
            assert client.get("/health").status_code == 200
            timings.append(time.monotonic() - start)
            time.sleep(0.02)
    return statistics.quantiles(timings, n=10)[-1]


def test_health_is_fast_with_a_thousand_connections_open(plain: ServiceProcess) -> None:
    raise_file_limit(4000)
    alone = health_p90(plain)  # the same box, the same moment: its load is in both
    sockets = [connect(plain) for _ in range(1000)]
    try:
        time.sleep(0.5)
        crowded = health_p90(plain)
        assert crowded < max(0.1, 3 * alone), f"p90 {crowded:.3f} s, {alone:.3f} s alone"
    finally:
        for sock in sockets:
            sock.close()


def test_many_clients_get_503_not_a_reset_past_max_connections(tmp_path: Path) -> None:
    settings = {"max_connections": 20, "max_workers": 1, "gpus": "none"}
    with running_service(tmp_path, "queue_front.py", **settings) as service:
        sockets = [connect(service) for _ in range(30)]
        try:
            response = httpx.get(f"{service.url}/health", timeout=10)
            assert response.status_code == 503
        finally:
            for sock in sockets:
                sock.close()
        service.wait_until("/health", status=200, timeout=30)  # once the server saw them close
