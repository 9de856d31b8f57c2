"""One endpoint parameter and what its annotation means to APIPod.

A parameter takes a plain value (validated by pydantic: scalars, models, lists and dicts,
an unannotated one any JSON value), a file (media-toolkit types, ``FileModel`` and
``UploadFile`` become a media object, ``bytes`` the raw bytes; lists of them), or, for a
union of a file type and other types (``ImageFile | str``), either one per value.
Decided once, when the endpoint is decorated.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Any

from media_toolkit import MediaFile, MediaList
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticSchemaGenerationError
from starlette.datastructures import UploadFile

from apipod.errors import EndpointDefinitionError
from apipod.media.convert import (
    MediaPayload,
    detected_media_class,
    is_media_text,
    is_media_type,
    is_upload,
)
from apipod.models import FileModel

LIST_ORIGINS = (list, tuple, set, frozenset, typing.Sequence)


@dataclass(frozen=True)
class Param:
    """One client-visible parameter of an endpoint function.

    ``media_cls`` says what a file sent to it becomes (a media-toolkit class, or ``bytes``);
    None for a plain value. ``plain`` is the non-file part of a union of file and other
    types (``ImageFile | str``); each value sent to such a parameter is one or the other,
    see :meth:`takes_as_file`.
    """

    name: str
    annotation: Any
    default: Any
    inner: Any
    is_list: bool
    optional: bool
    media_cls: type | None = None
    plain: Any = None
    container: type | None = None

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty and not self.model_fills_itself

    @property
    def model_fills_itself(self) -> bool:
        """A model parameter without a default whose fields all have defaults: left out
        (an empty body, no form field), it is the model with its defaults, as the
        original APIPod read it."""
        return (
            self.default is inspect.Parameter.empty
            and self.is_model
            and not self.is_list
            and not any(f.is_required() for f in self.inner.model_fields.values())
        )

    def default_value(self) -> Any:
        """The value of this parameter when it is not given (a fresh model for one that
        fills itself); only for a parameter that is not :attr:`required`."""
        return self.inner() if self.model_fills_itself else self.default

    @property
    def is_model(self) -> bool:
        return self.media_cls is None and is_model_type(self.inner)

    def media_class_of(self, payload: MediaPayload) -> type | None:
        """What one file sent to this parameter becomes: ``media_cls``, except in a
        ``MediaList`` of ``MediaFile`` (``List[MediaFile]``, ``MediaList``), where each
        item is its detected kind (``ImageFile`` for a PNG), as in the original APIPod."""
        if self.container is MediaList and self.media_cls is MediaFile:
            return detected_media_class(payload)
        return self.media_cls

    @property
    def value_annotation(self) -> Any:
        """What pydantic validates for a plain value of this parameter."""
        if self.media_cls is None:
            return self.annotation
        plain = list[self.plain] if self.is_list else self.plain  # type: ignore[name-defined]
        return plain | None

    @functools.cached_property
    def _plain_adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.plain)

    def takes_as_file(self, value: Any) -> bool:
        """Whether a client's value for this parameter is a file rather than a plain value.

        Uploads and FileModel objects are files. When the union has ``str``, text is the
        file if it is an http(s) URL, a data: URL or base64 of a recognisable file (as
        the original APIPod read it, :func:`~apipod.media.convert.is_media_text`), else
        the ``str``. Without ``str``, text is a file when the union's other types refuse
        it (``"3"`` for ``ImageFile | int`` is 3).
        """
        if self.media_cls is None:
            return False
        if self.plain is None:
            return True
        if self.is_list and isinstance(value, list):
            return bool(value) and all(self._is_file_value(item) for item in value)
        return self._is_file_value(value)

    def _is_file_value(self, value: Any) -> bool:
        if is_upload(value):
            return True
        if isinstance(value, dict):
            return isinstance(value.get("content"), str)
        if isinstance(value, str) and str in union_members(self.plain):
            return is_media_text(value)
        if isinstance(value, str):
            try:
                self._plain_adapter.validate_python(value)
            except ValidationError:
                return True
        return False


def make_param(name: str, annotation: Any, default: Any) -> Param:
    inner, optional = strip_optional(annotation)
    if optional and default is inspect.Parameter.empty:
        default = None  # as in the original APIPod: Optional[X] means "may be left out"
    inner, is_list, container = _strip_list(inner)
    media_cls, plain = _split_file_types(inner)
    return Param(name, annotation, default, inner, is_list, optional, media_cls, plain, container)


def strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return typing.Union[tuple(args)], optional  # noqa: UP007 - built from a tuple
    return annotation, False


def _strip_list(annotation: Any) -> tuple[Any, bool, type | None]:
    """``(item type, is a list, container class)``; ``MediaList[X]`` is a list of X that
    the function receives as a MediaList."""
    origin = typing.get_origin(annotation) or annotation
    args = typing.get_args(annotation)
    if isinstance(origin, type) and issubclass(origin, MediaList):
        return (args[0] if args else MediaFile), True, MediaList
    if typing.get_origin(annotation) in LIST_ORIGINS:
        item = args[0] if args else Any
        # List[MediaFile] is received as the original gave it: a MediaList.
        return item, True, MediaList if item is MediaFile else None
    return annotation, False, None


def union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _split_file_types(annotation: Any) -> tuple[type | None, Any]:
    """``(what a file becomes, the union's other types)`` of an item type."""
    members = union_members(annotation)
    targets = [t for t in map(_file_target, members) if t is not None]
    if not targets:
        return None, None
    others = [m for m in members if _file_target(m) is None]
    specific = [t for t in targets if t not in (MediaFile, bytes)]
    media_cls = specific[0] if specific else (MediaFile if MediaFile in targets else bytes)
    plain = typing.Union[tuple(others)] if others else None  # noqa: UP007 - from a tuple
    return media_cls, plain


def _file_target(annotation: Any) -> type | None:
    """What a file sent to a parameter of this (non-union) type becomes, if it takes one."""
    if is_media_type(annotation):
        return annotation
    if annotation is bytes:
        return bytes
    if isinstance(annotation, type) and issubclass(annotation, (FileModel, UploadFile)):
        return MediaFile
    return None


SUPPORTED_TYPES = (
    "str, int, float, bool, bytes, None, pydantic models, Enum/Literal, date/time types, "
    "dict and list of these, ImageFile, AudioFile, VideoFile, MediaFile, MediaList, "
    "FileModel, UploadFile, and Optional/Union of these"
)


def check_supported(param: Param, path: str, func_name: str) -> None:
    if param.media_cls is not None and param.plain is None:
        return
    try:
        TypeAdapter(param.value_annotation).json_schema()
    except (PydanticSchemaGenerationError, PydanticInvalidForJsonSchema, TypeError) as exc:
        raise EndpointDefinitionError(
            f"endpoint {path} ({func_name}): parameter '{param.name}' has type "
            f"{_type_name(param.annotation)}, which cannot be read from a request. "
            f"Supported types: {SUPPORTED_TYPES}."
        ) from exc


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__qualname__", None) or repr(annotation)


def is_model_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
