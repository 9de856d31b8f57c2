"""The queue-mode HTTP API (DESIGN §4) against a real supervisor, API process and store.

Most tests run the API alone (role "api": no workers), so jobs stay queued and the
store's worker verbs can be driven directly from the test.
"""

from __future__ import annotations

import base64
import concurrent.futures
import os
import signal
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from media_toolkit import ImageFile

from apipod.store import open_store
from tests.helpers import ServiceProcess, http_client, running_service, wait_for_status

JOB_KEYS = {"job_id", "status", "metrics", "links"}


def png_bytes(size: int = 8) -> bytes:
    pixels = np.full((size, size, 3), 200, dtype=np.uint8)
    return ImageFile().from_np_array(pixels).to_bytes()


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("api")
    with running_service(tmp, "queue_ok.py", wait_healthy=False, role="api", job_ttl=3600) as svc:
        svc.wait_until("/openapi.json", status=200)
        yield svc


@pytest.fixture
def client(api_only: ServiceProcess):
    with http_client(api_only.url, timeout=30) as http:
        yield http


def store_of(service: ServiceProcess):
    data_dir = Path(service.env["APIPOD_DATA_DIR"])
    return open_store(f"sqlite:///{data_dir.resolve() / 'apipod.db'}", data_dir)


def test_submit_returns_a_queued_job_result(client: httpx.Client) -> None:
    response = client.post("/echo?details_id=abc", json={"text": "hi", "times": 2})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == JOB_KEYS  # null fields are omitted
    assert body["status"] == "queued"
    job_id = body["job_id"]
    assert body["links"] == {
        "status": f"/status/{job_id}",
        "cancel": f"/cancel/{job_id}",
        "stream": f"/stream/{job_id}",
    }
    assert set(body["metrics"]) == {"created_at", "queued_at"}
    assert body["metrics"]["created_at"].endswith("Z")


def test_status_is_readable_many_times_by_get_and_post(client: httpx.Client) -> None:
    job_id = client.post("/echo", data={"text": "form"}).json()["job_id"]
    first = client.get(f"/status/{job_id}").json()
    second = client.post("/status", params={"job_id": job_id}).json()
    third = client.get(f"/status/{job_id}").json()
    assert first == second == third
    assert first["job_id"] == job_id and first["status"] == "queued"


def test_unknown_and_malformed_ids(client: httpx.Client) -> None:
    response = client.get("/status/0123456789abcdef")
    assert response.status_code == 404
    body = response.json()
    assert body["job_id"] == "0123456789abcdef"
    assert body["status"] == "not_found"
    assert "not found" in body["error"]
    assert client.post("/cancel/nope").status_code == 404
    malformed = client.get("/status/" + "x" * 200)
    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["loc"] == ["path", "job_id"]
    assert client.post("/cancel/" + "x" * 200).status_code == 422


def test_inputs_are_persisted_readably(client: httpx.Client, api_only: ServiceProcess) -> None:
    image = png_bytes()
    response = client.post("/invert", files={"image": ("in.png", image, "image/png")})
    job_id = response.json()["job_id"]
    db = Path(api_only.env["APIPOD_DATA_DIR"]) / "apipod.db"
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT endpoint, status, inputs, created_at FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    assert row[0] == "/invert" and row[1] == "queued"
    assert row[3].endswith("Z")
    assert '"file_name": "in.png"' in row[2] or '"file_name":"in.png"' in row[2]
    store = store_of(api_only)
    try:
        job = store.get(job_id)
        assert job is not None
        assert store.read_file(job.inputs["image"]["$file"]) == image
    finally:
        store.close()


def test_bad_input_writes_nothing(client: httpx.Client, api_only: ServiceProcess) -> None:
    before = client.get("/jobs", params={"limit": 1000}).json()["jobs"]
    not_an_image = base64.b64encode(b"plain text, not pixels").decode()
    for response in (
        client.post("/invert", json={"image": not_an_image}),
        client.post("/invert", json={"image": "file:///etc/passwd"}),
        client.post("/echo", json={"times": "many"}),
        client.post("/echo", content=b"{", headers={"content-type": "application/json"}),
    ):
        assert 400 <= response.status_code < 500
        assert isinstance(response.json(), dict)
    after = client.get("/jobs", params={"limit": 1000}).json()["jobs"]
    assert len(after) == len(before)


def test_cancel_a_queued_job(client: httpx.Client) -> None:
    job_id = client.post("/noop").json()["job_id"]
    cancelled = client.post(f"/cancel/{job_id}").json()
    assert cancelled["status"] == "cancelled"
    assert "finished_at" in cancelled["metrics"]
    again = client.post(f"/cancel/{job_id}").json()
    assert again["status"] == "cancelled"


def test_job_history_filters(client: httpx.Client) -> None:
    ids = [client.post("/pin", json={"delay": 0}).json()["job_id"] for _ in range(3)]
    client.post(f"/cancel/{ids[0]}")
    listed = client.get("/jobs", params={"endpoint": "/pin", "limit": 2}).json()["jobs"]
    assert [j["job_id"] for j in listed] == [ids[2], ids[1]]  # newest first
    cancelled = client.get("/jobs", params={"status": "cancelled", "endpoint": "/pin"}).json()
    assert ids[0] in [j["job_id"] for j in cancelled["jobs"]]
    assert client.get("/jobs", params={"limit": 0}).status_code == 422


def test_long_poll_answers_when_the_job_ends(client: httpx.Client, api_only: ServiceProcess):
    job_id = client.post("/steps", json={"count": 1}).json()["job_id"]
    store = store_of(api_only)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            waiting = pool.submit(client.get, f"/status/{job_id}", params={"wait": 20})
            time.sleep(0.5)
            claimed = store.claim("test-worker", 30, ["/steps"])
            assert claimed is not None and claimed.id == job_id
            assert store.finish(job_id, "test-worker", {"text": "done"})
            body = waiting.result(timeout=20).json()
            elapsed = time.monotonic() - started
    finally:
        store.close()
    assert body["status"] == "finished"
    assert body["result"] == {"text": "done"}
    assert elapsed < 5


def test_long_poll_times_out_with_the_current_state(client: httpx.Client) -> None:
    job_id = client.post("/noop").json()["job_id"]
    started = time.monotonic()
    body = client.get(f"/status/{job_id}", params={"wait": 0.5}).json()
    assert body["status"] == "queued"
    assert 0.4 < time.monotonic() - started < 3
    assert client.get(f"/status/{job_id}", params={"wait": -1}).status_code == 422


def test_synchronous_endpoint_in_queue_mode(client: httpx.Client, api_only: ServiceProcess) -> None:
    body = client.post("/where").json()
    assert "job_id" not in body
    assert body["pid"] == _api_pid(api_only)  # served by the API process, not queued
    assert body["loaded_in_pid"] is None  # on_worker_start never runs in the API process


def test_an_endpoints_own_queue_size_bounds_its_queue(client: httpx.Client) -> None:
    accepted = [client.post("/bounded") for _ in range(3)]
    assert [r.status_code for r in accepted] == [200, 200, 200]
    full = client.post("/bounded")
    assert full.status_code == 429 and full.headers["Retry-After"].isdigit()
    assert full.json()["detail"] == "queue for /bounded is full (3 jobs waiting)"
    assert client.post("/noop").status_code == 200  # the others keep the global 500
    client.post(f"/cancel/{accepted[0].json()['job_id']}")
    assert client.post("/bounded").status_code == 200  # room again


@pytest.mark.slow
def test_back_pressure_429_under_concurrent_submits(tmp_path: Path) -> None:
    with running_service(
        tmp_path, "queue_ok.py", wait_healthy=False, role="api", queue_size=5
    ) as svc:
        svc.wait_until("/openapi.json", status=200)
        with http_client(svc.url, timeout=30) as http:
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda _: http.post("/noop"), range(16)))
            other = http.post("/pin", json={})
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 5 and codes.count(429) == 11
    rejected = next(r for r in responses if r.status_code == 429)
    assert rejected.headers["Retry-After"].isdigit()
    assert "full" in rejected.json()["detail"]
    assert other.status_code == 200  # the limit is per endpoint


@pytest.mark.slow
def test_accepted_submits_survive_kill_9_of_the_api(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_ok.py", wait_healthy=False, role="api") as svc:
        svc.wait_until("/openapi.json", status=200)
        with http_client(svc.url, timeout=30) as http:
            ids = [http.post("/echo", json={"text": f"t{i}"}).json()["job_id"] for i in range(20)]
        os.kill(_api_pid(svc), signal.SIGKILL)
        # the supervisor restarts the API process; every accepted job is still there
        svc.wait_until("/openapi.json", status=200)
        with http_client(svc.url, timeout=30) as http:
            for job_id in ids:
                body = http.get(f"/status/{job_id}").json()
                assert body["status"] == "queued"
        store = store_of(svc)
        try:
            assert [store.get(j).inputs for j in ids] == [
                {"text": f"t{i}", "times": 1} for i in range(20)
            ]
        finally:
            store.close()


@pytest.mark.slow
def test_finished_jobs_expire_after_ttl(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ok.py", job_ttl=1) as svc,
        http_client(svc.url, timeout=30) as http,
    ):
        image = png_bytes()
        body = http.post("/invert", params={"wait": 20}, files={"image": ("a.png", image)}).json()
        assert body["status"] == "finished"
        result = body["result"]
        assert result["file_name"] == "inverted.png"
        assert result["content_type"] == "image/png"
        inverted = ImageFile().from_bytes(base64.b64decode(result["content"]))
        assert int(inverted.to_np_array()[0, 0, 0]) == 55
        files_dir = Path(svc.env["APIPOD_DATA_DIR"]) / "files" / body["job_id"]
        assert files_dir.exists()
        deadline = time.monotonic() + 60  # job_ttl 1 s: the sweep's cadence and the load
        while http.get(f"/status/{body['job_id']}").status_code != 404:
            assert time.monotonic() < deadline, "job not expired"
            time.sleep(0.2)
        assert not files_dir.exists()


@pytest.mark.slow
def test_submit_with_wait_returns_the_finished_job(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ok.py") as svc,
        http_client(svc.url, timeout=30) as http,
    ):
        body = http.post("/echo", params={"wait": 10}, json={"text": "ab", "times": 2}).json()
        assert body["status"] == "finished"
        assert body["result"]["text"] == "abab"
        slow = http.post("/steps", json={"count": 5, "delay": 0.1}).json()
        finished = wait_for_status(http, slow["job_id"], {"finished"})
        assert finished["progress"] == 1.0 and finished["message"] == "step 5/5"
        # five sleeps of 0.1 s: the execution time is the run, not the queue wait
        metrics = finished["metrics"]
        assert 0.5 <= metrics["execution_time_s"] < 5, metrics
        run = _instant(metrics["finished_at"]) - _instant(metrics["started_at"])
        assert metrics["execution_time_s"] == pytest.approx(run.total_seconds(), abs=1e-5)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _api_pid(service: ServiceProcess) -> int:
    return httpx.get(service.url + "/health").json()["api"]["pid"]


@pytest.mark.slow
def test_a_locked_database_gives_503_and_writes_nothing(
    client: httpx.Client, api_only: ServiceProcess
) -> None:
    db = Path(api_only.env["APIPOD_DATA_DIR"]) / "apipod.db"
    before = client.get("/jobs", params={"limit": 1000}).json()["jobs"]
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        response = client.post("/echo", json={"text": "blocked"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    assert "store unavailable" in response.json()["detail"]
    after = client.get("/jobs", params={"limit": 1000}).json()["jobs"]
    assert len(after) == len(before)
    assert client.post("/echo", json={"text": "fine again"}).status_code == 200
