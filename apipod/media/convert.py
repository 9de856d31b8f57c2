"""Adapters between client payloads and media-toolkit objects.

Inputs: a multipart part, a base64 string, a ``data:`` URL, an http(s) URL (fetched
through :mod:`apipod.media.fetch`), or a FileModel dict ``{file_name, content_type,
content}``. Never a local path or ``file://``: the server must not read its own disk for
a client.

Outputs: any media-toolkit object in a result becomes a FileModel dict; pydantic models,
dicts, lists, tuples, numpy values and scalars become JSON, recursively.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import enum
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from media_toolkit import AudioFile, ImageFile, MediaDict, MediaFile, MediaList, VideoFile
from media_toolkit.core.content_detectors import ContentDetector
from pydantic import BaseModel

from apipod.errors import MediaError
from apipod.media.fetch import UrlPolicy, fetch_url

MEDIA_BASE = MediaFile
# Which detected media classes each parameter type accepts. Containers such as mp4 hold
# audio as often as video, so audio and video accept each other.
_ACCEPTED_KINDS: dict[type, frozenset[str]] = {
    ImageFile: frozenset({"ImageFile"}),
    AudioFile: frozenset({"AudioFile", "VideoFile"}),
    VideoFile: frozenset({"VideoFile", "AudioFile"}),
}
_DATA_URL = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,"
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass
class MediaPayload:
    """Raw media as received: bytes or a readable binary file, plus client metadata."""

    data: bytes | IO[bytes]
    file_name: str | None = None
    content_type: str | None = None

    def head(self, size: int = 1024) -> bytes:
        if isinstance(self.data, bytes):
            return self.data[:size]
        position = self.data.tell()
        chunk = self.data.read(size)
        self.data.seek(position)
        return chunk

    def read_all(self) -> bytes:
        if isinstance(self.data, bytes):
            return self.data
        self.data.seek(0)
        return self.data.read()


def is_media_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, MEDIA_BASE)


def is_upload(value: Any) -> bool:
    """Whether ``value`` is an uploaded multipart part (a Starlette ``UploadFile``)."""
    return hasattr(value, "file") and hasattr(value, "filename")


def read_media(value: Any, media_cls: type, field: str, policy: UrlPolicy) -> MediaPayload:
    """Turn one client value into a checked :class:`MediaPayload` (raises MediaError)."""
    payload = _payload_from_value(value, field, policy)
    check_kind(payload, media_cls, field)
    return payload


def _payload_from_value(value: Any, field: str, policy: UrlPolicy) -> MediaPayload:
    if is_upload(value):
        value.file.seek(0)
        return MediaPayload(value.file, value.filename, value.content_type)
    if isinstance(value, bytes):
        return MediaPayload(value)
    if isinstance(value, dict):
        return _payload_from_file_model(value, field, policy)
    if isinstance(value, str):
        return _payload_from_string(value.strip(), field, policy)
    raise MediaError(
        f"field '{field}': expected a file upload, base64 string, data: URL or http(s) URL",
        field,
    )


def _payload_from_file_model(value: dict, field: str, policy: UrlPolicy) -> MediaPayload:
    content = value.get("content")
    if not isinstance(content, str):
        raise MediaError(f"field '{field}': a file object needs a 'content' string", field)
    payload = _payload_from_string(content.strip(), field, policy)
    payload.file_name = value.get("file_name") or payload.file_name
    payload.content_type = value.get("content_type") or payload.content_type
    return payload


def _payload_from_string(text: str, field: str, policy: UrlPolicy) -> MediaPayload:
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://")):
        fetched = fetch_url(text, policy, field)
        return MediaPayload(fetched.data, fetched.file_name, fetched.content_type)
    if lowered.startswith("data:"):
        return _payload_from_data_url(text, field)
    if len(text) < 256 and text.startswith(("/", "~/", "./", "../", "\\")):
        raise MediaError(
            f"field '{field}': local file paths are not accepted; upload the file or send "
            "base64, a data: URL or an http(s) URL",
            field,
        )
    if _SCHEME.match(text):
        raise MediaError(
            f"field '{field}': only http(s) URLs, data: URLs and base64 are accepted",
            field,
        )
    return MediaPayload(_decode_base64(text, field))


def _payload_from_data_url(text: str, field: str) -> MediaPayload:
    match = _DATA_URL.match(text)
    if match is None or not match.group("b64"):
        raise MediaError(f"field '{field}': malformed data: URL (expected ';base64,')", field)
    data = _decode_base64(text[match.end() :], field)
    return MediaPayload(data, None, match.group("type"))


def _decode_base64(text: str, field: str) -> bytes:
    compact = "".join(text.split())
    if not compact:
        raise MediaError(f"field '{field}': empty media content", field)
    padded = compact + "=" * (-len(compact) % 4)
    try:
        if "-" in compact or "_" in compact:
            return base64.b64decode(padded, altchars=b"-_", validate=True)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise MediaError(
            f"field '{field}': not valid base64, a data: URL or an http(s) URL "
            "(local file paths are not accepted)",
            field,
        ) from None


def check_kind(payload: MediaPayload, media_cls: type, field: str) -> None:
    """Refuse content that is not the declared media kind (e.g. text sent as an image)."""
    accepted = next(
        (kinds for cls, kinds in _ACCEPTED_KINDS.items() if issubclass(media_cls, cls)), None
    )
    head = payload.head()
    if not head:
        raise MediaError(f"field '{field}': empty media content", field)
    if accepted is None:
        return
    # The bytes decide, never the client's file name (text named a.png is still text).
    detected = ContentDetector.detect_from_buffer(head, file_name=None)
    if detected.media_class not in accepted:
        raise MediaError(
            f"field '{field}': content is not a valid {media_cls.__name__} "
            f"(detected {detected.content_type})",
            field,
        )
    if not payload.content_type or payload.content_type == "application/octet-stream":
        payload.content_type = detected.content_type


def build_media(payload: MediaPayload, media_cls: type) -> MediaFile | bytes:
    """A media-toolkit object of ``media_cls`` holding the payload's bytes (the bytes
    themselves for a ``bytes`` parameter)."""
    if media_cls is bytes:
        return payload.read_all()
    media = media_cls(file_name=payload.file_name, content_type=payload.content_type)
    if isinstance(payload.data, bytes):
        return media.from_bytes(payload.data)
    payload.data.seek(0)
    return media.from_bytesio_or_handle(payload.data, copy=True)


def file_model(media: MediaFile) -> dict[str, str]:
    """The FileModel JSON of a media object: ``{file_name, content_type, content}``."""
    return {
        "file_name": media.file_name or "file",
        "content_type": media.content_type or "application/octet-stream",
        "content": base64.b64encode(media.to_bytes()).decode("ascii"),
    }


def encode_result(value: Any, encode_media: Callable[[MediaFile], Any] = file_model) -> Any:
    """Make a return value JSON-able; media objects go through ``encode_media``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, MEDIA_BASE):
        return encode_media(value)
    if isinstance(value, BaseModel):
        return {k: encode_result(getattr(value, k), encode_media) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): encode_result(v, encode_media) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode_result(v, encode_media) for v in value]
    return _encode_other(value, encode_media)


def _encode_other(value: Any, encode_media: Callable[[MediaFile], Any]) -> Any:
    if isinstance(value, MediaList):  # media-toolkit containers, as the original returned
        return encode_result(list(value), encode_media)
    if isinstance(value, MediaDict):
        return encode_result(dict(value.items()), encode_media)
    if isinstance(value, enum.Enum):
        return encode_result(value.value, encode_media)
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):  # numpy arrays and numpy scalars
        return encode_result(value.tolist(), encode_media)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, io.IOBase):
        raise TypeError("file handles cannot be returned; return a MediaFile instead")
    if hasattr(value, "__fspath__") or hasattr(value, "hex"):
        return str(value)
    raise TypeError(f"cannot serialise a result of type {type(value).__name__}")
