"""Dynamic batching in a worker: claim up to ``batch_size`` queued jobs of one endpoint,
wait up to ``batch_wait_ms`` for more, and run them in one call of the endpoint function.

Each job of a batch keeps its own row: status, result, error, attempts, lease, timeout
and cancel. The function gets one list per parameter and returns one result per job; a
result that is an exception instance fails only its job. When the call raises, each job
is run again alone (a batch of one), so only the job whose input fails gets an error,
its own: no job's error carries another job's input (a result list of the wrong length
fails every job at once: that error quotes no input). A job cancelled while its batch
fills is dropped before the call; one cancelled during the call stays cancelled (its
result is not stored), and the call goes on for the others.

Progress: a function that asks for ``list[JobProgress]`` gets one reporter per job, whose
messages reach that job only. A plain ``JobProgress`` in a batch of several is shared: its
value reaches every job, its message none (it may name one job's input).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from apipod.endpoint import EndpointSpec, batch_arguments, batch_results
from apipod.errors import BatchResultError, JobCancelled, StoreUnavailable, client_error_text
from apipod.progress import JobProgress
from apipod.store.base import JobStore
from apipod.store.records import Job
from apipod.worker.runner import JobRunner
from apipod.worker.watch import JobWatch

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)

#: How often a worker filling a batch looks for more jobs (wake-ups are only hints).
FILL_POLL_S = 0.005
#: After a wait that brought no job, a worker skips the wait for this endpoint (so a lone
#: client is not slowed down by ``batch_wait_ms``) except every PROBE_EVERY-th batch.
PROBE_EVERY = 8


class Batcher:
    """Claims and runs the jobs of one worker whose service has batched endpoints."""

    def __init__(
        self,
        app: APIPod,
        store: JobStore,
        runner: JobRunner,
        worker_id: str,
        lease_s: float,
        stop: threading.Event,
    ) -> None:
        # Every path whose jobs this worker runs, as written too (see APIPod.spec_for).
        self._specs = {path: spec for path in app.queued_routes() if (spec := app.spec_for(path))}
        self._sizes = {path: spec.batch_size for path, spec in self._specs.items()}
        self._store = store
        self._runner = runner
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._stop = stop
        self._fruitless: dict[str, int] = {}  # per endpoint: waits that brought no job

    @staticmethod
    def wanted(app: APIPod) -> bool:
        """Whether any queued endpoint of ``app`` is batched."""
        return any(spec.batched for spec in app.endpoints.values() if app.is_queued(spec))

    # --- claiming ------------------------------------------------------------------------
    def claim(self) -> list[Job]:
        """The next batch (or single job), in queue order; empty when nothing is queued.
        When fewer than ``batch_size`` jobs were queued, waits for more until the oldest
        job has waited ``batch_wait_ms``, unless another endpoint's jobs are waiting or
        the last wait for this endpoint brought none (see PROBE_EVERY)."""
        while claimed := self._store.claim_batch(self._worker_id, self._lease_s, self._sizes):
            jobs = self._grow(claimed)
            if jobs:  # else every job was cancelled while the batch filled: claim again
                return jobs
        return []

    def _grow(self, jobs: list[Job]) -> list[Job]:
        spec = self._specs.get(jobs[0].endpoint)
        if spec is None or not spec.batched or len(jobs) >= spec.batch_size:
            return jobs
        if jobs[0].attempts > 1:
            return jobs  # a retry after a crash or a lost lease runs alone (see claim_batch)
        fruitless = self._fruitless.get(spec.path, 0)
        if fruitless % PROBE_EVERY:
            self._fruitless[spec.path] = fruitless + 1
            return jobs
        claimed = len(jobs)
        jobs = self._fill(spec, jobs)
        self._fruitless[spec.path] = 0 if len(jobs) > claimed else fruitless + 1
        return self._still_ours(jobs)

    def _fill(self, spec: EndpointSpec, jobs: list[Job]) -> list[Job]:
        deadline = time.monotonic() + _wait_left(jobs[0], spec.batch_wait_ms / 1000)
        while len(jobs) < spec.batch_size and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self._others_waiting(spec.path):
                break
            more = {spec.path: spec.batch_size - len(jobs)}
            try:
                self._store.wait_for_work(min(left, FILL_POLL_S))
                jobs += self._store.claim_batch(
                    self._worker_id, self._lease_s, more, batch_id=jobs[0].batch_id
                )
            except StoreUnavailable:
                break  # told to stop meanwhile: the jobs claimed so far run
        return jobs

    def _still_ours(self, jobs: Sequence[Job]) -> list[Job]:
        """The jobs this worker still owns after the batch filled (a heartbeat, which
        also renews the lease); a job cancelled meanwhile is dropped from the batch."""
        kept = []
        for job in jobs:
            if self._store.heartbeat(job.id, self._worker_id, self._lease_s):
                kept.append(job)
            else:
                logger.info(
                    "job %s left batch %s before it started",
                    job.id,
                    job.batch_id,
                    extra=_job_fields(job),
                )
        return kept

    def _others_waiting(self, path: str) -> bool:
        """Whether jobs of this worker's other endpoints are queued (they must not wait
        for a batch to fill)."""
        if len(self._sizes) == 1:
            return False
        depths = self._store.queue_depths()
        return any(depths.get(other) for other in self._sizes if other != path)

    # --- running -------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> None:
        """Run claimed jobs: a batched endpoint's in one call, any other job alone."""
        spec = self._specs.get(jobs[0].endpoint)
        if spec is None or not spec.batched:
            for job in jobs:
                self._runner.run(job)
            return
        BatchRun(spec, self._store, self._runner, self._worker_id, self._lease_s).run(jobs)


class BatchRun:
    """One call of a batched endpoint for several jobs."""

    def __init__(
        self,
        spec: EndpointSpec,
        store: JobStore,
        runner: JobRunner,
        worker_id: str,
        lease_s: float,
    ) -> None:
        self._spec = spec
        self._store = store
        self._runner = runner
        self._worker_id = worker_id
        self._lease_s = lease_s

    def run(self, jobs: Sequence[Job]) -> None:
        """Call the function once for every job whose inputs load; store each outcome."""
        ready, calls = self._arguments(jobs)
        if not ready:
            return
        batch = ready[0].batch_id
        logger.info("batch %s: %d job(s) of %s", batch, len(ready), self._spec.path)
        with contextlib.ExitStack() as stack:
            stack.callback(self._runner.release)  # the stored files the arguments read
            watches = [
                stack.enter_context(JobWatch(self._store, j.id, self._worker_id, self._lease_s))
                for j in ready
            ]
            try:
                results = self._call(calls, BatchProgress(watches))
            except JobCancelled:
                logger.info("batch %s stopped: every job of it was cancelled", batch)
                return
            except BatchResultError as exc:  # the function's contract, no input quoted
                logger.exception("batch %s failed (%d jobs)", batch, len(ready))
                results = [exc] * len(ready)
            except Exception as exc:
                logger.exception("batch %s failed (%d jobs)", batch, len(ready))
                # Which input failed is unknown and the error may quote it: each job
                # runs again alone, so every error a client reads is its own.
                results = self._alone(ready, watches) if len(ready) > 1 else [exc]
            for job, watch, result in zip(ready, watches, results, strict=True):
                watch.flush()
                if isinstance(result, JobCancelled):
                    logger.info("job %s stopped after cancellation", job.id, extra=_job_fields(job))
                    continue
                self._settle(job, result)

    def _alone(self, jobs: Sequence[Job], watches: Sequence[JobWatch]) -> list[Any]:
        """Each job's outcome from a call of its own (with arguments read afresh: the
        failed call may have consumed its media): its result or its exception."""
        outcomes: list[Any] = []
        for job, watch in zip(jobs, watches, strict=True):
            try:
                kwargs = self._runner.arguments(self._spec, job.inputs)
                (outcome,) = self._call([kwargs], BatchProgress([watch]))
            except Exception as exc:  # JobCancelled included: that job was cancelled
                outcome = exc
            outcomes.append(outcome)
        return outcomes

    def _arguments(self, jobs: Sequence[Job]) -> tuple[list[Job], list[dict[str, Any]]]:
        """The jobs whose stored inputs load, and their arguments; the others fail."""
        ready: list[Job] = []
        calls: list[dict[str, Any]] = []
        for job in jobs:
            try:
                calls.append(self._runner.arguments(self._spec, job.inputs))
                ready.append(job)
            except Exception as exc:  # bad stored inputs fail their job only
                self._fail(job, exc)
        return ready, calls

    def _call(self, calls: list[dict[str, Any]], progress: BatchProgress) -> list[Any]:
        kwargs = batch_arguments(self._spec, calls)
        if self._spec.progress_per_job:
            kwargs[self._spec.progress_param] = progress.per_job()
        elif self._spec.progress_param:
            kwargs[self._spec.progress_param] = JobProgress(progress.report)
        return batch_results(self._spec, self._runner.call(self._spec, kwargs), len(calls))

    def _settle(self, job: Job, result: Any) -> None:
        if isinstance(result, BaseException):
            self._fail(job, result)
            return
        try:
            encoded = self._runner.encoder(job.id, self._spec)(result)
            if not self._store.finish(job.id, self._worker_id, encoded):
                logger.info(
                    "job %s: result dropped, the job is no longer ours",
                    job.id,
                    extra=_job_fields(job),
                )
        except Exception as exc:  # an unstorable result fails its job only
            self._fail(job, exc)

    def _fail(self, job: Job, exc: BaseException) -> None:
        trace = "".join(traceback.format_exception(exc))
        if not self._store.fail(job.id, self._worker_id, client_error_text(exc), trace):
            logger.info(
                "job %s: error dropped, the job is no longer ours", job.id, extra=_job_fields(job)
            )


class BatchProgress:
    """The progress sinks of a batch. ``report`` (a shared ``JobProgress``) sends the
    value to each job still owned, and the message only in a batch of one: a message may
    quote one job's input. ``per_job`` gives one reporter per job, message included. The
    call is stopped (``JobCancelled``) only once no job of the batch is left."""

    def __init__(self, watches: Sequence[JobWatch]) -> None:
        self._watches = watches

    def report(self, progress: float | None, message: str | None) -> None:
        shared = len(self._watches) > 1
        self._send(self._watches, progress, None if shared else message)

    def per_job(self) -> list[JobProgress]:
        """One ``JobProgress`` per job (``list[JobProgress]`` parameters), in batch order."""
        return [JobProgress(functools.partial(self._send, [watch])) for watch in self._watches]

    def _send(
        self, watches: Sequence[JobWatch], progress: float | None, message: str | None
    ) -> None:
        for watch in watches:
            with contextlib.suppress(JobCancelled):
                watch.report(progress, message)
        if all(watch.lost.is_set() for watch in self._watches):
            raise JobCancelled("every job of the batch was cancelled")


def _job_fields(job: Job) -> dict[str, str]:
    """A log record's context for one job of a batch (the batch's context names none)."""
    return {"job_id": job.id}


def _wait_left(oldest: Job, wait_s: float) -> float:
    """How much longer the batch may wait: ``wait_s`` from when its oldest job was
    queued, so a job never waits for company longer than ``batch_wait_ms`` in all."""
    if oldest.queued_at is None:
        return wait_s
    waited = (datetime.now(timezone.utc) - oldest.queued_at).total_seconds()
    return min(wait_s, max(0.0, wait_s - waited))
