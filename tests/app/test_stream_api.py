"""``GET /stream`` details that need no worker: auth, keep-alive, a queued job's stream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import ServiceProcess, http_client, running_service
from tests.supervisor.support import submit, wait_until

KEY = "stream-secret"


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("stream-api")
    settings = {"role": "api", "api_key": KEY}
    with running_service(tmp, "queue_stream.py", wait_healthy=False, **settings) as svc:
        svc.wait_until("/openapi.json", status=200)
        yield svc


@pytest.fixture
def client(api_only: ServiceProcess) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {KEY}"}
    with http_client(api_only.url, timeout=30, headers=headers) as http:
        yield http


def test_the_stream_needs_the_api_key_like_every_route(client: httpx.Client) -> None:
    job_id = submit(client, "/plain")
    # Streamed: an open stream (the job stays queued) fails here at once, not by a timeout.
    with httpx.stream("GET", f"{client.base_url}/stream/{job_id}", timeout=30) as refused:
        assert refused.status_code == 401
        assert "API key" in json.loads(refused.read())["detail"]
    with client.stream("GET", f"/stream/{job_id}") as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert first == "event: job"


@pytest.mark.slow
def test_an_idle_stream_sends_a_keep_alive_comment_within_15_s(client: httpx.Client) -> None:
    job_id = submit(client, "/tokens")  # no workers: it stays queued
    lines: list[tuple[float, str]] = []
    start = time.monotonic()
    with client.stream("GET", f"/stream/{job_id}", timeout=30) as response:
        for line in response.iter_lines():
            lines.append((time.monotonic() - start, line))
            if line.startswith(":"):
                break
    assert json.loads(lines[1][1].removeprefix("data: "))["status"] == "queued"
    when, comment = lines[-1]
    assert comment == ": keep-alive" and 14 <= when < 16.5


def test_the_stream_ends_when_its_client_goes_away(
    client: httpx.Client, api_only: ServiceProcess
) -> None:
    job_id = submit(client, "/tokens")  # no workers: the stream would stay open for good
    with client.stream("GET", f"/stream/{job_id}") as response:
        assert next(response.iter_lines()) == "event: job"
    gone = f"stream of job {job_id} closed: the client went away"
    wait_until(lambda: gone in api_only.log(), 10, gone)
