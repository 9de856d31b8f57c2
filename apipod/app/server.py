"""The uvicorn settings of the API: limits that keep slow, idle or greedy clients from
holding connections, threads or memory.

uvicorn bounds idle keep-alive connections and, with ``limit_concurrency``, the number of
connections, but it has no deadline for reading a request: a client that sends its
headers one byte a minute, or never sends anything, holds its connection for ever.
:func:`guarded_protocol` adds those deadlines to uvicorn's httptools protocol:

- the request line and headers must arrive within ``http_read_timeout_s`` of the
  connection (or of the request's first byte) and be at most ``MAX_HEAD_BYTES`` long;
- a body must not stall for ``http_read_timeout_s`` and, after that grace, must keep
  arriving at ``MIN_BODY_BYTES_PER_S`` on average. Time during which the server itself
  stopped reading (flow control: the app has not consumed the body yet) does not count.
- the connection cap holds when a connection is accepted, not only once its head has
  arrived (uvicorn's check, which answers 503 to every new request while slow clients
  fill the cap): at the cap, the oldest connection still sending its head (a slow
  client) or idle between requests is closed to make room, or, when every connection is
  serving a request, the new one gets a 503 at once. Slow clients thus never starve
  ``/health``, nor hold every file descriptor of a process whose open-file limit set the
  cap (``accept`` then fails, and new clients wait unaccepted in the kernel, where no
  deadline runs).

``uvicorn_options`` is what the API process and ``apipod`` in synchronous mode pass to
uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from apipod.config import Config

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MIN_BODY_BYTES_PER_S = 4096
KEEP_ALIVE_S = 5
#: At the connection cap, a connection that sent nothing yet is closed for room only once
#: open this long (its head may be waiting unread while a flood of connections is accepted).
MIN_VICTIM_AGE_S = 0.5
# File descriptors the process needs besides client connections (store, FIFOs, logs).
SPARE_FDS = 64
_HEAD_TOO_LARGE_BODY = b'{"detail":"request line and headers exceed 64 KiB"}'
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_HEAD_TOO_LARGE_BODY), _HEAD_TOO_LARGE_BODY)
)


_FULL_BODY = b'{"detail":"too many connections; try again later"}'
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\nretry-after: 1\r\ncontent-length: %d\r\n\r\n%s"
    % (len(_FULL_BODY), _FULL_BODY)
)


def uvicorn_options(config: Config) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run`` that apply the limits."""
    return {
        "http": guarded_protocol(config.http_read_timeout_s),
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": connection_cap(config.max_connections),
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "backlog": 2048,
        # Forwarded headers are applied by the app, from forwarded_allow_ips only.
        "proxy_headers": False,
    }


def connection_cap(wanted: int) -> int:
    """``wanted`` connections, after raising the soft file limit towards the hard one;
    lowered to what the limit allows, so accepting never fails for want of a descriptor
    (new clients then get a 503, not a reset)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.warning("could not raise the open-file limit from %d to %d", soft, target)
    if soft == resource.RLIM_INFINITY:
        return wanted
    cap = max(16, min(wanted, soft - SPARE_FDS))
    if cap < wanted:
        logger.warning("open-file limit %d allows %d connections, not %d", soft, cap, wanted)
    return cap


def guarded_protocol(read_timeout_s: float) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with read deadlines (see the module docstring)."""
    return type("GuardedHttpToolsProtocol", (_GuardedProtocol,), {"read_timeout_s": read_timeout_s})


class _GuardedProtocol(HttpToolsProtocol):
    read_timeout_s: float = 15.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened_at = self.loop.time()
        self._head_bytes = 0  # parsed request line and headers
        self._head_wire = 0  # bytes received while the head is not complete
        self._reading_head = True
        self._refused = False
        self._body_bytes = 0
        self._body_active_s = 0.0
        self._body_idle_s = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._arm(self.read_timeout_s, self._head_deadline)
        cap = self.limit_concurrency
        if cap is not None and len(self.connections) >= cap:
            self._make_room(cap)

    def _make_room(self, cap: int) -> None:
        """At the cap: close the oldest connection that runs no request (see
        ``_evictable``), else refuse this one with a 503 (uvicorn answers 503 from
        ``cap`` connections on)."""
        # A closing connection stays in uvicorn's set until its connection_lost runs, and
        # uvicorn answers 503 at the head of any request while the set holds ``cap``: a
        # probe right after an eviction got that 503. Closing ones count no more.
        closing = [c for c in self.connections if c.transport.is_closing()]
        self.connections.difference_update(closing)
        live = list(self.connections)
        if len(live) < cap:
            return
        opened_before = self.loop.time() - MIN_VICTIM_AGE_S
        heads = [c for c in live if c is not self and c._evictable(opened_before)]
        if heads:
            oldest = min(heads, key=lambda c: c._opened_at)
            logger.info("closing connection from %s: no request, at the cap", oldest.client)
            oldest._disarm()
            oldest.transport.close()
            self.connections.discard(oldest)
            return
        self._refused = True
        self._disarm()
        self.transport.write(_FULL)
        self.transport.close()

    def _evictable(self, opened_before: float) -> bool:
        """No request runs: idle after a response, or a head trickling in (some bytes of
        it came, not all), or nothing yet since before ``opened_before``. A client whose
        head is on its way but still unread (during a flood of connections) is spared."""
        if self._reading_head:
            return self._head_wire > 0 or self._opened_at <= opened_before
        return self.cycle is not None and self.cycle.response_complete

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._reading_head:
            self._head_wire += len(data)
        else:
            self._body_bytes += len(data)
            self._body_idle_s = 0.0
        super().data_received(data)
        if self._reading_head and self._head_wire > MAX_HEAD_BYTES:
            self._refuse_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_head:  # the next request on a kept-alive connection
            self._reading_head = True
            self._head_bytes = self._head_wire = 0
            self._arm(self.read_timeout_s, self._head_deadline)

    def on_url(self, url: bytes) -> None:
        self._head_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_bytes > MAX_HEAD_BYTES:  # the whole head came in one read
            self._refuse_head()
            return
        self._reading_head = False
        self._head_bytes = self._head_wire = 0
        self._body_bytes = 0
        self._body_active_s = self._body_idle_s = 0.0
        self._arm(1.0, self._body_tick)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._refused:
            super().on_message_complete()

    # --- deadlines ----------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_deadline(self) -> None:
        if self._reading_head and not self.transport.is_closing():
            logger.info("closing connection from %s: headers not sent in time", self.client)
            self.transport.close()

    def _body_tick(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self.flow.read_paused:  # our own back-pressure is not the client's fault
            self._body_active_s += 1.0
            self._body_idle_s += 1.0
        grace = self.read_timeout_s
        owed = MIN_BODY_BYTES_PER_S * max(0.0, self._body_active_s - grace)
        if self._body_idle_s >= grace or self._body_bytes < owed:
            logger.info("closing connection from %s: request body too slow", self.client)
            self.transport.close()
            return
        self._arm(1.0, self._body_tick)

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm()
        if not self.transport.is_closing():
            self.transport.write(_HEAD_TOO_LARGE)
            self.transport.close()
