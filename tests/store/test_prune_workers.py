"""The JobStore contract, continued: worker rows of boxes that are gone get pruned."""

from __future__ import annotations

import time

from apipod.store import JobStore, WorkerInfo, WorkerState


def test_prune_workers_deletes_silent_rows_but_keeps_failures(store: JobStore) -> None:
    store.upsert_worker(WorkerInfo("gone/w0", "box-b", 10, "0", WorkerState.BUSY, "j1"))
    store.upsert_worker(WorkerInfo("gone/w1", "box-b", 11, "1", WorkerState.READY))
    failed = WorkerInfo("gone/w2", "box-b", 12, None, WorkerState.FAILED, error="no weights")
    store.upsert_worker(failed)
    time.sleep(0.3)
    store.upsert_worker(WorkerInfo("alive/w0", "box-a", 20, "0", WorkerState.READY))
    assert sorted(store.prune_workers(stale_after_s=0.2)) == ["gone/w0", "gone/w1"]
    assert [w.id for w in store.list_workers()] == ["alive/w0", "gone/w2"]
    assert store.prune_workers(stale_after_s=0.2) == []
    assert store.prune_workers(stale_after_s=60) == []
