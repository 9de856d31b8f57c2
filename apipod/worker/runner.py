"""Running one claimed job: rebuild its arguments, call the endpoint, store the outcome."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from apipod.endpoint import EndpointSpec, as_generator
from apipod.errors import JobCancelled, client_error_text
from apipod.media.results import hint_unannotated_array
from apipod.payload import (
    close_all,
    decode_arguments,
    result_annotation,
    store_result,
    yielded_annotation,
)
from apipod.progress import JobProgress
from apipod.store.base import JobStore
from apipod.store.records import Job
from apipod.worker.stream import ChunkWriter, run_stream
from apipod.worker.watch import JobWatch

if TYPE_CHECKING:
    from apipod.app.pod import APIPod

logger = logging.getLogger(__name__)


class JobRunner:
    """Runs jobs in the calling (main) thread, where ``on_worker_start`` ran too."""

    def __init__(self, app: APIPod, store: JobStore, worker_id: str, lease_s: float) -> None:
        self._app = app
        self._store = store
        self._worker_id = worker_id
        self._lease_s = lease_s
        self._loop = asyncio.new_event_loop()
        self._opened: list[IO[bytes]] = []

    def run(self, job: Job) -> None:
        spec = self._app.spec_for(job.endpoint)
        if spec is None:
            self._store.fail(
                job.id, self._worker_id, f"this service has no endpoint {job.endpoint}"
            )
            return
        with JobWatch(self._store, job.id, self._worker_id, self._lease_s) as watch:
            try:
                result = self._call(spec, job, JobProgress(watch.report))
                if spec.streams(result):
                    result = as_generator(result)
                    encode = self.encoder(job.id, spec, yielded=True)
                    writer = ChunkWriter(self._store, job.id, self._worker_id, watch.lost)
                    encoded = run_stream(result, encode, writer, self._loop)
                else:
                    encoded = self.encoder(job.id, spec)(result)
                watch.flush()
                if not self._store.finish(job.id, self._worker_id, encoded):
                    logger.info("job %s: result dropped, the job is no longer ours", job.id)
            except JobCancelled:
                logger.info("job %s stopped after cancellation", job.id)
            except Exception as exc:
                logger.exception("job %s failed", job.id)
                watch.flush()
                trace = "".join(traceback.format_exception(exc))
                self._store.fail(job.id, self._worker_id, client_error_text(exc), trace)
            finally:
                self.release()

    def close(self) -> None:
        """Close this runner's event loop (an embedded worker's thread ends before its
        process does)."""
        self._loop.close()

    def _call(self, spec: EndpointSpec, job: Job, progress: JobProgress) -> Any:
        kwargs = self.arguments(spec, job.inputs)
        if spec.progress_param:
            kwargs[spec.progress_param] = progress
        return self.call(spec, kwargs)

    def call(self, spec: EndpointSpec, kwargs: dict[str, Any]) -> Any:
        """Call the endpoint function (an async one on this runner's event loop)."""
        if spec.is_async:
            return self._loop.run_until_complete(spec.func(**kwargs))
        return spec.func(**kwargs)

    def encoder(
        self, job_id: str, spec: EndpointSpec | None = None, yielded: bool = False
    ) -> Callable[[Any], Any]:
        """What turns the job's values (its result, a stream's chunks) into storable
        form (:func:`apipod.payload.store_result`): the return annotation (a generator's
        yielded type) decides how media are encoded; media become files of the job."""
        annotation = result_annotation(spec) if spec is not None else Any
        if yielded:
            annotation = yielded_annotation(annotation)
        image_format = self._image_format(spec)
        endpoint = spec.path if spec is not None else "?"

        def encode(value: Any) -> Any:
            hint_unannotated_array(endpoint, value, annotation)
            return store_result(value, annotation, self._store, job_id, image_format)

        return encode

    def arguments(self, spec: EndpointSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        """The call arguments of one job: media objects reading their stored files, which
        stay open until :meth:`release` (after the result, which may be one, is stored)."""
        kwargs, opened = decode_arguments(spec, inputs, self._store.open_file)
        self._opened.extend(opened)
        return kwargs

    def release(self) -> None:
        """Close the stored files the arguments of the last jobs read."""
        close_all(self._opened)
        self._opened.clear()

    def _image_format(self, spec: EndpointSpec | None) -> str:
        own = spec.result_image_format if spec is not None else None
        return own or self._app.config.result_image_format
