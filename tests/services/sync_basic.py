"""Fixture: a synchronous service exercising every input and output kind."""

from __future__ import annotations

import asyncio
from typing import Optional

from pydantic import BaseModel

from apipod import APIPod, ImageFile, JobProgress, MediaFile

app = APIPod(title="sync-basic")

calls = {"on_worker_start": 0}


class Point(BaseModel):
    x: int
    y: int


class Report(BaseModel):
    total: int
    image: Optional[ImageFile] = None

    model_config = {"arbitrary_types_allowed": True}


@app.on_worker_start
def load() -> None:
    calls["on_worker_start"] += 1


@app.endpoint("/scalars", summary="Echo scalars", tags=["demo"])
def scalars(name: str, count: int = 1, ratio: float = 0.5, flag: bool = False) -> dict:
    return {"name": name, "count": count, "ratio": ratio, "flag": flag}


@app.endpoint("/lists")
def lists(tags: list[str], numbers: Optional[list[int]] = None, note: Optional[str] = None) -> dict:
    return {"tags": tags, "numbers": numbers, "note": note}


@app.endpoint("/model")
def model(point: Point, scale: int = 2) -> Point:
    return Point(x=point.x * scale, y=point.y * scale)


@app.endpoint("/image")
def image(image: ImageFile, job_progress: JobProgress) -> dict:
    job_progress.set_status(0.5, "half")
    return {
        "content_type": image.content_type,
        "size": len(image.to_bytes()),
        "progress": job_progress.progress,
    }


@app.endpoint("/images")
def images(images: list[ImageFile]) -> list:
    return [len(i.to_bytes()) for i in images]


@app.endpoint("/file")
def any_file(file: MediaFile) -> dict:
    return {"size": len(file.to_bytes()), "name": file.file_name}


@app.endpoint("/echo-image")
def echo_image(image: ImageFile) -> ImageFile:
    return image


@app.endpoint("/mixed")
def mixed(image: ImageFile) -> Report:
    return Report(total=3, image=image)


@app.endpoint("/shapes")
def shapes() -> dict:
    return {"tuple": (1, 2), "nested": {"list": [1, "a", None, 2.5]}, "flag": True}


@app.endpoint("/async")
async def async_endpoint(delay: float = 0.0) -> dict:
    await asyncio.sleep(delay)
    return {"async": True, "calls": calls["on_worker_start"]}


@app.endpoint("/raises")
def raises() -> dict:
    raise RuntimeError("secret internal detail")


@app.get("/info")
def info(verbose: bool = False) -> dict:
    return {"verbose": verbose, "on_worker_start_calls": calls["on_worker_start"]}


@app.endpoint("/small", max_upload_file_size_mb=1)
def small(file: MediaFile) -> dict:
    return {"size": len(file.to_bytes())}
