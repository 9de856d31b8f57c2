"""Client payloads into media-toolkit objects (results go the other way in
:mod:`apipod.media.results`).

Inputs: a multipart part, a base64 string, a ``data:`` URL, an http(s) URL (fetched
through :mod:`apipod.media.fetch`), or a FileModel dict ``{file_name, content_type,
content}``. Never a local path or ``file://``: the server must not read its own disk for
a client.
"""

from __future__ import annotations

import base64
import binascii
import io
import mimetypes
import os
import re
import tempfile
from dataclasses import dataclass
from typing import IO, Any

from media_toolkit import AudioFile, ImageFile, MediaFile, VideoFile
from media_toolkit.core.content_detectors import ContentDetector

from apipod.errors import MediaError, MediaTooLarge, UploadTooLarge
from apipod.media.fetch import SPOOL_MEMORY_BYTES, fetch_url
from apipod.media.guard import FetchGuard
from apipod.media.names import safe_name
from apipod.media.urlpolicy import UrlPolicy

MEDIA_BASE = MediaFile
# Which detected media classes each parameter type accepts. Containers such as mp4 hold
# audio as often as video, so audio and video accept each other.
_ACCEPTED_KINDS: dict[type, frozenset[str]] = {
    ImageFile: frozenset({"ImageFile"}),
    AudioFile: frozenset({"AudioFile", "VideoFile"}),
    VideoFile: frozenset({"VideoFile", "AudioFile"}),
}
NPY_MAGIC = b"\x93NUMPY"
NPY_CONTENT_TYPE = "application/x-npy"
mimetypes.add_type(NPY_CONTENT_TYPE, ".npy")
_DATA_URL = re.compile(
    r"^data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,"
)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_BASE64_TEXT = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}\s*")
_MIN_BASE64_MEDIA = 8  # the shortest file signatures (e.g. PNG's) take 8 characters
_SNIFF_CHARS = 4096  # base64 characters decoded to recognise a file's type


_DECODE_CHUNK = 1 << 18  # a multiple of 4: whole base64 quanta


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


@dataclass(eq=False)
class EncodedText:
    """A long base64 or ``data:`` URL string still inside the request body (see
    :mod:`apipod.app.jsonbody`): decoded only when read as media, chunk by chunk."""

    source: memoryview
    start: int
    end: int

    def text(self) -> str:
        return bytes(self.source[self.start : self.end]).decode("ascii")

    def head(self, size: int) -> str:
        return bytes(self.source[self.start : min(self.end, self.start + size)]).decode("ascii")


class MediaBudget:
    """The media bytes one request may bring in, all inputs together: uploads, base64,
    ``data:`` URLs and URL downloads count against one limit (the endpoint's
    ``max_upload_file_size_mb``). ``guard`` stops its URL downloads when the request ends."""

    def __init__(self, limit_bytes: int, guard: FetchGuard | None = None) -> None:
        self.limit_bytes = limit_bytes
        self.used = 0
        self.guard = guard or FetchGuard()

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit_bytes:
            raise UploadTooLarge(self.limit_bytes, "the media of this request")

    def remaining(self) -> int:
        return max(0, self.limit_bytes - self.used)


def is_media_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, MEDIA_BASE)


def is_media_text(text: str) -> bool:
    """Whether text sent to a union that also takes ``str`` (``ImageFile | str``) is the
    media, as the original APIPod read it: an http(s) URL, a ``data:`` URL, or base64
    of a recognisable file (its first bytes name a type: PNG, WAV, MP4, PDF, ...).
    Any other text (words, a prompt, base64 of nothing recognisable) is the ``str``."""
    if text[:16].lower().startswith(("http://", "https://", "data:")):
        return True
    if len(text) < _MIN_BASE64_MEDIA or not _BASE64_TEXT.fullmatch(text):
        return False
    compact = "".join(text[:_SNIFF_CHARS].split())
    compact = compact[: len(compact) // 4 * 4]
    altchars = b"-_" if "-" in compact or "_" in compact else None
    try:
        head = base64.b64decode(compact, altchars=altchars) if compact else b""
    except (binascii.Error, ValueError):
        return False
    if head.startswith(NPY_MAGIC):
        return True
    detected = ContentDetector.detect_from_buffer(head, file_name=None)
    return detected.content_type not in (None, "", "application/octet-stream")


def is_upload(value: Any) -> bool:
    """Whether ``value`` is an uploaded multipart part (a Starlette ``UploadFile``)."""
    return hasattr(value, "file") and hasattr(value, "filename")


def read_media(
    value: Any,
    media_cls: type,
    field: str,
    policy: UrlPolicy,
    budget: MediaBudget | None = None,
) -> MediaPayload:
    """Turn one client value into a checked :class:`MediaPayload` (raises MediaError;
    UploadTooLarge once the request's media pass ``budget``). Large media arrive as
    spooled temporary files, never whole in memory; file names are reduced to a safe
    base name."""
    budget = budget or MediaBudget(policy.max_bytes)
    payload = _payload_from_value(value, field, policy, budget)
    if payload.file_name is not None:
        payload.file_name = safe_name(payload.file_name)
    check_kind(payload, media_cls, field)
    return payload


def _payload_from_value(
    value: Any, field: str, policy: UrlPolicy, budget: MediaBudget
) -> MediaPayload:
    if is_upload(value):
        value.file.seek(0, os.SEEK_END)
        budget.take(value.file.tell())
        value.file.seek(0)
        return MediaPayload(value.file, value.filename, value.content_type)
    if isinstance(value, bytes):
        budget.take(len(value))
        return MediaPayload(value)
    if isinstance(value, dict):
        return _payload_from_file_model(value, field, policy, budget)
    if isinstance(value, EncodedText):
        return _payload_from_encoded(value, field, budget)
    if isinstance(value, str):
        return _payload_from_string(value.strip(), field, policy, budget)
    raise MediaError(
        f"field '{field}': expected a file upload, base64 string, data: URL or http(s) URL",
        field,
    )


def _payload_from_file_model(
    value: dict, field: str, policy: UrlPolicy, budget: MediaBudget
) -> MediaPayload:
    content = value.get("content")
    if isinstance(content, EncodedText):
        payload = _payload_from_encoded(content, field, budget)
    elif isinstance(content, str):
        payload = _payload_from_string(content.strip(), field, policy, budget)
    else:
        raise MediaError(f"field '{field}': a file object needs a 'content' string", field)
    file_name, content_type = value.get("file_name"), value.get("content_type")
    payload.file_name = file_name if isinstance(file_name, str) and file_name else None
    if isinstance(content_type, str) and content_type:
        payload.content_type = content_type
    return payload


def _payload_from_string(
    text: str, field: str, policy: UrlPolicy, budget: MediaBudget
) -> MediaPayload:
    lowered = text[:16].lower()
    if lowered.startswith(("http://", "https://")):
        try:
            fetched = fetch_url(text, policy, field, budget.remaining(), budget.guard)
        except MediaTooLarge:
            if budget.remaining() < policy.max_bytes:  # the request's budget was the bound
                budget.take(budget.remaining() + 1)
            raise
        try:
            budget.take(fetched.size)
        except BaseException:
            fetched.file.close()
            raise
        return MediaPayload(fetched.file, fetched.file_name, fetched.content_type)
    if lowered.startswith("data:"):
        return _payload_from_data_url(text, field, budget)
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
    data = _decode_base64(text, field)
    budget.take(len(data))
    return MediaPayload(data)


def _payload_from_data_url(text: str, field: str, budget: MediaBudget) -> MediaPayload:
    match = _DATA_URL.match(text)
    if match is None or not match.group("b64"):
        raise MediaError(f"field '{field}': malformed data: URL (expected ';base64,')", field)
    data = _decode_base64(text[match.end() :], field)
    budget.take(len(data))
    return MediaPayload(data, None, match.group("type"))


def _payload_from_encoded(text: EncodedText, field: str, budget: MediaBudget) -> MediaPayload:
    """Decode a long base64 string (or data: URL) from the body in chunks to a file."""
    content_type = None
    start = text.start
    if text.head(5).lower() == "data:":
        match = _DATA_URL.match(text.head(512))
        if match is None or not match.group("b64"):
            raise MediaError(f"field '{field}': malformed data: URL (expected ';base64,')", field)
        content_type = match.group("type")
        start += match.end()
    # The decoded size is known in advance: large media go straight to a file on disk
    # (a spooled file would hold its first megabyte twice when it rolls over).
    expected = (text.end - start) * 3 // 4
    out = tempfile.TemporaryFile() if expected > SPOOL_MEMORY_BYTES else io.BytesIO()  # noqa: SIM115
    try:
        _decode_chunks(text.source[start : text.end], out, field, budget)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return MediaPayload(out, None, content_type)


def _decode_chunks(encoded: memoryview, out: IO[bytes], field: str, budget: MediaBudget) -> None:
    if not len(encoded):
        raise MediaError(f"field '{field}': empty media content", field)
    for offset in range(0, len(encoded), _DECODE_CHUNK):
        chunk = bytes(encoded[offset : offset + _DECODE_CHUNK])
        if offset + _DECODE_CHUNK >= len(encoded):
            chunk += b"=" * (-len(chunk) % 4)
        altchars = b"-_" if b"-" in chunk or b"_" in chunk else None
        try:
            data = base64.b64decode(chunk, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            raise MediaError(f"field '{field}': not valid base64", field) from None
        budget.take(len(data))
        out.write(data)


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
    if issubclass(media_cls, ImageFile) and head.startswith(NPY_MAGIC):
        # A NumPy array (what media-toolkit and fastsdk send for an ndarray): decoded into
        # an image where the function is called (build_media), not in the API process.
        payload.content_type = NPY_CONTENT_TYPE
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


def detected_media_class(payload: MediaPayload) -> type:
    """The media-toolkit class of the payload's bytes: ``ImageFile`` for a PNG,
    ``AudioFile`` for a WAV, ``VideoFile`` for an MP4, else ``MediaFile``."""
    detected = ContentDetector.detect_from_buffer(payload.head(), file_name=None)
    kinds = {"ImageFile": ImageFile, "AudioFile": AudioFile, "VideoFile": VideoFile}
    return kinds.get(detected.media_class or "", MediaFile)


def build_media(payload: MediaPayload, media_cls: type, copy: bool = True) -> MediaFile | bytes:
    """A media-toolkit object of ``media_cls`` holding the payload's bytes (the bytes
    themselves for a ``bytes`` parameter); with ``copy=False`` it reads the payload's file
    itself (which must stay open)."""
    if media_cls is bytes:
        return payload.read_all()
    if payload.content_type == NPY_CONTENT_TYPE and issubclass(media_cls, ImageFile):
        return _image_from_npy(payload, media_cls)
    media = media_cls(file_name=payload.file_name, content_type=payload.content_type)
    if isinstance(payload.data, bytes):
        media.from_bytes(payload.data)
    else:
        payload.data.seek(0)
        media.from_bytesio_or_handle(payload.data, copy=copy, owns=False if not copy else None)
    # media-toolkit names a file read from a handle after the handle's path: the
    # client's own name is the one the function should see.
    media.file_name = payload.file_name or media.file_name
    media.content_type = payload.content_type or media.content_type
    return media


def _image_from_npy(payload: MediaPayload, media_cls: type) -> MediaFile:
    import numpy as np

    source = io.BytesIO(payload.data) if isinstance(payload.data, bytes) else payload.data
    source.seek(0)
    try:
        array = np.load(source, allow_pickle=False)  # never unpickle client data
    except ValueError as exc:
        raise MediaError(f"not a valid NumPy image array: {exc}") from None
    media = media_cls().from_np_array(array, img_type="png")
    media.file_name = "image.png"
    return media
