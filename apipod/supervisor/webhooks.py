"""Webhook delivery, run by every supervisor from the store's outbox (migration 0007).

A thread of the supervisor claims due deliveries (a lease: several supervisors on
several boxes may deliver, never the same row at once), renders the job's JobResult at
the first attempt, and POSTs it, signed ``X-APIPod-Signature: sha256=<HMAC-SHA256 of the
body with webhook_secret>``, through the SSRF guard of media downloads
(``webhook_allowlist``). A 2xx is delivered; anything else is retried with exponential
back-off (1 s, 2 s, 4 s ... at most 5 min apart) until an hour after the event, then
failed. Everything lives in the store, so restarts resume where they stopped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from apipod.app.jobresult import file_url, job_result
from apipod.app.webhooks import webhook_policy
from apipod.config import Config
from apipod.errors import MediaError
from apipod.media.fetch import post_url
from apipod.payload import FileRenderer
from apipod.store.base import JobStore
from apipod.store.records import WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-APIPod-Signature"
RETRY_BASE_S = 1.0
RETRY_MAX_S = 300.0
GIVE_UP_AFTER_S = 3600.0
POLL_S = 0.25
BATCH = 16
SENDERS = 4
SWEEP_EVERY_S = 300.0


def sign(secret: str, body: bytes) -> str:
    """The ``X-APIPod-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def retry_at(delivery: WebhookDelivery, now: datetime) -> datetime | None:
    """When to try again after a failed attempt, or None when it is time to give up."""
    delay = min(RETRY_BASE_S * 2 ** max(delivery.attempts - 1, 0), RETRY_MAX_S)
    created = delivery.created_at or now
    if (now - created).total_seconds() + delay > GIVE_UP_AFTER_S:
        return None
    return now + timedelta(seconds=delay)


class WebhookSender:
    """The supervisor's delivery thread. ``tick()`` (from the main loop) starts it once;
    ``stop()`` ends it. Without ``webhook_secret`` nothing is sent (submits with a
    webhook are refused then, so nothing waits)."""

    def __init__(self, store: JobStore, config: Config) -> None:
        self.store = store
        self.config = config
        self.policy = webhook_policy(config)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0

    def tick(self) -> None:
        if self._thread is None and self.config.webhook_secret:
            self._thread = threading.Thread(target=self._run, name="apipod-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.webhook_timeout_s + 5)

    def _run(self) -> None:
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="apipod-webhook") as pool:
            while not self._stop.is_set():
                try:
                    due = self.store.claim_webhook_deliveries(BATCH, self._lease_s())
                    list(pool.map(self.deliver, due))
                    self._sweep()
                except Exception:  # the store is away: the leases bring the rows back
                    logger.exception("webhook delivery failed; retrying in %.0f s", 5)
                    self._stop.wait(5)
                    continue
                if not due:
                    self._stop.wait(POLL_S)

    def _lease_s(self) -> float:
        return 2 * self.config.webhook_timeout_s + 30

    def _sweep(self) -> None:
        now = datetime.now(timezone.utc).timestamp()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_EVERY_S
            self.store.sweep_webhooks(GIVE_UP_AFTER_S)

    def deliver(self, delivery: WebhookDelivery) -> None:
        """One attempt; the outcome goes to the store."""
        body = delivery.body or self._render(delivery)
        if body is None:
            self._record(delivery, "", None, "the job expired before its first delivery", False)
            return
        data = body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "apipod-webhook",
            "X-APIPod-Event": delivery.event,
            "X-APIPod-Delivery": str(delivery.seq),
            SIGNATURE_HEADER: sign(self.config.webhook_secret or "", data),
        }
        try:
            status: int | None = post_url(delivery.url, self.policy, data, headers)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except MediaError as exc:
            status, error = None, exc.message
        self._record(delivery, body, status, error, error is not None)

    def _render(self, delivery: WebhookDelivery) -> str | None:
        job = self.store.get(delivery.job_id)
        if job is None:
            return None
        # Large files come as their URL under public_url, or as their route's path when
        # it is not set (signed when there is a key), small ones inline as in /status.
        render = FileRenderer(
            store=self.store,
            mode="auto",
            inline_max_bytes=int(self.config.inline_result_max_mb * 1_000_000),
            url_of=file_url(self.config.public_url or "", self.config.api_key, self.config.job_ttl),
        )
        result = job_result(job, render)
        return json.dumps(result, separators=(",", ":"), ensure_ascii=False)

    def _record(
        self,
        delivery: WebhookDelivery,
        body: str,
        status: int | None,
        error: str | None,
        retry: bool,
    ) -> None:
        later = retry_at(delivery, datetime.now(timezone.utc)) if retry else None
        job = {"job_id": delivery.job_id}
        if error is None:
            logger.info("webhook %s of job %s delivered", delivery.event, job["job_id"], extra=job)
        elif later is None:
            logger.error(
                "webhook %s of job %s failed for good: %s",
                delivery.event,
                delivery.job_id,
                error,
                extra=job,
            )
        else:
            logger.warning(
                "webhook %s of job %s: %s; retrying at %s",
                delivery.event,
                delivery.job_id,
                error,
                later.isoformat(timespec="seconds"),
                extra=job,
            )
        self.store.record_webhook_attempt(
            delivery.seq, body=body, status_code=status, error=error, retry_at=later
        )
