"""Job metrics kept by the database (counters and duration histograms), and the
``Idempotency-Key`` of submits.

``job_counts`` counts per endpoint the jobs submitted (``event = 'submitted'``) and the
jobs that ended, by terminal status. ``job_durations`` holds two histograms per endpoint,
``wait`` (queued until the first start) and ``run`` (start until the end), one row per
bucket a value fell into (``le`` is the bucket's upper bound as Prometheus writes it,
``total`` the sum of the values in it). Triggers update both in the transaction that
inserts or changes the job, so they count every job exactly once, whichever process or
box wrote it, and they outlive the jobs (which the TTL deletes).

``idempotency_keys`` maps ``(endpoint, key)`` to the job a submit with that
``Idempotency-Key`` created, with a digest of the request; a trigger deletes the key with
its job (TTL, purge), so a key is honoured exactly as long as its job can be read.
"""

from __future__ import annotations

import sqlalchemy

#: Upper bounds of the histogram buckets in seconds (``+Inf`` follows). The metrics
#: reader (``apipod.store.operations.DURATION_BUCKETS``) uses the same list.
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_TERMINAL = "('finished', 'failed', 'timeout', 'cancelled')"


def _tables(dialect: str) -> list[str]:
    real = "REAL" if dialect == "sqlite" else "DOUBLE PRECISION"
    return [
        """CREATE TABLE job_counts (
            endpoint TEXT NOT NULL,
            event TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (endpoint, event)
        )""",
        f"""CREATE TABLE job_durations (
            metric TEXT NOT NULL CHECK (metric IN ('wait', 'run')),
            endpoint TEXT NOT NULL,
            le TEXT NOT NULL,
            count BIGINT NOT NULL,
            total {real} NOT NULL,
            PRIMARY KEY (metric, endpoint, le)
        )""",
        f"""CREATE TABLE idempotency_keys (
            endpoint TEXT NOT NULL,
            key TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            job_id TEXT NOT NULL,
            created_at {"TEXT" if dialect == "sqlite" else 'TEXT COLLATE "C"'} NOT NULL,
            PRIMARY KEY (endpoint, key)
        )""",
        "CREATE INDEX ix_idempotency_keys_job ON idempotency_keys (job_id)",
    ]


def _bucket(seconds: str) -> str:
    """SQL: the ``le`` label of the bucket that ``seconds`` falls into."""
    cases = " ".join(f"WHEN {seconds} <= {bound} THEN '{bound:g}'" for bound in BUCKETS)
    return f"CASE {cases} ELSE '+Inf' END"


def _count(event: str) -> str:
    return (
        f"INSERT INTO job_counts (endpoint, event, count) VALUES (NEW.endpoint, {event}, 1)"
        " ON CONFLICT (endpoint, event) DO UPDATE SET count = job_counts.count + 1"
    )


def _observe(metric: str, seconds: str, condition: str) -> str:
    return (
        "INSERT INTO job_durations (metric, endpoint, le, count, total)"
        f" SELECT '{metric}', NEW.endpoint, {_bucket('d.s')}, 1, d.s"
        f" FROM (SELECT {seconds} AS s) AS d WHERE {condition}"
        " ON CONFLICT (metric, endpoint, le) DO UPDATE SET"
        " count = job_durations.count + 1, total = job_durations.total + excluded.total"
    )


def _seconds(dialect: str, start: str, end: str) -> str:
    if dialect == "sqlite":
        return f"max(0.0, (julianday(NEW.{end}) - julianday(NEW.{start})) * 86400.0)"
    return (
        f"greatest(0.0, extract(epoch FROM (NEW.{end}::timestamptz"
        f" - NEW.{start}::timestamptz))::double precision)"
    )


# (trigger name, event, WHEN condition, statements)
def _triggers(dialect: str) -> list[tuple[str, str, str, list[str]]]:
    wait = _seconds(dialect, "queued_at", "started_at")
    run = _seconds(dialect, "started_at", "finished_at")
    return [
        ("jobs_metrics_submitted", "INSERT", "TRUE", [_count("'submitted'")]),
        (
            "jobs_metrics_started",
            "UPDATE OF status",
            "NEW.status = 'processing' AND OLD.status = 'queued' AND NEW.attempts = 1",
            [_observe("wait", wait, "NEW.started_at IS NOT NULL")],
        ),
        (
            "jobs_metrics_ended",
            "UPDATE OF status",
            f"NEW.status IN {_TERMINAL} AND OLD.status NOT IN {_TERMINAL}",
            [_count("NEW.status"), _observe("run", run, "NEW.started_at IS NOT NULL")],
        ),
        (
            "jobs_forget_idempotency_keys",
            "DELETE",
            "TRUE",
            ["DELETE FROM idempotency_keys WHERE job_id = OLD.id"],
        ),
    ]


def _sqlite_trigger(name: str, event: str, when: str, statements: list[str]) -> str:
    body = "".join(f" {s};" for s in statements)
    return f"CREATE TRIGGER {name} AFTER {event} ON jobs FOR EACH ROW WHEN {when} BEGIN{body} END"


def _postgres_trigger(name: str, event: str, when: str, statements: list[str]) -> list[str]:
    body = "".join(f" {s};" for s in statements)
    return [
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN{body} RETURN NULL; END $$",
        f"CREATE TRIGGER {name} AFTER {event} ON jobs FOR EACH ROW WHEN ({when})"
        f" EXECUTE FUNCTION {name}()",
    ]


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Create ``job_counts``, ``job_durations`` and ``idempotency_keys``, and the triggers
    that keep them."""
    statements = _tables(dialect)
    for trigger in _triggers(dialect):
        if dialect == "sqlite":
            statements.append(_sqlite_trigger(*trigger))
        else:
            statements += _postgres_trigger(*trigger)
    for statement in statements:
        conn.exec_driver_sql(statement)
