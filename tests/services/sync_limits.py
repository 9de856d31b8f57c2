"""Fixture: upload limits (app default 5 MB, per-endpoint overrides) and a failing endpoint."""

from __future__ import annotations

from apipod import APIPod, MediaFile

app = APIPod(title="sync-limits", max_upload_file_size_mb=5)


@app.endpoint("/upload")
def upload(file: MediaFile) -> dict:
    return {"size": len(file.to_bytes())}


@app.endpoint("/text")
def text(value: str) -> dict:
    return {"length": len(value)}


@app.endpoint("/tiny", max_upload_file_size_mb=1)
def tiny(file: MediaFile) -> dict:
    return {"size": len(file.to_bytes())}


@app.endpoint("/big", max_upload_file_size_mb=20)
def big(file: MediaFile) -> dict:
    return {"size": len(file.to_bytes())}


@app.endpoint("/fail")
def fail() -> dict:
    raise ValueError("database password is hunter2")
