"""Fixture: a queue-mode service that takes and returns media in every form a function
may use (arrays, PIL images, bytes, paths, media objects), for the media tests."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from apipod import APIPod, AudioFile, ImageFile, JobProgress, MediaFile, VideoFile

app = APIPod(compute="serverless", provider="localhost", title="queue-media")

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def wav_bytes(samples: int = 800) -> bytes:
    data = bytes(samples * 2)
    header = b"RIFF" + (36 + len(data)).to_bytes(4, "little") + b"WAVEfmt "
    header += (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
    header += (8000).to_bytes(4, "little") + (16000).to_bytes(4, "little")
    header += (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    return header + b"data" + len(data).to_bytes(4, "little") + data


@app.endpoint("/echo-data")
def echo_data(data: dict) -> dict:
    return data


@app.endpoint("/array-image")
def array_image(size: int = 8) -> ImageFile:
    return np.full((size, size, 3), 7, dtype=np.uint8)


@app.endpoint("/raw-array")
def raw_array():  # no return annotation: a nested JSON list (and a hint in the log)
    return np.full((2, 2, 3), 7, dtype=np.uint8)


@app.endpoint("/pil-image")
def pil_image() -> ImageFile:
    return Image.new("RGB", (6, 4), (10, 20, 30))


@app.endpoint("/jpeg-image", result_image_format="jpeg")
def jpeg_image() -> ImageFile:
    return np.full((8, 8, 3), 100, dtype=np.uint8)


@app.endpoint("/images")
def images(count: int = 2) -> list[ImageFile]:
    return [np.full((4, 4, 3), i, dtype=np.uint8) for i in range(count)]


@app.endpoint("/audio")
def audio() -> AudioFile:
    return wav_bytes()


@app.endpoint("/video")
def video(megabytes: float = 1.0) -> VideoFile:
    """Writes a video file of the given size and returns its path."""
    path = Path(tempfile.mkdtemp()) / "clip.mp4"
    with open(path, "wb") as out:
        out.write(MP4_HEAD)
        out.write(os.urandom(int(megabytes * 1_000_000) - len(MP4_HEAD)))
    return path


@app.endpoint("/bad-path")
def bad_path() -> VideoFile:
    return "/no/such/file.mp4"


@app.endpoint("/digest")
def digest(file: MediaFile, job_progress: JobProgress) -> dict:
    """Reads every byte of its input."""
    sha = hashlib.sha256()
    reader = file.fileobj
    reader.seek(0)
    total = 0
    for block in iter(lambda: reader.read(1 << 20), b""):
        sha.update(block)
        total += len(block)
    job_progress.set_status(1.0, "hashed")
    return {"sha256": sha.hexdigest(), "size": total, "file_name": file.file_name}


@app.endpoint("/echo-file")
def echo_file(file: MediaFile) -> MediaFile:
    return file


@app.endpoint("/invert")
def invert(image: ImageFile, job_progress: JobProgress) -> ImageFile:
    job_progress.set_status(0.5, "inverting")
    return 255 - image.to_np_array()


@app.endpoint("/fails")
def fails(reason: str = "boom") -> dict:
    raise ValueError(reason)


@app.endpoint("/steps")
def steps(job_progress: JobProgress, count: int = 5, delay: float = 0.2) -> dict:
    import time

    for i in range(count):
        time.sleep(delay)
        job_progress.set_status((i + 1) / count, f"step {i + 1}/{count}")
    return {"steps": count}


@app.endpoint("/frames")
def frames(count: int = 2) -> Iterator[ImageFile]:
    """Streams arrays (PNG by the yielded type) and client-looking data."""
    for i in range(count):
        yield np.full((4, 4, 3), i, dtype=np.uint8)
    yield {"$file": "files/other/x.png", "$$y": 1}
