"""Migrations: applied once, recorded, safe when several processes start together."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from apipod.errors import StoreUnavailable
from apipod.store.migrate import apply_migrations, discover, migrations_dir, upgrade
from apipod.store.sqlite import SqliteStore

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def recorded(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()


def test_the_repository_migrations_are_found() -> None:
    assert migrations_dir() == REPO_MIGRATIONS
    assert [(m.version, m.name) for m in discover()][:1] == [("0001", "initial")]


def test_fresh_database_gets_every_migration_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'apipod.db'}"
    versions = [m.version for m in discover()]
    assert upgrade(url, tmp_path / "data") == versions
    assert {"jobs", "workers", "files", "schema_migrations"} <= tables(tmp_path / "apipod.db")
    assert upgrade(url, tmp_path / "data") == []
    assert [v for v, _ in recorded(tmp_path / "apipod.db")] == versions


def test_a_failing_migration_rolls_back_and_stays_pending(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_initial.py").write_text((REPO_MIGRATIONS / "0001_initial.py").read_text())
    (folder / "0002_broken.py").write_text(
        "def upgrade(conn, dialect):\n"
        "    conn.exec_driver_sql('CREATE TABLE half_done (x INTEGER)')\n"
        "    conn.exec_driver_sql('THIS IS NOT SQL')\n"
    )
    store = SqliteStore(tmp_path / "apipod.db", tmp_path / "data")
    try:
        with pytest.raises(StoreUnavailable):
            apply_migrations(store.engine, "sqlite", folder)
        assert recorded(store.path) == [("0001", "initial")]
        assert "half_done" not in tables(store.path)
        (folder / "0002_broken.py").write_text(
            "def upgrade(conn, dialect):\n"
            "    conn.exec_driver_sql('ALTER TABLE jobs ADD COLUMN priority INTEGER')\n"
        )
        assert apply_migrations(store.engine, "sqlite", folder) == ["0002"]
        assert apply_migrations(store.engine, "sqlite", folder) == []
    finally:
        store.close()


def _migrate_in_child(url: str, data_dir: str, start: object, results: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    try:
        results.put(("ok", upgrade(url, data_dir)))  # type: ignore[attr-defined]
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(("error", repr(exc)))  # type: ignore[attr-defined]


def test_processes_migrating_at_once_apply_each_migration_once(
    tmp_path: Path, run_children: Callable[..., list[Any]]
) -> None:
    url = f"sqlite:///{tmp_path / 'apipod.db'}"
    outcomes = run_children(_migrate_in_child, [(url, str(tmp_path))] * 3)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    applied = sorted(v for _, versions in outcomes for v in versions)
    assert applied == [m.version for m in discover()]
    assert [v for v, _ in recorded(tmp_path / "apipod.db")] == applied
