"""Streamed output as OpenAI SSE: ``chat.completion.chunk`` (or ``text_completion``)
records with one stable id, a closing record with ``finish_reason``, the usage record
when ``stream_options.include_usage`` asked for it, then ``data: [DONE]``."""

from __future__ import annotations

import json
from typing import Any

from apipod.app.openai.kinds import CHAT, Kind
from apipod.app.openai.wrap import DeltaMerger

DONE = b"data: [DONE]\n\n"
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def sse(document: dict[str, Any]) -> bytes:
    return b"data: " + _ENCODE(document).encode() + b"\n\n"


class ChunkEncoder:
    """Turns each yielded value (a string or a delta dict) into one SSE record."""

    def __init__(
        self, kind: Kind, ident: str, model: str, created: int, include_usage: bool
    ) -> None:
        self._chat = kind is CHAT
        self._object = "chat.completion.chunk" if self._chat else "text_completion"
        self._head = {"id": ident, "object": self._object, "created": created, "model": model}
        self._include_usage = include_usage
        self._merger = DeltaMerger()

    def start(self) -> bytes:
        """The first record: the assistant role (chat), sent before any token."""
        if not self._chat:
            return b""
        return self._record({"role": "assistant", "content": ""}, None)

    def encode(self, value: Any) -> bytes:
        delta = self._merger.add(value)
        if not self._chat:
            text = delta.get("content")
            return self._record({"text": text}, None) if text else b""
        delta.pop("role", None)
        return self._record(delta, None) if delta else b""

    def encode_all(self, values: list[Any]) -> bytes:
        """The records of values that arrived together: runs of plain text go out as one
        delta (a client that fell behind catches up in fewer, larger records)."""
        records: list[bytes] = []
        text: list[str] = []
        for value in values:
            if isinstance(value, str):
                self._merger.add(value)
                text.append(value)
                continue
            if text:
                records.append(self._text("".join(text)))
                text = []
            records.append(self.encode(value))
        if text:
            records.append(self._text("".join(text)))
        return b"".join(records)

    def _text(self, text: str) -> bytes:
        return self._record({"content" if self._chat else "text": text}, None)

    def close(self) -> bytes:
        finish = self._merger.finish()
        last = self._record({} if self._chat else {"text": ""}, finish)
        if self._include_usage:
            usage = {**self._head, "choices": [], "usage": self._merger.counted_usage()}
            last += sse(usage)
        return last + DONE

    def error(self, message: str) -> bytes:
        """A failure after the stream began (OpenAI clients raise it as an APIError)."""
        body = {"message": message, "type": "server_error", "param": None, "code": None}
        return sse({"error": body})

    def _record(self, delta: dict[str, Any], finish: str | None) -> bytes:
        if self._chat:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, **delta, "logprobs": None, "finish_reason": finish}
        return sse({**self._head, "choices": [choice]})
