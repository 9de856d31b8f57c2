"""The HTTP answer of an OpenAI call, from the function's outcome: a value (its result,
JSON-able) or the values it streams."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, PlainTextResponse, Response

from apipod.app.openai import wrap
from apipod.app.openai.bodies import Call
from apipod.app.openai.chunks import ChunkEncoder
from apipod.app.openai.execute import collect
from apipod.app.openai.kinds import (
    CHAT,
    COMPLETION,
    EMBEDDING,
    IMAGE,
    SPEECH,
    TRANSCRIPTION,
    Binding,
)
from apipod.app.stream import EventStream
from apipod.errors import client_error_text

logger = logging.getLogger(__name__)

#: The content type OpenAI answers for each speech ``response_format``.
SPEECH_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


@dataclass(frozen=True)
class Reply:
    """Who answers: the endpoint, the call, the response id, model name and time."""

    binding: Binding
    call: Call
    ident: str
    model: str
    created: int

    def encoder(self) -> ChunkEncoder:
        kind = self.binding.kind
        return ChunkEncoder(kind, self.ident, self.model, self.created, self.call.include_usage)


def streams(reply: Reply) -> bool:
    """Whether the client asked for a stream of chunks (chat and completions)."""
    return reply.call.stream and reply.binding.kind in (CHAT, COMPLETION)


async def answer(reply: Reply, value: Any, values: AsyncIterator[Any] | None) -> Response:
    """The response for a value or a stream of values."""
    if streams(reply):
        return EventStream(stream_records(reply, value, values))
    if values is not None:
        value = await collect(values)
    return respond(reply, value)


async def stream_records(
    reply: Reply, value: Any, values: AsyncIterator[Any] | None
) -> AsyncGenerator[bytes, None]:
    encoder = reply.encoder()
    try:
        yield encoder.start()
        if values is None:
            for record in value_records(encoder, value):
                yield record
        else:
            async for item in values:
                record = encoder.encode(item)
                if record:
                    yield record
        yield encoder.close()
    except Exception as exc:
        logger.exception("OpenAI stream of %s failed", reply.binding.spec.path)
        yield encoder.error(client_error_text(exc))
    finally:
        if values is not None and hasattr(values, "aclose"):
            await values.aclose()


def value_records(encoder: ChunkEncoder, value: Any) -> list[bytes]:
    """A whole result sent as chunks (a function that returned instead of yielding)."""
    items = value if isinstance(value, list) else [] if value is None else [value]
    return [record for record in map(encoder.encode, items) if record]


def respond(reply: Reply, value: Any) -> Response:
    """The non-streamed answer for ``value``, by the endpoint's kind."""
    kind, call = reply.binding.kind, reply.call
    if kind is CHAT:
        return JSONResponse(wrap.chat_response(value, reply.ident, reply.model, reply.created))
    if kind is COMPLETION:
        body = wrap.completion_response(value, reply.ident, reply.model, reply.created)
        return JSONResponse(body)
    if kind is EMBEDDING:
        return JSONResponse(wrap.embedding_response(value, reply.model, call.encoding_format))
    if kind is SPEECH:
        audio = wrap.file_bytes(wrap.files_of(value)[0])
        fmt = getattr(call.request, "response_format", None) or "mp3"
        return Response(audio, media_type=SPEECH_TYPES.get(fmt, "application/octet-stream"))
    if kind is TRANSCRIPTION:
        body = wrap.transcription_body(value, call.response_format or "json")
        return PlainTextResponse(body) if isinstance(body, str) else JSONResponse(body)
    if kind is IMAGE:
        return JSONResponse(image_body(reply, value))
    raise AssertionError(f"unknown kind {kind}")


def image_body(reply: Reply, value: Any) -> dict[str, Any]:
    """``{"created", "data": [{"b64_json"} or {"url"}]}``."""
    want_url = reply.call.response_format == "url"
    data = []
    for item in wrap.files_of(value):
        if want_url:
            data.append({"url": _url(item)})
        else:
            data.append({"b64_json": base64.b64encode(wrap.file_bytes(item)).decode("ascii")})
    return {"created": reply.created, "data": data}


def _url(item: Any) -> str:
    """The file's address: the job's file route in queue mode, else a data: URL."""
    if isinstance(item, dict) and item.get("url"):
        return str(item["url"])
    content = item.get("content") if isinstance(item, dict) else item
    if isinstance(content, str) and content.startswith(("http://", "https://", "data:")):
        return content
    kind = item.get("content_type", "image/png") if isinstance(item, dict) else "image/png"
    return f"data:{kind};base64,{content}"
