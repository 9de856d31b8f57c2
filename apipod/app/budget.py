"""The process-wide budget of request bytes held in memory.

Each request body read into memory (JSON, urlencoded) takes its bytes from one budget
(``max_inflight_mb``) while it arrives and gives them back when the request ends. When
the budget is spent, new bytes are refused with :class:`ServerBusy` (503 with
``Retry-After``), so a burst of large requests slows clients down instead of getting the
API killed for memory. Multipart files are spooled to disk and do not count.
"""

from __future__ import annotations

import threading

from apipod.errors import ServerBusy, UploadTooLarge


class InflightBudget:
    """Bytes in flight in this process, bounded by ``limit_bytes``. Thread-safe."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def open(self) -> Reservation:
        """A reservation for one request; ``close`` it when the request ends."""
        return Reservation(self)

    def _take(self, count: int) -> None:
        with self._lock:
            if self._used + count > self.limit_bytes:
                raise ServerBusy("the server holds too many large requests; retry shortly")
            self._used += count

    def _give_back(self, count: int) -> None:
        with self._lock:
            self._used -= count


class Reservation:
    """The bytes one request holds from an :class:`InflightBudget`."""

    def __init__(self, budget: InflightBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, count: int) -> None:
        """Hold ``count`` more bytes. A request that alone needs more than the whole
        budget is too large (413); otherwise a full budget is a 503."""
        if self.held + count > self._budget.limit_bytes:
            raise UploadTooLarge(self._budget.limit_bytes, "request held in memory")
        self._budget._take(count)
        self.held += count

    def close(self) -> None:
        held, self.held = self.held, 0
        if held:
            self._budget._give_back(held)
