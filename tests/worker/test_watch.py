"""JobWatch (the side thread of a running job) against a real SQLite store.

Progress writes are observed with an SQLite trigger that logs every UPDATE of the
job's progress/message columns, so the test sees exactly what reached the database.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from apipod.errors import JobCancelled
from apipod.store import JobStatus, JobStore
from apipod.worker.watch import PROGRESS_INTERVAL_S, JobWatch

WORKER = "box/w0.test"


@pytest.fixture
def db_file(tmp_path: Path, store: JobStore) -> Path:
    return tmp_path / "apipod.db"


def claimed_job(store: JobStore, db_file: Path, lease_s: float = 30.0) -> str:
    store.enqueue("/steps", {}, queue_size=100, max_attempts=3)
    job = store.claim(WORKER, lease_s)
    assert job is not None
    install_progress_log(db_file)  # after the claim, which resets progress itself
    return job.id


def install_progress_log(db_file: Path) -> None:
    conn = sqlite3.connect(db_file, timeout=10)
    try:
        conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS progress_log (
                n INTEGER PRIMARY KEY AUTOINCREMENT,
                job TEXT, progress REAL, message TEXT,
                at REAL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
            );
            CREATE TRIGGER IF NOT EXISTS log_progress AFTER UPDATE OF progress, message ON jobs
            BEGIN
                INSERT INTO progress_log (job, progress, message)
                VALUES (NEW.id, NEW.progress, NEW.message);
            END;
            """
        )
    finally:
        conn.close()


def progress_writes(db_file: Path, job_id: str) -> list[tuple[float | None, str | None, float]]:
    conn = sqlite3.connect(db_file, timeout=10)
    try:
        rows = conn.execute(
            "SELECT progress, message, at FROM progress_log WHERE job = ? ORDER BY n", (job_id,)
        ).fetchall()
    finally:
        conn.close()
    return [tuple(row) for row in rows]


def test_a_burst_of_reports_is_coalesced_and_the_last_value_wins(
    store: JobStore, db_file: Path
) -> None:
    job_id = claimed_job(store, db_file)
    with JobWatch(store, job_id, WORKER, lease_s=30) as watch:
        for i in range(1, 1001):
            watch.report(i / 1000, f"step {i}/1000")
        time.sleep(3 * PROGRESS_INTERVAL_S + 0.3)  # the thread catches up on its own
        writes = progress_writes(db_file, job_id)
    assert 1 <= len(writes) <= 10, f"1000 reports in a burst gave {len(writes)} writes"
    assert writes[-1][:2] == (1.0, "step 1000/1000")
    job = store.get(job_id)
    assert job is not None
    assert (job.progress, job.message) == (1.0, "step 1000/1000")


def test_steady_reports_are_throttled_but_visible_while_running(
    store: JobStore, db_file: Path
) -> None:
    job_id = claimed_job(store, db_file)
    seen_mid_run: set[float] = set()
    with JobWatch(store, job_id, WORKER, lease_s=30) as watch:
        for i in range(1, 101):  # 100 reports over ~0.8 s
            watch.report(i / 100, f"step {i}/100")
            time.sleep(0.008)
            if i % 10 == 0:
                job = store.get(job_id)
                if job is not None and job.progress is not None:
                    seen_mid_run.add(job.progress)
        watch.flush()
    writes = progress_writes(db_file, job_id)
    # at most one write per PROGRESS_INTERVAL_S (plus the flush and some scheduling slack)
    assert 3 <= len(writes) <= 0.9 / PROGRESS_INTERVAL_S + 4, len(writes)
    progresses = [p for p, _, _ in writes]
    assert progresses == sorted(progresses), "progress must be written in report order"
    for progress, message, _ in writes:
        assert message == f"step {round(progress * 100)}/100"
    gaps = [b - a for (_, _, a), (_, _, b) in zip(writes, writes[1:], strict=False)][:-1]
    assert gaps and min(gaps) >= PROGRESS_INTERVAL_S * 0.5, gaps
    assert len(seen_mid_run) >= 3, f"progress was not visible while running: {seen_mid_run}"
    assert writes[-1][:2] == (1.0, "step 100/100")


def test_flush_writes_the_last_value_before_the_result(store: JobStore, db_file: Path) -> None:
    job_id = claimed_job(store, db_file)
    with JobWatch(store, job_id, WORKER, lease_s=30) as watch:
        watch.report(0.25, "step 1/4")
        watch.report(0.5, "step 2/4")
        watch.report(0.75, "step 3/4")
        watch.report(1.0, "step 4/4")
        watch.flush()  # what the runner does right before storing the result
        job = store.get(job_id)
        assert job is not None
        assert (job.progress, job.message) == (1.0, "step 4/4")
        assert store.finish(job_id, WORKER, {"steps": 4})
    job = store.get(job_id)
    assert job is not None
    assert job.status == JobStatus.FINISHED
    assert (job.progress, job.message) == (1.0, "step 4/4")
    assert job.result == {"steps": 4}
    writes = progress_writes(db_file, job_id)
    assert writes[-1][:2] == (1.0, "step 4/4")


def test_report_raises_job_cancelled_after_a_cancel(store: JobStore, db_file: Path) -> None:
    job_id = claimed_job(store, db_file)
    with JobWatch(store, job_id, WORKER, lease_s=30) as watch:
        watch.report(0.1, "step 1/10")
        time.sleep(0.2)
        assert store.cancel(job_id).status == JobStatus.CANCELLED
        cancelled_at = time.monotonic()
        with pytest.raises(JobCancelled):
            deadline = time.monotonic() + 3
            i = 2
            while time.monotonic() < deadline:
                watch.report(i / 10, f"step {i}/10")
                i += 1
                time.sleep(0.02)
        noticed_after = time.monotonic() - cancelled_at
        assert watch.lost.is_set()
    assert noticed_after < 1.5, f"cancel noticed only after {noticed_after:.2f} s"
    job = store.get(job_id)
    assert job is not None
    assert job.status == JobStatus.CANCELLED


def test_report_raises_once_another_worker_owns_the_job(store: JobStore, db_file: Path) -> None:
    job_id = claimed_job(store, db_file, lease_s=0.3)
    with JobWatch(store, job_id, WORKER, lease_s=30) as watch:
        # the lease ran out (as for a hung worker) and another worker took the job
        time.sleep(0.4)
        assert store.recover_expired_leases() == [job_id]
        other = store.claim("box/w1.other", 30)
        assert other is not None and other.id == job_id
        with pytest.raises(JobCancelled):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                watch.report(0.5, "still going")
                time.sleep(0.02)
    job = store.get(job_id)
    assert job is not None
    assert job.worker == "box/w1.other"
    assert job.status == JobStatus.PROCESSING


def test_heartbeats_keep_the_lease_alive(store: JobStore, db_file: Path) -> None:
    # Heartbeats come every lease_s / 3: the lease leaves a loaded box 1 s to write one.
    job_id = claimed_job(store, db_file, lease_s=1.5)
    first = store.get(job_id)
    assert first is not None and first.lease_expires_at is not None
    with JobWatch(store, job_id, WORKER, lease_s=1.5):
        for _ in range(10):  # 2.5 s, well past the first lease
            time.sleep(0.25)
            assert store.recover_expired_leases() == []
    job = store.get(job_id)
    assert job is not None
    assert job.status == JobStatus.PROCESSING and job.worker == WORKER
    assert job.lease_expires_at is not None and job.lease_expires_at > first.lease_expires_at
