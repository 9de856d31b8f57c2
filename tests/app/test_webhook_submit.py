"""What a submit with ``?webhook=`` is refused for: an address the SSRF guard refuses
(loopback without ``webhook_allowlist``), an unknown event, a server without a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import http_client, running_service

pytestmark = pytest.mark.slow  # two services of their own


def test_webhook_submits_are_checked(tmp_path: Path) -> None:
    with (
        running_service(
            tmp_path, "queue_ok.py", wait_healthy=False, role="api", webhook_secret="s"
        ) as service,
        http_client(service.url, timeout=30) as client,
    ):
        service.wait_until("/openapi.json", status=200)
        loopback = client.post("/noop", params={"webhook": "http://127.0.0.1:9/hook"}, json={})
        assert loopback.status_code == 422
        error = loopback.json()["detail"][0]
        assert error["loc"] == ["query", "webhook"] and "webhook_allowlist" in error["msg"]
        for url in ("ftp://example.com/x", "not a url", "http://user:pw@example.com/"):
            refused = client.post("/noop", params={"webhook": url}, json={})
            assert refused.status_code == 422, url
        events = {"webhook": "http://127.0.0.1:9/", "webhook_events": "completed,finished"}
        bad_events = client.post("/noop", params=events, json={})
        assert bad_events.status_code == 422 and "finished" in bad_events.text
        orphan = client.post("/noop", params={"webhook_events": "start"}, json={})
        assert orphan.status_code == 422
        jobs = client.get("/jobs", params={"endpoint": "/noop"}).json()["jobs"]
        assert jobs == []  # nothing refused was stored


def test_webhooks_need_a_secret(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_ok.py", wait_healthy=False, role="api") as service,
        http_client(service.url, timeout=30) as client,
    ):
        service.wait_until("/openapi.json", status=200)
        response = client.post("/noop", params={"webhook": "https://example.com/h"}, json={})
        assert response.status_code == 422 and "webhook_secret" in response.text
