"""Child processes of the supervisor: how they are spawned and what is known of them."""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from apipod.config import Config
from apipod.worker.messages import WorkerSpec

logger = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
_ENV_LOCK = threading.Lock()


def spawn(target: Any, args: tuple[Any, ...], env: dict[str, str], name: str) -> BaseProcess:
    """Start ``target(*args)`` in a fresh interpreter whose environment has ``env`` set
    from its first instruction (spawn copies ``os.environ`` when the child starts, so
    CUDA_VISIBLE_DEVICES is in place before anything in the child imports CUDA)."""
    with _ENV_LOCK:
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            process = _SPAWN.Process(target=target, args=args, name=name)
            process.start()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    return process


def new_worker_id(box_id: str, index: int) -> str:
    return f"{box_id}/w{index}.{secrets.token_hex(3)}"


@dataclass
class WorkerHandle:
    """A running worker process as the supervisor sees it."""

    spec: WorkerSpec
    process: BaseProcess
    conn: Connection
    started_at: float = field(default_factory=time.monotonic)
    ready: bool = False
    job_id: str | None = None
    job_deadline: float | None = None
    job_timeout_s: float | None = None
    lost_since: float | None = None
    load_error: str | None = None
    recycling: bool = False

    @property
    def worker_id(self) -> str:
        return self.spec.worker_id

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()


@dataclass
class Slot:
    """One of ``max_workers`` places, each pinned to a GPU, refilled when its worker
    exits. ``load_failures`` counts failed starts in a row (reset once ready)."""

    index: int
    gpu: str | None
    handle: WorkerHandle | None = None
    load_failures: int = 0
    crashes: int = 0
    next_start_at: float = 0.0
    given_up: bool = False
    failed_worker_id: str | None = None


def worker_env(gpu: str | None, config: Config) -> dict[str, str]:
    env = config.to_env()
    env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    return env


def backoff_s(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """0 for the first start, then base, 2×base, 4×base … capped."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2 ** (failures - 1))
