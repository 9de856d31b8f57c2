"""PostgreSQL connections of the job store: a small thread-safe pool and LISTEN channels.

Every connection is in autocommit mode, so a statement is its own transaction unless the
caller opens one with ``conn.transaction()``. The pool hands each thread a connection of
its own for the length of one call and keeps a few idle ones; a connection that sat idle
for a while is checked with an empty query before reuse, so a restarted server costs no
failed call. :class:`NotifyChannel` is one channel's wake-ups: a dedicated connection
that ``LISTEN``s, opened by the first ``wait``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus

from apipod.errors import StoreRejected, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
_CHECK_AFTER_IDLE_S = 10.0
_RECONNECT_MAX_S = 10.0


def describe(conninfo: str) -> str:
    """``user@host:port/dbname`` of a connection string (never the password)."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "<unparsable PostgreSQL URL>"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    return f"{user}{host}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


def unavailable(exc: psycopg.Error, where: str) -> StoreUnavailable:
    """A readable :class:`StoreUnavailable` for a driver error."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, pg_errors.UndefinedTable):
        hint = "the schema is missing; run `apipod db upgrade` (or migrate at start)"
    elif isinstance(exc, psycopg.OperationalError):
        hint = "cannot reach the database, or the connection was lost"
    else:
        hint = type(exc).__name__
    return StoreUnavailable(f"job store {where}: {text} ({hint})")


def connect(conninfo: str, timeout_s: float) -> psycopg.Connection:
    """One autocommit connection, named after this process in ``pg_stat_activity``."""
    return psycopg.connect(
        conninfo,
        autocommit=True,
        connect_timeout=max(2, round(timeout_s)),
        application_name=f"apipod-{os.getpid()}",
    )


def _reusable(conn: psycopg.Connection) -> bool:
    return (
        not conn.closed
        and not conn.broken
        and conn.info.transaction_status == TransactionStatus.IDLE
    )


class _DroppedWhileIdle(Exception):
    """A pooled connection turned out to be closed by the server (see ``run``)."""


class ConnectionPool:
    """At most ``max_size`` connections, each used by one thread at a time."""

    def __init__(self, conninfo: str, *, max_size: int = 8, connect_timeout_s: float = 5.0) -> None:
        self._conninfo = conninfo
        self._where = describe(conninfo)
        self._timeout_s = connect_timeout_s
        self._slots = threading.BoundedSemaphore(max_size)
        self._lock = threading.Lock()
        self._idle: list[tuple[psycopg.Connection, float]] = []
        self._closed = False

    @property
    def where(self) -> str:
        """The database, for messages: ``user@host:port/dbname``."""
        return self._where

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for the calling thread; driver errors become StoreUnavailable."""
        if not self._slots.acquire(timeout=30.0):
            raise StoreUnavailable(f"job store {self._where}: no free connection within 30 s")
        conn: psycopg.Connection | None = None
        try:
            with self._driver_errors():
                conn = self._take()
                yield conn
        finally:
            if conn is not None:
                self._give(conn)
            self._slots.release()

    @contextlib.contextmanager
    def _driver_errors(self) -> Iterator[None]:
        """psycopg's errors as the store's: data the server refuses is StoreRejected,
        everything else StoreUnavailable."""
        try:
            yield
        except pg_errors.DataError as exc:
            raise StoreRejected(f"job store {self._where}: {exc}") from exc
        except psycopg.Error as exc:
            raise unavailable(exc, self._where) from exc

    def run(self, work: Callable[[psycopg.Connection], T]) -> T:
        """``work(conn)`` as one call, driver errors as StoreUnavailable.

        A connection the server dropped while it sat in the pool (a restart, a failover,
        ``pg_terminate_backend``) fails before the statement runs; then the idle ones,
        dropped too most likely, are discarded and the call runs once more on a new one.
        """
        try:
            return self._run_once(work, reuse=True)
        except _DroppedWhileIdle as dropped:
            log.warning("job store %s: %s; reconnecting", self._where, dropped.__cause__)
            self._discard_idle()
            return self._run_once(work, reuse=False)

    def _run_once(self, work: Callable[[psycopg.Connection], T], reuse: bool) -> T:
        if not self._slots.acquire(timeout=30.0):
            raise StoreUnavailable(f"job store {self._where}: no free connection within 30 s")
        conn: psycopg.Connection | None = None
        try:
            with self._driver_errors():
                conn, reused = self._take_marked(reuse)
                try:
                    return work(conn)
                except psycopg.OperationalError as exc:
                    if reused and conn.broken:
                        raise _DroppedWhileIdle() from exc
                    raise
        finally:
            if conn is not None:
                self._give(conn)
            self._slots.release()

    def _discard_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()

    def _take(self) -> psycopg.Connection:
        return self._take_marked(reuse=True)[0]

    def _take_marked(self, reuse: bool) -> tuple[psycopg.Connection, bool]:
        """A connection, and whether it came from the pool (rather than new)."""
        while reuse:
            with self._lock:
                if self._closed:
                    raise StoreUnavailable("the job store is closed")
                if not self._idle:
                    break
                conn, since = self._idle.pop()
            if time.monotonic() - since < _CHECK_AFTER_IDLE_S or self._alive(conn):
                return conn, True
        if self._closed:
            raise StoreUnavailable("the job store is closed")
        return connect(self._conninfo, self._timeout_s), False

    @staticmethod
    def _alive(conn: psycopg.Connection) -> bool:
        try:
            conn.execute("")
            return True
        except psycopg.Error:
            conn.close()
            return False

    def _give(self, conn: psycopg.Connection) -> None:
        if _reusable(conn):
            with self._lock:
                if not self._closed:
                    self._idle.append((conn, time.monotonic()))
                    return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use close when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


class NotifyChannel:
    """``LISTEN`` on one channel. The database's triggers send the notifications, so
    :meth:`notify` does nothing; :meth:`wait` returns the payloads, one per line."""

    def __init__(self, conninfo: str, channel: str, *, connect_timeout_s: float = 5.0) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._closed = False
        self._failures = 0
        self._retry_at = 0.0

    def notify(self, message: bytes = b"\x01") -> None:
        """Nothing to do: the change's own transaction sent the NOTIFY."""

    def wait(self, timeout: float, max_bytes: int = 1) -> bytes:
        """Block until a notification arrives or ``timeout`` passes. Returns the payloads
        received (``\\n``-terminated lines; a payload-less wake-up is an empty line), or
        empty bytes on timeout. ``max_bytes`` is ignored: every payload is returned.
        Without a connection it sleeps for the timeout (polling fallback)."""
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._lock.acquire(timeout=max(timeout, 0.0)):
            return b""  # another thread of this process is waiting on the channel
        try:
            while (payloads := self._receive(deadline)) is None:
                now = time.monotonic()
                if now >= deadline:
                    return b""
                # Not listening: sleep until the next reconnect attempt (or the deadline).
                wake_at = deadline if self._closed else max(self._retry_at, now + 0.05)
                time.sleep(min(wake_at, deadline) - now)
        finally:
            self._lock.release()
        return "".join(f"{p}\n" for p in payloads).encode()

    def _receive(self, deadline: float) -> list[str] | None:
        """The payloads that arrived before ``deadline``; None when not listening."""
        try:
            conn = self._listening()
            if conn is None:
                return None
            remaining = max(deadline - time.monotonic(), 0.0)
            got = [n.payload for n in conn.notifies(timeout=remaining, stop_after=1)]
            if got:  # take whatever else is already here: one wake-up for all of it
                got += [n.payload for n in conn.notifies(timeout=0)]
            self._failures = 0
            return got
        except psycopg.Error as exc:
            self._lost(exc)
            return None

    def _listening(self) -> psycopg.Connection | None:
        if self._closed:
            return None
        if self._conn is None and time.monotonic() < self._retry_at:
            return None  # reconnecting later: poll meanwhile
        if self._conn is None:
            conn = connect(self._conninfo, self._timeout_s)
            conn.execute(f"LISTEN {self._channel}")
            self._conn = conn
        return self._conn

    def _lost(self, exc: psycopg.Error) -> None:
        self._failures += 1
        delay = min(0.25 * 2**self._failures, _RECONNECT_MAX_S)
        self._retry_at = time.monotonic() + delay
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "LISTEN %s: %s; polling until it reconnects", self._channel, exc)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Stop listening (waits for a running ``wait`` to return)."""
        self._closed = True
        got = self._lock.acquire(timeout=5.0)
        try:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        finally:
            if got:
                self._lock.release()
