"""Several processes on one real database: claims and queue limits stay exact."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from apipod.errors import QueueFull
from apipod.store import JobStore, open_store

RunChildren = Callable[[Callable[..., None], list[tuple[Any, ...]]], list[Any]]
# 2,000 racing claims catch a double claim (mutant store-claim-races: no row lock, no
# re-check of the status) and keep this module under a minute on 2 cores.
JOBS = 2_000
CLAIMERS = 3


def _claim_until_empty(url: str, data_dir: str, worker: str, start: Any, out: Any) -> None:
    """Child process: claim and finish jobs until none is left; report the seqs."""
    store = open_store(url, data_dir)
    seqs: list[int] = []
    start.wait()
    try:
        while (job := store.claim(worker, 60)) is not None:
            seqs.append(job.seq)
            if not store.finish(job.id, worker, {"by": worker}):
                raise AssertionError(f"{worker} could not finish its job {job.id}")
        out.put((worker, seqs, None))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put((worker, seqs, repr(exc)))
    finally:
        store.close()


def _claim_batches_until_empty(url: str, data_dir: str, worker: str, start: Any, out: Any) -> None:
    """Child process: claim batches of up to 8 and finish them until none is left;
    report each batch's seqs."""
    store = open_store(url, data_dir)
    batches: list[list[int]] = []
    start.wait()
    try:
        while jobs := store.claim_batch(worker, 60, {"/gen": 8}):
            batches.append([job.seq for job in jobs])
            for job in jobs:
                if not store.finish(job.id, worker, {"by": worker}):
                    raise AssertionError(f"{worker} could not finish its job {job.id}")
        out.put((worker, batches, None))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put((worker, batches, repr(exc)))
    finally:
        store.close()


def _submit_many(url: str, data_dir: str, count: int, start: Any, out: Any) -> None:
    """Child process: submit ``count`` jobs to a queue of 50; report how many fit."""
    store = open_store(url, data_dir)
    accepted = 0
    start.wait()
    try:
        for _ in range(count):
            try:
                store.enqueue("/busy", {}, queue_size=50, max_attempts=1)
                accepted += 1
            except QueueFull:
                pass
        out.put((accepted, None))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put((accepted, repr(exc)))
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_concurrent_claimers_take_every_job_once_in_order(
    store: JobStore, database_url: str, data_dir: Path, run_children: RunChildren
) -> None:
    expected = {
        store.enqueue("/gen", {"i": i}, queue_size=JOBS, max_attempts=1).seq for i in range(JOBS)
    }
    args = [(database_url, str(data_dir), f"w{i}") for i in range(CLAIMERS)]
    results = run_children(_claim_until_empty, args)
    assert [error for _, _, error in results] == [None] * CLAIMERS
    claims = Counter(seq for _, seqs, _ in results for seq in seqs)
    assert set(claims) == expected and set(claims.values()) == {1}
    for _, seqs, _ in results:
        assert seqs and all(a < b for a, b in pairwise(seqs))
    assert store.queue_depths() == {}
    assert len(store.list_jobs(status="finished", limit=JOBS)) == JOBS


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_concurrent_batch_claimers_take_every_job_once_in_fifo_batches(
    store: JobStore, database_url: str, data_dir: Path, run_children: RunChildren
) -> None:
    expected = {
        store.enqueue("/gen", {"i": i}, queue_size=JOBS, max_attempts=1).seq
        for i in range(JOBS // 2)
    }
    args = [(database_url, str(data_dir), f"w{i}") for i in range(CLAIMERS)]
    results = run_children(_claim_batches_until_empty, args)
    assert [error for _, _, error in results] == [None] * CLAIMERS
    claims = Counter(seq for _, batches, _ in results for batch in batches for seq in batch)
    assert set(claims) == expected and set(claims.values()) == {1}
    for _, batches, _ in results:
        assert all(1 <= len(batch) <= 8 for batch in batches)
        flat = [seq for batch in batches for seq in batch]
        assert all(a < b for a, b in pairwise(flat))  # FIFO within and across batches
    sizes = [len(batch) for _, batches, _ in results for batch in batches]
    assert sum(sizes) / len(sizes) > 4  # batches fill while the queue is deep
    assert store.queue_depths() == {}


@pytest.mark.timeout(120)
def test_queue_size_holds_across_processes(
    store: JobStore, database_url: str, data_dir: Path, run_children: RunChildren
) -> None:
    results = run_children(_submit_many, [(database_url, str(data_dir), 40)] * 3)
    assert [error for _, error in results] == [None] * 3
    assert sum(accepted for accepted, _ in results) == 50
    assert store.queue_depths() == {"/busy": 50}
