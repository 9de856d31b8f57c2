"""What an endpoint is, independent of HTTP: its parameters and how to validate them.

The front end builds a spec per ``@app.endpoint`` function; workers use the same spec to
turn stored inputs back into call arguments.
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from apipod.errors import InputError
from apipod.media.convert import is_media_type
from apipod.progress import JobProgress

_LIST_ORIGINS = (list, tuple, set, frozenset, typing.Sequence)


class InputValidationError(InputError):
    """Several invalid inputs at once, as FastAPI-shaped error dicts in ``errors``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("msg")) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Param:
    """One client-visible parameter of an endpoint function."""

    name: str
    annotation: Any
    default: Any
    inner: Any
    is_list: bool
    optional: bool

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    @property
    def media_cls(self) -> type | None:
        return self.inner if is_media_type(self.inner) else None

    @property
    def is_model(self) -> bool:
        return isinstance(self.inner, type) and issubclass(self.inner, BaseModel)


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
            p.name: (p.annotation, ... if p.required else p.default)
            for p in self.params
            if p.media_cls is None
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
        return [p for p in self.params if p.media_cls is not None]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def validate_values(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate the non-media inputs; return them as python objects."""
        values = {k: v for k, v in raw.items() if (p := self.param(k)) and p.media_cls is None}
        try:
            model = self.input_model.model_validate(values)
        except ValidationError as exc:
            raise InputValidationError(_fastapi_errors(exc)) from None
        return {name: getattr(model, name) for name in type(model).model_fields}

    def check_required_media(self, raw: Mapping[str, Any]) -> None:
        missing = [p for p in self.media_params if p.required and raw.get(p.name) in (None, [])]
        if missing:
            raise InputValidationError([_missing_error(p.name) for p in missing])


def build_spec(func: Callable[..., Any], path: str, **options: Any) -> EndpointSpec:
    """Analyse ``func``'s signature (string annotations resolved) into a spec."""
    hints = typing.get_type_hints(func)
    params: list[Param] = []
    progress_param = None
    for name, parameter in inspect.signature(func).parameters.items():
        annotation = hints.get(name, Any)
        if _is_progress(name, annotation):
            progress_param = name
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"endpoint {func.__name__}: *args/**kwargs are not supported")
        params.append(_make_param(name, annotation, parameter.default))
    return EndpointSpec(
        path=path, func=func, params=params, progress_param=progress_param, **options
    )


def _is_progress(name: str, annotation: Any) -> bool:
    if annotation is JobProgress:
        return True
    return name == "job_progress" and annotation is Any


def _make_param(name: str, annotation: Any, default: Any) -> Param:
    inner, optional = _strip_optional(annotation)
    is_list = typing.get_origin(inner) in _LIST_ORIGINS
    if is_list:
        args = typing.get_args(inner)
        inner = args[0] if args else Any
    return Param(name, annotation, default, inner, is_list, optional)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], optional
        return annotation, optional
    return annotation, False


def coerce_form_value(param: Param, values: list[Any]) -> Any:
    """Form fields arrive as strings (and repeat for lists): shape them for validation."""
    if param.is_list:
        return [_coerce_one(param, v) for v in values if v != ""]
    value = values[-1]
    if value == "" and param.inner is not str:
        # An empty form field means "not given", as with FastAPI's Form().
        if not param.required:
            return param.default
        if param.optional:
            return None
    return _coerce_one(param, value)


def _coerce_one(param: Param, value: Any) -> Any:
    if not isinstance(value, str) or param.media_cls is not None:
        return value
    wants_json = param.is_model or typing.get_origin(param.inner) is dict or param.inner is dict
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
