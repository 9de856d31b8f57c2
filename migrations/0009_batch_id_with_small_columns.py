"""SQLite: ``jobs.batch_id`` moves in front of the big columns (PostgreSQL: nothing to do).

0008 appended ``batch_id`` after ``inputs``, undoing part of 0002 (big columns last).
SQLite reads a row's columns in order, so reading a set ``batch_id`` of a job with a
16 MB prompt walked the whole overflow chain of its inputs: measured 4.4 ms per status
read of such a batched job, against 0.04 ms with the column in front (a NULL
``batch_id`` costs nothing: its value is known from the row header alone).

The table is rebuilt with the columns of 0002 plus ``batch_id`` before ``traceback``,
``result`` and ``inputs``; a column an operator added keeps its place after them. Its
indexes and triggers (0002, 0004, 0006, 0007, 0008, and any an operator added) are read
from ``sqlite_master`` before the old table is dropped and created again as they were, so
this migration never has to repeat their text. The rename runs with
``legacy_alter_table``: otherwise SQLite checks every view and trigger of the database
while ``jobs`` does not exist, and one view on ``jobs`` would stop the migration.
"""

from __future__ import annotations

import sqlalchemy

_COLUMNS = (
    "seq, id, endpoint, status, progress, message, error, attempts, max_attempts, worker,"
    " timeout_s, lease_expires_at, created_at, queued_at, started_at, finished_at,"
    " batch_id, traceback, result, inputs"
)
_NEW_JOBS = """
    CREATE TABLE jobs_new (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        endpoint TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('queued', 'processing', 'finished', 'failed', 'timeout', 'cancelled')),
        progress REAL,
        message TEXT,
        error TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        worker TEXT,
        timeout_s REAL,
        lease_expires_at TEXT,
        created_at TEXT NOT NULL,
        queued_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        batch_id TEXT,
        traceback TEXT,
        result TEXT,
        inputs TEXT NOT NULL
    )"""
# Creation order: an index or trigger is created again after what it was created after.
_DEPENDENTS = (
    "SELECT sql FROM sqlite_master WHERE tbl_name = 'jobs' AND type IN ('index', 'trigger')"
    " AND sql IS NOT NULL ORDER BY rowid"
)


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Rebuild ``jobs`` on SQLite with ``batch_id`` among the small columns."""
    if dialect != "sqlite":
        return  # PostgreSQL keeps large values out of line (TOAST): order costs nothing
    dependents = [sql for (sql,) in conn.exec_driver_sql(_DEPENDENTS)]
    sequence = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").first()
    added = _added_columns(conn)
    conn.exec_driver_sql(_NEW_JOBS.replace("inputs TEXT NOT NULL", _with(added)))
    columns = ", ".join([_COLUMNS, *(f'"{name}"' for name, _ in added)])
    conn.exec_driver_sql(f"INSERT INTO jobs_new ({columns}) SELECT {columns} FROM jobs")
    conn.exec_driver_sql("DROP TABLE jobs")  # its indexes and triggers go with it
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    conn.exec_driver_sql("ALTER TABLE jobs_new RENAME TO jobs")
    conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
    for statement in dependents:
        conn.exec_driver_sql(statement)
    if sequence is not None:  # ids of expired jobs are never handed out again
        conn.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'jobs'", (sequence[0],)
        )


def _added_columns(conn: sqlalchemy.Connection) -> list[tuple[str, str]]:
    """Columns of ``jobs`` that no migration made (name, declaration), in their order."""
    known = {name.strip() for name in _COLUMNS.split(",")}
    declared = []
    for _cid, name, kind, not_null, default, _pk in conn.exec_driver_sql("PRAGMA table_info(jobs)"):
        if name in known:
            continue
        declaration = f'"{name}" {kind}'
        declaration += f" DEFAULT {default}" if default is not None else ""
        declaration += " NOT NULL" if not_null else ""
        declared.append((name, declaration))
    return declared


def _with(added: list[tuple[str, str]]) -> str:
    return ",\n        ".join(["inputs TEXT NOT NULL", *(declaration for _, declaration in added)])
