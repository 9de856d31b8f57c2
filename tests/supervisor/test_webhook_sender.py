"""The supervisor's webhook sender against a real store (SQLite and PostgreSQL) and a
receiver on loopback: retries resend the stored signed bytes, even after the job
expired; a delivery gives up an hour after its event; the SSRF guard runs again at
delivery, so a name that rebinds to a loopback address after the submit is not reached."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from apipod.app.webhooks import webhook_policy
from apipod.config import Config
from apipod.media.fetch import check_url
from apipod.store import JobStore
from apipod.store.records import WebhookDelivery
from apipod.supervisor.webhooks import GIVE_UP_AFTER_S, SIGNATURE_HEADER, WebhookSender, sign
from tests.helpers import migrated_store, rebind_dns
from tests.webhook_receiver import receiver

SECRET = "webhook-secret"
LOOPBACK = Config(webhook_secret=SECRET, webhook_allowlist=("127.0.0.1/32",), webhook_timeout_s=5)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    with migrated_store(request.param, tmp_path) as opened:
        yield opened


def finished_job_with_webhook(store: JobStore, url: str) -> str:
    job = store.enqueue("/e", {"x": 1}, queue_size=10, max_attempts=1)
    store.add_webhook(job.id, url, ["completed"])
    assert store.claim("w1", 30) is not None
    assert store.finish(job.id, "w1", {"ok": True})
    return job.id


def next_due(store: JobStore, timeout: float = 15) -> WebhookDelivery:
    """The next delivery once it falls due (a retry: 1 s after the failed attempt)."""
    deadline = time.monotonic() + timeout
    while not (due := store.claim_webhook_deliveries(1, lease_s=60)):
        assert time.monotonic() < deadline, "no delivery fell due"
        time.sleep(0.05)
    return due[0]


def test_a_retry_resends_the_stored_signed_bytes_after_the_job_expired(
    store: JobStore,
) -> None:
    with receiver([500]) as hook:
        job_id = finished_job_with_webhook(store, hook.url)
        sender = WebhookSender(store, LOOPBACK)
        sender.deliver(next_due(store))
        assert store.webhook_deliveries(job_id)[0].state == "pending"
        assert store.purge(0) == 1 and store.get(job_id) is None  # the TTL, between tries
        sender.deliver(next_due(store))
    first, second = hook.received
    assert second.body == first.body and first.json["result"] == {"ok": True}
    signature = sign(SECRET, first.body)
    assert first.headers[SIGNATURE_HEADER.lower()] == second.headers[SIGNATURE_HEADER.lower()]
    assert second.headers[SIGNATURE_HEADER.lower()] == signature
    (delivery,) = store.webhook_deliveries(job_id)
    assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 2, 200)


def test_a_failing_delivery_gives_up_an_hour_after_its_event(store: JobStore) -> None:
    assert GIVE_UP_AFTER_S == 3600  # as the README promises
    with receiver([500] * 10) as hook:
        young_job = finished_job_with_webhook(store, hook.url)
        old_job = finished_job_with_webhook(store, hook.url)
        sender = WebhookSender(store, LOOPBACK)
        young = next_due(store)
        old = next_due(store)
        assert (young.job_id, old.job_id) == (young_job, old_job)
        sender.deliver(young)
        # An event of nearly an hour ago: the next back-off (1 s) would pass the hour.
        almost_an_hour = timedelta(seconds=GIVE_UP_AFTER_S - 0.5)
        old_event = datetime.now(timezone.utc) - almost_an_hour
        sender.deliver(dataclasses.replace(old, created_at=old_event))
    assert len(hook.received) == 2
    (kept,) = store.webhook_deliveries(young_job)
    assert (kept.state, kept.last_status) == ("pending", 500)
    (dropped,) = store.webhook_deliveries(old_job)
    assert (dropped.state, dropped.last_status, dropped.last_error) == ("failed", 500, "HTTP 500")
    assert store.webhook_delivery_counts() == {"pending": 1, "failed": 1}


def test_the_ssrf_guard_runs_again_at_delivery(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that resolves to a public address when the submit checks it
    and to 127.0.0.1 when the supervisor delivers."""
    rebind_dns(monkeypatch, "hooks.rebind.test", "93.184.216.34", "127.0.0.1")
    public_only = Config(webhook_secret=SECRET, webhook_timeout_s=5)
    with receiver() as hook:
        url = f"http://hooks.rebind.test:{hook.server_address[1]}/hook"
        check_url(url, webhook_policy(public_only))  # the submit's check: public
        job_id = finished_job_with_webhook(store, url)
        WebhookSender(store, public_only).deliver(next_due(store))
    assert hook.received == []
    (delivery,) = store.webhook_deliveries(job_id)
    assert delivery.last_status is None and "non-public address" in delivery.last_error
