"""The media and disk verbs of the SQL stores.

:class:`FilesMixin` is part of :class:`~apipod.store.sqlstore.SqlJobStore`. A job's media
live in a :class:`FileBackend`: plain files under ``<data_dir>/files`` by default, rows of
the ``files`` table on PostgreSQL (:mod:`apipod.store.pgfiles`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from apipod.store.records import StoredFile
from apipod.store.sql import placeholders

logger = logging.getLogger(__name__)

_KNOWN_BATCH = 100


class FileBackend(Protocol):
    """Where job media live (:class:`~apipod.store.localfiles.LocalFiles` by default)."""

    def put(self, job_id: str, name: str, data: bytes | BinaryIO) -> str: ...

    def read(self, ref: str) -> bytes: ...

    def open(self, ref: str) -> BinaryIO: ...

    def list(self, job_id: str) -> list[StoredFile]: ...

    def delete_job(self, job_id: str) -> None: ...

    def size(self) -> int: ...

    def job_ids(self, older_than_s: float) -> list[str]: ...


class FilesMixin:
    """File verbs for :class:`~apipod.store.sqlstore.SqlJobStore` (see the contract in
    :class:`~apipod.store.base.JobStore`)."""

    _files: FileBackend
    _read: Callable[..., list[tuple[Any, ...]]]
    _cached_sql: Callable[..., str]
    database_bytes_sql: str

    # --- files -----------------------------------------------------------------------------------
    def put_file(self, job_id: str, name: str, data: bytes | BinaryIO) -> str:
        """See :meth:`JobStore.put_file`. ``name`` is reduced to a safe file name; a
        second file of the same name gets a numbered name (the reference tells which)."""
        return self._files.put(job_id, name, data)

    def read_file(self, ref: str) -> bytes:
        """See :meth:`JobStore.read_file`. A malformed reference raises ValueError."""
        return self._files.read(ref)

    def open_file(self, ref: str) -> BinaryIO:
        """See :meth:`JobStore.open_file`."""
        return self._files.open(ref)

    def list_files(self, job_id: str) -> list[StoredFile]:
        """See :meth:`JobStore.list_files`."""
        return self._files.list(job_id)

    def discard_files(self, job_id: str) -> None:
        """See :meth:`JobStore.discard_files`."""
        self._files.delete_job(job_id)

    # --- disk ---------------------------------------------------------------------------------------
    def stored_bytes(self) -> int:
        """See :meth:`JobStore.stored_bytes`."""
        database = int(self._read(self.database_bytes_sql)[0][0] or 0)
        return database + self._files.size()

    def sweep_orphan_files(self, older_than_s: float) -> int:
        """See :meth:`JobStore.sweep_orphan_files`."""
        swept = 0
        candidates = self._files.job_ids(older_than_s)
        sql = self._cached_sql(("known", _KNOWN_BATCH), lambda: _known_sql(_KNOWN_BATCH))
        for start in range(0, len(candidates), _KNOWN_BATCH):
            batch = candidates[start : start + _KNOWN_BATCH]
            padded = batch + [batch[-1]] * (_KNOWN_BATCH - len(batch))  # one statement text
            known = {row[0] for row in self._read(sql, padded)}
            for job_id in batch:
                if job_id not in known:
                    self.discard_files(job_id)
                    swept += 1
        return swept


def make_private_dir(path: Path) -> None:
    """Create ``path`` readable by this user alone (0700), or tighten it to that: it
    holds the clients' inputs and media."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        logger.warning("cannot make %s private (0700): %s", path, exc)


def _known_sql(count: int) -> str:
    return f"SELECT id FROM jobs WHERE id IN ({placeholders(count)})"
