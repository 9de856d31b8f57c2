"""Versioned schema migrations.

A migration is a Python file ``NNNN_name.py`` with
``def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None`` (``dialect`` is
``"sqlite"`` or ``"postgresql"``). The wheel ships the repository's ``migrations/`` folder
as ``apipod/_migrations``; an editable install reads ``<repo>/migrations``.

The table ``schema_migrations(version, name, applied_at)`` records what ran. Each
migration runs in its own transaction that first takes the database-wide lock (SQLite:
the engine begins with ``BEGIN IMMEDIATE``; PostgreSQL: ``pg_advisory_xact_lock``) and
then re-checks the table, so any number of processes may migrate one database at once and
every migration is applied exactly once.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import apipod
from apipod.errors import ConfigError, StoreUnavailable
from apipod.store.sql import format_ts, utcnow

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"(\d{4})_(\w+)\.py")
_ADVISORY_LOCK_KEY = 0x61706970  # "apip": one lock for all APIPod schema changes
UpgradeFn = Callable[[sqlalchemy.Connection, str], None]


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    path: Path

    def load(self) -> UpgradeFn:
        """Import the file and return its ``upgrade`` function."""
        spec = importlib.util.spec_from_file_location(f"apipod_migration_{self.version}", self.path)
        if spec is None or spec.loader is None:
            raise ConfigError(f"cannot load migration {self.path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        upgrade = getattr(module, "upgrade", None)
        if not callable(upgrade):
            raise ConfigError(f"migration {self.path} has no upgrade(conn, dialect) function")
        return upgrade


def migrations_dir() -> Path:
    """``apipod/_migrations`` (installed wheel), else ``<repo>/migrations`` (editable)."""
    package = Path(apipod.__file__).resolve().parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"no migrations folder next to {package} (looked for _migrations)")


def discover(folder: Path | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default :func:`migrations_dir`), oldest first."""
    folder = folder or migrations_dir()
    found: dict[str, Migration] = {}
    for path in sorted(folder.glob("*.py")):
        match = _FILE_NAME.fullmatch(path.name)
        if not match:
            continue
        version, name = match.groups()
        if version in found:
            raise ConfigError(f"two migrations with version {version} in {folder}")
        found[version] = Migration(version, name, path)
    return [found[v] for v in sorted(found)]


def apply_migrations(
    engine: sqlalchemy.Engine, dialect: str, folder: Path | None = None
) -> list[str]:
    """Apply the pending migrations; return the versions this call applied.

    For SQLite the engine must begin transactions with ``BEGIN IMMEDIATE`` (the
    :class:`~apipod.store.sqlite.SqliteStore` engine does)."""
    migrations = discover(folder)
    applied: list[str] = []
    try:
        with engine.connect() as conn:
            with conn.begin():
                _lock(conn, dialect)
                _create_table(conn)
            for migration in migrations:
                if _apply_one(conn, dialect, migration):
                    applied.append(migration.version)
    except DBAPIError as exc:
        raise StoreUnavailable(f"cannot migrate the job store: {exc.orig}") from exc
    return applied


def _lock(conn: sqlalchemy.Connection, dialect: str) -> None:
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})
    elif dialect != "sqlite":
        raise ConfigError(f"unsupported database dialect {dialect!r}")


def _create_table(conn: sqlalchemy.Connection) -> None:
    conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        "version TEXT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )


def _apply_one(conn: sqlalchemy.Connection, dialect: str, migration: Migration) -> bool:
    """Apply ``migration`` unless some process already did; True when this one did."""
    with conn.begin():
        _lock(conn, dialect)
        done = conn.execute(
            text("SELECT 1 FROM schema_migrations WHERE version = :version"),
            {"version": migration.version},
        ).first()
        if done:
            return False
        log.info("applying migration %s_%s", migration.version, migration.name)
        migration.load()(conn, dialect)
        conn.execute(
            text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
            {"v": migration.version, "n": migration.name, "t": format_ts(utcnow())},
        )
    return True


def upgrade(database_url: str, data_dir: str | Path) -> list[str]:
    """Apply pending migrations to the store at ``database_url`` (``apipod db upgrade``);
    return the versions applied (empty when the schema is current)."""
    from apipod.store import open_store

    store = open_store(database_url, data_dir)
    try:
        return store.migrate()
    finally:
        store.close()
