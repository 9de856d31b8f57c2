"""A closed-loop HTTP load generator with a deliberately small client.

Each virtual client holds one keep-alive HTTP/1.1 connection and runs jobs back to back:
submit, then long-poll ``/status/{id}?wait=`` until the job is terminal (a job costs at
least two requests). The client is raw asyncio streams rather than an HTTP library so
that, on a 2-core box shared with the server, the client's CPU cost stays small.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field

TERMINAL = {"finished", "failed", "timeout", "cancelled"}


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        return await self._read_response()

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        body = await self._reader.readexactly(length)
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


@dataclass
class RunResult:
    """What one load run measured."""

    completed: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_s) * 1000 if self.latencies_s else float("nan")


async def run_job(conn: Connection, endpoint: str) -> bool:
    """Submit one job and long-poll it to a terminal status; True when it finished.
    With ``?wait=`` in ``endpoint`` the submit itself long-polls (one request per job)."""
    status, body = await conn.request("POST", endpoint, b"{}")
    if status != 200:
        return False
    job = json.loads(body)
    while job.get("status") not in TERMINAL:
        status, body = await conn.request("GET", f"/status/{job['job_id']}?wait=30")
        if status != 200:
            return False
        job = json.loads(body)
    return job["status"] == "finished"


async def run_plain(conn: Connection, endpoint: str) -> bool:
    status, _ = await conn.request("POST", endpoint, b"{}")
    return status == 200


async def closed_loop(
    port: int, endpoint: str, concurrency: int, total: int, plain: bool = False
) -> RunResult:
    """``concurrency`` clients share ``total`` requests/jobs; each runs them back to back."""
    result = RunResult()
    remaining = [total]
    one = run_plain if plain else run_job

    async def client() -> None:
        conn = Connection("127.0.0.1", port)
        try:
            while remaining[0] > 0:
                remaining[0] -= 1
                started = time.perf_counter()
                ok = await one(conn, endpoint)
                result.latencies_s.append(time.perf_counter() - started)
                result.completed += ok
                result.errors += not ok
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result
