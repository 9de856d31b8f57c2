"""What an OpenAI endpoint's function returned, wrapped into OpenAI's response shapes.

Values arrive JSON-able (as a job stores them): a string, a dict (a message, a delta, or
the response model already), a list (a streamed job's chunks), media as FileModel dicts.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from apipod.app.openai.errors import ResultShapeError

#: Delta keys passed through as they are; "reasoning" is read as "reasoning_content".
_DELTA_KEYS = ("role", "content", "reasoning_content", "refusal")


class DeltaMerger:
    """Accumulates strings and delta dicts (content, reasoning, tool_calls, finish_reason,
    usage) into one assistant message, as OpenAI's non-streamed answer carries it."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.values = 0
        self._last_call = -1

    def add(self, value: Any) -> dict[str, Any]:
        """Take one value; return it as a delta (tool calls given their ``index``)."""
        self.values += 1
        if value is None:
            return {}
        if not isinstance(value, dict):
            text = value if isinstance(value, str) else str(value)
            self.content.append(text)
            return {"content": text}
        delta = {k: value[k] for k in _DELTA_KEYS if value.get(k) is not None}
        if value.get("reasoning") is not None:
            delta["reasoning_content"] = value["reasoning"]
        for key, parts in (
            ("content", self.content),
            ("reasoning_content", self.reasoning),
            ("refusal", self.refusal),
        ):
            if isinstance(delta.get(key), str):
                parts.append(delta[key])
        if value.get("tool_calls"):
            delta["tool_calls"] = [self._add_call(call) for call in value["tool_calls"]]
        self.finish_reason = value.get("finish_reason") or self.finish_reason
        self.usage = value.get("usage") or self.usage
        return delta

    def _add_call(self, call: dict[str, Any]) -> dict[str, Any]:
        index = call.get("index")
        if index is None:
            index = (
                self._last_call + 1 if call.get("id") or self._last_call < 0 else self._last_call
            )
        self._last_call = index
        merged = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        function = call.get("function") or {}
        merged["id"] = call.get("id") or merged["id"]
        merged["function"]["name"] += function.get("name") or ""
        merged["function"]["arguments"] += function.get("arguments") or ""
        return {**call, "index": index}

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        elif message["content"] is None:
            message["content"] = ""
        return message

    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def counted_usage(self) -> dict[str, Any]:
        """The usage the function reported, else the yielded values counted as tokens."""
        if self.usage:
            return self.usage
        return {"prompt_tokens": 0, "completion_tokens": self.values, "total_tokens": self.values}


def merged(value: Any) -> DeltaMerger:
    merger = DeltaMerger()
    for item in value if isinstance(value, list) else [value]:
        merger.add(item)
    return merger


def _envelope(value: dict[str, Any], obj: str, ident: str, model: str, created: int) -> dict:
    body = {k: v for k, v in value.items() if v is not None}
    body.setdefault("id", ident)
    body["object"] = obj
    body.setdefault("created", created)
    body.setdefault("model", model)
    return body


def chat_response(value: Any, ident: str, model: str, created: int) -> dict[str, Any]:
    """``chat.completion`` from a string, a message or delta dict, chunks, or the model."""
    if isinstance(value, dict) and "choices" in value:
        return _envelope(value, "chat.completion", ident, model, created)
    merger = merged(value)
    choice = {"index": 0, "message": merger.message(), "finish_reason": merger.finish()}
    body = {"id": ident, "object": "chat.completion", "created": created, "model": model}
    body["choices"] = [{**choice, "logprobs": None}]
    if merger.usage:
        body["usage"] = merger.usage
    return body


def completion_response(value: Any, ident: str, model: str, created: int) -> dict[str, Any]:
    """``text_completion`` from a string, chunks, or the response model."""
    if isinstance(value, dict) and "choices" in value:
        return _envelope(value, "text_completion", ident, model, created)
    merger = merged(value)
    choice = {"text": "".join(merger.content), "index": 0, "logprobs": None}
    body = {"id": ident, "object": "text_completion", "created": created, "model": model}
    body["choices"] = [{**choice, "finish_reason": merger.finish()}]
    if merger.usage:
        body["usage"] = merger.usage
    return body


def embedding_response(value: Any, model: str, encoding: str | None) -> dict[str, Any]:
    """``list`` of ``embedding`` objects from one vector, a list of vectors, or the model
    (vectors as base64 float32 when the client asked for ``encoding_format=base64``)."""
    usage = None
    if isinstance(value, dict):
        usage = value.get("usage")
        value = [item.get("embedding") for item in value.get("data") or []]
    if not isinstance(value, list) or not value:
        raise ResultShapeError("an embeddings endpoint must return a vector or a list of vectors")
    vectors = [value] if all(isinstance(v, (int, float)) for v in value) else value
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(vector, encoding)}
        for i, vector in enumerate(vectors)
    ]
    body: dict[str, Any] = {"object": "list", "data": data, "model": model}
    body["usage"] = usage or {"prompt_tokens": 0, "total_tokens": 0}
    return body


def _vector(vector: Any, encoding: str | None) -> Any:
    if not isinstance(vector, list) or not all(isinstance(v, (int, float)) for v in vector):
        raise ResultShapeError("an embedding must be a list of numbers")
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return [float(v) for v in vector]


def transcription_body(value: Any, response_format: str) -> dict[str, Any] | str:
    """The transcription as OpenAI answers it: ``text`` (json), the verbose object, or
    the bare text (``response_format=text``)."""
    body = {"text": value} if isinstance(value, str) else dict(value or {})
    if not isinstance(body.get("text"), str):
        raise ResultShapeError("a transcription endpoint must return text or a dict with 'text'")
    if response_format == "text":
        return body["text"]
    if response_format == "verbose_json":
        verbose = {"task": "transcribe", "language": body.get("language") or "", "duration": 0.0}
        return {**verbose, **{k: v for k, v in body.items() if v is not None}}
    return {k: v for k, v in body.items() if k in ("text", "usage", "logprobs") and v is not None}


def files_of(value: Any) -> list[Any]:
    """The media a speech or image endpoint returned: one, a list, or a response model's
    ``data``."""
    if isinstance(value, dict) and "data" in value and "content" not in value:
        value = value["data"]
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, (dict, str)) for i in items):
        raise ResultShapeError("a media endpoint must return a file, a list of files or bytes")
    return items


def file_bytes(item: Any) -> bytes:
    """The bytes of a FileModel dict (base64 content) or of a base64 string."""
    content = item.get("content") if isinstance(item, dict) else item
    if not isinstance(content, str):
        raise ResultShapeError("the returned file has no content")
    if content.startswith("data:"):
        content = content.partition(",")[2]
    return base64.b64decode(content)
