"""The job store: :func:`open_store` picks the backend from the database URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from apipod.errors import ConfigError
from apipod.store.base import (
    TERMINAL_STATUSES,
    Job,
    JobStatus,
    JobStore,
    WorkerInfo,
    WorkerState,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Job",
    "JobStatus",
    "JobStore",
    "WorkerInfo",
    "WorkerState",
    "open_store",
]


def open_store(database_url: str, data_dir: str | Path) -> JobStore:
    """The store for ``database_url``; media files and wake-up pipes go to ``data_dir``.

    ``sqlite:////abs/path.db`` (SQLAlchemy's form: three slashes, then the absolute path;
    a relative path is taken from the current directory). PostgreSQL is not available
    yet; other schemes raise :class:`~apipod.errors.ConfigError`. The schema is not
    migrated here: call ``store.migrate()``.
    """
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise ConfigError(f"database_url {database_url!r} is not a database URL") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _open_sqlite(database_url, url.database, data_dir)
    if backend in ("postgresql", "postgres"):
        raise ConfigError(
            "PostgreSQL support is not installed yet; use a sqlite:/// database_url for now"
        )
    raise ConfigError(
        f"database_url scheme {url.drivername!r} is not supported; use sqlite:///<path>"
    )


def _open_sqlite(database_url: str, database: str | None, data_dir: str | Path) -> JobStore:
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(
            f"database_url {database_url!r} must name a SQLite file (sqlite:////abs/path.db):"
            " every process of the service opens it"
        )
    from apipod.store.sqlite import SqliteStore

    return SqliteStore(Path(database), data_dir)
