"""Adapters between client payloads and media-toolkit objects.

Inputs: a multipart part, a base64 string, a ``data:`` URL, an http(s) URL (fetched
through :mod:`apipod.media.fetch`), or a FileModel dict ``{file_name, content_type,
content}``. Never a local path or ``file://``: the server must not read its own disk for
a client.

Outputs: the return annotation decides the encoding (:func:`apply_annotation`): under
``-> ImageFile`` a numpy array or a PIL image becomes a PNG (or JPEG), under any media
annotation ``bytes``, a ``pathlib.Path`` or a path string the worker wrote become that file.
Media objects then become FileModel dicts (or stored files, in queue mode); pydantic
models, dicts, lists, tuples, numpy values and scalars become JSON, recursively.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import enum
import io
import mimetypes
import os
import re
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from media_toolkit import AudioFile, ImageFile, MediaDict, MediaFile, MediaList, VideoFile
from media_toolkit.core.content_detectors import ContentDetector
from media_toolkit.core.file_types import mime_to_extension
from pydantic import BaseModel

from apipod.errors import MediaError, MediaTooLarge, UploadTooLarge
from apipod.media.fetch import SPOOL_MEMORY_BYTES, UrlPolicy, fetch_url
from apipod.media.names import safe_name

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
    ``max_upload_file_size_mb``)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.used = 0

    def take(self, count: int) -> None:
        self.used += count
        if self.used > self.limit_bytes:
            raise UploadTooLarge(self.limit_bytes, "the media of this request")

    def remaining(self) -> int:
        return max(0, self.limit_bytes - self.used)


def is_media_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, MEDIA_BASE)


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
            fetched = fetch_url(text, policy, field, budget.remaining())
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


def file_model(media: MediaFile) -> dict[str, str]:
    """The FileModel JSON of a media object: ``{file_name, content_type, content}``."""
    media = named(media)
    return {
        "file_name": media.file_name,
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


# --- results: what the return annotation asks for ---------------------------------------------
_KINDS = ((ImageFile, "image"), (AudioFile, "audio"), (VideoFile, "video"))
_DEFAULT_NAMES = frozenset({"file", "imagefile", "audiofile", "videofile", "media_file"})
_SEQUENCES = (list, tuple, typing.Sequence)


def media_annotation(annotation: Any) -> tuple[type | None, bool]:
    """``(media class, is a list)`` of a return annotation: ``ImageFile``,
    ``ImageFile | None``, ``list[ImageFile]``; ``(None, False)`` when it names no media."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else None
    if typing.get_origin(annotation) in _SEQUENCES:
        args = typing.get_args(annotation)
        inner = args[0] if args else None
        return (inner, True) if is_media_type(inner) else (None, False)
    return (annotation, False) if is_media_type(annotation) else (None, False)


def apply_annotation(
    value: Any, annotation: Any, image_format: str = "png", opened: list[IO[bytes]] | None = None
) -> Any:
    """``value`` with what the annotation promises made into media objects (a list's
    items one by one); anything else is left as it is. Files opened for path results are
    added to ``opened`` (the caller closes them once the result is encoded)."""
    media_cls, is_list = media_annotation(annotation)
    if media_cls is None or value is None:
        return value
    if is_list and isinstance(value, (list, tuple)):
        return [as_media(item, media_cls, image_format, opened) for item in value]
    return as_media(value, media_cls, image_format, opened)


def as_media(
    value: Any, media_cls: type, image_format: str = "png", opened: list[IO[bytes]] | None = None
) -> Any:
    """One result value as a ``media_cls`` object with a file name that has a real
    extension. Values that are no file of any kind (a dict, a number) stay as they are."""
    if isinstance(value, MEDIA_BASE):
        return named(value)
    if _is_array(value) and issubclass(media_cls, ImageFile):
        media = ImageFile().from_np_array(value, img_type=_cv2_format(image_format))
        return named(media)
    if _is_pil_image(value):
        return named(_from_pil(value, media_cls, image_format))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return named(media_cls().from_bytes(bytes(value)))
    if isinstance(value, (str, os.PathLike)):
        media = _from_path(os.fspath(value), media_cls)
        if opened is not None:
            opened.append(media.fileobj)
        return named(media)
    return value


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "tobytes")


def _is_pil_image(value: Any) -> bool:
    return hasattr(value, "save") and hasattr(value, "mode") and hasattr(value, "getbands")


def _cv2_format(image_format: str) -> str:
    return "jpg" if image_format.lower() in ("jpg", "jpeg") else "png"


def _from_pil(image: Any, media_cls: type, image_format: str) -> MediaFile:
    pil_format = "JPEG" if _cv2_format(image_format) == "jpg" else "PNG"
    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format)
    cls = media_cls if issubclass(media_cls, ImageFile) or media_cls is MediaFile else ImageFile
    return cls(content_type=f"image/{pil_format.lower()}").from_bytes(buffer.getvalue())


def _from_path(path: str, media_cls: type) -> MediaFile:
    # The worker may read its own disk (its function wrote the file); a client never can.
    if not os.path.isfile(path):
        raise TypeError(
            f"the endpoint returned the string {path[:80]!r} under a {media_cls.__name__} "
            "annotation, but no such file exists; return the file's path, bytes or a "
            f"{media_cls.__name__}"
        )
    guessed, _ = mimetypes.guess_type(path)
    media = media_cls(file_name=os.path.basename(path), content_type=guessed)
    # Backed by the file itself: nothing is read until the result is stored.
    return media.from_bytesio_or_handle(open(path, "rb"), copy=False, owns=True)


def named(media: MediaFile) -> MediaFile:
    """``media`` with a file name that ends in a real extension (``image.png``, not
    ``imagefile``): its own name when it has one, else one from its content type."""
    name = os.path.basename(media.file_name or "")
    stem, ext = os.path.splitext(name)
    if ext and name.lower() not in _DEFAULT_NAMES:
        return media
    extension = extension_of(media.content_type or "application/octet-stream")
    if extension == "bin":  # a type the tables do not know (audio/wave): ask the bytes
        extension = (media.detection.extension or "bin").lstrip(".")
    if not stem or name.lower() in _DEFAULT_NAMES:
        stem = _kind_of(media)
    media.file_name = f"{stem}.{extension}" if extension else stem
    return media


def extension_of(content_type: str) -> str:
    """The usual extension of a content type, without the dot (``bin`` when unknown)."""
    main = content_type.split(";")[0].strip().lower()
    found = mimetypes.guess_extension(main) or mime_to_extension(main) or "bin"
    return found.lstrip(".")


def _kind_of(media: MediaFile) -> str:
    return next((kind for cls, kind in _KINDS if isinstance(media, cls)), "file")


def media_reader(media: MediaFile) -> IO[bytes]:
    """A reader of the media's bytes from the start, without copying them (the object's
    own buffer, temporary file or backing file)."""
    reader = media.fileobj
    reader.seek(0)
    return reader
