"""Fixture: synchronous endpoints for hostile inputs (JSON, media, names, client errors)."""

from __future__ import annotations

import hashlib
from typing import Any

import apipod
from apipod import APIPod, ImageFile, MediaFile

app = APIPod(title="sync-front", media_url_allowlist=("127.0.0.1/32",))


@app.endpoint("/describe")
def describe(file: MediaFile) -> dict:
    data = file.to_bytes()
    return {
        "file_name": file.file_name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@app.endpoint("/images", max_upload_file_size_mb=1)
def images(pictures: list[ImageFile]) -> dict:
    return {"count": len(pictures)}


@app.endpoint("/anything")
def anything(value: Any = None) -> dict:
    return {"type": type(value).__name__}


@app.endpoint("/text")
def text(text: str) -> dict:
    return {"length": len(text)}


@app.endpoint("/refuse")
def refuse(voice: str = "none") -> dict:
    raise apipod.HTTPError(409, f"voice {voice} is busy")
