"""The supervisor: one API process and ``max_workers`` GPU-pinned worker processes.

Like gunicorn's arbiter, signal handlers only queue the signal; the main loop waits on
the children's pipes, their sentinels and the signal wake-up fd, then acts. Each worker
slot's lifecycle is a :class:`~apipod.supervisor.lifecycle.WorkerSlot`, which decides;
this loop feeds it events and applies its decisions (kill a process, write the store).

The loop never dies of a store fault: a store write a decision asks for is queued and
retried in order with back-off (one log line per outage), and periodic reads and sweeps
are skipped while the store is unavailable. Any other error stops every child and exits
non-zero at once; nothing is left behind and the process never hangs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any, TypeVar

from apipod.child import set_title
from apipod.config import Config
from apipod.errors import APIPodError, StoreUnavailable
from apipod.store import open_store
from apipod.store.base import JobStore
from apipod.store.datalock import DataDirLock
from apipod.store.retry import Backoff, Outage
from apipod.supervisor.api_process import ApiProcess, check_port
from apipod.supervisor.children import new_worker_id, start_worker
from apipod.supervisor.gpus import check_gpus_exist, gpu_for_worker, resolve_gpus
from apipod.supervisor.lifecycle import Decision, Kill, Phase, StoreCall, WorkerSlot
from apipod.supervisor.reload import FileWatcher, stop_workers
from apipod.supervisor.startup import banner, release_dead_workers
from apipod.supervisor.webhooks import WebhookSender
from apipod.worker.messages import WorkerSpec

logger = logging.getLogger(__name__)

T = TypeVar("T")
TICK_S = 0.1
CANCEL_POLL_S = 0.25
# A worker row not refreshed for this many leases (at least the floor) belongs to a box
# that is gone for good: its row is deleted so /health stops listing it.
PRUNE_WORKERS_AFTER_LEASES = 10
PRUNE_WORKERS_FLOOR_S = 30.0
SHUTDOWN_STORE_S = 10.0
KILL_WAIT_S = 2.0
# The loop must stay responsive (timeouts, cancels, reaping) while another process holds
# the SQLite write lock: a write gives up after this long and is retried later.
STORE_BUSY_TIMEOUT_S = 0.5
# --reload is for a developer waiting on the new code: open requests get this long.
RELOAD_API_GRACE_S = 1.0


class Supervisor:
    """Runs until SIGTERM/SIGINT, then shuts down gracefully and returns 0; returns
    non-zero when it had to halt (a model that never loads, an API that cannot start)."""

    def __init__(
        self,
        config: Config,
        target: str,
        endpoints: Sequence[str] = (),
        reload_dir: Path | None = None,
    ) -> None:
        """``reload_dir``: restart the API and the workers when its ``*.py`` change."""
        self.config = config
        self.target = target
        self.endpoints = list(endpoints)
        self.host = socket.gethostname()
        self.box_id = box_id(self.host, config)
        self.slots: list[WorkerSlot] = []
        self.api: ApiProcess | None = None
        self.store: JobStore | None = None
        self.webhooks: WebhookSender | None = None
        self.outage = Outage("supervisor")
        self._pending: deque[StoreCall] = deque()
        self._store_backoff = Backoff(cap=1.0)
        self._store_retry_at = 0.0
        self._signals: deque[int] = deque()
        self._wake_write_fd = -1
        self._stopping = False
        self._exit_code = 0
        self._next_lease_sweep = 0.0
        self._next_cancel_poll = 0.0
        self._lock = DataDirLock(config.data_dir)
        self._reload_dir = reload_dir
        self._watcher: FileWatcher | None = None
        self._waiting_for_fix = False

    # --- main loop -------------------------------------------------------------------------
    def run(self) -> int:
        set_title("supervisor")
        self._lock.acquire()  # DataDirInUse: the caller reports it, exit non-zero
        try:
            wakeup_fd = self._install_signal_handlers()
            self._start()
            if self._reload_dir is not None:
                self._watcher = FileWatcher(self._reload_dir, self._wake_write_fd)
                self._watcher.start()
            while not self._stopping:
                self._tick(wakeup_fd)
            self._shutdown()
        except APIPodError:  # a start-up check failed: the caller reports it in one line
            self._stop_children_now()
            raise
        except Exception:
            logger.critical("supervisor failed; stopping every child", exc_info=True)
            self._stop_children_now()
            self._exit_code = 1
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            if self.webhooks is not None:
                self.webhooks.stop()
            if self.store is not None:
                self.store.close()
            self._lock.release()
        return self._exit_code

    def _start(self) -> None:
        self.store = open_store(
            self.config.resolved_database_url,
            self.config.data_dir,
            busy_timeout_s=STORE_BUSY_TIMEOUT_S,
        )
        applied = self.store.migrate()
        if applied:
            logger.info("applied migrations %s", ", ".join(applied))
        self.webhooks = WebhookSender(self.store, self.config)
        if self.config.role in ("all", "api"):
            check_port(self.config.host, self.config.port)
        gpus: list[str] = []
        if self.config.role in ("all", "workers"):
            gpus = resolve_gpus(self.config.gpus)
            check_gpus_exist(gpus)
            release_dead_workers(self.store, self.box_id)
            self.slots = [
                WorkerSlot(index=i, gpu=gpu_for_worker(gpus, i))
                for i in range(self.config.max_workers)
            ]
        logger.info("%s", banner(self.config, self.endpoints, self.slots, self.store))
        if self.config.role in ("all", "api"):
            self.api = ApiProcess(self.target, self.config)

    def _tick(self, wakeup_fd: int) -> None:
        workers = [slot.worker for slot in self.slots if slot.worker is not None]
        waitables: list[Any] = [wakeup_fd, *(w.conn for w in workers)]
        waitables += [w.process.sentinel for w in workers]
        if self.api is not None:
            waitables.append(self.api.process.sentinel)
        wait(waitables, timeout=TICK_S)
        _drain(wakeup_fd)
        self._handle_signals()
        self._reload_if_changed()
        now = time.monotonic()
        for slot in self.slots:
            self._read_messages(slot, now)
        self._reap(now)
        self._check_clocks(now)
        self._apply_pending()
        self._sweep_leases(now)
        self._refill_slots(now)
        self._halt_if_no_worker_can_start()
        if self.webhooks is not None:
            self.webhooks.tick()

    # --- applying decisions ------------------------------------------------------------------
    def _apply(self, slot: WorkerSlot, decisions: list[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Kill):
                if slot.worker is not None:
                    slot.worker.kill()
            else:
                self._pending.append(decision)
        self._apply_pending()

    def _apply_pending(self) -> None:
        """Run queued store writes in order; on a store fault keep the rest for later."""
        if not self._pending or time.monotonic() < self._store_retry_at:
            return
        while self._pending:
            call = self._pending[0]
            try:
                result = getattr(self.store, call.method)(*call.args)
            except StoreUnavailable as exc:
                self.outage.failed(exc)
                self._store_retry_at = time.monotonic() + self._store_backoff.next()
                return
            self._pending.popleft()
            self._store_ok()
            if call.done is not None:
                call.done(result)

    def _store_ok(self) -> None:
        self.outage.succeeded()
        self._store_backoff.reset()

    def _try_store(self, read: Callable[[], T]) -> T | None:
        """A periodic store call: None (and the outage noted) when the store is down, or
        while queued writes wait for it (they go first, in order)."""
        if self._pending or time.monotonic() < self._store_retry_at:
            return None
        try:
            value = read()
        except StoreUnavailable as exc:
            self.outage.failed(exc)
            self._store_retry_at = time.monotonic() + self._store_backoff.next()
            return None
        self._store_ok()
        return value

    # --- worker events -------------------------------------------------------------------------
    def _read_messages(self, slot: WorkerSlot, now: float) -> None:
        if slot.worker is not None:
            for message in slot.worker.messages():
                self._apply(slot, slot.on_message(message, now))

    def _reap(self, now: float) -> None:
        for slot in self.slots:
            worker = slot.worker
            if worker is not None and not worker.process.is_alive():
                worker.process.join()
                self._read_messages(slot, now)  # what it said just before exiting
                self._apply(slot, slot.on_exit(worker.process.exitcode, now))
        api = self.api
        if api is None or api.process.is_alive() or self._waiting_for_fix:
            return
        if api.restart_after_exit():
            return
        if self._watcher is not None:
            self._wait_for_fix("the API process cannot start")
            return
        self._exit_code = 1
        self._stopping = True
        self.api = None

    def _reload_if_changed(self) -> None:
        changed = self._watcher.changed() if self._watcher is not None else []
        if not changed or self._stopping:
            return
        logger.info(
            "--reload: %s changed; restarting the API and the workers (running jobs go back"
            " to the queue)",
            ", ".join(changed),
        )
        self._pending.extend(stop_workers(self.slots))
        self._apply_pending()
        if self.api is not None:
            self.api.restart(grace_s=RELOAD_API_GRACE_S)
        self._waiting_for_fix = False

    def _wait_for_fix(self, what: str) -> None:
        """With --reload, a service that fails to load waits for the next save."""
        if not self._waiting_for_fix:
            logger.error("%s; fix the service and save: --reload restarts it", what)
        self._waiting_for_fix = True

    def _check_clocks(self, now: float) -> None:
        poll_jobs = now >= self._next_cancel_poll
        if poll_jobs:
            self._next_cancel_poll = now + CANCEL_POLL_S
        for slot in self.slots:
            self._apply(slot, slot.check_clock(now, self.config.worker_start_timeout))
            if poll_jobs and slot.jobs:
                ids = list(slot.jobs)
                found = self._try_store(lambda ids=ids: [self.store.get_state(i) for i in ids])
                if found is not None:
                    self._apply(slot, slot.check_jobs(found, now, self.config.cancel_grace_s))

    def _sweep_leases(self, now: float) -> None:
        """Keep the leases of this box's live workers, then recover the expired ones.

        The supervisor knows its own workers are alive (their pids, their pipes), so it
        renews their jobs' leases itself: a job that holds the GIL (and so stalls the
        worker's own heartbeat thread) is never taken for dead. Leases expire only for
        workers that really died, or for other boxes that stopped renewing them."""
        if self.config.role == "api" or now < self._next_lease_sweep or self._pending:
            return
        self._next_lease_sweep = now + max(0.5, self.config.lease_s / 3)
        lease = self.config.lease_s
        for slot in self.slots:
            if slot.jobs and slot.worker and slot.worker.running_freely():
                worker_id = slot.worker.worker_id
                for job_id in list(slot.jobs):
                    self._try_store(lambda j=job_id, w=worker_id: self.store.heartbeat(j, w, lease))
        recovered = self._try_store(self.store.recover_expired_leases)
        if recovered:
            logger.warning("recovered %d job(s) with expired leases: %s", len(recovered), recovered)
        stale_s = max(PRUNE_WORKERS_AFTER_LEASES * lease, PRUNE_WORKERS_FLOOR_S)
        pruned = self._try_store(lambda: self.store.prune_workers(stale_s))
        if pruned:
            logger.warning("removed worker rows silent for over %.0f s: %s", stale_s, pruned)

    def _refill_slots(self, now: float) -> None:
        for slot in self.slots:
            if slot.due_to_start(now):
                worker_id = new_worker_id(self.box_id, slot.index)
                spec = WorkerSpec(
                    worker_id, slot.index, slot.gpu, self.target, self.config, self.host
                )
                slot.started(start_worker(spec))

    def _halt_if_no_worker_can_start(self) -> None:
        """Like gunicorn's arbiter with an app that fails to load: when every slot gave
        up on ``on_worker_start``, the service cannot serve; say why and exit."""
        if not self.slots or not all(s.phase is Phase.GIVEN_UP for s in self.slots):
            return
        if self._watcher is not None:
            self._wait_for_fix("on_worker_start failed in every worker slot")
            return
        last = self.slots[-1]
        logger.critical(
            "halting: on_worker_start failed %d times in a row in every worker slot; "
            "queued jobs stay in the store for the next start. Last error: %s\n%s",
            last.load_failures,
            last.load_error,
            last.load_traceback or "",
        )
        self._exit_code = 1
        self._stopping = True

    # --- signals and shutdown ------------------------------------------------------------------
    def _install_signal_handlers(self) -> int:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd)
        self._wake_write_fd = write_fd
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda signum, _frame: self._signals.append(signum))
        return read_fd

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.popleft()
            if signum in (signal.SIGTERM, signal.SIGINT):
                logger.info("received %s: shutting down", signal.Signals(signum).name)
                self._stopping = True
            elif signum == signal.SIGHUP:
                logger.info("received SIGHUP: replacing workers one by one as they go idle")
                for slot in self.slots:
                    if slot.worker is not None:
                        slot.recycle()
                        slot.worker.terminate()

    def _shutdown(self) -> None:
        running = [s for s in self.slots if s.worker is not None]
        busy = sum(1 for s in running if s.job_id is not None)
        depths = self._try_store(self.store.queue_depths) if self.store else None
        queued = "unknown (store unavailable)" if depths is None else sum(depths.values())
        logger.info(
            "stopping: waiting up to %.0f s (shutdown_grace_s) for %d running job(s) on %d"
            " worker(s) to finish, %s queued; press Ctrl-C again to stop now (running jobs"
            " then go back to the queue)",
            self.config.shutdown_grace_s,
            busy,
            len(running),
            queued,
        )
        for slot in running:
            slot.worker.terminate()
        if self.api is not None:
            self.api.process.terminate()
        finished = self._wait_for_workers(running, self.config.shutdown_grace_s)
        for slot in running:
            if slot.worker is not None and slot.worker.process.is_alive():
                logger.warning(
                    "worker %s %s; killing it",
                    slot.worker.worker_id,
                    "did not finish in time" if finished else "stopped at once",
                )
                slot.worker.kill()
                slot.worker.process.join(timeout=5)
            self._pending.extend(d for d in slot.at_shutdown() if isinstance(d, StoreCall))
        self._flush_pending(SHUTDOWN_STORE_S)
        if self.api is not None:
            self.api.stop()
        logger.info("supervisor stopped")

    def _wait_for_workers(self, slots: list[WorkerSlot], grace_s: float) -> bool:
        """Wait for ``slots``' workers to exit, at most ``grace_s``; False when a second
        SIGINT/SIGTERM cut the wait short (the caller then kills them at once)."""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            alive = [s for s in slots if s.worker and s.worker.process.is_alive()]
            if not alive:
                return True
            if self._stop_now_requested():
                return False
            wait([s.worker.process.sentinel for s in alive], timeout=TICK_S)
            for slot in slots:
                self._read_messages(slot, time.monotonic())
        return True

    def _stop_now_requested(self) -> bool:
        """A SIGINT or SIGTERM queued since the shutdown began (a second Ctrl-C)."""
        signals = set(self._signals)
        self._signals.clear()
        if not signals & {signal.SIGINT, signal.SIGTERM}:
            return False
        logger.warning("second stop signal: stopping now; running jobs go back to the queue")
        return True

    def _flush_pending(self, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while self._pending and time.monotonic() < deadline:
            self._store_retry_at = 0.0
            self._apply_pending()
            if self._pending:
                time.sleep(0.2)
        if self._pending:
            logger.error(
                "job store unavailable at shutdown: %d change(s) not written; the next "
                "start requeues this run's jobs",
                len(self._pending),
            )

    def _stop_children_now(self) -> None:
        """The emergency stop: SIGTERM every child, SIGKILL what is left after a moment."""
        processes = [s.worker.process for s in self.slots if s.worker is not None]
        if self.api is not None:
            processes.append(self.api.process)
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + KILL_WAIT_S
        for process in processes:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def box_id(host: str, config: Config) -> str:
    """Names this box's workers: host plus a digest of the data dir, so two supervisors on
    one machine (separate data dirs) never take each other's workers for their own."""
    digest = hashlib.sha1(str(Path(config.data_dir).resolve()).encode()).hexdigest()[:6]
    return f"{host}-{digest}"
