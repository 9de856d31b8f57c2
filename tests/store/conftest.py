"""Fixtures of the store tests: one real database per test, for every backend.

A backend is a function ``(request, tmp_path) -> database URL`` in ``DATABASE_URLS``:
``sqlite`` makes a fresh file per test; ``postgresql`` uses one database created for the
test session on a real server (see :mod:`tests.store.postgres_db`), emptied before each
test, and skips where no server is reachable.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from apipod.store import JobStore, open_store
from tests.store.postgres_db import empty_tables, fresh_database


def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'apipod.db'}"


def postgresql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = request.getfixturevalue("postgres_session_url")
    empty_tables(url)
    return url


DATABASE_URLS: dict[str, Callable[[pytest.FixtureRequest, Path], str]] = {
    "sqlite": sqlite_url,
    "postgresql": postgresql_url,
}


@pytest.fixture(scope="session")
def postgres_session_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for this test session (dropped at the end)."""
    with fresh_database() as url:
        store = open_store(url, tmp_path_factory.mktemp("pg-data"))
        try:
            store.migrate()
        finally:
            store.close()
        yield url


@pytest.fixture(params=sorted(DATABASE_URLS))
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return DATABASE_URLS[request.param](request, tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def open_another(database_url: str, data_dir: Path) -> Iterator[Callable[[], JobStore]]:
    """Open further stores on the same database (as another process would)."""
    opened: list[JobStore] = []

    def _open() -> JobStore:
        opened.append(open_store(database_url, data_dir))
        return opened[-1]

    yield _open
    for store in opened:
        store.close()


@pytest.fixture
def store(open_another: Callable[[], JobStore]) -> JobStore:
    """A migrated, empty store."""
    store = open_another()
    store.migrate()
    return store


def _run_children(target: Callable[..., None], args: list[tuple[Any, ...]]) -> list[Any]:
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    children = [context.Process(target=target, args=(*a, start, out)) for a in args]
    for child in children:
        child.start()
    start.set()
    results = [out.get(timeout=90) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    return results


@pytest.fixture
def run_children() -> Callable[[Callable[..., None], list[tuple[Any, ...]]], list[Any]]:
    """``run_children(target, [args, ...])``: one spawned process per argument tuple,
    called as ``target(*args, start, out)``; all wait on ``start`` and put one result on
    ``out``. Returns the results (in arrival order) after every child exited cleanly."""
    return _run_children
