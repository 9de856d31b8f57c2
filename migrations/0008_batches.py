"""Dynamic batching: which jobs ran together.

``jobs.batch_id``: the id of the batch a job of a batched endpoint (``batch_size`` > 1)
was claimed in; NULL for jobs of unbatched endpoints and for jobs not yet claimed. A
requeued job keeps the id of its last batch until it is claimed again.
``workers.current_batch``: the batch a busy worker runs (``/health`` shows it).

On SQLite the column is appended after the big ones (``inputs`` last, see 0002): reading
it for a job whose inputs spill onto overflow pages walks them. 0009 moves it in front.
"""

from __future__ import annotations

import sqlalchemy


def upgrade(conn: sqlalchemy.Connection, dialect: str) -> None:
    """Add the batch columns and an index to find a batch's jobs."""
    conn.exec_driver_sql("ALTER TABLE jobs ADD COLUMN batch_id TEXT")
    conn.exec_driver_sql("ALTER TABLE workers ADD COLUMN current_batch TEXT")
    conn.exec_driver_sql("CREATE INDEX ix_jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL")
