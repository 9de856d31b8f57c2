"""The PostgreSQL job store: one database shared by the processes of many boxes.

The verbs are :class:`~apipod.store.sqlstore.SqlJobStore`'s, on the same schema (same
migrations); what differs from SQLite:

- Claims: the claim's subquery takes the oldest queued row ``FOR UPDATE SKIP LOCKED``, so
  claimers on any number of boxes never wait for each other and never take one job twice.
- Queue limits: ``enqueue`` runs in a transaction that first takes a transaction-level
  advisory lock for the endpoint, then inserts the job only if the endpoint has fewer
  than ``queue_size`` queued jobs, so submits to one endpoint from every box are
  serialized for a moment and the limit is exact. Both statements go to the server as
  one query string (one round trip, one implicit transaction), so the lock is held for
  server time only, never while this process waits to be scheduled.
- Wake-ups: triggers (migration 0001) ``NOTIFY apipod_work`` when a job becomes claimable
  and ``NOTIFY apipod_results, '<job id>'`` when one ends, inside the transaction that
  changes the row. Each waiting process ``LISTEN``s on one dedicated connection per
  channel it waits on, opened lazily (see :class:`~apipod.store.pgconn.NotifyChannel`).
- Media: rows of the ``files`` table (see :mod:`apipod.store.pgfiles`), not the data dir.
- TTL: ``expire`` runs under ``pg_try_advisory_xact_lock``: while one process sweeps,
  the others skip; files and rows of a batch go in one transaction.

Connections come from a small thread-safe pool; driver errors raise
:class:`~apipod.errors.StoreUnavailable` and every change is one transaction, so nothing
is ever half-written. Timestamps are written with each process's clock: keep the boxes'
clocks in sync (NTP), as leases compare them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg
import sqlalchemy
from psycopg import errors as pg_errors
from psycopg import sql as pgsql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from apipod.errors import StoreUnavailable
from apipod.store.filestore import FileBackend
from apipod.store.pgconn import ConnectionPool, NotifyChannel
from apipod.store.pgfiles import BlobFiles
from apipod.store.primitives import Params, Row, T, Transaction, Wakeup
from apipod.store.sql import TERMINAL_SQL, ts_in
from apipod.store.sqlstore import SqlJobStore

log = logging.getLogger(__name__)

WORK_CHANNEL = "apipod_work"
RESULTS_CHANNEL = "apipod_results"
STREAM_CHANNEL = "apipod_stream"
#: Advisory-lock class ids (the first of the two int4 keys): "apqu" and "aptt".
QUEUE_LOCK_CLASS = 0x61707175
EXPIRE_LOCK_CLASS = 0x61707474

# Two statements in one simple-protocol query: one implicit transaction, one round trip.
# Each statement takes its own snapshot (READ COMMITTED), so the INSERT's count sees every
# job committed by the submit that held the lock before. psycopg quotes the values.
_ENQUEUE = pgsql.SQL(
    "SELECT pg_advisory_xact_lock({lock_class}::int4, hashtext({endpoint}));"
    " INSERT INTO jobs (id, endpoint, status, inputs, attempts, max_attempts, timeout_s,"
    " created_at, queued_at) SELECT {id}, {endpoint}, 'queued', {inputs}, 0, {max_attempts},"
    " {timeout_s}::double precision, {created_at}, {queued_at}"
    " WHERE (SELECT count(*) FROM jobs WHERE endpoint = {endpoint} AND status = 'queued')"
    " < {queue_size} RETURNING seq"
)
#: The names of ``_insert_job``'s ``params`` (see ``Statements.insert_job``), in order.
_INSERT_PARAMS = (
    "id",
    "endpoint",
    "inputs",
    "max_attempts",
    "timeout_s",
    "created_at",
    "queued_at",
)
_NOTIFY_STREAM = f"SELECT pg_notify('{STREAM_CHANNEL}', %s)"
_TRY_LOCK_EXPIRE = "SELECT pg_try_advisory_xact_lock(%s::int4, 0)"
_EXPIRE = (
    "WITH doomed AS (SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < %s"
    f" AND status IN {TERMINAL_SQL} ORDER BY finished_at LIMIT %s FOR UPDATE SKIP LOCKED),"
    " files_gone AS (DELETE FROM files WHERE job_id IN (SELECT id FROM doomed)),"
    " chunks_gone AS (DELETE FROM chunks WHERE job_id IN (SELECT id FROM doomed))"
    " DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)"
)


class PostgresStore(SqlJobStore):
    """:class:`~apipod.store.base.JobStore` on a PostgreSQL database.

    ``conninfo``: a libpq URL (``postgresql://user:password@host:port/dbname?...``).
    ``data_dir``: unused by this store (media and wake-ups live in the database).
    ``pool_size``: the most connections one process uses for calls at once (one more per
    channel it listens on). Connecting happens here: a bad URL or an unreachable server
    raises :class:`~apipod.errors.StoreUnavailable` at once.
    """

    dialect = "postgresql"
    paramstyle = "format"
    claim_lock_suffix = " FOR UPDATE SKIP LOCKED"
    chunk_lock_suffix = " FOR SHARE"
    database_bytes_sql = "SELECT pg_total_relation_size('jobs')"
    fast_local_reads = False

    def __init__(
        self,
        conninfo: str,
        data_dir: str | Path,
        *,
        pool_size: int = 8,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self._conninfo = conninfo
        self._connect_timeout_s = connect_timeout_s
        self._pool = ConnectionPool(
            conninfo, max_size=pool_size, connect_timeout_s=connect_timeout_s
        )
        super().__init__(data_dir)
        self._engine: sqlalchemy.Engine | None = None
        self._closed = False
        with self._pool.connection():
            pass
        log.debug("job store on PostgreSQL %s", self._pool.where)

    @property
    def where(self) -> str:
        """``user@host:port/dbname`` (for messages; never the password)."""
        return self._pool.where

    @property
    def engine(self) -> sqlalchemy.Engine:
        """A SQLAlchemy engine on the same database (migrations, tools), made on first use."""
        if self._engine is None:
            url = make_url(self._conninfo).set(drivername="postgresql+psycopg")
            self._engine = sqlalchemy.create_engine(url, poolclass=NullPool)
        return self._engine

    # --- backends of the shared verbs ------------------------------------------------------
    def _open_files(self) -> FileBackend:
        return BlobFiles(self._pool)

    def _open_wakeups(self) -> tuple[Wakeup, Wakeup]:
        timeout = self._connect_timeout_s
        return (
            NotifyChannel(self._conninfo, WORK_CHANNEL, connect_timeout_s=timeout),
            NotifyChannel(self._conninfo, RESULTS_CHANNEL, connect_timeout_s=timeout),
        )

    def _open_stream_wakeup(self) -> Wakeup:
        return NotifyChannel(
            self._conninfo, STREAM_CHANNEL, connect_timeout_s=self._connect_timeout_s
        )

    # --- primitives ------------------------------------------------------------------------
    def _read(self, sql: str, params: Params = ()) -> list[Row]:
        return self._pool.run(lambda conn: conn.execute(sql, params).fetchall())

    def _write(self, sql: str, params: Params = ()) -> int:
        return self._pool.run(lambda conn: conn.execute(sql, params).rowcount)

    def _write_rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self._pool.run(lambda conn: conn.execute(sql, params).fetchall())

    def _insert_job(self, endpoint: str, queue_size: int, params: Params) -> int | None:
        values = dict(zip(_INSERT_PARAMS, params, strict=True))
        values.update(lock_class=QUEUE_LOCK_CLASS, queue_size=queue_size)
        query = _ENQUEUE.format(**{name: pgsql.Literal(v) for name, v in values.items()})

        def insert(conn: psycopg.Connection) -> Row | None:
            cursor = conn.execute(query)
            cursor.nextset()  # past the lock's result: the INSERT's
            return cursor.fetchone()

        try:
            row = self._pool.run(insert)
        except StoreUnavailable as exc:
            if isinstance(exc.__cause__, pg_errors.UniqueViolation):
                raise ValueError(f"a job with id {params[0]!r} already exists") from exc
            raise
        return None if row is None else row[0]

    def _chunks_written(self, job_id: str) -> None:
        # Its own transaction, after the chunks' commit: see migration 0004.
        with self._pool.connection() as conn:
            conn.execute(_NOTIFY_STREAM, (job_id,))

    def _transaction(self, work: Callable[[Transaction], T]) -> T:
        with self._pool.connection() as conn, conn.transaction():
            return work(_PgTransaction(conn))

    # --- verbs with a PostgreSQL form --------------------------------------------------------
    def expire(self, ttl_s: float, batch_size: int = 500) -> int:
        """See :meth:`JobStore.expire`. One sweep at a time across every box: while
        another process holds the sweep lock this returns 0 at once. A batch's files and
        rows are deleted in one transaction."""
        if batch_size < 1:
            return 0
        cutoff = ts_in(-float(ttl_s))
        with self._pool.connection() as conn, conn.transaction():
            (ours,) = conn.execute(_TRY_LOCK_EXPIRE, (EXPIRE_LOCK_CLASS,)).fetchone()
            if not ours:
                log.debug("TTL sweep skipped: another process is sweeping")
                return 0
            return conn.execute(_EXPIRE, (cutoff, int(batch_size))).rowcount

    # --- lifecycle ---------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply pending migrations (see :mod:`apipod.store.migrate`); their versions."""
        from apipod.store.migrate import apply_migrations

        return apply_migrations(self.engine, self.dialect)

    def close(self) -> None:
        """Close every connection, the listening ones included. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.close()
        if self._engine is not None:
            self._engine.dispose()
        super().close()


class _PgTransaction:
    """Statements on one connection inside its open transaction."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Sequence[Params]) -> int:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, rows)
            return cursor.rowcount
