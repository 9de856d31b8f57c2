"""Throw-away PostgreSQL databases for tests, on the server of ``APIPOD_TEST_POSTGRES_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``). Where no server answers within
2 s, the tests that need one skip with the reason; under CI (``CI=true``, as CI runners
set it), where a server is provided, they fail instead: a quiet skip there would pass a
run that tested only half of the stores."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from typing import NoReturn

import pytest

try:
    import psycopg
except ImportError:  # pragma: no cover - the test extra installs it
    psycopg = None  # type: ignore[assignment]

ADMIN_URL = os.environ.get("APIPOD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
_unreachable: list[str] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI (where PostgreSQL must be there)."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: PostgreSQL tests must run, not skip)", pytrace=False)
    pytest.skip(reason)


def admin_connection() -> psycopg.Connection:
    """An autocommit connection to the admin database; skips the test when none answers
    (fails it under CI)."""
    if psycopg is None:
        skip_or_fail("PostgreSQL tests need psycopg 3 (pip install -e '.[test]')")
    if _unreachable:
        skip_or_fail(_unreachable[0])
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=2)
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        _unreachable.append(
            f"no PostgreSQL at {ADMIN_URL} ({reason}); set APIPOD_TEST_POSTGRES_URL to a"
            " server where this user may create databases to run these tests"
        )
        skip_or_fail(_unreachable[0])


def url_of(dbname: str) -> str:
    """The URL of ``dbname`` on the admin URL's server."""
    base, _, _ = ADMIN_URL.partition("?")
    return base.rsplit("/", 1)[0] + f"/{dbname}"


@contextlib.contextmanager
def fresh_database(prefix: str = "apipod_test") -> Iterator[str]:
    """Create an empty database (``<prefix>_<pid>_<random>``), yield its URL, drop it."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with admin_connection() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_of(name)
    finally:
        with admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    """Delete every job, worker, file and chunk (the schema stays)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
        conn.execute("SET lock_timeout = '10s'")  # a leaked transaction fails, not hangs
        conn.execute(
            "TRUNCATE jobs, workers, files, file_chunks, chunks, job_counts, job_durations, idempotency_keys,"
            " webhooks, webhook_deliveries"
            " RESTART IDENTITY"
        )
