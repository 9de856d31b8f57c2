"""Media files of jobs as rows of the ``files`` table (``BYTEA``), so every box that
shares the database reads them. A reference reads ``files/<job_id>/<name>`` like the
local one; a second file of the same name gets a numbered name (``image-1.png``).

A file is one value, sent in binary and held in memory once while it is written or read
(PostgreSQL caps a value at 1 GB).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import BinaryIO

from apipod.errors import StoreUnavailable
from apipod.store.localfiles import FILES_DIR, _numbered, check_job_id, safe_name
from apipod.store.pgconn import ConnectionPool
from apipod.store.sql import format_ts, utcnow

log = logging.getLogger(__name__)

_NAMES = "SELECT name FROM files WHERE job_id = %s"
_INSERT = (
    "INSERT INTO files (job_id, name, data, created_at) VALUES (%s, %s, %b, %s)"
    " ON CONFLICT (job_id, name) DO NOTHING RETURNING name"
)
_READ = "SELECT data FROM files WHERE job_id = %s AND name = %s"
_DELETE = "DELETE FROM files WHERE job_id = %s"
_SIZE = "SELECT coalesce(sum(octet_length(data)), 0) FROM files"
_OLD_JOBS = "SELECT DISTINCT job_id FROM files WHERE created_at < %s"
_MAX_NUMBER = 10_000


class BlobFiles:
    """Job files in the database, shared by every box."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def put(self, job_id: str, name: str, data: bytes | BinaryIO) -> str:
        """Store ``data`` (bytes or a binary file object) and return its reference."""
        check_job_id(job_id)
        wanted = safe_name(name)
        payload = bytes(data) if isinstance(data, (bytes, bytearray, memoryview)) else data.read()
        stamp = format_ts(utcnow())
        with self._pool.connection() as conn:
            taken = {row[0] for row in conn.execute(_NAMES, (job_id,))}
            for number in range(_MAX_NUMBER):
                candidate = _numbered(wanted, number)
                if candidate in taken:
                    continue
                params = (job_id, candidate, payload, stamp)
                if conn.execute(_INSERT, params).fetchone() is not None:
                    return f"{FILES_DIR}/{job_id}/{candidate}"
        raise FileExistsError(f"too many files named {wanted!r} for job {job_id}")

    @staticmethod
    def parse(ref: str) -> tuple[str, str]:
        """``(job_id, name)`` of a reference. Raises ValueError when malformed."""
        parts = ref.split("/") if isinstance(ref, str) else []
        if len(parts) != 3 or parts[0] != FILES_DIR or safe_name(parts[2]) != parts[2]:
            raise ValueError(f"not a file reference of this store: {ref!r}")
        return check_job_id(parts[1]), parts[2]

    def read(self, ref: str) -> bytes:
        """The bytes under ``ref``; FileNotFoundError when gone."""
        job_id, name = self.parse(ref)
        with self._pool.connection() as conn:
            row = conn.execute(_READ, (job_id, name)).fetchone()
        if row is None:
            raise FileNotFoundError(f"no file {ref!r} in the job store")
        return bytes(row[0])

    def size(self) -> int:
        """Bytes of all job files."""
        with self._pool.connection() as conn:
            return int(conn.execute(_SIZE).fetchone()[0])

    def job_ids(self, older_than_s: float) -> list[str]:
        """Ids of the jobs whose files were all stored more than ``older_than_s`` ago."""
        cutoff = format_ts(utcnow() - timedelta(seconds=older_than_s))
        with self._pool.connection() as conn:
            return [row[0] for row in conn.execute(_OLD_JOBS, (cutoff,))]

    def delete_job(self, job_id: str) -> None:
        """Delete the job's files, if any; errors are logged, never raised."""
        try:
            check_job_id(job_id)
            with self._pool.connection() as conn:
                conn.execute(_DELETE, (job_id,))
        except ValueError:
            return
        except StoreUnavailable as exc:
            log.warning("could not delete the files of job %s: %s", job_id, exc)
