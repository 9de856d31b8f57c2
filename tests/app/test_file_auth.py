"""With an API key set, ``/files`` needs the key like every route, and the URLs handed out
in a JobResult are signed and expire, so a client fetches them without headers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from media_toolkit import VideoFile

from apipod.app.signing import signature
from tests.helpers import ServiceProcess, running_service

KEY = "file-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("keyed-files")
    with running_service(tmp, "queue_media.py", api_key=KEY, inline_result_max_mb=1) as svc:
        yield svc


@pytest.fixture(scope="module")
def large(keyed: ServiceProcess) -> dict:
    params = {"wait": 30}
    response = httpx.post(
        f"{keyed.url}/video", params=params, json={"megabytes": 1.5}, headers=AUTH, timeout=60
    )
    assert response.status_code == 200 and response.json()["status"] == "finished"
    return response.json()


def test_result_url_is_signed_and_works_without_headers(large: dict) -> None:
    url = large["result"]["content"]
    query = parse_qs(urlsplit(url).query)
    assert set(query) == {"expires", "signature"}
    assert int(query["expires"][0]) > time.time() + 60
    response = httpx.get(url, timeout=60)
    assert response.status_code == 200 and len(response.content) == 1_500_000
    assert VideoFile().from_dict(large["result"]).to_bytes() == response.content


def test_files_need_the_key_or_a_valid_signature(keyed: ServiceProcess, large: dict) -> None:
    path = urlsplit(large["result"]["content"]).path
    base = keyed.url + path
    assert httpx.get(base).status_code == 401
    assert httpx.get(base, headers=AUTH).status_code == 200
    expires = int(time.time()) + 60
    good = signature(KEY, path, expires)
    assert httpx.get(base, params={"expires": expires, "signature": good}).status_code == 200
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    for params in (
        {"expires": expires, "signature": tampered},
        {"expires": expires + 1, "signature": good},  # the expiry is signed too
        {"expires": int(time.time()) - 1, "signature": signature(KEY, path, int(time.time()) - 1)},
        {"expires": expires, "signature": signature("other-key", path, expires)},
        {"expires": "soon", "signature": good},
    ):
        assert httpx.get(base, params=params).status_code == 401, params


def test_a_signature_opens_only_its_own_file(keyed: ServiceProcess, large: dict) -> None:
    path = urlsplit(large["result"]["content"]).path
    expires = int(time.time()) + 60
    good = signature(KEY, path, expires)
    params = {"expires": expires, "signature": good}
    assert httpx.get(f"{keyed.url}/jobs", params=params).status_code == 401
    other = path.replace("clip.mp4", "other.mp4")
    assert httpx.get(keyed.url + other, params=params).status_code == 401
