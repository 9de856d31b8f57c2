"""A service written for the original APIPod, served by this one in both modes.

``tests/services/compat_original.py`` has the original's parameter shapes. Every shape is
driven through the three encodings (JSON, urlencoded, multipart) against a real server:
uvicorn in a thread for the synchronous mode, ``apipod start`` with a worker process for
the queue mode. A call gives the function's result in both modes (the queue mode waits
for the job).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from apipod import FileModel, JobResult
from apipod.loader import load_app
from apipod.store import open_store
from tests.app.support import mp4_bytes, png_bytes, wav_bytes
from tests.helpers import SERVICES, http_client, running_service, serve_in_thread, wait_for_status

PNG = png_bytes(8, seed=1)
WAV = wav_bytes()
MP4 = mp4_bytes()
ENCODINGS = ["json", "urlencoded", "multipart"]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def seen(kind: str, data: bytes) -> dict[str, Any]:
    """What the fixture's ``describe`` reports for a media object or bytes."""
    return {"type": kind, "size": len(data), "sha": sha(data)}


def file_model(data: bytes, name: str, content_type: str) -> dict[str, str]:
    return {"file_name": name, "content_type": content_type, "content": b64(data)}


class Service:
    """A served compat_original: ``call`` returns the function's result (or raises with
    the HTTP error), ``post`` the raw response."""

    def __init__(self, client: httpx.Client, queued: bool, data_dir: Path | None = None) -> None:
        self.client = client
        self.queued = queued
        self.data_dir = data_dir

    def post(self, path: str, **request: Any) -> httpx.Response:
        params = {"wait": 60} if self.queued else None
        return self.client.post(path, params=params, **request)

    def call(self, path: str, **request: Any) -> Any:
        response = self.post(path, **request)
        assert response.status_code == 200, response.text
        body = response.json()
        if not self.queued:
            return body
        assert body["status"] == "finished", body
        return body.get("result")


@pytest.fixture(scope="module", params=["sync", pytest.param("queue", marks=pytest.mark.slow)])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "sync":
        app = load_app(str(SERVICES / "compat_original.py"))
        with serve_in_thread(app) as url, http_client(url, timeout=60) as client:
            yield Service(client, queued=False)
        return
    tmp = tmp_path_factory.mktemp("compat-queue")
    settings = {"compute": "serverless", "max_workers": 1}
    with (
        running_service(tmp, "compat_original.py", **settings) as svc,
        http_client(svc.url, timeout=90) as client,
    ):
        yield Service(client, queued=True, data_dir=Path(svc.env["APIPOD_DATA_DIR"]))


def send(encoding: str, fields: dict[str, Any], files: dict[str, bytes] | None = None):
    """Request arguments for ``encoding``: files as uploads in multipart, as base64 in
    the other two; a list value repeats the field in a form."""
    files = files or {}
    if encoding == "json":
        body = dict(fields)
        body.update({k: _b64_any(v) for k, v in files.items()})
        return {"json": body}
    form = {k: v if isinstance(v, (str, list)) else json.dumps(v) for k, v in fields.items()}
    if encoding == "urlencoded":
        form.update({k: _b64_any(v) for k, v in files.items()})
        return {"data": form}
    parts = [
        (name, (f"{name}-{i}.bin", data, "application/octet-stream"))
        for name, value in files.items()
        for i, data in enumerate(value if isinstance(value, list) else [value])
    ]
    return {"data": form, "files": parts or None}


def _b64_any(value: bytes | list[bytes]) -> str | list[str]:
    return [b64(v) for v in value] if isinstance(value, list) else b64(value)


# --- plain values and models ---------------------------------------------------------------
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_scalars(service: Service, encoding: str) -> None:
    fields = {"text": "hi", "count": 3, "ratio": 2.5, "flag": True}
    if encoding != "json":
        fields = {"text": "hi", "count": "3", "ratio": "2.5", "flag": "true"}
    result = service.call("/plain-scalars", **send(encoding, fields))
    assert result == {"text": "hi", "count": 3, "ratio": 2.5, "flag": True}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_model_nested_and_flattened(service: Service, encoding: str) -> None:
    nested = send(encoding, {"order": {"name": "burger", "portions": 2}})
    assert service.call("/order-dish", **nested) == {"name": "burger", "portions": 2}
    if encoding != "json":
        flat = send(encoding, {"name": "fries", "portions": "3"})
        assert service.call("/order-dish", **flat) == {"name": "fries", "portions": 3}
        defaults = send(encoding, {"unrelated": "x"})
        assert service.call("/order-dish", **defaults) == {"name": "soup", "portions": 1}


def test_flattened_model_field_errors_name_the_parameter(service: Service) -> None:
    response = service.post("/order-dish", data={"portions": "many"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "order", "portions"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_optional_without_default_may_be_left_out(service: Service, encoding: str) -> None:
    result = service.call("/optional-without-default", **send(encoding, {"unused": "1"}))
    assert result == {"word": None, "image": None, "dish": None}
    given = send(encoding, {"word": "w", "dish": {"name": "pie"}}, {"image": PNG})
    result = service.call("/optional-without-default", **given)
    assert result == {
        "word": "w",
        "image": seen("ImageFile", PNG),
        "dish": {"name": "pie", "portions": 1},
    }


# --- media -----------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_echo_image(service: Service, encoding: str) -> None:
    result = service.call("/echo-image", **send(encoding, {}, {"image": PNG}))
    echoed = FileModel.model_validate(result)
    assert base64.b64decode(echoed.content) == PNG
    assert echoed.content_type == "image/png"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_file_model_parameter_receives_a_media_object(service: Service, encoding: str) -> None:
    result = service.call("/file-model-in", **send(encoding, {}, {"document": WAV}))
    assert result == seen("MediaFile", WAV)
    as_object = send(encoding, {"document": file_model(PNG, "doc.png", "image/png")})
    assert service.call("/file-model-in", **as_object) == seen("MediaFile", PNG)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_upload_file_parameter_receives_a_media_object(service: Service, encoding: str) -> None:
    result = service.call("/raw-upload", **send(encoding, {}, {"upload": PNG}))
    assert result == seen("MediaFile", PNG)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_bytes_parameter_receives_the_raw_bytes(service: Service, encoding: str) -> None:
    data = b"\x00\x01 not a media file \xff"
    assert service.call("/raw-bytes", **send(encoding, {}, {"data": data})) == seen("bytes", data)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_union_of_image_and_text(service: Service, encoding: str) -> None:
    text = service.call("/union-value", **send(encoding, {"value": "just words"}))
    assert text == {"type": "str", "value": "just words"}
    # As the original read it: an upload, base64 of a file (here in the JSON and
    # urlencoded cases), a data: URL and a FileModel object are the image.
    upload = service.call("/union-value", **send(encoding, {}, {"value": PNG}))
    assert upload == seen("ImageFile", PNG)
    data_url = send(encoding, {"value": "data:image/png;base64," + b64(PNG)})
    assert service.call("/union-value", **data_url) == seen("ImageFile", PNG)
    word = service.call("/union-value", **send(encoding, {"value": "password"}))
    assert word == {"type": "str", "value": "password"}  # base64 letters, but no file
    as_object = send(encoding, {"value": file_model(PNG, "p.png", "image/png")})
    assert service.call("/union-value", **as_object) == seen("ImageFile", PNG)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_union_without_text(service: Service, encoding: str) -> None:
    assert service.call("/union-number", **send(encoding, {"value": "7"})) == {
        "type": "int",
        "value": 7,
    }
    assert service.call("/union-number", **send(encoding, {}, {"value": PNG})) == seen(
        "ImageFile", PNG
    )
    response = service.post("/union-number", **send(encoding, {"value": "neither!"}))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "value"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_media_lists(service: Service, encoding: str) -> None:
    files = {"images": [PNG, PNG], "anything": [WAV]}
    result = service.call("/media-lists", **send(encoding, {}, files))
    assert result == {
        "images": [seen("ImageFile", PNG)] * 2,
        "anything": [seen("AudioFile", WAV)],
        "anything_type": "MediaList",
        "more": None,
    }


def test_media_containers_come_back_as_file_models(service: Service) -> None:
    result = service.call(
        "/media-containers-out", files=[("images", ("a.png", PNG)), ("images", ("b.png", PNG))]
    )
    assert [base64.b64decode(item["content"]) for item in result["list"]] == [PNG, PNG]
    assert base64.b64decode(result["dict"]["first"]["content"]) == PNG


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_mixed_endpoint(service: Service, encoding: str) -> None:
    files = {
        "document": PNG,
        "upload": WAV,
        "picture": PNG,
        "sound": WAV,
        "clip": MP4,
        "attachments": [WAV, PNG],
    }
    result = service.call("/mixed-everything", **send(encoding, {"number": 5}, files))
    assert result == {
        "maybe_file": None,
        "document": seen("MediaFile", PNG),
        "upload": seen("MediaFile", WAV),
        "picture": seen("ImageFile", PNG),  # base64 of a PNG is the image, as in the original
        "sound": seen("AudioFile", WAV),
        "clip": seen("VideoFile", MP4),
        # List[MediaFile] is a MediaList of the detected kinds, as the original gave it.
        "attachments": [seen("AudioFile", WAV), seen("ImageFile", PNG)],
        "extra": None,
        "number": 5,
        "gallery": [],
        "label": "plain",
        "other_number": 42,
    }


def test_mixed_endpoint_reports_every_missing_input(service: Service) -> None:
    response = service.post("/mixed-everything", data={"label": "x"})
    assert response.status_code == 422
    missing = {tuple(e["loc"]) for e in response.json()["detail"]}
    assert {("body", name) for name in ("number", "document", "upload", "sound")} <= missing


# --- odd parameters --------------------------------------------------------------------------
def test_untyped_parameter_is_a_json_value_and_refuses_uploads(service: Service) -> None:
    value = {"nested": [1, "two", None]}
    assert service.call("/untyped-value", json={"value": value}) == {"value": value}
    response = service.post("/untyped-value", files={"value": ("x.png", PNG, "image/png")})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "value"] and "value" in error["msg"]


# --- routes and progress -----------------------------------------------------------------------
def test_routes_are_normalised_and_the_literal_path_answers_hidden(service: Service) -> None:
    paths = set(service.client.get("/openapi.json").json()["paths"])
    assert {"/plain-scalars", "/echo-image", "/test-job-progress"} <= paths
    assert not {"/plain_scalars", "/Echo_Image"} & paths
    args = {"json": {"text": "a", "count": 1}}
    assert service.call("/plain_scalars", **args) == service.call("/plain-scalars", **args)
    assert base64.b64decode(service.call("/Echo_Image", json={"image": b64(PNG)})["content"])


def test_a_job_queued_under_the_literal_path_still_runs(service: Service) -> None:
    if service.data_dir is None:
        pytest.skip("queue mode only")
    data_dir = service.data_dir.resolve()
    store = open_store(f"sqlite:///{data_dir / 'apipod.db'}", data_dir)
    try:
        inputs = {"text": "queued before", "count": 2}
        job = store.enqueue("/plain_scalars", inputs, queue_size=10, max_attempts=1)
    finally:
        store.close()
    body = wait_for_status(service.client, job.id, {"finished", "failed"}, timeout=60)
    assert body["result"] == {**inputs, "ratio": 1.0, "flag": False}, body


def test_progress_job(service: Service) -> None:
    response = service.post("/test-job-progress", data={"fries_name": "curly", "amount": "2"})
    assert response.status_code == 200, response.text
    body = response.json()
    if not service.queued:
        assert body == "Your fries curly are ready (2)"
        return
    assert body["status"] == "finished" and body["result"] == "Your fries curly are ready (2)"
    status = JobResult.model_validate(service.client.get(body["links"]["status"]).json())
    assert (status.progress, status.message) == (1.0, "almost done")
