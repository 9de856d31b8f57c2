"""``Idempotency-Key`` on submits against a real API process and SQLite store: one job
per key and endpoint, across encodings and restarts, 409 for another request with the
same key, and a new job once the first one expired."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from apipod.app.jsonbody import LONG_STRING
from tests.app.support import MediaServer, b64, data_url, media_server, png_bytes
from tests.helpers import ServiceProcess, http_client, running_service

TTL_S = 2


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("idem")
    with running_service(
        tmp,
        "queue_ok.py",
        wait_healthy=False,
        role="api",
        job_ttl=TTL_S,
        media_url_allowlist="127.0.0.1",
    ) as service:
        service.wait_until("/openapi.json", status=200)
        yield service


@pytest.fixture
def client(api_only: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(api_only.url, timeout=30) as http:
        yield http


def post(client: httpx.Client, path: str, key: str, **kwargs: object) -> httpx.Response:
    return client.post(path, headers={"Idempotency-Key": key}, **kwargs)


def test_the_same_key_returns_the_same_job(client: httpx.Client) -> None:
    first = post(client, "/echo", "order-1", json={"text": "hi", "times": 2})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = post(client, "/echo", "order-1", json={"text": "hi", "times": 2})
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["job_id"] == first.json()["job_id"]
    as_form = post(client, "/echo", "order-1", data={"text": "hi", "times": "2"})
    assert as_form.json()["job_id"] == first.json()["job_id"]  # same request, other encoding
    elsewhere = post(client, "/pin", "order-1", json={})
    assert elsewhere.json()["job_id"] != first.json()["job_id"]  # keys are per endpoint
    plain = [client.post("/echo", json={"text": "hi", "times": 2}) for _ in range(2)]
    assert plain[0].json()["job_id"] != plain[1].json()["job_id"]  # no key, no dedup


def test_the_same_key_with_another_body_is_a_409(client: httpx.Client) -> None:
    post(client, "/echo", "order-2", json={"text": "a"})
    response = post(client, "/echo", "order-2", json={"text": "b"})
    assert response.status_code == 409
    assert "different request" in response.json()["detail"]


@pytest.fixture(scope="module")
def images() -> Iterator[MediaServer]:
    with media_server({}) as server:
        yield server


def as_json(image: bytes, _: MediaServer) -> dict:
    return {"json": {"image": b64(image)}}


def as_data_url(image: bytes, _: MediaServer) -> dict:
    return {"json": {"image": data_url(image, "image/png")}}


def as_urlencoded(image: bytes, _: MediaServer) -> dict:
    return {"data": {"image": data_url(image, "image/png")}}


def as_upload(image: bytes, _: MediaServer) -> dict:
    return {"files": {"image": ("in.png", image, "image/png")}}


def as_url(image: bytes, server: MediaServer) -> dict:
    server.files["/in.png"] = (image, "image/png")  # the same URL, whatever it serves now
    return {"json": {"image": server.url("/in.png")}}


ENCODINGS = [as_json, as_data_url, as_urlencoded, as_upload, as_url]


@pytest.mark.parametrize("encode", ENCODINGS, ids=lambda f: f.__name__)
def test_a_key_covers_the_file_bytes_in_every_encoding(
    client: httpx.Client, images: MediaServer, encode: Callable[[bytes, MediaServer], dict]
) -> None:
    """Small files arrive as bytes, long base64, uploads and URLs as spooled files: each
    is hashed by its bytes (an upload used to be a 500)."""
    key = f"file-{encode.__name__}"
    for side in (8, 200):  # 200: noise whose base64 is long enough to be spooled
        image, other = png_bytes(side, seed=1), png_bytes(side, seed=2)
        assert side == 8 or len(b64(image)) > LONG_STRING
        first = post(client, "/invert", f"{key}-{side}", **encode(image, images))
        assert first.status_code == 200, first.text
        again = post(client, "/invert", f"{key}-{side}", **encode(image, images))
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["job_id"] == first.json()["job_id"]
        changed = post(client, "/invert", f"{key}-{side}", **encode(other, images))
        assert changed.status_code == 409, changed.text
        assert "different request" in changed.json()["detail"]


def test_bad_keys_are_422(client: httpx.Client) -> None:
    for key in ("", "x" * 256, "with space"):
        response = post(client, "/echo", key, json={"text": "a"})
        assert response.status_code == 422, key
        assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


def test_racing_retries_make_one_job(client: httpx.Client, api_only: ServiceProcess) -> None:
    def send(_: int) -> httpx.Response:
        with http_client(api_only.url, timeout=30) as own:
            return post(own, "/echo", "order-race", json={"text": "race"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(8)))
    ok = [r.json()["job_id"] for r in responses if r.status_code == 200]
    busy = [r for r in responses if r.status_code == 409]
    assert ok and len(set(ok)) == 1 and len(ok) + len(busy) == 8
    assert all("still being stored" in r.json()["detail"] for r in busy)
    jobs = client.get("/jobs", params={"endpoint": "/echo", "limit": 1000}).json()["jobs"]
    assert sum(1 for j in jobs if j["job_id"] == ok[0]) == 1
    assert post(client, "/echo", "order-race", json={"text": "race"}).json()["job_id"] == ok[0]


@pytest.mark.slow
def test_a_key_outlives_a_restart_and_ends_with_its_job(tmp_path: Path) -> None:
    with (
        running_service(
            tmp_path, "queue_ok.py", wait_healthy=False, role="api", job_ttl=TTL_S
        ) as service,
        http_client(service.url, timeout=30) as client,
    ):
        service.wait_until("/openapi.json", status=200)
        job_id = post(client, "/echo", "order-3", json={"text": "x"}).json()["job_id"]
        service.stop()
        service.start().wait_until("/openapi.json", status=200)
        after = post(client, "/echo", "order-3", json={"text": "x"})
        assert after.json()["job_id"] == job_id and after.headers["idempotent-replayed"] == "true"
        client.post(f"/cancel/{job_id}")  # ended: it expires TTL_S seconds later
        deadline = time.monotonic() + 30
        while client.get(f"/status/{job_id}").status_code != 404:
            assert time.monotonic() < deadline, "the job did not expire"
            time.sleep(0.2)
        fresh = post(client, "/echo", "order-3", json={"text": "other text now"})
        assert fresh.status_code == 200 and fresh.json()["job_id"] != job_id
