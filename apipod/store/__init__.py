"""The job store: :func:`open_store` picks the backend from the database URL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from apipod.errors import ConfigError
from apipod.store.base import JobStore
from apipod.store.records import TERMINAL_STATUSES, Job, JobStatus, WorkerInfo, WorkerState

__all__ = [
    "TERMINAL_STATUSES",
    "Job",
    "JobStatus",
    "JobStore",
    "WorkerInfo",
    "WorkerState",
    "open_store",
]


def open_store(
    database_url: str, data_dir: str | Path, *, busy_timeout_s: float | None = None
) -> JobStore:
    """The store for ``database_url``; media files and wake-up pipes go to ``data_dir``.

    ``sqlite:////abs/path.db`` (SQLAlchemy's form: three slashes, then the absolute path;
    a relative path is taken from the current directory), or
    ``postgresql://user:password@host:port/dbname`` (also ``postgres://`` and
    ``postgresql+psycopg://``; the driver is psycopg 3, query parameters such as
    ``?sslmode=require`` go to libpq). Other schemes raise
    :class:`~apipod.errors.ConfigError`. The schema is not migrated here: call
    ``store.migrate()``. ``busy_timeout_s`` (SQLite) is how long a write waits for
    another process's lock before it raises ``StoreUnavailable`` (default 5 s).
    """
    try:
        url = make_url(database_url)
    except ArgumentError as exc:
        raise ConfigError(f"database_url {database_url!r} is not a database URL") from exc
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _open_sqlite(database_url, url.database, data_dir, busy_timeout_s)
    if backend in ("postgresql", "postgres"):
        return _open_postgres(url, data_dir)
    raise ConfigError(
        f"database_url scheme {url.drivername!r} is not supported;"
        " use sqlite:///<path> or postgresql://user@host:port/dbname"
    )


def _open_sqlite(
    database_url: str, database: str | None, data_dir: str | Path, busy_timeout_s: float | None
) -> JobStore:
    if not database or database == ":memory:" or database.startswith("file:"):
        raise ConfigError(
            f"database_url {database_url!r} must name a SQLite file (sqlite:////abs/path.db):"
            " every process of the service opens it"
        )
    from apipod.store.sqlite import SqliteStore

    if busy_timeout_s is None:
        return SqliteStore(Path(database), data_dir)
    return SqliteStore(Path(database), data_dir, busy_timeout_s=busy_timeout_s)


def _open_postgres(url: URL, data_dir: str | Path) -> JobStore:
    if url.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
        raise ConfigError(
            f"database_url scheme {url.drivername!r}: APIPod talks to PostgreSQL through"
            " psycopg 3; write postgresql://user@host:port/dbname"
        )
    if not url.database:
        raise ConfigError("the PostgreSQL database_url must name a database (…:5432/dbname)")
    try:
        from apipod.store.postgres import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"PostgreSQL needs psycopg 3 ({exc}): pip install 'psycopg[binary]>=3.2' (APIPod's"
            " postgres extra; not 'apipod[postgres]' from the package index, another project)"
        ) from exc
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return PostgresStore(conninfo, data_dir)
