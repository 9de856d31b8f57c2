"""Cross-process wake-ups through named pipes (FIFOs) in ``<data_dir>/run/``.

A waiter keeps its FIFO open ``O_RDWR | O_NONBLOCK`` (on Linux such a reader never sees
end-of-file), polls it with the timeout and reads one byte, so one notification wakes
about one waiter. A notifier opens the FIFO ``O_WRONLY | O_NONBLOCK`` lazily and writes one
byte; with no reader yet (``ENXIO``) or a full pipe (``EAGAIN``) the byte is dropped, and
after ``ENXIO`` the next open is tried only 0.1 s later (an open costs more than the write).
Wake-ups are hints: a stale byte only causes a spurious wake, a lost one only a wait until
the caller's timeout. Nothing here raises into the caller; where FIFOs cannot be made,
waiting degrades to sleeping for the timeout.
"""

from __future__ import annotations

import logging
import os
import select
import stat
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_READ_FLAGS = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_REOPEN_AFTER_S = 0.1


class FifoWakeup:
    """One named pipe: ``notify`` from any process, ``wait`` in any process."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._next_open = 0.0
        self._closed = False
        self._usable = self._make_fifo()

    def _make_fifo(self) -> bool:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(self._path, 0o600)
        except FileExistsError:
            pass
        except (OSError, AttributeError) as exc:
            log.warning("cannot create %s (%s); waiting falls back to polling", self._path, exc)
            return False
        try:
            is_fifo = stat.S_ISFIFO(os.stat(self._path).st_mode)
        except OSError:
            is_fifo = False
        if not is_fifo:
            log.warning("%s exists and is not a FIFO; waiting falls back to polling", self._path)
        return is_fifo

    def notify(self, message: bytes = b"\x01") -> None:
        """Send one wake-up (``message``: one byte, or a short line of at most PIPE_BUF
        bytes, which the kernel writes atomically), if anybody listens. Never raises."""
        if not self._usable:
            return
        with self._lock:
            if self._closed:
                return
            if self._write_fd is None:
                now = time.monotonic()
                if now < self._next_open:
                    return
                try:
                    self._write_fd = os.open(self._path, _WRITE_FLAGS)
                except OSError:  # ENXIO: nobody listens yet; try again a little later
                    self._next_open = now + _REOPEN_AFTER_S
                    return
            try:
                os.write(self._write_fd, message)
            except BlockingIOError:  # the pipe is full: enough wake-ups are pending
                pass
            except OSError:  # EPIPE and the like: reopen on the next notify
                self._close_writer()

    def wait(self, timeout: float, max_bytes: int = 1) -> bytes:
        """Return after a wake-up arrived (what was read: ``max_bytes`` at most) or after
        ``timeout`` seconds (empty bytes)."""
        fd = self._reader()
        if fd is None:
            time.sleep(max(timeout, 0.0))
            return b""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        try:
            events = poller.poll(max(timeout, 0.0) * 1000.0)
        except OSError:
            events = []
        return self._take(fd, max_bytes) if events else b""

    def _reader(self) -> int | None:
        with self._lock:
            if self._closed or not self._usable:
                return None
            if self._read_fd is None:
                try:
                    self._read_fd = os.open(self._path, _READ_FLAGS)
                except OSError as exc:
                    log.warning("cannot open %s (%s); falling back to polling", self._path, exc)
                    self._usable = False
                    return None
            return self._read_fd

    def _take(self, fd: int, max_bytes: int) -> bytes:
        with self._lock:
            if self._read_fd != fd:  # closed meanwhile
                return b""
            try:
                return os.read(fd, max_bytes)
            except OSError:  # another waiter took it: a spurious wake-up
                return b""

    def _close_writer(self) -> None:
        _close_quietly(self._write_fd)
        self._write_fd = None

    def close(self) -> None:
        """Close both ends. The FIFO itself stays for other processes."""
        with self._lock:
            self._closed = True
            self._close_writer()
            _close_quietly(self._read_fd)
            self._read_fd = None


def _close_quietly(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
