"""The API child process: uvicorn serving the app's HTTP front end (no models here)."""

from __future__ import annotations

import errno
import logging
import os
import socket
import time

import uvicorn

from apipod.app.server import uvicorn_options
from apipod.child import crash_logged, enter_child
from apipod.config import Config
from apipod.errors import APIPodError, setting_hint
from apipod.loader import load_app
from apipod.logs import quiet_status_polls
from apipod.supervisor.children import spawn

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5
API_START_GRACE_S = 5.0


class PortInUse(APIPodError):
    """The API's address is taken: found before any worker starts."""


def check_port(host: str, port: int) -> None:
    """Raise :class:`PortInUse` when ``host:port`` cannot be bound (as uvicorn binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            why = "already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise PortInUse(
                f"cannot serve on http://{host}:{port}: {why}; stop what listens there or "
                f"choose another port: {setting_hint('port')}"
            ) from None


def api_main(target: str, config: Config) -> None:
    """Entry point of the spawned API process."""
    enter_child("api", config, role="api")
    with crash_logged("the API process"):
        _serve(target, config)


def _serve(target: str, config: Config) -> None:
    quiet_status_polls()
    app = load_app(target)
    app.apply_config(config)
    app.api_only = True  # jobs run in the supervisor's worker processes, never here
    server_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **uvicorn_options(config),
    )
    logger.info("API serving on http://%s:%d", config.host, config.port)
    uvicorn.Server(server_config).run()


class ApiProcess:
    """The running API child, restarted when it dies (but not when it cannot start)."""

    def __init__(self, target: str, config: Config) -> None:
        self.target = target
        self.config = config
        self.started_at = 0.0
        self.process = self._spawn()

    def _spawn(self):  # noqa: ANN202 - a multiprocessing process
        env = self.config.to_env()
        # The API's threads each get a glibc malloc arena by default; with many small,
        # short-lived allocations that fragments into slowly growing RSS. Two suffice.
        if "MALLOC_ARENA_MAX" not in os.environ:
            env["MALLOC_ARENA_MAX"] = "2"
        process = spawn(api_main, (self.target, self.config), env, "apipod-api")
        self.started_at = time.monotonic()
        logger.info("API process pid %d", process.pid)
        return process

    def restart_after_exit(self) -> bool:
        """The process exited: restart it and return True, or False when it failed at
        start (an import error, say): restarting it would only fail again."""
        self.process.join()
        code = self.process.exitcode
        quick = time.monotonic() - self.started_at < API_START_GRACE_S
        if quick and code is not None and code > 0:
            logger.error("API process exited at start (exit code %s): halting", code)
            return False
        logger.error("API process pid %s died (exit code %s): restarting", self.process.pid, code)
        self.process = self._spawn()
        return True

    def restart(self, grace_s: float) -> None:
        """Stop the process (killed after ``grace_s``) and start a new one that imports
        the service afresh."""
        self.stop(grace_s)
        self.process = self._spawn()

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(timeout=grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
