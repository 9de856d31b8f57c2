"""Queue mode: ``GET /stream/{job_id}`` read with httpx-sse, on SQLite and PostgreSQL,
against a real supervisor, API process and workers."""

from __future__ import annotations

import json
import re
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.helpers import ServiceProcess, http_client, running_service
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import full_log, ready_workers, submit, wait_terminal, wait_until

# Starts whole queue-mode services (supervisor, API, workers) per test: the full tier.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp(f"stream-{request.param}")
    settings: dict[str, object] = {"max_workers": 2, "gpus": "none", "job_ttl": 3600}
    with contextlib_database(request.param) as url:
        if url:
            settings["database_url"] = url
        with running_service(tmp, "queue_stream.py", **settings) as svc:
            ready_workers(http_client(svc.url, timeout=30), 2, timeout=60)
            yield svc


def contextlib_database(backend: str):
    import contextlib

    return fresh_database("apipod_stream") if backend == "postgresql" else contextlib.nullcontext()


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(service.url, timeout=30) as http:
        yield http


def read_stream(
    client: httpx.Client,
    job_id: str,
    last_event_id: str | None = None,
    stop_after: int = 0,
    params: dict[str, str] | None = None,
) -> list[ServerSentEvent]:
    """Every record until the server ends the response (or ``stop_after`` outputs)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[ServerSentEvent] = []
    url = f"/stream/{job_id}"
    with connect_sse(client, "GET", url, headers=headers, params=params) as source:
        assert source.response.status_code == 200, source.response.read()
        for sse in source.iter_sse():
            events.append(sse)
            if stop_after and len(outputs(events)) == stop_after:
                break
    return events


def outputs(events: list[ServerSentEvent]) -> list[tuple[int, object]]:
    return [(int(e.id), json.loads(e.data)) for e in events if e.event == "message"]


def snapshots(events: list[ServerSentEvent]) -> list[dict]:
    return [json.loads(e.data) for e in events if e.event == "job"]


def test_stream_pushes_outputs_in_order_and_ends_with_the_terminal_snapshot(
    client: httpx.Client,
) -> None:
    job_id = submit(client, "/tokens", {"count": 20, "delay": 0.02})
    events = read_stream(client, job_id)
    assert outputs(events) == [(i + 1, f"tok{i} ") for i in range(20)]
    jobs = snapshots(events)
    assert events[-1].event == "job" and jobs[-1]["status"] == "finished"
    assert jobs[-1]["result"] == "".join(f"tok{i} " for i in range(20))
    assert all(j["status"] != "finished" for j in jobs[:-1])
    progress = [j["progress"] for j in jobs if "progress" in j]
    assert progress == sorted(progress) and len(progress) >= 2  # pushed as it changed
    assert jobs[-1]["links"]["stream"] == f"/stream/{job_id}" and jobs[-1]["attempt"] == 1
    status = client.get(f"/status/{job_id}").json()
    assert status["result"] == jobs[-1]["result"]
    assert status["links"]["stream"] == f"/stream/{job_id}"


def test_last_event_id_resumes_without_loss_or_duplicates(client: httpx.Client) -> None:
    job_id = submit(client, "/tokens", {"count": 30, "delay": 0.03})
    seen = outputs(read_stream(client, job_id, stop_after=7))  # the client drops
    while not seen or seen[-1][0] < 30:
        seen += outputs(read_stream(client, job_id, str(seen[-1][0]), stop_after=5))
    assert seen == [(i + 1, f"tok{i} ") for i in range(30)]
    wait_terminal(client, job_id)
    assert outputs(read_stream(client, job_id, "27")) == [
        (28, "tok27 "),
        (29, "tok28 "),
        (30, "tok29 "),
    ]
    assert outputs(read_stream(client, job_id, "30")) == []
    assert outputs(read_stream(client, job_id))[:1] == [(1, "tok0 ")]


def test_the_last_event_id_query_parameter_resumes_like_the_header(client: httpx.Client) -> None:
    """For clients that cannot set headers (EventSource in a browser)."""
    job_id = submit(client, "/atokens", {"count": 6})
    wait_terminal(client, job_id)
    resumed = outputs(read_stream(client, job_id, params={"last_event_id": "4"}))
    assert resumed == [(5, {"i": 4, "square": 16}), (6, {"i": 5, "square": 25})]
    assert outputs(read_stream(client, job_id, params={"last_event_id": "6"})) == []


def test_a_finished_jobs_stream_replays_every_chunk_past_a_read_batch(
    client: httpx.Client,
) -> None:
    """The replay reads the store in batches (READ_BATCH, 1,000): every one of them goes
    out before the terminal snapshot."""
    count = 2500
    job_id = submit(client, "/atokens", {"count": count})
    wait_terminal(client, job_id, timeout=120)
    events = read_stream(client, job_id)
    assert [n for n, _ in outputs(events)] == list(range(1, count + 1))
    assert events[-1].event == "job" and snapshots(events)[-1]["status"] == "finished"
    tail = outputs(read_stream(client, job_id, params={"last_event_id": "999"}))
    assert [n for n, _ in tail] == list(range(1000, count + 1))


def test_async_generators_and_json_chunks_aggregate_to_a_list(client: httpx.Client) -> None:
    job_id = submit(client, "/atokens", {"count": 3})
    events = read_stream(client, job_id)
    expected = [{"i": i, "square": i * i} for i in range(3)]
    assert [value for _, value in outputs(events)] == expected
    assert snapshots(events)[-1]["result"] == expected


def test_media_chunks_arrive_as_file_models(client: httpx.Client) -> None:
    job_id = submit(client, "/frames", {"count": 2})
    frames = [value for _, value in outputs(read_stream(client, job_id))]
    assert [f["content_type"] for f in frames] == ["image/png", "image/png"]
    assert all(f["content"] for f in frames)
    result = client.get(f"/status/{job_id}").json()["result"]
    assert [f["content_type"] for f in result] == ["image/png", "image/png"]


def test_a_job_that_does_not_stream_has_a_stream_too(client: httpx.Client) -> None:
    job_id = submit(client, "/plain", {"text": "x"})
    events = read_stream(client, job_id)
    assert outputs(events) == []
    assert snapshots(events)[-1]["result"] == {"text": "x"}


def test_unknown_jobs_and_bad_last_event_ids_are_refused(client: httpx.Client) -> None:
    missing = client.get(f"/stream/{uuid.uuid4().hex}")
    assert missing.status_code == 404 and missing.json()["status"] == "not_found"
    job_id = submit(client, "/plain")
    bad = client.get(f"/stream/{job_id}", headers={"Last-Event-ID": "abc"})
    assert bad.status_code == 422 and "Last-Event-ID" in bad.text
    assert client.get("/stream/bad$id").status_code == 422


def test_cancel_stops_the_generator_at_its_next_yield(
    client: httpx.Client, service: ServiceProcess
) -> None:
    token = uuid.uuid4().hex
    job_id = submit(client, "/slow", {"token": token, "delay": 0.1})
    with connect_sse(client, "GET", f"/stream/{job_id}") as source:
        events: list[ServerSentEvent] = []
        for sse in source.iter_sse():
            events.append(sse)
            if len(outputs(events)) == 3 and sse.event == "message":
                assert client.post(f"/cancel/{job_id}").json()["status"] == "cancelled"
    assert snapshots(events)[-1]["status"] == "cancelled"
    side = Path(service.env["APIPOD_DATA_DIR"]) / "side.log"
    exited = lambda: side.exists() and f"{token} GeneratorExit" in side.read_text()  # noqa: E731
    wait_until(exited, 30, f"GeneratorExit in the job:\n{full_log(service)[-3000:]}")
    time.sleep(0.5)
    written = outputs(read_stream(client, job_id))
    assert 3 <= len(written) <= 3 + 10  # stopped within the status check (0.25 s) + a yield
    assert "killing it" not in full_log(service).split(job_id, 1)[-1]


def test_a_worker_crash_mid_stream_retries_with_output_restarting(
    client: httpx.Client,
) -> None:
    token = uuid.uuid4().hex[:8]
    job_id = submit(client, "/crash_once", {"token": token, "count": 5, "crash_after": 3})
    events = read_stream(client, job_id)
    assert [v for _, v in outputs(events)] == [f"{token}-{i} " for i in (0, 1, 2, 0, 1, 2, 3, 4)]
    assert [n for n, _ in outputs(events)] == list(range(1, 9))
    attempts = [j["attempt"] for j in snapshots(events)]
    assert {1, 2} <= set(attempts) and attempts[-1] == 2 and attempts == sorted(attempts)
    assert snapshots(events)[-1]["result"] == "".join(f"{token}-{i} " for i in range(5))


def api_pid(service: ServiceProcess) -> int:
    return int(re.findall(r"API process pid (\d+)", full_log(service))[-1])


def test_reconnect_after_kill_9_of_the_api_process(
    client: httpx.Client, service: ServiceProcess
) -> None:
    job_id = submit(client, "/tokens", {"count": 60, "delay": 0.05})
    seen = outputs(read_stream(client, job_id, stop_after=10))
    victim = api_pid(service)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    wait_until(lambda: api_pid(service) != victim, 30, "a new API process")
    deadline = time.monotonic() + 60
    while seen[-1][0] < 60 and time.monotonic() < deadline:
        try:
            seen += outputs(read_stream(client, job_id, str(seen[-1][0])))
        except (httpx.TransportError, AssertionError):
            time.sleep(0.2)  # the new API process is still starting
    assert seen == [(i + 1, f"tok{i} ") for i in range(60)]
    assert wait_terminal(client, job_id)["status"] == "finished"


def test_fastsdk_job_stream_reads_the_output(client: httpx.Client, service: ServiceProcess) -> None:
    import fastsdk

    sdk = fastsdk.connect(service.url)
    try:
        job = sdk.submit_job("tokens", count=6, delay=0.02)
        assert list(job.stream(timeout_s=30)) == [f"tok{i} " for i in range(6)]
        assert wait_terminal(client, job.platform_job_id)["result"] == "".join(
            f"tok{i} " for i in range(6)
        )
    finally:
        sdk.close()


def test_a_stream_resumes_on_another_box(
    client: httpx.Client, service: ServiceProcess, tmp_path: Path
) -> None:
    database_url = service.env.get("APIPOD_DATABASE_URL")
    if database_url is None:
        pytest.skip("one SQLite file is one box")
    settings = {"role": "api", "database_url": database_url}
    with running_service(tmp_path, "queue_stream.py", wait_healthy=False, **settings) as other:
        other.wait_until("/openapi.json", status=200)
        job_id = submit(client, "/tokens", {"count": 40, "delay": 0.03})
        seen = outputs(read_stream(client, job_id, stop_after=10))  # box A
        with http_client(other.url, timeout=30) as box_b:
            events = read_stream(box_b, job_id, str(seen[-1][0]))  # pushed live on box B
        assert seen + outputs(events) == [(i + 1, f"tok{i} ") for i in range(40)]
        assert snapshots(events)[-1]["status"] == "finished"
