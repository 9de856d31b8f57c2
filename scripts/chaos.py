"""Chaos run: submit jobs from many clients while killing workers and the whole box.

    python scripts/chaos.py [--jobs 2000] [--clients 32] [--tree-kills 2] [--kill-every 0.5]

Runs tests/services/queue_chaos.py under `apipod start` (2 workers, SQLite in a temp dir).
While clients submit, a random worker is SIGKILLed about every --kill-every seconds, and
the whole process tree is SIGKILLed --tree-kills times (then started again on the same
data dir). Each job appends its client-chosen token to a side log when it does its work.
Every fourth job is a streaming job (a generator); up to --followers of them are read
live with `GET /stream/{id}` by clients that reconnect with `Last-Event-ID` whenever the
connection drops (worker kills, and the API process dying with the tree).
Afterwards it checks that every accepted job is terminal (none lost), that no job is
finished without its work in the side log, that every finished streaming job has the
right aggregated result, that every followed stream received exactly the stored chunks
(no loss, no duplicate, in order), and counts the re-runs (at-least-once).
Exit status 0 when the checks pass. tests/test_chaos.py runs a bounded version.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.helpers import ServiceProcess, apipod_command, free_port, service_env  # noqa: E402

logger = logging.getLogger("chaos")
SERVICE = REPO / "tests" / "services" / "queue_chaos.py"
TERMINAL = ("finished", "failed", "timeout", "cancelled")


@dataclass
class ChaosReport:
    accepted: int = 0
    refused_submits: int = 0
    worker_kills: int = 0
    tree_kills: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    finished_without_work: list[str] = field(default_factory=list)
    retried_jobs: int = 0
    reruns: int = 0
    stream_jobs: int = 0
    followed_streams: int = 0
    stream_reconnects: int = 0
    wrong_stream_results: list[str] = field(default_factory=list)
    stream_mismatches: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        terminal = sum(self.statuses.get(s, 0) for s in TERMINAL)
        streams_ok = not self.wrong_stream_results and not self.stream_mismatches
        return (
            not self.lost
            and not self.finished_without_work
            and terminal == self.accepted
            and streams_ok
        )


class Box:
    """The service under test: started, SIGKILLed as a whole, started again."""

    def __init__(self, workdir: Path, **settings: object) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.env = service_env(workdir / "data", port=self.port, **settings)
        self.service: ServiceProcess | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        args = apipod_command("start", str(SERVICE))
        self.service = ServiceProcess(args, self.env, self.port, self.workdir / "service.log")
        self.service.start().wait_until("/health", status=200, timeout=90)

    def kill_tree(self) -> None:
        assert self.service is not None
        self.service.kill_tree()

    def worker_pids(self) -> list[int]:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            health = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).json()
            return [w["pid"] for w in health["workers"] if w["state"] in ("ready", "busy")]
        return []

    @property
    def db(self) -> Path:
        return self.workdir / "data" / "apipod.db"

    @property
    def side_log(self) -> Path:
        return self.workdir / "data" / "side.log"


STREAM_EVERY = 4
STREAM_CHUNKS = 5


def stream_text(token: str) -> str:
    """The aggregated result of a streaming chaos job."""
    return "".join(f"{token}:{i} " for i in range(STREAM_CHUNKS))


@dataclass
class Submitted:
    accepted: dict[str, str] = field(default_factory=dict)  # token → job id
    streamed: set[str] = field(default_factory=set)  # tokens of streaming jobs
    received: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # job id → records


async def submit_all(
    box: Box, jobs: int, clients: int, followers: int, report: ChaosReport
) -> Submitted:
    """Closed-loop clients; every accepted submit is recorded, and up to ``followers``
    streaming jobs are read live."""
    out = Submitted()
    remaining = [jobs]
    follow_tasks: list[asyncio.Task[None]] = []

    async def client(http: httpx.AsyncClient, reader: httpx.AsyncClient) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1  # reserve one submit; given back when it is not accepted
            token = uuid.uuid4().hex
            streaming = remaining[0] % STREAM_EVERY == 0
            # A streaming job works as long as the others: 20 ms over its chunks.
            body = {"chunks": STREAM_CHUNKS, "ms": 20 / STREAM_CHUNKS} if streaming else {"ms": 20}
            path = "/stream_work" if streaming else "/work"
            try:
                response = await http.post(path, json={"token": token, **body})
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                job_id = out.accepted[token] = response.json()["job_id"]
                if streaming:
                    out.streamed.add(token)
                    if len(follow_tasks) < followers:
                        out.received[job_id] = []
                        task = follow(reader, job_id, out.received[job_id], report)
                        follow_tasks.append(asyncio.create_task(task))
                continue
            remaining[0] += 1
            report.refused_submits += 1
            await asyncio.sleep(0.2)  # the box is down or restarting

    base = f"http://127.0.0.1:{box.port}"
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        httpx.AsyncClient(base_url=base, timeout=30) as reader,
    ):
        await asyncio.gather(*(client(http, reader) for _ in range(clients)))
        await asyncio.gather(*follow_tasks)
    return out


async def follow(
    http: httpx.AsyncClient, job_id: str, received: list[tuple[int, str]], report: ChaosReport
) -> None:
    """Read the job's stream to its terminal snapshot, reconnecting with Last-Event-ID."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": str(received[-1][0])} if received else {}
        try:
            async with aconnect_sse(http, "GET", f"/stream/{job_id}", headers=headers) as source:
                async for sse in source.aiter_sse():
                    if sse.event == "message":
                        received.append((int(sse.id), json.loads(sse.data)))
                    elif sse.event == "job" and json.loads(sse.data)["status"] in TERMINAL:
                        return
        except (httpx.HTTPError, ValueError):
            pass
        report.stream_reconnects += 1
        await asyncio.sleep(0.2)  # the API process is down or restarting


def chaos_monkey(box: Box, stop: threading.Event, kill_every: float, report: ChaosReport) -> None:
    while not stop.wait(kill_every):
        with box.lock:
            pids = box.worker_pids()
            if pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(random.choice(pids), signal.SIGKILL)
                    report.worker_kills += 1


def tree_killer(box: Box, stop: threading.Event, times: int, period: float, report: ChaosReport):
    for _ in range(times):
        if stop.wait(period):
            return
        with box.lock:
            box.kill_tree()
            report.tree_kills += 1
            box.start()


def wait_all_terminal(box: Box, job_ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = read_statuses(box.db, job_ids)
        pending = [j for j in job_ids if statuses.get(j) not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return statuses
        time.sleep(0.5)


def read_statuses(db: Path, job_ids: list[str]) -> dict[str, str]:
    return {job_id: status for job_id, (status, _) in read_rows(db, job_ids).items()}


def read_rows(db: Path, job_ids: list[str]) -> dict[str, tuple[str, int]]:
    """job id → (status, attempts), read with plain sqlite3 as an operator would."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        rows = conn.execute("SELECT id, status, attempts FROM jobs").fetchall()
    wanted = set(job_ids)
    return {job_id: (status, attempts) for job_id, status, attempts in rows if job_id in wanted}


def verify(box: Box, submitted: Submitted, report: ChaosReport, timeout: float) -> None:
    accepted = submitted.accepted
    statuses = wait_all_terminal(box, list(accepted.values()), timeout)
    report.accepted = len(accepted)
    report.statuses = dict(collections.Counter(statuses.values()))
    report.lost = [j for j in accepted.values() if j not in statuses]
    runs = collections.Counter(box.side_log.read_text().split()) if box.side_log.exists() else {}
    report.finished_without_work = [
        job_id
        for token, job_id in accepted.items()
        if statuses.get(job_id) == "finished" and runs.get(token, 0) == 0
    ]
    # At-least-once: a job killed mid-run runs again (attempts > 1); when the kill came
    # after its work but before its result was stored, the work shows twice in the log.
    attempts = read_rows(box.db, list(accepted.values()))
    report.retried_jobs = sum(1 for _, tries in attempts.values() if tries > 1)
    report.reruns = sum(count - 1 for count in runs.values() if count > 1)
    verify_streams(box, submitted, statuses, report)


def verify_streams(
    box: Box, submitted: Submitted, statuses: dict[str, str], report: ChaosReport
) -> None:
    """Finished streaming jobs have the right result; followed streams got every stored
    chunk exactly once, in order."""
    report.stream_jobs = len(submitted.streamed)
    report.followed_streams = len(submitted.received)
    with contextlib.closing(sqlite3.connect(box.db, timeout=30)) as conn:
        for token in submitted.streamed:
            job_id = submitted.accepted[token]
            if statuses.get(job_id) != "finished":
                continue
            (result,) = conn.execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if json.loads(result) != stream_text(token):
                report.wrong_stream_results.append(job_id)
        for job_id, received in submitted.received.items():
            rows = conn.execute(
                "SELECT seq, data FROM chunks WHERE job_id = ? ORDER BY seq", (job_id,)
            ).fetchall()
            if received != [(seq, json.loads(data)) for seq, data in rows]:
                report.stream_mismatches.append(job_id)


def run_chaos(
    workdir: Path,
    jobs: int,
    clients: int,
    tree_kills: int,
    kill_every: float,
    followers: int = 20,
) -> ChaosReport:
    report = ChaosReport()
    box = Box(
        workdir,
        max_workers=2,
        lease_s=2,
        max_attempts=50,
        log_level="warning",
        gpus="none",
        cancel_grace_s=1,
    )
    box.start()
    stop = threading.Event()
    # The jobs take about jobs x 20 ms / 2 workers; spread the tree kills over that time.
    period = max(2.0, jobs * 0.02 / 2 / (tree_kills + 1))
    threads = [
        threading.Thread(target=chaos_monkey, args=(box, stop, kill_every, report)),
        threading.Thread(target=tree_killer, args=(box, stop, tree_kills, period, report)),
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        submitted = asyncio.run(submit_all(box, jobs, clients, followers, report))
        # Chaos goes on while the queue drains, until the tree kills are done too.
        threads[1].join()
        wait_all_terminal(box, list(submitted.accepted.values()), timeout=180)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        verify(box, submitted, report, timeout=120)
    finally:
        assert box.service is not None
        box.service.stop()
    report.elapsed_s = time.monotonic() - started
    return report


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--tree-kills", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=0.5)
    parser.add_argument("--followers", type=int, default=20, help="streams read live")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="apipod-chaos-"))
    report = run_chaos(
        workdir, args.jobs, args.clients, args.tree_kills, args.kill_every, args.followers
    )
    lists = ("lost", "finished_without_work", "wrong_stream_results", "stream_mismatches")
    summary = {k: v for k, v in report.__dict__.items() if k not in lists}
    summary.update({name: len(getattr(report, name)) for name in lists})
    logger.info("%s", json.dumps(summary, indent=2))
    logger.info("chaos run %s (work dir %s)", "PASSED" if report.ok else "FAILED", workdir)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
