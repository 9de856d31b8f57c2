"""``apipod jobs ls|show|cancel|retry|purge``, ``apipod workers`` and ``apipod init``.

The job commands open the same store as the server (the SQLite file in the data dir, or
``--database-url``) and work while it runs. They find the data dir as ``apipod start``
does: ``--data-dir``, ``APIPOD_DATA_DIR``, ``apipod-deploy/apipod.json``, else
``apipod-data`` beside ``--service FILE``, else in the current folder; a missing store is
an error that names the folder and the rule that chose it. The store is the single source
of truth: the store is the single source of truth, so a
job cancelled here is stopped by its supervisor and a retried job is picked up by any
worker. Output is a table for people, or JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from apipod.config import DATA_DIR_NAME, DEPLOY_FILE, Config, service_defaults
from apipod.errors import ConfigError
from apipod.ops.render import job_detail, job_row, print_table, worker_row
from apipod.store import JobStatus, JobStore, open_store

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_commands(commands: Any) -> None:
    """Register ``init``, ``jobs`` and ``workers`` on the ``apipod`` command's subparsers;
    each sets ``run`` to the function that executes it."""
    init = commands.add_parser("init", help="write a starter service.py and apipod-deploy/")
    init.add_argument("folder", nargs="?", default=".", help="where to write (default .)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(run=_init)

    jobs = commands.add_parser("jobs", help="list, inspect, cancel, retry and purge jobs")
    verbs = jobs.add_subparsers(dest="jobs_command", required=True, metavar="JOBS_COMMAND")
    ls = _store_parser(verbs, "ls", "jobs newest first", _ls)
    ls.add_argument("--status", action="append", choices=[s.value for s in JobStatus])
    ls.add_argument("--endpoint", action="append", help="e.g. /generate (repeatable)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    for name, summary, run in (
        ("show", "one job: inputs, result, error, attempts, worker, timings", _show),
        ("cancel", "cancel a queued or running job", _cancel),
        ("retry", "put a failed, timed-out or cancelled job back in the queue", _retry),
    ):
        _store_parser(verbs, name, summary, run).add_argument("job_id")
    purge = _store_parser(verbs, "purge", "delete ended jobs and their files", _purge)
    purge.add_argument(
        "--older-than", default="0s", type=parse_duration, help="e.g. 30m, 12h, 7d (default 0)"
    )
    terminal = ["finished", "failed", "timeout", "cancelled"]
    purge.add_argument("--status", action="append", choices=terminal, help="repeatable")
    _store_parser(commands, "workers", "the worker processes of every box", _workers)


def _store_parser(
    parent: Any, name: str, summary: str, run: Callable[[JobStore, argparse.Namespace], int]
) -> argparse.ArgumentParser:
    parser = parent.add_parser(name, help=summary, description=summary)
    parser.add_argument("--database-url", help="job store URL (default: SQLite in the data dir)")
    parser.add_argument(
        "--service",
        metavar="FILE",
        help="the service file: its data dir (apipod-data beside it) as 'apipod start' finds it",
    )
    parser.add_argument(
        "--data-dir", help="data directory (default: apipod-data beside --service, else in .)"
    )
    parser.add_argument("--json", action="store_true", help="JSON for scripts")
    parser.set_defaults(run=lambda args: _with_store(args, run))
    return parser


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h``, ``7d`` or ``2w``."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 12h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


@contextmanager
def _store(args: argparse.Namespace) -> Iterator[JobStore]:
    config, source = _locate(args)
    sqlite_file = Path(config.data_dir) / "apipod.db"
    if config.database_url is None and not sqlite_file.is_file():
        raise ConfigError(
            f"no job store at {sqlite_file} (the data dir {source}); run this in the"
            " service file's folder, or pass --service path/to/service.py, --data-dir or"
            " --database-url"
        )
    store = open_store(config.resolved_database_url, config.data_dir)
    try:
        yield store
    finally:
        store.close()


def _locate(args: argparse.Namespace) -> tuple[Config, str]:
    """The config the job commands use, and which rule chose its data dir (for errors)."""
    defaults = service_defaults(args.service)
    if args.service and not defaults:
        raise ConfigError(f"no service file {args.service} (from --service)")
    flags = {"database_url": args.database_url, "data_dir": args.data_dir}
    config = Config.load(flags=flags, defaults=defaults)
    if args.data_dir:
        return config, "from --data-dir"
    if os.environ.get("APIPOD_DATA_DIR"):
        return config, "from APIPOD_DATA_DIR"
    if config.data_dir == defaults.get("data_dir"):
        return config, f"beside {args.service}"
    if config.data_dir == str(Path.cwd() / DATA_DIR_NAME):
        return config, f"in the current folder {Path.cwd()}"
    return config, f"from {DEPLOY_FILE}"


def _with_store(
    args: argparse.Namespace, run: Callable[[JobStore, argparse.Namespace], int]
) -> int:
    with _store(args) as store:
        return run(store, args)


def _emit(args: argparse.Namespace, document: Any, table: Callable[[], None]) -> None:
    if args.json:
        print(json.dumps(document, indent=2, default=str))
    else:
        table()


# --- commands ------------------------------------------------------------------------------
def _init(args: argparse.Namespace) -> int:
    from apipod.ops.scaffold import init_project

    for path in init_project(Path(args.folder), force=args.force):
        print(f"wrote {path}")
    print(f"next: cd {args.folder} && apipod start service.py")
    return 0


def _ls(store: JobStore, args: argparse.Namespace) -> int:
    endpoints = ["/" + e.lstrip("/") for e in args.endpoint or ()]
    jobs = store.job_summaries(statuses=args.status or (), endpoints=endpoints, limit=args.limit)
    positions = store.queue_positions([j.seq for j in jobs if j.status is JobStatus.QUEUED])
    rows = [job_row(job, positions.get(job.seq)) for job in jobs]
    _emit(args, rows, lambda: print_table(rows, empty="no jobs"))
    return 0


def _show(store: JobStore, args: argparse.Namespace) -> int:
    job = store.get(args.job_id)
    if job is None:
        return _not_found(args.job_id)
    position = store.queue_positions([job.seq]).get(job.seq)
    detail = job_detail(job, position, store.webhook_deliveries(job.id))
    _emit(args, detail, lambda: _print_detail(detail))
    return 0


def _cancel(store: JobStore, args: argparse.Namespace) -> int:
    job = store.cancel(args.job_id)
    if job is None:
        return _not_found(args.job_id)
    return _report_change(args, job, JobStatus.CANCELLED, "cancelled")


def _retry(store: JobStore, args: argparse.Namespace) -> int:
    job = store.retry(args.job_id)
    if job is not None:
        return _report_change(args, job, JobStatus.QUEUED, "queued again")
    job = store.get_state(args.job_id)
    if job is None:
        return _not_found(args.job_id)
    return _refuse(args, job, "only failed, timeout or cancelled jobs are retried")


def _purge(store: JobStore, args: argparse.Namespace) -> int:
    deleted = store.purge(args.older_than, args.status or ())
    _emit(args, {"deleted": deleted}, lambda: print(f"deleted {deleted} job(s)"))
    return 0


def _workers(store: JobStore, args: argparse.Namespace) -> int:
    rows = [worker_row(w) for w in store.list_workers()]
    _emit(args, rows, lambda: print_table(rows, empty="no workers"))
    return 0


def _report_change(args: argparse.Namespace, job: Any, wanted: JobStatus, verb: str) -> int:
    if job.status is not wanted:
        return _refuse(args, job, f"not {verb}")
    _emit(args, job_row(job, None), lambda: print(f"job {job.id} {verb}"))
    return 0


def _refuse(args: argparse.Namespace, job: Any, reason: str) -> int:
    message = f"job {job.id} is {job.status.value}: {reason}"
    _emit(args, {**job_row(job, None), "error": message}, lambda: print(message))
    return 1


def _not_found(job_id: str) -> int:
    print(f"no job {job_id} (unknown or expired)")
    return 1


def _print_detail(detail: dict[str, Any]) -> None:
    width = max(len(k) for k in detail)
    for key, value in detail.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, indent=2, default=str).replace("\n", "\n" + " " * (width + 2))
        elif isinstance(value, str) and "\n" in value:
            value = value.replace("\n", "\n" + " " * (width + 2))
        print(f"{key.ljust(width)}  {value}")
