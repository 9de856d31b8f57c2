"""Every error APIPod raises on purpose derives from :class:`APIPodError`.

Only the HTTP front end (``apipod.app``) maps these to status codes; the rest of the
package raises them without knowing about HTTP.
"""

from __future__ import annotations


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


class UnsupportedContentType(InputError):
    """The request body has a content type no endpoint reads."""

    def __init__(self, content_type: str) -> None:
        super().__init__(
            f"unsupported content type {content_type!r}; send application/json, "
            "application/x-www-form-urlencoded or multipart/form-data"
        )
        self.content_type = content_type


class UploadTooLarge(APIPodError):
    """A request body or an uploaded file exceeds the configured size limit."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit_bytes / 1_000_000:g} MB")
        self.limit_bytes = limit_bytes


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


class JobCancelled(APIPodError):
    """Raised inside a running job when a client cancelled it.

    It is raised from ``JobProgress.set_status`` so that the job stops at its next
    progress report; user code should let it propagate.
    """
