"""Media files of jobs as plain files under ``<data_dir>/files/<job_id>/<name>``.

A file is written under a temporary name and then linked to its final name, so a reader
never sees half a file and two files of one job never overwrite each other (the second
``image.png`` becomes ``image-1.png``). Nothing is fsynced: the store promises durability
against a killed process, and the page cache outlives the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import BinaryIO

from apipod.media.names import safe_name
from apipod.store.records import StoredFile

log = logging.getLogger(__name__)

FILES_DIR = "files"
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_COPY_CHUNK = 1 << 20
_TEMP_SUFFIX = ".apipod-tmp"


def check_job_id(job_id: str) -> str:
    """Return ``job_id`` if it is safe as one path component, else raise ValueError."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise ValueError(f"invalid job id {job_id!r}: use letters, digits, '_', '-', '.'")
    return job_id


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(_TEMP_SUFFIX)


def _numbered(name: str, number: int) -> str:
    if number == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}-{number}.{ext}" if dot and stem else f"{name}-{number}"


class LocalFiles:
    """Job files in a directory shared by every process of one box."""

    def __init__(self, data_dir: Path) -> None:
        self._root = Path(data_dir)
        self._files = self._root / FILES_DIR

    def put(self, job_id: str, name: str, data: bytes | BinaryIO) -> str:
        """Write ``data`` (bytes or a binary file object, copied in chunks) and return
        the reference ``files/<job_id>/<final name>``."""
        folder = self._files / check_job_id(job_id)
        self._files.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        wanted = safe_name(name)
        temp = folder / f".{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        try:
            # 0600: job media are the clients' data, readable by the service alone.
            descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(descriptor, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    out.write(data)
                else:
                    shutil.copyfileobj(data, out, _COPY_CHUNK)
            final = self._link_unique(temp, folder, wanted)
        finally:
            temp.unlink(missing_ok=True)
        return f"{FILES_DIR}/{job_id}/{final}"

    @staticmethod
    def _link_unique(temp: Path, folder: Path, name: str) -> str:
        for number in range(10_000):
            candidate = _numbered(name, number)
            try:
                os.link(temp, folder / candidate)
                return candidate
            except FileExistsError:
                continue
            except OSError:  # no hard links on this file system: replace instead
                if (folder / candidate).exists():
                    continue
                os.replace(temp, folder / candidate)
                return candidate
        raise FileExistsError(f"too many files named {name!r} in {folder}")

    def path_of(self, ref: str) -> Path:
        """The path a reference names. Raises ValueError for a malformed reference."""
        parts = ref.split("/") if isinstance(ref, str) else []
        if len(parts) != 3 or parts[0] != FILES_DIR or safe_name(parts[2]) != parts[2]:
            raise ValueError(f"not a file reference of this store: {ref!r}")
        check_job_id(parts[1])
        return self._files / parts[1] / parts[2]

    def read(self, ref: str) -> bytes:
        """The bytes under ``ref``; FileNotFoundError when gone."""
        return self.path_of(ref).read_bytes()

    def open(self, ref: str) -> BinaryIO:
        """The file under ``ref`` opened for reading; FileNotFoundError when gone."""
        return open(self.path_of(ref), "rb")

    def list(self, job_id: str) -> list[StoredFile]:
        """The job's files by name (temporary files being written are left out)."""
        try:
            folder = self._files / check_job_id(job_id)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except (ValueError, FileNotFoundError, NotADirectoryError):
            return []
        return [
            StoredFile(f"{FILES_DIR}/{job_id}/{e.name}", e.name, e.stat().st_size)
            for e in entries
            if not _is_temporary(e.name) and e.is_file()
        ]

    def size(self) -> int:
        """Bytes of all job files (one pass over the folders)."""
        total = 0
        for folder in self._folders():
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                total += sum(e.stat().st_size for e in entries if e.is_file())
        return total

    def job_ids(self, older_than_s: float) -> list[str]:
        """Ids of the job folders last changed more than ``older_than_s`` ago."""
        cutoff = time.time() - older_than_s
        ids = []
        for folder in self._folders():
            with contextlib.suppress(OSError):
                if folder.stat().st_mtime < cutoff and _JOB_ID.fullmatch(folder.name):
                    ids.append(folder.name)
        return ids

    def _folders(self) -> list[Path]:
        try:
            return [Path(e.path) for e in os.scandir(self._files) if e.is_dir()]
        except FileNotFoundError:
            return []

    def delete_job(self, job_id: str) -> None:
        """Remove the job's folder, if any; errors are logged, never raised."""
        try:
            folder = self._files / check_job_id(job_id)
        except ValueError:
            return
        shutil.rmtree(folder, ignore_errors=True)
        if folder.exists():
            log.warning("could not delete all files of job %s under %s", job_id, folder)
