"""How a worker fills and runs a batch: on a real SQLite store, the Batcher of a real app
(in this process)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apipod import APIPod
from apipod.store import JobStore, open_store
from apipod.worker.batch import PROBE_EVERY, Batcher
from apipod.worker.runner import JobRunner
from tests.helpers import migrated_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    opened = open_store(f"sqlite:///{tmp_path / 'apipod.db'}", tmp_path / "data")
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    with migrated_store(request.param, tmp_path) as opened:
        yield opened


def batcher_for(store: JobStore, wait_ms: float) -> Batcher:
    app = APIPod(compute="serverless", provider="localhost")

    @app.endpoint("/e", batch_size=4, batch_wait_ms=wait_ms)
    def e(x: list[int]) -> list:
        return x

    @app.endpoint("/f")
    def f(x: int) -> int:
        return x

    @app.endpoint("/async", batch_size=4)
    async def doubled(x: list[int]) -> list:
        return [2 * item for item in x]

    @app.endpoint("/short", batch_size=4)
    def short(x: list[int]) -> list:
        return x[:-1]  # one result too few

    @app.endpoint("/odd", batch_size=4)
    def odd(x: list[int]) -> list:
        return [object() if item == 2 else item for item in x]  # 2's cannot be stored

    runner = JobRunner(app, store, "w1", 30)
    return Batcher(app, store, runner, "w1", 30, threading.Event())


def enqueue(store: JobStore, path: str, x: int = 0) -> str:
    return store.enqueue(path, {"x": x}, queue_size=100, max_attempts=3).id


def enqueue_later(store: JobStore, path: str, delay: float) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(delay), enqueue(store, path)))
    thread.start()
    return thread


def timed_claim(batcher: Batcher) -> tuple[list[str], float]:
    start = time.monotonic()
    jobs = batcher.claim()
    return [job.endpoint for job in jobs], time.monotonic() - start


def test_a_batch_waits_for_more_jobs_at_most_batch_wait_ms(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=600)
    enqueue(store, "/e")
    later = enqueue_later(store, "/e", 0.1)
    endpoints, took = timed_claim(batcher)
    later.join()
    assert endpoints == ["/e", "/e"] and 0.5 <= took < 3
    enqueue(store, "/e")
    endpoints, took = timed_claim(batcher)  # nobody comes: it waits the whole 600 ms
    assert endpoints == ["/e"] and 0.5 <= took < 3


def test_a_job_that_already_waited_batch_wait_ms_runs_at_once(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=1000)
    enqueue(store, "/e")
    time.sleep(1.1)
    endpoints, took = timed_claim(batcher)
    assert endpoints == ["/e"] and took < 0.75  # waiting again would take 1 s


def test_a_full_batch_needs_no_wait(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=5000)
    ids = [enqueue(store, "/e", x) for x in range(5)]
    start = time.monotonic()
    jobs = batcher.claim()
    assert [job.id for job in jobs] == ids[:4] and time.monotonic() - start < 2.5  # not 5 s
    assert len({job.batch_id for job in jobs}) == 1


def test_another_endpoints_job_stops_the_wait(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=5000)
    enqueue(store, "/e")
    later = enqueue_later(store, "/f", 0.2)
    endpoints, took = timed_claim(batcher)
    later.join()
    assert endpoints == ["/e"] and took < 2.5  # not the 5 s batch_wait_ms
    assert timed_claim(batcher)[0] == ["/f"]


def test_after_a_wait_that_brought_nothing_the_wait_is_skipped_then_probed(
    store: JobStore,
) -> None:
    batcher = batcher_for(store, wait_ms=300)
    waits = []
    for _ in range(PROBE_EVERY + 1):
        enqueue(store, "/e")
        endpoints, took = timed_claim(batcher)
        assert endpoints == ["/e"]
        waits.append(took >= 0.25)
    assert waits == [True] + [False] * (PROBE_EVERY - 1) + [True]


def test_a_job_whose_stored_inputs_do_not_validate_fails_alone(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=0)
    ids = [store.enqueue("/e", {"x": x}, queue_size=9, max_attempts=1).id for x in (1, "no", 3)]
    jobs = batcher.claim()
    assert [job.id for job in jobs] == ids
    batcher.run(jobs)
    first, bad, last = (store.get(job_id) for job_id in ids)
    assert (first.status, first.result, last.status, last.result) == ("finished", 1, "finished", 3)
    assert bad.status == "failed" and bad.error.startswith("InputValidationError: ")
    assert "Traceback" in bad.traceback  # for operators, never over HTTP


def test_a_result_list_of_the_wrong_length_fails_every_job(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=0)
    ids = [enqueue(store, "/short", x) for x in range(3)]
    batcher.run(batcher.claim())
    for job_id in ids:
        job = store.get(job_id)
        assert job.status == "failed" and job.attempts == 1
        assert job.error.startswith("BatchResultError: batched endpoint short returned 2 results")


def test_a_result_that_cannot_be_stored_fails_its_job_alone(any_store: JobStore) -> None:
    """Never raised out of the batch: that would crash the worker, run the good jobs
    again and fail the bad one as "worker crashed" instead of with its own error."""
    store = any_store
    batcher = batcher_for(store, wait_ms=0)
    ids = [enqueue(store, "/odd", x) for x in (1, 2, 3)]
    jobs = batcher.claim()
    assert [job.id for job in jobs] == ids
    batcher.run(jobs)
    first, bad, last = (store.get(job_id) for job_id in ids)
    assert (first.status, first.result, last.status, last.result) == ("finished", 1, "finished", 3)
    assert bad.status == "failed" and bad.attempts == 1
    assert bad.error == "TypeError: cannot serialise a result of type object"
    assert (first.attempts, last.attempts) == (1, 1)


def test_an_async_batched_function_runs_on_the_workers_event_loop(store: JobStore) -> None:
    batcher = batcher_for(store, wait_ms=0)
    ids = [enqueue(store, "/async", x) for x in range(3)]
    batcher.run(batcher.claim())
    assert [store.get(job_id).result for job_id in ids] == [0, 2, 4]
