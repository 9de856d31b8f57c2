"""What only the PostgreSQL store promises: claims, limits, wake-ups, media and TTL sweeps
that hold across processes (and so across boxes), URLs, errors and reconnects.

Every test runs on a real server (see :mod:`tests.store.postgres_db`) and skips without one.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from apipod.errors import ConfigError, QueueFull, StoreUnavailable
from apipod.store import JobStatus, open_store
from apipod.store.migrate import discover, upgrade
from apipod.store.pgconn import NotifyChannel
from apipod.store.postgres import EXPIRE_LOCK_CLASS, PostgresStore
from tests.store.postgres_db import empty_tables, fresh_database

RunChildren = Callable[[Callable[..., None], list[tuple[Any, ...]]], list[Any]]
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def pg_url(postgres_session_url: str) -> str:
    empty_tables(postgres_session_url)
    return postgres_session_url


@pytest.fixture
def pg(pg_url: str, tmp_path: Path) -> Iterator[PostgresStore]:
    store = open_store(pg_url, tmp_path / "data-a")
    assert isinstance(store, PostgresStore)
    yield store
    store.close()


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


# --- URLs and errors ---------------------------------------------------------------------------
def test_every_postgresql_url_form_opens_the_store(pg_url: str, tmp_path: Path) -> None:
    rest = pg_url.split("://", 1)[1]
    for scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        store = open_store(f"{scheme}://{rest}", tmp_path)
        try:
            assert isinstance(store, PostgresStore) and store.migrate() == []
            assert not store.fast_local_reads
        finally:
            store.close()


def test_bad_urls_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="psycopg 3"):
        open_store("postgresql+psycopg2://u@127.0.0.1/db", tmp_path)
    with pytest.raises(ConfigError, match="must name a database"):
        open_store("postgresql://u@127.0.0.1:5432", tmp_path)


def test_without_psycopg_the_error_names_the_driver_not_the_index_name(tmp_path: Path) -> None:
    """``apipod`` on the package index is another project: the hint installs the driver."""
    probe = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from apipod.store import open_store\n"
        f"open_store('postgresql://u@127.0.0.1:5432/db', {str(tmp_path)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("apipod.errors.ConfigError: ") and "psycopg 3" in error, error
    assert "pip install 'psycopg[binary]>=3.2'" in error, error
    assert "install 'apipod[" not in error, error


def test_unreachable_server_is_store_unavailable_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as raised:
        open_store("postgresql://apipod:s3cret@127.0.0.1:1/jobs", tmp_path)
    message = str(raised.value)
    assert "apipod@127.0.0.1:1/jobs" in message and "s3cret" not in message


def test_a_missing_schema_says_how_to_fix_it(tmp_path: Path) -> None:
    with fresh_database() as url:
        store = open_store(url, tmp_path)
        try:
            with pytest.raises(StoreUnavailable, match="apipod db upgrade"):
                store.get("x")
        finally:
            store.close()


def _migrate(url: str, data_dir: str, start: Any, out: Any) -> None:
    start.wait()
    try:
        out.put((upgrade(url, data_dir), None))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(([], repr(exc)))


def test_processes_migrating_one_database_at_once_apply_each_migration_once(
    tmp_path: Path, run_children: RunChildren
) -> None:
    with fresh_database() as url:
        results = run_children(_migrate, [(url, str(tmp_path))] * 3)
        assert [error for _, error in results] == [None] * 3
        applied = sorted(v for versions, _ in results for v in versions)
        assert applied == [m.version for m in discover()]
        recorded = sql(url, "SELECT version FROM schema_migrations ORDER BY version")
        assert [v for (v,) in recorded] == applied


def test_lost_connections_cost_one_call_at_most(pg: PostgresStore, pg_url: str) -> None:
    job = pg.enqueue("/a", {}, queue_size=10, max_attempts=1)
    sql(pg_url, _KILL_OTHERS)
    try:
        pg.get(job.id)
    except StoreUnavailable as exc:
        assert "connection" in str(exc)
    assert pg.get(job.id) == job


_KILL_OTHERS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


# --- claims ---------------------------------------------------------------------------------------
def _produce_and_claim(url: str, data_dir: str, name: str, count: int, start: Any, out: Any):
    """Child: enqueue ``count`` jobs while claiming and finishing jobs of every producer."""
    store = open_store(url, data_dir)
    claimed: list[str] = []
    start.wait()
    try:
        for i in range(count):
            store.enqueue("/gen", {"by": name, "i": i}, queue_size=100_000, max_attempts=1)
            if i % 2 and (job := store.claim(name, 60)) is not None:
                claimed.append(job.id)
                assert store.finish(job.id, name, {})
        while (job := store.claim(name, 60)) is not None:
            claimed.append(job.id)
            assert store.finish(job.id, name, {})
        out.put((claimed, None))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put((claimed, repr(exc)))
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_three_processes_claim_3000_jobs_each_exactly_once(
    pg: PostgresStore, pg_url: str, tmp_path: Path, run_children: RunChildren
) -> None:
    args = [(pg_url, str(tmp_path / f"d{i}"), f"w{i}", 1_000) for i in range(3)]
    results = run_children(_produce_and_claim, args)
    assert [error for _, error in results] == [None] * 3
    claims = Counter(job_id for claimed, _ in results for job_id in claimed)
    assert len(claims) == 3_000 and set(claims.values()) == {1}
    assert all(len(claimed) > 0 for claimed, _ in results)
    assert sql(pg_url, "SELECT status, count(*), max(attempts) FROM jobs GROUP BY status") == [
        ("finished", 3_000, 1)
    ]


def test_claim_skips_rows_locked_by_another_claimer(pg: PostgresStore, pg_url: str) -> None:
    first, second = (pg.enqueue("/a", {}, queue_size=10, max_attempts=1) for _ in range(2))
    with psycopg.connect(pg_url) as other, other.transaction():
        other.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (first.id,))
        started = time.monotonic()
        assert pg.claim("w1", 30).id == second.id  # does not wait for the held row
        assert time.monotonic() - started < 1
    assert pg.claim("w1", 30).id == first.id


# --- back-pressure --------------------------------------------------------------------------------
def _submit_threads(url: str, data_dir: str, threads: int, start: Any, out: Any) -> None:
    """Child: ``threads`` threads submit 30 jobs each to a queue of 100; report accepted."""
    store = open_store(url, data_dir)
    accepted: list[int] = []
    errors: list[str] = []
    start.wait()

    def submit() -> None:
        ok = 0
        for _ in range(30):
            try:
                store.enqueue("/busy", {}, queue_size=100, max_attempts=1)
                ok += 1
            except QueueFull:
                pass
            except Exception as exc:  # reported to the parent
                errors.append(repr(exc))
        accepted.append(ok)

    workers = [threading.Thread(target=submit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.close()
    out.put((sum(accepted), errors))


def test_queue_limit_is_exact_under_submits_from_two_processes(
    pg: PostgresStore, pg_url: str, tmp_path: Path, run_children: RunChildren
) -> None:
    pg.enqueue("/other", {}, queue_size=1, max_attempts=1)
    results = run_children(_submit_threads, [(pg_url, str(tmp_path), 4)] * 2)
    assert [errors for _, errors in results] == [[], []]
    assert sum(accepted for accepted, _ in results) == 100
    assert pg.queue_depths() == {"/busy": 100, "/other": 1}


# --- wake-ups across processes -----------------------------------------------------------------------
def _waiter(url: str, data_dir: str, kind: str, rounds: int, start: Any, out: Any) -> None:
    """Child: for each round, report readiness, then wait and report (wall time, ids)."""
    store = open_store(url, data_dir)
    wait = store.wait_for_work if kind == "work" else store.wait_for_results
    wait(0.05)  # opens the LISTEN connection
    start.wait()
    try:
        for _ in range(rounds):
            out.put(("ready", None))
            ids = wait(10)
            out.put((time.time(), ids))
    finally:
        store.close()


def _latencies(
    pg: PostgresStore, url: str, tmp_path: Path, kind: str, act: Callable[[], str]
) -> list[tuple[float, Any, str]]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    rounds = 5
    child = context.Process(target=_waiter, args=(url, str(tmp_path), kind, rounds, start, out))
    child.start()
    start.set()
    seen = []
    try:
        for _ in range(rounds):
            assert out.get(timeout=30)[0] == "ready"
            time.sleep(0.2)  # the child is blocked in its wait by now
            sent = time.time()
            expected = act()
            woke, ids = out.get(timeout=30)
            seen.append((woke - sent, ids, expected))
    finally:
        child.join(timeout=30)
    assert child.exitcode == 0
    return seen


def test_an_enqueue_wakes_a_worker_in_another_process_within_100_ms(
    pg: PostgresStore, pg_url: str, tmp_path: Path
) -> None:
    def enqueue() -> str:
        return pg.enqueue("/a", {}, queue_size=100, max_attempts=1).id

    seen = _latencies(pg, pg_url, tmp_path, "work", enqueue)
    delays = [delay for delay, _, _ in seen]
    assert statistics.median(delays) < 0.1 and max(delays) < 0.5, delays


def test_a_finish_wakes_a_result_waiter_in_another_process_with_the_job_id(
    pg: PostgresStore, pg_url: str, tmp_path: Path
) -> None:
    def finish() -> str:
        job = pg.enqueue("/a", {}, queue_size=100, max_attempts=1)
        pg.claim("w1", 30)
        assert pg.finish(job.id, "w1", {"ok": True})
        return job.id

    seen = _latencies(pg, pg_url, tmp_path, "results", finish)
    assert all(ids == [job_id] for _, ids, job_id in seen), seen
    delays = [delay for delay, _, _ in seen]
    assert statistics.median(delays) < 0.1 and max(delays) < 0.5, delays


def test_every_terminal_transition_and_requeue_notifies(pg: PostgresStore) -> None:
    jobs = [pg.enqueue("/a", {}, queue_size=100, max_attempts=1) for _ in range(5)]
    pg.wait_for_results(0.05)
    pg.wait_for_work(0.05)
    for job, worker in zip(jobs[:4], ("a", "b", "c", "d"), strict=True):
        assert pg.claim(worker, 30).id == job.id
    pg.finish(jobs[0].id, "a", 1)
    pg.fail(jobs[1].id, "b", "x")
    pg.time_out(jobs[2].id, "c", "slow")
    pg.cancel(jobs[4].id)
    assert pg.requeue(jobs[3].id, "d")
    ended = []
    while len(ended) < 4 and (batch := pg.wait_for_results(1)):
        ended += batch
    assert ended == [j.id for j in (jobs[0], jobs[1], jobs[2], jobs[4])]
    assert pg.wait_for_work(0) is None  # a pending wake-up returns at once


def test_a_dropped_listen_connection_reconnects_quietly(pg: PostgresStore, pg_url: str) -> None:
    pg.wait_for_work(0.05)
    sql(pg_url, _KILL_OTHERS)
    start = time.monotonic()
    pg.wait_for_work(0.3)  # the loss is noticed: sleeps out the timeout instead
    assert time.monotonic() - start < 2
    pg.wait_for_work(0.05)  # listening again
    waited: list[float] = []
    thread = threading.Thread(target=lambda: waited.append(_timed(pg.wait_for_work, 10)))
    thread.start()
    time.sleep(0.3)
    other = open_store(pg_url, "unused")
    try:
        other.enqueue("/a", {}, queue_size=10, max_attempts=1)
    finally:
        other.close()
    thread.join(15)
    assert waited and waited[0] < 3


def test_waiting_without_a_server_sleeps_the_timeout() -> None:
    channel = NotifyChannel("postgresql://nobody@127.0.0.1:1/none", "apipod_work")
    try:
        for _ in range(2):
            start = time.monotonic()
            assert channel.wait(0.3) == b""
            assert 0.25 <= time.monotonic() - start < 3
    finally:
        channel.close()


def _timed(call: Callable[[float], Any], timeout: float) -> float:
    start = time.monotonic()
    call(timeout)
    return time.monotonic() - start


# --- media -------------------------------------------------------------------------------------------
def test_files_are_blobs_that_every_box_reads(
    pg: PostgresStore, pg_url: str, tmp_path: Path
) -> None:
    job = pg.enqueue("/a", {}, queue_size=10, max_attempts=1)
    data = bytes(range(256)) * 4_000
    ref = pg.put_file(job.id, "photo.png", data)
    box_b = open_store(pg_url, tmp_path / "data-b")
    try:
        assert box_b.read_file(ref) == data
        again = box_b.put_file(job.id, "photo.png", b"second")
        assert again != ref and pg.read_file(again) == b"second"
    finally:
        box_b.close()
    assert not (tmp_path / "data-a").exists() and not (tmp_path / "data-b").exists()
    assert sql(pg_url, "SELECT count(*) FROM files WHERE job_id = %s", (job.id,)) == [(2,)]
    pg.discard_files(job.id)
    with pytest.raises(FileNotFoundError):
        pg.read_file(ref)
    with pytest.raises(ValueError):
        pg.read_file("files/../etc/passwd")


# --- TTL -----------------------------------------------------------------------------------------------
def _finished_jobs(store: PostgresStore, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        job = store.enqueue("/a", {}, queue_size=10_000, max_attempts=1)
        store.claim("w1", 30)
        store.finish(job.id, "w1", {})
        store.put_file(job.id, "out.png", b"png")
        ids.append(job.id)
    return ids


def test_expire_skips_while_another_process_sweeps(pg: PostgresStore, pg_url: str) -> None:
    _finished_jobs(pg, 3)
    with psycopg.connect(pg_url) as sweeper, sweeper.transaction():
        sweeper.execute("SELECT pg_advisory_xact_lock(%s::int4, 0)", (EXPIRE_LOCK_CLASS,))
        assert pg.expire(ttl_s=0) == 0  # at once, not after the other sweep
    assert pg.expire(ttl_s=0) == 3
    assert sql(pg_url, "SELECT count(*) FROM files") == [(0,)]


def test_two_stores_sweeping_at_once_delete_each_job_once(
    pg: PostgresStore, pg_url: str, tmp_path: Path
) -> None:
    ids = _finished_jobs(pg, 300)
    other = open_store(pg_url, tmp_path / "data-b")
    counts: list[int] = []
    barrier = threading.Barrier(2)

    def sweep(store: Any) -> None:
        barrier.wait()
        total = 0
        while (deleted := store.expire(ttl_s=0, batch_size=50)) or total == 0:
            total += deleted
            if not deleted:
                break
        counts.append(total)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in (pg, other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    other.close()
    assert sum(counts) == len(ids) and pg.expire(ttl_s=0) == 0
    assert sql(pg_url, "SELECT count(*) FROM jobs") == [(0,)]
    assert sql(pg_url, "SELECT count(*) FROM files") == [(0,)]


# --- what a person reads -----------------------------------------------------------------------------------
def test_the_readme_psql_queries_run(pg: PostgresStore, pg_url: str) -> None:
    job = pg.enqueue("/gen", {"prompt": "café"}, queue_size=5, max_attempts=3)
    pg.claim("w1", 30)
    pg.finish(job.id, "w1", {"ok": True})
    section = README.read_text().split("## Many boxes: PostgreSQL", 1)[1]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block, "the README's PostgreSQL section has no sql block"
    queries = [q.strip() for q in block.group(1).split(";") if q.strip()]
    queries = [
        "\n".join(line for line in q.splitlines() if not line.lstrip().startswith("--"))
        for q in queries
    ]
    assert len(queries) >= 5
    for query in queries:
        sql(pg_url, query)
    assert pg.get(job.id).status is JobStatus.FINISHED


def test_files_are_stored_as_chunks_and_deleted_with_their_job(
    pg: PostgresStore, pg_url: str
) -> None:
    job = pg.enqueue("/e", {}, queue_size=10, max_attempts=1)
    ref = pg.put_file(job.id, "clip.mp4", bytes(3 * 1024 * 1024 + 10))
    chunks = sql(pg_url, "SELECT seq, octet_length(data) FROM file_chunks ORDER BY seq")
    assert chunks == [(0, 1 << 20), (1, 1 << 20), (2, 1 << 20), (3, 10)]
    sizes = sql(pg_url, "SELECT size FROM files WHERE job_id = %s", (job.id,))
    assert sizes == [(3 * 1024 * 1024 + 10,)]
    assert pg.read_file(ref) == bytes(3 * 1024 * 1024 + 10)
    pg.discard_files(job.id)
    assert sql(pg_url, "SELECT count(*) FROM file_chunks") == [(0,)]


def test_files_written_before_chunks_still_read(pg: PostgresStore, pg_url: str) -> None:
    data = bytes(range(256)) * 5000
    sql(
        pg_url,
        "INSERT INTO files (job_id, name, data, created_at) VALUES ('old', 'a.bin', %s, 'x')"
        " RETURNING name",
        (data,),
    )
    with pg.open_file("files/old/a.bin") as reader:
        reader.seek(1000)
        assert reader.read(10) == data[1000:1010]
        reader.seek(0)
        assert reader.read() == data
    assert [(f.name, f.size) for f in pg.list_files("old")] == [("a.bin", len(data))]


def test_a_missing_server_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store import postgres_db

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL"):
        postgres_db.skip_or_fail("no PostgreSQL at x")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: PostgreSQL tests must run"):
        postgres_db.skip_or_fail("no PostgreSQL at x")
