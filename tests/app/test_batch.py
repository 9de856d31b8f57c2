"""Declaring batched endpoints, and a batched endpoint in synchronous mode (a batch of
one per request)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from media_toolkit import ImageFile

from apipod import APIPod, JobProgress
from apipod.errors import EndpointDefinitionError
from tests.app.support import png_bytes, served


def test_a_batched_function_takes_lists_and_clients_send_one_item() -> None:
    app = APIPod()

    @app.endpoint("/embed", batch_size=4, batch_wait_ms=20)
    def embed(text: list[str], image: list[ImageFile], scale: list[float] = 1.0) -> list:  # type: ignore[assignment]
        return text

    spec = app.endpoints["/embed"]
    assert (spec.batch_size, spec.batch_wait_ms, spec.batched) == (4, 20, True)
    params = {p.name: p for p in spec.params}
    assert params["text"].annotation is str and not params["text"].is_list
    assert params["image"].media_cls is ImageFile and params["scale"].default == 1.0
    assert app.endpoints["/embed"].input_model.model_json_schema()["properties"]["text"] == {
        "title": "Text",
        "type": "string",
    }


def test_batch_options_are_checked_at_decoration() -> None:
    app = APIPod()
    with pytest.raises(EndpointDefinitionError, match="annotate 'text' as list"):

        @app.endpoint("/a", batch_size=2)
        def a(text: str) -> list:
            return [text]

    for size in (0, -1, 1.5, True):
        with pytest.raises(EndpointDefinitionError, match="Invalid batch_size"):
            app.endpoint("/b", batch_size=size)(lambda text: text)
    with pytest.raises(EndpointDefinitionError, match="Invalid batch_wait_ms"):
        app.endpoint("/c", batch_size=2, batch_wait_ms=-1)(lambda text: text)
    with pytest.raises(EndpointDefinitionError, match="cannot be batched"):

        @app.endpoint("/d", batch_size=2)
        def d(text: list[str]) -> Iterator[str]:
            yield from text

    assert not {"/a", "/b", "/c", "/d"} & set(app.endpoints)


def test_list_of_job_progress_is_one_reporter_per_job_of_a_batched_endpoint() -> None:
    app = APIPod()

    @app.endpoint("/tag", batch_size=4)
    def tag(text: list[str], reporters: list[JobProgress]) -> list:
        return text

    spec = app.endpoints["/tag"]
    assert (spec.progress_param, spec.progress_per_job) == ("reporters", True)
    assert [p.name for p in spec.params] == ["text"]
    with pytest.raises(EndpointDefinitionError, match="is for batched endpoints"):

        @app.endpoint("/one")
        def one(text: str, job_progress: list[JobProgress]) -> str:
            return text

    with served("sync_batch") as client:  # synchronous mode: a list of one reporter
        body = client.post("/tagged", json={"text": "a"}).json()
        assert body == {"text": "a", "reporters": 1}


def test_a_batched_endpoint_answers_synchronously_as_a_batch_of_one() -> None:
    image = base64.b64encode(png_bytes(6)).decode()
    with served("sync_batch") as client:
        response = client.post("/measure", json={"image": image, "label": "cat"})
        assert response.status_code == 200, response.text
        assert response.json() == {"label": "cat", "shape": [6, 6, 3], "batch": 1}
        failed = client.post("/measure", json={"image": image, "label": "bad"})
        assert failed.status_code == 500  # as any endpoint that raises (details in the log)
        missing = client.post("/measure", json={"label": "cat"})
        assert missing.status_code == 422


def test_a_batched_result_is_encoded_as_the_item_type_of_its_list_annotation() -> None:
    with served("sync_batch") as client:
        response = client.post("/squares", json={"side": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["content_type"] == "image/png" and body["file_name"].endswith(".png")
        assert ImageFile().from_bytes(base64.b64decode(body["content"])).to_np_array().shape == (
            5,
            5,
            3,
        )
