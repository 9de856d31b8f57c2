"""Synchronous mode, errors: JSON bodies in FastAPI's shape, the keep-alive connection
survives 4xx and 500 answers, uploads are refused while they stream in (memory bounded),
and a 500 never shows internals to the client (the log has them)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.app.support import b64
from tests.helpers import SERVICES, ServiceProcess, free_port, http_client, service_env

MB = 1_000_000
LIMIT_MB = 5  # APIPod(max_upload_file_size_mb=5) in sync_limits.py
BOUNDARY = "apipodtestboundary"


def client_port(response: httpx.Response) -> int:
    """The local port of the connection that carried ``response``."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def assert_validation_error(response: httpx.Response) -> list[dict]:
    """FastAPI's 422 shape: ``{"detail": [{"type", "loc", "msg", ...}, ...]}``."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["detail"]
    assert isinstance(body["detail"], list) and body["detail"]
    for error in body["detail"]:
        assert {"type", "loc", "msg"} <= set(error)
        assert isinstance(error["type"], str) and isinstance(error["msg"], str)
        assert isinstance(error["loc"], list) and error["loc"][0] == "body"
    return body["detail"]


@pytest.fixture(scope="module")
def limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """``uvicorn sync_limits:app`` in its own process: its memory and log are its own."""
    tmp = tmp_path_factory.mktemp("limits")
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--app-dir", str(SERVICES), "sync_limits:app"]
    args += ["--port", str(port)]
    service = ServiceProcess(args, service_env(tmp / "data"), port, tmp / "service.log").start()
    try:
        service.wait_until("/health", status=200)
        yield service
    finally:
        service.stop()


@pytest.fixture
def limits_client(limits: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(limits.url, timeout=60) as client:
        yield client


# --- 4xx answers -----------------------------------------------------------------------------


def test_validation_error_shape(basic: httpx.Client) -> None:
    (error,) = assert_validation_error(basic.post("/scalars", json={"count": 2}))
    assert error == {
        "type": "missing",
        "loc": ["body", "name"],
        "msg": "Field required",
        "input": {"count": 2},
    }


@pytest.mark.parametrize("raw", [b"{bad json", b'{"name": "a",}', b'{"name": "\xff"}'])
def test_malformed_json_is_a_422(basic: httpx.Client, raw: bytes) -> None:
    response = basic.post("/scalars", content=raw, headers={"content-type": "application/json"})
    (error,) = assert_validation_error(response)
    assert (error["type"], error["loc"]) == ("json_invalid", ["body"])


def test_json_body_that_is_not_an_object_is_a_422(basic: httpx.Client) -> None:
    (error,) = assert_validation_error(basic.post("/scalars", json=["name", "a"]))
    assert error["loc"] == ["body"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/octet-stream"]
)
def test_unsupported_content_type_is_a_415(basic: httpx.Client, content_type: str) -> None:
    response = basic.post("/scalars", content=b"name=a", headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert content_type in detail and "application/json" in detail


def test_json_subtypes_and_charset_are_accepted(basic: httpx.Client) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        response = basic.post(
            "/scalars", content=b'{"name": "j"}', headers={"content-type": content_type}
        )
        assert response.json()["name"] == "j"


def test_unknown_route_and_wrong_method_are_json(basic: httpx.Client) -> None:
    missing = basic.post("/no-such-endpoint", json={})
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    wrong = basic.get("/scalars")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


def test_keep_alive_connection_survives_errors(basic: httpx.Client) -> None:
    requests = [
        ("POST", "/scalars", {"json": {"name": "a"}}, 200),
        ("POST", "/scalars", {"json": {}}, 422),
        (
            "POST",
            "/scalars",
            {"content": b"{x", "headers": {"content-type": "application/json"}},
            422,
        ),
        ("POST", "/scalars", {"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
        ("POST", "/image", {"json": {"image": b64(b"plain text")}}, 422),
        ("POST", "/image", {"json": {"image": "/etc/passwd"}}, 422),
        ("POST", "/nowhere", {}, 404),
        ("GET", "/scalars", {}, 405),
        ("POST", "/raises", {}, 500),
        ("POST", "/scalars", {"json": {"name": "b"}}, 200),
    ]
    ports = set()
    for method, path, options, status in requests:
        response = basic.request(method, path, **options)
        assert response.status_code == status, (path, response.text)
        assert response.headers.get("connection") != "close", path
        ports.add(client_port(response))
    assert len(ports) == 1, "a new connection was opened after an error answer"


# --- 500 -------------------------------------------------------------------------------------


def test_internal_error_says_type_and_message_and_logs_the_traceback(
    limits: ServiceProcess, limits_client: httpx.Client
) -> None:
    first = limits_client.post("/fail")
    assert first.status_code == 500
    # As in queue mode: the client reads "Type: message", never a traceback or a path.
    assert first.json() == {"detail": "ValueError: database password is hunter2"}
    for secret in ("Traceback", "sync_limits", ".py", "line "):
        assert secret not in first.text
    after = limits_client.post("/text", json={"value": "abc"})
    assert after.json() == {"length": 3}
    assert client_port(after) == client_port(first)
    deadline = time.monotonic() + 10
    while "hunter2" not in limits.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = limits.log()
    assert "Traceback" in log
    assert "ValueError: database password is hunter2" in log


def test_async_endpoint_error_is_a_plain_500(routes: httpx.Client) -> None:
    response = routes.post("/async-fail")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert detail.split(":")[0].isidentifier() and "Traceback" not in detail
    assert routes.post("/post-alias", json={"a": 1}).json() == {"sum": 3}


# --- 413: size limits ------------------------------------------------------------------------


def assert_too_large(response: httpx.Response, limit_mb: float) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.json() == {"detail": f"request body exceeds the limit of {limit_mb:g} MB"}
    assert response.headers["connection"] == "close"


def test_upload_under_the_app_limit_is_accepted(limits_client: httpx.Client) -> None:
    data = b"a" * (4 * MB)
    response = limits_client.post(
        "/upload", files={"file": ("f.bin", data, "application/octet-stream")}
    )
    assert response.json() == {"size": 4 * MB}


def test_upload_over_the_app_limit_is_a_413(limits_client: httpx.Client) -> None:
    data = b"a" * (6 * MB)
    response = limits_client.post(
        "/upload", files={"file": ("f.bin", data, "application/octet-stream")}
    )
    assert_too_large(response, LIMIT_MB)
    assert limits_client.post("/text", json={"value": "x"}).json() == {"length": 1}


def test_json_and_form_bodies_over_the_limit_are_a_413(limits_client: httpx.Client) -> None:
    value = "x" * (6 * MB)
    assert_too_large(limits_client.post("/text", json={"value": value}), LIMIT_MB)
    assert_too_large(limits_client.post("/text", data={"value": value}), LIMIT_MB)


def test_endpoint_limit_below_the_app_limit(limits_client: httpx.Client) -> None:
    data = b"a" * (2 * MB)
    response = limits_client.post(
        "/tiny", files={"file": ("f.bin", data, "application/octet-stream")}
    )
    assert_too_large(response, 1)
    small = limits_client.post(
        "/tiny", files={"file": ("f.bin", b"a" * 900_000, "application/octet-stream")}
    )
    assert small.json() == {"size": 900_000}


def test_endpoint_limit_above_the_app_limit(limits_client: httpx.Client) -> None:
    data = b"a" * (8 * MB)
    response = limits_client.post(
        "/big", files={"file": ("f.bin", data, "application/octet-stream")}
    )
    assert response.json() == {"size": 8 * MB}


def test_endpoint_limit_in_a_basic_service(basic: httpx.Client) -> None:
    # sync_basic: /small has max_upload_file_size_mb=1, the app keeps the 1024 MB default.
    data = b"a" * (2 * MB)
    response = basic.post("/small", files={"file": ("f.bin", data, "application/octet-stream")})
    assert_too_large(response, 1)
    assert basic.post(
        "/file", files={"file": ("f.bin", data, "application/octet-stream")}
    ).json() == {
        "size": 2 * MB,
        "name": "f.bin",
    }


class _Stream:
    """A request body from a generator: ``total`` bytes in 64 KiB chunks, counted."""

    def __init__(self, total: int, prefix: bytes = b"", suffix: bytes = b"") -> None:
        self.total = total
        self.prefix = prefix
        self.suffix = suffix
        self.sent = 0

    @property
    def length(self) -> int:
        return len(self.prefix) + self.total + len(self.suffix)

    def __iter__(self) -> Iterator[bytes]:
        chunk = b"a" * 65536
        yield self.prefix
        self.sent += len(self.prefix)
        left = self.total
        while left > 0:
            piece = chunk[: min(left, len(chunk))]
            yield piece
            left -= len(piece)
            self.sent += len(piece)
        yield self.suffix
        self.sent += len(self.suffix)


def _multipart_stream(total: int) -> tuple[_Stream, dict[str, str]]:
    prefix = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    suffix = f"\r\n--{BOUNDARY}--\r\n".encode()
    return _Stream(total, prefix, suffix), {
        "content-type": f"multipart/form-data; boundary={BOUNDARY}"
    }


def _json_stream(total: int) -> tuple[_Stream, dict[str, str]]:
    return _Stream(total, b'{"value": "', b'"}'), {"content-type": "application/json"}


class _PeakRss:
    """Samples a process's RSS in a thread; ``peak`` is the highest value seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


@pytest.mark.parametrize("declared_length", [False, True], ids=["chunked", "content-length"])
@pytest.mark.parametrize("kind", ["multipart", "json"])
def test_60_mb_upload_is_refused_while_streaming_with_bounded_memory(
    limits: ServiceProcess, limits_client: httpx.Client, kind: str, declared_length: bool
) -> None:
    assert limits.process is not None
    total = 60 * MB
    # Warm the server's code paths, so that only this upload can make it grow.
    warm = limits_client.post(
        "/upload", files={"file": ("w.bin", b"w" * MB, "application/octet-stream")}
    )
    assert warm.json() == {"size": MB}
    stream, headers = _multipart_stream(total) if kind == "multipart" else _json_stream(total)
    if declared_length:
        headers["content-length"] = str(stream.length)
    path = "/upload" if kind == "multipart" else "/text"
    before = psutil.Process(limits.process.pid).memory_info().rss
    with _PeakRss(limits.process.pid) as rss:
        response = limits_client.post(path, content=stream, headers=headers)
    assert_too_large(response, LIMIT_MB)
    if not declared_length:
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.request.headers
    # The answer came while the body was still streaming: the client stopped sending.
    assert stream.sent < total // 2, f"the client sent {stream.sent} bytes before the 413"
    growth_mb = (rss.peak - before) / MB
    assert growth_mb < 10, f"server RSS grew by {growth_mb:.1f} MB"
    assert limits_client.post("/text", json={"value": "ok"}).json() == {"length": 2}
