"""Reading an endpoint's inputs from a request: JSON, urlencoded form or multipart.

Query parameters that name a parameter are read too (lowest precedence); unknown ones
(clients send ``details_id``) are ignored. The body is size-limited while it streams in.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.types import Message

from apipod.endpoint import (
    EndpointSpec,
    InputValidationError,
    coerce_form_value,
    model_field_value,
)
from apipod.errors import UnsupportedContentType, UploadTooLarge

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class RawInputs:
    """The client's values by parameter name, plus the open form (closed by ``close``)."""

    def __init__(self, values: dict[str, Any], form: FormData | None = None) -> None:
        self.values = values
        self._form = form

    async def close(self) -> None:
        if self._form is not None:
            await self._form.close()


async def read_inputs(request: Request, spec: EndpointSpec, limit_bytes: int) -> RawInputs:
    """Collect raw values for ``spec``'s parameters from the query string and body."""
    values = _from_query(request, spec)
    _check_declared_length(request, limit_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limited = Request(request.scope, receive=_limited_receive(request.receive, limit_bytes))
    if content_type in FORM_TYPES:
        form = await limited.form(max_files=10_000, max_fields=10_000, max_part_size=limit_bytes)
        values.update(_from_form(form, spec))
        return RawInputs(values, form)
    body = await limited.body()
    if not body.strip():
        return RawInputs(values)
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedContentType(content_type)
    values.update(_from_json(body, spec))
    return RawInputs(values)


def _from_query(request: Request, spec: EndpointSpec) -> dict[str, Any]:
    return _from_fields(request.query_params, spec)


def _from_form(form: FormData, spec: EndpointSpec) -> dict[str, Any]:
    values = _from_fields(form, spec)
    for param in spec.params:
        # A model whose fields all have defaults needs no form field (its flattened
        # schema requires none), as with FastAPI's form models.
        flat = param.is_model and not param.is_list and param.name not in values
        if flat and param.required and not _has_required_fields(param.inner):
            values[param.name] = {}
    return values


def _has_required_fields(model: type[BaseModel]) -> bool:
    return any(f.is_required() for f in model.model_fields.values())


def _from_fields(fields: ImmutableMultiDict[str, Any], spec: EndpointSpec) -> dict[str, Any]:
    """Values by parameter from form (or query) fields. A model parameter's fields may
    come flattened (``pam1=a&pam2=2`` for ``order: Params``), as the original APIPod's
    clients send them; a value for the parameter itself (JSON text) takes precedence."""
    values: dict[str, Any] = {}
    flattened: dict[str, dict[str, Any]] = {}
    for name in fields:
        param = spec.param(name)
        if param is not None:
            values[name] = coerce_form_value(param, fields.getlist(name))
        elif (owner := spec.model_param_of_field(name)) is not None:
            model_field = owner.inner.model_fields[name]
            flattened.setdefault(owner.name, {})[name] = model_field_value(
                model_field, fields.getlist(name)
            )
    for name, model_fields in flattened.items():
        values.setdefault(name, model_fields)
    return values


def _from_json(body: bytes, spec: EndpointSpec) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputValidationError([_json_error(f"JSON decode error: {exc}")]) from None
    if not isinstance(document, dict):
        raise InputValidationError([_json_error("the JSON body must be an object of inputs")])
    return {k: v for k, v in document.items() if spec.param(k) is not None}


def _json_error(message: str) -> dict[str, Any]:
    return {"type": "json_invalid", "loc": ["body"], "msg": message, "input": None}


def _check_declared_length(request: Request, limit_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise UploadTooLarge(limit_bytes)


def _limited_receive(
    receive: Callable[[], Awaitable[Message]], limit_bytes: int
) -> Callable[[], Awaitable[Message]]:
    """Wrap ASGI ``receive`` so the body is refused as soon as it passes the limit,
    whatever Content-Length claimed (chunked uploads have none)."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit_bytes:
                raise UploadTooLarge(limit_bytes)
        return message

    return limited
