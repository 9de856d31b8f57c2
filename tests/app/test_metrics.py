"""``GET /metrics`` on a real service: the Prometheus text parses, the numbers match the
jobs that ran, they survive a restart (the store keeps them), and the route needs the
API key like every other."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import http_client, running_service, wait_for_status
from tests.supervisor.support import ready_workers, submit

pytestmark = pytest.mark.slow
KEY = "metrics-test-key"


def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of every sample."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_count_jobs_and_survive_a_restart(tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with (
        running_service(tmp_path, "queue_ops.py", api_key=KEY) as service,
        http_client(service.url, timeout=30, headers=headers) as client,
    ):
        ready_workers(client)
        assert httpx.get(service.url + "/metrics").status_code == 401
        ids = [submit(client, "/work", {"steps": 2, "delay": 0.1}) for _ in range(3)]
        failing = submit(client, "/flaky", {"marker": str(tmp_path / "absent")})
        for job_id in ids:
            wait_for_status(client, job_id, {"finished"})
        wait_for_status(client, failing, {"failed"})
        samples = scrape(client)
        assert value(samples, "apipod_jobs_submitted_total", endpoint="/work") == 3
        assert value(samples, "apipod_jobs_submitted_total", endpoint="/flaky") == 1
        finished = value(samples, "apipod_jobs_finished_total", endpoint="/work", status="finished")
        assert finished == 3
        failed = value(samples, "apipod_jobs_finished_total", endpoint="/flaky", status="failed")
        assert failed == 1
        assert value(samples, "apipod_queue_depth", endpoint="/work") == 0
        assert value(samples, "apipod_jobs_running", endpoint="/work") == 0
        run = "apipod_job_run_seconds"
        assert value(samples, f"{run}_count", endpoint="/work") == 3
        assert 0.6 <= value(samples, f"{run}_sum", endpoint="/work") < 30  # 3 jobs of 0.2 s
        assert value(samples, f"{run}_bucket", endpoint="/work", le="0.1") == 0
        assert value(samples, f"{run}_bucket", endpoint="/work", le="+Inf") == 3
        assert value(samples, "apipod_job_wait_seconds_count", endpoint="/flaky") == 1
        states = {s: value(samples, "apipod_workers", state=s) for s in ("ready", "busy")}
        assert sum(states.values()) == 1 and value(samples, "apipod_workers", state="failed") == 0
        memory = [k for k in samples if k[0] == "apipod_process_resident_memory_bytes"]
        roles = sorted(dict(labels)["role"] for _, labels in memory)
        assert roles == ["api", "worker"] and all(samples[k] > 10e6 for k in memory)

        # a running job shows in jobs_running
        long = submit(client, "/work", {"steps": 100, "delay": 0.05})
        wait_for_status(client, long, {"processing"})
        assert value(scrape(client), "apipod_jobs_running", endpoint="/work") == 1
        client.post(f"/cancel/{long}")
        service.stop()
        service.start().wait_until("/health", status=200, timeout=60)
        after = scrape(client)
        assert value(after, "apipod_jobs_submitted_total", endpoint="/work") == 4
        cancelled = value(after, "apipod_jobs_finished_total", endpoint="/work", status="cancelled")
        assert cancelled == 1
        assert value(after, f"{run}_count", endpoint="/work") == 4
