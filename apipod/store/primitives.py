"""What a dialect class gives :class:`~apipod.store.sqlstore.SqlJobStore`: rows, statement
parameters, an open transaction, and wake-up channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

Row = tuple[Any, ...]
Params = Sequence[Any]


class Transaction(Protocol):
    """Statements inside one open transaction (see ``SqlJobStore._transaction``)."""

    def rows(self, sql: str, params: Params = ()) -> list[Row]: ...

    def many(self, sql: str, rows: Sequence[Params]) -> int:
        """Run ``sql`` once per parameter row; the rows changed in all."""


T = TypeVar("T")


class Wakeup(Protocol):
    """One wake-up channel (:class:`~apipod.store.wakeup.FifoWakeup` by default)."""

    def notify(self, message: bytes = b"\x01") -> None: ...

    def wait(self, timeout: float, max_bytes: int = 1) -> bytes: ...

    def close(self) -> None: ...
