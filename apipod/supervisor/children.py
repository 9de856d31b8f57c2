"""Child processes of the supervisor: how they are spawned and what is known of a worker
process (its lifecycle is :class:`~apipod.supervisor.lifecycle.WorkerSlot`'s)."""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import psutil

from apipod.config import Config
from apipod.worker.messages import WorkerSpec
from apipod.worker.process import worker_main

logger = logging.getLogger(__name__)

_NOT_RUNNING = frozenset(
    {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP, psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD}
)
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
class WorkerProcess:
    """A running worker process: its spec, the process and the read end of its pipe."""

    spec: WorkerSpec
    process: BaseProcess
    conn: Connection
    started_at: float = field(default_factory=time.monotonic)

    @property
    def worker_id(self) -> str:
        return self.spec.worker_id

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def messages(self) -> list[object]:
        """What the worker sent since the last call (nothing once its pipe is closed)."""
        received: list[object] = []
        try:
            while self.conn.poll():
                received.append(self.conn.recv())
        except (EOFError, OSError):
            pass  # the worker is gone; reaping handles it
        return received

    def running_freely(self) -> bool:
        """Alive and not stopped (SIGSTOP, a debugger): a worker that holds the GIL
        runs; one that is frozen is left to its lease, like a dead one."""
        if not self.process.is_alive() or self.pid is None:
            return False
        try:
            status = psutil.Process(self.pid).status()
        except psutil.Error:
            return False
        return status not in _NOT_RUNNING

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()


def start_worker(spec: WorkerSpec) -> WorkerProcess:
    parent_end, child_end = Pipe(duplex=False)
    process = spawn(
        worker_main, (spec, child_end), worker_env(spec.gpu, spec.config), spec.worker_id
    )
    child_end.close()
    logger.info(
        "worker %s: pid %s on GPU %s", spec.worker_id, process.pid, spec.gpu or "none (CPU)"
    )
    return WorkerProcess(spec=spec, process=process, conn=parent_end)


def worker_env(gpu: str | None, config: Config) -> dict[str, str]:
    env = config.to_env()
    env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    return env


def backoff_s(failures: int, base: float = 0.5, cap: float = 30.0) -> float:
    """0 for the first start, then base, 2×base, 4×base … capped."""
    if failures <= 0:
        return 0.0
    return min(cap, base * 2 ** (failures - 1))
