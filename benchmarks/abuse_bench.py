"""The front end under the attacks of issues 10 and 22, next to an idle baseline.

One ``apipod start benchmarks/services/abuse_service.py`` (API process and one worker,
SQLite) on 127.0.0.1. For each attack, a probe measures unrelated ``GET /status/<id>``
(p50/p99 over ``--samples`` requests) and ``GET /health`` while the attack runs, and a
sampler records the API process's peak RSS. Prints one table.

    python benchmarks/abuse_bench.py [--samples 200]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from queue_bench import free_port, started, wait_ready  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVICE = ROOT / "benchmarks" / "services" / "abuse_service.py"
BIG = 45_000_000


class _Media(BaseHTTPRequestHandler):
    """/big: 45 MB; /gzip: 600 KB on the wire, 600 MB inflated; /slow: stalls 10 s."""

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.path.startswith("/slow"):
            time.sleep(10)
        if self.path.startswith("/gzip"):
            body, extra = GZIP_BOMB, {"Content-Encoding": "gzip"}
        else:
            body, extra = b"\x89PNG\r\n\x1a\n" + b"\0" * (BIG - 8), {}
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


GZIP_BOMB = gzip.compress(b"\0" * 600_000_000, compresslevel=9)


class Probe:
    """Unrelated status reads and API RSS, sampled while an attack runs."""

    def __init__(self, url: str, job_id: str, api: psutil.Process, samples: int) -> None:
        self.url, self.job_id, self.api, self.samples = url, job_id, api, samples
        self.status_s: list[float] = []
        self.health_s: list[float] = []
        self.peak_rss = 0
        self.errors = 0

    def run(self) -> None:
        stop = threading.Event()
        sampler = threading.Thread(target=self._sample_rss, args=(stop,), daemon=True)
        sampler.start()
        with httpx.Client(base_url=self.url, timeout=30) as client:
            for i in range(self.samples):
                path = "/health" if i % 10 == 9 else f"/status/{self.job_id}"
                start = time.perf_counter()
                try:
                    code = client.get(path).status_code
                except httpx.HTTPError:
                    code = 0
                took = time.perf_counter() - start
                if code not in (200, 503):
                    self.errors += 1
                (self.health_s if path == "/health" else self.status_s).append(took)
                time.sleep(0.01)
        stop.set()
        sampler.join()

    def _sample_rss(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak_rss = max(self.peak_rss, self.api.memory_info().rss)
            time.sleep(0.01)

    def row(self, name: str) -> str:
        p50 = statistics.median(self.status_s) * 1000
        p99 = statistics.quantiles(self.status_s, n=100)[-1] * 1000
        health = max(self.health_s) * 1000
        return (
            f"| {name:<44} | {p50:7.1f} | {p99:7.1f} | {health:9.1f} |"
            f" {self.peak_rss / 1e6:7.0f} | {self.errors:4d} |"
        )


def attack_in_background(attack: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=attack, daemon=True)
    thread.start()
    time.sleep(1.0)  # let the attack land before probing
    return thread


def posts(url: str, path: str, body: dict, count: int) -> Callable[[], None]:
    def run() -> None:
        def one() -> None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(url + path, json=body, timeout=60)

        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


@contextlib.contextmanager
def open_sockets(port: int, count: int, request: bytes = b"") -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if request:
                sock.sendall(request)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20_000), hard))
    media = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    media.daemon_threads = True
    threading.Thread(target=media.serve_forever, daemon=True).start()
    media_url = f"http://127.0.0.1:{media.server_address[1]}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = {
            **{k: v for k, v in __import__("os").environ.items() if not k.startswith("APIPOD_")},
            "APIPOD_PORT": str(port),
            "APIPOD_DATA_DIR": data,
            "APIPOD_GPUS": "none",
            "APIPOD_LOG_LEVEL": "warning",
            "APIPOD_MEDIA_URL_ALLOWLIST": "127.0.0.1",
            "PYTHONPATH": str(ROOT),
        }
        command = [sys.executable, "-m", "apipod.cli", "start", str(SERVICE)]
        with started(command, env, ROOT):
            wait_ready(url, "/health")
            run_all(url, port, media_url, args.samples)
    media.shutdown()


def run_all(url: str, port: int, media_url: str, samples: int) -> None:
    api = psutil.Process(httpx.get(url + "/health").json()["api"]["pid"])
    unrelated = httpx.post(url + "/echo", json={"text": "x"}).json()["job_id"]
    time.sleep(1)
    print(
        "| attack                                       | st. p50 | st. p99 | health max | RSS MB | errs |"
    )
    print(
        "|----------------------------------------------|--------:|--------:|-----------:|-------:|-----:|"
    )

    def probe(name: str) -> None:
        result = Probe(url, unrelated, api, samples)
        result.run()
        print(result.row(name), flush=True)

    probe("idle baseline")

    huge = httpx.post(url + "/hold", json={"seconds": 60, "pad": "p" * 15_000_000}, timeout=60)
    huge_id = huge.json()["job_id"]
    poll = f"GET /status/{huge_id}?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with open_sockets(port, 10, poll):
        probe("15 MB-input job running + 10 long-polls")
    httpx.post(f"{url}/cancel/{huge_id}")

    with open_sockets(port, 2000, poll.replace(huge_id.encode(), unrelated.encode())) as _:
        time.sleep(1)
    time.sleep(1.0)
    cpu = sum(api.cpu_times()[:2])
    time.sleep(1.0)
    print(
        f"(API CPU in the 2nd second after 2,000 long-polls were abandoned: "
        f"{sum(api.cpu_times()[:2]) - cpu:.3f} s)"
    )
    probe("after 2,000 abandoned long-polls")

    urls = [f"{media_url}/big/{i}" for i in range(10)]
    attack_in_background(posts(url, "/images", {"pictures": urls}, 3))
    probe("3 x 10 URLs of 45 MB (limit 1 MB)")

    attack_in_background(posts(url, "/file", {"file": f"{media_url}/gzip"}, 3))
    probe("3 x gzip bomb (0.6 MB -> 600 MB)")

    encoded = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\1" * 30_000_000).decode()
    attack_in_background(posts(url, "/file", {"file": encoded}, 3))
    probe("3 x 40 MB base64 JSON body")

    with open_sockets(port, 1000):
        probe("1,000 idle connections open")

    attack_in_background(posts(url, "/file", {"file": f"{media_url}/slow.png"}, 45))
    probe("45 submits of a URL that stalls 10 s")

    memory_attacks(url, port, probe)
    slow_heads_with_long_polls(url, port, probe)


def memory_attacks(url: str, port: int, probe: Callable[[str], None]) -> None:
    """Issue 22: what a client declares or makes the API build, each 4 at once."""
    head = (
        b"POST /file HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000000000\r\n\r\n{"'
    )
    with open_sockets(port, 4, head):
        probe("4 x Content-Length 1 GB, 2 bytes sent")
    lists = b'{"text":"x","zz":[' + b"[]," * 3_300_000 + b"[]]}"
    attack_in_background(raw_posts(url, "/echo", lambda: [lists], "application/json", 4))
    probe("4 x 10 MB JSON of empty lists")
    attack_in_background(raw_posts(url, "/file", form_with_text_field, FORM_TYPE, 4))
    probe("4 x 300 MB text field in a form")
    files = httpx.post(url + "/many-files", json={}, params={"wait": 120}, timeout=150).json()
    status = f"{url}/status/{files['job_id']}"
    attack_in_background(repeat(lambda: httpx.get(status, timeout=60), 4, 8))
    probe("4 readers of 30 x 7.5 MB result files")


BOUNDARY = "abusebenchboundary"
FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form_with_text_field() -> Iterator[bytes]:
    """A form whose text field ``note`` is 300 MB, then a small file part."""
    yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'.encode()
    block = b"n" * 1_000_000
    for _ in range(300):
        yield block
    yield (
        f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="a.bin"\r\nContent-Type: application/octet-stream\r\n\r\nabc'
        f"\r\n--{BOUNDARY}--\r\n"
    ).encode()


def raw_posts(
    url: str, path: str, body: Callable[[], Iterable[bytes]], content_type: str, count: int
) -> Callable[[], None]:
    def one() -> None:
        headers = {"Content-Type": content_type}
        httpx.post(url + path, content=iter(body()), headers=headers, timeout=60)

    return repeat(one, count, 1)


def repeat(task: Callable[[], object], count: int, times: int) -> Callable[[], None]:
    """``count`` threads that each run ``task`` ``times`` times (errors ignored)."""

    def run() -> None:
        def loop() -> None:
            for _ in range(times):
                with contextlib.suppress(httpx.HTTPError):
                    task()

        threads = [threading.Thread(target=loop) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    return run


def slow_heads_with_long_polls(url: str, port: int, probe: Callable[[str], None]) -> None:
    """Issue 22, 6: 1,500 connections that sent part of a head, beside 300 long-polls on
    a running job; then how many slow ones are still open past the 15 s head deadline."""
    held = httpx.post(url + "/hold", json={"seconds": 60}, timeout=60).json()["job_id"]
    poll = f"GET /status/{held}?wait=60 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    partial = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"
    with open_sockets(port, 300, poll), open_sockets(port, 1500, partial) as slow:
        probe("1,500 slow heads + 300 long-polls")
        time.sleep(16.0)  # past http_read_timeout_s (15 s) from their connection
        still_open = sum(1 for sock in slow if _still_open(sock))
    httpx.post(f"{url}/cancel/{held}")
    print(f"(slow heads still open 16 s after they connected: {still_open} of 1,500)")


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and no EOF: open
    except OSError:
        return False  # reset


if __name__ == "__main__":
    main()
