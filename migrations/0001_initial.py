"""The first schema: jobs, workers, files.

Every timestamp is UTC ISO-8601 text (``2024-05-01T12:00:00.000000Z``) on every dialect,
so the two schemas differ only in the sequence column and the number types.
"""

from __future__ import annotations

import sqlalchemy


def _jobs(dialect: str) -> str:
    seq = "INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return f"""
        CREATE TABLE jobs (
            seq {seq},
            id TEXT NOT NULL UNIQUE,
            endpoint TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('queued', 'processing', 'finished', 'failed', 'timeout', 'cancelled')),
            progress {real},
            message TEXT,
            error TEXT,
            inputs TEXT NOT NULL,
            result TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL,
            worker TEXT,
            timeout_s {real},
            lease_expires_at TEXT,
            created_at TEXT NOT NULL,
            queued_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        )"""


_INDEXES = (
    # claim: the oldest queued job
    "CREATE INDEX ix_jobs_queued ON jobs (seq) WHERE status = 'queued'",
    # queue depth per endpoint, history filters
    "CREATE INDEX ix_jobs_endpoint_status ON jobs (endpoint, status)",
    # TTL: terminal jobs by end time
    "CREATE INDEX ix_jobs_finished_at ON jobs (finished_at) WHERE finished_at IS NOT NULL",
    # lease recovery: running jobs by lease expiry
    "CREATE INDEX ix_jobs_lease ON jobs (lease_expires_at) WHERE status = 'processing'",
)


def _workers() -> str:
    return """
        CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            gpu TEXT,
            state TEXT NOT NULL,
            current_job TEXT,
            jobs_done INTEGER NOT NULL DEFAULT 0,
            rss_bytes BIGINT,
            error TEXT,
            started_at TEXT NOT NULL,
            heartbeat_at TEXT NOT NULL
        )"""


def _files(dialect: str) -> str:
    # Media as blobs, for stores shared by several boxes (PostgreSQL). The SQLite store
    # keeps media as plain files in the data dir and leaves this table empty.
    blob = "BLOB" if dialect == "sqlite" else "BYTEA"
    return f"""
        CREATE TABLE files (
            job_id TEXT NOT NULL,
            name TEXT NOT NULL,
            data {blob} NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (job_id, name)
        )"""


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Create the tables and indexes of the first schema."""
    for statement in (_jobs(dialect), *_INDEXES, _workers(), _files(dialect)):
        conn.exec_driver_sql(statement)
