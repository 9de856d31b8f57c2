"""One job runner per SQLite data dir: an exclusive ``flock`` on ``<data_dir>/supervisor.lock``,
held by ``apipod start``'s supervisor, or by the embedded worker of an app run outside it
(TestClient, ``uvicorn service:app``), so two never claim each other's jobs.

The kernel drops the lock when its holder dies, however it dies, so a stale lock after a
``kill -9`` never blocks a restart. The file holds the holder's pid, for the message a
second ``apipod start`` gets. The descriptor is not inherited by children (Python opens
it non-inheritable), so only the supervisor itself holds the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from apipod.errors import APIPodError, setting_hint

LOCK_NAME = "supervisor.lock"


class DataDirInUse(APIPodError):
    """Another live supervisor (or embedded worker) holds this data dir."""


class DataDirLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process's death)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DataDirInUse` at once (never waits)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirInUse(
                f"data dir {self.data_dir} is in use by another apipod process "
                f"(pid {holder}); stop that one first, or give this one its own "
                f"data dir: {setting_hint('data_dir')}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return "unknown"
    return text or "unknown"
