"""Results as the client gets them: the return annotation decides what a value becomes
(:func:`apply_annotation`), then :func:`encode_result` makes it JSON.

Under ``-> ImageFile`` a numpy array or a PIL image becomes a PNG (or JPEG); under any
media annotation ``bytes``, a ``pathlib.Path`` or a path string the worker wrote become
that file. Media objects then become FileModel dicts (or stored files, in queue mode);
pydantic models, dicts, lists, tuples, numpy values and scalars become JSON, recursively.
"""

from __future__ import annotations

import base64
import decimal
import enum
import io
import logging
import mimetypes
import os
import threading
import types
import typing
from collections.abc import Callable
from typing import IO, Any

from media_toolkit import AudioFile, ImageFile, MediaDict, MediaFile, MediaList, VideoFile
from media_toolkit.core.file_types import mime_to_extension
from pydantic import BaseModel

from apipod.media.convert import MEDIA_BASE, is_media_type

logger = logging.getLogger(__name__)
_hinted: set[str] = set()  # endpoints whose unannotated array results were hinted at
_hinted_lock = threading.Lock()


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


def hint_unannotated_array(endpoint: str, value: Any, annotation: Any) -> None:
    """Log once per endpoint (and process) that a numpy array result goes out as a nested
    JSON list only because the function has no return annotation: most often an image
    meant as ``-> ImageFile``."""
    if annotation is not Any or endpoint in _hinted:
        return
    first = value[0] if isinstance(value, (list, tuple)) and value else value
    if not _is_array(first) or len(getattr(first, "shape", ())) < 2:
        return
    with _hinted_lock:
        if endpoint in _hinted:
            return
        _hinted.add(endpoint)
    logger.warning(
        "endpoint %s returned a numpy array of shape %s without a return annotation: it is"
        " sent as a nested JSON list. If it is an image, annotate the function `-> ImageFile`"
        " (`-> list[ImageFile]` for several) to send a PNG",
        endpoint,
        tuple(first.shape),
    )


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
