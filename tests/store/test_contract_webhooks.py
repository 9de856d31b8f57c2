"""The webhook outbox part of the JobStore contract, for every backend: the database
queues deliveries for the subscribed events, hands them out one at a time per job and in
order, and records outcomes."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

from apipod.store import JobStatus, JobStore
from tests.store.test_contract import claimed, submit


def events_of(store: JobStore, job_id: str) -> list[str]:
    return [d.event for d in store.webhook_deliveries(job_id)]


def test_subscribed_events_are_queued_by_the_database(store: JobStore) -> None:
    job = submit(store)
    store.add_webhook(job.id, "http://hooks.example/a", ["start", "progress", "completed"])
    only_end = submit(store)
    store.add_webhook(only_end.id, "http://hooks.example/b", ["completed"])
    silent = submit(store)
    assert claimed(store).id == job.id
    assert store.set_progress(job.id, "w1", 0.5, "half")
    assert store.set_progress(job.id, "w1", 0.6, "more")  # one waiting progress at most
    assert store.finish(job.id, "w1", {"ok": True})
    assert events_of(store, job.id) == ["start", "progress", "completed"]
    delivery = store.webhook_deliveries(job.id)[0]
    assert delivery.url == "http://hooks.example/a" and delivery.state == "pending"
    assert delivery.attempts == 0 and delivery.body is None
    assert delivery.created_at <= datetime.now(timezone.utc)
    assert claimed(store).id == only_end.id
    assert store.set_progress(only_end.id, "w1", 0.5, None)
    assert store.release(only_end.id, "w1", "crashed") is JobStatus.QUEUED
    assert events_of(store, only_end.id) == []
    store.cancel(only_end.id)
    assert events_of(store, only_end.id) == ["completed"]
    store.cancel(silent.id)
    assert events_of(store, silent.id) == []
    assert store.webhook_delivery_counts() == {"pending": 4}


def test_deliveries_go_out_in_order_one_per_job_with_a_lease(store: JobStore) -> None:
    a, b = submit(store), submit(store)
    for job in (a, b):
        store.add_webhook(job.id, "http://hooks.example/", ["start", "completed"])
        store.cancel(job.id)  # queued -> cancelled: "completed" only
    c = submit(store)
    store.add_webhook(c.id, "http://hooks.example/", ["start", "completed"])
    assert claimed(store).id == c.id
    store.cancel(c.id)
    first = store.claim_webhook_deliveries(10, lease_s=60)
    assert [(d.job_id, d.event) for d in first] == [
        (a.id, "completed"),
        (b.id, "completed"),
        (c.id, "start"),
    ]
    assert all(d.attempts == 1 for d in first)
    assert store.claim_webhook_deliveries(10, lease_s=60) == []  # leased; c's next waits
    store.record_webhook_attempt(
        first[0].seq, body='{"a":1}', status_code=200, error=None, retry_at=None
    )
    soon = datetime.now(timezone.utc) + timedelta(seconds=0.2)
    store.record_webhook_attempt(
        first[1].seq, body='{"b":1}', status_code=500, error="HTTP 500", retry_at=soon
    )
    store.record_webhook_attempt(
        first[2].seq, body="{}", status_code=200, error=None, retry_at=None
    )
    second = store.claim_webhook_deliveries(10, lease_s=60)
    assert [(d.job_id, d.event) for d in second] == [(c.id, "completed")]
    time.sleep(0.3)
    retried = store.claim_webhook_deliveries(10, lease_s=60)
    assert [(d.job_id, d.attempts, d.body) for d in retried] == [(b.id, 2, '{"b":1}')]
    store.record_webhook_attempt(
        retried[0].seq, body='{"b":1}', status_code=None, error="refused", retry_at=None
    )
    done = store.webhook_deliveries(a.id)[0]
    assert done.state == "delivered" and done.last_status == 200 and done.delivered_at
    gave_up = store.webhook_deliveries(b.id)[0]
    assert gave_up.state == "failed" and gave_up.last_error == "refused"
    assert gave_up.attempts == 2
    assert store.webhook_delivery_counts() == {"delivered": 2, "failed": 1, "pending": 1}


def test_a_dead_deliverers_lease_runs_out(store: JobStore) -> None:
    job = submit(store)
    store.add_webhook(job.id, "http://hooks.example/", ["completed"])
    store.cancel(job.id)
    assert len(store.claim_webhook_deliveries(10, lease_s=0.1)) == 1
    time.sleep(0.2)
    again = store.claim_webhook_deliveries(10, lease_s=60)
    assert len(again) == 1 and again[0].attempts == 2


def test_sweep_forgets_deliveries_and_subscriptions_of_gone_jobs(store: JobStore) -> None:
    job = submit(store)
    store.add_webhook(job.id, "http://hooks.example/", ["completed"])
    store.cancel(job.id)
    (delivery,) = store.claim_webhook_deliveries(1, lease_s=60)
    store.record_webhook_attempt(
        delivery.seq, body="{}", status_code=200, error=None, retry_at=None
    )
    store.add_webhook("never-stored", "http://hooks.example/", ["completed"])
    assert store.sweep_webhooks(3600) == 0  # the job is still there; the orphan is young
    assert store.purge(0) == 1
    assert store.sweep_webhooks(0) == 2
    assert store.webhook_deliveries(job.id) == [] and store.webhook_delivery_counts() == {}
    store.add_webhook(job.id, "http://hooks.example/", ["completed"])  # the id is free again
    store.remove_webhook(job.id)
    store.remove_webhook(job.id)


def test_a_claim_takes_at_most_its_limit(store: JobStore) -> None:
    """On PostgreSQL an IN-subquery with LIMIT ... SKIP LOCKED was rescanned per row, and
    one claim of 1 took every due delivery."""
    jobs = [submit(store) for _ in range(3)]
    for job in jobs:
        store.add_webhook(job.id, "http://hooks.example/", ["completed"])
        store.cancel(job.id)
    taken = [store.claim_webhook_deliveries(1, lease_s=60) for _ in range(4)]
    assert [[d.job_id for d in claim] for claim in taken] == [[j.id] for j in jobs] + [[]]
