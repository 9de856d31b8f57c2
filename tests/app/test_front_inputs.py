"""Hostile inputs in synchronous mode, on a real uvicorn on 127.0.0.1: malformed JSON,
media that would amplify memory, hostile file names and URLs, and client errors."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.app.support import png_bytes, served
from tests.helpers import http_client

BIG_PNG = png_bytes(side=400, seed=3)  # noise: about 480 KB, far past the 64 KiB cut-off


@pytest.fixture(scope="module")
def front() -> Iterator[httpx.Client]:
    with served("sync_front") as client:
        yield client


class _Hostile(BaseHTTPRequestHandler):
    """Media URLs that misbehave, by path."""

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        if self.path == "/gzip":  # 5 MB of zeros, 5 KB on the wire
            body = gzip.compress(b"\0" * 5_000_000)
            self._send(body, {"Content-Encoding": "gzip", "Content-Type": "image/png"})
        elif self.path == "/odd-redirect":
            self.send_response(302)
            self.send_header("Location", "http:127.0.0.1:1/x")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path.startswith("/big/"):  # 600 KB each
            self._send(BIG_PNG + b"\0" * (600_000 - len(BIG_PNG)), {"Content-Type": "image/png"})
        else:
            self.send_error(404)

    def _send(self, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def assert_4xx_json(response: httpx.Response, status: int = 422) -> dict:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert isinstance(body, dict) and body["detail"]
    return body


# --- malformed JSON ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"value": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b"}",
        b'{"value": 1, "unknown": ' + b"9" * 5000 + b"}",
        b'{"value": "\\ud800"}',
        b'{"\\udfff": 1, "value": 2}',
        b'{"value": "\xff\xfe"}',
        b'{"value": "a\\ud83d"}',
    ],
    ids=["deep", "deep-any", "huge-int", "surrogate", "surrogate-key", "not-utf8", "half-pair"],
)
def test_malformed_json_gets_422(front: httpx.Client, body: bytes) -> None:
    response = front.post("/anything", content=body, headers={"content-type": "application/json"})
    assert_4xx_json(response)
    assert front.post("/anything", json={"value": {"a": [1]}}).json() == {"type": "dict"}


def test_valid_surrogate_pairs_and_moderate_nesting_still_work(front: httpx.Client) -> None:
    body = b'{"value": "\\ud83d\\ude00"}'
    response = front.post("/text", content=body.replace(b"value", b"text"))
    assert response.json() == {"length": 1}
    nested = {"value": json.loads("[" * 40 + "]" * 40)}
    assert front.post("/anything", json=nested).json() == {"type": "list"}


# --- base64 in JSON, decoded in chunks -----------------------------------------------------------
@pytest.mark.parametrize("form", ["plain", "data-url", "file-model", "urlsafe"])
def test_long_base64_in_json_is_decoded_exactly(front: httpx.Client, form: str) -> None:
    encoded = base64.b64encode(BIG_PNG).decode()
    value: object = {
        "plain": encoded,
        "data-url": f"data:image/png;base64,{encoded}",
        "file-model": {"file_name": "../../etc/x.png", "content": encoded},
        "urlsafe": base64.urlsafe_b64encode(BIG_PNG).decode().rstrip("="),
    }[form]
    described = front.post("/describe", json={"file": value}).json()
    assert described["size"] == len(BIG_PNG), described
    assert described["sha256"] == hashlib.sha256(BIG_PNG).hexdigest()
    if form == "file-model":
        assert described["file_name"] == "x.png"


def test_long_non_media_strings_arrive_whole(front: httpx.Client) -> None:
    text = "A" * 300_000
    assert front.post("/text", json={"text": text}).json() == {"length": 300_000}
    body = '{"text": "quote \\" ' + "B" * 100_000 + '"}'
    response = front.post("/text", content=body, headers={"content-type": "application/json"})
    assert response.json() == {"length": 100_008}


def test_broken_long_base64_is_a_422(front: httpx.Client) -> None:
    broken = base64.b64encode(BIG_PNG).decode()[:-3] + "A=B="
    assert_4xx_json(front.post("/describe", json={"file": broken}))


# --- file names ----------------------------------------------------------------------------------
def test_client_file_names_reach_the_function_as_a_safe_base_name(front: httpx.Client) -> None:
    cases = {
        "../../../../tmp/x.png": "x.png",
        "..\\..\\windows\\evil.png": "evil.png",
        "/abs/path/y.png": "y.png",
        "..": "file",
    }
    for sent, expected in cases.items():
        files = {"file": (sent, BIG_PNG, "image/png")}
        assert front.post("/describe", files=files).json()["file_name"] == expected, sent


# --- media budget and hostile URLs ---------------------------------------------------------------
def test_all_media_of_a_request_count_against_the_upload_limit(
    front: httpx.Client, hostile: str
) -> None:
    urls = [f"{hostile}/big/{i}" for i in range(10)]  # 10 x 600 KB under a 1 MB limit
    response = front.post("/images", json={"pictures": urls})
    assert_4xx_json(response, 413)
    assert "1 MB" in response.json()["detail"]
    one = front.post("/images", json={"pictures": urls[:1]})
    assert one.json() == {"count": 1}


def test_a_compressed_download_is_refused_not_inflated(front: httpx.Client, hostile: str) -> None:
    body = assert_4xx_json(front.post("/describe", json={"file": f"{hostile}/gzip"}))
    assert "Content-Encoding" in json.dumps(body)


def test_a_redirect_to_a_malformed_url_is_a_422(front: httpx.Client, hostile: str) -> None:
    assert_4xx_json(front.post("/describe", json={"file": f"{hostile}/odd-redirect"}))


# --- errors for their audience -----------------------------------------------------------------
def test_http_error_raised_by_a_function_is_the_answer(front: httpx.Client) -> None:
    response = front.post("/refuse", json={"voice": "alto"})
    assert response.status_code == 409
    assert response.json() == {"detail": "voice alto is busy"}


def test_in_flight_budget_answers_503_with_retry_after() -> None:
    """Two large bodies at once with room for one: the second waits its turn (503). A
    1 MB text body holds about 2 MB: its bytes, then the str they parse into."""
    from apipod.loader import load_app
    from tests.helpers import SERVICES, serve_in_thread

    app = load_app(str(SERVICES / "sync_front.py"))
    app.apply_config(app.config.replace(max_inflight_mb=2.5))
    payload = json.dumps({"text": "x" * 1_000_000}).encode()

    def slow_body() -> Iterator[bytes]:
        yield payload[:900_000]
        time.sleep(2)
        yield payload[900_000:]

    with serve_in_thread(app) as url, http_client(url, timeout=30) as client:
        results: list[int] = []
        first = threading.Thread(
            target=lambda: results.append(client.post("/text", content=slow_body()).status_code)
        )
        first.start()
        time.sleep(0.8)
        with http_client(url, timeout=30) as other:
            second = other.post("/text", content=payload)
        first.join(timeout=20)
        assert second.status_code == 503 and second.headers["retry-after"], second.text
        assert results == [200]
        with contextlib.suppress(httpx.HTTPError):
            assert client.post("/text", content=payload).status_code == 200
