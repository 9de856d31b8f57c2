"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The status code stays the one APIPod's error handlers choose for the exception (one
owner); only the body is reshaped, so OpenAI clients raise their matching exception
(``BadRequestError``, ``AuthenticationError``, ``NotFoundError``, ``RateLimitError``...).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from apipod.app.auth import UNAUTHORIZED
from apipod.endpoint import InputValidationError
from apipod.errors import APIPodError, client_error_text

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}


class JobEndedBadly(APIPodError):
    """The job of an OpenAI call failed, timed out or was cancelled (the message is the
    job's error: ``Type: message``)."""


class ResultShapeError(APIPodError):
    """The function returned something its kind of endpoint cannot answer with."""


class ModelNotFound(APIPodError):
    """The request's ``model`` names none of the service's endpoints of its kind."""

    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(
            f"The model '{model}' does not exist; this service serves: {', '.join(known)}"
        )
        self.model = model


def error_body(status: int, message: str, param: str | None = None, code: str | None = None):
    """The OpenAI error object for ``status``."""
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    code = code or _CODES.get(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status, headers=headers)


def unauthorized() -> JSONResponse:
    return error_response(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


async def openai_error(app: APIPod, request: Request, exc: Exception) -> Response:
    """The answer to ``exc`` on an OpenAI route: APIPod's status and headers, OpenAI's body."""
    if isinstance(exc, ModelNotFound):
        return error_response(404, str(exc), "model", "model_not_found")
    if isinstance(exc, InputValidationError):
        return _invalid(exc)
    if isinstance(exc, JobEndedBadly):
        return error_response(500, str(exc))
    if isinstance(exc, ResultShapeError):  # the function's result, not a server fault
        logger.warning("%s: %s", request.url.path, exc)
        return error_response(500, client_error_text(exc))
    answer = await app.error_response(request, exc)  # logs what it does not expect
    detail = json.loads(bytes(answer.body)).get("detail") if answer.body else None
    message = detail if isinstance(detail, str) else client_error_text(exc)
    if answer.status_code == 500:  # the function's error, as "Type: message"
        message = client_error_text(exc)
    headers = {k: v for k, v in answer.headers.items() if k.lower() in _KEPT_HEADERS}
    return error_response(answer.status_code, message, headers=headers)


_KEPT_HEADERS = {"retry-after", "connection", "www-authenticate"}


def _invalid(exc: InputValidationError) -> JSONResponse:
    """400 invalid_request_error, naming the first bad field (as OpenAI does)."""
    messages, param = [], None
    for error in exc.errors:
        loc = [str(part) for part in error.get("loc", []) if part != "body"]
        where = ".".join(loc)
        param = param or where or None
        messages.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return error_response(400, "; ".join(messages) or str(exc), param)
