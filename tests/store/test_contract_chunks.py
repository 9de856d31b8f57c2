"""The JobStore contract for streamed output (chunks), for every backend."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from apipod.store import JobStatus, JobStore
from tests.store.test_contract import claimed, store_with_job, submit, timed_wait


def texts(store: JobStore, job_id: str, after: int = 0, limit: int = 1000) -> list[object]:
    return [json.loads(c.data) for c in store.read_chunks(job_id, after, limit)]


def test_chunks_are_numbered_in_order_and_read_after_a_number(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    assert store.append_chunks(job.id, "w1", ["a", {"b": [1, 2]}]) == 2
    assert store.append_chunks(job.id, "w1", []) == 2
    assert store.append_chunks(job.id, "w1", ["ü", None, 3.5]) == 5
    chunks = store.read_chunks(job.id)
    assert [c.seq for c in chunks] == [1, 2, 3, 4, 5]
    assert {c.attempt for c in chunks} == {1}
    assert texts(store, job.id) == ["a", {"b": [1, 2]}, "ü", None, 3.5]
    assert texts(store, job.id, after=2) == ["ü", None, 3.5]
    assert texts(store, job.id, after=1, limit=2) == [{"b": [1, 2]}, "ü"]
    assert store.read_chunks(job.id, after_seq=5) == []
    assert store.read_chunks("unknown") == []


def test_only_the_owner_appends(store: JobStore) -> None:
    job = claimed(store_with_job(store), "owner")
    assert store.append_chunks(job.id, "intruder", ["x"]) is None
    assert store.append_chunks(job.id, "intruder", ["x", "y"]) is None
    assert store.append_chunks(job.id, "intruder", []) is None
    queued = submit(store)
    assert store.append_chunks(queued.id, "owner", ["x"]) is None
    store.cancel(job.id)
    assert store.append_chunks(job.id, "owner", ["late"]) is None
    assert store.append_chunks(job.id, "owner", ["late", "later"]) is None
    assert store.read_chunks(job.id) == [] and store.read_chunks(queued.id) == []


def test_a_value_that_is_not_json_writes_nothing(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    with pytest.raises(TypeError):
        store.append_chunks(job.id, "w1", ["fine", object()])
    assert store.read_chunks(job.id) == []


def test_a_retry_continues_the_numbering_with_its_attempt(store: JobStore) -> None:
    job = claimed(store_with_job(store), "w1")
    store.append_chunks(job.id, "w1", ["one", "two"])
    assert store.release(job.id, "w1", "worker died") is JobStatus.QUEUED
    assert store.append_chunks(job.id, "w1", ["zombie"]) is None
    again = claimed(store, "w2")
    assert again.id == job.id and again.attempts == 2
    assert store.append_chunks(job.id, "w2", ["one"]) == 3
    assert [(c.seq, c.attempt, c.data) for c in store.read_chunks(job.id)] == [
        (1, 1, '"one"'),
        (2, 1, '"two"'),
        (3, 2, '"one"'),
    ]


def test_concurrent_readers_see_a_prefix_without_gaps(
    store: JobStore, open_another: Callable[[], JobStore]
) -> None:
    job = claimed(store_with_job(store))
    reader = open_another()
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set() or len(seen) < 400:
            seen.extend(c.seq for c in reader.read_chunks(job.id, seen[-1] if seen else 0))

    thread = threading.Thread(target=read)
    thread.start()
    for batch in range(40):
        store.append_chunks(job.id, "w1", [f"{batch}-{i}" for i in range(10)])
    done.set()
    thread.join(30)
    assert seen == list(range(1, 401))


def test_expire_deletes_the_chunks_with_the_job(store: JobStore) -> None:
    job = claimed(store_with_job(store))
    store.append_chunks(job.id, "w1", ["a", "b"])
    store.finish(job.id, "w1", "ab")
    kept = claimed(store_with_job(store))
    store.append_chunks(kept.id, "w1", ["c"])
    time.sleep(0.3)
    assert store.expire(ttl_s=0.2) == 1
    assert store.get(job.id) is None and store.read_chunks(job.id) == []
    assert texts(store, kept.id) == ["c"]


@pytest.mark.parametrize("change", ["chunks", "progress", "claim", "finish", "cancel"])
def test_wait_for_stream_wakes_on_every_change_a_stream_shows(
    store: JobStore, open_another: Callable[[], JobStore], change: str
) -> None:
    other = open_another()
    job = submit(other) if change == "claim" else claimed(store_with_job(other))
    waited = timed_wait(store.wait_for_stream, timeout=10)
    if change == "chunks":
        other.append_chunks(job.id, "w1", ["x"])
    elif change == "progress":
        other.set_progress(job.id, "w1", 0.5, "half")
    elif change == "claim":
        claimed(other)
    elif change == "finish":
        other.finish(job.id, "w1", "x")
    else:
        other.cancel(job.id)
    assert waited() < 3


def test_wait_for_stream_names_the_job(
    store: JobStore, open_another: Callable[[], JobStore]
) -> None:
    other = open_another()
    job = claimed(store_with_job(other))
    store.wait_for_stream(0.05)  # start listening
    time.sleep(0.2)  # a FIFO notifier that found no listener retries its open after 0.1 s
    other.append_chunks(job.id, "w1", ["x"])
    deadline = time.monotonic() + 5
    ids: list[str] = []
    while job.id not in ids and time.monotonic() < deadline:
        ids += store.wait_for_stream(1.0)
    assert job.id in ids
