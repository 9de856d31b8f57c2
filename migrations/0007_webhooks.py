"""Webhooks: the subscriptions of jobs, and a durable outbox of deliveries.

``webhooks`` holds the URL and the events (``start``, ``progress``, ``completed``) a job
was submitted with. Triggers write a ``webhook_deliveries`` row in the transaction that
changes a subscribed job: ``start`` when it is claimed, ``progress`` when its progress or
message changes (at most one waiting per job: the delivery sends the state it reads),
``completed`` when it ends. The supervisors deliver the rows (``apipod.supervisor.
webhooks``): ``next_attempt_at`` is both the retry time and the claim (a claimed row is
due again only if its deliverer died), ``body`` is fixed at the first attempt so every
retry sends the same signed bytes. A job's subscription goes with the job; its finished
deliveries are swept once the job is gone.
"""

from __future__ import annotations

import sqlalchemy

_TERMINAL = "('finished', 'failed', 'timeout', 'cancelled')"


def _tables(dialect: str) -> list[str]:
    seq = "INTEGER PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    ts = "TEXT" if dialect == "sqlite" else 'TEXT COLLATE "C"'
    return [
        f"""CREATE TABLE webhooks (
            job_id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            created_at {ts} NOT NULL
        )""",
        f"""CREATE TABLE webhook_deliveries (
            seq {seq},
            job_id TEXT NOT NULL,
            event TEXT NOT NULL CHECK (event IN ('start', 'progress', 'completed')),
            url TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            body TEXT,
            last_status INTEGER,
            last_error TEXT,
            next_attempt_at {ts} NOT NULL,
            created_at {ts} NOT NULL,
            delivered_at {ts}
        )""",
        "CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at)"
        " WHERE state = 'pending'",
        "CREATE INDEX ix_webhook_deliveries_job ON webhook_deliveries (job_id, seq)",
    ]


def _now(dialect: str) -> str:
    """SQL: the current instant in the store's fixed-width text form."""
    if dialect == "sqlite":
        return "strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')"
    return """to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""


def _enqueue(dialect: str, event: str, extra: str = "") -> str:
    now = _now(dialect)
    find = "instr" if dialect == "sqlite" else "strpos"  # (no '%': psycopg reads it)
    return (
        "INSERT INTO webhook_deliveries (job_id, event, url, next_attempt_at, created_at)"
        f" SELECT NEW.id, '{event}', w.url, {now}, {now} FROM webhooks w"
        f" WHERE w.job_id = NEW.id AND {find}(',' || w.events || ',', ',{event},') > 0{extra}"
    )


def _triggers(dialect: str) -> list[tuple[str, str, str, str]]:
    distinct = "IS NOT" if dialect == "sqlite" else "IS DISTINCT FROM"
    one_waiting = (
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = NEW.id"
        " AND d.event = 'progress' AND d.state = 'pending' AND d.attempts = 0)"
    )
    return [
        (
            "jobs_webhook_start",
            "UPDATE OF status",
            "NEW.status = 'processing' AND OLD.status = 'queued'",
            _enqueue(dialect, "start"),
        ),
        (
            "jobs_webhook_progress",
            "UPDATE OF progress, message",
            "NEW.status = 'processing' AND OLD.status = 'processing' AND"
            f" (NEW.progress {distinct} OLD.progress OR NEW.message {distinct} OLD.message)",
            _enqueue(dialect, "progress", one_waiting),
        ),
        (
            "jobs_webhook_completed",
            "UPDATE OF status",
            f"NEW.status IN {_TERMINAL} AND OLD.status NOT IN {_TERMINAL}",
            _enqueue(dialect, "completed"),
        ),
        (
            "jobs_webhook_forget",
            "DELETE",
            "TRUE",
            "DELETE FROM webhooks WHERE job_id = OLD.id",
        ),
    ]


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Create ``webhooks`` and ``webhook_deliveries`` and the triggers that fill them."""
    statements = _tables(dialect)
    for name, event, when, statement in _triggers(dialect):
        if dialect == "sqlite":
            statements.append(
                f"CREATE TRIGGER {name} AFTER {event} ON jobs FOR EACH ROW WHEN {when}"
                f" BEGIN {statement}; END"
            )
        else:
            statements += [
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN {statement}; RETURN NULL; END $$",
                f"CREATE TRIGGER {name} AFTER {event} ON jobs FOR EACH ROW WHEN ({when})"
                f" EXECUTE FUNCTION {name}()",
            ]
    for statement in statements:
        conn.exec_driver_sql(statement)
