"""``apipod start --reload`` (development): the API and the workers restart when a Python
file of the service's folder changes.

A thread watches the folder with ``watchfiles`` (uvicorn's own reloader) and only notes
the change and wakes the supervisor's loop, as a signal handler would; the loop restarts
the children (:func:`stop_workers`, then ``ApiProcess.restart``). Running jobs go back to the queue without
counting the attempt, as at a shutdown: a reload is the developer's doing, not the job's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path

from apipod.supervisor.lifecycle import Phase, StoreCall, WorkerSlot

logger = logging.getLogger(__name__)


class FileWatcher:
    """Watches ``folder`` (recursively) for changed ``*.py`` files in a thread; each change
    writes a byte to ``wake_fd`` so the loop that waits on it looks at :meth:`changed`."""

    def __init__(self, folder: Path, wake_fd: int) -> None:
        self.folder = folder
        self._wake_fd = wake_fd
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._thread = threading.Thread(target=self._watch, name="apipod-reload", daemon=True)

    def start(self) -> None:
        logger.info("--reload: watching %s (*.py) for changes", self.folder)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def changed(self) -> list[str]:
        """The files changed since the last call (relative to the folder), sorted."""
        with self._lock:
            names, self._changed = sorted(self._changed), set()
        return names

    def _watch(self) -> None:
        import watchfiles

        python_files = watchfiles.PythonFilter()
        for changes in watchfiles.watch(
            self.folder, watch_filter=python_files, stop_event=self._stop, raise_interrupt=False
        ):
            with self._lock:
                self._changed.update(_relative(path, self.folder) for _, path in changes)
            with contextlib.suppress(OSError):  # the loop is gone or its pipe is full
                os.write(self._wake_fd, b"r")


def stop_workers(slots: list[WorkerSlot]) -> list[StoreCall]:
    """Kill every worker at once; the store writes that put their jobs back in the queue
    (uncounted) and remove their rows. Each slot starts a fresh worker at the loop's next
    refill, even one that had given up loading."""
    writes: list[StoreCall] = []
    for slot in slots:
        if slot.worker is not None:
            slot.worker.kill()
            slot.worker.process.join(timeout=5)
            writes.extend(d for d in slot.at_shutdown() if isinstance(d, StoreCall))
        slot.phase, slot.load_failures, slot.next_start_at = Phase.EMPTY, 0, 0.0
    return writes


def _relative(path: str, folder: Path) -> str:
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return path
