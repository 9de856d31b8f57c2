"""Every error APIPod raises on purpose derives from :class:`APIPodError`.

Only the HTTP front end (``apipod.app``) maps these to status codes; the rest of the
package raises them without knowing about HTTP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_FROM_PYTHON: ContextVar[bool] = ContextVar("apipod_started_from_python", default=False)


def setting_hint(name: str, value: str | None = None) -> str:
    """How the user gives setting ``name`` where they started the service, for error
    messages: ``--gpus none`` on the command line, ``app.start(gpus='none')`` in Python."""
    if _FROM_PYTHON.get():
        return f"app.start({name}={'...' if value is None else repr(value)})"
    flag = f"--{name.replace('_', '-')}"
    return flag if value is None else f"{flag} {value}"


@contextlib.contextmanager
def started_from_python() -> Iterator[None]:
    """Within this block, :func:`setting_hint` names ``app.start()`` arguments."""
    token = _FROM_PYTHON.set(True)
    try:
        yield
    finally:
        _FROM_PYTHON.reset(token)


class APIPodError(Exception):
    """Base class of all APIPod errors."""


class ConfigError(APIPodError, ValueError):
    """A setting is unknown, has a bad value, or names something unsupported.

    A ``ValueError`` whose message starts with "Invalid", as the original APIPod's
    configuration errors were: code written for it (``except ValueError``) still works.
    """

    prefix = "Invalid configuration: "

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith("Invalid") else self.prefix + message)


class EndpointDefinitionError(ConfigError):
    """An ``@app.endpoint`` function cannot be served as written (a parameter type APIPod
    cannot read from a request, ``*args``, two endpoints on one route)."""

    prefix = "Invalid endpoint: "


class ServiceLoadError(APIPodError):
    """The user's service module could not be imported or holds no APIPod app."""


class InputError(APIPodError):
    """A client input is invalid. ``field`` names the parameter, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class MediaError(InputError):
    """A media input could not be read, fetched or decoded."""


class MediaTooLarge(MediaError):
    """A downloaded media input is larger than allowed."""


class UnsupportedContentType(InputError):
    """The request body has a content type no endpoint reads."""

    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"unsupported content type {content_type!r}; send application/json, "
            "application/x-www-form-urlencoded or multipart/form-data"
        )
        self.content_type = content_type


class UploadTooLarge(APIPodError):
    """A request body, or the media of one request together, exceed the size limit."""

    def __init__(self, limit_bytes: int, what: str = "request body", hint: str = "") -> None:
        message = f"{what} exceeds the limit of {limit_bytes / 1_000_000:g} MB"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.limit_bytes = limit_bytes


class ServerBusy(APIPodError):
    """The process holds as many request bytes in memory as it may; retry shortly."""


class StorageFull(APIPodError):
    """The stored-bytes budget (``max_stored_mb``) is reached or the disk is full."""


class QueueFull(APIPodError):
    """An endpoint already holds ``queue_size`` queued jobs."""

    def __init__(self, endpoint: str, queue_size: int) -> None:
        super().__init__(f"queue for {endpoint} is full ({queue_size} jobs waiting)")
        self.endpoint = endpoint
        self.queue_size = queue_size


class JobNotFound(APIPodError):
    """No job with this id exists (or it expired)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found (unknown or expired)")
        self.job_id = job_id


class StoreUnavailable(APIPodError):
    """The job store cannot be written or read right now (locked, disk full, gone)."""


class StoreRejected(APIPodError):
    """The store refused a value for good (not storable as it is); retrying cannot help,
    unlike :class:`StoreUnavailable`."""


class BatchResultError(APIPodError):
    """A batched endpoint returned something other than one result per job."""


class JobCancelled(APIPodError):
    """Raised inside a running job when a client cancelled it.

    It is raised from ``JobProgress.set_status`` so that the job stops at its next
    progress report; user code should let it propagate.
    """


class HTTPError(APIPodError):
    """Raise inside an endpoint function to answer the client with an error of its own.

    ``raise apipod.HTTPError(404, "no such voice")`` answers ``404 {"detail": "no such
    voice"}`` in synchronous mode; in queue mode the job fails with the error
    ``"HTTPError 404: no such voice"``. ``status_code`` must be a 4xx.
    """

    def __init__(self, status_code: int, message: str) -> None:
        if not isinstance(status_code, int) or not 400 <= status_code < 500:
            raise ValueError(f"HTTPError takes a 4xx status code, got {status_code!r}")
        super().__init__(message)
        self.status_code = status_code
        self.message = str(message)


def client_error_text(exc: BaseException) -> str:
    """What a client may read about a failure: ``ExceptionType: message`` (or just the
    ``HTTPError <code>: message`` for an :class:`HTTPError`); never a traceback, file
    path or frame."""
    if isinstance(exc, HTTPError):
        return f"HTTPError {exc.status_code}: {exc.message}"
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
