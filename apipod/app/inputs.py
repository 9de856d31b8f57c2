"""Reading an endpoint's inputs from a request: JSON, urlencoded form or multipart.

Query parameters that name a parameter are read too (lowest precedence); unknown ones
(clients send ``details_id``) are ignored. The body is size-limited while it streams in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.types import Message

from apipod.app.budget import Reservation
from apipod.app.jsonbody import parse_json_inputs
from apipod.endpoint import EndpointSpec, coerce_form_value, model_field_value
from apipod.errors import UnsupportedContentType, UploadTooLarge

PARSE_IN_THREAD_BYTES = 256 * 1024
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class RawInputs:
    """The client's values by parameter name, plus the open form (closed by ``close``)."""

    def __init__(self, values: dict[str, Any], form: FormData | None = None) -> None:
        self.values = values
        self._form = form

    async def close(self) -> None:
        if self._form is not None:
            await self._form.close()


async def read_inputs(
    request: Request, spec: EndpointSpec, limit_bytes: int, memory: Reservation
) -> RawInputs:
    """Collect raw values for ``spec``'s parameters from the query string and body.
    Body bytes held in memory (all but multipart, whose files are spooled to disk) are
    taken from ``memory``, the process's in-flight budget."""
    values = _from_query(request, spec)
    _check_declared_length(request, limit_bytes)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    count = None if content_type == "multipart/form-data" else memory.take
    receive = _limited_receive(request.receive, limit_bytes, count)
    limited = Request(request.scope, receive=receive)
    if content_type in FORM_TYPES:
        form = await limited.form(max_files=10_000, max_fields=10_000, max_part_size=limit_bytes)
        values.update(_from_form(form, spec))
        return RawInputs(values, form)
    body = await _read_body(limited)
    if not body or body.isspace():
        return RawInputs(values)
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedContentType(content_type)
    if len(body) < PARSE_IN_THREAD_BYTES:
        values.update(parse_json_inputs(body, spec))
    else:  # a long parse would stall every other request on the event loop
        values.update(await run_in_threadpool(parse_json_inputs, body, spec))
    return RawInputs(values)


async def _read_body(request: Request) -> bytearray:
    """The body in one buffer, allocated once when Content-Length is known. (Starlette's
    body() joins a list of chunks, and a growing buffer may be copied as it grows:
    both hold a large body twice for a moment.)"""
    declared = request.headers.get("content-length", "")
    if not declared.isdigit():
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
        return body
    body = bytearray(int(declared))
    view, filled = memoryview(body), 0
    async for chunk in request.stream():
        view[filled : filled + len(chunk)] = chunk  # the server enforces Content-Length
        filled += len(chunk)
    view.release()
    del body[filled:]  # a client that closed early sent less
    return body


def _from_query(request: Request, spec: EndpointSpec) -> dict[str, Any]:
    return _from_fields(request.query_params, spec)


def _from_form(form: FormData, spec: EndpointSpec) -> dict[str, Any]:
    # A model whose fields all have defaults needs no form field: see Param.required.
    return _from_fields(form, spec)


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


def _check_declared_length(request: Request, limit_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise UploadTooLarge(limit_bytes)


def _limited_receive(
    receive: Callable[[], Awaitable[Message]],
    limit_bytes: int,
    count: Callable[[int], None] | None,
) -> Callable[[], Awaitable[Message]]:
    """Wrap ASGI ``receive`` so the body is refused as soon as it passes the limit,
    whatever Content-Length claimed (chunked uploads have none); ``count`` takes each
    chunk's size from the in-flight budget."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            received += size
            if received > limit_bytes:
                raise UploadTooLarge(limit_bytes)
            if count is not None and size:
                count(size)
        return message

    return limited
