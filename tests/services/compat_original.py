"""Fixture: a service written the way services for the original APIPod were.

Everything is imported from ``apipod`` as the original allowed; routes have underscores;
the parameter shapes are the original's (scalars, a model, media, a FileModel, a raw
``UploadFile``, unions of media and text, media lists, ``Optional`` without a default,
progress). The mode comes from the environment (``APIPOD_COMPUTE``), so one file serves
both the synchronous and the queue tests.
"""

import hashlib
import time
from typing import List, Optional, Union

from fastapi import UploadFile
from pydantic import BaseModel

from apipod import (
    APIPod,
    AudioFile,
    FileModel,
    ImageFile,
    JobProgress,
    MediaDict,
    MediaFile,
    MediaList,
    VideoFile,
)

app = APIPod(title="compat-original")


class Dish(BaseModel):
    name: str = "soup"
    portions: int = 1


def describe(value):
    """What the function received, in a form a test can compare."""
    if value is None:
        return None
    if isinstance(value, (list, MediaList)):
        return [describe(item) for item in value]
    if isinstance(value, MediaFile):
        data = value.to_bytes()
        return {"type": type(value).__name__, "size": len(data), "sha": _sha(data)}
    if isinstance(value, bytes):
        return {"type": "bytes", "size": len(value), "sha": _sha(value)}
    return {"type": type(value).__name__, "value": value}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@app.endpoint("/plain_scalars")
def plain_scalars(text: str, count: int, ratio: float = 1.0, flag: bool = False):
    return {"text": text, "count": count, "ratio": ratio, "flag": flag}


@app.endpoint("/order_dish")
def order_dish(order: Dish):
    return {"name": order.name, "portions": order.portions}


@app.endpoint("/Echo_Image")
def echo_image(image: ImageFile):
    return image


@app.endpoint("/mixed_everything")
def mixed_everything(
    job_progress: JobProgress,
    maybe_file: Optional[MediaFile],
    document: FileModel,
    upload: UploadFile,
    picture: ImageFile | str | bytes | FileModel,
    sound: AudioFile,
    clip: VideoFile,
    attachments: List[MediaFile],
    extra: Optional[Dish],
    number: int,
    gallery: List[ImageFile] = [],  # noqa: B006 - the original's services wrote it so
    label: str = "plain",
    other_number: int = 42,
):
    job_progress.set_status(0.5, "halfway")
    return {
        "maybe_file": describe(maybe_file),
        "document": describe(document),
        "upload": describe(upload),
        "picture": describe(picture),
        "sound": describe(sound),
        "clip": describe(clip),
        "attachments": describe(attachments),
        "extra": extra.model_dump() if extra else None,
        "number": number,
        "gallery": describe(gallery),
        "label": label,
        "other_number": other_number,
    }


@app.endpoint("/file_model_in")
def file_model_in(document: FileModel):
    return describe(document)


@app.endpoint("/raw_upload")
def raw_upload(upload: UploadFile):
    return describe(upload)


@app.endpoint("/union_value")
def union_value(value: Union[ImageFile, str, bytes, FileModel]):
    return describe(value)


@app.endpoint("/union_number")
def union_number(value: ImageFile | int):
    return describe(value)


@app.endpoint("/raw_bytes")
def raw_bytes(data: bytes):
    return describe(data)


@app.endpoint("/media_lists")
def media_lists(
    images: List[ImageFile], anything: MediaList = None, more: Optional[List[ImageFile]] = None
):
    return {
        "images": describe(images),
        "anything": describe(anything),
        "anything_type": type(anything).__name__,
        "more": describe(more),
    }


@app.endpoint("/media_containers_out")
def media_containers_out(images: List[ImageFile]):
    as_list = MediaList().from_any(images)
    return {"list": as_list, "dict": MediaDict().from_any({"first": images[0]})}


@app.endpoint("/optional_without_default")
def optional_without_default(word: Optional[str], image: Optional[ImageFile], dish: Optional[Dish]):
    return {"word": word, "image": describe(image), "dish": dish.model_dump() if dish else None}


@app.endpoint("/untyped_value")
def untyped_value(value):
    return {"value": value}


@app.post(path="/test_job_progress", queue_size=10)
def job_progress_demo(job_progress: JobProgress, fries_name: str, amount: int = 1):
    job_progress.set_status(0.1, f"started {fries_name}")
    time.sleep(0.05)
    job_progress.set_status(0.8, "almost done")
    time.sleep(0.05)
    return f"Your fries {fries_name} are ready ({amount})"
