"""OpenAI-compatible endpoints in queue mode, through the official ``openai`` client:
every call is a job (``X-APIPod-Job-Id``, listed in ``/jobs``), the chat stream is the
job's durable stream (reattach with ``/stream/{id}``), a client that goes away cancels its
job, errors in OpenAI's shape. SQLite throughout; chat streaming on PostgreSQL too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from tests.helpers import ServiceProcess, http_client, running_service, wait_for_status
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import ready_workers, wait_until

# Each module starts whole queue-mode services (supervisor, API, worker): the full tier.
pytestmark = pytest.mark.slow

KEY = "sk-test"
JOB_HEADER = "x-apipod-job-id"


@contextlib.contextmanager
def openai_service(tmp: Path, **settings: object) -> Iterator[ServiceProcess]:
    options = {"compute": "serverless", "max_workers": 1, "gpus": "none", "api_key": KEY}
    with running_service(tmp, "openai_chat.py", **{**options, **settings}) as service:
        with http_client(service.url, timeout=30, headers=service.auth_headers()) as http:
            ready_workers(http, 1, timeout=60)
        yield service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with openai_service(tmp_path_factory.mktemp("openai-queue")) as svc:
        yield svc


@pytest.fixture
def http(service: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(service.url, timeout=30, headers=service.auth_headers()) as client:
        yield client


def client_of(service: ServiceProcess, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=service.url + "/v1", api_key=key, max_retries=0, timeout=60)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def side_log(service: ServiceProcess) -> list[str]:
    path = Path(service.env["APIPOD_DATA_DIR"]) / "side.log"
    return path.read_text().splitlines() if path.exists() else []


def stream_outputs(http: httpx.Client, job_id: str) -> list[object]:
    with connect_sse(http, "GET", f"/stream/{job_id}") as source:
        return [json.loads(e.data) for e in source.iter_sse() if e.event == "message"]


def test_chat_call_is_a_job_that_the_answer_names(service: ServiceProcess, http) -> None:
    raw = client_of(service).chat.completions.with_raw_response.create(
        model="chat", messages=ask("hello")
    )
    job_id = raw.headers[JOB_HEADER]
    answer = raw.parse()
    assert answer.id == f"chatcmpl-{job_id}"
    assert answer.choices[0].message.content == "echo: hello"
    job = http.get(f"/status/{job_id}").json()
    assert job["status"] == "finished" and job["result"] == "echo: hello"
    listed = http.get("/jobs", params={"endpoint": "/chat"}).json()["jobs"]
    assert job_id in {j["job_id"] for j in listed}


def test_chat_stream_is_the_jobs_durable_stream(service: ServiceProcess, http) -> None:
    raw = client_of(service).chat.completions.with_raw_response.create(
        model="chat-tokens",
        messages=ask("one two three"),
        stream=True,
        stream_options={"include_usage": True},
    )
    job_id = raw.headers[JOB_HEADER]
    chunks = list(raw.parse())
    assert {c.id for c in chunks} == {f"chatcmpl-{job_id}"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three "
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens == 7
    # A client reattaches to the same output through the job's stream.
    assert stream_outputs(http, job_id)[:3] == ["one ", "two ", "three "]


def test_tool_call_deltas_and_the_async_client(service: ServiceProcess) -> None:
    async def run() -> tuple[list, str | None]:
        client = openai.AsyncOpenAI(base_url=service.url + "/v1", api_key=KEY, max_retries=0)
        async with client:
            stream = await client.chat.completions.create(
                model="chat", messages=ask("call a tool"), stream=True
            )
            chunks = [chunk async for chunk in stream]
            whole = await client.chat.completions.create(model="chat", messages=ask("hi"))
            return chunks, whole.choices[0].message.content

    chunks, whole = asyncio.run(run())
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert "".join(c[0].function.arguments for c in calls) == '{"city": "Paris"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert whole == "echo: hi"


def test_embeddings_of_concurrent_requests_run_as_one_batch(service: ServiceProcess) -> None:
    async def run() -> list[list[float]]:
        client = openai.AsyncOpenAI(base_url=service.url + "/v1", api_key=KEY, max_retries=0)
        async with client:
            calls = [client.embeddings.create(model="embed", input="x" * n) for n in range(1, 5)]
            return [answer.data[0].embedding for answer in await asyncio.gather(*calls)]

    assert asyncio.run(run()) == [[float(n), 1.0, 0.5] for n in range(1, 5)]
    sizes = [int(line.split()[-1]) for line in side_log(service) if line.startswith("embed batch")]
    assert max(sizes) > 1, sizes


def test_speech_transcription_and_images(service: ServiceProcess, http) -> None:
    client = client_of(service)
    speech = client.audio.speech.create(model="speak", voice="alloy", input="hi")
    assert speech.content == b"ID3hi" and speech.response.headers["content-type"] == "audio/mpeg"
    upload = ("a.wav", b"123456", "audio/wav")
    assert client.audio.transcriptions.create(model="t", file=upload).text == "6 bytes"
    images = client.images.generate(model="draw", prompt="cat", n=2)
    assert all(d.b64_json for d in images.data) and len(images.data) == 2
    url = client.images.generate(model="draw", prompt="cat", response_format="url").data[0].url
    assert url.startswith(service.url + "/files/")
    assert httpx.get(url).content.startswith(b"\x89PNG")  # signed: no key needed


def test_errors_in_openai_shape(service: ServiceProcess) -> None:
    client = client_of(service)
    with pytest.raises(openai.AuthenticationError):
        client_of(service, "sk-wrong").chat.completions.create(model="chat", messages=ask("x"))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=ask("x"))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="chat", messages=[{"role": "x", "content": "y"}])
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="chat", messages=ask("fail"))
    assert failed.value.body["message"] == "ValueError: the model refused"
    assert failed.value.response.headers[JOB_HEADER]
    with pytest.raises(openai.APIError) as in_stream:  # the job failed after the stream began
        list(client.chat.completions.create(model="chat", messages=ask("fail"), stream=True))
    assert "ValueError: the model refused" in str(in_stream.value)


def slow_stream(service: ServiceProcess, token: str) -> tuple[openai.Stream, str]:
    raw = client_of(service).chat.completions.with_raw_response.create(
        model="chat", messages=ask(f"slow {token}"), stream=True
    )
    return raw.parse(), raw.headers[JOB_HEADER]


def test_a_client_that_disconnects_cancels_its_job_within_one_yield(
    service: ServiceProcess, http
) -> None:
    token = uuid.uuid4().hex[:8]
    stream, job_id = slow_stream(service, token)
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 3:
            break
    stream.close()
    assert wait_for_status(http, job_id, {"cancelled"})["status"] == "cancelled"

    def generator_closed() -> list[str]:
        lines = [line for line in side_log(service) if line.startswith(token)]
        return lines if f"{token} GeneratorExit" in lines else []

    lines = wait_until(generator_closed, 30, "the generator saw GeneratorExit")
    yields = [line for line in lines if " yield " in line]
    assert lines[-1] == f"{token} GeneratorExit"
    assert len(yields) <= received + 1, lines  # stopped at the next yield


def test_a_waiting_call_whose_client_gives_up_cancels_its_job(
    service: ServiceProcess, http
) -> None:
    token = uuid.uuid4().hex[:8]
    client = client_of(service).with_options(timeout=1.5)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="chat", messages=ask(f"slow {token}"))
    wait_until(
        lambda: f"{token} GeneratorExit" in side_log(service), 30, "the generator was closed"
    )
    jobs = http.get("/jobs", params={"endpoint": "/chat", "limit": 5}).json()["jobs"]
    assert any(job["status"] == "cancelled" for job in jobs)


def test_queue_full_is_429_rate_limit(service: ServiceProcess, http) -> None:
    blocker, blocker_id = slow_stream(service, uuid.uuid4().hex[:8])
    next(iter(blocker))  # the worker is busy with it now
    first: list[str] = []
    thread = threading.Thread(
        target=lambda: first.append(
            client_of(service)
            .chat.completions.create(model="chat-one", messages=ask("a"))
            .choices[0]
            .message.content
        )
    )
    thread.start()
    wait_until(
        lambda: http.get("/jobs", params={"endpoint": "/chat-one", "status": "queued"}).json()[
            "jobs"
        ],
        30,
        "a queued /chat-one job",
    )
    with pytest.raises(openai.RateLimitError) as full:
        client_of(service).chat.completions.create(model="chat-one", messages=ask("b"))
    assert full.value.response.headers["retry-after"]
    blocker.close()
    thread.join(60)
    assert first == ["one"]


def test_postgresql_chat_stream(tmp_path: Path) -> None:
    with fresh_database("apipod_openai") as url, openai_service(tmp_path, database_url=url) as svc:
        raw = client_of(svc).chat.completions.with_raw_response.create(
            model="chat", messages=ask("on postgres"), stream=True
        )
        job_id = raw.headers[JOB_HEADER]
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        assert text == "on postgres "
        with http_client(svc.url, timeout=30, headers=svc.auth_headers()) as http:
            assert stream_outputs(http, job_id) == ["on ", "postgres "]
        answer = client_of(svc).chat.completions.create(model="chat", messages=ask("pg"))
        assert answer.choices[0].message.content == "echo: pg"
