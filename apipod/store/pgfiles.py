"""Media files of jobs in the database, so every box that shares it reads them.

A file is a row of ``files`` (its name within the job, its size, its chunk size) and its
bytes are rows of ``file_chunks``, 1 MiB each (migration 0003), written in one
transaction: a reader sees all of a file or none of it, and neither writing nor reading
holds more than one chunk in memory. Rows written before 0003 keep their bytes in
``files.data`` (``size`` NULL) and read the same way. A reference reads
``files/<job_id>/<name>`` like the local one; a second file of the same name gets a
numbered name (``image-1.png``).
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from typing import BinaryIO

from apipod.errors import StoreUnavailable
from apipod.store.localfiles import FILES_DIR, _numbered, check_job_id, safe_name
from apipod.store.pgconn import ConnectionPool
from apipod.store.records import StoredFile
from apipod.store.sql import format_ts, utcnow

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
_NAMES = "SELECT name FROM files WHERE job_id = %s"
_RESERVE = (
    "INSERT INTO files (job_id, name, data, created_at, chunk_size) VALUES (%s, %s, '', %s, %s)"
    " ON CONFLICT (job_id, name) DO NOTHING RETURNING name"
)
_CHUNK = "INSERT INTO file_chunks (job_id, name, seq, data) VALUES (%s, %s, %s, %b)"
_SET_SIZE = "UPDATE files SET size = %s WHERE job_id = %s AND name = %s"
_INFO = (
    "SELECT COALESCE(size, octet_length(data)), chunk_size, size IS NULL"
    " FROM files WHERE job_id = %s AND name = %s"
)
_LIST = "SELECT name, COALESCE(size, octet_length(data)) FROM files WHERE job_id = %s ORDER BY name"
_READ_CHUNK = (
    "SELECT substring(data FROM %s FOR %s) FROM file_chunks"
    " WHERE job_id = %s AND name = %s AND seq = %s"
)
_READ_LEGACY = "SELECT substring(data FROM %s FOR %s) FROM files WHERE job_id = %s AND name = %s"
_DELETE = "DELETE FROM files WHERE job_id = %s"
_SIZE = "SELECT coalesce(sum(coalesce(size, octet_length(data))), 0) FROM files"
_OLD_JOBS = "SELECT DISTINCT job_id FROM files WHERE created_at < %s"
_MAX_NUMBER = 10_000


class BlobFiles:
    """Job files in the database, shared by every box."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def put(self, job_id: str, name: str, data: bytes | BinaryIO) -> str:
        """Store ``data`` (bytes, or a binary file object read in chunks); return its
        reference. The name, the chunks and the size are one transaction."""
        check_job_id(job_id)
        wanted = safe_name(name)
        source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        with self._pool.connection() as conn:
            taken = {row[0] for row in conn.execute(_NAMES, (job_id,))}
            with conn.transaction():
                final = self._reserve(conn, job_id, wanted, taken)
                size = 0
                for seq, chunk in enumerate(iter(lambda: source.read(CHUNK_BYTES), b"")):
                    conn.execute(_CHUNK, (job_id, final, seq, chunk))
                    size += len(chunk)
                conn.execute(_SET_SIZE, (size, job_id, final))
        return f"{FILES_DIR}/{job_id}/{final}"

    @staticmethod
    def _reserve(conn: object, job_id: str, wanted: str, taken: set[str]) -> str:
        stamp = format_ts(utcnow())
        for number in range(_MAX_NUMBER):
            candidate = _numbered(wanted, number)
            if candidate in taken:
                continue
            params = (job_id, candidate, stamp, CHUNK_BYTES)
            if conn.execute(_RESERVE, params).fetchone() is not None:  # type: ignore[attr-defined]
                return candidate
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
        with self.open(ref) as reader:
            return reader.read()

    def open(self, ref: str) -> BinaryIO:
        """A buffered, seekable reader of ``ref``; FileNotFoundError when gone."""
        job_id, name = self.parse(ref)
        with self._pool.connection() as conn:
            row = conn.execute(_INFO, (job_id, name)).fetchone()
        if row is None:
            raise FileNotFoundError(f"no file {ref!r} in the job store")
        size, chunk_size, legacy = row
        raw = _BlobReader(self._pool, job_id, name, int(size), None if legacy else chunk_size)
        return io.BufferedReader(raw, buffer_size=CHUNK_BYTES)  # type: ignore[return-value]

    def list(self, job_id: str) -> list[StoredFile]:
        """The job's complete files by name."""
        try:
            check_job_id(job_id)
        except ValueError:
            return []
        with self._pool.connection() as conn:
            rows = conn.execute(_LIST, (job_id,)).fetchall()
        return [StoredFile(f"{FILES_DIR}/{job_id}/{name}", name, int(size)) for name, size in rows]

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
        """Delete the job's files (their chunks go with them); errors are logged."""
        try:
            check_job_id(job_id)
            with self._pool.connection() as conn:
                conn.execute(_DELETE, (job_id,))
        except ValueError:
            return
        except StoreUnavailable as exc:
            log.warning("could not delete the files of job %s: %s", job_id, exc)


class _BlobReader(io.RawIOBase):
    """Reads one stored file a piece at a time, each piece one short query."""

    def __init__(
        self, pool: ConnectionPool, job_id: str, name: str, size: int, chunk_size: int | None
    ) -> None:
        super().__init__()
        self._pool, self._job_id, self._name = pool, job_id, name
        self._size, self._chunk_size, self._position = size, chunk_size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        piece = self._fetch(self._position, wanted)
        buffer[: len(piece)] = piece
        self._position += len(piece)
        return len(piece)

    def _fetch(self, offset: int, length: int) -> bytes:
        if self._chunk_size is None:
            sql, params = _READ_LEGACY, (offset + 1, length, self._job_id, self._name)
        else:
            seq, within = divmod(offset, self._chunk_size)
            length = min(length, self._chunk_size - within)
            sql, params = _READ_CHUNK, (within + 1, length, self._job_id, self._name, seq)
        with self._pool.connection() as conn:
            # Binary results: bytea as text would be hex, twice the bytes to move and parse.
            row = conn.execute(sql, params, binary=True).fetchone()
        if row is None or not row[0]:
            raise FileNotFoundError(f"file {self._job_id}/{self._name} was deleted while read")
        return bytes(row[0])
