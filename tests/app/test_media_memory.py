"""Bounded memory: with 4 uploads and 8 downloads of 100 MB at once (and the JobResult of
that file read 8 times by reference and twice as streamed base64), the API process stays under 250 MB RSS, on SQLite and on
PostgreSQL (whose files are read and written in chunks)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import ServiceProcess, http_client, peak_rss_during, running_service
from tests.store.postgres_db import fresh_database

pytestmark = pytest.mark.slow

MB = 1_000_000
SIZE = 100 * MB
RSS_LIMIT = 250 * MB


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "input.mp4"
    sha = hashlib.sha256()
    with open(path, "wb") as out:
        head = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
        out.write(head)
        sha.update(head)
        for _ in range(SIZE // MB):
            block = os.urandom(MB)
            out.write(block)
            sha.update(block)
    return path, sha.hexdigest()


@pytest.fixture(params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceProcess]:
    settings = {"max_upload_file_size_mb": 200, "role": "all"}
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            settings["database_url"] = stack.enter_context(fresh_database())
        yield stack.enter_context(running_service(tmp_path, "queue_media.py", **settings))


def run_all(tasks: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(task: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                task()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(task)) for task in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors, errors[0]


def test_large_uploads_and_downloads_in_bounded_memory(
    service: ServiceProcess, big_file: tuple[Path, str]
) -> None:
    path, digest = big_file
    with http_client(service.url, timeout=300) as client:
        with open(path, "rb") as data:
            first = client.post("/echo-file", params={"wait": 60}, files={"file": data}).json()
        assert first["status"] == "finished", first
        url = first["result"]["content"]
        assert url.startswith("http://")  # above the inline limit: by reference
        api_pid = client.get("/health").json()["api"]["pid"]

    def upload() -> None:
        with http_client(service.url, timeout=300) as http, open(path, "rb") as data:
            response = http.post("/digest", files={"file": ("clip.mp4", data)})
            assert response.status_code == 200, response.text

    def download() -> None:
        sha = hashlib.sha256()
        with httpx.Client(timeout=300) as http, http.stream("GET", url) as response:
            for chunk in response.iter_bytes(MB):
                sha.update(chunk)
        assert sha.hexdigest() == digest

    def status() -> None:
        body = httpx.get(f"{service.url}/status/{first['job_id']}", timeout=60).json()
        assert body["result"]["content"] == url

    def status_inline_all() -> None:
        # 133 MB of base64 in one JSON answer, streamed while the file is read.
        params = {"inline": "all"}
        with (
            httpx.Client(timeout=300) as http,
            http.stream(
                "GET", f"{service.url}/status/{first['job_id']}", params=params
            ) as response,
        ):
            size = sum(len(chunk) for chunk in response.iter_bytes(MB))
        assert size > SIZE * 4 // 3

    work = [upload] * 4 + [download] * 8 + [status] * 8 + [status_inline_all] * 2
    _, peak = peak_rss_during(api_pid, lambda: run_all(work))
    assert peak < RSS_LIMIT, f"API peak RSS {peak / MB:.0f} MB"
