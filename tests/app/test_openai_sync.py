"""OpenAI-compatible endpoints in synchronous mode, through the official ``openai``
client (sync and async): chat, completions, embeddings, speech, transcription, images,
models, errors and auth. The quick tier of issue 19 (queue mode: test_openai_queue.py)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from apipod import APIPod
from apipod.common.schemas import ChatCompletionRequest
from apipod.loader import load_app
from tests.helpers import SERVICES, http_client, serve_in_thread
from tests.supervisor.support import wait_until

USER = "user"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openai-sync")


@pytest.fixture(scope="module")
def base_url(data_dir: Path) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:  # the fixture's side log goes there
        patch.setenv("APIPOD_DATA_DIR", str(data_dir))
        app = load_app(str(SERVICES / "openai_chat.py"))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0)


def ask(text: str) -> list[dict]:
    return [{"role": USER, "content": text}]


def test_the_original_import_path_holds_every_name() -> None:
    from apipod.common import schemas

    for name in [
        "ChatCompletionRequest",
        "ChatCompletionResponse",
        "ChatCompletionChunk",
        "ChatMessage",
        "CompletionRequest",
        "CompletionResponse",
        "EmbeddingRequest",
        "EmbeddingResponse",
        "SpeechRequest",
        "TranscriptionRequest",
        "TranscriptionResponse",
        "ImageGenerationRequest",
        "ImageGenerationResponse",
        "Usage",
        "ToolCall",
        "ChatDelta",
        "FileModel",
        "VisionRequest",
    ]:
        assert name in schemas.__all__ and getattr(schemas, name).__name__ == name
    import socaity_schemas.public.inference.language as language

    assert schemas.ChatCompletionRequest is language.ChatCompletionRequest  # fastsdk's too


def test_chat_answer_is_wrapped_with_id_created_model_and_choices(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(model="chat", messages=ask("hello there"))
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.created > 0 and answer.model == "chat"
    assert answer.choices[0].message.content == "echo: hello there"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"


def test_chat_stream_is_chunks_then_stop_then_usage(
    client: openai.OpenAI,
) -> None:
    options = {"include_usage": True}
    stream = client.chat.completions.create(
        model="chat", messages=ask("a b c"), stream=True, stream_options=options
    )
    chunks = list(stream)
    assert len({c.id for c in chunks}) == 1 and chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a b c "
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3


def test_a_generator_function_streams_and_reports_its_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="chat-tokens",
        messages=ask("x y"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "x y "
    assert chunks[-1].usage.total_tokens == 7
    whole = client.chat.completions.create(model="chat-tokens", messages=ask("x y"))
    assert whole.choices[0].message.content == "x y " and whole.usage.total_tokens == 7


def test_tool_call_deltas_stream_and_merge(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="chat", messages=ask("call a tool"), stream=True)
    )
    calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert calls[0][0].id == "call_1" and calls[0][0].function.name == "weather"
    assert "".join(c[0].function.arguments for c in calls) == '{"city": "Paris"}'
    reasoning = [getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks]
    assert "the user wants weather" in reasoning
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    whole = client.chat.completions.create(model="chat", messages=ask("call a tool"))
    assert whole.choices[0].finish_reason == "tool_calls"
    assert whole.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'


def test_async_client_chat_and_stream(base_url: str) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="x") as client:
            whole = await client.chat.completions.create(model="chat", messages=ask("hi"))
            stream = await client.chat.completions.create(
                model="chat", messages=ask("p q"), stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            return whole.choices[0].message.content or "", text

    assert asyncio.run(run()) == ("echo: hi", "p q ")


def test_completions_plain_and_streamed(client: openai.OpenAI) -> None:
    answer = client.completions.create(model="complete", prompt="once")
    assert answer.object == "text_completion" and answer.choices[0].text == "once and more"
    chunks = list(client.completions.create(model="complete", prompt="once", stream=True))
    assert "".join(c.choices[0].text for c in chunks) == "once and more"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_embeddings_as_floats_and_as_base64(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="embed", input=["ab", "abcd"])  # base64 on the wire
    assert [d.embedding for d in answer.data] == [[2.0, 1.0, 0.5], [4.0, 1.0, 0.5]]
    floats = client.embeddings.create(model="embed", input="abc", encoding_format="float")
    assert floats.data[0].embedding == [3.0, 1.0, 0.5] and floats.object == "list"


def test_speech_is_audio_bytes_with_openai_content_type(client: openai.OpenAI) -> None:
    speech = client.audio.speech.create(model="speak", voice="alloy", input="hi")
    assert speech.content == b"ID3hi"
    assert speech.response.headers["content-type"] == "audio/mpeg"
    wav = client.audio.speech.create(model="speak", voice="x", input="hi", response_format="wav")
    assert wav.response.headers["content-type"] == "audio/wav"


def test_transcription_in_each_response_format(client: openai.OpenAI) -> None:
    upload = ("a.mp3", b"12345", "audio/mpeg")
    assert client.audio.transcriptions.create(model="t", file=upload).text == "5 bytes"
    text = client.audio.transcriptions.create(model="t", file=upload, response_format="text")
    assert text.strip() == "5 bytes"
    verbose = client.audio.transcriptions.create(
        model="t", file=upload, response_format="verbose_json"
    )
    assert verbose.language == "en" and verbose.segments[0].text == "5 bytes"


def test_images_as_base64_or_url(client: openai.OpenAI) -> None:
    images = client.images.generate(model="draw", prompt="cat", n=2, response_format="b64_json")
    assert len(images.data) == 2
    assert base64.b64decode(images.data[1].b64_json).startswith(b"\x89PNG")
    url = client.images.generate(model="draw", prompt="cat", response_format="url").data[0].url
    assert url.startswith("data:image/png;base64,")


def test_models_list_and_the_model_picks_the_endpoint(client: openai.OpenAI) -> None:
    ids = {model.id for model in client.models.list()}
    assert {"chat", "chat-tokens", "chat-one", "complete", "embed", "draw"} <= ids
    assert "plain" not in ids
    assert client.models.retrieve("chat").id == "chat"
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="nope", messages=ask("x"))
    assert error.value.body["code"] == "model_not_found"
    # One endpoint of a kind answers any model.
    assert client.completions.create(model="anything", prompt="x").model == "anything"


def test_errors_have_openai_shape_and_status(client: openai.OpenAI, base_url: str) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="chat", messages=[{"role": "robot", "content": "x"}])
    assert bad.value.body["type"] == "invalid_request_error"
    assert bad.value.body["param"] == "messages.0.role"
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model="chat", messages=[])
    assert empty.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="embed", input=[])
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="chat", messages=ask("fail"))
    assert failed.value.body["message"] == "ValueError: the model refused"
    with http_client(base_url) as http:
        response = http.post("/v1/chat/completions", content=b"{not json")
        assert response.status_code == 400 and set(response.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        assert http.post("/v1/embeddings", json=[1]).json()["error"]["type"]


def test_declared_path_answers_openai_and_plain_endpoints_keep_their_shape(base_url: str) -> None:
    with http_client(base_url) as http:
        answer = http.post("/chat", json={"messages": ask("hi")}).json()
        assert answer["choices"][0]["message"]["content"] == "echo: hi"
        assert http.post("/plain", json={"text": "x"}).json() == {"text": "x"}
        paths = http.get("/openapi.json").json()["paths"]
        assert "/v1/chat/completions" in paths and "/chat" in paths and "/plain" in paths
        missing = http.post("/plain", json={})
        assert missing.status_code == 422 and "detail" in missing.json()


def test_a_wrong_key_is_an_authentication_error() -> None:
    app = APIPod(api_key="right")

    @app.endpoint("/chat")
    def chat(request: ChatCompletionRequest) -> str:
        return "ok"

    with serve_in_thread(app) as url:
        good = openai.OpenAI(base_url=url + "/v1", api_key="right", max_retries=0)
        assert good.chat.completions.create(model="c", messages=ask("x")).choices
        bad = openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as error:
            bad.chat.completions.create(model="c", messages=ask("x"))
        assert error.value.body["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_cancel_on_disconnect_is_a_setting_on_by_default() -> None:
    from apipod.config import Config

    assert Config.load(env={}).cancel_on_disconnect is True
    off = Config.load(env={"APIPOD_CANCEL_ON_DISCONNECT": "false"})
    assert off.cancel_on_disconnect is False


def test_a_stream_whose_client_leaves_stops_the_generator_at_its_next_yield(
    client: openai.OpenAI, data_dir: Path
) -> None:
    token = uuid.uuid4().hex[:8]
    stream = client.chat.completions.create(
        model="chat", messages=ask(f"slow {token}"), stream=True
    )
    received = 0
    for chunk in stream:
        received += bool(chunk.choices and chunk.choices[0].delta.content)
        if received == 2:
            break
    stream.close()

    def closed() -> list[str]:
        log = data_dir / "side.log"
        lines = [line for line in log.read_text().splitlines() if line.startswith(token)]
        return lines if f"{token} GeneratorExit" in lines else []

    lines = wait_until(closed, 30, "the generator saw GeneratorExit")
    assert len([line for line in lines if " yield " in line]) <= received + 1, lines


def test_a_transcription_form_text_field_is_held_to_max_json_mb(base_url: str) -> None:
    # Issue 22's "300 MB text field" attack, on the OpenAI route: text fields of the form
    # are bounded while it streams in (max_json_mb, 16 MB by default); the file is not.
    files = {"file": ("a.mp3", b"12345", "audio/mpeg")}
    with http_client(base_url, timeout=60) as http:
        big = http.post(
            "/v1/audio/transcriptions", data={"model": "t", "prompt": "p" * 17_000_000}, files=files
        )
        small = http.post("/v1/audio/transcriptions", data={"model": "t"}, files=files)
    assert big.status_code == 413, big.text
    assert "'prompt'" in big.json()["error"]["message"]
    assert small.status_code == 200 and small.json()["text"] == "5 bytes"
