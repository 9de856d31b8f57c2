"""The operators' part of the JobStore contract (job pages, queue positions, retry,
purge), through the public API, for every backend."""

from __future__ import annotations

import time

import pytest

from apipod.store import JobStatus, JobStore
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
    assert store.job_summary(running.id).status is JobStatus.PROCESSING
    assert store.job_summary("unknown") is None


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
    assert store.retry(later.id).status is JobStatus.QUEUED  # not ended: left as it is
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
    assert store.retry(finished.id).status is JobStatus.FINISHED
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
