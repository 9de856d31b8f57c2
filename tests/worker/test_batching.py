"""Dynamic batching end to end: a real service (``apipod start``, one worker) on SQLite and
on PostgreSQL; each job of a batch keeps its own outcome."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from media_toolkit import ImageFile

from apipod.store import JobStatus, JobStore, open_store
from tests.app.support import png_bytes
from tests.helpers import ServiceProcess, running_service, wait_for_status
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import (
    client_for,
    health,
    ready_workers,
    submit,
    wait_terminal,
    wait_until,
    worker_running,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp(f"batch-{request.param}")
    settings: dict[str, object] = {"max_workers": 1, "gpus": "none", "max_attempts": 2}
    with fresh_database() if request.param == "postgresql" else _no_database() as url:
        if url:
            settings["database_url"] = url
        with running_service(tmp, "queue_batch.py", cancel_grace_s=1, **settings) as service:
            yield service


class _no_database:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with client_for(service) as client:
        ready_workers(client, 1, timeout=60)  # a test before may have replaced the worker
        yield client


@pytest.fixture
def store(service: ServiceProcess) -> Iterator[JobStore]:
    """The service's store, opened as another process would (to read attempts)."""
    data_dir = Path(service.env["APIPOD_DATA_DIR"])
    url = service.env.get("APIPOD_DATABASE_URL") or f"sqlite:///{data_dir / 'apipod.db'}"
    opened = open_store(url, data_dir)
    try:
        yield opened
    finally:
        opened.close()


def submit_all(client: httpx.Client, path: str, bodies: list[dict]) -> list[str]:
    return [submit(client, path, body) for body in bodies]


def test_jobs_submitted_together_run_in_one_call_and_a_failed_slot_fails_alone(
    client: httpx.Client, store: JobStore
) -> None:
    ids = submit_all(client, "/echo", [{"text": "x"}, {"text": "fail"}, {"text": "y"}])
    x, failed, y = (wait_terminal(client, job_id) for job_id in ids)
    assert x["status"] == y["status"] == "finished", (x, y)
    assert x["result"] == {"text": "x", "batch": ["x", "fail", "y"]}
    assert y["result"] == {"text": "y", "batch": ["x", "fail", "y"]}
    assert failed["status"] == "failed"
    assert failed["error"].startswith("ValueError: cannot echo fail")
    batch_ids = {body["metrics"]["batch_id"] for body in (x, failed, y)}
    assert len(batch_ids) == 1
    listed = client.get("/jobs", params={"endpoint": "/echo"}).json()["jobs"]
    assert {j["metrics"].get("batch_id") for j in listed if j["job_id"] in ids} == batch_ids
    assert [store.get(job_id).attempts for job_id in ids] == [1, 1, 1]
    for body in (x, y):  # the batch's one progress reporter reached every job
        assert body["progress"] >= 0.9 and body["message"] == "almost", body


def test_media_arrive_as_lists_of_media_objects(client: httpx.Client) -> None:
    images = [base64.b64encode(png_bytes(side)).decode() for side in (4, 7)]
    ids = submit_all(client, "/shapes", [{"image": image} for image in images])
    for job_id, side, image in zip(ids, (4, 7), images, strict=True):
        body = wait_terminal(client, job_id)
        assert body["status"] == "finished", body
        assert body["result"]["shape"] == [side, side, 3] and body["result"]["batch"] == 2
        assert body["result"]["same"]["content"] == image  # a media result of its own job


def test_each_result_of_a_batch_is_encoded_as_the_item_type_of_its_list_annotation(
    client: httpx.Client,
) -> None:
    ids = submit_all(client, "/squares", [{"side": 3}, {"side": 5}])
    for job_id, side in zip(ids, (3, 5), strict=True):
        body = wait_terminal(client, job_id)
        assert body["status"] == "finished", body
        image = body["result"]
        assert image["content_type"] == "image/png" and image["file_name"].endswith(".png")
        pixels = ImageFile().from_bytes(base64.b64decode(image["content"])).to_np_array()
        assert pixels.shape == (side, side, 3)


def test_a_batch_that_raises_runs_each_job_alone_and_only_the_bad_one_fails(
    client: httpx.Client, store: JobStore
) -> None:
    ids = submit_all(client, "/echo", [{"text": "p"}, {"text": "boom"}])
    fine, failed = (wait_terminal(client, job_id) for job_id in ids)
    assert fine["status"] == "finished" and fine["result"]["batch"] == ["p"], fine
    assert failed["status"] == "failed", failed
    assert failed["error"].startswith("RuntimeError: the whole batch failed")
    assert [store.get(job_id).attempts for job_id in ids] == [1, 1]


SECRET = "SECRET-of-client-3"


@pytest.mark.parametrize("path", ["/parse", "/parse_shared"])
def test_eight_clients_in_one_batch_never_read_each_others_input(
    service: ServiceProcess, client: httpx.Client, path: str
) -> None:
    """Eight clients at once (one batch of 8) and one input that makes the call raise,
    quoting it: only its job fails, with its own error; no job's error, message or result
    names another job's input, whether progress is per job or shared."""
    texts = [f"{n}0{n}.{n}7" for n in range(8)]
    texts[3] = SECRET
    bodies = eight_clients(service, path, texts)
    for n, (text, body) in enumerate(zip(texts, bodies, strict=True)):
        if n == 3:
            assert body["status"] == "failed", body
            assert body["error"].startswith("ValueError: could not convert string to float")
            assert SECRET in body["error"]
        else:
            assert body["status"] == "finished", body
            assert body["result"]["text"] == text and body["message"] == f"parsing {text}"


@pytest.mark.parametrize("path", ["/parse", "/parse_shared"])
def test_progress_messages_of_a_batch_reach_only_their_own_job(
    service: ServiceProcess, client: httpx.Client, path: str
) -> None:
    """list[JobProgress]: each job shows its own message; one shared JobProgress in a
    batch of several: every job shows the value, none the message."""
    texts = [f"{n}1{n}.{n}3" for n in range(8)]
    for text, body in zip(texts, eight_clients(service, path, texts), strict=True):
        assert body["status"] == "finished" and body["result"]["batch"] == 8, body
        assert body["progress"] >= 0.5, body
        expected = f"parsing {text}" if path == "/parse" else None
        assert body.get("message") == expected, body


def eight_clients(service: ServiceProcess, path: str, texts: list[str]) -> list[dict]:
    """Each text sent by a client of its own, all at once: their terminal JobResults,
    checked to come from one batch and to name no other client's input."""

    def one_client(text: str) -> dict:
        with client_for(service) as own:
            return wait_terminal(own, submit(own, path, {"text": text}), timeout=60)

    with ThreadPoolExecutor(len(texts)) as pool:
        bodies = list(pool.map(one_client, texts))
    assert len({body["metrics"]["batch_id"] for body in bodies}) == 1, bodies  # one batch
    for text, body in zip(texts, bodies, strict=True):
        own = json.dumps({key: body.get(key) for key in ("error", "message", "result")})
        assert not [other for other in texts if other != text and other in own], (text, own)
    return bodies


def test_a_job_cancelled_while_its_batch_fills_is_dropped_from_it(
    client: httpx.Client, store: JobStore
) -> None:
    first = submit(client, "/pair", {"text": "gone"})
    wait_for_status(client, first, {"processing"}, timeout=10)  # claimed: the batch fills
    assert client.post(f"/cancel/{first}").json()["status"] == "cancelled"
    second = submit(client, "/pair", {"text": "kept"})
    body = wait_terminal(client, second)
    assert body["status"] == "finished" and body["result"]["batch"] == ["kept"], body
    assert body["metrics"]["batch_id"] == store.get(first).batch_id  # it joined that batch
    assert wait_terminal(client, first)["status"] == "cancelled"


def test_a_job_cancelled_while_its_batch_runs_is_cancelled_after_it(
    client: httpx.Client, store: JobStore
) -> None:
    bodies = [{"text": "c1", "pause": 3}, {"text": "c2", "pause": 3}]
    first, second = submit_all(client, "/pair", bodies)
    worker = worker_running(client, first, timeout=15)
    wait_until(
        lambda: client.get(f"/status/{first}").json().get("message") == "batch of 2",
        10,
        "the batch call started",
    )
    assert worker["current_batch"] == store.get(first).batch_id
    assert client.post(f"/cancel/{first}").json()["status"] == "cancelled"
    done = wait_terminal(client, second)
    assert done["status"] == "finished" and done["result"]["batch"] == ["c1", "c2"], done
    cancelled = wait_terminal(client, first)
    assert cancelled["status"] == "cancelled" and "result" not in cancelled
    _, body = health(client)
    assert [w["pid"] for w in body["workers"]] == [worker["pid"]]  # not killed


def test_a_crash_mid_batch_retries_each_job_on_its_own(
    client: httpx.Client, store: JobStore
) -> None:
    # The worker is inside another batch's call while the three arrive, so its next claim
    # takes all three at once whatever its fill-wait policy: one batch that a crash ends.
    holder = submit(client, "/echo", {"text": "hold", "pause": 2})
    wait_until(
        lambda: client.get(f"/status/{holder}").json().get("message") == "batch of 1",
        15,
        "the holder's batch call started",
    )
    ids = submit_all(client, "/echo", [{"text": "a"}, {"text": "crash"}, {"text": "b"}])
    a, crashed, b = (wait_terminal(client, job_id, timeout=60) for job_id in ids)
    assert a["status"] == b["status"] == "finished", (a, b)
    assert a["result"]["batch"] == ["a"] and b["result"]["batch"] == ["b"]  # alone
    assert crashed["status"] == "failed" and "worker crashed" in crashed["error"]
    rows = [store.get(job_id) for job_id in ids]
    assert [row.attempts for row in rows] == [2, 2, 2]
    assert rows[1].status is JobStatus.FAILED


def test_each_job_of_a_batch_past_its_timeout_times_out(
    client: httpx.Client, store: JobStore
) -> None:
    ids = submit_all(client, "/hang", [{"n": 1}, {"n": 2}])
    for job_id in ids:
        body = wait_terminal(client, job_id, timeout=30)
        assert body["status"] == "timeout", body
        assert body["error"] == "job exceeded its timeout of 1 s"
    assert len({store.get(job_id).batch_id for job_id in ids}) == 1
    ready_workers(client, 1, timeout=60)
    assert wait_terminal(client, submit(client, "/single", {"n": 3}))["status"] == "finished"
