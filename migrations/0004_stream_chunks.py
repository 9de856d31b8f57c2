"""Streamed output: the ``chunks`` table, and on PostgreSQL the stream wake-ups.

A chunk is one value a generator endpoint yielded, as JSON text, numbered per job by
``seq`` (1, 2, ... across attempts: a retried job continues the numbering, so an SSE
``id`` never names two chunks). ``attempt`` is the job's attempt that produced it.

PostgreSQL: a trigger sends ``NOTIFY apipod_stream, '<job id>'`` when a job's status,
progress or message change, so open ``GET /stream`` responses are pushed. Chunks get no
trigger: the store notifies right after their commit, in a transaction of its own (a
notifying transaction holds PostgreSQL's global notify lock through its commit, WAL flush
included, so a NOTIFY inside every chunk commit serialized all streams' commits).
"""

from __future__ import annotations

import sqlalchemy

_NOTIFY = (
    """
    CREATE FUNCTION apipod_notify_stream_job() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('apipod_stream', NEW.id); RETURN NULL; END $$""",
    """
    CREATE TRIGGER jobs_changed AFTER UPDATE OF status, progress, message ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
        OR OLD.progress IS DISTINCT FROM NEW.progress
        OR OLD.message IS DISTINCT FROM NEW.message)
    EXECUTE FUNCTION apipod_notify_stream_job()""",
)


def _chunks(dialect: str) -> str:
    seq = "INTEGER" if dialect == "sqlite" else "BIGINT"
    return f"""
        CREATE TABLE chunks (
            job_id TEXT NOT NULL,
            seq {seq} NOT NULL,
            attempt INTEGER NOT NULL,
            data TEXT NOT NULL,
            PRIMARY KEY (job_id, seq)
        )"""


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Create ``chunks`` (and, on PostgreSQL, the stream wake-up triggers)."""
    statements = [_chunks(dialect)]
    if dialect == "postgresql":
        statements += _NOTIFY
    for statement in statements:
        conn.exec_driver_sql(statement)
