"""What an endpoint is, independent of HTTP: its parameters and how to validate them.

The front end builds a spec per ``@app.endpoint`` function; workers use the same spec to
turn stored inputs back into call arguments.
"""

from __future__ import annotations

import functools
import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from media_toolkit import MediaFile, MediaList
from pydantic import BaseModel, TypeAdapter, ValidationError, create_model
from pydantic.errors import PydanticInvalidForJsonSchema, PydanticSchemaGenerationError
from pydantic.fields import FieldInfo
from starlette.datastructures import UploadFile

from apipod.errors import EndpointDefinitionError, InputError
from apipod.media.convert import is_media_type, is_upload
from apipod.models import FileModel
from apipod.progress import JobProgress

_LIST_ORIGINS = (list, tuple, set, frozenset, typing.Sequence)


class InputValidationError(InputError):
    """Several invalid inputs at once, as FastAPI-shaped error dicts in ``errors``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("msg")) for e in errors))
        self.errors = errors


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
        return self.default is inspect.Parameter.empty

    @property
    def is_model(self) -> bool:
        return self.media_cls is None and _is_model(self.inner)

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

        Uploads and FileModel objects are files. Text is a file only when the union has no
        ``str`` and its other types refuse the text (``"3"`` for ``ImageFile | int`` is 3).
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
        if isinstance(value, str) and str not in _members(self.plain):
            try:
                self._plain_adapter.validate_python(value)
            except ValidationError:
                return True
        return False


@dataclass
class EndpointSpec:
    """An endpoint: its function, its route options and its parameters."""

    path: str
    func: Callable[..., Any]
    methods: list[str]
    params: list[Param]
    progress_param: str | None
    max_upload_file_size_mb: float | None = None
    queue_size: int | None = None
    use_queue: bool | None = None
    job_timeout: float | None = None
    summary: str | None = None
    tags: list[str] | None = None
    input_model: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        fields = {
            p.name: (p.value_annotation, _field_default(p))
            for p in self.params
            if p.media_cls is None or p.plain is not None
        }
        model_name = "".join(part.title() for part in self.name.split("_")) + "Input"
        self.input_model = create_model(model_name, **fields)  # type: ignore[call-overload]

    @property
    def name(self) -> str:
        return self.func.__name__

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func)

    @property
    def media_params(self) -> list[Param]:
        """Parameters that can receive files (unions of file and other types included)."""
        return [p for p in self.params if p.media_cls is not None]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def split_files(
        self, raw: Mapping[str, Any], is_stored_file: Callable[[Any], bool] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(plain values, files)`` of the known parameters in ``raw``.

        A client's values are told apart by :meth:`Param.takes_as_file`; stored inputs
        (the worker's) by ``is_stored_file``, true for a stored-file reference.
        """
        plain: dict[str, Any] = {}
        files: dict[str, Any] = {}
        for name, value in raw.items():
            param = self.param(name)
            if param is None:
                continue
            if is_stored_file is None or param.plain is None:
                is_file = param.takes_as_file(value)
            else:
                is_file = _all(value, is_stored_file)
            (files if is_file else plain)[name] = value
        return plain, files

    def validate_values(
        self, plain: Mapping[str, Any], given: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Validate the plain (non-file) inputs; return them as python objects. With
        ``given`` (all the client's values), missing files are reported in the same error.

        A union parameter appears in the result only when it was given a plain value.
        """
        values = {k: v for k, v in plain.items() if k in self.input_model.model_fields}
        _refuse_uploads(values)
        errors = [] if given is None else self._missing_files(given)
        try:
            model = self.input_model.model_validate(values)
        except ValidationError as exc:
            raise InputValidationError(_fastapi_errors(exc) + errors) from None
        if errors:
            raise InputValidationError(errors)
        return {
            name: getattr(model, name)
            for name in type(model).model_fields
            if name in values or self.param(name).media_cls is None  # type: ignore[union-attr]
        }

    def check_required_media(self, raw: Mapping[str, Any]) -> None:
        if errors := self._missing_files(raw):
            raise InputValidationError(errors)

    def _missing_files(self, raw: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [
            _missing_error(p.name)
            for p in self.media_params
            if p.required and raw.get(p.name) in (None, [])
        ]

    def call_arguments(self, values: dict[str, Any], media: dict[str, Any]) -> dict[str, Any]:
        """The function's keyword arguments from validated values and media arguments
        (which hold the defaults of file parameters not given)."""
        kwargs = {**media, **values}
        for param in self.params:
            if param.container is not None and isinstance(kwargs.get(param.name), list):
                kwargs[param.name] = param.container(kwargs[param.name])
        return kwargs

    def model_param_of_field(self, name: str) -> Param | None:
        """The model parameter that has a field ``name`` (its fields may come flattened
        into a form), unless a parameter of that name exists."""
        if self.param(name) is not None:
            return None
        return next(
            (
                p
                for p in self.params
                if p.is_model and not p.is_list and name in p.inner.model_fields
            ),
            None,
        )


def build_spec(func: Callable[..., Any], path: str, **options: Any) -> EndpointSpec:
    """Analyse ``func``'s signature (string annotations resolved) into a spec.

    Raises :class:`EndpointDefinitionError` for a signature that cannot be served.
    """
    hints = typing.get_type_hints(func)
    params: list[Param] = []
    progress_param = None
    for name, parameter in inspect.signature(func).parameters.items():
        annotation = hints.get(name, Any)
        if _is_progress(name, annotation):
            progress_param = name
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise EndpointDefinitionError(
                f"endpoint {path} ({func.__name__}): *args/**kwargs are not supported"
            )
        param = _make_param(name, annotation, parameter.default)
        _check_supported(param, path, func.__name__)
        params.append(param)
    return EndpointSpec(
        path=path, func=func, params=params, progress_param=progress_param, **options
    )


def _is_progress(name: str, annotation: Any) -> bool:
    if annotation is JobProgress:
        return True
    return name == "job_progress" and annotation is Any


def _make_param(name: str, annotation: Any, default: Any) -> Param:
    inner, optional = _strip_optional(annotation)
    if optional and default is inspect.Parameter.empty:
        default = None  # as in the original APIPod: Optional[X] means "may be left out"
    inner, is_list, container = _strip_list(inner)
    media_cls, plain = _split_file_types(inner)
    return Param(name, annotation, default, inner, is_list, optional, media_cls, plain, container)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
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
    if typing.get_origin(annotation) in _LIST_ORIGINS:
        return (args[0] if args else Any), True, None
    return annotation, False, None


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _split_file_types(annotation: Any) -> tuple[type | None, Any]:
    """``(what a file becomes, the union's other types)`` of an item type."""
    members = _members(annotation)
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


def _check_supported(param: Param, path: str, func_name: str) -> None:
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


def _field_default(param: Param) -> Any:
    if param.media_cls is not None:
        return None if param.required else param.default
    return ... if param.required else param.default


def _all(value: Any, predicate: Callable[[Any], bool]) -> bool:
    if isinstance(value, list):
        return bool(value) and all(predicate(item) for item in value)
    return predicate(value)


def _refuse_uploads(values: Mapping[str, Any]) -> None:
    errors = [
        media_error(name, f"field '{name}' takes a value, not a file upload")
        for name, value in values.items()
        if is_upload(value) or (isinstance(value, list) and any(map(is_upload, value)))
    ]
    if errors:
        raise InputValidationError(errors)


def coerce_form_value(param: Param, values: list[Any]) -> Any:
    """Form fields arrive as strings (and repeat for lists): shape them for validation."""
    if param.is_list:
        return [_coerce_one(param, v) for v in _form_list(values) if v != ""]
    value = values[-1]
    if value == "" and str not in _members(param.inner):
        # An empty form field means "not given", as with FastAPI's Form().
        if not param.required:
            return param.default
        if param.optional:
            return None
    return _coerce_one(param, value)


def model_field_value(model_field: FieldInfo, values: list[Any]) -> Any:
    """A model's field sent flattened into a form: a list field takes every value, a
    model or dict field JSON text, any other the last value."""
    annotation, _ = _strip_optional(model_field.annotation)
    if typing.get_origin(annotation) in _LIST_ORIGINS:
        return _form_list(values)
    value = values[-1]
    nested = annotation is dict or typing.get_origin(annotation) is dict or _is_model(annotation)
    if nested and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _form_list(values: list[Any]) -> list[Any]:
    """A list sent as repeated form fields, or as one field of JSON array text (how
    fastsdk and the original's clients send lists in a form)."""
    if len(values) == 1 and isinstance(values[0], str) and values[0].lstrip().startswith("["):
        try:
            parsed = json.loads(values[0])
        except json.JSONDecodeError:
            return values
        if isinstance(parsed, list):
            return parsed
    return values


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _coerce_one(param: Param, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    wants_json = param.is_model or typing.get_origin(param.inner) is dict or param.inner is dict
    if param.media_cls is not None:
        # A FileModel object sent as JSON text in a form field.
        wants_json = value.lstrip().startswith("{")
    if wants_json:
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _fastapi_errors(exc: ValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors(include_url=False):
        item = {
            "type": error["type"],
            "loc": ["body", *error["loc"]],
            "msg": error["msg"],
            "input": _safe_input(error.get("input")),
        }
        if error.get("ctx"):
            item["ctx"] = {k: str(v) for k, v in error["ctx"].items()}
        errors.append(item)
    return errors


def _safe_input(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value if not isinstance(value, str) or len(value) <= 200 else value[:200] + "..."
    if isinstance(value, (dict, list)):
        text = json.dumps(value, default=str)
        return value if len(text) <= 1000 else None
    return str(value)[:200]


def _missing_error(name: str) -> dict[str, Any]:
    return {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None}


def media_error(field_name: str, message: str) -> dict[str, Any]:
    return {"type": "media_error", "loc": ["body", field_name], "msg": message, "input": None}
