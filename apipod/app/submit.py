"""Storing a queued call as a job: room in the queue, the request's webhook and its
``Idempotency-Key``, then one store write. Used by every queued route (the endpoints'
own and the OpenAI ones)."""

from __future__ import annotations

import functools
import logging
from typing import Any

from starlette.requests import Request

from apipod.app.calls import payload_bytes, submit_job
from apipod.app.idempotency import idempotency_key, submit_idempotent
from apipod.app.queue import QueueFrontEnd
from apipod.app.webhooks import webhook_policy, webhook_request, with_webhook
from apipod.config import Config
from apipod.endpoint import EndpointSpec
from apipod.store.records import Job

logger = logging.getLogger(__name__)


async def enqueue(
    queue: QueueFrontEnd,
    config: Config,
    request: Request,
    spec: EndpointSpec,
    values: dict[str, Any],
    payloads: dict[str, Any],
) -> tuple[Job, bool]:
    """Store a job for ``spec`` (with its webhook and Idempotency-Key, if the request
    has them); ``(job, replayed)``, replayed when the key named an earlier job."""
    declared = request.headers.get("content-length", "")
    incoming = payload_bytes(payloads) + (int(declared) if declared.isdigit() else 0)
    queue.check_room()
    submit = functools.partial(
        submit_job,
        spec,
        values,
        payloads,
        queue.store,
        queue_size=spec.queue_size or config.queue_size,
        max_attempts=config.max_attempts,
        timeout_s=spec.job_timeout or config.job_timeout,
    )
    webhook = webhook_request(request, config)
    if webhook is not None:
        submit = with_webhook(queue.store, webhook, webhook_policy(config), submit)
    key = idempotency_key(request)
    if key is None:
        job, replayed = await queue.call(submit), False
    else:
        args = (queue.store, spec.path, key, values, payloads, submit, webhook)
        job, replayed = await queue.call(submit_idempotent, *args)
    if not replayed:
        queue.stored(incoming)
    logger.debug("job %s queued for %s", job.id, spec.path)
    return job, replayed
