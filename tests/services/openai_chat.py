"""Fixture: OpenAI-compatible endpoints (chat, completions, embeddings, speech,
transcription, images); synchronous mode unless APIPOD_COMPUTE says otherwise."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

from apipod import APIPod, AudioFile, ImageFile
from apipod.common.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageGenerationRequest,
    SpeechRequest,
    TranscriptionRequest,
)

app = APIPod(title="openai-fixture")

DATA_DIR = os.environ.get("APIPOD_DATA_DIR")


def side_log(line: str) -> None:
    """A line in <data dir>/side.log (tests read it); nothing without a data dir."""
    if DATA_DIR is None:
        return
    Path(DATA_DIR).mkdir(parents=True, exist_ok=True)
    with open(Path(DATA_DIR) / "side.log", "a") as log:
        log.write(line + "\n")


def _last(request: ChatCompletionRequest) -> str:
    return str(request.messages[-1].content)


@app.endpoint("/chat")
def chat(request: ChatCompletionRequest):
    """Echoes the last message; streams it word by word; "call a tool" gives a tool call;
    "slow <token>" streams slowly and logs each yield (the disconnect test)."""
    text = _last(request)
    if text.startswith("slow "):
        return _slow(text.split()[1])
    if text == "call a tool":
        return _tool_call() if request.stream else _tool_message()
    if text == "fail":
        raise ValueError("the model refused")
    if request.stream:
        return iter(f"{word} " for word in text.split())
    return f"echo: {text}"


def _slow(token: str) -> Iterator[str]:
    try:
        for i in range(200):
            side_log(f"{token} yield {i}")
            yield f"t{i} "
            time.sleep(0.3)
    except GeneratorExit:
        side_log(f"{token} GeneratorExit")
        raise


def _tool_call() -> Iterator[dict]:
    yield {"reasoning": "the user wants weather"}
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    yield {"tool_calls": [{"index": 0, **call}]}
    yield {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}
    yield {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}


def _tool_message() -> dict:
    call = {"id": "call_1", "type": "function"}
    call["function"] = {"name": "weather", "arguments": '{"city": "Paris"}'}
    return {"role": "assistant", "content": None, "tool_calls": [call]}


@app.endpoint("/chat-tokens")
def chat_tokens(request: ChatCompletionRequest):
    """A generator function: yields the words of the last message."""
    for word in _last(request).split():
        yield word + " "
    yield {"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}


@app.endpoint("/complete")
def complete(request: CompletionRequest) -> str:
    return f"{request.prompt} and more"


@app.endpoint("/embed", batch_size=4, batch_wait_ms=300)
def embed(requests: list[EmbeddingRequest]) -> list:
    side_log(f"embed batch {len(requests)}")
    out = []
    for request in requests:
        texts = [request.input] if isinstance(request.input, str) else request.input
        out.append([[float(len(t)), 1.0, 0.5] for t in texts])
    return out


@app.endpoint("/speak")
def speak(request: SpeechRequest) -> AudioFile:
    data = b"ID3" + request.input.encode()
    return AudioFile().from_bytes(data)


@app.endpoint("/transcribe")
def transcribe(request: TranscriptionRequest) -> dict:
    size = len(base64.b64decode(request.audio.content))
    segment = {"id": 0, "start": 0.0, "end": 1.0, "text": f"{size} bytes"}
    return {"text": f"{size} bytes", "language": "en", "duration": 1.0, "segments": [segment]}


@app.endpoint("/draw")
def draw(request: ImageGenerationRequest) -> list[ImageFile]:
    import numpy as np

    return [
        ImageFile().from_np_array(np.full((4, 4, 3), i, np.uint8))
        for i in range(request.num_images)
    ]


@app.endpoint("/chat-one", queue_size=1)
def chat_one(request: ChatCompletionRequest) -> str:
    """A chat endpoint whose queue holds one job (the 429 test)."""
    return "one"


@app.endpoint("/plain")
def plain(text: str) -> dict:
    """An ordinary endpoint beside the OpenAI ones."""
    return {"text": text}
