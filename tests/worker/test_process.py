"""The worker's row in the workers table (what /health and the dashboard show), written by
a side thread while the worker's main thread changes its state; a real SQLite store."""

from __future__ import annotations

import threading
import time

from apipod.config import Config
from apipod.store import JobStore
from apipod.store.records import WorkerState
from apipod.worker.messages import WorkerSpec
from apipod.worker.process import WorkerRow

SPEC = WorkerSpec("box/w0.row", 0, None, "svc.py", Config(), "box")


class HeldMeasure(WorkerRow):
    """A WorkerRow whose next memory reading waits until the test lets it finish: the
    moment the row thread is inside a write (psutil can take milliseconds)."""

    def __init__(self, spec: WorkerSpec, store: JobStore) -> None:
        super().__init__(spec, store)
        self.measuring = threading.Event()
        self.finish_measuring = threading.Event()
        self.hold = False

    def rss_bytes(self) -> int:
        if self.hold:
            self.hold = False
            self.measuring.set()
            self.finish_measuring.wait(10)
        return super().rss_bytes()


def stored_state(store: JobStore) -> WorkerState:
    (row,) = [w for w in store.list_workers() if w.id == SPEC.worker_id]
    return row.state


def test_a_state_change_during_a_row_write_is_never_lost(store: JobStore) -> None:
    row = HeldMeasure(SPEC, store)
    row.start()
    try:
        row.hold = True
        row.update(jobs_done=1)  # wakes the row thread, which starts a write
        assert row.measuring.wait(10), "the row thread did not write"
        row.update(state=WorkerState.READY)  # the main thread, meanwhile
        row.finish_measuring.set()
        deadline = time.monotonic() + 30
        while stored_state(store) is not WorkerState.READY and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored_state(store) is WorkerState.READY
        assert row.info.state is WorkerState.READY
    finally:
        row.stop()
    assert stored_state(store) is WorkerState.READY
