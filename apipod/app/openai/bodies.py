"""Reading an OpenAI request body (JSON, or multipart for transcriptions) through the
app's own body path (size limit, in-flight budget, the JSON checks of jsonbody), and the
fields OpenAI clients send that APIPod's request models spell otherwise or lack."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from apipod.app.budget import Reservation
from apipod.app.forms import parse_multipart
from apipod.app.inputs import BodyLimits, check_declared_length, limited_receive, read_body
from apipod.app.jsonbody import parse_json_inputs
from apipod.app.openai.kinds import CHAT, EMBEDDING, IMAGE, TRANSCRIPTION, Binding, Kind
from apipod.endpoint import InputValidationError
from apipod.errors import UnsupportedContentType

#: Transcription formats: text is answered from the json result; srt/vtt are not made.
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")
IMAGE_FORMATS = ("b64_json", "url")
#: OpenAI image options without an equivalent here: accepted, not acted on.
_IMAGE_IGNORED = ("quality", "style", "user", "background", "moderation", "output_format")


@dataclass
class Call:
    """One OpenAI call: the request (validated), and how to answer it."""

    request: BaseModel
    response_format: str | None = None
    encoding_format: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return bool(getattr(self.request, "stream", False))

    @property
    def include_usage(self) -> bool:
        options = getattr(self.request, "stream_options", None)
        return bool(options is not None and getattr(options, "include_usage", False))


async def read_document(
    request: Request, kind: Kind, binding: Binding, limits: BodyLimits, memory: Reservation
) -> dict[str, Any]:
    """The body as a dict of the request's fields. ``binding``: any endpoint of the kind
    (its parameter name carries the document through the JSON parser)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == "multipart/form-data"
    limit, what = limits.body_limit(content_type, kind is TRANSCRIPTION)
    check_declared_length(request, limit, what)
    receive = limited_receive(request.receive, limit, what, None if multipart else memory.take)
    limited = Request(request.scope, receive=receive)
    if multipart and kind is TRANSCRIPTION:
        form = await parse_multipart(
            limited.headers, limited.stream(), limits.json_bytes, memory.take
        )
        return await _from_form(form, memory)
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedContentType(content_type)
    body = await read_body(limited)
    if not body.strip():
        raise _invalid("", "the request body is empty: send the request as a JSON object")
    name = binding.param.encode()
    wrapped = b'{"' + name + b'":' + bytes(body) + b"}"
    parsed = parse_json_inputs(wrapped, binding.spec, limits.json_bytes, memory.take)
    document = parsed.get(binding.param)
    if not isinstance(document, dict):
        raise _invalid("", "the JSON body must be an object")
    return document


async def _from_form(form: FormData, memory: Reservation) -> dict[str, Any]:
    """The document of a transcription form (its text fields were bounded by
    ``max_json_mb`` while it was parsed; the audio file is held as base64)."""
    document: dict[str, Any] = {}
    try:
        for key, value in form.multi_items():
            name = key.removesuffix("[]")
            if isinstance(value, UploadFile):
                memory.take((value.size or 0) * 7 // 3)  # the bytes, then their base64
                content = base64.b64encode(await value.read()).decode("ascii")
                document["audio" if name == "file" else name] = {
                    "file_name": value.filename or "audio",
                    "content_type": value.content_type or "application/octet-stream",
                    "content": content,
                }
            elif name in ("timestamp_granularities", "include"):
                document.setdefault(name, []).append(value)
            else:
                document[name] = value
    finally:
        await form.close()
    return document


def make_call(binding: Binding, document: dict[str, Any]) -> Call:
    """Translate OpenAI-only fields, then validate the request model (400 when invalid)."""
    document = dict(document)
    call_options: dict[str, Any] = {}
    if binding.kind is EMBEDDING:
        call_options["encoding_format"] = _choice(document, "encoding_format", ("float", "base64"))
        document.pop("dimensions", None)
    elif binding.kind is IMAGE:
        call_options["response_format"] = _choice(document, "response_format", IMAGE_FORMATS)
        if "n" in document:
            document["num_images"] = document.pop("n")
        for name in _IMAGE_IGNORED:
            document.pop(name, None)
    elif binding.kind is TRANSCRIPTION:
        fmt = _choice(document, "response_format", TRANSCRIPTION_FORMATS) or "json"
        call_options["response_format"] = fmt
        document["response_format"] = "json" if fmt == "text" else fmt
        document.pop("temperature", None)
        document.pop("include", None)
    try:
        request = binding.model.model_validate(document)
    except ValidationError as exc:
        raise InputValidationError(
            [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        ) from None
    _check_not_empty(binding.kind, request)
    return Call(request, **call_options)


def _check_not_empty(kind: Kind, request: BaseModel) -> None:
    """What OpenAI refuses too: a chat without messages, embeddings of nothing."""
    if kind is CHAT and not getattr(request, "messages", None):
        raise _invalid("messages", "messages must hold at least one message")
    if kind is EMBEDDING:
        given = getattr(request, "input", None)
        if given in ("", []) or (isinstance(given, list) and "" in given):
            raise _invalid("input", "input must not be empty (nor hold an empty string)")


def _choice(document: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str | None:
    value = document.pop(name, None)
    if value is not None and value not in allowed:
        raise _invalid(name, f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _invalid(name: str, message: str) -> InputValidationError:
    return InputValidationError([{"loc": [name] if name else [], "msg": message}])
