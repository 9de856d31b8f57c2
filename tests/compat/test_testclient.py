"""A service tested as the original APIPod's own tests do: ``with TestClient(app.app)``.

The fixture below is written as the original's test fixture is (``app.app``,
``app.app.include_router(app)``, ``with TestClient(...) as client``). In queue mode the
app's lifespan then runs an embedded worker: jobs run in this process, on the real store
(a SQLite file, and PostgreSQL where a server answers), with FIFO order, progress, cancel,
time-outs, streams and batches. The same parameter readings are checked in both modes.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from apipod import APIPod, JobResult
from apipod.errors import ServiceLoadError
from apipod.store.datalock import DataDirInUse, DataDirLock
from tests.app.support import png_bytes, wav_bytes
from tests.helpers import http_client, serve_in_thread
from tests.services import compat_register
from tests.services.compat_register import STATE
from tests.store.postgres_db import fresh_database

PNG = png_bytes(8, seed=3)
WAV = wav_bytes()
TERMINAL = ("finished", "failed", "timeout", "cancelled")


# --- the original's fixture, as its tests write it -------------------------------------------------
def build_app(register: Callable[[APIPod], None], **config: Any) -> APIPod:
    app = APIPod(**config)
    register(app)
    return app


@contextlib.contextmanager
def build_service(register: Callable[[APIPod], None], **config: Any) -> Iterator[TestClient]:
    app = build_app(register, **config)
    fastapi_app = app.app
    fastapi_app.include_router(app)
    with TestClient(fastapi_app) as client:
        yield client


# --- where the store lives -------------------------------------------------------------------------
@contextlib.contextmanager
def store_env(kind: str, data_dir: Path, **extra: str) -> Iterator[None]:
    """The environment a service reads its store from (SQLite in ``data_dir``, or a fresh
    PostgreSQL database), with every other APIPOD_* variable cleared."""
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        for key in [k for k in os.environ if k.startswith("APIPOD_")]:
            patch.delenv(key)
        patch.setenv("APIPOD_DATA_DIR", str(data_dir))
        if kind == "postgresql":
            patch.setenv("APIPOD_DATABASE_URL", stack.enter_context(fresh_database()))
        for key, value in extra.items():
            patch.setenv(key, value)
        yield


MODES = ["dedicated", "queue-sqlite", "queue-postgresql"]


@pytest.fixture(scope="module", params=MODES)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    store = request.param.removeprefix("queue-")
    config = {} if request.param == "dedicated" else {"simulate": "serverless"}
    with store_env(store, tmp_path_factory.mktemp("testclient")), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # simulate= is the old spelling
        with build_service(compat_register.register, **config) as test_client:
            yield test_client


@pytest.fixture
def queued(client: TestClient) -> TestClient:
    if client.get("/openapi.json").json()["info"]["apipod"]["compute"] != "serverless":
        pytest.skip("queue mode only")
    compat_register.reset()
    yield client
    STATE.gate.set()  # never leave a job waiting for the next test


def is_queued(client: TestClient) -> bool:
    return client.get("/openapi.json").json()["info"]["apipod"]["compute"] == "serverless"


def call(client: TestClient, path: str, **request: Any) -> Any:
    """The function's result in both modes (queue mode: the job, waited for)."""
    response = client.post(path, **request)
    assert response.status_code == 200, response.text
    if not is_queued(client):
        return response.json()
    body = wait_for(client, response.json()["job_id"], lambda job: job["status"] in TERMINAL)
    assert body["status"] == "finished", body
    return body["result"]


def submit(client: TestClient, path: str, **request: Any) -> str:
    response = client.post(path, **request)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def wait_for(client: TestClient, job_id: str, done: Callable[[dict], bool]) -> dict:
    """Poll the job until ``done(job)``; fail after 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(f"/status/{job_id}", params={"wait": 1}).json()
        if done(body):
            return body
    pytest.fail(f"job {job_id} never reached the expected state: {body}")


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- 1. app.app ----------------------------------------------------------------------------------
def test_app_app_is_the_fastapi_application_and_including_it_in_itself_does_nothing() -> None:
    app = build_app(compat_register.register)
    assert app.app is app and isinstance(app.app, FastAPI)
    routes = [getattr(route, "path", None) for route in app.routes]
    app.app.include_router(app)
    assert [getattr(route, "path", None) for route in app.routes] == routes
    router = APIRouter()
    router.add_api_route("/extra", lambda: {"extra": True}, methods=["GET"])
    app.app.include_router(router)  # any other router is included as FastAPI does
    with TestClient(app.app) as client:
        assert client.get("/extra").json() == {"extra": True}


# --- 2. the embedded worker --------------------------------------------------------------------------
def test_the_original_fixture_drives_a_queued_job_to_finished(client: TestClient) -> None:
    submitted = client.post("/fries", data={"fries_name": "curly", "amount": 2})
    assert submitted.status_code == 200, submitted.text
    if not is_queued(client):
        assert submitted.json() == "Your fries curly are ready"
        return
    status_url = submitted.json()["links"]["status"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = client.get(status_url).json()
        if body.get("status") in TERMINAL:
            break
        time.sleep(0.05)
    assert body["status"] == "finished", body
    assert body["result"] == "Your fries curly are ready" and body["progress"] == 1.0


def test_on_worker_start_ran_in_this_process_before_the_jobs(client: TestClient) -> None:
    seen = call(client, "/loaded")
    assert seen["pid"] == os.getpid() == seen["api_pid"]
    if is_queued(client):  # the jobs' own thread, where the hook ran
        assert seen["thread"] == seen["here"] == "apipod-embedded-worker"


def test_jobs_run_one_at_a_time_in_fifo_order(queued: TestClient) -> None:
    holder = submit(queued, "/held")
    wait_for(queued, holder, lambda job: job["status"] == "processing")
    names = [f"job-{i}" for i in range(6)]
    ids = [submit(queued, "/record", json={"name": name}) for name in names]
    assert STATE.ran == []  # the one worker thread is busy
    STATE.gate.set()
    for job_id in ids:
        wait_for(queued, job_id, lambda job: job["status"] == "finished")
    assert STATE.ran == names


def test_progress_shows_and_cancel_stops_the_job_at_its_next_report(queued: TestClient) -> None:
    job_id = submit(queued, "/held", json={"name": "to-cancel"})
    body = wait_for(queued, job_id, lambda job: job.get("progress") == 0.5)
    assert body["status"] == "processing" and body["message"] == "waiting at the gate"
    cancelled = queued.post(f"/cancel/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    wait_until(lambda: "to-cancel" in STATE.stopped, "the function to see the cancel")
    assert call(queued, "/record", json={"name": "after"}) == "after"  # the worker is free
    assert queued.get(f"/status/{job_id}").json()["status"] == "cancelled"


def test_a_job_past_its_timeout_is_marked_timeout(queued: TestClient) -> None:
    job_id = submit(queued, "/slow")
    body = wait_for(queued, job_id, lambda job: job["status"] in TERMINAL)
    assert body["status"] == "timeout", body
    assert body["error"] == "job exceeded its timeout of 0.5 s"
    wait_until(lambda: "slow" in STATE.stopped, "the thread to stop at its next report")
    assert call(queued, "/record", json={"name": "next"}) == "next"


def test_a_stream_is_stored_and_replayed(queued: TestClient) -> None:
    job_id = submit(queued, "/tokens", json={"count": 3})
    body = wait_for(queued, job_id, lambda job: job["status"] in TERMINAL)
    assert body["result"] == "t0 t1 t2 "
    replay = queued.get(f"/stream/{job_id}").text
    assert replay.count("event: job") >= 1 and 'data: "t0 "' in replay and "id: 3" in replay


def test_a_generator_streams_in_synchronous_mode(client: TestClient) -> None:
    if is_queued(client):
        pytest.skip("synchronous mode only")
    response = client.post("/tokens", json={"count": 2})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert 'data: "t0 "' in response.text and "data: [DONE]" in response.text


def test_a_bytes_stream_aggregates_to_the_base64_of_the_joined_bytes(queued: TestClient) -> None:
    job_id = submit(queued, "/raw-chunks")
    body = wait_for(queued, job_id, lambda job: job["status"] in TERMINAL)
    assert body["result"] == "AAEC" == b64(b"\x00\x01\x02"), body


def test_queued_jobs_are_batched(queued: TestClient) -> None:
    holder = submit(queued, "/held")
    wait_for(queued, holder, lambda job: job["status"] == "processing")
    ids = [submit(queued, "/double", json={"value": v}) for v in range(4)]
    STATE.gate.set()
    done = [wait_for(queued, i, lambda job: job["status"] in TERMINAL) for i in ids]
    assert [job["result"] for job in done] == [0, 2, 4, 6]
    assert STATE.batches == [4]


# --- 7. JobResult round trip -------------------------------------------------------------------------
def test_a_job_result_round_trips_through_apipod_job_result(queued: TestClient) -> None:
    body = queued.post("/tokens", json={"count": 1}).json()
    job = JobResult.model_validate(body)
    assert job.links is not None and job.links.stream == body["links"]["stream"]
    assert job.links.model_dump(exclude_none=True) == body["links"]
    ended = wait_for(queued, body["job_id"], lambda j: j["status"] in TERMINAL)
    assert JobResult.model_validate(ended).links.model_dump(exclude_none=True) == ended["links"]


# --- 3. unions, 4. model defaults, 8. media lists (both modes) ---------------------------------------
def test_a_union_with_str_reads_media_as_the_original_did(client: TestClient) -> None:
    def kind(**request: Any) -> dict:
        return call(client, "/union", **request)

    image = {"type": "ImageFile", "text": None}
    assert kind(json={"img": b64(PNG)}) == image
    assert kind(data={"img": b64(PNG)}) == image
    assert kind(json={"img": "data:image/png;base64," + b64(PNG)}) == image
    assert kind(files={"img": ("p.png", PNG, "image/png")}) == image
    file_model = {"file_name": "p.png", "content_type": "image/png", "content": b64(PNG)}
    assert kind(json={"img": file_model}) == image
    for text in ("just words", "password", "a prompt, with punctuation!"):
        assert kind(json={"img": text}) == {"type": "str", "text": text}


def test_a_model_whose_fields_all_have_defaults_takes_an_empty_body(client: TestClient) -> None:
    defaults = {"dish": "soup", "portions": 1}
    assert call(client, "/order") == defaults
    assert call(client, "/order", json={}) == defaults
    assert call(client, "/order", data={}) == defaults
    assert call(client, "/order", data={"portions": "3"}) == {"dish": "soup", "portions": 3}
    assert call(client, "/order", json={"order": {"dish": "rice"}}) == {
        "dish": "rice",
        "portions": 1,
    }


def test_a_list_of_media_files_is_a_media_list_of_detected_kinds(client: TestClient) -> None:
    parts = [("items", ("a.bin", PNG)), ("items", ("b.bin", WAV)), ("more", ("c.bin", PNG))]
    assert call(client, "/media-items", files=parts) == {
        "container": "MediaList",
        "kinds": ["ImageFile", "AudioFile"],
        "more": ["ImageFile"],
    }
    sent = {"items": [b64(WAV)], "more": [b64(WAV)]}
    assert call(client, "/media-items", json=sent)["kinds"] == ["AudioFile"]


# --- when the embedded worker runs, and when not ------------------------------------------------------
def test_one_warning_names_apipod_start_and_role_api_runs_no_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="apipod.worker.embedded")
    with (
        store_env("sqlite", tmp_path / "a"),
        build_service(compat_register.register, compute="serverless") as client,
    ):
        assert call(client, "/record", json={"name": "here"}) == "here"
    warned = [r for r in caplog.records if r.name == "apipod.worker.embedded"]
    assert len(warned) == 1 and "apipod start" in warned[0].getMessage()
    caplog.clear()
    with (
        store_env("sqlite", tmp_path / "b", APIPOD_ROLE="api"),
        build_service(compat_register.register, compute="serverless") as client,
    ):
        job_id = submit(client, "/record", json={"name": "never"})
        assert client.get("/health").status_code == 503
        time.sleep(0.5)  # ample time for a worker that should not exist
        assert client.get(f"/status/{job_id}").json()["status"] == "queued"
    assert not [r for r in caplog.records if r.name == "apipod.worker.embedded"]


def test_an_embedded_worker_never_shares_a_sqlite_data_dir_with_another_runner(
    tmp_path: Path,
) -> None:
    # The data dir sits beside the service file by default, so a TestClient and an
    # 'apipod start' of one service share it: the second runner must refuse, not claim
    # the first one's jobs. The lock is the supervisor's own, held here for real.
    held = DataDirLock(tmp_path)
    held.acquire()
    try:
        with (
            store_env("sqlite", tmp_path),
            pytest.raises(DataDirInUse, match=str(tmp_path)),
            build_service(compat_register.register, compute="serverless"),
        ):
            pass
    finally:
        held.release()
    with (  # released: the next run takes it
        store_env("sqlite", tmp_path),
        build_service(compat_register.register, compute="serverless") as client,
    ):
        assert call(client, "/record", json={"name": "after"}) == "after"
        with pytest.raises(DataDirInUse):
            DataDirLock(tmp_path).acquire()


def test_a_plain_uvicorn_run_runs_queued_jobs(tmp_path: Path) -> None:
    with store_env("sqlite", tmp_path):
        app = build_app(compat_register.register, compute="serverless")
        with serve_in_thread(app) as url, http_client(url, timeout=30) as http:
            body = http.post("/record", json={"name": "uvicorn"}, params={"wait": 30}).json()
    assert body["status"] == "finished" and body["result"] == "uvicorn"


def test_a_failing_on_worker_start_stops_the_app_from_starting(tmp_path: Path) -> None:
    def register(app: APIPod) -> None:
        @app.on_worker_start
        def load() -> None:
            raise RuntimeError("no model here")

        @app.endpoint("/x")
        def x() -> int:
            return 1

    with (
        store_env("sqlite", tmp_path),
        pytest.raises(ServiceLoadError, match="on_worker_start failed: RuntimeError"),
        build_service(register, compute="serverless"),
    ):
        pass
    assert threading.active_count() < 50  # nothing left spinning
