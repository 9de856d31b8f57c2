"""The streamed-output verbs of the SQL stores (table ``chunks``: migration 0004).

:class:`ChunksMixin` is part of :class:`~apipod.store.sqlstore.SqlJobStore`. A chunk is
written only while its writer owns the job, checked in the same statement (or, for
several chunks, the same transaction) that inserts it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from apipod.store.primitives import Params, Row, T, Transaction
from apipod.store.records import Chunk
from apipod.store.sql import Statements, append_chunk_sql, chunk_guard_sql, dump_json


class ChunksMixin:
    """Chunk verbs for :class:`~apipod.store.sqlstore.SqlJobStore` (see the contract in
    :class:`~apipod.store.base.JobStore`)."""

    chunk_lock_suffix: str
    _sql: Statements
    _adapt: Callable[[str], str]
    _read: Callable[..., list[Row]]
    _write_rows: Callable[..., list[Row]]
    _transaction: Callable[[Callable[[Transaction], T]], T]
    _chunks_written: Callable[[str], None]

    def _prepare_chunk_sql(self) -> None:
        lock = self.chunk_lock_suffix
        self._chunk_guard = self._adapt(chunk_guard_sql(lock))
        self._append_one = self._adapt(append_chunk_sql(lock, returning=True))
        self._append_many = self._adapt(append_chunk_sql(lock))

    # --- streamed output --------------------------------------------------------------------
    def append_chunks(self, job_id: str, worker_id: str, values: Sequence[Any]) -> int | None:
        """See :meth:`JobStore.append_chunks`. One value is one autocommit statement (the
        common case of a slow generator: its cost decides the latency); several are one
        transaction. PostgreSQL share-locks the job row, so a release waits for the
        commit and a retry never numbers a chunk twice."""
        params = [(job_id, dump_json(value), job_id, worker_id) for value in values]
        if len(params) == 1:
            rows = self._write_rows(self._append_one, params[0])
            last_seq = rows[0][0] if rows else None
        else:
            last_seq = self._transaction(lambda tx: self._append(tx, job_id, worker_id, params))
        if last_seq is not None and params:
            self._chunks_written(job_id)
        return last_seq

    def _append(
        self, tx: Transaction, job_id: str, worker_id: str, params: list[Params]
    ) -> int | None:
        if params and tx.many(self._append_many, params) == 0:
            return None  # not owned: the first insert found no row, so did the rest
        if not params and not tx.rows(self._chunk_guard, (job_id, worker_id)):
            return None
        return tx.rows(self._sql.last_chunk, (job_id,))[0][0]

    def read_chunks(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[Chunk]:
        rows = self._read(self._sql.read_chunks, (job_id, int(after_seq), max(int(limit), 0)))
        return [Chunk(seq, attempt, data) for seq, attempt, data in rows]
