"""Synchronous mode, results: media become FileModel objects, everything else JSON,
recursively; ``job_progress`` is injected and never asked of the client."""

from __future__ import annotations

import base64
import logging
from typing import Any

import httpx
import numpy as np
import pytest

from apipod import APIPod, ImageFile
from tests.app.support import b64, png_bytes, wav_bytes
from tests.helpers import serve_in_thread

PNG = png_bytes(16, seed=3)
WAV = wav_bytes()


def assert_file_model(value: Any, data: bytes, content_type: str) -> None:
    """``value`` is exactly ``{file_name, content_type, content}`` holding ``data``."""
    assert isinstance(value, dict)
    assert sorted(value) == ["content", "content_type", "file_name"]
    assert value["content_type"] == content_type
    assert isinstance(value["file_name"], str) and value["file_name"]
    assert base64.b64decode(value["content"], validate=True) == data


def test_returned_media_is_a_file_model(basic: httpx.Client) -> None:
    response = basic.post("/echo-image", files={"image": ("pic.png", PNG, "image/png")})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "file_name": "pic.png",
        "content_type": "image/png",
        "content": b64(PNG),
    }


def test_returned_media_from_an_async_endpoint(media: httpx.Client) -> None:
    response = media.post("/echo-audio", json={"audio": b64(WAV)})
    assert_file_model(response.json(), WAV, "audio/wave")


def test_media_inside_a_pydantic_model(basic: httpx.Client) -> None:
    body = basic.post("/mixed", json={"image": b64(PNG)}).json()
    assert sorted(body) == ["image", "total"]
    assert body["total"] == 3
    assert_file_model(body["image"], PNG, "image/png")


def test_media_nested_in_dicts_lists_tuples_and_models(media: httpx.Client) -> None:
    body = media.post(
        "/nested",
        files={"image": ("n.png", PNG, "image/png"), "audio": ("n.wav", WAV, "audio/wav")},
    ).json()
    assert sorted(body) == ["bundle", "count", "items", "pair"]
    assert body["count"] == 2
    image, audio = body["pair"]
    assert_file_model(image, PNG, "image/png")
    assert_file_model(audio, WAV, "audio/wav")
    assert image["file_name"] == "n.png" and audio["file_name"] == "n.wav"
    first, second = body["items"]
    assert first == image
    assert second == {"audio": audio}
    assert body["bundle"] == {"count": 2, "image": image}


def test_pydantic_model_result(basic: httpx.Client) -> None:
    assert basic.post("/model", json={"point": {"x": 2, "y": 5}}).json() == {"x": 4, "y": 10}


def test_dicts_tuples_and_nested_values(basic: httpx.Client) -> None:
    assert basic.post("/shapes").json() == {
        "tuple": [1, 2],
        "nested": {"list": [1, "a", None, 2.5]},
        "flag": True,
    }


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("int", 42),
        ("float", 1.5),
        ("str", "text"),
        ("bool", True),
        ("none", None),
        ("list", [1, "a", None]),
        ("tuple", [1, [2, 3]]),
        ("dict", {"a": {"b": [1, [2]]}, "3": "int key"}),
        ("model", {"x": 1, "y": 2}),
        ("models", [{"x": 1, "y": 2}, {"p": {"x": 3, "y": 4}}]),
    ],
)
def test_plain_results_become_json(routes: httpx.Client, kind: str, expected: Any) -> None:
    response = routes.post("/result", json={"kind": kind})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected


def test_pydantic_model_with_enum_and_datetime_fields(routes: httpx.Client) -> None:
    # A pydantic model that pydantic itself dumps to JSON must come back as that JSON,
    # like FastAPI does: enums by value, datetimes in ISO-8601.
    response = routes.post("/result", json={"kind": "paint"})
    assert response.status_code == 200, response.text
    assert response.json() == {"color": "blue", "at": "2024-05-06T07:08:09"}


def test_unserialisable_result_is_a_500(routes: httpx.Client) -> None:
    response = routes.post("/result", json={"kind": "object"})
    assert response.status_code == 500
    assert response.json() == {"detail": "TypeError: cannot serialise a result of type object"}


# --- job_progress ----------------------------------------------------------------------------


def test_job_progress_is_injected_in_synchronous_mode(basic: httpx.Client) -> None:
    response = basic.post("/image", json={"image": b64(PNG)})
    assert response.json()["progress"] == 0.5


def test_job_progress_values_are_recorded_and_clamped(routes: httpx.Client) -> None:
    response = routes.post("/progress", json={"steps": 4})
    assert response.status_code == 200, response.text
    assert response.json() == {"seen": [0.25, 0.5, 0.75, 1.0], "final": 1.0, "message": "step 4/4"}


def test_job_progress_in_an_async_endpoint(routes: httpx.Client) -> None:
    response = routes.post("/async-progress", data={"label": "three quarters"})
    assert response.json() == {"progress": 0.75, "message": "three quarters"}


def test_job_progress_cannot_be_set_by_the_client(routes: httpx.Client) -> None:
    response = routes.post("/progress", json={"steps": 1, "job_progress": "hijack"})
    assert response.status_code == 200
    assert response.json()["seen"] == [1.0]
    query = routes.post("/progress?job_progress=x", data={"job_progress": "y", "steps": "2"})
    assert query.json()["seen"] == [0.5, 1.0]


def test_sync_results_follow_the_return_annotation() -> None:
    """Synchronous mode encodes like the worker: an array under ``-> ImageFile`` is a PNG
    named ``image.png`` (JPEG with ``result_image_format``), not a list of pixels."""
    app = APIPod(title="annotated", result_image_format="jpeg")

    @app.endpoint("/png", result_image_format="png")
    def png() -> ImageFile:
        return np.full((4, 6, 3), 5, dtype=np.uint8)

    @app.endpoint("/jpeg")
    def jpeg() -> ImageFile:
        return np.full((4, 6, 3), 5, dtype=np.uint8)

    with serve_in_thread(app) as url:
        as_png = httpx.post(url + "/png").json()
        as_jpeg = httpx.post(url + "/jpeg").json()
    assert (as_png["file_name"], as_png["content_type"]) == ("image.png", "image/png")
    assert base64.b64decode(as_png["content"])[:4] == b"\x89PNG"
    assert (as_jpeg["file_name"], as_jpeg["content_type"]) == ("image.jpg", "image/jpeg")


def test_an_unannotated_array_result_logs_one_hint_per_endpoint(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without ``-> ImageFile`` an image array goes out as a nested list of pixels: the
    log says so once per endpoint, not once per call."""
    app = APIPod(title="unannotated")

    @app.endpoint("/pixels-unannotated")
    def pixels():  # type: ignore[no-untyped-def]
        return np.zeros((2, 2, 3), dtype=np.uint8)

    @app.endpoint("/vector-unannotated")
    def vector():  # type: ignore[no-untyped-def]
        return np.arange(3)  # one dimension: not an image, no hint

    with caplog.at_level(logging.WARNING), serve_in_thread(app) as url:
        for _ in range(3):
            assert httpx.post(url + "/pixels-unannotated").json() == [[[0, 0, 0]] * 2] * 2
        assert httpx.post(url + "/vector-unannotated").json() == [0, 1, 2]
    hints = [r.getMessage() for r in caplog.records if "-> ImageFile" in r.getMessage()]
    assert len(hints) == 1, hints
    assert hints[0].startswith("endpoint /pixels-unannotated returned a numpy array of shape")
