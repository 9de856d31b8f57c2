"""The operators' part of the JobStore contract (job pages, queue positions, retry,
purge), through the public API, for every backend."""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest

from apipod.store import JobStatus, JobStore
from apipod.store.operations import DURATION_BUCKETS
from tests.store.test_contract import claimed, submit


def test_job_summaries_page_by_cursor_without_payloads(store: JobStore) -> None:
    ids = [submit(store, "/a" if i % 2 else "/b", inputs={"big": "x" * 1000}).id for i in range(7)]
    first = store.job_summaries(limit=3)
    assert [j.id for j in first] == ids[::-1][:3]
    assert all(j.inputs == {} and j.result is None for j in first)
    second = store.job_summaries(limit=3, before_seq=first[-1].seq)
    last = store.job_summaries(limit=3, before_seq=second[-1].seq)
    assert [j.id for j in first + second + last] == ids[::-1]
    only_a = store.job_summaries(endpoints=["/a"])
    assert [j.id for j in only_a] == [ids[5], ids[3], ids[1]]
    running = claimed(store)
    assert [j.id for j in store.job_summaries(statuses=["processing"])] == [running.id]
    both = store.job_summaries(statuses=["processing", "queued"], endpoints=["/b", "/a"])
    assert len(both) == 7
    assert store.get_state(running.id).status is JobStatus.PROCESSING
    assert store.get_state("unknown") is None


def test_queue_positions_follow_the_claim_order(store: JobStore) -> None:
    jobs = [submit(store, endpoint) for endpoint in ("/a", "/b", "/a", "/b")]
    seqs = [j.seq for j in jobs]
    assert store.queue_positions(seqs) == dict(zip(seqs, [1, 2, 3, 4], strict=True))
    claimed(store)  # takes the first
    store.cancel(jobs[2].id)
    assert store.queue_positions(seqs) == {seqs[1]: 1, seqs[3]: 2}
    assert store.queue_positions([]) == {}


def test_retry_puts_an_ended_job_back_as_a_new_attempt(store: JobStore) -> None:
    job = submit(store, max_attempts=1)
    claimed(store)
    assert store.fail(job.id, "w1", "boom")
    later = submit(store)
    retried = store.retry(job.id)
    assert retried is not None and retried.status is JobStatus.QUEUED
    assert retried.error is None and retried.worker is None and retried.finished_at is None
    assert retried.attempts == 1 and retried.max_attempts == 2 and retried.queued_at > job.queued_at
    again = claimed(store)
    assert again.id == job.id and again.attempts == 2  # its old place: before `later`
    # one more attempt only: a crash now fails it instead of requeueing it
    assert store.release(job.id, "w1", "worker crashed") is JobStatus.FAILED
    assert store.retry(later.id) is None  # not ended: left as it is
    assert store.get(later.id).status is JobStatus.QUEUED
    assert store.retry("unknown") is None


def test_retry_of_cancelled_and_timed_out_jobs(store: JobStore) -> None:
    cancelled = submit(store)
    store.cancel(cancelled.id)
    timed_out = submit(store)
    claimed(store, endpoints=["/gen"])
    assert store.time_out(timed_out.id, "w1", "took too long")
    finished = submit(store)
    claimed(store)
    assert store.finish(finished.id, "w1", {"ok": True})
    assert store.retry(cancelled.id).status is JobStatus.QUEUED
    assert store.retry(timed_out.id).status is JobStatus.QUEUED
    assert store.retry(finished.id) is None
    assert store.get(finished.id).result == {"ok": True}


def test_purge_deletes_only_ended_jobs_of_the_given_statuses(store: JobStore) -> None:
    done = submit(store)
    claimed(store)
    ref = store.put_file(done.id, "out.png", b"png")
    store.finish(done.id, "w1", {"ok": True})
    cancelled = [submit(store) for _ in range(3)]
    for job in cancelled:
        store.cancel(job.id)
    queued = submit(store)
    assert store.purge(3600) == 0  # none ended an hour ago
    assert store.purge(0, ["cancelled"], batch_size=2) == 3
    assert store.get(done.id) is not None and store.get(queued.id) is not None
    time.sleep(0.01)
    assert store.purge(0) == 1
    assert [j.id for j in store.job_summaries()] == [queued.id]
    with pytest.raises(FileNotFoundError):
        store.read_file(ref)
    with pytest.raises(ValueError):
        store.purge(0, ["queued"])


def test_job_metrics_count_every_job_once_and_outlive_the_jobs(store: JobStore) -> None:
    a1, a2, a3 = (submit(store, "/a").id for _ in range(3))
    b1 = submit(store, "/b").id
    assert claimed(store).id == a1
    assert store.finish(a1, "w1", {"ok": True})
    assert claimed(store).id == a2
    assert store.fail(a2, "w1", "boom")
    store.cancel(a3)
    store.cancel(a3)  # no second count
    metrics = store.job_metrics()
    assert metrics.counts == {
        ("/a", "submitted"): 3,
        ("/b", "submitted"): 1,
        ("/a", "finished"): 1,
        ("/a", "failed"): 1,
        ("/a", "cancelled"): 1,
    }
    assert metrics.active == {("/b", "queued"): 1}
    waits = [row for row in metrics.durations if row[0] == "wait"]
    runs = [row for row in metrics.durations if row[0] == "run"]
    assert sum(row[3] for row in waits) == 2 and sum(row[3] for row in runs) == 2
    assert {row[1] for row in waits + runs} == {"/a"}
    assert all(row[2] in BUCKET_LABELS and row[4] >= 0 for row in waits + runs)
    assert sum(row[4] for row in runs) < 5.0  # seconds, not days or microseconds
    # a requeued job starts again: its wait is counted once, at its first start
    assert claimed(store).id == b1
    assert store.release(b1, "w1", "crashed") is JobStatus.QUEUED
    assert claimed(store).id == b1
    assert store.job_metrics().active == {("/b", "processing"): 1}
    waits_b = [r for r in store.job_metrics().durations if r[:2] == ("wait", "/b")]
    assert sum(row[3] for row in waits_b) == 1
    assert store.purge(0) == 3
    assert store.job_metrics().counts[("/a", "submitted")] == 3


def test_job_durations_are_the_real_wait_and_run_times(store: JobStore) -> None:
    """Each histogram value is the time between the job's stored timestamps, in seconds
    (the contract test above only bounds them)."""
    job = submit(store, "/timed")
    time.sleep(0.15)  # a measurable wait, then a measurable run
    assert claimed(store).id == job.id
    time.sleep(0.15)
    assert store.finish(job.id, "w1", {"ok": True})
    ended = store.get(job.id)
    assert ended.queued_at and ended.started_at and ended.finished_at
    expected = {
        "wait": (ended.started_at - ended.queued_at).total_seconds(),
        "run": (ended.finished_at - ended.started_at).total_seconds(),
    }
    rows = [row for row in store.job_metrics().durations if row[1] == "/timed"]
    observed = {metric: (count, total) for metric, _, _, count, total in rows}
    assert set(observed) == {"wait", "run"}
    for metric, seconds in expected.items():
        count, total = observed[metric]
        assert seconds >= 0.1 and count == 1, (metric, seconds)
        assert total == pytest.approx(seconds, abs=0.002), metric
        (le,) = [row[2] for row in rows if row[0] == metric]
        assert le == next(f"{b:g}" for b in DURATION_BUCKETS if b >= seconds), metric


def test_the_migration_sorts_by_the_readers_buckets() -> None:
    from apipod.store.migrate import discover

    migration = next(m for m in discover() if m.version == "0006")
    spec = importlib.util.spec_from_file_location("m0006", migration.path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.BUCKETS == DURATION_BUCKETS


BUCKET_LABELS = {f"{b:g}" for b in DURATION_BUCKETS} | {"+Inf"}


def test_an_idempotency_key_binds_one_job_until_the_job_is_gone(store: JobStore) -> None:
    first = store.reserve_idempotency_key("/a", "key-1", "hash-1", "job-1")
    assert (first.job_id, first.request_hash) == ("job-1", "hash-1")
    again = store.reserve_idempotency_key("/a", "key-1", "hash-2", "job-2")
    assert (again.job_id, again.request_hash) == ("job-1", "hash-1")
    assert again.created_at == first.created_at
    other = store.reserve_idempotency_key("/b", "key-1", "hash-3", "job-3")
    assert other.job_id == "job-3"  # keys are per endpoint
    store.release_idempotency_key("/a", "key-1", "job-2")  # not its job: kept
    assert store.reserve_idempotency_key("/a", "key-1", "h", "job-4").job_id == "job-1"
    store.release_idempotency_key("/a", "key-1", "job-1")
    assert store.reserve_idempotency_key("/a", "key-1", "h", "job-5").job_id == "job-5"
    # the binding goes with its job (purge here; the TTL's expire deletes rows alike)
    job = submit(store, "/c", job_id="job-6")
    store.reserve_idempotency_key("/c", "key-2", "h", job.id)
    store.cancel(job.id)
    assert store.purge(0) == 1
    assert store.reserve_idempotency_key("/c", "key-2", "h", "job-7").job_id == "job-7"
    expired = submit(store, "/c", job_id="job-8")
    store.reserve_idempotency_key("/c", "key-3", "h", expired.id)
    store.cancel(expired.id)
    time.sleep(0.01)
    assert store.expire(0) == 1
    assert store.reserve_idempotency_key("/c", "key-3", "h", "job-9").job_id == "job-9"


def test_racing_reservations_of_one_key_have_one_winner(store: JobStore) -> None:
    barrier = threading.Barrier(8)
    winners: list[str] = []

    def reserve(index: int) -> None:
        barrier.wait()
        record = store.reserve_idempotency_key("/a", "raced", "h", f"job-{index}")
        winners.append(record.job_id)

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(winners) == 8 and len(set(winners)) == 1


def test_purge_takes_a_jobs_streamed_chunks_with_it(store: JobStore) -> None:
    job = submit(store)
    claimed(store)
    assert store.append_chunks(job.id, "w1", ["a", "b"]) is not None
    store.finish(job.id, "w1", ["a", "b"])
    assert len(store.read_chunks(job.id)) == 2
    assert store.purge(0) == 1
    assert store.read_chunks(job.id) == []
