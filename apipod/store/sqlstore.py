"""The job store verbs, written once for every SQL dialect.

:class:`SqlJobStore` implements the :class:`~apipod.store.base.JobStore` contract on top of
five primitives a dialect class provides (``_read``, ``_write``, ``_write_rows``,
``_insert_job``, the one read-then-write transaction of a submit, and ``_transaction``,
several statements in one transaction, for appending chunks). Every state change is a single
``UPDATE ... WHERE <expected state> [RETURNING ...]``, so it is atomic on any database and
ownership is checked in the same statement that changes the row. Media files and
wake-ups live in the data directory by default; a dialect may store them elsewhere
(``_open_files``, ``_open_wakeups``) and lock the claim's subquery
(``claim_lock_suffix``). The verbs of chunks, files, operators and webhooks are mixins of
their own modules (``chunkstore``, ``filestore``, ``operations``, ``webhookstore``).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from apipod.errors import QueueFull
from apipod.store.base import JobStore
from apipod.store.chunkstore import ChunksMixin
from apipod.store.filestore import FileBackend, FilesMixin, make_private_dir
from apipod.store.localfiles import LocalFiles, check_job_id
from apipod.store.operations import OperationsMixin
from apipod.store.primitives import Params, Row, T, Transaction, Wakeup
from apipod.store.records import Job, JobStatus, WorkerInfo
from apipod.store.sql import (
    build_statements,
    claim_batch_sql,
    claim_sql,
    dump_json,
    format_ts,
    placeholders,
    release_sql,
    row_to_job,
    row_to_worker,
    storable_text,
    to_format,
    ts_in,
    utcnow,
    worker_params,
)
from apipod.store.wakeup import FifoWakeup
from apipod.store.webhookstore import WebhookOutboxMixin

CANCELLED_ERROR = "cancelled by client"
LEASE_EXPIRED_ERROR = "lease expired"
UNREADABLE_ERROR = "the stored job cannot be read"


class SqlJobStore(ChunksMixin, FilesMixin, OperationsMixin, WebhookOutboxMixin, JobStore):
    """Dialect-independent verbs. Subclasses set ``dialect`` and ``paramstyle`` and
    implement the primitives, ``migrate`` and ``close`` (calling ``super().close()``)."""

    dialect: str = ""
    paramstyle: str = "qmark"
    #: Appended to the claim's subquery, e.g. ``" FOR UPDATE SKIP LOCKED"``.
    claim_lock_suffix: str = ""
    #: Appended to the ownership check of ``append_chunks``, e.g. ``" FOR SHARE"``.
    chunk_lock_suffix: str = ""
    #: One number: the bytes the jobs take in the database. A dialect replaces this
    #: full scan with what its catalog knows at once.
    database_bytes_sql: str = (
        "SELECT coalesce(sum(length(inputs) + coalesce(length(result), 0)), 0) FROM jobs"
    )

    def __init__(self, data_dir: str | Path) -> None:
        self._data_dir = Path(data_dir)
        self._sql = build_statements(self.paramstyle, self.claim_lock_suffix)
        self._adapt: Callable[[str], str] = (
            (lambda sql: sql) if self.paramstyle == "qmark" else to_format
        )
        self._dynamic_sql: dict[tuple[Any, ...], str] = {}
        self._prepare_chunk_sql()
        self._files: FileBackend = self._open_files()
        self._work, self._results = self._open_wakeups()
        self._stream = self._open_stream_wakeup()

    def _open_files(self) -> FileBackend:
        """The media backend: plain files under ``<data_dir>/files``."""
        make_private_dir(self._data_dir)
        return LocalFiles(self._data_dir)

    def _open_wakeups(self) -> tuple[Wakeup, Wakeup]:
        """The work and results channels: FIFOs under ``<data_dir>/run``. A backend whose
        database sends the wake-ups itself returns channels whose ``notify`` does nothing."""
        run_dir = self._data_dir / "run"
        return FifoWakeup(run_dir / "work.fifo"), FifoWakeup(run_dir / "results.fifo")

    def _open_stream_wakeup(self) -> Wakeup:
        """The stream channel (chunks written, status/progress/message changed)."""
        return FifoWakeup(self._data_dir / "run" / "stream.fifo")

    # --- primitives ----------------------------------------------------------------------
    @abc.abstractmethod
    def _read(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a query without taking the write lock; all rows."""

    @abc.abstractmethod
    def _write(self, sql: str, params: Params = ()) -> int:
        """Run one writing statement as its own transaction; the row count."""

    @abc.abstractmethod
    def _write_rows(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one writing statement with RETURNING as its own transaction; its rows."""

    @abc.abstractmethod
    def _insert_job(self, endpoint: str, queue_size: int, params: Params) -> int | None:
        """In one locked transaction: count the endpoint's queued jobs and, if fewer than
        ``queue_size``, run ``insert_job``. The new seq, or None when the queue is full.
        A duplicate job id raises ValueError."""

    @abc.abstractmethod
    def _transaction(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work`` in one write transaction; commit when it returns, roll back when
        it raises."""

    def _cached_sql(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        sql = self._dynamic_sql.get(key)
        if sql is None:
            sql = self._dynamic_sql[key] = self._adapt(build())
        return sql

    # --- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._work.close()
        self._results.close()
        self._stream.close()

    # --- jobs: the client side ----------------------------------------------------------------
    def enqueue(
        self,
        endpoint: str,
        inputs: dict[str, Any],
        *,
        queue_size: int,
        max_attempts: int,
        timeout_s: float | None = None,
        job_id: str | None = None,
    ) -> Job:
        """See :meth:`JobStore.enqueue`. ``job_id``, when given, must be a safe path
        component (letters, digits, ``_ - .``); a duplicate id raises ValueError."""
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        job_id = uuid.uuid4().hex if job_id is None else check_job_id(job_id)
        timeout_s = None if timeout_s is None else float(timeout_s)
        now = utcnow()
        stamp = format_ts(now)
        params = (job_id, endpoint, dump_json(inputs), max_attempts, timeout_s, stamp, stamp)
        seq = self._insert_job(endpoint, queue_size, params)
        if seq is None:
            raise QueueFull(endpoint, queue_size)
        self._work.notify()
        return Job(
            id=job_id,
            seq=seq,
            endpoint=endpoint,
            status=JobStatus.QUEUED,
            inputs=inputs,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            created_at=now,
            queued_at=now,
        )

    def get(self, job_id: str) -> Job | None:
        rows = self._read(self._sql.get_job, (job_id,))
        return row_to_job(rows[0]) if rows else None

    def get_state(self, job_id: str, *, with_result: bool = False) -> Job | None:
        sql = self._sql.get_state_with_result if with_result else self._sql.get_state
        rows = self._read(sql, (job_id,))
        return row_to_job(rows[0]) if rows else None

    def cancel(self, job_id: str) -> Job | None:
        """See :meth:`JobStore.cancel`. The job keeps its ``worker`` (so the supervisor
        knows whom to stop) and gets the error ``"cancelled by client"``."""
        rows = self._write_rows(self._sql.cancel, (CANCELLED_ERROR, format_ts(utcnow()), job_id))
        if not rows:
            return self.get_state(job_id, with_result=True)
        self._notify_result(job_id)
        return row_to_job(rows[0])

    def queue_depths(self) -> dict[str, int]:
        return {endpoint: count for endpoint, count in self._read(self._sql.queue_depths)}

    # --- jobs: the worker side -------------------------------------------------------------------
    def claim(
        self, worker_id: str, lease_s: float, endpoints: Sequence[str] | None = None
    ) -> Job | None:
        """See :meth:`JobStore.claim`. An empty ``endpoints`` matches nothing."""
        if endpoints is None:
            sql, names = self._sql.claim_any, ()
        elif not endpoints:
            return None
        else:
            names = tuple(endpoints)
            lock = self.claim_lock_suffix
            sql = self._cached_sql(("claim", len(names)), lambda: claim_sql(len(names), lock))
        while True:
            now = utcnow()
            params = (worker_id, format_ts(now), ts_in(lease_s, now), *names)
            rows = self._write_rows(sql, params)
            if not rows:
                return None
            job = row_to_job(rows[0])
            if job.unreadable is None:
                self._notify_stream(job.id)
                return job
            # A poison row fails alone, on its first attempt; the claim goes on.
            self.fail(job.id, worker_id, f"{UNREADABLE_ERROR}: {job.unreadable}")

    def claim_batch(
        self,
        worker_id: str,
        lease_s: float,
        batch_sizes: Mapping[str, int],
        *,
        batch_id: str | None = None,
    ) -> list[Job]:
        """See :meth:`JobStore.claim_batch`. An empty ``batch_sizes`` matches nothing."""
        names = tuple(batch_sizes)
        if not names:
            return []
        sized = [(name, int(size)) for name, size in batch_sizes.items() if size != 1]
        if any(size < 1 for _, size in sized):
            raise ValueError(f"batch sizes must be at least 1: {dict(batch_sizes)}")
        tagged = names if batch_id is not None else tuple(name for name, _ in sized)
        key = ("claim_batch", len(names), len(sized), len(tagged), batch_id is not None)
        lock = self.claim_lock_suffix
        sql = self._cached_sql(key, lambda: claim_batch_sql(*key[1:4], lock, key[4]))
        sizes = tuple(value for pair in sized for value in pair)
        tag = batch_id or uuid.uuid4().hex
        while True:
            now = utcnow()
            params = (*names, *sizes, worker_id, format_ts(now), ts_in(lease_s, now), *tagged, tag)
            # RETURNING gives no order (PostgreSQL): the batch is sorted into queue order.
            jobs = sorted((row_to_job(row) for row in self._write_rows(sql, params)), key=_seq)
            readable = [job for job in jobs if job.unreadable is None]
            for job in jobs:
                if job.unreadable is not None:  # a poison row fails alone; the rest run
                    self.fail(job.id, worker_id, f"{UNREADABLE_ERROR}: {job.unreadable}")
            if readable or not jobs:
                return readable

    def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        return self._write(self._sql.heartbeat, (ts_in(lease_s), job_id, worker_id)) == 1

    def set_progress(
        self, job_id: str, worker_id: str, progress: float | None, message: str | None
    ) -> bool:
        progress = None if progress is None else float(progress)
        params = (progress, storable_text(message), job_id, worker_id)
        if self._write(self._sql.set_progress, params) != 1:
            return False
        self._notify_stream(job_id)
        return True

    def finish(self, job_id: str, worker_id: str, result: Any) -> bool:
        """See :meth:`JobStore.finish`. A result that is not JSON-able raises TypeError
        (or ValueError) before anything is written."""
        params = (dump_json(result), format_ts(utcnow()), job_id, worker_id)
        return self._ended(job_id, self._write(self._sql.finish, params))

    def fail(self, job_id: str, worker_id: str, error: str, traceback: str | None = None) -> bool:
        return self._end(JobStatus.FAILED, job_id, worker_id, error, traceback)

    def time_out(self, job_id: str, worker_id: str, error: str) -> bool:
        return self._end(JobStatus.TIMEOUT, job_id, worker_id, error)

    def _end(
        self,
        status: JobStatus,
        job_id: str,
        worker_id: str,
        error: str,
        traceback: str | None = None,
    ) -> bool:
        params = (
            status.value,
            storable_text(error),
            storable_text(traceback),
            format_ts(utcnow()),
            job_id,
            worker_id,
        )
        return self._ended(job_id, self._write(self._sql.end, params))

    def _ended(self, job_id: str, rowcount: int) -> bool:
        if rowcount == 1:
            self._notify_result(job_id)
            return True
        return False

    def _notify_result(self, job_id: str) -> None:
        self._results.notify(f"{job_id}\n".encode())
        self._notify_stream(job_id)

    def _notify_stream(self, job_id: str) -> None:
        self._stream.notify(f"{job_id}\n".encode())

    def _chunks_written(self, job_id: str) -> None:
        """Wake the streams of ``job_id`` after its chunks were committed."""
        self._notify_stream(job_id)

    def requeue(self, job_id: str, worker_id: str) -> bool:
        params = ("requeued at shutdown", job_id, worker_id)
        if self._write(self._sql.requeue, params) != 1:
            return False
        self._work.notify()
        self._notify_stream(job_id)
        return True

    def release(self, job_id: str, worker_id: str, error: str) -> JobStatus | None:
        """See :meth:`JobStore.release`. A requeued job gets progress, started_at and
        worker cleared and the message ``"requeued after: <error>"``."""
        rows = self._release(self._sql.release, error, (job_id, worker_id))
        return JobStatus(rows[0][1]) if rows else None

    def recover_expired_leases(self) -> list[str]:
        now = format_ts(utcnow())
        return [row[0] for row in self._release(self._sql.recover, LEASE_EXPIRED_ERROR, (now,))]

    def release_worker_jobs(self, worker_ids: Sequence[str], error: str) -> list[str]:
        ids = tuple(worker_ids)
        if not ids:
            return []
        condition = f"worker IN ({placeholders(len(ids))})"
        sql = self._cached_sql(("release", len(ids)), lambda: release_sql(condition))
        return [row[0] for row in self._release(sql, error, ids)]

    def _release(self, sql: str, error: str, params: Params) -> list[Row]:
        error = storable_text(error) or ""
        stamp = format_ts(utcnow())
        rows = self._write_rows(sql, (error, f"requeued after: {error}", stamp, *params))
        for job_id, status in rows:
            if status == JobStatus.QUEUED.value:
                self._work.notify()
                self._notify_stream(job_id)
            else:
                self._notify_result(job_id)
        return rows

    def expire(self, ttl_s: float, batch_size: int = 500) -> int:
        """See :meth:`JobStore.expire` (and :meth:`_delete_jobs`)."""
        if batch_size < 1:
            return 0
        cutoff = ts_in(-float(ttl_s))
        ids = [row[0] for row in self._read(self._sql.expired, (cutoff, int(batch_size)))]
        if not ids:
            return 0
        return self._delete_jobs(ids, int(batch_size))

    def _delete_jobs(self, ids: list[str], batch_size: int) -> int:
        """Delete up to ``batch_size`` jobs with their files and chunks (TTL, purge).
        Files go first, then the rows, so a crash between the two leaves rows that the
        next call deletes, never orphaned files."""
        for job_id in ids:
            self.discard_files(job_id)
        # Pad the id list to the batch size so the statement text is always the same:
        # one text per list length would fill the driver's prepared-statement cache.
        padded = ids + [ids[-1]] * (batch_size - len(ids))
        chunks_sql = self._cached_sql(
            ("expire-chunks", len(padded)), lambda: _delete_sql("chunks", "job_id", len(padded))
        )
        self._write(chunks_sql, padded)
        sql = self._cached_sql(
            ("expire", len(padded)), lambda: _delete_sql("jobs", "id", len(padded))
        )
        return self._write(sql, padded)

    # --- wake-ups ------------------------------------------------------------------------------
    def wait_for_work(self, timeout: float) -> None:
        self._work.wait(timeout)

    def wait_for_results(self, timeout: float) -> list[str]:
        return _job_ids(self._results.wait(timeout, max_bytes=65536))

    def wait_for_stream(self, timeout: float) -> list[str]:
        return _job_ids(self._stream.wait(timeout, max_bytes=65536))

    # --- workers -----------------------------------------------------------------------------------
    def upsert_worker(self, info: WorkerInfo) -> None:
        """See :meth:`JobStore.upsert_worker`. ``started_at`` defaults to now."""
        self._write(self._sql.upsert_worker, worker_params(info, format_ts(utcnow())))

    def remove_worker(self, worker_id: str) -> None:
        self._write(self._sql.remove_worker, (worker_id,))

    def list_workers(self) -> list[WorkerInfo]:
        return [row_to_worker(row) for row in self._read(self._sql.list_workers)]

    def prune_workers(self, stale_after_s: float) -> list[str]:
        """See :meth:`JobStore.prune_workers`."""
        cutoff = ts_in(-float(stale_after_s))
        return [row[0] for row in self._write_rows(self._sql.prune_workers, (cutoff,))]


def _delete_sql(table: str, column: str, count: int) -> str:
    return f"DELETE FROM {table} WHERE {column} IN ({placeholders(count)})"


def _job_ids(data: bytes) -> list[str]:
    return [line for line in data.decode("ascii", "replace").split("\n") if line]


def _seq(job: Job) -> int:
    return job.seq
