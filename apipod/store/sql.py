"""What every SQL dialect shares: timestamps, JSON, row conversion and the statements.

Timestamps are stored as UTC ISO-8601 text in one fixed-width format
(``YYYY-MM-DDTHH:MM:SS.ffffffZ``), so comparing the text compares the instants and a
person reading the table with ``sqlite3`` or ``psql`` sees plain dates. ``inputs`` and
``result`` are JSON text.

The statements are written once, with ``?`` placeholders; :func:`build_statements`
rewrites them for drivers that use ``%s`` (psycopg).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from apipod.store.records import Job, JobStatus, WorkerInfo, WorkerState

UTC = timezone.utc
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_STATUSES = {status.value: status for status in JobStatus}
_STATES = {state.value: state for state in WorkerState}

JOB_COLUMNS = (
    "seq",
    "id",
    "endpoint",
    "status",
    "progress",
    "message",
    "error",
    "inputs",
    "result",
    "attempts",
    "max_attempts",
    "worker",
    "timeout_s",
    "lease_expires_at",
    "created_at",
    "queued_at",
    "started_at",
    "finished_at",
    "traceback",
    "batch_id",
)
WORKER_COLUMNS = (
    "id",
    "host",
    "pid",
    "gpu",
    "state",
    "current_job",
    "jobs_done",
    "rss_bytes",
    "error",
    "started_at",
    "heartbeat_at",
    "current_batch",
)
TERMINAL_SQL = "('finished', 'failed', 'timeout', 'cancelled')"


# --- timestamps and JSON -------------------------------------------------------------------
def utcnow() -> datetime:
    """The current instant, timezone-aware UTC, truncated to microseconds."""
    return datetime.now(UTC)


def format_ts(moment: datetime) -> str:
    """``2024-05-01T12:00:00.000000Z`` for an aware (or naive-UTC) datetime."""
    if moment.tzinfo is None:
        return moment.isoformat(timespec="microseconds") + "Z"
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(text: str | None) -> datetime | None:
    """The aware UTC datetime of a stored timestamp (None stays None)."""
    if text is None:
        return None
    return datetime.fromisoformat(text[:-1] + "+00:00")


def ts_in(seconds: float, now: datetime | None = None) -> str:
    """The stored form of ``now + seconds``."""
    return format_ts((now or utcnow()) + timedelta(seconds=seconds))


def dump_json(value: Any) -> str:
    """Compact JSON text, non-ASCII kept readable. Raises TypeError for non-JSON values.
    A lone surrogate is written as its ``\\uXXXX`` escape (UTF-8 cannot hold it; the
    JSON reads back the same); JSON escapes NUL itself."""
    return _SURROGATE.sub(_escape_char, _ENCODE(value))


def storable_text(text: str | None) -> str | None:
    """``text`` with NUL and lone surrogates written as ``\\uXXXX``: PostgreSQL refuses
    NUL in text and neither backend can encode a lone surrogate. An error message with
    either (a job's exception text, a worker's load error) must not fail its write."""
    if text is None:
        return None
    return _UNSTORABLE.sub(_escape_char, str(text))


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# --- rows ------------------------------------------------------------------------------------
def row_to_job(row: Sequence[Any]) -> Job:
    """A :class:`Job` from a row selected as :data:`JOB_COLUMNS` (or a projection of
    them that keeps their shape).

    The one place a job row is parsed. A row that cannot be decoded (JSON edited by hand
    or written by a broken tool, an unknown status) still becomes a Job, with empty
    ``inputs``/``result`` and ``unreadable`` saying why, so one bad row never breaks a
    read of many, and ``claim`` fails it alone instead of handing it to a worker."""
    try:
        return _decode_job(row)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return Job(
            id=str(row[1]),
            seq=row[0] if isinstance(row[0], int) else 0,
            endpoint=str(row[2]),
            status=JobStatus.FAILED,
            inputs={},
            error=f"the stored job row cannot be read ({type(exc).__name__})",
            unreadable=f"the row cannot be decoded ({type(exc).__name__}: {exc})",
        )


def _decode_job(row: Sequence[Any]) -> Job:
    (seq, job_id, endpoint, status, progress, message, error, inputs, result) = row[:9]
    (attempts, max_attempts, worker, timeout_s, lease, created, queued, started) = row[9:17]
    problems: list[str] = []
    decoded_inputs = _decode(inputs, "inputs", problems)
    return Job(
        id=job_id,
        seq=seq,
        endpoint=endpoint,
        status=_STATUSES[status],
        inputs=decoded_inputs if isinstance(decoded_inputs, dict) else {},
        result=None if result is None else _decode(result, "result", problems),
        unreadable="; ".join(problems) or None,
        error=error,
        progress=progress,
        message=message,
        attempts=attempts,
        max_attempts=max_attempts,
        worker=worker,
        timeout_s=timeout_s,
        created_at=parse_ts(created),
        queued_at=parse_ts(queued),
        started_at=parse_ts(started),
        finished_at=parse_ts(row[17]),
        lease_expires_at=parse_ts(lease),
        traceback=row[18],
        batch_id=row[19],
    )


def _decode(text: Any, column: str, problems: list[str]) -> Any:
    try:
        value = json.loads(text)
    except (TypeError, ValueError) as exc:
        problems.append(f"stored {column} are not valid JSON ({exc})")
        return None
    if column == "inputs" and not isinstance(value, dict):
        problems.append(f"stored inputs are {type(value).__name__}, not a JSON object")
    return value


def row_to_worker(row: Sequence[Any]) -> WorkerInfo:
    """A :class:`WorkerInfo` from a row selected as :data:`WORKER_COLUMNS`."""
    values = dict(zip(WORKER_COLUMNS, row, strict=True))
    values["state"] = _STATES[values["state"]]
    values["started_at"] = parse_ts(values["started_at"])
    values["heartbeat_at"] = parse_ts(values["heartbeat_at"])
    return WorkerInfo(**values)


def worker_params(info: WorkerInfo, now: str) -> tuple[Any, ...]:
    """Parameters of :attr:`Statements.upsert_worker` in :data:`WORKER_COLUMNS` order."""
    started = format_ts(info.started_at) if info.started_at else now
    state = str(info.state.value if isinstance(info.state, WorkerState) else info.state)
    return (
        info.id,
        info.host,
        info.pid,
        info.gpu,
        state,
        info.current_job,
        info.jobs_done,
        info.rss_bytes,
        storable_text(info.error),
        started,
        now,
        info.current_batch,
    )


# --- statements ------------------------------------------------------------------------------
_JOB_COLS = ", ".join(JOB_COLUMNS)
# The same columns with the two big ones left out: what a status poll or a history list
# reads. The row keeps its shape (``'{}'`` for inputs, NULL for result), so
# :func:`row_to_job` reads it as any other.
STATE_COLS = _JOB_COLS.replace("inputs, result", "'{}', NULL")
_STATE_WITH_RESULT_COLS = _JOB_COLS.replace("inputs, result", "'{}', result")
_OWNED = "id = ? AND status = 'processing' AND worker = ?"
_REQUEUE = "attempts < max_attempts"


def placeholders(count: int) -> str:
    """``?, ?, ?`` for ``count`` values (never empty: callers check for no values)."""
    return ", ".join("?" * count)


def release_sql(condition: str) -> str:
    """Release every processing job matching ``condition``: back to ``queued`` at its old
    ``seq`` while attempts remain, else ``failed``. Parameters: error, requeue message,
    finished_at, then those of ``condition``. Returns ``(id, status)`` rows."""
    return (
        "UPDATE jobs SET"
        f" status = CASE WHEN {_REQUEUE} THEN 'queued' ELSE 'failed' END,"
        f" error = CASE WHEN {_REQUEUE} THEN NULL ELSE ? END,"
        f" message = CASE WHEN {_REQUEUE} THEN ? ELSE message END,"
        f" finished_at = CASE WHEN {_REQUEUE} THEN NULL ELSE ? END,"
        f" started_at = CASE WHEN {_REQUEUE} THEN NULL ELSE started_at END,"
        f" progress = CASE WHEN {_REQUEUE} THEN NULL ELSE progress END,"
        f" worker = CASE WHEN {_REQUEUE} THEN NULL ELSE worker END,"
        " lease_expires_at = NULL"
        f" WHERE status = 'processing' AND {condition} RETURNING id, status"
    )


def claim_sql(endpoint_count: int, lock_suffix: str = "") -> str:
    """Take the oldest queued job (of ``endpoint_count`` endpoints; 0: any) in one
    statement. Parameters: worker, started_at, lease_expires_at, then the endpoints.
    ``lock_suffix`` lets a dialect add e.g. ``FOR UPDATE SKIP LOCKED`` to the subquery."""
    where = "status = 'queued'"
    if endpoint_count:
        where += f" AND endpoint IN ({placeholders(endpoint_count)})"
    return (
        "UPDATE jobs SET status = 'processing', attempts = attempts + 1, worker = ?,"
        " started_at = ?, lease_expires_at = ?, progress = NULL, message = NULL,"
        " batch_id = NULL"
        f" WHERE seq = (SELECT seq FROM jobs WHERE {where} ORDER BY seq LIMIT 1{lock_suffix})"
        f" AND status = 'queued' RETURNING {_JOB_COLS}"
    )


def chunk_guard_sql(lock_suffix: str = "") -> str:
    """The attempt of a job the worker owns (no row when not owned). Parameters: job id,
    worker. ``lock_suffix`` (e.g. ``FOR SHARE``) holds off a release until commit."""
    return f"SELECT attempts FROM jobs WHERE {_OWNED}{lock_suffix}"


def append_chunk_sql(lock_suffix: str = "", returning: bool = False) -> str:
    """Append one chunk to a job the worker owns, numbered after the job's last chunk and
    tagged with its attempt; nothing when not owned. Parameters: job id, JSON text, job
    id, worker. With ``returning``, the row's ``seq``."""
    return (
        "INSERT INTO chunks (job_id, seq, attempt, data) SELECT id,"
        " (SELECT COALESCE(MAX(seq), 0) + 1 FROM chunks WHERE job_id = ?), attempts, ?"
        f" FROM jobs WHERE {_OWNED}{lock_suffix}" + (" RETURNING seq" if returning else "")
    )


def claim_batch_sql(
    endpoint_count: int, sized_count: int, tagged_count: int, lock: str, top_up: bool = False
) -> str:
    """Take the oldest queued job of ``endpoint_count`` endpoints and, in the same
    statement, the next queued jobs of its endpoint up to that endpoint's batch size
    (FIFO). A job that is queued again after an attempt that did not end (its worker
    crashed, its lease ran out) runs alone: it is never batched with others, so a job
    that kills its worker cannot take a batch down with it twice. ``top_up``: take
    only jobs on their first attempt (more jobs for a batch already claimed).

    Parameters: the endpoints; ``sized_count`` (endpoint, size) pairs (an endpoint not
    listed takes one job); worker, started_at, lease_expires_at; the ``tagged_count``
    endpoints whose jobs get the batch id, then the batch id. ``lock`` (e.g. ``FOR
    UPDATE SKIP LOCKED``) goes into both subqueries, so concurrent claimers skip each
    other's rows instead of waiting for them."""
    arms = " ".join(["WHEN ? THEN ?"] * sized_count)
    # No head (nothing queued): the size is NULL, which SQLite refuses as a LIMIT.
    size = (
        f"coalesce((SELECT CASE endpoint {arms} ELSE 1 END FROM head), 0)" if sized_count else "1"
    )
    tagged = f"endpoint IN ({placeholders(tagged_count)})" if tagged_count else "1 = 0"
    fresh = " AND attempts = 0" if top_up else ""
    # ``picked`` is a CTE, run once: as an IN-subquery PostgreSQL may rescan it per
    # candidate row, and each rescan skips the rows the statement itself just locked.
    return (
        "WITH head AS (SELECT seq, endpoint, attempts FROM jobs WHERE status = 'queued'"
        f" AND endpoint IN ({placeholders(endpoint_count)}){fresh}"
        f" ORDER BY seq LIMIT 1{lock}),"
        " picked AS (SELECT seq FROM jobs WHERE status = 'queued'"
        " AND endpoint = (SELECT endpoint FROM head) AND (seq = (SELECT seq FROM head)"
        " OR (attempts = 0 AND (SELECT attempts FROM head) = 0))"
        f" ORDER BY seq LIMIT {size}{lock})"
        " UPDATE jobs SET status = 'processing', attempts = attempts + 1, worker = ?,"
        " started_at = ?, lease_expires_at = ?, progress = NULL, message = NULL,"
        f" batch_id = CASE WHEN {tagged} THEN ? ELSE NULL END"
        " WHERE seq IN (SELECT seq FROM picked)"
        f" AND status = 'queued' RETURNING {_JOB_COLS}"
    )


@dataclass(frozen=True)
class Statements:
    """The fixed statements of the store, in one driver's placeholder style."""

    count_queued: str = "SELECT count(*) FROM jobs WHERE endpoint = ? AND status = 'queued'"
    insert_job: str = (
        "INSERT INTO jobs (id, endpoint, status, inputs, attempts, max_attempts, timeout_s,"
        " created_at, queued_at) VALUES (?, ?, 'queued', ?, 0, ?, ?, ?, ?) RETURNING seq"
    )
    get_job: str = f"SELECT {_JOB_COLS} FROM jobs WHERE id = ?"
    get_state: str = f"SELECT {STATE_COLS} FROM jobs WHERE id = ?"
    get_state_with_result: str = f"SELECT {_STATE_WITH_RESULT_COLS} FROM jobs WHERE id = ?"
    claim_any: str = claim_sql(0)
    heartbeat: str = f"UPDATE jobs SET lease_expires_at = ? WHERE {_OWNED}"
    set_progress: str = f"UPDATE jobs SET progress = ?, message = ? WHERE {_OWNED}"
    finish: str = (
        "UPDATE jobs SET status = 'finished', result = ?, finished_at = ?, progress = 1.0,"
        f" lease_expires_at = NULL WHERE {_OWNED}"
    )
    end: str = (
        "UPDATE jobs SET status = ?, error = ?, traceback = ?, finished_at = ?,"
        " lease_expires_at = NULL"
        f" WHERE {_OWNED}"
    )
    release: str = release_sql("id = ? AND worker = ?")
    requeue: str = (
        "UPDATE jobs SET status = 'queued', attempts = attempts - 1, worker = NULL,"
        " lease_expires_at = NULL, started_at = NULL, progress = NULL, message = ?"
        " WHERE id = ? AND worker = ? AND status = 'processing'"
    )
    recover: str = release_sql("lease_expires_at < ?")
    cancel: str = (
        "UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ?,"
        " lease_expires_at = NULL WHERE id = ? AND status IN ('queued', 'processing')"
        f" RETURNING {STATE_COLS}"
    )
    queue_depths: str = (
        "SELECT endpoint, count(*) FROM jobs WHERE status = 'queued' GROUP BY endpoint"
    )
    expired: str = (
        "SELECT id FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?"
        f" AND status IN {TERMINAL_SQL} ORDER BY finished_at LIMIT ?"
    )
    upsert_worker: str = (
        f"INSERT INTO workers ({', '.join(WORKER_COLUMNS)})"
        f" VALUES ({placeholders(len(WORKER_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in WORKER_COLUMNS[1:])
    )
    remove_worker: str = "DELETE FROM workers WHERE id = ?"
    prune_workers: str = (
        "DELETE FROM workers WHERE heartbeat_at < ? AND state <> 'failed' RETURNING id"
    )
    list_workers: str = f"SELECT {', '.join(WORKER_COLUMNS)} FROM workers ORDER BY id"
    last_chunk: str = "SELECT COALESCE(MAX(seq), 0) FROM chunks WHERE job_id = ?"
    read_chunks: str = (
        "SELECT seq, attempt, data FROM chunks WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?"
    )


def build_statements(paramstyle: str = "qmark", claim_lock_suffix: str = "") -> Statements:
    """The statements for a DB-API ``paramstyle`` (``qmark`` or ``format``);
    ``claim_lock_suffix`` goes into the claim's subquery (see :func:`claim_sql`)."""
    if paramstyle not in ("qmark", "format"):
        raise ValueError(f"unsupported paramstyle {paramstyle!r}")
    base = Statements(claim_any=claim_sql(0, claim_lock_suffix))
    if paramstyle == "qmark":
        return base
    return Statements(**{f.name: to_format(getattr(base, f.name)) for f in fields(Statements)})


def to_format(sql: str) -> str:
    """``?`` placeholders → ``%s`` (the statements contain no literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")
