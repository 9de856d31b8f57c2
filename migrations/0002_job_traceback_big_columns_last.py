"""Operators' traceback of a failed job; on SQLite, the big columns moved to the row's end.

``traceback``: ``error`` holds what any HTTP client may read (``ExceptionType: message``);
the full traceback, with file paths, goes to this column, which only the database
(sqlite3, psql) and the logs show.

Column order (SQLite only): SQLite stores a row's values in column order, a large value
spilling over a chain of overflow pages. Reading any column after a 16 MB ``inputs``
walked that whole chain (measured: 22 ms per status read, against 0.01 ms with the big
value last). The table is rebuilt with ``result`` and then ``inputs`` last, so status
polls, lists and claims' ownership checks never touch the inputs' pages. PostgreSQL
keeps large values out of line (TOAST) and only gains the column.
"""

from __future__ import annotations

import sqlalchemy

_SMALL_COLUMNS = (
    "seq, id, endpoint, status, progress, message, error, attempts, max_attempts, worker,"
    " timeout_s, lease_expires_at, created_at, queued_at, started_at, finished_at"
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
        traceback TEXT,
        result TEXT,
        inputs TEXT NOT NULL
    )"""
_INDEXES = (
    "CREATE INDEX ix_jobs_queued ON jobs (seq) WHERE status = 'queued'",
    "CREATE INDEX ix_jobs_endpoint_status ON jobs (endpoint, status)",
    "CREATE INDEX ix_jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL",
    "CREATE INDEX ix_jobs_lease ON jobs (lease_expires_at) WHERE status = 'processing'",
)


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Add ``jobs.traceback``; on SQLite, rebuild ``jobs`` with the big columns last."""
    if dialect != "sqlite":
        conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN traceback TEXT")
        return
    sequence = conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").first()
    conn.exec_driver_sql(_NEW_JOBS)
    conn.exec_driver_sql(
        f"INSERT INTO jobs_new ({_SMALL_COLUMNS}, result, inputs)"
        f" SELECT {_SMALL_COLUMNS}, result, inputs FROM jobs"
    )
    conn.exec_driver_sql("DROP TABLE jobs")
    conn.exec_driver_sql("ALTER TABLE jobs_new RENAME TO jobs")
    for statement in _INDEXES:
        conn.exec_driver_sql(statement)
    if sequence is not None:  # ids of expired jobs are never handed out again
        conn.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'jobs'", (sequence[0],)
        )
