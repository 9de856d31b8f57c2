"""Fixture: endpoints registered on an app the test builds, as the original APIPod's own
tests did (``register(app)``, then ``with TestClient(app.app) as client``).

The jobs of queue mode run in the test's process (the embedded worker), so the functions
share ``STATE`` with the test: gates a test opens to hold a job running, and records of
what ran, in which thread and in which order.
"""

from __future__ import annotations

import os
import threading
import time
from typing import List, Optional, Union

from pydantic import BaseModel

from apipod import APIPod, FileModel, ImageFile, JobProgress, MediaFile, MediaList


class Order(BaseModel):
    dish: str = "soup"
    portions: int = 1


class State:
    """What the functions saw; reset by :func:`reset` before each test."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.ran: list[str] = []
        self.batches: list[int] = []
        self.stopped: list[str] = []
        self.loaded_in: tuple[int, str] | None = None


STATE = State()


def reset() -> None:
    STATE.gate = threading.Event()
    STATE.ran.clear()
    STATE.batches.clear()
    STATE.stopped.clear()


def register(app: APIPod) -> None:
    @app.on_worker_start
    def load() -> None:
        STATE.loaded_in = (os.getpid(), threading.current_thread().name)

    @app.endpoint("/fries")
    def fries(job_progress: JobProgress, fries_name: str, amount: int = 1):
        job_progress.set_status(0.5, "frying")
        return f"Your fries {fries_name} are ready"

    @app.endpoint("/loaded")
    def loaded():
        pid, thread = STATE.loaded_in or (None, None)
        here = threading.current_thread().name
        return {"pid": pid, "thread": thread, "here": here, "api_pid": os.getpid()}

    @app.endpoint("/record")
    def record(name: str):
        STATE.ran.append(name)
        return name

    @app.endpoint("/held")
    def held(job_progress: JobProgress, name: str = "held"):
        """Reports progress, then waits for the test to open the gate."""
        job_progress.set_status(0.25, "waiting at the gate")
        while not STATE.gate.wait(0.01):
            try:
                job_progress.set_status(0.5, "waiting at the gate")
            except Exception:
                STATE.stopped.append(name)
                raise
        return name

    @app.endpoint("/slow", job_timeout=0.5)
    def slow(job_progress: JobProgress):
        """Runs past its 0.5 s timeout, reporting progress until it is stopped."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.02)
            try:
                job_progress.set_status(0.5, "still going")
            except Exception:
                STATE.stopped.append("slow")
                raise
        return "never"

    @app.endpoint("/tokens")
    def tokens(count: int = 3):
        for i in range(count):
            yield f"t{i} "

    @app.endpoint("/raw-chunks")
    def raw_chunks():
        yield b"\x00\x01"
        yield b"\x02"

    @app.endpoint("/double", batch_size=4, batch_wait_ms=2000)
    def double(value: list[int]) -> list[int]:
        STATE.batches.append(len(value))
        return [v * 2 for v in value]

    @app.endpoint("/union")
    def union(img: Union[ImageFile, str, bytes, FileModel]):
        return {"type": type(img).__name__, "text": img if isinstance(img, str) else None}

    @app.endpoint("/order")
    def order(order: Order):
        return order.model_dump()

    @app.endpoint("/media-items")
    def media_items(items: List[MediaFile], more: Optional[MediaList] = None):
        return {
            "container": type(items).__name__,
            "kinds": [type(item).__name__ for item in items],
            "more": [type(item).__name__ for item in more] if more else None,
        }
