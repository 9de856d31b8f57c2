"""Synchronous mode: call the endpoint function in the API process. The outcome is a
JSON-able value (as a job would store it), or the values it streams."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from typing import Any

from starlette.concurrency import run_in_threadpool

from apipod.app.calls import call_endpoint, encode_for
from apipod.app.stream import close_output, each_value
from apipod.endpoint import EndpointSpec, as_generator, is_iterator
from apipod.logs import job_context
from apipod.media.results import encode_result
from apipod.progress import JobProgress

logger = logging.getLogger(__name__)


async def call_now(
    spec: EndpointSpec, kwargs: dict[str, Any], image_format: str
) -> tuple[Any, AsyncIterator[Any] | None]:
    """``(value, None)`` for a result, ``(None, values)`` for output to stream."""
    if spec.batched:  # a batch of one, as for any batched endpoint called directly
        return await call_endpoint(spec, kwargs, JobProgress(), image_format), None
    if spec.progress_param:
        kwargs[spec.progress_param] = JobProgress()
    with job_context(None, spec.path):
        if spec.is_stream:
            output = spec.func(**kwargs)
        elif spec.is_async:
            output = await spec.func(**kwargs)
        else:
            output = await run_in_threadpool(spec.func, **kwargs)
    if is_iterator(output):
        return None, encoded_values(as_generator(output))
    return await run_in_threadpool(encode_for, spec, output, image_format), None


async def encoded_values(output: Generator | AsyncGenerator) -> AsyncGenerator[Any, None]:
    """Each value the function yields, JSON-able; the generator is closed at its
    ``yield`` when the consumer stops early (a client that went away)."""
    try:
        async for value in each_value(output):
            # Text (the common token) is its own encoding: no second thread hop for it.
            yield value if isinstance(value, str) else await run_in_threadpool(encode_result, value)
    finally:
        await close_output(output)


async def collect(values: AsyncIterator[Any]) -> list[Any]:
    """Every value of a stream, for a client that did not ask to stream."""
    return [value async for value in values]
