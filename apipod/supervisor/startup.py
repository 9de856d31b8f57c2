"""What the supervisor does once at start: recover this box's jobs from a run that died,
and say in one banner what it serves and where its jobs live."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence

import psutil

from apipod import __version__
from apipod.config import Config
from apipod.store.base import JobStore
from apipod.supervisor.lifecycle import WorkerSlot

logger = logging.getLogger(__name__)

WORKER_TITLE = "apipod: worker"


def release_dead_workers(store: JobStore, box_id: str) -> None:
    """Workers of this box from a run that died (kill -9, power loss) still own jobs:
    give those jobs back now instead of waiting for their leases to run out.

    Only dead workers' jobs are released: a row whose pid still runs an APIPod worker
    (an orphan of a supervisor killed before children died with it) is killed first."""
    mine = [w for w in store.list_workers() if w.id.startswith(box_id + "/")]
    for worker in mine:
        _kill_orphan(worker.pid, worker.id)
    released = store.release_worker_jobs(
        [w.id for w in mine], "worker crashed (previous run ended)"
    )
    for worker in mine:
        store.remove_worker(worker.id)
    if released:
        logger.warning("requeued %d job(s) interrupted by the previous run", len(released))


def _kill_orphan(pid: int, worker_id: str) -> None:
    if pid <= 0 or pid == os.getpid():
        return
    try:
        process = psutil.Process(pid)
        if not any(WORKER_TITLE in part for part in process.cmdline()):
            return
        logger.warning("worker %s (pid %d) outlived its supervisor: killing it", worker_id, pid)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=5)
    except (psutil.Error, OSError):
        pass  # gone already, or not ours to judge


def banner(
    config: Config, endpoints: Sequence[str], slots: Sequence[WorkerSlot], store: JobStore
) -> str:
    """The start banner: store, endpoints, workers and GPUs, and where the docs are."""
    where = getattr(store, "where", None) or getattr(store, "path", None)
    lines = [f"apipod {__version__} ({config.role}): data dir {config.data_dir}"]
    if config.database_url:
        lines.append(f"  job store: PostgreSQL {where}")
    else:
        lines.append(f"  job store: SQLite {where}")
    if endpoints:
        lines.append(f"  endpoints: {', '.join(endpoints)}")
    if config.role in ("all", "workers"):
        gpus = sorted({s.gpu for s in slots if s.gpu is not None})
        on = f"GPU {', '.join(gpus)}" if gpus else "the CPU"
        lines.append(f"  workers: {len(slots)} on {on}")
    if config.role in ("all", "api"):
        url = f"http://{config.host}:{config.port}"
        lines.append(f"  API: {url}  (docs {url}/docs)")
    return "\n".join(lines)
