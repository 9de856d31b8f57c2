"""How every process of a service starts: its log format, its title, and dying with its
parent.

The supervisor, the API process and the workers all call :func:`setup_logging`; the two
kinds of child call :func:`enter_child` first thing, so no child ever outlives the
supervisor (a worker holds a GPU and claims jobs: an orphan would do both for nobody).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"
PARENT_CHECK_S = 0.5
_PR_SET_PDEATHSIG = 1


def setup_logging(level: str, *, force: bool = False) -> None:
    """One log format for every process; ``force`` replaces handlers a library added."""
    root = logging.getLogger()
    if force or not root.handlers:
        logging.basicConfig(format=LOG_FORMAT, level=level.upper(), force=force)
    root.setLevel(level.upper())


class _QuietPolls(logging.Filter):
    """Drops uvicorn's access lines for status polls and health checks unless the log
    level is debug: a client waiting for a job polls many times a second."""

    PREFIXES = ("/status/", "/health", "/jobs/")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 3 and args[1] == "GET" and str(args[2]).startswith(self.PREFIXES):
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def quiet_status_polls() -> None:
    """Status polls and health checks are logged at debug level only."""
    logging.getLogger("uvicorn.access").addFilter(_QuietPolls())


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


def enter_child(title: str, log_level: str) -> None:
    """First steps of a spawned child: log setup, title, and death with the supervisor.

    ``PR_SET_PDEATHSIG`` makes the kernel SIGKILL this process when its parent exits
    (Linux). A thread also watches the parent pid, for other platforms and for the race
    where the parent died before the ``prctl`` call took effect.
    """
    setup_logging(log_level, force=True)
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
