"""Operating two boxes that share one PostgreSQL store: ``Idempotency-Key`` holds across
API boxes, ``/metrics`` of either box reports the same job numbers, webhooks are
delivered from the shared outbox, and ``apipod jobs`` reads the store by URL."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    ServiceProcess,
    apipod_command,
    http_client,
    running_service,
    wait_for_status,
)
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import wait_until
from tests.webhook_receiver import receiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
SETTINGS = {"gpus": "none", "webhook_secret": "s3cret", "webhook_allowlist": "127.0.0.1/32"}


@pytest.fixture(scope="module")
def boxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, ...]]:
    with fresh_database("apipod_ops") as url:
        settings = {**SETTINGS, "database_url": url}
        tmp_a, tmp_b = tmp_path_factory.mktemp("ops-a"), tmp_path_factory.mktemp("ops-b")
        with (
            running_service(tmp_a, "queue_ops.py", role="all", **settings) as a,
            running_service(tmp_b, "queue_ops.py", wait_healthy=False, role="api", **settings) as b,
        ):
            b.wait_until("/health", status=200, timeout=60)
            yield a, b


def job_numbers(box: ServiceProcess) -> dict[tuple[str, tuple], float]:
    text = httpx.get(box.url + "/metrics", timeout=30).text
    wanted = ("apipod_jobs_submitted_total", "apipod_jobs_finished_total", "apipod_queue_depth")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in wanted
    }


def test_idempotency_metrics_webhooks_and_cli_across_boxes(
    boxes: tuple[ServiceProcess, ServiceProcess],
) -> None:
    a, b = boxes
    client_a = http_client(a.url, timeout=30)
    client_b = http_client(b.url, timeout=30)
    key = {"Idempotency-Key": "across-boxes"}
    first = client_a.post("/work", headers=key, json={"steps": 1}).json()["job_id"]
    again = client_b.post("/work", headers=key, json={"steps": 1})
    assert again.json()["job_id"] == first and again.headers["idempotent-replayed"] == "true"
    assert client_b.post("/work", headers=key, json={"steps": 2}).status_code == 409

    with receiver([500]) as hook:
        hooked = client_b.post("/work", params={"webhook": hook.url}, json={"steps": 1}).json()
        ids = [first, hooked["job_id"]]
        ids += [client_b.post("/work", json={"steps": 1}).json()["job_id"] for _ in range(3)]
        for job_id in ids:
            wait_for_status(client_a, job_id, {"finished"})
        wait_until(lambda: len(hook.received) >= 2, 30, "a retried webhook")
        assert {r.json["job_id"] for r in hook.received} == {hooked["job_id"]}

    numbers = job_numbers(a)
    assert numbers == job_numbers(b)  # one truth, whichever box answers
    submitted = numbers[("apipod_jobs_submitted_total", (("endpoint", "/work"),))]
    assert submitted == 5

    url = a.env["APIPOD_DATABASE_URL"]
    listed = subprocess.run(
        apipod_command("jobs", "ls", "--json", "--database-url", url),
        capture_output=True,
        text=True,
        check=True,
    )
    assert {row["id"] for row in json.loads(listed.stdout)} == set(ids)
