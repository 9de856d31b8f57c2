"""fastsdk (the original APIPod's client, from PyPI) against this server, both modes.

It builds its client from ``/openapi.json`` as it does for the original: operations are
the normalised routes, files are uploaded from media objects, a model's fields are sent
flat, queued jobs are polled through ``links.status`` until they finish.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

fastsdk = pytest.importorskip("fastsdk")

from media_toolkit import AudioFile, ImageFile, VideoFile  # noqa: E402

from apipod.loader import load_app  # noqa: E402
from tests.app.support import mp4_bytes, png_bytes, wav_bytes  # noqa: E402
from tests.compat.test_original_service import seen  # noqa: E402
from tests.helpers import SERVICES, running_service, serve_in_thread  # noqa: E402

PNG = png_bytes(8, seed=2)
WAV = wav_bytes()
MP4 = mp4_bytes()


@pytest.fixture(scope="module", params=["sync", pytest.param("queue", marks=pytest.mark.slow)])
def client(request: pytest.FixtureRequest) -> Iterator[object]:
    if request.param == "sync":
        with serve_in_thread(load_app(str(SERVICES / "compat_original.py"))) as url:
            yield fastsdk.connect(url)
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_service(Path(tmp), "compat_original.py", compute="serverless") as service,
    ):
        yield fastsdk.connect(service.url)


def result(client: object, operation: str, **params: object) -> object:
    return client.submit_job(operation, **params).get_result(timeout_s=60)  # type: ignore[attr-defined]


def image() -> ImageFile:
    return ImageFile(file_name="in.png").from_bytes(PNG)


def test_scalars_and_a_flat_model(client: object) -> None:
    assert result(client, "plain-scalars", text="hi", count=3, flag=True) == {
        "text": "hi",
        "count": 3,
        "ratio": 1.0,
        "flag": True,
    }
    assert result(client, "order-dish", name="burger", portions=2) == {
        "name": "burger",
        "portions": 2,
    }


def test_an_image_goes_up_and_comes_back_as_a_media_object(client: object) -> None:
    echoed = result(client, "echo-image", image=image())
    assert isinstance(echoed, ImageFile)
    assert echoed.to_bytes() == PNG


def test_file_parameters(client: object) -> None:
    assert result(client, "file-model-in", document=image()) == seen("MediaFile", PNG)
    assert result(client, "raw-upload", upload=image()) == seen("MediaFile", PNG)
    assert result(client, "union-value", value=image()) == seen("ImageFile", PNG)
    lists = result(client, "media-lists", images=[image(), image()])
    assert lists["images"] == [seen("ImageFile", PNG)] * 2


def test_the_mixed_endpoint(client: object) -> None:
    out = result(
        client,
        "mixed-everything",
        document=image(),
        upload=image(),
        picture=image(),
        sound=AudioFile(file_name="s.wav").from_bytes(WAV),
        clip=VideoFile(file_name="c.mp4").from_bytes(MP4),
        attachments=[image()],
        number=9,
        label="sdk",
    )
    assert (out["picture"], out["clip"], out["number"], out["label"]) == (
        seen("ImageFile", PNG),
        seen("VideoFile", MP4),
        9,
        "sdk",
    )


def test_a_progress_job(client: object) -> None:
    assert (
        result(client, "test-job-progress", fries_name="curly") == "Your fries curly are ready (1)"
    )
