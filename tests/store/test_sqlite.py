"""What only the SQLite store promises: a readable file, its pragmas and indexes, local
media files, FIFOs, error mapping and URL handling."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from apipod.errors import ConfigError, StoreUnavailable
from apipod.store import JobStatus, WorkerInfo, WorkerState, open_store
from apipod.store.migrate import discover
from apipod.store.sql import build_statements, claim_sql, format_ts, parse_ts
from apipod.store.sqlite import SqliteStore

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "apipod.db", tmp_path / "data", busy_timeout_s=0.2)
    store.migrate()
    yield store
    store.close()


def read_rows(path: Path, sql: str) -> list[sqlite3.Row]:
    with sqlite3.connect(path) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


def test_a_person_can_read_the_file(sqlite_store: SqliteStore) -> None:
    job = sqlite_store.enqueue("/gen", {"prompt": "café"}, queue_size=5, max_attempts=3)
    sqlite_store.claim("w1", 30)
    sqlite_store.finish(job.id, "w1", {"caption": "ok", "scores": [0.5]})
    sqlite_store.upsert_worker(WorkerInfo("w1", "box", 7, "0", WorkerState.READY))
    (row,) = read_rows(sqlite_store.path, "SELECT * FROM jobs")
    assert (row["id"], row["endpoint"], row["status"], row["worker"]) == (
        job.id,
        "/gen",
        "finished",
        "w1",
    )
    assert json.loads(row["inputs"]) == {"prompt": "café"} and "café" in row["inputs"]
    assert json.loads(row["result"]) == {"caption": "ok", "scores": [0.5]}
    for column in ("created_at", "queued_at", "started_at", "finished_at"):
        assert TIMESTAMP.fullmatch(row[column]), (column, row[column])
    (worker,) = read_rows(sqlite_store.path, "SELECT * FROM workers")
    assert worker["state"] == "ready" and TIMESTAMP.fullmatch(worker["heartbeat_at"])


def test_timestamps_are_fixed_width_utc_text() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_ts(moment) == "2024-05-01T12:00:00.000000Z"
    assert parse_ts("2024-05-01T12:00:00.000000Z") == moment
    assert parse_ts("2024-05-01T12:00:00.000001Z").tzinfo is timezone.utc
    assert format_ts(moment) < format_ts(moment + timedelta(microseconds=1))


def test_wal_mode_and_indexes(sqlite_store: SqliteStore) -> None:
    (mode,) = read_rows(sqlite_store.path, "PRAGMA journal_mode")
    assert mode[0] == "wal"
    names = {r["name"] for r in read_rows(sqlite_store.path, "SELECT name FROM sqlite_master")}
    assert {"ix_jobs_queued", "ix_jobs_endpoint_status", "ix_jobs_finished_at"} <= names
    sql = build_statements()
    with sqlite3.connect(sqlite_store.path) as conn:
        plan = str(conn.execute(f"EXPLAIN QUERY PLAN {sql.claim_any}", ("w", "a", "b")).fetchall())
        assert "ix_jobs_queued" in plan
        plan = str(conn.execute(f"EXPLAIN QUERY PLAN {sql.recover}", (1, 2, 3, 4)).fetchall())
        assert "ix_jobs_lease" in plan
        plan = str(conn.execute(f"EXPLAIN QUERY PLAN {claim_sql(1)}", (1, 2, 3, 4)).fetchall())
        assert "ix_jobs_" in plan


def test_sequence_numbers_are_never_reused(sqlite_store: SqliteStore) -> None:
    for _ in range(3):
        job = sqlite_store.enqueue("/gen", {}, queue_size=5, max_attempts=1)
        sqlite_store.claim("w1", 30)
        sqlite_store.finish(job.id, "w1", None)
    assert sqlite_store.expire(ttl_s=-1) == 3
    assert sqlite_store.enqueue("/gen", {}, queue_size=5, max_attempts=1).seq == 4


def test_a_held_write_lock_gives_store_unavailable_and_no_half_writes(
    sqlite_store: SqliteStore,
) -> None:
    job = sqlite_store.enqueue("/gen", {}, queue_size=5, max_attempts=1)
    blocker = sqlite3.connect(sqlite_store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            sqlite_store.enqueue("/gen", {}, queue_size=5, max_attempts=1)
        with pytest.raises(StoreUnavailable):
            sqlite_store.claim("w1", 30)
        assert sqlite_store.get(job.id).status is JobStatus.QUEUED  # readers go on
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert [j.id for j in sqlite_store.list_jobs()] == [job.id]
    assert sqlite_store.claim("w1", 30).id == job.id


def test_missing_schema_and_closed_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "fresh.db", tmp_path / "data")
    with pytest.raises(StoreUnavailable, match="apipod db upgrade"):
        store.get("x")
    store.close()
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.enqueue("/gen", {}, queue_size=5, max_attempts=1)
    with pytest.raises(StoreUnavailable, match="closed"):
        store.get("x")


def test_files_live_in_the_data_dir(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    ref = sqlite_store.put_file("job1", "photo.png", b"png")
    assert ref == "files/job1/photo.png"
    assert (tmp_path / "data" / ref).read_bytes() == b"png"
    assert sqlite_store.put_file("job1", "photo.png", b"2") == "files/job1/photo-1.png"
    assert sqlite_store.put_file("job1", "..\\..\\x.png", b"3") == "files/job1/x.png"
    assert sqlite_store.put_file("job1", "..", b"4") == "files/job1/file"
    assert sorted(p.name for p in (tmp_path / "data/files/job1").iterdir()) == [
        "file",
        "photo-1.png",
        "photo.png",
        "x.png",
    ]
    with pytest.raises(ValueError):
        sqlite_store.put_file("../job", "x", b"")
    for bad in ("/etc/passwd", "files/../../apipod.db", "files/job1/../x.png"):
        with pytest.raises(ValueError):
            sqlite_store.read_file(bad)
    sqlite_store.discard_files("job1")
    assert not (tmp_path / "data/files/job1").exists()


def test_wakeup_fifos_are_created(sqlite_store: SqliteStore, tmp_path: Path) -> None:
    for name in ("work.fifo", "results.fifo"):
        assert stat.S_ISFIFO((tmp_path / "data" / "run" / name).stat().st_mode)


def test_open_store_by_url(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'sub' / 'x.db'}", tmp_path / "data")
    try:
        assert isinstance(store, SqliteStore) and store.path == tmp_path / "sub" / "x.db"
        assert store.migrate() == [m.version for m in discover()]
    finally:
        store.close()
    for url in ("mysql://db/apipod", "sqlite://", "sqlite:///:memory:", "not a url"):
        with pytest.raises(ConfigError):
            open_store(url, tmp_path)
