"""The supervisor survives store faults, injected for real: a write lock held from another
process, a data dir that turns read-only, PostgreSQL connections dropped by the server.
Jobs accepted before and during the fault all finish after it; no process dies."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.helpers import ServiceProcess, running_service
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import (
    client_for,
    count_in_log,
    full_log,
    ready_workers,
    wait_terminal,
)

HOLD_S = 15.0


def submit_patiently(client: httpx.Client, body: dict, within: float = 60) -> tuple[str, int]:
    """Submit like a well-behaved client: on 503, wait Retry-After and try again.
    Returns the job id and how many 503s it got."""
    refused = 0
    deadline = time.monotonic() + within
    while True:
        response = client.post("/work", json=body)
        if response.status_code == 200:
            return response.json()["job_id"], refused
        assert response.status_code == 503, response.text
        assert "Retry-After" in response.headers
        refused += 1
        assert time.monotonic() < deadline, "the store never came back"
        time.sleep(0.5)


def worker_pids(client: httpx.Client, count: int) -> set[int]:
    return {w["pid"] for w in ready_workers(client, count, timeout=60)}


def assert_all_finish(client: httpx.Client, job_ids: list[str], timeout: float = 90) -> None:
    results = [wait_terminal(client, job_id, timeout=timeout) for job_id in job_ids]
    assert [r["status"] for r in results] == ["finished"] * len(job_ids), results
    assert sorted(r["result"]["n"] for r in results) == list(range(len(job_ids)))


@contextlib.contextmanager
def sqlite_write_lock(database: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process (an operator's sqlite3 shell) holds BEGIN IMMEDIATE."""
    code = (
        "import sqlite3, sys, time\n"
        f"conn = sqlite3.connect({str(database)!r}, isolation_level=None, timeout=30)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "conn.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.wait(timeout=seconds + 30)


def assert_survived(service: ServiceProcess, client: httpx.Client, pids: set[int]) -> None:
    assert service.process.poll() is None, "the supervisor is still running"
    assert worker_pids(client, len(pids)) == pids, "no worker crashed or was replaced"
    log = full_log(service)
    assert "Traceback" not in log, log[-4000:]
    assert "died with exit code" not in log


@pytest.mark.slow
def test_a_write_lock_held_for_15_s_delays_jobs_but_loses_none(tmp_path: Path) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=2, gpus="none") as service:
        database = Path(service.env["APIPOD_DATA_DIR"]) / "apipod.db"
        with client_for(service) as client:
            pids = worker_pids(client, 2)
            before = [submit_patiently(client, {"n": n, "delay": 0.5})[0] for n in range(4)]
            with sqlite_write_lock(database, HOLD_S):
                started = time.monotonic()
                during, refusals = [], 0
                for n in range(4, 8):
                    job_id, refused = submit_patiently(client, {"n": n})
                    during.append(job_id)
                    refusals += refused
                held_for = time.monotonic() - started
            assert_all_finish(client, before + during)
            assert_survived(service, client, pids)
        assert refusals >= 1 and held_for >= HOLD_S - 1, (refusals, held_for)
        # One line per outage and process, not one per try (a 15 s hold is dozens of tries
        # each); a loaded box may give a process a second short outage right after.
        starts = outage_starts(service)
        assert starts and max(starts.values()) <= 3, (starts, full_log(service)[-4000:])
        assert count_in_log(service, "job store is back after") == sum(starts.values())


def outage_starts(service: ServiceProcess) -> Counter[str]:
    """How many outages each process (by its name in the log) logged the start of."""
    found = re.findall(r"apipod\.store\.retry: (.+?): job store unavailable \(", full_log(service))
    return Counter(found)


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "16m") -> Iterator[Path]:
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path) -> Path:
    """Write a file until the filesystem is full (ENOSPC); returns it."""
    filler = where / "filler"
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


@pytest.mark.slow
def test_a_full_data_dir_pauses_the_queue_until_space_is_freed(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "data") as data_dir,
        running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as service,
    ):
        assert Path(service.env["APIPOD_DATA_DIR"]) == data_dir
        with client_for(service) as client:
            pids = worker_pids(client, 1)
            before = [submit_patiently(client, {"n": n, "delay": 1})[0] for n in range(2)]
            filler = fill(data_dir)
            try:
                refused = client.post("/work", json={"n": 99})
                assert refused.status_code == 503 and "Retry-After" in refused.headers
                time.sleep(6)
                assert service.process.poll() is None
            finally:
                filler.unlink()
            during = [submit_patiently(client, {"n": n})[0] for n in range(2, 4)]
            assert_all_finish(client, before + during)
            assert_survived(service, client, pids)
        assert "disk is full" in full_log(service)


def terminate_backends(url: str) -> int:
    """Drop every connection the service has to its database, as a DBA (or a failover)
    would; returns how many went."""
    dbname = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return len(rows)


@pytest.mark.slow
def test_dropped_postgresql_connections_are_reopened(tmp_path: Path) -> None:
    with (
        fresh_database() as url,
        running_service(
            tmp_path, "queue_faults.py", max_workers=2, gpus="none", database_url=url
        ) as service,
        client_for(service) as client,
    ):
        pids = worker_pids(client, 2)
        job_ids = []
        for n in range(8):
            job_ids.append(submit_patiently(client, {"n": n, "delay": 0.3})[0])
            if n % 2:
                assert terminate_backends(url) >= 1
        time.sleep(1)
        terminate_backends(url)
        assert_all_finish(client, job_ids)
        assert_survived(service, client, pids)


@pytest.mark.slow
def test_a_store_file_deleted_under_the_service_is_noticed_and_never_recreated(
    tmp_path: Path,
) -> None:
    with running_service(tmp_path, "queue_faults.py", max_workers=1, gpus="none") as service:
        database = Path(service.env["APIPOD_DATA_DIR"]) / "apipod.db"
        backup = database.with_name("kept.db")
        with client_for(service) as client:
            pids = worker_pids(client, 1)
            first = submit_patiently(client, {"n": 0})[0]
            wait_terminal(client, first)
            os.link(database, backup)  # the same file under a second name, to bring it back
            database.unlink()
            time.sleep(1.5)
            response = client.get("/health")
            assert response.status_code == 503, response.text
            assert "was deleted while the service ran" in response.json()["reason"]
            assert client.post("/work", json={"n": 1}).status_code == 503
            assert not database.exists(), "no empty store appeared in its place"
            os.link(backup, database)  # restored: the same file again
            second = submit_patiently(client, {"n": 1})[0]
            assert_all_finish(client, [first, second])
            assert_survived(service, client, pids)
        assert count_in_log(service, "CRITICAL") >= 1
