"""The OCR example (examples/ocr/service.py) with its real model (PP-OCRv4 on onnxruntime),
through HTTP in queue mode: text rendered with OpenCV is read back exactly whichever way
the image is sent; bad images fail clearly and never take a worker down; ``/read-batch``
recognises the crops of several queued jobs in one call."""

from __future__ import annotations

import base64
import concurrent.futures
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest

from tests.examples.support import finished, png, render_line, running_example
from tests.helpers import ServiceProcess, http_client, serve_in_thread

pytest.importorskip(
    "rapidocr_onnxruntime",
    reason="the OCR example needs rapidocr-onnxruntime: pip install -r examples/ocr/requirements.txt",
)

pytestmark = pytest.mark.slow  # one real service and a real model for the module

TEXT = "queue mode works"
PNG = png(render_line(TEXT))


@pytest.fixture(scope="module")
def ocr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("ocr")
    with running_example(tmp, "ocr", media_url_allowlist="127.0.0.1/32") as service:
        yield service


@pytest.fixture
def client(ocr: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(ocr.url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def image_url() -> Iterator[str]:
    """The rendered PNG served by a real HTTP server on 127.0.0.1."""

    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"image/png"), (b"content-length", str(len(PNG)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": PNG})  # type: ignore[operator]

    with serve_in_thread(app) as url:
        yield f"{url}/line.png"


def submit(client: httpx.Client, how: str, data: bytes, url: str = "") -> dict:
    encoded = base64.b64encode(data).decode("ascii")
    if how == "upload":
        response = client.post("/read", files={"image": ("line.png", data, "image/png")})
    elif how == "base64":
        response = client.post("/read", json={"image": encoded})
    elif how == "data-url":
        response = client.post("/read", json={"image": f"data:image/png;base64,{encoded}"})
    else:
        response = client.post("/read", json={"image": url})
    return finished(client, response)


def decode_result_image(media: dict) -> np.ndarray:
    assert media["file_name"] == "annotated.png" and media["content_type"] == "image/png"
    pixels = cv2.imdecode(np.frombuffer(base64.b64decode(media["content"]), np.uint8), 1)
    assert pixels is not None
    return pixels


@pytest.mark.parametrize("how", ["upload", "base64", "data-url", "url"])
def test_reads_the_rendered_line_exactly_in_every_encoding(
    client: httpx.Client, image_url: str, how: str
) -> None:
    body = submit(client, how, PNG, image_url)
    assert body["status"] == "finished", body
    (line,) = body["result"]["lines"]
    assert line["text"] == TEXT
    assert 0.8 < line["confidence"] <= 1.0
    height, width = render_line(TEXT).shape[:2]
    assert len(line["box"]) == 4
    assert all(0 <= x <= width and 0 <= y <= height for x, y in line["box"])
    assert body["message"].startswith("recognise")
    annotated = decode_result_image(body["result"]["annotated"])
    assert annotated.shape == (height, width, 3)
    red = (annotated[:, :, 2] > 200) & (annotated[:, :, 0] < 60) & (annotated[:, :, 1] < 60)
    assert red.sum() > 200, "the box is drawn in red on the annotated image"


def worker_pids(client: httpx.Client) -> set[int]:
    return {worker["pid"] for worker in client.get("/health").json()["workers"]}


BAD_IMAGES = {
    "not an image": (b"%PDF-1.4 not a picture at all", "not a valid ImageFile"),
    "empty": (b"", "empty"),
    "1x1": (png(np.zeros((1, 1, 3), np.uint8)), "1×1 px: too small"),
    "20000 px wide": (png(np.zeros((16, 20_000, 3), np.uint8)), "20000×16 px"),
}


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_a_bad_image_fails_clearly_and_the_worker_lives_on(client: httpx.Client, name: str) -> None:
    data, expected = BAD_IMAGES[name]
    before = worker_pids(client)
    body = submit(client, "upload", data)
    if "detail" in body:  # refused by the API process: 422 with the field named
        assert expected in str(body["detail"]), body
    else:  # refused by the worker: the job failed with a clear message
        assert body["status"] == "failed" and expected in body["error"], body
        assert body["error"].startswith("HTTPError 422"), body
    assert worker_pids(client) == before
    assert submit(client, "upload", PNG)["result"]["lines"][0]["text"] == TEXT


def test_read_batch_recognises_queued_jobs_in_one_call(client: httpx.Client) -> None:
    # A page of 12 lines keeps the one worker busy while three single lines are queued
    # behind it: the worker then claims all three in one batch.
    page = np.vstack([render_line(f"line {i} of the page") for i in range(10, 22)])
    blocker = client.post("/read", files={"image": ("page.png", png(page), "image/png")})
    texts = ["the quick brown fox", "OCR 4321 queue"]
    too_small = png(np.zeros((4, 4, 3), np.uint8))  # a valid PNG: only its own job fails
    images = [png(render_line(t)) for t in texts] + [too_small]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        posts = pool.map(
            lambda data: client.post(
                "/read-batch", json={"image": base64.b64encode(data).decode()}
            ),
            images,
        )
        responses = list(posts)
    status = client.get(f"/status/{blocker.json()['job_id']}").json()["status"]
    assert status == "processing", "the page must still be read while the batch is queued"
    bodies = [finished(client, r) for r in responses]
    assert [b["result"]["lines"][0]["text"] for b in bodies[:2]] == texts[:2]
    assert bodies[2]["status"] == "failed" and "too small" in bodies[2]["error"]
    assert len({b["metrics"]["batch_id"] for b in bodies}) == 1, [b["metrics"] for b in bodies]
    page_lines = finished(client, blocker)["result"]["lines"]
    assert [line["text"] for line in page_lines] == [f"line {i} of the page" for i in range(10, 22)]
