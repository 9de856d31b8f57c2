"""What the supervisor does about its workers: start them, read their messages, and act
when one exits, overruns its job's timeout, or keeps running a job it no longer owns."""

from __future__ import annotations

import logging
import time
from multiprocessing import Pipe
from typing import TYPE_CHECKING

from apipod.store.base import WorkerState
from apipod.supervisor.children import Slot, WorkerHandle, backoff_s, spawn, worker_env
from apipod.worker.messages import (
    EXIT_LOAD_FAILED,
    EXIT_OK,
    EXIT_RECYCLE,
    Busy,
    Idle,
    LoadFailed,
    Ready,
    Recycle,
    WorkerSpec,
)
from apipod.worker.process import worker_main

if TYPE_CHECKING:
    from apipod.supervisor.arbiter import Supervisor

logger = logging.getLogger(__name__)

MAX_LOAD_FAILURES = 5


def start_worker(supervisor: Supervisor, slot: Slot, worker_id: str) -> WorkerHandle:
    config = supervisor.config
    spec = WorkerSpec(worker_id, slot.index, slot.gpu, supervisor.target, config, supervisor.host)
    parent_end, child_end = Pipe(duplex=False)
    process = spawn(worker_main, (spec, child_end), worker_env(slot.gpu, config), worker_id)
    child_end.close()
    logger.info("worker %s: pid %s on GPU %s", worker_id, process.pid, slot.gpu or "none (CPU)")
    return WorkerHandle(spec=spec, process=process, conn=parent_end)


class WorkerEvents:
    """Reactions to worker events; the supervisor's loop calls these."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    @property
    def store(self):  # noqa: ANN201 - the supervisor's JobStore
        return self.supervisor.store

    def read_messages(self, handle: WorkerHandle) -> None:
        try:
            while handle.conn.poll():
                self._on_message(handle, handle.conn.recv())
        except (EOFError, OSError):
            pass  # the worker is gone; reaping handles it

    def _on_message(self, handle: WorkerHandle, message: object) -> None:
        if isinstance(message, Ready):
            handle.ready = True
            slot = self._slot_of(handle)
            slot.load_failures = 0
            if slot.failed_worker_id:  # the slot works again: its old failure is history
                self.store.remove_worker(slot.failed_worker_id)
                slot.failed_worker_id = None
            logger.info("worker %s (pid %s) is ready", handle.worker_id, handle.pid)
        elif isinstance(message, Busy):
            handle.job_id = message.job_id
            handle.job_timeout_s = message.timeout_s
            handle.job_deadline = (
                time.monotonic() + message.timeout_s if message.timeout_s else None
            )
            handle.lost_since = None
        elif isinstance(message, Idle):
            handle.job_id = handle.job_deadline = handle.lost_since = None
            self._slot_of(handle).crashes = 0
        elif isinstance(message, LoadFailed):
            handle.load_error = message.error
        elif isinstance(message, Recycle):
            handle.recycling = True

    def worker_exited(self, slot: Slot, handle: WorkerHandle) -> None:
        code = handle.process.exitcode
        if handle.job_id is not None:
            error = f"worker crashed (exit code {code})"
            status = self.store.release(handle.job_id, handle.worker_id, error)
            if status is not None:
                logger.warning("job %s: %s; now %s", handle.job_id, error, status)
        if code == EXIT_LOAD_FAILED or (not handle.ready and handle.load_error):
            self._load_failed(slot, handle)
            return
        self.store.remove_worker(handle.worker_id)
        if code in (EXIT_OK, EXIT_RECYCLE) or handle.recycling:
            logger.info("worker %s (pid %s) exited (code %s)", handle.worker_id, handle.pid, code)
            slot.next_start_at = time.monotonic()
            return
        slot.crashes += 1
        delay = backoff_s(slot.crashes)
        slot.next_start_at = time.monotonic() + delay
        logger.error(
            "worker %s (pid %s) died with exit code %s; respawning in %.1f s",
            handle.worker_id,
            handle.pid,
            code,
            delay,
        )

    def _load_failed(self, slot: Slot, handle: WorkerHandle) -> None:
        slot.load_failures += 1
        if slot.failed_worker_id:
            self.store.remove_worker(slot.failed_worker_id)
        slot.failed_worker_id = handle.worker_id
        error = handle.load_error or f"exited with code {handle.process.exitcode} while starting"
        if slot.load_failures >= MAX_LOAD_FAILURES:
            slot.given_up = True
            logger.error(
                "worker slot %d: on_worker_start failed %d times in a row (%s); not restarting it",
                slot.index,
                slot.load_failures,
                error,
            )
            return
        delay = backoff_s(slot.load_failures, base=1.0, cap=60.0)
        slot.next_start_at = time.monotonic() + delay
        logger.error(
            "worker %s failed to start (%s); retrying in %.0f s", handle.worker_id, error, delay
        )

    def start_timed_out(self, handle: WorkerHandle) -> None:
        timeout = self.supervisor.config.worker_start_timeout
        handle.load_error = f"on_worker_start did not finish within {timeout:g} s"
        self._write_failed_row(handle)
        logger.error("worker %s: %s; killing it", handle.worker_id, handle.load_error)
        handle.kill()

    def job_timed_out(self, handle: WorkerHandle) -> None:
        job_id = handle.job_id
        assert job_id is not None
        handle.kill()
        handle.job_id = None  # the timeout below settles the job; reaping must not release it
        handle.recycling = True  # killed on purpose: replaced at once, not backed off
        error = f"job exceeded its timeout of {handle.job_timeout_s:g} s"
        if self.store.time_out(job_id, handle.worker_id, error):
            logger.warning("job %s timed out on worker %s; worker killed", job_id, handle.worker_id)

    def check_job_still_owned(self, handle: WorkerHandle, now: float) -> None:
        job = self.store.get_state(handle.job_id) if handle.job_id else None
        owned = job is not None and not job.is_terminal and job.worker == handle.worker_id
        if owned:
            handle.lost_since = None
            return
        if handle.lost_since is None:
            handle.lost_since = now
        elif now - handle.lost_since > self.supervisor.config.cancel_grace_s:
            logger.warning(
                "worker %s still runs job %s (now %s) after %.0f s grace; killing it",
                handle.worker_id,
                handle.job_id,
                job.status if job else "gone",
                self.supervisor.config.cancel_grace_s,
            )
            handle.job_id = None
            handle.recycling = True
            handle.kill()

    def stopped_at_shutdown(self, handle: WorkerHandle) -> None:
        if handle.process.is_alive():
            logger.warning("worker %s did not finish in time; killing it", handle.worker_id)
            handle.kill()
            handle.process.join(timeout=5)
        if handle.job_id is not None and self.store.requeue(handle.job_id, handle.worker_id):
            logger.info("job %s requeued at shutdown", handle.job_id)
        self.store.remove_worker(handle.worker_id)

    def _write_failed_row(self, handle: WorkerHandle) -> None:
        from apipod.store.base import WorkerInfo

        info = WorkerInfo(
            id=handle.worker_id,
            host=handle.spec.host,
            pid=handle.pid or 0,
            gpu=handle.spec.gpu,
            state=WorkerState.FAILED,
            error=handle.load_error,
        )
        self.store.upsert_worker(info)

    def _slot_of(self, handle: WorkerHandle) -> Slot:
        return next(s for s in self.supervisor.slots if s.handle is handle)
