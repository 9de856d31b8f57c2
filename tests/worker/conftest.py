"""Fixtures of the worker tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from apipod.store import JobStore, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    """A migrated SQLite store in this test's own folder (the worker's side of it)."""
    opened = open_store(f"sqlite:///{tmp_path / 'apipod.db'}", tmp_path / "data")
    opened.migrate()
    yield opened
    opened.close()
