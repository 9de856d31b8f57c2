"""Running one claimed job: rebuild its arguments, call the endpoint, store the outcome."""

from __future__ import annotations

import asyncio
import itertools
import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apipod.endpoint import EndpointSpec
from apipod.errors import JobCancelled, client_error_text
from apipod.media.convert import MediaPayload, build_media, encode_result
from apipod.payload import FILE_KEY, media_arguments
from apipod.progress import JobProgress
from apipod.store.base import Job, JobStore
from apipod.worker.stream import ChunkWriter, run_stream
from apipod.worker.watch import JobWatch

if TYPE_CHECKING:
    from media_toolkit import MediaFile

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
                encode = self.encoder(job.id)
                if spec.is_stream:
                    writer = ChunkWriter(self._store, job.id, self._worker_id, watch.lost)
                    encoded = run_stream(result, encode, writer, self._loop)
                else:
                    encoded = encode(result)
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

    def encoder(self, job_id: str) -> Callable[[Any], Any]:
        """What turns the job's values (its result, a stream's chunks) into storable
        form: media become files of the job, numbered across every call."""
        numbers = itertools.count()
        return lambda value: encode_result(
            value, lambda media: self._store_media(job_id, media, next(numbers))
        )

    def arguments(self, spec: EndpointSpec, inputs: dict[str, Any]) -> dict[str, Any]:
        """The call arguments of one job (media loaded from the store)."""
        plain, files = spec.split_files(inputs, is_stored_file=_is_stored_file)
        load = lambda param, stored: self._load_media(stored, param.media_cls)  # noqa: E731
        return spec.call_arguments(spec.validate_values(plain), media_arguments(spec, files, load))

    def _load_media(self, stored: dict[str, Any], media_cls: Any) -> MediaFile | bytes:
        data = self._store.read_file(stored[FILE_KEY])
        payload = MediaPayload(data, stored.get("file_name"), stored.get("content_type"))
        return build_media(payload, media_cls)

    def _store_media(self, job_id: str, media: MediaFile, number: int) -> dict[str, Any]:
        name = f"result-{number}-{media.file_name or 'file'}"
        ref = self._store.put_file(job_id, name, media.to_bytes())
        return {FILE_KEY: ref, "file_name": media.file_name, "content_type": media.content_type}


def _is_stored_file(value: Any) -> bool:
    return isinstance(value, dict) and FILE_KEY in value
