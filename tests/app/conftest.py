"""Module-scoped real servers for the synchronous fixture services (one per test module)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.app.support import served


@pytest.fixture(scope="module")
def basic() -> Iterator[httpx.Client]:
    with served("sync_basic") as client:
        yield client


@pytest.fixture(scope="module")
def routes() -> Iterator[httpx.Client]:
    with served("sync_routes") as client:
        yield client


@pytest.fixture(scope="module")
def media() -> Iterator[httpx.Client]:
    with served("sync_media") as client:
        yield client
