"""The ``apipod`` command: the only place that wires config, server and supervisor."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apipod import __version__
from apipod.config import COMPUTE_MODES, SIMULATE_TARGETS, simulate_target
from apipod.errors import APIPodError, ConfigError, started_from_python
from apipod.logs import LOG_FORMATS, bind_process, quiet_status_polls, setup_logging
from apipod.ops import cli as ops_cli

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apipod",
        description="Serve Python functions as an HTTP API, with a durable job queue.",
    )
    parser.add_argument("--version", action="version", version=f"apipod {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_start(commands)
    _add_simulate(commands)
    db = commands.add_parser("db", help="job store maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="apply pending schema migrations")
    upgrade.add_argument("--database-url", help="store URL (default: SQLite in the data dir)")
    upgrade.add_argument("--data-dir", help="data directory (default ./apipod-data)")
    ops_cli.add_commands(commands)
    return parser


def _add_start(commands: Any) -> None:
    start = commands.add_parser(
        "start",
        help="run a service (server, and in queue mode the supervisor and workers)",
        description="Run a service. Flags win over APIPOD_* variables, which win over "
        "APIPod(...) arguments, which win over apipod-deploy/apipod.json.",
    )
    start.add_argument("target", help="service.py, a module, or module:attribute")
    start.add_argument(
        "--compute", choices=["dedicated", "serverless"], help="serverless = queue mode"
    )
    _add_run_flags(start)


def _add_simulate(commands: Any) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="run a service as it runs deployed, without code changes (the original "
        "APIPod's command)",
        description="apipod simulate [TARGET] SERVICE: run SERVICE in TARGET's mode. "
        f"TARGET is one of {', '.join(SIMULATE_TARGETS)} (default serverless: the job "
        "queue with worker processes). APIPOD_SIMULATE=TARGET means the same.",
        usage="apipod simulate [TARGET] SERVICE [--host HOST] [--port PORT] [flags of start]",
    )
    simulate.add_argument("words", nargs="+", metavar="[TARGET] SERVICE")
    _add_run_flags(simulate)


def _add_run_flags(start: argparse.ArgumentParser) -> None:
    """The flags ``start`` and ``simulate`` share."""
    start.add_argument("--host", help="address to bind (default 127.0.0.1)")
    start.add_argument("--port", type=int, help="port to bind (default 8000)")
    start.add_argument("--max-workers", type=int, help="worker processes (queue mode)")
    start.add_argument("--gpus", help="GPU ids for workers: 'auto', 'none' or e.g. '0,1'")
    start.add_argument("--data-dir", help="where the job store and media files live")
    start.add_argument("--database-url", help="job store URL (default: SQLite in data dir)")
    start.add_argument(
        "--api-key",
        help="require 'Authorization: Bearer KEY' on every route but /health "
        "(APIPOD_API_KEY keeps the key out of the process list)",
    )
    start.add_argument(
        "--role", choices=["all", "api", "workers"], help="which processes this box runs"
    )
    start.add_argument(
        "--public-url",
        help="the service's public address (https://api.example.com): absolute URLs in "
        "answers use it instead of the request's host",
    )
    start.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity of every process (default info)",
    )
    start.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="'text' for people (default) or 'json': one object per line with the job id, "
        "endpoint, worker and GPU, for log collectors",
    )
    start.add_argument(
        "--reload",
        action="store_true",
        help="development: restart the API and the workers when a *.py file in the service's "
        "folder changes (running jobs go back to the queue)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "run"):  # apipod.ops.cli's commands
            return args.run(args)
        if args.command == "db":
            return _db_upgrade(args)
        if args.command == "simulate":
            return _simulate(args)
        return _start(args)
    except APIPodError as exc:
        setup_logging("info")
        logger.error("apipod: %s", exc)
        return 2


def _simulate(args: argparse.Namespace) -> int:
    if len(args.words) > 2:
        raise ConfigError(f"simulate takes [TARGET] SERVICE, got {' '.join(args.words)!r}")
    target, service = args.words if len(args.words) == 2 else ("serverless", args.words[0])
    if len(args.words) == 1 and service.lower().partition("-")[0] in COMPUTE_MODES:
        raise ConfigError(f"name the service to run: apipod simulate {service} service.py")
    compute, provider = simulate_target(target)
    # Before the import: a service written as APIPod() reads its mode from here, as the
    # original's did (and its endpoints are then registered for that mode).
    os.environ["APIPOD_SIMULATE"] = target
    args.target, args.compute, args.provider = service, compute, provider
    return _start(args)


def _start(args: argparse.Namespace) -> int:
    from apipod.loader import load_app

    # What the service logs while it is imported is formatted as the flag or environment
    # say; APIPod(...) and apipod.json apply once the config is read, after the import.
    early_format = args.log_format or os.environ.get("APIPOD_LOG_FORMAT", "text")
    setup_logging(args.log_level or "info", early_format)
    import apipod.app.pod  # noqa: F401 - the framework first: the import below measures the service

    app = load_app(args.target, warn_if_heavy=True)
    settings = {
        key: getattr(args, key, None)
        for key in (
            "compute",
            "provider",
            "max_workers",
            "gpus",
            "data_dir",
            "database_url",
            "api_key",
            "role",
            "public_url",
            "log_level",
            "log_format",
        )
    }
    return run_app(
        app, host=args.host, port=args.port, target=args.target, reload=args.reload, **settings
    )


def start_app(
    app: APIPod, port: int | None = None, host: str | None = None, **settings: Any
) -> int:
    """``app.start()``: :func:`run_app`, with a problem found at start (port in use, bad
    setting) logged as one line naming ``app.start()``'s arguments, and exit code 2."""
    with started_from_python():
        try:
            return run_app(app, host=host, port=port, **settings)
        except APIPodError as exc:
            setup_logging("info")
            logger.error("apipod: %s", exc)
            raise SystemExit(2) from None


def run_app(
    app: APIPod,
    host: str | None = None,
    port: int | None = None,
    target: str | None = None,
    reload: bool = False,
    **settings: Any,
) -> int:
    """Serve ``app``: uvicorn alone in synchronous mode, the supervisor in queue mode.
    ``reload``: restart the API and the workers when the service's files change."""
    config = app.configure(host=host, port=port, **settings)
    setup_logging(config.log_level, config.log_format)
    if reload and not config.queue_enabled:
        raise ConfigError(
            "--reload restarts the workers of queue mode (compute='serverless'); for a"
            " synchronous service run: uvicorn <module>:app --reload"
        )
    if not config.queue_enabled:
        import uvicorn

        from apipod.supervisor.api_process import check_port

        check_port(config.host, config.port)
        bind_process("api")
        quiet_status_polls()
        logger.info("serving %s synchronously on http://%s:%d", app.title, config.host, config.port)
        from apipod.app.server import uvicorn_options

        uvicorn.run(
            app,
            host=config.host,
            port=config.port,
            log_level=config.log_level,
            log_config=None,  # uvicorn's records go through our handler and format
            **uvicorn_options(config),
        )
        return 0
    from apipod.loader import target_of
    from apipod.supervisor.arbiter import Supervisor
    from apipod.supervisor.handoff import exec_supervisor

    endpoints = [f"{'|'.join(s.methods)} {path}" for path, s in app.endpoints.items()]
    reload_dir = _service_folder(app) if reload else None
    if target is not None:  # apipod start: the supervisor need not keep the service
        exec_supervisor(config, target, endpoints, reload_dir)
    # app.start(): this process is the user's own script, the service itself; replacing
    # it would skip what the script does after start(). Its supervisor keeps the import.
    return Supervisor(config, target_of(app), endpoints, reload_dir).run()


def _service_folder(app: APIPod) -> Path:
    if not app.source_file or not Path(app.source_file).is_file():
        raise ConfigError("--reload needs the service's file; start it as a file or module")
    return Path(app.source_file).resolve().parent


def _db_upgrade(args: argparse.Namespace) -> int:
    from apipod.config import Config
    from apipod.store.migrate import upgrade

    setup_logging("info")
    overrides = {"database_url": args.database_url, "data_dir": args.data_dir}
    config = Config.load({k: v for k, v in overrides.items() if v})
    applied = upgrade(config.resolved_database_url, config.data_dir)
    logger.info("applied %d migration(s): %s", len(applied), ", ".join(applied) or "none pending")
    return 0


if __name__ == "__main__":
    sys.exit(main())
