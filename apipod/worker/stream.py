"""Running a generator endpoint as a job: every yielded value becomes a stored chunk.

The generator runs in the worker's main thread; a :class:`ChunkWriter` thread writes the
encoded values to the store. While one write is in flight, values yielded meanwhile wait
and go together in the next transaction (group commit), so a slow trickle costs one
small transaction per value and is seen by clients at once, while a fast generator is
written a batch at a time instead of one transaction per token.

Cancellation is checked at every ``yield``: once the job is no longer ours (cancelled,
lease lost) the generator is closed there, so ``GeneratorExit`` reaches the function.
When the generator ends, the job's result is the aggregate of its output: the chunks
joined into one string when all are text, else the list of chunks.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

from apipod.errors import JobCancelled
from apipod.store.base import JobStore

logger = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_PENDING = 5000
_RETRY_MAX_S = 1.0


class ChunkWriter:
    """Writes one job's chunks from a background thread, in batches, in order.

    ``add`` queues an encoded value (blocking while ``MAX_PENDING`` wait, so a generator
    cannot outrun the store without bound); ``close`` waits until everything queued is
    written. A store outage is retried until the job is ``lost`` (the job watch sets it
    when the lease or the job is gone): a stream never skips a chunk.
    """

    def __init__(self, store: JobStore, job_id: str, worker_id: str, lost: threading.Event):
        self._store = store
        self._job_id = job_id
        self._worker_id = worker_id
        self.lost = lost
        self._pending: list[Any] = []
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"chunks-{job_id}", daemon=True)
        self._thread.start()

    def add(self, value: Any) -> None:
        with self._cond:
            while len(self._pending) >= MAX_PENDING and not self.lost.is_set():
                self._cond.wait(0.25)
            self._pending.append(value)
            self._cond.notify_all()

    def close(self) -> None:
        """Write what is queued (unless the job was lost), then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._cond.notify_all()  # room for a producer waiting in add
            if not batch:
                return
            self._write(batch)

    def _write(self, batch: list[Any]) -> None:
        delay = 0.05
        while not self.lost.is_set():
            try:
                if self._store.append_chunks(self._job_id, self._worker_id, batch) is None:
                    logger.info(
                        "job %s: chunks refused, the job is no longer ours",
                        self._job_id,
                        extra={"job_id": self._job_id},
                    )
                    self.lost.set()
                return
            except Exception:
                logger.warning(
                    "job %s: writing %d chunks failed; retrying",
                    self._job_id,
                    len(batch),
                    exc_info=True,
                    extra={"job_id": self._job_id},  # this thread has no job context
                )
                time.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)


def run_stream(
    output: Generator[Any, None, None] | AsyncGenerator[Any, None],
    encode: Callable[[Any], Any],
    writer: ChunkWriter,
    loop: asyncio.AbstractEventLoop,
) -> Any:
    """Drive ``output`` to its end, storing each encoded value; return the aggregate.
    Raises :class:`JobCancelled` (after closing the generator) when the job was lost."""
    chunks: list[Any] = []
    raw: list[bytes] | None = []  # the values themselves while every one is bytes
    try:
        for value in _values(output, loop):
            if writer.lost.is_set():
                raise JobCancelled("the job was cancelled or is no longer ours")
            encoded = encode(value)
            writer.add(encoded)
            chunks.append(encoded)
            if raw is not None:
                if _is_bytes(value):
                    raw.append(bytes(value))
                else:
                    raw = None
    except BaseException:
        _close(output, loop)  # at its yield; nothing happens when the function raised
        raise
    finally:
        writer.close()
    if writer.lost.is_set():
        raise JobCancelled("the job was cancelled or is no longer ours")
    return aggregate(chunks, raw)


def aggregate(chunks: list[Any], raw_bytes: list[bytes] | None = None) -> Any:
    """The result of a streamed job: text chunks joined, otherwise the list of chunks
    (an empty stream gives an empty list). Chunks that were bytes (each encoded as its
    own base64 text) give the base64 of the joined bytes: joined base64 texts decode to
    neither."""
    if chunks and all(isinstance(chunk, str) for chunk in chunks):
        if raw_bytes is not None and len(raw_bytes) == len(chunks):
            return base64.b64encode(b"".join(raw_bytes)).decode("ascii")
        return "".join(chunks)
    return chunks


def _is_bytes(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))


def _values(
    output: Generator[Any, None, None] | AsyncGenerator[Any, None],
    loop: asyncio.AbstractEventLoop,
) -> Generator[Any, None, None]:
    if isinstance(output, Generator):
        yield from output
        return
    while True:
        try:
            yield loop.run_until_complete(output.__anext__())
        except StopAsyncIteration:
            return


def _close(
    output: Generator[Any, None, None] | AsyncGenerator[Any, None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Close the generator at its ``yield``: ``GeneratorExit`` reaches the function."""
    if isinstance(output, Generator):
        output.close()
    else:
        loop.run_until_complete(output.aclose())
