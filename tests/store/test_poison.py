"""Poison never spreads: unstorable text is escaped, an unreadable row fails alone, and a
store file deleted under a running service is noticed (every backend where it applies)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest

from apipod.errors import StoreUnavailable
from apipod.store import JobStatus, JobStore, WorkerInfo, WorkerState, open_store
from apipod.store.sqlite import FILE_CHECK_S

UGLY = "bad \x00 byte and a lone \udc80 surrogate"


def raw_execute(database_url: str, sql: str, params: tuple = ()) -> None:
    """Change a row behind the store's back, as an operator's tool would."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=10)
        try:
            conn.execute(sql, params)
            conn.commit()
        finally:
            conn.close()
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.replace("?", "%s"), params)


def test_an_unreadable_row_in_a_batch_fails_alone_and_the_rest_run(
    store: JobStore, database_url: str
) -> None:
    jobs = [store.enqueue("/b", {"n": n}, queue_size=10, max_attempts=3) for n in range(3)]
    raw_execute(database_url, "UPDATE jobs SET inputs = ? WHERE id = ?", ("[1]", jobs[1].id))
    batch = store.claim_batch("w1", 30, {"/b": 4})
    assert [(j.id, j.inputs) for j in batch] == [(jobs[0].id, {"n": 0}), (jobs[2].id, {"n": 2})]
    poisoned = store.get(jobs[1].id)
    assert poisoned.status is JobStatus.FAILED and "cannot be read" in poisoned.error


def test_nul_and_lone_surrogates_are_stored_escaped(store: JobStore) -> None:
    job = store.enqueue("/gen", {"text": UGLY}, queue_size=10, max_attempts=1)
    claimed = store.claim("w1", 30)
    assert claimed is not None and claimed.inputs == {"text": UGLY}
    assert store.set_progress(job.id, "w1", 0.5, UGLY)
    assert store.fail(job.id, "w1", f"ValueError: {UGLY}")
    failed = store.get(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error == "ValueError: bad \\u0000 byte and a lone \\udc80 surrogate"
    assert failed.message == "bad \\u0000 byte and a lone \\udc80 surrogate"

    other = store.enqueue("/gen", {}, queue_size=10, max_attempts=1)
    store.claim("w1", 30)
    assert store.finish(other.id, "w1", {"out": UGLY})
    assert store.get(other.id).result == {"out": UGLY}  # JSON escapes read back the same


def test_a_worker_error_with_nul_is_stored(store: JobStore) -> None:
    info = WorkerInfo(id="w1", host="h", pid=1, gpu=None, state=WorkerState.FAILED, error=UGLY)
    store.upsert_worker(info)
    [row] = store.list_workers()
    assert row.error == "bad \\u0000 byte and a lone \\udc80 surrogate"


def test_a_row_that_cannot_be_read_fails_alone_on_its_first_claim(
    store: JobStore, database_url: str
) -> None:
    poison = store.enqueue("/gen", {"n": 1}, queue_size=10, max_attempts=3)
    good = store.enqueue("/gen", {"n": 2}, queue_size=10, max_attempts=3)
    raw_execute(database_url, "UPDATE jobs SET inputs = ? WHERE id = ?", ("{not json", poison.id))

    seen = store.get(poison.id)  # a reader (the API's status poll) does not crash
    assert seen is not None and seen.inputs == {} and "not valid JSON" in seen.unreadable

    claimed = store.claim("w1", 30)
    assert claimed is not None and claimed.id == good.id and claimed.inputs == {"n": 2}
    failed = store.get(poison.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert failed.error.startswith("the stored job cannot be read: stored inputs are not valid")
    assert poison.id in store.wait_for_results(0.5) or store.get(poison.id).is_terminal


def test_inputs_that_are_not_an_object_are_unreadable(store: JobStore, database_url: str) -> None:
    job = store.enqueue("/gen", {"n": 1}, queue_size=10, max_attempts=3)
    raw_execute(database_url, "UPDATE jobs SET inputs = ? WHERE id = ?", ("[1, 2]", job.id))
    assert store.claim("w1", 30) is None
    assert "not a JSON object" in store.get(job.id).error


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_file_deleted_or_replaced_is_noticed_never_recreated(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "apipod.db"
    store = open_store(f"sqlite:///{path}", tmp_path / "data")
    try:
        store.migrate()
        store.enqueue("/gen", {}, queue_size=10, max_attempts=1)
        shutil.copy(path, tmp_path / "copy.db")
        path.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            os.replace(tmp_path / "copy.db", path)
        time.sleep(FILE_CHECK_S + 0.1)
        with pytest.raises(StoreUnavailable, match=f"was {how}"):
            store.list_jobs()
        with pytest.raises(StoreUnavailable, match=f"was {how}"):
            store.enqueue("/gen", {}, queue_size=10, max_attempts=1)
        assert path.exists() == (how == "replaced")  # no empty store appeared in its place
    finally:
        store.close()
