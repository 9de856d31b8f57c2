"""Media URL downloads end with their request (issue 22, 5): 60 downloads from a loopback
server that dribbles one byte a second, abandoned by their clients or answered after the
fetch timeout, leave no thread and no connection behind in the API process."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from tests.helpers import ServiceProcess, http_client, running_service

pytestmark = pytest.mark.slow

FETCH_TIMEOUT_S = 8.0
REQUESTS = 60


class DribbleServer:
    """An HTTP server on 127.0.0.1 in a thread of its own. ``/body/*`` sends its headers,
    then one body byte a second; ``/head/*`` sends its headers one byte a second;
    ``/fast/*`` answers at once. ``open`` counts the connections not yet closed."""

    def __init__(self) -> None:
        self.open = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def url(self, kind: str, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{n}.bin"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def _count(self, delta: int) -> None:
        with self._lock:
            self.open += delta

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._count(1)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            if path.startswith("/fast/"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
                )
                await writer.drain()
                return
            if path.startswith("/body/"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            await self._dribble(reader, writer, b"X-Slow: " if path.startswith("/head/") else b"")
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._count(-1)

    async def _dribble(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, prefix: bytes
    ) -> None:
        """A byte a second until the client hangs up (its EOF ends the read at once)."""
        if prefix:
            writer.write(b"HTTP/1.1 200 OK\r\n" + prefix)
        while True:
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    return
            except asyncio.TimeoutError:
                writer.write(b"a")
                await writer.drain()


@pytest.fixture(scope="module")
def dribble() -> Iterator[DribbleServer]:
    server = DribbleServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    settings = {
        "gpus": "none",
        "max_workers": 1,
        "media_url_allowlist": "127.0.0.1/32",
        "media_url_timeout_s": FETCH_TIMEOUT_S,
    }
    tmp = tmp_path_factory.mktemp("media-fetch-release")
    with running_service(tmp, "queue_media.py", **settings) as service:
        yield service


@pytest.fixture(scope="module")
def api(service: ServiceProcess, dribble: DribbleServer) -> psutil.Process:
    """The API process, its thread pools grown by quick downloads sent as the tests send
    theirs: 60 at once on sockets of their own (twice)."""
    with http_client(service.url, timeout=60) as client:
        process = psutil.Process(client.get("/health").json()["api"]["pid"])
    for _ in range(2):
        sockets = [raw_request(service, dribble.url("fast", n)) for n in range(REQUESTS)]
        for sock in sockets:
            with sock:
                assert sock.recv(100).startswith(b"HTTP/1.1 200"), "a quick download failed"
    return process


def downloads_to(process: psutil.Process, server: DribbleServer) -> int:
    """The API process's open connections to the dribbling server."""
    return sum(1 for c in process.net_connections("tcp") if c.raddr and c.raddr[1] == server.port)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} {timeout} s later")
        time.sleep(0.1)


def raw_request(service: ServiceProcess, url: str) -> socket.socket:
    """A submit sent on a socket of its own, left open (its answer unread)."""
    body = json.dumps({"file": url}).encode()
    head = "POST /digest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
    sock.sendall(head.encode() + body)
    return sock


def test_abandoned_downloads_end_with_their_requests(
    service: ServiceProcess, dribble: DribbleServer, api: psutil.Process
) -> None:
    threads = api.num_threads()
    kinds = ["body", "head"]
    sockets = [raw_request(service, dribble.url(kinds[n % 2], n)) for n in range(REQUESTS)]
    wait_until(lambda: dribble.open >= 16, 30, "the downloads did not start")
    assert downloads_to(api, dribble) >= 16
    for sock in sockets:  # every client hangs up
        sock.close()
    wait_until(lambda: downloads_to(api, dribble) == 0, FETCH_TIMEOUT_S, "connections left")
    wait_until(lambda: dribble.open == 0, FETCH_TIMEOUT_S, "the server still serves")
    # A few threads of slack: anyio's pool (JSON parsing) may have grown by one or two
    # more under load; the download threads alone were 16.
    wait_until(lambda: api.num_threads() <= threads + 4, FETCH_TIMEOUT_S, "threads left")


def test_answered_downloads_leave_nothing_behind(
    service: ServiceProcess, dribble: DribbleServer, api: psutil.Process
) -> None:
    """Past the fetch timeout each request is answered (422), and its download thread and
    connection end then, even one stuck in headers that arrive a byte a second."""
    threads = api.num_threads()
    kinds = ["body", "head"]
    with http_client(service.url, timeout=60) as client:

        def submit(n: int) -> int:
            return client.post("/digest", json={"file": dribble.url(kinds[n % 2], n)}).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(submit, range(16))) == {422}
    wait_until(lambda: downloads_to(api, dribble) == 0, FETCH_TIMEOUT_S, "connections left")
    wait_until(lambda: dribble.open == 0, FETCH_TIMEOUT_S, "the server still serves")
    wait_until(lambda: api.num_threads() <= threads + 4, FETCH_TIMEOUT_S, "threads left")
