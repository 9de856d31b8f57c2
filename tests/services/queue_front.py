"""Fixture: the front end under abuse (long-polls, slow clients, client errors)."""

from __future__ import annotations

import time
from typing import Any

from apipod import APIPod, ImageFile

app = APIPod(compute="serverless", provider="localhost", title="queue-front")


@app.endpoint("/hold")
def hold(seconds: float = 30.0, pad: str = "") -> dict:
    time.sleep(seconds)
    return {"held": seconds}


@app.endpoint("/echo")
def echo(text: str) -> dict:
    return {"length": len(text)}


@app.endpoint("/anything")
def anything(value: Any = None) -> dict:
    return {"type": type(value).__name__}


@app.endpoint("/image", max_upload_file_size_mb=1)
def image(picture: ImageFile) -> dict:
    return {"file_name": picture.file_name}


@app.endpoint("/images", max_upload_file_size_mb=1)
def images(pictures: list[ImageFile]) -> dict:
    return {"count": len(pictures)}
