"""Fixture: every media kind as input (URLs from 127.0.0.1 allowed) and media in results."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel

from apipod import APIPod, AudioFile, ImageFile, MediaFile, VideoFile

app = APIPod(title="sync-media", media_url_allowlist=("127.0.0.1/32",))


class Bundle(BaseModel):
    count: int
    image: ImageFile

    model_config = {"arbitrary_types_allowed": True}


def describe(media: MediaFile) -> dict:
    data = media.to_bytes()
    return {
        "kind": type(media).__name__,
        "content_type": media.content_type,
        "file_name": media.file_name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@app.post("/image")
def image(image: ImageFile) -> dict:
    return describe(image)


@app.post("/audio")
def audio(audio: AudioFile) -> dict:
    return describe(audio)


@app.post("/video")
def video(video: VideoFile) -> dict:
    return describe(video)


@app.post("/file")
def any_file(file: MediaFile) -> dict:
    return describe(file)


@app.post("/optional")
def optional(image: ImageFile | None = None, note: str = "none") -> dict:
    return {"image": None if image is None else describe(image), "note": note}


@app.post("/clips")
def clips(clips: list[AudioFile]) -> list:
    return [describe(c) for c in clips]


@app.post("/nested")
def nested(image: ImageFile, audio: AudioFile) -> dict:
    return {
        "pair": (image, audio),
        "items": [image, {"audio": audio}],
        "bundle": Bundle(count=2, image=image),
        "count": 2,
    }


@app.post("/echo-audio")
async def echo_audio(audio: AudioFile) -> AudioFile:
    return audio
