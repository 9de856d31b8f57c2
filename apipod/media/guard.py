"""Stopping a download from another thread: :class:`FetchGuard` holds the sockets of one
request's downloads and shuts them down on :meth:`FetchGuard.cancel`, so a thread blocked
reading a server that dribbles bytes (or headers) returns at once and its connection
closes; a socket read cannot be interrupted any other way.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from typing import Any

import httpcore
import httpx


class FetchGuard:
    """Stops the downloads of one request: :meth:`cancel` shuts down the sockets they
    have open (a blocked read returns at once) and refuses the ones not started yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._sockets: set[socket.socket] = set()

    def is_set(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _shut_down(sock)

    def attach(self, sock: socket.socket) -> None:
        """Watch ``sock`` (shut down at once when already cancelled)."""
        with self._lock:
            if not self._cancelled.is_set():
                self._sockets.add(sock)
                return
        _shut_down(sock)

    def detach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


def guarded_transport(guard: FetchGuard, ssl_context: ssl.SSLContext) -> httpx.HTTPTransport:
    """An httpx transport whose connections register their sockets with ``guard``."""
    transport = httpx.HTTPTransport(verify=ssl_context, trust_env=False)
    # httpx has no public hook for the network backend; its pool is swapped for one with
    # ours (tests/app/test_media_fetch_release.py fails if this stops taking effect).
    transport._pool = httpcore.ConnectionPool(  # noqa: SLF001
        ssl_context=ssl_context, network_backend=_GuardedBackend(guard)
    )
    return transport


class _GuardedBackend(httpcore.SyncBackend):
    def __init__(self, guard: FetchGuard) -> None:
        self._guard = guard

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _GuardedStream(super().connect_tcp(*args, **kwargs), self._guard)


class _GuardedStream(httpcore.NetworkStream):
    """A connection whose socket (the TLS one after ``start_tls``) the guard watches."""

    def __init__(self, stream: httpcore.NetworkStream, guard: FetchGuard) -> None:
        self._stream = stream
        self._guard = guard
        self._socket = stream.get_extra_info("socket")
        guard.attach(self._socket)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._guard.detach(self._socket)
        self._stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        self._guard.detach(self._socket)  # wrapping detaches it: the TLS socket is watched
        return _GuardedStream(self._stream.start_tls(*args, **kwargs), self._guard)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)
