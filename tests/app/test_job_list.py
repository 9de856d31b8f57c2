"""``GET /jobs``: validated filters, endpoint with or without its slash, cursor pages,
and rows with endpoint, attempts and queue position (API alone: jobs stay queued)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apipod.store import open_store
from tests.helpers import ServiceProcess, http_client, running_service


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("jobs")
    with running_service(tmp, "queue_ok.py", wait_healthy=False, role="api") as service:
        service.wait_until("/openapi.json", status=200)
        yield service


@pytest.fixture
def client(api_only: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(api_only.url, timeout=30) as http:
        yield http


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["job_id"] for row in response.json()["jobs"]]


def test_unknown_status_is_a_422_not_an_empty_list(client: httpx.Client) -> None:
    response = client.get("/jobs", params={"status": "bogus"})
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["query", "status"] and "bogus" in error["msg"]
    assert client.get("/jobs", params={"status": "queued,nope"}).status_code == 422
    assert client.get("/jobs", params={"cursor": "abc"}).status_code == 422


def test_endpoint_matches_with_or_without_slash(client: httpx.Client) -> None:
    job_id = client.post("/echo", json={"text": "x"}).json()["job_id"]
    with_slash = ids_of(client.get("/jobs", params={"endpoint": "/echo"}))
    without = ids_of(client.get("/jobs", params={"endpoint": "echo"}))
    assert job_id in with_slash and with_slash == without


def test_rows_carry_endpoint_attempts_and_queue_position(
    client: httpx.Client, api_only: ServiceProcess
) -> None:
    before = client.get("/jobs", params={"status": "queued", "limit": 1000}).json()["jobs"]
    ids = [client.post("/pin", json={}).json()["job_id"] for _ in range(3)]
    client.post(f"/cancel/{ids[1]}")
    rows = {r["job_id"]: r for r in client.get("/jobs", params={"limit": 10}).json()["jobs"]}
    first, cancelled, last = (rows[i] for i in ids)
    assert first["endpoint"] == "/pin" and first["attempts"] == 0 and first["max_attempts"] == 3
    assert first["queue_position"] == len(before) + 1
    assert last["queue_position"] == len(before) + 2  # the cancelled one no longer counts
    assert "queue_position" not in cancelled and cancelled["status"] == "cancelled"
    assert "result" not in first
    data_dir = Path(api_only.env["APIPOD_DATA_DIR"])
    store = open_store(f"sqlite:///{data_dir / 'apipod.db'}", data_dir)
    try:
        store.claim("test-worker", 30)  # the oldest queued job of all
    finally:
        store.close()
    moved = {r["job_id"]: r for r in client.get("/jobs", params={"limit": 10}).json()["jobs"]}
    assert moved[ids[2]]["queue_position"] == len(before) + 1


def test_pages_follow_each_other_by_cursor(client: httpx.Client) -> None:
    ids = [client.post("/noop", json={}).json()["job_id"] for _ in range(5)]
    seen: list[str] = []
    params: dict[str, object] = {"endpoint": "noop", "limit": 2}
    for _ in range(10):
        body = client.get("/jobs", params=params).json()
        seen += [row["job_id"] for row in body["jobs"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == ids[::-1]
    statuses = client.get("/jobs", params=[("status", "queued"), ("status", "cancelled")])
    assert set(ids) <= set(ids_of(statuses))


def test_retry_route(client: httpx.Client) -> None:
    job_id = client.post("/pin", json={}).json()["job_id"]
    refused = client.post(f"/retry/{job_id}")
    assert refused.status_code == 409 and "queued" in refused.json()["detail"]
    client.post(f"/cancel/{job_id}")
    retried = client.post(f"/retry/{job_id}")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert client.get(f"/status/{job_id}").json()["status"] == "queued"
    assert client.post("/retry/0123456789abcdef").status_code == 404
    assert client.post("/retry/bad%20id").status_code == 422
