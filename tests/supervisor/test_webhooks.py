"""Webhooks end to end: a real service, a receiver on loopback allowed by
``webhook_allowlist``, signed deliveries from the store's outbox, retries with back-off
that survive a crash (kill -9) and restart of the whole service."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    ServiceProcess,
    apipod_command,
    http_client,
    running_service,
    wait_for_status,
)
from tests.supervisor.support import ready_workers, wait_until
from tests.webhook_receiver import Received, receiver

pytestmark = pytest.mark.slow
SECRET = "webhook-secret"
SETTINGS = {"webhook_secret": SECRET, "webhook_allowlist": "127.0.0.1/32"}


def signed(received: Received) -> bool:
    expected = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["x-apipod-signature"], f"sha256={expected}")


def first_failure_recorded(service: ServiceProcess) -> bool:
    database = Path(service.env["APIPOD_DATA_DIR"]) / "apipod.db"
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)
    try:
        row = conn.execute("SELECT attempts, last_error FROM webhook_deliveries").fetchone()
    finally:
        conn.close()
    return row is not None and row[0] == 1 and row[1] is not None


def test_a_failing_receiver_gets_the_job_after_a_restart(tmp_path: Path) -> None:
    with (
        receiver([500, 503]) as hook,
        running_service(tmp_path, "queue_ops.py", **SETTINGS) as service,
        http_client(service.url, timeout=30) as client,
    ):
        ready_workers(client)
        response = client.post("/work", params={"webhook": hook.url}, json={"steps": 1})
        job_id = response.json()["job_id"]
        wait_for_status(client, job_id, {"finished"})
        # the first failure is in the store: kill the whole service (a crash), so the
        # retries can only come from the next run
        wait_until(lambda: first_failure_recorded(service), 20, "the first failure recorded")
        service.kill_tree()
        killed_at = time.monotonic()
        time.sleep(1.5)  # the retry falls due while nothing runs
        assert len(hook.received) == 1
        service.start().wait_until("/health", status=200, timeout=60)
        wait_until(lambda: len(hook.received) >= 3, 30, "two more attempts")
        time.sleep(0.5)
        assert len(hook.received) == 3  # delivered on the third: no more
        assert hook.received[1].at > killed_at
        assert all(signed(r) for r in hook.received)
        assert len({r.body for r in hook.received}) == 1  # every retry sends the same bytes
        body = hook.received[0].json
        assert body["job_id"] == job_id and body["status"] == "finished"
        assert body["result"] == {"steps": 1}
        assert hook.received[0].headers["x-apipod-event"] == "completed"
        assert hook.received[0].headers["content-type"] == "application/json"

        data_dir = service.env["APIPOD_DATA_DIR"]
        command = apipod_command("jobs", "show", job_id, "--json", "--data-dir", data_dir)
        shown = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
        (delivery,) = shown["webhook_deliveries"]
        assert delivery["state"] == "delivered" and delivery["attempts"] == 3
        assert delivery["last_status"] == 200 and delivery["event"] == "completed"
        metrics = client.get("/metrics").text
        states = {
            s.labels["state"]: s.value
            for family in text_string_to_metric_families(metrics)
            if family.name == "apipod_webhook_deliveries"
            for s in family.samples
        }
        assert states == {"pending": 0, "delivered": 1, "failed": 0}


def test_start_progress_and_completed_arrive_in_order(tmp_path: Path) -> None:
    with (
        receiver() as hook,
        running_service(tmp_path, "queue_ops.py", **SETTINGS) as service,
        http_client(service.url, timeout=30) as client,
    ):
        ready_workers(client)
        params = {"webhook": hook.url, "webhook_events": "start,progress,completed"}
        job_id = client.post("/work", params=params, json={"steps": 3, "delay": 0.3}).json()[
            "job_id"
        ]
        wait_for_status(client, job_id, {"finished"})
        wait_until(
            lambda: any(r.headers["x-apipod-event"] == "completed" for r in hook.received),
            20,
            "the completed event",
        )
        events = [r.headers["x-apipod-event"] for r in hook.received]
        assert events[0] == "start" and events[-1] == "completed"
        assert set(events[1:-1]) == {"progress"} and len(events) >= 3
        assert all(signed(r) and r.json["job_id"] == job_id for r in hook.received)
        assert [r.json["status"] for r in hook.received][-1] == "finished"
        progress = [
            r.json.get("progress")
            for r in hook.received
            if r.headers["x-apipod-event"] == "progress"
        ]
        assert all(p is not None and 0 < p <= 1 for p in progress)
        seqs = [int(r.headers["x-apipod-delivery"]) for r in hook.received]
        assert seqs == sorted(seqs)
