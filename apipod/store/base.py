"""The job store contract.

The store is the single source of truth for jobs and workers. Every backend (one small
class per SQL dialect) implements :class:`JobStore`; the contract tests in
``tests/store/test_contract.py`` run against each of them.

Rules every backend keeps:

- FIFO: ``claim`` hands out the queued job with the lowest ``seq`` (a strictly increasing
  sequence assigned at enqueue). Claiming is one atomic statement; a job is claimed by at
  most one worker at a time.
- Batches: ``claim_batch`` takes several queued jobs of one endpoint in one statement,
  FIFO within the endpoint; the batch starts at the oldest queued job of the endpoints
  asked for, so batching never reorders endpoints. Every job of a batch keeps its own
  status, attempts, lease, result and error; the verbs below act on one job each.
- Leases: a claim gives the worker a lease until ``lease_expires_at``. ``heartbeat``
  extends it. ``recover_expired_leases`` requeues jobs whose lease ran out (the attempt
  stays counted) or fails them once ``attempts`` reached ``max_attempts``.
- Ownership: ``heartbeat``, ``set_progress``, ``finish``, ``fail``, ``time_out`` and
  ``release`` only act while the job is ``processing`` *and* owned by that worker. They
  return ``False`` otherwise, so a late result from a killed or expired worker is dropped
  and no job is ever finished twice.
- Poison: a row that cannot be decoded never crashes a reader; ``claim`` fails such a
  job at once ("the stored job cannot be read: ...") and claims the next one. Text is
  made storable (NUL and lone surrogates escaped) before it is written.
- Terminal statuses (finished, failed, timeout, cancelled) are final; ``finished_at`` is
  set when a job becomes terminal, and ``expire`` deletes terminal jobs (and their files
  and chunks) ``ttl`` seconds after that.
- Chunks (streamed output): ``append_chunks`` numbers a job's chunks 1, 2, ... in the
  order written, across attempts (a retry continues the numbering), and writes only
  while the caller owns the job, in one transaction per call. A reader that saw chunk
  ``n`` never later sees a new chunk numbered ``n`` or lower.
- Files: a job's media are written once and never change; their names are unique within
  the job (a second ``image.png`` becomes ``image-1.png``), so a reference names the same
  bytes for as long as it exists. File objects are copied in bounded chunks both ways:
  neither ``put_file`` nor ``open_file`` holds a whole file in memory.
- Every method is synchronous and thread-safe; the HTTP front end calls them from a thread
  pool. Errors of the database (locked, disk full, gone) raise ``StoreUnavailable``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, BinaryIO

from apipod.store.records import (
    Chunk,
    IdempotencyRecord,
    Job,
    JobMetrics,
    JobStatus,
    StoredFile,
    WebhookDelivery,
    WorkerInfo,
)


class JobStore(abc.ABC):
    """The contract of a job store. See the module docstring for the rules."""

    #: True when reads are local and take microseconds (an embedded SQLite file), so the
    #: HTTP front end may run them on its event loop instead of a thread pool.
    fast_local_reads: bool = False

    # --- lifecycle -------------------------------------------------------------------
    @abc.abstractmethod
    def migrate(self) -> list[str]:
        """Apply pending migrations from ``migrations/``; return the versions applied."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections. The store may not be used afterwards."""

    # --- jobs: the client side ----------------------------------------------------------
    @abc.abstractmethod
    def enqueue(
        self,
        endpoint: str,
        inputs: dict[str, Any],
        *,
        queue_size: int,
        max_attempts: int,
        timeout_s: float | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Insert a queued job. Raises ``QueueFull`` when ``endpoint`` already has
        ``queue_size`` queued jobs; the count and the insert are one transaction."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Job | None:
        """The job, or None when unknown or expired."""

    @abc.abstractmethod
    def get_state(self, job_id: str, *, with_result: bool = False) -> Job | None:
        """The job without loading its inputs (``inputs`` is ``{}``) and, unless
        ``with_result``, without its result (``None``): what status polls read, so a job
        with large inputs costs them nothing. None when unknown or expired."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> Job | None:
        """Queued or processing → cancelled (terminal at once; a running worker notices
        through ``heartbeat``/``set_progress`` returning False). Like every ended job, a
        cancelled one keeps its inputs and files until its TTL, so :meth:`retry` can run
        it again. Terminal jobs are left as they are. Returns the job after the change (without inputs and result, as
        :meth:`get_state` reads it), or None when unknown."""

    def list_jobs(
        self, *, status: str | None = None, endpoint: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Newest first, read as :meth:`get_state` reads (no inputs, no result): the
        first page of :meth:`job_summaries` for one status and one endpoint."""
        statuses = (str(status),) if status is not None else ()
        endpoints = (endpoint,) if endpoint is not None else ()
        return self.job_summaries(statuses=statuses, endpoints=endpoints, limit=limit)

    @abc.abstractmethod
    def queue_depths(self) -> dict[str, int]:
        """Number of queued jobs per endpoint (endpoints with none are omitted)."""

    # --- jobs: the worker side ------------------------------------------------------------
    @abc.abstractmethod
    def claim(
        self, worker_id: str, lease_s: float, endpoints: Sequence[str] | None = None
    ) -> Job | None:
        """Atomically take the oldest queued job (of ``endpoints``, when given): status
        processing, attempts + 1, worker and lease set. None when the queue is empty.
        A claimed row that cannot be decoded is failed at once and the next one taken."""

    @abc.abstractmethod
    def claim_batch(
        self,
        worker_id: str,
        lease_s: float,
        batch_sizes: Mapping[str, int],
        *,
        batch_id: str | None = None,
    ) -> list[Job]:
        """Atomically take the oldest queued job of the endpoints in ``batch_sizes`` and,
        in the same statement, up to ``batch_sizes[endpoint] - 1`` more queued jobs of
        its endpoint, oldest first; each as ``claim`` takes one (own attempts, lease).
        Returned in queue order; empty when nothing is queued. Jobs of an endpoint whose
        size is above 1 get one new batch id (``Job.batch_id``); with ``batch_id`` given,
        the call tops up that batch: it takes only jobs on their first attempt, and every
        job it takes gets that id. A job queued again after an attempt that did not end
        (crash, lease expired) is never batched with others: it runs alone. Unreadable
        rows are failed as in ``claim`` and left out."""

    @abc.abstractmethod
    def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend the lease. False when the worker no longer owns the job."""

    @abc.abstractmethod
    def set_progress(
        self, job_id: str, worker_id: str, progress: float | None, message: str | None
    ) -> bool:
        """Record progress of an owned job. False when not owned (e.g. cancelled)."""

    @abc.abstractmethod
    def finish(self, job_id: str, worker_id: str, result: Any) -> bool:
        """processing → finished with ``result`` (JSON-able) and progress 1.0 (the last
        message stays). False when not owned."""

    @abc.abstractmethod
    def fail(self, job_id: str, worker_id: str, error: str, traceback: str | None = None) -> bool:
        """processing → failed with ``error`` (shown to clients) and ``traceback``
        (kept for operators). False when not owned."""

    @abc.abstractmethod
    def time_out(self, job_id: str, worker_id: str, error: str) -> bool:
        """processing → timeout with ``error``. False when not owned."""

    @abc.abstractmethod
    def release(self, job_id: str, worker_id: str, error: str) -> JobStatus | None:
        """The worker stopped (crash, shutdown) while owning the job: requeue it at its
        original place in the queue if attempts < max_attempts, else fail it with
        ``error``. Returns the new status, or None when not owned."""

    @abc.abstractmethod
    def requeue(self, job_id: str, worker_id: str) -> bool:
        """Put an owned processing job back in the queue at its original place without
        counting the attempt (a graceful shutdown interrupted it). False when not owned."""

    @abc.abstractmethod
    def recover_expired_leases(self) -> list[str]:
        """Release every processing job whose lease ran out (as ``release`` does, with
        the error "lease expired"); return their ids."""

    @abc.abstractmethod
    def release_worker_jobs(self, worker_ids: Sequence[str], error: str) -> list[str]:
        """Release every job owned by these workers (used at start-up after a crash of
        the whole box, and when a worker dies); return their ids."""

    @abc.abstractmethod
    def expire(self, ttl_s: float, batch_size: int = 500) -> int:
        """Delete up to ``batch_size`` terminal jobs that ended more than ``ttl_s`` ago,
        and their files. Returns how many were deleted."""

    # --- streamed output ------------------------------------------------------------------
    @abc.abstractmethod
    def append_chunks(self, job_id: str, worker_id: str, values: Sequence[Any]) -> int | None:
        """Append JSON-able ``values`` to the job's chunks (one transaction; the numbers
        continue after the job's last chunk, of any attempt, each tagged with the job's
        current attempt). Returns the number of the last chunk written, or None (and
        writes nothing) when the worker does not own the job. Non-JSON values raise
        TypeError before anything is written."""

    @abc.abstractmethod
    def read_chunks(self, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[Chunk]:
        """Up to ``limit`` chunks of the job numbered above ``after_seq``, in order."""

    # --- wake-ups ------------------------------------------------------------------------
    @abc.abstractmethod
    def wait_for_work(self, timeout: float) -> None:
        """Block until a job may have become claimable (enqueue, release) or ``timeout``
        passed. A hint only: it may wake spuriously, and callers still poll at
        ``timeout`` as a fallback. ``enqueue`` and ``release`` send the wake-up."""

    @abc.abstractmethod
    def wait_for_results(self, timeout: float) -> list[str]:
        """Block until some job became terminal or ``timeout`` passed; return the ids of
        the jobs that did, as far as known (a hint: the list may be incomplete, and is
        empty on timeout). Every transition to a terminal status sends the wake-up."""

    @abc.abstractmethod
    def wait_for_stream(self, timeout: float) -> list[str]:
        """Block until some job got chunks or changed status, progress or message, or
        ``timeout`` passed; return those jobs' ids as far as known (a hint, as with
        ``wait_for_results``)."""

    # --- files -----------------------------------------------------------------------------
    @abc.abstractmethod
    def put_file(self, job_id: str, name: str, data: bytes | BinaryIO) -> str:
        """Store a media file that belongs to a job; return an opaque reference that
        ``read_file`` and ``open_file`` accept on any process (and box) sharing this
        store. A file object is read from its current position in bounded chunks."""

    @abc.abstractmethod
    def read_file(self, ref: str) -> bytes:
        """The bytes stored under ``ref`` (for small files). Raises FileNotFoundError
        when gone, ValueError for a malformed reference."""

    @abc.abstractmethod
    def open_file(self, ref: str) -> BinaryIO:
        """A seekable binary reader of the file under ``ref`` that fetches its bytes as
        they are read (the caller closes it). Raises FileNotFoundError when gone,
        ValueError for a malformed reference."""

    @abc.abstractmethod
    def list_files(self, job_id: str) -> list[StoredFile]:
        """The files of ``job_id``, by name; empty when none (or no such job)."""

    @abc.abstractmethod
    def discard_files(self, job_id: str) -> None:
        """Delete every file of ``job_id`` (its enqueue failed). Never raises when none."""

    # --- disk ------------------------------------------------------------------------------
    @abc.abstractmethod
    def stored_bytes(self) -> int:
        """About how many bytes the store holds for jobs: their inputs and results (as
        JSON text) and their media files. Reads every row's sizes: call it seldom."""

    @abc.abstractmethod
    def sweep_orphan_files(self, older_than_s: float) -> int:
        """Delete the media of jobs that have no row (a process died between storing a
        submit's files and its row), stored more than ``older_than_s`` ago; return for
        how many job ids. Files of a submit still in progress are younger: they stay."""

    # --- workers ---------------------------------------------------------------------------
    @abc.abstractmethod
    def upsert_worker(self, info: WorkerInfo) -> None:
        """Insert or replace the worker's row (heartbeat_at = now)."""

    @abc.abstractmethod
    def remove_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    def list_workers(self) -> list[WorkerInfo]: ...

    @abc.abstractmethod
    def prune_workers(self, stale_after_s: float) -> list[str]:
        """Delete the rows of workers whose ``heartbeat_at`` is more than
        ``stale_after_s`` seconds old (their box is gone for good), except ``failed``
        rows, which record why a worker slot stopped; return the ids deleted."""

    # --- operations (apipod jobs, /jobs, the dashboard) --------------------------------------
    @abc.abstractmethod
    def job_summaries(
        self,
        *,
        statuses: Sequence[str] = (),
        endpoints: Sequence[str] = (),
        limit: int = 100,
        before_seq: int | None = None,
    ) -> list[Job]:
        """Jobs newest (highest seq) first, without payloads (``inputs`` is ``{}``,
        ``result`` None): those of any of ``statuses`` and ``endpoints`` (empty: all),
        with ``seq < before_seq`` when given (cursor pagination), at most ``limit``."""

    @abc.abstractmethod
    def queue_positions(self, seqs: Sequence[int]) -> dict[int, int]:
        """For each seq of a queued job: its place in the claim order (1 = next), counting
        the queued jobs of every endpoint. Seqs of jobs not queued are left out."""

    @abc.abstractmethod
    def retry(self, job_id: str) -> Job | None:
        """failed, timeout or cancelled → queued again (at its original place), as a new
        attempt: error, result, progress, worker and times are cleared, ``queued_at`` is
        now, and ``max_attempts`` grows when needed so that one more attempt is allowed.
        The job (without payloads) after the change; None, and nothing changed, when the
        job is unknown or in another status."""

    @abc.abstractmethod
    def purge(
        self, older_than_s: float, statuses: Sequence[str] = (), batch_size: int = 500
    ) -> int:
        """Delete ended jobs (of ``statuses``; empty: every terminal status) that ended
        more than ``older_than_s`` seconds ago, with their files; how many. A status that
        is not terminal raises ValueError: queued and running jobs are never purged."""

    @abc.abstractmethod
    def job_metrics(self) -> JobMetrics:
        """The counters, histograms and current queue of every endpoint."""

    @abc.abstractmethod
    def job_endings(
        self, since_s: float, limit: int = 50_000
    ) -> list[tuple[str, str, datetime | None, datetime]]:
        """``(endpoint, status, started_at, finished_at)`` of the jobs that ended in the
        last ``since_s`` seconds (and are not expired yet), oldest first, at most
        ``limit``: the raw material of throughput and latency charts."""

    @abc.abstractmethod
    def reserve_idempotency_key(
        self, endpoint: str, key: str, request_hash: str, job_id: str
    ) -> IdempotencyRecord:
        """Bind ``(endpoint, key)`` to ``job_id`` unless it is bound already; return the
        binding that holds (ours when ``record.job_id == job_id``). Atomic: of submits
        racing with one key, exactly one wins. A binding is deleted with its job."""

    @abc.abstractmethod
    def release_idempotency_key(self, endpoint: str, key: str, job_id: str) -> None:
        """Delete the binding of ``(endpoint, key)`` if it still names ``job_id`` (its
        submit failed, or it was left behind by a crash before the job was stored)."""

    # --- webhooks (the outbox the supervisors deliver) --------------------------------------
    @abc.abstractmethod
    def add_webhook(self, job_id: str, url: str, events: Sequence[str]) -> None:
        """Subscribe ``url`` to ``events`` (start, progress, completed) of the job
        ``job_id``, before the job is enqueued. From then on the store itself queues a
        delivery in the transaction of each such change of the job (migration 0007)."""

    @abc.abstractmethod
    def remove_webhook(self, job_id: str) -> None:
        """Drop the subscription (the job's enqueue failed). Never raises when none."""

    @abc.abstractmethod
    def claim_webhook_deliveries(self, limit: int, lease_s: float) -> list[WebhookDelivery]:
        """Take up to ``limit`` due pending deliveries, at most one per job (its oldest
        open one, so a job's events go out in order): ``attempts`` + 1 and
        ``next_attempt_at`` = now + ``lease_s``, so nobody else takes them meanwhile and
        they are due again if the taker dies. Oldest first."""

    @abc.abstractmethod
    def record_webhook_attempt(
        self,
        seq: int,
        *,
        body: str,
        status_code: int | None,
        error: str | None,
        retry_at: datetime | None,
    ) -> None:
        """The outcome of an attempt: delivered when ``error`` is None, else pending again
        at ``retry_at`` or, without one, failed for good. ``body`` is what was sent."""

    @abc.abstractmethod
    def webhook_deliveries(self, job_id: str) -> list[WebhookDelivery]:
        """The job's deliveries, oldest first."""

    @abc.abstractmethod
    def webhook_delivery_counts(self) -> dict[str, int]:
        """The number of deliveries per state, of the jobs still stored."""

    @abc.abstractmethod
    def sweep_webhooks(self, orphan_after_s: float) -> int:
        """Delete the finished deliveries of jobs that are gone, and subscriptions older
        than ``orphan_after_s`` whose job was never stored (a crash between the two
        writes of a submit); how many rows."""
