"""The SQLite job store: one file in the data dir, shared by the processes of one box.

Connections (DESIGN §3): WAL journal, ``synchronous=NORMAL`` (a committed transaction
survives a killed process), a busy timeout, and autocommit at the driver level so the
store says exactly where transactions begin. Each process has one writer connection
behind a lock (SQLite serializes writers anyway) and a small pool of reader connections,
so reads never wait for writes. Single-statement writes run as their own transaction;
the one read-then-write (enqueue's count-then-insert) runs in ``BEGIN IMMEDIATE``.

The hot path talks to the :mod:`sqlite3` driver with prepared statement strings; the
SQLAlchemy engine (same connection factory, transactions begin ``IMMEDIATE``) serves the
migrations. A store must not be carried across ``fork``: open one per process.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

import sqlalchemy
from sqlalchemy.pool import NullPool

from apipod.errors import StoreUnavailable
from apipod.store.primitives import Params, Row, T, Transaction
from apipod.store.sqlstore import SqlJobStore

log = logging.getLogger(__name__)


def _begin_immediate(conn: sqlalchemy.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


WAL_SIZE_LIMIT = 64 * 1024 * 1024
FILE_CHECK_S = 0.5


def _file_identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


class SqliteStore(SqlJobStore):
    """:class:`~apipod.store.base.JobStore` on one SQLite file.

    ``db_path``: the database file (created with its folder when missing).
    ``data_dir``: where media files (``files/``) and wake-up FIFOs (``run/``) live.
    ``busy_timeout_s``: how long a writer waits for another one before the call raises
    :class:`~apipod.errors.StoreUnavailable`.
    """

    dialect = "sqlite"
    paramstyle = "qmark"
    fast_local_reads = True
    database_bytes_sql = (
        "SELECT (page_count - freelist_count) * page_size"
        " FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
    )

    def __init__(
        self,
        db_path: str | Path,
        data_dir: str | Path,
        *,
        busy_timeout_s: float = 5.0,
        max_idle_readers: int = 8,
    ) -> None:
        super().__init__(data_dir)
        self._path = Path(db_path)
        self._busy_timeout_s = float(busy_timeout_s)
        self._max_idle_readers = max_idle_readers
        self._closed = False
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle_readers: list[sqlite3.Connection] = []
        self._identity: tuple[int, int] | None = None
        self._next_identity_check = 0.0
        self._replaced_logged = False
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect(create=True)
            self._identity = _file_identity(self._path)
            os.chmod(self._path, 0o600)  # -wal and -shm inherit it: readable by us alone
            self._use_wal(self._writer)
            # The writer waits for the lock with _busy_retry, not SQLite's busy handler,
            # whose first sleep is a whole millisecond: far longer than the few dozen
            # microseconds another process holds the lock for one of our statements.
            self._writer.execute("PRAGMA busy_timeout=0")
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"cannot open the job store {self._path}: {exc}") from exc
        self._engine = sqlalchemy.create_engine(
            "sqlite://", creator=self._connect, poolclass=NullPool
        )
        sqlalchemy.event.listen(self._engine, "begin", _begin_immediate)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def engine(self) -> sqlalchemy.Engine:
        """The SQLAlchemy engine (migrations, tools); transactions begin IMMEDIATE."""
        return self._engine

    # --- connections -------------------------------------------------------------------------
    def _connect(self, create: bool = False) -> sqlite3.Connection:
        # Only the first connection may create the file: a later one finding it gone
        # must fail, not start an empty store beside the lost one.
        mode = "rwc" if create else "rw"
        conn = sqlite3.connect(
            f"file:{quote(str(self._path.absolute()))}?mode={mode}",
            uri=True,
            timeout=self._busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=256,
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        # After each checkpoint that resets the WAL, cut the file back to this size, so a
        # burst of writes does not leave a large WAL file behind for good.
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent). Several processes opening a fresh file at
        once may find it locked for a moment: retry within the busy timeout."""
        deadline = time.monotonic() + self._busy_timeout_s
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            log.warning("SQLite file %s stays in %s journal mode, not WAL", self._path, mode)

    def _check_file(self) -> None:
        """Raise when the database file was deleted or replaced since it was opened (at
        most every FILE_CHECK_S): the open connections would go on writing to a file
        nobody will ever read again."""
        now = time.monotonic()
        if now < self._next_identity_check:
            return
        self._next_identity_check = now + FILE_CHECK_S
        current = _file_identity(self._path)
        if current == self._identity:
            return
        what = "deleted" if current is None else "replaced by another file"
        message = (
            f"the job store file {self._path} was {what} while the service ran; "
            "restore it (or restart to start a new, empty store)"
        )
        if not self._replaced_logged:
            self._replaced_logged = True
            log.critical("%s", message)
        self._next_identity_check = 0.0  # keep failing until it is back
        raise StoreUnavailable(message)

    def _take_writer(self) -> sqlite3.Connection:
        self._check_file()
        if not self._write_lock.acquire(timeout=self._busy_timeout_s):
            raise StoreUnavailable(
                f"the job store {self._path} is busy: no write turn within "
                f"{self._busy_timeout_s:g}s"
            )
        if self._closed:
            self._write_lock.release()
            raise StoreUnavailable("the job store is closed")
        return self._writer

    def _take_reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable("the job store is closed")
        self._check_file()
        try:
            return self._idle_readers.pop()
        except IndexError:
            pass
        try:
            return self._connect()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc

    def _give_reader(self, conn: sqlite3.Connection) -> None:
        with self._pool_lock:
            if not self._closed and len(self._idle_readers) < self._max_idle_readers:
                self._idle_readers.append(conn)
                return
        conn.close()

    def _unavailable(self, exc: sqlite3.Error) -> StoreUnavailable:
        text = str(exc)
        if self._closed:
            return StoreUnavailable("the job store is closed")
        if "no such table" in text:
            hint = "the schema is missing; run `apipod db upgrade` (or migrate at start)"
        elif "locked" in text or "busy" in text:
            hint = f"another process held the write lock for over {self._busy_timeout_s:g}s"
        else:
            hint = type(exc).__name__
        return StoreUnavailable(f"job store {self._path}: {text} ({hint})")

    # --- primitives ----------------------------------------------------------------------------
    def _read(self, sql: str, params: Params = ()) -> list[Row]:
        conn = self._take_reader()
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._give_reader(conn)

    def _write(self, sql: str, params: Params = ()) -> int:
        return self._run_write(sql, params)[1]

    def _write_rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self._run_write(sql, params)[0]

    def _busy_retry(
        self, conn: sqlite3.Connection, sql: str, params: Params = ()
    ) -> sqlite3.Cursor:
        """Execute, retrying while another process holds the write lock: short sleeps
        growing to 2 ms, up to the busy timeout. A statement refused as busy wrote
        nothing, so running it again is safe."""
        deadline = time.monotonic() + self._busy_timeout_s
        delay = 0.00005
        while True:
            try:
                return conn.execute(sql, params)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)

    def _run_write(self, sql: str, params: Params) -> tuple[list[Row], int]:
        """One autocommit statement on the writer: its rows (RETURNING) and row count."""
        conn = self._take_writer()
        try:
            cursor = self._busy_retry(conn, sql, params)
            return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._write_lock.release()

    def _insert_job(self, endpoint: str, queue_size: int, params: Params) -> int | None:
        conn = self._take_writer()
        try:
            self._busy_retry(conn, "BEGIN IMMEDIATE")
            try:
                (queued,) = conn.execute(self._sql.count_queued, (endpoint,)).fetchone()
                if queued >= queue_size:
                    return None
                seq = conn.execute(self._sql.insert_job, params).fetchall()[0][0]
                conn.execute("COMMIT")
                return seq
            finally:
                if conn.in_transaction:
                    conn.rollback()
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"a job with id {params[0]!r} already exists") from exc
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._write_lock.release()

    def _transaction(self, work: Callable[[Transaction], T]) -> T:
        conn = self._take_writer()
        try:
            self._busy_retry(conn, "BEGIN IMMEDIATE")
            try:
                result = work(_SqliteTransaction(conn))
                conn.execute("COMMIT")
                return result
            finally:
                if conn.in_transaction:
                    conn.rollback()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from exc
        finally:
            self._write_lock.release()

    # --- lifecycle -------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply pending migrations (see :mod:`apipod.store.migrate`); their versions."""
        from apipod.store.migrate import apply_migrations

        return apply_migrations(self._engine, self.dialect)

    def close(self) -> None:
        """Close every connection and the wake-up pipes. Idempotent."""
        if self._closed:
            return
        got_lock = self._write_lock.acquire(timeout=self._busy_timeout_s)
        try:
            with self._pool_lock:
                self._closed = True
                idle, self._idle_readers = self._idle_readers, []
            for conn in (*idle, self._writer):
                conn.close()
        finally:
            if got_lock:
                self._write_lock.release()
        self._engine.dispose()
        super().close()


class _SqliteTransaction:
    """Statements on the writer inside its open ``BEGIN IMMEDIATE``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def many(self, sql: str, rows: Sequence[Params]) -> int:
        return self._conn.executemany(sql, rows).rowcount
