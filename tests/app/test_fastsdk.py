"""The ecosystem's client, fastsdk (from the package index), against a real queue-mode
service on SQLite and PostgreSQL: files in (a local path, an ImageFile, a numpy array),
media out (an image, an audio file, a video above the inline limit), progress, errors."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_toolkit import AudioFile, ImageFile, VideoFile

from tests.helpers import ServiceProcess, running_service
from tests.store.postgres_db import fresh_database

fastsdk = pytest.importorskip("fastsdk")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp(f"fastsdk-{request.param}")
    if request.param == "sqlite":
        with running_service(tmp, "queue_media.py", inline_result_max_mb=1) as svc:
            yield svc
        return
    with (
        fresh_database() as url,
        running_service(tmp, "queue_media.py", inline_result_max_mb=1, database_url=url) as svc,
    ):
        yield svc


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Any:
    with fastsdk.FastClient(service.url, temporary=True) as fast_client:
        yield fast_client


@pytest.fixture(scope="module")
def png_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inputs") / "in.png"
    pixels = np.full((8, 8, 3), 9, dtype=np.uint8)
    path.write_bytes(ImageFile().from_np_array(pixels).to_bytes())
    return path


def test_a_local_path_is_uploaded(client: Any, png_path: Path) -> None:
    result = client.submit_job("/digest", file=str(png_path)).get_result(timeout_s=60)
    data = png_path.read_bytes()
    assert result == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "file_name": "in.png",
    }


def test_an_image_file_object_is_uploaded(client: Any, png_path: Path) -> None:
    image = ImageFile().from_file(str(png_path))
    result = client.submit_job("/digest", file=image).get_result(timeout_s=60)
    assert result["sha256"] == hashlib.sha256(png_path.read_bytes()).hexdigest()


def test_a_numpy_array_is_an_image_and_the_result_an_image_file(client: Any) -> None:
    pixels = np.full((8, 8, 3), 9, dtype=np.uint8)
    result = client.submit_job("/invert", image=pixels).get_result(timeout_s=60)
    assert isinstance(result, ImageFile) and result.file_name == "image.png"
    assert result.to_np_array().shape == (8, 8, 3)
    assert int(result.to_np_array()[0, 0, 0]) == 246


def test_an_audio_result(client: Any) -> None:
    result = client.submit_job("/audio").get_result(timeout_s=60)
    assert isinstance(result, AudioFile) and result.file_name == "audio.wav"
    assert result.to_bytes()[:4] == b"RIFF"


def test_a_video_above_the_inline_limit_is_fetched_by_url(client: Any) -> None:
    result = client.submit_job("/video", megabytes=2.5).get_result(timeout_s=60)
    assert isinstance(result, VideoFile) and result.file_name == "clip.mp4"
    assert result.file_size() == 2_500_000
    assert result.to_bytes()[4:8] == b"ftyp"


def test_progress_is_reported(client: Any) -> None:
    job = client.submit_job("/steps", count=5, delay=0.3)
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while not job.is_terminal and time.monotonic() < deadline:
        progress = job.task_progress
        if progress is not None and progress.message:
            seen.add(progress.message)
        time.sleep(0.05)
    assert job.get_result(timeout_s=60) == {"steps": 5}
    assert any("step " in message for message in seen), seen


def test_a_failing_job_raises_with_the_error(client: Any) -> None:
    job = client.submit_job("/fails", reason="the model broke")
    with pytest.raises(Exception, match="ValueError: the model broke"):
        job.get_result(timeout_s=60)
