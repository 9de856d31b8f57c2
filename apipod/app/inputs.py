"""Reading an endpoint's inputs from a request: JSON, urlencoded form or multipart.

Query parameters that name a parameter are read too (lowest precedence); unknown ones
(clients send ``details_id``) are ignored. The body is size-limited while it streams in.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.requests import Request
from starlette.types import Message

from apipod.app.budget import Reservation
from apipod.app.forms import parse_multipart
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
    request: Request, spec: EndpointSpec, limits: BodyLimits, memory: Reservation
) -> RawInputs:
    """Collect raw values for ``spec``'s parameters from the query string and body.
    Body bytes held in memory (all but multipart files, which are spooled to disk) are
    taken from ``memory``, the process's in-flight budget, as they arrive; the values a
    JSON body will build are taken before it is parsed."""
    values = _from_query(request, spec)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit, what = limits.body_limit(content_type, bool(spec.media_params))
    check_declared_length(request, limit, what)
    multipart = content_type == "multipart/form-data"
    count = None if multipart else memory.take  # multipart: files spool, fields count
    receive = limited_receive(request.receive, limit, what, count)
    limited = Request(request.scope, receive=receive)
    if multipart:
        stream = limited.stream()
        form = await parse_multipart(limited.headers, stream, limits.json_bytes, memory.take)
        values.update(_from_form(form, spec))
        return RawInputs(values, form)
    if content_type in FORM_TYPES:
        form = await limited.form(max_fields=10_000, max_part_size=limit)
        values.update(_from_form(form, spec))
        return RawInputs(values, form)
    body = await read_body(limited)
    if not body or body.isspace():
        return RawInputs(values)
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedContentType(content_type)
    parse = functools.partial(parse_json_inputs, body, spec, limits.json_bytes, memory.take)
    if len(body) < PARSE_IN_THREAD_BYTES:
        values.update(parse())
    else:  # a long parse would stall every other request on the event loop
        values.update(await run_in_threadpool(parse))
    return RawInputs(values)


@dataclass(frozen=True)
class BodyLimits:
    """An endpoint's body limits: ``upload_bytes`` for the body with its media,
    ``json_bytes`` (``max_json_mb``) for what is parsed in memory."""

    upload_bytes: int
    json_bytes: int

    def body_limit(self, content_type: str, takes_media: bool) -> tuple[int, str]:
        """(bytes, what is limited) for a body of ``content_type``. A JSON body may carry
        base64 media up to the upload limit when the endpoint takes media (its other
        text is held to ``json_bytes`` after parsing); urlencoded bodies never."""
        media_json = takes_media and content_type not in FORM_TYPES
        if content_type == "multipart/form-data" or media_json:
            return self.upload_bytes, "request body"
        if self.json_bytes < self.upload_bytes:
            return self.json_bytes, "the JSON or urlencoded body (max_json_mb)"
        return self.upload_bytes, "request body"


async def read_body(request: Request) -> bytearray:
    """The body in one buffer that grows with the bytes received, never with what
    Content-Length declares (a client that declares a gigabyte and sends two bytes
    holds two bytes). Large buffers grow by remapping pages, not by copying."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
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


def check_declared_length(request: Request, limit_bytes: int, what: str) -> None:
    """UploadTooLarge at once when Content-Length declares more than ``limit_bytes``."""
    # Refusing early by Content-Length is safe; allocating by it never is.
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise UploadTooLarge(limit_bytes, what)


def limited_receive(
    receive: Callable[[], Awaitable[Message]],
    limit_bytes: int,
    what: str,
    count: Callable[[int], None] | None,
) -> Callable[[], Awaitable[Message]]:
    """Wrap ASGI ``receive`` so the body is refused as soon as it passes the limit,
    whatever Content-Length claimed (chunked uploads have none); ``count`` takes each
    chunk's size from the in-flight budget while it is held."""
    received = 0

    async def limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            received += size
            if received > limit_bytes:
                raise UploadTooLarge(limit_bytes, what)
            if count is not None and size:
                count(size)
        return message

    return limited
