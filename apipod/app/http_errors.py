"""The one place where APIPod errors become HTTP status codes and JSON bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from apipod.app.jobresult import not_found
from apipod.endpoint import InputValidationError
from apipod.errors import (
    HTTPError,
    InputError,
    JobNotFound,
    QueueFull,
    ServerBusy,
    StorageFull,
    StoreUnavailable,
    UnsupportedContentType,
    UploadTooLarge,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1


def install_error_handlers(app: FastAPI) -> None:
    """Every error answer is a JSON object; internals never reach the client."""
    app.add_exception_handler(InputValidationError, _validation_errors)
    app.add_exception_handler(UnsupportedContentType, _unsupported_type)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(UploadTooLarge, _too_large)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(JobNotFound, _job_not_found)
    app.add_exception_handler(StoreUnavailable, _store_unavailable)
    app.add_exception_handler(HTTPError, _function_http_error)
    app.add_exception_handler(ServerBusy, _server_busy)
    app.add_exception_handler(StorageFull, _storage_full)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(Exception, _internal_error)


async def _validation_errors(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputValidationError)
    return JSONResponse({"detail": exc.errors}, status_code=422)


async def _unsupported_type(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=415)


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputError)
    loc = ["body", exc.field] if exc.field else ["body"]
    error = {"type": "value_error", "loc": loc, "msg": exc.message, "input": None}
    return JSONResponse({"detail": [error]}, status_code=422)


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    # The rest of the body is never read: closing the connection is the only safe end.
    return JSONResponse({"detail": str(exc)}, status_code=413, headers={"Connection": "close"})


async def _queue_full(request: Request, exc: Exception) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse({"detail": str(exc)}, status_code=429, headers=headers)


async def _job_not_found(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, JobNotFound)
    return JSONResponse(not_found(exc.job_id, str(exc)), status_code=404)


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # The exception names the database (path, user@host); only the log gets it.
    logger.error("job store unavailable: %s", exc)
    headers = {"Retry-After": str(RETRY_AFTER_S)}
    body = {"detail": "job store unavailable, try again shortly"}
    return JSONResponse(body, status_code=503, headers=headers)


async def _server_busy(request: Request, exc: Exception) -> JSONResponse:
    # The body may still be streaming in: close rather than read the rest.
    headers = {"Retry-After": str(RETRY_AFTER_S), "Connection": "close"}
    return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)


async def _storage_full(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=507)


async def _function_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPError)
    return JSONResponse({"detail": exc.message}, status_code=exc.status_code)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error in %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
