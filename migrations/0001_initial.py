"""The first schema: jobs, workers, files.

Every timestamp is UTC ISO-8601 text (``2024-05-01T12:00:00.000000Z``) on every dialect,
so the two schemas differ only in the sequence column, the number and blob types, the
byte-order collation of the timestamps (PostgreSQL) and, on PostgreSQL, the triggers that
send the wake-ups (``NOTIFY``) in the transaction that changes a job.
"""

from __future__ import annotations

import sqlalchemy


def _ts(dialect: str) -> str:
    # Timestamps compare as text: byte order, whatever the database's default collation.
    return "TEXT" if dialect == "sqlite" else 'TEXT COLLATE "C"'


def _jobs(dialect: str) -> str:
    seq = "INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    ts = _ts(dialect)
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
            lease_expires_at {ts},
            created_at {ts} NOT NULL,
            queued_at {ts} NOT NULL,
            started_at {ts},
            finished_at {ts}
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


def _workers(dialect: str) -> str:
    ts = _ts(dialect)
    return f"""
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
            started_at {ts} NOT NULL,
            heartbeat_at {ts} NOT NULL
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


# PostgreSQL: wake-ups as NOTIFY, sent by the database in the transaction that changes
# the job (delivered at commit, whoever wrote the row). ``apipod_work``: a job became
# claimable (enqueued or requeued); ``apipod_results``: a job became terminal, with its id.
_TERMINAL = "('finished', 'failed', 'timeout', 'cancelled')"
_NOTIFY = (
    """
    CREATE FUNCTION apipod_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('apipod_work', ''); RETURN NULL; END $$""",
    """
    CREATE FUNCTION apipod_notify_result() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('apipod_results', NEW.id); RETURN NULL; END $$""",
    """
    CREATE TRIGGER jobs_enqueued AFTER INSERT ON jobs FOR EACH ROW
    WHEN (NEW.status = 'queued') EXECUTE FUNCTION apipod_notify_work()""",
    """
    CREATE TRIGGER jobs_requeued AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION apipod_notify_work()""",
    f"""
    CREATE TRIGGER jobs_ended AFTER UPDATE OF status ON jobs FOR EACH ROW
    WHEN (NEW.status IN {_TERMINAL} AND OLD.status NOT IN {_TERMINAL})
    EXECUTE FUNCTION apipod_notify_result()""",
)


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Create the tables and indexes of the first schema (and, on PostgreSQL, the
    wake-up triggers)."""
    statements = [_jobs(dialect), *_INDEXES, _workers(dialect), _files(dialect)]
    if dialect == "postgresql":
        statements += _NOTIFY
    for statement in statements:
        conn.exec_driver_sql(statement)
