"""The JobStore contract, through the public API only, for every backend."""

from __future__ import annotations

import base64
import io
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from apipod.errors import QueueFull
from apipod.store import Job, JobStatus, JobStore, WorkerInfo, WorkerState


def submit(store: JobStore, endpoint: str = "/gen", **kwargs: Any) -> Job:
    options: dict[str, Any] = {"queue_size": 1000, "max_attempts": 3}
    options.update(kwargs)
    inputs = options.pop("inputs", {"prompt": "a cat"})
    return store.enqueue(endpoint, inputs, **options)


def claimed(store: JobStore, worker: str = "w1", lease_s: float = 30.0, **kwargs: Any) -> Job:
    job = store.claim(worker, lease_s, **kwargs)
    assert job is not None
    return job


# --- enqueue, get ----------------------------------------------------------------------------
def test_enqueue_returns_the_stored_job(store: JobStore) -> None:
    before = datetime.now(timezone.utc)
    job = submit(store, inputs={"prompt": "ünïcode", "n": [1, 2]}, timeout_s=12, max_attempts=2)
    assert job.status is JobStatus.QUEUED and job.attempts == 0 and job.max_attempts == 2
    assert len(job.id) == 32 and job.timeout_s == 12.0
    assert before <= job.created_at == job.queued_at <= datetime.now(timezone.utc)
    assert store.get(job.id) == job
    assert store.get("unknown") is None


def test_enqueue_with_given_id_refuses_duplicates_and_unsafe_ids(store: JobStore) -> None:
    job = submit(store, job_id="job-1")
    assert job.id == "job-1" and store.get("job-1") == job
    with pytest.raises(ValueError):
        submit(store, job_id="job-1")
    with pytest.raises(ValueError):
        submit(store, job_id="../escape")
    assert [j.id for j in store.list_jobs()] == ["job-1"]


def test_claim_is_fifo_and_sets_the_lease(store: JobStore) -> None:
    ids = [submit(store, inputs={"i": i}).id for i in range(5)]
    before = datetime.now(timezone.utc)
    first = claimed(store, "w1", lease_s=30)
    assert first.id == ids[0] and first.inputs == {"i": 0}
    assert first.status is JobStatus.PROCESSING and first.worker == "w1" and first.attempts == 1
    assert before <= first.started_at <= first.lease_expires_at
    assert first.lease_expires_at >= before + timedelta(seconds=29)
    assert [claimed(store).id for _ in range(4)] == ids[1:]
    assert store.claim("w1", 30) is None


def test_claim_with_endpoint_filter(store: JobStore) -> None:
    a1, b1, a2, b2 = (submit(store, e).id for e in ("/a", "/b", "/a", "/b"))
    assert claimed(store, endpoints=["/b"]).id == b1
    assert store.claim("w1", 30, endpoints=[]) is None
    assert store.claim("w1", 30, endpoints=["/c"]) is None
    assert [claimed(store, endpoints=["/a", "/b"]).id for _ in range(3)] == [a1, a2, b2]


# --- queue size --------------------------------------------------------------------------------
def test_queue_full_counts_only_queued_jobs_of_the_endpoint(store: JobStore) -> None:
    for _ in range(3):
        submit(store, "/a", queue_size=3)
    with pytest.raises(QueueFull) as raised:
        submit(store, "/a", queue_size=3)
    assert raised.value.endpoint == "/a" and raised.value.queue_size == 3
    submit(store, "/b", queue_size=3)
    claimed(store, endpoints=["/a"])
    submit(store, "/a", queue_size=3)
    assert store.queue_depths() == {"/a": 3, "/b": 1}


def test_queue_size_holds_under_concurrent_submits(store: JobStore) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def submitter() -> None:
        start.wait()
        for _ in range(20):
            try:
                submit(store, "/busy", queue_size=50)
                result = "ok"
            except QueueFull:
                result = "full"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=submitter) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 50 and outcomes.count("full") == 110
    assert store.queue_depths() == {"/busy": 50}


# --- ownership -----------------------------------------------------------------------------------
def test_only_the_owner_acts_on_a_job(store: JobStore) -> None:
    job = claimed(store_with_job(store), "owner")
    assert store.heartbeat(job.id, "other", 30) is False
    assert store.set_progress(job.id, "other", 0.5, "half") is False
    assert store.finish(job.id, "other", {"x": 1}) is False
    assert store.fail(job.id, "other", "boom") is False
    assert store.time_out(job.id, "other", "slow") is False
    assert store.release(job.id, "other", "bye") is None
    assert store.get(job.id) == job
    assert store.set_progress(job.id, "owner", 0.5, "half") is True
    assert store.get(job.id).progress == 0.5 and store.get(job.id).message == "half"


def test_a_finished_job_reports_full_progress_and_keeps_its_message(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    assert store.set_progress(job.id, "w1", 0.8, "almost done") is True
    assert store.finish(job.id, "w1", "ready") is True
    done = store.get(job.id)
    assert (done.progress, done.message) == (1.0, "almost done")
    other = claimed(store_with_job(store))
    assert store.fail(other.id, "w1", "boom") is True
    assert store.get(other.id).progress is None  # only a finished job is complete


def store_with_job(store: JobStore) -> JobStore:
    submit(store)
    return store


def test_heartbeat_extends_the_lease(store: JobStore) -> None:
    job = claimed(store_with_job(store), lease_s=1)
    assert store.heartbeat(job.id, "w1", 120) is True
    assert store.get(job.id).lease_expires_at > job.lease_expires_at + timedelta(seconds=100)


@pytest.mark.parametrize("how", ["cancel", "expiry", "release"])
def test_late_finish_is_dropped(store: JobStore, how: str) -> None:
    job = claimed(store_with_job(store), lease_s=0.05)
    if how == "cancel":
        store.cancel(job.id)
    elif how == "expiry":
        time.sleep(0.1)
        assert store.recover_expired_leases() == [job.id]
    else:
        assert store.release(job.id, "w1", "shutting down") is JobStatus.QUEUED
    before = store.get(job.id)
    assert store.finish(job.id, "w1", {"late": True}) is False
    assert store.heartbeat(job.id, "w1", 30) is False
    assert store.set_progress(job.id, "w1", 1.0, "done") is False
    assert store.get(job.id) == before and before.result is None


@pytest.mark.parametrize(
    ("end", "status"),
    [("finish", JobStatus.FINISHED), ("fail", JobStatus.FAILED), ("time_out", JobStatus.TIMEOUT)],
)
def test_a_job_ends_once(store: JobStore, end: str, status: JobStatus) -> None:
    job = claimed(store_with_job(store))
    argument: Any = {"image": "ok"} if end == "finish" else "went wrong"
    assert getattr(store, end)(job.id, "w1", argument) is True
    done = store.get(job.id)
    assert done.status is status and done.is_terminal and done.lease_expires_at is None
    assert done.finished_at >= done.started_at
    if end == "finish":
        assert done.result == {"image": "ok"} and done.error is None
    else:
        assert done.error == "went wrong" and done.result is None
    assert store.finish(job.id, "w1", {"twice": True}) is False
    assert store.get(job.id) == done


# --- release and lease recovery --------------------------------------------------------------------
def test_release_requeues_at_the_original_place_then_fails(store: JobStore) -> None:
    first = submit(store, max_attempts=2)
    second = submit(store)
    assert store.release(claimed(store).id, "w1", "worker died") is JobStatus.QUEUED
    requeued = store.get(first.id)
    assert requeued.status is JobStatus.QUEUED and requeued.seq == first.seq
    assert requeued.worker is None and requeued.lease_expires_at is None
    assert requeued.attempts == 1 and requeued.error is None
    again = claimed(store, "w2")
    assert again.id == first.id and again.attempts == 2
    assert store.release(first.id, "w2", "worker died again") is JobStatus.FAILED
    failed = store.get(first.id)
    assert failed.status is JobStatus.FAILED and failed.error == "worker died again"
    assert failed.finished_at is not None
    assert claimed(store).id == second.id


def test_recover_expired_leases(store: JobStore) -> None:
    retry = submit(store, max_attempts=2)
    last_try = submit(store, max_attempts=1)
    alive = submit(store)
    # 1.5 s leases: not yet expired when checked right after the claims on a loaded box,
    # and waited for (not slept past) below
    claimed(store, "w1", lease_s=1.5)
    claimed(store, "w2", lease_s=1.5)
    claimed(store, "w3", lease_s=60)
    assert store.recover_expired_leases() == []
    recovered: list[str] = []
    deadline = time.monotonic() + 30
    while len(recovered) < 2 and time.monotonic() < deadline:
        recovered += store.recover_expired_leases()
        time.sleep(0.05)
    assert sorted(recovered) == sorted([retry.id, last_try.id])
    assert store.get(retry.id).status is JobStatus.QUEUED
    lost = store.get(last_try.id)
    assert lost.status is JobStatus.FAILED and lost.error == "lease expired"
    assert store.get(alive.id).status is JobStatus.PROCESSING
    assert store.recover_expired_leases() == []


def test_release_worker_jobs(store: JobStore) -> None:
    jobs = [submit(store).id for _ in range(3)]
    for worker in ("w1", "w2", "w3"):
        claimed(store, worker)
    released = store.release_worker_jobs(["w1", "w3"], "box restarted")
    assert sorted(released) == sorted([jobs[0], jobs[2]])
    assert [store.get(j).status for j in jobs] == [
        JobStatus.QUEUED,
        JobStatus.PROCESSING,
        JobStatus.QUEUED,
    ]
    assert store.release_worker_jobs([], "nothing") == []


# --- cancel ------------------------------------------------------------------------------------------
def test_cancel_a_queued_job(store: JobStore) -> None:
    job = submit(store)
    cancelled = store.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at is not None
    assert cancelled.error
    assert store.claim("w1", 30) is None
    assert store.queue_depths() == {}
    assert store.cancel("unknown") is None


def test_cancel_a_processing_job(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    cancelled = store.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert store.get_state(job.id, with_result=True) == cancelled
    assert store.heartbeat(job.id, "w1", 30) is False


def test_cancel_leaves_terminal_jobs_as_they_are(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    store.finish(job.id, "w1", [1, 2, 3])
    done = store.get_state(job.id, with_result=True)
    assert store.cancel(job.id) == done and done.status is JobStatus.FINISHED
    assert store.cancel(job.id).result == [1, 2, 3]


def test_get_state_reads_neither_inputs_nor_an_unwanted_result(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    store.finish(job.id, "w1", {"answer": 42})
    full = store.get(job.id)
    assert full.inputs == {"prompt": "a cat"} and full.result == {"answer": 42}
    state = store.get_state(job.id)
    assert state.inputs == {} and state.result is None
    assert state.status is JobStatus.FINISHED and state.worker == "w1" and state.seq == job.seq
    assert store.get_state(job.id, with_result=True).result == {"answer": 42}
    assert store.get_state("unknown") is None
    assert all(j.inputs == {} and j.result is None for j in store.list_jobs())


def test_fail_keeps_the_traceback_apart_from_the_error(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    assert store.fail(job.id, "w1", "ValueError: bad", "Traceback (most recent call last): ...")
    failed = store.get(job.id)
    assert failed.error == "ValueError: bad"
    assert failed.traceback == "Traceback (most recent call last): ..."


# --- history ---------------------------------------------------------------------------------------------
def test_list_jobs_newest_first_with_filters(store: JobStore) -> None:
    a1, b1, a2 = (submit(store, e).id for e in ("/a", "/b", "/a"))
    claimed(store)
    assert [j.id for j in store.list_jobs()] == [a2, b1, a1]
    assert [j.id for j in store.list_jobs(limit=2)] == [a2, b1]
    assert [j.id for j in store.list_jobs(endpoint="/a")] == [a2, a1]
    assert [j.id for j in store.list_jobs(status="queued")] == [a2, b1]
    assert [j.id for j in store.list_jobs(status=JobStatus.PROCESSING)] == [a1]
    assert [j.id for j in store.list_jobs(status="queued", endpoint="/a")] == [a2]
    assert store.list_jobs(endpoint="/none") == []


def test_queue_depths(store: JobStore) -> None:
    assert store.queue_depths() == {}
    for endpoint in ("/a", "/a", "/b"):
        submit(store, endpoint)
    claimed(store, endpoints=["/b"])
    assert store.queue_depths() == {"/a": 2}


# --- TTL -----------------------------------------------------------------------------------------------------
def finished_job(store: JobStore) -> Job:
    job = claimed(store_with_job(store))
    store.finish(job.id, "w1", {"ok": True})
    return job


def test_expire_deletes_only_old_terminal_jobs_in_batches(store: JobStore) -> None:
    old = [finished_job(store).id for _ in range(5)]
    refs = [store.put_file(job_id, "out.png", b"png") for job_id in old]
    time.sleep(0.4)
    recent = finished_job(store)
    recent_ref = store.put_file(recent.id, "out.png", b"recent")
    running = claimed(store_with_job(store))
    queued = submit(store)
    assert store.expire(ttl_s=0.2, batch_size=2) == 2
    assert store.expire(ttl_s=0.2, batch_size=2) == 2
    assert store.expire(ttl_s=0.2, batch_size=2) == 1
    assert store.expire(ttl_s=0.2, batch_size=2) == 0
    assert all(store.get(job_id) is None for job_id in old)
    for ref in refs:
        with pytest.raises(FileNotFoundError):
            store.read_file(ref)
    assert store.read_file(recent_ref) == b"recent"
    assert {store.get(j.id).status for j in (recent, queued, running)} == {
        JobStatus.FINISHED,
        JobStatus.QUEUED,
        JobStatus.PROCESSING,
    }


def test_expire_never_deletes_unfinished_jobs_however_old(store: JobStore) -> None:
    """Age alone never expires a job: the queued, running and requeued jobs here are all
    older than the TTL, and only the finished one goes."""
    done = finished_job(store)
    requeued = claimed(store_with_job(store), "w2")
    assert store.release(requeued.id, "w2", "worker died") is JobStatus.QUEUED
    running = claimed(store, "w3")
    assert running.id == requeued.id
    waiting = submit(store)
    ref = store.put_file(running.id, "in.bin", b"kept")
    time.sleep(0.4)
    assert store.expire(ttl_s=0.2) == 1
    assert store.get(done.id) is None
    assert store.get(running.id).status is JobStatus.PROCESSING
    assert store.get(waiting.id).status is JobStatus.QUEUED
    assert store.read_file(ref) == b"kept"
    assert store.release(running.id, "w3", "worker died again") is JobStatus.QUEUED
    time.sleep(0.3)
    assert store.expire(ttl_s=0.1) == 0
    assert store.get(running.id).status is JobStatus.QUEUED
    assert store.get(waiting.id).status is JobStatus.QUEUED


# --- workers -------------------------------------------------------------------------------------------------
def test_workers_upsert_list_remove(store: JobStore) -> None:
    before = datetime.now(timezone.utc)
    store.upsert_worker(WorkerInfo("w1", "box", 101, "0", WorkerState.STARTING))
    store.upsert_worker(WorkerInfo("w0", "box", 100, None, WorkerState.READY))
    store.upsert_worker(
        WorkerInfo("w1", "box", 101, "0", WorkerState.BUSY, current_job="j1", jobs_done=4)
    )
    w0, w1 = store.list_workers()
    assert (w0.id, w0.state, w0.gpu) == ("w0", WorkerState.READY, None)
    assert (w1.state, w1.current_job, w1.jobs_done, w1.pid) == (WorkerState.BUSY, "j1", 4, 101)
    assert w1.heartbeat_at >= before and w1.started_at is not None
    store.remove_worker("w0")
    assert [w.id for w in store.list_workers()] == ["w1"]


# --- files --------------------------------------------------------------------------------------------------------
def test_put_and_read_files(store: JobStore) -> None:
    job = submit(store)
    small = store.put_file(job.id, "in.png", b"\x89PNG")
    big_data = bytes(range(256)) * 12_000
    big = store.put_file(job.id, "clip.mp4", io.BytesIO(big_data))
    again = store.put_file(job.id, "in.png", b"second")
    assert store.read_file(small) == b"\x89PNG" and store.read_file(big) == big_data
    assert again != small and store.read_file(again) == b"second"
    escaped = store.put_file(job.id, "../../etc/passwd", b"inside")
    assert ".." not in escaped and store.read_file(escaped) == b"inside"


def test_read_missing_file(store: JobStore) -> None:
    ref = store.put_file("some-job", "x.bin", b"x")
    with pytest.raises(FileNotFoundError):
        store.read_file(ref.replace("x.bin", "y.bin"))


class ChunkCountingReader(io.RawIOBase):
    """A file object of ``size`` bytes that records the largest read asked of it, and
    refuses a read of everything at once (``read()`` / ``read(-1)``)."""

    def __init__(self, size: int) -> None:
        self.data = io.BytesIO(bytes(range(256)) * (size // 256))
        self.largest = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        assert size is not None and size > 0, "put_file must read in bounded chunks"
        self.largest = max(self.largest, size)
        return self.data.read(size)

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_put_file_reads_a_file_object_in_bounded_chunks(store: JobStore) -> None:
    job = submit(store)
    source = ChunkCountingReader(5 * 1024 * 1024 + 512)
    ref = store.put_file(job.id, "video.mp4", source)
    assert 0 < source.largest <= 4 * 1024 * 1024
    with store.open_file(ref) as reader:
        assert reader.read() == source.data.getvalue()


def test_open_file_streams_seeks_and_reads_ranges(store: JobStore) -> None:
    job = submit(store)
    data = bytes(range(256)) * (12 * 1024)  # 3 MiB: several chunks in the database
    ref = store.put_file(job.id, "clip.mp4", io.BytesIO(data))
    with store.open_file(ref) as reader:
        assert reader.seek(0, io.SEEK_END) == len(data)
        reader.seek(1_048_570)
        assert reader.read(20) == data[1_048_570:1_048_590]  # across a chunk boundary
        reader.seek(len(data) - 5)
        assert reader.read(100) == data[-5:] and reader.read(10) == b""
        reader.seek(0)
        pieces = iter(lambda: reader.read(300_000), b"")
        assert b"".join(pieces) == data


def test_open_file_of_a_missing_or_malformed_reference(store: JobStore) -> None:
    ref = store.put_file("some-job", "x.bin", b"x")
    with pytest.raises(FileNotFoundError):
        store.open_file(ref.replace("x.bin", "y.bin"))
    for bad in ("files/../x", "elsewhere/job/x.bin", "files/job", "files/a b/x.bin"):
        with pytest.raises(ValueError):
            store.open_file(bad)


def test_list_files_names_sizes_and_references(store: JobStore) -> None:
    job = submit(store)
    assert store.list_files(job.id) == []
    first = store.put_file(job.id, "in.png", b"\x89PNG")
    second = store.put_file(job.id, "in.png", b"second")
    empty = store.put_file(job.id, "empty.txt", b"")
    listed = {f.name: f for f in store.list_files(job.id)}
    assert sorted(listed) == sorted(ref.rsplit("/", 1)[1] for ref in (first, second, empty))
    assert {f.ref for f in listed.values()} == {first, second, empty}
    assert [listed[r.rsplit("/", 1)[1]].size for r in (first, second, empty)] == [4, 6, 0]
    assert store.list_files("another-job") == [] and store.list_files("../etc") == []
    store.discard_files(job.id)
    assert store.list_files(job.id) == []


# --- wake-ups ------------------------------------------------------------------------------------------------------
def timed_wait(wait: Callable[[float], None], timeout: float) -> Callable[[], float]:
    """Start ``wait(timeout)`` in a thread; the returned function joins and gives the time."""
    elapsed: list[float] = []

    def run() -> None:
        start = time.monotonic()
        wait(timeout)
        elapsed.append(time.monotonic() - start)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.3)  # let the waiter start listening

    def result() -> float:
        thread.join(timeout + 5)
        return elapsed[0]

    return result


def test_wait_for_work_wakes_on_enqueue(
    store: JobStore, open_another: Callable[[], JobStore]
) -> None:
    other = open_another()
    waited = timed_wait(store.wait_for_work, timeout=10)
    submit(other)
    assert waited() < 3


def test_wait_for_work_times_out(store: JobStore) -> None:
    start = time.monotonic()
    store.wait_for_work(0.3)
    assert 0.25 <= time.monotonic() - start < 3


def test_wait_for_results_wakes_on_finish(
    store: JobStore, open_another: Callable[[], JobStore]
) -> None:
    other = open_another()
    job = claimed(store_with_job(other))
    waited = timed_wait(store.wait_for_results, timeout=10)
    other.finish(job.id, "w1", "done")
    assert waited() < 3
    start = time.monotonic()
    store.wait_for_results(0.3)
    assert 0.25 <= time.monotonic() - start < 3


# --- disk --------------------------------------------------------------------------------------
def test_a_cancelled_job_keeps_its_inputs_and_files_until_its_ttl(store: JobStore) -> None:
    """Queued or running when cancelled, a job can be retried: its inputs and files stay
    until the TTL deletes them with the job, as for every ended job (issue 23)."""
    for running in (False, True):
        job = submit(store, inputs={"prompt": "x" * 10_000})
        ref = store.put_file(job.id, "in.png", b"\x89PNG" * 1000)
        if running:
            claimed(store)
        store.cancel(job.id)
        assert store.get(job.id).inputs == {"prompt": "x" * 10_000}
        assert store.read_file(ref) == b"\x89PNG" * 1000
        assert store.retry(job.id) is not None
        again = claimed(store)
        assert again.id == job.id and again.inputs == {"prompt": "x" * 10_000}
        store.cancel(job.id)
    time.sleep(0.3)
    assert store.expire(ttl_s=0.2) == 2
    with pytest.raises(FileNotFoundError):
        store.read_file(ref)


def test_stored_bytes_counts_inputs_results_and_files(store: JobStore) -> None:
    """Measured as the database sees it (pages, compressed values): roughly."""
    empty = store.stored_bytes()
    noise = base64.b64encode(os.urandom(300_000)).decode()  # 400 KB a database cannot shrink
    job = submit(store, inputs={"prompt": noise})
    store.put_file(job.id, "in.bin", b"\0" * 200_000)
    with_input = store.stored_bytes()
    assert with_input - empty >= 200_000 + 0.7 * len(noise), (empty, with_input)
    store.finish(claimed(store).id, "w1", {"text": noise})
    assert store.stored_bytes() - with_input >= 0.7 * len(noise)


def test_sweep_orphan_files_deletes_only_old_files_without_a_row(store: JobStore) -> None:
    job = submit(store)
    kept = store.put_file(job.id, "in.png", b"mine")
    orphan = store.put_file("orphan-job", "in.png", b"left by a killed API")
    time.sleep(1.0)
    young = store.put_file("submit-in-progress", "in.png", b"row comes next")
    assert store.sweep_orphan_files(older_than_s=0.8) == 1
    assert store.read_file(kept) == b"mine" and store.read_file(young) == b"row comes next"
    with pytest.raises(FileNotFoundError):
        store.read_file(orphan)
    assert store.sweep_orphan_files(older_than_s=0.0) == 1  # now the young one too


# --- batches -----------------------------------------------------------------------------------
def test_claim_batch_takes_the_oldest_jobs_of_one_endpoint_in_queue_order(
    store: JobStore,
) -> None:
    ids = [submit(store, "/b" if i % 3 else "/a", inputs={"i": i}).id for i in range(10)]
    first = store.claim_batch("w1", 30, {"/a": 1, "/b": 4})
    assert [j.id for j in first] == [ids[0]] and first[0].batch_id is None  # /a: unbatched
    batch = store.claim_batch("w1", 30, {"/a": 1, "/b": 4})
    assert [j.id for j in batch] == [ids[1], ids[2], ids[4], ids[5]]
    assert len({j.batch_id for j in batch}) == 1 and batch[0].batch_id is not None
    for job in batch:
        assert job.status is JobStatus.PROCESSING and job.worker == "w1" and job.attempts == 1
        assert job.lease_expires_at is not None and store.get(job.id) == job
    for index in (3, 6):
        assert [j.id for j in store.claim_batch("w2", 30, {"/a": 1, "/b": 4})] == [ids[index]]
    rest = store.claim_batch("w2", 30, {"/a": 1, "/b": 4})
    assert [j.id for j in rest] == [ids[7], ids[8]] and rest[0].batch_id != batch[0].batch_id
    assert store.queue_depths() == {"/a": 1}
    assert store.claim_batch("w2", 30, {"/b": 4}) == []
    assert store.claim_batch("w2", 30, {}) == []


def test_claim_batch_tops_up_a_batch_and_each_job_ends_on_its_own(store: JobStore) -> None:
    first = submit(store, "/b")
    (head,) = store.claim_batch("w1", 30, {"/b": 3})
    later = [submit(store, "/b").id for _ in range(3)]
    more = store.claim_batch("w1", 30, {"/b": 1}, batch_id=head.batch_id)
    assert [j.id for j in more] == later[:1] and more[0].batch_id == head.batch_id
    assert head.id == first.id
    assert store.finish(head.id, "w1", "ok")
    assert store.fail(more[0].id, "w1", "ValueError: bad input")
    assert store.get(head.id).status is JobStatus.FINISHED
    failed = store.get(more[0].id)
    assert failed.status is JobStatus.FAILED and failed.batch_id == head.batch_id
    ran_together = [j.id for j in store.list_jobs() if j.batch_id == head.batch_id]
    assert sorted(ran_together) == sorted([head.id, more[0].id])


def test_claim_batch_release_requeues_each_job_with_its_own_attempts(store: JobStore) -> None:
    once = submit(store, "/b", max_attempts=1)
    twice = submit(store, "/b", max_attempts=2)
    batch = store.claim_batch("w1", 30, {"/b": 8})
    assert [j.id for j in batch] == [once.id, twice.id]
    released = store.release_worker_jobs(["w1"], "worker crashed (exit code -9)")
    assert sorted(released) == sorted([once.id, twice.id])
    assert store.get(once.id).status is JobStatus.FAILED
    assert store.get(twice.id).status is JobStatus.QUEUED
    fresh = [submit(store, "/b").id for _ in range(3)]
    (again,) = store.claim_batch("w2", 30, {"/b": 8})  # a retried job runs alone
    assert again.id == twice.id and again.attempts == 2 and again.batch_id != batch[0].batch_id
    assert store.release(again.id, "w2", "worker crashed") is JobStatus.FAILED
    assert [j.id for j in store.claim_batch("w2", 30, {"/b": 8})] == fresh


def test_claim_batch_top_up_takes_only_jobs_on_their_first_attempt(store: JobStore) -> None:
    retried = submit(store, "/b", max_attempts=3)
    store.claim_batch("w1", 30, {"/b": 8})
    store.release_worker_jobs(["w1"], "lease expired")
    fresh = submit(store, "/b")
    more = store.claim_batch("w2", 30, {"/b": 3}, batch_id="batch-1")
    assert [(j.id, j.batch_id) for j in more] == [(fresh.id, "batch-1")]
    assert store.get(retried.id).status is JobStatus.QUEUED
    (alone,) = store.claim_batch("w2", 30, {"/b": 3})
    assert alone.id == retried.id and alone.attempts == 2


def test_claim_batch_skips_cancelled_jobs(store: JobStore) -> None:
    jobs = [submit(store, "/b", inputs={"i": i}) for i in range(3)]
    store.cancel(jobs[1].id)
    batch = store.claim_batch("w1", 30, {"/b": 4})
    assert [j.id for j in batch] == [jobs[0].id, jobs[2].id]
    assert store.get(jobs[1].id).status is JobStatus.CANCELLED


def test_claim_batch_refuses_sizes_below_one(store: JobStore) -> None:
    submit(store, "/b")
    with pytest.raises(ValueError):
        store.claim_batch("w1", 30, {"/b": 0})
    assert store.queue_depths() == {"/b": 1}
