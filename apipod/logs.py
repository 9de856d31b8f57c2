"""How every process of a service logs: one format for people (``text``, the default) or
one JSON object per line for machines (``json``: ``--log-format json``).

Each record carries what the process knows about where it comes from: its role
(``supervisor``, ``api``, ``worker``), and in a worker the worker id and GPU
(:func:`bind_process`); while a job runs, its id, endpoint and batch
(:func:`job_context`), which reach the service's own log calls inside the job as well.
A log call may also name them itself with ``extra={"job_id": ...}``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import types
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"

#: The context fields a JSON line carries when they are known, in this order.
CONTEXT_FIELDS = ("job_id", "endpoint", "batch_id", "worker", "gpu")

_HANDLER_NAME = "apipod"
_process_fields: dict[str, Any] = {"role": "supervisor"}
_job_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "apipod_job_log_fields", default=None
)


def setup_logging(level: str, log_format: str = "text", *, force: bool = False) -> None:
    """One log set-up for every process. The root logger gets one stream handler unless
    it has handlers already (a host application's, pytest's); ``force`` replaces them."""
    root = logging.getLogger()
    if force or not root.handlers:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
            handler.close()
        handler = logging.StreamHandler()
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    for handler in root.handlers:
        if handler.get_name() == _HANDLER_NAME:
            handler.setFormatter(JsonFormatter() if log_format == "json" else _text_formatter())
    root.setLevel(level.upper())
    if log_format == "json" and any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        _log_uncaught_exceptions()
        logging.captureWarnings(True)  # warnings.warn(...) becomes a record, not bare text


def _text_formatter() -> logging.Formatter:
    return logging.Formatter(TEXT_FORMAT)


def bind_process(role: str, **fields: Any) -> None:
    """Name this process in every record it logs from now on (``worker``, ``gpu``...).
    A field given as ``None`` is written as ``null`` (a worker's ``gpu`` on a CPU)."""
    _process_fields.clear()
    _process_fields.update(role=role, **fields)


@contextlib.contextmanager
def job_context(
    job_id: str | None, endpoint: str | None, batch_id: str | None = None
) -> Iterator[None]:
    """Records logged inside the block (by APIPod or by the endpoint function, in this
    thread or this task) carry the job's id, endpoint and batch."""
    fields = {"job_id": job_id, "endpoint": endpoint, "batch_id": batch_id}
    token = _job_fields.set({k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        _job_fields.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, ``pid``, ``role``, then the known context fields
    (:data:`CONTEXT_FIELDS`), then ``exc_info`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """Never raises: a formatter that raises loses the line and prints a traceback."""
        line: dict[str, Any] = {
            "time": _utc_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _message(record),
            "pid": record.process,
            "role": _process_fields.get("role"),
        }
        known = {**_process_fields, **(_job_fields.get() or {})}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)  # a log call's own extra={...} wins
            if value is not None:
                line[name] = value
            elif name in known:
                line[name] = known[name]
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        try:
            return json.dumps(line, ensure_ascii=False, default=str, allow_nan=False)
        except (TypeError, ValueError):  # NaN, or keys JSON cannot have, in an extra field
            plain = {
                key: value if isinstance(value, str) else str(value) for key, value in line.items()
            }
            return json.dumps(plain, ensure_ascii=False)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # arguments that do not fit the format string
        return f"{record.msg!r} (log arguments that do not fit it: {record.args!r})"


def _utc_time(created: float) -> str:
    moment = datetime.fromtimestamp(created, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _log_uncaught_exceptions() -> None:
    """An exception nobody caught is logged as a record, so a JSON log stays one object
    per line instead of gaining a bare traceback on stderr."""
    uncaught = logging.getLogger("apipod.uncaught")

    def on_exception(
        kind: type[BaseException], exc: BaseException, trace: types.TracebackType | None
    ) -> None:
        uncaught.critical("uncaught %s", kind.__name__, exc_info=(kind, exc, trace))

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        uncaught.error(
            "uncaught %s in thread %s",
            args.exc_type.__name__,
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        )

    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception


class _QuietPolls(logging.Filter):
    """Drops uvicorn's access lines for status polls and health checks unless the log
    level is debug: a client waiting for a job polls many times a second."""

    PREFIXES = ("/status/", "/health", "/jobs/")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 3 and args[1] == "GET" and str(args[2]).startswith(self.PREFIXES):
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_status_polls() -> None:
    """Status polls and health checks are logged at debug level only."""
    logging.getLogger("uvicorn.access").addFilter(_QuietPolls())
