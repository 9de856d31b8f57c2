"""``?webhook=<url>&webhook_events=start,progress,completed`` on a submit.

The URL is checked at once with the SSRF guard of media downloads (public addresses, or
those of ``webhook_allowlist``) and stored as the job's subscription before the job
itself, so no event is missed; the store queues a delivery for each chosen event and the
supervisors deliver it (:mod:`apipod.supervisor.webhooks`). Webhooks need the server's
``webhook_secret`` (``APIPOD_WEBHOOK_SECRET``): every delivery is signed with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from apipod.config import Config
from apipod.endpoint import InputValidationError
from apipod.errors import MediaError
from apipod.media.fetch import check_url
from apipod.media.urlpolicy import UrlPolicy
from apipod.store.base import JobStore
from apipod.store.records import Job

EVENTS = ("start", "progress", "completed")
DEFAULT_EVENTS = ("completed",)


@dataclass(frozen=True)
class Webhook:
    """A submit's webhook: where to POST, and on which events."""

    url: str
    events: tuple[str, ...]


def webhook_policy(config: Config) -> UrlPolicy:
    """The SSRF guard of webhook URLs: public addresses, or those of
    ``webhook_allowlist``; redirects are not followed."""
    return UrlPolicy(
        allowlist=tuple(config.webhook_allowlist),
        timeout_s=float(config.webhook_timeout_s),
        max_redirects=0,
        label="webhook URL",
        allowlist_setting="webhook_allowlist",
    )


def webhook_request(request: Request, config: Config) -> Webhook | None:
    """The submit's webhook, or None; 422 for a malformed one (the address is checked
    later, off the event loop, by :func:`with_webhook`)."""
    url = request.query_params.get("webhook")
    names = request.query_params.get("webhook_events")
    if url is None:
        if names is not None:
            raise _invalid("webhook_events", "webhook_events needs a webhook URL", names)
        return None
    events = tuple(dict.fromkeys(p.strip() for p in (names or "").split(",") if p.strip()))
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        message = f"unknown webhook event {unknown[0]!r}; use {', '.join(EVENTS)}"
        raise _invalid("webhook_events", message, names or "")
    if not config.webhook_secret:
        message = "webhooks are off: the server has no webhook_secret (APIPOD_WEBHOOK_SECRET)"
        raise _invalid("webhook", message, url)
    return Webhook(url, events or DEFAULT_EVENTS)


def with_webhook(
    store: JobStore, webhook: Webhook, policy: UrlPolicy, submit: Callable[..., Job]
) -> Callable[..., Job]:
    """``submit(job_id=...)`` preceded by the URL check and the subscription (dropped
    again if the submit fails). Blocking: runs on the store's pool."""

    def submit_with_webhook(job_id: str | None = None) -> Job:
        try:
            check_url(webhook.url, policy)
        except MediaError as exc:
            raise _invalid("webhook", exc.message, webhook.url) from None
        job_id = job_id or uuid.uuid4().hex
        store.add_webhook(job_id, webhook.url, webhook.events)
        try:
            return submit(job_id=job_id)
        except BaseException:
            store.remove_webhook(job_id)
            raise

    return submit_with_webhook


def _invalid(field: str, message: str, value: Any) -> InputValidationError:
    error = {"type": "value_error", "loc": ["query", field], "msg": message}
    return InputValidationError([{**error, "input": str(value)[:200]}])
