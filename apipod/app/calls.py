"""Turning validated request inputs into call arguments (synchronous mode) or into a
persisted job (queue mode), and running endpoint functions."""

from __future__ import annotations

import logging
import os
import uuid
from typing import IO, Any

from starlette.concurrency import run_in_threadpool

from apipod.endpoint import (
    EndpointSpec,
    InputValidationError,
    Param,
    batch_arguments,
    batch_results,
    media_error,
)
from apipod.errors import MediaError, StorageFull
from apipod.logs import job_context
from apipod.media.convert import MediaBudget, MediaPayload, build_media, read_media
from apipod.media.guard import FetchGuard
from apipod.media.results import apply_annotation, encode_result, hint_unannotated_array
from apipod.media.urlpolicy import UrlPolicy
from apipod.payload import close_all, encode_inputs, media_arguments, result_annotation
from apipod.progress import JobProgress
from apipod.store.base import JobStore
from apipod.store.records import Job

logger = logging.getLogger(__name__)


def read_media_inputs(
    spec: EndpointSpec,
    raw: dict[str, Any],
    policy: UrlPolicy,
    limit_bytes: int,
    guard: FetchGuard | None = None,
) -> dict[str, MediaPayload | list[MediaPayload] | None]:
    """Read every media parameter (fetching URLs, stopped by ``guard``); all problems
    reported at once. All media of the request together may hold ``limit_bytes`` (else
    UploadTooLarge)."""
    payloads: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    budget = MediaBudget(limit_bytes, guard)
    for param in spec.media_params:
        if param.name not in raw:  # not given, or a plain value of a union
            continue
        try:
            payloads[param.name] = _read_param(param, raw.get(param.name), policy, budget)
        except MediaError as exc:
            errors.append(media_error(param.name, exc.message))
        except OSError as exc:  # spooling to a full disk
            logger.error("could not spool the media of a %s request: %s", spec.path, exc)
            raise StorageFull("no room to hold this request's media; try again later") from None
    if errors:
        raise InputValidationError(errors)
    return payloads


def _read_param(param: Param, value: Any, policy: UrlPolicy, budget: MediaBudget) -> Any:
    assert param.media_cls is not None
    if value is None:
        if param.required:
            raise MediaError("Field required", param.name)
        return None
    if param.is_list:
        items = value if isinstance(value, list) else [value]
        return [read_media(v, param.media_cls, param.name, policy, budget) for v in items]
    if isinstance(value, list):
        raise MediaError(f"field '{param.name}' takes one file, got a list", param.name)
    return read_media(value, param.media_cls, param.name, policy, budget)


def payload_bytes(payloads: dict[str, Any]) -> int:
    """The bytes the request's media take (what storing them will add)."""
    total = 0
    for value in payloads.values():
        for payload in value if isinstance(value, list) else [value]:
            if payload is None:
                continue
            if isinstance(payload.data, bytes):
                total += len(payload.data)
            else:
                payload.data.seek(0, os.SEEK_END)
                total += payload.data.tell()
                payload.data.seek(0)
    return total


def close_payloads(payloads: dict[str, Any]) -> None:
    """Close the temporary files of a request's media (uploads close with their form)."""
    for value in payloads.values():
        for payload in value if isinstance(value, list) else [value]:
            if payload is not None and not isinstance(payload.data, bytes):
                payload.data.close()


def media_objects(spec: EndpointSpec, payloads: dict[str, Any]) -> dict[str, Any]:
    """media-toolkit objects for the payloads, as the endpoint function expects them."""
    return media_arguments(spec, payloads, lambda param, p: build_media(p, param.media_class_of(p)))


async def call_endpoint(
    spec: EndpointSpec, kwargs: dict[str, Any], progress: JobProgress, image_format: str = "png"
) -> Any:
    """Run the function (async directly, sync in the thread pool); return JSON-able, the
    return annotation deciding how files are encoded. A batched endpoint runs as a batch
    of one."""
    if spec.batched:
        kwargs = batch_arguments(spec, [kwargs])
    if spec.progress_param:
        kwargs[spec.progress_param] = [progress] if spec.progress_per_job else progress
    with job_context(None, spec.path):  # the thread pool runs in a copy of this context
        if spec.is_async:
            result = _only_result(spec, await spec.func(**kwargs))
            return await run_in_threadpool(encode_for, spec, result, image_format)
        return await run_in_threadpool(_call_and_encode, spec, kwargs, image_format)


def _call_and_encode(spec: EndpointSpec, kwargs: dict[str, Any], image_format: str) -> Any:
    return encode_for(spec, _only_result(spec, spec.func(**kwargs)), image_format)


def encode_for(spec: EndpointSpec, result: Any, image_format: str) -> Any:
    """``result`` JSON-able, encoded by ``spec``'s return annotation (media become files)."""
    annotation = result_annotation(spec)
    hint_unannotated_array(spec.path, result, annotation)
    opened: list[IO[bytes]] = []
    try:
        return encode_result(apply_annotation(result, annotation, image_format, opened))
    finally:
        close_all(opened)


def _only_result(spec: EndpointSpec, result: Any) -> Any:
    if not spec.batched:
        return result
    (only,) = batch_results(spec, result, 1)
    if isinstance(only, BaseException):
        raise only
    return only


def submit_job(
    spec: EndpointSpec,
    values: dict[str, Any],
    payloads: dict[str, Any],
    store: JobStore,
    *,
    queue_size: int,
    max_attempts: int,
    timeout_s: float | None,
    job_id: str | None = None,
) -> Job:
    """Persist media files, then the job row (with ``job_id``, or a new id). Runs in a
    worker thread (blocking I/O)."""
    job_id = job_id or uuid.uuid4().hex
    try:
        inputs = encode_inputs(store, job_id, values, payloads)
    except OSError as exc:  # a full disk, a read-only data dir: nothing was accepted
        store.discard_files(job_id)
        logger.error("could not store the media of a %s job: %s", spec.path, exc)
        raise StorageFull("no room to store this request's media; try again later") from None
    try:
        return store.enqueue(
            spec.path,
            inputs,
            queue_size=queue_size,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            job_id=job_id,
        )
    except BaseException:
        store.discard_files(job_id)
        raise
