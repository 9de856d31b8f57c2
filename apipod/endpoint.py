"""What an endpoint is, independent of HTTP: its parameters and how to validate them.

The front end builds a spec per ``@app.endpoint`` function; workers use the same spec to
turn stored inputs back into call arguments.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from apipod.errors import BatchResultError, EndpointDefinitionError, InputError
from apipod.jsonlimits import loads_bounded
from apipod.media.convert import is_upload
from apipod.params import (
    LIST_ORIGINS,
    Param,
    check_supported,
    is_model_type,
    make_param,
    strip_optional,
    union_members,
)
from apipod.progress import JobProgress


class InputValidationError(InputError):
    """Several invalid inputs at once, as FastAPI-shaped error dicts in ``errors``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("msg")) for e in errors))
        self.errors = errors


@dataclass
class EndpointSpec:
    """An endpoint: its function, its route options and its parameters."""

    path: str
    func: Callable[..., Any]
    methods: list[str]
    params: list[Param]
    progress_param: str | None
    #: The progress parameter is ``list[JobProgress]``: one reporter per job of a batch.
    progress_per_job: bool = False
    max_upload_file_size_mb: float | None = None
    queue_size: int | None = None
    use_queue: bool | None = None
    job_timeout: float | None = None
    result_image_format: str | None = None
    summary: str | None = None
    tags: list[str] | None = None
    #: Jobs run together in one call (1: one job per call); see :func:`batch_arguments`.
    batch_size: int = 1
    #: How long a worker waits for more jobs when fewer than ``batch_size`` are queued.
    batch_wait_ms: float = 0.0
    #: A returned iterator (not only a generator function's output) streams, chunk by
    #: chunk, as a generator's would (set for OpenAI-compatible endpoints).
    streams_returned_iterators: bool = False
    input_model: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        check_batch_options(self.batch_size, self.batch_wait_ms)
        if self.progress_per_job and not self.batched:
            raise EndpointDefinitionError(
                f"endpoint {self.path} ({self.name}): list[JobProgress] (one reporter per job)"
                " is for batched endpoints; annotate it JobProgress or set batch_size"
            )
        if self.batched and self.is_stream:
            raise EndpointDefinitionError(
                f"endpoint {self.path} ({self.name}): a generator endpoint streams one job's"
                " chunks and cannot be batched; drop batch_size or return a list"
            )
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
    def is_stream(self) -> bool:
        """A generator function (``def`` or ``async def`` with ``yield``) streams."""
        return inspect.isgeneratorfunction(self.func) or inspect.isasyncgenfunction(self.func)

    def streams(self, result: Any) -> bool:
        """Whether ``result`` (what the function returned) is output to stream."""
        return self.is_stream or (self.streams_returned_iterators and is_iterator(result))

    @property
    def batched(self) -> bool:
        return self.batch_size > 1

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


def is_iterator(value: Any) -> bool:
    """An iterator or async iterator (a generator, ``iter(...)``), not a container."""
    return isinstance(value, (Iterator, AsyncIterator))


def as_generator(output: Any) -> Generator[Any, None, None] | AsyncGenerator[Any, None]:
    """An iterator as a generator (closing it closes the iterator it wraps, if it can)."""
    if isinstance(output, (Generator, AsyncGenerator)):
        return output
    if isinstance(output, AsyncIterator):
        return _async_each(output)
    return _each(output)


def _each(output: Iterator[Any]) -> Generator[Any, None, None]:
    yield from output


async def _async_each(output: AsyncIterator[Any]) -> AsyncGenerator[Any, None]:
    async for value in output:
        yield value


def build_spec(func: Callable[..., Any], path: str, **options: Any) -> EndpointSpec:
    """Analyse ``func``'s signature (string annotations resolved) into a spec.

    Raises :class:`EndpointDefinitionError` for a signature that cannot be served.
    """
    hints = typing.get_type_hints(func)
    params: list[Param] = []
    progress_param = None
    per_job = False
    batched = options.get("batch_size", 1) > 1
    for name, parameter in inspect.signature(func).parameters.items():
        annotation = hints.get(name, Any)
        if _is_progress(name, annotation) or _is_progress_list(annotation):
            progress_param, per_job = name, _is_progress_list(annotation)
            continue
        if batched:
            annotation = _per_job_annotation(func, path, name, annotation)
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise EndpointDefinitionError(
                f"endpoint {path} ({func.__name__}): *args/**kwargs are not supported"
            )
        param = make_param(name, annotation, parameter.default)
        check_supported(param, path, func.__name__)
        params.append(param)
    return EndpointSpec(
        path=path,
        func=func,
        params=params,
        progress_param=progress_param,
        progress_per_job=per_job,
        **options,
    )


def check_batch_options(batch_size: Any, batch_wait_ms: Any) -> None:
    """Raise EndpointDefinitionError unless ``batch_size`` is an int >= 1 and
    ``batch_wait_ms`` is at least 0."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EndpointDefinitionError(
            f"Invalid batch_size {batch_size!r}: a whole number of jobs, at least 1"
        )
    if not isinstance(batch_wait_ms, (int, float)) or not 0 <= batch_wait_ms < 3_600_000:
        raise EndpointDefinitionError(
            f"Invalid batch_wait_ms {batch_wait_ms!r}: milliseconds, at least 0, under an hour"
        )


def _per_job_annotation(func: Callable[..., Any], path: str, name: str, annotation: Any) -> Any:
    """A batched function takes ``list[T]`` per parameter; each job sends one ``T``."""
    if annotation is Any:
        return Any
    if typing.get_origin(annotation) in (list, Sequence):
        args = typing.get_args(annotation)
        return args[0] if args else Any
    raise EndpointDefinitionError(
        f"endpoint {path} ({func.__name__}) is batched: it receives one list per parameter, so "
        f"annotate {name!r} as list[...] (each job sends one item), not {annotation!r}"
    )


def batch_arguments(spec: EndpointSpec, calls: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    """The arguments of one batched call: for each parameter, the list of its values in
    ``calls`` (the arguments of each job, in queue order)."""
    return {param.name: [kwargs[param.name] for kwargs in calls] for param in spec.params}


def batch_results(spec: EndpointSpec, results: Any, count: int) -> list[Any]:
    """The results of a batched call, one per job; :class:`BatchResultError` unless the
    function returned a list (or tuple) of ``count`` items. An item that is an exception
    instance stands for that job's failure."""
    if not isinstance(results, (list, tuple)):
        raise BatchResultError(
            f"batched endpoint {spec.name} must return a list of {count} results, "
            f"got {type(results).__name__}"
        )
    if len(results) != count:
        raise BatchResultError(
            f"batched endpoint {spec.name} returned {len(results)} results for {count} jobs"
        )
    return list(results)


def _is_progress(name: str, annotation: Any) -> bool:
    if annotation is JobProgress:
        return True
    return name == "job_progress" and annotation is Any


def _is_progress_list(annotation: Any) -> bool:
    """``list[JobProgress]``: a batched function's reporters, one per job."""
    origin = typing.get_origin(annotation)
    return origin in (list, Sequence) and typing.get_args(annotation) == (JobProgress,)


def _field_default(param: Param) -> Any:
    if param.media_cls is not None:
        return None if param.required else param.default
    if param.model_fills_itself:
        return Field(default_factory=param.inner)
    return ... if param.required else param.default


def _all(value: Any, predicate: Callable[[Any], bool]) -> bool:
    if isinstance(value, list):
        return bool(value) and all(predicate(item) for item in value)
    return predicate(value)


_MEDIA_TYPES = {"image": "ImageFile", "audio": "AudioFile", "video": "VideoFile"}


def _refuse_uploads(values: Mapping[str, Any]) -> None:
    errors = []
    for name, value in values.items():
        uploads = [v for v in (value if isinstance(value, list) else [value]) if is_upload(v)]
        if uploads:
            errors.append(media_error(name, _annotate_hint(name, uploads, isinstance(value, list))))
    if errors:
        raise InputValidationError(errors)


def _annotate_hint(name: str, uploads: list[Any], many: bool) -> str:
    """What to write instead: the media type that fits the upload's content type."""
    major = (getattr(uploads[0], "content_type", None) or "").partition("/")[0]
    suggested = _MEDIA_TYPES.get(major, "MediaFile")
    others = [t for t in (*_MEDIA_TYPES.values(), "MediaFile") if t != suggested]
    annotation = f"list[{suggested}]" if many else suggested
    return (
        f"field '{name}' received a file upload but is not annotated with a media type: "
        f"annotate it `{name}: {annotation}` (or {'/'.join(others)})"
    )


def coerce_form_value(param: Param, values: list[Any]) -> Any:
    """Form fields arrive as strings (and repeat for lists): shape them for validation."""
    if param.is_list:
        return [_coerce_one(param, v) for v in _form_list(values) if v != ""]
    value = values[-1]
    if value == "" and str not in union_members(param.inner):
        # An empty form field means "not given", as with FastAPI's Form().
        if not param.required:
            return param.default_value()
        if param.optional:
            return None
    return _coerce_one(param, value)


def model_field_value(model_field: FieldInfo, values: list[Any]) -> Any:
    """A model's field sent flattened into a form: a list field takes every value, a
    model or dict field JSON text, any other the last value."""
    annotation, _ = strip_optional(model_field.annotation)
    if typing.get_origin(annotation) in LIST_ORIGINS:
        return _form_list(values)
    value = values[-1]
    nested = (
        annotation is dict or typing.get_origin(annotation) is dict or is_model_type(annotation)
    )
    if nested and isinstance(value, str):
        try:
            return loads_bounded(value)
        except json.JSONDecodeError:
            return value
    return value


def _form_list(values: list[Any]) -> list[Any]:
    """A list sent as repeated form fields, or as one field of JSON array text (how
    fastsdk and the original's clients send lists in a form)."""
    if len(values) == 1 and isinstance(values[0], str) and values[0].lstrip().startswith("["):
        try:
            parsed = loads_bounded(values[0])
        except json.JSONDecodeError:
            return values
        if isinstance(parsed, list):
            return parsed
    return values


def _coerce_one(param: Param, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    wants_json = param.is_model or typing.get_origin(param.inner) is dict or param.inner is dict
    if param.media_cls is not None:
        # A FileModel object sent as JSON text in a form field.
        wants_json = value.lstrip().startswith("{")
    if wants_json:
        try:
            return loads_bounded(value, param.name)
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
