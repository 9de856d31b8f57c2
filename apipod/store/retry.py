"""Riding out store outages: back-off, one log line per outage, and a retrying store.

Every fault of a store (locked by another process, disk full or read-only, connection
lost) raises :class:`~apipod.errors.StoreUnavailable`; a statement refused that way wrote
nothing, so calling it again is safe (the store's verbs check ownership in the same
statement, so a repeated write that did land returns False instead of acting twice).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from apipod.errors import StoreUnavailable
from apipod.store.base import JobStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY_S = 0.05
MAX_DELAY_S = 2.0


class Outage:
    """One stretch of store faults, seen by one process: its first failure and its end
    are logged (WARNING, INFO), the tries in between only at DEBUG."""

    def __init__(self, who: str) -> None:
        self.who = who
        self._lock = threading.Lock()
        self.since: float | None = None
        self.reason: str | None = None
        self.failures = 0

    @property
    def active(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.reason = str(exc)
            if self.since is not None:
                logger.debug("%s: job store still unavailable: %s", self.who, exc)
                return
            self.since = time.monotonic()
        logger.warning("%s: job store unavailable (%s); retrying with back-off", self.who, exc)

    def succeeded(self) -> None:
        if self.since is None:
            return
        with self._lock:
            if self.since is None:
                return
            lasted = time.monotonic() - self.since
            failures, self.since, self.reason, self.failures = self.failures, None, None, 0
        logger.warning(
            "%s: job store is back after %.1f s (%d failed call(s))", self.who, lasted, failures
        )


class Backoff:
    """Delays that double from ``first`` up to ``cap``; ``reset`` after a success."""

    def __init__(self, first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S) -> None:
        self.first, self.cap = first, cap
        self.delay = first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


def call_with_retry(
    call: Callable[[], T],
    outage: Outage,
    give_up: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """``call()`` until it does not raise StoreUnavailable; re-raises once ``give_up()``."""
    backoff = Backoff()
    while True:
        try:
            result = call()
        except StoreUnavailable as exc:
            outage.failed(exc)
            if give_up():
                raise
            sleep(backoff.next())
            continue
        outage.succeeded()
        return result


class RetryingStore:
    """A :class:`JobStore` whose every call waits out store faults (see the module
    docstring). The calls named in ``give_up_calls`` stop retrying once ``give_up()``
    is true (a worker that is told to stop should not wait to claim)."""

    def __init__(
        self,
        store: JobStore,
        outage: Outage,
        give_up: Callable[[], bool] = lambda: False,
        give_up_calls: frozenset[str] = frozenset({"claim", "claim_batch", "wait_for_work"}),
    ) -> None:
        self._store = store
        self._outage = outage
        self._give_up = give_up
        self._give_up_calls = give_up_calls

    @property
    def inner(self) -> JobStore:
        return self._store

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute) or name in ("close",) or name.startswith("_"):
            return attribute
        give_up = self._give_up if name in self._give_up_calls else (lambda: False)

        def retrying(*args: Any, **kwargs: Any) -> Any:
            return call_with_retry(lambda: attribute(*args, **kwargs), self._outage, give_up)

        retrying.__name__ = name
        return retrying
