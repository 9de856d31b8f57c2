"""Synchronous mode: a generator endpoint answers text/event-stream, read with httpx-sse."""

from __future__ import annotations

import base64
import json
import time

import httpx
from httpx_sse import connect_sse

from apipod.loader import load_app
from tests.helpers import SERVICES, http_client, serve_in_thread
from tests.supervisor.support import wait_until


def records(client: httpx.Client, path: str, body: dict | None = None) -> list:
    with connect_sse(client, "POST", path, json=body or {}) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return list(source.iter_sse())


def served_app():
    app = load_app(str(SERVICES / "sync_stream.py"))
    return app, serve_in_thread(app)


def test_each_yield_is_one_record_with_an_id_then_done() -> None:
    app, server = served_app()
    with server as url, http_client(url, timeout=30) as client:
        events = records(client, "/tokens", {"count": 4})
        assert [(e.event, e.id, e.data) for e in events] == [
            ("message", "1", '"tok0 "'),
            ("message", "2", '"tok1 "'),
            ("message", "3", '"tok2 "'),
            ("message", "4", '"tok3 "'),
            ("message", "4", "[DONE]"),  # the last event id carries over (SSE spec)
        ]
        events = records(client, "/atokens", {"count": 2})
        assert [json.loads(e.data) for e in events[:-1]] == [{"i": 0}, {"i": 1}]
        assert events[-1].data == "[DONE]"


def test_media_values_stream_as_file_models() -> None:
    app, server = served_app()
    with server as url, http_client(url, timeout=30) as client:
        first, image, done = records(client, "/frame")
        assert json.loads(first.data) == "before" and done.data == "[DONE]"
        model = json.loads(image.data)
        assert model["content_type"] == "image/png" and image.id == "2"
        assert base64.b64decode(model["content"]).startswith(b"\x89PNG")


def test_an_error_mid_stream_ends_it_with_an_error_record() -> None:
    app, server = served_app()
    with server as url, http_client(url, timeout=30) as client:
        events = records(client, "/breaks")
        assert [e.event for e in events] == ["message", "error"]
        assert json.loads(events[1].data) == {"error": "ValueError: broken mid-stream"}


def _disconnect_after(client: httpx.Client, path: str, received: int) -> None:
    with connect_sse(client, "POST", path, json={"delay": 0.05}) as source:
        for count, _ in enumerate(source.iter_sse(), 1):
            if count == received:
                break


def test_a_client_disconnect_closes_the_generator_within_one_value() -> None:
    app, server = served_app()
    events: list[str] = app.state.events
    with server as url, http_client(url, timeout=30) as client:
        for path, prefix in (("/endless", ""), ("/aendless", "a")):
            events.clear()
            _disconnect_after(client, path, received=3)
            wait_until(
                lambda p=prefix: f"{p}GeneratorExit" in events, 30, f"GeneratorExit {events}"
            )
            time.sleep(0.3)  # a generator still running would produce more meanwhile
            produced = [e for e in events if e.startswith(f"{prefix}produced")]
            # 3 delivered, at most one more in flight while the disconnect arrived
            # (and one the server had already sent on): never an open-ended run.
            assert 3 <= len(produced) <= 5, events
            assert events[-1] == f"{prefix}GeneratorExit"


def test_fastsdk_job_stream_reads_a_synchronous_stream() -> None:
    import fastsdk

    app, server = served_app()
    with server as url:
        sdk = fastsdk.connect(url)
        try:
            job = sdk.submit_job("tokens", count=3)
            assert list(job.stream(timeout_s=30)) == ["tok0 ", "tok1 ", "tok2 "]
        finally:
            sdk.close()
