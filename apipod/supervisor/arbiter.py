"""The supervisor: one API process and ``max_workers`` GPU-pinned worker processes.

Like gunicorn's arbiter, signal handlers only queue the signal; the main loop waits on
the children's pipes, their sentinels and the signal wake-up fd, then acts. It enforces
job timeouts and cancellation by killing workers, respawns crashed workers with back-off,
and stops respawning a worker whose ``on_worker_start`` keeps failing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time
from collections import deque
from multiprocessing.connection import wait
from pathlib import Path

from apipod.config import Config
from apipod.store import open_store
from apipod.store.base import JobStore
from apipod.supervisor.api_process import api_main
from apipod.supervisor.children import Slot, new_worker_id, spawn
from apipod.supervisor.gpus import gpu_for_worker, resolve_gpus
from apipod.supervisor.webhooks import WebhookSender
from apipod.supervisor.workers import WorkerEvents, start_worker

logger = logging.getLogger(__name__)

TICK_S = 0.1
CANCEL_POLL_S = 0.25
API_START_GRACE_S = 5.0
# A worker row not refreshed for this many leases (at least the floor) belongs to a box
# that is gone for good: its row is deleted so /health stops listing it.
PRUNE_WORKERS_AFTER_LEASES = 10
PRUNE_WORKERS_FLOOR_S = 30.0


class Supervisor:
    """Runs until SIGTERM/SIGINT, then shuts down gracefully and returns 0."""

    def __init__(self, config: Config, target: str) -> None:
        self.config = config
        self.target = target
        self.host = socket.gethostname()
        self.box_id = box_id(self.host, config)
        self.slots: list[Slot] = []
        self.api = None
        self.api_started_at = 0.0
        self._signals: deque[int] = deque()
        self._stopping = False
        self._exit_code = 0
        self._next_lease_sweep = 0.0
        self._next_cancel_poll = 0.0
        self.store: JobStore = open_store(config.resolved_database_url, config.data_dir)
        self.events = WorkerEvents(self)
        self.webhooks = WebhookSender(self.store, config)

    # --- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        wakeup_fd = self._install_signal_handlers()
        try:
            self._prepare_store()
            self._start_children()
            while not self._stopping:
                self._tick(wakeup_fd)
            self._shutdown()
        finally:
            self.webhooks.stop()
            self.store.close()
        return self._exit_code

    def _tick(self, wakeup_fd: int) -> None:
        handles = [s.handle for s in self.slots if s.handle is not None]
        waitables: list = [
            wakeup_fd,
            *(h.conn for h in handles),
            *(h.process.sentinel for h in handles),
        ]
        if self.api is not None:
            waitables.append(self.api.sentinel)
        wait(waitables, timeout=TICK_S)
        self._drain_wakeup(wakeup_fd)
        self._handle_signals()
        for handle in handles:
            self.events.read_messages(handle)
        self._reap()
        self._enforce_deadlines()
        self._sweep_leases()
        self._refill_slots()
        self.webhooks.tick()

    # --- start-up --------------------------------------------------------------------------
    def _prepare_store(self) -> None:
        applied = self.store.migrate()
        if applied:
            logger.info("applied migrations %s", ", ".join(applied))
        if self.config.role == "api":
            return
        # Workers of this box from a run that died (kill -9, power loss) still own jobs:
        # give those jobs back now instead of waiting for their leases to run out.
        stale = [w.id for w in self.store.list_workers() if w.id.startswith(self.box_id + "/")]
        released = self.store.release_worker_jobs(stale, "worker crashed (previous run ended)")
        for worker_id in stale:
            self.store.remove_worker(worker_id)
        if released:
            logger.warning("requeued %d job(s) interrupted by the previous run", len(released))

    def _start_children(self) -> None:
        if self.config.role in ("all", "api"):
            self._start_api()
        if self.config.role in ("all", "workers"):
            gpus = resolve_gpus(self.config.gpus)
            for index in range(self.config.max_workers):
                self.slots.append(Slot(index=index, gpu=gpu_for_worker(gpus, index)))

    def _start_api(self) -> None:
        env = self.config.to_env()
        # The API's threads each get a glibc malloc arena by default; with many small,
        # short-lived allocations that fragments into slowly growing RSS. Two suffice.
        if "MALLOC_ARENA_MAX" not in os.environ:
            env["MALLOC_ARENA_MAX"] = "2"
        self.api = spawn(api_main, (self.target, self.config), env, "apipod-api")
        self.api_started_at = time.monotonic()
        logger.info(
            "API process pid %d on http://%s:%d", self.api.pid, self.config.host, self.config.port
        )

    def _refill_slots(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.handle is None and not slot.given_up and now >= slot.next_start_at:
                worker_id = new_worker_id(self.box_id, slot.index)
                slot.handle = start_worker(self, slot, worker_id)

    # --- children that exit ------------------------------------------------------------------
    def _reap(self) -> None:
        for slot in self.slots:
            handle = slot.handle
            if handle is not None and not handle.process.is_alive():
                handle.process.join()
                self.events.read_messages(handle)  # what it said just before exiting
                slot.handle = None
                self.events.worker_exited(slot, handle)
        if self.api is not None and not self.api.is_alive():
            self._api_exited()

    def _api_exited(self) -> None:
        assert self.api is not None
        self.api.join()
        code = self.api.exitcode
        # An error exit soon after start is a start-up failure (import error, port in
        # use): halt rather than respawn forever. A death by signal is restarted.
        quick = time.monotonic() - self.api_started_at < API_START_GRACE_S
        if quick and code is not None and code > 0:
            logger.error("API process exited at start (exit code %s): halting", code)
            self._exit_code = 1
            self._stopping = True
            self.api = None
            return
        logger.error("API process pid %s died (exit code %s): restarting it", self.api.pid, code)
        self._start_api()

    # --- timeouts, cancellation, leases ---------------------------------------------------------
    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        poll_jobs = now >= self._next_cancel_poll
        if poll_jobs:
            self._next_cancel_poll = now + CANCEL_POLL_S
        for slot in self.slots:
            handle = slot.handle
            if handle is None:
                continue
            if not handle.ready and now - handle.started_at > self.config.worker_start_timeout:
                self.events.start_timed_out(handle)
            elif handle.job_id and handle.job_deadline and now > handle.job_deadline:
                self.events.job_timed_out(handle)
            elif handle.job_id and poll_jobs:
                self.events.check_job_still_owned(handle, now)

    def _sweep_leases(self) -> None:
        now = time.monotonic()
        if self.config.role == "api" or now < self._next_lease_sweep:
            return
        self._next_lease_sweep = now + max(0.5, self.config.lease_s / 3)
        recovered = self.store.recover_expired_leases()
        if recovered:
            logger.warning("recovered %d job(s) with expired leases: %s", len(recovered), recovered)
        stale_s = max(PRUNE_WORKERS_AFTER_LEASES * self.config.lease_s, PRUNE_WORKERS_FLOOR_S)
        pruned = self.store.prune_workers(stale_s)
        if pruned:
            logger.warning("removed worker rows silent for over %.0f s: %s", stale_s, pruned)

    # --- signals and shutdown ------------------------------------------------------------------
    def _install_signal_handlers(self) -> int:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda signum, _frame: self._signals.append(signum))
        return read_fd

    def _drain_wakeup(self, fd: int) -> None:
        try:
            while os.read(fd, 512):
                pass
        except BlockingIOError:
            pass

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                logger.info("received %s: shutting down", signal.Signals(signum).name)
                self._stopping = True
            elif signum == signal.SIGHUP:
                logger.info("received SIGHUP: replacing workers one by one as they go idle")
                for slot in self.slots:
                    if slot.handle is not None:
                        slot.handle.recycling = True
                        slot.handle.terminate()

    def _shutdown(self) -> None:
        handles = [s.handle for s in self.slots if s.handle is not None]
        logger.info(
            "stopping: %d worker(s) finish their jobs (grace %.0f s)",
            len(handles),
            self.config.shutdown_grace_s,
        )
        for handle in handles:
            handle.terminate()
        if self.api is not None and self.api.is_alive():
            self.api.terminate()
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while any(h.process.is_alive() for h in handles) and time.monotonic() < deadline:
            wait([h.process.sentinel for h in handles if h.process.is_alive()], timeout=TICK_S)
            for handle in handles:
                self.events.read_messages(handle)
        for handle in handles:
            self.events.stopped_at_shutdown(handle)
        if self.api is not None:
            self.api.join(timeout=10)
            if self.api.is_alive():
                self.api.kill()
        logger.info("supervisor stopped")


def box_id(host: str, config: Config) -> str:
    """Names this box's workers: host plus a digest of the data dir, so two supervisors on
    one machine (separate data dirs) never take each other's workers for their own."""
    digest = hashlib.sha1(str(Path(config.data_dir).resolve()).encode()).hexdigest()[:6]
    return f"{host}-{digest}"
