"""Running a generator job: ChunkWriter and run_stream on a real SQLite store."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from apipod.errors import JobCancelled
from apipod.media.results import encode_result
from apipod.store import JobStore
from apipod.worker.stream import ChunkWriter, aggregate, run_stream


class CountingStore:
    """The real store, counting the transactions that append chunks."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.appends = 0

    def append_chunks(self, *args: Any) -> int | None:
        self.appends += 1
        return self.store.append_chunks(*args)


@pytest.fixture
def job_id(store: JobStore) -> str:
    store.enqueue("/gen", {}, queue_size=10, max_attempts=1)
    job = store.claim("w1", 60.0)
    assert job is not None
    return job.id


def stream(store: Any, job_id: str, output: Any, lost: threading.Event | None = None) -> Any:
    writer = ChunkWriter(store, job_id, "w1", lost or threading.Event())
    loop = asyncio.new_event_loop()
    try:
        return run_stream(output, encode_result, writer, loop)
    finally:
        loop.close()


def stored(store: JobStore, job_id: str) -> list[Any]:
    return [json.loads(c.data) for c in store.read_chunks(job_id, 0, 100_000)]


def test_a_fast_generator_is_written_in_batches_in_order(store: JobStore, job_id: str) -> None:
    counting = CountingStore(store)
    result = stream(counting, job_id, (f"t{i} " for i in range(5000)))
    assert stored(store, job_id) == [f"t{i} " for i in range(5000)]
    assert result == "".join(f"t{i} " for i in range(5000))
    assert counting.appends < 1000  # group commit: far fewer transactions than values


def test_async_generators_and_aggregates(store: JobStore, job_id: str) -> None:
    async def numbers():
        for i in range(3):
            await asyncio.sleep(0)
            yield {"i": i}

    assert stream(store, job_id, numbers()) == [{"i": 0}, {"i": 1}, {"i": 2}]
    assert aggregate([]) == [] and aggregate(["a", "b"]) == "ab" and aggregate(["a", 1]) == ["a", 1]


def test_a_lost_job_closes_the_generator_at_its_next_yield(store: JobStore, job_id: str) -> None:
    events: list[str] = []
    lost = threading.Event()

    def tokens():
        try:
            for i in range(100):
                events.append(f"yield {i}")
                if i == 2:
                    lost.set()  # what the job watch does once the job is cancelled
                yield i
        except GeneratorExit:
            events.append("GeneratorExit")
            raise

    with pytest.raises(JobCancelled):
        stream(store, job_id, tokens(), lost)
    assert events == ["yield 0", "yield 1", "yield 2", "GeneratorExit"]
    # Once lost, what is still queued is dropped (the store would refuse it anyway).
    assert stored(store, job_id) in ([], [0], [0, 1])


def test_a_value_that_cannot_be_encoded_closes_the_generator(store: JobStore, job_id: str) -> None:
    events: list[str] = []

    def values():
        try:
            yield "fine"
            yield object()
        except GeneratorExit:
            events.append("GeneratorExit")
            raise

    with pytest.raises(TypeError):
        stream(store, job_id, values())
    assert events == ["GeneratorExit"] and stored(store, job_id) == ["fine"]


def test_a_bytes_stream_aggregates_to_one_base64(store: JobStore, job_id: str) -> None:
    def chunks():
        yield b"\x00\x01"
        yield b"\x02"

    assert stream(store, job_id, chunks()) == "AAEC"  # base64 of the joined bytes
    assert stored(store, job_id) == ["AAE=", "Ag=="]  # each record: its own chunk
    assert aggregate(["a", "b"]) == "ab" and aggregate(["AAE="], None) == "AAE="
