"""How every child process of a service starts: its logging, its title, and dying with
its parent.

The two kinds of child (the API process and the workers) call :func:`enter_child` first
thing, so no child ever outlives the supervisor (a worker holds a GPU and claims jobs: an
orphan would do both for nobody).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from apipod.logs import bind_process, setup_logging

if TYPE_CHECKING:
    from apipod.config import Config

logger = logging.getLogger(__name__)

PARENT_CHECK_S = 0.5
_PR_SET_PDEATHSIG = 1


def set_title(title: str) -> None:
    """``ps`` shows ``apipod: <title>`` for this process."""
    # Keep /proc/<pid>/environ readable (what an operator and the tests inspect): the
    # title then fits in the space of the original command line, which is long enough.
    os.environ.setdefault("SPT_NOENV", "1")
    try:
        import setproctitle
    except ImportError:  # optional at run time: titles are a convenience
        return
    setproctitle.setproctitle(f"apipod: {title}")


def enter_child(title: str, config: Config, role: str, **log_fields: Any) -> None:
    """First steps of a spawned child: log set-up (``role`` and ``log_fields`` name the
    process in every record, see :func:`apipod.logs.bind_process`), title, and death
    with the supervisor.

    ``PR_SET_PDEATHSIG`` makes the kernel SIGKILL this process when its parent exits
    (Linux). A thread also watches the parent pid, for other platforms and for the race
    where the parent died before the ``prctl`` call took effect.
    """
    setup_logging(config.log_level, config.log_format, force=True)
    bind_process(role, **log_fields)
    set_title(title)
    parent = multiprocessing.parent_process()
    parent_pid = parent.pid if parent is not None else os.getppid()
    _request_death_signal()
    if os.getppid() != parent_pid:
        _die("the supervisor exited before this process started")
    watcher = threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="apipod-parent-watch", daemon=True
    )
    watcher.start()


@contextlib.contextmanager
def crash_logged(what: str) -> Iterator[None]:
    """An exception that ends this child is logged as one record (one JSON line in JSON
    mode) instead of the bare traceback multiprocessing prints; the exit code stays 1."""
    try:
        yield
    except Exception:
        logger.critical("%s crashed", what, exc_info=True)
        sys.exit(1)


def _request_death_signal() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the parent watch covers it


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_CHECK_S)
    _die(f"the supervisor (pid {parent_pid}) is gone")


def _die(why: str) -> None:
    logger.error("%s: exiting", why)  # the stream handler flushes each record
    os._exit(1)
