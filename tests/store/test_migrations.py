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


# --- 0009: batch_id in front of the big columns (SQLite) ---------------------------------------
def schema_objects(db: Path) -> dict[str, str]:
    """The name and SQL of every index and trigger of ``jobs``."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'jobs'"
            " AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        ).fetchall()
    return dict(rows)


def jobs_table(db: Path) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The columns of ``jobs`` in their order, and every row by job id."""
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        names = [row["name"] for row in conn.execute("PRAGMA table_info(jobs)")]
        rows = {row["id"]: dict(row) for row in conn.execute("SELECT * FROM jobs")}
    return names, rows


def test_0009_puts_batch_id_before_the_big_columns_and_keeps_rows_and_triggers(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in discover():
        if migration.version <= "0008":
            (folder / migration.path.name).write_text(migration.path.read_text())
    store = SqliteStore(tmp_path / "apipod.db", tmp_path / "data")
    try:
        apply_migrations(store.engine, "sqlite", folder)
        for prompt in ("a", "b" * 2_000_000, "c"):
            store.enqueue("/e", {"prompt": prompt}, queue_size=10, max_attempts=3)
        claimed = store.claim_batch("box/w0.m", 30, {"/e": 3})
        assert len(claimed) == 3 and claimed[0].batch_id
        with sqlite3.connect(store.path) as conn:  # what an operator may have added
            conn.execute("ALTER TABLE jobs ADD COLUMN team TEXT DEFAULT 'ml'")
            conn.execute(
                "CREATE VIEW running AS SELECT id, team FROM jobs WHERE status = 'processing'"
            )
            conn.execute("CREATE TABLE audit (job_id TEXT)")
            conn.execute(
                "CREATE TRIGGER audit_copy AFTER INSERT ON audit BEGIN"
                " UPDATE jobs SET team = 'audited' WHERE id = NEW.job_id; END"
            )
        names, before = jobs_table(store.path)
        assert names.index("batch_id") > names.index("inputs")  # what 0008 left
        objects = schema_objects(store.path)

        assert apply_migrations(store.engine, "sqlite", migrations_dir()) == ["0009"]

        names, after = jobs_table(store.path)
        assert names[-5:] == ["batch_id", "traceback", "result", "inputs", "team"]
        assert after == before  # every value of every row kept, the operator's column too
        assert schema_objects(store.path) == objects  # every index and trigger back
        job = claimed[1]
        assert store.get_state(job.id).batch_id == job.batch_id
        assert store.finish(job.id, "box/w0.m", {"ok": True})
        assert store.job_metrics().counts[("/e", "finished")] == 1  # a trigger of 0006 fired
        newest = store.enqueue("/e", {"prompt": "d"}, queue_size=10, max_attempts=3)
        assert newest.seq > max(row["seq"] for row in before.values())
        with sqlite3.connect(store.path) as conn:  # the operator's view and trigger still work
            assert len(conn.execute("SELECT * FROM running").fetchall()) == 2
            conn.execute("INSERT INTO audit VALUES (?)", (newest.id,))
            (team,) = conn.execute("SELECT team FROM jobs WHERE id = ?", (newest.id,)).fetchone()
            assert team == "audited"
    finally:
        store.close()
