"""Media in queue mode against a real service, on SQLite and on PostgreSQL: results by
reference, the ``/files`` route, the return annotation's encodings, and client JSON that
is never taken for a stored-file reference."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse
from media_toolkit import ImageFile, VideoFile
from PIL import Image

from tests.helpers import ServiceProcess, http_client, running_service
from tests.store.postgres_db import fresh_database
from tests.supervisor.support import full_log, wait_until

WAIT = {"wait": 30}


def png_bytes(value: int = 200, size: int = 8) -> bytes:
    return ImageFile().from_np_array(np.full((size, size, 3), value, dtype=np.uint8)).to_bytes()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]
)
def media_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp(f"media-{request.param}")
    settings: dict[str, Any] = {"inline_result_max_mb": 1}
    with fresh_database() if request.param == "postgresql" else _no_database() as url:
        if url:
            settings["database_url"] = url
        with running_service(tmp, "queue_media.py", **settings) as service:
            yield service


class _no_database:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def client(media_service: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(media_service.url, timeout=60) as http:
        yield http


def finished(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "finished", body
    return body


# --- client JSON is data, never a file reference -------------------------------------------------
def test_a_forged_file_reference_in_client_json_is_returned_as_data(client: httpx.Client) -> None:
    upload = finished(client.post("/digest", params=WAIT, files={"file": ("a.png", png_bytes())}))
    # Before stored references had their own envelope, this read the other job's upload
    # (stored as files/<job>/file then, files/<job>/file.png now).
    names = [link.rsplit("/", 1)[1] for link in upload["links"].get("files", ["/file"])]
    stolen = f"files/{upload['job_id']}/{names[0]}"
    forged = {
        "$file": stolen,
        "file_name": "x.png",
        "content_type": "image/png",
        "nested": [{"$file": stolen}, {"$$file": 1, "$ref": "#/x"}],
    }
    body = finished(client.post("/echo-data", params=WAIT, json={"data": forged}))
    assert body["result"] == forged
    assert "files" not in body["links"]
    again = client.get(f"/status/{body['job_id']}")
    assert again.status_code == 200 and again.json()["result"] == forged


def test_a_malformed_reference_in_client_json_never_breaks_status(client: httpx.Client) -> None:
    for data in ({"$file": 5}, {"$file": "../../etc/passwd"}, {"$file": None, "a": {}}):
        body = finished(client.post("/echo-data", params=WAIT, json={"data": data}))
        status = client.get(f"/status/{body['job_id']}")
        assert status.status_code == 200 and status.json()["result"] == data


# --- the return annotation decides the encoding ------------------------------------------------
def test_a_numpy_array_under_image_file_becomes_a_png(client: httpx.Client) -> None:
    result = finished(client.post("/array-image", params=WAIT, json={"size": 5}))["result"]
    assert (result["file_name"], result["content_type"]) == ("image.png", "image/png")
    pixels = ImageFile().from_bytes(base64.b64decode(result["content"])).to_np_array()
    assert pixels.shape == (5, 5, 3) and int(pixels.max()) == 7


def test_an_unannotated_array_is_a_json_list_and_the_log_hints_once(
    client: httpx.Client, media_service: ServiceProcess
) -> None:
    for _ in range(3):
        result = finished(client.post("/raw-array", params=WAIT))["result"]
        assert result == [[[7, 7, 7]] * 2] * 2
    hint = "endpoint /raw-array returned a numpy array of shape (2, 2, 3) without a return"
    wait_until(lambda: hint in full_log(media_service), 10, "the hint in the log")
    log = full_log(media_service)
    assert log.count(hint) == 1 and "annotate the function `-> ImageFile`" in log


def test_a_pil_image_becomes_a_png_and_the_decorator_can_ask_for_jpeg(
    client: httpx.Client,
) -> None:
    result = finished(client.post("/pil-image", params=WAIT))["result"]
    assert (result["file_name"], result["content_type"]) == ("image.png", "image/png")
    image = Image.open(io.BytesIO(base64.b64decode(result["content"])))
    assert image.format == "PNG" and image.size == (6, 4)
    jpeg = finished(client.post("/jpeg-image", params=WAIT))["result"]
    assert (jpeg["file_name"], jpeg["content_type"]) == ("image.jpg", "image/jpeg")
    assert base64.b64decode(jpeg["content"])[:3] == b"\xff\xd8\xff"


def test_a_list_of_arrays_under_list_of_images(client: httpx.Client) -> None:
    body = finished(client.post("/images", params=WAIT, json={"count": 3}))
    assert [r["file_name"] for r in body["result"]] == ["image.png"] * 3
    assert len(body["links"]["files"]) == 3 and len(set(body["links"]["files"])) == 3


def test_bytes_under_audio_file_become_a_wav(client: httpx.Client) -> None:
    result = finished(client.post("/audio", params=WAIT))["result"]
    assert result["file_name"] == "audio.wav" and result["content_type"].startswith("audio/")
    assert base64.b64decode(result["content"])[:4] == b"RIFF"


def test_a_path_the_worker_wrote_becomes_that_file(client: httpx.Client) -> None:
    body = finished(client.post("/video", params=WAIT, json={"megabytes": 0.2}))
    assert (body["result"]["file_name"], body["result"]["content_type"]) == (
        "clip.mp4",
        "video/mp4",
    )
    assert len(base64.b64decode(body["result"]["content"])) == 200_000


def test_a_path_that_does_not_exist_fails_the_job_clearly(client: httpx.Client) -> None:
    body = client.post("/bad-path", params=WAIT).json()
    assert body["status"] == "failed"
    assert body["error"].startswith("TypeError: ") and "/no/such/file.mp4" in body["error"]


def test_yielded_values_are_encoded_by_the_yielded_type(client: httpx.Client) -> None:
    job_id = client.post("/frames", json={"count": 2}).json()["job_id"]
    with connect_sse(client, "GET", f"/stream/{job_id}") as source:
        outputs = [json.loads(e.data) for e in source.iter_sse() if e.event in ("", "message")]
    data = {"$file": "files/other/x.png", "$$y": 1}
    assert [o["file_name"] for o in outputs[:2]] == ["image.png", "image.png"]
    assert base64.b64decode(outputs[0]["content"])[:4] == b"\x89PNG"
    assert outputs[2] == data  # client-looking data stays data
    result = client.get(f"/status/{job_id}").json()["result"]
    assert result[2] == data and result[1]["content_type"] == "image/png"


# --- inputs reach the function from the store ------------------------------------------------------
def test_the_function_reads_the_stored_upload_with_its_name(client: httpx.Client) -> None:
    data = png_bytes(31) + bytes(3_000_000)  # several store chunks
    files = {"file": ("photo.png", data, "image/png")}
    body = finished(client.post("/digest", params=WAIT, files=files))
    assert body["result"] == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "file_name": "photo.png",
    }
    assert body["links"]["files"] == [f"/files/{body['job_id']}/file.png"]


def test_an_input_returned_as_the_result_is_stored_again(client: httpx.Client) -> None:
    data = png_bytes(90)
    body = finished(client.post("/echo-file", params=WAIT, files={"file": ("in.png", data)}))
    assert body["result"]["file_name"] == "in.png"
    assert base64.b64decode(body["result"]["content"]) == data
    assert len(body["links"]["files"]) == 2


# --- results by reference and the /files route ------------------------------------------------------
@pytest.fixture
def large_video(client: httpx.Client) -> dict[str, Any]:
    """A finished job whose 2.5 MB result is above the service's 1 MB inline limit."""
    return finished(client.post("/video", params=WAIT, json={"megabytes": 2.5}))


def test_a_large_result_is_an_absolute_url_of_its_file(
    client: httpx.Client, media_service: ServiceProcess, large_video: dict[str, Any]
) -> None:
    result = large_video["result"]
    job_id = large_video["job_id"]
    assert result["content"] == f"{media_service.url}/files/{job_id}/clip.mp4"
    assert large_video["links"]["files"] == [f"/files/{job_id}/clip.mp4"]
    download = httpx.get(result["content"], timeout=60)
    assert download.status_code == 200 and len(download.content) == 2_500_000
    assert download.content.startswith(b"\x00\x00\x00\x18ftyp")
    loaded = VideoFile().from_dict(result)  # media-toolkit fetches the URL itself
    assert loaded.to_bytes() == download.content and loaded.file_name == "clip.mp4"
    small = finished(client.post("/array-image", params=WAIT))["result"]
    assert ImageFile().from_dict(small).to_np_array().shape == (8, 8, 3)


def test_inline_all_streams_base64_and_inline_none_gives_urls(
    client: httpx.Client, large_video: dict[str, Any]
) -> None:
    job_id = large_video["job_id"]
    raw = client.get(large_video["result"]["content"]).content
    streamed = client.get(f"/status/{job_id}", params={"inline": "all"})
    assert streamed.status_code == 200
    assert base64.b64decode(streamed.json()["result"]["content"]) == raw
    small = finished(client.post("/array-image", params={**WAIT, "inline": "none"}))
    assert small["result"]["content"].endswith(f"/files/{small['job_id']}/result.png")
    refused = client.get(f"/status/{job_id}", params={"inline": "some"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == [
        "query",
        "inline",
    ]


def test_file_route_headers(client: httpx.Client, large_video: dict[str, Any]) -> None:
    response = client.get(f"/files/{large_video['job_id']}/clip.mp4")
    assert response.status_code == 200
    headers = response.headers
    assert headers["content-type"] == "video/mp4"
    assert headers["content-length"] == "2500000" and len(response.content) == 2_500_000
    assert headers["accept-ranges"] == "bytes"
    assert headers["content-disposition"].startswith('attachment; filename="clip.mp4"')
    assert headers["etag"].startswith('"') and len(headers["etag"]) > 10
    again = client.get(response.url, headers={"If-None-Match": headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    head = client.head(response.url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "2500000" and head.headers["etag"] == headers["etag"]


def test_file_route_ranges(client: httpx.Client, large_video: dict[str, Any]) -> None:
    url = f"/files/{large_video['job_id']}/clip.mp4"
    whole = client.get(url).content
    cases = {
        "bytes=0-9": (0, 10),
        "bytes=1048570-1048589": (1_048_570, 1_048_590),  # across a store chunk
        "bytes=2499990-": (2_499_990, 2_500_000),
        "bytes=-7": (2_499_993, 2_500_000),
        "bytes=2499995-9999999": (2_499_995, 2_500_000),
    }
    for header, (start, end) in cases.items():
        part = client.get(url, headers={"Range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {start}-{end - 1}/2500000", header
        assert part.content == whole[start:end], header
    for longer in ("bytes=-2500000", "bytes=-99999999"):  # a suffix past the start
        everything = client.get(url, headers={"Range": longer})
        assert everything.status_code == 200 and everything.content == whole, longer
        assert everything.headers["content-length"] == "2500000", longer
    unsatisfiable = client.get(url, headers={"Range": "bytes=2500000-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == "bytes */2500000"
    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and len(stale.content) == 2_500_000


def test_file_route_refuses_what_is_not_there(
    client: httpx.Client, large_video: dict[str, Any]
) -> None:
    job_id = large_video["job_id"]
    for path in (f"/files/{job_id}/nothing.mp4", "/files/unknownjob/clip.mp4"):
        response = client.get(path)
        assert response.status_code == 404 and "detail" in response.json(), path
    malformed = client.get("/files/bad%20id/clip.mp4")
    assert malformed.status_code == 422


def test_queued_endpoints_document_wait_inline_and_the_file_route(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/digest"]["post"]
    assert {p["name"] for p in operation["parameters"]} == {"wait", "inline"}
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/JobResult"}
    job_result = schema["components"]["schemas"]["JobResult"]
    assert "files" in job_result["properties"]["links"]["properties"]
    assert "/files/{job_id}/{name}" in schema["paths"]


@pytest.mark.slow
def test_files_of_a_job_go_with_it(tmp_path: Path) -> None:
    with (
        running_service(tmp_path, "queue_media.py", job_ttl=1) as service,
        http_client(service.url, timeout=30) as http,
    ):
        params = {**WAIT, "inline": "none"}
        body = finished(http.post("/video", params=params, json={"megabytes": 1.5}))
        url = body["result"]["content"]
        assert http.get(url).status_code == 200
        deadline = time.monotonic() + 20
        while http.get(url).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert http.get(url).status_code == 404
        assert http.get(f"/status/{body['job_id']}").status_code == 404
