"""The job payload: what the store keeps as a job's inputs and result, and the only
module that writes or reads that form. The front end encodes inputs with it, the worker
decodes its arguments and encodes its result with it (streamed chunks too), and the
JobResult renders stored files with it: inline base64, base64 streamed while the file is
read, or by reference (the URL of the file's raw route).

Stored form: JSON in which a stored file is a typed envelope
``{"$file": "files/<job_id>/<name>", "file_name", "content_type", "size"}``. Client data
can never produce one: every dict key of user data that starts with ``$`` is stored with
one more ``$`` (``{"$file": ...}`` from a client is stored as ``{"$$file": ...}``) and
loses it again when read, so ``$file`` or any other key in client input is just data.
"""

from __future__ import annotations

import base64
import collections.abc
import json
import os
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from apipod.endpoint import EndpointSpec, Param
from apipod.errors import ServerBusy, UploadTooLarge
from apipod.media.convert import MediaPayload, build_media
from apipod.media.results import apply_annotation, encode_result, extension_of, media_reader, named

if TYPE_CHECKING:
    from media_toolkit import MediaFile

    from apipod.store.base import JobStore

_GENERATOR_ORIGINS = (
    collections.abc.Generator,
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.AsyncGenerator,
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
)
#: How a stored file appears to a client (a FileModel dict), given its envelope.
RenderFile = Callable[["StoredMedia"], dict[str, Any]]
#: The key of a stored-file envelope.
FILE_KEY = "$file"
_ESCAPE = "$"
#: Memory per inline result byte until the answer is sent: the file's bytes, its base64
#: text and the JSON body (about 4/3 each), rounded up.
INLINE_COPIES = 4
_B64_BLOCK = 3 * 256 * 1024  # raw bytes per base64 piece: a multiple of 3, so no padding inside


class FileRef(dict):  # type: ignore[type-arg]
    """A stored-file envelope while a payload is being encoded (never escaped)."""


@dataclass(frozen=True)
class StoredMedia:
    """A stored-file envelope, read back: where the bytes are and what they are."""

    ref: str
    file_name: str
    content_type: str
    size: int | None

    @property
    def name(self) -> str:
        """The file's name within its job (the last part of the reference)."""
        return self.ref.rsplit("/", 1)[-1]

    @property
    def job_id(self) -> str:
        return self.ref.split("/")[1]


# --- the envelope and the escaping of user data ------------------------------------------------
def escape(value: Any) -> Any:
    """User data (already JSON-able) in its stored form: ``$`` keys get one more ``$``."""
    if isinstance(value, FileRef):
        return dict(value)
    if isinstance(value, dict):
        return {(_ESCAPE + k if k.startswith(_ESCAPE) else k): escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape(v) for v in value]
    return value


def decode(value: Any, on_file: Callable[[StoredMedia], Any]) -> Any:
    """A stored value as the client sees it: envelopes through ``on_file``, escaped keys
    restored."""
    if isinstance(value, dict):
        if FILE_KEY in value:
            return on_file(stored_media(value))
        return {
            (k[1:] if k.startswith(_ESCAPE) else k): decode(v, on_file) for k, v in value.items()
        }
    if isinstance(value, list):
        return [decode(v, on_file) for v in value]
    return value


def stored_media(envelope: dict[str, Any]) -> StoredMedia:
    size = envelope.get("size")
    return StoredMedia(
        ref=str(envelope[FILE_KEY]),
        file_name=str(envelope.get("file_name") or "file"),
        content_type=str(envelope.get("content_type") or "application/octet-stream"),
        size=size if isinstance(size, int) else None,
    )


def stored_files(value: Any) -> list[StoredMedia]:
    """Every envelope in a stored value, in order."""
    found: list[StoredMedia] = []
    decode(value, lambda media: found.append(media))
    return found


def has_files(value: Any) -> bool:
    """Whether a stored value holds envelopes (rendering it reads files: blocking I/O)."""
    if isinstance(value, dict):
        return FILE_KEY in value or any(has_files(v) for v in value.values())
    if isinstance(value, list):
        return any(has_files(v) for v in value)
    return False


def _envelope(ref: str, file_name: str | None, content_type: str | None, size: int) -> FileRef:
    return FileRef(
        {
            FILE_KEY: ref,
            "file_name": file_name or ref.rsplit("/", 1)[-1],
            "content_type": content_type or "application/octet-stream",
            "size": size,
        }
    )


def _put(store: JobStore, job_id: str, name: str, reader: IO[bytes]) -> tuple[str, int]:
    start = reader.tell()
    ref = store.put_file(job_id, name, reader)
    return ref, reader.tell() - start


# --- inputs (front end) --------------------------------------------------------------------------
def encode_inputs(
    store: JobStore, job_id: str, values: dict[str, Any], payloads: dict[str, Any]
) -> dict[str, Any]:
    """The stored inputs of a job: validated values as escaped JSON, and each media
    payload written to the store (named ``<parameter>.<ext>``) as an envelope."""
    inputs = {name: escape(encode_result(value)) for name, value in values.items()}
    for name, payload in payloads.items():
        inputs[name] = _store_payload(store, job_id, name, payload)
    return inputs


def _store_payload(store: JobStore, job_id: str, name: str, payload: Any) -> Any:
    if payload is None:
        return None
    if isinstance(payload, list):
        return [_store_payload(store, job_id, name, p) for p in payload]
    file_name, content_type = payload.file_name, payload.content_type
    stored_name = f"{name}.{_extension(file_name, content_type)}"
    data = payload.data
    if isinstance(data, (bytes, bytearray)):
        ref = store.put_file(job_id, stored_name, bytes(data))
        return dict(_envelope(ref, file_name, content_type, len(data)))
    data.seek(0)
    ref, size = _put(store, job_id, stored_name, data)
    return dict(_envelope(ref, file_name, content_type, size))


def _extension(file_name: str | None, content_type: str | None) -> str:
    ext = os.path.splitext(file_name or "")[1].lstrip(".")
    if ext and ext.isalnum() and len(ext) <= 8:
        return ext.lower()
    return extension_of(content_type or "application/octet-stream")


# --- arguments (worker) -------------------------------------------------------------------------
def decode_arguments(
    spec: EndpointSpec, inputs: dict[str, Any], open_file: Callable[[str], IO[bytes]]
) -> tuple[dict[str, Any], list[IO[bytes]]]:
    """The call arguments of a stored job, and the stored files they hold open: values
    validated again, each media argument a media object reading its stored file through
    ``open_file`` (not copied into memory). The caller closes the files after the call
    (and after storing its result, which may be one of them)."""
    plain, files = spec.split_files(inputs, is_stored_file=is_stored_file)
    values = spec.validate_values({k: decode(v, lambda media: None) for k, v in plain.items()})
    opened: list[IO[bytes]] = []

    def load(param: Param, envelope: Any) -> Any:
        media = stored_media(envelope)
        reader = open_file(media.ref)
        opened.append(reader)
        payload = MediaPayload(reader, media.file_name, media.content_type)
        return build_media(payload, param.media_class_of(payload), copy=False)

    try:
        return spec.call_arguments(values, media_arguments(spec, files, load)), opened
    except BaseException:
        close_all(opened)
        raise


def is_stored_file(value: Any) -> bool:
    """Whether a stored input value is a file envelope (client data never is one)."""
    return isinstance(value, dict) and FILE_KEY in value


def close_all(files: list[IO[bytes]]) -> None:
    for file in files:
        file.close()


def media_arguments(
    spec: EndpointSpec, values: dict[str, Any], load: Callable[[Param, Any], Any]
) -> dict[str, Any]:
    """The media arguments of a call: ``load(param, value)`` for each value given (each
    item of a list), the parameter's default for a value not given."""
    out: dict[str, Any] = {}
    for param in spec.media_params:
        value = values.get(param.name)
        if value is None:
            out[param.name] = None if param.required else param.default
        elif isinstance(value, list):
            out[param.name] = [load(param, item) for item in value]
        else:
            out[param.name] = load(param, value)
    return out


# --- results (worker, and streamed chunks) ------------------------------------------------------
def return_annotation(spec: EndpointSpec) -> Any:
    """The endpoint function's return annotation (``Any`` when it has none)."""
    try:
        return typing.get_type_hints(spec.func).get("return", Any)
    except Exception:  # an annotation that does not resolve decides nothing
        return Any


def result_annotation(spec: EndpointSpec) -> Any:
    """What one job's result is annotated as: the return annotation, or for a batched
    endpoint (which returns one result per job) the item type of its ``list[X]``."""
    annotation = return_annotation(spec)
    if not spec.batched:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (list, collections.abc.Sequence) and len(args) == 1:
        return args[0]
    return Any


def yielded_annotation(annotation: Any) -> Any:
    """What a generator's annotation says each yielded value is (``Iterator[ImageFile]``
    gives ``ImageFile``); ``Any`` when it says nothing."""
    origin = typing.get_origin(annotation)
    if origin in _GENERATOR_ORIGINS and typing.get_args(annotation):
        return typing.get_args(annotation)[0]
    return Any


def store_result(
    value: Any, annotation: Any, store: JobStore, job_id: str, image_format: str = "png"
) -> Any:
    """The stored form of a return value (or of one streamed chunk): the annotation
    applied (:func:`apipod.media.results.apply_annotation`), every media object written
    to the store once (one that appears twice is one file), straight from its own buffer
    or file, user data escaped."""
    opened: list[IO[bytes]] = []
    stored: dict[int, FileRef] = {}

    def store_media(media: MediaFile) -> FileRef:
        if id(media) not in stored:
            media = named(media)
            ref, size = _put(store, job_id, _result_name(media), media_reader(media))
            stored[id(media)] = _envelope(ref, media.file_name, media.content_type, size)
        return stored[id(media)]

    try:
        return escape(
            encode_result(apply_annotation(value, annotation, image_format, opened), store_media)
        )
    finally:
        close_all(opened)


def _result_name(media: MediaFile) -> str:
    # Default names (``image.png``) become ``result.png``: inputs are named after their
    # parameter, so a job's ``image.png`` is its input and ``result.png`` its answer.
    stem, ext = os.path.splitext(os.path.basename(media.file_name or ""))
    return f"result{ext}" if stem in ("image", "audio", "video", "file") else f"{stem}{ext}"


# --- results as the client sees them: inline, streamed or by reference ----------------------
@dataclass(frozen=True)
class FileRenderer:
    """Makes the FileModel of a stored result file for one answer.

    ``mode``: ``auto`` (base64 while the answer's inline files together stay within
    ``inline_max_bytes``, then ``url_of(file)``: the budget is per answer, so thirty
    files of 7.5 MB are not 225 MB of base64), ``all`` (base64 whatever the size, as a
    :class:`Streamed` content) or ``none`` (the URL). Make one per answer."""

    store: JobStore
    mode: str
    inline_max_bytes: int
    url_of: Callable[[StoredMedia], str]
    #: Takes the memory an inline file will hold (the API's in-flight budget, given back
    #: once the answer is sent); when it refuses, the file goes by reference instead.
    reserve: Callable[[int], None] | None = None
    _inlined: list[int] = field(default_factory=lambda: [0], init=False, compare=False)

    def __call__(self, media: StoredMedia) -> dict[str, Any]:
        model = {"file_name": media.file_name, "content_type": media.content_type}
        if len(media.ref.split("/")) != 3:  # not a reference of any store: never a 500
            return {**model, "content": None}
        if self.mode == "all":
            if self._size(media.ref) is None:  # gone: say so before streaming starts
                return {**model, "content": None}
            return {**model, "content": Streamed(lambda: self.store.open_file(media.ref))}
        size = media.size if media.size is not None else self._size(media.ref)
        if self.mode == "auto" and size is not None and self._fits(size):
            return {**model, "content": self._base64(media.ref)}
        return {**model, "content": self.url_of(media)}

    def _fits(self, size: int) -> bool:
        """Whether ``size`` more bytes fit the answer's inline budget (then taken)."""
        if self._inlined[0] + size > self.inline_max_bytes:
            return False
        if self.reserve is not None:
            try:
                self.reserve(size * INLINE_COPIES)
            except (ServerBusy, UploadTooLarge):  # readers at once hold the budget
                return False
        self._inlined[0] += size
        return True

    def _size(self, ref: str) -> int | None:
        try:
            with self.store.open_file(ref) as reader:
                return reader.seek(0, 2)
        except (FileNotFoundError, ValueError):
            return None

    def _base64(self, ref: str) -> str | None:
        try:
            return base64.b64encode(self.store.read_file(ref)).decode("ascii")
        except (FileNotFoundError, ValueError):
            return None


@dataclass(frozen=True)
class Streamed:
    """A FileModel ``content`` to be streamed as base64 from ``open()``."""

    open: Callable[[], IO[bytes]]


def has_streamed(value: Any) -> bool:
    if isinstance(value, Streamed):
        return True
    if isinstance(value, dict):
        return any(has_streamed(v) for v in value.values())
    if isinstance(value, list):
        return any(has_streamed(v) for v in value)
    return False


def stream_json(document: dict[str, Any]) -> Iterator[bytes]:
    """``document`` as JSON bytes, each :class:`Streamed` content written as base64 in
    pieces while its file is read (blocking: iterate it in a thread)."""
    sources: list[Streamed] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Streamed):
            sources.append(value)
            return f"\x00apipod-streamed-{len(sources) - 1}\x00"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(document))
    for index, source in enumerate(sources):
        marker = json.dumps(f"\x00apipod-streamed-{index}\x00")[1:-1]
        before, text = text.split(marker, 1)
        yield before.encode()
        yield from _base64_pieces(source)
    yield text.encode()


def _base64_pieces(source: Streamed) -> Iterator[bytes]:
    with source.open() as reader:
        while True:
            block = reader.read(_B64_BLOCK)
            while block and len(block) % 3 and len(block) < _B64_BLOCK:
                more = reader.read(_B64_BLOCK - len(block))  # short read: fill the block
                if not more:
                    break
                block += more
            if not block:
                return
            yield base64.b64encode(block)
